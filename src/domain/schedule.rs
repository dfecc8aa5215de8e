//! Delivery schedules: a cron expression in an IANA time zone, the lists it sends to,
//! and whether it sends one bulletin per record or one digest.

use super::delivery::ChannelKind;
use super::subscriber::ListName;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How a firing turns records into bulletins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// One bulletin per approved record.
    PerRecord,
    /// One bulletin holding every record approved since the last firing.
    Digest,
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
    ) -> Result<Self, (&'static str, String)> {
        super::text::check_slug(name, 64).map_err(|m| ("name", format!("schedule name {m}")))?;
        let cron = cron::Schedule::from_str(cron_text).map_err(|e| {
            (
                "cron",
                format!(
                    "`{}` is not a cron expression: {e} (six or seven fields: sec min hour day-of-month month day-of-week [year], e.g. \"0 0 9 * * Mon-Fri\")",
                    cron_text.escape_default()
                ),
            )
        })?;
        let tz: Tz = timezone.parse().map_err(|_| {
            (
                "timezone",
                format!(
                    "`{}` is not an IANA time zone (e.g. Asia/Shanghai)",
                    timezone.escape_default()
                ),
            )
        })?;
        if cron.upcoming(tz).next().is_none() {
            return Err(("cron", format!("`{cron_text}` never fires again")));
        }
        if lists.is_empty() {
            return Err(("lists", "a schedule must name at least one list".into()));
        }
        let lists = lists
            .iter()
            .map(|l| ListName::parse(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("lists", m))?;
        if channels.is_empty() {
            return Err((
                "channels",
                "a schedule must name at least one channel".into(),
            ));
        }
        Ok(Self {
            name: name.to_string(),
            cron_text: cron_text.to_string(),
            cron,
            timezone: tz,
            lists,
            mode,
            channels: channels.to_vec(),
        })
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

    fn sched(cron: &str, tz: &str) -> Result<Schedule, (&'static str, String)> {
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
        assert_eq!(sched("0 0 9 * *", "UTC").unwrap_err().0, "cron");
        assert_eq!(
            sched("0 0 9 * * *", "Mars/Olympus").unwrap_err().0,
            "timezone"
        );
        assert_eq!(sched("0 0 0 30 2 * 2020", "UTC").unwrap_err().0, "cron");
    }
}
