//! `bulletin serve`: the daemon (or one pass of it with `--once`), running the roles
//! `--roles` names.

use super::{app_err, Ctx};
use crate::app::{App, Roles};
use anyhow::anyhow;
use clap::builder::{EnumValueParser, TypedValueParser};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Do what is due now (resume, catch up, send; only what --roles includes) and exit.
    #[arg(long)]
    once: bool,
    /// What this instance runs, comma-separated: scheduler, sender, admin (admin API,
    /// dashboard, metrics and the public unsubscribe endpoint). Default: all three.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scheduler,sender,admin",
        hide_possible_values = true,
        value_parser = RoleParser,
    )]
    roles: Vec<Role>,
}

/// One part of the daemon `serve --roles` may run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Fires schedules (and catches up, and finishes fan-outs left unfinished).
    Scheduler,
    /// Claims due ledger rows and delivers them.
    Sender,
    /// The admin API, dashboard and metrics, and the public unsubscribe endpoint.
    Admin,
    /// All three.
    All,
}

/// clap's parser for [`Role`] (its error names the bad role and the possible values), on
/// each comma-separated part trimmed: `--roles "scheduler, admin"` is accepted as before.
#[derive(Clone, Copy, Debug)]
struct RoleParser;

impl TypedValueParser for RoleParser {
    type Value = Role;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Role, clap::Error> {
        let trimmed = value
            .to_str()
            .map_or(value, |v| std::ffi::OsStr::new(v.trim()));
        EnumValueParser::<Role>::new().parse_ref(cmd, arg, trimmed)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            <Role as clap::ValueEnum>::value_variants()
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value),
        ))
    }
}

impl Role {
    /// The roles named, as the rest of the program takes them.
    pub fn roles(named: &[Role]) -> Roles {
        let mut r = Roles {
            scheduler: false,
            sender: false,
            admin: false,
        };
        for role in named {
            match role {
                Role::Scheduler => r.scheduler = true,
                Role::Sender => r.sender = true,
                Role::Admin => r.admin = true,
                Role::All => r = Roles::ALL,
            }
        }
        r
    }
}

impl ServeArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let roles = Role::roles(&self.roles);
        let config = ctx.load_config()?;
        if roles.sender {
            config.ready_to_send().map_err(|e| anyhow!("{e}"))?;
        }
        let app = App::build(config).await.map_err(app_err)?;
        // One daemon per SQLite store (held until this process ends, however it ends).
        let _lock = crate::config::sqlite_path(&app.config.store_url)
            .map(|db| crate::daemon_lock::acquire(&db))
            .transpose()
            .map_err(|e| anyhow!(e))?;
        if _lock.is_some() && roles.sender {
            take_over_leases(&app).await?;
        }
        if self.once {
            return once(&app, roles).await;
        }
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing sends in flight");
            s.cancel();
        });
        app.serve_roles(roles, shutdown).await.map_err(app_err)
    }
}

/// Under the daemon lock no other process can be sending from this store: rows a dead
/// process left `sending` are taken over now, not after their lease (flagged ambiguous,
/// then resent or held as configured).
async fn take_over_leases(app: &App) -> anyhow::Result<()> {
    let n = app
        .ops()
        .take_over_leases()
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if n > 0 {
        tracing::warn!(
            rows = n,
            "rows left `sending` by a process that stopped: taking them over now"
        );
    }
    Ok(())
}

/// `serve --once`: the same roles as the daemon: a scheduler-only run fires and fans out,
/// a sender-only run sends what is queued (admin has nothing to do once).
async fn once(app: &App, roles: Roles) -> anyhow::Result<()> {
    if roles.scheduler {
        app.scheduler.resume().await.map_err(|e| anyhow!("{e}"))?;
        app.scheduler.catch_up().await.map_err(|e| anyhow!("{e}"))?;
    }
    if !roles.sender {
        println!("nothing sent: this run's roles ({roles}) do not include sender");
        return Ok(());
    }
    let r = app.dispatcher.drain().await.map_err(|e| anyhow!("{e}"))?;
    println!(
        "sent {}, retrying {}, failed {}, suppressed {}",
        r.sent, r.retrying, r.failed, r.suppressed
    );
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn roles(args: &[&str]) -> Result<Roles, clap::Error> {
        let cli = Cli::try_parse_from([&["bulletin", "serve"], args].concat())?;
        match cli.command {
            Command::Serve(a) => Ok(Role::roles(&a.roles)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn roles_are_parsed_by_clap_with_the_old_default_and_spellings() {
        assert_eq!(roles(&[]).unwrap(), Roles::ALL);
        assert_eq!(roles(&["--roles", "all"]).unwrap(), Roles::ALL);
        let r = roles(&["--roles", "scheduler, admin"]).unwrap();
        assert!(r.scheduler && r.admin && !r.sender, "{r}");
        assert_eq!(roles(&["--roles", "sender"]).unwrap().to_string(), "sender");

        let e = roles(&["--roles", "sender,mailer"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let text = e.to_string();
        assert!(
            text.contains("'mailer'") && text.contains("scheduler, sender, admin, all"),
            "{text}"
        );
        assert!(roles(&["--roles", ""]).is_err());
    }
}
