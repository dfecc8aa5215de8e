//! `bulletin store copy`: moves a whole SQLite store into an empty PostgreSQL one —
//! records, lists, firings, bulletins, the ledger and its attempts, WeChat state and
//! settings (so unsubscribe links already sent stay valid) — in one transaction.

use super::{PostgresStore, Result, SqliteStore, StoreError};
use futures::TryStreamExt;
use sqlx::Row;

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bytes,
}
use Kind::{Bytes, Int, Text};

/// Tables in an order that satisfies the foreign keys, with their columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    ("settings", &[("name", Text), ("value", Text)]),
    (
        "records",
        &[
            ("id", Text),
            ("language", Text),
            ("title", Text),
            ("held_on", Text),
            ("body_json", Text),
            ("content_hash", Text),
            ("state", Text),
            ("source_file", Text),
            ("approved_by", Text),
            ("approved_at", Int),
            ("approved_hash", Text),
            ("imported_at", Int),
            ("updated_at", Int),
            ("published_at", Int),
            ("review_comment", Text),
            ("reviewed_by", Text),
            ("reviewed_at", Int),
        ],
    ),
    (
        "users",
        &[
            ("id", Int),
            ("name", Text),
            ("role", Text),
            ("password_hash", Text),
            ("token_hash", Text),
            ("disabled_at", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    ),
    (
        "audit",
        &[
            ("id", Int),
            ("at", Int),
            ("actor", Text),
            ("action", Text),
            ("object", Text),
            ("before_json", Text),
            ("after_json", Text),
        ],
    ),
    (
        "record_images",
        &[
            ("record_id", Text),
            ("position", Int),
            ("file", Text),
            ("content_type", Text),
            ("sha256", Text),
            ("width", Int),
            ("height", Int),
            ("bytes", Bytes),
        ],
    ),
    (
        "lists",
        &[
            ("id", Int),
            ("name", Text),
            ("description", Text),
            ("created_at", Int),
        ],
    ),
    (
        "subscribers",
        &[
            ("id", Int),
            ("list_id", Int),
            ("email", Text),
            ("name", Text),
            ("language", Text),
            ("status", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("status_changed_at", Int),
        ],
    ),
    (
        "firings",
        &[
            ("schedule", Text),
            ("fire_time", Int),
            ("recorded_at", Int),
            ("trigger", Text),
            ("done_at", Int),
            ("bulletins", Int),
        ],
    ),
    (
        "bulletins",
        &[
            ("id", Int),
            ("kind", Text),
            ("schedule", Text),
            ("fire_time", Int),
            ("language", Text),
            ("subject", Text),
            ("html", Text),
            ("text", Text),
            ("lists", Text),
            ("records", Text),
            ("channels", Text),
            ("priority", Int),
            ("state", Text),
            ("created_at", Int),
            ("fanned_out_at", Int),
            ("wechat_json", Text),
            ("severity", Text),
            ("triggered_by", Text),
            ("idempotency_key", Text),
            ("content_key", Text),
        ],
    ),
    (
        "publications",
        &[
            ("schedule", Text),
            ("record_id", Text),
            ("bulletin_id", Int),
            ("position", Int),
        ],
    ),
    (
        "deliveries",
        &[
            ("id", Int),
            ("bulletin_id", Int),
            ("channel", Text),
            ("recipient", Text),
            ("recipient_name", Text),
            ("list_id", Int),
            ("subscriber_id", Int),
            ("priority", Int),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("lease_until", Int),
            ("ambiguous", Int),
            ("last_code", Int),
            ("last_error", Text),
            ("message_id", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("sent_at", Int),
            ("claimed_by", Text),
            ("unconfirmed", Int),
        ],
    ),
    (
        "attempts",
        &[
            ("id", Int),
            ("delivery_id", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("outcome", Text),
            ("code", Int),
            ("reply", Text),
            ("message_id", Text),
        ],
    ),
    (
        "bounces",
        &[
            ("id", Int),
            ("received_at", Int),
            ("source", Text),
            ("kind", Text),
            ("evidence", Text),
            ("status_code", Text),
            ("diagnostic", Text),
            ("recipient", Text),
            ("delivery_id", Int),
            ("subscriber_id", Int),
            ("message_id", Text),
            ("raw", Bytes),
            ("undone_at", Int),
        ],
    ),
    (
        "wechat_jobs",
        &[
            ("delivery_id", Int),
            ("draft_media_id", Text),
            ("thumb_media_id", Text),
            ("publish_id", Text),
            ("publish_status", Int),
            ("article_id", Text),
            ("article_url", Text),
            ("msg_id", Text),
            ("msg_data_id", Text),
            ("first_poll_at", Int),
            ("polls", Int),
            ("updated_at", Int),
            ("step", Text),
            ("step_started_at", Int),
        ],
    ),
    (
        "wechat_quota_reservations",
        &[("bulletin_id", Int), ("appid", Text), ("reserved_at", Int)],
    ),
    (
        "wechat_media",
        &[
            ("appid", Text),
            ("sha256", Text),
            ("kind", Text),
            ("media_id", Text),
            ("url", Text),
            ("created_at", Int),
        ],
    ),
];

/// Tables of the schema that are deliberately not copied, and why. A test holds
/// [`TABLES`] plus this list equal to the schema of both engines, so a new table or
/// column cannot be forgotten here.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "wechat_tokens",
        "an access token is fetched again on first use; copying it would share one token \
         between two stores",
    ),
    (
        "sessions",
        "browser sessions are short-lived; people sign in again on the new store",
    ),
];

/// The tables and columns `store copy` copies, in copy order.
pub fn copied_columns() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES
        .iter()
        .map(|(t, cols)| (*t, cols.iter().map(|c| c.0).collect()))
        .collect()
}

/// Tables whose `id` comes from an identity sequence on PostgreSQL.
const IDENTITY_TABLES: &[&str] = &[
    "lists",
    "subscribers",
    "bulletins",
    "deliveries",
    "attempts",
    "bounces",
    "users",
    "audit",
];

/// Rows copied, per table, in copy order.
pub type CopyReport = Vec<(&'static str, u64)>;

/// Copies every row of `from` into `to`, every table of which must be empty but
/// `settings` (those a daemon started on it wrote are replaced by the source's, so links
/// already sent keep working). The source is read as one snapshot (a single read
/// transaction); the target is written in one transaction: all or nothing.
pub async fn sqlite_to_postgres(from: &SqliteStore, to: &PostgresStore) -> Result<CopyReport> {
    let mut tx = to.pool().begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name NOT IN ('_sqlx_migrations', 'settings')
         ORDER BY table_name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut used = Vec::new();
    for table in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            used.push(format!("{table} ({n})"));
        }
    }
    if !used.is_empty() {
        return Err(StoreError::Refused(format!(
            "the target PostgreSQL store is not empty: {} hold rows; copy into a fresh \
             database (merging two stores could send a bulletin again)",
            used.join(", ")
        )));
    }
    sqlx::query("DELETE FROM settings")
        .execute(&mut *tx)
        .await?;
    // One snapshot of the source: a read transaction sees every table as of its first
    // read, whatever a process beside it writes meanwhile.
    let mut source = from.pool().begin().await?;
    let mut report = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        let mut rows = sqlx::query(&select).fetch(&mut *source);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            let mut q = sqlx::query(&insert);
            for (i, (_, kind)) in columns.iter().enumerate() {
                q = match kind {
                    Text => q.bind(row.try_get::<Option<String>, _>(i)?),
                    Int => q.bind(row.try_get::<Option<i64>, _>(i)?),
                    Bytes => q.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                };
            }
            q.execute(&mut *tx).await.map_err(|e| {
                StoreError::Refused(format!("copying table `{table}`, row {}: {e}", n + 1))
            })?;
            n += 1;
        }
        report.push((*table, n));
    }
    for table in IDENTITY_TABLES {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    // Subscriber ids are never reused: new ones start above the ids of removed
    // subscribers too, as the ledger (or SQLite's own sequence) still names them.
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'")
            .fetch_optional(&mut *source)
            .await?;
    source.rollback().await?;
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('subscribers', 'id'),
            greatest((SELECT coalesce(max(id), 0) FROM subscribers),
                     (SELECT coalesce(max(subscriber_id), 0) FROM deliveries), $1) + 1, false)",
    )
    .bind(seq.unwrap_or(0))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}
