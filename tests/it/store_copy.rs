//! `bulletin store copy`: a SQLite store that has sent a bulletin, copied by the real
//! binary into a fresh PostgreSQL database, ledger and history included; the copy is a
//! working store, and copying into a used database is refused.

use crate::harness::{spawn_app, Options, SmtpSink};
use bulletin::store::DeliveryFilter;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_everything_to_postgres() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    let list = t
        .list_with(
            "partners",
            &[("a@example.org", Some("A")), ("b@example.org", None)],
        )
        .await;
    let record = t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);
    let src = &t.app.store;
    let sqlite = format!("sqlite://{}", t.dir.path().join("bulletin.db").display());
    // B, e-mailed and then removed, held the newest subscriber id: it is not handed out
    // again on PostgreSQL either.
    let b_id = src.subscribers_page(list, 0, 10).await.unwrap()[1].id;
    assert!(src.remove_subscriber(list, "b@example.org").await.unwrap());

    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["store", "copy", "--from", &sqlite, "--to", &db.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("deliveries: 2 row(s)"), "{stdout}");
    assert!(stdout.contains("attempts: 2 row(s)"), "{stdout}");

    let pg = bulletin::store::open(&db.url).await.unwrap();
    let all = DeliveryFilter::default();
    let (a, b) = (
        src.deliveries(&all).await.unwrap(),
        pg.deliveries(&all).await.unwrap(),
    );
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap(),
        "the ledger is the same"
    );
    let ids: Vec<i64> = a.iter().map(|d| d.id).collect();
    assert_eq!(
        src.attempts(&ids).await.unwrap().len(),
        pg.attempts(&ids).await.unwrap().len()
    );
    assert_eq!(
        serde_json::to_value(src.record(&record).await.unwrap()).unwrap(),
        serde_json::to_value(pg.record(&record).await.unwrap()).unwrap()
    );
    assert_eq!(
        src.record_images(&record).await.unwrap().len(),
        pg.record_images(&record).await.unwrap().len()
    );
    assert_eq!(
        serde_json::to_value(src.lists().await.unwrap()).unwrap(),
        serde_json::to_value(pg.lists().await.unwrap()).unwrap()
    );
    assert_eq!(
        serde_json::to_value(src.bulletins(10).await.unwrap()).unwrap(),
        serde_json::to_value(pg.bulletins(10).await.unwrap()).unwrap()
    );
    assert_eq!(
        src.last_firing("weekday-morning").await.unwrap(),
        pg.last_firing("weekday-morning").await.unwrap()
    );
    // Unsubscribe links already sent stay valid: the same signing key.
    assert_eq!(
        pg.setting_or_insert("unsubscribe_key", "new")
            .await
            .unwrap(),
        src.setting_or_insert("unsubscribe_key", "new")
            .await
            .unwrap()
    );
    // The copy is a working store: new rows get fresh ids.
    let name = bulletin::domain::ListName::parse("later").unwrap();
    assert!(pg.create_list(&name, "", t.clock_now()).await.unwrap());
    assert_eq!(pg.lists().await.unwrap().len(), 2);
    let c =
        bulletin::domain::subscriber::NewSubscriber::parse("c@example.org", None, None).unwrap();
    pg.upsert_subscribers(list, &[c], t.clock_now())
        .await
        .unwrap();
    let c_id = pg.subscribers_page(list, 0, 10).await.unwrap()[1].id;
    assert!(c_id > b_id, "C got {c_id}, the removed B had {b_id}");

    // A database in use is never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["store", "copy", "--from", &sqlite, "--to", &db.url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds"), "{err}");
}
