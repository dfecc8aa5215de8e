//! Bounces and complaints that came back after the relay: ingest one received message
//! (classify it, keep it whole, apply the `[bounces]` policy in one store transaction),
//! list what was received, and undo a wrong one.

use super::audit::AuditEntry;
use super::{check_limit, Missing, Ops, OpsError, Result};
use crate::bounce::{classify, BounceKind, Classification};
use crate::domain::Actor;
use crate::store::{
    BounceRecorded, BounceRow, BounceRules, BounceSource, BounceUndone, NewBounce, StoreError,
};
use serde::Serialize;
use tracing::info;

/// What one ingested message was read as, and what it did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    /// How the classifier read it (kind, evidence, status, diagnostic, recipient, ...).
    #[schema(value_type = Object)]
    pub classification: Classification,
    /// The stored bounce and its effects.
    pub recorded: BounceRecorded,
}

impl Ops {
    /// Reads one message that came back to the envelope sender (`envelope_recipient`: the
    /// address the MTA delivered it to, when known), keeps it whole and applies the
    /// policy: hard → the row `bounced` and the address per `hard_bounces_to_suppress`;
    /// soft → counted, suppressed after `soft_bounces_to_suppress` within the window;
    /// complaint → unsubscribed from every list; anything else recorded with no effect.
    /// Never refuses a message: one it cannot read is kept as `unmatched`.
    pub async fn ingest_bounce(
        &self,
        raw: &[u8],
        source: BounceSource,
        envelope_recipient: Option<&str>,
    ) -> Result<Ingested> {
        let c = classify(raw, self.config.bounces.verp.as_ref(), envelope_recipient);
        self.record_classified(raw, source, c).await
    }

    /// For the IMAP poller: a message that reads as a bounce, complaint, delay, delivery
    /// report or auto-reply is recorded as [`Ops::ingest_bounce`] records it; any other
    /// (`unmatched`: a person's mail in the bounce mailbox) is not stored (None), so the
    /// poller leaves it where it is.
    pub async fn ingest_mailbox_message(&self, raw: &[u8]) -> Result<Option<Ingested>> {
        let c = classify(raw, self.config.bounces.verp.as_ref(), None);
        if c.kind == BounceKind::Unmatched {
            return Ok(None);
        }
        self.record_classified(raw, BounceSource::Imap, c)
            .await
            .map(Some)
    }

    async fn record_classified(
        &self,
        raw: &[u8],
        source: BounceSource,
        c: Classification,
    ) -> Result<Ingested> {
        let bounces = &self.config.bounces;
        let now = self.clock.now();
        let policy = bounces.policy;
        let window = chrono::Duration::from_std(policy.soft_window)
            .unwrap_or_else(|_| chrono::Duration::days(30));
        let rules = BounceRules {
            hard_to_suppress: policy.hard_bounces_to_suppress,
            soft_to_suppress: policy.soft_bounces_to_suppress,
            soft_since: now - window,
            match_by_address: bounces.match_by_address,
        };
        let recorded = self
            .store
            .record_bounce(
                &NewBounce {
                    received_at: now,
                    source,
                    kind: c.kind,
                    evidence: c.evidence,
                    status_code: c.status.map(|s| s.to_string()),
                    diagnostic: c.diagnostic.clone(),
                    recipient: c.recipient.clone(),
                    verp_row: c.row_id,
                    message_id: c.message_id.clone(),
                    raw: raw.to_vec(),
                    dedupe_key: Some(crate::bounce::dedupe_key(raw)),
                },
                &rules,
            )
            .await?;
        if recorded.duplicate {
            info!(
                bounce = recorded.id,
                source = %source,
                "message already recorded; nothing changed"
            );
            return Ok(Ingested {
                classification: c,
                recorded,
            });
        }
        info!(
            bounce = recorded.id,
            kind = %c.kind,
            delivery = ?recorded.delivery_id,
            row_bounced = recorded.row_bounced,
            subscribers_bounced = recorded.subscribers_bounced,
            subscribers_unsubscribed = recorded.subscribers_unsubscribed,
            "bounce recorded"
        );
        Ok(Ingested {
            classification: c,
            recorded,
        })
    }

    /// Received bounces, newest first: of one kind, or all.
    pub async fn bounces(&self, kind: Option<BounceKind>, limit: u32) -> Result<Vec<BounceRow>> {
        let limit = check_limit(limit)?;
        Ok(self.store.bounces(kind, limit).await?)
    }

    /// Undoes a bounce an operator judged wrong: its row back to `sent`, the
    /// subscriptions it suppressed back to active; recorded on the bounce.
    pub async fn undo_bounce(&self, actor: &Actor, id: i64) -> Result<BounceUndone> {
        match self.store.undo_bounce(id, self.clock.now()).await {
            Ok(u) => {
                self.audit(
                    actor,
                    AuditEntry::new("bounce.undo", format!("bounce:{id}")).after(&u),
                )
                .await;
                info!(
                    bounce = id,
                    restored = u.subscribers_restored,
                    "bounce undone"
                );
                Ok(u)
            }
            Err(StoreError::NotFound(m)) => Err(OpsError::not_found(Missing::Bounce, m)),
            Err(e) => Err(e.into()),
        }
    }
}

/// How far a webhook's timestamp may be from now, either way.
pub const WEBHOOK_TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

