//! The delivery guarantee on the paths beyond the scheduled one (issue 18): an urgent
//! notice's claims stay bounded and stop on pause and on SIGTERM, a lost or late final
//! reply multiplies no copies, and leases cannot be shorter than a send.

use crate::crash::{cli, run_ok};
use crate::harness::*;
use bulletin::domain::DeliveryStatus;
use bulletin::store::{DeliveryFilter, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn count(store: &Arc<dyn Store>, status: DeliveryStatus) -> i64 {
    store
        .count_deliveries(&DeliveryFilter {
            status: Some(status),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A daemon configuration: `smtp` lines added to `[email.smtp]` (pool of 4), `delivery`
/// lines to `[delivery]`; both HTTP servers on free loopback ports.
fn daemon_config(dir: &Path, db: &Path, smtp_port: u16, smtp: &str, delivery: &str) -> Daemon {
    let config = dir.join("bulletin.toml");
    let (admin, public) = (free_port(), free_port());
    let text = config_text(
        db,
        &Options {
            smtp_port,
            ..Default::default()
        },
    )
    .replace("pool_size = 2", &format!("pool_size = 4\n{smtp}"))
    .replace(
        "[unsubscribe]",
        &format!(
            "[admin]\nbind = \"127.0.0.1:{admin}\"\n[public]\nbind = \"127.0.0.1:{public}\"\n\n[unsubscribe]"
        ),
    )
    .replace("max_attempts = 5", &format!("max_attempts = 5\n{delivery}"));
    std::fs::write(&config, text).unwrap();
    Daemon {
        config,
        admin,
        public,
    }
}

struct Daemon {
    config: PathBuf,
    admin: u16,
    public: u16,
}

impl Daemon {
    fn start(&self) -> Child {
        let child = cli(&self.config)
            .env("BULLETIN_ADMIN_TOKEN", ADMIN_TOKEN)
            .arg("serve")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.public)).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    async fn api(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("http://127.0.0.1:{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// SIGTERM, then wait (bounded) for the exit; returns the status and the log.
fn stop(mut child: Child, within: Duration) -> (std::process::ExitStatus, String) {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The case: an urgent notice to 20,000 recipients through the admin API, the
/// relay limited to 50 messages a second, pool 4, batch 200. Before: ~19,700 rows were
/// `sending` within 1.5 s, a pause let 150 more go out, SIGTERM left ~19,000 `sending`,
/// and the next start flagged them all ambiguous and resent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_notice_to_20000_holds_few_claims_stops_on_pause_and_hands_back_on_sigterm() {
    const N: usize = 20_000;
    const BATCH: i64 = 200;
    // 1.25 x the batch (the next claim is made when a quarter is left), plus the sends
    // in flight: twice the pool of 4.
    const BOUND: i64 = BATCH + BATCH / 4 + 8;
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let d = daemon_config(
        dir.path(),
        &db,
        sink.port,
        "rate_per_second = 50",
        &format!("batch_size = {BATCH}\npoll_interval_ms = 100\nshutdown_grace_seconds = 10"),
    );
    let csv = dir.path().join("duty.csv");
    let mut rows = String::from("email\n");
    for i in 0..N {
        rows.push_str(&format!("d{i:05}@example.org\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    run_ok(cli(&d.config).args(["store", "init"]));
    run_ok(cli(&d.config).args(["lists", "create", "duty"]));
    run_ok(cli(&d.config).args(["lists", "import", "duty", csv.to_str().unwrap()]));

    let serve = d.start();
    let store = bulletin::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let notice = d
        .api(
            "/api/notices",
            json!({"title": "Venue change", "body": "Session 2 moves to Hall B.",
                   "lists": ["duty"], "severity": "urgent", "by": "duty officer"}),
        )
        .await;
    let id = notice["id"].as_i64().unwrap();

    // Sending at 50 a second: the rows claimed at any moment stay within the bound.
    let start = Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        most = most.max(count(&store, DeliveryStatus::Sending).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most <= BOUND,
        "{most} rows were claimed at once: more than {BOUND} (1.25 x batch + sends in flight)"
    );
    assert!(
        !sink.messages().is_empty(),
        "the notice did not start going out"
    );

    // A pause stops new sends at once and hands the claimed rows back.
    d.api(&format!("/api/bulletins/{id}/pause"), json!({}))
        .await;
    let at_pause = sink.messages().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sink.messages().len() - at_pause;
    assert!(
        after <= 8,
        "{after} messages went out in the 3 s after the pause (at most the 8 in flight may)"
    );
    assert_eq!(
        count(&store, DeliveryStatus::Sending).await,
        0,
        "a paused notice's claimed rows go back to the queue"
    );

    // Resumed, it sends again; SIGTERM then hands back every row not started.
    d.api(&format!("/api/bulletins/{id}/resume"), json!({}))
        .await;
    let resumed = sink.messages().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.messages().len() < resumed + 20 {
        assert!(Instant::now() < deadline, "sending did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, log) = stop(serve, Duration::from_secs(12));
    assert!(status.success(), "{log}");
    let sending = count(&store, DeliveryStatus::Sending).await;
    assert!(
        sending <= 4 + 32,
        "{sending} rows left `sending` after a graceful stop: more than pool + unrecorded_max"
    );
    assert_eq!(
        sending, 0,
        "the relay answered every send in flight in time"
    );
    let sent_before = count(&store, DeliveryStatus::Sent).await;
    assert!(
        (sent_before as usize) < N / 10,
        "{sent_before} sent: the test needs a notice stopped early"
    );

    // The next start (without the rate limit) sends the rest, each once, and none of it is
    // ambiguous: nothing was left claimed.
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("rate_per_second = 50", "");
    std::fs::write(&d.config, text).unwrap();
    let serve = d.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&store, DeliveryStatus::Sent).await < N as i64 {
        assert!(Instant::now() < deadline, "the notice was not finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = stop(serve, Duration::from_secs(12));
    assert!(status.success(), "{log}");
    assert!(!log.contains("resending an ambiguous delivery"), "{log}");
    let ambiguous = store
        .count_deliveries(&DeliveryFilter {
            ambiguous_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ambiguous, 0);
    let mut per: HashMap<String, usize> = HashMap::new();
    for m in sink.wait_for(N) {
        for r in m.recipients {
            *per.entry(r).or_default() += 1;
        }
    }
    assert_eq!(per.len(), N, "everyone got the notice");
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
}

/// A relay that takes the data, then answers only after its content filter ran: later
/// than `data_timeout_seconds`. Before: each timeout was an ordinary retry, so the reader
/// got a copy per attempt and the row ended `failed` (and `retry` sent yet another).
#[tokio::test]
async fn a_final_reply_later_than_the_data_timeout_is_resent_once_then_left_unconfirmed() {
    let relay = SmtpSink::policy_with(&[("POLICY_SLOW_DATA", "3")]);
    let t = spawn_app(Options {
        smtp_port: relay.port,
        smtp_timeout: 1,
        data_timeout: Some(1),
        extra: "lease_seconds = 60",
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", None)])
        .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let mut passes = 0;
    loop {
        let r = t.app.run_pending(None).await.unwrap();
        passes += 1;
        let row = t
            .app
            .store
            .deliveries(&DeliveryFilter::default())
            .await
            .unwrap()
            .remove(0);
        if row.status != DeliveryStatus::Retrying || passes > 8 {
            assert_eq!(
                row.status,
                DeliveryStatus::Unconfirmed,
                "{row:?} after {r:?}"
            );
            assert!(row.ambiguous, "{row:?}");
            assert_eq!(row.attempts, 2, "sent once, then resent once: {row:?}");
            assert!(
                row.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("may have been delivered")),
                "{row:?}"
            );
            break;
        }
        t.clock.advance(chrono::Duration::hours(3));
    }
    assert_eq!(
        relay.wait_for(2).len(),
        2,
        "the relay took the message twice: the first send and one resend"
    );
    // An operator's retry of failed rows does not touch it; only --unconfirmed would.
    let n = t
        .app
        .store
        .requeue(
            None,
            None,
            &[DeliveryStatus::Failed],
            bulletin::clock::Clock::now(&t.clock),
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    let metrics = t.app.metrics.render(t.app.store.as_ref()).await.unwrap();
    assert!(
        metrics.contains("bulletin_ambiguous_resends_total{channel=\"email\"} 1"),
        "{metrics}"
    );
}

/// The same relay within a longer data timeout: one copy, `sent`.
#[tokio::test]
async fn a_slow_content_filter_within_the_data_timeout_is_one_delivery() {
    let relay = SmtpSink::policy_with(&[("POLICY_SLOW_DATA", "2")]);
    let t = spawn_app(Options {
        smtp_port: relay.port,
        smtp_timeout: 1,
        data_timeout: Some(5),
        extra: "lease_seconds = 60",
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", None)])
        .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (1, 0, 0), "{r:?}");
    assert_eq!(relay.wait_for(1).len(), 1);
}

/// A lease shorter than twice the longest SMTP wait is refused, naming the figures.
#[test]
fn a_lease_shorter_than_a_send_can_take_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    let text = config_text(&dir.path().join("b.db"), &Options::default())
        .replace("max_attempts = 5", "max_attempts = 5\nlease_seconds = 50");
    std::fs::write(&config, text).unwrap();
    let out = cli(&config).arg("check-config").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("delivery.lease_seconds") && err.contains("50 s is too short"),
        "{err}"
    );
    assert!(
        err.contains("up to 30 s") && err.contains("(60 s)"),
        "{err}"
    );
}
