//! Fault test 5 of issue 5: `kill -9` of the real `bulletin` process at random moments
//! while 5,000 e-mails go to a real SMTP server (Postfix's smtp-sink) — once during the
//! fan-out of `schedule fire`, then several times in the middle of `serve`'s sending —
//! restarting each time, until the ledger is final. Then what the server received is
//! compared with the ledger: nobody missing, every duplicate flagged ambiguous, and no
//! more duplicates per kill than can be sent but unrecorded: the SMTP pool's connections
//! plus the outcomes waiting for the ledger (`delivery.unrecorded_max`), although twice
//! the pool's sends are in flight (the rest wait to be pipelined behind them).
//!
//! The kill points come from a seeded generator (`BULLETIN_CRASH_SEED` overrides the
//! seed) and are printed, so a failing run can be repeated.

use crate::harness::{config_text, free_port, small_record, Options, SmtpSink};
use bulletin::store::BulletinState;
use bulletin::store::{DeliveryFilter, Store};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 5_000;
/// SMTP connections the daemon may have at once (each with one message's data unanswered).
const POOL: usize = 8;
/// Outcomes that may wait for the ledger at once (`delivery.unrecorded_max`).
const UNRECORDED: usize = 8;
/// Messages a kill may leave accepted by the server but not recorded as sent.
const UNRECORDED_BOUND: usize = POOL + UNRECORDED;
/// Kills of `serve` while it sends.
const SERVE_KILLS: usize = 4;

pub(crate) fn cli(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bulletin"));
    c.env("BULLETIN_CONFIG", config)
        .env_remove("BULLETIN_ADMIN_TOKEN")
        .env("BULLETIN_UNSUBSCRIBE_SECRET", "0123456789abcdef0123");
    c
}

pub(crate) fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Writes a configuration for the real binary's `serve` on the store `db`, with both HTTP
/// servers on free loopback ports, `smtp` replacing the pool line and `delivery` added
/// to `[delivery]`; returns it and the public port (which says the daemon is up).
pub(crate) fn daemon_config(
    dir: &Path,
    db: &Path,
    smtp_port: u16,
    smtp: &str,
    delivery: &str,
) -> (PathBuf, u16) {
    let config = dir.join("bulletin.toml");
    let (admin, public) = (free_port(), free_port());
    let text = config_text(
        db,
        &Options {
            smtp_port,
            ..Default::default()
        },
    )
    .replace("pool_size = 2", smtp)
    .replace(
        "[unsubscribe]",
        &format!(
            "[admin]\nbind = \"127.0.0.1:{admin}\"\n[public]\nbind = \"127.0.0.1:{public}\"\n\n[unsubscribe]"
        ),
    )
    .replace("max_attempts = 5", &format!("max_attempts = 5\n{delivery}"));
    std::fs::write(&config, text).unwrap();
    (config, public)
}

pub(crate) fn kill9(child: &mut Child) {
    // SIGKILL: no handler runs, nothing is flushed or recorded by the process.
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A running daemon, killed if the test ends (or fails) while it still runs.
pub(crate) struct Running(pub Child);

impl Running {
    pub(crate) fn kill9(&mut self) {
        kill9(&mut self.0);
    }
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
    pub(crate) fn still_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.still_running() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Counts of ledger rows by status.
async fn counts(store: &Arc<dyn Store>) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for c in store.delivery_counts(None).await.unwrap() {
        *m.entry(c.status.to_string()).or_insert(0) += c.count;
    }
    m
}

fn get(m: &HashMap<String, i64>, k: &str) -> i64 {
    m.get(k).copied().unwrap_or(0)
}

/// Recipients of every message smtp-sink has dumped, read from the dump headers only.
fn received(sink: &SmtpSink) -> Vec<String> {
    sink.messages()
        .into_iter()
        .flat_map(|m| m.recipients)
        .collect()
}

/// Waits until smtp-sink has written every message it accepted (the count stops moving).
fn settled(sink: &SmtpSink) -> Vec<String> {
    let mut last = received(sink);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = received(sink);
        if now.len() == last.len() {
            return now;
        }
        last = now;
    }
}

