//! PostgreSQL implementation of [`Store`]: the same schema and intents as SQLite, made
//! safe for several daemon instances on one database (claims with `FOR UPDATE SKIP
//! LOCKED` under a lease, unique keys for firings and publications, an advisory lock for
//! migrations and notices).

use super::*;
use crate::clock::{from_millis, to_millis};
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel instances `LISTEN` on and the store `NOTIFY`s when work is queued: a
/// bulletin fanned out (notices included), rows requeued or handed back, a bulletin
/// resumed.
pub const WORK_CHANNEL: &str = "bulletin_work";

/// The shared store: several daemons may use one database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    claimer: Arc<Claimer>,
    /// Whether the last write succeeded (for `/readyz`).
    health: Arc<super::health::WriteHealth>,
}

/// An error's text with the password, should the driver ever echo it, masked.
fn redact_err(e: &dyn std::fmt::Display, password: Option<&str>) -> String {
    let text = e.to_string();
    match password.filter(|p| !p.is_empty()) {
        Some(p) => text.replace(p, "***"),
        None => text,
    }
}

/// Unique-key violation (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

fn ms(t: DateTime<Utc>) -> i64 {
    to_millis(t)
}

fn opt_time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_millis)
}

fn parse_enum<T: FromStr<Err = crate::domain::vocab::UnknownValue>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: crate::domain::vocab::UnknownValue| StoreError::Corrupt(e.to_string()))
}

impl PostgresStore {
    /// Begins a transaction whose commit reports to the write health.
    async fn begin(
        &self,
    ) -> std::result::Result<super::health::Tx<'_, sqlx::Postgres>, sqlx::Error> {
        super::health::Tx::begin_postgres(&self.pool, &self.health).await
    }

    /// Claims due rows under a lease. `on_expired`: also take over (or hold) rows whose
    /// lease expired; `min_priority`: only rows at least this urgent.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        on_expired: Option<ExpiredLease>,
        min_priority: Option<i64>,
    ) -> Result<Vec<Claimed>> {
        let now_ms = ms(now);
        let me = self.claimer.current();
        let mut tx = self.begin().await?;
        if on_expired == Some(ExpiredLease::Hold) {
            sqlx::query(
                "UPDATE deliveries SET status = 'held', ambiguous = 1, lease_until = NULL, updated_at = $1,
                 last_error = 'the lease expired while sending (the process stopped mid-send?): held for an operator'
                 WHERE status = 'sending' AND lease_until < $2 AND claimed_by IS DISTINCT FROM $3",
            )
            .bind(now_ms)
            .bind(now_ms)
            .bind(&me)
            .execute(&mut *tx)
            .await?;
        }
        // Two claims, each walking its own partial index in order and stopping at `limit`
        // (no sort over the queue): rows whose lease expired mid-send (resend policy;
        // flagged ambiguous), then rows due now. A row this process holds itself is never
        // taken back, whatever its lease says.
        let lease_ms = now_ms + lease.as_millis() as i64;
        let mut rows = Vec::new();
        let mut taken_from = std::collections::HashMap::new();
        if on_expired == Some(ExpiredLease::Resend) {
            let expired: Vec<(i64, Option<String>)> = sqlx::query_as(CLAIM_EXPIRED)
                .bind(now_ms)
                .bind(&me)
                .bind(limit as i64)
                .fetch_all(&mut *tx)
                .await?;
            if !expired.is_empty() {
                let ids: Vec<i64> = expired.iter().map(|e| e.0).collect();
                rows = sqlx::query(TAKE_OVER)
                    .bind(lease_ms)
                    .bind(now_ms)
                    .bind(&me)
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?;
                taken_from = expired
                    .into_iter()
                    .map(|(id, by)| (id, by.unwrap_or_else(|| "an unknown process".into())))
                    .collect();
            }
        }
        let left = limit as i64 - rows.len() as i64;
        if left > 0 {
            rows.extend(
                sqlx::query(CLAIM_READY)
                    .bind(lease_ms)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(&me)
                    .bind(min_priority.unwrap_or(i64::MIN))
                    .bind(left)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        let mut claimed = claimed_in_order(rows, from_millis(lease_ms))?;
        for c in &mut claimed {
            c.taken_from = taken_from.remove(&c.id);
        }
        // Subscribers who left, or were removed, after fan-out are not sent to.
        let ids: Vec<i64> = claimed.iter().filter_map(|c| c.subscriber_id).collect();
        if !ids.is_empty() {
            let status: std::collections::HashMap<i64, (String, String)> =
                sqlx::query("SELECT id, status, email FROM subscribers WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| (r.get("id"), (r.get("status"), r.get("email"))))
                    .collect();
            suppress_departed(&mut claimed, &status);
        }
        tx.commit().await?;
        Ok(claimed)
    }

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
        })
    }

    /// Tells every instance listening on [`WORK_CHANNEL`] that work was queued; sent in
    /// the transaction that queues it, so it arrives when (and only if) that commits.
    /// The payload names this process, whose own dispatcher is woken in-process.
    async fn notify_work(&self, conn: &mut sqlx::PgConnection) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WORK_CHANNEL)
            .bind(self.claimer.base())
            .execute(conn)
            .await?;
        Ok(())
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

    /// The pool, for `store copy`.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn record_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredRecord> {
        let body: String = row.get("body_json");
        let record: SessionRecord = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("record body: {e}")))?;
        Ok(StoredRecord {
            record,
            state: parse_enum(row.get::<&str, _>("state"))?,
            content_hash: row.get("content_hash"),
            source_file: row.get("source_file"),
            approved_by: row.get("approved_by"),
            approved_at: opt_time(row.get("approved_at")),
            imported_at: from_millis(row.get("imported_at")),
            updated_at: from_millis(row.get("updated_at")),
            published_at: opt_time(row.get("published_at")),
        })
    }

    fn list_from_row(row: &sqlx::postgres::PgRow) -> ListSummary {
        ListSummary {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            active: row.get("active"),
            unsubscribed: row.get("unsubscribed"),
            bounced: row.get("bounced"),
        }
    }

    fn delivery_from_row(r: &sqlx::postgres::PgRow) -> DeliveryRow {
        let status: String = r.get("status");
        let waiting = matches!(status.as_str(), "queued" | "retrying");
        DeliveryRow {
            id: r.get("id"),
            bulletin_id: r.get("bulletin_id"),
            channel: r.get("channel"),
            recipient: r.get("recipient"),
            status,
            attempts: r.get("attempts"),
            ambiguous: r.get::<i64, _>("ambiguous") != 0,
            next_attempt_at: waiting.then(|| from_millis(r.get("next_attempt_at"))),
            last_code: r.get("last_code"),
            last_error: r.get("last_error"),
            message_id: r.get("message_id"),
            updated_at: from_millis(r.get("updated_at")),
            sent_at: opt_time(r.get("sent_at")),
            claimed_by: r.get("claimed_by"),
        }
    }

    fn bulletin_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredBulletin> {
        let split = |s: String| -> Vec<String> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        Ok(StoredBulletin {
            id: row.get("id"),
            kind: row.get("kind"),
            schedule: row.get("schedule"),
            language: row.get("language"),
            subject: row.get("subject"),
            html: row.get("html"),
            text: row.get("text"),
            lists: split(row.get("lists")),
            record_ids: split(row.get("records")),
            channels: split(row.get("channels")),
            state: row.get("state"),
            created_at: from_millis(row.get("created_at")),
            wechat: row
                .get::<Option<String>, _>("wechat_json")
                .map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("bulletin WeChat article: {e}")))?,
        })
    }
}

