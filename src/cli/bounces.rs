//! `bulletin bounces`: what came back after the relay. `ingest` reads one message (as an
//! MTA pipe transport or alias hands it over) and exits by sysexits, so the MTA retries
//! when the store is down; without a subcommand, the received bounces; `undo ID`
//! reverses a wrong one.

use super::{fmt_time, ops_err, ops_error, table, Ctx};
use crate::bounce::BounceKind;
use crate::store::BounceSource;
use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;

/// The largest message file read (a bounce returning a whole bulletin with images).
const MAX_MESSAGE: usize = 64 << 20;

/// EX_TEMPFAIL (sysexits.h): the message was not recorded; the MTA keeps it and retries.
pub const EXIT_TEMPFAIL: u8 = 75;

/// `bounces ingest` could not record the message (store unavailable, configuration
/// unreadable): `main` exits with [`EXIT_TEMPFAIL`].
#[derive(Debug, thiserror::Error)]
#[error("the bounce was not recorded (the MTA should retry): {0:#}")]
pub struct IngestTempFail(anyhow::Error);

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BouncesArgs {
    #[command(subcommand)]
    command: Option<BouncesCommand>,
    /// Only this kind: hard, soft, delayed, delivered, complaint, auto_reply, unmatched.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<BounceKind>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum BouncesCommand {
    /// Read one received message (a bounce, complaint or reply) from FILE or stdin, keep
    /// it and apply the [bounces] policy. Exit 0 when recorded or deliberately ignored,
    /// 75 (EX_TEMPFAIL) when it could not be recorded.
    Ingest {
        /// The message; `-` or nothing: standard input.
        file: Option<PathBuf>,
        /// The address the MTA delivered it to (the pipe's ${recipient}): its VERP token
        /// names the ledger row.
        #[arg(long)]
        recipient: Option<String>,
        /// Print what it was read as, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo a wrong bounce: its delivery back to sent, the subscribers it suppressed back
    /// to active.
    Undo {
        /// The bounce's id (`bulletin bounces`).
        id: i64,
    },
}

fn parse_kind(s: &str) -> Result<BounceKind, String> {
    s.replace('-', "_").parse().map_err(|e| format!("{e}"))
}

impl BouncesArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self.command {
            Some(BouncesCommand::Ingest {
                file,
                recipient,
                json,
            }) => ingest(ctx, file, recipient, json).await,
            Some(BouncesCommand::Undo { id }) => {
                let actor = ctx.actor(None)?;
                let ops = ctx.ops().await?;
                let u = ops
                    .undo_bounce(&actor, id)
                    .await
                    .map_err(|e| ops_error(e, &["id"]))?;
                if u.undone {
                    println!(
                        "bounce {id} undone: {} restored to sent, {} subscription(s) active again",
                        if u.row_restored {
                            "its delivery"
                        } else {
                            "no delivery"
                        },
                        u.subscribers_restored
                    );
                } else {
                    println!("bounce {id} was already undone; nothing changed");
                }
                Ok(())
            }
            None => {
                let ops = ctx.ops().await?;
                let rows = ops.bounces(self.kind, self.limit).await.map_err(ops_err)?;
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                    return Ok(());
                }
                let mut t = table(&[
                    "id",
                    "received (UTC)",
                    "kind",
                    "status",
                    "recipient",
                    "delivery",
                    "diagnostic",
                    "undone",
                ]);
                for b in &rows {
                    let mut diag = b.diagnostic.clone().unwrap_or_default();
                    if diag.chars().count() > 60 {
                        diag = diag.chars().take(59).chain(['…']).collect();
                    }
                    t.add_row(vec![
                        b.id.to_string(),
                        fmt_time(Some(b.received_at)),
                        b.kind.to_string(),
                        b.status_code.clone().unwrap_or_default(),
                        b.recipient.clone().unwrap_or_default(),
                        b.delivery_id.map(|d| d.to_string()).unwrap_or_default(),
                        diag,
                        fmt_time(b.undone_at),
                    ]);
                }
                println!("{t}");
                Ok(())
            }
        }
    }
}

/// Reads the message first (a message that cannot be read is the caller's problem), then
/// records it; every failure after that is a temporary one for the MTA.
async fn ingest(
    ctx: &Ctx,
    file: Option<PathBuf>,
    recipient: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let raw = match file.as_deref() {
        Some(p) if p.as_os_str() != "-" => crate::files::read_regular_file(p, MAX_MESSAGE)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        _ => {
            let mut raw = Vec::new();
            std::io::stdin()
                .read_to_end(&mut raw)
                .map_err(|e| IngestTempFail(anyhow::anyhow!("cannot read standard input: {e}")))?;
            raw
        }
    };
    let ops = ctx.ops().await.map_err(IngestTempFail)?;
    let got = ops
        .ingest_bounce(&raw, BounceSource::Ingest, recipient.as_deref())
        .await
        .map_err(|e| IngestTempFail(ops_err(e)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&got)?);
    } else {
        let r = &got.recorded;
        println!(
            "bounce {} recorded: {}{}{}",
            r.id,
            got.classification.kind,
            r.delivery_id
                .map(|d| format!(", delivery {d}"))
                .unwrap_or_else(|| ", matched no delivery".into()),
            if r.row_bounced { " (now bounced)" } else { "" }
        );
    }
    Ok(())
}
