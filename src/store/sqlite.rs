//! SQLite implementation of [`Store`]: one file in WAL mode, migrations embedded.

use super::health::{Tx, WriteHealth};
use super::*;
use crate::clock::{from_millis, to_millis};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    claimer: Arc<Claimer>,
    /// Whether the last write succeeded (for `/readyz`).
    health: Arc<WriteHealth>,
    /// The file as opened: `/readyz` notices it being deleted or replaced.
    file: FileId,
}

/// A file's path and its device and inode when the store opened it.
#[derive(Debug, Clone)]
struct FileId {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Ok while the path still names the file that was opened.
    fn check(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (self.dev, self.ino) => Ok(()),
            Ok(m) => Err(StoreError::Refused(format!(
                "the store file {} was replaced by another file (device {} inode {} when \
                 opened, device {} inode {} now): this process still uses the old one; \
                 put the right file back, or restart to use the new one",
                self.path.display(),
                self.dev,
                self.ino,
                m.dev(),
                m.ino()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Refused(format!(
                    "the store file {} was deleted or moved while in use: this process \
                     writes to a file no other can open; put it back and restart",
                    self.path.display()
                )))
            }
            Err(e) => Err(StoreError::Refused(format!(
                "the store file {} cannot be checked: {e}",
                self.path.display()
            ))),
        }
    }
}

/// The notice an earlier request with the same key, or the same content within the
/// dedupe window, created (binds: key, key, content key, window start, key).
const NOTICE_DEDUPE: &str = "SELECT id FROM bulletins WHERE kind = 'notice'
     AND ((? IS NOT NULL AND idempotency_key = ?) OR (content_key = ? AND created_at >= ?))
     ORDER BY (idempotency_key IS NOT NULL AND idempotency_key = ?) DESC, id LIMIT 1";

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

