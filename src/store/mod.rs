//! The store: the only module with SQL. One trait shaped by intent (import a record,
//! record a firing once, fan out, claim due deliveries, record outcomes), implemented
//! once in `sql.rs` over both engines: SQLite (one host) and PostgreSQL (several
//! instances on one database), whose differences are `sqlite.rs` and `postgres.rs`.

/// The columns every claim returns, as the claim reads them (a macro, so that the
/// engines' claim statements can `concat!` it).
macro_rules! claimed_columns {
    () => {
        "id, bulletin_id, channel, recipient, recipient_name, list_id, subscriber_id,
         attempts, ambiguous, created_at, priority, next_attempt_at, unconfirmed, language"
    };
}

pub mod copy;
mod health;
mod postgres;
mod sql;
mod sqlite;

pub use crate::db_url::is_postgres_url;
pub use postgres::PostgresStore;
pub use sql::{AttemptInsert, Engine, LedgerUpdate, SqlStore};
pub use sqlite::SqliteStore;

use crate::bounce::{BounceKind, Evidence};
use crate::domain::subscriber::{NewSubscriber, SubscriberStatus};
use crate::domain::ExpiredLease;
use crate::domain::Role;
use crate::domain::{ChannelKind, DeliveryStatus, ListName, RecordState, SessionRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A store failure. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An image's bytes and facts, as imported with its record.
#[derive(Debug, Clone)]
pub struct ImageData {
    pub file: String,
    pub content_type: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// A record ready to be stored.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub record: SessionRecord,
    pub images: Vec<ImageData>,
    /// This version's own hash ([`SessionRecord::content_hash`]).
    pub content_hash: String,
    pub source_file: String,
    /// `[defaults] language`: a version in it becomes the primary when it arrives, else
    /// the first version imported stays primary.
    pub preferred_primary: String,
}

/// What importing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    Created,
    Unchanged,
    Updated,
    /// The record was approved; its content changed, so it is a draft again.
    ReturnedToDraft,
}

/// What approving did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApproveOutcome {
    Approved,
    AlreadyApproved,
}

/// A stored record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredRecord {
    /// The primary version.
    pub record: SessionRecord,
    /// The other language versions, by language.
    #[serde(default)]
    pub versions: Vec<SessionRecord>,
    pub state: RecordState,
    /// The hash approval freezes: over every version ([`crate::domain::record::combined_hash`]).
    pub content_hash: String,
    pub source_file: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub imported_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    /// The comment of the last approver who sent the record back, with who and when.
    pub review_comment: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// A user as listed (never the password hash or the token).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Whether a personal API token was issued.
    pub has_token: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user to create.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub role: Role,
    /// The Argon2id hash (PHC string) of the password.
    pub password_hash: &'a str,
}

/// Whose a live session is.
#[derive(Debug, Clone)]
pub enum SessionOwner {
    /// The bootstrap administrator (signed in with the admin token).
    Bootstrap,
    User(UserRow),
}

/// One audit entry to write.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub object: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One audit entry as kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// The object's state before (JSON), where it applies.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The object's state after (JSON), where it applies.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// Which audit entries to read (None matches everything), newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    pub object: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
    pub offset: u32,
}

impl StoredRecord {
    /// The languages of its versions, the primary's first.
    pub fn languages(&self) -> Vec<&str> {
        std::iter::once(&self.record)
            .chain(&self.versions)
            .map(|v| v.language.as_str())
            .collect()
    }

    /// Every version, the primary first.
    pub fn all_versions(&self) -> impl Iterator<Item = &SessionRecord> {
        std::iter::once(&self.record).chain(&self.versions)
    }

    /// The version in `language` exactly (case and `_` ignored).
    pub fn version(&self, language: &str) -> Option<&SessionRecord> {
        self.all_versions()
            .find(|v| crate::domain::record::same_language(&v.language, language))
    }

    /// The version a reader of `reader` gets ([`crate::domain::language::negotiate`]).
    pub fn version_for(&self, reader: Option<&str>) -> &SessionRecord {
        let langs = self.languages();
        let pick = crate::domain::language::negotiate(reader, &langs, &self.record.language);
        self.version(pick).unwrap_or(&self.record)
    }
}

/// A list with its counts by subscriber status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ListSummary {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub active: i64,
    pub unsubscribed: i64,
    pub bounced: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberRow {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub language: Option<String>,
    pub status: SubscriberStatus,
    /// When the status last changed (set on creation).
    pub status_changed_at: DateTime<Utc>,
}

