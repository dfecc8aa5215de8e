//! One dispatch pass: the state of a claimed batch while it sends (the queue, the sends in
//! flight, the outcomes waiting for the ledger, the store job running beside them,
//! refill, urgent-claim and pause state) and its loop, a `select!` whose arms each hand
//! one event to one method. Also the store jobs a pass runs.
//!
//! While the last quarter of a batch sends, the next is claimed (`drain_until` only), so
//! sends never wait for a claim. Store work runs as one job at a time *beside* the sends,
//! polled in the same `select!` (no arm awaits the store, so a job holding the SQLite
//! write lock always progresses; on a store with concurrent writers, PostgreSQL, a group
//! of outcomes may also be written beside a job that is not one, so outcomes never wait
//! behind a claim): outcomes are committed in groups (half of
//! `delivery.unrecorded_max`, at most 16, or 2 ms, or no send in flight), and no send
//! starts while sends in flight plus outcomes waiting reach the channel's connections plus
//! `unrecorded_max`. Urgent rows queued during the pass are claimed on a wake-up or every
//! `delivery.urgent_poll_ms`, within the room left under `max_held`; at the same poll the
//! pass reads which of its bulletins stopped `sending` and hands their unstarted rows
//! back. Before a send it waits for the channel's rate limit (`Channel::admit`) and checks
//! again; on shutdown every unstarted row is handed back.

use super::policy::{PassLimits, StormTally};
use super::{Delivered, Dispatcher, PassReport};
use crate::domain::ChannelKind;
use crate::store::{Claimed, Outcome, OutcomeKind, StoreError};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long an outcome may wait for others to be written with it.
const GROUP_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// An outcome waiting for the ledger, with what the steps after its commit need.
pub(super) struct Recorded {
    outcome: Outcome,
    channel: ChannelKind,
    recipient: String,
}

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

/// A row in flight: its bulletin, channel and recipient.
type RowKey = (i64, ChannelKind, String);

