//! The e-mail channel: builds one MIME message per recipient from the prepared bulletin
//! (multipart/alternative, UTF-8, RFC 2047 subject, List-Unsubscribe one-click) and
//! hands it to our SMTP pool or to an outbox folder of `.eml` files, DKIM-signed when
//! `[email.dkim]` is set. The bodies are encoded once per bulletin language version
//! ([`EncodedBodies`]); per recipient only the version is looked up (once per reader
//! language) and the headers and the unsubscribe link are encoded. With `[bounces]
//! return_path`, each message's envelope sender is its ledger row's VERP address.

use super::smtp::{SmtpPool, TlsSetupError};
use super::{Channel, Job, PreparedBulletin, Receipt, SendError, VersionView};
use crate::bounce::Verp;
use crate::config::{EmailConfig, EmailTransport};
use crate::domain::ChannelKind;
use crate::render::{with_web_url, UNSUBSCRIBE_MARK};
use crate::unsubscribe::UnsubscribeSigner;
use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use std::num::NonZeroU32;
use std::sync::Arc;

macro_rules! raw_header {
    ($ty:ident, $name:literal) => {
        #[derive(Debug, Clone)]
        struct $ty(String);
        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

raw_header!(ReturnPathHeader, "Return-Path");
raw_header!(ListUnsubscribe, "List-Unsubscribe");
raw_header!(ListUnsubscribePost, "List-Unsubscribe-Post");
raw_header!(ListId, "List-Id");
raw_header!(AutoSubmitted, "Auto-Submitted");
raw_header!(ContentLanguage, "Content-Language");
raw_header!(ArchivedAt, "Archived-At");

/// Lines of quoted-printable at most this long before the soft break (`=`) that joins
/// two pieces, so that every encoded line stays within RFC 2045's 76 characters.
const QP_LINE: usize = 75;

/// Quoted-printable for a text body, with CRLF line ends (as lettre does for text).
fn qp(s: &str) -> Vec<u8> {
    let crlf = if s.contains('\n') {
        std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\n', "\r\n"))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    quoted_printable::encode_with_options(
        crlf.as_bytes(),
        quoted_printable::Options::default().line_length_limit(QP_LINE),
    )
    .into_bytes()
}

/// A body cut at each unsubscribe mark, each piece already quoted-printable. A recipient's
/// body is the pieces with their encoded link between, joined by soft line breaks
/// (`=` CRLF), which decode to nothing: the decoded text is exactly
/// `render::personalise(body, link)`.
#[derive(Debug)]
pub struct SplicedBody {
    pieces: Vec<Vec<u8>>,
    len: usize,
}

impl SplicedBody {
    fn new(body: &str) -> Self {
        let pieces: Vec<Vec<u8>> = body.split(UNSUBSCRIBE_MARK).map(qp).collect();
        let len = pieces.iter().map(|p| p.len() + 3).sum();
        Self { pieces, len }
    }

    /// The body for one recipient, given their link already encoded with [`qp`].
    fn with_link(&self, link: &[u8]) -> Body {
        let mut out = Vec::with_capacity(self.len + (self.pieces.len() - 1) * (link.len() + 3));
        let mut push = |bytes: &[u8]| {
            if bytes.is_empty() {
                return;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"=\r\n");
            }
            out.extend_from_slice(bytes);
        };
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                push(link);
            }
            push(piece);
        }
        Body::dangerous_pre_encoded(out, ContentTransferEncoding::QuotedPrintable)
    }
}

/// A bulletin's e-mail bodies, encoded once and shared by every recipient: before this,
/// quoted-printable encoding of the ~19 KB HTML took most of the CPU time of a send.
#[derive(Debug)]
pub struct EncodedBodies {
    html: SplicedBody,
    text: SplicedBody,
    /// (Content-ID, type, base64 body) of each inline image.
    images: Vec<(String, ContentType, Body)>,
    /// An image whose type cannot be used: every recipient fails alike.
    image_error: Option<String>,
    /// The sender with the display name for the bulletin's language.
    from: Mailbox,
    /// `Content-Language` (RFC 3282): the bulletin's tag when it is a well-formed BCP 47
    /// tag (ASCII, so it needs no folding); otherwise the header is left out.
    content_language: Option<String>,
}

