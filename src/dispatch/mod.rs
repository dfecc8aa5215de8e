//! The dispatcher: claim due ledger rows (committed as `sending` under a lease before any
//! network call), deliver them through their channel, record each outcome, and schedule
//! retries with exponential backoff and jitter. It never holds a transaction across a send.
//! A pass over a batch is `pass::Pass`; the rules it applies are in `policy`.

mod pass;
mod policy;

use crate::channel::{Channel, Job, PreparedBulletin, SendError};
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::domain::ChannelKind;
use crate::metrics::Metrics;
use crate::render::image_cid;
use crate::store::{Claimed, Outcome, OutcomeKind, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use pass::Pass;
use policy::{RetryRules, StormRule, Tries};
use rand::Rng;
use std::collections::HashMap;
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

    /// Counts one outcome.
    fn count(&mut self, result: OutcomeKind) {
        match result {
            OutcomeKind::Sent => self.sent += 1,
            OutcomeKind::Retry { .. } | OutcomeKind::Wait { .. } => self.retrying += 1,
            OutcomeKind::Failed | OutcomeKind::Unconfirmed => self.failed += 1,
            OutcomeKind::Suppressed => self.suppressed += 1,
        }
    }
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
    /// `[archive]`: where each bulletin's web version is (None: nowhere).
    archive: Option<crate::config::ArchiveConfig>,
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
            archive: None,
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
        if !StormRule::from(&self.config).is_storm((attempts, failures)) {
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
    /// Links each bulletin to its web version in the public archive `archive`.
    pub fn with_archive(mut self, archive: crate::config::ArchiveConfig) -> Self {
        self.archive = Some(archive);
        self
    }

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
        policy::claim_size(
            self.config.batch_size,
            self.config.lease,
            self.channels.values().filter_map(|c| c.max_rate()),
        )
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
        let notice = b.kind == crate::store::BulletinKind::Notice;
        let web_url_of = |language: &str| {
            self.archive
                .as_ref()
                .and_then(|a| a.web_url(id, notice, language))
        };
        let web_url = web_url_of(&b.language);
        let versions = b
            .versions
            .into_iter()
            .map(|v| {
                let mut p = crate::channel::PreparedVersion::from(v);
                p.web_url = web_url_of(&p.language);
                p
            })
            .collect();
        let p = Arc::new(PreparedBulletin {
            id,
            web_url,
            kind: b.kind,
            language: b.language,
            subject: b.subject,
            html: b.html,
            text: b.text,
            images,
            wechat: b.wechat,
            email_bodies: Default::default(),
            versions,
            reader_versions: Default::default(),
        });
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(id, p.clone());
        Ok(p)
    }

    /// Retry, wait or fail after a failed attempt (see `RetryRules::after_failure`), the
    /// retry's place within its backoff drawn at random.
    fn retry_or_fail(&self, c: &Claimed, err: &SendError, now: DateTime<Utc>) -> OutcomeKind {
        let tries = Tries {
            attempts: c.attempts,
            unconfirmed: c.unconfirmed,
            created_at: c.created_at,
        };
        RetryRules::from(&self.config)
            .after_failure(tries, err, now, || rand::rng().random_range(0.0..=1.0))
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
        let claim_size = self.claim_size();
        let claimed = self
            .store
            .claim_due(
                self.clock.now(),
                claim_size,
                self.config.lease,
                self.config.on_expired_lease,
            )
            .await?;
        if claimed.is_empty() {
            return Ok(PassReport::default());
        }
        self.log_takeovers(&claimed);
        self.stormed.lock().expect("storm lock").clear();
        self.halted_bulletins.lock().expect("pause lock").clear();
        Pass::new(self, refill_until, claimed, claim_size)
            .run()
            .await
    }

    /// Notes which of the `watched` bulletins stopped sending (paused or done) and which
    /// resumed. True when one was newly found stopped: its unstarted rows go back.
    fn note_stopped(&self, watched: Vec<i64>, stopped: &[i64]) -> bool {
        let mut halted = self.halted_bulletins.lock().expect("pause lock");
        let mut newly = false;
        for id in watched {
            if stopped.contains(&id) {
                if halted.insert(id) {
                    newly = true;
                    info!(
                        bulletin = id,
                        "bulletin paused: no new send starts, its unstarted rows are handed back"
                    );
                }
            } else {
                halted.remove(&id); // resumed
            }
        }
        newly
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
        // Passes failed in a row (the store refusing writes): see `failed_pass_backoff`.
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
                    let backoff = policy::failed_pass_backoff(failures);
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
