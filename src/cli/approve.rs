//! `bulletin approve`: a draft record approved, so the next firing sends it.

use super::Ctx;
use anyhow::{anyhow, bail};
use chrono::Utc;

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The record's id.
    id: String,
    /// Who approves (kept on the record).
    #[arg(long)]
    by: String,
}

impl ApproveArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let id = &self.id;
        let by = self.by.trim();
        crate::domain::text::check_line(by, 200, true).map_err(|m| anyhow!("--by {m}"))?;
        if let Some(why) =
            crate::channel::wechat::approval_refusal(&app.config, app.store.as_ref(), id).await?
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
}
