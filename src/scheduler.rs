//! The scheduler: turns cron firings into bulletins. Each firing is recorded once under
//! (schedule, fire time) before any work is enqueued; composing renders each bulletin once
//! and fans it out to the ledger. Missed firings are caught up at start within a window.

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::record::same_language;
use crate::domain::schedule::{Schedule, ScheduleMode};
use crate::domain::ChannelKind;
use crate::domain::SessionRecord;
use crate::metrics::Metrics;
use crate::render::{render_bulletin, render_wechat_article};
use crate::store::{
    BulletinKind, BulletinVersion, FanOutAccounts, FiringTrigger, NewBulletin, Store, StoreError,
    StoredRecord,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

/// The languages of a bulletin of `group` on `schedule`: every version language its
/// records have that the schedule sends, the first record's primary first when sent.
/// Never empty for a group whose records each have a sent version.
fn bulletin_languages(schedule: &Schedule, group: &[StoredRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in group {
        for l in r.languages() {
            if schedule.sends_language(l) && !out.iter().any(|o| same_language(o, l)) {
                out.push(l.to_string());
            }
        }
    }
    out
}

/// The version of `r` a reader of `reader` gets from `schedule`: negotiated among the
/// versions the schedule sends (a reader whose best version is not sent gets the best
/// one that is), falling back to the primary if sent, else the first version sent.
fn version_sent<'a>(
    schedule: &Schedule,
    r: &'a StoredRecord,
    reader: Option<&str>,
) -> &'a SessionRecord {
    let sent: Vec<&str> = r
        .languages()
        .into_iter()
        .filter(|l| schedule.sends_language(l))
        .collect();
    let Some(first) = sent.first() else {
        return &r.record;
    };
    let primary = if schedule.sends_language(&r.record.language) {
        r.record.language.as_str()
    } else {
        first
    };
    let pick = crate::domain::language::negotiate(reader, &sent, primary);
    r.version(pick).unwrap_or(&r.record)
}

/// Fan-out page size: recipients read and inserted per transaction.
pub const FAN_OUT_PAGE: u32 = 5_000;

