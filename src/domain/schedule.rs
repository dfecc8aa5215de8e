//! Delivery schedules: a cron expression in an IANA time zone, the lists it sends to,
//! and whether it sends one bulletin per record or one digest.

use super::delivery::ChannelKind;
use super::subscriber::{ListName, ListNameError};
use super::text::TextError;
use super::vocab::text_enum;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

text_enum!(
    /// How a firing turns records into bulletins.
    ScheduleMode("schedule mode") {
        /// One bulletin per approved record.
        PerRecord => "per_record",
        /// One bulletin holding every record approved since the last firing.
        Digest => "digest",
    }
);

/// A part of a schedule that is wrong; [`ScheduleError::field`] names the part.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule name {0}")]
    Name(TextError),
    #[error(
        "`{shown}` is not a cron expression: {reason} (six or seven fields: sec min hour day-of-month month day-of-week [year], e.g. \"0 0 9 * * Mon-Fri\")"
    )]
    Cron {
        shown: String,
        reason: cron::error::Error,
    },
    #[error("`{0}` is not an IANA time zone (e.g. Asia/Shanghai)")]
    Timezone(String),
    #[error("`{0}` never fires again")]
    NeverFires(String),
    #[error("a schedule must name at least one list")]
    NoList,
    #[error(transparent)]
    List(ListNameError),
    #[error("a schedule must name at least one channel")]
    NoChannel,
}

impl ScheduleError {
    /// The schedule's field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Name(_) => "name",
            Self::Cron { .. } | Self::NeverFires(_) => "cron",
            Self::Timezone(_) => "timezone",
            Self::NoList | Self::List(_) => "lists",
            Self::NoChannel => "channels",
        }
    }
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron_text: String,
    cron: cron::Schedule,
    pub timezone: Tz,
    pub lists: Vec<ListName>,
    pub mode: ScheduleMode,
    pub channels: Vec<ChannelKind>,
    /// The language versions it sends (`languages = [...]`); empty: every version.
    pub languages: Vec<String>,
}

impl Schedule {
    /// Builds a schedule; each error names the part that is wrong.
    pub fn parse(
        name: &str,
        cron_text: &str,
        timezone: &str,
        lists: &[String],
        mode: ScheduleMode,
        channels: &[ChannelKind],
    ) -> Result<Self, ScheduleError> {
        super::text::check_slug(name, 64).map_err(ScheduleError::Name)?;
        let cron = cron::Schedule::from_str(cron_text).map_err(|reason| ScheduleError::Cron {
            shown: cron_text.escape_default().to_string(),
            reason,
        })?;
        let tz: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::Timezone(timezone.escape_default().to_string()))?;
        if cron.upcoming(tz).next().is_none() {
            return Err(ScheduleError::NeverFires(cron_text.to_string()));
        }
        if lists.is_empty() {
            return Err(ScheduleError::NoList);
        }
        let lists = lists
            .iter()
            .map(|l| ListName::parse(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ScheduleError::List)?;
        if channels.is_empty() {
            return Err(ScheduleError::NoChannel);
        }
        Ok(Self {
            name: name.to_string(),
            cron_text: cron_text.to_string(),
            cron,
            timezone: tz,
            lists,
            mode,
            channels: channels.to_vec(),
            languages: Vec::new(),
        })
    }

    /// Whether this schedule sends a version in `language`: every version when it names
    /// no languages, else one in a named language and script
    /// ([`crate::domain::language::same_written_language`]: `zh-CN` is `zh-Hans`).
    pub fn sends_language(&self, language: &str) -> bool {
        self.languages.is_empty()
            || self
                .languages
                .iter()
                .any(|l| super::language::same_written_language(l, language))
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&t.with_timezone(&self.timezone))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Fire times in `(from, to]`, oldest first, at most `limit` of them.
    pub fn fire_times_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        self.cron
            .after(&from.with_timezone(&self.timezone))
            .map(|d| d.with_timezone(&Utc))
            .take_while(|d| *d <= to)
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sched(cron: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse(
            "s",
            cron,
            tz,
            &["partners".into()],
            ScheduleMode::PerRecord,
            &[ChannelKind::Email],
        )
    }

    #[test]
    fn fires_in_its_time_zone() {
        // 09:00 in Shanghai is 01:00 UTC.
        let s = sched("0 0 9 * * *", "Asia/Shanghai").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 1, 0, 0).unwrap()
        );
        let fires = s.fire_times_between(t, t + chrono::Duration::days(3), 10);
        assert_eq!(fires.len(), 3);
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(sched("0 0 9 * *", "UTC").unwrap_err().field(), "cron");
        let e = sched("0 0 9 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e.field(), "timezone");
        assert_eq!(
            e.to_string(),
            "`Mars/Olympus` is not an IANA time zone (e.g. Asia/Shanghai)"
        );
        assert_eq!(
            sched("0 0 0 30 2 * 2020", "UTC").unwrap_err().field(),
            "cron"
        );
    }
}
