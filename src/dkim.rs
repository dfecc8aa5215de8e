//! DKIM keys (RFC 6376, RFC 8463): reads an RSA (2048 bits or more) or Ed25519 private
//! key from PEM, makes new ones (`bulletin dkim keygen`), gives the DNS TXT record to
//! publish and the signing configuration lettre's `dkim` feature signs each message with.
//! The private key is a secret: it is never in Debug output, logs or errors.

use base64::Engine;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// The smallest RSA key accepted (RFC 8301 requires 1024; receivers now expect 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// The headers every signature covers (those present; an absent one is signed as absent,
/// so it cannot be added on the way).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
];

/// Why a DKIM key cannot be used. Never quotes the key: the causes shown are the
/// decoders' own words, which do not include the input.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("not a readable PKCS#1 RSA private key ({0})")]
    Pkcs1(rsa::pkcs1::Error),
    #[error("not a readable PKCS#8 RSA or Ed25519 private key ({0})")]
    Pkcs8(ed25519_dalek::pkcs8::Error),
    #[error("the key is encrypted: store it unencrypted, readable only by the daemon's user (mode 0600)")]
    Encrypted,
    #[error("not a PEM private key (expected `-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE KEY-----`)")]
    NotPem,
    #[error("the RSA key has {0} bits: at least {MIN_RSA_BITS} are needed (make one with `bulletin dkim keygen`)")]
    RsaTooSmall(usize),
    #[error("the RSA key is not consistent ({0})")]
    RsaInconsistent(rsa::Error),
    /// Writing a key or its public half out failed (the cause, in the encoder's words).
    #[error("cannot encode the {what} ({reason})")]
    Encode { what: &'static str, reason: String },
    #[error("cannot make an RSA key: {0}")]
    Generate(rsa::Error),
    #[error("cannot read the key file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {} {kind}", path.display())]
    Refused {
        path: PathBuf,
        kind: crate::files::ReadFileError,
    },
    #[error("{}: not a PEM private key (not text)", path.display())]
    NotText { path: PathBuf },
    /// The key in a file is refused.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<DkimError>,
    },
    #[error("{}: the key cannot be used to sign", path.display())]
    CannotSign { path: PathBuf },
}

fn encode_error(what: &'static str, e: impl std::fmt::Display) -> DkimError {
    DkimError::Encode {
        what,
        reason: e.to_string(),
    }
}

/// A domain or selector that is not a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("must be 1 to 253 characters")]
    Length,
    #[error("`{0}` is not a domain name (no dot)")]
    NoDot(String),
    #[error("`{0}` is not a DNS name: labels of letters, digits and inner hyphens, 1 to 63 characters each")]
    BadLabel(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag of the DNS record.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// A private key read and checked, with its public half.
#[derive(Clone)]
pub struct DkimKey {
    pub algorithm: Algorithm,
    /// RSA modulus size; None for Ed25519.
    pub bits: Option<usize>,
    /// The `p=` value of the DNS record: base64 of the SubjectPublicKeyInfo (RSA) or of
    /// the 32-byte public key (Ed25519, RFC 8463).
    pub public_b64: String,
    /// The form lettre reads: PKCS#1 PEM for RSA, base64 of the 32-byte seed for Ed25519.
    signing: SecretString,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// Reads a PEM private key: PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`, RSA
    /// or Ed25519). Errors never quote the file's content.
    pub fn from_pem(pem: &str) -> Result<Self, DkimError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let pem = pem.trim();
        if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(DkimError::Pkcs1)?;
            return Self::from_rsa(key);
        }
        if pem.contains("-----BEGIN PRIVATE KEY-----") {
            if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                return Self::from_rsa(key);
            }
            return match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                Ok(key) => Ok(Self::from_ed25519(&key)),
                Err(e) => Err(DkimError::Pkcs8(e)),
            };
        }
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(DkimError::Encrypted);
        }
        Err(DkimError::NotPem)
    }

    fn from_rsa(key: rsa::RsaPrivateKey) -> Result<Self, DkimError> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(DkimError::RsaTooSmall(bits));
        }
        key.validate().map_err(DkimError::RsaInconsistent)?;
        let public = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| encode_error("public key", e))?;
        let pkcs1 = key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| encode_error("key", e))?;
        Ok(Self {
            algorithm: Algorithm::Rsa,
            bits: Some(bits),
            public_b64: base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
            signing: SecretString::from(pkcs1.as_str()),
        })
    }

    fn from_ed25519(key: &ed25519_dalek::SigningKey) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            algorithm: Algorithm::Ed25519,
            bits: None,
            public_b64: b64.encode(key.verifying_key().as_bytes()),
            signing: SecretString::from(b64.encode(key.as_bytes())),
        }
    }

    /// Reads and checks the key file (a regular file: a FIFO or a device is refused
    /// without waiting on it); errors name the file, never its content.
    pub fn load(path: &Path) -> Result<Self, DkimError> {
        let path_buf = || path.to_path_buf();
        let bytes = crate::files::read_regular_file(path, 64 * 1024).map_err(|e| match e {
            crate::files::ReadFileError::Io(source) => DkimError::Unreadable {
                path: path_buf(),
                source,
            },
            kind => DkimError::Refused {
                path: path_buf(),
                kind,
            },
        })?;
        let text = SecretString::from(
            String::from_utf8(bytes).map_err(|_| DkimError::NotText { path: path_buf() })?,
        );
        Self::from_pem(text.expose_secret()).map_err(|e| DkimError::InFile {
            path: path_buf(),
            source: Box::new(e),
        })
    }

    /// A new key and its PKCS#8 PEM (the form written by `bulletin dkim keygen`).
    pub fn generate(algorithm: Algorithm) -> Result<(Self, SecretString), DkimError> {
        match algorithm {
            Algorithm::Rsa => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, MIN_RSA_BITS)
                    .map_err(DkimError::Generate)?;
                let pem = key
                    .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                    .map_err(|e| encode_error("key", e))?;
                let pem = SecretString::from(pem.as_str());
                Ok((Self::from_rsa(key)?, pem))
            }
            Algorithm::Ed25519 => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                let seed: [u8; 32] = rand::random();
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let pem = key
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|e| encode_error("key", e))?;
                let pem = SecretString::from(pem.as_str());
                Ok((Self::from_ed25519(&key), pem))
            }
        }
    }

    /// The TXT record's value: `v=DKIM1; k=rsa; p=…`.
    pub fn txt_value(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.tag(), self.public_b64)
    }

    /// A short description for `check-config`: "RSA 2048 bits" or "Ed25519".
    pub fn describe(&self) -> String {
        match (self.algorithm, self.bits) {
            (Algorithm::Rsa, Some(b)) => format!("RSA {b} bits"),
            _ => "Ed25519".into(),
        }
    }
}