/// What a subscriber import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpsertCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A bulletin to create: rendered once, with the records it carries.
#[derive(Debug, Clone)]
pub struct NewBulletin {
    pub kind: BulletinKind,
    pub schedule: Option<String>,
    pub fire_time: Option<DateTime<Utc>>,
    pub language: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub lists: Vec<ListName>,
    pub channels: Vec<ChannelKind>,
    pub priority: i64,
    pub record_ids: Vec<String>,
    /// The WeChat article, when the bulletin goes to WeChat too.
    pub wechat: Option<crate::domain::WechatArticle>,
    /// Its other language versions (the fields above are the primary's), each rendered
    /// once.
    pub versions: Vec<BulletinVersion>,
}

/// One language version of a bulletin, rendered once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulletinVersion {
    pub language: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

mod words {
    //! The store's own vocabularies (inside a module: `text_enum!` names `Result`, which
    //! the store's alias shadows).
    use crate::domain::vocab::text_enum;

    text_enum!(
        /// What a bulletin carries: one record, a digest of several, or a notice.
        BulletinKind("bulletin kind") { Record => "record", Digest => "digest", Notice => "notice" }
    );

    text_enum!(
        /// Where a bulletin stands: its ledger rows are being written, then sent (unless
        /// paused), until nothing is left to do.
        BulletinState("bulletin state") {
            FanningOut => "fanning_out",
            Sending => "sending",
            Paused => "paused",
            Done => "done",
        }
    );

    text_enum!(
        /// What made a schedule fire: its cron, the catch-up at start, or an operator.
        FiringTrigger("firing trigger") { Cron => "cron", CatchUp => "catch-up", Manual => "manual" }
    );

    text_enum!(
        /// How a bounce came in: `bulletin bounces ingest` (an MTA pipe), the IMAP
        /// poller, or the webhook.
        BounceSource("bounce source") { Ingest => "ingest", Imap => "imap", Webhook => "webhook" }
    );
}
pub use words::{BounceSource, BulletinKind, BulletinState, FiringTrigger};

/// A stored bulletin (its rendered snapshot).
#[derive(Debug, Clone, Serialize)]
pub struct StoredBulletin {
    pub id: i64,
    pub kind: BulletinKind,
    pub schedule: Option<String>,
    pub language: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub lists: Vec<ListName>,
    pub record_ids: Vec<String>,
    pub channels: Vec<ChannelKind>,
    pub state: BulletinState,
    /// Its rows' priority: notices (urgent rows) have `notice::NOTICE_PRIORITY`.
    pub priority: i64,
    pub created_at: DateTime<Utc>,
    pub wechat: Option<crate::domain::WechatArticle>,
    /// Its other language versions (the fields above are the primary's).
    pub versions: Vec<BulletinVersion>,
}

/// Which published bulletins the public archive lists (see [`Store::archived_bulletins`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only bulletins in this language (compared without regard to case); None: all.
    pub language: Option<String>,
    /// Notices are listed too.
    pub include_notices: bool,
    /// Only bulletins older than this one (the next page); None: from the newest.
    pub before: Option<i64>,
    pub limit: u32,
}

/// One published bulletin as the archive lists it: its facts, not its bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedBulletin {
    pub id: i64,
    pub kind: BulletinKind,
    pub language: String,
    pub subject: String,
    pub created_at: DateTime<Utc>,
}

/// The fan-out rule for channels that deliver to an account rather than to each
/// subscriber of a bulletin's lists: WeChat gets one ledger row per bulletin, to the
/// configured official account (`account:APPID`). E-mail fans out per subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutAccounts {
    wechat_appid: Option<String>,
}

impl FanOutAccounts {
    /// The accounts configured (`wechat.appid`, if WeChat is).
    pub fn new(wechat_appid: Option<&str>) -> Self {
        Self {
            wechat_appid: wechat_appid.map(str::to_string),
        }
    }

    /// The ledger recipient of a WeChat official account.
    pub fn wechat_recipient(appid: &str) -> String {
        format!("account:{appid}")
    }

    /// The account rows (channel, recipient) a bulletin on `channels` gets.
    pub fn rows(&self, channels: &[ChannelKind]) -> Vec<(ChannelKind, String)> {
        channels
            .iter()
            .filter_map(|c| match c {
                ChannelKind::Email => None,
                ChannelKind::Wechat => self
                    .wechat_appid
                    .as_deref()
                    .map(|a| (ChannelKind::Wechat, Self::wechat_recipient(a))),
            })
            .collect()
    }
}

