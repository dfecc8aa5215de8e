//! Ledger operations: read the delivery rows (filtered, paged, with their attempts and
//! WeChat step ids), the latest failures, progress counts, and retry (which rows a retry
//! puts back in the queue).

use super::audit::AuditEntry;
use super::{Missing, Ops, OpsError, Result};
use crate::domain::Actor;
use crate::domain::{ChannelKind, DeliveryStatus};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, StatusCount, WechatJob};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which ledger rows to read. Words (channel, status, since) are parsed here, so every
/// front end refuses the same input with the same field-named error.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery<'a> {
    pub bulletin: Option<i64>,
    /// `email` or `wechat`.
    pub channel: Option<&'a str>,
    /// A delivery status (queued, sending, retrying, held, sent, failed, ...).
    pub status: Option<&'a str>,
    pub recipient: Option<&'a str>,
    /// A search on the address: `@example.org` finds that domain (and only it), anything
    /// else a substring, case-insensitively.
    pub recipient_contains: Option<&'a str>,
    /// An RFC 3339 time, or a duration back from now such as `24h` or `7d`.
    pub since: Option<&'a str>,
    /// Only rows that may have been delivered twice.
    pub ambiguous: bool,
    /// 1 to [`super::MAX_PAGE`].
    pub limit: u32,
    pub offset: u32,
}

/// One ledger row with its attempts (oldest first) and, for WeChat, each step's ids.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub row: DeliveryRow,
    pub history: Vec<AttemptRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat: Option<WechatJob>,
}

/// A page of ledger rows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// Rows matching the filter, over every page.
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
    pub deliveries: Vec<DeliveryDetail>,
}

/// The latest failed rows, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    /// Failed rows in the whole ledger.
    pub total: i64,
    pub rows: Vec<DeliveryRow>,
}

/// Which rows to put back in the queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryInput {
    /// Only this bulletin's rows.
    pub bulletin: Option<i64>,
    /// Only this row.
    pub delivery: Option<i64>,
    /// Every matching row of every bulletin (neither `bulletin` nor `delivery` given).
    pub all: bool,
    /// Rows held after an expired lease (they may have been delivered).
    pub held: bool,
    /// Rows `unconfirmed` (no final reply: they may have been delivered).
    pub unconfirmed: bool,
    /// With `held` or `unconfirmed`: failed rows too (alone, failed rows are the default).
    pub failed: bool,
}

/// What a retry queued again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RetryOutcome {
    pub requeued: u64,
    pub statuses: Vec<DeliveryStatus>,
}

/// Ledger rows by state: a bulletin's progress, as `notice send` follows it and the
/// dashboard shows it per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: u64,
    pub sent: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub unconfirmed: u64,
    /// Accepted by the relay, then bounced (final, and a failure).
    pub bounced: u64,
    /// Waiting for a later try (a temporary failure).
    pub retrying: u64,
    /// Parked after an expired lease: an operator decides (`bulletin retry --held`).
    pub held: u64,
    /// Queued or being sent now.
    pub remaining: u64,
}

impl Progress {
    /// From ledger counts (of one bulletin, or of one of its channels).
    pub fn from_counts<'a>(counts: impl IntoIterator<Item = &'a StatusCount>) -> Self {
        let mut p = Self::default();
        for c in counts {
            let n = c.count.max(0) as u64;
            p.total += n;
            match c.status {
                DeliveryStatus::Sent => p.sent += n,
                DeliveryStatus::Failed => p.failed += n,
                DeliveryStatus::Suppressed => p.suppressed += n,
                DeliveryStatus::Unconfirmed => p.unconfirmed += n,
                DeliveryStatus::Bounced => p.bounced += n,
                DeliveryStatus::Retrying => p.retrying += n,
                DeliveryStatus::Held => p.held += n,
                DeliveryStatus::Queued | DeliveryStatus::Sending => p.remaining += n,
            }
        }
        p
    }

    /// One channel's rows of these counts.
    pub fn of_channel(counts: &[StatusCount], channel: ChannelKind) -> Self {
        Self::from_counts(counts.iter().filter(|c| c.channel == channel))
    }

    /// Rows with a final state.
    pub fn done(&self) -> u64 {
        self.sent + self.failed + self.suppressed + self.unconfirmed + self.bounced
    }

    /// Rows not in a final state: queued, sending, retrying or held.
    pub fn open(&self) -> u64 {
        self.total - self.done()
    }

    /// Nothing is left for the daemon to do (held rows wait for an operator).
    pub fn over(&self) -> bool {
        self.remaining == 0 && self.retrying == 0
    }

    /// Percent of rows in a final state (100 for none at all).
    pub fn percent_done(&self) -> u64 {
        (self.done() * 100).checked_div(self.total).unwrap_or(100)
    }
}

