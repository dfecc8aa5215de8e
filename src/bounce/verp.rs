//! VERP return paths: each message's envelope sender names its ledger row in a short
//! HMAC-signed token, so a bounce is matched to the row that caused it and a forged
//! bounce (a token nobody was sent) marks nobody. The key never prints.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// What `{token}` stands for in a return-path template.
pub const TOKEN_PLACEHOLDER: &str = "{token}";
/// Bytes of the HMAC kept in a token: 64 bits, so guessing a tag takes ~2^63 bounces.
const TAG_BYTES: usize = 8;
/// The longest token: a row id of 19 digits, a dash, the tag in lower-case hex.
const MAX_TOKEN_LEN: usize = 19 + 1 + 2 * TAG_BYTES;
/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
const MAX_LOCAL_PART: usize = 64;
/// The shortest key accepted: 128 bits.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a return-path template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnPathError {
    #[error("the return path `{0}` has no `{{token}}`: every message would carry the same envelope sender")]
    NoToken(String),
    #[error("the return path `{template}` has {count} `{{token}}`s; it needs exactly one")]
    SeveralTokens { template: String, count: usize },
    #[error("the return path `{0}` has `{{token}}` outside the local part (before the @)")]
    TokenNotInLocalPart(String),
    #[error("the return path `{template}` is not a valid address: {reason}")]
    InvalidAddress { template: String, reason: String },
    #[error("the return path `{template}` leaves {room} characters of the 64-character local part for a token of up to {MAX_TOKEN_LEN}")]
    LocalPartTooLong { template: String, room: usize },
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpKeyError {
    #[error("the VERP key is {0} bytes long; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
}

/// Why an address did not yield a row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerpRejection {
    /// Not an address of the template's shape (another domain, prefix or suffix).
    #[error("not a VERP address of this return path")]
    OtherAddress,
    /// The template's shape, but the token is not `<digits>-<hex tag>`.
    #[error("the VERP token is malformed")]
    Malformed,
    /// A well-formed token whose tag does not verify: forged, altered or another key's.
    #[error("the VERP token's signature does not verify")]
    BadTag,
}

/// The HMAC key behind VERP tokens. Its `Debug` never shows it.
#[derive(Clone)]
pub struct VerpKey(SecretSlice<u8>);

impl VerpKey {
    /// A key from raw bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, VerpKeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(VerpKeyError::TooShort(bytes.len()));
        }
        Ok(Self(SecretSlice::from(bytes)))
    }

    /// A key from a configured secret (its UTF-8 bytes).
    pub fn from_secret(secret: &SecretString) -> Result<Self, VerpKeyError> {
        Self::new(secret.expose_secret().as_bytes().to_vec())
    }

    fn mac(&self, row_id: i64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length");
        mac.update(format!("bulletin-verp-v1:{row_id}").as_bytes());
        mac
    }
}

impl fmt::Debug for VerpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerpKey([redacted])")
    }
}

/// A return-path template such as `bounces+{token}@bounces.example.org`, checked and
/// lower-cased: exactly one `{token}`, in the local part, and a valid address around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPath {
    /// The local part before `{token}` (lower case).
    prefix: String,
    /// The local part after `{token}` (lower case).
    suffix: String,
    /// The domain (lower case).
    domain: String,
}

impl ReturnPath {
    /// Checks a template (`[bounces] return_path`).
    pub fn parse(template: &str) -> Result<Self, ReturnPathError> {
        let t = template.trim();
        let count = t.matches(TOKEN_PLACEHOLDER).count();
        match count {
            0 => return Err(ReturnPathError::NoToken(t.to_string())),
            1 => {}
            n => {
                return Err(ReturnPathError::SeveralTokens {
                    template: t.to_string(),
                    count: n,
                })
            }
        }
        let invalid = |reason: String| ReturnPathError::InvalidAddress {
            template: t.to_string(),
            reason,
        };
        let (local, domain) = t
            .rsplit_once('@')
            .ok_or_else(|| invalid("it has no @".into()))?;
        let (prefix, suffix) = local
            .split_once(TOKEN_PLACEHOLDER)
            .ok_or_else(|| ReturnPathError::TokenNotInLocalPart(t.to_string()))?;
        let lower = |s: &str| s.to_ascii_lowercase();
        let rp = Self {
            prefix: lower(prefix),
            suffix: lower(suffix),
            domain: lower(domain),
        };
        let fixed = rp.prefix.len() + rp.suffix.len();
        if fixed + MAX_TOKEN_LEN > MAX_LOCAL_PART {
            return Err(ReturnPathError::LocalPartTooLong {
                template: t.to_string(),
                room: MAX_LOCAL_PART.saturating_sub(fixed),
            });
        }
        // The address with the longest token must be a valid address; braces or an @
        // left over make it invalid.
        let longest = rp.with_token(&"9".repeat(MAX_TOKEN_LEN));
        crate::domain::EmailAddress::parse(&longest).map_err(|e| invalid(e.to_string()))?;
        if rp.prefix.contains(['{', '}']) || rp.suffix.contains(['{', '}']) {
            return Err(invalid("it has braces besides `{token}`".into()));
        }
        Ok(rp)
    }

