//! `bulletin store copy`: a SQLite store that has sent a bulletin, copied by the real
//! binary into a fresh PostgreSQL database, ledger and history included; the copy is a
//! working store, and copying into a used database is refused.

use crate::harness::{spawn_app, Options, SmtpSink};
use bulletin::store::DeliveryFilter;
use bulletin::store::FiringTrigger;
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
    // A second language version (`record_versions`, then `bulletin_versions`): adding it
    // returns the record to draft, so it is approved again.
    t.import(&crate::harness::repo_path(
        "config/examples/records/lmc-2020-parallel-session-2.zh-Hans.toml",
    ))
    .await;
    t.app
        .store
        .approve_record(&record, "approver", t.clock_now())
        .await
        .unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);
    let src = &t.app.store;
    let sqlite = format!("sqlite://{}", t.dir.path().join("bulletin.db").display());
    // B, e-mailed and then removed, held the newest subscriber id: it is not handed out
    // again on PostgreSQL either.
    let b_id = src.subscribers_page(list, 0, 10).await.unwrap()[1].id;
    assert!(src.remove_subscriber(list, "b@example.org").await.unwrap());
    // A received message, kept whole (bytes that are not UTF-8 included).
    let kept = t
        .app
        .ops()
        .ingest_bounce(
            b"not a bounce \xff at all",
            bulletin::store::BounceSource::Ingest,
            None,
        )
        .await
        .unwrap();

    // A user with a personal token, and the audit entries (the import above, adding the
    // user, the token, the sign-in); a session,
    // which is not copied (people sign in again).
    let admin = bulletin::domain::Actor::bootstrap_admin();
    let pw = secrecy::SecretString::from("a long enough password".to_string());
    let ops = t.app.ops();
    ops.add_user(
        &admin,
        bulletin::ops::users::AddUserInput {
            name: "mai",
            role: "approver",
            password: &pw,
        },
    )
    .await
    .unwrap();
    let token = ops.issue_token(&admin, "mai").await.unwrap();
    let session = ops.login("mai", &pw, None).await.unwrap().unwrap();

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
    assert!(stdout.contains("bounces: 1 row(s)"), "{stdout}");
    assert!(stdout.contains("users: 1 row(s)"), "{stdout}");
    // Two record imports (the record and its zh-Hans version), the user, a token, a login.
    assert!(stdout.contains("audit: 5 row(s)"), "{stdout}");

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
    let copied = pg.record(&record).await.unwrap().unwrap();
    assert_eq!(copied.languages(), ["en", "zh-Hans"]);
    assert_eq!(
        serde_json::to_value(src.record(&record).await.unwrap()).unwrap(),
        serde_json::to_value(Some(copied)).unwrap()
    );
    assert_eq!(
        src.record_images(&record).await.unwrap().len(),
        pg.record_images(&record).await.unwrap().len()
    );
    assert_eq!(
        serde_json::to_value(src.lists().await.unwrap()).unwrap(),
        serde_json::to_value(pg.lists().await.unwrap()).unwrap()
    );
    let bulletins = pg.bulletins(10).await.unwrap();
    assert_eq!(
        bulletins[0].versions.len(),
        1,
        "the zh-Hans version is copied"
    );
    assert_eq!(
        serde_json::to_value(src.bulletins(10).await.unwrap()).unwrap(),
        serde_json::to_value(bulletins).unwrap()
    );
    assert_eq!(
        src.last_firing("weekday-morning").await.unwrap(),
        pg.last_firing("weekday-morning").await.unwrap()
    );
    assert_eq!(
        serde_json::to_value(src.bounces(None, 10).await.unwrap()).unwrap(),
        serde_json::to_value(pg.bounces(None, 10).await.unwrap()).unwrap()
    );
    assert_eq!(
        pg.bounce_raw(kept.recorded.id).await.unwrap().unwrap(),
        b"not a bounce \xff at all"
    );
    // The user, their password hash and token hash, and the audit log came along.
    assert_eq!(
        serde_json::to_value(src.users().await.unwrap()).unwrap(),
        serde_json::to_value(pg.users().await.unwrap()).unwrap()
    );
    assert_eq!(
        src.user_password_hash("mai").await.unwrap().unwrap().1,
        pg.user_password_hash("mai").await.unwrap().unwrap().1
    );
    use secrecy::ExposeSecret;
    let hash = bulletin::ops::users::secret_hash(token.token.expose_secret());
    assert_eq!(pg.user_by_token(&hash).await.unwrap().unwrap().name, "mai");
    let log = bulletin::store::AuditFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(src.audit(&log).await.unwrap().0).unwrap(),
        serde_json::to_value(pg.audit(&log).await.unwrap().0).unwrap()
    );
    let sid = bulletin::ops::users::secret_hash(session.id.expose_secret());
    assert!(pg.session(&sid, t.clock_now()).await.unwrap().is_none());
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
    assert!(err.contains("is not empty"), "{err}");
}

