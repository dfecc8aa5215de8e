//! The e-mail channel: builds one MIME message per recipient from the prepared bulletin
//! (multipart/alternative, UTF-8, RFC 2047 subject, List-Unsubscribe one-click) and
//! hands it to lettre's pooled SMTP transport or to an outbox folder of `.eml` files.

use super::smtp::SmtpPool;
use super::{Channel, Job, PreparedBulletin, Receipt, SendError};
use crate::config::{EmailConfig, EmailTransport};
use crate::domain::ChannelKind;
use crate::render::personalise;
use crate::unsubscribe::UnsubscribeSigner;
use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
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

raw_header!(ListUnsubscribe, "List-Unsubscribe");
raw_header!(ListUnsubscribePost, "List-Unsubscribe-Post");
raw_header!(ListId, "List-Id");
raw_header!(AutoSubmitted, "Auto-Submitted");

enum Mailer {
    Smtp(Box<SmtpPool>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// Sends bulletins by e-mail.
pub struct EmailChannel {
    mailer: Mailer,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    signer: Arc<UnsubscribeSigner>,
    /// Makes Message-IDs unique to this store.
    id_tag: String,
    list_id_domain: String,
    concurrency: usize,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("from", &self.from.to_string())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    pub fn new(
        cfg: &EmailConfig,
        signer: Arc<UnsubscribeSigner>,
        id_tag: String,
    ) -> Result<Self, String> {
        let (mailer, concurrency, limiter) = match &cfg.transport {
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
                std::fs::create_dir_all(dir).map_err(|e| {
                    format!("cannot create the outbox folder {}: {e}", dir.display())
                })?;
                (Mailer::Outbox(AsyncFileTransport::new(dir)), 4, None)
            }
        };
        let domain = cfg.from.email.domain().to_string();
        Ok(Self {
            mailer,
            from: cfg.from.clone(),
            reply_to: cfg.reply_to.clone(),
            signer,
            id_tag,
            list_id_domain: domain,
            concurrency,
            limiter,
        })
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
        let to = Mailbox::new(d.recipient_name.clone(), to_addr);
        let unsubscribe_url = match (d.list_id, d.subscriber_id) {
            (Some(l), Some(s)) => Some(self.signer.url(l, s)),
            _ => None,
        };
        let url = unsubscribe_url.as_deref().unwrap_or("");
        let html = personalise(&b.html, url);
        let text = personalise(&b.text, url);

        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(b.subject.clone())
            .message_id(Some(self.message_id(job)))
            .header(AutoSubmitted("auto-generated".into()));
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
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
            .body(html);
        let text_part = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(text);
        let alternative = if b.images.is_empty() {
            MultiPart::alternative()
                .singlepart(text_part)
                .singlepart(html_part)
        } else {
            let mut related = MultiPart::related().singlepart(html_part);
            for (cid, im) in &b.images {
                let ct = ContentType::parse(&im.content_type)
                    .map_err(|e| SendError::permanent(format!("image {}: {e}", im.file)))?;
                related = related
                    .singlepart(Attachment::new_inline(cid.clone()).body(im.bytes.clone(), ct));
            }
            MultiPart::alternative()
                .singlepart(text_part)
                .multipart(related)
        };
        builder
            .multipart(alternative)
            .map_err(|e| SendError::permanent(format!("cannot build the message: {e}")))
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

    async fn deliver(&self, job: Job<'_>) -> Result<Receipt, SendError> {
        let message = self.build(&job)?;
        let message_id = self.message_id(&job);
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
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
