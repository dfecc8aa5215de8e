//! The public archive's operations: which published bulletins there are (newest first,
//! per language, paged), which language versions one has, and its web version — the
//! e-mail's HTML without any personal link (`render::web_version`). Published means
//! fanned out (sending, paused or done); notices only with `[archive] include_notices`.
//! A bulletin is listed once per language version (its row is the primary version,
//! `bulletin_versions` the others); [`Ops::archive_versions`] and
//! [`Ops::archive_web_version`] read them from the stored bulletin.

use super::{Missing, Ops, OpsError, Result};
use crate::domain::language::parse_tag;
use crate::store::{ArchiveQuery, ArchivedBulletin, BulletinKind, BulletinState, StoredBulletin};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One (bulletin, language version) as the archive lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub id: i64,
    /// `record`, `digest` or `notice`.
    pub kind: String,
    pub language: String,
    pub subject: String,
    pub published_at: DateTime<Utc>,
    /// Its web version's path: `/archive/{id}/{language}`.
    pub path: String,
}

impl ArchiveEntry {
    fn new(b: ArchivedBulletin) -> Self {
        Self {
            path: version_path(b.id, &b.language),
            id: b.id,
            kind: b.kind.to_string(),
            language: b.language,
            subject: b.subject,
            published_at: b.created_at,
        }
    }
}

/// One page of the archive.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivePage {
    /// The language asked for (None: every language).
    pub language: Option<String>,
    pub entries: Vec<ArchiveEntry>,
    /// `before` for the next (older) page; None on the last page.
    pub older: Option<i64>,
    /// Every language the archive holds, sorted.
    pub languages: Vec<String>,
}

/// A bulletin's web version in one language.
#[derive(Debug, Clone, Serialize)]
pub struct WebVersion {
    pub id: i64,
    pub language: String,
    pub subject: String,
    pub published_at: DateTime<Utc>,
    /// The whole HTML page.
    pub html: String,
}

/// The path of bulletin `id`'s web version in `language`.
pub fn version_path(id: i64, language: &str) -> String {
    format!("/archive/{id}/{}", crate::config::url_segment(language))
}

fn not_archived(id: i64) -> OpsError {
    OpsError::not_found(Missing::Bulletin, format!("no published bulletin {id}"))
}

/// `lang` checked as a BCP 47 tag (the error names the field).
/// `lang` checked as a BCP 47 tag and written canonically (`ZH-hans` → `zh-Hans`); the
/// error names the field.
pub fn check_language(lang: &str) -> Result<String> {
    match parse_tag(lang) {
        Some(id) if lang.len() <= 35 => Ok(id.to_string()),
        _ => Err(OpsError::invalid(
            "lang",
            format!("`{}` is not a BCP 47 language tag", lang.escape_default()),
        )),
    }
}

impl Ops {
    fn archive_on(&self) -> Result<&crate::config::ArchiveConfig> {
        let a = &self.config.archive;
        if a.enabled {
            Ok(a)
        } else {
            Err(OpsError::not_found(Missing::Bulletin, "the archive is off"))
        }
    }

    /// A page of the archive, newest first: `lang` only that language's versions,
    /// `before` only bulletins older than that id.
    pub async fn archive_page(
        &self,
        lang: Option<&str>,
        before: Option<i64>,
    ) -> Result<ArchivePage> {
        let a = self.archive_on()?;
        let language = lang.map(check_language).transpose()?;
        let limit = a.page_size;
        let mut rows = self
            .store
            .archived_bulletins(&ArchiveQuery {
                language: language.clone(),
                include_notices: a.include_notices,
                before,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() > limit as usize;
        // A bulletin's versions are listed together: one cut by the page's end goes
        // whole to the next page (unless it alone fills this one).
        let cut = more && rows[limit as usize].id == rows[limit as usize - 1].id;
        rows.truncate(limit as usize);
        if cut {
            let last = rows[rows.len() - 1].id;
            if rows.iter().any(|b| b.id != last) {
                rows.retain(|b| b.id != last);
            }
        }
        let older = more.then(|| rows.last().map(|b| b.id)).flatten();
        Ok(ArchivePage {
            language,
            entries: rows.into_iter().map(ArchiveEntry::new).collect(),
            older,
            languages: self.store.archive_languages(a.include_notices).await?,
        })
    }

    /// A published bulletin as the archive may show it.
    async fn archived(&self, id: i64) -> Result<StoredBulletin> {
        let a = self.archive_on()?;
        let b = self
            .store
            .bulletin(id)
            .await?
            .ok_or_else(|| not_archived(id))?;
        let shown = b.state != BulletinState::FanningOut
            && (b.kind != BulletinKind::Notice || a.include_notices);
        if shown {
            Ok(b)
        } else {
            Err(not_archived(id))
        }
    }

    /// The language versions of published bulletin `id`, its primary first.
    pub async fn archive_versions(&self, id: i64) -> Result<Vec<String>> {
        let b = self.archived(id).await?;
        Ok(std::iter::once(b.language)
            .chain(b.versions.into_iter().map(|v| v.language))
            .collect())
    }

    /// The web version of published bulletin `id` in `lang` (one of its versions, any
    /// case), or in its primary language. Images point at
    /// `<archive base>/archive/{id}/images/{cid}`.
    pub async fn archive_web_version(&self, id: i64, lang: Option<&str>) -> Result<WebVersion> {
        let b = self.archived(id).await?;
        let (language, subject, html) = match lang {
            None => (b.language, b.subject, b.html),
            Some(l) => {
                let want = parse_tag(&check_language(l)?);
                if parse_tag(&b.language) == want {
                    (b.language, b.subject, b.html)
                } else {
                    let v = b
                        .versions
                        .into_iter()
                        .find(|v| parse_tag(&v.language) == want)
                        .ok_or_else(|| {
                            OpsError::not_found(
                                Missing::Bulletin,
                                format!("bulletin {id} has no version in `{}`", l.escape_default()),
                            )
                        })?;
                    (v.language, v.subject, v.html)
                }
            }
        };
        let base = self.config.archive.base_url.as_deref().unwrap_or("");
        let html = crate::render::web_version(&html, &format!("{base}/archive/{id}/images/"));
        Ok(WebVersion {
            id,
            language,
            subject,
            published_at: b.created_at,
            html,
        })
    }

    /// Image `cid` of published bulletin `id` (its records' images, by Content-ID).
    pub async fn archive_image(&self, id: i64, cid: &str) -> Result<crate::store::ImageData> {
        let b = self.archived(id).await?;
        for rid in &b.record_ids {
            for (i, im) in self.store.record_images(rid).await?.into_iter().enumerate() {
                if crate::render::image_cid(rid, i) == cid {
                    return Ok(im);
                }
            }
        }
        Err(OpsError::not_found(
            Missing::Bulletin,
            format!("bulletin {id} has no image `{}`", cid.escape_default()),
        ))
    }
}
