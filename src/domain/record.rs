//! Session records: parsed from TOML into a [`SessionRecord`] or refused whole with
//! errors that say where (line, column, field) and what.

use super::text::{self, check_block, check_line, line_col, normalize_newlines, TextError};
use super::vocab::text_enum;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use toml::Spanned;

/// Longest record file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
const LINE_MAX: usize = 300;
const TITLE_MAX: usize = 200;
const BLOCK_MAX: usize = 20_000;
const ID_MAX: usize = 80;
/// WeChat's limits on an article's title and digest, in characters, applied
/// conservatively (the documented 32 and 128; see the WeChat reference §4.1).
pub const WECHAT_TITLE_MAX: usize = 32;
pub const WECHAT_DIGEST_MAX: usize = 120;

/// A record's identifier: a slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

impl RecordId {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        text::check_slug(s, ID_MAX)?;
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RecordId {
    type Error = TextError;
    fn try_from(v: String) -> Result<Self, TextError> {
        Self::parse(&v)
    }
}

impl From<RecordId> for String {
    fn from(v: RecordId) -> String {
        v.0
    }
}

text_enum!(
    /// How the session was held.
    SessionFormat("session format") {
        Online => "online",
        InPerson => "in-person",
        Hybrid => "hybrid",
    }
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Organizers {
    pub sponsors: Vec<String>,
    pub supporters: Vec<String>,
    pub co_organizers: Vec<String>,
}

impl Organizers {
    pub fn is_empty(&self) -> bool {
        self.sponsors.is_empty() && self.supporters.is_empty() && self.co_organizers.is_empty()
    }
}

/// One expert's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Highlight {
    pub speaker: String,
    pub role: String,
    pub view: String,
}

/// An image named by a record; its bytes are loaded by the importer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordImage {
    /// The path as written in the record (relative to the record file).
    pub file: String,
    pub caption: Option<String>,
    pub alt: String,
}

/// A validated session record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionRecord {
    pub id: RecordId,
    pub language: String,
    pub title: String,
    pub event: String,
    pub session: String,
    pub held_on: NaiveDate,
    pub format: SessionFormat,
    pub venue: Option<String>,
    pub summary: String,
    pub attendees: String,
    pub topics: Vec<String>,
    pub closing: Option<String>,
    pub organizers: Organizers,
    pub highlights: Vec<Highlight>,
    pub images: Vec<RecordImage>,
    /// A short title for the WeChat article (≤ [`WECHAT_TITLE_MAX`]); without it the
    /// title is cut to fit. Left out of the content hash when absent, so records
    /// approved before the field existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat_title: Option<String>,
    /// The WeChat article's digest (≤ [`WECHAT_DIGEST_MAX`]); without it the summary is
    /// cut to fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat_digest: Option<String>,
}

