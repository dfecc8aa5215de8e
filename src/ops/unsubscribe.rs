//! The unsubscribe operation behind the public one-click links: check a link against
//! the address it was issued for, then unsubscribe (idempotent). A link that does not
//! verify changes nothing.

use super::{Missing, Ops, OpsError, Result};
use crate::domain::subscriber::SubscriberStatus;
use crate::store::SubscriptionRef;
use crate::unsubscribe::UnsubscribeToken;
use serde::Serialize;
use tracing::info;

/// Whom a valid link names, and where they stand.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub list: String,
    pub email: String,
    pub status: SubscriberStatus,
}

impl From<SubscriptionRef> for Subscription {
    fn from(s: SubscriptionRef) -> Self {
        Self {
            list: s.list,
            email: s.email,
            status: s.status,
        }
    }
}

/// The link is not valid (cut, altered, or not ours): field `token`.
fn invalid_link() -> OpsError {
    OpsError::invalid("token", "the unsubscribe link is not valid")
}

fn gone() -> OpsError {
    OpsError::not_found(Missing::Subscriber, "this address is no longer on the list")
}

impl Ops {
    /// The subscription a link names, once its tag is checked against the address it
    /// was issued for. Invalid (`token`) for a link that does not verify, NotFound when
    /// nobody (or someone else now) holds the ids.
    ///
    /// Links name the list and subscriber ids and, since ids could be reused (SQLite
    /// before subscriber ids were made AUTOINCREMENT), carry a tag over the address too:
    /// a link matches only the address it was sent to. A link of the earlier kind (ids
    /// only) is honoured only when the ledger shows e-mails under those ids went to the
    /// current address alone; if the id went to someone else too, it changes nothing.
    pub async fn unsubscribe_target(&self, token: &str) -> Result<Subscription> {
        self.check_link(token).await.map(|(_, s)| s.into())
    }

    /// Unsubscribes whom a valid link names (idempotent); the address is checked again
    /// as the row changes, should the id change hands between.
    pub async fn unsubscribe(&self, token: &str) -> Result<Subscription> {
        let (target, checked) = self.check_link(token).await?;
        let sub = self
            .store
            .unsubscribe(
                target.list_id,
                target.subscriber_id,
                &checked.email,
                self.clock.now(),
            )
            .await?
            .ok_or_else(gone)?;
        info!(
            list = %sub.list,
            subscriber = target.subscriber_id,
            status = %sub.status,
            "unsubscribe link used"
        );
        Ok(sub.into())
    }

    async fn check_link(&self, token: &str) -> Result<(UnsubscribeToken, SubscriptionRef)> {
        let t = self.signer.parse(token).ok_or_else(invalid_link)?;
        let sub = self
            .store
            .subscription(t.list_id, t.subscriber_id)
            .await?
            .ok_or_else(gone)?;
        if self.signer.issued_for(&t, &sub.email) {
            return Ok((t, sub));
        }
        if !self.signer.is_legacy(&t) {
            return Err(invalid_link());
        }
        let r = self
            .store
            .link_recipients(t.list_id, t.subscriber_id)
            .await?;
        if !r.is_empty() && r.iter().all(|a| a.eq_ignore_ascii_case(&sub.email)) {
            return Ok((t, sub));
        }
        info!(
            list = %sub.list,
            subscriber = t.subscriber_id,
            addresses = r.len(),
            "an unsubscribe link of the earlier kind names an id whose address changed: \
             nothing changed"
        );
        Err(gone())
    }
}
