//! The one integration-test binary: real SMTP server (Postfix's smtp-sink), real SQLite
//! store, the real application wired by `App`, an injected clock so nothing sleeps.

mod admin;
mod alerts;
mod architecture;
mod archive;
mod audit;
mod bounce_webhook;
mod bounces;
mod cdp;
mod cli;
mod console;
mod dashboard;
mod dkim;
mod email_flow;
mod fake_wechat;
mod fidelity;
mod guarantees;
mod harness;
mod http_limits;
mod imap_mailbox;
mod languages;
mod lists;
mod notices;
mod openapi;
mod pg;
mod pg_scale;
mod postfix_relay;
mod records;
mod roles;
mod scale;
mod schedules;
mod smtp_faults;
mod store;
mod store_copy;
mod unsubscribe;
mod users;
mod versions;
mod wechat;

// Reliability (issue 5): crashes, store faults, bad input; these start the real binary.
mod corpus;
mod crash;
mod store_faults;