impl SessionRecord {
    /// Hash of the record's content (and of its images' hashes, in order): what approval freezes.
    pub fn content_hash(&self, image_hashes: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(self).expect("record serialises"));
        for ih in image_hashes {
            h.update(b"\0");
            h.update(ih.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// The content hash of a whole record: its versions' own hashes, each under its
/// language, the primary first and the others in language order. A record of one
/// version keeps that version's hash, so records approved before versions existed keep
/// their approval. Approval freezes this hash: adding or changing any version changes it.
pub fn combined_hash<'a>(
    primary: (&'a str, &'a str),
    others: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut others: Vec<(&str, &str)> = others.into_iter().collect();
    if others.is_empty() {
        return primary.1.to_string();
    }
    others.sort();
    let mut h = Sha256::new();
    for (language, hash) in std::iter::once(primary).chain(others) {
        h.update(language.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Whether two language tags name the same version (case and `_` ignored).
pub fn same_language(a: &str, b: &str) -> bool {
    a.trim()
        .replace('_', "-")
        .eq_ignore_ascii_case(&b.trim().replace('_', "-"))
}

/// One problem in a record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one record file; the record is refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordErrors(pub Vec<RecordError>);

impl fmt::Display for RecordErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RecordErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    id: Spanned<String>,
    language: Option<Spanned<String>>,
    title: Spanned<String>,
    event: Spanned<String>,
    session: Spanned<String>,
    held_on: Spanned<toml::value::Datetime>,
    format: Spanned<String>,
    venue: Option<Spanned<String>>,
    summary: Spanned<String>,
    attendees: Spanned<String>,
    #[serde(default)]
    topics: Vec<Spanned<String>>,
    closing: Option<Spanned<String>>,
    #[serde(default)]
    organizers: RawOrganizers,
    #[serde(default)]
    highlights: Vec<RawHighlight>,
    #[serde(default)]
    images: Vec<RawImage>,
    wechat_title: Option<Spanned<String>>,
    wechat_digest: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOrganizers {
    #[serde(default)]
    sponsors: Vec<Spanned<String>>,
    #[serde(default)]
    supporters: Vec<Spanned<String>>,
    #[serde(default)]
    co_organizers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHighlight {
    speaker: Spanned<String>,
    role: Spanned<String>,
    view: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    file: Spanned<String>,
    caption: Option<Spanned<String>>,
    alt: Spanned<String>,
}

struct Checker<'a> {
    file: &'a str,
    source: &'a str,
    errors: Vec<RecordError>,
}

enum Kind {
    Line(usize),
    Block,
}

impl Checker<'_> {
    fn error_at(&mut self, span: std::ops::Range<usize>, field: &str, message: impl fmt::Display) {
        let (line, col) = line_col(self.source, span.start);
        self.errors.push(RecordError {
            file: self.file.to_string(),
            line: Some(line),
            column: Some(col),
            field: Some(field.to_string()),
            message: message.to_string(),
        });
    }

    fn text(&mut self, v: &Spanned<String>, field: &str, kind: Kind, required: bool) -> String {
        let value = v.get_ref();
        let checked = match kind {
            Kind::Line(max) => check_line(value, max, required).map(|_| value.trim().to_string()),
            Kind::Block => {
                check_block(value, BLOCK_MAX, required).map(|_| normalize_newlines(value.trim()))
            }
        };
        match checked {
            Ok(s) => s,
            Err(m) => {
                self.error_at(v.span(), field, m);
                String::new()
            }
        }
    }

    fn lines(&mut self, vs: &[Spanned<String>], field: &str) -> Vec<String> {
        vs.iter()
            .enumerate()
            .map(|(i, v)| {
                self.text(
                    v,
                    &format!("{field}[{}]", i + 1),
                    Kind::Line(LINE_MAX),
                    true,
                )
            })
            .collect()
    }
}

/// Parses and validates a record. `file` names the source in error messages;
/// `default_language` applies when the record names none.
pub fn parse_record(
    source: &str,
    file: &str,
    default_language: &str,
) -> Result<SessionRecord, RecordErrors> {
    let whole = |message: String, line: Option<usize>, column: Option<usize>| {
        // A TOML-level problem (duplicate key, invalid or quoted date, wrong type) still
        // names the field it is in, read from the source at that place.
        let field = match line {
            Some(l)
                if !message.starts_with("missing field")
                    && !message.starts_with("unknown field") =>
            {
                field_at_line(source, l)
            }
            _ => None,
        };
        RecordErrors(vec![RecordError {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }])
    };
    if source.len() > MAX_FILE_BYTES {
        return Err(whole(
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                source.len()
            ),
            None,
            None,
        ));
    }
    let raw: RawRecord = match toml::from_str(source) {
        Ok(r) => r,
        Err(e) => {
            let (line, col) = e
                .span()
                .map(|s| line_col(source, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            return Err(whole(e.message().trim().to_string(), line, col));
        }
    };
    let mut c = Checker {
        file,
        source,
        errors: Vec::new(),
    };

    let id = match RecordId::parse(raw.id.get_ref()) {
        Ok(id) => Some(id),
        Err(m) => {
            c.error_at(raw.id.span(), "id", m);
            None
        }
    };
    let language = match &raw.language {
        Some(l) => match language_tags::LanguageTag::parse(l.get_ref().trim()) {
            Ok(tag) => tag.to_string(),
            Err(e) => {
                c.error_at(
                    l.span(),
                    "language",
                    format!("not a BCP 47 language tag: {e}"),
                );
                String::new()
            }
        },
        None => default_language.to_string(),
    };
    let title = c.text(&raw.title, "title", Kind::Line(TITLE_MAX), true);
    let event = c.text(&raw.event, "event", Kind::Line(LINE_MAX), true);
    let session = c.text(&raw.session, "session", Kind::Line(LINE_MAX), true);
    let held_on = match date_of(raw.held_on.get_ref()) {
        Ok(d) => Some(d),
        Err(m) => {
            c.error_at(raw.held_on.span(), "held_on", m);
            None
        }
    };
    let format = match raw.format.get_ref().parse::<SessionFormat>() {
        Ok(f) => Some(f),
        Err(m) => {
            c.error_at(raw.format.span(), "format", m);
            None
        }
    };
    let venue = raw
        .venue
        .as_ref()
        .map(|v| c.text(v, "venue", Kind::Line(LINE_MAX), false))
        .filter(|v| !v.is_empty());
    let summary = c.text(&raw.summary, "summary", Kind::Block, true);
    let attendees = c.text(&raw.attendees, "attendees", Kind::Block, true);
    let topics = c.lines(&raw.topics, "topics");
    let closing = raw
        .closing
        .as_ref()
        .map(|v| c.text(v, "closing", Kind::Block, false))
        .filter(|v| !v.is_empty());
    let organizers = Organizers {
        sponsors: c.lines(&raw.organizers.sponsors, "organizers.sponsors"),
        supporters: c.lines(&raw.organizers.supporters, "organizers.supporters"),
        co_organizers: c.lines(&raw.organizers.co_organizers, "organizers.co_organizers"),
    };
    let highlights = raw
        .highlights
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let at = format!("highlights[{}]", i + 1);
            Highlight {
                speaker: c.text(
                    &h.speaker,
                    &format!("{at}.speaker"),
                    Kind::Line(LINE_MAX),
                    true,
                ),
                role: c.text(&h.role, &format!("{at}.role"), Kind::Line(LINE_MAX), true),
                view: c.text(&h.view, &format!("{at}.view"), Kind::Block, true),
            }
        })
        .collect();
    let images = raw
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| {
            let at = format!("images[{}]", i + 1);
            let file = c.text(&im.file, &format!("{at}.file"), Kind::Line(1024), true);
            if file.starts_with('/') || file.split(['/', '\\']).any(|p| p == "..") {
                c.error_at(
                    im.file.span(),
                    &format!("{at}.file"),
                    "must be a path inside the record's folder (no leading / and no ..)",
                );
            }
            RecordImage {
                file,
                caption: im
                    .caption
                    .as_ref()
                    .map(|v| c.text(v, &format!("{at}.caption"), Kind::Line(LINE_MAX), false))
                    .filter(|v| !v.is_empty()),
                alt: c.text(&im.alt, &format!("{at}.alt"), Kind::Line(LINE_MAX), true),
            }
        })
        .collect();
    let wechat_title = raw
        .wechat_title
        .as_ref()
        .map(|v| c.text(v, "wechat_title", Kind::Line(WECHAT_TITLE_MAX), false))
        .filter(|v| !v.is_empty());
    let wechat_digest = raw
        .wechat_digest
        .as_ref()
        .map(|v| c.text(v, "wechat_digest", Kind::Line(WECHAT_DIGEST_MAX), false))
        .filter(|v| !v.is_empty());

    match (id, held_on, format) {
        (Some(id), Some(held_on), Some(format)) if c.errors.is_empty() => Ok(SessionRecord {
            id,
            language,
            title,
            event,
            session,
            held_on,
            format,
            venue,
            summary,
            attendees,
            topics,
            closing,
            organizers,
            highlights,
            images,
            wechat_title,
            wechat_digest,
        }),
        _ => Err(RecordErrors(c.errors)),
    }
}

/// The dotted name of the key set on 1-based line `line` of a TOML source, with its table
/// (`highlights[2].speaker` inside the second `[[highlights]]`), or `None` if that line
/// sets no key.
fn field_at_line(source: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut key = None;
    for (i, l) in source.lines().enumerate().take(line) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            *n += 1;
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        } else if i + 1 == line {
            let k = t.split('=').next().filter(|_| t.contains('='))?.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return None;
            }
            key = Some(if table.is_empty() {
                k.to_string()
            } else {
                format!("{table}.{k}")
            });
        }
    }
    key
}

