//! The command line (clap): every operator and editor action. Commands parse their
//! arguments, call the operations layer ([`crate::ops`]) and format its results; only
//! `serve` and `demo` send. No command calls the store itself (`store init/migrate/copy`
//! use the store module's functions, not an open store).
//!
//! This module owns the global options ([`Cli`]), the [`Command`] enum, `main`, the exit
//! codes and the helpers every command shares ([`Ctx`], [`ops_error`], tables, times).
//! Each command (or command group) is one file holding its clap `Args` struct and its
//! `run`.

mod approve;
mod audit;
pub mod bounces;
mod bulletins;
mod check_config;
mod deliveries;
mod demo;
mod dkim;
mod import;
pub mod lists;
pub mod notice;
mod preview;
mod records;
mod retry;
mod schedule;
mod serve;
mod status;
mod store;
mod users;

pub use dkim::{DkimAlgorithm, DkimCommand};
pub use lists::ListCommand;
pub use notice::{progress_line, NoticeCommand};
pub use preview::PreviewFormat;
pub use schedule::ScheduleCommand;
pub use serve::Role;
pub use store::StoreCommand;

use crate::app::{App, AppError};
use crate::config::Config;
use crate::domain::Actor;
use crate::ops::{Ops, OpsError};
use crate::telemetry::{self, LogFormat};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "bulletin",
    version,
    about = "Meeting-session bulletins by e-mail, on a schedule, with a delivery ledger"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "BULLETIN_CONFIG",
        default_value = "config/bulletin.toml"
    )]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "plain")]
    pub log_format: LogFormat,
    /// The name the audit log records for what this command does (default
    /// `cli:<your OS user>`). The command line acts as an administrator: whoever has this
    /// shell can read the store anyway.
    #[arg(
        long = "as",
        global = true,
        env = "BULLETIN_ACTOR",
        value_name = "NAME"
    )]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: scheduler and dispatcher, until SIGTERM or Ctrl-C.
    Serve(serve::ServeArgs),
    /// Try it: a fresh embedded store, the example record and list, delivered to an outbox folder.
    Demo(demo::DemoArgs),
    /// Validate the configuration and say exactly what is wrong.
    CheckConfig(check_config::CheckConfigArgs),
    /// DKIM signing keys.
    Dkim(dkim::DkimArgs),
    /// Import session records (TOML files); each is stored as a draft or refused whole.
    Import(import::ImportArgs),
    /// Approve a draft record so the next firing sends it.
    Approve(approve::ApproveArgs),
    /// List records and their states.
    Records(records::RecordsArgs),
    /// Render a record's bulletin as it will be sent.
    Preview(preview::PreviewArgs),
    /// Mailing lists and subscribers.
    Lists(lists::ListsArgs),
    /// Schedules: list them, or fire one now.
    Schedule(schedule::ScheduleArgs),
    /// The delivery ledger.
    Deliveries(deliveries::DeliveriesArgs),
    /// Put failed (or held) deliveries back in the queue; the daemon sends them. Name the
    /// rows: --bulletin, --delivery or --all.
    Retry(retry::RetryArgs),
    /// Bulletins with their delivery counts.
    Bulletins(bulletins::BulletinsArgs),
    /// Urgent notices: queued now, ahead of scheduled bulletins.
    Notice(notice::NoticeArgs),
    /// Bounces and complaints received after the relay: list, ingest one, undo one.
    Bounces(bounces::BouncesArgs),
    /// One-screen summary: schedules, the queue, bulletins in progress, recent failures.
    Status(status::StatusArgs),
    /// The store itself: migrations, moving from SQLite to PostgreSQL.
    Store(store::StoreArgs),
    /// Users of the admin API and dashboard: add, list, disable, passwords, tokens.
    Users(users::UsersArgs),
    /// The audit log: who did what, when, to which object.
    Audit(audit::AuditArgs),
}

impl Command {
    /// Runs the command with the global options.
    async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            Command::Serve(a) => a.run(ctx).await,
            Command::Demo(a) => a.run(ctx).await,
            Command::CheckConfig(a) => a.run(ctx).await,
            Command::Dkim(a) => a.run(ctx).await,
            Command::Import(a) => a.run(ctx).await,
            Command::Approve(a) => a.run(ctx).await,
            Command::Records(a) => a.run(ctx).await,
            Command::Preview(a) => a.run(ctx).await,
            Command::Lists(a) => a.run(ctx).await,
            Command::Schedule(a) => a.run(ctx).await,
            Command::Deliveries(a) => a.run(ctx).await,
            Command::Retry(a) => a.run(ctx).await,
            Command::Bulletins(a) => a.run(ctx).await,
            Command::Notice(a) => a.run(ctx).await,
            Command::Bounces(a) => a.run(ctx).await,
            Command::Status(a) => a.run(ctx).await,
            Command::Store(a) => a.run(ctx).await,
            Command::Users(a) => a.run(ctx).await,
            Command::Audit(a) => a.run(ctx).await,
        }
    }
}

