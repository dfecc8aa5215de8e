//! The admin API's endpoint groups beyond the first ones in `admin.rs`, one file each:
//! lists and subscribers, records sent as TOML and sent back, schedules, users and the
//! audit log. Each handler takes the [`Principal`](super::auth::Principal), requires its
//! permission, calls one operation and answers its typed result; `admin.rs` routes and
//! documents them.

pub(super) mod audit;
pub(super) mod lists;
pub(super) mod records;
pub(super) mod schedules;
pub(super) mod users;