/// Byte spans of each `[[images]]` entry's `file` value, in order (for errors found
/// when the images are read, after the record itself was accepted).
pub fn image_file_spans(source: &str) -> Vec<std::ops::Range<usize>> {
    #[derive(Deserialize)]
    struct Images {
        #[serde(default)]
        images: Vec<ImageFile>,
    }
    #[derive(Deserialize)]
    struct ImageFile {
        file: Spanned<String>,
    }
    toml::from_str::<Images>(source)
        .map(|i| i.images.into_iter().map(|f| f.file.span()).collect())
        .unwrap_or_default()
}

/// A warning (not a refusal) when the session date is far from `today`: more than five
/// years back or more than two years ahead, most likely a typo in the year.
pub fn held_on_warning(held_on: NaiveDate, today: NaiveDate) -> Option<String> {
    let back = today.checked_sub_months(chrono::Months::new(60))?;
    let ahead = today.checked_add_months(chrono::Months::new(24))?;
    if held_on < back {
        Some(format!(
            "{held_on} is more than five years ago; check the year (imported anyway)"
        ))
    } else if held_on > ahead {
        Some(format!(
            "{held_on} is more than two years ahead; check the year (imported anyway)"
        ))
    } else {
        None
    }
}

/// Why `held_on` is not a usable date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DateError {
    #[error("`{0}` must be a date without a time (e.g. 2020-07-30)")]
    NotADate(toml::value::Datetime),
    #[error("`{0}` is not a date")]
    Invalid(toml::value::Datetime),
    #[error("year {0} is out of range (1900–2200)")]
    YearOutOfRange(i32),
}