/// Where a WeChat delivery stands: each step's result, stored as it arrives so a
/// restarted daemon resumes instead of repeating a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WechatJob {
    pub delivery_id: i64,
    pub draft_media_id: Option<String>,
    pub thumb_media_id: Option<String>,
    pub publish_id: Option<String>,
    pub publish_status: Option<i64>,
    pub article_id: Option<String>,
    pub article_url: Option<String>,
    pub msg_id: Option<String>,
    pub msg_data_id: Option<String>,
    pub first_poll_at: Option<DateTime<Utc>>,
    pub polls: i64,
    /// The call that may have reached WeChat without its answer being stored
    /// (`draft_add` or `submit`), written before the call is made.
    pub step: Option<String>,
    pub step_started_at: Option<DateTime<Utc>>,
}

/// An upload WeChat already has, found by content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatMedia {
    pub media_id: Option<String>,
    pub url: Option<String>,
}

/// A ledger row claimed for sending (now `sending` under a lease).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub bulletin_id: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    pub recipient_name: Option<String>,
    pub list_id: Option<i64>,
    pub subscriber_id: Option<i64>,
    /// Attempts before this one.
    pub attempts: u32,
    /// The previous lease expired while the row was `sending`.
    pub ambiguous: bool,
    pub created_at: DateTime<Utc>,
    /// The lease this claim holds: its outcome is written only while the row still holds
    /// it (see [`Outcome::lease_until`]).
    pub lease_until: DateTime<Utc>,
    /// Set when the subscriber left the list after fan-out: the row is not sent.
    pub suppressed_because: Option<String>,
    /// Its priority: notices (urgent rows) have `notice::NOTICE_PRIORITY`.
    pub priority: i64,
    /// Earlier attempts that ended with no final reply although the message may have
    /// been delivered.
    pub unconfirmed: u32,
    /// When this claim took the row over from a claim whose lease expired: who held it.
    pub taken_from: Option<String>,
    /// The reader's language (their subscriber row's, at fan-out): which version they get.
    pub language: Option<String>,
}

/// The name under which this process claims ledger rows (`claimed_by`): host, pid and a
/// generation. The dispatcher starts a new generation after a pass fails, so that rows the
/// failed pass still held become someone else's and are taken over once their lease
/// expires, while a working pass never takes back rows it holds itself.
#[derive(Debug)]
pub struct Claimer {
    base: String,
    generation: std::sync::atomic::AtomicU64,
}

impl Claimer {
    /// `host:pid`, and `.N` after it for the Nth store this process opens (each is a
    /// claimer of its own, as several instances in one test process must be).
    pub fn new() -> Self {
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let pid = std::process::id();
        Self::named(&if n == 1 {
            format!("{host}:{pid}")
        } else {
            format!("{host}:{pid}.{n}")
        })
    }
    /// A claimer with a given base name (tests; several dispatchers in one process).
    pub fn named(base: &str) -> Self {
        Self {
            base: base.to_string(),
            generation: std::sync::atomic::AtomicU64::new(1),
        }
    }
    /// `host:pid/generation`.
    pub fn current(&self) -> String {
        format!(
            "{}/{}",
            self.base,
            self.generation.load(std::sync::atomic::Ordering::Relaxed)
        )
    }
    /// `host:pid` without the generation: this process (this store) across generations.
    pub fn base(&self) -> &str {
        &self.base
    }
    /// Starts a new generation: rows claimed so far count as another process's.
    pub fn next_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for Claimer {
    fn default() -> Self {
        Self::new()
    }
}

/// What happened to one claimed row.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub result: OutcomeKind,
    pub code: Option<i64>,
    pub reply: String,
    pub message_id: Option<String>,
    /// The message may have reached the server although the send failed (a lost final
    /// reply): the row is flagged ambiguous.
    pub maybe_delivered: bool,
    /// The lease the attempt was made under. The row's state is written only if it still
    /// holds that lease: a process that stalled past its lease, while another took the row
    /// over, cannot overwrite the newer outcome (its attempt is still kept in the
    /// history). None: unconditional.
    pub lease_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Sent,
    Retry {
        at: DateTime<Utc>,
    },
    /// Waiting on the far side (e.g. WeChat still publishing): check again at `at`;
    /// not a failed attempt.
    Wait {
        at: DateTime<Utc>,
    },
    Failed,
    Suppressed,
    /// No final reply, and resending is used up: the message may have been delivered.
    Unconfirmed,
}