/// `--since` and `?since=`: an RFC 3339 time, or a duration back from `now` (`24h`, `7d`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        OpsError::invalid(
            "since",
            format!(
                "`{}`: give an RFC 3339 time or a duration such as 24h or 7d",
                s.escape_default()
            ),
        )
    };
    let d = humantime::parse_duration(s).map_err(|_| bad())?;
    let d = chrono::Duration::from_std(d).map_err(|_| bad())?;
    now.checked_sub_signed(d).ok_or_else(bad)
}

/// The statuses a retry puts back in the queue: failed rows unless only held or
/// unconfirmed rows are asked for (then failed ones too only with `failed`).
pub fn requeue_statuses(held: bool, unconfirmed: bool, failed: bool) -> Vec<DeliveryStatus> {
    let mut statuses = Vec::new();
    if failed || !(held || unconfirmed) {
        statuses.push(DeliveryStatus::Failed);
    }
    if held {
        statuses.push(DeliveryStatus::Held);
    }
    if unconfirmed {
        statuses.push(DeliveryStatus::Unconfirmed);
    }
    statuses
}

/// The `LIKE` pattern (escape `\`) of a recipient search: `@example.org` matches the
/// addresses of that domain, anything else is a substring; lower-cased, as the ledger
/// keeps addresses.
pub fn recipient_pattern(search: &str) -> String {
    let mut escaped = String::with_capacity(search.len() + 2);
    for c in search.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    if search.starts_with('@') {
        format!("%{escaped}")
    } else {
        format!("%{escaped}%")
    }
}

impl Ops {
    /// The filter a query names, checked (limit 1 to [`super::MAX_PAGE`]).
    pub fn delivery_filter(&self, q: &DeliveryQuery<'_>) -> Result<DeliveryFilter> {
        Ok(DeliveryFilter {
            bulletin: q.bulletin,
            channel: super::parse_opt::<ChannelKind>("channel", q.channel)?,
            status: super::parse_opt::<DeliveryStatus>("status", q.status)?,
            recipient: q.recipient.map(str::to_string),
            recipient_like: q
                .recipient_contains
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(recipient_pattern),
            since: q
                .since
                .map(|s| parse_since(s, self.clock.now()))
                .transpose()?,
            ambiguous_only: q.ambiguous,
            limit: super::check_limit(q.limit)?,
            offset: q.offset,
        })
    }

