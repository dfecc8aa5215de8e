//! Whether the store's writes are succeeding, for `/readyz`: every transaction's commit
//! (and the unsubscribe endpoint's single-statement write) reports here, and a failure
//! keeps the store "not ready" until a later write succeeds.

use super::{Engine, Result, StoreError};
use chrono::{DateTime, Utc};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// The outcome of the last write. A failure is kept (with when it first happened) until a
/// write succeeds.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<(DateTime<Utc>, String)>>,
}

impl WriteHealth {
    /// A write succeeded: the store is writable again.
    pub fn ok(&self) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((since, _)) = f.take() {
            tracing::info!(failing_since = %since, "store writes succeed again");
        }
    }

    /// A write failed (`why`: the error, which never carries credentials).
    pub fn failed(&self, why: impl Into<String>) {
        let why = why.into();
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *f {
            Some((_, last)) => *last = why,
            None => {
                tracing::error!(
                    error = %why,
                    "store writes are failing: /readyz answers 503 until a write succeeds"
                );
                *f = Some((Utc::now(), why))
            }
        }
    }

    /// Records a write's result and hands it back.
    pub fn track<T>(
        &self,
        r: std::result::Result<T, sqlx::Error>,
    ) -> std::result::Result<T, sqlx::Error> {
        match &r {
            Ok(_) => self.ok(),
            Err(e) => self.failed(e.to_string()),
        }
        r
    }

    /// Whether the last write failed.
    pub fn is_failing(&self) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Records the commit's result; `wrote`: whether the transaction changed anything.
    fn committed(
        &self,
        wrote: bool,
        r: std::result::Result<(), sqlx::Error>,
    ) -> std::result::Result<(), sqlx::Error> {
        match &r {
            Ok(()) if wrote => self.ok(),
            Ok(()) => {}
            Err(e) => self.failed(e.to_string()),
        }
        r
    }

    /// Ok while the last write succeeded; otherwise says since when writes fail and why.
    pub fn check(&self) -> Result<()> {
        let f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match &*f {
            None => Ok(()),
            Some((since, why)) => Err(StoreError::Refused(format!(
                "store writes are failing (since {}): {why}",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ))),
        }
    }
}

/// A transaction whose commit reports to a [`WriteHealth`]. Statements run on it as on
/// sqlx's (`&mut *tx`); dropped without commit, it rolls back. While writes are failing,
/// only the commit of a transaction that changed something counts as a success: one that
/// wrote nothing commits even on a full disk.
pub struct Tx<'h, DB: Engine> {
    inner: sqlx::Transaction<'static, DB>,
    health: &'h WriteHealth,
    /// [`Engine::changes`] at the start, read only while writes are failing.
    changes_before: Option<i64>,
}

impl<'h, DB: Engine> Tx<'h, DB> {
    /// Begins the engine's write transaction on the pool.
    pub async fn begin(
        pool: &sqlx::Pool<DB>,
        health: &'h WriteHealth,
    ) -> std::result::Result<Self, sqlx::Error> {
        let mut inner = pool
            .begin_with(DB::BEGIN)
            .await
            .inspect_err(|e| health.failed(e.to_string()))?;
        let changes_before = if health.is_failing() {
            Some(DB::changes(&mut *inner).await?)
        } else {
            None
        };
        Ok(Self {
            inner,
            health,
            changes_before,
        })
    }

    pub async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        let wrote = match self.changes_before {
            None => true,
            Some(before) => {
                DB::changes(&mut *self.inner)
                    .await
                    .inspect_err(|e| self.health.failed(e.to_string()))?
                    != before
            }
        };
        let r = self.inner.commit().await;
        self.health.committed(wrote, r)
    }
}

impl<DB: Engine> Deref for Tx<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.inner
    }
}

impl<DB: Engine> DerefMut for Tx<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_holds_until_a_write_succeeds() {
        let h = WriteHealth::default();
        assert!(h.check().is_ok());
        let _ = h.track::<()>(Err(sqlx::Error::PoolTimedOut));
        let e = h.check().unwrap_err().to_string();
        assert!(
            e.contains("store writes are failing") && e.contains("timed out"),
            "{e}"
        );
        h.failed("database or disk is full");
        let e = h.check().unwrap_err().to_string();
        assert!(
            e.contains("database or disk is full"),
            "the latest reason: {e}"
        );
        let _ = h.track(Ok(()));
        assert!(h.check().is_ok());
    }
}
