#!/usr/bin/env python3
"""bulletin's delivery benchmark, side by side with Postfix's smtp-source.

In one run it starts smtp-sink on a loopback port, measures `smtp-source -d` at 1 and 4
sessions sending N copies of a real bulletin message (rendered by our own templates), and
`bulletin` delivering one bulletin to a list of N subscribers through the real pipeline
(store, fan-out, per-recipient rendering, SMTP pool of 1 and 4, ledger writes), from the
firing to the last row marked sent. Each measurement is repeated (interleaved) and the
table gives medians with min and max, with how busy smtp-sink was (its CPU time over the
SMTP phase: the share of the server's capacity each client used). Then a scaling run,
and the latency of an urgent notice while a large bulletin sends (admin API and CLI).

With PostgreSQL (`--store postgres` or `both`; the default is both when the server
answers on 127.0.0.1:5432, as the test suite finds it, else SQLite alone, said so), in
the same run: the same bulletin with the store on PostgreSQL, fired once (`schedule
fire`, the scheduler's work) and sent by 1 and by 3 `serve --once --roles sender`
instances started together on one database (pool 4 each), with the CPU of bulletin and
of the server's backends for that database; then the time of one 500-row claim with
10,000, 100,000 and 1,000,000 rows queued (1,000,000 only without --quick), taken by the
ignored test `pg_scale::claim_figures` in a release build (under --quick the debug build
the test suite shares, so CI compiles nothing more): it is the claim's one timing
harness (with the statement it replaced beside it), so the bench runs it rather than a
copy. Each PostgreSQL run creates its own database and drops it.
Usage: tests/bench/run [--quick] [--store sqlite|postgres|both] [--out FILE] [-n N]
[--reps R] [--scaling N,N,...].
"""
import argparse, csv, os, platform, re, resource, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "bulletin")
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


SINK_PID = None


