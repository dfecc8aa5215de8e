//! `bulletin records`: the stored records, their language versions and states, as a
//! table or JSON.

use super::{ops_err, table, Ctx};

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
        let ops = ctx.ops().await?;
        let records = ops.records(self.state.as_deref()).await.map_err(ops_err)?;
        if self.json {
            // Through a JSON value: its keys come out sorted, as they always have.
            let v = serde_json::to_value(&records)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            let mut t = table(&["id", "held on", "versions", "state", "approved by", "title"]);
            for r in &records {
                t.add_row(vec![
                    r.id.clone(),
                    r.held_on.to_string(),
                    // The primary's language first.
                    r.versions.join(", "),
                    r.state.to_string(),
                    r.approved_by.clone().unwrap_or_default(),
                    r.title.clone(),
                ]);
            }
            println!("{t}");
        }
        Ok(())
    }
}
