//! `[store]`: the store URL (SQLite or PostgreSQL) and the PostgreSQL password.

use super::{secrets::read_secret, ConfigError, Env, Source};
use crate::db_url::{is_postgres_url, redact_url, resolve_sqlite_url, url_has_password};
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The environment variable holding the PostgreSQL password.
pub const DATABASE_PASSWORD_ENV: &str = "BULLETIN_DATABASE_PASSWORD";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    url: String,
    /// PostgreSQL: a file holding the password, when the URL has none and
    /// `BULLETIN_DATABASE_PASSWORD` is unset.
    password_file: Option<PathBuf>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://data/bulletin.db".into(),
            password_file: None,
        }
    }
}

impl RawStore {
    /// The store URL (a relative SQLite path made absolute against the configuration's
    /// folder) and, for PostgreSQL without a password in the URL, the password.
    pub(super) fn validate(
        self,
        src: &Source,
        config_file: &Path,
        env: Env,
    ) -> Result<(String, Option<SecretString>), ConfigError> {
        let postgres = is_postgres_url(&self.url);
        if !(self.url.starts_with("sqlite:") || postgres) {
            return Err(src.error(
                None,
                "store.url",
                format!(
                    "`{}` is not supported: use sqlite://PATH or postgres://USER@HOST[:PORT]/DATABASE",
                    redact_url(&self.url)
                ),
            ));
        }
        let password = if postgres && !url_has_password(&self.url) {
            read_secret(env, DATABASE_PASSWORD_ENV, self.password_file.as_deref())
                .map_err(|m| src.error(None, "store.password_file", m))?
        } else {
            None
        };
        Ok((resolve_sqlite_url(&self.url, config_file), password))
    }
}
