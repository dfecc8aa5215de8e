//! The audit log's entry point: every operation a person performs through a front end
//! records who did what to which object (with before/after where it applies) by calling
//! [`Ops::audit`] after it succeeded.
//!
//! The console's seam: today an entry is only logged; the audit table, its reader
//! (`GET /api/audit`, the console page) and the failed-login entries come with named users.

use super::Ops;
use crate::domain::Actor;

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
}

impl Ops {
    /// Records that `actor` performed `entry`.
    pub async fn audit(&self, actor: &Actor, entry: AuditEntry) {
        tracing::info!(
            actor = %actor.name,
            role = %actor.role,
            action = entry.action,
            object = %entry.object,
            "audit"
        );
    }
}
