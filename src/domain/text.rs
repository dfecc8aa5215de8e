//! Text checks shared by every parser: one-line fields, lengths, reserved characters.

/// The renderer marks the per-recipient unsubscribe URL with this private-use
/// character; no input text may contain it.
pub const RESERVED: char = '\u{E000}';

/// What is wrong with a text field; the field's name is added by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be one line (contains a line break)")]
    LineBreak,
    #[error("contains control character U+{0:04X}")]
    Control(u32),
    #[error(
        "contains the bidirectional control U+{0:04X}: it can make the line display in \
         another order than it is written (e.g. a subject reading as \"exe.jpg\")"
    )]
    Bidi(u32),
    #[error("contains the reserved character U+E000")]
    Reserved,
    #[error("is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    /// A slug with other characters (the value, escaped).
    #[error("`{0}` may only contain a-z, 0-9 and '-'")]
    NotSlug(String),
    #[error("must start with a letter or digit")]
    LeadingHyphen,
}

/// Checks a single-line field; returns the problem in words.
pub fn check_line(value: &str, max_chars: usize, required: bool) -> Result<(), TextError> {
    if required && value.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(match c {
            '\r' | '\n' => TextError::LineBreak,
            _ => TextError::Control(c as u32),
        });
    }
    if let Some(c) = value.chars().find(|c| is_bidi_control(*c)) {
        return Err(TextError::Bidi(c as u32));
    }
    check_common(value, max_chars)
}

/// Bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a multi-line (Markdown) field.
pub fn check_block(value: &str, max_chars: usize, required: bool) -> Result<(), TextError> {
    if required && value.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(TextError::Control(c as u32));
    }
    check_common(value, max_chars)
}

fn check_common(value: &str, max_chars: usize) -> Result<(), TextError> {
    if value.contains(RESERVED) {
        return Err(TextError::Reserved);
    }
    let n = value.chars().count();
    if n > max_chars {
        return Err(TextError::TooLong {
            len: n,
            max: max_chars,
        });
    }
    Ok(())
}

/// Normalises line endings to `\n`.
pub fn normalize_newlines(value: &str) -> String {
    value.replace("\r\n", "\n").replace('\r', "\n")
}

/// 1-based line and column (in characters) of a byte offset in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Checks that `value` is a slug: 1..=max chars of a-z, 0-9 and '-', starting with a letter or digit.
pub fn check_slug(value: &str, max: usize) -> Result<(), TextError> {
    if value.is_empty() {
        return Err(TextError::Empty);
    }
    if value.len() > max {
        return Err(TextError::TooLong {
            len: value.len(),
            max,
        });
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(TextError::NotSlug(value.escape_default().to_string()));
    }
    if value.starts_with('-') {
        return Err(TextError::LeadingHyphen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_checks() {
        assert!(check_line("ok", 10, true).is_ok());
        let message = |r: Result<(), TextError>| r.unwrap_err().to_string();
        assert!(message(check_line("", 10, true)).contains("empty"));
        assert!(message(check_line("a\r\nBcc: x", 100, true)).contains("one line"));
        assert!(message(check_line("ab", 1, true)).contains("limit is 1"));
        assert!(check_line("a\u{E000}", 10, true).is_err());
        assert!(check_block("a\nb", 10, true).is_ok());
        assert!(check_block("a\u{7}b", 10, true).is_err());
    }

    #[test]
    fn bidi_controls_are_refused_in_one_line_fields() {
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            let e = check_line(&format!("report{c}gpj.exe"), 100, true)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("U+{:04X}", c as u32)), "{e}");
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(check_line(&format!("a{c}b"), 100, true).is_err());
        }
        // Right-to-left text itself, and the marks U+200E/U+200F, are fine.
        assert!(check_line("مؤتمر \u{200F}2020", 100, true).is_ok());
    }

    #[test]
    fn positions() {
        let s = "ab\ncdé\nf";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 8), (3, 1));
    }

    #[test]
    fn slugs() {
        assert!(check_slug("lmc-2020-s2", 80).is_ok());
        assert_eq!(
            check_slug("Bad", 80).unwrap_err().to_string(),
            "`Bad` may only contain a-z, 0-9 and '-'"
        );
        assert!(check_slug("-x", 80).is_err());
        assert!(check_slug("", 80).is_err());
    }
}
