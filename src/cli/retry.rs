//! `bulletin retry`: failed, held or unconfirmed deliveries put back in the queue.

use super::{ops_err, Ctx};
use crate::ops::deliveries::RetryInput;
use anyhow::bail;

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
        // Said in the options' words, and before the configuration is read.
        if self.bulletin.is_none() && self.delivery.is_none() && !self.all {
            bail!(
                "say which deliveries to retry: --bulletin ID, --delivery ID, or --all \
                 (every failed row in the whole history)"
            );
        }
        let actor = ctx.actor(None)?;
        let ops = ctx.ops().await?;
        let out = ops
            .retry(
                &actor,
                RetryInput {
                    bulletin: self.bulletin,
                    delivery: self.delivery,
                    all: self.all,
                    held: self.held,
                    unconfirmed: self.unconfirmed,
                    failed: self.failed,
                },
            )
            .await
            .map_err(ops_err)?;
        let which: Vec<_> = out.statuses.iter().map(|s| s.as_str()).collect();
        println!(
            "{} {} deliveries queued again; the daemon sends them",
            out.requeued,
            which.join("/")
        );
        Ok(())
    }
}
