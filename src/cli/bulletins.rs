//! `bulletin bulletins`: the latest bulletins with their delivery counts.

use super::{fmt_time, ops_err, table, Ctx};

#[derive(clap::Args, Debug)]
pub struct BulletinsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl BulletinsArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let bulletins = ops.bulletins(100).await.map_err(ops_err)?;
        if self.json {
            let v: Vec<_> = bulletins
                .iter()
                .map(|b| serde_json::json!({
                    "id": b.id, "kind": b.kind, "schedule": b.schedule, "subject": b.subject,
                    "state": b.state, "lists": b.lists, "records": b.records, "created_at": b.created_at,
                    "deliveries": b.deliveries.counts,
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
            for b in &bulletins {
                let counts = b
                    .deliveries
                    .counts
                    .iter()
                    .map(|s| format!("{} {}:{}", s.channel, s.status, s.count))
                    .collect::<Vec<_>>()
                    .join(", ");
                t.add_row(vec![
                    b.id.to_string(),
                    fmt_time(Some(b.created_at)),
                    b.schedule.clone().unwrap_or_default(),
                    b.state.clone(),
                    counts,
                    b.subject.clone(),
                ]);
            }
            println!("{t}");
        }
        Ok(())
    }
}
