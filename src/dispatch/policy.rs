//! The dispatcher's rules, without IO: when a failed delivery is tried again (exponential
//! backoff with jitter from an injected source, `max_attempts`, the deadline, the limit on
//! unconfirmed resends), when a bulletin's failures in a pass are an error storm, how many
//! rows a claim takes and a pass holds, and how long `run` rests after a failed pass.

use crate::channel::{FailureKind, SendError};
use crate::config::DeliveryConfig;
use crate::domain::ChannelKind;
use crate::store::OutcomeKind;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// What the retry rules need to know of a claimed row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tries {
    /// Attempts before the one that just failed.
    pub attempts: u32,
    /// Earlier attempts that got no final reply (the message may have been delivered).
    pub unconfirmed: u32,
    /// When the row was queued: the deadline runs from here.
    pub created_at: DateTime<Utc>,
}

/// The retry rules of `[delivery]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryRules {
    /// The wait after the first failed attempt (doubled per attempt after it).
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// Attempts after which a row fails.
    pub max_attempts: u32,
    /// A retry that would come later than this after the row was queued fails instead.
    pub deadline: Duration,
    /// Resends of a message that may have been delivered, after which it ends `unconfirmed`.
    pub max_unconfirmed_resends: u32,
}

impl From<&DeliveryConfig> for RetryRules {
    fn from(c: &DeliveryConfig) -> Self {
        Self {
            base: c.retry_base,
            max: c.retry_max,
            max_attempts: c.max_attempts,
            deadline: c.deadline,
            max_unconfirmed_resends: c.max_unconfirmed_resends,
        }
    }
}

impl RetryRules {
    /// The full backoff after the `attempt`-th attempt (1 for the first), in seconds:
    /// `base`, doubled for each attempt after the first, at most `max`.
    pub fn backoff_secs(&self, attempt: u32) -> f64 {
        let base = self.base.as_secs_f64();
        let max = self.max.as_secs_f64();
        (base * 2f64.powi(attempt as i32 - 1)).min(max)
    }

    /// The wait before trying again after the `attempt`-th attempt failed, in seconds:
    /// anywhere in [full/2, full] of the backoff, so a burst of failures does not retry in
    /// step (`jitter` gives the place, a fraction in [0, 1]; outside it is clamped), and
    /// never shorter than the far side's `retry_after`.
    pub fn delay_secs(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: impl FnOnce() -> f64,
    ) -> f64 {
        let full = self.backoff_secs(attempt);
        let delay = full / 2.0 + jitter().clamp(0.0, 1.0) * (full / 2.0);
        delay.max(retry_after.map_or(0.0, |d| d.as_secs_f64()))
    }

    /// What becomes of a row whose attempt failed with `err` at `now`. A message that may
    /// have been delivered (no final reply) is sent again at most
    /// `max_unconfirmed_resends` times and never ends `failed`: it may be in the mailbox,
    /// and `retry` of failed rows would send yet another copy.
    pub fn after_failure(
        &self,
        tries: Tries,
        err: &SendError,
        now: DateTime<Utc>,
        jitter: impl FnOnce() -> f64,
    ) -> OutcomeKind {
        let kind = self.after_failure_plain(tries, err, now, jitter);
        if err.maybe_delivered
            && err.kind != FailureKind::Pending
            && (kind == OutcomeKind::Failed || tries.unconfirmed >= self.max_unconfirmed_resends)
        {
            return OutcomeKind::Unconfirmed;
        }
        kind
    }

    /// `after_failure` before the unconfirmed rule: permanent fails; `Pending` waits
    /// (`retry_after`, or `base`) without spending an attempt; otherwise a retry after
    /// `delay_secs`, unless the attempts are used up or the retry would pass the deadline.
    fn after_failure_plain(
        &self,
        tries: Tries,
        err: &SendError,
        now: DateTime<Utc>,
        jitter: impl FnOnce() -> f64,
    ) -> OutcomeKind {
        if err.is_permanent() {
            return OutcomeKind::Failed;
        }
        if err.kind == FailureKind::Pending {
            let after = err.retry_after.unwrap_or(self.base);
            return OutcomeKind::Wait {
                at: now
                    + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(60)),
            };
        }
        let attempts = tries.attempts + 1;
        if attempts >= self.max_attempts {
            return OutcomeKind::Failed;
        }
        let delay = self.delay_secs(attempts, err.retry_after, jitter);
        let at = now + chrono::Duration::milliseconds((delay * 1000.0) as i64);
        let deadline = tries.created_at
            + chrono::Duration::from_std(self.deadline).unwrap_or(chrono::Duration::MAX);
        if at > deadline {
            OutcomeKind::Failed
        } else {
            OutcomeKind::Retry { at }
        }
    }
}

