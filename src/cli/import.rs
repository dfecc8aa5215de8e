//! `bulletin import`: session records (TOML files), each stored as a draft or refused
//! whole; two files of one import with the same id are both refused.

use super::Ctx;
use crate::app::App;
use crate::store::ImportOutcome;
use anyhow::bail;
use chrono::Utc;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Record files (TOML); images are read from paths relative to each file.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// What a first read of the files found: the files of each record id, and each file's
/// `held_on` warning.
struct FirstPass<'a> {
    by_id: HashMap<String, Vec<&'a PathBuf>>,
    warnings: HashMap<&'a PathBuf, String>,
}

impl ImportArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let files = &self.files;
        // Two files of one import with the same id would overwrite each other in turn:
        // all of them are refused instead, so the operator picks one.
        let pass = first_pass(&app, files);
        let mut failed = 0;
        for f in files {
            if let Some((id, same)) = pass
                .by_id
                .iter()
                .find(|(_, v)| v.len() > 1 && v.contains(&f))
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
            if !import_one(&app, f, pass.warnings.get(f)).await? {
                failed += 1;
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
}

/// Reads every file as the import reads it, for its record id and its `held_on` warning;
/// files that do not parse are left for the import to refuse with its message.
fn first_pass<'a>(app: &App, files: &'a [PathBuf]) -> FirstPass<'a> {
    let mut by_id: HashMap<String, Vec<&PathBuf>> = HashMap::new();
    let mut warnings = HashMap::new();
    let today = Utc::now().date_naive();
    for f in files {
        // Read as the import reads (regular files only, size-limited): a FIFO
        // given here must not hang this first pass either.
        let parsed = crate::app::read_regular_file(f, crate::domain::record::MAX_FILE_BYTES)
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
    FirstPass { by_id, warnings }
}

/// Imports one file and says what became of it; `false` when it was refused.
async fn import_one(app: &App, f: &Path, warning: Option<&String>) -> anyhow::Result<bool> {
    match app.import_record_file(f).await {
        Ok((id, outcome)) => {
            if let Some(w) = warning {
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
            wechat_size_line(app, f, &id).await?;
            Ok(true)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(false)
        }
    }
}

/// After an import, when a schedule sends over WeChat: the size of the record's WeChat
/// article against WeChat's limit, and whether it is too long to approve.
async fn wechat_size_line(app: &App, file: &Path, id: &str) -> anyhow::Result<()> {
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
