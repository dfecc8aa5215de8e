//! PostgreSQL, for several daemon instances on one database: what differs from SQLite
//! ([`Engine`]): claims `FOR UPDATE SKIP LOCKED` walking partial indexes, outcomes written
//! over arrays (UNNEST), notices created under an advisory lock, `NOTIFY` when work is
//! queued and a `LISTEN` stream for it; and the connection, whose migrator holds an
//! advisory lock so instances starting together migrate once.
//!
//! At scale (`migrations/postgres/20261201000004_claim_index.sql`) the claim is two
//! statements, each walking its own partial index and stopping at its LIMIT, so its cost
//! does not grow with the queue: expired leases from `deliveries_leased` (`(lease_until)
//! WHERE status = 'sending'`), then due rows from `deliveries_ready` (`(priority DESC,
//! next_attempt_at, id) WHERE status IN ('queued','retrying')`, in claim order), updated
//! `WHERE id = ANY(ARRAY(… LIMIT n FOR UPDATE SKIP LOCKED))`. Paused bulletins are
//! filtered by `bulletin_id = ANY(ARRAY(sending bulletin ids))`, an InitPlan rather than a
//! join that would make the planner sort; `tests/it/pg_scale.rs` asserts the plans have no
//! Sort. The ledger table has `fillfactor = 80` and autovacuum/analyze scale factors of
//! 0.02: every claim and outcome rewrites a row, and at the default 0.2 the claim indexes
//! fill with dead entries before autovacuum runs. Work queued (fan-out finished, requeue,
//! rows released, bulletin resumed) sends `NOTIFY bulletin_work` in its transaction,
//! payload the sender's `host:pid`; [`Store::work_notifications`] streams them from a
//! `PgListener`.
//!
//! No ledger update is HOT (the claim indexes' predicates read `status`), so each adds
//! an entry to every index its new row version qualifies for: the address and Message-ID
//! indexes are partial (`20261202000100_claim_writes.sql`), and a claim adds four entries
//! per row (primary key, unique key, `deliveries_leased`, `deliveries_unfinished`). A
//! group of outcomes is one autocommitted statement ([`RECORD_OUTCOMES`]: the updates and
//! the attempts as two data-modifying CTEs): one round trip and one WAL flush. That flush
//! (`fdatasync`, 3.5 ms on the benchmark machine) bounds one instance's rate, at most
//! half of `delivery.unrecorded_max` outcomes per flush (sends stop while the rest wait),
//! so a pass writes its outcomes beside its next claim ([`Engine::CONCURRENT_WRITES`])
//! rather than behind it. `synchronous_commit = off` would lift that bound and lose the
//! last outcomes of a server crash (messages sent, ledger saying `sending`): not used.

use super::sql::{Engine, LedgerUpdate, SqlStore};
use super::*;
use crate::clock::from_millis;
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel instances `LISTEN` on and the store `NOTIFY`s when work is queued: a
/// bulletin fanned out (notices included), rows requeued or handed back, a bulletin
/// resumed.
pub const WORK_CHANNEL: &str = "bulletin_work";

/// The shared store: several daemons may use one database.
pub type PostgresStore = SqlStore<Postgres>;

/// An error's text with the password, should the driver ever echo it, masked.
fn redact_err(e: &dyn std::fmt::Display, password: Option<&str>) -> String {
    let text = e.to_string();
    match password.filter(|p| !p.is_empty()) {
        Some(p) => text.replace(p, "***"),
        None => text,
    }
}

