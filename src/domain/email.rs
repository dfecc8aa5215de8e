//! E-mail addresses: only built by [`EmailAddress::parse`], normalised to lower case.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A syntactically valid, single-line, normalised e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

/// Why text is not an e-mail address (the text shown escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("e-mail address is empty")]
    Empty,
    #[error("e-mail address is {0} bytes long; the limit is 254")]
    TooLong(usize),
    #[error("`{0}` contains spaces or control characters")]
    Spaces(String),
    #[error("`{shown}` is not a valid e-mail address ({reason})")]
    Invalid {
        shown: String,
        reason: lettre::address::AddressError,
    },
    #[error("`{0}` has no dot in its domain")]
    NoDot(String),
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 {
            return Err(EmailError::TooLong(s.len()));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(EmailError::Spaces(s.escape_default().to_string()));
        }
        let lower = s.to_lowercase();
        let addr: lettre::Address = lower.parse().map_err(|reason| EmailError::Invalid {
            shown: s.escape_default().to_string(),
            reason,
        })?;
        if !addr.domain().contains('.') && addr.domain() != "localhost" {
            return Err(EmailError::NoDot(s.to_string()));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            EmailAddress::parse(" A.B@Example.ORG ").unwrap().as_str(),
            "a.b@example.org"
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "no-at",
            "a@",
            "@b.org",
            "a b@c.org",
            "a@b.org\r\nBcc: x@y.org",
            "a@nodot",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