impl OutcomeKind {
    pub fn status(self) -> DeliveryStatus {
        match self {
            Self::Sent => DeliveryStatus::Sent,
            Self::Retry { .. } | Self::Wait { .. } => DeliveryStatus::Retrying,
            Self::Failed => DeliveryStatus::Failed,
            Self::Suppressed => DeliveryStatus::Suppressed,
            Self::Unconfirmed => DeliveryStatus::Unconfirmed,
        }
    }
}

/// Filters for reading the ledger.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub bulletin: Option<i64>,
    pub channel: Option<ChannelKind>,
    pub status: Option<DeliveryStatus>,
    pub recipient: Option<String>,
    /// A `LIKE` pattern (escape `\`) the recipient must match: a substring or a domain
    /// search, built by `ops::deliveries::recipient_pattern`.
    pub recipient_like: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub ambiguous_only: bool,
    pub limit: u32,
    pub offset: u32,
}

/// One ledger row as an operator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub bulletin_id: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub ambiguous: bool,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_code: Option<i64>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The process that last claimed the row (`host:pid/generation`), if any did.
    pub claimed_by: Option<String>,
}

/// A count of ledger rows by channel and status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusCount {
    pub channel: ChannelKind,
    pub status: DeliveryStatus,
    pub count: i64,
}

/// One attempt at a delivery, as kept in the `attempts` table.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub delivery_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    pub code: Option<i64>,
    pub reply: Option<String>,
}

/// A received bounce (or complaint, auto-reply, ...) to keep whole, as classified.
#[derive(Debug, Clone)]
pub struct NewBounce {
    pub received_at: DateTime<Utc>,
    pub source: BounceSource,
    pub kind: BounceKind,
    pub evidence: Evidence,
    /// The enhanced status code (`5.1.1`).
    pub status_code: Option<String>,
    pub diagnostic: Option<String>,
    /// The address the report is about.
    pub recipient: Option<String>,
    /// The ledger row a verified VERP token names.
    pub verp_row: Option<i64>,
    /// The Message-ID of the message that bounced (without angle brackets).
    pub message_id: Option<String>,
    /// The message as received.
    pub raw: Vec<u8>,
    /// What makes two receipts of one message the same (`mid:<Message-ID>` or
    /// `sha256:<hex>`, see `Ops::ingest_bounce`): a second one is not stored again.
    /// None: never deduplicated.
    pub dedupe_key: Option<String>,
}

/// What bounces do to subscribers (`[bounces]`'s policy, with the soft window as a time).
#[derive(Debug, Clone, Copy)]
pub struct BounceRules {
    /// Hard bounces (not undone) after which the address is marked bounced (0: never).
    pub hard_to_suppress: u32,
    /// Soft bounces since `soft_since` (not undone) after which it is (0: never).
    pub soft_to_suppress: u32,
    pub soft_since: DateTime<Utc>,
    /// Whether a bounce with neither a verified VERP token nor a known Message-ID may be
    /// matched by its address alone (to the address's latest sent row). Off: such a
    /// bounce is kept, matched to no row, and changes nothing.
    pub match_by_address: bool,
}

/// What recording a bounce did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BounceRecorded {
    pub id: i64,
    /// The ledger row it was matched to (VERP, then Message-ID, then the address).
    pub delivery_id: Option<i64>,
    /// The row went from `sent` to `bounced`.
    pub row_bounced: bool,
    /// Subscriptions (one per list) marked bounced.
    pub subscribers_bounced: u64,
    /// Subscriptions unsubscribed by a complaint.
    pub subscribers_unsubscribed: u64,
    /// The message had been recorded before (as bounce `id`): nothing was stored or
    /// changed now.
    pub duplicate: bool,
}

/// One stored bounce, as an operator sees it (the raw message is kept, not shown here).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BounceRow {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub source: BounceSource,
    pub kind: BounceKind,
    pub evidence: Evidence,
    pub status_code: Option<String>,
    pub diagnostic: Option<String>,
    pub recipient: Option<String>,
    /// The ledger row it was matched to; None: unmatched, kept for an operator.
    pub delivery_id: Option<i64>,
    /// The bulletin of that row.
    pub bulletin_id: Option<i64>,
    pub subscriber_id: Option<i64>,
    pub message_id: Option<String>,
    /// Size of the raw message kept, in bytes.
    pub size: i64,
    /// When an operator undid it (its effects reversed).
    pub undone_at: Option<DateTime<Utc>>,
}