fn date_of(dt: &toml::value::Datetime) -> Result<NaiveDate, DateError> {
    let (Some(d), None, None) = (dt.date, dt.time, dt.offset) else {
        return Err(DateError::NotADate(*dt));
    };
    let date = NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
        .ok_or(DateError::Invalid(*dt))?;
    if !(1900..=2200).contains(&date.year()) {
        return Err(DateError::YearOutOfRange(date.year()));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "s1"
title = "会议 การประชุม"
event = "E"
session = "S"
held_on = 2020-07-30
format = "hybrid"
summary = "Sum"
attendees = "All"
"#;

    #[test]
    fn minimal_record_parses_with_default_language() {
        let r = parse_record(MINIMAL, "m.toml", "en").unwrap();
        assert_eq!(r.language, "en");
        assert_eq!(r.format, SessionFormat::Hybrid);
        assert_eq!(r.held_on, NaiveDate::from_ymd_opt(2020, 7, 30).unwrap());
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let src = MINIMAL.replace("format = \"hybrid\"", "format = \"hybird\"");
        let e = parse_record(&src, "m.toml", "en").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].field.as_deref(), Some("format"));
        assert_eq!(e.0[0].line, Some(7));
        assert!(
            e.to_string()
                .starts_with("m.toml:7:10: format: unknown session format `hybird`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_position() {
        let src = format!("{MINIMAL}colour = \"red\"\n");
        let e = parse_record(&src, "m.toml", "en").unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(e.starts_with("m.toml:"), "{e}");
    }

    #[test]
    fn date_with_time_is_refused() {
        let src = MINIMAL.replace("2020-07-30", "2020-07-30T10:00:00");
        let e = parse_record(&src, "m.toml", "en").unwrap_err().to_string();
        assert!(e.contains("held_on"), "{e}");
    }

    #[test]
    fn toml_level_errors_name_the_field() {
        let dup = MINIMAL.replace("event = \"E\"", "event = \"E\"\ntitle = \"again\"");
        let e = parse_record(&dup, "m.toml", "en").unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("title"), "{e}");
        assert!(e.to_string().contains("m.toml:5:1: title: "), "{e}");

        let bad = MINIMAL.replace("2020-07-30", "2020-02-30");
        let e = parse_record(&bad, "m.toml", "en").unwrap_err();
        assert!(e.to_string().starts_with("m.toml:6:11: held_on: "), "{e}");

        let quoted = MINIMAL.replace("2020-07-30", "\"2020-07-30\"");
        let e = parse_record(&quoted, "m.toml", "en").unwrap_err();
        assert!(e.to_string().starts_with("m.toml:6:11: held_on: "), "{e}");

        let nested = format!("{MINIMAL}[[highlights]]\nspeaker = \"A\"\nspeaker = \"B\"\n");
        let e = parse_record(&nested, "m.toml", "en").unwrap_err();
        assert_eq!(
            e.0[0].field.as_deref(),
            Some("highlights[1].speaker"),
            "{e}"
        );
    }

    #[test]
    fn bidi_controls_in_one_line_fields_are_refused_with_place() {
        let src = MINIMAL.replace("session = \"S\"", "session = \"S\\u202Egpj.exe\"");
        let e = parse_record(&src, "m.toml", "en").unwrap_err().to_string();
        assert!(
            e.starts_with("m.toml:5:11: session: contains the bidirectional control U+202E"),
            "{e}"
        );
    }

    #[test]
    fn far_dates_warn() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert!(held_on_warning(d(2021, 12, 1), today).is_none());
        assert!(held_on_warning(d(2028, 12, 1), today).is_none());
        assert!(held_on_warning(d(2021, 11, 30), today)
            .unwrap()
            .contains("five years ago"));
        assert!(held_on_warning(d(2028, 12, 2), today)
            .unwrap()
            .contains("two years ahead"));
    }

    #[test]
    fn image_spans_are_found() {
        let src = format!("{MINIMAL}[[images]]\nfile = \"a.png\"\nalt = \"A\"\n");
        let spans = image_file_spans(&src);
        assert_eq!(spans.len(), 1);
        assert_eq!(line_col(&src, spans[0].start).0, 11);
    }

    #[test]
    fn hash_changes_with_content() {
        let a = parse_record(MINIMAL, "m.toml", "en").unwrap();
        let b = parse_record(&MINIMAL.replace("Sum", "Summary"), "m.toml", "en").unwrap();
        assert_ne!(a.content_hash(&[]), b.content_hash(&[]));
        assert_eq!(a.content_hash(&[]), a.clone().content_hash(&[]));
        // One version: its own hash; several: a hash over all of them, any order.
        assert_eq!(combined_hash(("en", "h1"), []), "h1");
        let two = combined_hash(("en", "h1"), [("th", "h2"), ("zh", "h3")]);
        assert_eq!(
            two,
            combined_hash(("en", "h1"), [("zh", "h3"), ("th", "h2")])
        );
        assert_ne!(
            two,
            combined_hash(("en", "h1"), [("th", "h2"), ("zh", "h4")])
        );
        assert_ne!(two, combined_hash(("en", "h1"), [("th", "h2")]));
        assert!(same_language("zh_hans", "zh-Hans") && !same_language("zh", "zh-Hans"));
    }
}