impl SqliteStore {
    /// Begins a write transaction (IMMEDIATE: see [`SqliteStore::open`]) whose commit
    /// reports to the write health.
    async fn begin(&self) -> std::result::Result<Tx<'_, sqlx::Sqlite>, sqlx::Error> {
        Tx::begin_sqlite(&self.pool, &self.health).await
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
                "UPDATE deliveries SET status = 'held', ambiguous = 1, lease_until = NULL, updated_at = ?,
                 last_error = 'the lease expired while sending (the process stopped mid-send?): held for an operator'
                 WHERE status = 'sending' AND lease_until < ? AND claimed_by IS NOT ?",
            )
            .bind(now_ms)
            .bind(now_ms)
            .bind(&me)
            .execute(&mut *tx)
            .await?;
        }
        // Two claims, each walking its own index in order and stopping at `limit`: rows whose
        // lease expired mid-send (resend policy; flagged ambiguous), then rows due now. A
        // row this process holds itself is never taken back, whatever its lease says.
        let returning =
            "RETURNING id, bulletin_id, channel, recipient, recipient_name, list_id, subscriber_id,
                         attempts, ambiguous, created_at, priority, next_attempt_at, unconfirmed";
        let mut rows = Vec::new();
        let mut taken_from = std::collections::HashMap::new();
        if on_expired == Some(ExpiredLease::Resend) {
            let expired: Vec<(i64, Option<String>)> = sqlx::query_as(
                "SELECT d.id, d.claimed_by FROM deliveries d INDEXED BY deliveries_leased
                 WHERE d.status = 'sending' AND d.lease_until < ? AND d.claimed_by IS NOT ?
                   AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
                 ORDER BY d.lease_until LIMIT ?",
            )
            .bind(now_ms)
            .bind(&me)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
            if !expired.is_empty() {
                let sql = format!(
                    "UPDATE deliveries SET ambiguous = 1, lease_until = ?, updated_at = ?, claimed_by = ?
                     WHERE id IN ({}) {returning}",
                    vec!["?"; expired.len()].join(",")
                );
                let mut q = sqlx::query(&sql)
                    .bind(now_ms + lease.as_millis() as i64)
                    .bind(now_ms)
                    .bind(&me);
                for (id, _) in &expired {
                    q = q.bind(id);
                }
                rows = q.fetch_all(&mut *tx).await?;
                taken_from = expired
                    .into_iter()
                    .map(|(id, by)| (id, by.unwrap_or_else(|| "an unknown process".into())))
                    .collect();
            }
        }
        let left = limit as i64 - rows.len() as i64;
        if left > 0 {
            rows.extend(
                sqlx::query(&format!(
                    "UPDATE deliveries SET status = 'sending', lease_until = ?, updated_at = ?, claimed_by = ?
                     WHERE id IN (
                        SELECT d.id FROM deliveries d INDEXED BY deliveries_ready
                        WHERE d.status IN ('queued', 'retrying') AND d.next_attempt_at <= ?
                          AND d.priority >= ?
                          AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
                        ORDER BY d.priority DESC, d.next_attempt_at, d.id
                        LIMIT ?)
                     {returning}"
                ))
                .bind(now_ms + lease.as_millis() as i64)
                .bind(now_ms)
                .bind(&me)
                .bind(now_ms)
                .bind(min_priority.unwrap_or(i64::MIN))
                .bind(left)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let mut claimed = claimed_in_order(rows, from_millis(now_ms + lease.as_millis() as i64))?;
        for c in &mut claimed {
            c.taken_from = taken_from.remove(&c.id);
        }
        // Subscribers who left, or were removed, after fan-out are not sent to.
        let ids: Vec<i64> = claimed.iter().filter_map(|c| c.subscriber_id).collect();
        if !ids.is_empty() {
            let sql = format!(
                "SELECT id, status, email FROM subscribers WHERE id IN ({})",
                vec!["?"; ids.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id);
            }
            let status: std::collections::HashMap<i64, (String, String)> = q
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

    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true).await
    }

    /// Opens an existing database file and runs pending migrations; refuses, naming the
    /// path, when there is none (a mistyped `store.url` must not become an empty store).
    pub async fn open_existing(path: &Path) -> Result<Self> {
        Self::open_with(path, false).await
    }

    async fn open_with(path: &Path, create: bool) -> Result<Self> {
        if !create && !path.exists() {
            return Err(missing(path));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Refused(format!(
                    "cannot create the store folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
        preflight(path)?;
        // The file is created here, once: the pool never creates one, so a connection
        // reopened after the file was deleted fails instead of starting an empty store.
        // A store that could not be prepared is removed again: nothing half-made is left.
        let created = !path.exists();
        if created {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| {
                    StoreError::Refused(format!(
                        "cannot create the store file {}: {e}",
                        path.display()
                    ))
                })?;
        }
        let opened = Self::connect(path).await;
        if opened.is_err() && created {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        opened
    }

    /// Opens the pool on an existing file and runs pending migrations.
    async fn connect(path: &Path) -> Result<Self> {
        let file = FileId::of(path).map_err(|e| {
            StoreError::Refused(format!(
                "cannot read the store file {}: {e}",
                path.display()
            ))
        })?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        // One connection. SQLite lets one writer in at a time anyway, and with several
        // connections every transaction found its page cache invalidated by the others'
        // commits and read its pages again: perf put ~35 % of a send's CPU in the SQLite
        // worker threads, and 10,000 messages went 4,900 -> 6,300 msg/s with one. Every
        // statement here is short; no code path holds a transaction while it asks the
        // pool for another connection (that would wait on itself). Transactions begin
        // IMMEDIATE: a deferred one that reads, then writes after another process (the CLI
        // beside the daemon) committed fails at once with SQLITE_BUSY instead of waiting
        // out busy_timeout.
        //
        // A transaction that fails on a full disk or an I/O error is rolled back by SQLite
        // itself; sqlx's own ROLLBACK then fails ("no transaction is active") and its
        // count of open transactions stays at 1, so every later `begin_with` failed with
        // "attempted to call begin_with at non-zero transaction depth" until a restart.
        // A connection handed back still counting an open transaction (once the rollback
        // queued by a dropped transaction has run) is therefore closed, and the pool opens
        // a fresh one for the next caller; the write is recorded as failed.
        let health = Arc::new(WriteHealth::default());
        let on_release = health.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(move |conn, _| {
                let health = on_release.clone();
                Box::pin(async move {
                    use sqlx::Connection;
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        tracing::warn!(
                            "a store transaction failed and SQLite ended it: \
                             reopening the store connection"
                        );
                        if !health.is_failing() {
                            health.failed(
                                "a write transaction failed and SQLite rolled it back \
                                 (is the disk full or failing?)",
                            );
                        }
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| {
                let full = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .and_then(|d| fs4::available_space(d).ok())
                    .is_some_and(|free| free < 64 * 1024);
                StoreError::Refused(format!(
                    "cannot open the store at {}: {e}{}",
                    path.display(),
                    if full {
                        " (the disk holding it is full: free space and start again)"
                    } else {
                        sqlite_hint(&e)
                    }
                ))
            })?;
        // Migrations run with foreign keys off, as SQLite's procedure for rebuilding a table
        // wants (a table that others refer to cannot be dropped and replaced otherwise);
        // they are switched back on, and checked, before the store is used.
        // How many migrations were applied before this open (none on a new file).
        let applied = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(&pool)
            .await
            .map(|n| n > 0)
        };
        let before: i64 = if applied().await? {
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await?
        } else {
            0
        };
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&pool)
            .await?;
        let migrated = MIGRATOR.run(&pool).await;
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&pool)
            .await?;
        migrated.map_err(|e| {
            let inner = match &e {
                sqlx::migrate::MigrateError::Execute(inner)
                | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => Some(inner),
                _ => None,
            };
            match inner.map(sqlite_hint).filter(|h| !h.is_empty()) {
                Some(hint) => StoreError::Refused(format!(
                    "cannot prepare the store at {}: {e}{hint}; the migration was rolled back, \
                     nothing was changed",
                    path.display()
                )),
                None => StoreError::Migrate(e),
            }
        })?;
        // Checked only after migrations ran now: the check reads every referring row,
        // which every CLI command would otherwise pay for on a large ledger.
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await?;
        let broken: Vec<(String,)> = if after != before {
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&pool)
                .await?
        } else {
            Vec::new()
        };
        if let Some((table,)) = broken.first() {
            return Err(StoreError::Corrupt(format!(
                "the store at {} has rows in `{table}` that refer to rows that are gone ({} in all)",
                path.display(),
                broken.len()
            )));
        }
        Ok(Self {
            pool,
            claimer: Arc::new(Claimer::new()),
            health,
            file,
        })
    }

    /// The pool, for `store copy`.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn record_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredRecord> {
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

    fn list_from_row(row: &sqlx::sqlite::SqliteRow) -> ListSummary {
        ListSummary {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            active: row.get("active"),
            unsubscribed: row.get("unsubscribed"),
            bounced: row.get("bounced"),
        }
    }

    fn delivery_from_row(r: &sqlx::sqlite::SqliteRow) -> DeliveryRow {
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

    fn bulletin_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredBulletin> {
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

/// The refusal to open a store file that does not exist.
pub(super) fn missing(path: &Path) -> StoreError {
    StoreError::Refused(format!(
        "there is no store at {}: check store.url, or create one with `bulletin store init` \
         (`bulletin serve` also creates it at start)",
        path.display()
    ))
}

/// Says plainly why the database file cannot be used, before SQLite's terse codes do:
/// the file must be writable, and so must its folder (SQLite keeps the `-wal` and
/// `-shm` files beside the database).
fn preflight(path: &Path) -> Result<()> {
    let why = |e: &std::io::Error| match e.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem => " (the file system is read-only)",
        std::io::ErrorKind::PermissionDenied => {
            " (permission denied: the user running bulletin must be able to write it)"
        }
        std::io::ErrorKind::StorageFull => " (the disk is full)",
        _ => "",
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(StoreError::Refused(format!(
                "the store {} is not a file",
                path.display()
            )));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                StoreError::Refused(format!(
                    "the store file {} cannot be opened for writing: {e}{}",
                    path.display(),
                    why(&e)
                ))
            })?;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(
        ".{}.write-test-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StoreError::Refused(format!(
            "the store folder {} cannot be written (SQLite keeps {}-wal and -shm there): {e}{}",
            dir.display(),
            path.display(),
            why(&e)
        ))),
    }
}

