//! The audit log: every operation a person performs through a front end records who did
//! what to which object (with before/after where it applies) through [`Ops::audit`],
//! which writes the `audit` table; [`Ops::audit_log`] reads it back (`GET /api/audit`,
//! `bulletin audit`, the console's page). The state-changing operations call it
//! themselves, so no front end can forget it.

use super::{Ops, Result};
use crate::domain::Actor;
use crate::store::{AuditFilter, AuditRow, NewAudit};
use serde::Serialize;

/// One action, as the audit log keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// What was done, a stable word with a dot ("record.approve", "notice.send",
    /// "bulletin.pause", "subscriber.add", "user.disable", "login.failed").
    pub action: &'static str,
    /// The object acted on ("record:2020-07-30-s1", "bulletin:12", "list:partners").
    pub object: String,
    /// The object's state before, where it applies.
    pub before: Option<serde_json::Value>,
    /// The object's state after, where it applies.
    pub after: Option<serde_json::Value>,
}

impl AuditEntry {
    pub fn new(action: &'static str, object: impl Into<String>) -> AuditEntry {
        AuditEntry {
            action,
            object: object.into(),
            before: None,
            after: None,
        }
    }

    /// With the object's state before.
    pub fn before(mut self, v: impl Serialize) -> AuditEntry {
        self.before = serde_json::to_value(v).ok();
        self
    }

    /// With the object's state after.
    pub fn after(mut self, v: impl Serialize) -> AuditEntry {
        self.after = serde_json::to_value(v).ok();
        self
    }
}

/// Which audit entries to read; words are parsed here so every front end refuses the
/// same input with the same message.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditQuery<'a> {
    /// The actor's name, exact.
    pub actor: Option<&'a str>,
    /// The action, exact (`record.approve`).
    pub action: Option<&'a str>,
    /// The object, exact (`record:ID`, `bulletin:12`, `list:NAME`).
    pub object: Option<&'a str>,
    /// RFC 3339 time or a duration back from now (`24h`, `7d`).
    pub since: Option<&'a str>,
    /// 1 to [`super::MAX_PAGE`].
    pub limit: u32,
    pub offset: u32,
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRow>,
    /// Entries matching the filter in all.
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

impl Ops {
    /// Records that `actor` performed `entry`. A store that refuses the write is logged
    /// loudly (the action itself already happened and is not undone).
    pub async fn audit(&self, actor: &Actor, entry: AuditEntry) {
        tracing::info!(
            actor = %actor.name,
            role = %actor.role,
            action = entry.action,
            object = %entry.object,
            "audit"
        );
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        let row = NewAudit {
            at: self.clock.now(),
            actor: &actor.name,
            action: entry.action,
            object: &entry.object,
            before: json(&entry.before),
            after: json(&entry.after),
        };
        if let Err(e) = self.store.insert_audit(&row).await {
            tracing::error!(error = %e, action = entry.action, object = %entry.object, "audit entry not written");
        }
    }

    /// A page of the audit log, newest first.
    pub async fn audit_log(&self, q: &AuditQuery<'_>) -> Result<AuditPage> {
        let limit = super::check_limit(q.limit)?;
        let since = q
            .since
            .map(|s| super::deliveries::parse_since(s, self.clock.now()))
            .transpose()?;
        let (entries, total) = self
            .store
            .audit(&AuditFilter {
                actor: q.actor.filter(|s| !s.is_empty()),
                action: q.action.filter(|s| !s.is_empty()),
                object: q.object.filter(|s| !s.is_empty()),
                since,
                limit,
                offset: q.offset,
            })
            .await?;
        Ok(AuditPage {
            entries,
            total,
            limit,
            offset: q.offset,
        })
    }
}
