//! `bulletin import`: session records (TOML files), each stored as a draft or refused
//! whole; two files of one import with the same id are both refused.

use super::{ops_err, Ctx};
use crate::ops::records::{FileImport, WechatSize};
use crate::store::ImportOutcome;
use anyhow::bail;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Record files (TOML); images are read from paths relative to each file.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

impl ImportArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let actor = ctx.actor(None)?;
        let imports = ops
            .import_records(&actor, &self.files)
            .await
            .map_err(ops_err)?;
        let mut failed = 0;
        for FileImport {
            file,
            outcome,
            warning,
            wechat_size,
        } in &imports
        {
            match outcome {
                Ok(r) => {
                    if let Some(w) = warning {
                        eprintln!("{w}");
                    }
                    println!(
                        "{}: record `{}` {}",
                        file.display(),
                        r.id,
                        match r.outcome {
                            ImportOutcome::Created => "imported as a draft",
                            ImportOutcome::Unchanged => "unchanged",
                            ImportOutcome::Updated => "updated (still a draft)",
                            ImportOutcome::ReturnedToDraft =>
                                "changed after approval: back to draft, approve it again",
                        }
                    );
                    if let Some(size) = wechat_size {
                        print_wechat_size(file, size);
                    }
                }
                // Record errors name their file, line and field; a shared id names
                // the other files.
                Err(crate::ops::OpsError::Invalid { field, message }) => {
                    failed += 1;
                    eprintln!("{}: {field}: {message}", file.display());
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
                self.files.len()
            );
        }
        Ok(())
    }
}

/// After an import, when a schedule sends over WeChat: the size of the record's WeChat
/// article against WeChat's limit, and whether it is too long to approve.
fn print_wechat_size(file: &Path, s: &WechatSize) {
    println!(
        "{}: WeChat article: {} of {} characters{}",
        file.display(),
        crate::render::thousands(s.size),
        crate::render::thousands(s.max),
        match (&s.schedule, s.too_long) {
            (Some(schedule), true) =>
                format!("; too long to approve while schedule `{schedule}` sends over WeChat"),
            _ => String::new(),
        }
    );
}
