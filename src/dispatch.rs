//! The dispatcher: claim due ledger rows (committed as `sending` under a lease before any
//! network call), deliver them through their channel, record each outcome, and schedule
//! retries with exponential backoff and jitter. It never holds a transaction across a send.

use crate::channel::{Channel, Job, PreparedBulletin, SendError};
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::domain::ChannelKind;
use crate::metrics::Metrics;
use crate::render::image_cid;
use crate::store::{Claimed, Outcome, OutcomeKind, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

/// Counts from one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub claimed: usize,
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
    pub suppressed: usize,
}

impl PassReport {
    fn add(&mut self, o: &PassReport) {
        self.claimed += o.claimed;
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.suppressed += o.suppressed;
    }
}

/// An outcome waiting for the ledger, with what the steps after its commit need.
struct Recorded {
    outcome: Outcome,
    channel: ChannelKind,
    recipient: String,
}

/// How long an outcome may wait for others to be written with it.
const GROUP_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Store work of a pass, run one at a time beside the sends.
enum DbJob {
    Record(Vec<Recorded>),
    Pause(i64),
    /// Hands these claimed, unstarted rows back (then, with `urgent > 0`, claims up to
    /// that many urgent rows, which go first).
    ClaimUrgent {
        release: Vec<Claimed>,
        urgent: u32,
    },
    /// The next batch (this many rows), claimed while the rest of this one sends.
    Refill(u32),
    /// Which of these bulletins stopped `sending` (paused by an operator or another
    /// process, or done).
    Watch(Vec<i64>),
    /// Hands claimed rows whose send never started back.
    Release(Vec<Claimed>),
}

enum DbDone {
    Recorded,
    Paused,
    /// Urgent rows: they go first.
    Claimed(Vec<Claimed>),
    /// The next batch: it goes last.
    Refilled(Vec<Claimed>),
    /// Of the bulletins watched, those no longer sending.
    Stopped {
        watched: Vec<i64>,
        stopped: Vec<i64>,
    },
    Released,
}

/// What became of one claimed row in a pass.
enum Delivered {
    /// Attempted (or deliberately not): its outcome goes to the ledger.
    Done(Outcome),
    /// Never started (its bulletin was paused, or the process is stopping): handed back
    /// as it was, no attempt spent.
    Unstarted(Claimed),
}

