//! `[email]`, `[email.smtp]`, `[email.dkim]` and `[email.i18n.<locale>]`: sender (and its
//! display name per language), transport (SMTP relay or an outbox folder), the relay's
//! TLS, credentials and limits, and the DKIM key.

use super::secrets::read_secret;
use super::{ConfigError, Env, Source};
use crate::domain::vocab::text_enum;
use secrecy::SecretString;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

text_enum!(
    /// Where e-mail goes, as `email.transport` names it.
    TransportKind("e-mail transport") {
        /// Our SMTP pool to the relay in `[email.smtp]`.
        Smtp => "smtp",
        /// One `.eml` file per message in `email.outbox_dir`.
        Outbox => "outbox",
    }
);

text_enum!(
    /// TLS on the SMTP connection.
    TlsMode("TLS mode") {
        None => "none",
        StartTls => "starttls",
        Tls => "tls",
    }
);

impl TlsMode {
    /// The port used when `email.smtp.port` is not given.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    from: String,
    reply_to: Option<String>,
    #[serde(default = "default_transport")]
    transport: Spanned<TransportKind>,
    #[serde(default = "default_outbox")]
    outbox_dir: PathBuf,
    smtp: Option<Spanned<RawSmtp>>,
    dkim: Option<Spanned<RawDkim>>,
    #[serde(default)]
    i18n: std::collections::BTreeMap<String, Spanned<RawEmailText>>,
}

/// `[email.i18n.<locale>]`: what the sender says differently in one language.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmailText {
    /// The display name of `email.from` in messages in this language.
    from_name: String,
}

fn default_transport() -> Spanned<TransportKind> {
    Spanned::new(0..0, TransportKind::Smtp)
}

fn default_outbox() -> PathBuf {
    "outbox".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: Spanned<String>,
    selector: Spanned<String>,
    private_key_file: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: TlsMode,
    username: Option<String>,
    #[serde(default = "default_smtp_password_env")]
    password_env: String,
    password_file: Option<PathBuf>,
    #[serde(default = "default_pool")]
    pool_size: u32,
    rate_per_second: Option<f64>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    /// RFC 5321 §4.5.3.2.6: the reply to the end of data may take 10 minutes (content
    /// filters).
    #[serde(default = "default_data_timeout")]
    data_timeout_seconds: u64,
    hello_name: Option<String>,
    messages_per_connection: Option<u32>,
}

fn default_tls() -> TlsMode {
    TlsMode::StartTls
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
fn default_data_timeout() -> u64 {
    600
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
    /// `[email.i18n.<locale>] from_name`: `from`'s display name by label locale.
    pub from_names: std::collections::BTreeMap<String, String>,
    pub reply_to: Option<lettre::message::Mailbox>,
    pub transport: EmailTransport,
    /// `[email.dkim]`: every message is signed with this key.
    pub dkim: Option<crate::dkim::DkimSettings>,
}

impl EmailConfig {
    /// The sender of a message in `language` (a BCP 47 tag): `from` with the display name
    /// of the language's label locale (`zh-CN` takes `[email.i18n.zh-Hans]`), if one is set.
    pub fn from_for(&self, language: &str) -> lettre::message::Mailbox {
        from_for(&self.from, &self.from_names, language)
    }
}

/// `from` with the display name `names` gives `language`'s label locale, if any.
pub fn from_for(
    from: &lettre::message::Mailbox,
    names: &std::collections::BTreeMap<String, String>,
    language: &str,
) -> lettre::message::Mailbox {
    match names.get(crate::domain::language::label_locale(language)) {
        Some(name) => lettre::message::Mailbox::new(Some(name.clone()), from.email.clone()),
        None => from.clone(),
    }
}

/// Checks `[email]` and its subtables. A missing SMTP password is not an error here (only
/// sending needs it): it is pushed to `send_secrets_missing`.
pub(super) fn validate(
    raw: Spanned<RawEmail>,
    src: &Source,
    env: Env,
    send_secrets_missing: &mut Vec<ConfigError>,
) -> Result<EmailConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let mailbox = |key: &str, text: &str| {
        text.parse::<lettre::message::Mailbox>().map_err(|e| {
            let m = format!("`{}` is not a mailbox ({e})", text.escape_default());
            src.error(Some(span.clone()), key, m)
        })
    };
    let from = mailbox("email.from", &raw.from)?;
    let reply_to = match &raw.reply_to {
        Some(r) => Some(mailbox("email.reply_to", r)?),
        None => None,
    };
    let dkim = match raw.dkim {
        Some(d) => Some(d.into_inner().validate(src)?),
        None => None,
    };
    // An explicit `transport = "smtp"` is where a missing [email.smtp] is reported.
    let transport_span = Some(raw.transport.span())
        .filter(|s| !s.is_empty())
        .unwrap_or(span);
    let transport = match *raw.transport.get_ref() {
        TransportKind::Outbox => EmailTransport::Outbox(raw.outbox_dir),
        TransportKind::Smtp => {
            let Some(smtp) = raw.smtp else {
                return Err(src.error(
                    Some(transport_span),
                    "email.smtp",
                    "transport is \"smtp\" but there is no [email.smtp] table",
                ));
            };
            let smtp_span = smtp.span();
            let smtp = smtp.into_inner();
            EmailTransport::Smtp(smtp.validate(smtp_span, src, env, send_secrets_missing)?)
        }
    };
    let mut from_names = std::collections::BTreeMap::new();
    for (tag, text) in raw.i18n {
        let text_span = text.span();
        let locale = super::publisher::locale_key("email", &tag, text_span.clone(), src)?;
        let name = text.into_inner().from_name;
        crate::domain::text::check_line(&name, 200, true).map_err(|m| {
            src.error(
                Some(text_span.clone()),
                &format!("email.i18n.{tag}.from_name"),
                m,
            )
        })?;
        if from_names.insert(locale.to_string(), name).is_some() {
            return Err(src.error(
                Some(text_span),
                &format!("email.i18n.{tag}"),
                format!("a second table for locale `{locale}`"),
            ));
        }
    }
    Ok(EmailConfig {
        from,
        from_names,
        reply_to,
        transport,
        dkim,
    })
}