impl PostgresStore {
    /// Connects to the database named by `url` (the password, if not in the URL, from
    /// `password`) and runs pending migrations. sqlx's migrator holds
    /// `pg_advisory_lock` on a key derived from the database name while it runs, so
    /// instances starting together apply each migration once.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Self> {
        let shown = crate::db_url::redact_url(url);
        let mut opts = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Refused(format!(
                "store.url `{shown}` is not a PostgreSQL URL: {}",
                redact_err(&e, password)
            ))
        })?;
        if let Some(pw) = password {
            opts = opts.password(pw);
        }
        let refused = |e: sqlx::Error| {
            StoreError::Refused(format!(
                "cannot connect to the PostgreSQL store at {shown}: {}",
                redact_err(&e, password)
            ))
        };
        // One direct connection first: the pool retries until its timeout and then reports
        // only "pool timed out"; this reports why (refused, unknown role, no database).
        sqlx::Connection::close(
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
                .await
                .map_err(refused)?,
        )
        .await
        .map_err(refused)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(refused)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            claimer: Arc::new(Claimer::new()),
            health: Arc::default(),
            state: (),
        })
    }

    /// A stream that yields whenever another process queued work (see `notify_work`),
    /// and after the listening connection was lost and restored (notifications may have
    /// been missed meanwhile). It reconnects by itself; while it cannot, it yields nothing
    /// and the dispatcher's poll is all there is.
    fn listen_for_work(&self) -> BoxStream<'static, ()> {
        let pool = self.pool.clone();
        let me = self.claimer.base().to_string();
        struct State {
            pool: PgPool,
            me: String,
            listener: Option<sqlx::postgres::PgListener>,
            failures: u32,
        }
        let state = State {
            pool,
            me,
            listener: None,
            failures: 0,
        };
        futures::stream::unfold(state, |mut st| async move {
            loop {
                let Some(listener) = st.listener.as_mut() else {
                    if st.failures > 0 {
                        let secs = (1u64 << st.failures.min(5)).min(30);
                        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    }
                    match sqlx::postgres::PgListener::connect_with(&st.pool).await {
                        Ok(mut l) => match l.listen(WORK_CHANNEL).await {
                            Ok(()) => {
                                let reconnected = st.failures > 0;
                                st.failures = 0;
                                st.listener = Some(l);
                                if reconnected {
                                    return Some(((), st));
                                }
                            }
                            Err(e) => {
                                st.failures += 1;
                                tracing::warn!(error = %e, "cannot LISTEN for queued work; polling only");
                            }
                        },
                        Err(e) => {
                            st.failures += 1;
                            tracing::warn!(error = %e, "cannot LISTEN for queued work; polling only");
                        }
                    }
                    continue;
                };
                match listener.try_recv().await {
                    Ok(Some(n)) if n.payload() == st.me => continue, // woken in-process
                    Ok(Some(_)) => return Some(((), st)),
                    // The connection was lost and will be reopened at the next call:
                    // anything sent meanwhile was missed, so look now.
                    Ok(None) => return Some(((), st)),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                        st.listener = None;
                        st.failures = 1;
                    }
                }
            }
        })
        .boxed()
    }
}

/// The sending bulletins, as an array the claims compare `bulletin_id` with: an InitPlan
/// read once per statement (from `bulletins_active`), so no join orders the queue.
macro_rules! sending_bulletins {
    () => {
        "ARRAY(SELECT id FROM bulletins WHERE state = 'sending')"
    };
}

/// Picks rows whose lease expired mid-send (another process stopped, or stalled) from
/// `deliveries_leased`, in no particular order (every expired row is taken over within a
/// pass or two; an ORDER BY would sort them). $1 now, $2 this claimer, $3 limit.
const CLAIM_EXPIRED: &str = concat!(
    "SELECT d.id, d.claimed_by FROM deliveries d
     WHERE d.status = 'sending' AND d.lease_until < $1 AND d.claimed_by IS DISTINCT FROM $2
       AND d.bulletin_id = ANY(",
    sending_bulletins!(),
    ")
     LIMIT $3
     FOR UPDATE OF d SKIP LOCKED"
);

/// Claims rows due now, walking `deliveries_ready` in claim order (most urgent, then
/// longest due, then id) and stopping at the limit; the rows picked are then updated by
/// primary key (an array, so no join over the ledger). $1 lease end, $2 now (updated
/// at), $3 now, $4 this claimer, $5 least priority, $6 limit.
const CLAIM_READY: &str = concat!(
    "UPDATE deliveries SET status = 'sending', lease_until = $1, updated_at = $2, claimed_by = $4
     WHERE id = ANY(ARRAY(
        SELECT d.id FROM deliveries d
        WHERE d.status IN ('queued', 'retrying') AND d.next_attempt_at <= $3
          AND d.priority >= $5
          AND d.bulletin_id = ANY(",
    sending_bulletins!(),
    ")
        ORDER BY d.priority DESC, d.next_attempt_at, d.id
        LIMIT $6
        FOR UPDATE OF d SKIP LOCKED)) ",
    "RETURNING ",
    claimed_columns!()
);

/// A group of outcomes, written by one statement: each row's update ($1–$11, one array
/// per column; a row whose lease was lost meanwhile, `$11` not NULL and not its lease, is
/// left alone) and the attempts ($12–$18). Returns how many rows it wrote.
const RECORD_OUTCOMES: &str = "WITH updated AS (
        UPDATE deliveries d SET status = v.status, attempts = d.attempts + v.counts,
            next_attempt_at = v.next, lease_until = NULL, last_code = v.code,
            last_error = v.error, message_id = coalesce(v.message_id, d.message_id),
            updated_at = v.updated, sent_at = coalesce(v.sent, d.sent_at),
            ambiguous = GREATEST(d.ambiguous, v.ambiguous),
            unconfirmed = d.unconfirmed + v.ambiguous * v.counts
        FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                    $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                    $11::bigint[])
             AS v(id, status, counts, next, code, error, message_id, updated, sent,
                  ambiguous, lease)
        WHERE d.id = v.id AND (v.lease IS NULL OR d.lease_until = v.lease)
        RETURNING 1),
    attempted AS (
        INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
        SELECT * FROM UNNEST($12::bigint[], $13::bigint[], $14::bigint[], $15::text[],
                             $16::bigint[], $17::text[], $18::text[])
        RETURNING 1)
    SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM attempted)";

