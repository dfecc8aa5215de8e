//! Mailing lists and subscribers: list names, subscriber states, and the CSV import format.

use super::email::{EmailAddress, EmailError};
use super::text::{self, TextError};
use super::vocab::{text_enum, UnknownValue};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;

/// A list's name: a slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListName(String);

/// Why text is not a list name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("list name {0}")]
pub struct ListNameError(#[source] pub TextError);

impl ListName {
    pub fn parse(s: &str) -> Result<Self, ListNameError> {
        text::check_slug(s, 64).map_err(ListNameError)?;
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ListName {
    type Error = ListNameError;
    fn try_from(v: String) -> Result<Self, ListNameError> {
        Self::parse(&v)
    }
}

impl From<ListName> for String {
    fn from(v: ListName) -> String {
        v.0
    }
}

text_enum!(
    /// A subscriber's standing on one list.
    SubscriberStatus("subscriber status") {
        Active => "active",
        Unsubscribed => "unsubscribed",
        Bounced => "bounced",
    }
);

impl SubscriberStatus {
    /// The status a text names (as `str::parse`; the store and the CLI call it by name).
    pub fn parse(s: &str) -> Result<Self, UnknownValue> {
        s.parse()
    }
}

/// A subscriber as given by an editor (CSV row or CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscriber {
    pub email: EmailAddress,
    pub name: Option<String>,
    pub language: Option<String>,
}

/// Why one subscriber's fields were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubscriberError {
    #[error(transparent)]
    Email(#[from] EmailError),
    #[error("name {0}")]
    Name(TextError),
    #[error("language `{shown}` is not a BCP 47 tag: {reason}")]
    Language {
        shown: String,
        reason: language_tags::ParseError,
    },
}

impl NewSubscriber {
    /// Validates the three fields of one subscriber.
    pub fn parse(
        email: &str,
        name: Option<&str>,
        language: Option<&str>,
    ) -> Result<Self, SubscriberError> {
        let email = EmailAddress::parse(email)?;
        let name = match name.map(str::trim).filter(|s| !s.is_empty()) {
            Some(n) => {
                text::check_line(n, 200, false).map_err(SubscriberError::Name)?;
                Some(n.to_string())
            }
            None => None,
        };
        let language = match language.map(str::trim).filter(|s| !s.is_empty()) {
            Some(l) => Some(
                language_tags::LanguageTag::parse(l)
                    .map_err(|reason| SubscriberError::Language {
                        shown: l.escape_default().to_string(),
                        reason,
                    })?
                    .to_string(),
            ),
            None => None,
        };
        Ok(Self {
            email,
            name,
            language,
        })
    }
}

/// A CSV row that was refused, by its line number in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A CSV header that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CsvHeaderError {
    #[error("line 1: cannot read the header: {0}")]
    Io(#[source] std::io::Error),
    #[error("line 1: cannot read the header: {0}")]
    Csv(#[source] csv::Error),
    /// A column named twice (the name, escaped).
    #[error("line 1: the column `{0}` appears twice")]
    Duplicate(String),
    #[error("line 1: the header has no `email` column")]
    NoEmail,
}

/// Counts the quote characters read, so that a file ending inside a quoted field (cut
/// short) is noticed: the csv crate takes the end of input as the end of that field.
struct QuoteParity<R> {
    inner: R,
    quotes: u64,
    /// The input has ended (a read returned nothing): only the last row is left.
    ended: bool,
}

impl<R: Read> Read for QuoteParity<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ended |= n == 0 && !buf.is_empty();
        self.quotes += buf[..n].iter().filter(|b| **b == b'"').count() as u64;
        Ok(n)
    }
}

/// Streams subscribers out of CSV with an `email,name,language` header
/// (`name` and `language` columns optional, in any order; other columns ignored).
/// Fields are separated by `,` or by `;` (as spreadsheets in many locales save CSV),
/// whichever the header line uses.
pub struct CsvSubscribers<R: Read> {
    reader: csv::Reader<QuoteParity<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>>,
    email: usize,
    name: Option<usize>,
    language: Option<usize>,
    ignored: Vec<String>,
    delimiter: u8,
    record: csv::StringRecord,
}

/// The longest header line looked at to choose the delimiter.
const HEADER_PEEK: usize = 64 * 1024;

/// `;` if the header line has more semicolons than commas outside quotes, else `,`.
fn detect_delimiter(header: &[u8]) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for b in header {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas {
        b';'
    } else {
        b','
    }
}

impl<R: Read> CsvSubscribers<R> {
    /// Reads the header; refuses a file without an `email` column. Columns other than
    /// email, name and language are ignored (see [`Self::ignored_columns`]).
    pub fn new(mut input: R) -> Result<Self, CsvHeaderError> {
        // The header line, read a byte at a time (it is short) so that nothing after it
        // is consumed; it is then read again by the CSV reader.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while head.len() < HEADER_PEEK {
            match input.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {
                    head.push(byte[0]);
                    if byte[0] == b'\n' {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CsvHeaderError::Io(e)),
            }
        }
        let delimiter = detect_delimiter(&head);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(QuoteParity {
                inner: std::io::Cursor::new(head).chain(input),
                quotes: 0,
                ended: false,
            });
        let headers = reader.headers().map_err(CsvHeaderError::Csv)?.clone();
        let mut email = None;
        let mut name = None;
        let mut language = None;
        let mut ignored = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim_start_matches('\u{feff}');
            let slot = match h.to_ascii_lowercase().as_str() {
                "email" => &mut email,
                "name" => &mut name,
                "language" => &mut language,
                _ => {
                    ignored.push(h.escape_default().to_string());
                    continue;
                }
            };
            if slot.is_some() {
                return Err(CsvHeaderError::Duplicate(h.escape_default().to_string()));
            }
            *slot = Some(i);
        }
        let email = email.ok_or(CsvHeaderError::NoEmail)?;
        Ok(Self {
            reader,
            email,
            name,
            language,
            ignored,
            delimiter,
            record: csv::StringRecord::new(),
        })
    }

    /// Header columns other than email, name and language: read past, not stored.
    pub fn ignored_columns(&self) -> &[String] {
        &self.ignored
    }

    /// The field separator found in the header line: `,` or `;`.
    pub fn delimiter(&self) -> char {
        self.delimiter as char
    }
}

