//! Bad input (issue 5): every file under `tests/corpus/` goes through the real binary or
//! the real HTTP routers — records through `import`, configurations through
//! `check-config`, CSV through `lists import`, admin API bodies POSTed over loopback —
//! and must be refused with an error that names the file (or field), where in it, and
//! what is wrong, changing nothing in the store. Each file's expected message is in the
//! tables below; a file in the corpus that no table names fails the test, so the corpus
//! and the tables stay together. `accepted/` holds hostile but valid input (HTML and
//! template syntax in text) that must be stored and rendered inert.

use crate::crash::{cli, run_ok};
use crate::harness::{config_text, repo_path, Options};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Record files: `import FILE` refuses them with `FILE` followed by this.
const RECORDS: &[(&str, &str)] = &[
    (
        "bad-format.toml",
        ":6:10: format: unknown session format `telepathy` (expected one of: online, in-person, hybrid)",
    ),
    (
        "bad-id.toml",
        ":1:6: id: `../../etc/passwd` may only contain a-z, 0-9 and '-'",
    ),
    (
        "bidi-isolate-speaker.toml",
        ":15:11: highlights[1].speaker: contains the bidirectional control U+2067",
    ),
    (
        "bidi-override-title.toml",
        ":2:9: title: contains the bidirectional control U+202E",
    ),
    ("date-impossible.toml", ":5:11: held_on: invalid date"),
    (
        "date-out-of-range.toml",
        ":5:11: held_on: year 1850 is out of range (1900–2200)",
    ),
    (
        "date-with-time.toml",
        ":5:11: held_on: `2026-02-27T09:00:00` must be a date without a time",
    ),
    ("duplicate-key.toml", ":8:1: title: duplicate key"),
    ("empty.toml", ":1:1: missing field `id`"),
    (
        "enormous-summary.toml",
        ":8:11: summary: is 25001 characters long; the limit is 20000",
    ),
    (
        "enormous-title.toml",
        ":2:9: title: is 5000 characters long; the limit is 200",
    ),
    (
        "header-injection-speaker.toml",
        ":15:11: highlights[1].speaker: must be one line",
    ),
    (
        "header-injection-title.toml",
        ":2:9: title: must be one line (contains a line break)",
    ),
    ("image-missing.toml", ":15:8: images[1].file: cannot read"),
    ("invalid-utf8.toml", ":7:14: the file is not valid UTF-8"),
    ("missing-title.toml", ":1:1: missing field `title`"),
    ("not-toml.toml", ":1:18: key with no value"),
    (
        "reserved-character.toml",
        ":8:11: summary: contains the reserved character U+E000",
    ),
    (
        "quoted-date.toml",
        ":5:11: held_on: invalid type: string \"2026-02-27\", expected a TOML datetime",
    ),
    ("truncated.toml", ":9:11: invalid multi-line basic string"),
    ("unknown-key.toml", ":13:1: unknown field `speakers`"),
    (
        "wechat-title-too-long.toml",
        ":3:16: wechat_title: is 46 characters long; the limit is 32",
    ),
    (
        "wrong-type-held-on.toml",
        ":5:11: held_on: invalid type: string \"27 February 2026\", expected a TOML datetime",
    ),
    (
        "wrong-type-topics.toml",
        ":12:10: topics: invalid type: string \"Water\", expected a sequence",
    ),
];

