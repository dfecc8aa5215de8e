//! `bulletin schedule`: the configured schedules with their firings, or one fired now.

use super::{fmt_time, ops_err, table, Ctx};
use clap::Subcommand;

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Schedules and their next firings.
    List,
    /// Fire a schedule now: compose and enqueue (the daemon sends).
    Fire {
        /// The schedule's name.
        name: String,
    },
}

impl ScheduleArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self.command {
            ScheduleCommand::List => list(ctx).await,
            ScheduleCommand::Fire { name } => fire(ctx, &name).await,
        }
    }
}

/// `schedule list`: each schedule with its last and next firing.
async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let ops = ctx.ops().await?;
    let mut t = table(&[
        "name",
        "cron",
        "time zone",
        "mode",
        "lists",
        "last firing",
        "next firing",
    ]);
    for s in ops.schedules().await.map_err(ops_err)? {
        let next = s
            .next_firing_local()
            .map(|local| format!("{local} ({})", fmt_time(s.next_firing)))
            .unwrap_or_default();
        t.add_row(vec![
            s.name,
            s.cron,
            s.timezone,
            format!("{:?}", s.mode),
            s.lists.join(","),
            fmt_time(s.last_firing),
            next,
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `schedule fire`: composes and enqueues now.
async fn fire(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ops = ctx.ops().await?;
    let f = ops.fire(&ctx.actor(None)?, name).await.map_err(ops_err)?;
    if f.already_fired {
        println!("schedule `{name}` already fired this second");
    } else {
        println!(
            "schedule `{name}` fired: {} bulletin(s) {:?}, {} deliveries queued (the daemon sends them)",
            f.bulletins.len(),
            f.bulletins,
            f.deliveries
        );
    }
    Ok(())
}
