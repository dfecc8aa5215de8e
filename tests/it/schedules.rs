//! Schedules with an injected clock: cron in a time zone, each firing once, catch-up
//! within the window, digests.

use crate::harness::*;
use bulletin::domain::DeliveryStatus;
use bulletin::scheduler::FireOutcome;
use bulletin::store::DeliveryFilter;
use chrono::{TimeZone, Utc};

#[tokio::test]
async fn cron_fires_in_its_time_zone_once_per_fire_time() {
    let t = spawn_app(Options::default()).await;
    t.list_with(
        "partners",
        &[("a@example.org", None), ("b@example.org", None)],
    )
    .await;
    let id = t
        .import(&t.write_record("r.toml", &small_record("r1", "One")))
        .await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();

    // Monday 2026-03-02 00:00 UTC → 09:00 Asia/Shanghai is 01:00 UTC.
    let start = t.clock_now();
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 0, 59, 59).unwrap());
    assert!(
        t.app
            .scheduler
            .tick(start, t.clock_now())
            .await
            .unwrap()
            .is_empty(),
        "fired early"
    );
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap());
    let fired = t.app.scheduler.tick(start, t.clock_now()).await.unwrap();
    assert!(
        matches!(&fired[..], [FireOutcome::Fired { bulletins, deliveries: 2 }] if bulletins.len() == 1),
        "{fired:?}"
    );

    // The same fire time again (a second tick, another instance, a restart): nothing happens.
    let again = t.app.scheduler.tick(start, t.clock_now()).await.unwrap();
    assert_eq!(again, vec![FireOutcome::AlreadyFired]);
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "no duplicate ledger rows");
    assert_eq!(
        t.app.store.last_firing("weekday-morning").await.unwrap(),
        Some(t.clock_now())
    );

    // Next day's firing finds nothing new to send.
    let before = t.clock_now();
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 3, 1, 0, 0).unwrap());
    let next = t.app.scheduler.tick(before, t.clock_now()).await.unwrap();
    assert_eq!(
        next,
        vec![FireOutcome::Fired {
            bulletins: vec![],
            deliveries: 0
        }]
    );
}

#[tokio::test]
async fn missed_firings_are_caught_up_once_within_the_window() {
    let t = spawn_app(Options::default()).await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    // A first firing on Monday.
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap());
    t.app
        .scheduler
        .tick(
            Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
            t.clock_now(),
        )
        .await
        .unwrap();
    let id = t
        .import(&t.write_record("r.toml", &small_record("r1", "One")))
        .await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();

    // Down until Tuesday 01:30 UTC: Tuesday's 01:00 firing is 30 min old, inside the 60 min window.
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 3, 1, 30, 0).unwrap());
    let out = t.app.scheduler.catch_up().await.unwrap();
    assert!(
        matches!(&out[..], [FireOutcome::Fired { deliveries: 1, .. }]),
        "{out:?}"
    );
    assert_eq!(
        t.app.store.last_firing("weekday-morning").await.unwrap(),
        Some(Utc.with_ymd_and_hms(2026, 3, 3, 1, 0, 0).unwrap())
    );
    // A second start does not fire it again.
    assert!(t.app.scheduler.catch_up().await.unwrap().is_empty());

    // Down for days: the latest missed firing is outside the window, so nothing is fired.
    t.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 6, 5, 0, 0).unwrap());
    assert!(t.app.scheduler.catch_up().await.unwrap().is_empty());
}

#[tokio::test]
async fn digest_mode_sends_one_bulletin_with_every_new_record() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        mode: "digest",
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    for (id, title) in [("d1", "First session"), ("d2", "Second session")] {
        let id = t
            .import(&t.write_record(&format!("{id}.toml"), &small_record(id, title)))
            .await;
        t.app
            .store
            .approve_record(&id, "approver", t.clock_now())
            .await
            .unwrap();
    }
    let out = t.app.fire_now("weekday-morning").await.unwrap();
    assert!(
        matches!(&out, FireOutcome::Fired { bulletins, deliveries: 1 } if bulletins.len() == 1),
        "{out:?}"
    );
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);
    let m = &sink.wait_for(1)[0];
    let msg = m.parsed();
    assert_eq!(
        msg.subject(),
        Some("Lancang-Mekong Environmental Cooperation Center: 2 session reports")
    );
    let text = msg.body_text(0).unwrap();
    assert!(text.contains("First session") && text.contains("Second session"));
}

#[tokio::test]
async fn a_missing_list_leaves_the_firing_pending_and_publishes_nothing() {
    let t = spawn_app(Options::default()).await;
    let id = t
        .import(&t.write_record("r.toml", &small_record("r1", "One")))
        .await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    let e = t
        .app
        .fire_now("weekday-morning")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("list `partners`, which does not exist"), "{e}");
    let r = t.app.store.record("r1").await.unwrap().unwrap();
    assert_eq!(
        r.state,
        bulletin::domain::RecordState::Approved,
        "nothing was published"
    );
    assert_eq!(t.app.store.unfinished_firings().await.unwrap().len(), 1);

    // Once the list exists, the pending firing is finished by the next run.
    t.list_with("partners", &[("a@example.org", None)]).await;
    t.app.run_pending(None).await.unwrap();
    assert!(t.app.store.unfinished_firings().await.unwrap().is_empty());
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].status,
        DeliveryStatus::Retrying,
        "port 25 has no server here: queued for retry, not lost"
    );
}
