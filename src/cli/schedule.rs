//! `bulletin schedule`: the configured schedules with their firings, or one fired now.

use super::{app_err, fmt_time, table, Ctx};
use crate::scheduler::FireOutcome;
use chrono::Utc;
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
    let app = ctx.app().await?;
    let now = Utc::now();
    let mut t = table(&[
        "name",
        "cron",
        "time zone",
        "mode",
        "lists",
        "last firing",
        "next firing",
    ]);
    for s in &app.config.schedules {
        t.add_row(vec![
            s.name.clone(),
            s.cron_text.clone(),
            s.timezone.to_string(),
            format!("{:?}", s.mode),
            s.lists
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(","),
            fmt_time(app.store.last_firing(&s.name).await?),
            s.next_after(now)
                .map(|n| {
                    format!(
                        "{} ({})",
                        n.with_timezone(&s.timezone).format("%Y-%m-%d %H:%M %Z"),
                        fmt_time(Some(n))
                    )
                })
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `schedule fire`: composes and enqueues now.
async fn fire(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let app = ctx.app().await?;
    match app.fire_now(name).await.map_err(app_err)? {
        FireOutcome::AlreadyFired => println!("schedule `{name}` already fired this second"),
        FireOutcome::Fired {
            bulletins,
            deliveries,
        } => println!(
            "schedule `{name}` fired: {} bulletin(s) {:?}, {deliveries} deliveries queued (the daemon sends them)",
            bulletins.len(),
            bulletins
        ),
    }
    Ok(())
}
