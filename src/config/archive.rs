//! `[archive]`: the public archive of published bulletins (their web versions and the
//! Atom feed) and the URL readers reach it at, which e-mails link to.

use super::unsubscribe::{check_base_url, UnsubscribeConfig};
use super::{ConfigError, Source};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawArchive {
    enabled: bool,
    include_notices: bool,
    page_size: u32,
    base_url: Option<String>,
}

impl Default for RawArchive {
    fn default() -> Self {
        Self {
            enabled: true,
            include_notices: false,
            page_size: 20,
            base_url: None,
        }
    }
}

/// The largest `archive.page_size`.
pub const MAX_ARCHIVE_PAGE: u32 = 200;

/// The public archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// False: the `/archive` routes answer 404 and e-mails carry no archive link.
    pub enabled: bool,
    /// Notices are listed and linked too.
    pub include_notices: bool,
    /// Entries per page of `/archive` and per feed.
    pub page_size: u32,
    /// The public URL the archive lives under (`<base>/archive/...`), without the
    /// trailing `/`: `archive.base_url`, else `unsubscribe.base_url` unless that points
    /// at this machine (without `unsubscribe.allow_loopback`). None: e-mails carry no
    /// "View in your browser" link and no `Archived-At`, WeChat no "read original".
    pub base_url: Option<String>,
}

impl ArchiveConfig {
    /// The public URL of bulletin `id`'s web version in `language`, if the archive is on,
    /// has a public URL and shows bulletins of this kind.
    pub fn web_url(&self, id: i64, notice: bool, language: &str) -> Option<String> {
        if !self.enabled || (notice && !self.include_notices) {
            return None;
        }
        let base = self.base_url.as_deref()?;
        Some(format!("{base}/archive/{id}/{}", url_segment(language)))
    }

    /// Why e-mails carry no archive link although the archive is on (check-config).
    pub fn missing_link(&self) -> Option<&'static str> {
        (self.enabled && self.base_url.is_none()).then_some(
            "the archive has no public URL (unsubscribe.base_url points at this machine and \
             archive.base_url is not set): e-mails carry no \"View in your browser\" link and \
             no Archived-At header, WeChat articles no \"read original\" link",
        )
    }
}

/// A language tag as a path segment: only letters, digits and `-` are kept (a BCP 47
/// tag has nothing else).
pub fn url_segment(language: &str) -> String {
    language
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Checks `[archive]` (absent: the defaults).
pub(super) fn validate(
    raw: Option<Spanned<RawArchive>>,
    unsubscribe: &UnsubscribeConfig,
    src: &Source,
) -> Result<ArchiveConfig, ConfigError> {
    let (span, a) = match raw {
        Some(a) => (Some(a.span()), a.into_inner()),
        None => (None, RawArchive::default()),
    };
    if !(1..=MAX_ARCHIVE_PAGE).contains(&a.page_size) {
        return Err(src.error(
            span,
            "archive.page_size",
            format!("must be 1 to {MAX_ARCHIVE_PAGE}"),
        ));
    }
    let base_url = match a.base_url {
        Some(u) => Some(check_base_url(&u).map_err(|m| src.error(span, "archive.base_url", m))?),
        None => (!unsubscribe.loopback || unsubscribe.allow_loopback)
            .then(|| unsubscribe.base_url.clone()),
    };
    Ok(ArchiveConfig {
        enabled: a.enabled,
        include_notices: a.include_notices,
        page_size: a.page_size,
        base_url,
    })
}
