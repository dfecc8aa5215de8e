//! Typed configuration from one TOML file: unknown keys refused, every error naming the
//! file, line and key; secrets read from the environment or a file and never printed.

use crate::domain::delivery::ChannelKind;
use crate::domain::schedule::{Schedule, ScheduleMode};
use crate::domain::text::line_col;
use secrecy::SecretString;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A configuration problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    defaults: RawDefaults,
    publisher: Spanned<Publisher>,
    email: Spanned<RawEmail>,
    unsubscribe: Option<Spanned<RawUnsubscribe>>,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    scheduler: RawScheduler,
    #[serde(default)]
    schedules: Vec<Spanned<RawSchedule>>,
    wechat: Option<Spanned<RawWechat>>,
    admin: Option<Spanned<RawAdmin>>,
    public: Option<Spanned<RawPublic>>,
    #[serde(default)]
    notices: RawNotices,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    bind: String,
    token_env: String,
    token_file: Option<PathBuf>,
    public_url: Option<String>,
    max_connections: u32,
    header_timeout_seconds: u64,
    request_timeout_seconds: u64,
    shutdown_grace_seconds: u64,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            token_env: "BULLETIN_ADMIN_TOKEN".into(),
            token_file: None,
            public_url: None,
            max_connections: 64,
            header_timeout_seconds: 10,
            request_timeout_seconds: 60,
            shutdown_grace_seconds: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPublic {
    bind: String,
    max_connections: u32,
    header_timeout_seconds: u64,
    request_timeout_seconds: u64,
    shutdown_grace_seconds: u64,
}

impl Default for RawPublic {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8081".into(),
            max_connections: 256,
            header_timeout_seconds: 10,
            request_timeout_seconds: 30,
            shutdown_grace_seconds: 5,
        }
    }
}

/// Checks one listener's limits (`table` names it in errors).
fn http_limits(
    span: Option<std::ops::Range<usize>>,
    table: &str,
    max_connections: u32,
    header_timeout: u64,
    request_timeout: u64,
    shutdown_grace: u64,
) -> Result<HttpLimits, (Option<std::ops::Range<usize>>, String, String)> {
    let positive = |key: &str, v: u64| {
        if v == 0 {
            Err((
                span.clone(),
                format!("{table}.{key}"),
                "must be at least 1".to_string(),
            ))
        } else {
            Ok(())
        }
    };
    positive("max_connections", max_connections.into())?;
    positive("header_timeout_seconds", header_timeout)?;
    positive("request_timeout_seconds", request_timeout)?;
    Ok(HttpLimits {
        max_connections: max_connections as usize,
        header_timeout: Duration::from_secs(header_timeout),
        request_timeout: Duration::from_secs(request_timeout),
        shutdown_grace: Duration::from_secs(shutdown_grace),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNotices {
    dedupe_window_minutes: u64,
}

impl Default for RawNotices {
    fn default() -> Self {
        Self {
            dedupe_window_minutes: 60,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWechat {
    #[serde(default = "yes")]
    enabled: bool,
    appid: String,
    #[serde(default = "default_wechat_secret_env")]
    secret_env: String,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_wechat_base")]
    api_base: String,
    #[serde(default = "default_wechat_mode")]
    mode: String,
    #[serde(default)]
    author: String,
    cover_image: PathBuf,
    mass_send_tag: Option<i64>,
    #[serde(default = "one")]
    mass_send_daily_quota: i64,
    #[serde(default = "default_poll_interval")]
    poll_interval_seconds: u64,
    #[serde(default = "default_poll_timeout")]
    poll_timeout_minutes: u64,
    #[serde(default = "default_wechat_timeout")]
    timeout_seconds: u64,
    outbox_dir: Option<PathBuf>,
    #[serde(default = "default_publish_settle")]
    publish_settle_minutes: u64,
}

fn default_publish_settle() -> u64 {
    60
}

fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}
fn default_wechat_secret_env() -> String {
    "BULLETIN_WECHAT_SECRET".into()
}
fn default_wechat_base() -> String {
    "https://api.weixin.qq.com".into()
}
fn default_wechat_mode() -> String {
    "draft".into()
}
fn default_poll_interval() -> u64 {
    30
}
fn default_poll_timeout() -> u64 {
    60
}
fn default_wechat_timeout() -> u64 {
    15
}

/// What the WeChat channel does with each bulletin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WechatMode {
    /// Create the draft only; an editor publishes it in the WeChat back office.
    Draft,
    /// Draft, then `freepublish/submit`, then poll until published or failed.
    Publish,
    /// Draft, then a mass send to all followers (or a tag), deduplicated by `clientmsgid`.
    MassSend,
}

/// The WeChat official account channel.
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: Option<SecretString>,
    pub api_base: String,
    pub mode: WechatMode,
    pub author: String,
    pub cover_image: PathBuf,
    pub mass_send_tag: Option<i64>,
    /// Mass sends allowed per 24 h (urgent notices check it before sending).
    pub mass_send_daily_quota: i64,
    pub poll_interval: Duration,
    pub poll_timeout: Duration,
    pub timeout: Duration,
    /// Write the article and the calls it would make here instead of calling WeChat.
    pub outbox_dir: Option<PathBuf>,
    /// The longest a publish may take: after a `freepublish/submit` whose answer was
    /// lost, "WeChat did not take it" is concluded only once this has passed.
    pub publish_settle: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_url")]
    url: String,
    /// PostgreSQL: a file holding the password, when the URL has none and
    /// `BULLETIN_DATABASE_PASSWORD` is unset.
    password_file: Option<PathBuf>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            password_file: None,
        }
    }
}

/// The environment variable holding the PostgreSQL password.
pub const DATABASE_PASSWORD_ENV: &str = "BULLETIN_DATABASE_PASSWORD";

fn default_store_url() -> String {
    "sqlite://data/bulletin.db".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default = "default_language")]
    language: String,
}

impl Default for RawDefaults {
    fn default() -> Self {
        Self {
            language: default_language(),
        }
    }
}

fn default_language() -> String {
    "en".into()
}

/// The publisher's contact block, printed at the end of every bulletin.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// One or more names (e.g. the centre and its parent body), in display order.
    pub names: Vec<String>,
    #[serde(default)]
    pub address: Vec<String>,
    pub phone: Option<String>,
    pub fax: Option<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    pub website: Option<String>,
    pub wechat_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    from: String,
    reply_to: Option<String>,
    #[serde(default = "default_transport")]
    transport: String,
    #[serde(default = "default_outbox")]
    outbox_dir: PathBuf,
    smtp: Option<Spanned<RawSmtp>>,
    dkim: Option<Spanned<RawDkim>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: Spanned<String>,
    selector: Spanned<String>,
    private_key_file: Spanned<PathBuf>,
}

