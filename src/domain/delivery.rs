//! Ledger vocabulary: channels, delivery states and record states, with their text forms.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{}` (expected one of: {})",
                        stringify!($name),
                        other.escape_default(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// A delivery channel.
    ChannelKind { Email => "email", Wechat => "wechat" }
);

text_enum!(
    /// Where one ledger row stands.
    DeliveryStatus {
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Retrying => "retrying",
        Failed => "failed",
        Suppressed => "suppressed",
        Held => "held",
        // Sent, but the server's final reply never came (and resending was used up): the
        // message may have been delivered. Sent again only by an operator's choice.
        Unconfirmed => "unconfirmed",
    }
);

impl DeliveryStatus {
    /// Final states: nothing more will happen to the row on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Failed | Self::Suppressed | Self::Unconfirmed
        )
    }
}

text_enum!(
    /// The life cycle of a session record.
    RecordState { Draft => "draft", Approved => "approved", Published => "published" }
);