impl EncodedBodies {
    /// `from`: the sender as configured, and its display name per label locale. What is
    /// the same for every recipient (the language lookups too) is worked out here once.
    fn new(
        b: &PreparedBulletin,
        v: VersionView<'_>,
        from: &Mailbox,
        from_names: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let mut images = Vec::new();
        let mut image_error = None;
        for (cid, im) in &b.images {
            match ContentType::parse(&im.content_type) {
                Ok(ct) => images.push((cid.clone(), ct, Body::new(im.bytes.clone()))),
                Err(e) => image_error = Some(format!("image {}: {e}", im.file)),
            }
        }
        let content_language = (crate::domain::language::parse_tag(v.language).is_some()
            && v.language
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        .then(|| v.language.to_string());
        Self {
            html: SplicedBody::new(&with_web_url(v.html, v.web_url)),
            text: SplicedBody::new(&with_web_url(v.text, v.web_url)),
            images,
            image_error,
            from: crate::config::email_from_for(from, from_names, v.language),
            content_language,
        }
    }
}

enum Mailer {
    Smtp(Box<SmtpPool>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// Sends bulletins by e-mail.
pub struct EmailChannel {
    mailer: Mailer,
    from: Mailbox,
    /// `from`'s display name by label locale (`[email.i18n.<locale>] from_name`).
    from_names: std::collections::BTreeMap<String, String>,
    reply_to: Option<Mailbox>,
    signer: Arc<UnsubscribeSigner>,
    /// Makes Message-IDs unique to this store.
    id_tag: String,
    list_id_domain: String,
    concurrency: usize,
    /// SMTP connections (each has at most one message's data unanswered).
    connections: usize,
    /// `email.smtp.rate_per_second`.
    rate: Option<f64>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// The longest one send may take (`SmtpConfig::longest_wait`).
    max_wait: std::time::Duration,
    /// `[email.dkim]`: signs every message once it is whole (link spliced in).
    dkim: Option<lettre::message::dkim::DkimConfig>,
    /// `[bounces] return_path`: each message's MAIL FROM names its ledger row.
    verp: Option<Verp>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("from", &self.from.to_string())
            .field("concurrency", &self.concurrency)
            .field("dkim", &self.dkim.is_some())
            .field(
                "verp",
                &self.verp.as_ref().map(|v| v.return_path().to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// Why the e-mail channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot create the outbox folder {}: {source}", dir.display())]
    Outbox {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dkim(#[from] crate::dkim::DkimError),
}

impl EmailChannel {
    pub fn new(
        cfg: &EmailConfig,
        signer: Arc<UnsubscribeSigner>,
        id_tag: String,
    ) -> Result<Self, EmailSetupError> {
        let (mailer, connections, limiter) = match &cfg.transport {
            EmailTransport::Smtp(s) => {
                let limiter = s.rate_per_second.map(|r| {
                    let quota = if r >= 1.0 {
                        Quota::per_second(
                            NonZeroU32::new(r.round() as u32).unwrap_or(NonZeroU32::MIN),
                        )
                    } else {
                        Quota::with_period(std::time::Duration::from_secs_f64(1.0 / r))
                            .expect("a positive period")
                    };
                    RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN))
                });
                (
                    Mailer::Smtp(Box::new(SmtpPool::new(s)?)),
                    s.pool_size as usize,
                    limiter,
                )
            }
            EmailTransport::Outbox(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| EmailSetupError::Outbox {
                    dir: dir.clone(),
                    source,
                })?;
                (Mailer::Outbox(AsyncFileTransport::new(dir)), 4, None)
            }
        };
        let domain = cfg.from.email.domain().to_string();
        let dkim = cfg.dkim.as_ref().map(|d| d.signing_config()).transpose()?;
        // Twice the connections in flight: a connection sending one message finds the
        // next one waiting, and pipelines its envelope with this one's data.
        let concurrency = match &mailer {
            Mailer::Smtp(_) => 2 * connections,
            Mailer::Outbox(_) => connections,
        };
        Ok(Self {
            mailer,
            from: cfg.from.clone(),
            from_names: cfg.from_names.clone(),
            reply_to: cfg.reply_to.clone(),
            signer,
            id_tag,
            list_id_domain: domain,
            concurrency,
            connections,
            rate: match &cfg.transport {
                EmailTransport::Smtp(s) => s.rate_per_second,
                EmailTransport::Outbox(_) => None,
            },
            limiter,
            max_wait: match &cfg.transport {
                EmailTransport::Smtp(s) => s.longest_wait(),
                EmailTransport::Outbox(_) => std::time::Duration::from_secs(30),
            },
            dkim,
            verp: None,
        })
    }

    /// Gives each message the VERP envelope sender of its ledger row (`[bounces]
    /// return_path`); None keeps the From address as the envelope sender.
    pub fn with_verp(mut self, verp: Option<Verp>) -> Self {
        self.verp = verp;
        self
    }

    /// The envelope sender of ledger row `row_id`: its VERP address, or None for From.
    pub fn envelope_sender(&self, row_id: i64) -> Option<String> {
        self.verp.as_ref().map(|v| v.address(row_id))
    }

    /// The Message-ID of one delivery: the same on every retry of that delivery.
    fn message_id(&self, job: &Job<'_>) -> String {
        format!(
            "<b{}.d{}.{}@{}>",
            job.bulletin.id,
            job.delivery.id,
            self.id_tag,
            self.from.email.domain()
        )
    }

    /// Builds the MIME message for one recipient.
    pub fn build(&self, job: &Job<'_>) -> Result<Message, SendError> {
        let d = job.delivery;
        let b: &PreparedBulletin = job.bulletin;
        let to_addr: lettre::Address = d.recipient.parse().map_err(|e| {
            SendError::permanent(format!(
                "recipient `{}` is not a valid address: {e}",
                d.recipient
            ))
        })?;
        let envelope = match self.envelope_sender(d.id) {
            Some(sender) => {
                let sender: lettre::Address = sender.parse().map_err(|e| {
                    SendError::permanent(format!("the VERP address `{sender}` is not valid: {e}"))
                })?;
                Some(
                    Envelope::new(Some(sender), vec![to_addr.clone()]).map_err(|e| {
                        SendError::permanent(format!("cannot build the envelope: {e}"))
                    })?,
                )
            }
            None => None,
        };
        let to = Mailbox::new(d.recipient_name.clone(), to_addr);
        let unsubscribe_url = match (d.list_id, d.subscriber_id) {
            (Some(l), Some(s)) => Some(self.signer.url(l, s, &d.recipient)),
            _ => None,
        };
        // The reader's version: its bodies are encoded once, by its first reader.
        let version = b.version_for(d.language.as_deref());
        let bodies = version
            .email_bodies
            .get_or_init(|| Arc::new(EncodedBodies::new(b, version, &self.from, &self.from_names)))
            .clone();
        if let Some(e) = &bodies.image_error {
            return Err(SendError::permanent(e.clone()));
        }
        let link = qp(unsubscribe_url.as_deref().unwrap_or(""));

        let mut builder = Message::builder()
            .from(bodies.from.clone())
            .to(to)
            .subject(version.subject.to_string())
            .message_id(Some(self.message_id(job)))
            .header(AutoSubmitted("auto-generated".into()));
        if let Some(tag) = &bodies.content_language {
            builder = builder.header(ContentLanguage(tag.clone()));
        }
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
        }
        if let Some(u) = version.web_url {
            // RFC 5064: where the message is archived, for every reader the same.
            builder = builder.header(ArchivedAt(format!("<{u}>")));
        }
        if let Some(envelope) = envelope {
            // An outbox file has no envelope beside it: the sender is recorded the way a
            // delivering MTA records it.
            if matches!(self.mailer, Mailer::Outbox(_)) {
                if let Some(sender) = envelope.from() {
                    builder = builder.header(ReturnPathHeader(format!("<{sender}>")));
                }
            }
            builder = builder.envelope(envelope);
        }
        if let Some(u) = &unsubscribe_url {
            builder = builder
                .header(ListUnsubscribe(format!("<{u}>")))
                .header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
        }
        if let Some(l) = d.list_id {
            builder = builder.header(ListId(format!("<list{l}.{}>", self.list_id_domain)));
        }
        let html_part = SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(bodies.html.with_link(&link));
        let text_part = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(bodies.text.with_link(&link));
        let alternative = if bodies.images.is_empty() {
            MultiPart::alternative()
                .singlepart(text_part)
                .singlepart(html_part)
        } else {
            let mut related = MultiPart::related().singlepart(html_part);
            for (cid, ct, body) in &bodies.images {
                related = related
                    .singlepart(Attachment::new_inline(cid.clone()).body(body.clone(), ct.clone()));
            }
            MultiPart::alternative()
                .singlepart(text_part)
                .multipart(related)
        };
        let cannot = |e: &dyn std::fmt::Display| {
            SendError::permanent(format!("cannot build the message: {e}"))
        };
        let Some(dkim) = &self.dkim else {
            return builder.multipart(alternative).map_err(|e| cannot(&e));
        };
        // lettre writes a multipart body's Content-Type with the body, outside the headers
        // it signs: the signature would list content-type without covering it, and fail.
        // So the multipart goes in as a pre-encoded body (its parts are quoted-printable
        // and base64: 7bit) under a Content-Type header of the message's own.
        let content_type = alternative
            .headers()
            .get_raw("Content-Type")
            .map(ContentType::parse)
            .ok_or_else(|| cannot(&"the multipart has no Content-Type"))?
            .map_err(|e| cannot(&e))?;
        let mut body = alternative.formatted();
        let start = memchr::memmem::find(&body, b"\r\n\r\n").map_or(0, |i| i + 4);
        body.drain(..start);
        let mut message = builder
            .header(lettre::message::header::MIME_VERSION_1_0)
            .header(content_type)
            .body(Body::dangerous_pre_encoded(
                body,
                ContentTransferEncoding::SevenBit,
            ))
            .map_err(|e| cannot(&e))?;
        // Signed whole, per recipient: the body hash covers this recipient's link and the
        // message's own MIME boundaries, so no part of it can be shared between messages.
        message.sign(dkim);
        Ok(message)
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn connections(&self) -> usize {
        self.connections
    }

    fn max_rate(&self) -> Option<f64> {
        self.rate
    }

    fn max_wait(&self) -> std::time::Duration {
        self.max_wait
    }

    async fn admit(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
    }

    async fn deliver(&self, job: Job<'_>) -> Result<Receipt, SendError> {
        let message = self.build(&job)?;
        let message_id = self.message_id(&job);
        match &self.mailer {
            Mailer::Smtp(pool) => {
                let envelope = message.envelope().clone();
                match pool.send(&envelope, &message.formatted()).await {
                    Ok(resp) => Ok(Receipt {
                        code: resp.code().to_string().parse().ok(),
                        reply: resp.message().collect::<Vec<_>>().join(" "),
                        message_id: Some(message_id),
                    }),
                    Err(e) => Err(SendError {
                        message_id: Some(message_id),
                        ..e
                    }),
                }
            }
            Mailer::Outbox(t) => match t.send(message).await {
                Ok(file_id) => Ok(Receipt {
                    code: None,
                    reply: format!("written to outbox as {file_id}.eml"),
                    message_id: Some(message_id),
                }),
                Err(e) => Err(SendError::transient(format!(
                    "outbox: {}",
                    super::error_chain(&e)
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::personalise;

    fn spliced(body: &str, url: &str) -> Vec<u8> {
        SplicedBody::new(body).with_link(&qp(url)).into_vec()
    }

    #[test]
    fn spliced_bodies_decode_to_the_personalised_text() {
        let url = "https://news.example.org/u/1/2?t=abc=def&x=y";
        let long =
            "é".repeat(60) + " and a long line of ASCII text that goes on and on past the limit";
        let cases = [
            format!("<p>Hello</p>\n<a href=\"{UNSUBSCRIBE_MARK}\">leave</a>\n"),
            format!("{UNSUBSCRIBE_MARK}starts with the mark"),
            format!("ends with the mark {UNSUBSCRIBE_MARK}"),
            format!("two {UNSUBSCRIBE_MARK}{UNSUBSCRIBE_MARK} marks, {long}\n.\n. dots"),
            format!("trailing space before the mark \n{UNSUBSCRIBE_MARK}\n"),
            "no mark at all\r\nwith CRLF\n".to_string(),
            String::new(),
        ];
        for body in &cases {
            let encoded = spliced(body, url);
            for line in encoded.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(
                    line.len() <= 76,
                    "line over 76: {:?}",
                    String::from_utf8_lossy(line)
                );
                assert!(line.is_ascii());
            }
            let decoded =
                quoted_printable::decode(&encoded, quoted_printable::ParseMode::Strict).unwrap();
            let want = personalise(body, url)
                .replace("\r\n", "\n")
                .replace('\n', "\r\n");
            assert_eq!(String::from_utf8(decoded).unwrap(), want, "body {body:?}");
        }
    }

    #[test]
    fn without_a_link_the_mark_disappears() {
        let decoded = quoted_printable::decode(
            spliced(&format!("a{UNSUBSCRIBE_MARK}b"), ""),
            quoted_printable::ParseMode::Strict,
        )
        .unwrap();
        assert_eq!(decoded, b"ab");
    }
}
