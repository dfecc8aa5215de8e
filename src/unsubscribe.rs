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

/// Whom a valid token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeTarget {
    pub list_id: i64,
    pub subscriber_id: i64,
}

impl UnsubscribeSigner {
    pub fn new(key: Vec<u8>, base_url: &str) -> Self {
        Self {
            key: SecretSlice::from(key),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn mac(&self, list_id: i64, subscriber_id: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(format!("bulletin-unsubscribe-v1:{list_id}:{subscriber_id}").as_bytes());
        mac
    }

    /// The token for one subscriber of one list.
    pub fn token(&self, list_id: i64, subscriber_id: i64) -> String {
        let tag = self.mac(list_id, subscriber_id).finalize().into_bytes();
        format!(
            "{list_id}.{subscriber_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The public one-click URL carrying the token.
    pub fn url(&self, list_id: i64, subscriber_id: i64) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.base_url,
            self.token(list_id, subscriber_id)
        )
    }

    /// Checks a token in constant time; None for anything forged, altered or malformed.
    pub fn verify(&self, token: &str) -> Option<UnsubscribeTarget> {
        let mut parts = token.splitn(3, '.');
        let list_id: i64 = parts.next()?.parse().ok()?;
        let subscriber_id: i64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.mac(list_id, subscriber_id)
            .verify_truncated_left(&tag)
            .ok()
            .map(|_| UnsubscribeTarget {
                list_id,
                subscriber_id,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = UnsubscribeSigner::new(b"0123456789abcdef0123".to_vec(), "https://x.org/");
        let t = s.token(3, 42);
        assert_eq!(
            s.verify(&t),
            Some(UnsubscribeTarget {
                list_id: 3,
                subscriber_id: 42
            })
        );
        assert!(s.url(3, 42).starts_with("https://x.org/unsubscribe/3.42."));
        // Altered ids or tag are refused.
        assert_eq!(s.verify(&t.replacen("3.42", "3.43", 1)), None);
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(s.verify(&bad), None);
        assert_eq!(s.verify("garbage"), None);
        // Another key does not verify.
        let other = UnsubscribeSigner::new(b"another-key-entirely".to_vec(), "https://x.org");
        assert_eq!(other.verify(&t), None);
        assert!(!format!("{s:?}").contains("0123456789"));
    }
}
