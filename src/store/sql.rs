//! The SQL both engines share: [`SqlStore`] implements every intent of [`Store`] once, in
//! SQL that SQLite and PostgreSQL both take (sqlx binds `$N` on SQLite too), with row
//! mappers generic over the row type; [`Engine`] is what really differs (claim statements,
//! bulk outcome writes, transaction start, wake-ups), implemented in `sqlite.rs` and
//! `postgres.rs` beside their open/connect.

use super::health::{Tx, WriteHealth};
use super::*;
use crate::clock::{from_millis, to_millis};
use futures::stream::BoxStream;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use std::collections::HashMap;
use std::str::FromStr;

/// A Rust type the store both binds to and reads from `DB` (bounds the SQL layer needs of
/// each engine, spelt once).
pub trait Value<DB: Database>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T> Value<DB> for T where
    T: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}

/// What differs between the engines; implemented by `sqlx::Sqlite` and `sqlx::Postgres`.
#[async_trait]
pub trait Engine: Database {
    /// What the store keeps beside its pool (SQLite: the file it opened).
    type State: Send + Sync + std::fmt::Debug + 'static;
    /// A list of ids bound as one value (JSON text on SQLite, an array on PostgreSQL).
    type Ids: for<'q> Encode<'q, Self> + Type<Self> + Send + Sync + 'static;
    /// The engine's migrations, embedded.
    const MIGRATOR: &'static sqlx::migrate::Migrator;
    /// The statement that begins a write transaction.
    const BEGIN: &'static str;
    /// Rows whose lease expired mid-send, to take over: `$1` now, `$2` this claimer,
    /// `$3` limit; returns `id, claimed_by`.
    const CLAIM_EXPIRED: &'static str;
    /// Claims rows due now: `$1` lease end, `$2` now (updated at), `$3` now, `$4` this
    /// claimer, `$5` least priority, `$6` limit; returns `claimed_columns!()`.
    const CLAIM_READY: &'static str;
    /// Whether a row of at least `$1` priority is due at `$2`; returns a row if so.
    const URGENT_DUE: &'static str;
    /// See [`Store::concurrent_writes`].
    const CONCURRENT_WRITES: bool;

    fn ids(ids: &[i64]) -> Self::Ids;
    /// The condition "`column` is one of the ids bound as `param`".
    fn in_ids(column: &str, param: &str) -> String;
    fn rows_affected(r: &Self::QueryResult) -> u64;
    /// A number that changes once the transaction on `conn` wrote something (for the
    /// write health: a transaction that wrote nothing commits even on a full disk).
    async fn changes(conn: &mut Self::Connection) -> std::result::Result<i64, sqlx::Error>;
    /// `ready()`'s checks beyond the migrations and the write health.
    fn check(state: &Self::State) -> Result<()>;
    /// When the next row becomes due, if any is waiting.
    async fn next_due(s: &SqlStore<Self>) -> Result<Option<DateTime<Utc>>>;
    /// Hands back `(id, lease_until)` claims (ms) still holding that lease; returns how many.
    async fn release(conn: &mut Self::Connection, claims: &[(i64, i64)], now: i64) -> Result<u64>;
    /// Writes a group of outcomes at once (each row's update, and its attempt), reporting
    /// to the store's write health.
    async fn record_outcomes(s: &SqlStore<Self>, rows: &[LedgerUpdate]) -> Result<()>;
    /// Tells other processes that work was queued, when the transaction commits.
    async fn notify_work(conn: &mut Self::Connection, sender: &str) -> Result<()>;
    /// Makes notices be created one at a time across processes, until the transaction ends.
    async fn lock_notices(conn: &mut Self::Connection) -> Result<()>;
    /// See [`Store::work_notifications`].
    fn work_notifications(s: &SqlStore<Self>) -> Option<BoxStream<'static, ()>>;
}

/// A store on one engine: [`SqliteStore`] or [`PostgresStore`].
#[derive(Debug)]
pub struct SqlStore<DB: Engine> {
    pub(super) pool: sqlx::Pool<DB>,
    pub(super) claimer: Arc<Claimer>,
    /// Whether the last write succeeded (for `/readyz`).
    pub(super) health: Arc<WriteHealth>,
    pub(super) state: DB::State,
}

impl<DB: Engine> Clone for SqlStore<DB>
where
    DB::State: Clone,
{
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            claimer: self.claimer.clone(),
            health: self.health.clone(),
            state: self.state.clone(),
        }
    }
}

/// The columns every claim returns, as `claimed_in_order` reads them.
const CLAIMED_COLUMNS: &str = claimed_columns!();

/// Holds rows whose lease expired mid-send for an operator: $1 now, $2 this claimer.
const HOLD_EXPIRED: &str =
    "UPDATE deliveries SET status = 'held', ambiguous = 1, lease_until = NULL, updated_at = $1,
     last_error = 'the lease expired while sending (the process stopped mid-send?): held for an operator'
     WHERE status = 'sending' AND lease_until < $1 AND claimed_by IS DISTINCT FROM $2";

/// The notice an earlier request with the same key, or the same content within the
/// dedupe window, created: $1 idempotency key, $2 content key, $3 window start.
const NOTICE_DEDUPE: &str = "SELECT id FROM bulletins WHERE kind = 'notice'
     AND (($1 IS NOT NULL AND idempotency_key = $1) OR (content_key = $2 AND created_at >= $3))
     ORDER BY coalesce($1 IS NOT NULL AND idempotency_key = $1, false) DESC, id LIMIT 1";

/// WeChat mass sends counted against the quota since $1: notices' reservations, plus
/// mass sends of bulletins that reserved nothing (scheduled mass sends).
const WECHAT_QUOTA_USED: &str = "SELECT
    (SELECT count(*) FROM wechat_quota_reservations WHERE reserved_at >= $1)
  + (SELECT count(*) FROM wechat_jobs j JOIN deliveries d ON d.id = j.delivery_id
     WHERE j.msg_id IS NOT NULL AND j.updated_at >= $1
     AND NOT EXISTS (SELECT 1 FROM wechat_quota_reservations r WHERE r.bulletin_id = d.bulletin_id))";

/// The ledger filter, shared by listing and counting: $1 bulletin, $2 channel, $3 status,
/// $4 recipient, $5 since, $6 ambiguous only, $7 a LIKE pattern on the recipient (NULL
/// parameters match everything).
const LEDGER_FILTER: &str =
    "WHERE ($1 IS NULL OR bulletin_id = $1) AND ($2 IS NULL OR channel = $2)
    AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR recipient = $4)
    AND ($5 IS NULL OR updated_at >= $5) AND ($6 = 0 OR ambiguous = 1)
    AND ($7 IS NULL OR recipient LIKE $7 ESCAPE '\\')";

const LIST_SUMMARY: &str = "SELECT l.id, l.name, l.description,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'active') AS active,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'unsubscribed') AS unsubscribed,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'bounced') AS bounced
    FROM lists l";

/// The columns of a bulletin both `create_bulletin` and `create_notice` write.
const BULLETIN_COLUMNS: &str =
    "kind, schedule, fire_time, language, subject, html, text, lists, records,
     channels, priority, state, created_at, wechat_json";

/// The archive's condition on a bulletin's kind: notices only when they are included.
fn archive_kinds(include_notices: bool) -> &'static str {
    if include_notices {
        ""
    } else {
        "AND b.kind <> 'notice'"
    }
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    to_millis(t)
}

fn opt_time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_millis)
}

fn parse_enum<T: FromStr<Err = crate::domain::vocab::UnknownValue>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: crate::domain::vocab::UnknownValue| StoreError::Corrupt(e.to_string()))
}