/// What undoing a bounce did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BounceUndone {
    /// False: it had been undone before; nothing changed now.
    pub undone: bool,
    /// The ledger row went back from `bounced` to `sent`.
    pub row_restored: bool,
    /// Subscriptions this bounce had suppressed, made active again.
    pub subscribers_restored: u64,
}

/// Whom an unsubscribe token names, as the store knows them.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionRef {
    pub list: String,
    pub email: String,
    pub status: SubscriberStatus,
}

/// What pausing or resuming a bulletin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseOutcome {
    /// The state changed.
    Changed,
    /// It already was in the wanted state.
    Unchanged,
    /// The bulletin is in a state that cannot be paused or resumed (e.g. done); its state.
    NotApplicable,
}

/// A notice's own facts, beside its bulletin.
#[derive(Debug, Clone)]
pub struct NoticeMeta {
    pub severity: crate::domain::Severity,
    pub triggered_by: String,
    pub idempotency_key: Option<String>,
    /// Identifies the content; the same key within `dedupe_since` is the same notice.
    pub content_key: String,
    pub dedupe_since: DateTime<Utc>,
    /// For a notice that goes to WeChat: reserve one mass send, refused (`Refused`) when
    /// `limit` reservations and unreserved mass sends already exist since `since`.
    pub wechat_quota: Option<WechatQuotaCheck>,
}

/// Why a notice for WeChat was refused: the quota (both engines say it the same way).
pub fn wechat_quota_refusal(used: i64, limit: i64) -> String {
    format!("the WeChat mass-send quota is used up: {used} of {limit} in the last 24 h")
}

/// The WeChat mass-send quota a notice reserves from (checked after the dedupe).
#[derive(Debug, Clone)]
pub struct WechatQuotaCheck {
    pub appid: String,
    pub limit: i64,
    pub since: DateTime<Utc>,
}

