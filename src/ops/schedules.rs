//! Schedule operations: the configured schedules with their last and next firings, and
//! firing one now.

use super::audit::AuditEntry;
use super::{Ops, Result};
use crate::domain::schedule::ScheduleMode;
use crate::domain::Actor;
use crate::scheduler::FireOutcome;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A schedule and where it stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleState {
    pub name: String,
    pub cron: String,
    /// The IANA time zone its cron expression is read in.
    pub timezone: String,
    pub mode: ScheduleMode,
    pub lists: Vec<String>,
    pub last_firing: Option<DateTime<Utc>>,
    pub next_firing: Option<DateTime<Utc>>,
    #[serde(skip)]
    #[schema(ignore)]
    pub tz: Tz,
}

impl ScheduleState {
    /// The next firing in the schedule's own time zone, e.g. `2026-12-02 08:00 CET`.
    pub fn next_firing_local(&self) -> Option<String> {
        self.next_firing.map(|n| {
            n.with_timezone(&self.tz)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
    }
}

/// What firing a schedule did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Firing {
    pub schedule: String,
    /// This second's firing had already been recorded: nothing done.
    pub already_fired: bool,
    /// The bulletins created.
    pub bulletins: Vec<i64>,
    /// Ledger rows queued (the daemon sends them).
    pub deliveries: u64,
}

impl Ops {
    /// Every configured schedule with its last firing and its next one after now.
    pub async fn schedules(&self) -> Result<Vec<ScheduleState>> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(self.config.schedules.len());
        for s in &self.config.schedules {
            out.push(ScheduleState {
                name: s.name.clone(),
                cron: s.cron_text.clone(),
                timezone: s.timezone.to_string(),
                mode: s.mode,
                lists: s.lists.iter().map(|l| l.to_string()).collect(),
                last_firing: self.store.last_firing(&s.name).await?,
                next_firing: s.next_after(now),
                tz: s.timezone,
            });
        }
        Ok(out)
    }

    /// Fires a schedule now (this second): composes and queues its bulletins.
    pub async fn fire(&self, actor: &Actor, schedule: &str) -> Result<Firing> {
        let now = self.clock.now();
        let at = DateTime::<Utc>::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let outcome = self
            .scheduler
            .fire(schedule, at, crate::store::FiringTrigger::Manual)
            .await?;
        let firing = match outcome {
            FireOutcome::AlreadyFired => Firing {
                schedule: schedule.to_string(),
                already_fired: true,
                bulletins: Vec::new(),
                deliveries: 0,
            },
            FireOutcome::Fired {
                bulletins,
                deliveries,
            } => Firing {
                schedule: schedule.to_string(),
                already_fired: false,
                bulletins,
                deliveries,
            },
        };
        self.audit(
            actor,
            AuditEntry::new("schedule.fire", format!("schedule:{schedule}")).after(&firing),
        )
        .await;
        Ok(firing)
    }
}
