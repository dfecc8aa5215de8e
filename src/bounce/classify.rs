//! The bounce classifier: the raw bytes of one message that came back to the envelope
//! sender become a typed [`Classification`] (hard, soft, delayed, delivered, complaint,
//! auto-reply or unmatched, with the status code, diagnostic, recipient, VERP row id and
//! original Message-ID). Standard reports are read field by field with `mail-parser`;
//! free text is searched only for bounces that carry no report. Never fails: anything it
//! cannot read is `unmatched`, so the message is kept for an operator, not lost.

use super::verp::Verp;
use crate::domain::vocab::text_enum;
use mail_parser::decoders::html::html_to_text;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use std::fmt;

text_enum!(
    /// What a message that came back to the envelope sender reports.
    BounceKind("bounce kind") {
        /// A permanent failure (status 5.x.x): the address does not take mail.
        Hard => "hard",
        /// Delivery given up after temporary failures (status 4.x.x), e.g. a full mailbox.
        Soft => "soft",
        /// Still being tried (a delay warning): noted, not a bounce.
        Delayed => "delayed",
        /// A report of delivery, relay or expansion: not a bounce.
        Delivered => "delivered",
        /// An abuse report (RFC 5965 ARF): the recipient marked the mail as spam.
        Complaint => "complaint",
        /// A vacation or out-of-office reply: ignored, recorded as such.
        AutoReply => "auto_reply",
        /// Nothing recognisable: kept whole for an operator.
        Unmatched => "unmatched",
    }
);

impl BounceKind {
    /// Whether this counts against the address (a hard or soft bounce).
    pub fn is_bounce(self) -> bool {
        matches!(self, Self::Hard | Self::Soft)
    }
}

text_enum!(
    /// What a classification rests on, so an operator can judge a false positive.
    Evidence("bounce evidence") {
        /// An RFC 3464 (or RFC 6533 global) delivery status report.
        Dsn => "dsn",
        /// An RFC 5965 feedback report.
        Arf => "arf",
        /// An auto-reply header: `Auto-Submitted`, `X-Autoreply`, `Precedence: auto_reply`.
        Header => "header",
        /// A vacation or out-of-office subject and nothing else.
        Subject => "subject",
        /// The text of a bounce that carries no report (best effort).
        Text => "text",
        /// A signed event from `POST /webhooks/bounce` (the sender classified it).
        Webhook => "webhook",
        /// Nothing.
        Nothing => "none",
    }
);

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. 5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl StatusCode {
    /// Reads `2|4|5 "." 1*3digit "." 1*3digit` exactly.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.');
        let (c, su, d) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let digits = |p: &str, max: usize| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        };
        if !(digits(c, 1) && digits(su, 3) && digits(d, 3)) {
            return None;
        }
        let class: u8 = c.parse().ok()?;
        matches!(class, 2 | 4 | 5).then_some(Self {
            class,
            subject: su.parse().ok()?,
            detail: d.parse().ok()?,
        })
    }

    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub fn class(self) -> u8 {
        self.class
    }

    pub fn is_permanent(self) -> bool {
        self.class == 5
    }

    pub fn is_transient(self) -> bool {
        self.class == 4
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Text that is not an RFC 3463 status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an enhanced status code (class.subject.detail, e.g. 5.1.1)")]
pub struct InvalidStatusCode(String);

impl std::str::FromStr for StatusCode {
    type Err = InvalidStatusCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| InvalidStatusCode(s.escape_default().to_string()))
    }
}

