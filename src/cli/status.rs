//! `bulletin status`: the one-screen summary (schedules, the queue, bulletins in
//! progress, recent failures), as tables or JSON.

use super::{fmt_time, ops_err, table, Ctx};
use crate::domain::DeliveryStatus;
use crate::ops::status::StatusSummary;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let summary = ops.status().await.map_err(ops_err)?;
        if self.json {
            print_json(&summary)
        } else {
            println!(
                "store {}",
                crate::config::redact_url(&ops.config().store_url)
            );
            print_tables(&summary);
            Ok(())
        }
    }
}

/// The summary as JSON; each schedule with its name, firings and time zone.
fn print_json(s: &StatusSummary) -> anyhow::Result<()> {
    let schedules: Vec<_> = s
        .schedules
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "last_firing": s.last_firing, "next_firing": s.next_firing,
                "timezone": s.timezone,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "schedules": schedules, "ledger": s.ledger, "failed_last_24h": s.failed_last_24h,
            "bulletins_in_progress": s.bulletins_in_progress,
        }))?
    );
    Ok(())
}

fn print_tables(s: &StatusSummary) {
    let mut t = table(&["schedule", "last firing (UTC)", "next firing (UTC)"]);
    for sc in &s.schedules {
        t.add_row(vec![
            sc.name.clone(),
            fmt_time(sc.last_firing),
            fmt_time(sc.next_firing),
        ]);
    }
    println!("{t}");
    use DeliveryStatus::*;
    println!(
        "queue: {} queued, {} sending (in flight), {} retrying, {} held · all time: {} sent, {} failed, {} suppressed, {} unconfirmed, {} bounced",
        s.count(Queued),
        s.count(Sending),
        s.count(Retrying),
        s.count(Held),
        s.count(Sent),
        s.count(Failed),
        s.count(Suppressed),
        s.count(Unconfirmed),
        s.count(Bounced)
    );
    let failed_24h = s.failed_last_24h;
    println!(
        "failed in the last 24 h: {failed_24h}{}",
        if failed_24h > 0 {
            " (`bulletin deliveries --status failed --since 24h`)"
        } else {
            ""
        }
    );
    let b = |k: &str| s.bounces_last_24h.get(k).copied().unwrap_or(0);
    println!(
        "bounces in the last 24 h: {} hard, {} soft, {} complaints, {} auto-replies, {} unmatched{}",
        b("hard"),
        b("soft"),
        b("complaint"),
        b("auto_reply"),
        b("unmatched"),
        if b("hard") + b("soft") + b("complaint") + b("unmatched") > 0 {
            " (`bulletin bounces`)"
        } else {
            ""
        }
    );
    if s.bulletins_in_progress.is_empty() {
        println!("no bulletin in progress");
        return;
    }
    let mut t = table(&["bulletin", "kind", "state", "remaining", "subject"]);
    for b in &s.bulletins_in_progress {
        t.add_row(vec![
            b.id.to_string(),
            b.kind.clone(),
            b.state.clone(),
            format!("{} of {}", b.remaining, b.total),
            b.subject.clone(),
        ]);
    }
    println!("{t}");
}
