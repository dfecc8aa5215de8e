//! SQLite, for one host: one file in WAL mode and one connection, migrations embedded,
//! transactions begun IMMEDIATE; what differs from PostgreSQL ([`Engine`]): claims walk
//! their indexes by `INDEXED BY`, outcomes are written 16 rows a statement, and there is
//! no other process to wake.

use super::health::{Tx, WriteHealth};
use super::sql::{Engine, LedgerUpdate, SqlStore};
use super::*;
use crate::clock::from_millis;
use futures::stream::BoxStream;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection};
use std::path::Path;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded store.
pub type SqliteStore = SqlStore<Sqlite>;

/// A file's path and its device and inode when the store opened it.
#[derive(Debug, Clone)]
pub struct FileId {
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

/// The claim statements: each walks its own index in order and stops at its LIMIT.
const CLAIM_EXPIRED: &str =
    "SELECT d.id, d.claimed_by FROM deliveries d INDEXED BY deliveries_leased
     WHERE d.status = 'sending' AND d.lease_until < $1 AND d.claimed_by IS DISTINCT FROM $2
       AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
     ORDER BY d.lease_until LIMIT $3";

#[async_trait]
impl Engine for Sqlite {
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;
    /// One connection, one writer: store jobs run one at a time.
    const CONCURRENT_WRITES: bool = false;
    type State = FileId;
    type Ids = String;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const CLAIM_EXPIRED: &'static str = CLAIM_EXPIRED;
    const CLAIM_READY: &'static str = concat!(
        "UPDATE deliveries SET status = 'sending', lease_until = $1, updated_at = $2, claimed_by = $4
         WHERE id IN (
            SELECT d.id FROM deliveries d INDEXED BY deliveries_ready
            WHERE d.status IN ('queued', 'retrying') AND d.next_attempt_at <= $3
              AND d.priority >= $5
              AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
            ORDER BY d.priority DESC, d.next_attempt_at, d.id
            LIMIT $6)
         RETURNING ",
        claimed_columns!()
    );
    const URGENT_DUE: &'static str = "SELECT 1 FROM deliveries d INDEXED BY deliveries_ready
         WHERE d.status IN ('queued', 'retrying') AND d.priority >= $1
           AND d.next_attempt_at <= $2
           AND d.bulletin_id IN (SELECT id FROM bulletins WHERE state = 'sending')
         LIMIT 1";

    /// A JSON array, read by `json_each`.
    fn ids(ids: &[i64]) -> String {
        serde_json::to_string(ids).expect("ids serialise")
    }

    fn in_ids(column: &str, param: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({param}))")
    }

    fn rows_affected(r: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        r.rows_affected()
    }

    async fn changes(conn: &mut SqliteConnection) -> std::result::Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(conn)
            .await
    }

    fn check(file: &FileId) -> Result<()> {
        file.check()
    }

    async fn next_due(s: &SqliteStore) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT min(CASE WHEN d.status = 'sending' THEN d.lease_until ELSE d.next_attempt_at END)
             FROM deliveries d JOIN bulletins b ON b.id = d.bulletin_id
             WHERE b.state = 'sending' AND d.status IN ('queued', 'retrying', 'sending')",
        )
        .fetch_one(&s.pool)
        .await?;
        Ok(v.map(from_millis))
    }

    async fn release(conn: &mut SqliteConnection, claims: &[(i64, i64)], now: i64) -> Result<u64> {
        let mut n = 0;
        for chunk in claims.chunks(100) {
            let sql = format!(
                "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'retrying' END,
                 lease_until = NULL, updated_at = ?
                 FROM (VALUES {}) AS v
                 WHERE deliveries.id = v.column1 AND deliveries.status = 'sending'
                   AND deliveries.lease_until = v.column2",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql).bind(now);
            for (id, lease) in chunk {
                q = q.bind(id).bind(lease);
            }
            n += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(n)
    }

    /// In one IMMEDIATE transaction.
    async fn record_outcomes(s: &SqliteStore, rows: &[LedgerUpdate]) -> Result<()> {
        let mut tx = Tx::begin(&s.pool, &s.health).await?;
        write_outcomes(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Nothing to wake: no other process queues work unannounced but the CLI, and the
    /// daemon's dispatchers poll.
    async fn notify_work(_: &mut SqliteConnection, _: &str) -> Result<()> {
        Ok(())
    }

    /// IMMEDIATE transactions already run one at a time.
    async fn lock_notices(_: &mut SqliteConnection) -> Result<()> {
        Ok(())
    }

    fn work_notifications(_: &SqliteStore) -> Option<BoxStream<'static, ()>> {
        None
    }
}

/// Two statements per 16 rows (each statement is a round trip to sqlx's worker thread;
/// one per row was a fifth of a send's CPU). The chunk size bounds how many statement
/// texts the statement cache holds.
async fn write_outcomes(conn: &mut SqliteConnection, rows: &[LedgerUpdate]) -> Result<()> {
    const CHUNK: usize = 16;
    for chunk in rows.chunks(CHUNK) {
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
        for u in chunk {
            q = q
                .bind(u.id)
                .bind(u.status.as_str())
                .bind(u.counts)
                .bind(u.next_attempt_at)
                .bind(u.code)
                .bind(&u.error)
                .bind(&u.message_id)
                .bind(u.updated_at)
                .bind(u.sent_at)
                .bind(u.ambiguous)
                .bind(u.lease_until);
        }
        q.execute(&mut *conn).await?;

        let attempts: Vec<_> = chunk.iter().filter_map(|u| u.attempt.as_ref()).collect();
        if attempts.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO attempts (delivery_id, started_at, finished_at, outcome, code, reply, message_id)
             VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?)"; attempts.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for a in attempts {
            q = q
                .bind(a.delivery_id)
                .bind(a.started_at)
                .bind(a.finished_at)
                .bind(a.outcome)
                .bind(a.code)
                .bind(&a.reply)
                .bind(&a.message_id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl SqliteStore {
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
            .foreign_keys(true)
            // Temporary b-trees (sorts, DISTINCT, UNION) in memory, not in temp files: a
            // statement then needs no new file descriptor, so a process out of them (a
            // flood of connections) can still claim and record outcomes.
            .pragma("temp_store", "memory");
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
            state: file,
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
