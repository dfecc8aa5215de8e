//! `bulletin retry`: failed, held or unconfirmed deliveries put back in the queue.

use super::Ctx;
use crate::domain::DeliveryStatus;
use anyhow::bail;
use chrono::Utc;

#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    /// Only this bulletin's rows.
    #[arg(long)]
    bulletin: Option<i64>,
    /// Only this row.
    #[arg(long)]
    delivery: Option<i64>,
    /// Every matching row in the whole history, of every bulletin.
    #[arg(long, conflicts_with_all = ["bulletin", "delivery"])]
    all: bool,
    /// Release rows held after an expired lease (they may have been delivered already).
    #[arg(long)]
    held: bool,
    /// Send rows `unconfirmed` again (no final reply came: they may have been delivered).
    #[arg(long)]
    unconfirmed: bool,
    /// With --held or --unconfirmed: retry failed rows too.
    #[arg(long)]
    failed: bool,
}

impl RetryArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.bulletin.is_none() && self.delivery.is_none() && !self.all {
            bail!(
                "say which deliveries to retry: --bulletin ID, --delivery ID, or --all \
                 (every failed row in the whole history)"
            );
        }
        let app = ctx.app().await?;
        let mut statuses = Vec::new();
        if self.failed || !(self.held || self.unconfirmed) {
            statuses.push(DeliveryStatus::Failed);
        }
        if self.held {
            statuses.push(DeliveryStatus::Held);
        }
        if self.unconfirmed {
            statuses.push(DeliveryStatus::Unconfirmed);
        }
        let n = app
            .store
            .requeue(self.bulletin, self.delivery, &statuses, Utc::now())
            .await?;
        let which: Vec<_> = statuses.iter().map(|s| s.as_str()).collect();
        println!(
            "{n} {} deliveries queued again; the daemon sends them",
            which.join("/")
        );
        Ok(())
    }
}