fn parse_status(s: &str) -> Result<SubscriberStatus> {
    SubscriberStatus::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The columns of a [`BounceRow`] (the raw message's size, not the message).
const BOUNCE_COLUMNS: &str = "id, received_at, source, kind, evidence, status_code, diagnostic, \
    recipient, delivery_id, subscriber_id, message_id, CAST(length(raw) AS BIGINT) AS size, undone_at, \
    (SELECT d.bulletin_id FROM deliveries d WHERE d.id = bounces.delivery_id) AS bulletin_id";

fn bounce_from_row<DB: Database>(r: &DB::Row) -> Result<BounceRow>
where
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    String: Value<DB>,
    Option<String>: Value<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    let word = |e: crate::domain::vocab::UnknownValue| StoreError::Corrupt(e.to_string());
    Ok(BounceRow {
        id: r.get("id"),
        received_at: from_millis(r.get("received_at")),
        source: r
            .get::<String, _>("source")
            .parse::<BounceSource>()
            .map_err(word)?,
        kind: r
            .get::<String, _>("kind")
            .parse::<BounceKind>()
            .map_err(word)?,
        evidence: r
            .get::<String, _>("evidence")
            .parse::<Evidence>()
            .map_err(word)?,
        status_code: r.get("status_code"),
        diagnostic: r.get("diagnostic"),
        recipient: r.get("recipient"),
        delivery_id: r.get("delivery_id"),
        bulletin_id: r.get("bulletin_id"),
        subscriber_id: r.get("subscriber_id"),
        message_id: r.get("message_id"),
        size: r.get::<Option<i64>, _>("size").unwrap_or(0),
        undone_at: opt_time(r.get("undone_at")),
    })
}

/// What a bounce adds to its row's history: the DSN's status and the server's words.
fn bounce_reply(b: &NewBounce) -> String {
    let mut s = String::from("bounced after the relay accepted it");
    if let Some(c) = &b.status_code {
        s.push_str(&format!(": {c}"));
    }
    if let Some(d) = &b.diagnostic {
        s.push_str(&format!(" {d}"));
    }
    s
}

/// A comma-joined column (`lists`, `records`, `channels`) as its words.
fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').filter(|x| !x.is_empty())
}

fn join<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words.into_iter().collect::<Vec<_>>().join(",")
}

fn article_json(b: &NewBulletin) -> Option<String> {
    b.wechat
        .as_ref()
        .map(|w| serde_json::to_string(w).expect("article serialises"))
}

/// What one outcome does to its ledger row, and the attempt it adds: the one rule both
/// engines' bulk writes bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerUpdate {
    pub id: i64,
    pub status: DeliveryStatus,
    /// 1 when the attempt counts against the row's budget (not a suppression, not a wait).
    pub counts: i64,
    pub next_attempt_at: i64,
    pub code: Option<i64>,
    /// The reply, kept as the row's last error unless the row was sent.
    pub error: Option<String>,
    pub message_id: Option<String>,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    /// 1 when the message may have been delivered although the send failed.
    pub ambiguous: i64,
    /// The row is written only while it still holds this lease (None: unconditional).
    pub lease_until: Option<i64>,
    /// The attempt row; None for a suppression (no attempt was made).
    pub attempt: Option<AttemptInsert>,
}

/// One `attempts` row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptInsert {
    pub delivery_id: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// The row's new status, or `waiting`.
    pub outcome: &'static str,
    pub code: Option<i64>,
    pub reply: String,
    pub message_id: Option<String>,
}

impl LedgerUpdate {
    pub fn of(o: &Outcome) -> Self {
        let status = o.result.status();
        let (next_attempt_at, sent_at) = match o.result {
            OutcomeKind::Retry { at } | OutcomeKind::Wait { at } => (ms(at), None),
            OutcomeKind::Sent => (ms(o.finished_at), Some(ms(o.finished_at))),
            _ => (ms(o.finished_at), None),
        };
        let waiting = matches!(o.result, OutcomeKind::Wait { .. });
        let suppressed = matches!(o.result, OutcomeKind::Suppressed);
        Self {
            id: o.delivery_id,
            status,
            counts: i64::from(!suppressed && !waiting),
            next_attempt_at,
            code: o.code,
            error: (o.result != OutcomeKind::Sent).then(|| o.reply.clone()),
            message_id: o.message_id.clone(),
            updated_at: ms(o.finished_at),
            sent_at,
            ambiguous: i64::from(o.maybe_delivered),
            lease_until: o.lease_until.map(ms),
            attempt: (!suppressed).then(|| AttemptInsert {
                delivery_id: o.delivery_id,
                started_at: ms(o.started_at),
                finished_at: ms(o.finished_at),
                outcome: if waiting { "waiting" } else { status.as_str() },
                code: o.code,
                reply: o.reply.clone(),
                message_id: o.message_id.clone(),
            }),
        }
    }
}

/// Marks the claimed rows whose subscriber left, or was removed from the list, after
/// fan-out (`status`: each subscriber id's status and address now): they are not sent to.
/// The address must match too: in a store that reused ids (SQLite before AUTOINCREMENT),
/// a removed subscriber's id may now belong to someone else.
fn suppress_departed(claimed: &mut [Claimed], status: &HashMap<i64, (String, String)>) {
    for c in claimed {
        let Some(id) = c.subscriber_id else { continue };
        c.suppressed_because = match status.get(&id) {
            Some((_, email)) if !email.eq_ignore_ascii_case(&c.recipient) => {
                Some("subscriber was removed from the list".into())
            }
            Some((s, _)) if s == "active" => None,
            Some((s, _)) => Some(format!("subscriber is {s}")),
            None => Some("subscriber was removed from the list".into()),
        };
    }
}