/// `[email.dkim]`, checked.
#[derive(Debug, Clone)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    pub private_key_file: PathBuf,
    pub key: DkimKey,
}

impl DkimSettings {
    /// `SELECTOR._domainkey.DOMAIN`, where the public key is published.
    pub fn dns_name(&self) -> String {
        dns_name(&self.selector, &self.domain)
    }

    /// The zone-file line to publish.
    pub fn dns_record(&self) -> String {
        dns_record(&self.selector, &self.domain, &self.key)
    }

    /// lettre's signing configuration: relaxed/relaxed over [`SIGNED_HEADERS`].
    pub fn signing_config(&self) -> Result<DkimConfig, DkimError> {
        let algorithm = match self.key.algorithm {
            Algorithm::Rsa => DkimSigningAlgorithm::Rsa,
            Algorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
        };
        let key =
            DkimSigningKey::new(self.key.signing.expose_secret(), algorithm).map_err(|_| {
                DkimError::CannotSign {
                    path: self.private_key_file.clone(),
                }
            })?;
        Ok(DkimConfig::new(
            self.selector.clone(),
            self.domain.clone(),
            key,
            SIGNED_HEADERS
                .iter()
                .map(|h| HeaderName::new_from_ascii_str(h))
                .collect(),
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        ))
    }
}

pub fn dns_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// `S._domainkey.D IN TXT "v=DKIM1; k=rsa; p=…"`, the value split into strings of at
/// most 255 characters (a TXT record's limit; resolvers join them).
pub fn dns_record(selector: &str, domain: &str, key: &DkimKey) -> String {
    let value = key.txt_value();
    let chunks: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{} IN TXT {}", dns_name(selector, domain), chunks.join(" "))
}

/// A DNS name: dot-separated labels of letters, digits and hyphens (not at either end),
/// each 1 to 63 characters, 253 in all.
fn check_dns_name(name: &str, need_dot: bool) -> Result<(), DnsNameError> {
    if name.is_empty() || name.len() > 253 {
        return Err(DnsNameError::Length);
    }
    if need_dot && !name.contains('.') {
        return Err(DnsNameError::NoDot(name.escape_default().to_string()));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(DnsNameError::BadLabel(name.escape_default().to_string()));
        }
    }
    Ok(())
}

pub fn check_domain(domain: &str) -> Result<(), DnsNameError> {
    check_dns_name(domain, true)
}

pub fn check_selector(selector: &str) -> Result<(), DnsNameError> {
    check_dns_name(selector, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_domain("news.example.org").is_ok());
        assert!(check_domain("example").is_err());
        assert!(check_domain("bad..example.org").is_err());
        assert!(check_domain("-x.example.org").is_err());
        assert!(check_domain("a b.example.org").is_err());
        assert!(check_selector("bulletin2026").is_ok());
        assert!(check_selector("s1.news").is_ok());
        assert!(check_selector("").is_err());
        assert!(check_selector("x\"y").is_err());
    }

    #[test]
    fn generated_keys_read_back_and_debug_hides_them() {
        for alg in [Algorithm::Ed25519, Algorithm::Rsa] {
            let (key, pem) = generate_for_test(alg);
            let back = DkimKey::from_pem(pem.expose_secret()).unwrap();
            assert_eq!(back.algorithm, alg);
            assert_eq!(back.public_b64, key.public_b64);
            let debug = format!("{back:?}");
            assert!(!debug.contains(back.signing.expose_secret()), "{debug}");
        }
    }

    fn generate_for_test(alg: Algorithm) -> (DkimKey, SecretString) {
        DkimKey::generate(alg).unwrap()
    }

    #[test]
    fn garbage_and_small_keys_are_refused_without_quoting_them() {
        let e = DkimKey::from_pem("hello secret").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let e = DkimKey::from_rsa(small).unwrap_err().to_string();
        assert!(e.contains("1024 bits"), "{e}");
    }
}