/// A plain reading of the SQLite errors an operator can fix.
fn sqlite_hint(e: &sqlx::Error) -> &'static str {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        Some("13") => " (the disk holding it is full: free space and start again)",
        Some("8") => " (the file or its folder is read-only)",
        Some(c) if c.parse::<i64>().is_ok_and(|c| c & 0xff == 10) => {
            " (an I/O error: is the disk full or failing?)"
        }
        Some("11") | Some("26") => " (the file is damaged or is not a SQLite database)",
        _ => "",
    }
}

/// The ledger filter, shared by listing and counting: ?1 bulletin, ?2 channel, ?3 status,
/// ?4 recipient, ?5 since, ?6 ambiguous only (NULL parameters match everything).
/// WeChat mass sends counted against the quota since ?1 (= ?2): notices' reservations,
/// plus mass sends of bulletins that reserved nothing (scheduled mass sends).
const WECHAT_QUOTA_USED: &str = "SELECT
    (SELECT count(*) FROM wechat_quota_reservations WHERE reserved_at >= ?)
  + (SELECT count(*) FROM wechat_jobs j JOIN deliveries d ON d.id = j.delivery_id
     WHERE j.msg_id IS NOT NULL AND j.updated_at >= ?
     AND NOT EXISTS (SELECT 1 FROM wechat_quota_reservations r WHERE r.bulletin_id = d.bulletin_id))";

