//! `bulletin records`: the stored records and their states, as a table or JSON.

use super::{table, Ctx};
use crate::domain::RecordState;
use anyhow::anyhow;

#[derive(clap::Args, Debug)]
pub struct RecordsArgs {
    /// Only records in this state: draft, approved or published.
    #[arg(long)]
    state: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl RecordsArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let state = self
            .state
            .as_deref()
            .map(|s| s.parse::<RecordState>())
            .transpose()
            .map_err(|e| anyhow!("--state: {e}"))?;
        let records = app.store.records(state).await?;
        if self.json {
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
}
