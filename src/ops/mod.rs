//! Owns every operation a person performs on `bulletin`, written once: its input, its
//! checks, its store calls and its typed result. The CLI, the admin API and the
//! dashboard (and the demo) only parse input and format output; none of them calls the
//! `Store` itself. Operations take the time from the injected [`Clock`].
//!
//! One file per area: [`records`], [`lists`], [`bulletins`], [`deliveries`],
//! [`bounces`], [`notices`], [`schedules`], [`status`], [`unsubscribe`], [`users`] (and
//! sign-in) and [`audit`]. Each adds its methods to [`Ops`]; its inputs and results are
//! plain named structs (serde `Serialize`). Every operation that changes state for a
//! person takes the [`crate::domain::Actor`] and records an audit entry itself.

pub mod audit;
pub mod bounces;
pub mod bulletins;
pub mod deliveries;
pub mod lists;
pub mod notices;
pub mod records;
pub mod schedules;
pub mod status;
pub mod unsubscribe;
pub mod users;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::record::RecordErrors;
use crate::metrics::Metrics;
use crate::notice::Notices;
use crate::render::RenderError;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::store::{Store, StoreError};
use crate::unsubscribe::UnsubscribeSigner;
use std::sync::Arc;
use tokio::sync::Notify;

/// The handles the operations use; cheap to clone (every field is shared). Built by
/// [`crate::app::App::ops`].
#[derive(Clone)]
pub struct Ops {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) signer: Arc<UnsubscribeSigner>,
    /// Wakes the dispatcher after work was queued (retries, resumes, notices).
    pub(crate) wake: Arc<Notify>,
}

impl Ops {
    /// The configuration the operations run under.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// What was named and does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Record,
    Bulletin,
    Delivery,
    List,
    Subscriber,
    Schedule,
    Bounce,
    User,
}

/// Why an operation was refused although its input was well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The record's WeChat article is longer than WeChat takes.
    ArticleTooLong,
    /// Only a sending bulletin can be paused, and only a paused one resumed.
    NotPausable,
    /// A published record cannot be sent back.
    Published,
}

/// Why an operation failed. Front ends map it: the admin API to a status and a code,
/// the CLI to a message.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A value given is not acceptable: which field, and why.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// What was named does not exist.
    #[error("{message}")]
    NotFound { what: Missing, message: String },
    /// Refused in the current state.
    #[error("{message}")]
    Refused { why: Refusal, message: String },
    /// A record file refused, with every error by line and field.
    #[error("{0}")]
    Record(#[from] RecordErrors),
    #[error("rendering failed: {0}")]
    Render(#[from] RenderError),
    /// Writing an export failed.
    #[error("writing failed: {0}")]
    Write(#[from] csv::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpsError {
    pub(crate) fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
    pub(crate) fn not_found(what: Missing, message: impl Into<String>) -> Self {
        Self::NotFound {
            what,
            message: message.into(),
        }
    }
}

impl From<SchedulerError> for OpsError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::UnknownSchedule(_) => Self::not_found(Missing::Schedule, e.to_string()),
            SchedulerError::Store(s) => Self::Store(s),
            SchedulerError::Render(r) => Self::Render(r),
            e @ SchedulerError::MissingList { .. } => {
                Self::Store(StoreError::Refused(e.to_string()))
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, OpsError>;

/// The largest page of rows one read returns (deliveries, bulletins).
pub const MAX_PAGE: u32 = 1000;

/// `limit` if within 1 to [`MAX_PAGE`], else an error naming the field.
pub(crate) fn check_limit(limit: u32) -> Result<u32> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(OpsError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ))
    }
}

/// Parses an optional word of a closed vocabulary, the error naming `field`.
pub(crate) fn parse_opt<T>(field: &str, raw: Option<&str>) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    raw.map(|s| s.parse::<T>())
        .transpose()
        .map_err(|e| OpsError::invalid(field, e))
}

/// Operations on a fresh SQLite store in a temporary folder, with the demo's
/// configuration (a schedule that sends by e-mail and to WeChat, both to outbox folders)
/// and a manual clock: for the operations' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Ops;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::notice::Notices;
    use crate::scheduler::Scheduler;
    use crate::store::SqliteStore;
    use crate::unsubscribe::UnsubscribeSigner;
    use chrono::{TimeZone, Utc};
    use std::path::Path;
    use std::sync::Arc;
    use tokio::sync::Notify;

    pub(crate) struct TestOps {
        pub ops: Ops,
        pub clock: ManualClock,
        pub dir: tempfile::TempDir,
    }

    pub(crate) async fn ops() -> TestOps {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().display().to_string();
        let cover = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/cover.png");
        let source = include_str!("../../config/demo.toml")
            .replace("demo-output/", &format!("{root}/"))
            .replace("config/examples/cover.png", &cover.display().to_string());
        let config = Arc::new(
            Config::parse(&source, Path::new("config/demo.toml"), &|_| None)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap());
        let store: Arc<dyn crate::store::Store> = Arc::new(
            SqliteStore::open(&dir.path().join("bulletin.db"))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let wake = Arc::new(Notify::new());
        let shared_clock: Arc<dyn crate::clock::Clock> = Arc::new(clock.clone());
        let ops = Ops {
            scheduler: Arc::new(Scheduler::new(
                store.clone(),
                config.clone(),
                shared_clock.clone(),
                wake.clone(),
            )),
            notices: Arc::new(Notices::new(
                store.clone(),
                config.clone(),
                shared_clock.clone(),
                wake.clone(),
            )),
            metrics: Arc::new(Metrics::new()),
            signer: Arc::new(UnsubscribeSigner::new(
                vec![7; 32],
                &config.unsubscribe.base_url,
            )),
            store,
            config,
            clock: shared_clock,
            wake,
        };
        TestOps { ops, clock, dir }
    }

    /// The example record, with its highlights repeated `copies` times (30 make its
    /// WeChat article too long for WeChat).
    pub(crate) fn example_record(copies: usize) -> String {
        let src = include_str!("../../config/examples/records/lmc-2020-parallel-session-2.toml");
        let start = src
            .find("[[highlights]]")
            .expect("the example has highlights");
        let end = src[start..]
            .find("[[images]]")
            .map_or(src.len(), |e| start + e);
        let blocks: Vec<String> = src[start..end]
            .split("[[highlights]]")
            .filter(|b| !b.trim().is_empty())
            .map(|b| format!("[[highlights]]{b}"))
            .collect();
        let mut out = src[..start].to_string();
        for i in 0..copies.max(blocks.len()) {
            out.push_str(&blocks[i % blocks.len()]);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out.push_str(&src[end..]);
        out
    }
}