/// The columns a claim returns (the same on both claims, as `claimed_in_order` reads them).
macro_rules! claim_returning {
    () => {
        "RETURNING deliveries.id, deliveries.bulletin_id, deliveries.channel, deliveries.recipient,
                   deliveries.recipient_name, deliveries.list_id, deliveries.subscriber_id,
                   deliveries.attempts, deliveries.ambiguous, deliveries.created_at,
                   deliveries.priority, deliveries.next_attempt_at, deliveries.unconfirmed"
    };
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

/// Takes over the rows `CLAIM_EXPIRED` picked (and locked). $1 new lease end, $2 now, $3
/// this claimer, $4 the ids.
const TAKE_OVER: &str = concat!(
    "UPDATE deliveries SET ambiguous = 1, lease_until = $1, updated_at = $2, claimed_by = $3
     WHERE id = ANY($4) ",
    claim_returning!()
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
    claim_returning!()
);

impl PostgresStore {
    /// The claim statements (expired leases, then due rows), for tests that check their
    /// plans: each must walk its index in order, with no sort over the ledger.
    #[doc(hidden)]
    pub fn claim_statements() -> [&'static str; 2] {
        [CLAIM_EXPIRED, CLAIM_READY]
    }
}

const LIST_SUMMARY: &str = "SELECT l.id, l.name, l.description,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'active') AS active,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'unsubscribed') AS unsubscribed,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'bounced') AS bounced
    FROM lists l";

/// The ledger filter: $1 bulletin, $2 channel, $3 status, $4 recipient, $5 since, $6 ambiguous only.
/// WeChat mass sends counted against the quota since $1: notices' reservations, plus
/// mass sends of bulletins that reserved nothing (scheduled mass sends).
const WECHAT_QUOTA_USED: &str = "SELECT
    (SELECT count(*) FROM wechat_quota_reservations WHERE reserved_at >= $1)
  + (SELECT count(*) FROM wechat_jobs j JOIN deliveries d ON d.id = j.delivery_id
     WHERE j.msg_id IS NOT NULL AND j.updated_at >= $1
     AND NOT EXISTS (SELECT 1 FROM wechat_quota_reservations r WHERE r.bulletin_id = d.bulletin_id))";

const FILTER: &str =
    "WHERE ($1::bigint IS NULL OR bulletin_id = $1) AND ($2::text IS NULL OR channel = $2)
    AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR recipient = $4)
    AND ($5::bigint IS NULL OR updated_at >= $5) AND (NOT $6 OR ambiguous = 1)";