/// Configuration files: `check-config` refuses them with `FILE` followed by this.
const CONFIGS: &[(&str, &str)] = &[
    ("cron-garbage.toml", ":18:1: schedules[1].cron: `every weekday at nine` is not a cron expression"),
    ("cron-in-the-past.toml", ":18:1: schedules[1].cron: `0 0 9 1 1 * 2001` never fires again"),
    ("cron-never-fires.toml", ":18:1: schedules[1].cron: `0 0 9 30 Feb *` never fires again"),
    ("dkim-bad-selector.toml", ":17:12: email.dkim.selector: `bulletin 2026` is not a DNS name"),
    ("dkim-domain-without-dot.toml", ":16:10: email.dkim.domain: `example` is not a domain name (no dot)"),
    ("dkim-key-is-a-device.toml", ":18:20: email.dkim.private_key_file: the key file /dev/null is a device, not a regular file"),
    ("duplicate-schedule.toml", ":23:1: schedules[2].name: schedule `weekday-morning` is defined twice"),
    ("empty.toml", ":1:1: missing field `publisher`"),
    ("enormous-publisher-name.toml", ":4:1: publisher.names[1]: is 100000 characters long; the limit is 300"),
    ("header-injection-from.toml", ":7:1: email.from: `LMEC Bulletin <bulletin@example.org>\\r\\nBcc: everyone@example.org` is not a mailbox"),
    ("invalid-utf8.toml", ":5:52: the file is not valid UTF-8"),
    ("messages-per-connection-zero.toml", ":10:1: email.smtp.messages_per_connection: must be at least 1 (leave it out for no limit)"),
    ("port-out-of-range.toml", ":12:8: email.smtp.port: invalid value: integer `70000`, expected u16"),
    ("truncated.toml", ":10:7: unclosed table"),
    ("unknown-key.toml", ":14:1: email.smtp.retries: unknown field `retries`"),
    ("unknown-tls-mode.toml", ":13:7: email.smtp.tls: unknown variant `ssl`, expected one of `none`, `starttls`, `tls`"),
    ("unsubscribe-url-not-http.toml", ":15:1: unsubscribe.base_url: `javascript:alert(1)` must start with http:// or https://"),
    ("unsubscribe-url-query.toml", ":15:1: unsubscribe.base_url: `https://news.example.org/?list=partners` must not have a query (?) or fragment (#)"),
    ("unknown-time-zone.toml", ":18:1: schedules[1].timezone: `Mars/Olympus_Mons` is not an IANA time zone"),
    ("wrong-type-port.toml", ":12:8: email.smtp.port: invalid type: string \"twenty-five\", expected u16"),
];

/// CSV files: `lists import partners FILE` reports `FILE` followed by this; no row is added.
const CSVS: &[(&str, &str)] = &[
    ("bad-email.csv", ": line 2: `not-an-address` is not a valid e-mail address"),
    ("bad-language.csv", ": line 2: language `not a language tag` is not a BCP 47 tag"),
    ("empty.csv", ": line 1: the header has no `email` column"),
    ("enormous-name.csv", ": line 2: name is 100000 characters long; the limit is 200"),
    ("header-injection-email.csv", ": line 2: `d@example.org\\r\\nBcc: everyone@example.org` contains spaces or control characters"),
    ("header-injection-name.csv", ": line 2: name must be one line (contains a line break)"),
    ("invalid-utf8.csv", ": line 2: row is not valid UTF-8"),
    ("no-email-column.csv", ": line 1: the header has no `email` column"),
    ("truncated-quote.csv", ": line 2: a quoted field is never closed: the file looks cut short"),
];

fn corpus(rel: &str) -> PathBuf {
    repo_path("tests/corpus").join(rel)
}

/// Every file directly in `tests/corpus/{dir}`.
fn files_in(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(corpus(dir))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

fn assert_table_covers(dir: &str, table: &[(&str, &str)]) {
    let named: BTreeSet<String> = table.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        files_in(dir),
        named,
        "tests/corpus/{dir} and its table differ: give each file its expected error"
    );
}

/// Runs a command; returns (success, stdout, stderr).
fn run(c: &mut std::process::Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A store with one empty list `partners`, and its configuration.
fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    std::fs::write(
        &config,
        config_text(&dir.path().join("b.db"), &Options::default()),
    )
    .unwrap();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    (dir, config)
}