    /// The domain bounces come back to.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn with_token(&self, token: &str) -> String {
        format!("{}{token}{}@{}", self.prefix, self.suffix, self.domain)
    }

    /// The token in `address` if it has this template's shape (any case, with or
    /// without angle brackets), lower-cased; not yet verified.
    fn token_in(&self, address: &str) -> Option<String> {
        let a = address.trim();
        let a = a
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(a)
            .trim();
        let (local, domain) = a.rsplit_once('@')?;
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let local = local.to_ascii_lowercase();
        let token = local
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        (!token.is_empty()).then(|| token.to_string())
    }
}

impl fmt::Display for ReturnPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_token(TOKEN_PLACEHOLDER))
    }
}

/// Makes VERP envelope senders for ledger rows and reads row ids back from bounce
/// addresses, verifying each token's tag in constant time.
#[derive(Debug, Clone)]
pub struct Verp {
    return_path: ReturnPath,
    key: VerpKey,
}

impl Verp {
    pub fn new(return_path: ReturnPath, key: VerpKey) -> Self {
        Self { return_path, key }
    }

    pub fn return_path(&self) -> &ReturnPath {
        &self.return_path
    }

    /// The token naming `row_id`: `<row id>-<tag>`, the tag the first 8 bytes of
    /// HMAC-SHA256 in lower-case hex (so an MTA that lower-cases local parts keeps it).
    pub fn token(&self, row_id: i64) -> String {
        let tag = self.key.mac(row_id).finalize().into_bytes();
        format!("{row_id}-{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// The envelope sender (MAIL FROM) for the message of ledger row `row_id`.
    pub fn address(&self, row_id: i64) -> String {
        self.return_path.with_token(&self.token(row_id))
    }

    /// The ledger row id `address` names, if it is this return path's shape and its tag
    /// verifies. Case and angle brackets do not matter.
    pub fn verify(&self, address: &str) -> Result<i64, VerpRejection> {
        let token = self
            .return_path
            .token_in(address)
            .ok_or(VerpRejection::OtherAddress)?;
        let (id, tag) = token.split_once('-').ok_or(VerpRejection::Malformed)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerpRejection::Malformed);
        }
        let row_id: i64 = id.parse().map_err(|_| VerpRejection::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| VerpRejection::Malformed)?;
        if tag.len() != TAG_BYTES {
            return Err(VerpRejection::Malformed);
        }
        self.key
            .mac(row_id)
            .verify_truncated_left(&tag)
            .map_err(|_| VerpRejection::BadTag)?;
        Ok(row_id)
    }