fn default_transport() -> String {
    "smtp".into()
}

fn default_outbox() -> PathBuf {
    "outbox".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: String,
    username: Option<String>,
    #[serde(default = "default_smtp_password_env")]
    password_env: String,
    password_file: Option<PathBuf>,
    #[serde(default = "default_pool")]
    pool_size: u32,
    rate_per_second: Option<f64>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "default_data_timeout")]
    data_timeout_seconds: u64,
    hello_name: Option<String>,
    messages_per_connection: Option<u32>,
}

fn default_tls() -> String {
    "starttls".into()
}
fn default_smtp_password_env() -> String {
    "BULLETIN_SMTP_PASSWORD".into()
}
fn default_pool() -> u32 {
    4
}
fn default_timeout() -> u64 {
    30
}
/// RFC 5321 §4.5.3.2.6: the reply to the end of data may take 10 minutes (content filters).
fn default_data_timeout() -> u64 {
    600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsubscribe {
    #[serde(default = "default_public_url")]
    base_url: String,
    #[serde(default = "default_unsub_env")]
    secret_env: String,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    allow_loopback: bool,
}

impl Default for RawUnsubscribe {
    fn default() -> Self {
        Self {
            base_url: default_public_url(),
            secret_env: default_unsub_env(),
            secret_file: None,
            allow_loopback: false,
        }
    }
}

/// Validates `unsubscribe.base_url`: an absolute http(s) URL with a host and no
/// credentials, query or fragment (`/unsubscribe/TOKEN` is appended to it). Returns it
/// normalised by the `url` crate, which percent-encodes what may not stand in a URL
/// (`"`, `<`, `>`, spaces); `'` and `&` are encoded too, so the URL can be written into
/// an HTML attribute or a mail header as it is. Without the trailing `/`.
pub fn check_base_url(raw: &str) -> Result<String, String> {
    let shown = raw.escape_default();
    let u = url::Url::parse(raw.trim())
        .map_err(|e| format!("`{shown}` is not an absolute URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("`{shown}` must start with http:// or https://"));
    }
    if u.host().is_none() {
        return Err(format!("`{shown}` has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{shown}` must not carry a user name or password"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "`{shown}` must not have a query (?) or fragment (#): /unsubscribe/TOKEN is appended to it"
        ));
    }
    Ok(u.as_str()
        .trim_end_matches('/')
        .replace('\'', "%27")
        .replace('&', "%26"))
}

/// Whether a URL's host is a loopback address (127.0.0.0/8, ::1) or `localhost`: a link
/// there is dead for every reader.
pub fn is_loopback_url(u: &str) -> bool {
    match url::Url::parse(u)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(a)) => a.is_loopback() || a.is_unspecified(),
        Some(url::Host::Ipv6(a)) => a.is_loopback() || a.is_unspecified(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

fn default_public_url() -> String {
    "http://127.0.0.1:8081".into()
}
fn default_unsub_env() -> String {
    "BULLETIN_UNSUBSCRIBE_SECRET".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDelivery {
    batch_size: u32,
    max_attempts: u32,
    retry_base_seconds: u64,
    retry_max_seconds: u64,
    deadline_hours: u64,
    lease_seconds: u64,
    on_expired_lease: ExpiredLease,
    poll_interval_ms: u64,
    channel_pause_seconds: u64,
    shutdown_grace_seconds: u64,
    storm_min_attempts: u32,
    storm_failure_share: f64,
    bounce_after_hard_failures: u32,
    unrecorded_max: u32,
    urgent_poll_ms: u64,
    max_unconfirmed_resends: u32,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            batch_size: 200,
            max_attempts: 8,
            retry_base_seconds: 60,
            retry_max_seconds: 3600,
            deadline_hours: 48,
            lease_seconds: 1800,
            on_expired_lease: ExpiredLease::Resend,
            poll_interval_ms: 1000,
            channel_pause_seconds: 300,
            storm_min_attempts: 20,
            storm_failure_share: 0.5,
            bounce_after_hard_failures: 3,
            shutdown_grace_seconds: 30,
            unrecorded_max: 32,
            urgent_poll_ms: 25,
            max_unconfirmed_resends: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawScheduler {
    catch_up_window_minutes: u64,
}

impl Default for RawScheduler {
    fn default() -> Self {
        Self {
            catch_up_window_minutes: 60,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: String,
    cron: String,
    #[serde(default = "default_tz")]
    timezone: String,
    lists: Vec<String>,
    #[serde(default = "default_mode")]
    mode: ScheduleMode,
    #[serde(default = "default_channels")]
    channels: Vec<ChannelKind>,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_mode() -> ScheduleMode {
    ScheduleMode::PerRecord
}
fn default_channels() -> Vec<ChannelKind> {
    vec![ChannelKind::Email]
}

/// What an expired `sending` lease means after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiredLease {
    /// Send again (the recipient may get it twice; the row is marked ambiguous).
    Resend,
    /// Park the row as `held` for an operator to decide.
    Hold,
}

/// TLS on the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Tls,
}

/// SMTP relay settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub pool_size: u32,
    pub rate_per_second: Option<f64>,
    pub timeout: Duration,
    /// How long the reply to the end of a message's data may take (a relay's content
    /// filter runs before it answers). Past it the message may have been delivered.
    pub data_timeout: Duration,
    pub hello_name: Option<String>,
    /// Messages sent on one connection before it is closed and a new one opened (relays
    /// often allow only so many per session). None: no limit.
    pub messages_per_connection: Option<u32>,
}

impl SmtpConfig {
    /// The longest one message can keep a connection waiting: connect, greeting, EHLO
    /// (twice: once more to learn PIPELINING), AUTH, the envelope replies, and the reply to
    /// the end of its data.
    pub fn longest_wait(&self) -> Duration {
        self.timeout * 5 + self.data_timeout
    }
}

/// Where e-mail goes.
#[derive(Debug, Clone)]
pub enum EmailTransport {
    Smtp(SmtpConfig),
    /// One `.eml` file per message in this folder: dry runs and the demo.
    Outbox(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub from: lettre::message::Mailbox,
    pub reply_to: Option<lettre::message::Mailbox>,
    pub transport: EmailTransport,
    /// `[email.dkim]`: every message is signed with this key.
    pub dkim: Option<crate::dkim::DkimSettings>,
}

#[derive(Debug, Clone)]
pub struct UnsubscribeConfig {
    /// Validated and normalised by [`check_base_url`].
    pub base_url: String,
    /// `base_url` points at this machine (loopback): links in e-mails would be dead.
    pub loopback: bool,
    /// `unsubscribe.allow_loopback`: send over SMTP with a loopback `base_url` all the
    /// same (tests, a local demo).
    pub allow_loopback: bool,
    /// None: a key generated once and kept in the store is used.
    pub secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub deadline: Duration,
    pub lease: Duration,
    pub on_expired_lease: ExpiredLease,
    pub poll_interval: Duration,
    /// How long a channel rests after a channel-wide failure (login or sender refused).
    pub channel_pause: Duration,
    /// An error storm: at least `storm_min_attempts` attempts of one bulletin on one channel
    /// in a pass, of which at least `storm_failure_share` failed, pauses the bulletin.
    pub storm_min_attempts: u32,
    pub storm_failure_share: f64,
    /// Hard (5xx) failures in this many different bulletins mark an address bounced (0: never).
    pub bounce_after_hard_failures: u32,
    /// On shutdown, how long sends in flight may take before they are abandoned.
    pub shutdown_grace: Duration,
    /// Outcomes that may wait for the ledger at once: the dispatcher writes them in
    /// groups while the next messages go out, and starts no new send while this many wait.
    /// After a crash, at most this many plus the sends in flight were sent but not recorded.
    pub unrecorded_max: usize,
    /// While a pass is sending, how often it looks for urgent rows (notices) queued by
    /// another process, to send them ahead of the rest of its batch.
    pub urgent_poll: Duration,
    /// A row whose message may have been delivered (no final reply) is sent again at
    /// most this many times; after that it ends `unconfirmed`, never `failed`.
    pub max_unconfirmed_resends: u32,
}

/// The admin HTTP API: where it listens and the bearer token it wants.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: std::net::SocketAddr,
    /// None: no token configured, so every endpoint but health refuses (503).
    pub token: Option<SecretString>,
    /// The environment variable the token is read from (for messages).
    pub token_env: String,
    /// The URL browsers reach the admin side at (e.g. through a TLS proxy); an
    /// `https://` one marks the session cookie `Secure`.
    pub public_url: Option<String>,
    pub limits: HttpLimits,
}

/// The public HTTP side (one-click unsubscribe).
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub bind: std::net::SocketAddr,
    pub limits: HttpLimits,
}

/// What one HTTP listener allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this is closed
    /// (idle keep-alive connections too).
    pub header_timeout: Duration,
    /// A request not answered within this (body read included) gets 408.
    pub request_timeout: Duration,
    /// On shutdown, connections still open this long after it began are dropped.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Urgent notices.
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    /// The same content sent again within this window returns the first notice.
    pub dedupe_window: Duration,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub store_url: String,
    /// The PostgreSQL password when the URL carries none (never printed).
    pub store_password: Option<SecretString>,
    pub default_language: String,
    pub publisher: Publisher,
    pub email: EmailConfig,
    pub unsubscribe: UnsubscribeConfig,
    pub delivery: DeliveryConfig,
    pub catch_up_window: Duration,
    pub schedules: Vec<Schedule>,
    /// Set when `[wechat]` is present and enabled.
    pub wechat: Option<WechatConfig>,
    pub admin: AdminConfig,
    pub public: PublicConfig,
    pub notices: NoticeConfig,
    /// Secrets only sending needs that are missing (see [`Config::ready_to_send`]).
    pub send_secrets_missing: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the configuration: {e}"),
        })?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(
                &String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]),
                usize::MAX,
            );
            ConfigError {
                file: path.display().to_string(),
                line: Some(line),
                column: Some(col),
                key: None,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        Self::parse(&source, path, &|name| std::env::var(name).ok())
    }

    /// Validates configuration text; `env` looks up environment variables (injected for tests).
    pub fn parse(
        source: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |span: Option<std::ops::Range<usize>>, key: &str, message: String| {
            let pos = span.map(|s| line_col(source, s.start));
            ConfigError {
                file: file.clone(),
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                key: (!key.is_empty()).then(|| key.to_string()),
                message,
            }
        };
        let raw: RawConfig = toml::from_str(source)
            .map_err(|e| err(e.span(), "", e.message().trim().to_string()))?;

        let default_language = language_tags::LanguageTag::parse(&raw.defaults.language)
            .map_err(|e| err(None, "defaults.language", format!("not a BCP 47 tag: {e}")))?
            .to_string();
        let postgres = crate::store::is_postgres_url(&raw.store.url);
        if !(raw.store.url.starts_with("sqlite:") || postgres) {
            return Err(err(
                None,
                "store.url",
                format!(
                    "`{}` is not supported: use sqlite://PATH or postgres://USER@HOST[:PORT]/DATABASE",
                    redact_url(&raw.store.url)
                ),
            ));
        }
        let store_password = if postgres && !url_has_password(&raw.store.url) {
            read_secret(
                env,
                DATABASE_PASSWORD_ENV,
                raw.store.password_file.as_deref(),
            )
            .map_err(|m| err(None, "store.password_file", m))?
        } else {
            None
        };

        let publisher_span = raw.publisher.span();
        let publisher = raw.publisher.into_inner();
        if publisher.names.is_empty() || publisher.names.iter().any(|n| n.trim().is_empty()) {
            return Err(err(
                Some(publisher_span),
                "publisher.names",
                "give at least one non-empty name".into(),
            ));
        }
        // Every line of the contact block is printed in every bulletin: one line each, of
        // a sane length.
        let contact_lines = [
            ("names", publisher.names.clone()),
            ("address", publisher.address.clone()),
            ("emails", publisher.emails.clone()),
            ("phone", publisher.phone.iter().cloned().collect()),
            ("fax", publisher.fax.iter().cloned().collect()),
            ("website", publisher.website.iter().cloned().collect()),
            ("wechat_id", publisher.wechat_id.iter().cloned().collect()),
        ];
        for (key, values) in contact_lines {
            for (i, v) in values.iter().enumerate() {
                crate::domain::text::check_line(v, 300, false).map_err(|m| {
                    err(
                        Some(publisher_span.clone()),
                        &format!("publisher.{key}[{}]", i + 1),
                        m,
                    )
                })?;
            }
        }

        let mut send_secrets_missing = Vec::new();
        let email_span = raw.email.span();
        let raw_email = raw.email.into_inner();
        let from: lettre::message::Mailbox = raw_email.from.parse().map_err(|e| {
            err(
                Some(email_span.clone()),
                "email.from",
                format!(
                    "`{}` is not a mailbox ({e})",
                    raw_email.from.escape_default()
                ),
            )
        })?;
        let reply_to = match &raw_email.reply_to {
            Some(r) => Some(r.parse().map_err(|e| {
                err(
                    Some(email_span.clone()),
                    "email.reply_to",
                    format!("`{}` is not a mailbox ({e})", r.escape_default()),
                )
            })?),
            None => None,
        };
        let dkim = match raw_email.dkim {
            Some(d) => {
                // Each error points at its key's value.
                let d = d.into_inner();
                let e =
                    |span: std::ops::Range<usize>, key: &str, m: String| err(Some(span), key, m);
                crate::dkim::check_domain(d.domain.get_ref())
                    .map_err(|m| e(d.domain.span(), "email.dkim.domain", m))?;
                crate::dkim::check_selector(d.selector.get_ref())
                    .map_err(|m| e(d.selector.span(), "email.dkim.selector", m))?;
                let key = crate::dkim::DkimKey::load(d.private_key_file.get_ref())
                    .map_err(|m| e(d.private_key_file.span(), "email.dkim.private_key_file", m))?;
                Some(crate::dkim::DkimSettings {
                    domain: d.domain.into_inner().to_ascii_lowercase(),
                    selector: d.selector.into_inner(),
                    private_key_file: d.private_key_file.into_inner(),
                    key,
                })
            }
            None => None,
        };
        let transport = match raw_email.transport.as_str() {
            "outbox" => EmailTransport::Outbox(raw_email.outbox_dir.clone()),
            "smtp" => {
                let Some(smtp) = raw_email.smtp else {
                    return Err(err(
                        Some(email_span),
                        "email.smtp",
                        "transport is \"smtp\" but there is no [email.smtp] table".into(),
                    ));
                };
                let span = smtp.span();
                let s = smtp.into_inner();
                let tls = match s.tls.as_str() {
                    "none" => TlsMode::None,
                    "starttls" => TlsMode::StartTls,
                    "tls" => TlsMode::Tls,
                    o => {
                        return Err(err(
                            Some(span),
                            "email.smtp.tls",
                            format!(
                                "`{}` is not a TLS mode (none, starttls, tls)",
                                o.escape_default()
                            ),
                        ))
                    }
                };
                let password = read_secret(env, &s.password_env, s.password_file.as_deref())
                    .map_err(|m| err(Some(span.clone()), "email.smtp.password_file", m))?;
                if s.username.is_some() && password.is_none() {
                    // Only sending needs it: `serve` refuses to start without it, the
                    // commands that read or enqueue do not.
                    send_secrets_missing.push(err(
                        Some(span.clone()),
                        "email.smtp.username",
                        format!(
                            "a username is set but no password: set the environment variable {} or email.smtp.password_file",
                            s.password_env
                        ),
                    ));
                }
                if s.pool_size == 0 || s.pool_size > 64 {
                    return Err(err(
                        Some(span),
                        "email.smtp.pool_size",
                        "must be 1 to 64".into(),
                    ));
                }
                if let Some(r) = s.rate_per_second {
                    if r.is_nan() || r <= 0.0 {
                        return Err(err(
                            Some(span),
                            "email.smtp.rate_per_second",
                            "must be a positive number".into(),
                        ));
                    }
                }
                if s.timeout_seconds == 0 {
                    return Err(err(
                        Some(span),
                        "email.smtp.timeout_seconds",
                        "must be at least 1".into(),
                    ));
                }
                if s.data_timeout_seconds == 0 {
                    return Err(err(
                        Some(span),
                        "email.smtp.data_timeout_seconds",
                        "must be at least 1".into(),
                    ));
                }
                if s.messages_per_connection == Some(0) {
                    return Err(err(
                        Some(span),
                        "email.smtp.messages_per_connection",
                        "must be at least 1 (leave it out for no limit)".into(),
                    ));
                }
                EmailTransport::Smtp(SmtpConfig {
                    port: s.port.unwrap_or(match tls {
                        TlsMode::None => 25,
                        TlsMode::StartTls => 587,
                        TlsMode::Tls => 465,
                    }),
                    host: s.host,
                    tls,
                    username: s.username,
                    password,
                    pool_size: s.pool_size,
                    rate_per_second: s.rate_per_second,
                    timeout: Duration::from_secs(s.timeout_seconds),
                    data_timeout: Duration::from_secs(s.data_timeout_seconds),
                    hello_name: s.hello_name,
                    messages_per_connection: s.messages_per_connection,
                })
            }
            o => {
                return Err(err(
                    Some(email_span),
                    "email.transport",
                    format!("`{}` is not a transport (smtp, outbox)", o.escape_default()),
                ))
            }
        };

        let (unsub_span, u) = match raw.unsubscribe {
            Some(u) => (Some(u.span()), u.into_inner()),
            None => (None, RawUnsubscribe::default()),
        };
        let base_url = check_base_url(&u.base_url)
            .map_err(|m| err(unsub_span.clone(), "unsubscribe.base_url", m))?;
        let secret = read_secret(env, &u.secret_env, u.secret_file.as_deref())
            .map_err(|m| err(unsub_span.clone(), "unsubscribe.secret_file", m))?;
        if let Some(s) = &secret {
            use secrecy::ExposeSecret;
            if s.expose_secret().len() < 16 {
                return Err(err(
                    unsub_span,
                    "unsubscribe.secret_env",
                    "the unsubscribe secret must be at least 16 characters".into(),
                ));
            }
        }

        let d = raw.delivery;
        for (key, v) in [
            ("delivery.batch_size", d.batch_size as u64),
            ("delivery.max_attempts", d.max_attempts as u64),
            ("delivery.lease_seconds", d.lease_seconds),
            ("delivery.retry_base_seconds", d.retry_base_seconds),
            ("delivery.poll_interval_ms", d.poll_interval_ms),
            ("delivery.unrecorded_max", d.unrecorded_max as u64),
            ("delivery.urgent_poll_ms", d.urgent_poll_ms),
        ] {
            if v == 0 {
                return Err(err(None, key, "must be at least 1".into()));
            }
        }
        // A claim must outlive the longest send it can start, with room to spare: a send
        // that outlasted its lease could be claimed again and sent twice.
        if let EmailTransport::Smtp(s) = &transport {
            let longest = s.longest_wait().as_secs();
            if d.lease_seconds < 2 * longest {
                return Err(err(
                    None,
                    "delivery.lease_seconds",
                    format!(
                        "{} s is too short: one SMTP send may wait up to {longest} s \
                         (5 x email.smtp.timeout_seconds + email.smtp.data_timeout_seconds), \
                         and the lease must be at least twice that ({} s) so that no send \
                         outlives its claim; raise lease_seconds to {}, or lower those \
                         timeouts",
                        d.lease_seconds,
                        2 * longest,
                        2 * longest
                    ),
                ));
            }
        }

        let wechat = match raw.wechat {
            Some(w) => {
                let span = w.span();
                let w = w.into_inner();
                let e = |key: &str, m: String| err(Some(span.clone()), &format!("wechat.{key}"), m);
                if !w.enabled {
                    None
                } else {
                    if w.appid.is_empty() || !w.appid.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(e("appid", format!("`{}` is not an AppID (letters and digits, e.g. wx1234567890abcdef)", w.appid.escape_default())));
                    }
                    let mode = match w.mode.as_str() {
                        "draft" => WechatMode::Draft,
                        "publish" => WechatMode::Publish,
                        "mass_send" => WechatMode::MassSend,
                        o => {
                            return Err(e(
                                "mode",
                                format!(
                                    "`{}` is not a mode (draft, publish, mass_send)",
                                    o.escape_default()
                                ),
                            ))
                        }
                    };
                    let secret = read_secret(env, &w.secret_env, w.secret_file.as_deref())
                        .map_err(|m| e("secret_file", m))?;
                    if secret.is_none() && w.outbox_dir.is_none() {
                        send_secrets_missing.push(e(
                            "secret_env",
                            format!("no AppSecret: set the environment variable {} or wechat.secret_file", w.secret_env),
                        ));
                    }
                    if !(w.api_base.starts_with("https://") || w.api_base.starts_with("http://")) {
                        return Err(e(
                            "api_base",
                            format!(
                                "`{}` must start with https:// or http://",
                                w.api_base.escape_default()
                            ),
                        ));
                    }
                    if w.author.chars().any(char::is_control) {
                        return Err(e("author", "must be one line".into()));
                    }
                    if !w.cover_image.is_file() {
                        return Err(e(
                            "cover_image",
                            format!("{} is not a readable file (every WeChat article needs a cover image)", w.cover_image.display()),
                        ));
                    }
                    if w.publish_settle_minutes == 0 {
                        return Err(e(
                            "publish_settle_minutes",
                            "publish_settle_minutes must be at least 1 (the longest a publish may take; 0 would submit again while a publish is still in progress)".into(),
                        ));
                    }
                    if w.poll_interval_seconds == 0 || w.timeout_seconds == 0 {
                        return Err(e(
                            "poll_interval_seconds",
                            "poll_interval_seconds and timeout_seconds must be at least 1".into(),
                        ));
                    }
                    Some(WechatConfig {
                        appid: w.appid,
                        secret,
                        api_base: w.api_base.trim_end_matches('/').to_string(),
                        mode,
                        author: w.author,
                        cover_image: w.cover_image,
                        mass_send_tag: w.mass_send_tag,
                        mass_send_daily_quota: w.mass_send_daily_quota.max(0),
                        poll_interval: Duration::from_secs(w.poll_interval_seconds),
                        poll_timeout: Duration::from_secs(w.poll_timeout_minutes * 60),
                        timeout: Duration::from_secs(w.timeout_seconds),
                        outbox_dir: w.outbox_dir,
                        publish_settle: Duration::from_secs(w.publish_settle_minutes * 60),
                    })
                }
            }
            None => None,
        };

        if !(d.storm_failure_share > 0.0 && d.storm_failure_share <= 1.0) {
            return Err(err(
                None,
                "delivery.storm_failure_share",
                "must be above 0 and at most 1".into(),
            ));
        }

        let mut schedules: Vec<Schedule> = Vec::new();
        for (i, s) in raw.schedules.into_iter().enumerate() {
            let span = s.span();
            let s = s.into_inner();
            let sched =
                Schedule::parse(&s.name, &s.cron, &s.timezone, &s.lists, s.mode, &s.channels)
                    .map_err(|(field, m)| {
                        err(
                            Some(span.clone()),
                            &format!("schedules[{}].{field}", i + 1),
                            m,
                        )
                    })?;
            if schedules.iter().any(|o| o.name == sched.name) {
                return Err(err(
                    Some(span),
                    &format!("schedules[{}].name", i + 1),
                    format!("schedule `{}` is defined twice", sched.name),
                ));
            }
            schedules.push(sched);
        }

        let (admin_span, a) = match raw.admin {
            Some(a) => (Some(a.span()), a.into_inner()),
            None => (None, RawAdmin::default()),
        };
        let admin_bind = a.bind.parse().map_err(|_| {
            err(
                admin_span.clone(),
                "admin.bind",
                format!(
                    "`{}` is not an address and port such as 127.0.0.1:8080",
                    a.bind.escape_default()
                ),
            )
        })?;
        let token = read_secret(env, &a.token_env, a.token_file.as_deref())
            .map_err(|m| err(admin_span.clone(), "admin.token_file", m))?;
        if let Some(t) = &token {
            use secrecy::ExposeSecret;
            if t.expose_secret().len() < 16 {
                return Err(err(
                    admin_span,
                    "admin.token_env",
                    format!(
                        "the admin token (from {} or admin.token_file) must be at least 16 characters",
                        a.token_env
                    ),
                ));
            }
        }
        let public_url = match a.public_url {
            Some(u) => {
                let u = u.trim_end_matches('/').to_string();
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(err(
                        admin_span,
                        "admin.public_url",
                        format!(
                            "`{}` must start with http:// or https://",
                            u.escape_default()
                        ),
                    ));
                }
                Some(u)
            }
            None => None,
        };
        let admin_limits = http_limits(
            admin_span.clone(),
            "admin",
            a.max_connections,
            a.header_timeout_seconds,
            a.request_timeout_seconds,
            a.shutdown_grace_seconds,
        )
        .map_err(|(s, k, m)| err(s, &k, m))?;
        let (public_span, p) = match raw.public {
            Some(p) => (Some(p.span()), p.into_inner()),
            None => (None, RawPublic::default()),
        };
        let public_limits = http_limits(
            public_span.clone(),
            "public",
            p.max_connections,
            p.header_timeout_seconds,
            p.request_timeout_seconds,
            p.shutdown_grace_seconds,
        )
        .map_err(|(s, k, m)| err(s, &k, m))?;
        let public_bind = p.bind.parse().map_err(|_| {
            err(
                public_span,
                "public.bind",
                format!(
                    "`{}` is not an address and port such as 0.0.0.0:8081",
                    p.bind.escape_default()
                ),
            )
        })?;

        Ok(Config {
            file: path.to_path_buf(),
            store_url: resolve_sqlite_url(&raw.store.url, path),
            store_password,
            default_language,
            publisher,
            email: EmailConfig {
                from,
                reply_to,
                transport,
                dkim,
            },
            unsubscribe: UnsubscribeConfig {
                loopback: is_loopback_url(&base_url),
                base_url,
                secret,
                allow_loopback: u.allow_loopback,
            },
            delivery: DeliveryConfig {
                batch_size: d.batch_size,
                max_attempts: d.max_attempts,
                retry_base: Duration::from_secs(d.retry_base_seconds),
                retry_max: Duration::from_secs(d.retry_max_seconds.max(d.retry_base_seconds)),
                deadline: Duration::from_secs(d.deadline_hours * 3600),
                lease: Duration::from_secs(d.lease_seconds),
                on_expired_lease: d.on_expired_lease,
                poll_interval: Duration::from_millis(d.poll_interval_ms),
                channel_pause: Duration::from_secs(d.channel_pause_seconds.max(1)),
                storm_min_attempts: d.storm_min_attempts.max(1),
                storm_failure_share: d.storm_failure_share,
                bounce_after_hard_failures: d.bounce_after_hard_failures,
                shutdown_grace: Duration::from_secs(d.shutdown_grace_seconds),
                unrecorded_max: d.unrecorded_max as usize,
                urgent_poll: Duration::from_millis(d.urgent_poll_ms),
                max_unconfirmed_resends: d.max_unconfirmed_resends,
            },
            catch_up_window: Duration::from_secs(raw.scheduler.catch_up_window_minutes * 60),
            schedules,
            wechat,
            admin: AdminConfig {
                bind: admin_bind,
                token,
                token_env: a.token_env,
                public_url,
                limits: admin_limits,
            },
            public: PublicConfig {
                bind: public_bind,
                limits: public_limits,
            },
            notices: NoticeConfig {
                dedupe_window: Duration::from_secs(raw.notices.dedupe_window_minutes * 60),
            },
            send_secrets_missing,
        })
    }

    /// What stops this configuration from sending: a secret only sending needs (SMTP
    /// password, WeChat AppSecret) that is missing, or SMTP with an unsubscribe link to
    /// this machine. `serve` checks it before it starts; the commands that only read or
    /// enqueue do not need it.
    pub fn ready_to_send(&self) -> Result<(), ConfigError> {
        if let Some(e) = self.send_secrets_missing.first() {
            return Err(e.clone());
        }
        if let Some(m) = self.loopback_link_problem() {
            return Err(ConfigError {
                file: self.file.display().to_string(),
                line: None,
                column: None,
                key: Some("unsubscribe.base_url".into()),
                message: format!(
                    "{m}; serve refuses to send over SMTP with it (set unsubscribe.allow_loopback = true for tests)"
                ),
            });
        }
        Ok(())
    }

    /// A loopback `unsubscribe.base_url` with e-mail going out over SMTP, not allowed.
    pub fn loopback_link_problem(&self) -> Option<String> {
        let smtp = matches!(self.email.transport, EmailTransport::Smtp(_));
        (smtp && self.unsubscribe.loopback && !self.unsubscribe.allow_loopback).then(|| {
            format!(
                "`{}` points at this machine: the unsubscribe link in every e-mail would be dead \
                 for its reader; set the public address readers can reach",
                self.unsubscribe.base_url
            )
        })
    }

    /// Warnings for `check-config`: what `serve` would refuse, and links readers cannot use.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .send_secrets_missing
            .iter()
            .map(|e| format!("{e} (needed only to send: `serve` refuses to start without it)"))
            .collect();
        if let Some(m) = self.loopback_link_problem() {
            w.push(format!(
                "{}: unsubscribe.base_url: {m} (`serve` refuses to send over SMTP until it \
                 is fixed or unsubscribe.allow_loopback = true)",
                self.file.display()
            ));
        } else if self.unsubscribe.loopback && !self.unsubscribe.allow_loopback {
            w.push(format!(
                "{}: unsubscribe.base_url: `{}` points at this machine: fine for the outbox, \
                 dead in e-mails sent to readers",
                self.file.display(),
                self.unsubscribe.base_url
            ));
        }
        if let Some(d) = &self.email.dkim {
            let from = self.email.from.email.domain().to_ascii_lowercase();
            if from != d.domain && !from.ends_with(&format!(".{}", d.domain)) {
                w.push(format!(
                    "{}: email.dkim.domain: `{}` is not email.from's domain `{from}` nor a parent \
                     of it: the signature does not align with From, so DMARC does not pass on it",
                    self.file.display(),
                    d.domain
                ));
            }
        }
        w
    }

    /// The schedule called `name`.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