    /// A page of ledger rows with their attempts (and WeChat step ids), and the total.
    pub async fn deliveries(&self, q: &DeliveryQuery<'_>) -> Result<DeliveryPage> {
        let filter = self.delivery_filter(q)?;
        let rows = self.store.deliveries(&filter).await?;
        let total = self.store.count_deliveries(&filter).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut attempts = self.store.attempts(&ids).await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let wechat = if row.channel == ChannelKind::Wechat {
                self.store.wechat_job(row.id).await?
            } else {
                None
            };
            let (history, rest): (Vec<AttemptRow>, Vec<AttemptRow>) =
                attempts.into_iter().partition(|a| a.delivery_id == row.id);
            attempts = rest;
            deliveries.push(DeliveryDetail {
                row,
                history,
                wechat,
            });
        }
        Ok(DeliveryPage {
            total,
            limit: filter.limit,
            offset: filter.offset,
            deliveries,
        })
    }

    /// The ledger rows a query names (no attempts, no total): a search.
    pub async fn delivery_rows(&self, q: &DeliveryQuery<'_>) -> Result<Vec<DeliveryRow>> {
        let filter = self.delivery_filter(q)?;
        Ok(self.store.deliveries(&filter).await?)
    }

    /// The latest `n` failed rows, newest first, and how many failed in all.
    pub async fn latest_failures(&self, n: u32) -> Result<Failures> {
        let failed = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            ..Default::default()
        };
        let total = self.store.count_deliveries(&failed).await?;
        let mut rows = self
            .store
            .deliveries(&DeliveryFilter {
                limit: n,
                offset: (total - i64::from(n)).max(0) as u32,
                ..failed
            })
            .await?;
        rows.reverse();
        Ok(Failures { total, rows })
    }

    /// Rows failed since `since` (e.g. the last 24 h).
    pub async fn failed_since(&self, since: DateTime<Utc>) -> Result<i64> {
        Ok(self
            .store
            .count_deliveries(&DeliveryFilter {
                status: Some(DeliveryStatus::Failed),
                since: Some(since),
                ..Default::default()
            })
            .await?)
    }

    /// Puts the named rows back in the queue, due now, with a fresh attempt budget, and
    /// wakes the dispatcher. Which statuses: [`requeue_statuses`].
    pub async fn retry(&self, actor: &Actor, input: RetryInput) -> Result<RetryOutcome> {
        if input.bulletin.is_none() && input.delivery.is_none() && !input.all {
            return Err(OpsError::invalid(
                "bulletin",
                "say which deliveries to retry: a bulletin (its failed rows), a delivery \
                 (one row), or all (every failed row in the whole history)",
            ));
        }
        if input.all && (input.bulletin.is_some() || input.delivery.is_some()) {
            return Err(OpsError::invalid(
                "all",
                "all cannot be combined with a bulletin or a delivery",
            ));
        }
        if let Some(id) = input.bulletin {
            if self.store.bulletin(id).await?.is_none() {
                return Err(super::bulletins::no_bulletin(id));
            }
        }
        if let Some(id) = input.delivery {
            if self.store.delivery(id).await?.is_none() {
                return Err(OpsError::not_found(
                    Missing::Delivery,
                    format!("no delivery {id}"),
                ));
            }
        }
        let statuses = requeue_statuses(input.held, input.unconfirmed, input.failed);
        let requeued = self
            .store
            .requeue(input.bulletin, input.delivery, &statuses, self.clock.now())
            .await?;
        if requeued > 0 {
            self.wake.notify_one();
        }
        let object = match (input.bulletin, input.delivery) {
            (_, Some(d)) => format!("delivery:{d}"),
            (Some(b), None) => format!("bulletin:{b}"),
            (None, None) => "deliveries:all".to_string(),
        };
        self.audit(
            actor,
            AuditEntry::new("deliveries.retry", object)
                .after(serde_json::json!({"requeued": requeued, "statuses": statuses})),
        )
        .await;
        Ok(RetryOutcome { requeued, statuses })
    }

    /// A bulletin's progress and, while rows wait for a retry, the earliest retry time.
    pub async fn progress(&self, bulletin: i64) -> Result<(Progress, Option<DateTime<Utc>>)> {
        let p = Progress::from_counts(&self.store.delivery_counts(Some(bulletin)).await?);
        let next_retry = if p.retrying > 0 {
            self.store
                .deliveries(&DeliveryFilter {
                    bulletin: Some(bulletin),
                    status: Some(DeliveryStatus::Retrying),
                    limit: 1000,
                    ..Default::default()
                })
                .await?
                .iter()
                .filter_map(|r| r.next_attempt_at)
                .min()
        } else {
            None
        };
        Ok((p, next_retry))
    }
}