/// The error-storm rule: at least `min_attempts` attempts of one bulletin on one channel in
/// a pass, of which at least `failure_share` failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StormRule {
    pub min_attempts: u32,
    pub failure_share: f64,
}

impl From<&DeliveryConfig> for StormRule {
    fn from(c: &DeliveryConfig) -> Self {
        Self {
            min_attempts: c.storm_min_attempts,
            failure_share: c.storm_failure_share,
        }
    }
}

impl StormRule {
    /// Whether `failures` of `attempts` are a storm.
    pub fn is_storm(&self, (attempts, failures): (u32, u32)) -> bool {
        !(attempts < self.min_attempts
            || f64::from(failures) < self.failure_share * f64::from(attempts))
    }
}

/// Attempts and failures per bulletin and channel in one pass, as the storm rule counts
/// them: a sent row is an attempt, a failed or retrying one an attempt that failed; rows
/// that wait, were suppressed or ended unconfirmed do not count.
#[derive(Debug, Default)]
pub(crate) struct StormTally(HashMap<(i64, ChannelKind), (u32, u32)>);

impl StormTally {
    /// Counts one outcome; returns the bulletin's (attempts, failures) on the channel when
    /// the outcome counted.
    pub fn count(
        &mut self,
        bulletin: i64,
        channel: ChannelKind,
        result: &OutcomeKind,
    ) -> Option<(u32, u32)> {
        let failed = matches!(result, OutcomeKind::Failed | OutcomeKind::Retry { .. });
        if !failed && *result != OutcomeKind::Sent {
            return None;
        }
        let t = self.0.entry((bulletin, channel)).or_default();
        t.0 += 1;
        t.1 += u32::from(failed);
        Some(*t)
    }
}

/// Rows claimed at a time: `batch_size` (at least 1), or fewer if a channel's rate limit
/// (`rates`, deliveries per second) could not send that many within half the lease: claims
/// would expire while their rows wait, and be claimed and sent again. At least 1.
pub(crate) fn claim_size(
    batch_size: u32,
    lease: Duration,
    rates: impl IntoIterator<Item = f64>,
) -> u32 {
    let lease = lease.as_secs_f64();
    rates
        .into_iter()
        .map(|rate| (rate * lease / 2.0).floor().max(1.0) as u32)
        .fold(batch_size.max(1), u32::min)
}

/// How much one pass holds, has in flight and leaves unrecorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassLimits {
    /// Rows one claim takes.
    pub claim_size: u32,
    /// Sends in flight at once (the widest channel's concurrency).
    pub concurrency: usize,
    /// Outcomes that may wait for the ledger at once (at least 1).
    pub unrecorded_max: usize,
    /// Sends in flight plus outcomes not yet committed never exceed this (connections +
    /// `unrecorded_max`), so a crash leaves at most this many delivered but unrecorded,
    /// however many sends wait inside a channel for a connection.
    pub budget: usize,
    /// The next claim is made once the queue is this short, early enough to be back before
    /// it runs dry: a quarter of the claim, at least twice the concurrency. Urgent claims
    /// are made while at most this many urgent rows wait, and make this much room.
    pub low_water: usize,
    /// Rows claimed and not yet started never exceed this: the claim plus the low water.
    pub max_held: usize,
    /// Outcomes wait to be written together until this many do (half of
    /// `unrecorded_max`, 1 to 16): each commit appends every page it touched to the WAL,
    /// so one row per commit wrote many times what it changed.
    pub group_min: usize,
}

impl PassLimits {
    pub fn new(
        claim_size: u32,
        concurrency: usize,
        connections: usize,
        unrecorded_max: usize,
    ) -> Self {
        let unrecorded_max = unrecorded_max.max(1);
        let low_water = (claim_size as usize / 4).max(2 * concurrency);
        Self {
            claim_size,
            concurrency,
            unrecorded_max,
            budget: connections + unrecorded_max,
            low_water,
            max_held: claim_size as usize + low_water,
            group_min: (unrecorded_max / 2).clamp(1, 16),
        }
    }

    /// Whether another send may start, with `sending` in flight, `unrecorded` outcomes
    /// waiting and `recording` being committed.
    pub fn may_start(&self, sending: usize, unrecorded: usize, recording: usize) -> bool {
        sending < self.concurrency
            && unrecorded + recording < self.unrecorded_max
            && sending + unrecorded + recording < self.budget
    }

