//! `bulletin bulletins`: the latest bulletins with their delivery counts.

use super::{fmt_time, table, Ctx};

#[derive(clap::Args, Debug)]
pub struct BulletinsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl BulletinsArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let bulletins = app.store.bulletins(100).await?;
        let mut out = Vec::new();
        for b in &bulletins {
            let counts = app.store.delivery_counts(Some(b.id)).await?;
            out.push((b, counts));
        }
        if self.json {
            let v: Vec<_> = out
                .iter()
                .map(|(b, c)| serde_json::json!({
                    "id": b.id, "kind": b.kind, "schedule": b.schedule, "subject": b.subject,
                    "state": b.state, "lists": b.lists, "records": b.record_ids, "created_at": b.created_at,
                    "deliveries": c,
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
            for (b, c) in &out {
                let counts = c
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