    /// [`Verp::verify`] without the reason.
    pub fn row_id(&self, address: &str) -> Option<i64> {
        self.verify(address).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verp(key: &[u8]) -> Verp {
        Verp::new(
            ReturnPath::parse("bounces+{token}@Bounces.Example.org").unwrap(),
            VerpKey::new(key.to_vec()).unwrap(),
        )
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let v = verp(KEY);
        for id in [0, 1, 42, 1_000_000, i64::MAX] {
            let a = v.address(id);
            assert!(a.starts_with(&format!("bounces+{id}-")), "{a}");
            assert!(a.ends_with("@bounces.example.org"), "{a}");
            assert!(
                crate::domain::EmailAddress::parse(&a).is_ok(),
                "{a} is a valid address"
            );
            let local = a.split('@').next().unwrap();
            assert!(local.len() <= 64, "{a}");
            assert_eq!(v.verify(&a), Ok(id));
            assert_eq!(v.row_id(&format!("<{a}>")), Some(id));
            assert_eq!(v.row_id(&format!("  <{a}>\r\n")), Some(id));
        }
    }

    #[test]
    fn uppercase_and_a_trailing_dot_in_the_domain_still_verify() {
        let v = verp(KEY);
        let a = v.address(7);
        assert_eq!(v.verify(&a.to_uppercase()), Ok(7));
        assert_eq!(v.verify(&format!("<{}>", a.to_uppercase())), Ok(7));
        assert_eq!(v.verify(&format!("{a}.")), Ok(7));
    }

    #[test]
    fn a_tampered_tag_or_id_is_refused() {
        let v = verp(KEY);
        let a = v.address(42);
        let (local, domain) = a.split_once('@').unwrap();
        // Flip the last hex digit of the tag.
        let last = local.chars().last().unwrap();
        let flipped = if last == '0' { '1' } else { '0' };
        let forged = format!("{}{flipped}@{domain}", &local[..local.len() - 1]);
        assert_eq!(v.verify(&forged), Err(VerpRejection::BadTag));
        // Another id with the first id's tag.
        let moved = a.replacen("bounces+42-", "bounces+43-", 1);
        assert_eq!(v.verify(&moved), Err(VerpRejection::BadTag));
        // A shortened tag, a missing id, a signed id, non-hex.
        let short = format!("{}@{domain}", &local[..local.len() - 2]);
        assert_eq!(v.verify(&short), Err(VerpRejection::Malformed));
        let tag = local.rsplit_once('-').unwrap().1;
        for bad in [
            format!("bounces+-{tag}@{domain}"),
            format!("bounces++42-{tag}@{domain}"),
            format!("bounces+42{tag}@{domain}"),
            format!("bounces+42-{}zz@{domain}", &tag[..tag.len() - 2]),
        ] {
            assert_eq!(v.verify(&bad), Err(VerpRejection::Malformed), "{bad}");
        }
    }

    #[test]
    fn another_keys_token_is_refused() {
        let a = verp(KEY).address(42);
        let other = verp(b"another key, also 32 bytes long!");
        assert_eq!(other.verify(&a), Err(VerpRejection::BadTag));
    }

    #[test]
    fn another_domain_prefix_or_suffix_is_not_ours() {
        let v = verp(KEY);
        let a = v.address(42);
        let tok = v.token(42);
        for other in [
            a.replace("bounces.example.org", "bounces.example.net"),
            a.replace("bounces.example.org", "evil-bounces.example.org"),
            format!("bounce+{tok}@bounces.example.org"),
            tok.clone(),
            String::new(),
            "<>".into(),
        ] {
            assert_eq!(
                v.verify(&other),
                Err(VerpRejection::OtherAddress),
                "{other}"
            );
        }
        // Our shape, but not a token.
        assert_eq!(
            v.verify(&format!("bounces+{tok}x@bounces.example.org")),
            Err(VerpRejection::Malformed)
        );
        // A template with a suffix: the token is what lies between.
        let s = Verp::new(
            ReturnPath::parse("b-{token}-x@example.org").unwrap(),
            VerpKey::new(KEY.to_vec()).unwrap(),
        );
        assert_eq!(s.verify(&s.address(9)), Ok(9));
        assert_eq!(
            s.verify(&s.address(9).replace("-x@", "@")),
            Err(VerpRejection::OtherAddress)
        );
    }

    #[test]
    fn templates_without_exactly_one_token_in_a_valid_address_are_refused() {
        assert!(matches!(
            ReturnPath::parse("bounces@example.org"),
            Err(ReturnPathError::NoToken(_))
        ));
        assert!(matches!(
            ReturnPath::parse("{token}+{token}@example.org"),
            Err(ReturnPathError::SeveralTokens { count: 2, .. })
        ));
        assert!(matches!(
            ReturnPath::parse("bounces@{token}.example.org"),
            Err(ReturnPathError::TokenNotInLocalPart(_))
        ));
        for bad in [
            "bounces+{token}",
            "bounces+{token}@",
            "bounces+{token}@nodot",
            "bounce s+{token}@example.org",
            "bounces+{token}@exa mple.org",
            "a@b+{token}@example.org",
            "bounces+{token}}@example.org",
        ] {
            assert!(
                matches!(
                    ReturnPath::parse(bad),
                    Err(ReturnPathError::InvalidAddress { .. })
                ),
                "{bad}: {:?}",
                ReturnPath::parse(bad)
            );
        }
        let long = format!("{}+{{token}}@example.org", "b".repeat(40));
        assert!(matches!(
            ReturnPath::parse(&long),
            Err(ReturnPathError::LocalPartTooLong { room: 23, .. })
        ));
        let ok = ReturnPath::parse(" Bounces+{token}@Bounces.Example.ORG ").unwrap();
        assert_eq!(ok.to_string(), "bounces+{token}@bounces.example.org");
        assert_eq!(ok.domain(), "bounces.example.org");
    }

    #[test]
    fn the_key_never_prints() {
        let v = verp(KEY);
        let shown = format!("{v:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert_eq!(
            VerpKey::new(b"short".to_vec()).unwrap_err(),
            VerpKeyError::TooShort(5)
        );
        let from_config = VerpKey::from_secret(&SecretString::from("x".repeat(16))).unwrap();
        assert_eq!(format!("{from_config:?}"), "VerpKey([redacted])");
    }
}