/// Serialized as its text (`"5.1.1"`), as stored and shown.
impl serde::Serialize for StatusCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What one received message says (serialized with the text forms, for JSON output).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Classification {
    pub kind: BounceKind,
    pub evidence: Evidence,
    /// The enhanced status code (from the report, or found in a bounce's text; a bare
    /// SMTP reply code `550` becomes `5.0.0`).
    pub status: Option<StatusCode>,
    /// The remote server's words (Diagnostic-Code without its type), the feedback type
    /// of a complaint, or the header that made a message an auto-reply.
    pub diagnostic: Option<String>,
    /// The address the report is about: Original-Recipient, else Final-Recipient (DSN);
    /// Original-Rcpt-To, else the original's To (ARF); the sender of an auto-reply.
    pub recipient: Option<String>,
    /// The ledger row named by a VERP token that verifies, found in the envelope
    /// recipient, the delivery headers (Delivered-To, X-Original-To, To, ...), the
    /// report's sender fields or the returned message's Return-Path.
    pub row_id: Option<i64>,
    /// The Message-ID of the message that bounced (without angle brackets), from the
    /// returned message or headers, or an auto-reply's In-Reply-To.
    pub message_id: Option<String>,
    /// The DSN's (or ARF's) Original-Envelope-Id.
    pub envelope_id: Option<String>,
    /// The MTA that wrote the report (Reporting-MTA without its type).
    pub reporting_mta: Option<String>,
}

impl Classification {
    fn new(kind: BounceKind, evidence: Evidence) -> Self {
        Self {
            kind,
            evidence,
            status: None,
            diagnostic: None,
            recipient: None,
            row_id: None,
            message_id: None,
            envelope_id: None,
            reporting_mta: None,
        }
    }
}

/// Longest diagnostic kept (characters); the raw message is stored whole anyway.
const MAX_DIAGNOSTIC: usize = 1000;
/// Longest address or identifier kept (characters).
const MAX_FIELD: usize = 320;

/// Classifies one raw message. `verp` checks tokens (None: no VERP return path is
/// configured); `envelope_recipient` is the address the MTA delivered it to, when the
/// caller knows it (a pipe transport's `${recipient}`).
pub fn classify(
    raw: &[u8],
    verp: Option<&Verp>,
    envelope_recipient: Option<&str>,
) -> Classification {
    let mut token_places: Vec<String> = Vec::new();
    let mut c = match MessageParser::new().parse(raw) {
        Some(msg) => classify_message(&msg, verp, &mut token_places),
        None => Classification::new(BounceKind::Unmatched, Evidence::Nothing),
    };
    if let Some(verp) = verp {
        c.row_id = envelope_recipient
            .into_iter()
            .chain(token_places.iter().map(String::as_str))
            .find_map(|a| verp.row_id(a));
    }
    c
}

/// Classifies a parsed message and lists, in order of trust, the addresses where a
/// VERP token may be: the delivery headers (Delivered-To, X-Original-To, To, ...), the
/// report's sender fields, the returned message's Return-Path.
fn classify_message(
    msg: &Message<'_>,
    verp: Option<&Verp>,
    token_places: &mut Vec<String>,
) -> Classification {
    token_places.extend(header_addresses(
        msg,
        &[
            "Delivered-To",
            "X-Original-To",
            "Envelope-To",
            "X-Envelope-To",
            "To",
            "Cc",
        ],
    ));
    let mut c = if let Some(body) = report_part(msg, &["delivery-status", "global-delivery-status"])
    {
        from_dsn(msg, &body, token_places)
    } else if let Some(body) = report_part(msg, &["feedback-report"]) {
        from_arf(&body, token_places)
    } else {
        from_headers_and_text(msg, verp)
    };
    if let Some(returned) = returned_message(msg) {
        if c.message_id.is_none() {
            c.message_id = returned.message_id().map(|s| clean(s, MAX_FIELD));
        }
        token_places.extend(header_addresses(&returned, &["Return-Path"]));
        if c.kind == BounceKind::Complaint && c.recipient.is_none() {
            c.recipient = header_addresses(&returned, &["To"]).into_iter().next();
        }
    }
    c
}

/// The decoded body of the first `message/<subtype>` part among `subtypes`.
fn report_part(msg: &Message<'_>, subtypes: &[&str]) -> Option<String> {
    msg.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        let wanted = ct.ctype().eq_ignore_ascii_case("message")
            && ct
                .subtype()
                .is_some_and(|s| subtypes.iter().any(|w| s.eq_ignore_ascii_case(w)));
        wanted.then(|| String::from_utf8_lossy(part.contents()).into_owned())
    })
}

