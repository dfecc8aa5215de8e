//! `[publisher]`: the contact block printed at the end of every bulletin.

use super::{ConfigError, Source};
use serde::Deserialize;
use toml::Spanned;

/// The publisher's contact block, printed at the end of every bulletin.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// One or more names (e.g. the centre and its parent body), in display order.
    pub names: Vec<String>,
    #[serde(default)]
    pub address: Vec<String>,
    pub phone: Option<String>,
    pub fax: Option<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    pub website: Option<String>,
    pub wechat_id: Option<String>,
}

/// At least one name; every line of the block one line of a sane length (each is printed
/// in every bulletin).
pub(super) fn validate(raw: Spanned<Publisher>, src: &Source) -> Result<Publisher, ConfigError> {
    let span = raw.span();
    let publisher = raw.into_inner();
    if publisher.names.is_empty() || publisher.names.iter().any(|n| n.trim().is_empty()) {
        return Err(src.error(
            Some(span),
            "publisher.names",
            "give at least one non-empty name",
        ));
    }
    let p = &publisher;
    let contact_lines: [(&str, Vec<&String>); 7] = [
        ("names", p.names.iter().collect()),
        ("address", p.address.iter().collect()),
        ("emails", p.emails.iter().collect()),
        ("phone", p.phone.iter().collect()),
        ("fax", p.fax.iter().collect()),
        ("website", p.website.iter().collect()),
        ("wechat_id", p.wechat_id.iter().collect()),
    ];
    for (key, values) in contact_lines {
        for (i, v) in values.iter().enumerate() {
            crate::domain::text::check_line(v, 300, false).map_err(|m| {
                src.error(
                    Some(span.clone()),
                    &format!("publisher.{key}[{}]", i + 1),
                    m,
                )
            })?;
        }
    }
    Ok(publisher)
}
