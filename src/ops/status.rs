//! Status operations: the one-screen summary (schedules, the ledger by status, recent
//! failures and bounces, bulletins in progress), readiness and the metrics text.

use super::schedules::ScheduleState;
use super::{Ops, Result};
use crate::bounce::BounceKind;
use crate::domain::DeliveryStatus;
use crate::metrics::LastAttempt;
use serde::Serialize;
use std::collections::BTreeMap;

/// A bulletin not yet done, with its rows left.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveBulletin {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub subject: String,
    pub total: i64,
    /// Rows not in a final state.
    pub remaining: i64,
}

/// `bulletin status`: where everything stands.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSummary {
    pub schedules: Vec<ScheduleState>,
    /// Rows by status over the whole ledger (every status, zero included).
    pub ledger: BTreeMap<String, i64>,
    pub failed_last_24h: i64,
    /// Bounces, complaints and replies received in the last 24 h, by kind (every kind,
    /// zero included).
    pub bounces_last_24h: BTreeMap<String, i64>,
    pub bulletins_in_progress: Vec<ActiveBulletin>,
}

impl StatusSummary {
    /// Rows in this status over the whole ledger.
    pub fn count(&self, status: DeliveryStatus) -> i64 {
        self.ledger.get(status.as_str()).copied().unwrap_or(0)
    }
}

/// `/readyz`: the store answers; each channel's last attempt (reported, not judged).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub store: &'static str,
    pub channels: BTreeMap<&'static str, LastAttempt>,
}

impl Ops {
    /// The summary of schedules, ledger, failures of the last 24 h and open bulletins
    /// (of the latest 100).
    pub async fn status(&self) -> Result<StatusSummary> {
        let now = self.clock.now();
        let schedules = self.schedules().await?;
        let counts = self.store.delivery_counts(None).await?;
        let ledger = DeliveryStatus::ALL
            .iter()
            .map(|s| {
                let n = counts
                    .iter()
                    .filter(|c| c.status == *s)
                    .map(|c| c.count)
                    .sum();
                (s.as_str().to_string(), n)
            })
            .collect();
        let failed_last_24h = self.failed_since(now - chrono::Duration::hours(24)).await?;
        let recent = self
            .store
            .bounce_counts_since(now - chrono::Duration::hours(24))
            .await?;
        let bounces_last_24h = BounceKind::ALL
            .iter()
            .map(|k| {
                let n = recent.iter().find(|(r, _)| r == k).map_or(0, |(_, n)| *n);
                (k.as_str().to_string(), n)
            })
            .collect();
        let mut active = Vec::new();
        for b in self.store.bulletins(100).await? {
            if b.state == crate::store::BulletinState::Done {
                continue;
            }
            let c = self.ledger_counts(b.id).await?;
            active.push(ActiveBulletin {
                id: b.id,
                kind: b.kind.to_string(),
                state: b.state.to_string(),
                subject: b.subject,
                total: c.total,
                remaining: c.remaining,
            });
        }
        Ok(StatusSummary {
            schedules,
            ledger,
            failed_last_24h,
            bounces_last_24h,
            bulletins_in_progress: active,
        })
    }

    /// Ready when the store answers and every migration is applied.
    pub async fn readiness(&self) -> Result<Readiness> {
        self.store.ready().await?;
        Ok(Readiness {
            status: "ready",
            store: "ok",
            channels: self.metrics.last_attempts(),
        })
    }

    /// The metrics in the OpenMetrics text format, with the ledger read now.
    pub async fn metrics_text(&self) -> Result<String> {
        Ok(self.metrics.render(self.store.as_ref()).await?)
    }

    /// The whole ledger's counts by channel and status.
    pub async fn ledger(&self) -> Result<Vec<crate::store::StatusCount>> {
        Ok(self.store.delivery_counts(None).await?)
    }
}