fn records(config: &Path) -> Vec<Value> {
    serde_json::from_str::<Value>(&run_ok(cli(config).args(["records", "--json"])))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn subscribers(config: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_str(&run_ok(
        cli(config).args(["lists", "show", "partners", "--json"]),
    ))
    .unwrap();
    v["subscribers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_bad_record_is_refused_with_where_and_what_and_nothing_is_stored() {
    assert_table_covers("records", RECORDS);
    let (dir, config) = store();
    let mut failures = Vec::new();
    for (file, expected) in RECORDS {
        let path = corpus(&format!("records/{file}"));
        let (ok, _, err) = run(cli(&config).arg("import").arg(&path));
        let want = format!("{}{expected}", path.display());
        if ok || !err.contains(&want) || !err.contains("nothing of them was stored") {
            failures.push(format!("{file}: expected `{want}`, got: {err}"));
        }
    }
    // Larger than the 2 MiB a record may be: refused before it is parsed.
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "# padding\n".repeat(250_000)).unwrap();
    let (ok, _, err) = run(cli(&config).arg("import").arg(&huge));
    assert!(
        !ok && err.contains(&format!(
            "{}: file is 2500000 bytes; the limit is 2097152",
            huge.display()
        )),
        "{err}"
    );
    // Two files of one import with the same id: both refused, each naming the other.
    let (a, b) = (
        corpus("records/duplicate-id/first.toml"),
        corpus("records/duplicate-id/second.toml"),
    );
    let (ok, _, err) = run(cli(&config).arg("import").arg(&a).arg(&b));
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "{}: id: `corpus-record` is also the id of {} in this import",
            a.display(),
            b.display()
        )) && err.contains(&format!(
            "{}: id: `corpus-record` is also the id of {}",
            b.display(),
            a.display()
        )),
        "{err}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(records(&config), Vec::<Value>::new(), "nothing stored");
}