impl<DB: Engine> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    String: Value<DB>,
    Option<String>: Value<DB>,
    Vec<u8>: Value<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// The pool, for `store copy`.
    pub(super) fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// Begins a write transaction whose commit reports to the write health.
    async fn begin(&self) -> std::result::Result<Tx<'_, DB>, sqlx::Error> {
        Tx::begin(&self.pool, &self.health).await
    }

    /// Runs a statement outside a transaction; the rows it changed.
    async fn affected<'q>(
        &self,
        q: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    ) -> Result<u64> {
        Ok(DB::rows_affected(&q.execute(&self.pool).await?))
    }

    /// Claims due rows under a lease: with `on_expired`, also takes over (or holds) rows
    /// whose lease expired; with `min_priority`, only rows at least this urgent. Two
    /// claims, each walking its own index in order and stopping at `limit`: rows whose
    /// lease expired mid-send (resend policy; flagged ambiguous), then rows due now. A row
    /// this process holds itself is never taken back, whatever its lease says.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        on_expired: Option<ExpiredLease>,
        min_priority: Option<i64>,
    ) -> Result<Vec<Claimed>> {
        let now_ms = ms(now);
        let lease_ms = now_ms + lease.as_millis() as i64;
        let me = self.claimer.current();
        let mut tx = self.begin().await?;
        if on_expired == Some(ExpiredLease::Hold) {
            sqlx::query(HOLD_EXPIRED)
                .bind(now_ms)
                .bind(&me)
                .execute(&mut *tx)
                .await?;
        }
        let mut rows = Vec::new();
        let mut taken_from = HashMap::new();
        if on_expired == Some(ExpiredLease::Resend) {
            let expired: Vec<(i64, Option<String>)> = sqlx::query(DB::CLAIM_EXPIRED)
                .bind(now_ms)
                .bind(&me)
                .bind(limit as i64)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| (r.get("id"), r.get("claimed_by")))
                .collect();
            if !expired.is_empty() {
                let ids: Vec<i64> = expired.iter().map(|e| e.0).collect();
                let take_over = format!(
                    "UPDATE deliveries SET ambiguous = 1, lease_until = $1, updated_at = $2, claimed_by = $3
                     WHERE {} RETURNING {CLAIMED_COLUMNS}",
                    DB::in_ids("id", "$4")
                );
                rows = sqlx::query(&take_over)
                    .bind(lease_ms)
                    .bind(now_ms)
                    .bind(&me)
                    .bind(DB::ids(&ids))
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
                sqlx::query(DB::CLAIM_READY)
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
        let mut claimed = Self::claimed_in_order(rows, from_millis(lease_ms))?;
        for c in &mut claimed {
            c.taken_from = taken_from.remove(&c.id);
        }
        // Subscribers who left, or were removed, after fan-out are not sent to.
        let ids: Vec<i64> = claimed.iter().filter_map(|c| c.subscriber_id).collect();
        if !ids.is_empty() {
            let sql = format!(
                "SELECT id, status, email FROM subscribers WHERE {}",
                DB::in_ids("id", "$1")
            );
            let status: HashMap<i64, (String, String)> = sqlx::query(&sql)
                .bind(DB::ids(&ids))
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

    /// A claim's RETURNING rows as `Claimed`, in claim order (most urgent first, then by
    /// due time, then by id): RETURNING gives rows in no particular order, and PostgreSQL
    /// really returned a notice after routine rows.
    fn claimed_in_order(
        mut rows: Vec<DB::Row>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        rows.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.get::<i64, _>("priority")),
                r.get::<i64, _>("next_attempt_at"),
                r.get::<i64, _>("id"),
            )
        });
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.get("id"),
                    bulletin_id: r.get("bulletin_id"),
                    channel: parse_enum(&r.get::<String, _>("channel"))?,
                    recipient: r.get("recipient"),
                    recipient_name: r.get("recipient_name"),
                    list_id: r.get("list_id"),
                    subscriber_id: r.get("subscriber_id"),
                    attempts: r.get::<i64, _>("attempts") as u32,
                    ambiguous: r.get::<i64, _>("ambiguous") != 0,
                    created_at: from_millis(r.get("created_at")),
                    lease_until,
                    suppressed_because: None,
                    priority: r.get("priority"),
                    unconfirmed: r.get::<i64, _>("unconfirmed") as u32,
                    taken_from: None,
                    language: r.get("language"),
                })
            })
            .collect()
    }

    /// Writes `rec` as the record's primary version (inserting the record when `new`),
    /// with `hash` as the record's content hash; a changed record is a draft again.
    async fn write_primary(
        conn: &mut DB::Connection,
        rec: &NewRecord,
        body: &str,
        hash: &str,
        now: DateTime<Utc>,
        new: bool,
    ) -> Result<()> {
        let sql = if new {
            "INSERT INTO records (language, title, held_on, body_json, content_hash, version_hash,
             source_file, id, state, imported_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, 'draft', $8, $8)"
        } else {
            "UPDATE records SET language = $1, title = $2, held_on = $3, body_json = $4, content_hash = $5,
             version_hash = $6, source_file = $7, state = 'draft', approved_by = NULL, approved_at = NULL,
             approved_hash = NULL, updated_at = $8 WHERE id = $9"
        };
        sqlx::query(sql)
            .bind(&rec.record.language)
            .bind(&rec.record.title)
            .bind(rec.record.held_on.to_string())
            .bind(body)
            .bind(hash)
            .bind(&rec.content_hash)
            .bind(&rec.source_file)
            .bind(ms(now))
            .bind(rec.record.id.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn write_images(conn: &mut DB::Connection, rec: &NewRecord) -> Result<()> {
        for (i, im) in rec.images.iter().enumerate() {
            sqlx::query(
                "INSERT INTO record_images (record_id, position, file, content_type, sha256, width, height, bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(rec.record.id.as_str())
            .bind(i as i64)
            .bind(&im.file)
            .bind(&im.content_type)
            .bind(&im.sha256)
            .bind(im.width as i64)
            .bind(im.height as i64)
            .bind(&im.bytes)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Fills in each record's other language versions.
    async fn with_versions(&self, mut recs: Vec<StoredRecord>) -> Result<Vec<StoredRecord>> {
        for r in &mut recs {
            let rows = sqlx::query(
                "SELECT body_json FROM record_versions WHERE record_id = $1 ORDER BY language",
            )
            .bind(r.record.id.as_str())
            .fetch_all(&self.pool)
            .await?;
            r.versions = rows
                .iter()
                .map(|row| {
                    serde_json::from_str(&row.get::<String, _>("body_json"))
                        .map_err(|e| StoreError::Corrupt(format!("record version body: {e}")))
                })
                .collect::<Result<_>>()?;
        }
        Ok(recs)
    }

    /// Fills in each bulletin's other language versions.
    async fn with_bulletin_versions(
        &self,
        mut bs: Vec<StoredBulletin>,
    ) -> Result<Vec<StoredBulletin>> {
        for b in &mut bs {
            b.versions = sqlx::query(
                "SELECT language, subject, html, text FROM bulletin_versions WHERE bulletin_id = $1
                 ORDER BY position",
            )
            .bind(b.id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| BulletinVersion {
                language: r.get("language"),
                subject: r.get("subject"),
                html: r.get("html"),
                text: r.get("text"),
            })
            .collect();
        }
        Ok(bs)
    }

    /// Stores a new bulletin's other language versions.
    async fn write_bulletin_versions(
        conn: &mut DB::Connection,
        id: i64,
        b: &NewBulletin,
    ) -> Result<()> {
        for (pos, v) in b.versions.iter().enumerate() {
            sqlx::query(
                "INSERT INTO bulletin_versions (bulletin_id, language, position, subject, html, text)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(&v.language)
            .bind(pos as i64)
            .bind(&v.subject)
            .bind(&v.html)
            .bind(&v.text)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    fn record_from_row(row: &DB::Row) -> Result<StoredRecord> {
        let body: String = row.get("body_json");
        let record: SessionRecord = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("record body: {e}")))?;
        Ok(StoredRecord {
            record,
            versions: Vec::new(),
            state: parse_enum(&row.get::<String, _>("state"))?,
            content_hash: row.get("content_hash"),
            source_file: row.get("source_file"),
            approved_by: row.get("approved_by"),
            approved_at: opt_time(row.get("approved_at")),
            imported_at: from_millis(row.get("imported_at")),
            updated_at: from_millis(row.get("updated_at")),
            published_at: opt_time(row.get("published_at")),
            review_comment: row.get("review_comment"),
            reviewed_by: row.get("reviewed_by"),
            reviewed_at: opt_time(row.get("reviewed_at")),
        })
    }

    fn user_from_row(row: &DB::Row) -> Result<UserRow> {
        Ok(UserRow {
            id: row.get("id"),
            name: row.get("name"),
            role: parse_enum(&row.get::<String, _>("role"))?,
            has_token: row.get::<Option<String>, _>("token_hash").is_some(),
            disabled_at: opt_time(row.get("disabled_at")),
            created_at: from_millis(row.get("created_at")),
            updated_at: from_millis(row.get("updated_at")),
        })
    }

    fn subscriber_from_row(r: &DB::Row) -> Result<SubscriberRow> {
        Ok(SubscriberRow {
            id: r.get("id"),
            email: r.get("email"),
            name: r.get("name"),
            language: r.get("language"),
            status: parse_status(&r.get::<String, _>("status"))?,
            status_changed_at: from_millis(r.get("status_changed_at")),
        })
    }

    fn list_from_row(row: &DB::Row) -> ListSummary {
        ListSummary {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            active: row.get("active"),
            unsubscribed: row.get("unsubscribed"),
            bounced: row.get("bounced"),
        }
    }

    fn delivery_from_row(r: &DB::Row) -> Result<DeliveryRow> {
        let status: DeliveryStatus = parse_enum(&r.get::<String, _>("status"))?;
        let waiting = matches!(status, DeliveryStatus::Queued | DeliveryStatus::Retrying);
        Ok(DeliveryRow {
            id: r.get("id"),
            bulletin_id: r.get("bulletin_id"),
            channel: parse_enum(&r.get::<String, _>("channel"))?,
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
        })
    }

    fn bulletin_from_row(row: &DB::Row) -> Result<StoredBulletin> {
        let lists = split(&row.get::<String, _>("lists"))
            .map(|l| {
                ListName::parse(l).map_err(|e| StoreError::Corrupt(format!("bulletin list: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(StoredBulletin {
            id: row.get("id"),
            kind: parse_enum(&row.get::<String, _>("kind"))?,
            schedule: row.get("schedule"),
            language: row.get("language"),
            subject: row.get("subject"),
            html: row.get("html"),
            text: row.get("text"),
            lists,
            record_ids: split(&row.get::<String, _>("records"))
                .map(str::to_string)
                .collect(),
            channels: split(&row.get::<String, _>("channels"))
                .map(parse_enum)
                .collect::<Result<_>>()?,
            state: parse_enum(&row.get::<String, _>("state"))?,
            priority: row.get("priority"),
            created_at: from_millis(row.get("created_at")),
            wechat: row
                .get::<Option<String>, _>("wechat_json")
                .map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("bulletin WeChat article: {e}")))?,
            versions: Vec::new(),
        })
    }

    fn subscription_from_row(r: &DB::Row) -> Result<SubscriptionRef> {
        Ok(SubscriptionRef {
            list: r.get("name"),
            email: r.get("email"),
            status: parse_status(&r.get::<String, _>("status"))?,
        })
    }

    fn status_count_from_row(r: &DB::Row) -> Result<StatusCount> {
        Ok(StatusCount {
            channel: parse_enum(&r.get::<String, _>("channel"))?,
            status: parse_enum(&r.get::<String, _>("status"))?,
            count: r.get("n"),
        })
    }

    fn wechat_job_from_row(r: &DB::Row) -> WechatJob {
        WechatJob {
            delivery_id: r.get("delivery_id"),
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
        }
    }

    /// Fans one email list of a bulletin out, a page of subscribers per transaction.
    async fn fan_out_list(
        &self,
        b: &StoredBulletin,
        list: &ListName,
        page: u32,
        now: i64,
    ) -> Result<u64> {
        let list_id: Option<i64> = sqlx::query_scalar("SELECT id FROM lists WHERE name = $1")
            .bind(list.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(list_id) = list_id else {
            return Err(StoreError::Refused(format!(
                "bulletin {} names list `{list}`, which does not exist",
                b.id
            )));
        };
        let mut total = 0;
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
                 subscriber_id, priority, status, next_attempt_at, created_at, updated_at, language)
                 SELECT $1, $2, s.email, s.name, s.list_id, s.id, $3, 'queued', $4, $4, $4, s.language
                 FROM subscribers s WHERE s.list_id = $5 AND s.status = 'active' AND s.id > $6 AND s.id <= $7
                 ORDER BY s.id ON CONFLICT (bulletin_id, channel, recipient) DO NOTHING",
            )
            .bind(b.id)
            .bind(ChannelKind::Email.as_str())
            .bind(b.priority)
            .bind(now)
            .bind(list_id)
            .bind(after)
            .bind(last)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            total += DB::rows_affected(&r);
            after = last;
        }
        Ok(total)
    }

    /// Inserts a notice bulletin unless the dedupe finds one; its id if inserted.
    async fn insert_notice(
        conn: &mut DB::Connection,
        b: &NewBulletin,
        meta: &NoticeMeta,
        now: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "INSERT INTO bulletins ({BULLETIN_COLUMNS}, severity, triggered_by, idempotency_key, content_key)
             SELECT 'notice', NULL, NULL, $1, $2, $3, $4, $5, '', $6, $7, 'fanning_out', $8, $9, $10, $11, $12, $13
             WHERE NOT EXISTS (SELECT 1 FROM bulletins WHERE kind = 'notice'
                 AND (($12 IS NOT NULL AND idempotency_key = $12) OR (content_key = $13 AND created_at >= $14)))
             RETURNING id"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(&b.language)
            .bind(&b.subject)
            .bind(&b.html)
            .bind(&b.text)
            .bind(join(b.lists.iter().map(|l| l.as_str())))
            .bind(join(b.channels.iter().map(|c| c.as_str())))
            .bind(b.priority)
            .bind(now)
            .bind(article_json(b))
            .bind(meta.severity.as_str())
            .bind(&meta.triggered_by)
            .bind(&meta.idempotency_key)
            .bind(&meta.content_key)
            .bind(ms(meta.dedupe_since))
            .fetch_optional(conn)
            .await?)
    }

    async fn notice_dedupe(conn: &mut DB::Connection, meta: &NoticeMeta) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(NOTICE_DEDUPE)
            .bind(&meta.idempotency_key)
            .bind(&meta.content_key)
            .bind(ms(meta.dedupe_since))
            .fetch_optional(conn)
            .await?)
    }
}