/// The message that bounced, as returned in the report: a `message/rfc822` or
/// `message/global` part, or only its headers (`text/rfc822-headers`,
/// `message/global-headers`).
fn returned_message<'a>(msg: &'a Message<'_>) -> Option<Message<'a>> {
    msg.parts.iter().skip(1).find_map(|part| {
        if let PartType::Message(m) = &part.body {
            return Some(m.clone());
        }
        let ct = part.content_type()?;
        let headers_only = (ct.ctype().eq_ignore_ascii_case("text")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers")))
            || (ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("global-headers")));
        if headers_only {
            MessageParser::new().parse_headers(part.contents())
        } else {
            None
        }
    })
}

/// The fields of a report body (`message/delivery-status`, `message/feedback-report`):
/// groups of header fields separated by blank lines, each group read by mail-parser's
/// header parser (folding, encoded words). Names lower-cased, values unfolded.
fn field_groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        if current.trim().is_empty() {
            current.clear();
            return;
        }
        current.push_str("\r\n");
        if let Some(m) = MessageParser::new().parse_headers(current.as_bytes()) {
            let fields: Vec<(String, String)> = m
                .headers_raw()
                .map(|(n, v)| (n.to_ascii_lowercase(), unfold(v)))
                .collect();
            if !fields.is_empty() {
                groups.push(fields);
            }
        }
        current.clear();
    };
    for line in body.lines() {
        if line.trim().is_empty() {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push_str("\r\n");
        }
    }
    flush(&mut current);
    groups
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `type; value` (Reporting-MTA, Diagnostic-Code, Final-Recipient) → (type, value).
fn typed(value: &str) -> (Option<String>, &str) {
    match value.split_once(';') {
        Some((t, v)) if !t.trim().is_empty() && !t.contains(char::is_whitespace) => {
            (Some(t.trim().to_ascii_lowercase()), v.trim())
        }
        _ => (None, value.trim()),
    }
}

/// A recipient field (`rfc822; a@b`, or RFC 6533 `utf-8; ...` in either its unitext or
/// its `\x{HEX}` xtext form) → the address.
fn recipient_field(value: &str) -> Option<String> {
    let (kind, addr) = typed(value);
    let addr = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let addr = if kind.as_deref() == Some("utf-8") {
        decode_utf8_xtext(addr)
    } else {
        addr.to_string()
    };
    (!addr.is_empty()).then(|| clean(&addr, MAX_FIELD))
}

