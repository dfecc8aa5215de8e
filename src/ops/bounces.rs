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
        let bounces = &self.config.bounces;
        let c = classify(raw, bounces.verp.as_ref(), envelope_recipient);
        let now = self.clock.now();
        let policy = bounces.policy;
        let window = chrono::Duration::from_std(policy.soft_window)
            .unwrap_or_else(|_| chrono::Duration::days(30));
        let rules = BounceRules {
            hard_to_suppress: policy.hard_bounces_to_suppress,
            soft_to_suppress: policy.soft_bounces_to_suppress,
            soft_since: now - window,
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
                },
                &rules,
            )
            .await?;
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