def sink_cpu():
    """CPU seconds smtp-sink has used so far (it is the ceiling both clients share)."""
    f = open(f"/proc/{SINK_PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def start_sink(port):
    args = [SINK]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    args += [f"127.0.0.1:{port}", "1024"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    global SINK_PID
    SINK_PID = p.pid
    return p


# Each command runs in a fresh `python -c` wrapper so ru_maxrss is its own peak.
WRAPPER = [sys.executable, "-c",
           "import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
           "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
           "sys.stderr.write('@@RSS %d CPU %f\\n'%(u.ru_maxrss,u.ru_utime+u.ru_stime));sys.exit(r.returncode)"]


def rss_cpu(args, returncode, out, err):
    """(peak RSS in MB, CPU seconds) from a wrapped command's stderr; exits on failure."""
    if returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out}\n{err}")
    line = [l for l in err.splitlines() if l.startswith("@@RSS")][-1].split()
    return int(line[1]) / 1024.0, float(line[3])


def timed(args, **kw):
    """Runs a command; returns (seconds, peak RSS in MB of the child, CPU seconds, stdout)."""
    t0 = time.perf_counter()
    r = subprocess.run(WRAPPER + args, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    rss, cpu = rss_cpu(args, r.returncode, r.stdout, r.stderr)
    return dt, rss, cpu, r.stdout


def timed_together(args, count, work):
    """Starts `count` copies of a command at once; returns (seconds until the last ended,
    the largest peak RSS in MB, their CPU seconds together, their stdouts)."""
    files = []
    t0 = time.perf_counter()
    procs = []
    for i in range(count):
        # Files, not pipes: a full pipe would stall an instance while we wait on another.
        out = open(os.path.join(work, f"instance-{i}.out"), "w+")
        err = open(os.path.join(work, f"instance-{i}.err"), "w+")
        files.append((out, err))
        procs.append(subprocess.Popen(WRAPPER + args, stdout=out, stderr=err, text=True))
    codes = [p.wait() for p in procs]
    dt = time.perf_counter() - t0
    rss, cpu, outs = 0.0, 0.0, []
    for code, (out, err) in zip(codes, files):
        out.seek(0)
        err.seek(0)
        o, e = out.read(), err.read()
        out.close()
        err.close()
        r, c = rss_cpu(args, code, o, e)
        rss, cpu = max(rss, r), cpu + c
        outs.append(o)
    return dt, rss, cpu, outs


def make_message(work):
    """A realistic bulletin: the demo's rendering of the seed record, LF line endings."""
    demo = os.path.join(work, "demo")
    subprocess.run([BIN, "demo", "--dir", demo], check=True, capture_output=True, cwd=work)
    box = os.path.join(demo, "outbox")
    eml = sorted(os.listdir(box))[0]
    raw = open(os.path.join(box, eml), "rb").read().replace(b"\r\n", b"\n")
    path = os.path.join(work, "message.eml")
    open(path, "wb").write(raw)
    return path, len(raw)


def config(work, port, pool, n, store_url=None):
    if store_url is None:
        store_url = "sqlite://" + os.path.join(work, f"b-{pool}-{n}-{time.monotonic_ns()}.db")
    cfg = os.path.join(work, "bench.toml")
    open(cfg, "w").write(f"""
[store]
url = "{store_url}"
[publisher]
names = ["Lancang-Mekong Environmental Cooperation Center", "Foreign Environmental Cooperation Center"]
address = ["No. 5 Houyingfang Hutong,", "Xicheng District, Beijing 100035, P.R. China"]
phone = "+86-010-82268277/8221"
fax = "+86-010-82200579"
emails = ["tang.huaqing@fecomee.org.cn", "li.xia@fecomee.org.cn"]
website = "http://www.mepfeco.org.cn"
wechat_id = "lancang-mekongec"
[email]
from = "LMEC Bulletin <bulletin@example.org>"
transport = "smtp"
[email.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = {pool}
[unsubscribe]
# The links go nowhere in a benchmark; serve refuses a loopback base URL otherwise.
allow_loopback = true
[delivery]
batch_size = 500
[[schedules]]
name = "bench"
cron = "0 0 9 * * Mon"
timezone = "Asia/Shanghai"
lists = ["bench"]
""")
    return cfg


def prepare(work, port, pool, n, csv_path, store_url=None):
    cfg = config(work, port, pool, n, store_url)
    run = lambda *a: subprocess.run([BIN, "--config", cfg, *a], check=True, capture_output=True)
    run("store", "init")
    run("lists", "create", "bench")
    run("lists", "import", "bench", csv_path)
    run("import", os.path.join(ROOT, "config/examples/records/lmc-2020-parallel-session-2.toml"))
    run("approve", "lmc-2020-parallel-session-2", "--by", "bench")
    return cfg


def subscribers(work, n):
    path = os.path.join(work, f"subs-{n}.csv")
    if not os.path.exists(path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["email", "name", "language"])
            for i in range(n):
                w.writerow([f"reader{i}@example.org", f"Reader {i}", "en"])
    return path


def bench_bulletin(work, port, pool, n):
    cfg = prepare(work, port, pool, n, subscribers(work, n))
    t_fire, rss_fire, cpu_fire, _ = timed([BIN, "--config", cfg, "schedule", "fire", "bench"])
    c0 = sink_cpu()
    t_send, rss_send, cpu_send, out = timed([BIN, "--config", cfg, "serve", "--once"])
    busy = (sink_cpu() - c0) / t_send
    if f"sent {n}," not in out:
        raise SystemExit(f"bulletin did not send {n}: {out}")
    total = t_fire + t_send
    return {"rate": n / total, "secs": total, "rss": max(rss_fire, rss_send), "cpu": cpu_fire + cpu_send, "fanout": t_fire,
            "sink": 100 * busy}


def bench_source(msg, port, sessions, n):
    c0 = sink_cpu()
    t, rss, cpu, _ = timed([SOURCE, "-d", "-s", str(sessions), "-m", str(n), "-F", msg,
                            "-f", "bulletin@example.org", "-t", "reader@example.org", f"127.0.0.1:{port}"])
    return {"rate": n / t, "secs": t, "rss": rss, "cpu": cpu, "fanout": 0.0, "sink": 100 * (sink_cpu() - c0) / t}


# PostgreSQL: the maintenance database as the test suite finds it (tests/it/pg.rs).
PG_ADMIN_URLS = ([os.environ["BULLETIN_TEST_POSTGRES_URL"]] if os.environ.get("BULLETIN_TEST_POSTGRES_URL")
                 else ["postgres://postgres@127.0.0.1:5432/test", "postgres://root@127.0.0.1:5432/test"])


def redact(url):
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def psql(url, sql):
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True)


def pg_admin():
    """(maintenance URL, None) when PostgreSQL answers, else (None, why not)."""
    if not shutil.which("psql"):
        return None, "psql is not installed"
    errors = []
    for url in PG_ADMIN_URLS:
        try:
            r = psql(url, "SELECT 1")
        except OSError as e:
            errors.append(f"{redact(url)}: {e}")
            continue
        if r.returncode == 0:
            return url, None
        errors.append(f"{redact(url)}: {r.stderr.strip()}")
    return None, "; ".join(errors)


class PgDatabase:
    """A database of its own for one run, dropped (connections and all) at the end."""

    def __init__(self, admin):
        self.admin = admin
        self.name = f"bulletin_bench_{os.urandom(8).hex()}"
        self.url = f"{admin.rsplit('/', 1)[0]}/{self.name}"

    def __enter__(self):
        r = psql(self.admin, f"CREATE DATABASE {self.name}")
        if r.returncode != 0:
            raise SystemExit(f"CREATE DATABASE {self.name}: {r.stderr.strip()}")
        return self

    def __exit__(self, *exc):
        psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database (the server's share of
    the work, which SQLite does inside bulletin): /proc is sampled every 20 ms, each
    backend's last reading kept, so one that exits loses at most its last 20 ms."""

    def __init__(self, database):
        self.tag = f" {database} ".encode()
        self.seen = {}  # pid -> CPU seconds at its last reading (None: not a backend of ours)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self):
        tick = os.sysconf("SC_CLK_TCK")
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or self.seen.get(pid, 0) is None:
                continue
            try:
                if pid not in self.seen:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    if not (cmd.startswith(b"postgres: ") and self.tag in cmd):
                        self.seen[pid] = None
                        continue
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                self.seen[pid] = (int(f[11]) + int(f[12])) / tick
            except OSError:
                pass

    def run(self):
        while not self.done.wait(0.02):
            self.sample()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.sample()

    def seconds(self):
        return sum(v for v in self.seen.values() if v)


def bench_postgres(work, port, admin, instances, n):
    """One bulletin to n subscribers with the store on PostgreSQL: fired once, then sent
    by `instances` sender instances (pool 4 each) started together."""
    with PgDatabase(admin) as db:
        cfg = prepare(work, port, 4, n, subscribers(work, n), store_url=db.url)
        with BackendCpu(db.name) as server:
            t_fire, rss_fire, cpu_fire, _ = timed([BIN, "--config", cfg, "schedule", "fire", "bench"])
            c0 = sink_cpu()
            t_send, rss_send, cpu_send, outs = timed_together(
                [BIN, "--config", cfg, "serve", "--once", "--roles", "sender"], instances, work)
            busy = (sink_cpu() - c0) / t_send
        per = [int(m.group(1)) if (m := re.search(r"^sent (\d+),", o, re.M)) else 0 for o in outs]
        if sum(per) != n:
            raise SystemExit(f"{instances} instance(s) sent {per}, not {n} in all: {outs}")
    total = t_fire + t_send
    return {"rate": n / total, "secs": total, "rss": max(rss_fire, rss_send), "cpu": cpu_fire + cpu_send,
            "fanout": t_fire, "sink": 100 * busy, "server": server.seconds(), "per": per}


CLAIM_LINE = re.compile(r"claim of 500 with\s+(\d+) queued:\s+([\d.]+) ms \(median of 7; before:\s+([\d.]+) ms\)")
SERVER_LINE = re.compile(r"claim of 500 with\s+(\d+) queued, server execution of its UPDATE:\s+([\d.]+) ms")


def claim_figures(sizes, release):
    """[(rows queued, ms of one 500-row claim, ms of the statement it replaced, ms the server
    spent executing the claim's UPDATE by EXPLAIN ANALYZE, which no build profile changes)] from the
    ignored test pg_scale::claim_figures, built in release (the first time, a while) or,
    for --quick, in the debug build the test suite uses anyway (CI builds nothing more;
    those figures only show the path works)."""
    profile = ["--release"] if release else []
    print(f"claim figures: cargo test {' '.join(profile)} --test it pg_scale::claim_figures (building first)",
          file=sys.stderr)
    env = dict(os.environ, BULLETIN_CLAIM_SIZES=",".join(map(str, sizes)))
    r = subprocess.run(["cargo", "test", *profile, "--quiet", "--test", "it", "pg_scale::claim_figures",
                        "--", "--ignored", "--exact", "--nocapture"], cwd=ROOT, capture_output=True, text=True, env=env)
    server = {int(q): float(ms) for q, ms in SERVER_LINE.findall(r.stdout + r.stderr)}
    rows = [(int(q), float(new), float(old), server.get(int(q)))
            for q, new, old in CLAIM_LINE.findall(r.stdout + r.stderr)]
    if r.returncode != 0 or [q for q, *_ in rows] != sizes or None in [x for *_, x in rows]:
        raise SystemExit(f"pg_scale::claim_figures gave {rows} for {sizes}:\n{r.stdout}\n{r.stderr}")
    return rows


def stores(choice):
    """(run SQLite, run PostgreSQL, the maintenance URL) for --store."""
    if choice == "sqlite":
        return True, False, None
    admin, why = pg_admin()
    if admin is None:
        if choice is not None:
            raise SystemExit(f"--store {choice}: PostgreSQL does not answer ({why})")
        print(f"PostgreSQL does not answer ({why}): SQLite only "
              "(--store postgres or both to insist)", file=sys.stderr)
        return True, False, None
    if choice is None:
        print(f"PostgreSQL answers at {redact(admin)}: SQLite and PostgreSQL (--store to choose)", file=sys.stderr)
    return choice != "postgres", True, admin


def http(method, url, token, body=None):
    import json, urllib.request
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def iso_ms(s):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def bench_notice(work, port, n, reps):
    """Urgent-notice latency while a bulletin to n subscribers sends (pool 4): from the
    trigger to the SMTP server's acceptance of the notice's first message, as the ledger
    records it (sent_at is taken when the server's 250 arrives, in ms). Triggered through
    the admin API (the daemon is woken at once) and with `bulletin notice send` from
    another process (the daemon finds it by polling, delivery.urgent_poll_ms)."""
    cfg = prepare(work, port, 4, n, subscribers(work, n))
    admin, public = free_port(), free_port()
    with open(cfg, "a") as f:
        f.write(f'\n[admin]\nbind = "127.0.0.1:{admin}"\n[public]\nbind = "127.0.0.1:{public}"\n')
    token = "bench-admin-token-0123456789"
    env = dict(os.environ, BULLETIN_ADMIN_TOKEN=token)
    run = lambda *a: subprocess.run([BIN, "--config", cfg, *a], check=True, capture_output=True, env=env)
    urgent_csv = os.path.join(work, "urgent.csv")
    open(urgent_csv, "w").write("email,name\nduty-officer@example.org,Duty officer\n")
    run("lists", "create", "urgent")
    run("lists", "import", "urgent", urgent_csv)
    run("schedule", "fire", "bench")
    base = f"http://127.0.0.1:{admin}"
    serve = subprocess.Popen([BIN, "--config", cfg, "serve"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"admin API": [], "CLI": []}
    try:
        wait_port(admin)
        bulk = None

        def sent_rows(bulletin, limit=1):
            return http("GET", f"{base}/api/deliveries?bulletin={bulletin}&status=sent&limit={limit}", token)["deliveries"]

        end = time.time() + 30
        while time.time() < end:
            bs = http("GET", f"{base}/api/bulletins", token)
            if bs and sent_rows(bs[0]["id"]):
                bulk = bs[0]["id"]
                break
            time.sleep(0.01)
        if bulk is None:
            raise SystemExit("the bulletin did not start sending")
        for r in range(reps):
            for how in ("admin API", "CLI"):
                time.sleep(0.1)
                title = f"Urgent bench notice {how} {r}"
                t0 = time.time()
                if how == "admin API":
                    nid = http("POST", f"{base}/api/notices", token,
                               {"title": title, "body": "Please read.", "lists": ["urgent"], "by": "bench"})["id"]
                else:
                    body = os.path.join(work, "notice.md")
                    open(body, "w").write("Please read.")
                    out = subprocess.run([BIN, "--config", cfg, "notice", "send", "--title", title,
                                          "--body-file", body, "--lists", "urgent", "--json"],
                                         capture_output=True, text=True, env=env)
                    if out.returncode != 0:
                        raise SystemExit(f"notice send failed: {out.stderr}")
                    out = out.stdout
                    import json
                    nid = json.loads(out)["id"]
                deadline = time.time() + 10
                while time.time() < deadline:
                    rows = sent_rows(nid)
                    if rows:
                        results[how].append((iso_ms(rows[0]["sent_at"]) - t0) * 1000)
                        break
                    time.sleep(0.005)
                else:
                    raise SystemExit(f"notice {nid} was not sent within 10 s")
        left = http("GET", f"{base}/api/deliveries?bulletin={bulk}&status=queued&limit=1", token)["total"]
    finally:
        serve.terminate()
        serve.wait()
    print(f"notice latencies (ms): {results}", file=sys.stderr)
    return results, left


def med(rows, key):
    v = [r[key] for r in rows]
    return statistics.median(v), min(v), max(v)


def fmt(rows, key, f="{:.0f}"):
    m, lo, hi = med(rows, key)
    return f"{f.format(m)} ({f.format(lo)}–{f.format(hi)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small N, one repetition (CI)")
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default=None,
                    help="which stores bulletin is measured on (default: both when PostgreSQL answers "
                         "on 127.0.0.1:5432, else sqlite)")
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--scaling", default=None, help="comma-separated N for the scaling run (SQLite)")
    ap.add_argument("--notice-n", type=int, default=None, help="list size sending while notices are triggered (SQLite)")
    ap.add_argument("--claim-sizes", default=None,
                    help="comma-separated rows queued for the PostgreSQL claim timing (empty: none)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    sqlite, postgres, admin = stores(a.store)
    n = a.n or (300 if a.quick else 10000)
    reps = a.reps or (1 if a.quick else 3)
    default_scaling = "" if a.quick else "10000,50000,200000"
    scaling = [int(x) for x in (default_scaling if a.scaling is None else a.scaling).split(",") if x]
    default_claims = "10000,100000" if a.quick else "10000,100000,1000000"
    claim_sizes = [int(x) for x in (default_claims if a.claim_sizes is None else a.claim_sizes).split(",") if x]
    work = tempfile.mkdtemp(prefix="bulletin-bench-")
    os.chmod(work, 0o755)
    port = free_port()
    sink = start_sink(port)
    try:
        msg, size = make_message(work)
        results = {k: [] for k in ["source1", "source4", "bulletin1", "bulletin4", "pg1", "pg3"]}
        for r in range(reps):
            results["source1"].append(bench_source(msg, port, 1, n))
            if sqlite:
                results["bulletin1"].append(bench_bulletin(work, port, 1, n))
            results["source4"].append(bench_source(msg, port, 4, n))
            if sqlite:
                results["bulletin4"].append(bench_bulletin(work, port, 4, n))
            if postgres:
                results["pg1"].append(bench_postgres(work, port, admin, 1, n))
                results["pg3"].append(bench_postgres(work, port, admin, 3, n))
            print(f"repetition {r + 1}/{reps} done", file=sys.stderr)
        lines = []
        p = lambda s="": lines.append(s)
        p(f"N = {n} messages of {size} bytes, {reps} repetition(s); median (min–max).")
        p()
        p("| run | messages/s | ratio bulletin/smtp-source | peak RSS MB | CPU s | fan-out s | smtp-sink busy % |")
        p("|---|---|---|---|---|---|---|")
        for conc in (1, 4):
            s = results[f"source{conc}"]
            p(f"| smtp-source -d -s {conc} | {fmt(s, 'rate')} | | {fmt(s, 'rss', '{:.1f}')} | {fmt(s, 'cpu', '{:.2f}')} | | {fmt(s, 'sink')} |")
            if sqlite:
                b = results[f"bulletin{conc}"]
                ratio = statistics.median(x["rate"] for x in b) / statistics.median(x["rate"] for x in s)
                p(f"| bulletin, pool {conc} | {fmt(b, 'rate')} | {ratio:.2f} | {fmt(b, 'rss', '{:.1f}')} | {fmt(b, 'cpu', '{:.2f}')} | {fmt(b, 'fanout', '{:.2f}')} | {fmt(b, 'sink')} |")
        if postgres:
            for row in results["pg1"] + results["pg3"]:
                row["us"] = 1e6 * row["cpu"] / n
                row["server_us"] = 1e6 * row["server"] / n
            for row in results["bulletin4"]:
                row["us"] = 1e6 * row["cpu"] / n
            p()
            p(f"PostgreSQL: the same bulletin fired once, then sent by sender instances (pool 4 each,")
            p("`serve --once --roles sender`) started together on one database. CPU µs per message:")
            p("bulletin's (fan-out included; all instances together), and the server's backends for")
            p("that database (SQLite's share of the work is inside bulletin's figure).")
            p()
            p("| store, instances | messages/s | ratio to smtp-source -s 4 | bulletin CPU µs/msg | server CPU µs/msg | peak RSS MB | fan-out s | smtp-sink busy % |")
            p("|---|---|---|---|---|---|---|---|")
            src4 = statistics.median(x["rate"] for x in results["source4"])
            rows = ([("SQLite, 1", results["bulletin4"])] if sqlite else []) + \
                [("PostgreSQL, 1", results["pg1"]), ("PostgreSQL, 3", results["pg3"])]
            for name, b in rows:
                ratio = statistics.median(x["rate"] for x in b) / src4
                server = fmt(b, "server_us") if "server_us" in b[0] else ""
                p(f"| {name} | {fmt(b, 'rate')} | {ratio:.2f} | {fmt(b, 'us')} | {server} | {fmt(b, 'rss', '{:.1f}')} | {fmt(b, 'fanout', '{:.2f}')} | {fmt(b, 'sink')} |")
            shares = [sorted(x["per"]) for x in results["pg3"]]
            p()
            p(f"Messages sent per instance, of 3 (each repetition): {shares}.")
        if sqlite and scaling:
            p()
            p("Scaling (pool 4, one run each):")
            p()
            p("| subscribers | seconds | messages/s | peak RSS MB | fan-out s |")
            p("|---|---|---|---|---|")
            for sn in scaling:
                r = bench_bulletin(work, port, 4, sn)
                p(f"| {sn} | {r['secs']:.1f} | {r['rate']:.0f} | {r['rss']:.1f} | {r['fanout']:.2f} |")
        if sqlite:
            notice_n = a.notice_n or (3000 if a.quick else 50000)
            notices, left = bench_notice(work, port, notice_n, reps)
            p()
            p(f"Urgent notice while a bulletin to {notice_n} subscribers sends (pool 4): milliseconds from the")
            p("trigger to the SMTP server's acceptance of the notice's message (ledger sent_at);")
            p(f"{left} of the bulletin's rows were still queued after the last notice.")
            p()
            p("| trigger | milliseconds |")
            p("|---|---|")
            for how, v in notices.items():
                p(f"| {how} | {statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f}) |")
        if postgres and claim_sizes:
            p()
            build = "debug build under --quick: not figures to read" if a.quick else "release build"
            p("PostgreSQL claim: one claim of 500 rows with this many queued (median of 7, by")
            p(f"`pg_scale::claim_figures`, {build}), and the single statement it replaced")
            p("(rolled back); and the server's execution time of the claim's UPDATE (EXPLAIN ANALYZE,")
            p("rolled back: the database's share, the same in any build).")
            p()
            p("| rows queued | claim ms | replaced statement ms | server execution ms |")
            p("|---|---|---|---|")
            for queued, new, old, server in claim_figures(claim_sizes, release=not a.quick):
                p(f"| {queued} | {new:.2f} | {old:.2f} | {server:.2f} |")
        text = "\n".join(lines)
        print(text)
        if a.out:
            command = "tests/bench/run" + (" --quick" if a.quick else "") + (f" --store {a.store}" if a.store else "")
            stores_run = " and ".join(x for x, on in (("SQLite", sqlite), ("PostgreSQL", postgres)) if on)
            with open(a.out, "w") as f:
                f.write(f"# bulletin delivery benchmark\n\nMachine: {platform.machine()}, {os.cpu_count()} cores, "
                        f"{platform.platform()}; {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}; "
                        f"Postfix smtp-source/smtp-sink from Debian; stores: {stores_run}. Command: `{command}`. "
                        f"Date: {time.strftime('%Y-%m-%d')}.\n\n{text}\n")
    finally:
        sink.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