const LEDGER_FILTER: &str =
    "WHERE (?1 IS NULL OR bulletin_id = ?1) AND (?2 IS NULL OR channel = ?2)
    AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR recipient = ?4)
    AND (?5 IS NULL OR updated_at >= ?5) AND (?6 = 0 OR ambiguous = 1)";

/// Binds a `DeliveryFilter` to the parameters of [`LEDGER_FILTER`].
macro_rules! bind_filter {
    ($q:expr, $f:expr) => {
        $q.bind($f.bulletin)
            .bind($f.channel.map(|c| c.as_str()))
            .bind($f.status.map(|s| s.as_str()))
            .bind($f.recipient.as_ref().map(|r| r.to_lowercase()))
            .bind($f.since.map(ms))
            .bind($f.ambiguous_only as i64)
    };
}

const LIST_SUMMARY: &str = "SELECT l.id, l.name, l.description,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'active') AS active,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'unsubscribed') AS unsubscribed,
    (SELECT count(*) FROM subscribers s WHERE s.list_id = l.id AND s.status = 'bounced') AS bounced
    FROM lists l";

#[async_trait]
impl Store for SqliteStore {
    async fn import_record(&self, rec: &NewRecord, now: DateTime<Utc>) -> Result<ImportOutcome> {
        let mut tx = self.begin().await?;
        let id = rec.record.id.as_str();
        let existing = sqlx::query("SELECT state, content_hash FROM records WHERE id = ?")
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
                    "UPDATE records SET language = ?, title = ?, held_on = ?, body_json = ?, content_hash = ?,
                     state = 'draft', source_file = ?, approved_by = NULL, approved_at = NULL, approved_hash = NULL,
                     updated_at = ? WHERE id = ?",
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
                sqlx::query("DELETE FROM record_images WHERE record_id = ?")
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
                     imported_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?, ?)",
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query("SELECT state FROM records WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no record `{id}`")))?;
        match parse_enum::<RecordState>(row.get::<&str, _>("state"))? {
            RecordState::Approved | RecordState::Published => Ok(ApproveOutcome::AlreadyApproved),
            RecordState::Draft => {
                let done = sqlx::query(
                    "UPDATE records SET state = 'approved', approved_by = ?, approved_at = ?, approved_hash = content_hash,
                     updated_at = ? WHERE id = ? AND state = 'draft'",
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
        sqlx::query("SELECT * FROM records WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::record_from_row(&r))
            .transpose()
    }

    async fn records(&self, state: Option<RecordState>) -> Result<Vec<StoredRecord>> {
        let rows = match state {
            Some(s) => {
                sqlx::query("SELECT * FROM records WHERE state = ? ORDER BY held_on DESC, id")
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
        let rows = sqlx::query("SELECT * FROM record_images WHERE record_id = ? ORDER BY position")
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
            "INSERT OR IGNORE INTO lists (name, description, created_at) VALUES (?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list(&self, name: &ListName) -> Result<Option<ListSummary>> {
        Ok(sqlx::query(&format!("{LIST_SUMMARY} WHERE l.name = ?"))
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
                "SELECT name, language FROM subscribers WHERE list_id = ? AND email = ?",
            )
            .bind(list_id)
            .bind(s.email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO subscribers (list_id, email, name, language, status, created_at, updated_at, status_changed_at)
                         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?6)",
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
                            "UPDATE subscribers SET name = ?, language = ?, updated_at = ? WHERE list_id = ? AND email = ?",
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
        let r = sqlx::query("DELETE FROM subscribers WHERE list_id = ? AND email = ?")
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
            "UPDATE subscribers SET status_changed_at = CASE WHEN status = ?1 THEN status_changed_at ELSE ?2 END,
             status = ?1, updated_at = ?2 WHERE list_id = ?3 AND email = ?4",
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
            "SELECT id, email, name, language, status, status_changed_at FROM subscribers WHERE list_id = ? AND id > ? ORDER BY id LIMIT ?",
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
            "INSERT OR IGNORE INTO firings (schedule, fire_time, recorded_at, trigger) VALUES (?, ?, ?, ?)",
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
            sqlx::query_scalar("SELECT max(fire_time) FROM firings WHERE schedule = ?")
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
        sqlx::query("UPDATE firings SET done_at = ?, bulletins = bulletins + ? WHERE schedule = ? AND fire_time = ?")
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
                        AND r.approved_at >= (SELECT min(recorded_at) FROM firings f WHERE f.schedule = ?)))
               AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.schedule = ? AND p.record_id = r.id)
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
                let taken =
                    sqlx::query("SELECT 1 FROM publications WHERE schedule = ? AND record_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'fanning_out', ?, ?) RETURNING id",
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
                sqlx::query("INSERT INTO publications (schedule, record_id, bulletin_id, position) VALUES (?, ?, ?, ?)")
                    .bind(schedule)
                    .bind(rid)
                    .bind(id)
                    .bind(pos as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE records SET state = 'published', published_at = coalesce(published_at, ?) WHERE id = ?",
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
        sqlx::query("SELECT * FROM bulletins WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::bulletin_from_row(&r))
            .transpose()
    }

    async fn bulletins(&self, limit: u32) -> Result<Vec<StoredBulletin>> {
        sqlx::query("SELECT * FROM bulletins ORDER BY id DESC LIMIT ?")
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
        let priority: i64 = sqlx::query_scalar("SELECT priority FROM bulletins WHERE id = ?")
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
                    sqlx::query_scalar("SELECT id FROM lists WHERE name = ?")
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
                        "SELECT max(id) FROM (SELECT id FROM subscribers WHERE list_id = ? AND status = 'active'
                         AND id > ? ORDER BY id LIMIT ?)",
                    )
                    .bind(list_id)
                    .bind(after)
                    .bind(page as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                    let Some(last) = last else { break };
                    let r = sqlx::query(
                        "INSERT OR IGNORE INTO deliveries (bulletin_id, channel, recipient, recipient_name, list_id,
                         subscriber_id, priority, status, next_attempt_at, created_at, updated_at)
                         SELECT ?, ?, s.email, s.name, s.list_id, s.id, ?, 'queued', ?, ?, ?
                         FROM subscribers s WHERE s.list_id = ? AND s.status = 'active' AND s.id > ? AND s.id <= ?
                         ORDER BY s.id",
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
                "INSERT OR IGNORE INTO deliveries (bulletin_id, channel, recipient, priority, status, next_attempt_at,
                 created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
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
        sqlx::query("UPDATE bulletins SET state = 'sending', fanned_out_at = ? WHERE id = ? AND state = 'fanning_out'")
            .bind(ms(now))
            .bind(bulletin_id)
            .execute(&self.pool)
            .await?;
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
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM deliveries d INDEXED BY deliveries_ready
             WHERE d.status IN ('queued', 'retrying') AND d.priority >= ?
               AND d.next_attempt_at <= ?
               AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
             LIMIT 1",
        )
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
        let mut n = 0;
        let mut tx = self.begin().await?;
        for chunk in claims.chunks(100) {
            let sql = format!(
                "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'retrying' END,
                 lease_until = NULL, updated_at = ?
                 FROM (VALUES {}) AS v
                 WHERE deliveries.id = v.column1 AND deliveries.status = 'sending'
                   AND deliveries.lease_until = v.column2",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql).bind(ms(now));
            for (id, lease) in chunk {
                q = q.bind(id).bind(ms(*lease));
            }
            n += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn not_sending(&self, bulletins: &[i64]) -> Result<Vec<i64>> {
        if bulletins.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM bulletins WHERE state <> 'sending' AND id IN ({})",
            vec!["?"; bulletins.len()].join(",")
        );
        let mut q = sqlx::query_scalar(&sql);
        for b in bulletins {
            q = q.bind(b);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    async fn expire_foreign_leases(&self, now: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE deliveries SET lease_until = ? - 1
             WHERE status = 'sending' AND lease_until >= ? AND claimed_by IS NOT ?",
        )
        .bind(ms(now))
        .bind(ms(now))
        .bind(self.claimer.current())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    fn claimer(&self) -> &Claimer {
        &self.claimer
    }

    async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // A group in two statements per chunk (each statement is a round trip to sqlx's
        // worker thread; one per row was a fifth of a send's CPU). The chunk size bounds
        // how many statement texts the statement cache holds.
        const CHUNK: usize = 16;
        let mut tx = self.begin().await?;
        for chunk in outcomes.chunks(CHUNK) {
            let sql = format!(
                "UPDATE deliveries SET status = v.column2, attempts = attempts + v.column3,
                 next_attempt_at = v.column4, lease_until = NULL, last_code = v.column5,
                 last_error = v.column6, message_id = coalesce(v.column7, message_id),
                 updated_at = v.column8, sent_at = coalesce(v.column9, sent_at),
                 ambiguous = max(ambiguous, v.column10), unconfirmed = unconfirmed + v.column10 * v.column3
                 FROM (VALUES {}) AS v WHERE deliveries.id = v.column1
                   AND (v.column11 IS NULL OR deliveries.lease_until = v.column11)",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for o in chunk {
                let status = o.result.status();
                let (next, sent_at) = match o.result {
                    OutcomeKind::Retry { at } | OutcomeKind::Wait { at } => (ms(at), None),
                    OutcomeKind::Sent => (ms(o.finished_at), Some(ms(o.finished_at))),
                    _ => (ms(o.finished_at), None),
                };
                let counts =
                    !matches!(o.result, OutcomeKind::Suppressed | OutcomeKind::Wait { .. });
                q = q
                    .bind(o.delivery_id)
                    .bind(status.as_str())
                    .bind(counts as i64)
                    .bind(next)
                    .bind(o.code)
                    .bind((!matches!(o.result, OutcomeKind::Sent)).then_some(&o.reply))
                    .bind(&o.message_id)
                    .bind(ms(o.finished_at))
                    .bind(sent_at)
                    .bind(o.maybe_delivered as i64)
                    .bind(o.lease_until.map(ms));
            }
            q.execute(&mut *tx).await?;

            let attempted: Vec<&Outcome> = chunk
                .iter()
                .filter(|o| !matches!(o.result, OutcomeKind::Suppressed))
                .collect();
            if attempted.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
                 VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?)"; attempted.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for o in attempted {
                q = q
                    .bind(o.delivery_id)
                    .bind(ms(o.started_at))
                    .bind(ms(o.finished_at))
                    .bind(if matches!(o.result, OutcomeKind::Wait { .. }) {
                        "waiting"
                    } else {
                        o.result.status().as_str()
                    })
                    .bind(o.code)
                    .bind(&o.reply)
                    .bind(&o.message_id);
            }
            q.execute(&mut *tx).await?;
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
        let sql = format!(
            "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = ?, lease_until = NULL, updated_at = ?
             WHERE status IN ({}) AND (? IS NULL OR bulletin_id = ?) AND (? IS NULL OR id = ?)",
            vec!["?"; statuses.len()].join(",")
        );
        let mut q = sqlx::query(&sql).bind(ms(now)).bind(ms(now));
        for s in statuses {
            q = q.bind(s.as_str());
        }
        let n = q
            .bind(bulletin)
            .bind(bulletin)
            .bind(delivery)
            .bind(delivery)
            .execute(&mut *tx)
            .await?
            .rows_affected();
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
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT min(CASE WHEN d.status = 'sending' THEN d.lease_until ELSE d.next_attempt_at END)
             FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id
             WHERE b.state = 'sending' AND d.status IN ('queued', 'retrying', 'sending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_time(v))
    }

    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
        let sql =
            format!("SELECT * FROM deliveries {LEDGER_FILTER} ORDER BY id LIMIT ?7 OFFSET ?8");
        let q = bind_filter!(sqlx::query(&sql), f);
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = q
            .bind(limit as i64)
            .bind(f.offset as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::delivery_from_row).collect())
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>> {
        Ok(sqlx::query("SELECT * FROM deliveries WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::delivery_from_row(&r)))
    }

    async fn delivery_counts(&self, bulletin: Option<i64>) -> Result<Vec<StatusCount>> {
        let rows = match bulletin {
            Some(b) => {
                sqlx::query("SELECT channel, status, count(*) AS n FROM deliveries WHERE bulletin_id = ? GROUP BY channel, status ORDER BY channel, status")
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
        let row = sqlx::query("SELECT * FROM wechat_jobs WHERE delivery_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        let row = sqlx::query("SELECT token, refresh_at FROM wechat_tokens WHERE appid = ?")
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
            "INSERT INTO wechat_tokens (appid, token, refresh_at, fetched_at) VALUES (?, ?, ?, ?)
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
        sqlx::query("DELETE FROM wechat_tokens WHERE appid = ? AND token = ?")
            .bind(appid)
            .bind(failed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wechat_article_recorded(&self, article_id: &str, delivery_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM wechat_jobs WHERE article_id = ? AND delivery_id <> ?",
        )
        .bind(article_id)
        .bind(delivery_id)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    async fn wechat_draft_recorded(&self, media_id: &str, delivery_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM wechat_jobs WHERE draft_media_id = ? AND delivery_id <> ?",
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
            "SELECT media_id, url FROM wechat_media WHERE appid = ? AND sha256 = ? AND kind = ?",
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
            "INSERT OR REPLACE INTO wechat_media (appid, sha256, kind, media_id, url, created_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        let sql = format!(
            "SELECT delivery_id, started_at, finished_at, outcome, code, reply FROM attempts
             WHERE delivery_id IN ({}) ORDER BY delivery_id, id",
            vec!["?"; delivery_ids.len()].join(",")
        );
        let mut q = sqlx::query(&sql);
        for id in delivery_ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(&self.pool)
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
        let sql = format!("SELECT count(*) FROM deliveries {LEDGER_FILTER}");
        let q = bind_filter!(sqlx::query_scalar(&sql), f);
        Ok(q.fetch_one(&self.pool).await?)
    }

    async fn set_bulletin_paused(&self, id: i64, paused: bool) -> Result<PauseOutcome> {
        let (from, to) = if paused {
            ("sending", "paused")
        } else {
            ("paused", "sending")
        };
        let changed = sqlx::query("UPDATE bulletins SET state = ? WHERE id = ? AND state = ?")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 1 {
            return Ok(PauseOutcome::Changed);
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM bulletins WHERE id = ?")
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
        // One write transaction: the dedupe check, the quota check, the insert and the
        // quota reservation cannot be split by another writer. Explicit (not an
        // autocommitted INSERT … RETURNING, whose row reached us before the commit: a
        // commit that failed on a full disk went unreported), and reported to the write
        // health.
        let mut tx = self.begin().await?;
        if let Some(q) = &meta.wechat_quota {
            // The dedupe comes first: the same notice again returns its id, quota or not.
            let existing: Option<i64> = sqlx::query_scalar(NOTICE_DEDUPE)
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
             SELECT 'notice', NULL, NULL, ?, ?, ?, ?, ?, '', ?, ?, 'fanning_out', ?, ?, ?, ?, ?, ?
             WHERE NOT EXISTS (SELECT 1 FROM bulletins WHERE kind = 'notice'
                 AND ((? IS NOT NULL AND idempotency_key = ?) OR (content_key = ? AND created_at >= ?)))
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
        .bind(
            b.wechat
                .as_ref()
                .map(|w| serde_json::to_string(w).expect("article serialises")),
        )
        .bind(&meta.idempotency_key)
        .bind(&meta.idempotency_key)
        .bind(&meta.content_key)
        .bind(ms(meta.dedupe_since))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = inserted {
            if let Some(q) = &meta.wechat_quota {
                sqlx::query(
                    "INSERT INTO wechat_quota_reservations (bulletin_id, appid, reserved_at) VALUES (?, ?, ?)",
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
        let existing: i64 = sqlx::query_scalar(NOTICE_DEDUPE)
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
             WHERE s.id = ? AND s.list_id = ?",
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
        self.health.track(
            sqlx::query(
                "UPDATE subscribers SET status = 'unsubscribed', updated_at = ?1, status_changed_at = ?1
                 WHERE id = ?2 AND list_id = ?3 AND email = ?4 AND status = 'active'",
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
             WHERE list_id = ? AND subscriber_id = ? AND channel = 'email' LIMIT 2",
        )
        .bind(list_id)
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn ready(&self) -> Result<()> {
        self.file.check()?;
        self.health.check()?;
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success = 1")
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
             WHERE recipient = ? AND channel = 'email' AND status = 'failed' AND last_code >= 500",
        )
        .bind(email)
        .fetch_one(&self.pool)
        .await?;
        if spans < i64::from(threshold) {
            return Ok(0);
        }
        let r = sqlx::query("UPDATE subscribers SET status = 'bounced', updated_at = ?1, status_changed_at = ?1 WHERE email = ?2 AND status = 'active'")
            .bind(ms(now))
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