/// Reads a secret from the environment variable `env_name`, else from `file`.
fn read_secret(
    env: &dyn Fn(&str) -> Option<String>,
    env_name: &str,
    file: Option<&Path>,
) -> Result<Option<SecretString>, String> {
    if let Some(v) = env(env_name).filter(|v| !v.is_empty()) {
        return Ok(Some(SecretString::from(v)));
    }
    match file {
        Some(f) => {
            let v = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?;
            let v = v.trim_end_matches(['\r', '\n']).to_string();
            if v.is_empty() {
                return Err(format!("secret file {} is empty", f.display()));
            }
            Ok(Some(SecretString::from(v)))
        }
        None => Ok(None),
    }
}

/// A URL with any password replaced by `***`, for messages. Read by the `url` crate, as
/// sqlx reads it, so the user, host and the rest are shown as the driver sees them; text
/// that is no URL but has `scheme://…@` shows nothing of what comes before its last `@`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => match u.set_password(Some("***")) {
            Ok(()) => u.to_string(),
            Err(()) => "(a URL with a password)".into(),
        },
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        },
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`), as sqlx will read it.
fn url_has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.password().is_some())
}

/// A `sqlite:` URL whose path is relative, made absolute against the folder of the
/// configuration file `config`, so that every command opens the same store whatever
/// folder it is run from. Other URLs (absolute paths, `:memory:`, PostgreSQL) unchanged.
pub fn resolve_sqlite_url(url: &str, config: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_string();
    };
    let (file, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() {
        return url.to_string();
    }
    let folder = config.parent().unwrap_or(Path::new(""));
    let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    format!("sqlite://{}{query}", folder.join(file).display())
}

/// The SQLite file named by a `sqlite://` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
[publisher]
names = ["Centre"]