impl PostgresStore {
    /// The claim statements (expired leases, then due rows), for tests that check their
    /// plans: each must walk its index in order, with no sort over the ledger.
    #[doc(hidden)]
    pub fn claim_statements() -> [&'static str; 2] {
        [CLAIM_EXPIRED, CLAIM_READY]
    }
}

#[async_trait]
impl Engine for Postgres {
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;
    /// A claim and an outcome group touch different rows, each on its own pooled
    /// connection; neither waits for the other.
    const CONCURRENT_WRITES: bool = true;
    type State = ();
    type Ids = Vec<i64>;
    const BEGIN: &'static str = "BEGIN";
    const CLAIM_EXPIRED: &'static str = CLAIM_EXPIRED;
    const CLAIM_READY: &'static str = CLAIM_READY;
    /// Walks the urgent end of `deliveries_ready`.
    const URGENT_DUE: &'static str = concat!(
        "SELECT 1::bigint FROM deliveries d
         WHERE d.status IN ('queued', 'retrying') AND d.priority >= $1
           AND d.next_attempt_at <= $2 AND d.bulletin_id = ANY(",
        sending_bulletins!(),
        ")
         ORDER BY d.priority DESC, d.next_attempt_at, d.id
         LIMIT 1"
    );

    fn rows_affected(r: &sqlx::postgres::PgQueryResult) -> u64 {
        r.rows_affected()
    }

    fn ids(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }

    fn in_ids(column: &str, param: &str) -> String {
        format!("{column} = ANY({param})")
    }

