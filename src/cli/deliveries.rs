//! `bulletin deliveries`: the delivery ledger, filtered and paged, as a table or JSON
//! (WeChat rows with the ids each step got back).

use super::{fmt_time, ops_err, table, Ctx};
use crate::domain::DeliveryStatus;
use crate::ops::deliveries::{DeliveryPage, DeliveryQuery};
use crate::store::{DeliveryRow, WechatJob};

#[derive(clap::Args, Debug)]
pub struct DeliveriesArgs {
    /// Only this bulletin's rows.
    #[arg(long)]
    bulletin: Option<i64>,
    /// Only this channel: email or wechat.
    #[arg(long)]
    channel: Option<String>,
    /// Only rows in this status (queued, sending, retrying, held, sent, failed, ...).
    #[arg(long)]
    status: Option<String>,
    /// Only rows to this address (or WeChat target).
    #[arg(long)]
    recipient: Option<String>,
    /// Only addresses matching this, case-insensitively: `@example.org` is that domain
    /// (and only it), anything else a substring.
    #[arg(long)]
    search: Option<String>,
    /// RFC 3339 time, or a duration back from now such as 24h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only rows that may have been delivered twice (in flight when a process died).
    #[arg(long)]
    ambiguous: bool,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Skip this many rows first (the next page).
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl DeliveriesArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let page = ops
            .deliveries(&DeliveryQuery {
                bulletin: self.bulletin,
                channel: self.channel.as_deref(),
                status: self.status.as_deref(),
                recipient: self.recipient.as_deref(),
                recipient_contains: self.search.as_deref(),
                since: self.since.as_deref(),
                ambiguous: self.ambiguous,
                limit: self.limit,
                offset: self.offset,
            })
            .await
            .map_err(ops_err)?;
        if self.json {
            // Each row with, for WeChat, the ids each step got back (draft, publish,
            // article, msg).
            let v: Vec<_> = page
                .deliveries
                .iter()
                .map(|d| {
                    let mut v = serde_json::to_value(&d.row).expect("row serialises");
                    if let Some(j) = &d.wechat {
                        v["wechat"] = serde_json::to_value(j).expect("job serialises");
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_table(&page);
        }
        Ok(())
    }
}

/// The rows as a table, and a hint at the next page when this one is full.
fn print_table(page: &DeliveryPage) {
    let mut t = table(&[
        "id",
        "bulletin",
        "channel",
        "recipient",
        "status",
        "tries",
        "updated",
        "claimed by",
        "answer",
    ]);
    for d in &page.deliveries {
        let r = &d.row;
        let mut status = r.status.to_string();
        if r.ambiguous {
            status.push_str(" (ambiguous)");
        }
        t.add_row(vec![
            r.id.to_string(),
            r.bulletin_id.to_string(),
            r.channel.to_string(),
            r.recipient.clone(),
            status,
            r.attempts.to_string(),
            fmt_time(Some(r.updated_at)),
            r.claimed_by.clone().unwrap_or_default(),
            answer(r, d.wechat.as_ref()),
        ]);
    }
    println!("{t}");
    if page.deliveries.len() as u32 == page.limit {
        println!("(more rows: use --offset {})", page.offset + page.limit);
    }
}

/// The "answer" column: the error (with the next try) or the message id, and for WeChat
/// rows the ids each step got back.
fn answer(r: &DeliveryRow, job: Option<&WechatJob>) -> String {
    let answer = match (r.status, &r.last_error, &r.next_attempt_at) {
        (DeliveryStatus::Retrying, Some(e), Some(n)) => {
            format!("{e} — next try {}", fmt_time(Some(*n)))
        }
        (_, Some(e), _) => e.clone(),
        _ => r.message_id.clone().unwrap_or_default(),
    };
    let Some(j) = job else {
        return answer;
    };
    let ids = [
        ("draft", &j.draft_media_id),
        ("publish_id", &j.publish_id),
        ("article_id", &j.article_id),
        ("url", &j.article_url),
        ("msg_id", &j.msg_id),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    if answer.is_empty() {
        ids
    } else {
        format!("{answer} [{ids}]")
    }
}