pub(crate) fn start_serve(config: &Path, public: u16) -> Running {
    let child = cli(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = Running(child);
    while std::net::TcpStream::connect(("127.0.0.1", public)).is_err() {
        assert!(child.still_running(), "serve exited at start");
        assert!(Instant::now() < deadline, "serve did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_fan_out_and_sending_loses_nobody_and_flags_every_duplicate() {
    let began = Instant::now();
    let seed: u64 = std::env::var("BULLETIN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261128);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    println!("crash test: seed {seed} (set BULLETIN_CRASH_SEED to repeat another run)");

    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let (config, public) = daemon_config(
        dir.path(),
        &db,
        sink.port,
        &format!("pool_size = {POOL}"),
        &format!(
            "poll_interval_ms = 100\nlease_seconds = 60\non_expired_lease = \"resend\"\n\
             unrecorded_max = {UNRECORDED}"
        ),
    );

    let csv = dir.path().join("many.csv");
    let mut rows = String::from("email,name\n");
    for i in 0..N {
        rows.push_str(&format!("p{i:04}@example.org,Person {i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let record = dir.path().join("crash.toml");
    std::fs::write(&record, small_record("crash-test", "Crash test")).unwrap();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    run_ok(cli(&config).args(["lists", "import", "partners", csv.to_str().unwrap()]));
    run_ok(cli(&config).args(["import", record.to_str().unwrap()]));
    run_ok(cli(&config).args(["approve", "crash-test", "--by", "approver"]));
    // The test watches the ledger through the store API, as a reader beside the daemon.
    let store = bulletin::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();

    // Kill 1: `schedule fire` composes and fans out 5,000 rows in the CLI process; it is
    // killed as soon as the bulletin exists, before its fan-out has committed.
    let mut fire = Running(
        cli(&config)
            .args(["schedule", "fire", "weekday-morning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !store.bulletins(1).await.unwrap().is_empty() {
            fire.kill9();
            break;
        }
        assert!(
            fire.still_running(),
            "schedule fire exited before the test saw its bulletin"
        );
        assert!(Instant::now() < deadline, "schedule fire made no bulletin");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // What the killed process had committed, read after it died.
    let state = store.bulletins(1).await.unwrap()[0].state;
    let fanned: i64 = counts(&store).await.values().sum();
    println!(
        "kill 1 (schedule fire, during fan-out): bulletin state `{state}`, {fanned} of {N} rows fanned out"
    );
    assert_eq!(
        state,
        BulletinState::FanningOut,
        "the kill did not land during the fan-out; the test proves nothing about it"
    );
    assert!(
        fanned < N as i64,
        "the fan-out had finished before the kill"
    );

    // Kills 2..: `serve` resumes the fan-out and sends; it is killed when the ledger has
    // recorded a random number of sends (and once at a random moment just after start).
    let mut points: Vec<i64> = (0..SERVE_KILLS)
        .map(|_| rng.random_range(100..(N as i64 - 300)))
        .collect();
    points.sort();
    let early_ms: u64 = rng.random_range(50..400);
    println!("kill points: {early_ms} ms after a start, then at sent >= {points:?}");

    // After each kill: the ledger's counts, and what the server has (once it settled).
    let mut after_kill: Vec<(String, HashMap<String, i64>, usize)> = Vec::new();
    let snapshot = |label: String| {
        let store = store.clone();
        let sink = &sink;
        async move {
            let got = settled(sink).len();
            (label, counts(&store).await, got)
        }
    };

    // An early kill: a random moment right after the daemon starts listening.
    let mut serve = start_serve(&config, public);
    tokio::time::sleep(Duration::from_millis(early_ms)).await;
    serve.kill9();
    after_kill.push(snapshot(format!("kill 2 (serve, {early_ms} ms after listening)")).await);

    for (i, p) in points.iter().enumerate() {
        let mut serve = start_serve(&config, public);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if get(&counts(&store).await, "sent") >= *p {
                serve.kill9();
                break;
            }
            assert!(serve.still_running(), "serve exited by itself");
            assert!(Instant::now() < deadline, "serve sent nothing for 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        after_kill.push(snapshot(format!("kill {} (serve, at sent >= {p})", i + 3)).await);
    }

    // Messages the server accepted whose `sent` the dead process never wrote: the server's
    // count minus the ledger's sent rows (each sent row is one accepted message). Each
    // kill may add at most the pool's connections plus the outcomes waiting for the ledger.
    let mut unrecorded_before = 0i64;
    for (label, c, got) in &after_kill {
        let unrecorded = *got as i64 - get(c, "sent");
        println!(
            "{label}: ledger sent {}, sending {}, queued {}; server has {got} message(s); \
             {} accepted but not recorded by this kill",
            get(c, "sent"),
            get(c, "sending"),
            get(c, "queued"),
            unrecorded - unrecorded_before
        );
        assert!(
            unrecorded - unrecorded_before <= UNRECORDED_BOUND as i64,
            "{label}: more messages unrecorded than the pool size {POOL} plus \
             unrecorded_max {UNRECORDED}"
        );
        unrecorded_before = unrecorded;
    }

    // The last start runs until the ledger is final.
    let mut serve = start_serve(&config, public);
    let deadline = Instant::now() + Duration::from_secs(120);
    let final_counts = loop {
        let c = counts(&store).await;
        let done = get(&c, "sent") + get(&c, "failed") + get(&c, "suppressed");
        if done == N as i64 && c.values().sum::<i64>() == N as i64 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger did not become final: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    serve.kill9();
    println!("final ledger: {final_counts:?}");
    assert_eq!(
        get(&final_counts, "sent"),
        N as i64,
        "smtp-sink accepts everything, so every row ends sent: {final_counts:?}"
    );

    // Compare the server's messages with the ledger.
    let got = settled(&sink);
    let mut per: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *per.entry(r.as_str()).or_insert(0) += 1;
    }
    let expected: HashSet<String> = (0..N).map(|i| format!("p{i:04}@example.org")).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !per.contains_key(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} recipient(s) never received it: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let strangers: Vec<_> = per.keys().filter(|r| !expected.contains(**r)).collect();
    assert!(strangers.is_empty(), "unexpected recipients: {strangers:?}");
    let ambiguous: HashSet<String> = store
        .deliveries(&DeliveryFilter {
            ambiguous_only: true,
            limit: N as u32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.recipient)
        .collect();
    let duplicates: Vec<(&str, usize)> = per
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(r, n)| (*r, *n))
        .collect();
    let extra: usize = duplicates.iter().map(|(_, n)| n - 1).sum();
    println!(
        "server received {} message(s) for {} recipient(s): {} duplicate(s) over {} recipient(s); \
         {} row(s) flagged ambiguous; {} kill(s) of serve, pool size {POOL}; {:.1} s",
        got.len(),
        per.len(),
        extra,
        duplicates.len(),
        ambiguous.len(),
        SERVE_KILLS + 1,
        began.elapsed().as_secs_f64()
    );
    let unflagged: Vec<_> = duplicates
        .iter()
        .filter(|(r, _)| !ambiguous.contains(*r))
        .collect();
    assert!(
        unflagged.is_empty(),
        "duplicates not listed as ambiguous: {unflagged:?}"
    );
    assert!(
        duplicates.iter().all(|(_, n)| *n <= 1 + SERVE_KILLS + 1),
        "a recipient got it more often than there were kills: {duplicates:?}"
    );
    assert!(
        extra <= UNRECORDED_BOUND * (SERVE_KILLS + 1),
        "{extra} duplicates: more than pool size + unrecorded_max ({UNRECORDED_BOUND}) per kill"
    );
}