#[test]
fn every_bad_configuration_is_refused_with_where_and_what() {
    assert_table_covers("config", CONFIGS);
    let mut failures = Vec::new();
    for (file, expected) in CONFIGS {
        let path = corpus(&format!("config/{file}"));
        let (ok, _, err) = run(cli(&path).arg("check-config"));
        let want = format!("{}{expected}", path.display());
        if ok || !err.contains(&want) {
            failures.push(format!("{file}: expected `{want}`, got: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_csv_row_is_reported_by_line_and_nothing_is_added() {
    assert_table_covers("csv", CSVS);
    let (_dir, config) = store();
    let mut failures = Vec::new();
    for (file, expected) in CSVS {
        let path = corpus(&format!("csv/{file}"));
        let (_, out, err) = run(cli(&config)
            .args(["lists", "import", "partners"])
            .arg(&path));
        let want = format!("{}{expected}", path.display());
        if !err.contains(&want) {
            failures.push(format!("{file}: expected `{want}`, got: {err}"));
        }
        if out.contains("added") && !out.contains("0 added") {
            failures.push(format!("{file}: rows were added: {out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(subscribers(&config), Vec::<Value>::new(), "nothing added");
}

#[test]
fn html_and_template_syntax_in_text_are_stored_as_text_and_rendered_inert() {
    let (dir, config) = store();
    let record = corpus("accepted/template-syntax.toml");
    run_ok(cli(&config).arg("import").arg(&record));
    let html_file = dir.path().join("preview.html");
    run_ok(
        cli(&config)
            .args(["preview", "corpus-record", "-o"])
            .arg(&html_file),
    );
    let html = std::fs::read_to_string(&html_file).unwrap();
    let lower = html.to_lowercase();
    for bad in ["<script", "onerror", "javascript:"] {
        assert!(!lower.contains(bad), "`{bad}` survived into the HTML");
    }
    // Escaped, not interpreted: the template syntax is shown as written.
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "title escaped"
    );
    assert!(
        html.contains("{{ config.secret }}"),
        "template syntax shown, not run"
    );
    assert!(html.contains("{% for a in b %}loop{% endfor %}"));
    assert!(html.contains("&lt;b&gt;Kunming&lt;/b&gt; &amp; {{ venue }}"));
    let text = run_ok(cli(&config).args(["preview", "corpus-record", "--format", "text"]));
    assert!(
        text.starts_with(
            "Subject: {{ config.secret }} {% if true %}<script>alert(1)</script>{% endif %}\n"
        ),
        "the subject is the title as written: {text}"
    );

    // A name with markup in a CSV is a name like any other (escaped where it is shown).
    let csv = corpus("accepted/html-in-name.csv");
    let out = run_ok(cli(&config).args(["lists", "import", "partners"]).arg(&csv));
    assert!(out.contains("1 added"), "{out}");
    assert_eq!(subscribers(&config)[0]["name"], "<script>alert(1)</script>");
}

/// Admin API bodies: `(file, path, status, error code, message fragment)`; each is POSTed
/// as it is, refused, and creates nothing.
const API: &[(&str, &str, u16, &str, &str)] = &[
    (
        "notice-enormous-body.json",
        "/api/notices",
        422,
        "invalid_field",
        "body: is 24999 characters long; the limit is 10000",
    ),
    (
        "notice-header-injection-title.json",
        "/api/notices",
        422,
        "invalid_field",
        "title: must be one line (contains a line break)",
    ),
    (
        "notice-invalid-utf8.json",
        "/api/notices",
        400,
        "invalid_json",
        "title: invalid unicode code point at line 1 column 18",
    ),
    (
        "notice-not-an-object.json",
        "/api/notices",
        400,
        "invalid_json",
        "expected struct NoticeBody",
    ),
    (
        "notice-reserved-character.json",
        "/api/notices",
        422,
        "invalid_field",
        "body: contains the reserved character U+E000",
    ),
    (
        "notice-truncated.json",
        "/api/notices",
        400,
        "invalid_json",
        "lists[0]: EOF while parsing a string at line 1 column 60",
    ),
    (
        "notice-unknown-key.json",
        "/api/notices",
        400,
        "invalid_json",
        "bcc: unknown field `bcc`",
    ),
    (
        "notice-wrong-type-lists.json",
        "/api/notices",
        400,
        "invalid_json",
        "lists: invalid type: string \"partners\", expected a sequence",
    ),
    (
        "notice-wrong-type-title.json",
        "/api/notices",
        400,
        "invalid_json",
        "title: invalid type: integer `5`, expected a string",
    ),
    (
        "retry-wrong-type.json",
        "/api/deliveries/retry",
        400,
        "invalid_json",
        "delivery: invalid type: string \"forty-two\", expected i64",
    ),
];

#[tokio::test]
async fn every_bad_api_body_is_refused_by_field_over_real_http_and_creates_nothing() {
    assert_table_covers(
        "api",
        &API.iter().map(|(f, ..)| (*f, "")).collect::<Vec<_>>(),
    );
    let t = crate::harness::spawn_app(Options::default()).await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    t.import(&corpus("records/duplicate-id/first.toml")).await;
    let http = t.start_http().await;
    let mut failures = Vec::new();
    for (file, path, status, code, fragment) in API {
        let body = std::fs::read(corpus(&format!("api/{file}"))).unwrap();
        let r = http
            .post(path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        let message = v["error"]["message"].as_str().unwrap_or("");
        if s != *status || v["error"]["code"] != *code || !message.contains(fragment) {
            failures.push(format!(
                "{file}: expected {status} {code} `{fragment}`, got {s} {v}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        t.app.store.bulletins(10).await.unwrap().is_empty(),
        "no notice created"
    );
    let r = t.app.store.record("corpus-record").await.unwrap().unwrap();
    assert_eq!(
        r.state,
        bulletin::domain::RecordState::Draft,
        "not approved"
    );
}

/// Seeded mutations of the corpus and examples (byte flips, cuts, splices of TOML and
/// CSV punctuation): the record parser and the CSV reader never panic, and each refusal
/// names its place. A cheap, always-on cousin of the fuzz targets in `tests/fuzz/`.
#[test]
fn mutated_inputs_never_panic_the_parsers_and_every_refusal_is_located() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let seeds = |dirs: &[&str]| -> Vec<Vec<u8>> {
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(repo_path(d)).unwrap())
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| std::fs::read(e.path()).unwrap())
            .filter(|b| b.len() < 30_000)
            .collect()
    };
    let records = seeds(&[
        "tests/corpus/records",
        "tests/corpus/accepted",
        "config/examples/records",
    ]);
    let csvs = seeds(&["tests/corpus/csv", "config/examples"]);
    const PIECES: &[&[u8]] = &[
        b"\"",
        b"\"\"\"",
        b"'''",
        b"\n",
        b"\r\n",
        b"[",
        b"]]",
        b"[[highlights]]\n",
        b"=",
        b",",
        b"\\",
        b"\\u{0}",
        b"\xff",
        b"\xe2\x80",
        b"{{",
        b"9999-99-99",
        b"\x00",
    ];
    let mutate = |rng: &mut rand::rngs::StdRng, mut b: Vec<u8>| -> Vec<u8> {
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..=b.len());
            match rng.random_range(0..4) {
                0 => b.truncate(at),
                1 if at < b.len() => b[at] ^= 1 << rng.random_range(0..8),
                2 => {
                    let p = PIECES[rng.random_range(0..PIECES.len())];
                    b.splice(at..at, p.iter().copied());
                }
                _ => {
                    let end = rng.random_range(at..=b.len());
                    b.drain(at..end);
                }
            }
        }
        b
    };
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..3000 {
        let input = mutate(&mut rng, records[i % records.len()].clone());
        let Ok(source) = std::str::from_utf8(&input) else {
            continue;
        };
        match bulletin::domain::record::parse_record(source, "m.toml", "en") {
            Ok(_) => parsed += 1,
            Err(errors) => {
                refused += 1;
                assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    assert!(e.file == "m.toml" && !e.message.is_empty(), "{e:?}");
                    assert!(e.line.is_none_or(|l| l >= 1), "{e:?}");
                }
            }
        }
    }
    for i in 0..3000 {
        let input = mutate(&mut rng, csvs[i % csvs.len()].clone());
        let Ok(rows) = bulletin::domain::subscriber::CsvSubscribers::new(&input[..]) else {
            continue;
        };
        for row in rows {
            if let Err(e) = row {
                assert!(e.line >= 1 && !e.message.is_empty(), "{e:?}");
            }
        }
    }
    println!("mutated records: {parsed} parsed, {refused} refused");
    assert!(
        parsed > 0 && refused > 0,
        "the mutations explore both sides"
    );
}

/// Runs a command that must finish within 30 s (a read of a FIFO or of /dev/zero would
/// not); returns (success, stderr).
fn run_bounded(c: &mut std::process::Command) -> (bool, String) {
    use std::process::Stdio;
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command hung (reading a FIFO or a device?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn import_opens_regular_files_only_and_never_reads_a_fifo_or_a_device() {
    let (dir, config) = store();
    let base = std::fs::read_to_string(corpus("records/duplicate-id/first.toml")).unwrap();
    let mkfifo = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    };

    // The record file itself is a FIFO with no writer: refused at once.
    let fifo_record = dir.path().join("fifo.toml");
    mkfifo(&fifo_record);
    let (ok, err) = run_bounded(cli(&config).arg("import").arg(&fifo_record));
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a FIFO (named pipe), not a regular file",
            fifo_record.display()
        )),
        "{err}"
    );

    // An image that is a FIFO, and one that is a symlink to /dev/zero.
    let fifo_image = dir.path().join("pipe.png");
    mkfifo(&fifo_image);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.png")).unwrap();
    for (name, image, what) in [
        (
            "a.toml",
            "pipe.png",
            "is a FIFO (named pipe), not a regular file",
        ),
        ("b.toml", "zero.png", "is a device, not a regular file"),
    ] {
        let rec = dir.path().join(name);
        std::fs::write(
            &rec,
            format!("{base}\n[[images]]\nfile = \"{image}\"\nalt = \"A photo\"\n"),
        )
        .unwrap();
        let line = base.lines().count() + 3;
        let (ok, err) = run_bounded(cli(&config).arg("import").arg(&rec));
        assert!(!ok, "{err}");
        assert!(
            err.contains(&format!("{}:{line}:8: images[1].file: ", rec.display()))
                && err.contains(what),
            "{err}"
        );
    }
    assert_eq!(records(&config), Vec::<Value>::new(), "nothing stored");
}

#[test]
fn a_session_date_far_from_today_is_imported_with_a_warning() {
    let (dir, config) = store();
    let base = std::fs::read_to_string(corpus("records/duplicate-id/first.toml")).unwrap();
    let held_on = base.lines().position(|l| l.starts_with("held_on")).unwrap() + 1;
    let old = dir.path().join("old.toml");
    let re = with_held_on(&base, "held_on = 2001-05-04");
    std::fs::write(&old, re).unwrap();
    let out = cli(&config).arg("import").arg(&old).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {}:{held_on}: held_on: 2001-05-04 is more than five years ago",
            old.display()
        )),
        "{err}"
    );
    assert_eq!(records(&config).len(), 1, "imported all the same");
}

/// `base` with its `held_on = ...` line replaced by `line`.
fn with_held_on(base: &str, line: &str) -> String {
    base.lines()
        .map(|l| if l.starts_with("held_on") { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}
