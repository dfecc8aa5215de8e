//! `[scheduler]` and `[[schedules]]`: the catch-up window and each schedule (cron, time
//! zone, lists, mode, channels, languages).

use super::{ConfigError, Source};
use crate::domain::delivery::ChannelKind;
use crate::domain::schedule::{Schedule, ScheduleMode};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawScheduler {
    catch_up_window_minutes: u64,
}

impl Default for RawScheduler {
    fn default() -> Self {
        Self {
            catch_up_window_minutes: 60,
        }
    }
}

impl RawScheduler {
    /// The catch-up window.
    pub(super) fn validate(self) -> Duration {
        Duration::from_secs(self.catch_up_window_minutes * 60)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    name: String,
    cron: String,
    #[serde(default = "default_tz")]
    timezone: String,
    lists: Vec<String>,
    #[serde(default = "default_mode")]
    mode: ScheduleMode,
    #[serde(default = "default_channels")]
    channels: Vec<ChannelKind>,
    /// Which language versions it sends; absent: all.
    languages: Option<Spanned<Vec<Spanned<String>>>>,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_mode() -> ScheduleMode {
    ScheduleMode::PerRecord
}
fn default_channels() -> Vec<ChannelKind> {
    vec![ChannelKind::Email]
}

/// Every schedule, checked, with distinct names; errors name `schedules[N].field`.
pub(super) fn validate(
    raw: Vec<Spanned<RawSchedule>>,
    src: &Source,
) -> Result<Vec<Schedule>, ConfigError> {
    let mut schedules: Vec<Schedule> = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let span = s.span();
        let s = s.into_inner();
        let key = |field: &str| format!("schedules[{}].{field}", i + 1);
        let mut sched =
            Schedule::parse(&s.name, &s.cron, &s.timezone, &s.lists, s.mode, &s.channels)
                .map_err(|e| src.error(Some(span.clone()), &key(e.field()), e))?;
        if let Some(langs) = s.languages {
            if langs.get_ref().is_empty() {
                return Err(src.error(
                    Some(langs.span()),
                    &key("languages"),
                    "names no language: name at least one (e.g. [\"en\", \"zh-Hans\"]), or leave `languages` out to send every version",
                ));
            }
            for (j, l) in langs.get_ref().iter().enumerate() {
                if crate::domain::language::parse_tag(l.get_ref()).is_none() {
                    return Err(src.error(
                        Some(l.span()),
                        &key(&format!("languages[{}]", j + 1)),
                        format!(
                            "`{}` is not a BCP 47 language tag (e.g. en, zh-Hans, th)",
                            l.get_ref().escape_default()
                        ),
                    ));
                }
            }
            sched.languages = langs
                .into_inner()
                .into_iter()
                .map(|l| l.into_inner().trim().to_string())
                .collect();
        }
        if schedules.iter().any(|o| o.name == sched.name) {
            return Err(src.error(
                Some(span),
                &key("name"),
                format!("schedule `{}` is defined twice", sched.name),
            ));
        }
        schedules.push(sched);
    }
    Ok(schedules)
}