/// What a firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// This (schedule, fire time) had already been recorded: nothing done.
    AlreadyFired,
    /// Bulletins created, with their ids and ledger rows queued.
    Fired {
        bulletins: Vec<i64>,
        deliveries: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("no schedule named `{0}` in the configuration")]
    UnknownSchedule(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering failed: {0}")]
    Render(#[from] crate::render::RenderError),
    #[error("schedule `{schedule}` sends to list `{list}`, which does not exist: create it (`bulletin lists create {list}`); the firing stays pending and runs once the list exists")]
    MissingList { schedule: String, list: String },
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    wake_dispatcher: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        wake_dispatcher: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            wake_dispatcher,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Channels that deliver to one account rather than to each subscriber.
    fn accounts(&self) -> FanOutAccounts {
        FanOutAccounts::new(self.config.wechat.as_ref().map(|w| w.appid.as_str()))
    }

    /// Counts firings into `metrics` (the App's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    fn schedule(&self, name: &str) -> Result<&Schedule, SchedulerError> {
        self.config
            .schedule(name)
            .ok_or_else(|| SchedulerError::UnknownSchedule(name.to_string()))
    }

    /// Fires `name` for `fire_time`, once.
    pub async fn fire(
        &self,
        name: &str,
        fire_time: DateTime<Utc>,
        trigger: FiringTrigger,
    ) -> Result<FireOutcome, SchedulerError> {
        self.schedule(name)?;
        let now = self.clock.now();
        if !self
            .store
            .record_firing(name, fire_time, trigger, now)
            .await?
        {
            info!(schedule = name, %fire_time, "firing already recorded; not running it again");
            return Ok(FireOutcome::AlreadyFired);
        }
        info!(schedule = name, %fire_time, %trigger, "schedule fired");
        self.metrics.fired(
            name,
            trigger.as_str(),
            (now - fire_time).to_std().unwrap_or_default(),
        );
        self.process_firing(name, fire_time).await
    }

    /// Composes and fans out the bulletins of a recorded firing (also used to resume one).
    async fn process_firing(
        &self,
        name: &str,
        fire_time: DateTime<Utc>,
    ) -> Result<FireOutcome, SchedulerError> {
        let schedule = self.schedule(name)?.clone();
        for list in &schedule.lists {
            if self.store.list(list).await?.is_none() {
                return Err(SchedulerError::MissingList {
                    schedule: name.to_string(),
                    list: list.to_string(),
                });
            }
        }
        let records = self.store.records_to_publish(name).await?;
        let groups: Vec<Vec<StoredRecord>> = match schedule.mode {
            ScheduleMode::PerRecord => records.into_iter().map(|r| vec![r]).collect(),
            ScheduleMode::Digest if records.is_empty() => vec![],
            ScheduleMode::Digest => vec![records],
        };
        let mut bulletins = Vec::new();
        let mut deliveries = 0;
        for group in groups {
            // Only the versions this schedule sends; a record with none is not its to send.
            let group: Vec<StoredRecord> = group
                .into_iter()
                .filter(|r| {
                    let any = r.languages().iter().any(|l| schedule.sends_language(l));
                    if !any {
                        info!(schedule = name, record = %r.record.id, languages = ?r.languages(),
                            "the record has no version in a language this schedule sends; not sending it here");
                    }
                    any
                })
                .collect();
            if group.is_empty() {
                continue;
            }
            let mut widths = Vec::new();
            for r in &group {
                let images = self.store.record_images(r.record.id.as_str()).await?;
                widths.push(images.iter().map(|i| i.width).collect::<Vec<_>>());
            }
            // The bulletin's versions: every language its records have that the schedule
            // sends, the first record's primary (if sent) first. Each is rendered once.
            let languages = bulletin_languages(&schedule, &group);
            let render_in = |language: &str| {
                let recs: Vec<SessionRecord> = group
                    .iter()
                    .map(|r| version_sent(&schedule, r, Some(language)).clone())
                    .collect();
                render_bulletin(
                    &recs,
                    &widths,
                    &self.config.publisher,
                    &self.config.default_language,
                )
            };
            let rendered = render_in(&languages[0])?;
            let mut versions = Vec::new();
            for language in &languages[1..] {
                let r = render_in(language)?;
                versions.push(BulletinVersion {
                    language: language.clone(),
                    subject: r.subject,
                    html: r.html,
                    text: r.text,
                });
            }
            let recs: Vec<SessionRecord> = group
                .iter()
                .map(|r| version_sent(&schedule, r, Some(&languages[0])).clone())
                .collect();
            let wechat = match (
                &self.config.wechat,
                schedule.channels.contains(&ChannelKind::Wechat),
            ) {
                (Some(w), true) => {
                    // The account's language version of each record, else its primary.
                    let recs: Vec<SessionRecord> = group
                        .iter()
                        .map(|r| version_sent(&schedule, r, Some(&w.language)).clone())
                        .collect();
                    Some(render_wechat_article(
                        &recs,
                        &self.config.publisher,
                        &self.config.default_language,
                        &w.author,
                    )?)
                }
                _ => None,
            };
            let nb = NewBulletin {
                kind: if recs.len() == 1 && schedule.mode == ScheduleMode::PerRecord {
                    BulletinKind::Record
                } else {
                    BulletinKind::Digest
                },
                schedule: Some(name.to_string()),
                fire_time: Some(fire_time),
                language: rendered.language,
                subject: rendered.subject,
                html: rendered.html,
                text: rendered.text,
                lists: schedule.lists.clone(),
                channels: schedule.channels.clone(),
                priority: 0,
                record_ids: recs.iter().map(|r| r.id.to_string()).collect(),
                wechat,
                versions,
            };
            let Some(id) = self.store.create_bulletin(&nb, self.clock.now()).await? else {
                continue;
            };
            let span = tracing::info_span!("bulletin", id);
            let n = self
                .store
                .fan_out(id, FAN_OUT_PAGE, &self.accounts(), self.clock.now())
                .instrument(span.clone())
                .await?;
            span.in_scope(|| info!(schedule = name, recipients = n, subject = %nb.subject, "bulletin composed and fanned out"));
            bulletins.push(id);
            deliveries += n;
        }
        if bulletins.is_empty() {
            info!(schedule = name, "nothing approved to send at this firing");
        }
        self.store
            .finish_firing(name, fire_time, bulletins.len() as u32, self.clock.now())
            .await?;
        self.wake_dispatcher.notify_one();
        Ok(FireOutcome::Fired {
            bulletins,
            deliveries,
        })
    }

    /// Finishes work a previous process left half done: firings recorded but not composed,
    /// bulletins composed but not fully fanned out.
    pub async fn resume(&self) -> Result<(), SchedulerError> {
        for (name, at) in self.store.unfinished_firings().await? {
            if self.config.schedule(&name).is_none() {
                warn!(schedule = %name, "an unfinished firing names a schedule that is no longer configured; leaving it");
                continue;
            }
            warn!(schedule = %name, fire_time = %at, "resuming a firing left unfinished");
            self.process_firing(&name, at).await?;
        }
        for id in self.store.bulletins_fanning_out().await? {
            warn!(bulletin = id, "resuming an unfinished fan-out");
            self.store
                .fan_out(id, FAN_OUT_PAGE, &self.accounts(), self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// At start: fires, once, the latest firing missed within the catch-up window; logs the rest.
    pub async fn catch_up(&self) -> Result<Vec<FireOutcome>, SchedulerError> {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.config.catch_up_window)
            .unwrap_or(chrono::Duration::zero());
        let mut out = Vec::new();
        for s in &self.config.schedules {
            let Some(last) = self.store.last_firing(&s.name).await? else {
                continue; // never fired: nothing was missed
            };
            let missed = s.fire_times_between(last, now, 10_000);
            let Some(&latest) = missed.last() else {
                continue;
            };
            if now - latest <= window {
                if missed.len() > 1 {
                    warn!(schedule = %s.name, skipped = missed.len() - 1, "several firings were missed while down; catching up the latest only");
                }
                info!(schedule = %s.name, fire_time = %latest, "catching up a firing missed while down");
                out.push(self.fire(&s.name, latest, FiringTrigger::CatchUp).await?);
            } else {
                warn!(schedule = %s.name, missed = missed.len(), latest = %latest, "firings missed while down are outside the catch-up window; skipped");
            }
        }
        Ok(out)
    }

    /// Fires every schedule whose fire time falls in `(after, until]` (the latest one only).
    pub async fn tick(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<FireOutcome>, SchedulerError> {
        let mut out = Vec::new();
        for s in &self.config.schedules {
            if let Some(&t) = s.fire_times_between(after, until, 10_000).last() {
                out.push(self.fire(&s.name, t, FiringTrigger::Cron).await?);
            }
        }
        Ok(out)
    }

    /// The scheduler loop: sleeps until the next fire time of any schedule, then fires it.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut last = self.clock.now();
        let mut needs_resume = false;
        info!(schedules = self.config.schedules.len(), "scheduler started");
        loop {
            if needs_resume {
                match self.resume().await {
                    Ok(()) => needs_resume = false,
                    Err(e) => warn!(error = %e, "resuming unfinished firings failed; will retry"),
                }
            }
            let next = self
                .config
                .schedules
                .iter()
                .filter_map(|s| s.next_after(last))
                .min();
            let wait = next
                .map(|n| (n - self.clock.now()).to_std().unwrap_or_default())
                .unwrap_or(std::time::Duration::from_secs(3600))
                .min(std::time::Duration::from_secs(60));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let now = self.clock.now();
            if let Err(e) = self.tick(last, now).await {
                warn!(error = %e, "scheduler tick failed; its firing stays unfinished and is resumed");
                needs_resume = true;
            }
            last = now;
        }
        info!("scheduler stopped");
    }
}