/// A pass over one claimed batch (and, with `refill_until`, the batches claimed after
/// it). See `Dispatcher::pass` for what it guarantees.
pub(super) struct Pass<'a> {
    d: &'a Dispatcher,
    /// Refill while this is not cancelled (`drain_until`); None: one batch.
    refill_until: Option<&'a CancellationToken>,
    /// Shutdown: `refill_until`, or a token never cancelled.
    stop: CancellationToken,
    limits: PassLimits,
    report: PassReport,
    tally: StormTally,
    /// Claimed rows not yet started, in sending order.
    queue: VecDeque<Claimed>,
    sending: FuturesUnordered<BoxFuture<'a, (RowKey, Delivered)>>,
    /// Store work of the pass runs one job at a time here, polled alongside the sends: a
    /// job holding a write transaction is never left unpolled while another waits for
    /// the lock.
    db: FuturesUnordered<BoxFuture<'a, Result<DbDone, StoreError>>>,
    /// Outcomes waiting to be written (they wait a little to be written together).
    unrecorded: Vec<Recorded>,
    oldest_unrecorded: Instant,
    /// Outcomes being written by the job in `db`.
    recording: usize,
    /// The store takes a group of outcomes beside another write (`Store::concurrent_writes`).
    concurrent_writes: bool,
    /// Bulletins to pause (error storm).
    to_pause: Vec<i64>,
    /// Claimed rows to hand back unstarted.
    to_release: Vec<Claimed>,
    /// Sends in flight per bulletin (watched for a pause too: some wait for the rate limit).
    inflight: HashMap<i64, usize>,
    /// More may be due: the last claim was full.
    more_due: bool,
    refilling: bool,
    urgent_wanted: bool,
    watch_wanted: bool,
    /// A bulletin was found paused: its queued rows go back.
    newly_halted: bool,
    /// Shutdown began: nothing new starts.
    stopped: bool,
    urgent_poll: Interval,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        d: &'a Dispatcher,
        refill_until: Option<&'a CancellationToken>,
        claimed: Vec<Claimed>,
        claim_size: u32,
    ) -> Self {
        let limits = PassLimits::new(
            claim_size,
            d.widest(|c| c.concurrency()),
            d.widest(|c| c.connections()),
            d.config.unrecorded_max,
        );
        let mut urgent_poll =
            tokio::time::interval_at(Instant::now() + d.config.urgent_poll, d.config.urgent_poll);
        urgent_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            d,
            refill_until,
            stop: refill_until.cloned().unwrap_or_default(),
            limits,
            report: PassReport {
                claimed: claimed.len(),
                ..Default::default()
            },
            tally: StormTally::default(),
            more_due: claimed.len() >= claim_size as usize,
            queue: claimed.into(),
            sending: FuturesUnordered::new(),
            db: FuturesUnordered::new(),
            unrecorded: Vec::new(),
            oldest_unrecorded: Instant::now(),
            recording: 0,
            concurrent_writes: d.store.concurrent_writes(),
            to_pause: Vec::new(),
            to_release: Vec::new(),
            inflight: HashMap::new(),
            refilling: false,
            urgent_wanted: false,
            watch_wanted: false,
            newly_halted: false,
            stopped: false,
            urgent_poll,
        }
    }

    /// Sends the batch (and the batches refilled after it) and records every outcome.
    pub(super) async fn run(mut self) -> Result<PassReport, StoreError> {
        loop {
            if self.stop.is_cancelled() {
                self.begin_shutdown();
            }
            self.release_paused();
            self.start_sends();
            self.start_db_job();
            if self.sending.is_empty()
                && self.db.is_empty()
                && (self.queue.is_empty() || self.stopped)
            {
                if self.to_release.is_empty() && self.unrecorded.is_empty() {
                    break;
                }
                continue;
            }
            let linger = self.oldest_unrecorded + GROUP_LINGER;
            tokio::select! {
                Some((row, d)) = self.sending.next(), if !self.sending.is_empty() => {
                    self.on_delivered(row, d);
                }
                Some(done) = self.db.next(), if !self.db.is_empty() => self.on_db_done(done?),
                _ = tokio::time::sleep_until(linger),
                    if (self.db.is_empty() || self.may_record_beside())
                        && !self.unrecorded.is_empty() => {}
                _ = self.d.wake.notified() => self.on_wake(),
                _ = self.urgent_poll.tick() => self.on_wake(),
                _ = self.stop.cancelled(), if !self.stopped => {}
            }
        }
        self.d.store.finish_bulletins().await?;
        Ok(self.report)
    }

    /// Shutdown: nothing new starts; what was claimed and not started goes back (also
    /// rows a claim in flight at the moment of the stop brought in).
    fn begin_shutdown(&mut self) {
        self.stopped = true;
        self.more_due = false;
        self.urgent_wanted = false;
        self.to_release.extend(self.queue.drain(..));
    }

    /// Rows of bulletins paused meanwhile do not start: they go back (looked for when a
    /// pause was found; claims never bring in a paused bulletin's rows).
    fn release_paused(&mut self) {
        if std::mem::take(&mut self.newly_halted) && !self.queue.is_empty() {
            let d = self.d;
            let (back, keep): (VecDeque<Claimed>, VecDeque<Claimed>) = self
                .queue
                .drain(..)
                .partition(|c| d.is_halted_bulletin(c.bulletin_id));
            self.queue = keep;
            self.to_release.extend(back);
        }
    }

    /// Starts sends from the front of the queue while the limits allow.
    fn start_sends(&mut self) {
        while self
            .limits
            .may_start(self.sending.len(), self.unrecorded.len(), self.recording)
        {
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            *self.inflight.entry(c.bulletin_id).or_default() += 1;
            let row = (c.bulletin_id, c.channel, c.recipient.clone());
            let (d, stop) = (self.d, self.refill_until);
            self.sending.push(Box::pin(async move {
                (row, d.deliver_or_return(c, stop).await)
            }));
        }
    }

    /// Starts the next store job, if none is running and one is wanted; on a store that
    /// takes concurrent writers, also a group of outcomes beside a job that is not one.
    fn start_db_job(&mut self) {
        if self.db.is_empty() {
            if let Some(job) = self.next_db_job() {
                self.db.push(Box::pin(self.d.run_db_job(job)));
            }
        } else if self.may_record_beside() {
            if let Some(group) = self.record_job() {
                self.db.push(Box::pin(self.d.run_db_job(group)));
            }
        }
    }

    /// Whether a group of outcomes may be written now beside the store job in flight: on a
    /// store with concurrent writers (PostgreSQL), while that job is not itself writing
    /// outcomes (so at most one group, and `recording`, is in flight).
    fn may_record_beside(&self) -> bool {
        self.concurrent_writes && self.db.len() == 1 && self.recording == 0
    }

    /// The group of outcomes to write now, if one is ready: enough of them, or no send in
    /// flight, or the oldest waited `GROUP_LINGER`.
    fn record_job(&mut self) -> Option<DbJob> {
        if !self.unrecorded.is_empty()
            && (self.unrecorded.len() >= self.limits.group_min
                || self.sending.is_empty()
                || self.oldest_unrecorded.elapsed() >= GROUP_LINGER)
        {
            let group = std::mem::take(&mut self.unrecorded);
            self.recording = group.len();
            return Some(DbJob::Record(group));
        }
        None
    }

    /// The store job to run next, by precedence: a storm's pause, rows to hand back, an
    /// urgent claim, a pause watch, a group of outcomes, the next batch.
    fn next_db_job(&mut self) -> Option<DbJob> {
        if let Some(b) = self.to_pause.pop() {
            return Some(DbJob::Pause(b));
        }
        if !self.to_release.is_empty() {
            return Some(DbJob::Release(std::mem::take(&mut self.to_release)));
        }
        if std::mem::take(&mut self.urgent_wanted) {
            return self.urgent_job();
        }
        if std::mem::take(&mut self.watch_wanted) {
            return self.watch_job();
        }
        if let Some(group) = self.record_job() {
            return Some(group);
        }
        if self.more_due
            && !self.refilling
            && self.limits.wants_refill(self.queue.len())
            && !self.stop.is_cancelled()
            && self.refill_until.is_some()
        {
            self.refilling = true;
            return Some(DbJob::Refill(self.limits.refill_size(self.queue.len())));
        }
        None
    }

    /// The urgent claim to make now, if any: only while at most `low_water` urgent rows
    /// wait, of the room left under `max_held` claimed rows; when that room is less than
    /// `low_water`, routine rows at the end of the queue are handed back to make that much
    /// (they are claimed again after the notice).
    fn urgent_job(&mut self) -> Option<DbJob> {
        let urgent_waiting = self
            .queue
            .iter()
            .filter(|c| c.priority >= crate::notice::NOTICE_PRIORITY)
            .count();
        if !self.limits.wants_urgent(urgent_waiting) {
            return None;
        }
        let mut release = Vec::new();
        while self.limits.must_make_room(self.queue.len()) {
            match self.queue.back() {
                Some(c) if c.priority < crate::notice::NOTICE_PRIORITY => {
                    release.push(self.queue.pop_back().expect("a row"));
                }
                _ => break,
            }
        }
        let room = self.limits.urgent_room(self.queue.len());
        if room == 0 && release.is_empty() {
            return None;
        }
        Some(DbJob::ClaimUrgent {
            release,
            urgent: room,
        })
    }

    /// Asks which of the bulletins this pass holds rows of (queued or in flight) stopped
    /// sending.
    fn watch_job(&self) -> Option<DbJob> {
        let mut ids: Vec<i64> = self
            .queue
            .iter()
            .map(|c| c.bulletin_id)
            .chain(self.inflight.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        (!ids.is_empty()).then_some(DbJob::Watch(ids))
    }

    /// A send ended (or never started): its outcome is counted and waits for the ledger;
    /// an unstarted row goes back.
    fn on_delivered(&mut self, (bulletin, channel, recipient): RowKey, d: Delivered) {
        if let Some(n) = self.inflight.get_mut(&bulletin) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(&bulletin);
            }
        }
        let o = match d {
            Delivered::Done(o) => o,
            Delivered::Unstarted(c) => {
                self.to_release.push(c);
                return;
            }
        };
        if let Some(counts) = self.tally.count(bulletin, channel, &o.result) {
            if self.d.is_storm(bulletin, channel, counts) {
                self.to_pause.push(bulletin);
            }
        }
        self.report.count(o.result);
        if self.unrecorded.is_empty() {
            self.oldest_unrecorded = Instant::now();
        }
        self.unrecorded.push(Recorded {
            outcome: o,
            channel,
            recipient,
        });
    }

    /// A store job ended.
    fn on_db_done(&mut self, done: DbDone) {
        match done {
            DbDone::Recorded => self.recording = 0,
            DbDone::Claimed(urgent) => {
                self.d.log_takeovers(&urgent);
                self.report.claimed += urgent.len();
                for c in urgent.into_iter().rev() {
                    self.queue.push_front(c);
                }
            }
            DbDone::Refilled(next) => {
                self.refilling = false;
                self.d.log_takeovers(&next);
                self.more_due = !next.is_empty();
                self.report.claimed += next.len();
                self.queue.extend(next);
            }
            DbDone::Stopped { watched, stopped } => {
                if self.d.note_stopped(watched, &stopped) {
                    self.newly_halted = true;
                }
            }
            DbDone::Paused | DbDone::Released => {}
        }
    }

    /// A wake-up or the urgent poll: look for urgent rows (unless stopping) and for
    /// paused bulletins.
    fn on_wake(&mut self) {
        self.urgent_wanted = !self.stopped;
        self.watch_wanted = true;
    }
}

impl Dispatcher {
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
}