#[async_trait]
impl<DB: Engine> Store for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    String: Value<DB>,
    Option<String>: Value<DB>,
    Vec<u8>: Value<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    async fn import_record(&self, rec: &NewRecord, now: DateTime<Utc>) -> Result<ImportOutcome> {
        use crate::domain::record::{combined_hash, same_language};
        let mut tx = self.begin().await?;
        let id = rec.record.id.as_str();
        let lang = rec.record.language.as_str();
        let existing = sqlx::query(
            "SELECT state, coalesce(version_hash, content_hash) AS version_hash, language
             FROM records WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let body = serde_json::to_string(&rec.record).expect("record serialises");
        let Some(row) = existing else {
            Self::write_primary(&mut *tx, rec, &body, &rec.content_hash, now, true).await?;
            Self::write_images(&mut *tx, rec).await?;
            tx.commit().await?;
            return Ok(ImportOutcome::Created);
        };
        let state: RecordState = parse_enum(&row.get::<String, _>("state"))?;
        let primary_lang: String = row.get("language");
        let primary_hash: String = row.get("version_hash");
        let mut others: Vec<(String, String)> =
            sqlx::query("SELECT language, content_hash FROM record_versions WHERE record_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| (r.get("language"), r.get("content_hash")))
                .collect();
        let is_primary = same_language(&primary_lang, lang);
        let known = others.iter().position(|(l, _)| same_language(l, lang));
        let unchanged = if is_primary {
            primary_hash == rec.content_hash
        } else {
            known.is_some_and(|i| others[i].1 == rec.content_hash)
        };
        if unchanged {
            return Ok(ImportOutcome::Unchanged);
        }
        if state == RecordState::Published {
            return Err(StoreError::Refused(format!(
                "record `{id}` is published and cannot change (nor gain a language version); import it under a new id"
            )));
        }
        // A new version in the preferred language takes the primary's place; the old
        // primary becomes one of the other versions.
        let promote = !is_primary
            && known.is_none()
            && same_language(lang, &rec.preferred_primary)
            && !same_language(&primary_lang, &rec.preferred_primary);
        let (new_primary, new_primary_hash) = if is_primary || promote {
            (lang.to_string(), rec.content_hash.clone())
        } else {
            (primary_lang.clone(), primary_hash.clone())
        };
        if promote {
            sqlx::query(
                "INSERT INTO record_versions (record_id, language, title, held_on, body_json, content_hash,
                 source_file, imported_at, updated_at)
                 SELECT id, language, title, held_on, body_json, coalesce(version_hash, content_hash),
                 source_file, imported_at, $1 FROM records WHERE id = $2",
            )
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            others.push((primary_lang.clone(), primary_hash.clone()));
        }
        if !is_primary && !promote {
            match known {
                Some(i) => others[i].1 = rec.content_hash.clone(),
                None => others.push((lang.to_string(), rec.content_hash.clone())),
            }
        }
        let hash = combined_hash(
            (&new_primary, &new_primary_hash),
            others.iter().map(|(l, h)| (l.as_str(), h.as_str())),
        );
        if is_primary || promote {
            Self::write_primary(&mut *tx, rec, &body, &hash, now, false).await?;
            sqlx::query("DELETE FROM record_images WHERE record_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Self::write_images(&mut *tx, rec).await?;
        } else {
            if let Some(i) = known {
                sqlx::query("DELETE FROM record_versions WHERE record_id = $1 AND language = $2")
                    .bind(id)
                    .bind(&others[i].0)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO record_versions (record_id, language, title, held_on, body_json, content_hash,
                 source_file, imported_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(id)
            .bind(lang)
            .bind(&rec.record.title)
            .bind(rec.record.held_on.to_string())
            .bind(&body)
            .bind(&rec.content_hash)
            .bind(&rec.source_file)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE records SET content_hash = $1, state = 'draft', approved_by = NULL, approved_at = NULL,
                 approved_hash = NULL, updated_at = $2 WHERE id = $3",
            )
            .bind(&hash)
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(if state == RecordState::Approved {
            ImportOutcome::ReturnedToDraft
        } else {
            ImportOutcome::Updated
        })
    }

    async fn approve_record(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApproveOutcome> {
        let state: String = sqlx::query_scalar("SELECT state FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no record `{id}`")))?;
        match parse_enum::<RecordState>(&state)? {
            RecordState::Approved | RecordState::Published => Ok(ApproveOutcome::AlreadyApproved),
            RecordState::Draft => {
                let done = self
                    .affected(
                        sqlx::query(
                            "UPDATE records SET state = 'approved', approved_by = $1, approved_at = $2,
                             approved_hash = content_hash, updated_at = $2 WHERE id = $3 AND state = 'draft'",
                        )
                        .bind(by)
                        .bind(ms(now))
                        .bind(id),
                    )
                    .await?;
                if done == 1 {
                    Ok(ApproveOutcome::Approved)
                } else {
                    Ok(ApproveOutcome::AlreadyApproved)
                }
            }
        }
    }

    async fn record(&self, id: &str) -> Result<Option<StoredRecord>> {
        let r = sqlx::query("SELECT * FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::record_from_row(&r))
            .transpose()?;
        Ok(self.with_versions(r.into_iter().collect()).await?.pop())
    }

    async fn records(&self, state: Option<RecordState>) -> Result<Vec<StoredRecord>> {
        let recs = sqlx::query(
            "SELECT * FROM records WHERE ($1 IS NULL OR state = $1) ORDER BY held_on DESC, id",
        )
        .bind(state.map(|s| s.as_str()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::record_from_row)
        .collect::<Result<_>>()?;
        self.with_versions(recs).await
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

    async fn send_back_record(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<RecordState>> {
        let mut tx = self.begin().await?;
        let state: String = sqlx::query_scalar("SELECT state FROM records WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no record `{id}`")))?;
        let state = parse_enum::<RecordState>(&state)?;
        if state == RecordState::Published {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE records SET state = 'draft', approved_by = NULL, approved_at = NULL,
             approved_hash = NULL, review_comment = $1, reviewed_by = $2, reviewed_at = $3,
             updated_at = $3 WHERE id = $4",
        )
        .bind(comment)
        .bind(by)
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(state))
    }

    async fn create_user(&self, u: &NewUser<'_>, now: DateTime<Utc>) -> Result<bool> {
        let q = sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(u.name)
        .bind(u.role.as_str())
        .bind(u.password_hash)
        .bind(ms(now));
        Ok(self.affected(q).await? == 1)
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::user_from_row)
            .collect()
    }

    async fn user(&self, name: &str) -> Result<Option<UserRow>> {
        sqlx::query("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::user_from_row(&r))
            .transpose()
    }

    async fn user_password_hash(&self, name: &str) -> Result<Option<(UserRow, String)>> {
        sqlx::query("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok((Self::user_from_row(&r)?, r.get("password_hash"))))
            .transpose()
    }

    async fn set_user_password(&self, name: &str, hash: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = DB::rows_affected(
            &sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3")
                .bind(hash)
                .bind(ms(now))
                .bind(name)
                .execute(&mut *tx)
                .await?,
        );
        sqlx::query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = DB::rows_affected(
            &sqlx::query(
                "UPDATE users SET disabled_at = CASE WHEN $1 = 1 THEN coalesce(disabled_at, $2) END,
                 updated_at = $2 WHERE name = $3",
            )
            .bind(i64::from(disabled))
            .bind(ms(now))
            .bind(name)
            .execute(&mut *tx)
            .await?,
        );
        if disabled {
            sqlx::query(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn set_user_token(
        &self,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let q = sqlx::query("UPDATE users SET token_hash = $1, updated_at = $2 WHERE name = $3")
            .bind(token_hash)
            .bind(ms(now))
            .bind(name);
        Ok(self.affected(q).await? == 1)
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserRow>> {
        sqlx::query("SELECT * FROM users WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::user_from_row(&r))
            .transpose()
    }

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: Option<i64>,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<()> {
        let q = sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(ms(now))
        .bind(ms(expires));
        self.affected(q).await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<SessionOwner>> {
        let Some(row) =
            sqlx::query("SELECT user_id FROM sessions WHERE id_hash = $1 AND expires_at > $2")
                .bind(id_hash)
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let Some(user_id) = row.get::<Option<i64>, _>("user_id") else {
            return Ok(Some(SessionOwner::Bootstrap));
        };
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok(SessionOwner::User(Self::user_from_row(&r)?)))
            .transpose()
    }

    async fn delete_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = DB::rows_affected(
            &sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(&mut *tx)
                .await?,
        );
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn insert_audit(&self, e: &NewAudit<'_>) -> Result<()> {
        let q = sqlx::query(
            "INSERT INTO audit (at, actor, action, object, before_json, after_json)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(ms(e.at))
        .bind(e.actor)
        .bind(e.action)
        .bind(e.object)
        .bind(e.before.as_deref())
        .bind(e.after.as_deref());
        self.affected(q).await?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter<'_>) -> Result<(Vec<AuditRow>, i64)> {
        const FILTER: &str = "WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
            AND ($3 IS NULL OR object = $3) AND ($4 IS NULL OR at >= $4)";
        let since = f.since.map(ms);
        let rows = sqlx::query(&format!(
            "SELECT * FROM audit {FILTER} ORDER BY id DESC LIMIT $5 OFFSET $6"
        ))
        .bind(f.actor)
        .bind(f.action)
        .bind(f.object)
        .bind(since)
        .bind(f.limit as i64)
        .bind(f.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM audit {FILTER}"))
            .bind(f.actor)
            .bind(f.action)
            .bind(f.object)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let json = |v: Option<String>| -> Result<Option<serde_json::Value>> {
            v.map(|s| {
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry JSON: {e}")))
            })
            .transpose()
        };
        let rows = rows
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.get("id"),
                    at: from_millis(r.get("at")),
                    actor: r.get("actor"),
                    action: r.get("action"),
                    object: r.get("object"),
                    before: json(r.get("before_json"))?,
                    after: json(r.get("after_json"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    async fn search_subscribers(
        &self,
        list_id: i64,
        q: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<SubscriberRow>, i64)> {
        // LIKE patterns with their wildcards escaped: the query is a plain substring.
        let escaped = q.map(|q| {
            q.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        });
        let pattern = escaped.map(|e| {
            if e.starts_with('@') {
                format!("%{e}")
            } else {
                format!("%{e}%")
            }
        });
        const FILTER: &str = "WHERE list_id = $1 AND ($2 IS NULL
            OR lower(email) LIKE $2 ESCAPE '\\' OR lower(coalesce(name, '')) LIKE $2 ESCAPE '\\')";
        let rows = sqlx::query(&format!(
            "SELECT id, email, name, language, status, status_changed_at FROM subscribers
             {FILTER} ORDER BY id LIMIT $3 OFFSET $4"
        ))
        .bind(list_id)
        .bind(pattern.as_deref())
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM subscribers {FILTER}"))
            .bind(list_id)
            .bind(pattern.as_deref())
            .fetch_one(&self.pool)
            .await?;
        let rows = rows
            .iter()
            .map(Self::subscriber_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    async fn create_list(
        &self,
        name: &ListName,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let q = sqlx::query(
            "INSERT INTO lists (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(ms(now));
        Ok(self.affected(q).await? == 1)
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
                         VALUES ($1, $2, $3, $4, 'active', $5, $5, $5) ON CONFLICT (list_id, email) DO NOTHING",
                    )
                    .bind(list_id)
                    .bind(s.email.as_str())
                    .bind(&s.name)
                    .bind(&s.language)
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
        let q = sqlx::query("DELETE FROM subscribers WHERE list_id = $1 AND email = $2")
            .bind(list_id)
            .bind(email);
        Ok(self.affected(q).await? == 1)
    }

    async fn set_subscriber_status(
        &self,
        list_id: i64,
        email: &str,
        status: SubscriberStatus,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE subscribers SET status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $2 END,
             status = $1, updated_at = $2 WHERE list_id = $3 AND email = $4",
        )
        .bind(status.as_str())
        .bind(ms(now))
        .bind(list_id)
        .bind(email);
        Ok(self.affected(q).await? == 1)
    }

    async fn subscribers_page(
        &self,
        list_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberRow>> {
        let rows = sqlx::query(
            "SELECT id, email, name, language, status, status_changed_at FROM subscribers
             WHERE list_id = $1 AND id > $2 ORDER BY id LIMIT $3",
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
                    status: parse_status(&r.get::<String, _>("status"))?,
                    status_changed_at: from_millis(r.get("status_changed_at")),
                })
            })
            .collect()
    }

    async fn record_firing(
        &self,
        schedule: &str,
        fire_time: DateTime<Utc>,
        trigger: FiringTrigger,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let q = sqlx::query(
            "INSERT INTO firings (schedule, fire_time, recorded_at, trigger) VALUES ($1, $2, $3, $4)
             ON CONFLICT (schedule, fire_time) DO NOTHING",
        )
        .bind(schedule)
        .bind(ms(fire_time))
        .bind(ms(now))
        .bind(trigger.as_str());
        Ok(self.affected(q).await? == 1)
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
        let q = sqlx::query(
            "UPDATE firings SET done_at = $1, bulletins = bulletins + $2 WHERE schedule = $3 AND fire_time = $4",
        )
        .bind(ms(now))
        .bind(bulletins as i64)
        .bind(schedule)
        .bind(ms(fire_time));
        self.affected(q).await?;
        Ok(())
    }

    async fn records_to_publish(&self, schedule: &str) -> Result<Vec<StoredRecord>> {
        // Approved records this schedule has not carried yet. A record already published by
        // another schedule is picked up only if it was approved after this schedule first fired,
        // so adding a schedule does not resend the archive.
        let recs = sqlx::query(
            "SELECT * FROM records r
             WHERE r.approved_hash = r.content_hash
               AND (r.state = 'approved'
                    OR (r.state = 'published'
                        AND r.approved_at >= (SELECT min(recorded_at) FROM firings f WHERE f.schedule = $1)))
               AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.schedule = $1 AND p.record_id = r.id)
             ORDER BY r.approved_at, r.id",
        )
        .bind(schedule)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::record_from_row)
        .collect::<Result<_>>()?;
        self.with_versions(recs).await
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
        let sql = format!(
            "INSERT INTO bulletins ({BULLETIN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'fanning_out', $12, $13) RETURNING id"
        );
        let id: i64 = sqlx::query_scalar(&sql)
            .bind(b.kind.as_str())
            .bind(&b.schedule)
            .bind(b.fire_time.map(ms))
            .bind(&b.language)
            .bind(&b.subject)
            .bind(&b.html)
            .bind(&b.text)
            .bind(join(b.lists.iter().map(|l| l.as_str())))
            .bind(join(b.record_ids.iter().map(String::as_str)))
            .bind(join(b.channels.iter().map(|c| c.as_str())))
            .bind(b.priority)
            .bind(ms(now))
            .bind(article_json(b))
            .fetch_one(&mut *tx)
            .await?;
        Self::write_bulletin_versions(&mut *tx, id, b).await?;
        for (pos, rid) in b.record_ids.iter().enumerate() {
            if let Some(schedule) = &b.schedule {
                let r = sqlx::query(
                    "INSERT INTO publications (schedule, record_id, bulletin_id, position) VALUES ($1, $2, $3, $4)",
                )
                .bind(schedule)
                .bind(rid)
                .bind(id)
                .bind(pos as i64)
                .execute(&mut *tx)
                .await;
                // Another instance published this record for the schedule meanwhile: the
                // transaction rolls back (dropped) and that instance's bulletin stands.
                match r {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
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
        let b = sqlx::query("SELECT * FROM bulletins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::bulletin_from_row(&r))
            .transpose()?;
        Ok(self
            .with_bulletin_versions(b.into_iter().collect())
            .await?
            .pop())
    }

    async fn bulletins(&self, limit: u32) -> Result<Vec<StoredBulletin>> {
        let bs = sqlx::query("SELECT * FROM bulletins ORDER BY id DESC LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::bulletin_from_row)
            .collect::<Result<_>>()?;
        self.with_bulletin_versions(bs).await
    }

    async fn archived_bulletins(&self, q: &ArchiveQuery) -> Result<Vec<ArchivedBulletin>> {
        let sql = format!(
            "SELECT b.id, b.kind, v.language, v.subject, b.created_at FROM bulletins b
             JOIN (SELECT id AS bid, language, subject, -1 AS position FROM bulletins
                   UNION ALL
                   SELECT bulletin_id, language, subject, position FROM bulletin_versions) v
               ON v.bid = b.id
             WHERE b.state <> 'fanning_out' {}
               AND ($1 IS NULL OR lower(v.language) = lower($1))
               AND ($2 IS NULL OR b.id < $2)
             ORDER BY b.id DESC, v.position LIMIT $3",
            archive_kinds(q.include_notices)
        );
        sqlx::query(&sql)
            .bind(q.language.as_deref())
            .bind(q.before)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ArchivedBulletin {
                    id: row.get("id"),
                    kind: parse_enum(&row.get::<String, _>("kind"))?,
                    language: row.get("language"),
                    subject: row.get("subject"),
                    created_at: from_millis(row.get("created_at")),
                })
            })
            .collect()
    }

    async fn archive_languages(&self, include_notices: bool) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT DISTINCT v.language FROM bulletins b
             JOIN (SELECT id AS bid, language FROM bulletins
                   UNION ALL
                   SELECT bulletin_id, language FROM bulletin_versions) v
               ON v.bid = b.id
             WHERE b.state <> 'fanning_out' {}
             ORDER BY v.language",
            archive_kinds(include_notices)
        );
        Ok(sqlx::query_scalar(&sql).fetch_all(&self.pool).await?)
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
        accounts: &FanOutAccounts,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let b = self
            .bulletin(bulletin_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no bulletin {bulletin_id}")))?;
        let mut total = 0u64;
        if b.channels.contains(&ChannelKind::Email) {
            for list in &b.lists {
                total += self.fan_out_list(&b, list, page, ms(now)).await?;
            }
        }
        for (channel, recipient) in accounts.rows(&b.channels) {
            let q = sqlx::query(
                "INSERT INTO deliveries (bulletin_id, channel, recipient, priority, status, next_attempt_at,
                 created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', $5, $5, $5)
                 ON CONFLICT (bulletin_id, channel, recipient) DO NOTHING",
            )
            .bind(bulletin_id)
            .bind(channel.as_str())
            .bind(recipient)
            .bind(b.priority)
            .bind(ms(now));
            total += self.affected(q).await?;
        }
        let mut tx = self.begin().await?;
        let started = sqlx::query(
            "UPDATE bulletins SET state = 'sending', fanned_out_at = $1 WHERE id = $2 AND state = 'fanning_out'",
        )
        .bind(ms(now))
        .bind(bulletin_id)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&started) > 0 {
            DB::notify_work(&mut *tx, self.claimer.base()).await?;
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

    async fn urgent_due(&self, now: DateTime<Utc>, min_priority: i64) -> Result<bool> {
        let due = sqlx::query(DB::URGENT_DUE)
            .bind(min_priority)
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?;
        Ok(due.is_some())
    }

    async fn release(&self, claims: &[(i64, DateTime<Utc>)], now: DateTime<Utc>) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let claims: Vec<(i64, i64)> = claims.iter().map(|(id, l)| (*id, ms(*l))).collect();
        let mut tx = self.begin().await?;
        let n = DB::release(&mut *tx, &claims, ms(now)).await?;
        if n > 0 {
            // Rows handed back (a stopping instance's) are due now, for any instance.
            DB::notify_work(&mut *tx, self.claimer.base()).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn not_sending(&self, bulletins: &[i64]) -> Result<Vec<i64>> {
        if bulletins.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM bulletins WHERE state <> 'sending' AND {}",
            DB::in_ids("id", "$1")
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(DB::ids(bulletins))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn expire_foreign_leases(&self, now: DateTime<Utc>) -> Result<u64> {
        let q = sqlx::query(
            "UPDATE deliveries SET lease_until = $1 - 1
             WHERE status = 'sending' AND lease_until >= $1 AND claimed_by IS DISTINCT FROM $2",
        )
        .bind(ms(now))
        .bind(self.claimer.current());
        self.affected(q).await
    }

    fn claimer(&self) -> &Claimer {
        &self.claimer
    }

    fn work_notifications(&self) -> Option<BoxStream<'static, ()>> {
        DB::work_notifications(self)
    }

    fn concurrent_writes(&self) -> bool {
        DB::CONCURRENT_WRITES
    }

    async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let rows: Vec<LedgerUpdate> = outcomes.iter().map(LedgerUpdate::of).collect();
        DB::record_outcomes(self, &rows).await
    }

    async fn finish_bulletins(&self) -> Result<u64> {
        self.affected(sqlx::query(
            "UPDATE bulletins SET state = 'done' WHERE state = 'sending' AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.bulletin_id = bulletins.id
                AND d.status IN ('queued', 'sending', 'retrying', 'held'))",
        ))
        .await
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
        // The statuses are words of a closed vocabulary, written into the statement.
        let statuses: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let sql = format!(
            "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = $1, lease_until = NULL,
             updated_at = $1
             WHERE status IN ({}) AND ($2 IS NULL OR bulletin_id = $2) AND ($3 IS NULL OR id = $3)",
            statuses.join(", ")
        );
        let mut tx = self.begin().await?;
        let r = sqlx::query(&sql)
            .bind(ms(now))
            .bind(bulletin)
            .bind(delivery)
            .execute(&mut *tx)
            .await?;
        let n = DB::rows_affected(&r);
        if n > 0 {
            DB::notify_work(&mut *tx, self.claimer.base()).await?;
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
        DB::next_due(self).await
    }

    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        let sql =
            format!("SELECT * FROM deliveries {LEDGER_FILTER} ORDER BY id LIMIT $8 OFFSET $9");
        let limit = if f.limit == 0 { 100 } else { f.limit };
        sqlx::query(&sql)
            .bind(f.bulletin)
            .bind(f.channel.map(|c| c.as_str()))
            .bind(f.status.map(|s| s.as_str()))
            .bind(f.recipient.as_ref().map(|r| r.to_lowercase()))
            .bind(f.since.map(ms))
            .bind(f.ambiguous_only as i64)
            .bind(f.recipient_like.as_deref())
            .bind(limit as i64)
            .bind(f.offset as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::delivery_from_row)
            .collect()
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>> {
        sqlx::query("SELECT * FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::delivery_from_row(&r))
            .transpose()
    }

    async fn count_deliveries(&self, f: &DeliveryFilter) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM deliveries {LEDGER_FILTER}");
        Ok(sqlx::query_scalar(&sql)
            .bind(f.bulletin)
            .bind(f.channel.map(|c| c.as_str()))
            .bind(f.status.map(|s| s.as_str()))
            .bind(f.recipient.as_ref().map(|r| r.to_lowercase()))
            .bind(f.since.map(ms))
            .bind(f.ambiguous_only as i64)
            .bind(f.recipient_like.as_deref())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn delivery_counts(&self, bulletin: Option<i64>) -> Result<Vec<StatusCount>> {
        // Two statements, not `$1 IS NULL OR …`: one bulletin's counts walk its index.
        let rows =
            match bulletin {
                Some(b) => sqlx::query(
                    "SELECT channel, status, count(*) AS n FROM deliveries WHERE bulletin_id = $1
                 GROUP BY channel, status ORDER BY channel, status",
                )
                .bind(b)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(
                        "SELECT channel, status, count(*) AS n FROM deliveries
                 GROUP BY channel, status ORDER BY channel, status",
                    )
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(Self::status_count_from_row).collect()
    }

    async fn wechat_job(&self, delivery_id: i64) -> Result<Option<WechatJob>> {
        Ok(
            sqlx::query("SELECT * FROM wechat_jobs WHERE delivery_id = $1")
                .bind(delivery_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| Self::wechat_job_from_row(&r)),
        )
    }

    async fn save_wechat_job(&self, j: &WechatJob, now: DateTime<Utc>) -> Result<()> {
        let q = sqlx::query(
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
        .bind(j.step_started_at.map(ms));
        self.affected(q).await?;
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
        let q = sqlx::query(
            "INSERT INTO wechat_tokens (appid, token, refresh_at, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (appid) DO UPDATE SET token = excluded.token, refresh_at = excluded.refresh_at,
             fetched_at = excluded.fetched_at",
        )
        .bind(appid)
        .bind(token)
        .bind(ms(refresh_at))
        .bind(ms(now));
        self.affected(q).await?;
        Ok(())
    }

    async fn drop_shared_token(&self, appid: &str, failed: &str) -> Result<()> {
        let q = sqlx::query("DELETE FROM wechat_tokens WHERE appid = $1 AND token = $2")
            .bind(appid)
            .bind(failed);
        self.affected(q).await?;
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
        let q = sqlx::query(
            "INSERT INTO wechat_media (appid, sha256, kind, media_id, url, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (appid, sha256, kind) DO UPDATE SET media_id = excluded.media_id, url = excluded.url,
             created_at = excluded.created_at",
        )
        .bind(appid)
        .bind(sha256)
        .bind(kind)
        .bind(&m.media_id)
        .bind(&m.url)
        .bind(ms(now));
        self.affected(q).await?;
        Ok(())
    }

    async fn attempts(&self, delivery_ids: &[i64]) -> Result<Vec<AttemptRow>> {
        if delivery_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT delivery_id, started_at, finished_at, outcome, code, reply FROM attempts
             WHERE {} ORDER BY delivery_id, id",
            DB::in_ids("delivery_id", "$1")
        );
        Ok(sqlx::query(&sql)
            .bind(DB::ids(delivery_ids))
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

    async fn set_bulletin_paused(&self, id: i64, paused: bool) -> Result<PauseOutcome> {
        let (from, to) = if paused {
            (BulletinState::Sending, BulletinState::Paused)
        } else {
            (BulletinState::Paused, BulletinState::Sending)
        };
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE bulletins SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
        let changed = DB::rows_affected(&r) == 1;
        if changed && !paused {
            DB::notify_work(&mut *tx, self.claimer.base()).await?; // resumed: its rows are due again
        }
        tx.commit().await?;
        if changed {
            return Ok(PauseOutcome::Changed);
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM bulletins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match state {
            None => Err(StoreError::NotFound(format!("no bulletin {id}"))),
            Some(s) if s == to.as_str() => Ok(PauseOutcome::Unchanged),
            Some(_) => Ok(PauseOutcome::NotApplicable),
        }
    }

    async fn create_notice(
        &self,
        b: &NewBulletin,
        meta: &NoticeMeta,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool)> {
        // One write transaction: the dedupe check, the quota check, the insert and the
        // quota reservation cannot be split by another writer (on PostgreSQL, whose NOT
        // EXISTS under READ COMMITTED does not see a concurrent insert, notices are also
        // created one at a time). Explicit (not an autocommitted INSERT … RETURNING, whose
        // row reached us before the commit: a commit that failed on a full disk went
        // unreported), and reported to the write health.
        let mut tx = self.begin().await?;
        DB::lock_notices(&mut *tx).await?;
        if let Some(q) = &meta.wechat_quota {
            // The dedupe comes first: the same notice again returns its id, quota or not.
            if let Some(id) = Self::notice_dedupe(&mut *tx, meta).await? {
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
        if let Some(id) = Self::insert_notice(&mut *tx, b, meta, ms(now)).await? {
            Self::write_bulletin_versions(&mut *tx, id, b).await?;
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
        let existing = Self::notice_dedupe(&mut *tx, meta)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a notice the dedupe found is gone".into()))?;
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
        .map(|r| Self::subscription_from_row(&r))
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
        self.health.track(
            sqlx::query(
                "UPDATE subscribers SET status = 'unsubscribed', updated_at = $1, status_changed_at = $1
                 WHERE id = $2 AND list_id = $3 AND email = $4 AND status = 'active'",
            )
            .bind(ms(now))
            .bind(subscriber_id)
            .bind(list_id)
            .bind(email.to_lowercase())
            .execute(&self.pool)
            .await,
        )?;
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

    async fn record_bounce(&self, b: &NewBounce, rules: &BounceRules) -> Result<BounceRecorded> {
        let now = ms(b.received_at);
        let mut tx = self.begin().await?;
        // The ledger row: the VERP token's, else the returned Message-ID's, else the
        // address's latest row the relay accepted.
        let mut row: Option<(i64, String, Option<i64>, String)> = None;
        let pick = |r: Option<DB::Row>| {
            r.map(|r| {
                (
                    r.get::<i64, _>("id"),
                    r.get::<String, _>("recipient"),
                    r.get::<Option<i64>, _>("subscriber_id"),
                    r.get::<String, _>("status"),
                )
            })
        };
        if let Some(id) = b.verp_row {
            row = pick(
                sqlx::query(
                    "SELECT id, recipient, subscriber_id, status FROM deliveries
                     WHERE id = $1 AND channel = 'email'",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?,
            );
        }
        if let (None, Some(mid)) = (&row, &b.message_id) {
            let bare = mid.trim().trim_start_matches('<').trim_end_matches('>');
            row = pick(
                sqlx::query(
                    "SELECT id, recipient, subscriber_id, status FROM deliveries
                     WHERE message_id = $1 AND channel = 'email' ORDER BY id DESC LIMIT 1",
                )
                .bind(format!("<{bare}>"))
                .fetch_optional(&mut *tx)
                .await?,
            );
        }
        if let (None, Some(rcpt), true) = (&row, &b.recipient, rules.match_by_address) {
            if b.kind.is_bounce() || b.kind == BounceKind::Complaint {
                row = pick(
                    sqlx::query(
                        "SELECT id, recipient, subscriber_id, status FROM deliveries
                         WHERE recipient = $1 AND channel = 'email' AND status IN ('sent', 'bounced')
                         ORDER BY id DESC LIMIT 1",
                    )
                    .bind(rcpt.trim().to_lowercase())
                    .fetch_optional(&mut *tx)
                    .await?,
                );
            }
        }
        let recipient = row
            .as_ref()
            .map(|r| r.1.clone())
            .or_else(|| b.recipient.as_ref().map(|r| r.trim().to_lowercase()));
        // A message recorded before (same dedupe key) is not stored again: the insert
        // does nothing and the first one's id is reported. The unique index decides, so
        // two processes ingesting it at once still keep one.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO bounces (received_at, source, kind, evidence, status_code, diagnostic,
                 recipient, delivery_id, subscriber_id, message_id, raw, dedupe_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(now)
        .bind(b.source.as_str())
        .bind(b.kind.as_str())
        .bind(b.evidence.as_str())
        .bind(b.status_code.clone())
        .bind(b.diagnostic.clone())
        .bind(recipient.clone())
        .bind(row.as_ref().map(|r| r.0))
        .bind(row.as_ref().and_then(|r| r.2))
        .bind(b.message_id.clone())
        .bind(b.raw.clone())
        .bind(b.dedupe_key.clone())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = inserted else {
            // Nothing was written: the transaction only read.
            tx.commit().await?;
            let first = sqlx::query("SELECT id, delivery_id FROM bounces WHERE dedupe_key = $1")
                .bind(b.dedupe_key.clone())
                .fetch_one(&self.pool)
                .await?;
            return Ok(BounceRecorded {
                id: first.get("id"),
                delivery_id: first.get("delivery_id"),
                row_bounced: false,
                subscribers_bounced: 0,
                subscribers_unsubscribed: 0,
                duplicate: true,
            });
        };
        let mut done = BounceRecorded {
            id,
            delivery_id: row.as_ref().map(|r| r.0),
            row_bounced: false,
            subscribers_bounced: 0,
            subscribers_unsubscribed: 0,
            duplicate: false,
        };
        // Effects only for a bounce matched to a row bulletin sent: a bounce about an
        // address nobody here mailed marks nobody.
        let Some((row_id, email, _, _)) = row else {
            tx.commit().await?;
            return Ok(done);
        };
        let suppress_after =
            |count: i64, threshold: u32| threshold > 0 && count >= i64::from(threshold);
        let mark_bounced =
            "UPDATE subscribers SET status = 'bounced', updated_at = $1, status_changed_at = $1
             WHERE email = $2 AND status = 'active'";
        match b.kind {
            BounceKind::Hard => {
                let r = sqlx::query(
                    "UPDATE deliveries SET status = 'bounced', last_error = $1, updated_at = $2
                     WHERE id = $3 AND status = 'sent'",
                )
                .bind(bounce_reply(b))
                .bind(now)
                .bind(row_id)
                .execute(&mut *tx)
                .await?;
                done.row_bounced = DB::rows_affected(&r) == 1;
                sqlx::query(
                    "INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
                     VALUES ($1, $2, $2, 'bounced', NULL, $3, $4)",
                )
                .bind(row_id)
                .bind(now)
                .bind(bounce_reply(b))
                .bind(b.message_id.clone())
                .execute(&mut *tx)
                .await?;
                let hard: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM bounces WHERE recipient = $1 AND kind = 'hard'
                     AND delivery_id IS NOT NULL AND undone_at IS NULL",
                )
                .bind(&email)
                .fetch_one(&mut *tx)
                .await?;
                if suppress_after(hard, rules.hard_to_suppress) {
                    let r = sqlx::query(mark_bounced)
                        .bind(now)
                        .bind(&email)
                        .execute(&mut *tx)
                        .await?;
                    done.subscribers_bounced = DB::rows_affected(&r);
                }
            }
            BounceKind::Soft => {
                let soft: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM bounces WHERE recipient = $1 AND kind = 'soft'
                     AND delivery_id IS NOT NULL AND undone_at IS NULL AND received_at >= $2",
                )
                .bind(&email)
                .bind(ms(rules.soft_since))
                .fetch_one(&mut *tx)
                .await?;
                if suppress_after(soft, rules.soft_to_suppress) {
                    let r = sqlx::query(mark_bounced)
                        .bind(now)
                        .bind(&email)
                        .execute(&mut *tx)
                        .await?;
                    done.subscribers_bounced = DB::rows_affected(&r);
                }
            }
            BounceKind::Complaint => {
                let r = sqlx::query(
                    "UPDATE subscribers SET status = 'unsubscribed', updated_at = $1, status_changed_at = $1
                     WHERE email = $2 AND status = 'active'",
                )
                .bind(now)
                .bind(&email)
                .execute(&mut *tx)
                .await?;
                done.subscribers_unsubscribed = DB::rows_affected(&r);
            }
            BounceKind::Delayed
            | BounceKind::Delivered
            | BounceKind::AutoReply
            | BounceKind::Unmatched => {}
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn bounces(&self, kind: Option<BounceKind>, limit: u32) -> Result<Vec<BounceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {BOUNCE_COLUMNS} FROM bounces WHERE ($1 IS NULL OR kind = $1)
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(kind.map(|k| k.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bounce_from_row::<DB>).collect()
    }

    async fn bounce_raw(&self, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT raw FROM bounces WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn undo_bounce(&self, id: i64, now: DateTime<Utc>) -> Result<BounceUndone> {
        let mut tx = self.begin().await?;
        let Some(r) = sqlx::query(
            "SELECT kind, recipient, delivery_id, received_at, undone_at FROM bounces WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Err(StoreError::NotFound(format!("no bounce {id}")));
        };
        let mut out = BounceUndone {
            undone: false,
            row_restored: false,
            subscribers_restored: 0,
        };
        if r.get::<Option<i64>, _>("undone_at").is_some() {
            return Ok(out);
        }
        out.undone = true;
        let kind = r
            .get::<String, _>("kind")
            .parse::<BounceKind>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let recipient: Option<String> = r.get("recipient");
        let delivery: Option<i64> = r.get("delivery_id");
        let received: i64 = r.get("received_at");
        sqlx::query("UPDATE bounces SET undone_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let (BounceKind::Hard, Some(d)) = (kind, delivery) {
            let u = sqlx::query(
                "UPDATE deliveries SET status = 'sent', updated_at = $1 WHERE id = $2 AND status = 'bounced'",
            )
            .bind(ms(now))
            .bind(d)
            .execute(&mut *tx)
            .await?;
            out.row_restored = DB::rows_affected(&u) == 1;
            sqlx::query(
                "INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
                 VALUES ($1, $2, $2, 'bounce_undone', NULL, $3, NULL)",
            )
            .bind(d)
            .bind(ms(now))
            .bind(format!("bounce {id} undone by an operator"))
            .execute(&mut *tx)
            .await?;
        }
        // Only what this bounce did: the subscriptions whose status it set, at its time.
        let suppressed_as = match kind {
            BounceKind::Hard | BounceKind::Soft => Some("bounced"),
            BounceKind::Complaint => Some("unsubscribed"),
            _ => None,
        };
        if let (Some(status), Some(email), Some(_)) = (suppressed_as, recipient, delivery) {
            let u = sqlx::query(
                "UPDATE subscribers SET status = 'active', updated_at = $1, status_changed_at = $1
                 WHERE email = $2 AND status = $3 AND status_changed_at = $4",
            )
            .bind(ms(now))
            .bind(email)
            .bind(status)
            .bind(received)
            .execute(&mut *tx)
            .await?;
            out.subscribers_restored = DB::rows_affected(&u);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn bounce_counts_since(&self, since: DateTime<Utc>) -> Result<Vec<(BounceKind, i64)>> {
        let rows = sqlx::query(
            "SELECT kind, count(*) AS n FROM bounces WHERE received_at >= $1 GROUP BY kind ORDER BY kind",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let k = r
                    .get::<String, _>("kind")
                    .parse::<BounceKind>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((k, r.get::<i64, _>("n")))
            })
            .collect()
    }

    async fn ready(&self) -> Result<()> {
        DB::check(&self.state)?;
        self.health.check()?;
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success = true")
                .fetch_one(&self.pool)
                .await?;
        let known = DB::MIGRATOR.iter().count() as i64;
        if applied < known {
            return Err(StoreError::Refused(format!(
                "{applied} of {known} migrations applied"
            )));
        }
        Ok(())
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
        self.affected(
            sqlx::query(
                "UPDATE subscribers SET status = 'bounced', updated_at = $1, status_changed_at = $1
                 WHERE email = $2 AND status = 'active'",
            )
            .bind(ms(now))
            .bind(email),
        )
        .await
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        let q = sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(value);
        self.affected(q).await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: OutcomeKind) -> Outcome {
        let t = from_millis(1_000);
        Outcome {
            delivery_id: 7,
            started_at: t,
            finished_at: from_millis(2_000),
            result,
            code: Some(250),
            reply: "ok".into(),
            message_id: Some("<m@x>".into()),
            maybe_delivered: false,
            lease_until: Some(from_millis(9_000)),
        }
    }

    #[test]
    fn a_sent_row_records_when_and_keeps_no_error() {
        let u = LedgerUpdate::of(&outcome(OutcomeKind::Sent));
        assert_eq!(u.status, DeliveryStatus::Sent);
        assert_eq!(
            (u.counts, u.next_attempt_at, u.sent_at),
            (1, 2_000, Some(2_000))
        );
        assert_eq!(u.error, None);
        assert_eq!(u.lease_until, Some(9_000));
        assert_eq!(u.attempt.unwrap().outcome, "sent");
    }

    #[test]
    fn a_wait_spends_no_attempt_and_a_suppression_records_none() {
        let at = from_millis(5_000);
        let w = LedgerUpdate::of(&outcome(OutcomeKind::Wait { at }));
        assert_eq!(
            (w.status, w.counts, w.next_attempt_at),
            (DeliveryStatus::Retrying, 0, 5_000)
        );
        assert_eq!(w.attempt.unwrap().outcome, "waiting");
        let r = LedgerUpdate::of(&outcome(OutcomeKind::Retry { at }));
        assert_eq!((r.counts, r.error.as_deref()), (1, Some("ok")));
        let s = LedgerUpdate::of(&outcome(OutcomeKind::Suppressed));
        assert_eq!(
            (s.status, s.counts, s.attempt),
            (DeliveryStatus::Suppressed, 0, None)
        );
    }
}
