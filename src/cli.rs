//! The command line (clap): every operator and editor action. Commands read and write the
//! store and enqueue work; only `serve` and `demo` send.

use crate::app::{App, AppError};
use crate::config::Config;
use crate::domain::subscriber::{CsvSubscribers, NewSubscriber, SubscriberStatus};
use crate::domain::{ChannelKind, DeliveryStatus, ListName, RecordState};
use crate::scheduler::FireOutcome;
use crate::store::{DeliveryFilter, ImportOutcome};
use crate::telemetry::{self, LogFormat};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: scheduler and dispatcher, until SIGTERM or Ctrl-C.
    Serve {
        /// Do what is due now (resume, catch up, send; only what --roles includes) and exit.
        #[arg(long)]
        once: bool,
        /// What this instance runs, comma-separated: scheduler, sender, admin (admin API,
        /// dashboard, metrics and the public unsubscribe endpoint). Default: all three.
        #[arg(long, default_value = "scheduler,sender,admin", value_parser = crate::app::Roles::parse)]
        roles: crate::app::Roles,
    },
    /// Try it: a fresh embedded store, the example record and list, delivered to an outbox folder.
    Demo {
        /// Folder for the demo's store and outbox (emptied first).
        #[arg(long, default_value = "demo-output")]
        dir: PathBuf,
    },
    /// Validate the configuration and say exactly what is wrong.
    CheckConfig,
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Import session records (TOML files); each is stored as a draft or refused whole.
    Import {
        /// Record files (TOML); images are read from paths relative to each file.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Approve a draft record so the next firing sends it.
    Approve {
        /// The record's id.
        id: String,
        /// Who approves (kept on the record).
        #[arg(long)]
        by: String,
    },
    /// List records and their states.
    Records {
        /// Only records in this state: draft, approved or published.
        #[arg(long)]
        state: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Render a record's bulletin as it will be sent.
    Preview {
        /// The record's id.
        id: String,
        /// The e-mail's HTML part or its plain-text part (with the subject).
        #[arg(long, value_enum, default_value = "html")]
        format: PreviewFormat,
        /// `wechat`: the article HTML as it will be uploaded (images still as cid: references).
        #[arg(long, default_value = "email")]
        channel: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Mailing lists and subscribers.
    Lists {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Schedules: list them, or fire one now.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// The delivery ledger.
    Deliveries {
        /// Only this bulletin's rows.
        #[arg(long)]
        bulletin: Option<i64>,
        /// Only this channel: email or wechat.
        #[arg(long)]
        channel: Option<String>,
        /// Only rows in this status (queued, sending, retrying, held, sent, failed, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only rows to this address (or WeChat target).
        #[arg(long)]
        recipient: Option<String>,
        /// RFC 3339 time, or a duration back from now such as 24h or 7d.
        #[arg(long)]
        since: Option<String>,
        /// Only rows that may have been delivered twice (in flight when a process died).
        #[arg(long)]
        ambiguous: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many rows first (the next page).
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put failed (or held) deliveries back in the queue; the daemon sends them. Name the
    /// rows: --bulletin, --delivery or --all.
    Retry {
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
    },
    /// Bulletins with their delivery counts.
    Bulletins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Urgent notices: queued now, ahead of scheduled bulletins.
    Notice {
        #[command(subcommand)]
        command: NoticeCommand,
    },
    /// One-screen summary: schedules, the queue, bulletins in progress, recent failures.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The store itself: migrations, moving from SQLite to PostgreSQL.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
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

#[derive(Subcommand, Debug)]
pub enum NoticeCommand {
    /// Queue a notice to lists by e-mail, then follow its delivery (Ctrl-C detaches).
    Send {
        /// One line, at most 200 characters.
        #[arg(long)]
        title: String,
        /// Markdown body (at most 10,000 characters); `-` reads standard input.
        #[arg(long)]
        body_file: PathBuf,
        /// Lists to send to, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        lists: Vec<String>,
        /// Channels, comma-separated: email (always) and wechat (a text mass send to the
        /// account's followers, within the mass-send quota).
        #[arg(long, value_delimiter = ',', default_value = "email")]
        channels: Vec<String>,
        /// info or urgent (urgent: marked in the subject and the message).
        #[arg(long, default_value = "info")]
        severity: String,
        /// Idempotency key: a second send with the same key returns the first notice.
        #[arg(long)]
        key: Option<String>,
        /// Who triggers it (kept with the notice). Default: $USER.
        #[arg(long)]
        by: Option<String>,
        /// Print the result as JSON (no progress display); exits once queued unless --wait.
        #[arg(long)]
        json: bool,
        /// With --json: wait until delivery is over, then print the result with the final
        /// counts (exit code 3 if any delivery failed).
        #[arg(long, requires = "json", conflicts_with = "no_wait")]
        wait: bool,
        /// Exit once queued, without following delivery.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreviewFormat {
    Html,
    Text,
}

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Write a new private key (PEM, mode 0600) and print the DNS TXT record to publish.
    Keygen {
        /// The signing domain (d=): email.from's domain or a parent of it.
        #[arg(long)]
        domain: String,
        /// The selector (s=), e.g. bulletin2026.
        #[arg(long)]
        selector: String,
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The key type: rsa (2048 bits, verified everywhere) or ed25519.
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: DkimAlgorithm,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DkimAlgorithm {
    /// RSA, 2048 bits (every receiver verifies it).
    Rsa,
    /// Ed25519 (RFC 8463; not every receiver verifies it yet: RSA is the safe choice).
    Ed25519,
}

/// `bulletin dkim keygen`: the key goes to a new file (created 0600, never over an
/// existing one), the record to standard output.
fn dkim_keygen(
    domain: &str,
    selector: &str,
    out: &std::path::Path,
    algorithm: DkimAlgorithm,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    crate::dkim::check_domain(domain).map_err(|m| anyhow!("--domain: {m}"))?;
    crate::dkim::check_selector(selector).map_err(|m| anyhow!("--selector: {m}"))?;
    let alg = match algorithm {
        DkimAlgorithm::Rsa => crate::dkim::Algorithm::Rsa,
        DkimAlgorithm::Ed25519 => crate::dkim::Algorithm::Ed25519,
    };
    let (key, pem) = crate::dkim::DkimKey::generate(alg).map_err(|m| anyhow!(m))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists: not overwritten (a key in use would stop verifying); choose another --out",
                out.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", out.display())
        }
    })?;
    if let Err(e) = file
        .write_all(pem.expose_secret().as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(anyhow!("cannot write {}: {e}", out.display()));
    }
    eprintln!(
        "wrote a new {} key to {}; publish this record, then set [email.dkim] domain = \"{domain}\", selector = \"{selector}\", private_key_file = \"{}\":",
        key.describe(),
        out.display(),
        out.display()
    );
    println!("{}", crate::dkim::dns_record(selector, domain, &key));
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ListCommand {
    /// Create a list.
    Create {
        /// The list's name (a-z, 0-9 and '-').
        name: String,
        /// What the list is for (shown by `lists all`).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Import subscribers from CSV: a header with `email` and optionally `name` and
    /// `language`; other columns are ignored (and named); `,` or `;` separated.
    Import {
        /// The list to add to.
        name: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// Export a list as CSV: email, name, language, status, status changed at.
    Export {
        /// The list to export.
        name: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Add one subscriber.
    Add {
        /// The list to add to.
        name: String,
        /// The subscriber's e-mail address.
        email: String,
        /// The subscriber's name, as greeted.
        #[arg(long = "name")]
        display_name: Option<String>,
        /// The subscriber's language (BCP 47 tag, e.g. zh-CN).
        #[arg(long)]
        language: Option<String>,
    },
    /// Remove one subscriber.
    Remove {
        /// The list.
        name: String,
        /// The subscriber's e-mail address.
        email: String,
    },
    /// Mark one subscriber active, unsubscribed or bounced.
    SetStatus {
        /// The list.
        name: String,
        /// The subscriber's e-mail address.
        email: String,
        /// active, unsubscribed or bounced.
        status: String,
    },
    /// Show a list and its subscribers.
    Show {
        /// The list.
        name: String,
        /// At most this many subscribers.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// All lists with counts.
    All {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
        Command::Serve { .. } | Command::Demo { .. } => "info",
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
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

/// The app on the configured store, which must exist: only `serve`, `demo` and `store
/// init` create one, so a mistyped `store.url` is refused with its path.
async fn app(cli: &Cli) -> anyhow::Result<App> {
    let config = load_config(&cli.config)?;
    crate::store::require_existing(&config.store_url).map_err(|e| anyhow!("{e}"))?;
    App::build(config).await.map_err(app_err)
}

fn app_err(e: AppError) -> anyhow::Error {
    anyhow!("{e}")
}

fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        anyhow!("--since `{s}`: give an RFC 3339 time or a duration such as 24h or 7d")
    })?;
    Ok(Utc::now() - chrono::Duration::from_std(d)?)
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Demo { dir } => crate::demo::run(dir).await,
        Command::Dkim {
            command:
                DkimCommand::Keygen {
                    domain,
                    selector,
                    out,
                    algorithm,
                },
        } => dkim_keygen(domain, selector, out, *algorithm),
        Command::CheckConfig => {
            let c = load_config(&cli.config)?;
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} schedule(s), store {}, e-mail via {}, admin API on {} ({}), unsubscribe on {})",
                cli.config.display(),
                c.schedules.len(),
                crate::config::redact_url(&c.store_url),
                match &c.email.transport {
                    crate::config::EmailTransport::Smtp(s) => format!("SMTP {}:{}", s.host, s.port),
                    crate::config::EmailTransport::Outbox(d) => format!("outbox {}", d.display()),
                },
                c.admin.bind,
                if c.admin.token.is_some() {
                    "token set".to_string()
                } else {
                    format!(
                        "no token: set {} or admin.token_file, or it answers 503",
                        c.admin.token_env
                    )
                },
                c.public.bind,
            );
            if let Some(d) = &c.email.dkim {
                println!(
                    "DKIM: every message signed by d={} s={} with an {} key ({}); the public key must be published at {}:\n{}",
                    d.domain,
                    d.selector,
                    d.key.describe(),
                    d.private_key_file.display(),
                    d.dns_name(),
                    d.dns_record()
                );
            }
            Ok(())
        }
        Command::Serve { once, roles } => {
            let config = load_config(&cli.config)?;
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
                // Under the daemon lock no other process can be sending from this store:
                // rows a dead process left `sending` are taken over now, not after their
                // lease (flagged ambiguous, then resent or held as configured).
                let n = app
                    .store
                    .expire_foreign_leases(app.clock.now())
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                if n > 0 {
                    tracing::warn!(
                        rows = n,
                        "rows left `sending` by a process that stopped: taking them over now"
                    );
                }
            }
            if *once {
                // The same roles as the daemon: a scheduler-only run fires and fans out, a
                // sender-only run sends what is queued (admin has nothing to do once).
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
                return Ok(());
            }
            let shutdown = CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested; finishing sends in flight");
                s.cancel();
            });
            app.serve_roles(*roles, shutdown).await.map_err(app_err)
        }
        Command::Import { files } => {
            let app = app(&cli).await?;
            // Two files of one import with the same id would overwrite each other in turn:
            // all of them are refused instead, so the operator picks one.
            let mut by_id: std::collections::HashMap<String, Vec<&PathBuf>> =
                std::collections::HashMap::new();
            let mut warnings = std::collections::HashMap::new();
            let today = Utc::now().date_naive();
            for f in files {
                // Read as the import reads (regular files only, size-limited): a FIFO
                // given here must not hang this first pass either.
                let parsed =
                    crate::app::read_regular_file(f, crate::domain::record::MAX_FILE_BYTES)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|source| {
                            let r = crate::domain::record::parse_record(
                                &source,
                                &f.display().to_string(),
                                &app.config.default_language,
                            )
                            .ok()?;
                            Some((r, source))
                        });
                let id = parsed.map(|(r, source)| {
                    if let Some(w) = crate::domain::record::held_on_warning(r.held_on, today) {
                        let line = source
                            .lines()
                            .position(|l| l.trim_start().starts_with("held_on"))
                            .map(|l| format!(":{}", l + 1))
                            .unwrap_or_default();
                        warnings.insert(f, format!("warning: {}{line}: held_on: {w}", f.display()));
                    }
                    r.id.to_string()
                });
                if let Some(id) = id {
                    let same = by_id.entry(id).or_default();
                    if !same.contains(&f) {
                        same.push(f);
                    }
                }
            }
            let mut failed = 0;
            for f in files {
                if let Some((id, same)) = by_id.iter().find(|(_, v)| v.len() > 1 && v.contains(&f))
                {
                    failed += 1;
                    let others: Vec<_> = same
                        .iter()
                        .filter(|o| **o != f)
                        .map(|o| o.display().to_string())
                        .collect();
                    eprintln!(
                        "{}: id: `{id}` is also the id of {} in this import; each record needs its own id",
                        f.display(),
                        others.join(", ")
                    );
                    continue;
                }
                match app.import_record_file(f).await {
                    Ok((id, outcome)) => {
                        if let Some(w) = warnings.get(f) {
                            eprintln!("{w}");
                        }
                        println!(
                            "{}: record `{id}` {}",
                            f.display(),
                            match outcome {
                                ImportOutcome::Created => "imported as a draft",
                                ImportOutcome::Unchanged => "unchanged",
                                ImportOutcome::Updated => "updated (still a draft)",
                                ImportOutcome::ReturnedToDraft =>
                                    "changed after approval: back to draft, approve it again",
                            }
                        );
                        wechat_size_line(&app, f, &id).await?;
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} file(s) refused; nothing of them was stored",
                    files.len()
                );
            }
            Ok(())
        }
        Command::Approve { id, by } => {
            let app = app(&cli).await?;
            let by = by.trim();
            crate::domain::text::check_line(by, 200, true).map_err(|m| anyhow!("--by {m}"))?;
            if let Some(why) =
                crate::channel::wechat::approval_refusal(&app.config, app.store.as_ref(), id)
                    .await?
            {
                bail!("{why}");
            }
            if let Some(r) = app.store.record(id).await? {
                crate::render::check_approvable(&app.config, &r.record).map_err(|m| anyhow!(m))?;
            }
            match app.store.approve_record(id, by, Utc::now()).await? {
                crate::store::ApproveOutcome::Approved => {
                    println!("record `{id}` approved by {by}")
                }
                crate::store::ApproveOutcome::AlreadyApproved => {
                    println!("record `{id}` was already approved")
                }
            }
            Ok(())
        }
        Command::Records { state, json } => {
            let app = app(&cli).await?;
            let state = state
                .as_deref()
                .map(|s| s.parse::<RecordState>())
                .transpose()
                .map_err(|e| anyhow!("--state: {e}"))?;
            let records = app.store.records(state).await?;
            if *json {
                let v: Vec<_> = records
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.record.id, "title": r.record.title, "held_on": r.record.held_on,
                            "language": r.record.language, "state": r.state, "approved_by": r.approved_by,
                            "approved_at": r.approved_at, "published_at": r.published_at,
                            "content_hash": r.content_hash,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table(&["id", "held on", "state", "approved by", "title"]);
                for r in &records {
                    t.add_row(vec![
                        r.record.id.to_string(),
                        r.record.held_on.to_string(),
                        r.state.to_string(),
                        r.approved_by.clone().unwrap_or_default(),
                        r.record.title.clone(),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
        Command::Preview {
            id,
            format,
            channel,
            out,
        } => {
            let app = app(&cli).await?;
            let r = app
                .store
                .record(id)
                .await?
                .ok_or_else(|| anyhow!("no record `{id}`"))?;
            let widths = vec![app
                .store
                .record_images(id)
                .await?
                .iter()
                .map(|i| i.width)
                .collect::<Vec<_>>()];
            let rendered = crate::render::render_bulletin(
                std::slice::from_ref(&r.record),
                &widths,
                &app.config.publisher,
                &app.config.default_language,
            )?;
            let preview_url = format!("{}/unsubscribe/PREVIEW", app.config.unsubscribe.base_url);
            let channel = channel
                .parse::<ChannelKind>()
                .map_err(|e| anyhow!("--channel: {e}"))?;
            let body = match (channel, format) {
                (ChannelKind::Wechat, _) => {
                    let author = app.config.wechat.as_ref().map_or("", |w| w.author.as_str());
                    let a = crate::render::render_wechat_article(
                        std::slice::from_ref(&r.record),
                        &app.config.publisher,
                        &app.config.default_language,
                        author,
                    )?;
                    eprintln!(
                        "article: {} of {} characters",
                        crate::render::thousands(crate::render::wechat_content_size(&a.html)),
                        crate::render::thousands(crate::render::WECHAT_CONTENT_MAX)
                    );
                    format!(
                        "<!-- title: {} | author: {} | digest: {} -->\n{}\n",
                        a.title, a.author, a.digest, a.html
                    )
                }
                (ChannelKind::Email, format) => match format {
                    PreviewFormat::Html => crate::render::personalise(&rendered.html, &preview_url),
                    PreviewFormat::Text => format!(
                        "Subject: {}\n\n{}",
                        rendered.subject,
                        crate::render::personalise(&rendered.text, &preview_url)
                    ),
                },
            };
            match out {
                Some(path) => {
                    std::fs::write(path, body)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
                None => print!("{body}"),
            }
            Ok(())
        }
        Command::Lists { command } => lists(&cli, command).await,
        Command::Notice { command } => notice_send(&cli, command).await,
        Command::Status { json } => status(&cli, *json).await,
        Command::Store { command } => store_command(&cli, command).await,
        Command::Schedule { command } => match command {
            ScheduleCommand::List => {
                let app = app(&cli).await?;
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
            ScheduleCommand::Fire { name } => {
                let app = app(&cli).await?;
                match app.fire_now(name).await.map_err(app_err)? {
                    FireOutcome::AlreadyFired => println!("schedule `{name}` already fired this second"),
                    FireOutcome::Fired { bulletins, deliveries } => println!(
                        "schedule `{name}` fired: {} bulletin(s) {:?}, {deliveries} deliveries queued (the daemon sends them)",
                        bulletins.len(),
                        bulletins
                    ),
                }
                Ok(())
            }
        },
        Command::Deliveries {
            bulletin,
            channel,
            status,
            recipient,
            since,
            ambiguous,
            limit,
            offset,
            json,
        } => {
            let app = app(&cli).await?;
            let filter = DeliveryFilter {
                bulletin: *bulletin,
                channel: channel
                    .as_deref()
                    .map(|c| c.parse::<ChannelKind>())
                    .transpose()
                    .map_err(|e| anyhow!("--channel: {e}"))?,
                status: status
                    .as_deref()
                    .map(|s| s.parse::<DeliveryStatus>())
                    .transpose()
                    .map_err(|e| anyhow!("--status: {e}"))?,
                recipient: recipient.clone(),
                since: since.as_deref().map(parse_since).transpose()?,
                ambiguous_only: *ambiguous,
                limit: *limit,
                offset: *offset,
            };
            let rows = app.store.deliveries(&filter).await?;
            // WeChat rows also show the ids each step got back (draft, publish, article, msg).
            let mut wechat = std::collections::HashMap::new();
            for r in rows.iter().filter(|r| r.channel == ChannelKind::Wechat) {
                if let Some(j) = app.store.wechat_job(r.id).await? {
                    wechat.insert(r.id, j);
                }
            }
            if *json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(r).expect("row serialises");
                        if let Some(j) = wechat.get(&r.id) {
                            v["wechat"] = serde_json::to_value(j).expect("job serialises");
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table(&[
                    "id",
                    "bulletin",
                    "channel",
                    "recipient",
                    "status",
                    "tries",
                    "updated",
                    "claimed by",
                    "answer",
                ]);
                for r in &rows {
                    let mut status = r.status.to_string();
                    if r.ambiguous {
                        status.push_str(" (ambiguous)");
                    }
                    let answer = match (r.status, &r.last_error, &r.next_attempt_at) {
                        (DeliveryStatus::Retrying, Some(e), Some(n)) => {
                            format!("{e} — next try {}", fmt_time(Some(*n)))
                        }
                        (_, Some(e), _) => e.clone(),
                        _ => r.message_id.clone().unwrap_or_default(),
                    };
                    let answer = match wechat.get(&r.id) {
                        Some(j) => {
                            let ids = [
                                ("draft", &j.draft_media_id),
                                ("publish_id", &j.publish_id),
                                ("article_id", &j.article_id),
                                ("url", &j.article_url),
                                ("msg_id", &j.msg_id),
                            ]
                            .iter()
                            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
                            .collect::<Vec<_>>()
                            .join(", ");
                            if answer.is_empty() {
                                ids
                            } else {
                                format!("{answer} [{ids}]")
                            }
                        }
                        None => answer,
                    };
                    t.add_row(vec![
                        r.id.to_string(),
                        r.bulletin_id.to_string(),
                        r.channel.to_string(),
                        r.recipient.clone(),
                        status,
                        r.attempts.to_string(),
                        fmt_time(Some(r.updated_at)),
                        r.claimed_by.clone().unwrap_or_default(),
                        answer,
                    ]);
                }
                println!("{t}");
                if rows.len() as u32 == filter.limit {
                    println!("(more rows: use --offset {})", filter.offset + filter.limit);
                }
            }
            Ok(())
        }
        Command::Retry {
            bulletin,
            delivery,
            held,
            unconfirmed,
            failed,
            all,
        } => {
            if bulletin.is_none() && delivery.is_none() && !*all {
                bail!(
                    "say which deliveries to retry: --bulletin ID, --delivery ID, or --all \
                     (every failed row in the whole history)"
                );
            }
            let app = app(&cli).await?;
            let mut statuses = Vec::new();
            if *failed || !(*held || *unconfirmed) {
                statuses.push(DeliveryStatus::Failed);
            }
            if *held {
                statuses.push(DeliveryStatus::Held);
            }
            if *unconfirmed {
                statuses.push(DeliveryStatus::Unconfirmed);
            }
            let n = app
                .store
                .requeue(*bulletin, *delivery, &statuses, Utc::now())
                .await?;
            let which: Vec<_> = statuses.iter().map(|s| s.as_str()).collect();
            println!(
                "{n} {} deliveries queued again; the daemon sends them",
                which.join("/")
            );
            Ok(())
        }
        Command::Bulletins { json } => {
            let app = app(&cli).await?;
            let bulletins = app.store.bulletins(100).await?;
            let mut out = Vec::new();
            for b in &bulletins {
                let counts = app.store.delivery_counts(Some(b.id)).await?;
                out.push((b, counts));
            }
            if *json {
                let v: Vec<_> = out
                    .iter()
                    .map(|(b, c)| serde_json::json!({
                        "id": b.id, "kind": b.kind, "schedule": b.schedule, "subject": b.subject,
                        "state": b.state, "lists": b.lists, "records": b.record_ids, "created_at": b.created_at,
                        "deliveries": c,
                    }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table(&[
                    "id",
                    "created",
                    "schedule",
                    "state",
                    "deliveries",
                    "subject",
                ]);
                for (b, c) in &out {
                    let counts = c
                        .iter()
                        .map(|s| format!("{} {}:{}", s.channel, s.status, s.count))
                        .collect::<Vec<_>>()
                        .join(", ");
                    t.add_row(vec![
                        b.id.to_string(),
                        fmt_time(Some(b.created_at)),
                        b.schedule.clone().unwrap_or_default(),
                        b.state.to_string(),
                        counts,
                        b.subject.clone(),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
    }
}

async fn store_command(cli: &Cli, command: &StoreCommand) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    match command {
        StoreCommand::Init => {
            let c = load_config(&cli.config)?;
            let existed = crate::config::sqlite_path(&c.store_url).is_some_and(|p| p.exists());
            crate::store::open_with_password(
                &c.store_url,
                c.store_password.as_ref().map(|p| p.expose_secret()),
            )
            .await
            .with_context(|| {
                format!(
                    "creating the store {}",
                    crate::config::redact_url(&c.store_url)
                )
            })?;
            println!(
                "store {}: {}, all migrations applied",
                crate::config::redact_url(&c.store_url),
                if existed || crate::store::is_postgres_url(&c.store_url) {
                    "ready"
                } else {
                    "created"
                }
            );
            Ok(())
        }
        StoreCommand::Migrate => {
            let c = load_config(&cli.config)?;
            crate::store::require_existing(&c.store_url).map_err(|e| anyhow!("{e}"))?;
            crate::store::open_with_password(
                &c.store_url,
                c.store_password.as_ref().map(|p| p.expose_secret()),
            )
            .await
            .with_context(|| {
                format!(
                    "migrating the store {}",
                    crate::config::redact_url(&c.store_url)
                )
            })?;
            println!(
                "store {}: all migrations applied",
                crate::config::redact_url(&c.store_url)
            );
            Ok(())
        }
        StoreCommand::Copy { from, to } => {
            let password = std::env::var(crate::config::DATABASE_PASSWORD_ENV)
                .ok()
                .filter(|p| !p.is_empty());
            let report = crate::store::copy(from, to, password.as_deref())
                .await
                .with_context(|| {
                    format!(
                        "copying {} to {}",
                        crate::config::redact_url(from),
                        crate::config::redact_url(to)
                    )
                })?;
            for (table, n) in &report {
                println!("{table}: {n} row(s)");
            }
            println!(
                "copied {} to {}",
                crate::config::redact_url(from),
                crate::config::redact_url(to)
            );
            Ok(())
        }
    }
}

async fn notice_send(cli: &Cli, command: &NoticeCommand) -> anyhow::Result<()> {
    let NoticeCommand::Send {
        title,
        body_file,
        lists,
        channels,
        severity,
        key,
        by,
        json,
        wait,
        no_wait,
    } = command;
    let body = if body_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the body from standard input")?
    } else {
        std::fs::read_to_string(body_file)
            .with_context(|| format!("--body-file {}: cannot read", body_file.display()))?
    };
    let by = by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let req =
        crate::notice::NoticeRequest::parse(title, &body, severity, lists, &by, key.as_deref())
            .map_err(|e| anyhow!("{e}"))?
            .with_channels(channels)
            .map_err(|e| anyhow!("{e}"))?;
    let app = app(cli).await?;
    if req.channels.contains(&ChannelKind::Wechat) && !*json {
        let q = app
            .notices
            .wechat_quota()
            .await
            .map_err(|e| anyhow!("{e}"))?;
        println!(
            "WeChat mass-send quota: {} of {} used in the last 24 h",
            q.used, q.limit
        );
    }
    let out = app.notices.send(&req).await.map_err(|e| anyhow!("{e}"))?;
    if *json {
        if !*wait {
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        let Some(fin) = follow(&app, out.id, false).await? else {
            return Ok(());
        };
        let mut v = serde_json::to_value(out)?;
        v["final"] = serde_json::to_value(fin)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return fin.result(out.id);
    }
    if out.created {
        println!(
            "notice {} queued for {} recipient(s), ahead of scheduled bulletins",
            out.id, out.deliveries
        );
    } else {
        println!(
            "this notice was already triggered as notice {}: not sending it again",
            out.id
        );
    }
    if *no_wait {
        return Ok(());
    }
    match follow(&app, out.id, true).await? {
        Some(fin) => fin.result(out.id),
        None => Ok(()),
    }
}

/// A notice's deliveries by state, as `notice send` follows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub total: u64,
    pub sent: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub unconfirmed: u64,
    /// Waiting for a later try (a temporary failure).
    pub retrying: u64,
    /// Parked after an expired lease: an operator decides (`bulletin retry --held`).
    pub held: u64,
    /// Queued or being sent now.
    pub remaining: u64,
}

impl Progress {
    fn from_counts(counts: &[crate::store::StatusCount]) -> Self {
        let n = |st: DeliveryStatus| -> u64 {
            counts
                .iter()
                .filter(|c| c.status == st)
                .map(|c| c.count as u64)
                .sum()
        };
        Self {
            total: counts.iter().map(|c| c.count as u64).sum(),
            sent: n(DeliveryStatus::Sent),
            failed: n(DeliveryStatus::Failed),
            suppressed: n(DeliveryStatus::Suppressed),
            unconfirmed: n(DeliveryStatus::Unconfirmed),
            retrying: n(DeliveryStatus::Retrying),
            held: n(DeliveryStatus::Held),
            remaining: n(DeliveryStatus::Queued) + n(DeliveryStatus::Sending),
        }
    }

    /// Rows with a final state.
    pub fn done(&self) -> u64 {
        self.sent + self.failed + self.suppressed + self.unconfirmed
    }

    /// Nothing is left for the daemon to do (held rows wait for an operator).
    pub fn over(&self) -> bool {
        self.remaining == 0 && self.retrying == 0
    }

    fn result(&self, id: i64) -> anyhow::Result<()> {
        if self.failed > 0 {
            return Err(DeliveriesFailed {
                bulletin: id,
                failed: self.failed,
            }
            .into());
        }
        Ok(())
    }
}

/// `h:mm:ss` or `m:ss`.
fn clock_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The progress line of `notice send`: at most 80 columns; done of total, what failed,
/// what is left, retrying and held apart (with the next retry time), the rate (rounded),
/// the elapsed time and an ETA. Less important parts are dropped to fit.
pub fn progress_line(
    p: &Progress,
    elapsed: std::time::Duration,
    next_retry: Option<DateTime<Utc>>,
) -> String {
    const WIDTH: usize = 80;
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 1.0 {
        p.done() as f64 / secs
    } else {
        0.0
    };
    let rate_text = if rate >= 10.0 {
        format!("{rate:.0}/s")
    } else {
        format!("{rate:.1}/s")
    };
    let eta = if p.over() {
        "ETA 0:00".to_string()
    } else if rate > 0.0 {
        let left = (p.remaining + p.retrying) as f64 / rate;
        let eta = clock_duration(std::time::Duration::from_secs_f64(left.min(359_999.0)));
        match next_retry {
            // The rows waiting for a retry cannot finish before it.
            Some(t) if p.remaining == 0 => format!("ETA after {}", t.format("%H:%M:%S")),
            _ => format!("ETA {eta}"),
        }
    } else {
        "ETA --".to_string()
    };
    // (priority, text): the lowest priority goes first when the line is too long.
    let mut parts: Vec<(u8, String)> = vec![(9, format!("{}/{} done", p.done(), p.total))];
    if p.failed > 0 {
        parts.push((8, format!("failed {}", p.failed)));
    }
    parts.push((7, format!("left {}", p.remaining)));
    if p.retrying > 0 {
        let next = next_retry
            .map(|t| format!(" (next {})", t.format("%H:%M:%S")))
            .unwrap_or_default();
        parts.push((6, format!("retrying {}{next}", p.retrying)));
    }
    if p.held > 0 {
        parts.push((6, format!("held {}", p.held)));
    }
    parts.push((4, rate_text));
    parts.push((3, clock_duration(elapsed)));
    parts.push((5, eta));
    let join = |parts: &[(u8, String)]| {
        parts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut line = join(&parts);
    while line.chars().count() > WIDTH && parts.len() > 1 {
        let (i, _) = parts
            .iter()
            .enumerate()
            .min_by_key(|(i, (prio, _))| (*prio, std::cmp::Reverse(*i)))
            .expect("parts");
        parts.remove(i);
        line = join(&parts);
    }
    line.chars().take(WIDTH).collect()
}

/// Follows a notice's delivery until nothing is left for the daemon to do (held rows
/// wait for an operator), showing a progress line when `show`; `None` on Ctrl-C.
async fn follow(app: &App, id: i64, show: bool) -> anyhow::Result<Option<Progress>> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = if show {
        ProgressBar::new(0)
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    };
    bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
    if show {
        eprintln!("the daemon (`bulletin serve`) sends it; Ctrl-C stops watching, not sending");
    }
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        let p = Progress::from_counts(&app.store.delivery_counts(Some(id)).await?);
        let next_retry = if p.retrying > 0 {
            app.store
                .deliveries(&DeliveryFilter {
                    bulletin: Some(id),
                    status: Some(DeliveryStatus::Retrying),
                    limit: 1000,
                    ..Default::default()
                })
                .await?
                .iter()
                .filter_map(|r| r.next_attempt_at)
                .min()
        } else {
            None
        };
        bar.set_message(progress_line(&p, started.elapsed(), next_retry));
        if p.over() {
            bar.finish_and_clear();
            if show {
                println!(
                    "notice {id}: sent {}, failed {}, suppressed {}",
                    p.sent, p.failed, p.suppressed
                );
                if p.unconfirmed > 0 {
                    println!(
                        "{} unconfirmed (no final reply: may have been delivered); see \
                         `bulletin deliveries --bulletin {id} --status unconfirmed`",
                        p.unconfirmed
                    );
                }
                if p.held > 0 {
                    println!(
                        "{} held after an expired lease (may have been delivered): decide with \
                         `bulletin retry --held --bulletin {id}`",
                        p.held
                    );
                }
            }
            return Ok(Some(p));
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                println!("stopped watching; the daemon keeps sending (`bulletin bulletins`)");
                return Ok(None);
            }
        }
    }
}

async fn status(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let app = app(cli).await?;
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
    let by_status = |st: DeliveryStatus| -> i64 {
        counts
            .iter()
            .filter(|c| c.status == st)
            .map(|c| c.count)
            .sum()
    };
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
        if b.state == crate::store::BulletinState::Done {
            continue;
        }
        let c = app.store.delivery_counts(Some(b.id)).await?;
        let total: i64 = c.iter().map(|x| x.count).sum();
        let remaining: i64 = c
            .iter()
            .filter(|x| !x.status.is_terminal())
            .map(|x| x.count)
            .sum();
        active.push(serde_json::json!({
            "id": b.id, "kind": b.kind, "state": b.state, "subject": b.subject,
            "total": total, "remaining": remaining,
        }));
    }
    if json {
        let queue: serde_json::Map<String, serde_json::Value> = DeliveryStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), serde_json::json!(by_status(*s))))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schedules": schedules, "ledger": queue, "failed_last_24h": failed_24h,
                "bulletins_in_progress": active,
            }))?
        );
        return Ok(());
    }
    println!("store {}", crate::config::redact_url(&app.config.store_url));
    let mut t = table(&["schedule", "last firing (UTC)", "next firing (UTC)"]);
    for s in &schedules {
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
    println!(
        "queue: {} queued, {} sending (in flight), {} retrying, {} held · all time: {} sent, {} failed, {} suppressed, {} unconfirmed",
        by_status(DeliveryStatus::Queued),
        by_status(DeliveryStatus::Sending),
        by_status(DeliveryStatus::Retrying),
        by_status(DeliveryStatus::Held),
        by_status(DeliveryStatus::Sent),
        by_status(DeliveryStatus::Failed),
        by_status(DeliveryStatus::Suppressed),
        by_status(DeliveryStatus::Unconfirmed)
    );
    println!(
        "failed in the last 24 h: {failed_24h}{}",
        if failed_24h > 0 {
            " (`bulletin deliveries --status failed --since 24h`)"
        } else {
            ""
        }
    );
    if active.is_empty() {
        println!("no bulletin in progress");
    } else {
        let mut t = table(&["bulletin", "kind", "state", "remaining", "subject"]);
        for b in &active {
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
    Ok(())
}

async fn lists(cli: &Cli, command: &ListCommand) -> anyhow::Result<()> {
    let app = app(cli).await?;
    let store = &app.store;
    let get = |name: &str| {
        let name = name.to_string();
        async move {
            let ln = ListName::parse(&name).map_err(|e| anyhow!("{e}"))?;
            store.list(&ln).await?.ok_or_else(|| {
                anyhow!("no list `{name}` (create it with `bulletin lists create {name}`)")
            })
        }
    };
    match command {
        ListCommand::Create { name, description } => {
            let ln = ListName::parse(name).map_err(|e| anyhow!("{e}"))?;
            if store.create_list(&ln, description, Utc::now()).await? {
                println!("list `{name}` created");
            } else {
                println!("list `{name}` already exists");
            }
        }
        ListCommand::Import { name, file } => {
            let list = get(name).await?;
            // A FIFO or a device is refused, not read (a plain open of a FIFO hangs).
            let (f, _) = crate::app::open_regular_file(file)
                .map_err(|e| anyhow!("{} {e}", file.display()))?;
            let rows = CsvSubscribers::new(std::io::BufReader::new(f))
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            if !rows.ignored_columns().is_empty() {
                eprintln!(
                    "{}: line 1: column(s) ignored (only email, name and language are read): {}",
                    file.display(),
                    rows.ignored_columns().join(", ")
                );
            }
            let (counts, errors) = import_rows(&app, list.id, rows).await?;
            for e in &errors {
                eprintln!("{}: {e}: skipped", file.display());
            }
            println!(
                "list `{name}`: {} added, {} updated, {} unchanged, {} invalid row(s) skipped",
                counts.added,
                counts.updated,
                counts.unchanged,
                errors.len()
            );
        }
        ListCommand::Export { name, out } => {
            let list = get(name).await?;
            let sink: Box<dyn std::io::Write + Send> = match out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let mut w = csv::Writer::from_writer(std::io::BufWriter::new(sink));
            w.write_record(["email", "name", "language", "status", "status_changed_at"])?;
            let (mut after, mut n) = (0, 0u64);
            loop {
                let page = store.subscribers_page(list.id, after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for s in &page {
                    w.write_record([
                        s.email.as_str(),
                        s.name.as_deref().unwrap_or(""),
                        s.language.as_deref().unwrap_or(""),
                        s.status.as_str(),
                        &s.status_changed_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ])?;
                    n += 1;
                }
            }
            w.flush()?;
            if let Some(path) = out {
                println!(
                    "list `{name}`: {n} subscriber(s) written to {}",
                    path.display()
                );
            }
        }
        ListCommand::Add {
            name,
            email,
            display_name,
            language,
        } => {
            let list = get(name).await?;
            let s = NewSubscriber::parse(email, display_name.as_deref(), language.as_deref())
                .map_err(|e| anyhow!("{e}"))?;
            let c = store.upsert_subscribers(list.id, &[s], Utc::now()).await?;
            println!(
                "{email}: {}",
                if c.added == 1 {
                    "added"
                } else if c.updated == 1 {
                    "updated"
                } else {
                    "already on the list"
                }
            );
        }
        ListCommand::Remove { name, email } => {
            let list = get(name).await?;
            let e = crate::domain::EmailAddress::parse(email).map_err(|e| anyhow!("{e}"))?;
            if store.remove_subscriber(list.id, e.as_str()).await? {
                println!("{e} removed from `{name}`");
            } else {
                bail!("{e} is not on list `{name}`");
            }
        }
        ListCommand::SetStatus {
            name,
            email,
            status,
        } => {
            let list = get(name).await?;
            let e = crate::domain::EmailAddress::parse(email).map_err(|e| anyhow!("{e}"))?;
            let st = SubscriberStatus::parse(status).map_err(|e| anyhow!("{e}"))?;
            if !store
                .set_subscriber_status(list.id, e.as_str(), st, Utc::now())
                .await?
            {
                bail!("{e} is not on list `{name}`");
            }
            println!("{e} on `{name}` is now {st}");
        }
        ListCommand::Show { name, limit, json } => {
            let list = get(name).await?;
            let subs = store.subscribers_page(list.id, 0, *limit).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"list": list, "subscribers": subs})
                    )?
                );
            } else {
                println!(
                    "list `{}`{}: {} active, {} unsubscribed, {} bounced",
                    list.name,
                    if list.description.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", list.description)
                    },
                    list.active,
                    list.unsubscribed,
                    list.bounced
                );
                let mut t = table(&["email", "name", "language", "status"]);
                for s in &subs {
                    t.add_row(vec![
                        s.email.clone(),
                        s.name.clone().unwrap_or_default(),
                        s.language.clone().unwrap_or_default(),
                        s.status.to_string(),
                    ]);
                }
                println!("{t}");
                let total = list.active + list.unsubscribed + list.bounced;
                if total > subs.len() as i64 {
                    println!("(first {} of {total}; use --limit)", subs.len());
                }
            }
        }
        ListCommand::All { json } => {
            let all = store.lists().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let mut t = table(&["name", "active", "unsubscribed", "bounced", "description"]);
                for l in &all {
                    t.add_row(vec![
                        l.name.clone(),
                        l.active.to_string(),
                        l.unsubscribed.to_string(),
                        l.bounced.to_string(),
                        l.description.clone(),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(())
}

/// After an import, when a schedule sends over WeChat: the size of the record's WeChat
/// article against WeChat's limit, and whether it is too long to approve.
async fn wechat_size_line(app: &App, file: &std::path::Path, id: &str) -> anyhow::Result<()> {
    let Some(r) = app.store.record(id).await? else {
        return Ok(());
    };
    let (size, schedule) = crate::render::wechat_article_size(&app.config, &r.record)?;
    if let Some(schedule) = schedule {
        let max = crate::render::WECHAT_CONTENT_MAX;
        println!(
            "{}: WeChat article: {} of {} characters{}",
            file.display(),
            crate::render::thousands(size),
            crate::render::thousands(max),
            if size >= max {
                format!("; too long to approve while schedule `{schedule}` sends over WeChat")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Imports CSV rows in batches; returns the counts and the refused rows.
pub async fn import_rows<R: std::io::Read>(
    app: &App,
    list_id: i64,
    rows: CsvSubscribers<R>,
) -> anyhow::Result<(
    crate::store::UpsertCounts,
    Vec<crate::domain::subscriber::RowError>,
)> {
    let mut counts = crate::store::UpsertCounts::default();
    let mut errors = Vec::new();
    let mut batch = Vec::with_capacity(1000);
    let flush = |batch: &mut Vec<NewSubscriber>| {
        let b = std::mem::take(batch);
        let store = app.store.clone();
        async move { store.upsert_subscribers(list_id, &b, Utc::now()).await }
    };
    for row in rows {
        match row {
            Ok(s) => batch.push(s),
            Err(e) => errors.push(e),
        }
        if batch.len() >= 1000 {
            let c = flush(&mut batch).await?;
            counts.added += c.added;
            counts.updated += c.updated;
            counts.unchanged += c.unchanged;
        }
    }
    let c = flush(&mut batch).await?;
    counts.added += c.added;
    counts.updated += c.updated;
    counts.unchanged += c.unchanged;
    Ok((counts, errors))
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
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn the_progress_line_fits_80_columns_and_keeps_retrying_and_held_apart() {
        let p = Progress {
            total: 40,
            sent: 20,
            failed: 2,
            retrying: 3,
            held: 1,
            remaining: 14,
            ..Default::default()
        };
        let next = Utc.with_ymd_and_hms(2026, 12, 1, 14, 3, 5).unwrap();
        let line = progress_line(&p, Duration::from_secs(7), Some(next));
        // Too long for 80 columns with everything: the elapsed time and the rate go
        // first (the typical line, below, has them).
        assert_eq!(
            line,
            "22/40 done · failed 2 · left 14 · retrying 3 (next 14:03:05) · held 1 · ETA 0:05"
        );
        assert!(line.chars().count() <= 80, "{line}");
        for want in [
            "22/40 done",
            "failed 2",
            "left 14",
            "retrying 3 (next 14:03:05)",
            "held 1",
        ] {
            assert!(line.contains(want), "`{want}` missing: {line}");
        }

        // Rounded rate, elapsed and ETA when there is room.
        let p = Progress {
            total: 1000,
            sent: 250,
            remaining: 750,
            ..Default::default()
        };
        let line = progress_line(&p, Duration::from_secs(100), None);
        assert_eq!(line, "250/1000 done · left 750 · 2.5/s · 1:40 · ETA 5:00");
        let p = Progress {
            total: 100_000,
            sent: 50_000,
            remaining: 50_000,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p, Duration::from_secs(4000), None),
            "50000/100000 done · left 50000 · 12/s · 1:06:40 · ETA 1:06:40"
        );

        // Huge numbers: still 80 columns, the least useful parts dropped first.
        let p = Progress {
            total: 9_999_999,
            sent: 1_234_567,
            failed: 1_234_567,
            retrying: 1_234_567,
            held: 1_234_567,
            remaining: 5_061_731,
            ..Default::default()
        };
        let line = progress_line(&p, Duration::from_secs(36_000), Some(next));
        assert!(line.chars().count() <= 80, "{line}");
        assert!(
            line.starts_with("2469134/9999999 done · failed 1234567 · left 5061731"),
            "{line}"
        );

        // Nothing sent yet: no rate, no ETA guess.
        let p = Progress {
            total: 5,
            remaining: 5,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p, Duration::from_millis(300), None),
            "0/5 done · left 5 · 0.0/s · 0:00 · ETA --"
        );
    }

    #[test]
    fn held_rows_do_not_keep_the_follow_waiting_and_failures_set_the_exit_code() {
        let p = Progress {
            total: 3,
            sent: 1,
            failed: 1,
            held: 1,
            ..Default::default()
        };
        assert!(p.over());
        let e = p.result(7).unwrap_err();
        assert!(e.downcast_ref::<DeliveriesFailed>().is_some());
        assert!(Progress {
            total: 1,
            sent: 1,
            ..Default::default()
        }
        .result(7)
        .is_ok());
        assert!(!Progress {
            total: 1,
            retrying: 1,
            ..Default::default()
        }
        .over());
    }
}
