//! Prometheus metrics: counters and histograms the dispatcher and scheduler feed, and the
//! ledger gauges and bounce counts read from the store at scrape time. One registry per `App`. Every label
//! set known in advance (channels × outcomes, the alerting errcodes, the configured
//! schedules' triggers) exists at zero from the start, so `increase()` sees the first
//! event after a restart.

use crate::bounce::BounceKind;
use crate::domain::{ChannelKind, DeliveryStatus};
use crate::store::{OutcomeKind, Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrcodeLabels {
    errcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FiringLabels {
    schedule: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BounceLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LedgerLabels {
    channel: String,
    status: String,
}

fn send_histogram() -> Histogram {
    // 5 ms … ~41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The ledger statuses an outcome can record (`OutcomeKind::status`).
const OUTCOME_STATUSES: &[DeliveryStatus] = &[
    DeliveryStatus::Sent,
    DeliveryStatus::Retrying,
    DeliveryStatus::Failed,
    DeliveryStatus::Suppressed,
    DeliveryStatus::Unconfirmed,
];

/// WeChat errcodes the alert rules watch (quota, IP whitelist).
const ALERTED_ERRCODES: &[i64] = &[45009, 45028, 40164];

fn lag_histogram() -> Histogram {
    // 10 ms … ~82 min
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// The last attempt this process made on a channel (for /readyz).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LastAttempt {
    pub at: chrono::DateTime<chrono::Utc>,
    pub outcome: &'static str,
}

/// The process's metrics.
pub struct Metrics {
    last_attempt: std::sync::Mutex<std::collections::BTreeMap<&'static str, LastAttempt>>,
    registry: Registry,
    deliveries: Family<OutcomeLabels, Counter>,
    send_seconds: Family<ChannelLabels, Histogram, fn() -> Histogram>,
    retries: Family<ChannelLabels, Counter>,
    firings: Family<FiringLabels, Counter>,
    firing_lag: Histogram,
    ledger: Family<LedgerLabels, Gauge>,
    /// Received bounces by kind: the store's counts (which only grow), brought up to date
    /// at each scrape, so bounces ingested by another process (the MTA's pipe) count.
    bounces: Family<BounceLabels, Counter>,
    wechat_errcodes: Family<ErrcodeLabels, Counter>,
    wechat_token_refreshes: Counter,
    channel_pauses: Family<ChannelLabels, Counter>,
    error_storms: Counter,
    ambiguous_resends: Family<ChannelLabels, Counter>,
    store_ready: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bulletin");
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery outcomes recorded in the ledger, by channel and outcome (sent, retrying, failed, suppressed)",
            deliveries.clone(),
        );
        let send_seconds =
            Family::<ChannelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                send_histogram,
            );
        registry.register(
            "send_duration_seconds",
            "Time one delivery attempt spent in its channel (SMTP transaction), by channel",
            send_seconds.clone(),
        );
        let retries = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "delivery_retries",
            "Delivery attempts that were not a row's first attempt, by channel",
            retries.clone(),
        );
        let firings = Family::<FiringLabels, Counter>::default();
        registry.register(
            "scheduler_firings",
            "Schedule firings recorded, by schedule and trigger (cron, catch-up, manual)",
            firings.clone(),
        );
        let firing_lag = lag_histogram();
        registry.register(
            "scheduler_lag_seconds",
            "How late a firing was recorded after its cron time",
            firing_lag.clone(),
        );
        let ledger = Family::<LedgerLabels, Gauge>::default();
        registry.register(
            "ledger_rows",
            "Ledger rows by channel and status, read from the store at scrape time (queued + retrying + sending = the queue)",
            ledger.clone(),
        );
        let bounces = Family::<BounceLabels, Counter>::default();
        registry.register(
            "bounces",
            "Bounces, complaints and replies received after the relay, by kind (hard, soft, delayed, delivered, complaint, auto_reply, unmatched), read from the store at scrape time",
            bounces.clone(),
        );
        for k in BounceKind::ALL {
            let _ = bounces.get_or_create(&BounceLabels {
                kind: k.as_str().into(),
            });
        }
        let wechat_errcodes = Family::<ErrcodeLabels, Counter>::default();
        registry.register(
            "wechat_errcodes",
            "WeChat API errcodes met by deliveries (the errcode table of the WeChat reference, §12)",
            wechat_errcodes.clone(),
        );
        let wechat_token_refreshes = Counter::default();
        registry.register(
            "wechat_token_refreshes",
            "WeChat access tokens fetched (stable_token)",
            wechat_token_refreshes.clone(),
        );
        let channel_pauses = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "channel_pauses",
            "Channel-wide failures that paused a channel (SMTP sender or login refused), by channel",
            channel_pauses.clone(),
        );
        let error_storms = Counter::default();
        registry.register(
            "error_storms",
            "Bulletins paused by an error storm",
            error_storms.clone(),
        );
        let ambiguous_resends = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "ambiguous_resends",
            "Rows sent again although an earlier send may have been delivered (expired lease, lost final reply), by channel",
            ambiguous_resends.clone(),
        );
        let store_ready = Gauge::default();
        registry.register(
            "store_ready",
            "1 if the store answered its readiness check at the last scrape, else 0",
            store_ready.clone(),
        );
        // Every label set known in advance, at zero.
        for ch in ChannelKind::ALL {
            let channel = ch.as_str().to_string();
            for st in OUTCOME_STATUSES {
                let _ = deliveries.get_or_create(&OutcomeLabels {
                    channel: channel.clone(),
                    outcome: st.as_str().to_string(),
                });
            }
            let c = ChannelLabels { channel };
            let _ = send_seconds.get_or_create(&c);
            let _ = retries.get_or_create(&c);
            let _ = channel_pauses.get_or_create(&c);
            let _ = ambiguous_resends.get_or_create(&c);
        }
        for code in ALERTED_ERRCODES {
            let _ = wechat_errcodes.get_or_create(&ErrcodeLabels {
                errcode: code.to_string(),
            });
        }
        Self {
            ambiguous_resends,
            store_ready,
            wechat_errcodes,
            wechat_token_refreshes,
            channel_pauses,
            error_storms,
            last_attempt: Default::default(),
            registry,
            deliveries,
            send_seconds,
            retries,
            firings,
            firing_lag,
            ledger,
            bounces,
        }
    }

    /// One recorded outcome; `elapsed` is the channel time when an attempt was made.
    pub fn outcome(
        &self,
        channel: ChannelKind,
        result: OutcomeKind,
        attempt_before: u32,
        elapsed: Option<Duration>,
    ) {
        let ch = channel.as_str().to_string();
        self.deliveries
            .get_or_create(&OutcomeLabels {
                channel: ch.clone(),
                outcome: result.status().as_str().to_string(),
            })
            .inc();
        if let Some(e) = elapsed {
            if let Ok(mut last) = self.last_attempt.lock() {
                last.insert(
                    channel.as_str(),
                    LastAttempt {
                        at: chrono::Utc::now(),
                        outcome: result.status().as_str(),
                    },
                );
            }
            self.send_seconds
                .get_or_create(&ChannelLabels {
                    channel: ch.clone(),
                })
                .observe(e.as_secs_f64());
            if attempt_before > 0 {
                self.retries
                    .get_or_create(&ChannelLabels { channel: ch })
                    .inc();
            }
        }
    }

    /// Each channel's last attempt by this process (none before the first send).
    pub fn last_attempts(&self) -> std::collections::BTreeMap<&'static str, LastAttempt> {
        self.last_attempt
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// A WeChat errcode was met.
    pub fn wechat_errcode(&self, errcode: i64) {
        self.wechat_errcodes
            .get_or_create(&ErrcodeLabels {
                errcode: errcode.to_string(),
            })
            .inc();
    }

    /// Brings the token-refresh counter up to the client's own count.
    pub fn sync_wechat_token_refreshes(&self, total: u64) {
        let seen = self.wechat_token_refreshes.get();
        if total > seen {
            self.wechat_token_refreshes.inc_by(total - seen);
        }
    }

    /// A channel was paused by a channel-wide failure.
    pub fn channel_paused(&self, channel: ChannelKind) {
        self.channel_pauses
            .get_or_create(&ChannelLabels {
                channel: channel.as_str().to_string(),
            })
            .inc();
    }

    /// A row was sent again although an earlier send may have been delivered.
    pub fn ambiguous_resend(&self, channel: ChannelKind) {
        self.ambiguous_resends
            .get_or_create(&ChannelLabels {
                channel: channel.as_str().to_string(),
            })
            .inc();
    }

    /// Creates the firing counters of the configured schedules at zero (every trigger).
    pub fn known_schedules<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for schedule in names {
            for trigger in crate::store::FiringTrigger::TEXTS {
                let _ = self.firings.get_or_create(&FiringLabels {
                    schedule: schedule.to_string(),
                    trigger: trigger.to_string(),
                });
            }
        }
    }

    /// A bulletin was paused by an error storm.
    pub fn error_storm(&self) {
        self.error_storms.inc();
    }

    /// A firing was recorded `lag` after its fire time.
    pub fn fired(&self, schedule: &str, trigger: &str, lag: Duration) {
        self.firings
            .get_or_create(&FiringLabels {
                schedule: schedule.to_string(),
                trigger: trigger.to_string(),
            })
            .inc();
        self.firing_lag.observe(lag.as_secs_f64());
    }

    /// Reads the ledger gauges and the store's readiness and encodes everything in the
    /// text format.
    pub async fn render(&self, store: &dyn Store) -> Result<String, StoreError> {
        let ready = store.ready().await.is_ok();
        self.store_ready.set(i64::from(ready));
        let counts = match store.delivery_counts(None).await {
            Ok(c) => c,
            // A store that cannot be read still gets its other metrics scraped (with
            // `store_ready` 0), and no stale ledger figure.
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the ledger could not be read");
                self.store_ready.set(0);
                self.ledger.clear();
                return self.encode();
            }
        };
        for ch in ChannelKind::ALL {
            for st in DeliveryStatus::ALL {
                let n = counts
                    .iter()
                    .find(|c| c.channel == *ch && c.status == *st)
                    .map_or(0, |c| c.count);
                self.ledger
                    .get_or_create(&LedgerLabels {
                        channel: ch.as_str().into(),
                        status: st.as_str().into(),
                    })
                    .set(n);
            }
        }
        match store
            .bounce_counts_since(chrono::DateTime::UNIX_EPOCH)
            .await
        {
            Ok(counts) => {
                for (kind, n) in counts {
                    let c = self.bounces.get_or_create(&BounceLabels {
                        kind: kind.as_str().into(),
                    });
                    let n = n.max(0) as u64;
                    if n > c.get() {
                        c.inc_by(n - c.get());
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: the bounces could not be read"),
        }
        self.encode()
    }

    fn encode(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| StoreError::Corrupt(format!("encoding metrics: {e}")))?;
        Ok(out)
    }
}
