//! `bulletin lists`: mailing lists and their subscribers (create, CSV import and export,
//! add, remove, status, show, all).

use super::{table, Ctx};
use crate::app::App;
use crate::domain::subscriber::{CsvSubscribers, NewSubscriber, SubscriberStatus};
use crate::domain::ListName;
use crate::store::{ListSummary, Store};
use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ListsArgs {
    #[command(subcommand)]
    command: ListCommand,
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

impl ListsArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let store = app.store.as_ref();
        match self.command {
            ListCommand::Create { name, description } => {
                let ln = ListName::parse(&name).map_err(|e| anyhow!("{e}"))?;
                if store.create_list(&ln, &description, Utc::now()).await? {
                    println!("list `{name}` created");
                } else {
                    println!("list `{name}` already exists");
                }
            }
            ListCommand::Import { name, file } => import(&app, &name, &file).await?,
            ListCommand::Export { name, out } => export(store, &name, out.as_deref()).await?,
            ListCommand::Add {
                name,
                email,
                display_name,
                language,
            } => {
                let list = get(store, &name).await?;
                let s = NewSubscriber::parse(&email, display_name.as_deref(), language.as_deref())
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
                let list = get(store, &name).await?;
                let e = crate::domain::EmailAddress::parse(&email).map_err(|e| anyhow!("{e}"))?;
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
            } => set_status(store, &name, &email, &status).await?,
            ListCommand::Show { name, limit, json } => show(store, &name, limit, json).await?,
            ListCommand::All { json } => all(store, json).await?,
        }
        Ok(())
    }
}

/// The list called `name`, or an error saying how to create it.
async fn get(store: &dyn Store, name: &str) -> anyhow::Result<ListSummary> {
    let ln = ListName::parse(name).map_err(|e| anyhow!("{e}"))?;
    store
        .list(&ln)
        .await?
        .ok_or_else(|| anyhow!("no list `{name}` (create it with `bulletin lists create {name}`)"))
}

/// `lists import`: the CSV's valid rows upserted, the invalid ones named and skipped.
async fn import(app: &App, name: &str, file: &Path) -> anyhow::Result<()> {
    let list = get(app.store.as_ref(), name).await?;
    // A FIFO or a device is refused, not read (a plain open of a FIFO hangs).
    let (f, _) =
        crate::app::open_regular_file(file).map_err(|e| anyhow!("{} {e}", file.display()))?;
    let rows = CsvSubscribers::new(std::io::BufReader::new(f))
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    if !rows.ignored_columns().is_empty() {
        eprintln!(
            "{}: line 1: column(s) ignored (only email, name and language are read): {}",
            file.display(),
            rows.ignored_columns().join(", ")
        );
    }
    let crate::ops::lists::SubscriberImport {
        counts,
        rejected: errors,
        ..
    } = crate::ops::lists::import_rows(&app.ops(), list.id, rows).await?;
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
    Ok(())
}

/// `lists export`: every subscriber as CSV, page by page, to `out` or standard output.
async fn export(store: &dyn Store, name: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let list = get(store, name).await?;
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
    Ok(())
}

/// `lists set-status`.
async fn set_status(
    store: &dyn Store,
    name: &str,
    email: &str,
    status: &str,
) -> anyhow::Result<()> {
    let list = get(store, name).await?;
    let e = crate::domain::EmailAddress::parse(email).map_err(|e| anyhow!("{e}"))?;
    let st = SubscriberStatus::parse(status).map_err(|e| anyhow!("{e}"))?;
    if !store
        .set_subscriber_status(list.id, e.as_str(), st, Utc::now())
        .await?
    {
        bail!("{e} is not on list `{name}`");
    }
    println!("{e} on `{name}` is now {st}");
    Ok(())
}

/// `lists show`: the list's counts and its first `limit` subscribers.
async fn show(store: &dyn Store, name: &str, limit: u32, json: bool) -> anyhow::Result<()> {
    let list = get(store, name).await?;
    let subs = store.subscribers_page(list.id, 0, limit).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"list": list, "subscribers": subs}))?
        );
        return Ok(());
    }
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
    Ok(())
}

/// `lists all`: every list with its counts.
async fn all(store: &dyn Store, json: bool) -> anyhow::Result<()> {
    let all = store.lists().await?;
    if json {
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
    Ok(())
}
