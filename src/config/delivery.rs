//! `[delivery]`: batches, retries, leases and their expiry, error storms, bounces.

use super::{ConfigError, EmailTransport, Source};
use crate::domain::delivery::ExpiredLease;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDelivery {
    batch_size: u32,
    max_attempts: u32,
    retry_base_seconds: u64,
    retry_max_seconds: u64,
    deadline_hours: u64,
    lease_seconds: u64,
    on_expired_lease: ExpiredLease,
    poll_interval_ms: u64,
    channel_pause_seconds: u64,
    shutdown_grace_seconds: u64,
    storm_min_attempts: u32,
    storm_failure_share: f64,
    bounce_after_hard_failures: u32,
    unrecorded_max: u32,
    urgent_poll_ms: u64,
    max_unconfirmed_resends: u32,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            batch_size: 200,
            max_attempts: 8,
            retry_base_seconds: 60,
            retry_max_seconds: 3600,
            deadline_hours: 48,
            lease_seconds: 1800,
            on_expired_lease: ExpiredLease::Resend,
            poll_interval_ms: 1000,
            channel_pause_seconds: 300,
            storm_min_attempts: 20,
            storm_failure_share: 0.5,
            bounce_after_hard_failures: 3,
            shutdown_grace_seconds: 30,
            unrecorded_max: 32,
            urgent_poll_ms: 25,
            max_unconfirmed_resends: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub deadline: Duration,
    pub lease: Duration,
    pub on_expired_lease: ExpiredLease,
    pub poll_interval: Duration,
    /// How long a channel rests after a channel-wide failure (login or sender refused).
    pub channel_pause: Duration,
    /// An error storm: at least `storm_min_attempts` attempts of one bulletin on one channel
    /// in a pass, of which at least `storm_failure_share` failed, pauses the bulletin.
    pub storm_min_attempts: u32,
    pub storm_failure_share: f64,
    /// Hard (5xx) failures in this many different bulletins mark an address bounced (0: never).
    pub bounce_after_hard_failures: u32,
    /// On shutdown, how long sends in flight may take before they are abandoned.
    pub shutdown_grace: Duration,
    /// Outcomes that may wait for the ledger at once: the dispatcher writes them in
    /// groups while the next messages go out, and starts no new send while this many wait.
    /// After a crash, at most this many plus the sends in flight were sent but not recorded.
    pub unrecorded_max: usize,
    /// While a pass is sending, how often it looks for urgent rows (notices) queued by
    /// another process, to send them ahead of the rest of its batch.
    pub urgent_poll: Duration,
    /// A row whose message may have been delivered (no final reply) is sent again at
    /// most this many times; after that it ends `unconfirmed`, never `failed`.
    pub max_unconfirmed_resends: u32,
}

impl RawDelivery {
    /// Checks the settings; the lease is checked against the longest SMTP send of
    /// `transport`.
    pub(super) fn validate(
        self,
        src: &Source,
        transport: &EmailTransport,
    ) -> Result<DeliveryConfig, ConfigError> {
        let d = self;
        for (key, v) in [
            ("delivery.batch_size", d.batch_size as u64),
            ("delivery.max_attempts", d.max_attempts as u64),
            ("delivery.lease_seconds", d.lease_seconds),
            ("delivery.retry_base_seconds", d.retry_base_seconds),
            ("delivery.poll_interval_ms", d.poll_interval_ms),
            ("delivery.unrecorded_max", d.unrecorded_max as u64),
            ("delivery.urgent_poll_ms", d.urgent_poll_ms),
        ] {
            if v == 0 {
                return Err(src.error(None, key, "must be at least 1"));
            }
        }
        if let EmailTransport::Smtp(s) = transport {
            check_lease(src, d.lease_seconds, s.longest_wait().as_secs())?;
        }
        if !(d.storm_failure_share > 0.0 && d.storm_failure_share <= 1.0) {
            return Err(src.error(
                None,
                "delivery.storm_failure_share",
                "must be above 0 and at most 1",
            ));
        }
        Ok(DeliveryConfig {
            batch_size: d.batch_size,
            max_attempts: d.max_attempts,
            retry_base: Duration::from_secs(d.retry_base_seconds),
            retry_max: Duration::from_secs(d.retry_max_seconds.max(d.retry_base_seconds)),
            deadline: Duration::from_secs(d.deadline_hours * 3600),
            lease: Duration::from_secs(d.lease_seconds),
            on_expired_lease: d.on_expired_lease,
            poll_interval: Duration::from_millis(d.poll_interval_ms),
            channel_pause: Duration::from_secs(d.channel_pause_seconds.max(1)),
            storm_min_attempts: d.storm_min_attempts.max(1),
            storm_failure_share: d.storm_failure_share,
            bounce_after_hard_failures: d.bounce_after_hard_failures,
            shutdown_grace: Duration::from_secs(d.shutdown_grace_seconds),
            unrecorded_max: d.unrecorded_max as usize,
            urgent_poll: Duration::from_millis(d.urgent_poll_ms),
            max_unconfirmed_resends: d.max_unconfirmed_resends,
        })
    }
}

/// A claim must outlive the longest send it can start, with room to spare: a send that
/// outlasted its lease could be claimed again and sent twice.
fn check_lease(src: &Source, lease_seconds: u64, longest: u64) -> Result<(), ConfigError> {
    if lease_seconds >= 2 * longest {
        return Ok(());
    }
    Err(src.error(
        None,
        "delivery.lease_seconds",
        format!(
            "{lease_seconds} s is too short: one SMTP send may wait up to {longest} s \
             (5 x email.smtp.timeout_seconds + email.smtp.data_timeout_seconds), \
             and the lease must be at least twice that ({} s) so that no send \
             outlives its claim; raise lease_seconds to {}, or lower those \
             timeouts",
            2 * longest,
            2 * longest
        ),
    ))
}