/// Every table and column of the schema, on both engines, is either copied by `store
/// copy` or named in its skip list: a column added by a migration and forgotten in the
/// copy fails here.
#[tokio::test]
async fn the_copy_covers_every_table_and_column_of_both_schemas() {
    use sqlx::Connection;
    use std::collections::BTreeMap;
    let copied: BTreeMap<String, Vec<String>> = bulletin::store::copy::copied_columns()
        .into_iter()
        .map(|(t, cols)| {
            let mut cols: Vec<String> = cols.into_iter().map(String::from).collect();
            cols.sort();
            (t.to_string(), cols)
        })
        .collect();
    let skipped: Vec<&str> = bulletin::store::copy::NOT_COPIED
        .iter()
        .map(|(t, _)| *t)
        .collect();
    let compare = |engine: &str, schema: BTreeMap<String, Vec<String>>| {
        for (table, cols) in &schema {
            if skipped.contains(&table.as_str()) {
                continue;
            }
            let Some(c) = copied.get(table) else {
                panic!("{engine}: table `{table}` is neither copied nor in NOT_COPIED");
            };
            assert_eq!(c, cols, "{engine}: the columns of `{table}`");
        }
        for table in copied.keys() {
            assert!(schema.contains_key(table), "{engine}: no table `{table}`");
        }
    };

    // SQLite: a fresh store's schema.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    drop(bulletin::store::open(&url).await.unwrap());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut schema = BTreeMap::new();
    for t in tables {
        let mut cols: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(&mut c)
                .await
                .unwrap();
        cols.sort();
        schema.insert(t, cols);
    }
    compare("sqlite", schema);

    // PostgreSQL: a fresh database's schema.
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    drop(bulletin::store::open(&db.url).await.unwrap());
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut schema: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, col) in rows {
        schema.entry(t).or_default().push(col);
    }
    for cols in schema.values_mut() {
        cols.sort();
    }
    compare("postgres", schema);
}

/// "Empty" means every table: a target holding only a firing was accepted and merged
/// before, and the next start queued a bulletin to the copied lists.
#[tokio::test]
async fn a_target_holding_only_a_firing_is_refused() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("b.db").display());
    drop(bulletin::store::open(&sqlite).await.unwrap());
    let pg = bulletin::store::open(&db.url).await.unwrap();
    let t0 = chrono::Utc::now();
    assert!(pg
        .record_firing("weekday-morning", t0, FiringTrigger::Cron, t0)
        .await
        .unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["store", "copy", "--from", &sqlite, "--to", &db.url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("not empty") && err.contains("firings (1)"),
        "{err}"
    );
}

/// A daemon sending from the SQLite store while it is copied would leave its later
/// sends out of the copy: the copy refuses while the daemon lock is held.
#[tokio::test]
async fn the_copy_refuses_while_a_daemon_holds_the_sqlite_store() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let sqlite = format!("sqlite://{}", path.display());
    drop(bulletin::store::open(&sqlite).await.unwrap());
    let lock = bulletin::daemon_lock::acquire(&path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["store", "copy", "--from", &sqlite, "--to", &db.url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already running"), "{err}");
    drop(lock);
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["store", "copy", "--from", &sqlite, "--to", &db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