impl<R: Read> Iterator for CsvSubscribers<R> {
    type Item = Result<NewSubscriber, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
                    _ => e.to_string(),
                };
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return None;
                }
                Some(Err(RowError { line, message }))
            }
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                let input = self.reader.get_ref();
                if input.ended && input.quotes % 2 == 1 {
                    return Some(Err(RowError {
                        line,
                        message: "a quoted field is never closed: the file looks cut short".into(),
                    }));
                }
                let get = |i: Option<usize>| i.and_then(|i| self.record.get(i));
                Some(
                    NewSubscriber::parse(
                        get(Some(self.email)).unwrap_or(""),
                        get(self.name),
                        get(self.language),
                    )
                    .map_err(|e| RowError {
                        line,
                        message: e.to_string(),
                    }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reports_bad_rows_by_line() {
        let csv = "email,name,language\nok@example.org,Ok,en\nbroken,Bad,en\n\"x@example.org\",\"李\",zh-CN\ny@example.org,Y,not a tag\n";
        let rows: Vec<_> = CsvSubscribers::new(csv.as_bytes()).unwrap().collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].is_ok());
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert_eq!(rows[2].as_ref().unwrap().name.as_deref(), Some("李"));
        assert_eq!(rows[3].as_ref().unwrap_err().line, 5);
    }

    #[test]
    fn a_file_cut_inside_a_quoted_field_is_refused() {
        let rows: Vec<_> = CsvSubscribers::new(
            "email,name\na@example.org,\"A \"\"x\"\"\"\nb@example.org,\"Unclosed".as_bytes(),
        )
        .unwrap()
        .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_ref().unwrap().name.as_deref(), Some("A \"x\""));
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn csv_header_is_checked() {
        assert!(CsvSubscribers::new("name\nx\n".as_bytes()).is_err());
        assert!(CsvSubscribers::new("email,name,Email\n".as_bytes())
            .err()
            .unwrap()
            .to_string()
            .contains("appears twice"));
        assert!(CsvSubscribers::new("email\n".as_bytes()).is_ok());
    }

    #[test]
    fn extra_columns_are_ignored_and_named() {
        let csv = "organisation,email,phone,name\nMRC,a@example.org,+66 1,A\n";
        let r = CsvSubscribers::new(csv.as_bytes()).unwrap();
        assert_eq!(r.ignored_columns(), ["organisation", "phone"]);
        let rows: Vec<_> = r.collect();
        assert_eq!(rows.len(), 1);
        let s = rows[0].as_ref().unwrap();
        assert_eq!(
            (s.email.as_str(), s.name.as_deref()),
            ("a@example.org", Some("A"))
        );
    }

    #[test]
    fn semicolon_separated_files_are_detected_from_the_header() {
        let csv = "email;name;language\na@example.org;\"Dupont, A.\";fr\nb@example.org;B;en\n";
        let r = CsvSubscribers::new(csv.as_bytes()).unwrap();
        assert_eq!(r.delimiter(), ';');
        let rows: Vec<_> = r.map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name.as_deref(), Some("Dupont, A."));
        assert_eq!(rows[1].language.as_deref(), Some("en"));
        // A comma file whose names hold semicolons stays a comma file.
        let r = CsvSubscribers::new("email,name\na@example.org,\"x;y;z\"\n".as_bytes()).unwrap();
        assert_eq!(r.delimiter(), ',');
    }
}