#[async_trait]
impl Store for PostgresStore {
    async fn import_record(&self, rec: &NewRecord, now: DateTime<Utc>) -> Result<ImportOutcome> {
        let mut tx = self.begin().await?;
        let id = rec.record.id.as_str();
        let existing = sqlx::query("SELECT state, content_hash FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let body = serde_json::to_string(&rec.record).expect("record serialises");
        let outcome = match existing {
            Some(row) => {
                let state: RecordState = parse_enum(row.get::<&str, _>("state"))?;
                let hash: String = row.get("content_hash");
                if hash == rec.content_hash {
                    return Ok(ImportOutcome::Unchanged);
                }
                if state == RecordState::Published {
                    return Err(StoreError::Refused(format!(
                        "record `{id}` is published and cannot change; import it under a new id"
                    )));
                }
                sqlx::query(
                    "UPDATE records SET language = $1, title = $2, held_on = $3, body_json = $4, content_hash = $5,
                     state = 'draft', source_file = $6, approved_by = NULL, approved_at = NULL, approved_hash = NULL,
                     updated_at = $7 WHERE id = $8",
                )
                .bind(&rec.record.language)
                .bind(&rec.record.title)
                .bind(rec.record.held_on.to_string())
                .bind(&body)
                .bind(&rec.content_hash)
                .bind(&rec.source_file)
                .bind(ms(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM record_images WHERE record_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if state == RecordState::Approved {
                    ImportOutcome::ReturnedToDraft
                } else {
                    ImportOutcome::Updated
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO records (id, language, title, held_on, body_json, content_hash, state, source_file,
                     imported_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9)",
                )
                .bind(id)
                .bind(&rec.record.language)
                .bind(&rec.record.title)
                .bind(rec.record.held_on.to_string())
                .bind(&body)
                .bind(&rec.content_hash)
                .bind(&rec.source_file)
                .bind(ms(now))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                ImportOutcome::Created
            }
        };
        for (i, im) in rec.images.iter().enumerate() {
            sqlx::query(
                "INSERT INTO record_images (record_id, position, file, content_type, sha256, width, height, bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(i as i64)
            .bind(&im.file)
            .bind(&im.content_type)
            .bind(&im.sha256)
            .bind(im.width as i64)
            .bind(im.height as i64)
            .bind(&im.bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn approve_record(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApproveOutcome> {
        let row = sqlx::query("SELECT state FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no record `{id}`")))?;
        match parse_enum::<RecordState>(row.get::<&str, _>("state"))? {
            RecordState::Approved | RecordState::Published => Ok(ApproveOutcome::AlreadyApproved),
            RecordState::Draft => {
                let done = sqlx::query(
                    "UPDATE records SET state = 'approved', approved_by = $1, approved_at = $2, approved_hash = content_hash,
                     updated_at = $3 WHERE id = $4 AND state = 'draft'",
                )
                .bind(by)
                .bind(ms(now))
                .bind(ms(now))
                .bind(id)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(ApproveOutcome::Approved)
                } else {
                    Ok(ApproveOutcome::AlreadyApproved)
                }
            }
        }
    }

    async fn record(&self, id: &str) -> Result<Option<StoredRecord>> {
        sqlx::query("SELECT * FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::record_from_row(&r))
            .transpose()
    }

    async fn records(&self, state: Option<RecordState>) -> Result<Vec<StoredRecord>> {
        let rows = match state {
            Some(s) => {
                sqlx::query("SELECT * FROM records WHERE state = $1 ORDER BY held_on DESC, id")
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM records ORDER BY held_on DESC, id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(Self::record_from_row).collect()
    }

    async fn record_images(&self, id: &str) -> Result<Vec<ImageData>> {
        let rows =
            sqlx::query("SELECT * FROM record_images WHERE record_id = $1 ORDER BY position")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| ImageData {
                file: r.get("file"),
                content_type: r.get("content_type"),
                sha256: r.get("sha256"),
                width: r.get::<i64, _>("width") as u32,
                height: r.get::<i64, _>("height") as u32,
                bytes: r.get("bytes"),
            })
            .collect())
    }

    async fn create_list(
        &self,
        name: &ListName,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO lists (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list(&self, name: &ListName) -> Result<Option<ListSummary>> {
        Ok(sqlx::query(&format!("{LIST_SUMMARY} WHERE l.name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::list_from_row(&r)))
    }

    async fn lists(&self) -> Result<Vec<ListSummary>> {
        Ok(sqlx::query(&format!("{LIST_SUMMARY} ORDER BY l.name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::list_from_row)
            .collect())
    }

    async fn upsert_subscribers(
        &self,
        list_id: i64,
        batch: &[NewSubscriber],
        now: DateTime<Utc>,
    ) -> Result<UpsertCounts> {
        let mut counts = UpsertCounts::default();
        let mut tx = self.begin().await?;
        for s in batch {
            let existing = sqlx::query(
                "SELECT name, language FROM subscribers WHERE list_id = $1 AND email = $2",
            )
            .bind(list_id)
            .bind(s.email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO subscribers (list_id, email, name, language, status, created_at, updated_at, status_changed_at)
                         VALUES ($1, $2, $3, $4, 'active', $5, $6, $6) ON CONFLICT (list_id, email) DO NOTHING",
                    )
                    .bind(list_id)
                    .bind(s.email.as_str())
                    .bind(&s.name)
                    .bind(&s.language)
                    .bind(ms(now))
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                    counts.added += 1;
                }
                Some(row) => {
                    let old_name: Option<String> = row.get("name");
                    let old_lang: Option<String> = row.get("language");
                    let name = s.name.clone().or(old_name.clone());
                    let lang = s.language.clone().or(old_lang.clone());
                    if name == old_name && lang == old_lang {
                        counts.unchanged += 1;
                    } else {
                        sqlx::query(
                            "UPDATE subscribers SET name = $1, language = $2, updated_at = $3 WHERE list_id = $4 AND email = $5",
                        )
                        .bind(&name)
                        .bind(&lang)
                        .bind(ms(now))
                        .bind(list_id)
                        .bind(s.email.as_str())
                        .execute(&mut *tx)
                        .await?;
                        counts.updated += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(counts)
    }

    async fn remove_subscriber(&self, list_id: i64, email: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM subscribers WHERE list_id = $1 AND email = $2")
            .bind(list_id)
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_subscriber_status(
        &self,
        list_id: i64,
        email: &str,
        status: SubscriberStatus,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE subscribers SET status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $2 END,
             status = $1, updated_at = $2 WHERE list_id = $3 AND email = $4",
        )
        .bind(status.as_str())
        .bind(ms(now))
        .bind(list_id)
        .bind(email)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn subscribers_page(
        &self,
        list_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberRow>> {
        let rows = sqlx::query(
            "SELECT id, email, name, language, status, status_changed_at FROM subscribers WHERE list_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(list_id)
        .bind(after_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SubscriberRow {
                    id: r.get("id"),
                    email: r.get("email"),
                    name: r.get("name"),
                    language: r.get("language"),
                    status: SubscriberStatus::parse(r.get("status"))
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    status_changed_at: from_millis(r.get("status_changed_at")),
                })
            })
            .collect()
    }

    async fn record_firing(
        &self,
        schedule: &str,
        fire_time: DateTime<Utc>,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO firings (schedule, fire_time, recorded_at, trigger) VALUES ($1, $2, $3, $4)
             ON CONFLICT (schedule, fire_time) DO NOTHING",
        )
        .bind(schedule)
        .bind(ms(fire_time))
        .bind(ms(now))
        .bind(trigger)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn last_firing(&self, schedule: &str) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(fire_time) FROM firings WHERE schedule = $1")
                .bind(schedule)
                .fetch_one(&self.pool)
                .await?;
        Ok(opt_time(v))
    }

    async fn unfinished_firings(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT schedule, fire_time FROM firings WHERE done_at IS NULL ORDER BY fire_time",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("schedule"), from_millis(r.get("fire_time"))))
            .collect())
    }

    async fn finish_firing(
        &self,
        schedule: &str,
        fire_time: DateTime<Utc>,
        bulletins: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("UPDATE firings SET done_at = $1, bulletins = bulletins + $2 WHERE schedule = $3 AND fire_time = $4")
            .bind(ms(now))
            .bind(bulletins as i64)
            .bind(schedule)
            .bind(ms(fire_time))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn records_to_publish(&self, schedule: &str) -> Result<Vec<StoredRecord>> {
        // Approved records this schedule has not carried yet. A record already published by
        // another schedule is picked up only if it was approved after this schedule first fired,
        // so adding a schedule does not resend the archive.
        let rows = sqlx::query(
            "SELECT * FROM records r
             WHERE r.approved_hash = r.content_hash
               AND (r.state = 'approved'
                    OR (r.state = 'published'
                        AND r.approved_at >= (SELECT min(recorded_at) FROM firings f WHERE f.schedule = $1)))
               AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.schedule = $2 AND p.record_id = r.id)
             ORDER BY r.approved_at, r.id",
        )
        .bind(schedule)
        .bind(schedule)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::record_from_row).collect()
    }

    async fn create_bulletin(&self, b: &NewBulletin, now: DateTime<Utc>) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        if let Some(schedule) = &b.schedule {
            for rid in &b.record_ids {
                let taken = sqlx::query(
                    "SELECT 1 FROM publications WHERE schedule = $1 AND record_id = $2",
                )
                .bind(schedule)
                .bind(rid)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Ok(None);
                }
            }
        }
        let join = |v: Vec<&str>| v.join(",");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bulletins (kind, schedule, fire_time, language, subject, html, text, lists, records, channels,
             priority, state, created_at, wechat_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'fanning_out', $12, $13) RETURNING id",
        )
        .bind(b.kind.as_str())
        .bind(&b.schedule)
        .bind(b.fire_time.map(ms))
        .bind(&b.language)
        .bind(&b.subject)
        .bind(&b.html)
        .bind(&b.text)
        .bind(join(b.lists.iter().map(|l| l.as_str()).collect()))
        .bind(join(b.record_ids.iter().map(String::as_str).collect()))
        .bind(join(b.channels.iter().map(|c| c.as_str()).collect()))
        .bind(b.priority)
        .bind(ms(now))
        .bind(
            b.wechat
                .as_ref()
                .map(|w| serde_json::to_string(w).expect("article serialises")),
        )
        .fetch_one(&mut *tx)
        .await?;
        for (pos, rid) in b.record_ids.iter().enumerate() {
            if let Some(schedule) = &b.schedule {
                let r = sqlx::query("INSERT INTO publications (schedule, record_id, bulletin_id, position) VALUES ($1, $2, $3, $4)")
                    .bind(schedule)
                    .bind(rid)
                    .bind(id)
                    .bind(pos as i64)
                    .execute(&mut *tx)
                    .await;
                // Another instance published this record for the schedule meanwhile: the
                // transaction rolls back (dropped) and that instance's bulletin stands.
                match r {
                    Err(e) if is_unique_violation(&e) => return Ok(None),
                    r => {
                        r?;
                    }
                }
            }
            sqlx::query(
                "UPDATE records SET state = 'published', published_at = coalesce(published_at, $1) WHERE id = $2",
            )
            .bind(ms(now))
            .bind(rid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn bulletin(&self, id: i64) -> Result<Option<StoredBulletin>> {
        sqlx::query("SELECT * FROM bulletins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::bulletin_from_row(&r))
            .transpose()
    }

    async fn bulletins(&self, limit: u32) -> Result<Vec<StoredBulletin>> {
        sqlx::query("SELECT * FROM bulletins ORDER BY id DESC LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::bulletin_from_row)
            .collect()
    }

    async fn bulletins_fanning_out(&self) -> Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM bulletins WHERE state = 'fanning_out' ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn fan_out(
        &self,
        bulletin_id: i64,
        page: u32,
        accounts: &[(ChannelKind, String)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let b = self
            .bulletin(bulletin_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no bulletin {bulletin_id}")))?;
        let priority: i64 = sqlx::query_scalar("SELECT priority FROM bulletins WHERE id = $1")
            .bind(bulletin_id)
            .fetch_one(&self.pool)
            .await?;
        let mut total = 0u64;
        for channel in &b.channels {
            if channel != ChannelKind::Email.as_str() {
                continue; // other channels fan out through their own modules
            }
            for list in &b.lists {
                let list_id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM lists WHERE name = $1")
                        .bind(list)
                        .fetch_optional(&self.pool)
                        .await?;
                let Some(list_id) = list_id else {
                    return Err(StoreError::Refused(format!(
                        "bulletin {bulletin_id} names list `{list}`, which does not exist"
                    )));
                };
                let mut after = 0i64;
                loop {
                    let mut tx = self.begin().await?;
                    let last: Option<i64> = sqlx::query_scalar(
                        "SELECT max(id) FROM (SELECT id FROM subscribers WHERE list_id = $1 AND status = 'active'
                         AND id > $2 ORDER BY id LIMIT $3) AS page",
                    )
                    .bind(list_id)
                    .bind(after)
                    .bind(page as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                    let Some(last) = last else { break };
                    let r = sqlx::query(
                        "INSERT INTO deliveries (bulletin_id, channel, recipient, recipient_name, list_id,
                         subscriber_id, priority, status, next_attempt_at, created_at, updated_at)
                         SELECT $1, $2, s.email, s.name, s.list_id, s.id, $3, 'queued', $4, $5, $6
                         FROM subscribers s WHERE s.list_id = $7 AND s.status = 'active' AND s.id > $8 AND s.id <= $9
                         ORDER BY s.id ON CONFLICT (bulletin_id, channel, recipient) DO NOTHING",
                    )
                    .bind(bulletin_id)
                    .bind(channel)
                    .bind(priority)
                    .bind(ms(now))
                    .bind(ms(now))
                    .bind(ms(now))
                    .bind(list_id)
                    .bind(after)
                    .bind(last)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    total += r.rows_affected();
                    after = last;
                }
            }
        }
        for (channel, recipient) in accounts {
            if !b.channels.iter().any(|c| c == channel.as_str()) {
                continue;
            }
            let r = sqlx::query(
                "INSERT INTO deliveries (bulletin_id, channel, recipient, priority, status, next_attempt_at,
                 created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)
                 ON CONFLICT (bulletin_id, channel, recipient) DO NOTHING",
            )
            .bind(bulletin_id)
            .bind(channel.as_str())
            .bind(recipient)
            .bind(priority)
            .bind(ms(now))
            .bind(ms(now))
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
            total += r.rows_affected();
        }
        let mut tx = self.begin().await?;
        let started = sqlx::query("UPDATE bulletins SET state = 'sending', fanned_out_at = $1 WHERE id = $2 AND state = 'fanning_out'")
            .bind(ms(now))
            .bind(bulletin_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if started > 0 {
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(total)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        on_expired: ExpiredLease,
    ) -> Result<Vec<Claimed>> {
        self.claim(now, limit, lease, Some(on_expired), None).await
    }

    async fn claim_urgent(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        min_priority: i64,
    ) -> Result<Vec<Claimed>> {
        self.claim(now, limit, lease, None, Some(min_priority))
            .await
    }
    async fn release(&self, claims: &[(i64, DateTime<Utc>)], now: DateTime<Utc>) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = claims.iter().map(|c| c.0).collect();
        let leases: Vec<i64> = claims.iter().map(|c| ms(c.1)).collect();
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE deliveries d SET status = CASE WHEN d.attempts = 0 THEN 'queued' ELSE 'retrying' END,
                lease_until = NULL, updated_at = $3
             FROM UNNEST($1::bigint[], $2::bigint[]) AS v(id, lease)
             WHERE d.id = v.id AND d.status = 'sending' AND d.lease_until = v.lease",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() > 0 {
            // Rows handed back (a stopping instance's) are due now, for any instance.
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn not_sending(&self, bulletins: &[i64]) -> Result<Vec<i64>> {
        if bulletins.is_empty() {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM bulletins WHERE state <> 'sending' AND id = ANY($1)",
            )
            .bind(bulletins)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn expire_foreign_leases(&self, now: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE deliveries SET lease_until = $1 - 1
             WHERE status = 'sending' AND lease_until >= $1 AND claimed_by IS DISTINCT FROM $2",
        )
        .bind(ms(now))
        .bind(self.claimer.current())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    fn claimer(&self) -> &Claimer {
        &self.claimer
    }

    fn work_notifications(&self) -> Option<BoxStream<'static, ()>> {
        Some(self.listen_for_work())
    }

    async fn urgent_due(&self, now: DateTime<Utc>, min_priority: i64) -> Result<bool> {
        let due: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT 1::bigint FROM deliveries d
                 WHERE d.status IN ('queued', 'retrying') AND d.priority >= $1
                   AND d.next_attempt_at <= $2 AND d.bulletin_id = ANY(",
            sending_bulletins!(),
            ")
                 ORDER BY d.priority DESC, d.next_attempt_at, d.id
                 LIMIT 1"
        ))
        .bind(min_priority)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(due.is_some())
    }

    async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // The whole group in two statements over arrays (UNNEST), whatever its size.
        let mut u = DeliveryColumns::default();
        let mut a = AttemptColumns::default();
        for o in outcomes {
            let status = o.result.status().as_str();
            let (next, sent_at) = match o.result {
                OutcomeKind::Retry { at } | OutcomeKind::Wait { at } => (ms(at), None),
                OutcomeKind::Sent => (ms(o.finished_at), Some(ms(o.finished_at))),
                _ => (ms(o.finished_at), None),
            };
            let counts = !matches!(o.result, OutcomeKind::Suppressed | OutcomeKind::Wait { .. });
            u.id.push(o.delivery_id);
            u.status.push(status);
            u.counts.push(counts as i64);
            u.next.push(next);
            u.code.push(o.code);
            u.error
                .push((!matches!(o.result, OutcomeKind::Sent)).then(|| o.reply.clone()));
            u.message_id.push(o.message_id.clone());
            u.updated.push(ms(o.finished_at));
            u.sent.push(sent_at);
            u.ambiguous.push(o.maybe_delivered as i64);
            u.lease.push(o.lease_until.map(ms));
            if !matches!(o.result, OutcomeKind::Suppressed) {
                a.delivery.push(o.delivery_id);
                a.started.push(ms(o.started_at));
                a.finished.push(ms(o.finished_at));
                a.outcome
                    .push(if matches!(o.result, OutcomeKind::Wait { .. }) {
                        "waiting"
                    } else {
                        status
                    });
                a.code.push(o.code);
                a.reply.push(o.reply.clone());
                a.message_id.push(o.message_id.clone());
            }
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE deliveries d SET status = v.status, attempts = d.attempts + v.counts,
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
             WHERE d.id = v.id AND (v.lease IS NULL OR d.lease_until = v.lease)",
        )
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
        .execute(&mut *tx)
        .await?;
        if !a.delivery.is_empty() {
            sqlx::query(
                "INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                                      $5::bigint[], $6::text[], $7::text[])",
            )
            .bind(&a.delivery)
            .bind(&a.started)
            .bind(&a.finished)
            .bind(&a.outcome)
            .bind(&a.code)
            .bind(&a.reply)
            .bind(&a.message_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_bulletins(&self) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE bulletins SET state = 'done' WHERE state = 'sending' AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.bulletin_id = bulletins.id
                AND d.status IN ('queued', 'sending', 'retrying', 'held'))",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn requeue(
        &self,
        bulletin: Option<i64>,
        delivery: Option<i64>,
        statuses: &[DeliveryStatus],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        if statuses.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = $1, lease_until = NULL, updated_at = $1
             WHERE status = ANY($2) AND ($3::bigint IS NULL OR bulletin_id = $3) AND ($4::bigint IS NULL OR id = $4)",
        )
        .bind(ms(now))
        .bind(&statuses)
        .bind(bulletin)
        .bind(delivery)
        .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            self.notify_work(&mut tx).await?;
        }
        sqlx::query(
            "UPDATE bulletins SET state = 'sending' WHERE state = 'done'
             AND id IN (SELECT DISTINCT bulletin_id FROM deliveries WHERE status = 'queued')",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        // A few index probes, never a scan of the waiting or `sending` rows: the first
        // waiting row of each priority the sending bulletins use (`deliveries_ready`), and
        // the first lease to end (`deliveries_leased`). Nothing sending: no ledger read.
        let sending: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, priority FROM bulletins WHERE state = 'sending'")
                .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_time(v))
    }

    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = sqlx::query(&format!(
            "SELECT * FROM deliveries {FILTER} ORDER BY id LIMIT $7 OFFSET $8"
        ))
        .bind(f.bulletin)
        .bind(f.channel.map(|c| c.as_str()))
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.recipient.as_ref().map(|r| r.to_lowercase()))
        .bind(f.since.map(ms))
        .bind(f.ambiguous_only)
        .bind(limit as i64)
        .bind(f.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Self::delivery_from_row).collect())
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>> {
        Ok(sqlx::query("SELECT * FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::delivery_from_row(&r)))
    }

    async fn delivery_counts(&self, bulletin: Option<i64>) -> Result<Vec<StatusCount>> {
        let rows = match bulletin {
            Some(b) => {
                sqlx::query("SELECT channel, status, count(*) AS n FROM deliveries WHERE bulletin_id = $1 GROUP BY channel, status ORDER BY channel, status")
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status ORDER BY channel, status")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| StatusCount {
                channel: r.get("channel"),
                status: r.get("status"),
                count: r.get("n"),
            })
            .collect())
    }

    async fn wechat_job(&self, delivery_id: i64) -> Result<Option<WechatJob>> {
        let row = sqlx::query("SELECT * FROM wechat_jobs WHERE delivery_id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| WechatJob {
            delivery_id,
            draft_media_id: r.get("draft_media_id"),
            thumb_media_id: r.get("thumb_media_id"),
            publish_id: r.get("publish_id"),
            publish_status: r.get("publish_status"),
            article_id: r.get("article_id"),
            article_url: r.get("article_url"),
            msg_id: r.get("msg_id"),
            msg_data_id: r.get("msg_data_id"),
            first_poll_at: opt_time(r.get("first_poll_at")),
            polls: r.get("polls"),
            step: r.get("step"),
            step_started_at: opt_time(r.get("step_started_at")),
        }))
    }

    async fn save_wechat_job(&self, j: &WechatJob, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO wechat_jobs (delivery_id, draft_media_id, thumb_media_id, publish_id, publish_status,
             article_id, article_url, msg_id, msg_data_id, first_poll_at, polls, updated_at, step, step_started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (delivery_id) DO UPDATE SET draft_media_id = excluded.draft_media_id,
             thumb_media_id = excluded.thumb_media_id, publish_id = excluded.publish_id,
             publish_status = excluded.publish_status, article_id = excluded.article_id,
             article_url = excluded.article_url, msg_id = excluded.msg_id, msg_data_id = excluded.msg_data_id,
             first_poll_at = excluded.first_poll_at, polls = excluded.polls, updated_at = excluded.updated_at,
             step = excluded.step, step_started_at = excluded.step_started_at",
        )
        .bind(j.delivery_id)
        .bind(&j.draft_media_id)
        .bind(&j.thumb_media_id)
        .bind(&j.publish_id)
        .bind(j.publish_status)
        .bind(&j.article_id)
        .bind(&j.article_url)
        .bind(&j.msg_id)
        .bind(&j.msg_data_id)
        .bind(j.first_poll_at.map(ms))
        .bind(j.polls)
        .bind(ms(now))
        .bind(&j.step)
        .bind(j.step_started_at.map(ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn shared_token(&self, appid: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query("SELECT token, refresh_at FROM wechat_tokens WHERE appid = $1")
            .bind(appid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get("token"), from_millis(r.get("refresh_at")))))
    }

    async fn put_shared_token(
        &self,
        appid: &str,
        token: &str,
        refresh_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO wechat_tokens (appid, token, refresh_at, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (appid) DO UPDATE SET token = excluded.token, refresh_at = excluded.refresh_at,
             fetched_at = excluded.fetched_at",
        )
        .bind(appid)
        .bind(token)
        .bind(ms(refresh_at))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn drop_shared_token(&self, appid: &str, failed: &str) -> Result<()> {
        sqlx::query("DELETE FROM wechat_tokens WHERE appid = $1 AND token = $2")
            .bind(appid)
            .bind(failed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wechat_article_recorded(&self, article_id: &str, delivery_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM wechat_jobs WHERE article_id = $1 AND delivery_id <> $2",
        )
        .bind(article_id)
        .bind(delivery_id)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    async fn wechat_draft_recorded(&self, media_id: &str, delivery_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM wechat_jobs WHERE draft_media_id = $1 AND delivery_id <> $2",
        )
        .bind(media_id)
        .bind(delivery_id)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    async fn wechat_mass_sends_since(&self, since: DateTime<Utc>) -> Result<i64> {
        Ok(sqlx::query_scalar(WECHAT_QUOTA_USED)
            .bind(ms(since))
            .fetch_one(&self.pool)
            .await?)
    }

    async fn note_hard_failure(
        &self,
        email: &str,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        if threshold == 0 {
            return Ok(0);
        }
        let spans: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT bulletin_id) FROM deliveries
             WHERE recipient = $1 AND channel = 'email' AND status = 'failed' AND last_code >= 500",
        )
        .bind(email)
        .fetch_one(&self.pool)
        .await?;
        if spans < i64::from(threshold) {
            return Ok(0);
        }
        let r = sqlx::query(
            "UPDATE subscribers SET status = 'bounced', updated_at = $1, status_changed_at = $1 WHERE email = $2 AND status = 'active'",
        )
        .bind(ms(now))
        .bind(email)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn wechat_media(
        &self,
        appid: &str,
        sha256: &str,
        kind: &str,
    ) -> Result<Option<WechatMedia>> {
        let row = sqlx::query(
            "SELECT media_id, url FROM wechat_media WHERE appid = $1 AND sha256 = $2 AND kind = $3",
        )
        .bind(appid)
        .bind(sha256)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| WechatMedia {
            media_id: r.get("media_id"),
            url: r.get("url"),
        }))
    }

    async fn save_wechat_media(
        &self,
        appid: &str,
        sha256: &str,
        kind: &str,
        m: &WechatMedia,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO wechat_media (appid, sha256, kind, media_id, url, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (appid, sha256, kind) DO UPDATE SET media_id = excluded.media_id, url = excluded.url,
             created_at = excluded.created_at",
        )
        .bind(appid)
        .bind(sha256)
        .bind(kind)
        .bind(&m.media_id)
        .bind(&m.url)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attempts(&self, delivery_ids: &[i64]) -> Result<Vec<AttemptRow>> {
        if delivery_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query(
            "SELECT delivery_id, started_at, finished_at, outcome, code, reply FROM attempts
             WHERE delivery_id = ANY($1) ORDER BY delivery_id, id",
        )
        .bind(delivery_ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| AttemptRow {
            delivery_id: r.get("delivery_id"),
            started_at: from_millis(r.get("started_at")),
            finished_at: from_millis(r.get("finished_at")),
            outcome: r.get("outcome"),
            code: r.get("code"),
            reply: r.get("reply"),
        })
        .collect())
    }

    async fn count_deliveries(&self, f: &DeliveryFilter) -> Result<i64> {
        Ok(
            sqlx::query_scalar(&format!("SELECT count(*) FROM deliveries {FILTER}"))
                .bind(f.bulletin)
                .bind(f.channel.map(|c| c.as_str()))
                .bind(f.status.map(|s| s.as_str()))
                .bind(f.recipient.as_ref().map(|r| r.to_lowercase()))
                .bind(f.since.map(ms))
                .bind(f.ambiguous_only)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn set_bulletin_paused(&self, id: i64, paused: bool) -> Result<PauseOutcome> {
        let (from, to) = if paused {
            ("sending", "paused")
        } else {
            ("paused", "sending")
        };
        let mut tx = self.begin().await?;
        let changed = sqlx::query("UPDATE bulletins SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 1 && !paused {
            self.notify_work(&mut tx).await?; // resumed: its rows are due again
        }
        tx.commit().await?;
        if changed == 1 {
            return Ok(PauseOutcome::Changed);
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM bulletins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match state {
            None => Err(StoreError::NotFound(format!("no bulletin {id}"))),
            Some(s) if s == to => Ok(PauseOutcome::Unchanged),
            Some(_) => Ok(PauseOutcome::NotApplicable),
        }
    }

    async fn create_notice(
        &self,
        b: &NewBulletin,
        meta: &NoticeMeta,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool)> {
        let join = |v: Vec<&str>| v.join(",");
        // Under READ COMMITTED a NOT EXISTS check does not see a concurrent insert, so
        // notices are created one at a time across instances (a transaction-scoped lock).
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('bulletin.create_notice'))")
            .execute(&mut *tx)
            .await?;
        if let Some(q) = &meta.wechat_quota {
            // The dedupe comes first: the same notice again returns its id, quota or not.
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM bulletins WHERE kind = 'notice'
                 AND (($1::TEXT IS NOT NULL AND idempotency_key = $2) OR (content_key = $3 AND created_at >= $4))
                 ORDER BY coalesce(idempotency_key IS NOT NULL AND idempotency_key = $5, false) DESC, id LIMIT 1",
            )
            .bind(&meta.idempotency_key)
            .bind(&meta.idempotency_key)
            .bind(&meta.content_key)
            .bind(ms(meta.dedupe_since))
            .bind(&meta.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = existing {
                tx.commit().await?;
                return Ok((id, false));
            }
            let used: i64 = sqlx::query_scalar(WECHAT_QUOTA_USED)
                .bind(ms(q.since))
                .fetch_one(&mut *tx)
                .await?;
            if used >= q.limit {
                drop(tx); // rolls back
                return Err(StoreError::Refused(wechat_quota_refusal(used, q.limit)));
            }
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO bulletins (kind, schedule, fire_time, language, subject, html, text, lists, records,
             channels, priority, state, created_at, severity, triggered_by, idempotency_key, content_key, wechat_json)
             SELECT 'notice', NULL, NULL, $1, $2, $3, $4, $5, '', $6, $7, 'fanning_out', $8, $9, $10, $11, $12, $17
             WHERE NOT EXISTS (SELECT 1 FROM bulletins WHERE kind = 'notice'
                 AND (($13 IS NOT NULL AND idempotency_key = $14) OR (content_key = $15 AND created_at >= $16)))
             RETURNING id",
        )
        .bind(&b.language)
        .bind(&b.subject)
        .bind(&b.html)
        .bind(&b.text)
        .bind(join(b.lists.iter().map(|l| l.as_str()).collect()))
        .bind(join(b.channels.iter().map(|c| c.as_str()).collect()))
        .bind(b.priority)
        .bind(ms(now))
        .bind(&meta.severity)
        .bind(&meta.triggered_by)
        .bind(&meta.idempotency_key)
        .bind(&meta.content_key)
        .bind(&meta.idempotency_key)
        .bind(&meta.idempotency_key)
        .bind(&meta.content_key)
        .bind(ms(meta.dedupe_since))
        .bind(
            b.wechat
                .as_ref()
                .map(|w| serde_json::to_string(w).expect("article serialises")),
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = inserted {
            if let Some(q) = &meta.wechat_quota {
                sqlx::query(
                    "INSERT INTO wechat_quota_reservations (bulletin_id, appid, reserved_at) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(&q.appid)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok((id, true));
        }
        let existing: i64 = sqlx::query_scalar(
            "SELECT id FROM bulletins WHERE kind = 'notice'
             AND (($1 IS NOT NULL AND idempotency_key = $2) OR (content_key = $3 AND created_at >= $4))
             ORDER BY coalesce(idempotency_key IS NOT NULL AND idempotency_key = $5, false) DESC, id LIMIT 1",
        )
        .bind(&meta.idempotency_key)
        .bind(&meta.idempotency_key)
        .bind(&meta.content_key)
        .bind(ms(meta.dedupe_since))
        .bind(&meta.idempotency_key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((existing, false))
    }

    async fn subscription(
        &self,
        list_id: i64,
        subscriber_id: i64,
    ) -> Result<Option<SubscriptionRef>> {
        sqlx::query(
            "SELECT l.name, s.email, s.status FROM subscribers s JOIN lists l ON l.id = s.list_id
             WHERE s.id = $1 AND s.list_id = $2",
        )
        .bind(subscriber_id)
        .bind(list_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(SubscriptionRef {
                list: r.get("name"),
                email: r.get("email"),
                status: SubscriberStatus::parse(r.get("status"))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .transpose()
    }

    async fn unsubscribe(
        &self,
        list_id: i64,
        subscriber_id: i64,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriptionRef>> {
        // A bounced address stays bounced; anyone else becomes unsubscribed.
        sqlx::query(
            "UPDATE subscribers SET status = 'unsubscribed', updated_at = $1, status_changed_at = $1
             WHERE id = $2 AND list_id = $3 AND email = $4 AND status = 'active'",
        )
        .bind(ms(now))
        .bind(subscriber_id)
        .bind(list_id)
        .bind(email.to_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(self
            .subscription(list_id, subscriber_id)
            .await?
            .filter(|s| s.email.eq_ignore_ascii_case(email)))
    }

    async fn link_recipients(&self, list_id: i64, subscriber_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT recipient FROM deliveries
             WHERE list_id = $1 AND subscriber_id = $2 AND channel = 'email' LIMIT 2",
        )
        .bind(list_id)
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn ready(&self) -> Result<()> {
        self.health.check()?;
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        let known = MIGRATOR.iter().count() as i64;
        if applied < known {
            return Err(StoreError::Refused(format!(
                "{applied} of {known} migrations applied"
            )));
        }
        Ok(())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// A group of outcomes as columns, for `record_outcomes`' UNNEST.
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
