//! `bulletin`: approved meeting-session records become bulletins, delivered by e-mail
//! (and later WeChat), with one ledger row per (bulletin, channel, recipient).
//!
//! Start at [`app::App`]: it wires configuration, store, renderer, channels, scheduler
//! and dispatcher together. ARCHITECTURE.md has the map and the invariants.

pub mod app;
pub mod bounce;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon_lock;
pub mod db_url;
pub mod demo;
pub mod dispatch;
pub mod dkim;
pub mod domain;
pub mod files;
pub mod http;
pub mod mailbox;
pub mod markdown;
pub mod metrics;
pub mod notice;
pub mod ops;
pub mod render;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod unsubscribe;
