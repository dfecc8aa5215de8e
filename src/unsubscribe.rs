//! Signed per-recipient unsubscribe links (RFC 8058 one-click): making and checking them.
//! The key never leaves this module's types and is never printed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;
const TAG_BYTES: usize = 16;

/// Makes and verifies unsubscribe tokens for (list, subscriber).
pub struct UnsubscribeSigner {
    key: SecretSlice<u8>,
    base_url: String,
}

impl fmt::Debug for UnsubscribeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsubscribeSigner")
            .field("key", &"[redacted]")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// A token's ids and tag, read but not yet checked: whether the tag is right depends on
/// the address the link was issued for (see [`UnsubscribeSigner::issued_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeToken {
    pub list_id: i64,
    pub subscriber_id: i64,
    tag: Vec<u8>,
}

impl UnsubscribeSigner {
    pub fn new(key: Vec<u8>, base_url: &str) -> Self {
        Self {
            key: SecretSlice::from(key),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn hmac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.key.expose_secret()).expect("HMAC takes any key length")
    }

    /// The tag of links sent before addresses were bound in: ids only. Such a link is
    /// honoured only where the ledger shows it can only have gone to the current address.
    fn mac_v1(&self, list_id: i64, subscriber_id: i64) -> HmacSha256 {
        let mut mac = self.hmac();
        mac.update(format!("bulletin-unsubscribe-v1:{list_id}:{subscriber_id}").as_bytes());
        mac
    }

    /// The tag of links now: the ids and the address the link was sent to, so that a link
    /// never unsubscribes another address that came to hold the same id.
    fn mac_v2(&self, list_id: i64, subscriber_id: i64, email: &str) -> HmacSha256 {
        let mut mac = self.hmac();
        mac.update(
            format!(
                "bulletin-unsubscribe-v2:{list_id}:{subscriber_id}:{}",
                email.to_lowercase()
            )
            .as_bytes(),
        );
        mac
    }

    /// The token for one subscriber (`email`) of one list.
    pub fn token(&self, list_id: i64, subscriber_id: i64, email: &str) -> String {
        let tag = self
            .mac_v2(list_id, subscriber_id, email)
            .finalize()
            .into_bytes();
        format!(
            "{list_id}.{subscriber_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The public one-click URL carrying the token.
    pub fn url(&self, list_id: i64, subscriber_id: i64, email: &str) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.base_url,
            self.token(list_id, subscriber_id, email)
        )
    }

    /// Reads a token's ids and tag; None for anything malformed. The tag is not checked.
    pub fn parse(&self, token: &str) -> Option<UnsubscribeToken> {
        let mut parts = token.splitn(3, '.');
        let list_id: i64 = parts.next()?.parse().ok()?;
        let subscriber_id: i64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        (tag.len() == TAG_BYTES).then_some(UnsubscribeToken {
            list_id,
            subscriber_id,
            tag,
        })
    }

    /// Whether the token is a link issued for `email` (checked in constant time).
    pub fn issued_for(&self, t: &UnsubscribeToken, email: &str) -> bool {
        self.mac_v2(t.list_id, t.subscriber_id, email)
            .verify_truncated_left(&t.tag)
            .is_ok()
    }

    /// Whether the token is a genuine link of the earlier kind, which names the ids only.
    pub fn is_legacy(&self, t: &UnsubscribeToken) -> bool {
        self.mac_v1(t.list_id, t.subscriber_id)
            .verify_truncated_left(&t.tag)
            .is_ok()
    }

    /// The earlier kind of token (ids only), as links sent before v2 carried.
    #[cfg(test)]
    fn legacy_token(&self, list_id: i64, subscriber_id: i64) -> String {
        let tag = self.mac_v1(list_id, subscriber_id).finalize().into_bytes();
        format!(
            "{list_id}.{subscriber_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = UnsubscribeSigner::new(b"0123456789abcdef0123".to_vec(), "https://x.org/");
        let t = s.token(3, 42, "ana@example.org");
        let p = s.parse(&t).unwrap();
        assert_eq!((p.list_id, p.subscriber_id), (3, 42));
        assert!(s.issued_for(&p, "ana@example.org"));
        assert!(
            s.issued_for(&p, "Ana@Example.org"),
            "addresses compare lower-cased"
        );
        // Another address holding the same ids does not match; nor is it a legacy link.
        assert!(!s.issued_for(&p, "bo@example.org"));
        assert!(!s.is_legacy(&p));
        assert!(s
            .url(3, 42, "ana@example.org")
            .starts_with("https://x.org/unsubscribe/3.42."));
        // Altered ids or tag are refused.
        let moved = s.parse(&t.replacen("3.42", "3.43", 1)).unwrap();
        assert!(!s.issued_for(&moved, "ana@example.org"));
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(!s.issued_for(&s.parse(&bad).unwrap(), "ana@example.org"));
        assert_eq!(s.parse("garbage"), None);
        assert_eq!(s.parse("1.1.xyz"), None);
        // Another key does not verify.
        let other = UnsubscribeSigner::new(b"another-key-entirely".to_vec(), "https://x.org");
        assert!(!other.issued_for(&p, "ana@example.org"));
        assert!(!format!("{s:?}").contains("0123456789"));
    }

    #[test]
    fn legacy_links_are_recognised_but_name_no_address() {
        let s = UnsubscribeSigner::new(b"0123456789abcdef0123".to_vec(), "https://x.org/");
        let old = s.parse(&s.legacy_token(3, 42)).unwrap();
        assert!(s.is_legacy(&old));
        assert!(!s.issued_for(&old, "ana@example.org"));
        let other = UnsubscribeSigner::new(b"another-key-entirely".to_vec(), "https://x.org");
        assert!(!other.is_legacy(&old));
    }
}
