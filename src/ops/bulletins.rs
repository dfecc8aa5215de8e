//! Bulletin operations: list bulletins with their ledger counts, show one, pause and
//! resume sending.

use super::audit::AuditEntry;
use super::deliveries::Progress;
use super::{Missing, Ops, OpsError, Refusal, Result};
use crate::domain::Actor;
use crate::domain::ChannelKind;
use crate::store::{PauseOutcome, StatusCount, StoredBulletin};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A bulletin's ledger rows: totals and counts by channel and status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerCounts {
    pub total: i64,
    /// Rows not in a final state (queued, sending, retrying, held).
    pub remaining: i64,
    /// `{channel: {status: rows}}`, only the statuses present.
    pub by_channel: BTreeMap<String, BTreeMap<String, i64>>,
    /// The counts as the store gave them (channel, status, rows).
    #[serde(skip)]
    pub counts: Vec<StatusCount>,
}

impl LedgerCounts {
    pub fn new(counts: Vec<StatusCount>) -> Self {
        let p = Progress::from_counts(&counts);
        let mut by_channel: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for c in &counts {
            *by_channel
                .entry(c.channel.to_string())
                .or_default()
                .entry(c.status.to_string())
                .or_default() += c.count;
        }
        Self {
            total: p.total as i64,
            remaining: p.open() as i64,
            by_channel,
            counts,
        }
    }

    /// Progress over every channel.
    pub fn progress(&self) -> Progress {
        Progress::from_counts(&self.counts)
    }

    /// One channel's progress.
    pub fn channel(&self, channel: ChannelKind) -> Progress {
        Progress::of_channel(&self.counts, channel)
    }
}

/// A bulletin as listed and shown: its facts (not its rendered bodies) and its counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulletinSummary {
    pub id: i64,
    pub kind: String,
    pub schedule: Option<String>,
    pub subject: String,
    pub language: String,
    pub state: String,
    pub lists: Vec<String>,
    pub records: Vec<String>,
    pub channels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub deliveries: LedgerCounts,
}

impl BulletinSummary {
    fn new(b: StoredBulletin, deliveries: LedgerCounts) -> Self {
        Self {
            id: b.id,
            kind: b.kind.to_string(),
            schedule: b.schedule,
            subject: b.subject,
            language: b.language,
            state: b.state.to_string(),
            lists: b.lists.iter().map(|l| l.to_string()).collect(),
            records: b.record_ids,
            channels: b.channels.iter().map(|c| c.to_string()).collect(),
            created_at: b.created_at,
            deliveries,
        }
    }
}

/// What pausing or resuming did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PauseResult {
    pub id: i64,
    /// The bulletin's state now.
    pub state: String,
    /// False: it already was in the wanted state.
    pub changed: bool,
}

pub(crate) fn no_bulletin(id: i64) -> OpsError {
    OpsError::not_found(Missing::Bulletin, format!("no bulletin {id}"))
}

impl Ops {
    /// The latest `limit` bulletins (1 to [`super::MAX_PAGE`]) with their ledger counts.
    pub async fn bulletins(&self, limit: u32) -> Result<Vec<BulletinSummary>> {
        let limit = super::check_limit(limit)?;
        let mut out = Vec::new();
        for b in self.store.bulletins(limit).await? {
            let counts = self.ledger_counts(b.id).await?;
            out.push(BulletinSummary::new(b, counts));
        }
        Ok(out)
    }

    /// One bulletin with its ledger counts.
    pub async fn bulletin(&self, id: i64) -> Result<BulletinSummary> {
        let b = self
            .store
            .bulletin(id)
            .await?
            .ok_or_else(|| no_bulletin(id))?;
        let counts = self.ledger_counts(id).await?;
        Ok(BulletinSummary::new(b, counts))
    }

    /// One bulletin's ledger counts (the whole ledger's with None).
    pub async fn ledger_counts(&self, bulletin: i64) -> Result<LedgerCounts> {
        Ok(LedgerCounts::new(
            self.store.delivery_counts(Some(bulletin)).await?,
        ))
    }

    /// Pauses a sending bulletin (`paused`) or resumes a paused one (then wakes the
    /// dispatcher). Refused for a bulletin in any other state.
    pub async fn set_paused(&self, actor: &Actor, id: i64, paused: bool) -> Result<PauseResult> {
        let outcome = match self.store.set_bulletin_paused(id, paused).await {
            Err(crate::store::StoreError::NotFound(_)) => return Err(no_bulletin(id)),
            other => other?,
        };
        let b = self
            .store
            .bulletin(id)
            .await?
            .ok_or_else(|| no_bulletin(id))?;
        if outcome == PauseOutcome::NotApplicable {
            return Err(OpsError::Refused {
                why: Refusal::NotPausable,
                message: format!(
                    "bulletin {id} is `{}`: only a sending bulletin can be paused, and only a paused one resumed",
                    b.state
                ),
            });
        }
        if !paused {
            self.wake.notify_one();
        }
        if outcome == PauseOutcome::Changed {
            let action = if paused {
                "bulletin.pause"
            } else {
                "bulletin.resume"
            };
            self.audit(
                actor,
                AuditEntry::new(action, format!("bulletin:{id}"))
                    .after(serde_json::json!({"state": b.state.to_string()})),
            )
            .await;
        }
        Ok(PauseResult {
            id,
            state: b.state.to_string(),
            changed: outcome == PauseOutcome::Changed,
        })
    }
}
