//! Bounces and complaints that come back after the relay (issue 15): VERP return paths
//! that name a ledger row in a signed token ([`verp`]), and the classifier that reads one
//! returned message into a typed [`Classification`] ([`classify`]). No IO and no store:
//! the ingest paths (pipe, IMAP, webhook) and the ledger effects build on these.

pub mod classify;
pub mod verp;

pub use classify::{classify, BounceKind, Classification, Evidence, InvalidStatusCode, StatusCode};
pub use verp::{ReturnPath, ReturnPathError, Verp, VerpKey, VerpKeyError, VerpRejection};

/// What makes two receipts of one message the same, so it is stored once: the received
/// message's own Message-ID (`mid:<id>`), which the MTA that wrote a DSN or report sets
/// and which survives the trace headers each way in adds (the pipe's Delivered-To, the
/// IMAP server's Return-Path); without one, the SHA-256 of its bytes (`sha256:<hex>`),
/// which still catches a retried pipe.
pub fn dedupe_key(raw: &[u8]) -> String {
    use sha2::Digest;
    let mid = mail_parser::MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| m.message_id().map(|id| id.trim().to_string()))
        .filter(|id| !id.is_empty());
    match mid {
        Some(id) => format!("mid:{id}"),
        None => format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw))),
    }
}