/// Claims and sends deliveries.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    config: DeliveryConfig,
    clock: Arc<dyn Clock>,
    prepared: Mutex<HashMap<i64, Arc<PreparedBulletin>>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Channels resting after a channel-wide failure, until when, and why.
    halted: std::sync::Mutex<HashMap<ChannelKind, (DateTime<Utc>, String)>>,
    /// Bulletins paused by an error storm during the current pass: their remaining rows
    /// are not attempted.
    stormed: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Bulletins found paused (or done) during the current pass: no new send of theirs
    /// starts, and their unstarted rows are handed back.
    halted_bulletins: std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        channels: Vec<Arc<dyn Channel>>,
        config: DeliveryConfig,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            channels: channels.into_iter().map(|c| (c.kind(), c)).collect(),
            config,
            clock,
            prepared: Mutex::new(HashMap::new()),
            wake,
            metrics: Arc::new(Metrics::new()),
            halted: std::sync::Mutex::new(HashMap::new()),
            stormed: std::sync::Mutex::new(std::collections::HashSet::new()),
            halted_bulletins: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn is_halted_bulletin(&self, bulletin: i64) -> bool {
        self.halted_bulletins
            .lock()
            .expect("pause lock")
            .contains(&bulletin)
    }

    /// Whether a bulletin's failures in this pass reach the storm threshold for the first
    /// time: its remaining rows are then not attempted, and the caller pauses it.
    fn is_storm(
        &self,
        bulletin: i64,
        channel: ChannelKind,
        (attempts, failures): (u32, u32),
    ) -> bool {
        if attempts < self.config.storm_min_attempts
            || f64::from(failures) < self.config.storm_failure_share * f64::from(attempts)
        {
            return false;
        }
        if !self.stormed.lock().expect("storm lock").insert(bulletin) {
            return false;
        }
        self.metrics.error_storm();
        tracing::error!(
            bulletin, channel = %channel, attempts, failures,
            "error storm: bulletin paused; find the cause in its failures, then resume it"
        );
        true
    }

    /// The time a halted channel may be used again, if it is resting now.
    fn halted_until(
        &self,
        channel: ChannelKind,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, String)> {
        let halted = self.halted.lock().expect("halt lock");
        halted
            .get(&channel)
            .filter(|(until, _)| *until > now)
            .cloned()
    }

    /// Rests `channel` for `delivery.channel_pause` after a channel-wide failure: its rows
    /// wait (no attempt spent) instead of failing one by one, and the operator is told.
    fn halt(&self, channel: ChannelKind, why: &str) -> DateTime<Utc> {
        let until = self.clock.now()
            + chrono::Duration::from_std(self.config.channel_pause)
                .unwrap_or(chrono::Duration::minutes(5));
        let mut halted = self.halted.lock().expect("halt lock");
        let fresh = halted.get(&channel).is_none_or(|(u, _)| *u < until);
        if fresh {
            self.metrics.channel_paused(channel);
            tracing::error!(channel = %channel, until = %until, reason = why, "channel paused: the problem is the channel's, not the recipients' — fix it; sending resumes by itself");
            halted.insert(channel, (until, why.to_string()));
        }
        until
    }

    /// Records outcomes and send times into `metrics` (the App's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The largest of a per-channel figure over the configured channels (at least 1).
    fn widest(&self, figure: impl Fn(&dyn Channel) -> usize) -> usize {
        self.channels
            .values()
            .map(|c| figure(c.as_ref()))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Rows claimed at a time: `delivery.batch_size`, or fewer if a channel's rate limit
    /// could not send that many within half the lease (claims would expire while their
    /// rows wait, and be claimed and sent again).
    fn claim_size(&self) -> u32 {
        let lease = self.config.lease.as_secs_f64();
        self.channels
            .values()
            .filter_map(|c| c.max_rate())
            .map(|rate| (rate * lease / 2.0).floor().max(1.0) as u32)
            .fold(self.config.batch_size.max(1), u32::min)
    }

    /// Loads a bulletin's snapshot and images once, then serves it from memory.
    async fn prepared(&self, id: i64) -> Result<Arc<PreparedBulletin>, StoreError> {
        let mut cache = self.prepared.lock().await;
        if let Some(p) = cache.get(&id) {
            return Ok(p.clone());
        }
        let b = self
            .store
            .bulletin(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("bulletin {id}")))?;
        let mut images = Vec::new();
        for rid in &b.record_ids {
            for (i, im) in self.store.record_images(rid).await?.into_iter().enumerate() {
                images.push((image_cid(rid, i), im));
            }
        }
        let p = Arc::new(PreparedBulletin {
            id,
            kind: b.kind,
            language: b.language,
            subject: b.subject,
            html: b.html,
            text: b.text,
            images,
            wechat: b.wechat,
            email_bodies: Default::default(),
        });
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(id, p.clone());
        Ok(p)
    }

    fn retry_or_fail(&self, c: &Claimed, err: &SendError, now: DateTime<Utc>) -> OutcomeKind {
        let kind = self.retry_or_fail_plain(c, err, now);
        // A message that may have been delivered (no final reply) is sent again at most
        // `max_unconfirmed_resends` times, and never ends `failed`: it may be in the
        // mailbox, and `retry` of failed rows would send yet another copy.
        if err.maybe_delivered
            && err.kind != crate::channel::FailureKind::Pending
            && (kind == OutcomeKind::Failed || c.unconfirmed >= self.config.max_unconfirmed_resends)
        {
            return OutcomeKind::Unconfirmed;
        }
        kind
    }

    fn retry_or_fail_plain(&self, c: &Claimed, err: &SendError, now: DateTime<Utc>) -> OutcomeKind {
        if err.is_permanent() {
            return OutcomeKind::Failed;
        }
        if err.kind == crate::channel::FailureKind::Pending {
            let after = err.retry_after.unwrap_or(self.config.retry_base);
            return OutcomeKind::Wait {
                at: now
                    + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(60)),
            };
        }
        let attempts = c.attempts + 1;
        if attempts >= self.config.max_attempts {
            return OutcomeKind::Failed;
        }
        let base = self.config.retry_base.as_secs_f64();
        let max = self.config.retry_max.as_secs_f64();
        let full = (base * 2f64.powi(attempts as i32 - 1)).min(max);
        // Jitter: anywhere in [full/2, full], so a burst of failures does not retry in step.
        let delay = full / 2.0 + rand::rng().random_range(0.0..=full / 2.0);
        let delay = delay.max(err.retry_after.map_or(0.0, |d| d.as_secs_f64()));
        let at = now + chrono::Duration::milliseconds((delay * 1000.0) as i64);
        let deadline = c.created_at
            + chrono::Duration::from_std(self.config.deadline).unwrap_or(chrono::Duration::MAX);
        if at > deadline {
            OutcomeKind::Failed
        } else {
            OutcomeKind::Retry { at }
        }
    }

    /// Whether a claimed row may start now: not if its bulletin was paused meanwhile or
    /// the process is stopping (`stop`).
    fn may_start(&self, c: &Claimed, stop: Option<&CancellationToken>) -> bool {
        !stop.is_some_and(|s| s.is_cancelled()) && !self.is_halted_bulletin(c.bulletin_id)
    }

    /// Delivers one claimed row, unless it must not start (see `may_start`): then it is
    /// handed back untouched.
    async fn deliver_or_return(&self, c: Claimed, stop: Option<&CancellationToken>) -> Delivered {
        if !self.may_start(&c, stop) {
            return Delivered::Unstarted(c);
        }
        if let Some(channel) = self.channels.get(&c.channel) {
            if c.suppressed_because.is_none() {
                // The rate limit's wait comes before the send starts, so a pause or a
                // shutdown that arrives meanwhile still stops it.
                channel.admit().await;
                if !self.may_start(&c, stop) {
                    return Delivered::Unstarted(c);
                }
            }
        }
        Delivered::Done(self.deliver_one(c).await)
    }

    async fn deliver_one(&self, c: Claimed) -> Outcome {
        let started = self.clock.now();
        let outcome = |result, code: Option<i64>, reply: String, message_id| Outcome {
            delivery_id: c.id,
            started_at: started,
            finished_at: self.clock.now(),
            result,
            code,
            reply,
            message_id,
            maybe_delivered: false,
            lease_until: Some(c.lease_until),
        };
        // A claim that could expire before the send ends (its channel's longest wait) is
        // given back unsent, as is one in its last quarter: once it expires another
        // instance may claim the row again, and both would send it.
        let max_wait = self
            .channels
            .get(&c.channel)
            .map_or(std::time::Duration::ZERO, |ch| ch.max_wait());
        let margin = (self.config.lease / 4).max(max_wait);
        if c.lease_until - started < chrono::Duration::from_std(margin).unwrap_or_default() {
            return outcome(
                OutcomeKind::Wait { at: started },
                None,
                "not attempted: its claim was about to expire (the batch took longer than \
                 delivery.lease_seconds allows); it is due again"
                    .into(),
                None,
            );
        }
        if let Some(why) = &c.suppressed_because {
            self.metrics
                .outcome(c.channel, OutcomeKind::Suppressed, c.attempts, None);
            return outcome(
                OutcomeKind::Suppressed,
                None,
                format!("not sent: {why}"),
                None,
            );
        }
        if self
            .stormed
            .lock()
            .expect("storm lock")
            .contains(&c.bulletin_id)
        {
            return outcome(
                OutcomeKind::Wait { at: started },
                None,
                "not attempted: the bulletin was paused by an error storm; resume it to continue"
                    .into(),
                None,
            );
        }
        if let Some((until, why)) = self.halted_until(c.channel, started) {
            return outcome(
                OutcomeKind::Wait { at: until },
                None,
                format!(
                    "not attempted: the {} channel is paused until {until} ({why})",
                    c.channel
                ),
                None,
            );
        }
        let Some(channel) = self.channels.get(&c.channel) else {
            let e = SendError::transient(format!(
                "channel `{}` is not configured on this instance",
                c.channel
            ));
            return outcome(self.retry_or_fail(&c, &e, started), None, e.message, None);
        };
        let bulletin = match self.prepared(c.bulletin_id).await {
            Ok(b) => b,
            Err(e) => {
                let e = SendError::transient(format!("cannot load bulletin: {e}"));
                return outcome(self.retry_or_fail(&c, &e, started), None, e.message, None);
            }
        };
        if c.ambiguous {
            let reason = match (&c.taken_from, c.unconfirmed) {
                (Some(holder), _) => format!(
                    "its claim by {holder} expired while the row was being sent (that process \
                     stopped mid-send?)"
                ),
                (None, n) if n > 0 => format!(
                    "{n} earlier attempt(s) got no final reply: the message may have been delivered"
                ),
                _ => "an earlier attempt may have been delivered".to_string(),
            };
            warn!(
                delivery = c.id, bulletin = c.bulletin_id, channel = %c.channel,
                recipient = %c.recipient, attempts = c.attempts, reason = %reason,
                "resending an ambiguous delivery: the recipient may get it twice"
            );
            self.metrics.ambiguous_resend(c.channel);
        }
        // One span per bulletin, a child per delivery: log lines carry both ids.
        let bulletin_span = tracing::info_span!("bulletin", id = c.bulletin_id);
        let span = tracing::info_span!(parent: &bulletin_span, "delivery", id = c.id, channel = %c.channel);
        let timer = std::time::Instant::now();
        let result = channel
            .deliver(Job {
                delivery: &c,
                bulletin: &bulletin,
            })
            .instrument(span)
            .await;
        let elapsed = timer.elapsed();
        if c.channel == ChannelKind::Wechat {
            if let Err(e) = &result {
                // WeChat errcodes are -1 or five digits; HTTP statuses are not counted here.
                if let Some(code) = e.code.filter(|c| *c == -1 || *c >= 40000) {
                    self.metrics.wechat_errcode(code);
                }
            }
            if let Some(w) = self.channels.get(&ChannelKind::Wechat) {
                self.metrics
                    .sync_wechat_token_refreshes(w.token_refreshes());
            }
        }
        let o = match result {
            Ok(r) => outcome(OutcomeKind::Sent, r.code, r.reply, r.message_id),
            Err(e) if e.halt_channel => {
                let until = self.halt(c.channel, &e.message);
                outcome(
                    OutcomeKind::Wait { at: until },
                    e.code,
                    e.message.clone(),
                    None,
                )
            }
            Err(e) => {
                let now = self.clock.now();
                let kind = self.retry_or_fail(&c, &e, now);
                let reply = if e.maybe_delivered {
                    format!("{e} (the message may have been delivered)")
                } else {
                    e.to_string()
                };
                if e.kind == crate::channel::FailureKind::Pending {
                    tracing::info!(delivery = c.id, recipient = %c.recipient, status = %reply, "waiting on the far side");
                } else {
                    warn!(delivery = c.id, recipient = %c.recipient, error = %reply, outcome = ?kind, "delivery attempt failed");
                }
                Outcome {
                    maybe_delivered: e.maybe_delivered,
                    ..outcome(kind, e.code, reply, e.message_id.clone())
                }
            }
        };
        self.metrics
            .outcome(c.channel, o.result, c.attempts, Some(elapsed));
        o
    }

    /// Claims one batch of due rows and delivers it. Returns what happened.
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        self.pass(None).await
    }

    /// Claims a batch of due rows and delivers it. With `refill_until`, the next batch is
    /// claimed while the end of this one sends (when this one was full, until the token
    /// is cancelled), so the sends do not wait for a claim between batches; without it,
    /// one batch.
    ///
    /// Sends run `concurrency` at a time. Their outcomes are written to the ledger in
    /// groups, one transaction per group, while the next messages go out; no new send
    /// starts while `delivery.unrecorded_max` outcomes wait, nor while sends in flight and
    /// outcomes waiting together reach `connections + unrecorded_max`, which bounds what
    /// a crash can leave sent but unrecorded. Urgent rows (notices) queued meanwhile,
    /// announced by a wake-up or found by polling every `delivery.urgent_poll`, are
    /// claimed and go ahead of the rest of the batch.
    ///
    /// Rows claimed and not yet started never exceed `max_held` (1.25 x the claim size):
    /// an urgent claim takes only the room left, handing back routine rows from the end
    /// of the queue to make it. A bulletin paused meanwhile (found at the same poll)
    /// starts no new send and its unstarted rows are handed back; once `refill_until` is
    /// cancelled (shutdown), every unstarted row is handed back and only the sends in
    /// flight finish. Returns once every outcome is recorded.
    async fn pass(
        &self,
        refill_until: Option<&CancellationToken>,
    ) -> Result<PassReport, StoreError> {
        let now = self.clock.now();
        let claim_size = self.claim_size();
        let claimed = self
            .store
            .claim_due(
                now,
                claim_size,
                self.config.lease,
                self.config.on_expired_lease,
            )
            .await?;
        let mut report = PassReport {
            claimed: claimed.len(),
            ..Default::default()
        };
        if claimed.is_empty() {
            return Ok(report);
        }
        self.log_takeovers(&claimed);
        let concurrency = self.widest(|c| c.concurrency());
        let connections = self.widest(|c| c.connections());
        let unrecorded_max = self.config.unrecorded_max.max(1);
        // Deliveries in flight plus outcomes not yet committed never exceed this, so a
        // crash leaves at most this many delivered but unrecorded, however many sends
        // wait inside a channel for a connection.
        let budget = connections + unrecorded_max;
        self.stormed.lock().expect("storm lock").clear();
        self.halted_bulletins.lock().expect("pause lock").clear();
        let mut tally: HashMap<(i64, ChannelKind), (u32, u32)> = HashMap::new();
        // More may be due if the last claim was full; the next one is made once the queue
        // is this short, early enough to be back before it runs dry.
        let mut more_due = claimed.len() >= claim_size as usize;
        let low_water = (claim_size as usize / 4).max(2 * concurrency);
        let max_held = claim_size as usize + low_water;
        let mut refilling = false;
        let mut queue: VecDeque<Claimed> = claimed.into();
        let mut sending = FuturesUnordered::new();
        // Store work of the pass runs one job at a time in `db`, polled alongside the sends:
        // a job holding a write transaction is never left unpolled while another waits for
        // the lock. Waiting: outcomes to record, bulletins to pause, an urgent claim.
        let mut db = FuturesUnordered::new();
        let mut unrecorded: Vec<Recorded> = Vec::new();
        let mut recording = 0;
        let mut to_pause: Vec<i64> = Vec::new();
        let mut to_release: Vec<Claimed> = Vec::new();
        // Sends in flight per bulletin (watched for a pause too: some wait for the rate limit).
        let mut inflight: HashMap<i64, usize> = HashMap::new();
        let mut urgent_wanted = false;
        let mut watch_wanted = false;
        let mut newly_halted = false;
        let mut stopped = false;
        // Outcomes wait a little to be written together: each commit appends every page it
        // touched to the WAL, so one row per commit wrote many times what it changed.
        let group_min = (unrecorded_max / 2).clamp(1, 16);
        let mut oldest_unrecorded = tokio::time::Instant::now();
        let mut urgent_poll = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.urgent_poll,
            self.config.urgent_poll,
        );
        urgent_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let never = CancellationToken::new();
        let stop = refill_until.unwrap_or(&never);
        loop {
            if stop.is_cancelled() {
                // Shutdown: nothing new starts; what was claimed and not started goes back
                // (also rows a claim in flight at the moment of the stop brought in).
                stopped = true;
                more_due = false;
                urgent_wanted = false;
                to_release.extend(queue.drain(..));
            }
            // Rows of bulletins paused meanwhile do not start: they go back (looked for
            // when a pause was found; claims never bring in a paused bulletin's rows).
            if std::mem::take(&mut newly_halted) && !queue.is_empty() {
                let (back, keep): (VecDeque<Claimed>, VecDeque<Claimed>) = queue
                    .drain(..)
                    .partition(|c| self.is_halted_bulletin(c.bulletin_id));
                queue = keep;
                to_release.extend(back);
            }
            while sending.len() < concurrency
                && unrecorded.len() + recording < unrecorded_max
                && sending.len() + unrecorded.len() + recording < budget
            {
                let Some(c) = queue.pop_front() else { break };
                *inflight.entry(c.bulletin_id).or_default() += 1;
                let key = (c.bulletin_id, c.channel, c.recipient.clone());
                sending.push(async move { (key, self.deliver_or_return(c, refill_until).await) });
            }
            if db.is_empty() {
                let job = if let Some(b) = to_pause.pop() {
                    Some(DbJob::Pause(b))
                } else if !to_release.is_empty() {
                    Some(DbJob::Release(std::mem::take(&mut to_release)))
                } else if urgent_wanted {
                    urgent_wanted = false;
                    self.urgent_job(&mut queue, claim_size, low_water, max_held)
                } else if watch_wanted {
                    watch_wanted = false;
                    let mut ids: Vec<i64> = queue
                        .iter()
                        .map(|c| c.bulletin_id)
                        .chain(inflight.keys().copied())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    (!ids.is_empty()).then_some(DbJob::Watch(ids))
                } else if !unrecorded.is_empty()
                    && (unrecorded.len() >= group_min
                        || sending.is_empty()
                        || oldest_unrecorded.elapsed() >= GROUP_LINGER)
                {
                    let group = std::mem::take(&mut unrecorded);
                    recording = group.len();
                    Some(DbJob::Record(group))
                } else if more_due
                    && !refilling
                    && queue.len() <= low_water
                    && !stop.is_cancelled()
                    && refill_until.is_some()
                {
                    refilling = true;
                    Some(DbJob::Refill(
                        claim_size.min(max_held.saturating_sub(queue.len()) as u32),
                    ))
                } else {
                    None
                };
                if let Some(job) = job {
                    db.push(self.run_db_job(job));
                }
            }
            if sending.is_empty() && db.is_empty() && (queue.is_empty() || stopped) {
                if to_release.is_empty() && unrecorded.is_empty() {
                    break;
                }
                continue;
            }
            tokio::select! {
                Some(((bulletin, channel, recipient), d)) = sending.next(), if !sending.is_empty() => {
                    if let Some(n) = inflight.get_mut(&bulletin) {
                        *n -= 1;
                        if *n == 0 {
                            inflight.remove(&bulletin);
                        }
                    }
                    let o = match d {
                        Delivered::Done(o) => o,
                        Delivered::Unstarted(c) => {
                            to_release.push(c);
                            continue;
                        }
                    };
                    let failed = matches!(o.result, OutcomeKind::Failed | OutcomeKind::Retry { .. });
                    if failed || o.result == OutcomeKind::Sent {
                        let t = tally.entry((bulletin, channel)).or_default();
                        t.0 += 1;
                        t.1 += u32::from(failed);
                        if self.is_storm(bulletin, channel, *t) {
                            to_pause.push(bulletin);
                        }
                    }
                    match o.result {
                        OutcomeKind::Sent => report.sent += 1,
                        OutcomeKind::Retry { .. } | OutcomeKind::Wait { .. } => report.retrying += 1,
                        OutcomeKind::Failed | OutcomeKind::Unconfirmed => report.failed += 1,
                        OutcomeKind::Suppressed => report.suppressed += 1,
                    }
                    if unrecorded.is_empty() {
                        oldest_unrecorded = tokio::time::Instant::now();
                    }
                    unrecorded.push(Recorded { outcome: o, channel, recipient });
                }
                Some(done) = db.next(), if !db.is_empty() => {
                    match done? {
                        DbDone::Recorded => recording = 0,
                        DbDone::Claimed(urgent) => {
                            self.log_takeovers(&urgent);
                            report.claimed += urgent.len();
                            for c in urgent.into_iter().rev() {
                                queue.push_front(c);
                            }
                        }
                        DbDone::Refilled(next) => {
                            refilling = false;
                            self.log_takeovers(&next);
                            more_due = !next.is_empty();
                            report.claimed += next.len();
                            queue.extend(next);
                        }
                        DbDone::Stopped { watched, stopped } => {
                            let mut halted = self.halted_bulletins.lock().expect("pause lock");
                            for id in watched {
                                if stopped.contains(&id) {
                                    if halted.insert(id) {
                                        newly_halted = true;
                                        info!(bulletin = id, "bulletin paused: no new send starts, its unstarted rows are handed back");
                                    }
                                } else {
                                    halted.remove(&id); // resumed
                                }
                            }
                        }
                        DbDone::Paused | DbDone::Released => {}
                    }
                }
                _ = tokio::time::sleep_until(oldest_unrecorded + GROUP_LINGER),
                    if db.is_empty() && !unrecorded.is_empty() => {}
                _ = self.wake.notified() => {
                    urgent_wanted = !stopped;
                    watch_wanted = true;
                }
                _ = urgent_poll.tick() => {
                    urgent_wanted = !stopped;
                    watch_wanted = true;
                }
                _ = stop.cancelled(), if !stopped => {}
            }
        }
        self.store.finish_bulletins().await?;
        Ok(report)
    }

    /// The urgent claim to make now, if any: only while at most `low_water` urgent rows
    /// wait, of the room left under `max_held` claimed rows; when that room is less than
    /// `low_water`, routine rows at the end of the queue are handed back to make that much
    /// (they are claimed again after the notice).
    fn urgent_job(
        &self,
        queue: &mut VecDeque<Claimed>,
        claim_size: u32,
        low_water: usize,
        max_held: usize,
    ) -> Option<DbJob> {
        let urgent_waiting = queue
            .iter()
            .filter(|c| c.priority >= crate::notice::NOTICE_PRIORITY)
            .count();
        if urgent_waiting > low_water {
            return None;
        }
        let mut release = Vec::new();
        while max_held.saturating_sub(queue.len()) < low_water {
            match queue.back() {
                Some(c) if c.priority < crate::notice::NOTICE_PRIORITY => {
                    release.push(queue.pop_back().expect("a row"));
                }
                _ => break,
            }
        }
        let room = max_held
            .saturating_sub(queue.len())
            .min(claim_size as usize) as u32;
        if room == 0 && release.is_empty() {
            return None;
        }
        Some(DbJob::ClaimUrgent {
            release,
            urgent: room,
        })
    }

    /// Logs the rows a claim took over from another claim whose lease expired.
    fn log_takeovers(&self, claimed: &[Claimed]) {
        let mut by_holder: HashMap<&str, usize> = HashMap::new();
        for c in claimed {
            if let Some(h) = &c.taken_from {
                *by_holder.entry(h.as_str()).or_default() += 1;
            }
        }
        for (holder, rows) in by_holder {
            warn!(
                rows,
                from = holder,
                by = %self.store.claimer().current(),
                "took over rows whose lease expired while another process held them \
                 (it stopped mid-send?): they are flagged ambiguous"
            );
        }
    }

    async fn run_db_job(&self, job: DbJob) -> Result<DbDone, StoreError> {
        match job {
            DbJob::Record(group) => {
                let outcomes: Vec<Outcome> = group.iter().map(|r| r.outcome.clone()).collect();
                self.store.record_outcomes(&outcomes).await?;
                self.after_recorded(&group).await?;
                Ok(DbDone::Recorded)
            }
            DbJob::Pause(bulletin) => {
                self.store.set_bulletin_paused(bulletin, true).await?;
                Ok(DbDone::Paused)
            }
            DbJob::ClaimUrgent { release, urgent } => {
                self.release(&release).await?;
                if urgent == 0 {
                    return Ok(DbDone::Claimed(Vec::new()));
                }
                let urgent = self
                    .store
                    .claim_urgent(
                        self.clock.now(),
                        urgent,
                        self.config.lease,
                        crate::notice::NOTICE_PRIORITY,
                    )
                    .await?;
                if !urgent.is_empty() {
                    info!(
                        rows = urgent.len(),
                        "urgent rows claimed ahead of the batch in flight"
                    );
                }
                Ok(DbDone::Claimed(urgent))
            }
            DbJob::Watch(watched) => {
                let stopped = self.store.not_sending(&watched).await?;
                Ok(DbDone::Stopped { watched, stopped })
            }
            DbJob::Release(rows) => {
                self.release(&rows).await?;
                Ok(DbDone::Released)
            }
            DbJob::Refill(rows) => Ok(DbDone::Refilled(
                self.store
                    .claim_due(
                        self.clock.now(),
                        rows,
                        self.config.lease,
                        self.config.on_expired_lease,
                    )
                    .await?,
            )),
        }
    }

    /// Hands claimed rows that never started back to the queue.
    async fn release(&self, rows: &[Claimed]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let claims: Vec<(i64, DateTime<Utc>)> =
            rows.iter().map(|c| (c.id, c.lease_until)).collect();
        let n = self.store.release(&claims, self.clock.now()).await?;
        info!(rows = n, "claimed rows handed back unsent");
        Ok(())
    }

    /// What follows a group's commit: an address whose hard failures span enough
    /// bulletins is marked bounced (it counts the failures now in the ledger).
    async fn after_recorded(&self, group: &[Recorded]) -> Result<(), StoreError> {
        for r in group {
            if r.outcome.result == OutcomeKind::Failed
                && r.channel == ChannelKind::Email
                && r.outcome.code.is_some_and(|c| c >= 500)
            {
                let n = self
                    .store
                    .note_hard_failure(
                        &r.recipient,
                        self.config.bounce_after_hard_failures,
                        self.clock.now(),
                    )
                    .await?;
                if n > 0 {
                    warn!(recipient = %r.recipient, lists = n, "address marked bounced after repeated hard failures");
                }
            }
        }
        Ok(())
    }

    /// Runs passes until nothing is due now.
    pub async fn drain(&self) -> Result<PassReport, StoreError> {
        self.drain_until(&CancellationToken::new()).await
    }

    /// Runs passes until nothing is due now or `stop` is cancelled (no batch is claimed
    /// after that; the rows already claimed are sent and their outcomes recorded).
    pub async fn drain_until(&self, stop: &CancellationToken) -> Result<PassReport, StoreError> {
        let mut total = PassReport::default();
        loop {
            if stop.is_cancelled() {
                return Ok(total);
            }
            let r = self.pass(Some(stop)).await?;
            total.add(&r);
            if r.claimed == 0 {
                self.store.finish_bulletins().await?;
                return Ok(total);
            }
        }
    }

    /// Returns once an urgent row is due: on SQLite notices queued by another process (the
    /// CLI) cannot wake this one, so an idle dispatcher looks for them every
    /// `delivery.urgent_poll` with a cheap read. (On PostgreSQL they notify; see `run`.)
    async fn urgent_queued(&self) {
        let mut tick = tokio::time::interval(self.config.urgent_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let due = self
                .store
                .urgent_due(self.clock.now(), crate::notice::NOTICE_PRIORITY)
                .await;
            if matches!(due, Ok(true)) {
                return;
            }
        }
    }

    /// The dispatcher loop: drain, then sleep until woken, the next row is due, or the poll interval.
    pub async fn run(&self, shutdown: CancellationToken) {
        info!("dispatcher started");
        // Work queued by another process sharing the store (PostgreSQL NOTIFY) wakes this
        // dispatcher as work queued here does: the idle wait ends, a pass claims urgent
        // rows. The poll below stays as the fallback should a notification be missed.
        // Ended when `run` returns or is dropped.
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let forward = self.store.work_notifications().map(|mut work| {
            let wake = self.wake.clone();
            AbortOnDrop(tokio::spawn(async move {
                while work.next().await.is_some() {
                    wake.notify_one();
                }
            }))
        });
        // Passes failed in a row (the store refusing writes): the next waits twice as long,
        // from 100 ms up to 30 s, so a full disk is retried, not flooded with passes.
        let mut failures: u32 = 0;
        // Listening, an idle dispatcher needs no urgent poll: a notice queued anywhere
        // notifies (its fan-out does), and the poll interval remains the fallback.
        let listening = forward.is_some();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.drain_until(&shutdown).await {
                Ok(r) => {
                    if failures > 0 {
                        info!(after = failures, "dispatch passes succeed again");
                    }
                    failures = 0;
                    if r.claimed > 0 {
                        info!(
                            sent = r.sent,
                            retrying = r.retrying,
                            failed = r.failed,
                            suppressed = r.suppressed,
                            "dispatch pass"
                        );
                    }
                }
                Err(e) => {
                    // Rows the failed pass still holds are left `sending`; under a new
                    // claimer generation they count as another process's, taken over once
                    // their lease expires (a claim never takes back its own rows).
                    self.store.claimer().next_generation();
                    failures = failures.saturating_add(1);
                    let backoff = std::time::Duration::from_millis(100)
                        .saturating_mul(1 << failures.min(9))
                        .min(std::time::Duration::from_secs(30));
                    warn!(error = %e, failures, retry_in = ?backoff, "dispatch pass failed; will try again");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        // Work queued meanwhile (its write succeeded): try at once.
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            }
            let mut wait = self.config.poll_interval;
            if let Ok(Some(due)) = self.store.next_due().await {
                let until = (due - self.clock.now()).to_std().unwrap_or_default();
                wait = wait.min(until.max(std::time::Duration::from_millis(10)));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.urgent_queued(), if !listening => {}
            }
        }
        drop(forward);
        info!("dispatcher stopped");
    }
}