/// Exit code of `notice send` when it followed delivery to the end and at least one
/// delivery failed (documented in the README).
pub const EXIT_DELIVERIES_FAILED: u8 = 3;

/// Delivery was followed to the end and some rows failed: `main` exits with
/// [`EXIT_DELIVERIES_FAILED`].
#[derive(Debug)]
pub struct DeliveriesFailed {
    pub bulletin: i64,
    pub failed: u64,
}

impl std::fmt::Display for DeliveriesFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} deliveries of notice {} failed; see `bulletin deliveries --bulletin {} --status failed`",
            self.failed, self.bulletin, self.bulletin
        )
    }
}

impl std::error::Error for DeliveriesFailed {}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Serve(_) | Command::Demo(_) => "info",
        _ => "warn",
    };
    telemetry::init(cli.log_format, level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a task on the worker threads, not on this thread: a future
    // blocked on here would need a cross-thread wake-up for every socket event, which
    // costs the dispatcher a context switch per SMTP reply.
    match rt.block_on(async { tokio::spawn(run(cli)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<DeliveriesFailed>().is_some() {
                ExitCode::from(EXIT_DELIVERIES_FAILED)
            } else if e.downcast_ref::<bounces::IngestTempFail>().is_some() {
                ExitCode::from(bounces::EXIT_TEMPFAIL)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        config,
        log_format: _,
        actor,
        command,
    } = cli;
    command.run(&Ctx { config, actor }).await
}

/// What every command gets from the global options.
pub struct Ctx {
    /// The configuration file (`--config`).
    pub config: PathBuf,
    /// `--as`: the actor's name, if given.
    pub actor: Option<String>,
}

/// The OS user running the command: `$USER`, else `$LOGNAME`, else `unknown`.
fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Ctx {
    /// Who the audit log names for this command: `by` (a command's own `--by`, kept for
    /// scripts), else `--as`, else `cli:<OS user>`; an administrator either way.
    fn actor(&self, by: Option<&str>) -> anyhow::Result<Actor> {
        let (name, option) = match (by, &self.actor) {
            (Some(b), _) => (b.trim().to_string(), "by"),
            (None, Some(a)) => (a.trim().to_string(), "as"),
            (None, None) => (format!("cli:{}", os_user()), "as"),
        };
        crate::domain::text::check_line(&name, 200, true)
            .map_err(|m| anyhow!("--{option}: {m}"))?;
        Ok(Actor {
            name,
            role: crate::domain::Role::Admin,
        })
    }

    /// The configuration, loaded and checked.
    fn load_config(&self) -> anyhow::Result<Config> {
        Config::load(&self.config).map_err(|e| anyhow!("{e}"))
    }

    /// The app on the configured store, which must exist: only `serve`, `demo` and `store
    /// init` create one, so a mistyped `store.url` is refused with its path.
    async fn app(&self) -> anyhow::Result<App> {
        let config = self.load_config()?;
        crate::store::require_existing(&config.store_url).map_err(|e| anyhow!("{e}"))?;
        App::build(config).await.map_err(app_err)
    }

    /// The operations on the configured store (which must exist, as for [`Ctx::app`]).
    async fn ops(&self) -> anyhow::Result<Ops> {
        Ok(self.app().await?.ops())
    }
}

fn app_err(e: AppError) -> anyhow::Error {
    anyhow!("{e}")
}

/// An operation's error as the command line says it. A refused value names its option
/// (`--by: must be one line`), unless it was given as one of the command's positional
/// arguments (`positional`, by the operation's field name): then the message alone,
/// which names the value. Record errors carry their file, line and field already.
fn ops_error(e: OpsError, positional: &[&str]) -> anyhow::Error {
    match e {
        OpsError::Invalid { field, message } if positional.contains(&field.as_str()) => {
            anyhow!("{message}")
        }
        OpsError::Invalid { field, message } => {
            anyhow!("--{}: {message}", field.replace('_', "-"))
        }
        // The store's error as it was, with its sources for `{:#}`.
        OpsError::Store(e) => e.into(),
        e => anyhow!("{e}"),
    }
}

/// [`ops_error`] for a command whose values are all options.
fn ops_err(e: OpsError) -> anyhow::Error {
    ops_error(e, &[])
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Missing;

    #[test]
    fn a_refused_value_names_its_option_unless_it_was_positional() {
        let invalid = |field: &str| OpsError::Invalid {
            field: field.into(),
            message: "must be one line".into(),
        };
        assert_eq!(ops_err(invalid("by")).to_string(), "--by: must be one line");
        assert_eq!(
            ops_err(invalid("body_file")).to_string(),
            "--body-file: must be one line"
        );
        assert_eq!(
            ops_error(invalid("email"), &["list", "email"]).to_string(),
            "must be one line"
        );
        let missing = OpsError::NotFound {
            what: Missing::Record,
            message: "no record `x`".into(),
        };
        assert_eq!(ops_error(missing, &["id"]).to_string(), "no record `x`");
    }
}