/// RFC 6533 `utf-8-addr-xtext`: `\x{HEX}` stands for one Unicode scalar value.
fn decode_utf8_xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let decoded = after.find('}').and_then(|end| {
            let hex = &after[..end];
            let ok = (1..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
            let ch = ok
                .then(|| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                .flatten()?;
            Some((ch, end + 1))
        });
        match decoded {
            Some((ch, used)) => {
                out.push(ch);
                rest = &after[used..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// How bad a DSN recipient group is, to report the worst of several.
fn action_rank(action: Option<&str>) -> u8 {
    match action.map(str::to_ascii_lowercase).as_deref() {
        Some("failed") => 3,
        Some("delayed") => 2,
        Some("delivered" | "relayed" | "expanded") => 1,
        _ => 0,
    }
}

fn from_dsn(msg: &Message<'_>, body: &str, token_places: &mut Vec<String>) -> Classification {
    let groups = field_groups(body);
    let is_recipient = |g: &[(String, String)]| {
        field(g, "action").is_some() || field(g, "final-recipient").is_some()
    };
    let per_message: Vec<&Vec<(String, String)>> =
        groups.iter().filter(|g| !is_recipient(g)).collect();
    let per_message_field = |name: &str| per_message.iter().find_map(|g| field(g, name));
    let worst = groups
        .iter()
        .filter(|g| is_recipient(g))
        .enumerate()
        // The worst action; among equals, the first.
        .max_by_key(|(i, g)| (action_rank(field(g, "action")), std::cmp::Reverse(*i)))
        .map(|(_, g)| g);

    let mut c = Classification::new(BounceKind::Unmatched, Evidence::Dsn);
    c.reporting_mta = per_message_field("reporting-mta").map(|v| clean(typed(v).1, MAX_FIELD));
    c.envelope_id = per_message_field("original-envelope-id").map(|v| clean(v, MAX_FIELD));
    for name in ["x-postfix-sender", "original-mail-from"] {
        if let Some(v) = per_message_field(name) {
            token_places.extend(addresses_in(typed(v).1));
        }
    }
    let Some(g) = worst else {
        // A report without recipient groups: say what the text says, if anything.
        let mut t = from_text(msg, None);
        t.evidence = if t.kind == BounceKind::Unmatched {
            Evidence::Dsn
        } else {
            t.evidence
        };
        t.reporting_mta = c.reporting_mta;
        t.envelope_id = c.envelope_id;
        return t;
    };
    c.recipient = field(g, "original-recipient")
        .and_then(recipient_field)
        .or_else(|| field(g, "final-recipient").and_then(recipient_field));
    let diagnostic = field(g, "diagnostic-code").map(|v| typed(v).1.to_string());
    c.status = field(g, "status")
        .and_then(|s| s.split_whitespace().next())
        .and_then(StatusCode::parse)
        .or_else(|| diagnostic.as_deref().and_then(status_in_text));
    c.diagnostic = diagnostic.map(|d| clean(&d, MAX_DIAGNOSTIC));
    if let Some(mta) = field(g, "remote-mta") {
        if c.diagnostic.is_none() {
            c.diagnostic = Some(clean(
                &format!("remote MTA {}", typed(mta).1),
                MAX_DIAGNOSTIC,
            ));
        }
    }
    let class = c.status.map(StatusCode::class);
    c.kind = match field(g, "action").map(str::to_ascii_lowercase).as_deref() {
        // Failed without a readable status is a malformed report: kept for an
        // operator rather than suppressing an address on it.
        Some("failed") => match class {
            Some(5) => BounceKind::Hard,
            Some(4) => BounceKind::Soft,
            _ => BounceKind::Unmatched,
        },
        Some("delayed") => BounceKind::Delayed,
        Some("delivered" | "relayed" | "expanded") => BounceKind::Delivered,
        // No (or an unknown) Action: go by the status alone, never counting a
        // transient status as a bounce.
        _ => match class {
            Some(5) => BounceKind::Hard,
            Some(4) => BounceKind::Delayed,
            Some(2) => BounceKind::Delivered,
            _ => BounceKind::Unmatched,
        },
    };
    c
}

fn from_arf(body: &str, token_places: &mut Vec<String>) -> Classification {
    let groups = field_groups(body);
    let all = |name: &str| groups.iter().find_map(|g| field(g, name));
    let feedback_type = all("feedback-type").map(|t| t.trim().to_ascii_lowercase());
    // RFC 5965 §7.3 and RFC 6650: abuse, fraud, virus and other are complaints about
    // the mail; a `not-spam` report and an `auth-failure` (DMARC) report are not.
    let kind = match feedback_type.as_deref() {
        Some("not-spam" | "auth-failure") => BounceKind::Unmatched,
        _ => BounceKind::Complaint,
    };
    let mut c = Classification::new(kind, Evidence::Arf);
    c.diagnostic = Some(clean(
        &match (feedback_type.as_deref(), all("user-agent")) {
            (Some(t), Some(ua)) => format!("feedback-type {t} ({ua})"),
            (Some(t), None) => format!("feedback-type {t}"),
            (None, _) => "feedback report without a feedback type".to_string(),
        },
        MAX_DIAGNOSTIC,
    ));
    c.recipient = all("original-rcpt-to").and_then(|v| addresses_in(v).into_iter().next());
    c.reporting_mta = all("reporting-mta").map(|v| clean(typed(v).1, MAX_FIELD));
    c.envelope_id = all("original-envelope-id").map(|v| clean(v, MAX_FIELD));
    if let Some(v) = all("original-mail-from") {
        token_places.extend(addresses_in(v));
    }
    c
}

/// A message without a report part: a non-standard bounce, an auto-reply, or neither.
fn from_headers_and_text(msg: &Message<'_>, verp: Option<&Verp>) -> Classification {
    let from = msg.from().and_then(|a| a.first()).and_then(|a| a.address());
    let from_daemon = from.is_some_and(is_daemon_address);
    let failed_recipients = header_text(msg, "X-Failed-Recipients");
    if from_daemon || failed_recipients.is_some() {
        return from_text(msg, verp);
    }
    // A bounce subject makes a bounce even when the message is marked auto-replied (as
    // NDRs are) and comes from no daemon address (Exchange's sender is
    // MicrosoftExchange…@domain); without a status code in its text it is unmatched,
    // for an operator, rather than an ignored auto-reply.
    let subject = msg.subject().unwrap_or("").to_lowercase();
    if BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return from_text(msg, verp);
    }
    if let Some(why) = auto_reply_header(msg) {
        return auto_reply(msg, Evidence::Header, why);
    }
    if VACATION_SUBJECTS.iter().any(|s| subject.contains(s)) {
        let why = format!("Subject: {}", msg.subject().unwrap_or(""));
        return auto_reply(msg, Evidence::Subject, why);
    }
    Classification::new(BounceKind::Unmatched, Evidence::Nothing)
}

/// Subjects of bounces that carry no report (lower case).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable",
    "undelivered mail",
    "delivery status notification",
    "delivery failure",
    "delivery has failed",
    "failure notice",
    "mail delivery failed",
    "mail delivery failure",
    "returned mail",
    "could not be delivered",
    "nondeliverable",
    "non-deliverable",
    "unzustellbar",
    "退信",
    "无法投递",
];

/// Subjects of vacation and out-of-office replies (lower case): the last resort.
const VACATION_SUBJECTS: &[&str] = &[
    "out of office",
    "out-of-office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "autoresponse",
    "vacation",
    "away from the office",
    "abwesenheitsnotiz",
    "réponse automatique",
    "自动回复",
    "自動回覆",
    "不在办公室",
];

fn is_daemon_address(addr: &str) -> bool {
    let local = addr
        .rsplit_once('@')
        .map_or(addr, |(l, _)| l)
        .to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon" | "mailer_daemon" | "mailerdaemon" | "mail-daemon" | "postmaster"
    )
}

/// The RFC 3834 (and common non-standard) auto-reply markers: the header as found.
fn auto_reply_header(msg: &Message<'_>) -> Option<String> {
    if let Some(v) = header_text(msg, "Auto-Submitted") {
        let word = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !word.is_empty() && word != "no" {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    for name in ["X-Autoreply", "X-Autorespond", "X-Autoresponder"] {
        if let Some(v) = header_text(msg, name) {
            if !v.eq_ignore_ascii_case("no") {
                return Some(format!("{name}: {v}"));
            }
        }
    }
    if let Some(v) = header_text(msg, "Precedence") {
        if v.eq_ignore_ascii_case("auto_reply") {
            return Some(format!("Precedence: {v}"));
        }
    }
    None
}

fn auto_reply(msg: &Message<'_>, evidence: Evidence, why: String) -> Classification {
    let mut c = Classification::new(BounceKind::AutoReply, evidence);
    c.diagnostic = Some(clean(&why, MAX_DIAGNOSTIC));
    c.recipient = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| clean(a, MAX_FIELD));
    c.message_id = header_text(msg, "In-Reply-To")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .map(|v| clean(v.trim_start_matches('<').trim_end_matches('>'), MAX_FIELD));
    c
}

/// Best effort over a bounce without a report: the first enhanced status code (or bare
/// SMTP reply code) and the failed recipient (X-Failed-Recipients, else the first
/// address in the text that is not the bounce's own sender or recipient).
fn from_text(msg: &Message<'_>, verp: Option<&Verp>) -> Classification {
    let text = body_text(msg);
    let mut c = Classification::new(BounceKind::Unmatched, Evidence::Text);
    let found = text
        .lines()
        .find_map(|line| status_in_text(line).map(|s| (s, line)));
    let skip: Vec<String> = header_addresses(msg, &["From", "To", "Cc", "Sender", "Reply-To"])
        .into_iter()
        .map(|a| a.to_lowercase())
        .collect();
    let ours = |a: &str| {
        verp.is_some_and(|v| {
            a.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(v.return_path().domain()))
        })
    };
    c.recipient = header_text(msg, "X-Failed-Recipients")
        .and_then(|v| addresses_in(&v).into_iter().next())
        .or_else(|| {
            text.lines()
                .filter(|l| !is_header_line_to_skip(l))
                .flat_map(addresses_in)
                .find(|a| !is_daemon_address(a) && !ours(a) && !skip.contains(&a.to_lowercase()))
        });
    // The returned message's Message-ID, when its headers are quoted in the text.
    c.message_id = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_start_matches('<').trim_end_matches('>'))
            .filter(|v| !v.is_empty())
            .map(|v| clean(v, MAX_FIELD))
    });
    let Some((status, line)) = found else {
        return c;
    };
    c.status = Some(status);
    c.diagnostic = Some(clean(line.trim().trim_start_matches('#'), MAX_DIAGNOSTIC));
    let lower = text.to_lowercase();
    let retrying = [
        "will be retried",
        "will retry",
        "still trying",
        "not yet been delivered",
        "will continue trying",
    ]
    .iter()
    .any(|p| lower.contains(p));
    c.kind = match status.class() {
        5 => BounceKind::Hard,
        4 if retrying => BounceKind::Delayed,
        4 => BounceKind::Soft,
        _ => BounceKind::Unmatched,
    };
    c
}

