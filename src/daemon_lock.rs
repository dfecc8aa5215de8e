//! One daemon per SQLite store: `serve` holds an exclusive lock on a file next to the
//! database (`bulletin.db` → `bulletin.db.lock`) for as long as it runs. The lock is the
//! kernel's (flock), so it goes away with the process however it ends, `kill -9`
//! included; a stale file never blocks a restart. It also refuses to start on a disk
//! too full to write the ledger. Other commands do not take it: they
//! read the store or enqueue, which SQLite's own locking makes safe beside a daemon.

use fs4::{FileExt, TryLockError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Below this much free space beside the store, `serve` refuses to start rather than
/// fail on the first ledger write.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Why the daemon lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DaemonLockError {
    #[error("cannot open the daemon lock file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds it (`holder`: ", process PID" when the file says).
    #[error(
        "another `bulletin serve` is already running on the store {} (it holds the lock \
         {}{holder}); stop it first, or give this daemon its own store. Other commands \
         (lists, deliveries, retry, notice send, ...) work beside the running daemon",
        db.display(),
        path.display()
    )]
    Held {
        db: PathBuf,
        path: PathBuf,
        holder: String,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the disk holding the store {} has {free} bytes free; the daemon needs at least \
         {MIN_FREE_BYTES} to record deliveries: free space, then start it again",
        db.display()
    )]
    DiskFull { db: PathBuf, free: u64 },
    #[error("cannot write the daemon lock file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while the daemon runs; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the lock for the database at `db`, or says who holds it.
pub fn acquire(db: &Path) -> Result<DaemonLock, DaemonLockError> {
    let path = lock_path(db);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| DaemonLockError::Open {
            path: path.clone(),
            source,
        })?;
    // Called through the trait: std's own `File::try_lock` is newer than our MSRV.
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder
                .trim()
                .parse::<u32>()
                .map(|p| format!(", process {p}"))
                .unwrap_or_default();
            return Err(DaemonLockError::Held {
                db: db.to_path_buf(),
                path,
                holder,
            });
        }
        Err(TryLockError::Error(source)) => {
            return Err(DaemonLockError::Lock { path, source });
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(free) = fs4::available_space(dir) {
        if free < MIN_FREE_BYTES {
            return Err(DaemonLockError::DiskFull {
                db: db.to_path_buf(),
                free,
            });
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(source) = written {
        return Err(DaemonLockError::Write { path, source });
    }
    Ok(DaemonLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_store_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        assert_eq!(lock_path(&db), dir.path().join("b.db.lock"));
        let first = acquire(&db).unwrap();
        let err = acquire(&db).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        acquire(&db).expect("free again once the holder is gone");
    }
}
