//! PostgreSQL for tests: the local server (127.0.0.1:5432, trust authentication, user
//! `postgres` or `root`, database `test`), one fresh database per test, dropped after.
//! Unreachable: the test fails saying so, unless BULLETIN_SKIP_POSTGRES=1, when it prints
//! "SKIPPED: PostgreSQL tests did not run" — never a silent pass.

use sqlx::postgres::PgConnection;
use sqlx::Connection;

/// Where the maintenance database is; BULLETIN_TEST_POSTGRES_URL overrides.
fn admin_urls() -> Vec<String> {
    match std::env::var("BULLETIN_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => vec![u],
        _ => vec![
            "postgres://postgres@127.0.0.1:5432/test".into(),
            "postgres://root@127.0.0.1:5432/test".into(),
        ],
    }
}

/// A database created for one test; dropped (with any connections left) on drop.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

/// A fresh, empty database; None only when BULLETIN_SKIP_POSTGRES=1 and the server is
/// unreachable.
pub async fn fresh() -> Option<PgDb> {
    let mut errors = Vec::new();
    for admin_url in admin_urls() {
        match PgConnection::connect(&admin_url).await {
            Ok(mut conn) => {
                let name = format!("bulletin_test_{:016x}", rand::random::<u64>());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
                let _ = conn.close().await;
                let base = admin_url.rsplit_once('/').unwrap().0;
                return Some(PgDb {
                    url: format!("{base}/{name}"),
                    admin_url,
                    name,
                });
            }
            Err(e) => errors.push(format!("{admin_url}: {e}")),
        }
    }
    if std::env::var("BULLETIN_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: PostgreSQL tests did not run (BULLETIN_SKIP_POSTGRES=1; {})",
            errors.join("; ")
        );
        return None;
    }
    panic!(
        "PostgreSQL is not reachable, so the PostgreSQL tests cannot run ({}). \
         Start it (`.ci/run` does: pg_ctlcluster ... main start) or set \
         BULLETIN_SKIP_POSTGRES=1 to skip them explicitly.",
        errors.join("; ")
    );
}

impl PgDb {
    /// Runs one statement on this database from a connection of its own (a test's
    /// stand-in for an operator or an outage: e.g. a table renamed away and back).
    pub async fn exec(&self, sql: &str) {
        let mut c = PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url));
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = c.close().await;
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            })
        })
        .join();
    }
}
