//! `[publisher]`: the contact block printed at the end of every bulletin, and its
//! per-language texts (`[publisher.i18n.<locale>]`, a label locale such as `zh-Hans`).

use super::{ConfigError, Source};
use crate::domain::language::{known_locale, label_locale, label_locales};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use toml::Spanned;

/// The publisher's contact block, printed at the end of every bulletin.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
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
    /// The block in other languages, by label locale (`zh-Hans`): what each replaces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub i18n: BTreeMap<String, PublisherText>,
}

/// `[publisher.i18n.<locale>]`: the parts of the contact block written differently in
/// one language; what is not given is the default block's.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublisherText {
    pub names: Option<Vec<String>>,
    pub address: Option<Vec<String>>,
    pub phone: Option<String>,
    pub fax: Option<String>,
    pub emails: Option<Vec<String>>,
    pub website: Option<String>,
    pub wechat_id: Option<String>,
}

impl Publisher {
    /// The block as a text in `language` (a BCP 47 tag) shows it: its label locale's
    /// overrides (`zh-CN` and `zh` take `[publisher.i18n.zh-Hans]`) over the default.
    pub fn for_language(&self, language: &str) -> Cow<'_, Publisher> {
        let Some(t) = self.i18n.get(label_locale(language)) else {
            return Cow::Borrowed(self);
        };
        let or = |o: &Option<String>, d: &Option<String>| o.clone().or_else(|| d.clone());
        Cow::Owned(Publisher {
            names: t.names.clone().unwrap_or_else(|| self.names.clone()),
            address: t.address.clone().unwrap_or_else(|| self.address.clone()),
            phone: or(&t.phone, &self.phone),
            fax: or(&t.fax, &self.fax),
            emails: t.emails.clone().unwrap_or_else(|| self.emails.clone()),
            website: or(&t.website, &self.website),
            wechat_id: or(&t.wechat_id, &self.wechat_id),
            i18n: BTreeMap::new(),
        })
    }
}

/// `[publisher]` as written: the per-language tables keep their place for errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublisher {
    names: Vec<String>,
    #[serde(default)]
    address: Vec<String>,
    phone: Option<String>,
    fax: Option<String>,
    #[serde(default)]
    emails: Vec<String>,
    website: Option<String>,
    wechat_id: Option<String>,
    #[serde(default)]
    i18n: BTreeMap<String, Spanned<PublisherText>>,
}

/// The label locale a `[<section>.i18n.<tag>]` table names, or an error at the table
/// listing the locales there are.
pub(super) fn locale_key(
    section: &str,
    tag: &str,
    span: std::ops::Range<usize>,
    src: &Source,
) -> Result<&'static str, ConfigError> {
    known_locale(tag).ok_or_else(|| {
        src.error(
            Some(span),
            &format!("{section}.i18n.{tag}"),
            format!(
                "unknown locale `{}`: the locales with labels are {} (one folder each in templates/locales/)",
                tag.escape_default(),
                label_locales().join(", ")
            ),
        )
    })
}

/// Checks one set of contact lines (`key` names them in errors): each one line of a sane
/// length (each is printed in every bulletin).
fn check_lines(
    prefix: &str,
    lines: [(&str, Vec<&String>); 7],
    span: &std::ops::Range<usize>,
    src: &Source,
) -> Result<(), ConfigError> {
    for (key, values) in lines {
        for (i, v) in values.iter().enumerate() {
            crate::domain::text::check_line(v, 300, false).map_err(|m| {
                src.error(Some(span.clone()), &format!("{prefix}.{key}[{}]", i + 1), m)
            })?;
        }
    }
    Ok(())
}

/// At least one name; every line of the block one line of a sane length; each
/// `[publisher.i18n.<locale>]` a label locale, its names (if given) not empty.
pub(super) fn validate(raw: Spanned<RawPublisher>, src: &Source) -> Result<Publisher, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let empty_name =
        |names: &[String]| names.is_empty() || names.iter().any(|n| n.trim().is_empty());
    if empty_name(&raw.names) {
        return Err(src.error(
            Some(span),
            "publisher.names",
            "give at least one non-empty name",
        ));
    }
    let p = &raw;
    check_lines(
        "publisher",
        [
            ("names", p.names.iter().collect()),
            ("address", p.address.iter().collect()),
            ("emails", p.emails.iter().collect()),
            ("phone", p.phone.iter().collect()),
            ("fax", p.fax.iter().collect()),
            ("website", p.website.iter().collect()),
            ("wechat_id", p.wechat_id.iter().collect()),
        ],
        &span,
        src,
    )?;
    let mut i18n = BTreeMap::new();
    for (tag, text) in raw.i18n {
        let text_span = text.span();
        let locale = locale_key("publisher", &tag, text_span.clone(), src)?;
        let t = text.into_inner();
        let prefix = format!("publisher.i18n.{tag}");
        if t.names.as_deref().is_some_and(empty_name) {
            return Err(src.error(
                Some(text_span),
                &format!("{prefix}.names"),
                "give at least one non-empty name (or leave names out to use the default)",
            ));
        }
        check_lines(
            &prefix,
            [
                ("names", t.names.iter().flatten().collect()),
                ("address", t.address.iter().flatten().collect()),
                ("emails", t.emails.iter().flatten().collect()),
                ("phone", t.phone.iter().collect()),
                ("fax", t.fax.iter().collect()),
                ("website", t.website.iter().collect()),
                ("wechat_id", t.wechat_id.iter().collect()),
            ],
            &text_span,
            src,
        )?;
        if i18n.insert(locale.to_string(), t).is_some() {
            return Err(src.error(
                Some(text_span),
                &prefix,
                format!("a second table for locale `{locale}`"),
            ));
        }
    }
    Ok(Publisher {
        names: raw.names,
        address: raw.address,
        phone: raw.phone,
        fax: raw.fax,
        emails: raw.emails,
        website: raw.website,
        wechat_id: raw.wechat_id,
        i18n,
    })
}
