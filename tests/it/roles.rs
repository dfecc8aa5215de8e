//! `serve --roles`: an instance runs only the parts it is given.

use crate::harness::{spawn_app, Options, SmtpSink};
use bulletin::app::Roles;
use bulletin::store::FiringTrigger;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[test]
fn roles_parse_and_name_the_bad_one() {
    assert_eq!(Roles::parse("scheduler,sender,admin").unwrap(), Roles::ALL);
    assert_eq!(Roles::parse("all").unwrap(), Roles::ALL);
    let s = Roles::parse("sender").unwrap();
    assert!(s.sender && !s.scheduler && !s.admin);
    assert_eq!(s.to_string(), "sender");
    let e = Roles::parse("sender,mailer").unwrap_err().to_string();
    assert!(e.contains("mailer"), "{e}");
    assert!(Roles::parse("").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_only_instance_sends_queued_work_and_serves_no_http() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[("a@example.org", None), ("b@example.org", None)],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let shutdown = CancellationToken::new();
    let roles = Roles::parse("sender").unwrap();
    let serve = t.app.serve_with(roles, None, shutdown.clone());
    let watch = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sink.messages().len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the sender sent nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
    };
    let (r, ()) = tokio::join!(serve, watch);
    r.unwrap();
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_only_instance_queues_but_does_not_send() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    t.import_seed_approved().await;
    // A firing left unfinished by a previous run: the scheduler role finishes it at start.
    let at = t.clock_now();
    t.app
        .store
        .record_firing("weekday-morning", at, FiringTrigger::Cron, at)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let roles = Roles::parse("scheduler").unwrap();
    let serve = t.app.serve_with(roles, None, shutdown.clone());
    let store = t.app.store.clone();
    let watch = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.bulletins(10).await.unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no bulletin queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown.cancel();
    };
    let (r, ()) = tokio::join!(serve, watch);
    r.unwrap();
    assert!(
        sink.messages().is_empty(),
        "a scheduler-only instance never sends"
    );
    let counts = t.app.store.delivery_counts(None).await.unwrap();
    assert_eq!((counts[0].status.as_str(), counts[0].count), ("queued", 1));
}

#[test]
fn serve_once_keeps_to_its_roles() {
    use crate::crash::{cli, daemon_config, run_ok};
    use crate::harness::small_record;
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let (config, _) = daemon_config(dir.path(), &db, sink.port, "pool_size = 2", "");
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "email\na@example.org\nb@example.org\n").unwrap();
    let record = dir.path().join("r.toml");
    std::fs::write(&record, small_record("roles-once", "Roles once")).unwrap();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    run_ok(cli(&config).args(["lists", "import", "partners", csv.to_str().unwrap()]));
    run_ok(cli(&config).args(["import", record.to_str().unwrap()]));
    run_ok(cli(&config).args(["approve", "roles-once", "--by", "approver"]));
    run_ok(cli(&config).args(["schedule", "fire", "weekday-morning"]));

    let said = run_ok(cli(&config).args(["serve", "--once", "--roles", "scheduler,admin"]));
    assert!(said.contains("do not include sender"), "{said}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.messages().is_empty(), "a scheduler-only run sent mail");

    let said = run_ok(cli(&config).args(["serve", "--once", "--roles", "sender"]));
    assert!(said.contains("sent 2,"), "{said}");
    assert_eq!(sink.wait_for(2).len(), 2);
}
