//! Urgent notices: through the admin API and the CLI, once per key or content, ahead of
//! scheduled work, to a real SMTP server; and `serve` running it all until told to stop.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::Command;

const PEOPLE: &[(&str, Option<&str>)] = &[
    ("li.mingyu@example.org", Some("李明宇")),
    ("press@example.com", None),
];

fn notice_body() -> Value {
    json!({
        "title": "Venue change for Session 2",
        "body": "Session 2 moves to **Hall B** at 14:00.",
        "severity": "urgent",
        "lists": ["partners"],
        "key": "venue-change-1",
        "by": "duty officer",
    })
}

#[tokio::test]
async fn a_notice_goes_once_and_ahead_of_scheduled_work() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        extra: "batch_size = 2",
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    // A scheduled bulletin is queued first.
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let http = t.start_http().await;

    // Bad input is refused by field, and creates nothing.
    for (body, want) in [
        (
            json!({"title": "t", "body": "b", "lists": []}),
            "invalid_field",
        ),
        (
            json!({"title": "", "body": "b", "lists": ["partners"]}),
            "invalid_field",
        ),
        (
            json!({"title": "t", "body": "b", "lists": ["partners"], "severity": "loud"}),
            "invalid_field",
        ),
        (
            json!({"title": "t", "body": "b", "lists": ["nobody"]}),
            "unknown_list",
        ),
        (json!({"title": "t", "lists": ["partners"]}), "invalid_json"),
    ] {
        let r = http.post("/api/notices").json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], want, "{body}: {v}");
        assert!(matches!(status, 400 | 422), "{body}: {status}");
    }
    assert_eq!(t.app.store.bulletins(10).await.unwrap().len(), 1);

    let r = http
        .post("/api/notices")
        .json(&notice_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(first["deliveries"], 2);
    let id = first["id"].as_i64().unwrap();

    // The same key again, and the same content without a key: the first notice's id.
    let r = http
        .post("/api/notices")
        .json(&notice_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["id"].as_i64(), &again["created"]),
        (Some(id), &json!(false))
    );
    let mut same = notice_body();
    same.as_object_mut().unwrap().remove("key");
    let v: Value = http
        .post("/api/notices")
        .json(&same)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((v["id"].as_i64(), &v["created"]), (Some(id), &json!(false)));
    assert_eq!(t.app.store.bulletins(10).await.unwrap().len(), 2);
    // The API only queued it.
    assert!(sink.messages().is_empty());

    // One batch of two: the notice's rows go before the bulletin queued earlier.
    let r = t.app.dispatcher.run_once().await.unwrap();
    assert_eq!(r.sent, 2, "{r:?}");
    let got = sink.wait_for(2);
    for m in &got {
        let msg = m.parsed();
        assert_eq!(msg.subject(), Some("[Urgent] Venue change for Session 2"));
        assert!(msg
            .body_html(0)
            .unwrap()
            .contains("<strong>Hall B</strong>"));
        assert!(msg
            .body_text(0)
            .unwrap()
            .starts_with("[URGENT] Venue change for Session 2"));
        let lu = msg.header_raw("List-Unsubscribe").unwrap();
        assert!(lu.contains("/unsubscribe/"), "{lu}");
    }
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);
    let v: Value = http
        .get(&format!("/api/bulletins/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["kind"], "notice");
    assert_eq!(v["state"], "done");
    assert_eq!(v["deliveries"]["by_channel"]["email"]["sent"], 2);
}

fn bulletin_cli(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bulletin"));
    c.env("BULLETIN_CONFIG", config)
        .env_remove("BULLETIN_ADMIN_TOKEN")
        .env("BULLETIN_UNSUBSCRIBE_SECRET", "0123456789abcdef0123");
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn cli_notice_send_is_idempotent_and_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    std::fs::write(
        &config,
        config_text(&dir.path().join("b.db"), &Options::default()),
    )
    .unwrap();
    let body = dir.path().join("body.md");
    std::fs::write(&body, "Registration closes **today**.").unwrap();
    run_ok(bulletin_cli(&config).args(["store", "init"]));
    run_ok(bulletin_cli(&config).args(["lists", "create", "partners"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "a@example.org"]));

    let send = |key: &str| {
        let out = run_ok(bulletin_cli(&config).args([
            "notice",
            "send",
            "--title",
            "Registration closes",
            "--body-file",
            body.to_str().unwrap(),
            "--lists",
            "partners",
            "--key",
            key,
            "--json",
        ]));
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let first = send("reg-1");
    assert_eq!(first["created"], true);
    assert_eq!(first["deliveries"], 1);
    let second = send("reg-1");
    assert_eq!(second["created"], false);
    assert_eq!(second["id"], first["id"]);

    let out = bulletin_cli(&config)
        .args([
            "notice",
            "send",
            "--title",
            "Other",
            "--body-file",
            body.to_str().unwrap(),
            "--lists",
            "partners",
            "--severity",
            "loud",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("severity: unknown severity `loud`"), "{err}");
    let out = bulletin_cli(&config)
        .args([
            "notice",
            "send",
            "--title",
            "Other",
            "--body-file",
            "/nonexistent/body.md",
            "--lists",
            "partners",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--body-file /nonexistent/body.md"));

    // `status` sums it up: the notice is in progress, one row queued.
    let out = run_ok(bulletin_cli(&config).args(["status", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ledger"]["queued"], 1, "{v}");
    assert_eq!(v["bulletins_in_progress"][0]["kind"], "notice");
    assert_eq!(v["bulletins_in_progress"][0]["remaining"], 1);
}

#[tokio::test]
async fn serve_runs_the_servers_and_sends_what_the_api_queued_until_cancelled() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let drive = async {
        let r = client
            .post(format!("{admin_url}/api/notices"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&notice_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        // The dispatcher, woken by the API, sends without anyone calling run_pending.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.messages().len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(sink.messages().len(), 2);
        shutdown.cancel();
    };
    let serve = t.app.serve_on(admin, public, shutdown.clone());
    let (served, ()) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(serve, drive)
    })
    .await
    .expect("serve stops when cancelled");
    served.unwrap();
    // Stopped: the admin server no longer answers.
    assert!(client
        .get(format!("{admin_url}/healthz"))
        .send()
        .await
        .is_err());
}

/// A configuration file for the real binary's `serve`, with both HTTP servers on free
/// loopback ports; returns it and the public port.
fn daemon_config(dir: &std::path::Path, smtp_port: u16) -> (std::path::PathBuf, u16) {
    daemon_config_with(dir, smtp_port, "")
}

/// The same, with extra `[delivery]` lines.
fn daemon_config_with(
    dir: &std::path::Path,
    smtp_port: u16,
    delivery: &str,
) -> (std::path::PathBuf, u16) {
    let config = dir.join("bulletin.toml");
    let (admin, public) = (free_port(), free_port());
    let text = config_text(
        &dir.join("b.db"),
        &Options {
            smtp_port,
            ..Default::default()
        },
    )
    .replace(
        "[unsubscribe]",
        &format!(
            "[admin]\nbind = \"127.0.0.1:{admin}\"\n[public]\nbind = \"127.0.0.1:{public}\"\n\n[unsubscribe]"
        ),
    )
    .replace(
        "max_attempts = 5",
        &format!("max_attempts = 5\npoll_interval_ms = 200\n{delivery}"),
    );
    std::fs::write(&config, text).unwrap();
    (config, public)
}

/// Starts `bulletin serve` and waits until its public server listens.
fn start_daemon(config: &std::path::Path, public: u16) -> std::process::Child {
    let child = bulletin_cli(config)
        .env("BULLETIN_ADMIN_TOKEN", ADMIN_TOKEN)
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", public)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// SIGTERM, then the exit status and the log.
fn stop_daemon(child: std::process::Child) -> (std::process::ExitStatus, String) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, public) = daemon_config(dir.path(), 25);
    let child = start_daemon(&config, public);
    let (status, log) = stop_daemon(child);
    assert!(status.success(), "{log}");
    assert!(log.contains("bulletin daemon stopped"), "{log}");
    assert!(!log.contains(ADMIN_TOKEN), "the token is never logged");
}

#[test]
fn cli_notice_follows_delivery_by_the_running_daemon_to_the_end() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (config, public) = daemon_config(dir.path(), sink.port);
    run_ok(bulletin_cli(&config).args(["store", "init"]));
    run_ok(bulletin_cli(&config).args(["lists", "create", "partners"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "a@example.org"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "b@example.org"]));
    let body = dir.path().join("body.md");
    std::fs::write(&body, "The venue moves to **Hall B**.").unwrap();
    let daemon = start_daemon(&config, public);

    // No --json: the command waits, showing progress, until the daemon has sent it all.
    let mut cli = bulletin_cli(&config)
        .args([
            "notice",
            "send",
            "--title",
            "Venue change",
            "--body-file",
            body.to_str().unwrap(),
            "--lists",
            "partners",
            "--severity",
            "urgent",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cli.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = cli.kill();
            panic!("notice send did not finish: the daemon did not deliver it");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("notice 1 queued for 2 recipient(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("notice 1: sent 2, failed 0, suppressed 0"),
        "{stdout}"
    );
    let got = sink.wait_for(2);
    assert_eq!(got.len(), 2);
    let (status, log) = stop_daemon(daemon);
    assert!(status.success(), "{log}");
}

#[test]
fn sigterm_mid_send_leaves_every_row_resolvable_and_a_restart_finishes_the_rest() {
    const N: usize = 2000;
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (config, public) = daemon_config(dir.path(), sink.port);
    let csv = dir.path().join("many.csv");
    let mut text = String::from("email,name\n");
    for i in 0..N {
        text.push_str(&format!("p{i:04}@example.org,Person {i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    run_ok(bulletin_cli(&config).args(["store", "init"]));
    run_ok(bulletin_cli(&config).args(["lists", "create", "partners"]));
    run_ok(bulletin_cli(&config).args(["lists", "import", "partners", csv.to_str().unwrap()]));
    run_ok(bulletin_cli(&config).args(["import", repo_path(SEED_RECORD).to_str().unwrap()]));
    run_ok(bulletin_cli(&config).args([
        "approve",
        "lmc-2020-parallel-session-2",
        "--by",
        "approver",
    ]));
    run_ok(bulletin_cli(&config).args(["schedule", "fire", "weekday-morning"]));

    let daemon = start_daemon(&config, public);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sink.messages().len() < 50 {
        assert!(std::time::Instant::now() < deadline, "nothing was sent");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (status, log) = stop_daemon(daemon);
    assert!(status.success(), "{log}");

    let ledger = |config: &std::path::Path| -> Value {
        serde_json::from_str(&run_ok(bulletin_cli(config).args(["status", "--json"]))).unwrap()
    };
    let v = ledger(&config);
    let sent = v["ledger"]["sent"].as_u64().unwrap() as usize;
    assert!(
        sent < N,
        "the daemon finished before SIGTERM; the test proves nothing"
    );
    assert_eq!(v["ledger"]["sending"], 0, "nothing left in flight: {v}");
    assert_eq!(
        sent + v["ledger"]["queued"].as_u64().unwrap() as usize,
        N,
        "every row is sent or still queued: {v}"
    );
    // Every row marked sent reached the server, and nothing else did.
    assert_eq!(sink.wait_for(sent).len(), sent);

    // The next start sends the rest: every recipient exactly once.
    let daemon = start_daemon(&config, public);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while ledger(&config)["ledger"]["sent"].as_u64().unwrap() < N as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restart did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, log) = stop_daemon(daemon);
    assert!(status.success(), "{log}");
    let got = sink.wait_for(N);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.recipients.clone()).collect();
    rcpts.sort();
    let before = rcpts.len();
    rcpts.dedup();
    assert_eq!((before, rcpts.len()), (N, N), "no one missed, no one twice");
}

#[test]
fn sigterm_abandons_a_send_stuck_past_the_grace_period_and_the_next_start_resolves_it() {
    // The server takes 4 s to answer DATA; the daemon may wait 1 s after SIGTERM.
    let port = free_port();
    let slow = SmtpSink::start_on(port, &["-w", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let (config, public) = daemon_config_with(
        dir.path(),
        port,
        "shutdown_grace_seconds = 1\nlease_seconds = 60",
    );
    run_ok(bulletin_cli(&config).args(["store", "init"]));
    run_ok(bulletin_cli(&config).args(["lists", "create", "partners"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "a@example.org"]));
    run_ok(bulletin_cli(&config).args(["import", repo_path(SEED_RECORD).to_str().unwrap()]));
    run_ok(bulletin_cli(&config).args([
        "approve",
        "lmc-2020-parallel-session-2",
        "--by",
        "approver",
    ]));
    run_ok(bulletin_cli(&config).args(["schedule", "fire", "weekday-morning"]));
    let ledger = |config: &std::path::Path| -> Value {
        serde_json::from_str(&run_ok(bulletin_cli(config).args(["status", "--json"]))).unwrap()
    };

    let daemon = start_daemon(&config, public);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ledger(&config)["ledger"]["sending"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the send never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let asked = std::time::Instant::now();
    let (status, log) = stop_daemon(daemon);
    let took = asked.elapsed();
    assert!(status.success(), "{log}");
    assert!(
        took < std::time::Duration::from_millis(3500),
        "waited {took:?}: longer than the grace period, as long as the server"
    );
    assert!(log.contains("abandoned"), "{log}");
    let v = ledger(&config);
    assert_eq!(
        v["ledger"]["sending"], 1,
        "left in flight for the next start: {v}"
    );

    // The next start takes the row over at once (under the daemon lock nobody else can
    // be sending it), without waiting for its 60 s lease: resent and flagged ambiguous.
    drop(slow);
    let sink = SmtpSink::start_on(port, &[]);
    let daemon = start_daemon(&config, public);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ledger(&config)["ledger"]["sent"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "not resent after restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, log) = stop_daemon(daemon);
    assert!(status.success(), "{log}");
    assert_eq!(sink.wait_for(1).len(), 1);
    // The takeover and the resend are told, naming the process that held the row.
    assert!(log.contains("taking them over now"), "{log}");
    assert!(log.contains("took over rows whose lease expired"), "{log}");
    assert!(
        log.contains("resending an ambiguous delivery") && log.contains("its claim by"),
        "{log}"
    );
    let rows: Value = serde_json::from_str(&run_ok(bulletin_cli(&config).args([
        "deliveries",
        "--ambiguous",
        "--json",
    ])))
    .unwrap();
    assert_eq!(rows[0]["status"], "sent", "{rows}");
    assert_eq!(rows[0]["ambiguous"], true, "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_queued_mid_pass_goes_ahead_of_the_rest_of_the_batch() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        extra: "batch_size = 400",
        ..Default::default()
    })
    .await;
    let people: Vec<(String, Option<&str>)> = (0..400)
        .map(|i| (format!("reader{i:03}@example.org"), None))
        .collect();
    let people: Vec<(&str, Option<&str>)> = people.iter().map(|(e, n)| (e.as_str(), *n)).collect();
    t.list_with("partners", &people).await;
    t.list_with("duty", &[("duty@example.org", None)]).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    // One pass claims all 400 rows; a notice is queued once some are out.
    let dispatcher = t.app.dispatcher.clone();
    let pass = tokio::spawn(async move { dispatcher.run_once().await.unwrap() });
    assert!(
        sink.wait_for(20).len() >= 20,
        "the bulletin did not start sending"
    );
    let req = bulletin::notice::NoticeRequest::parse(
        "Venue change",
        "Session 2 moves to Hall B.",
        "urgent",
        &["duty".to_string()],
        "duty officer",
        None,
    )
    .unwrap();
    let queued = t.app.notices.send(&req).await.unwrap();
    assert!(queued.created);
    let report = pass.await.unwrap();

    // The same pass sent it, well before the batch it interrupted was done.
    assert_eq!((report.claimed, report.sent), (401, 401));
    let got = sink.messages();
    let at = got
        .iter()
        .position(|m| m.recipients == ["duty@example.org"])
        .expect("the notice reached the server");
    let after = got.len() - 1 - at;
    println!(
        "the notice arrived as message {} of {}; {after} bulletin messages after it",
        at + 1,
        got.len()
    );
    assert!(
        after >= 100,
        "only {after} of the batch's messages came after the notice"
    );
}

/// `notice send --json --wait` follows delivery to the end, prints the final counts, and
/// exits with the documented code 3 when a delivery failed (here a 550 for `hard1@`).
#[test]
fn cli_notice_send_waits_with_json_and_exits_3_when_a_delivery_failed() {
    let smtp = SmtpSink::policy();
    let dir = tempfile::tempdir().unwrap();
    let (config, public) = daemon_config(dir.path(), smtp.port);
    run_ok(bulletin_cli(&config).args(["store", "init"]));
    run_ok(bulletin_cli(&config).args(["lists", "create", "partners"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "a@example.org"]));
    run_ok(bulletin_cli(&config).args(["lists", "add", "partners", "hard1@example.org"]));
    let body = dir.path().join("body.md");
    std::fs::write(&body, "The venue moves to **Hall B**.").unwrap();
    let daemon = start_daemon(&config, public);
    let mut cli = bulletin_cli(&config)
        .args([
            "notice",
            "send",
            "--title",
            "Venue change",
            "--body-file",
            body.to_str().unwrap(),
            "--lists",
            "partners",
            "--json",
            "--wait",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cli.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = cli.kill();
            panic!("notice send --json --wait did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = cli.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["final"]["sent"], 1, "{v}");
    assert_eq!(v["final"]["failed"], 1, "{v}");
    assert!(
        stderr.contains("1 deliveries of notice 1 failed"),
        "{stderr}"
    );
    let (status, log) = stop_daemon(daemon);
    assert!(status.success(), "{log}");

    // --wait without --json is refused by the parser (it waits anyway).
    let out = bulletin_cli(&config)
        .args([
            "notice",
            "send",
            "--title",
            "T",
            "--body-file",
            "-",
            "--lists",
            "partners",
            "--wait",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