/// The store, by intent.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Records
    async fn import_record(&self, rec: &NewRecord, now: DateTime<Utc>) -> Result<ImportOutcome>;
    async fn approve_record(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApproveOutcome>;
    async fn record(&self, id: &str) -> Result<Option<StoredRecord>>;
    async fn records(&self, state: Option<RecordState>) -> Result<Vec<StoredRecord>>;
    async fn record_images(&self, id: &str) -> Result<Vec<ImageData>>;
    /// Sends a draft or approved record back to draft, keeping the comment; returns the
    /// state it had, or None for a published record (unchanged). NotFound: no record.
    async fn send_back_record(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<RecordState>>;

    // Users, sessions, audit
    /// Creates a user; false if the name is taken.
    async fn create_user(&self, u: &NewUser<'_>, now: DateTime<Utc>) -> Result<bool>;
    async fn users(&self) -> Result<Vec<UserRow>>;
    async fn user(&self, name: &str) -> Result<Option<UserRow>>;
    /// The user and their password hash.
    async fn user_password_hash(&self, name: &str) -> Result<Option<(UserRow, String)>>;
    /// Replaces the password hash and ends the user's sessions; false: no such user.
    async fn set_user_password(&self, name: &str, hash: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Disables (ending their sessions) or enables a user; false: no such user.
    async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Replaces the user's personal token hash; false: no such user.
    async fn set_user_token(
        &self,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserRow>>;
    /// Stores a session (`user_id` None: the bootstrap administrator).
    async fn create_session(
        &self,
        id_hash: &str,
        user_id: Option<i64>,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<()>;
    /// Whose the session is, if it exists and has not expired at `now`.
    async fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<SessionOwner>>;
    /// Ends a session (and any expired ones); false: there was none.
    async fn delete_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<bool>;
    async fn insert_audit(&self, e: &NewAudit<'_>) -> Result<()>;
    /// A page of audit entries, newest first, and how many match in all.
    async fn audit(&self, f: &AuditFilter<'_>) -> Result<(Vec<AuditRow>, i64)>;

    // Lists
    async fn create_list(
        &self,
        name: &ListName,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    async fn list(&self, name: &ListName) -> Result<Option<ListSummary>>;
    async fn lists(&self) -> Result<Vec<ListSummary>>;
    /// Adds or updates subscribers; never re-activates an unsubscribed or bounced one.
    async fn upsert_subscribers(
        &self,
        list_id: i64,
        batch: &[NewSubscriber],
        now: DateTime<Utc>,
    ) -> Result<UpsertCounts>;
    async fn remove_subscriber(&self, list_id: i64, email: &str) -> Result<bool>;
    async fn set_subscriber_status(
        &self,
        list_id: i64,
        email: &str,
        status: SubscriberStatus,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Keyset paging by id.
    /// Subscribers of a list whose address or name contains `q` (case-insensitive; a `q`
    /// starting with `@` matches the address's domain), by id from `offset`, and how many
    /// match in all.
    async fn search_subscribers(
        &self,
        list_id: i64,
        q: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<SubscriberRow>, i64)>;
    async fn subscribers_page(
        &self,
        list_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberRow>>;

    // Scheduling
    /// Records a firing; false if this (schedule, fire time) was already recorded.
    async fn record_firing(
        &self,
        schedule: &str,
        fire_time: DateTime<Utc>,
        trigger: FiringTrigger,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    async fn last_firing(&self, schedule: &str) -> Result<Option<DateTime<Utc>>>;
    async fn unfinished_firings(&self) -> Result<Vec<(String, DateTime<Utc>)>>;
    async fn finish_firing(
        &self,
        schedule: &str,
        fire_time: DateTime<Utc>,
        bulletins: u32,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Approved records this schedule has not sent yet, oldest approval first.
    async fn records_to_publish(&self, schedule: &str) -> Result<Vec<StoredRecord>>;
    /// Creates the bulletin and marks its records published for its schedule, atomically.
    /// None when every record was already published by that schedule.
    async fn create_bulletin(&self, b: &NewBulletin, now: DateTime<Utc>) -> Result<Option<i64>>;
    async fn bulletin(&self, id: i64) -> Result<Option<StoredBulletin>>;
    async fn bulletins(&self, limit: u32) -> Result<Vec<StoredBulletin>>;
    /// Published bulletins (fan-out finished: sending, paused or done), newest first,
    /// as `q` selects them: what the public archive lists.
    async fn archived_bulletins(&self, q: &ArchiveQuery) -> Result<Vec<ArchivedBulletin>>;
    /// The languages of the published bulletins (notices too with `include_notices`),
    /// sorted.
    async fn archive_languages(&self, include_notices: bool) -> Result<Vec<String>>;
    /// Bulletins whose fan-out has not finished (after a crash too).
    async fn bulletins_fanning_out(&self) -> Result<Vec<i64>>;
    /// One e-mail row per active recipient of the bulletin's lists, in pages, plus the rows
    /// `accounts` gives for its other channels (e.g. one for WeChat); idempotent.
    async fn fan_out(
        &self,
        bulletin_id: i64,
        page: u32,
        accounts: &FanOutAccounts,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    // Dispatch
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        on_expired: ExpiredLease,
    ) -> Result<Vec<Claimed>>;
    /// Claims due rows of at least `min_priority` only (urgent notices), in claim order,
    /// without touching expired leases: a pass already sending calls this to put urgent
    /// rows ahead of the rest of its batch.
    async fn claim_urgent(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
        min_priority: i64,
    ) -> Result<Vec<Claimed>>;
    /// Whether a row of at least `min_priority` is due (an urgent notice queued by another
    /// process): a cheap read an idle dispatcher makes often.
    async fn urgent_due(&self, now: DateTime<Utc>, min_priority: i64) -> Result<bool>;
    /// Hands claimed rows whose send never started back (`(id, lease_until)` of each
    /// claim): each returns to `queued` (or `retrying`, if it had attempts) with no
    /// attempt spent, if it still holds that claim. Returns the rows handed back.
    async fn release(&self, claims: &[(i64, DateTime<Utc>)], now: DateTime<Utc>) -> Result<u64>;
    /// Of these bulletins, the ones no longer `sending` (paused, or done).
    async fn not_sending(&self, bulletins: &[i64]) -> Result<Vec<i64>>;
    /// Ends the lease of every `sending` row not claimed by this process's current
    /// claimer, so the next claim takes them over at once. Only for a store nobody else
    /// can be sending from (SQLite under the daemon lock). Returns the rows.
    async fn expire_foreign_leases(&self, now: DateTime<Utc>) -> Result<u64>;
    /// The claimer this store's claims are made under.
    fn claimer(&self) -> &Claimer;
    /// Wake-ups from other processes sharing this store: the stream yields when one of
    /// them queued work (PostgreSQL `LISTEN bulletin_work`). None where no other process
    /// can queue work unannounced but the CLI (SQLite), whose dispatchers poll.
    fn work_notifications(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        None
    }
    /// Whether a group of outcomes may be written while another write (a claim) is in
    /// flight: true where writers do not queue for one lock (PostgreSQL), so a pass's
    /// outcomes are not held behind its next claim. False on SQLite, one writer at a time.
    fn concurrent_writes(&self) -> bool {
        false
    }
    async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<()>;
    /// Marks bulletins with nothing left to do as done; returns how many.
    async fn finish_bulletins(&self) -> Result<u64>;
    /// Puts failed or held rows (of one bulletin, or one row) back in the queue, due now,
    /// with a fresh attempt budget (the attempts table keeps the history). Returns how many.
    async fn requeue(
        &self,
        bulletin: Option<i64>,
        delivery: Option<i64>,
        statuses: &[DeliveryStatus],
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// When the next row becomes due, if any is waiting.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>>;

    // Reading the ledger
    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>>;
    async fn delivery_counts(&self, bulletin: Option<i64>) -> Result<Vec<StatusCount>>;

    // WeChat step state and upload cache
    async fn wechat_job(&self, delivery_id: i64) -> Result<Option<WechatJob>>;
    async fn save_wechat_job(&self, job: &WechatJob, now: DateTime<Utc>) -> Result<()>;
    /// The access token another instance (or this one) fetched for `appid`, with the time
    /// it should be refreshed; None if there is none.
    async fn shared_token(&self, appid: &str) -> Result<Option<(String, DateTime<Utc>)>>;
    /// Stores a freshly fetched token for every instance.
    async fn put_shared_token(
        &self,
        appid: &str,
        token: &str,
        refresh_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets the shared token, but only if it is still `failed` (WeChat rejected it).
    async fn drop_shared_token(&self, appid: &str, failed: &str) -> Result<()>;
    /// Whether a WeChat delivery other than `delivery_id` recorded this `article_id` (an
    /// article found after a lost answer must not be another bulletin's).
    async fn wechat_article_recorded(&self, article_id: &str, delivery_id: i64) -> Result<bool>;
    /// Whether a WeChat delivery other than `delivery_id` recorded this draft `media_id`.
    async fn wechat_draft_recorded(&self, media_id: &str, delivery_id: i64) -> Result<bool>;
    /// WeChat mass sends submitted since `since` (for the quota shown before a notice).
    async fn wechat_mass_sends_since(&self, since: DateTime<Utc>) -> Result<i64>;
    async fn wechat_media(
        &self,
        appid: &str,
        sha256: &str,
        kind: &str,
    ) -> Result<Option<WechatMedia>>;
    async fn save_wechat_media(
        &self,
        appid: &str,
        sha256: &str,
        kind: &str,
        media: &WechatMedia,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// One ledger row by id.
    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>>;
    /// The attempts of these rows, oldest first.
    async fn attempts(&self, delivery_ids: &[i64]) -> Result<Vec<AttemptRow>>;
    /// Ledger rows matching the filter (ignoring limit and offset).
    async fn count_deliveries(&self, f: &DeliveryFilter) -> Result<i64>;

    // Operations
    /// `paused = true`: a `sending` bulletin becomes `paused` (its rows are no longer
    /// claimed); `false`: a paused one goes back to `sending`. NotFound if no such bulletin.
    async fn set_bulletin_paused(&self, id: i64, paused: bool) -> Result<PauseOutcome>;
    /// After a hard failure to `email`: if its hard (5xx) failures span at least `threshold`
    /// bulletins, marks it bounced on every list where it is active. Returns the lists changed.
    async fn note_hard_failure(
        &self,
        email: &str,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Creates a notice bulletin unless one with the same idempotency key exists, or one
    /// with the same content key was created since `dedupe_since`. Returns (id, created).
    async fn create_notice(
        &self,
        b: &NewBulletin,
        meta: &NoticeMeta,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool)>;
    /// The subscriber of a list, by ids (as an unsubscribe token names them).
    async fn subscription(
        &self,
        list_id: i64,
        subscriber_id: i64,
    ) -> Result<Option<SubscriptionRef>>;
    /// Marks the subscriber unsubscribed (idempotent), provided the id still belongs to
    /// `email`. None if there is no such subscriber with that address.
    async fn unsubscribe(
        &self,
        list_id: i64,
        subscriber_id: i64,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriptionRef>>;
    /// The addresses the ledger shows e-mails sent to under this subscriber id of this
    /// list (at most two: an unsubscribe link of the earlier kind, which names ids only,
    /// is honoured only when every one went to the current address).
    async fn link_recipients(&self, list_id: i64, subscriber_id: i64) -> Result<Vec<String>>;
    /// Keeps a received bounce whole and applies its effects, in one transaction: matched
    /// to a ledger row (the VERP row, else the Message-ID, else the address's latest sent
    /// row); a hard bounce turns a `sent` row `bounced` (its attempt history gains the
    /// status and diagnostic) and marks the address bounced on every list once `rules`
    /// say so; soft bounces are counted in the window; a complaint unsubscribes the address
    /// from every list. Other kinds, and bounces matching no row, change nothing.
    async fn record_bounce(&self, b: &NewBounce, rules: &BounceRules) -> Result<BounceRecorded>;
    /// Stored bounces, newest first, of one kind or all.
    async fn bounces(&self, kind: Option<BounceKind>, limit: u32) -> Result<Vec<BounceRow>>;
    /// The raw message of a stored bounce.
    async fn bounce_raw(&self, id: i64) -> Result<Option<Vec<u8>>>;
    /// Undoes a bounce (an operator's correction): the row back to `sent`, the
    /// subscriptions it suppressed back to active, the undo recorded. NotFound if none.
    async fn undo_bounce(&self, id: i64, now: DateTime<Utc>) -> Result<BounceUndone>;
    /// Bounces received since `since`, counted by kind.
    async fn bounce_counts_since(&self, since: DateTime<Utc>) -> Result<Vec<(BounceKind, i64)>>;
    /// The store answers and every migration is applied.
    async fn ready(&self) -> Result<()>;

    // Settings
    /// Returns the setting, storing `value` first if it was unset.
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String>;
}

/// Opens the store named by a URL and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with_password(url, None).await
}

/// Refuses, naming the file, when `url` names a SQLite store whose file does not exist.
/// Only `serve`, `demo` and `store init` create a store; every other command calls this
/// first, so a mistyped `store.url` is an error rather than a new empty store.
pub fn require_existing(url: &str) -> Result<()> {
    match crate::db_url::sqlite_path(url) {
        Some(path) if !path.exists() => Err(sqlite::missing(&path)),
        _ => Ok(()),
    }
}

/// Opens the store named by a URL, with the PostgreSQL password (used when the URL has
/// none), and applies migrations.
pub async fn open_with_password(url: &str, password: Option<&str>) -> Result<Arc<dyn Store>> {
    if is_postgres_url(url) {
        return Ok(Arc::new(PostgresStore::connect(url, password).await?));
    }
    match crate::db_url::sqlite_path(url) {
        Some(path) => Ok(Arc::new(SqliteStore::open(&path).await?)),
        None => Err(StoreError::Refused(format!(
            "unsupported store URL `{}`: use sqlite://PATH or postgres://USER@HOST/DB",
            crate::db_url::redact_url(url)
        ))),
    }
}

/// Copies a SQLite store (`from`, a sqlite:// URL) into an empty PostgreSQL one (`to`),
/// running the target's migrations first.
pub async fn copy(from: &str, to: &str, password: Option<&str>) -> Result<copy::CopyReport> {
    let Some(path) = crate::db_url::sqlite_path(from) else {
        return Err(StoreError::Refused(format!(
            "--from `{}` must be a sqlite:// URL",
            crate::db_url::redact_url(from)
        )));
    };
    if !is_postgres_url(to) {
        return Err(StoreError::Refused(format!(
            "--to `{}` must be a postgres:// URL",
            crate::db_url::redact_url(to)
        )));
    }
    if !path.exists() {
        return Err(StoreError::Refused(format!(
            "--from: there is no SQLite store at {}",
            path.display()
        )));
    }
    // No daemon may send from the source while it is copied (its later sends would be
    // missing from the copy); holding the daemon lock also keeps one from starting.
    let _lock = crate::daemon_lock::acquire(&path)
        .map_err(|e| StoreError::Refused(format!("--from: {e}")))?;
    let source = SqliteStore::open(&path).await?;
    let target = PostgresStore::connect(to, password).await?;
    copy::sqlite_to_postgres(&source, &target).await
}
