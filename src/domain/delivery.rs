//! Ledger vocabulary: channels, delivery states, record states and what an expired lease
//! means, with their text forms.

use super::vocab::text_enum;

text_enum!(
    /// A delivery channel.
    ChannelKind("channel") { Email => "email", Wechat => "wechat" }
);

text_enum!(
    /// Where one ledger row stands.
    DeliveryStatus("delivery status") {
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
        // Accepted by the relay (`sent`), then a bounce came back for it (issue 15): the
        // DSN's status and diagnostic are in its attempt history.
        Bounced => "bounced",
    }
);

impl DeliveryStatus {
    /// Final states: nothing more will happen to the row on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Failed | Self::Suppressed | Self::Unconfirmed | Self::Bounced
        )
    }
}

text_enum!(
    /// What an expired `sending` lease means after a crash (`delivery.on_expired_lease`).
    ExpiredLease("expired-lease policy") {
        /// Send again (the recipient may get it twice; the row is marked ambiguous).
        Resend => "resend",
        /// Park the row as `held` for an operator to decide.
        Hold => "hold",
    }
);

text_enum!(
    /// How pressing a notice is.
    Severity("severity") { Info => "info", Urgent => "urgent" }
);

text_enum!(
    /// The life cycle of a session record.
    RecordState("record state") { Draft => "draft", Approved => "approved", Published => "published" }
);
