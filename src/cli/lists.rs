//! `bulletin lists`: mailing lists and their subscribers (create, CSV import and export,
//! add, remove, status, show, all).

use super::{ops_error, table, Ctx};
use crate::domain::subscriber::CsvSubscribers;
use crate::ops::lists::{AddOutcome, AddSubscriberInput};
use crate::ops::Ops;
use anyhow::{anyhow, Context};
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
        let actor = ctx.actor(None)?;
        let ops = ctx.ops().await?;
        // The list, the address and the status are positional: a refused one is named
        // by its message.
        let err = |e: crate::ops::OpsError| ops_error(e, &["list", "email", "status"]);
        match self.command {
            ListCommand::Create { name, description } => {
                if ops
                    .create_list(&actor, &name, &description)
                    .await
                    .map_err(err)?
                    .created
                {
                    println!("list `{name}` created");
                } else {
                    println!("list `{name}` already exists");
                }
            }
            ListCommand::Import { name, file } => import(&ops, &actor, &name, &file).await?,
            ListCommand::Export { name, out } => export(&ops, &name, out.as_deref()).await?,
            ListCommand::Add {
                name,
                email,
                display_name,
                language,
            } => {
                let added = ops
                    .add_subscriber(
                        &actor,
                        AddSubscriberInput {
                            list: &name,
                            email: &email,
                            name: display_name.as_deref(),
                            language: language.as_deref(),
                        },
                    )
                    .await
                    .map_err(err)?;
                println!(
                    "{email}: {}",
                    match added.outcome {
                        AddOutcome::Added => "added",
                        AddOutcome::Updated => "updated",
                        AddOutcome::Unchanged => "already on the list",
                    }
                );
            }
            ListCommand::Remove { name, email } => {
                let removed = ops
                    .remove_subscriber(&actor, &name, &email)
                    .await
                    .map_err(err)?;
                println!("{} removed from `{name}`", removed.email);
            }
            ListCommand::SetStatus {
                name,
                email,
                status,
            } => {
                let changed = ops
                    .set_subscriber_status(&actor, &name, &email, &status)
                    .await
                    .map_err(err)?;
                if let Some(st) = changed.status {
                    println!("{} on `{name}` is now {st}", changed.email);
                }
            }
            ListCommand::Show { name, limit, json } => show(&ops, &name, limit, json).await?,
            ListCommand::All { json } => all(&ops, json).await?,
        }
        Ok(())
    }
}

fn list_err(e: crate::ops::OpsError) -> anyhow::Error {
    ops_error(e, &["list"])
}

/// `lists import`: the CSV's valid rows upserted, the invalid ones named and skipped.
async fn import(
    ops: &Ops,
    actor: &crate::domain::Actor,
    name: &str,
    file: &Path,
) -> anyhow::Result<()> {
    // The list first: a missing one is named before the file is read.
    ops.list(name).await.map_err(list_err)?;
    // A FIFO or a device is refused, not read (a plain open of a FIFO hangs).
    let (f, _) =
        crate::app::open_regular_file(file).map_err(|e| anyhow!("{} {e}", file.display()))?;
    let rows = CsvSubscribers::new(std::io::BufReader::new(f))
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let done = ops.import_csv(actor, name, rows).await.map_err(list_err)?;
    for line in done.report(&file.display().to_string()) {
        eprintln!("{line}");
    }
    let (counts, errors) = (done.counts, done.rejected);
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
async fn export(ops: &Ops, name: &str, out: Option<&Path>) -> anyhow::Result<()> {
    // The list first: no file is created for a list that does not exist.
    ops.list(name).await.map_err(list_err)?;
    let sink: Box<dyn std::io::Write + Send> = match out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let written = ops
        .export_csv(name, std::io::BufWriter::new(sink))
        .await
        .map_err(list_err)?;
    if let Some(path) = out {
        println!(
            "list `{name}`: {} subscriber(s) written to {}",
            written.written,
            path.display()
        );
    }
    Ok(())
}

/// `lists show`: the list's counts and its first `limit` subscribers.
async fn show(ops: &Ops, name: &str, limit: u32, json: bool) -> anyhow::Result<()> {
    let detail = ops.list_detail(name, limit).await.map_err(list_err)?;
    let (list, subs) = (&detail.list, &detail.subscribers);
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
    for s in subs {
        t.add_row(vec![
            s.email.clone(),
            s.name.clone().unwrap_or_default(),
            s.language.clone().unwrap_or_default(),
            s.status.to_string(),
        ]);
    }
    println!("{t}");
    if detail.total > subs.len() as i64 {
        println!("(first {} of {}; use --limit)", subs.len(), detail.total);
    }
    Ok(())
}

/// `lists all`: every list with its counts.
async fn all(ops: &Ops, json: bool) -> anyhow::Result<()> {
    let all = ops.lists().await.map_err(list_err)?;
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
