//! `bulletin store`: the store itself (create, migrate, copy SQLite to PostgreSQL).

use super::Ctx;
use crate::config::redact_url;
use anyhow::Context;
use clap::Subcommand;
use secrecy::ExposeSecret;

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Create the configured store (an empty SQLite file, or the tables in an empty
    /// PostgreSQL database) and apply the migrations. Besides `serve` and `demo`, the only
    /// command that creates a store; on an existing one it only applies pending migrations.
    Init,
    /// Apply pending migrations to the configured store and exit (daemons also do it at
    /// start, under a lock, so this is for operators who migrate separately).
    Migrate,
    /// Copy a whole SQLite store (ledger and history included) into an empty PostgreSQL
    /// database. The PostgreSQL password, if not in the URL, comes from
    /// BULLETIN_DATABASE_PASSWORD.
    Copy {
        /// The SQLite store, e.g. sqlite://data/bulletin.db
        #[arg(long)]
        from: String,
        /// The PostgreSQL store, e.g. postgres://bulletin@db/bulletin
        #[arg(long)]
        to: String,
    },
}

impl StoreArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self.command {
            StoreCommand::Init => init(ctx).await,
            StoreCommand::Migrate => migrate(ctx).await,
            StoreCommand::Copy { from, to } => copy(&from, &to).await,
        }
    }
}

/// `store init`: creates the configured store (or finds it) with every migration applied.
async fn init(ctx: &Ctx) -> anyhow::Result<()> {
    let c = ctx.load_config()?;
    let existed = crate::config::sqlite_path(&c.store_url).is_some_and(|p| p.exists());
    crate::store::open_with_password(
        &c.store_url,
        c.store_password.as_ref().map(|p| p.expose_secret()),
    )
    .await
    .with_context(|| format!("creating the store {}", redact_url(&c.store_url)))?;
    println!(
        "store {}: {}, all migrations applied",
        redact_url(&c.store_url),
        if existed || crate::store::is_postgres_url(&c.store_url) {
            "ready"
        } else {
            "created"
        }
    );
    Ok(())
}

/// `store migrate`: pending migrations applied to the existing store.
async fn migrate(ctx: &Ctx) -> anyhow::Result<()> {
    let c = ctx.load_config()?;
    crate::store::require_existing(&c.store_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::store::open_with_password(
        &c.store_url,
        c.store_password.as_ref().map(|p| p.expose_secret()),
    )
    .await
    .with_context(|| format!("migrating the store {}", redact_url(&c.store_url)))?;
    println!("store {}: all migrations applied", redact_url(&c.store_url));
    Ok(())
}

/// `store copy`: a whole SQLite store into an empty PostgreSQL database.
async fn copy(from: &str, to: &str) -> anyhow::Result<()> {
    let password = std::env::var(crate::config::DATABASE_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let report = crate::store::copy(from, to, password.as_deref())
        .await
        .with_context(|| format!("copying {} to {}", redact_url(from), redact_url(to)))?;
    for (table, n) in &report {
        println!("{table}: {n} row(s)");
    }
    println!("copied {} to {}", redact_url(from), redact_url(to));
    Ok(())
}