impl Ops {
    /// Rows left `sending` by a process that stopped, taken over now rather than after
    /// their lease (then resent or held as configured). Only for a store nobody else can
    /// be sending from: `serve` calls it on SQLite, under the daemon lock. Returns the
    /// rows.
    pub async fn take_over_leases(&self) -> Result<u64> {
        Ok(self.store.expire_foreign_leases(self.clock.now()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn count(channel: &str, status: &str, n: i64) -> StatusCount {
        StatusCount {
            channel: channel.parse().unwrap(),
            status: status.parse().unwrap(),
            count: n,
        }
    }

    #[test]
    fn since_is_an_rfc3339_time_or_a_duration_back_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert_eq!(
            parse_since("24h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-02T08:30:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 2, 7, 30, 0).unwrap()
        );
        for bad in ["yesterday", "", "24", "-1h"] {
            match parse_since(bad, now) {
                Err(OpsError::Invalid { field, message }) => {
                    assert_eq!(field, "since");
                    assert!(message.contains("RFC 3339"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // Too far back for a time: refused, not a panic.
        assert!(parse_since("99999999999d", now).is_err());
    }

    #[test]
    fn a_retry_requeues_failed_rows_unless_only_held_or_unconfirmed_ones_are_asked_for() {
        use DeliveryStatus::*;
        assert_eq!(requeue_statuses(false, false, false), vec![Failed]);
        assert_eq!(requeue_statuses(false, false, true), vec![Failed]);
        assert_eq!(requeue_statuses(true, false, false), vec![Held]);
        assert_eq!(requeue_statuses(false, true, false), vec![Unconfirmed]);
        assert_eq!(requeue_statuses(true, true, false), vec![Held, Unconfirmed]);
        assert_eq!(
            requeue_statuses(true, true, true),
            vec![Failed, Held, Unconfirmed]
        );
        assert_eq!(requeue_statuses(true, false, true), vec![Failed, Held]);
    }

    #[test]
    fn progress_counts_keep_retrying_held_and_final_states_apart() {
        let counts = [
            count("email", "sent", 5),
            count("email", "failed", 2),
            count("email", "retrying", 3),
            count("email", "held", 1),
            count("email", "queued", 4),
            count("email", "sending", 1),
            count("email", "suppressed", 1),
            count("email", "unconfirmed", 1),
            count("email", "bounced", 2),
            count("wechat", "sent", 1),
        ];
        let p = Progress::from_counts(&counts);
        assert_eq!(
            p,
            Progress {
                total: 21,
                sent: 6,
                failed: 2,
                suppressed: 1,
                unconfirmed: 1,
                bounced: 2,
                retrying: 3,
                held: 1,
                remaining: 5,
            }
        );
        assert_eq!(p.done(), 12);
        assert_eq!(p.open(), 9);
        assert!(!p.over());
        let email = Progress::of_channel(&counts, ChannelKind::Email);
        assert_eq!((email.total, email.sent, email.open()), (20, 5, 9));
        assert_eq!(email.percent_done(), 55);
        let wechat = Progress::of_channel(&counts, ChannelKind::Wechat);
        assert_eq!((wechat.total, wechat.percent_done()), (1, 100));
        assert!(wechat.over());
        // Held rows wait for an operator: they do not keep a follow waiting.
        let held_only = Progress::from_counts(&[count("email", "held", 2)]);
        assert!(held_only.over());
        assert_eq!(held_only.open(), 2);
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ops::testing;

    #[tokio::test]
    async fn a_retry_must_name_its_rows_and_they_must_exist() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        match ops
            .retry(&crate::domain::Actor::local("t"), RetryInput::default())
            .await
        {
            Err(OpsError::Invalid { field, .. }) => assert_eq!(field, "bulletin"),
            other => panic!("{other:?}"),
        }
        let both = RetryInput {
            all: true,
            delivery: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            ops.retry(&crate::domain::Actor::local("t"), both).await,
            Err(OpsError::Invalid { .. })
        ));
        for (input, missing) in [
            (
                RetryInput {
                    bulletin: Some(99),
                    ..Default::default()
                },
                Missing::Bulletin,
            ),
            (
                RetryInput {
                    delivery: Some(99),
                    ..Default::default()
                },
                Missing::Delivery,
            ),
        ] {
            match ops.retry(&crate::domain::Actor::local("t"), input).await {
                Err(OpsError::NotFound { what, .. }) => assert_eq!(what, missing),
                other => panic!("{other:?}"),
            }
        }
        let all = ops
            .retry(
                &crate::domain::Actor::local("t"),
                RetryInput {
                    all: true,
                    held: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (all.requeued, all.statuses),
            (0, vec![DeliveryStatus::Held])
        );
    }

    #[tokio::test]
    async fn a_delivery_query_is_checked_field_by_field() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        let field = |q: DeliveryQuery<'static>| match ops.delivery_filter(&q) {
            Err(OpsError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let ok = DeliveryQuery {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            field(DeliveryQuery {
                channel: Some("fax"),
                ..ok.clone()
            }),
            "channel"
        );
        assert_eq!(
            field(DeliveryQuery {
                status: Some("lost"),
                ..ok.clone()
            }),
            "status"
        );
        assert_eq!(
            field(DeliveryQuery {
                since: Some("yesterday"),
                ..ok.clone()
            }),
            "since"
        );
        assert_eq!(
            field(DeliveryQuery {
                limit: 0,
                ..ok.clone()
            }),
            "limit"
        );
        assert_eq!(
            field(DeliveryQuery {
                limit: 1001,
                ..ok.clone()
            }),
            "limit"
        );
        // `since` counts back from the injected clock.
        let f = ops
            .delivery_filter(&DeliveryQuery {
                since: Some("1h"),
                ..ok
            })
            .unwrap();
        assert_eq!(f.since, Some(t.clock.now() - chrono::Duration::hours(1)));
    }
}
