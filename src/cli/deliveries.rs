//! `bulletin deliveries`: the delivery ledger, filtered and paged, as a table or JSON
//! (WeChat rows with the ids each step got back).

use super::{fmt_time, table, Ctx};
use crate::domain::{ChannelKind, DeliveryStatus};
use crate::store::{DeliveryFilter, DeliveryRow, WechatJob};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

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
        let app = ctx.app().await?;
        let filter = self.filter()?;
        let rows = app.store.deliveries(&filter).await?;
        // WeChat rows also show the ids each step got back (draft, publish, article, msg).
        let mut wechat = HashMap::new();
        for r in rows
            .iter()
            .filter(|r| r.channel == ChannelKind::Wechat.as_str())
        {
            if let Some(j) = app.store.wechat_job(r.id).await? {
                wechat.insert(r.id, j);
            }
        }
        if self.json {
            let v: Vec<_> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).expect("row serialises");
                    if let Some(j) = wechat.get(&r.id) {
                        v["wechat"] = serde_json::to_value(j).expect("job serialises");
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_table(&rows, &wechat, &filter);
        }
        Ok(())
    }

    /// The store's filter from the options, each checked.
    fn filter(&self) -> anyhow::Result<DeliveryFilter> {
        Ok(DeliveryFilter {
            bulletin: self.bulletin,
            channel: self
                .channel
                .as_deref()
                .map(|c| c.parse::<ChannelKind>())
                .transpose()
                .map_err(|e| anyhow!("--channel: {e}"))?,
            status: self
                .status
                .as_deref()
                .map(|s| s.parse::<DeliveryStatus>())
                .transpose()
                .map_err(|e| anyhow!("--status: {e}"))?,
            recipient: self.recipient.clone(),
            since: self.since.as_deref().map(parse_since).transpose()?,
            ambiguous_only: self.ambiguous,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        anyhow!("--since `{s}`: give an RFC 3339 time or a duration such as 24h or 7d")
    })?;
    Ok(Utc::now() - chrono::Duration::from_std(d)?)
}

/// The rows as a table, and a hint at the next page when this one is full.
fn print_table(rows: &[DeliveryRow], wechat: &HashMap<i64, WechatJob>, filter: &DeliveryFilter) {
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
    for r in rows {
        let mut status = r.status.clone();
        if r.ambiguous {
            status.push_str(" (ambiguous)");
        }
        t.add_row(vec![
            r.id.to_string(),
            r.bulletin_id.to_string(),
            r.channel.clone(),
            r.recipient.clone(),
            status,
            r.attempts.to_string(),
            fmt_time(Some(r.updated_at)),
            r.claimed_by.clone().unwrap_or_default(),
            answer(r, wechat.get(&r.id)),
        ]);
    }
    println!("{t}");
    if rows.len() as u32 == filter.limit {
        println!("(more rows: use --offset {})", filter.offset + filter.limit);
    }
}

/// The "answer" column: the error (with the next try) or the message id, and for WeChat
/// rows the ids each step got back.
fn answer(r: &DeliveryRow, job: Option<&WechatJob>) -> String {
    let answer = match (&r.status[..], &r.last_error, &r.next_attempt_at) {
        ("retrying", Some(e), Some(n)) => {
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
