//! `serve --roles`: an instance runs only the parts it is given.

use crate::harness::{spawn_app, Options, SmtpSink};
use bulletin::app::Roles;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[test]
fn roles_parse_and_name_the_bad_one() {
    assert_eq!(Roles::parse("scheduler,sender,admin").unwrap(), Roles::ALL);
    assert_eq!(Roles::parse("all").unwrap(), Roles::ALL);
    let s = Roles::parse("sender").unwrap();
    assert!(s.sender && !s.scheduler && !s.admin);
    assert_eq!(s.to_string(), "sender");
    let e = Roles::parse("sender,mailer").unwrap_err();
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
        .record_firing("weekday-morning", at, "cron", at)
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
