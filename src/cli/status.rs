//! `bulletin status`: the one-screen summary (schedules, the queue, bulletins in
//! progress, recent failures), as tables or JSON.

use super::{fmt_time, table, Ctx};
use crate::app::App;
use crate::domain::DeliveryStatus;
use crate::store::{DeliveryFilter, StatusCount};
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// What `status` shows, read from the store.
struct Summary {
    /// Per schedule: name, last and next firing, time zone.
    schedules: Vec<Value>,
    /// The whole ledger by channel and status.
    counts: Vec<StatusCount>,
    failed_24h: i64,
    /// Bulletins not done: id, kind, state, subject, total and remaining rows.
    active: Vec<Value>,
}

impl StatusArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let summary = Summary::read(&app).await?;
        if self.json {
            summary.print_json()
        } else {
            println!("store {}", crate::config::redact_url(&app.config.store_url));
            summary.print_tables();
            Ok(())
        }
    }
}

impl Summary {
    async fn read(app: &App) -> anyhow::Result<Self> {
        let now = Utc::now();
        let mut schedules = Vec::new();
        for s in &app.config.schedules {
            schedules.push(serde_json::json!({
                "name": s.name,
                "last_firing": app.store.last_firing(&s.name).await?,
                "next_firing": s.next_after(now),
                "timezone": s.timezone.to_string(),
            }));
        }
        let counts = app.store.delivery_counts(None).await?;
        let failed_24h = app
            .store
            .count_deliveries(&DeliveryFilter {
                status: Some(DeliveryStatus::Failed),
                since: Some(now - chrono::Duration::hours(24)),
                ..Default::default()
            })
            .await?;
        let mut active = Vec::new();
        for b in app.store.bulletins(100).await? {
            if b.state == "done" {
                continue;
            }
            let c = app.store.delivery_counts(Some(b.id)).await?;
            let total: i64 = c.iter().map(|x| x.count).sum();
            let remaining: i64 = c
                .iter()
                .filter(|x| {
                    x.status
                        .parse::<DeliveryStatus>()
                        .is_ok_and(|s| !s.is_terminal())
                })
                .map(|x| x.count)
                .sum();
            active.push(serde_json::json!({
                "id": b.id, "kind": b.kind, "state": b.state, "subject": b.subject,
                "total": total, "remaining": remaining,
            }));
        }
        Ok(Self {
            schedules,
            counts,
            failed_24h,
            active,
        })
    }

    /// Rows in this status, over every channel.
    fn by_status(&self, st: &str) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.status == st)
            .map(|c| c.count)
            .sum()
    }

    fn print_json(&self) -> anyhow::Result<()> {
        let queue: serde_json::Map<String, Value> = DeliveryStatus::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
                    serde_json::json!(self.by_status(s.as_str())),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schedules": self.schedules, "ledger": queue, "failed_last_24h": self.failed_24h,
                "bulletins_in_progress": self.active,
            }))?
        );
        Ok(())
    }

    fn print_tables(&self) {
        let mut t = table(&["schedule", "last firing (UTC)", "next firing (UTC)"]);
        for s in &self.schedules {
            let time = |k: &str| {
                s[k].as_str()
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|d| fmt_time(Some(d.with_timezone(&Utc))))
                    .unwrap_or_default()
            };
            t.add_row(vec![
                s["name"].as_str().unwrap_or_default().to_string(),
                time("last_firing"),
                time("next_firing"),
            ]);
        }
        println!("{t}");
        let by_status = |st: &str| self.by_status(st);
        println!(
            "queue: {} queued, {} sending (in flight), {} retrying, {} held · all time: {} sent, {} failed, {} suppressed, {} unconfirmed",
            by_status("queued"),
            by_status("sending"),
            by_status("retrying"),
            by_status("held"),
            by_status("sent"),
            by_status("failed"),
            by_status("suppressed"),
            by_status("unconfirmed")
        );
        let failed_24h = self.failed_24h;
        println!(
            "failed in the last 24 h: {failed_24h}{}",
            if failed_24h > 0 {
                " (`bulletin deliveries --status failed --since 24h`)"
            } else {
                ""
            }
        );
        if self.active.is_empty() {
            println!("no bulletin in progress");
            return;
        }
        let mut t = table(&["bulletin", "kind", "state", "remaining", "subject"]);
        for b in &self.active {
            t.add_row(vec![
                b["id"].to_string(),
                b["kind"].as_str().unwrap_or_default().to_string(),
                b["state"].as_str().unwrap_or_default().to_string(),
                format!("{} of {}", b["remaining"], b["total"]),
                b["subject"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        println!("{t}");
    }
}
