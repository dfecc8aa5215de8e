//! `bulletin approve`: a draft record approved, so the next firing sends it.

use super::{ops_error, Ctx};
use crate::store::ApproveOutcome;

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The record's id.
    id: String,
    /// Who approves (kept on the record and in the audit log); default: the global
    /// `--as`, else `cli:<OS user>`.
    #[arg(long)]
    by: Option<String>,
}

impl ApproveArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let actor = ctx.actor(self.by.as_deref())?;
        let ops = ctx.ops().await?;
        let done = ops
            .approve(&actor, &self.id)
            .await
            .map_err(|e| ops_error(e, &["id"]))?;
        match done.outcome {
            ApproveOutcome::Approved => {
                println!("record `{}` approved by {}", done.id, done.by)
            }
            ApproveOutcome::AlreadyApproved => {
                println!("record `{}` was already approved", done.id)
            }
        }
        Ok(())
    }
}
