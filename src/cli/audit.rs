//! `bulletin audit`: the audit log, newest first, filtered and paged.

use super::{fmt_time, ops_err, table, Ctx};
use crate::ops::audit::AuditQuery;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this actor (a user name, `admin-token`, `cli:USER`).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (`record.approve`, `login.failed`, ...).
    #[arg(long)]
    action: Option<String>,
    /// Only this object (`record:ID`, `bulletin:12`, `list:NAME`, `user:NAME`).
    #[arg(long)]
    object: Option<String>,
    /// RFC 3339 time or a duration back from now (`24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// 1 to 1000.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Entries to skip.
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let page = ops
            .audit_log(&AuditQuery {
                actor: self.actor.as_deref(),
                action: self.action.as_deref(),
                object: self.object.as_deref(),
                since: self.since.as_deref(),
                limit: self.limit,
                offset: self.offset,
            })
            .await
            .map_err(ops_err)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&page)?);
            return Ok(());
        }
        let mut t = table(&["when (UTC)", "actor", "action", "object", "before", "after"]);
        let json =
            |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
        for e in &page.entries {
            t.add_row(vec![
                fmt_time(Some(e.at)),
                e.actor.clone(),
                e.action.clone(),
                e.object.clone(),
                json(&e.before),
                json(&e.after),
            ]);
        }
        println!("{t}");
        let shown = page.entries.len() as i64;
        if page.total > page.offset as i64 + shown {
            println!(
                "({shown} of {} from {}; use --offset {})",
                page.total,
                page.offset,
                page.offset as i64 + shown
            );
        }
        Ok(())
    }
}
