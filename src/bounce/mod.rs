//! Bounces and complaints that come back after the relay (issue 15): VERP return paths
//! that name a ledger row in a signed token ([`verp`]), and the classifier that reads one
//! returned message into a typed [`Classification`] ([`classify`]). No IO and no store:
//! the ingest paths (pipe, IMAP, webhook) and the ledger effects build on these.

pub mod classify;
pub mod verp;

pub use classify::{classify, BounceKind, Classification, Evidence, InvalidStatusCode, StatusCode};
pub use verp::{ReturnPath, ReturnPathError, Verp, VerpKey, VerpKeyError, VerpRejection};
