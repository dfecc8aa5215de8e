//! PostgreSQL at scale: the claim walks its indexes in claim order (no sort over the
//! ledger, whatever its length), and an idle instance is woken by work another instance
//! queued (LISTEN/NOTIFY) well before its poll.

use crate::harness::{build_app, repo_path, Options, SmtpSink, SEED_RECORD};
use bulletin::clock::{Clock, ManualClock};
use bulletin::domain::subscriber::NewSubscriber;
use bulletin::domain::DeliveryStatus;
use bulletin::domain::ListName;
use bulletin::scheduler::FireOutcome;
use bulletin::store::PostgresStore;
use chrono::{TimeZone, Utc};
use sqlx::{Connection, Row};
use std::time::{Duration, Instant};

/// Every node type in an EXPLAIN (FORMAT JSON) plan, with the relation it reads if any.
fn nodes(plan: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    match plan {
        serde_json::Value::Object(m) => {
            if let Some(t) = m.get("Node Type").and_then(|t| t.as_str()) {
                let rel = m
                    .get("Index Name")
                    .or_else(|| m.get("Relation Name"))
                    .and_then(|r| r.as_str())
                    .map(str::to_string);
                out.push((t.to_string(), rel));
            }
            m.values().for_each(|v| nodes(v, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| nodes(v, out)),
        _ => {}
    }
}

async fn plan_of(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    binds: &[Bind],
) -> Vec<(String, Option<String>)> {
    let explain = format!("EXPLAIN (FORMAT JSON) {sql}");
    let mut q = sqlx::query(&explain);
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(*v),
            Bind::S(v) => q.bind(v.clone()),
        };
    }
    let row = q.fetch_one(&mut *conn).await.unwrap();
    // `json` is text on the wire.
    let text: String = row.try_get_unchecked(0).unwrap();
    let mut out = Vec::new();
    nodes(&serde_json::from_str(&text).unwrap(), &mut out);
    out
}