/// One bounce event posted to `POST /webhooks/bounce` by a relay or provider that
/// classifies bounces itself. Signed: see [`Ops::bounce_webhook`].
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BounceEvent {
    /// The sender's own id for the event: an id seen before is a replay. Without one,
    /// the signature is the event's identity.
    #[schema(example = "evt_01J9")]
    pub id: Option<String>,
    /// The address that bounced or complained.
    #[schema(example = "ana@example.net")]
    pub recipient: String,
    pub kind: WebhookKind,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`.
    #[schema(example = "5.1.1")]
    pub status: Option<String>,
    /// The remote server's words.
    #[schema(example = "550 5.1.1 no such user")]
    pub diagnostic: Option<String>,
    /// The Message-ID of the message that bounced (with or without angle brackets):
    /// names its ledger row.
    #[schema(example = "<b12.r345.1a2b3c@bulletin.example.org>")]
    pub message_id: Option<String>,
}

/// What a webhook event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// A permanent failure.
    Hard,
    /// Delivery given up after temporary failures.
    Soft,
    /// The recipient marked the mail as spam.
    Complaint,
}

/// Why a webhook event was refused. Never says what the right signature would be.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the bounce webhook is not enabled ([bounces.webhook] has no secret)")]
    Disabled,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("X-Bulletin-Timestamp {0} is more than 5 minutes from now: refused as stale")]
    Stale(i64),
    #[error("this event was received before (bounce {0}): a replay, nothing changed")]
    Replay(i64),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Ops {
    /// Checks and records one signed bounce event: `X-Bulletin-Signature` must be
    /// `sha256=` and the hex HMAC-SHA256, under `[bounces.webhook]`'s secret, of
    /// `X-Bulletin-Timestamp` (Unix seconds), a `.`, and the body exactly as sent; the
    /// timestamp within [`WEBHOOK_TOLERANCE`] of now; and the event (its `id`, else its
    /// signature) not seen before: kept, like a received bounce, under
    /// `webhook:<id or signature>`, so a replay is refused by every instance, also
    /// after a restart. The event is matched by its Message-ID, else its address (a
    /// signed event is trusted like a VERP token), and the policy applies.
    pub async fn bounce_webhook(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> std::result::Result<BounceRecorded, WebhookError> {
        use hmac::Mac;
        use secrecy::ExposeSecret;
        let Some(hook) = &self.config.bounces.webhook else {
            return Err(WebhookError::Disabled);
        };
        let timestamp = timestamp.ok_or(WebhookError::Unauthenticated(
            "X-Bulletin-Timestamp is missing",
        ))?;
        let signature = signature.ok_or(WebhookError::Unauthenticated(
            "X-Bulletin-Signature is missing",
        ))?;
        let given = signature
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h.trim()).ok())
            .ok_or(WebhookError::Unauthenticated(
                "X-Bulletin-Signature is not `sha256=` and hex",
            ))?;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(hook.secret.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| WebhookError::Unauthenticated("the signature does not verify"))?;
        // Checked after the signature, so only the holder of the secret learns the clock.
        let at: i64 = timestamp.trim().parse().map_err(|_| {
            WebhookError::Unauthenticated("X-Bulletin-Timestamp is not Unix seconds")
        })?;
        let now = self.clock.now();
        if (now.timestamp() - at).abs() > WEBHOOK_TOLERANCE.num_seconds() {
            return Err(WebhookError::Stale(at));
        }
        let event: BounceEvent =
            serde_json::from_slice(body).map_err(|e| WebhookError::Invalid {
                field: "body".into(),
                message: format!("not a bounce event: {e}"),
            })?;
        let recipient =
            crate::domain::email::EmailAddress::parse(&event.recipient).map_err(|e| {
                WebhookError::Invalid {
                    field: "recipient".into(),
                    message: e.to_string(),
                }
            })?;
        let status = match &event.status {
            Some(s) => Some(
                crate::bounce::StatusCode::parse(s.trim())
                    .ok_or_else(|| WebhookError::Invalid {
                        field: "status".into(),
                        message: format!(
                            "`{}` is not an enhanced status code such as 5.1.1",
                            s.escape_default()
                        ),
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let kind = match event.kind {
            WebhookKind::Hard => BounceKind::Hard,
            WebhookKind::Soft => BounceKind::Soft,
            WebhookKind::Complaint => BounceKind::Complaint,
        };
        let identity = match event.id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => format!("webhook:id:{id}"),
            _ => format!("webhook:sig:{}", hex::encode(&given)),
        };
        let policy = self.config.bounces.policy;
        let window = chrono::Duration::from_std(policy.soft_window)
            .unwrap_or_else(|_| chrono::Duration::days(30));
        let recorded = self
            .store
            .record_bounce(
                &NewBounce {
                    received_at: now,
                    source: BounceSource::Webhook,
                    kind,
                    evidence: crate::bounce::Evidence::Webhook,
                    status_code: status,
                    diagnostic: event.diagnostic.clone(),
                    recipient: Some(recipient.to_string()),
                    verp_row: None,
                    message_id: event.message_id.clone(),
                    raw: body.to_vec(),
                    dedupe_key: Some(identity),
                },
                &BounceRules {
                    hard_to_suppress: policy.hard_bounces_to_suppress,
                    soft_to_suppress: policy.soft_bounces_to_suppress,
                    soft_since: now - window,
                    match_by_address: true,
                },
            )
            .await?;
        if recorded.duplicate {
            return Err(WebhookError::Replay(recorded.id));
        }
        info!(
            bounce = recorded.id,
            kind = %kind,
            delivery = ?recorded.delivery_id,
            row_bounced = recorded.row_bounced,
            "bounce webhook event recorded"
        );
        Ok(recorded)
    }
}

impl Ops {
    /// The raw message of a stored bounce, byte for byte as received.
    pub async fn bounce_raw(&self, id: i64) -> Result<Vec<u8>> {
        self.store
            .bounce_raw(id)
            .await?
            .ok_or_else(|| OpsError::not_found(Missing::Bounce, format!("no bounce {id}")))
    }
}
