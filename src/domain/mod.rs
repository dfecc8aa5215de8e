//! Parsed domain types: values that can only be built by parsing, and do no IO.

pub mod delivery;
pub mod email;
pub mod language;
pub mod record;
pub mod role;
pub mod schedule;
pub mod subscriber;
pub mod text;
pub mod vocab;
pub mod wechat;

pub use delivery::{ChannelKind, DeliveryStatus, ExpiredLease, RecordState, Severity};
pub use email::EmailAddress;
pub use record::{RecordId, SessionRecord};
pub use role::{Actor, Permission, Role};
pub use schedule::{Schedule, ScheduleMode};
pub use subscriber::{ListName, SubscriberStatus};
pub use wechat::WechatArticle;