    /// A transaction that wrote has a transaction id; a read-only one has none.
    async fn changes(conn: &mut PgConnection) -> std::result::Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT (txid_current_if_assigned() IS NOT NULL)::bigint")
            .fetch_one(conn)
            .await
    }

    fn check(_: &()) -> Result<()> {
        Ok(())
    }

    async fn next_due(s: &PostgresStore) -> Result<Option<DateTime<Utc>>> {
        // A few index probes, never a scan of the waiting or `sending` rows: the first
        // waiting row of each priority the sending bulletins use (`deliveries_ready`), and
        // the first lease to end (`deliveries_leased`). Nothing sending: no ledger read.
        let sending: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, priority FROM bulletins WHERE state = 'sending'")
                .fetch_all(&s.pool)
                .await?;
        if sending.is_empty() {
            return Ok(None);
        }
        let ids: Vec<i64> = sending.iter().map(|b| b.0).collect();
        let mut priorities: Vec<i64> = sending.iter().map(|b| b.1).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM (
                SELECT (SELECT d.next_attempt_at FROM deliveries d
                        WHERE d.status IN ('queued', 'retrying') AND d.priority = p
                          AND d.bulletin_id = ANY($1)
                        ORDER BY d.priority DESC, d.next_attempt_at, d.id LIMIT 1) AS t
                FROM UNNEST($2::bigint[]) AS p
                UNION ALL
                SELECT (SELECT d.lease_until FROM deliveries d
                        WHERE d.status = 'sending' AND d.bulletin_id = ANY($1)
                        ORDER BY d.lease_until LIMIT 1)) AS due",
        )
        .bind(&ids)
        .bind(&priorities)
        .fetch_one(&s.pool)
        .await?;
        Ok(v.map(from_millis))
    }

    async fn release(conn: &mut PgConnection, claims: &[(i64, i64)], now: i64) -> Result<u64> {
        let (ids, leases): (Vec<i64>, Vec<i64>) = claims.iter().copied().unzip();
        let r = sqlx::query(
            "UPDATE deliveries d SET status = CASE WHEN d.attempts = 0 THEN 'queued' ELSE 'retrying' END,
                lease_until = NULL, updated_at = $3
             FROM UNNEST($1::bigint[], $2::bigint[]) AS v(id, lease)
             WHERE d.id = v.id AND d.status = 'sending' AND d.lease_until = v.lease",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }

    /// The whole group in one statement over arrays (UNNEST), whatever its size: the
    /// rows' updates and their attempts as two data-modifying CTEs of one autocommitted
    /// statement (as atomic as a transaction, and durable at its commit), so a group costs
    /// one round trip and one WAL flush, not the four round trips of BEGIN, two
    /// statements and COMMIT.
    async fn record_outcomes(s: &PostgresStore, rows: &[LedgerUpdate]) -> Result<()> {
        let mut u = DeliveryColumns::default();
        let mut a = AttemptColumns::default();
        for r in rows {
            u.id.push(r.id);
            u.status.push(r.status.as_str());
            u.counts.push(r.counts);
            u.next.push(r.next_attempt_at);
            u.code.push(r.code);
            u.error.push(r.error.clone());
            u.message_id.push(r.message_id.clone());
            u.updated.push(r.updated_at);
            u.sent.push(r.sent_at);
            u.ambiguous.push(r.ambiguous);
            u.lease.push(r.lease_until);
            if let Some(t) = &r.attempt {
                a.delivery.push(t.delivery_id);
                a.started.push(t.started_at);
                a.finished.push(t.finished_at);
                a.outcome.push(t.outcome);
                a.code.push(t.code);
                a.reply.push(t.reply.clone());
                a.message_id.push(t.message_id.clone());
            }
        }
        let written: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(RECORD_OUTCOMES)
            .bind(&u.id)
            .bind(&u.status)
            .bind(&u.counts)
            .bind(&u.next)
            .bind(&u.code)
            .bind(&u.error)
            .bind(&u.message_id)
            .bind(&u.updated)
            .bind(&u.sent)
            .bind(&u.ambiguous)
            .bind(&u.lease)
            .bind(&a.delivery)
            .bind(&a.started)
            .bind(&a.finished)
            .bind(&a.outcome)
            .bind(&a.code)
            .bind(&a.reply)
            .bind(&a.message_id)
            .fetch_one(&s.pool)
            .await;
        // As a transaction's commit reports: only a write that changed something shows
        // that writes succeed again.
        match written {
            Ok(0) => {}
            Ok(_) => s.health.ok(),
            Err(e) => {
                s.health.failed(e.to_string());
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Tells every instance listening on [`WORK_CHANNEL`] that work was queued; sent in
    /// the transaction that queues it, so it arrives when (and only if) that commits.
    /// The payload names this process, whose own dispatcher is woken in-process.
    async fn notify_work(conn: &mut PgConnection, sender: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WORK_CHANNEL)
            .bind(sender)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Under READ COMMITTED a NOT EXISTS check does not see a concurrent insert, so
    /// notices are created one at a time across instances (a transaction-scoped lock).
    async fn lock_notices(conn: &mut PgConnection) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('bulletin.create_notice'))")
            .execute(conn)
            .await?;
        Ok(())
    }

    fn work_notifications(s: &PostgresStore) -> Option<BoxStream<'static, ()>> {
        Some(s.listen_for_work())
    }
}

/// A group of outcomes as columns, for [`RECORD_OUTCOMES`]' UNNEST.
#[derive(Default)]
struct DeliveryColumns {
    id: Vec<i64>,
    status: Vec<&'static str>,
    counts: Vec<i64>,
    next: Vec<i64>,
    code: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    message_id: Vec<Option<String>>,
    updated: Vec<i64>,
    sent: Vec<Option<i64>>,
    ambiguous: Vec<i64>,
    lease: Vec<Option<i64>>,
}

#[derive(Default)]
struct AttemptColumns {
    delivery: Vec<i64>,
    started: Vec<i64>,
    finished: Vec<i64>,
    outcome: Vec<&'static str>,
    code: Vec<Option<i64>>,
    reply: Vec<String>,
    message_id: Vec<Option<String>>,
}
