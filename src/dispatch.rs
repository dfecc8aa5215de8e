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
    ClaimUrgent,
    /// The next batch (this many rows), claimed while the rest of this one sends.
    Refill(u32),
}

enum DbDone {
    Recorded,
    Paused,
    /// Urgent rows: they go first.
    Claimed(Vec<Claimed>),
    /// The next batch: it goes last.
    Refilled(Vec<Claimed>),
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
        }
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
        // A claim in its last quarter is given back unsent: once it expires another pass
        // or instance may claim the row again, and both would send it.
        if c.lease_until - started
            < chrono::Duration::from_std(self.config.lease / 4).unwrap_or_default()
        {
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
    /// claimed and go ahead of the rest of the batch. Returns once every outcome is
    /// recorded.
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
        let concurrency = self.widest(|c| c.concurrency());
        let connections = self.widest(|c| c.connections());
        let unrecorded_max = self.config.unrecorded_max.max(1);
        // Deliveries in flight plus outcomes not yet committed never exceed this, so a
        // crash leaves at most this many delivered but unrecorded, however many sends
        // wait inside a channel for a connection.
        let budget = connections + unrecorded_max;
        self.stormed.lock().expect("storm lock").clear();
        let mut tally: HashMap<(i64, ChannelKind), (u32, u32)> = HashMap::new();
        // More may be due if the last claim was full; the next one is made once the queue
        // is this short, early enough to be back before it runs dry.
        let mut more_due = claimed.len() >= claim_size as usize;
        let low_water = (claim_size as usize / 4).max(2 * concurrency);
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
        let mut urgent_wanted = false;
        // Outcomes wait a little to be written together: each commit appends every page it
        // touched to the WAL, so one row per commit wrote many times what it changed.
        let group_min = (unrecorded_max / 2).clamp(1, 16);
        let mut oldest_unrecorded = tokio::time::Instant::now();
        let mut urgent_poll = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.urgent_poll,
            self.config.urgent_poll,
        );
        urgent_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while sending.len() < concurrency
                && unrecorded.len() + recording < unrecorded_max
                && sending.len() + unrecorded.len() + recording < budget
            {
                let Some(c) = queue.pop_front() else { break };
                let key = (c.bulletin_id, c.channel, c.recipient.clone());
                sending.push(async move { (key, self.deliver_one(c).await) });
            }
            if db.is_empty() {
                let job = if let Some(b) = to_pause.pop() {
                    Some(DbJob::Pause(b))
                } else if urgent_wanted {
                    urgent_wanted = false;
                    Some(DbJob::ClaimUrgent)
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
                    && refill_until.is_some_and(|stop| !stop.is_cancelled())
                {
                    refilling = true;
                    Some(DbJob::Refill(claim_size))
                } else {
                    None
                };
                if let Some(job) = job {
                    db.push(self.run_db_job(job));
                }
            }
            if sending.is_empty() && db.is_empty() {
                break;
            }
            tokio::select! {
                Some(((bulletin, channel, recipient), o)) = sending.next(), if !sending.is_empty() => {
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
                        OutcomeKind::Failed => report.failed += 1,
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
                            report.claimed += urgent.len();
                            for c in urgent.into_iter().rev() {
                                queue.push_front(c);
                            }
                        }
                        DbDone::Refilled(next) => {
                            refilling = false;
                            more_due = next.len() >= claim_size as usize;
                            report.claimed += next.len();
                            queue.extend(next);
                        }
                        DbDone::Paused => {}
                    }
                }
                _ = tokio::time::sleep_until(oldest_unrecorded + GROUP_LINGER),
                    if db.is_empty() && !unrecorded.is_empty() => {}
                _ = self.wake.notified() => urgent_wanted = true,
                _ = urgent_poll.tick() => urgent_wanted = true,
            }
        }
        self.store.finish_bulletins().await?;
        Ok(report)
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
            DbJob::ClaimUrgent => {
                let urgent = self
                    .store
                    .claim_urgent(
                        self.clock.now(),
                        self.claim_size(),
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

    /// Returns once an urgent row is due: notices queued by another process (the CLI, or
    /// another instance's admin API) cannot wake this one, so an idle dispatcher looks for
    /// them every `delivery.urgent_poll` with a cheap read.
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
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.drain_until(&shutdown).await {
                Ok(r) if r.claimed > 0 => info!(
                    sent = r.sent,
                    retrying = r.retrying,
                    failed = r.failed,
                    suppressed = r.suppressed,
                    "dispatch pass"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "dispatch pass failed; will try again"),
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
                _ = self.urgent_queued() => {}
            }
        }
        info!("dispatcher stopped");
    }
}