enum Bind {
    I(i64),
    S(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_walk_their_index_with_no_sort_over_the_ledger() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    // The schema, by the store's own migrations.
    drop(PostgresStore::connect(&db.url, None).await.unwrap());
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // 20,000 rows queued (due at spread times), 2,000 being sent under leases, and a
    // paused bulletin's rows, as a large send leaves them.
    for (state, rows) in [("sending", 22_000), ("paused", 3_000)] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bulletins (kind, language, subject, html, text, lists, channels, state, created_at)
             VALUES ('record', 'en', 's', 'h', 't', 'partners', 'email', $1, 0) RETURNING id",
        )
        .bind(state)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO deliveries (bulletin_id, channel, recipient, status, next_attempt_at,
             lease_until, claimed_by, created_at, updated_at)
             SELECT $1, 'email', 'r' || g || '@example.org',
                    CASE WHEN g <= 2000 THEN 'sending' ELSE 'queued' END, g % 5000,
                    CASE WHEN g <= 2000 THEN 1000 + g END,
                    CASE WHEN g <= 2000 THEN 'other:1/1' END, 0, 0
             FROM generate_series(1, $2) AS g",
        )
        .bind(id)
        .bind(rows)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    let [expired, ready] = PostgresStore::claim_statements();
    let lease = || Bind::I(1_000_000);
    let now = || Bind::I(500_000);
    let me = || Bind::S("me:1/1".into());
    // Planned for these values, and as the generic plan a prepared statement may switch to.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let cases = [
            (
                "expired",
                expired,
                vec![now(), me(), Bind::I(500)],
                "deliveries_leased",
            ),
            (
                "ready",
                ready,
                vec![lease(), now(), now(), me(), Bind::I(i64::MIN), Bind::I(500)],
                "deliveries_ready",
            ),
        ];
        for (name, sql, binds, index) in cases {
            let plan = plan_of(&mut conn, sql, &binds).await;
            assert!(
                !plan.iter().any(|(t, _)| t.contains("Sort")),
                "the {name} claim sorts ({mode}): {plan:?}"
            );
            assert!(
                plan.iter().any(|(_, r)| r.as_deref() == Some(index)),
                "the {name} claim does not walk {index} ({mode}): {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|(t, r)| t == "Seq Scan" && r.as_deref() == Some("deliveries")),
                "the {name} claim reads the whole ledger ({mode}): {plan:?}"
            );
        }
    }
    // The statement these replaced does sort here: the check tells them apart.
    sqlx::query("SET plan_cache_mode = auto")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan = plan_of(
        &mut conn,
        OLD_CLAIM,
        &[Bind::I(500_000), Bind::S("me:1/1".into()), Bind::I(500)],
    )
    .await;
    assert!(plan.iter().any(|(t, _)| t == "Sort"), "{plan:?}");
    // And the statements claim what they should: 500 rows, in claim order.
    let store = PostgresStore::connect(&db.url, None).await.unwrap();
    let t = bulletin::clock::from_millis(500_000);
    let claimed = bulletin::store::Store::claim_due(
        &store,
        t,
        500,
        Duration::from_secs(60),
        bulletin::config::ExpiredLease::Resend,
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 500);
    assert!(claimed
        .iter()
        .all(|c| c.taken_from.as_deref() == Some("other:1/1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_instance_wakes_on_work_another_instance_queued() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let sink = SmtpSink::start();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap());
    // Polls a minute apart: only a notification can wake the idle instance in time.
    let o = Options {
        smtp_port: sink.port,
        store_url: Some(db.url.clone()),
        extra: "poll_interval_ms = 60000\nurgent_poll_ms = 60000",
        ..Default::default()
    };
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = build_app(da.path(), &o, &clock).await;
    let b = build_app(db_dir.path(), &o, &clock).await;
    let now = clock.now();
    let (id, _) = a.import_record_file(&repo_path(SEED_RECORD)).await.unwrap();
    a.store.approve_record(&id, "approver", now).await.unwrap();
    let name = ListName::parse("partners").unwrap();
    a.store.create_list(&name, "", now).await.unwrap();
    let list = a.store.list(&name).await.unwrap().unwrap().id;
    let subs: Vec<_> = (0..20)
        .map(|i| NewSubscriber::parse(&format!("r{i}@example.org"), None, None).unwrap())
        .collect();
    a.store.upsert_subscribers(list, &subs, now).await.unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let running = {
        let (d, stop) = (b.dispatcher.clone(), stop.clone());
        tokio::spawn(async move { d.run(stop).await })
    };
    // B is listening (its LISTEN connection is up) before A queues anything.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%bulletin_work%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if listening > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "instance B never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A queues a bulletin (its own dispatcher is not running).
    let started = Instant::now();
    let FireOutcome::Fired { deliveries, .. } = a.fire_now("weekday-morning").await.unwrap() else {
        panic!("the schedule did not fire");
    };
    assert_eq!(deliveries, 20);
    loop {
        let counts = a.store.delivery_counts(None).await.unwrap();
        if counts
            .iter()
            .any(|c| c.status == DeliveryStatus::Sent && c.count == 20)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the idle instance did not wake for work queued elsewhere (poll is 60 s): {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "sent by the woken instance {:?} after queueing",
        started.elapsed()
    );
    // B sent them, under its own claimer.
    let rows = a
        .store
        .deliveries(&bulletin::store::DeliveryFilter::default())
        .await
        .unwrap();
    let claimer = b.store.claimer().base().to_string();
    assert!(rows.iter().all(|r| r
        .claimed_by
        .as_deref()
        .is_some_and(|c| c.starts_with(&format!("{claimer}/")))));
    stop.cancel();
    running.await.unwrap();
}

/// The claim before this change (one statement joining bulletins and ORing expired
/// leases), kept here to compare: `claim_figures` prints both.
const OLD_CLAIM: &str = "WITH picked AS (
        SELECT d.id FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id
        WHERE b.state = 'sending' AND (
            (d.status IN ('queued', 'retrying') AND d.next_attempt_at <= $1)
            OR (d.status = 'sending' AND d.lease_until < $1 AND d.claimed_by IS DISTINCT FROM $2))
        ORDER BY d.priority DESC, d.next_attempt_at, d.id
        LIMIT $3
        FOR UPDATE OF d SKIP LOCKED)
     UPDATE deliveries SET status = 'sending', lease_until = $1 + 60000, updated_at = $1,
        claimed_by = $2
     FROM picked WHERE deliveries.id = picked.id RETURNING deliveries.id";

/// Figures, not a timed test: the time of one 500-row claim with 10,000, 100,000 and
/// 1,000,000 rows queued (BULLETIN_CLAIM_SIZES overrides, comma-separated), by the
/// store's claim and by the old statement (rolled back). Run with
/// `cargo test --release --test it pg_scale::claim_figures -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; minutes at 1,000,000 rows"]
async fn claim_figures() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let sizes: Vec<i64> = std::env::var("BULLETIN_CLAIM_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let store = PostgresStore::connect(&db.url, None).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let bulletin: i64 = sqlx::query_scalar(
        "INSERT INTO bulletins (kind, language, subject, html, text, lists, channels, state, created_at)
         VALUES ('record', 'en', 's', 'h', 't', 'partners', 'email', 'sending', 0) RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let mut loaded = 0i64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for queued in sizes {
        // Top the queue up to `queued` waiting rows (earlier claims took some), queued
        // as a fan-out queues them: all due at once, in id order.
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'retrying')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO deliveries (bulletin_id, channel, recipient, status, next_attempt_at,
             created_at, updated_at)
             SELECT $1, 'email', 'r' || g || '@example.org', 'queued', 1000, 0, 0
             FROM generate_series($2 + 1, $2 + $3) AS g",
        )
        .bind(bulletin)
        .bind(loaded)
        .bind(queued - waiting)
        .execute(&mut conn)
        .await
        .unwrap();
        loaded += queued - waiting;
        sqlx::query("VACUUM ANALYZE deliveries")
            .execute(&mut conn)
            .await
            .unwrap();
        let now = bulletin::clock::from_millis(10_000);
        let mut new = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let got = bulletin::store::Store::claim_due(
                &store,
                now,
                500,
                Duration::from_secs(60),
                bulletin::config::ExpiredLease::Resend,
            )
            .await
            .unwrap();
            new.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(got.len(), 500);
        }
        // The server's share of the claim (its UPDATE, by EXPLAIN ANALYZE, rolled back):
        // what the database spends, whatever this binary's build profile.
        let [_, ready] = PostgresStore::claim_statements();
        let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {ready}");
        let mut server = Vec::new();
        for _ in 0..7 {
            let mut tx = conn.begin().await.unwrap();
            let row = sqlx::query(&explain)
                .bind(70_000i64)
                .bind(10_000i64)
                .bind(10_000i64)
                .bind("bench:1/1")
                .bind(i64::MIN)
                .bind(500i64)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            let text: String = row.try_get_unchecked(0).unwrap();
            let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
            server.push(plan[0]["Execution Time"].as_f64().unwrap());
            assert_eq!(plan[0]["Plan"]["Actual Rows"].as_f64(), Some(500.0));
            tx.rollback().await.unwrap();
        }
        let mut old = Vec::new();
        for _ in 0..7 {
            let mut tx = conn.begin().await.unwrap();
            let t = Instant::now();
            let got = sqlx::query(OLD_CLAIM)
                .bind(10_000i64)
                .bind("bench:1/1")
                .bind(500i64)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            old.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(got.len(), 500);
            tx.rollback().await.unwrap();
        }
        eprintln!(
            "claim of 500 with {queued:>9} queued: {:6.2} ms (median of 7; before: {:7.2} ms)",
            median(new),
            median(old)
        );
        eprintln!(
            "claim of 500 with {queued:>9} queued, server execution of its UPDATE: {:6.2} ms (median of 7)",
            median(server)
        );
    }
}