/// Lines of a returned message's headers quoted in a bounce's text, whose addresses
/// are not the failed recipient (the sender, ids, relays).
fn is_header_line_to_skip(line: &str) -> bool {
    let Some((name, _)) = line.split_once(':') else {
        return false;
    };
    let name = name.trim().to_ascii_lowercase();
    !name.contains(' ')
        && matches!(
            name.as_str(),
            "from"
                | "return-path"
                | "sender"
                | "reply-to"
                | "message-id"
                | "in-reply-to"
                | "references"
                | "received"
                | "list-unsubscribe"
                | "list-id"
                | "dkim-signature"
        )
}

/// Every text body, HTML converted to text.
fn body_text(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for &id in &msg.text_body {
        if let Some(part) = msg.parts.get(id as usize) {
            match &part.body {
                PartType::Text(t) => out.push_str(t),
                PartType::Html(h) => out.push_str(&html_to_text(h)),
                _ => {}
            }
            out.push('\n');
        }
    }
    if out.trim().is_empty() {
        for &id in &msg.html_body {
            if let Some(PartType::Html(h)) = msg.parts.get(id as usize).map(|p| &p.body) {
                out.push_str(&html_to_text(h));
                out.push('\n');
            }
        }
    }
    out
}

/// The first enhanced status code in `text` (a whole token `d.ddd.ddd`, so addresses
/// and version numbers do not match), else a bare SMTP reply code 4xx/5xx followed by a
/// space or dash (as `550 ` or `550-`) as `x.0.0`.
fn status_in_text(text: &str) -> Option<StatusCode> {
    let tokens = || {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .map(|t| t.trim_end_matches('.'))
    };
    if let Some(s) = tokens().find_map(StatusCode::parse) {
        return Some(s);
    }
    let b = text.as_bytes();
    (0..b.len().saturating_sub(3)).find_map(|i| {
        let code = &b[i..i + 3];
        let starts = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let ends = matches!(b.get(i + 3), Some(b' ' | b'-'));
        let ok = starts
            && ends
            && matches!(code[0], b'4' | b'5')
            && code[1].is_ascii_digit()
            && code[2].is_ascii_digit();
        ok.then(|| StatusCode {
            class: code[0] - b'0',
            subject: 0,
            detail: 0,
        })
    })
}