    /// Whether a queue of `queued` rows is short enough for the next claim.
    pub fn wants_refill(&self, queued: usize) -> bool {
        queued <= self.low_water
    }

    /// Rows the next claim takes with `queued` rows held: the room under `max_held`, at
    /// most a claim.
    pub fn refill_size(&self, queued: usize) -> u32 {
        self.claim_size
            .min(self.max_held.saturating_sub(queued) as u32)
    }

    /// Whether an urgent claim is wanted with `urgent` urgent rows waiting.
    pub fn wants_urgent(&self, urgent: usize) -> bool {
        urgent <= self.low_water
    }

    /// Whether routine rows must be handed back for an urgent claim with `queued` held:
    /// while the room under `max_held` is less than the low water.
    pub fn must_make_room(&self, queued: usize) -> bool {
        self.max_held.saturating_sub(queued) < self.low_water
    }

    /// Rows an urgent claim takes with `queued` rows held: the room under `max_held`, at
    /// most a claim.
    pub fn urgent_room(&self, queued: usize) -> u32 {
        self.max_held
            .saturating_sub(queued)
            .min(self.claim_size as usize) as u32
    }
}

/// How long `run` waits after `failures` passes failed in a row (1 after the first):
/// 200 ms, doubling with each failure, at most 30 s, so a store refusing writes (a full
/// disk) is retried, not flooded with passes.
pub(crate) fn failed_pass_backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(9))
        .min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rules() -> RetryRules {
        RetryRules {
            base: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            max_attempts: 5,
            deadline: Duration::from_secs(48 * 3600),
            max_unconfirmed_resends: 1,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    fn tries(attempts: u32) -> Tries {
        Tries {
            attempts,
            unconfirmed: 0,
            created_at: t0(),
        }
    }

    fn retry_in(kind: OutcomeKind) -> f64 {
        match kind {
            OutcomeKind::Retry { at } => (at - t0()).num_milliseconds() as f64 / 1000.0,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn the_first_retry_waits_between_half_the_base_and_the_base() {
        let r = rules();
        assert_eq!(r.backoff_secs(1), 60.0);
        assert_eq!(r.delay_secs(1, None, || 0.0), 30.0);
        assert_eq!(r.delay_secs(1, None, || 1.0), 60.0);
        assert_eq!(r.delay_secs(1, None, || 0.5), 45.0);
        // Through the decision: a first failure (no attempt before it) retries in [30, 60] s.
        let e = SendError::transient("421 try later");
        assert_eq!(retry_in(r.after_failure(tries(0), &e, t0(), || 0.0)), 30.0);
        assert_eq!(retry_in(r.after_failure(tries(0), &e, t0(), || 1.0)), 60.0);
    }

    #[test]
    fn the_backoff_doubles_per_attempt_up_to_the_cap() {
        let r = rules();
        let full: Vec<f64> = (1..=8).map(|a| r.backoff_secs(a)).collect();
        assert_eq!(
            full,
            [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
        );
        // The cap bounds the jittered delay too.
        assert_eq!(r.delay_secs(20, None, || 1.0), 3600.0);
        assert_eq!(r.delay_secs(20, None, || 0.0), 1800.0);
    }

    #[test]
    fn jitter_places_the_delay_within_half_to_all_of_the_backoff() {
        let r = rules();
        for i in 0..=100 {
            let j = f64::from(i) / 100.0;
            let d = r.delay_secs(3, None, || j);
            assert!((120.0..=240.0).contains(&d), "jitter {j}: {d}");
        }
        // A source outside [0, 1] cannot leave the range.
        assert_eq!(r.delay_secs(3, None, || 7.0), 240.0);
        assert_eq!(r.delay_secs(3, None, || -3.0), 120.0);
        // The jitter is drawn once per decision, and only for a retry.
        let mut drawn = 0;
        r.after_failure(tries(0), &SendError::transient("x"), t0(), || {
            drawn += 1;
            0.5
        });
        assert_eq!(drawn, 1);
        r.after_failure(tries(0), &SendError::permanent("x"), t0(), || {
            drawn += 1;
            0.5
        });
        assert_eq!(drawn, 1);
    }

    #[test]
    fn the_far_sides_retry_after_is_a_floor() {
        let r = rules();
        let later = Some(Duration::from_secs(600));
        assert_eq!(r.delay_secs(1, later, || 1.0), 600.0);
        assert_eq!(r.delay_secs(1, Some(Duration::from_secs(1)), || 0.0), 30.0);
    }

    #[test]
    fn attempts_run_out_at_max_attempts() {
        let r = rules();
        let e = SendError::transient("421");
        // The 4th attempt (3 before it) may still retry; the 5th is the last.
        assert!(matches!(
            r.after_failure(tries(3), &e, t0(), || 0.0),
            OutcomeKind::Retry { .. }
        ));
        assert_eq!(
            r.after_failure(tries(4), &e, t0(), || 0.0),
            OutcomeKind::Failed
        );
    }

    #[test]
    fn a_retry_past_the_deadline_fails() {
        let r = RetryRules {
            deadline: Duration::from_secs(100),
            ..rules()
        };
        let e = SendError::transient("421");
        // 30 s (no jitter) is within the deadline, 60 s is too, and 80 s after queueing
        // plus 30 s is not.
        assert!(matches!(
            r.after_failure(tries(0), &e, t0(), || 0.0),
            OutcomeKind::Retry { .. }
        ));
        let now = t0() + chrono::Duration::seconds(40);
        assert!(matches!(
            r.after_failure(tries(0), &e, now, || 1.0),
            OutcomeKind::Retry { .. }
        ));
        let now = t0() + chrono::Duration::seconds(80);
        assert_eq!(
            r.after_failure(tries(0), &e, now, || 0.0),
            OutcomeKind::Failed
        );
    }

    #[test]
    fn permanent_fails_and_pending_waits_without_an_attempt() {
        let r = rules();
        assert_eq!(
            r.after_failure(tries(0), &SendError::permanent("550"), t0(), || 0.0),
            OutcomeKind::Failed
        );
        // Pending waits as long as the far side asks, even with the attempts used up.
        let p = SendError::pending("publishing", Duration::from_secs(15));
        assert_eq!(
            r.after_failure(tries(9), &p, t0(), || 0.0),
            OutcomeKind::Wait {
                at: t0() + chrono::Duration::seconds(15)
            }
        );
        let p = SendError {
            retry_after: None,
            ..p
        };
        assert_eq!(
            r.after_failure(tries(0), &p, t0(), || 0.0),
            OutcomeKind::Wait {
                at: t0() + chrono::Duration::seconds(60)
            }
        );
    }

    #[test]
    fn a_message_that_may_have_been_delivered_never_ends_failed() {
        let r = rules();
        let lost = SendError {
            maybe_delivered: true,
            ..SendError::transient("connection lost after DATA")
        };
        // First time: resent.
        assert!(matches!(
            r.after_failure(tries(0), &lost, t0(), || 0.0),
            OutcomeKind::Retry { .. }
        ));
        // Resends used up: unconfirmed.
        let resent = Tries {
            unconfirmed: 1,
            ..tries(1)
        };
        assert_eq!(
            r.after_failure(resent, &lost, t0(), || 0.0),
            OutcomeKind::Unconfirmed
        );
        // Attempts used up: unconfirmed, not failed.
        assert_eq!(
            r.after_failure(tries(4), &lost, t0(), || 0.0),
            OutcomeKind::Unconfirmed
        );
        // A permanent answer after DATA that may have been delivered: unconfirmed too.
        let perm = SendError {
            maybe_delivered: true,
            ..SendError::permanent("554")
        };
        assert_eq!(
            r.after_failure(tries(0), &perm, t0(), || 0.0),
            OutcomeKind::Unconfirmed
        );
    }

    #[test]
    fn a_storm_needs_both_enough_attempts_and_enough_failures() {
        let s = StormRule {
            min_attempts: 20,
            failure_share: 0.5,
        };
        assert!(!s.is_storm((19, 19)), "too few attempts");
        assert!(s.is_storm((20, 10)), "exactly at both thresholds");
        assert!(!s.is_storm((20, 9)), "just under the share");
        assert!(s.is_storm((100, 100)));
        assert!(!s.is_storm((100, 49)));
    }

    #[test]
    fn the_tally_counts_sent_and_failed_only_per_bulletin_and_channel() {
        let mut t = StormTally::default();
        let at = t0();
        assert_eq!(
            t.count(1, ChannelKind::Email, &OutcomeKind::Sent),
            Some((1, 0))
        );
        assert_eq!(
            t.count(1, ChannelKind::Email, &OutcomeKind::Failed),
            Some((2, 1))
        );
        assert_eq!(
            t.count(1, ChannelKind::Email, &OutcomeKind::Retry { at }),
            Some((3, 2))
        );
        for uncounted in [
            OutcomeKind::Wait { at },
            OutcomeKind::Suppressed,
            OutcomeKind::Unconfirmed,
        ] {
            assert_eq!(t.count(1, ChannelKind::Email, &uncounted), None);
        }
        assert_eq!(
            t.count(1, ChannelKind::Wechat, &OutcomeKind::Failed),
            Some((1, 1))
        );
        assert_eq!(
            t.count(2, ChannelKind::Email, &OutcomeKind::Sent),
            Some((1, 0))
        );
        assert_eq!(
            t.count(1, ChannelKind::Email, &OutcomeKind::Sent),
            Some((4, 2))
        );
    }

    #[test]
    fn a_claim_is_the_batch_unless_a_rate_limit_cannot_send_it_in_half_a_lease() {
        let lease = Duration::from_secs(60);
        assert_eq!(claim_size(500, lease, []), 500);
        assert_eq!(claim_size(0, lease, []), 1, "at least one row");
        // 10/s for 30 s: 300.
        assert_eq!(claim_size(500, lease, [10.0]), 300);
        assert_eq!(claim_size(500, lease, [100.0]), 500);
        // The slowest channel decides.
        assert_eq!(claim_size(500, lease, [100.0, 2.0, 10.0]), 60);
        // Too slow for even one row in half a lease: still one.
        assert_eq!(claim_size(500, lease, [0.001]), 1);
        // Fractions round down.
        assert_eq!(claim_size(500, Duration::from_secs(3), [3.0]), 4);
    }

    #[test]
    fn a_pass_holds_at_most_a_claim_plus_the_low_water() {
        // A quarter of the claim when that is more than twice the concurrency.
        let l = PassLimits::new(500, 8, 4, 32);
        assert_eq!(l.low_water, 125);
        assert_eq!(l.max_held, 625);
        assert_eq!(l.max_held, l.claim_size as usize + l.low_water);
        // Twice the concurrency otherwise.
        let l = PassLimits::new(40, 16, 8, 32);
        assert_eq!(l.low_water, 32);
        assert_eq!(l.max_held, 72);
        // Refills come at the low water and fill up to max_held, at most a claim.
        let l = PassLimits::new(500, 8, 4, 32);
        assert!(!l.wants_refill(126));
        assert!(l.wants_refill(125));
        assert_eq!(l.refill_size(125), 500);
        assert_eq!(l.refill_size(200), 425);
        assert_eq!(l.refill_size(700), 0);
        // Urgent claims: wanted while at most the low water of urgent rows wait; room is
        // made (routine rows handed back) while less than the low water is left.
        assert!(l.wants_urgent(125));
        assert!(!l.wants_urgent(126));
        assert!(!l.must_make_room(500));
        assert!(l.must_make_room(501));
        assert_eq!(l.urgent_room(500), 125);
        assert_eq!(l.urgent_room(0), 500);
        assert_eq!(l.urgent_room(625), 0);
    }

    #[test]
    fn sends_start_within_the_concurrency_and_the_unrecorded_budget() {
        let l = PassLimits::new(500, 8, 4, 32);
        assert_eq!((l.budget, l.group_min), (36, 16));
        assert!(l.may_start(7, 0, 0));
        assert!(!l.may_start(8, 0, 0), "concurrency");
        assert!(l.may_start(0, 31, 0));
        assert!(!l.may_start(0, 16, 16), "unrecorded_max");
        assert!(l.may_start(4, 31, 0));
        assert!(!l.may_start(5, 31, 0), "connections + unrecorded_max");
        // unrecorded_max 0 means 1, and a group is never less than one outcome.
        let l = PassLimits::new(500, 8, 4, 0);
        assert_eq!((l.unrecorded_max, l.budget, l.group_min), (1, 5, 1));
        assert!(l.may_start(0, 0, 0));
        assert!(!l.may_start(0, 0, 1));
        assert_eq!(PassLimits::new(500, 8, 4, 10).group_min, 5);
    }

    #[test]
    fn a_failed_pass_waits_doubling_up_to_30_seconds() {
        let ms = |f| failed_pass_backoff(f).as_millis();
        assert_eq!(ms(1), 200);
        assert_eq!(ms(2), 400);
        assert_eq!(ms(3), 800);
        assert_eq!(ms(8), 25_600);
        assert_eq!(ms(9), 30_000);
        assert_eq!(ms(10), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
        for f in 1..8 {
            assert_eq!(ms(f + 1), 2 * ms(f));
        }
    }
}