impl RawDkim {
    /// Checks the names and reads the key; each error points at its key's value.
    fn validate(self, src: &Source) -> Result<crate::dkim::DkimSettings, ConfigError> {
        let e = |span: Range<usize>, key: &str, m: String| src.error(Some(span), key, m);
        crate::dkim::check_domain(self.domain.get_ref())
            .map_err(|m| e(self.domain.span(), "email.dkim.domain", m.to_string()))?;
        crate::dkim::check_selector(self.selector.get_ref())
            .map_err(|m| e(self.selector.span(), "email.dkim.selector", m.to_string()))?;
        let key = crate::dkim::DkimKey::load(self.private_key_file.get_ref()).map_err(|m| {
            e(
                self.private_key_file.span(),
                "email.dkim.private_key_file",
                m.to_string(),
            )
        })?;
        Ok(crate::dkim::DkimSettings {
            domain: self.domain.into_inner().to_ascii_lowercase(),
            selector: self.selector.into_inner(),
            private_key_file: self.private_key_file.into_inner(),
            key,
        })
    }
}

impl RawSmtp {
    fn validate(
        self,
        span: Range<usize>,
        src: &Source,
        env: Env,
        send_secrets_missing: &mut Vec<ConfigError>,
    ) -> Result<SmtpConfig, ConfigError> {
        let e = |key: &str, m: &str| src.error(Some(span.clone()), key, m);
        let password = read_secret(env, &self.password_env, self.password_file.as_deref())
            .map_err(|m| src.error(Some(span.clone()), "email.smtp.password_file", m))?;
        if self.username.is_some() && password.is_none() {
            // Only sending needs it: `serve` refuses to start without it, the commands
            // that read or enqueue do not.
            send_secrets_missing.push(src.error(
                Some(span.clone()),
                "email.smtp.username",
                format!(
                    "a username is set but no password: set the environment variable {} or email.smtp.password_file",
                    self.password_env
                ),
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(e("email.smtp.pool_size", "must be 1 to 64"));
        }
        if self.rate_per_second.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(e("email.smtp.rate_per_second", "must be a positive number"));
        }
        if self.timeout_seconds == 0 {
            return Err(e("email.smtp.timeout_seconds", "must be at least 1"));
        }
        if self.data_timeout_seconds == 0 {
            return Err(e("email.smtp.data_timeout_seconds", "must be at least 1"));
        }
        if self.messages_per_connection == Some(0) {
            return Err(e(
                "email.smtp.messages_per_connection",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        Ok(SmtpConfig {
            port: self.port.unwrap_or(self.tls.default_port()),
            host: self.host,
            tls: self.tls,
            username: self.username,
            password,
            pool_size: self.pool_size,
            rate_per_second: self.rate_per_second,
            timeout: Duration::from_secs(self.timeout_seconds),
            data_timeout: Duration::from_secs(self.data_timeout_seconds),
            hello_name: self.hello_name,
            messages_per_connection: self.messages_per_connection,
        })
    }
}