/// The unfolded value of the last header `name`, if not empty.
fn header_text(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.headers_raw()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .last()
        .map(|(_, v)| unfold(v))
        .filter(|v| !v.is_empty())
}

/// Every address in the headers `names`, in order of the names, then of appearance.
fn header_addresses(msg: &Message<'_>, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|name| {
            msg.headers_raw()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| addresses_in(v))
        })
        .collect()
}

/// The address-like words in `text`: `local@domain.tld`, stripped of brackets, quotes
/// and punctuation around it. UTF-8 addresses count.
fn addresses_in(text: &str) -> Vec<String> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')' | '[' | ']' | '"')
    })
    .map(|w| w.trim_matches(|c: char| matches!(c, '\'' | ':' | '.' | '`' | '*' | '#')))
    .filter(|w| looks_like_address(w))
    .map(|w| clean(w, MAX_FIELD))
    .collect()
}

fn looks_like_address(w: &str) -> bool {
    let Some((local, domain)) = w.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        && !w.chars().any(char::is_control)
}

/// A header value unfolded: line breaks and the whitespace after them become one space.
fn unfold(v: &str) -> String {
    v.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of at most `max` characters, control characters replaced by spaces.
fn clean(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((i, _)) = out.char_indices().nth(max) {
        out.truncate(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_parse_strictly() {
        assert_eq!(StatusCode::parse("5.1.1").unwrap().to_string(), "5.1.1");
        assert_eq!(StatusCode::parse("4.7.100").unwrap().to_string(), "4.7.100");
        for bad in [
            "", "5.1", "5.1.1.1", "3.1.1", "55.1.1", "5.1.1000", "5.a.1", "5..1",
        ] {
            assert_eq!(StatusCode::parse(bad), None, "{bad}");
        }
        assert!(StatusCode::parse("5.0.0").unwrap().is_permanent());
        assert!(StatusCode::parse("4.2.2").unwrap().is_transient());
    }

    #[test]
    fn status_codes_read_and_write_as_text() {
        let s: StatusCode = "5.1.10".parse().unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"5.1.10\"");
        assert_eq!(serde_json::from_str::<StatusCode>("\"5.1.10\"").unwrap(), s);
        assert!(serde_json::from_str::<StatusCode>("\"550\"").is_err());
        assert_eq!(
            "6.0.0\n".parse::<StatusCode>().unwrap_err().to_string(),
            "`6.0.0\\n` is not an enhanced status code (class.subject.detail, e.g. 5.1.1)"
        );
        let mut c = Classification::new(BounceKind::AutoReply, Evidence::Header);
        c.status = Some(s);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["kind"], "auto_reply");
        assert_eq!(json["evidence"], "header");
        assert_eq!(json["status"], "5.1.10");
        assert_eq!(serde_json::from_value::<Classification>(json).unwrap(), c);
    }

    #[test]
    fn status_in_text_skips_addresses_and_dates_and_reads_bare_reply_codes() {
        let s = |t: &str| status_in_text(t).map(|s| s.to_string());
        assert_eq!(
            s("host 192.168.1.1 said: 550 5.1.1 <a@b.org>: no"),
            Some("5.1.1".into())
        );
        assert_eq!(
            s("Sorry, no mailbox here by that name. (#5.1.1)"),
            Some("5.1.1".into())
        );
        assert_eq!(
            s("Remote host said: 552-mailbox full"),
            Some("5.0.0".into())
        );
        assert_eq!(s("on 1.12.2026 from 10.0.0.1 version 3.7.11"), None);
        assert_eq!(s("we have 5501 messages; port 25"), None);
    }

    #[test]
    fn utf8_xtext_recipients_decode() {
        assert_eq!(
            recipient_field("utf-8; \\x{5F20}\\x{4F1F}@\\x{4F8B}\\x{5B50}.\\x{4E2D}\\x{56FD}")
                .as_deref(),
            Some("张伟@例子.中国")
        );
        assert_eq!(
            recipient_field("utf-8; 张伟@例子.中国").as_deref(),
            Some("张伟@例子.中国")
        );
        assert_eq!(
            recipient_field("rfc822;<a+b@x.org>").as_deref(),
            Some("a+b@x.org")
        );
        // A broken escape is kept as written.
        assert_eq!(decode_utf8_xtext("a\\x{zz}b"), "a\\x{zz}b");
        assert_eq!(decode_utf8_xtext("a\\x{110000}"), "a\\x{110000}");
    }

    #[test]
    fn garbage_and_odd_input_is_unmatched_never_a_panic() {
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n\r\n".to_vec(),
            b"not a message at all".to_vec(),
            (0u8..=255).cycle().take(5000).collect(),
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n".to_vec(),
            b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\n".to_vec(),
        ];
        for raw in inputs {
            let c = classify(&raw, None, None);
            assert!(!c.kind.is_bounce() || c.status.is_some(), "{c:?}");
        }
        let c = classify(b"not a message at all", None, None);
        assert_eq!(c.kind, BounceKind::Unmatched);
    }

    #[test]
    fn a_dsn_with_several_recipients_reports_the_worst() {
        let raw = "From: MAILER-DAEMON@mx.example.org\r\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
            --b\r\nContent-Type: message/delivery-status\r\n\r\n\
            Reporting-MTA: dns; mx.example.org\r\n\r\n\
            Final-Recipient: rfc822; ok@example.net\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n\
            Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
            Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
            Final-Recipient: rfc822; gone2@example.net\r\nAction: failed\r\nStatus: 5.2.1\r\n\r\n\
            --b--\r\n";
        let c = classify(raw.as_bytes(), None, None);
        assert_eq!(c.kind, BounceKind::Hard);
        assert_eq!(c.recipient.as_deref(), Some("gone@example.net"));
        assert_eq!(c.status.unwrap().to_string(), "5.1.1");
        // Without Action the status decides, and a transient one is never a bounce.
        let c = classify(
            raw.replace("Action: failed\r\nStatus: 5", "Status: 4")
                .as_bytes(),
            None,
            None,
        );
        assert_eq!(c.kind, BounceKind::Delayed, "{c:?}");
    }

    #[test]
    fn an_ndr_marked_auto_replied_from_no_daemon_is_still_a_bounce() {
        let ndr = "From: Microsoft Outlook <MicrosoftExchange329e71ec@contoso.example>\r\n\
            To: bounces+1-00@bounces.example.org\r\n\
            Subject: Undeliverable: Council session\r\n\
            Auto-Submitted: auto-replied\r\n\
            \r\n\
            Delivery has failed to these recipients or groups:\r\n\r\n\
            li.na@contoso.example\r\n\
            Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'\r\n";
        let c = classify(ndr.as_bytes(), None, None);
        assert_eq!(
            (c.kind, c.evidence),
            (BounceKind::Hard, Evidence::Text),
            "{c:?}"
        );
        assert_eq!(c.recipient.as_deref(), Some("li.na@contoso.example"));
        // The same words without a status code: kept for an operator, not ignored.
        let vague = ndr.replace("'550 5.1.10 RESOLVER.ADR.RecipientNotFound'", "an error");
        let c = classify(vague.as_bytes(), None, None);
        assert_eq!(
            (c.kind, c.evidence),
            (BounceKind::Unmatched, Evidence::Text),
            "{c:?}"
        );
        assert_eq!(c.recipient.as_deref(), Some("li.na@contoso.example"));
    }

    #[test]
    fn clean_makes_one_bounded_line() {
        assert_eq!(clean("a\r\n\tb\u{7}c", 100), "a b c");
        assert_eq!(clean("日本語テキスト", 3), "日本語");
    }
}
