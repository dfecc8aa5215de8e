//! Dates in the text's language, formatted by ICU4X (`icu_datetime`, compiled CLDR data):
//! "30 July 2020", "2020年7月30日", "30 กรกฎาคม 2563" (the Buddhist era, which Thai uses).
//! Only the Gregorian and Buddhist calendars are compiled in; a locale whose default is
//! another calendar gets the Gregorian one.

use crate::domain::language::{label_locale, parse_tag};
use chrono::Datelike;
use icu_calendar::cal::Buddhist;
use icu_calendar::{AnyCalendarKind, Date, Gregorian};
use icu_datetime::fieldsets::YMD;
use icu_datetime::FixedCalendarDateTimeFormatter;
use icu_locale::Locale;

/// The locale a date in `language` is written in: the tag itself when it parses with a
/// region (`en-US`: "July 30, 2020"), else its label locale, English without a region
/// being the international form (`en-001`: "30 July 2020") the centre writes in.
fn date_locale(language: &str) -> Locale {
    if let Some(id) = parse_tag(language).filter(|id| id.region.is_some()) {
        return Locale::from(id);
    }
    let tag = match label_locale(language) {
        "en" => "en-001",
        other => other,
    };
    Locale::try_from_str(tag).unwrap_or(Locale::UNKNOWN)
}

/// `date` written out in `language` (long form: day, month name, year), in the calendar
/// the locale uses. Falls back to ISO 8601 (`2020-07-30`) if ICU has no pattern.
pub fn format_date(date: chrono::NaiveDate, language: &str) -> String {
    let locale = date_locale(language);
    let iso = || date.format("%Y-%m-%d").to_string();
    let Ok(month) = u8::try_from(date.month()) else {
        return iso();
    };
    let Ok(day) = u8::try_from(date.day()) else {
        return iso();
    };
    let Ok(gregorian) = Date::try_new_gregorian(date.year(), month, day) else {
        return iso();
    };
    let kind = AnyCalendarKind::try_new((&locale).into()).unwrap_or(AnyCalendarKind::Gregorian);
    let formatted = if kind == AnyCalendarKind::Buddhist {
        FixedCalendarDateTimeFormatter::<Buddhist, _>::try_new((&locale).into(), YMD::long())
            .map(|f| f.format(&gregorian.to_calendar(Buddhist)).to_string())
    } else {
        FixedCalendarDateTimeFormatter::<Gregorian, _>::try_new((&locale).into(), YMD::long())
            .map(|f| f.format(&gregorian).to_string())
    };
    formatted.unwrap_or_else(|_| iso())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_locale_writes_the_date_its_way() {
        let d = chrono::NaiveDate::from_ymd_opt(2020, 7, 30).unwrap();
        let mut wrong = Vec::new();
        for (lang, want) in [
            ("en", "30 July 2020"),
            ("en-GB", "30 July 2020"),
            ("en-US", "July 30, 2020"),
            ("zh-Hans", "2020年7月30日"),
            ("zh-CN", "2020年7月30日"),
            ("zh-Hant", "2020年7月30日"),
            ("zh-Hant-TW", "2020年7月30日"),
            ("th", "30 กรกฎาคม 2563"),
            ("th-TH", "30 กรกฎาคม 2563"),
            ("vi", "30 tháng 7 2020"),
            ("km", "30 កក្កដា 2020"),
            ("lo", "30 ກໍລະກົດ 2020"),
            // Burmese digits, year first.
            ("my", "၂၀၂၀ ဇူလိုင် ၃၀"),
            ("fr", "30 July 2020"),
        ] {
            let got = format_date(d, lang);
            if got != want {
                wrong.push(format!("{lang}: {got:?}, not {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