[email]
from = "Centre <news@example.org>"
transport = "smtp"
[email.smtp]
host = "127.0.0.1"
port = 2525
tls = "none"
username = "u"

[[schedules]]
name = "weekly"
cron = "0 0 9 * * Mon"
timezone = "Asia/Shanghai"
lists = ["partners"]
"#;

    fn env_with_password(n: &str) -> Option<String> {
        (n == "BULLETIN_SMTP_PASSWORD").then(|| "hunter2-very-secret".to_string())
    }

    fn with_dkim(domain: &str, selector: &str, key: &Path) -> String {
        format!(
            "{GOOD}\n[email.dkim]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nprivate_key_file = \"{}\"\n",
            key.display()
        )
    }

    #[test]
    fn dkim_key_and_names_are_checked_when_the_configuration_loads() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let (_, pem) = crate::dkim::DkimKey::generate(crate::dkim::Algorithm::Ed25519).unwrap();
        std::fs::write(&key, pem.expose_secret()).unwrap();
        let c = Config::parse(
            &with_dkim("example.org", "s1", &key),
            Path::new("b.toml"),
            &env_with_password,
        )
        .unwrap();
        let d = c.email.dkim.as_ref().unwrap();
        assert_eq!(d.dns_name(), "s1._domainkey.example.org");
        assert_eq!(d.key.describe(), "Ed25519");
        // The key is a secret: not in Debug output.
        let seed = pem.expose_secret().lines().nth(1).unwrap().to_string();
        assert!(!format!("{c:?}").contains(&seed));
        assert!(
            !c.warnings().iter().any(|w| w.contains("dkim")),
            "{:?}",
            c.warnings()
        );

        let fails = |text: String| {
            Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap_err()
        };
        let e = fails(with_dkim("example", "s1", &key));
        assert_eq!(e.key.as_deref(), Some("email.dkim.domain"));
        assert!(e.line.is_some());
        let e = fails(with_dkim("example.org", "s 1", &key));
        assert_eq!(e.key.as_deref(), Some("email.dkim.selector"));
        let e = fails(with_dkim("example.org", "s1", &dir.path().join("none.pem")));
        assert_eq!(e.key.as_deref(), Some("email.dkim.private_key_file"));
        assert!(e.message.contains("cannot read the key file"), "{e}");
        // Not a key: refused without quoting the file.
        std::fs::write(&key, "topsecret-not-a-key").unwrap();
        let e = fails(with_dkim("example.org", "s1", &key));
        assert_eq!(e.key.as_deref(), Some("email.dkim.private_key_file"));
        assert!(!e.to_string().contains("topsecret"), "{e}");
        // RSA under 2048 bits.
        use rsa::pkcs8::EncodePrivateKey;
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let small = small.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(&key, small.as_bytes()).unwrap();
        let e = fails(with_dkim("example.org", "s1", &key));
        assert!(e.message.contains("1024 bits"), "{e}");
        assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
    }

    #[test]
    fn a_dkim_domain_that_does_not_align_with_from_is_warned_of() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let (_, pem) = crate::dkim::DkimKey::generate(crate::dkim::Algorithm::Ed25519).unwrap();
        std::fs::write(&key, pem.expose_secret()).unwrap();
        let c = Config::parse(
            &with_dkim("other.example.net", "s1", &key),
            Path::new("b.toml"),
            &env_with_password,
        )
        .unwrap();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("email.dkim.domain") && w.contains("DMARC")),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn good_config_loads_and_hides_the_password() {
        let c = Config::parse(GOOD, Path::new("b.toml"), &env_with_password).unwrap();
        assert_eq!(c.schedules.len(), 1);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "secret leaked into Debug");
    }

    #[test]
    fn admin_token_is_hidden_checked_and_binds_are_named() {
        let env = |n: &str| match n {
            "BULLETIN_SMTP_PASSWORD" => Some("hunter2-very-secret".to_string()),
            "BULLETIN_ADMIN_TOKEN" => Some("admin-token-very-secret".to_string()),
            _ => None,
        };
        let c = Config::parse(GOOD, Path::new("b.toml"), &env).unwrap();
        assert!(c.admin.token.is_some());
        assert_eq!(c.admin.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public.bind.to_string(), "127.0.0.1:8081");
        assert!(!format!("{c:?}").contains("admin-token-very-secret"));

        let short = |n: &str| match n {
            "BULLETIN_ADMIN_TOKEN" => Some("short".to_string()),
            other => env(other),
        };
        let e = Config::parse(GOOD, Path::new("b.toml"), &short).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("admin.token_env"), "{e}");
        assert!(!e.to_string().contains("short\""), "{e}");

        let src = format!("{GOOD}\n[public]\nbind = \"0.0.0.0\"\n");
        let e = Config::parse(&src, Path::new("b.toml"), &env).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("public.bind"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn a_relative_sqlite_path_is_read_from_the_configuration_folder() {
        let c = Config::parse(
            &format!("[store]\nurl = \"sqlite://data/b.db?mode=rwc\"\n{GOOD}"),
            Path::new("/etc/bulletin/bulletin.toml"),
            &env_with_password,
        )
        .unwrap();
        assert_eq!(c.store_url, "sqlite:///etc/bulletin/data/b.db?mode=rwc");
        let r = |u: &str| resolve_sqlite_url(u, Path::new("/etc/bulletin/b.toml"));
        assert_eq!(r("sqlite:b.db"), "sqlite:///etc/bulletin/b.db");
        assert_eq!(r("sqlite:///var/b.db"), "sqlite:///var/b.db");
        assert_eq!(r("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
        // A configuration named relative to the working folder: made absolute.
        let rel = resolve_sqlite_url("sqlite://b.db", Path::new("config/bulletin.toml"));
        let want = std::env::current_dir().unwrap().join("config/b.db");
        assert_eq!(rel, format!("sqlite://{}", want.display()));
    }

    #[test]
    fn missing_password_is_explained_when_sending_only() {
        // Loads (the commands that do not send need no password) ...
        let c = Config::parse(GOOD, Path::new("b.toml"), &|_| None).unwrap();
        // ... but cannot send, and says why.
        let e = c.ready_to_send().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("email.smtp.username"));
        assert!(e.message.contains("BULLETIN_SMTP_PASSWORD"));
        assert!(
            c.warnings()[0].contains("BULLETIN_SMTP_PASSWORD"),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn a_missing_wechat_secret_stops_only_sending() {
        let cover = tempfile_path("cover.png");
        let src = format!(
            "{GOOD}\n[unsubscribe]\nbase_url = \"https://news.example.org\"\n\n[wechat]\nappid = \"wx1234567890abcdef\"\ncover_image = \"{}\"\n",
            cover.display()
        );
        let c = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap();
        let e = c.ready_to_send().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("wechat.secret_env"), "{e}");
        assert!(e.message.contains("no AppSecret"), "{e}");
    }

    fn tempfile_path(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "bulletin-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn unsubscribe_base_url_is_an_absolute_http_url_and_cannot_inject_markup() {
        let with = |u: &str| {
            Config::parse(
                &format!(
                    "{GOOD}\n[unsubscribe]\nbase_url = {}\n",
                    toml::Value::String(u.into())
                ),
                Path::new("b.toml"),
                &env_with_password,
            )
        };
        let c = with("https://news.example.org/a\"onmouseover=\"alert(1)'&<b>/").unwrap();
        let b = &c.unsubscribe.base_url;
        assert_eq!(
            b,
            "https://news.example.org/a%22onmouseover=%22alert(1)%27%26%3Cb%3E"
        );
        assert!(!b.contains(['"', '\'', '<', '>', '&', ' ']), "{b}");
        for bad in [
            "news.example.org",
            "ftp://news.example.org",
            "https://",
            "https://news.example.org/?list=1",
            "https://news.example.org/#x",
            "https://user:pw@news.example.org",
            "https://news example.org",
        ] {
            let e = with(bad).expect_err(bad);
            assert_eq!(e.key.as_deref(), Some("unsubscribe.base_url"), "{bad}: {e}");
        }
        assert_eq!(
            with("https://news.example.org/")
                .unwrap()
                .unsubscribe
                .base_url,
            "https://news.example.org"
        );
    }

    #[test]
    fn a_loopback_unsubscribe_url_stops_smtp_sending_unless_allowed() {
        // GOOD has no [unsubscribe]: the default http://127.0.0.1:8081.
        let c = Config::parse(GOOD, Path::new("b.toml"), &env_with_password).unwrap();
        let e = c.ready_to_send().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("unsubscribe.base_url"));
        assert!(e.message.contains("dead"), "{e}");
        assert!(c.warnings().iter().any(|w| w.contains("127.0.0.1:8081")));
        for host in ["http://localhost:8081", "http://[::1]/", "http://127.1.2.3"] {
            let c = Config::parse(
                &format!("{GOOD}\n[unsubscribe]\nbase_url = \"{host}\"\n"),
                Path::new("b.toml"),
                &env_with_password,
            )
            .unwrap();
            assert!(c.ready_to_send().is_err(), "{host}");
        }
        let allowed = Config::parse(
            &format!("{GOOD}\n[unsubscribe]\nallow_loopback = true\n"),
            Path::new("b.toml"),
            &env_with_password,
        )
        .unwrap();
        assert!(allowed.ready_to_send().is_ok());
        let public = Config::parse(
            &format!("{GOOD}\n[unsubscribe]\nbase_url = \"https://news.example.org\"\n"),
            Path::new("b.toml"),
            &env_with_password,
        )
        .unwrap();
        assert!(public.ready_to_send().is_ok() && public.warnings().is_empty());
    }

    #[test]
    fn unknown_key_names_line() {
        let src = GOOD.replace("port = 2525", "prot = 2525");
        let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.to_string().contains("unknown field `prot`"), "{e}");
    }

    #[test]
    fn bad_schedule_names_the_key() {
        let src = GOOD.replace("Asia/Shanghai", "Asia/Atlantis");
        let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("schedules[1].timezone"), "{e}");
    }

    #[test]
    fn postgres_url_takes_the_password_from_env_or_file_and_hides_it() {
        use secrecy::ExposeSecret;
        let src = GOOD.replace(
            "[publisher]",
            "[store]\nurl = \"postgres://bulletin@db.example/bulletin\"\n\n[publisher]",
        );
        let env = |n: &str| match n {
            DATABASE_PASSWORD_ENV => Some("pg-secret-17".to_string()),
            other => env_with_password(other),
        };
        let c = Config::parse(&src, Path::new("b.toml"), &env).unwrap();
        assert_eq!(
            c.store_password
                .as_ref()
                .map(|p| p.expose_secret().to_string()),
            Some("pg-secret-17".into())
        );
        assert!(!format!("{c:?}").contains("pg-secret-17"));
        // A password in the URL wins; none is read from the environment.
        let src2 = src.replace("bulletin@db", "bulletin:inline@db");
        let c2 = Config::parse(&src2, Path::new("b.toml"), &env).unwrap();
        assert!(c2.store_password.is_none());
        // Other schemes are refused, with the password masked.
        let src3 = src.replace("postgres://bulletin@db", "mysql://u:hidden@db");
        let e = Config::parse(&src3, Path::new("b.toml"), &env).unwrap_err();
        assert!(!e.to_string().contains("hidden"), "{e}");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        // An `@` after the host is not the end of the credentials: the host still shows.
        assert_eq!(
            redact_url("postgres://u:pw@db.example:5432/b?application_name=a@b"),
            "postgres://u:***@db.example:5432/b?application_name=a@b"
        );
        // A percent-encoded `@` in the password is part of the password.
        assert_eq!(
            redact_url("postgres://u:p%40ss@db.example/b"),
            "postgres://u:***@db.example/b"
        );
        assert_eq!(
            redact_url("postgres://u@db.example/b"),
            "postgres://u@db.example/b"
        );
        // Not a URL (the password's `/` ends the authority): nothing before the `@` shows.
        let shown = redact_url("postgres://u:p/ss@db.example/b");
        assert!(
            !shown.contains("p/ss") && shown.ends_with("@db.example/b"),
            "{shown}"
        );
    }
}
