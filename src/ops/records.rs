//! Record operations: import a record file, list and show records, approve one (with
//! the WeChat checks), preview its bulletin as each channel will carry it.

use super::audit::AuditEntry;
use super::{Missing, Ops, OpsError, Refusal, Result};
use crate::domain::record::{parse_record, RecordError, RecordErrors};
use crate::domain::Actor;
use crate::domain::{ChannelKind, RecordState};
use crate::store::{ApproveOutcome, ImportOutcome, NewRecord, StoredRecord};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::path::Path;

/// A record as listed (`records`, `GET /api/records`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordSummary {
    pub id: String,
    /// The primary version's title.
    pub title: String,
    pub held_on: NaiveDate,
    /// The primary version's language.
    pub language: String,
    /// Every version's language, the primary's first.
    pub versions: Vec<String>,
    pub state: RecordState,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub content_hash: String,
}

impl From<&StoredRecord> for RecordSummary {
    fn from(r: &StoredRecord) -> Self {
        Self {
            id: r.record.id.to_string(),
            title: r.record.title.clone(),
            held_on: r.record.held_on,
            language: r.record.language.clone(),
            versions: r.languages().iter().map(|l| l.to_string()).collect(),
            state: r.state,
            approved_by: r.approved_by.clone(),
            approved_at: r.approved_at,
            published_at: r.published_at,
            content_hash: r.content_hash.clone(),
        }
    }
}

/// A record whole: its content, state, approval and history.
pub type RecordDetail = StoredRecord;

/// What importing one record file did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportedRecord {
    pub id: String,
    /// The language of the version this file holds.
    pub language: String,
    /// Every version the record now has, the primary's first.
    pub versions: Vec<String>,
    pub outcome: ImportOutcome,
}

/// One file of an import: what happened to it, and what to tell the editor.
#[derive(Debug)]
pub struct FileImport {
    pub file: std::path::PathBuf,
    /// The record stored, or why the file was refused (nothing of it stored): the
    /// record's errors by line and field, or `id` when another file of this import has
    /// the same id.
    pub outcome: Result<ImportedRecord>,
    /// `held_on` looks mistyped (far in the past or future): with its line, e.g.
    /// `warning: a.toml:9: held_on: ...`. Imported anyway.
    pub warning: Option<String>,
    /// When a schedule sends over WeChat: the article's size against WeChat's limit.
    pub wechat_size: Option<WechatSize>,
}

/// What sending a record back did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SentBack {
    pub id: String,
    /// The record's state now: draft.
    pub state: RecordState,
    /// Its state before.
    pub was: RecordState,
    pub comment: String,
    pub by: String,
}

/// What approving did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub id: String,
    pub outcome: ApproveOutcome,
    pub by: String,
}

/// In a module of its own: the macro's `Result` is the standard one, not [`Result`].
mod format {
    crate::domain::vocab::text_enum!(
        /// Which part of the e-mail a preview shows.
        PreviewFormat("preview format") { Html => "html", Text => "text" }
    );
}
pub use format::PreviewFormat;

/// What to preview.
#[derive(Debug, Clone, Copy)]
pub struct PreviewInput<'a> {
    pub id: &'a str,
    pub channel: ChannelKind,
    /// For e-mail: the HTML part, or the plain-text part with the subject.
    pub format: PreviewFormat,
    /// The version to show (its exact language tag); None: the primary.
    pub language: Option<&'a str>,
}

/// A record's bulletin as it will be sent.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// `text/html` or `text/plain`.
    pub content_type: &'static str,
    pub body: String,
    /// For the WeChat channel: the article's size against WeChat's limit.
    pub wechat_size: Option<WechatSize>,
}

/// A WeChat article's size against WeChat's limit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WechatSize {
    /// Characters as WeChat counts them.
    pub size: usize,
    pub max: usize,
    /// A schedule that sends over WeChat, if any does (then `too_long` blocks approval).
    pub schedule: Option<String>,
    pub too_long: bool,
}

impl Ops {
    /// Reads, validates and stores a record file with its images. Nothing is stored on
    /// error (every error of the file is returned, by line and field).
    pub async fn import_record_file(&self, actor: &Actor, path: &Path) -> Result<ImportedRecord> {
        self.import_version(actor, path, &[]).await
    }

    /// Imports one version's file. `also`: the languages of the same record's other files
    /// in this import (so a primary may change the images every version shows).
    async fn import_version(
        &self,
        actor: &Actor,
        path: &Path,
        also: &[String],
    ) -> Result<ImportedRecord> {
        let file = path.display().to_string();
        let one = |message: String| {
            RecordErrors(vec![RecordError {
                file: file.clone(),
                line: None,
                column: None,
                field: None,
                message,
            }])
        };
        let bytes = crate::files::read_regular_file(path, crate::domain::record::MAX_FILE_BYTES)
            .map_err(|e| one(e.to_string()))?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let (line, col) =
                crate::domain::text::line_col(std::str::from_utf8(valid).unwrap_or(""), usize::MAX);
            RecordErrors(vec![RecordError {
                file: file.clone(),
                line: Some(line),
                column: Some(col),
                field: None,
                message: "the file is not valid UTF-8".into(),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        self.store_record_source(actor, &source, &file, Some(base), also)
            .await
    }

    /// Validates and stores a record sent as text (`POST /api/records`, the console's
    /// upload), named `name` in its errors. Such a record cannot carry image files (each
    /// `[[images]]` is refused with its line); nothing is stored on error.
    pub async fn import_record_text(
        &self,
        actor: &Actor,
        name: &str,
        source: &str,
    ) -> Result<ImportedRecord> {
        if source.len() > crate::domain::record::MAX_FILE_BYTES {
            return Err(RecordErrors(vec![RecordError {
                file: name.to_string(),
                line: None,
                column: None,
                field: None,
                message: format!(
                    "larger than {} bytes",
                    crate::domain::record::MAX_FILE_BYTES
                ),
            }])
            .into());
        }
        self.store_record_source(actor, source, name, None, &[])
            .await
    }

    /// Parses `source` (named `file` in errors), loads its images from `base` (None:
    /// images are refused), checks them and stores the record; audited as `record.import`.
    /// `also`: the languages of the same record's other files in this import.
    async fn store_record_source(
        &self,
        actor: &Actor,
        source: &str,
        file: &str,
        base: Option<&Path>,
        also: &[String],
    ) -> Result<ImportedRecord> {
        let file = file.to_string();
        let record = parse_record(source, &file, &self.config.default_language)?;
        let spans = crate::domain::record::image_file_spans(source);
        let mut images = Vec::new();
        let mut errors = Vec::new();
        for (i, im) in record.images.iter().enumerate() {
            let loaded = match base {
                Some(base) => crate::files::load_image(&base.join(&im.file)).map_err(|e| e.to_string()),
                None => Err(
                    "a record sent as text cannot carry image files: import it with `bulletin import`"
                        .to_string(),
                ),
            };
            match loaded {
                Ok(mut data) => {
                    data.file = im.file.clone();
                    images.push(data)
                }
                Err(message) => errors.push(RecordError {
                    file: file.clone(),
                    line: spans
                        .get(i)
                        .map(|s| crate::domain::text::line_col(source, s.start).0),
                    column: spans
                        .get(i)
                        .map(|s| crate::domain::text::line_col(source, s.start).1),
                    field: Some(format!("images[{}].file", i + 1)),
                    message: message.to_string(),
                }),
            }
        }
        // Images WeChat would refuse are refused now, not when the bulletin is sent.
        if self.sends_to_wechat() {
            for (i, why) in crate::channel::wechat::record_image_refusals(
                images
                    .iter()
                    .map(|im| (im.file.as_str(), im.content_type.as_str(), im.bytes.len())),
            ) {
                errors.push(RecordError {
                    file: file.clone(),
                    line: None,
                    column: None,
                    field: Some(format!("images[{}].file", i + 1)),
                    message: format!("WeChat would refuse it: {why}"),
                });
            }
        }
        let hashes: Vec<String> = images.iter().map(|i| i.sha256.clone()).collect();
        // Every version of a record shows the same images (captions and alt text are
        // its own): the record's primary sets them.
        if errors.is_empty() {
            if let Some(why) = self.image_mismatch(&record, &hashes, also).await? {
                errors.push(RecordError {
                    file: file.clone(),
                    line: None,
                    column: None,
                    field: Some("images".into()),
                    message: why,
                });
            }
        }
        if !errors.is_empty() {
            return Err(RecordErrors(errors).into());
        }
        let content_hash = record.content_hash(&hashes);
        let id = record.id.to_string();
        let language = record.language.clone();
        let outcome = self
            .store
            .import_record(
                &NewRecord {
                    record,
                    images,
                    content_hash,
                    source_file: file.clone(),
                    preferred_primary: self.config.default_language.clone(),
                },
                self.clock.now(),
            )
            .await?;
        let versions = match self.store.record(&id).await? {
            Some(r) => r.languages().iter().map(|l| l.to_string()).collect(),
            None => vec![language.clone()],
        };
        self.audit(
            actor,
            AuditEntry::new("record.import", format!("record:{id}"))
                .after(serde_json::json!({"outcome": outcome, "file": file})),
        )
        .await;
        Ok(ImportedRecord {
            id,
            language,
            versions,
            outcome,
        })
    }

    /// Why a version's images cannot be stored with the record's other versions, if they
    /// cannot: a version other than the primary must show the stored images; the primary
    /// may change them only when every other version comes in the same import.
    async fn image_mismatch(
        &self,
        record: &crate::domain::SessionRecord,
        hashes: &[String],
        also: &[String],
    ) -> Result<Option<String>> {
        use crate::domain::record::same_language;
        let Some(existing) = self.store.record(record.id.as_str()).await? else {
            return Ok(None);
        };
        let lang = record.language.as_str();
        let others: Vec<&str> = existing
            .languages()
            .into_iter()
            .filter(|l| !same_language(l, lang))
            .collect();
        if others.is_empty() {
            return Ok(None);
        }
        let default = self.config.default_language.as_str();
        let primary = same_language(&existing.record.language, lang)
            || (existing.version(lang).is_none()
                && same_language(lang, default)
                && !same_language(&existing.record.language, default));
        if primary
            && others
                .iter()
                .all(|o| also.iter().any(|a| same_language(a, o)))
        {
            return Ok(None);
        }
        let stored: Vec<String> = self
            .store
            .record_images(record.id.as_str())
            .await?
            .into_iter()
            .map(|i| i.sha256)
            .collect();
        if stored == hashes {
            return Ok(None);
        }
        Ok(Some(format!(
            "these {} image(s) differ from the {} the record's other version(s) ({}) show: every language version shows the same images in the same order (captions and alt text are its own); to change them, import every version together, the primary ({}) first",
            hashes.len(),
            stored.len(),
            others.join(", "),
            existing.record.language
        )))
    }

    /// Imports record files, each stored whole or refused whole. Files with the same id
    /// and different languages are language versions of one record (the first imported,
    /// or the one in `[defaults] language`, is its primary). Two files of one import with
    /// the same id and language would overwrite each other in turn: all of them are
    /// refused instead, so the editor picks one. Results are in the order of `files`.
    pub async fn import_records(
        &self,
        actor: &Actor,
        files: &[std::path::PathBuf],
    ) -> Result<Vec<FileImport>> {
        use std::collections::HashMap;
        let today = self.clock.now().date_naive();
        let mut by_id: HashMap<String, Vec<&std::path::PathBuf>> = HashMap::new();
        let mut warnings = HashMap::new();
        // Each record's languages in this import, and each file's record id.
        let mut languages: HashMap<String, Vec<String>> = HashMap::new();
        let mut ids: HashMap<&std::path::PathBuf, String> = HashMap::new();
        for f in files {
            // Read as the import reads (regular files only, size-limited): a FIFO given
            // here must not hang this first pass either.
            let parsed = crate::files::read_regular_file(f, crate::domain::record::MAX_FILE_BYTES)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|source| {
                    let r = parse_record(
                        &source,
                        &f.display().to_string(),
                        &self.config.default_language,
                    )
                    .ok()?;
                    Some((r, source))
                });
            let Some((r, source)) = parsed else { continue };
            if let Some(w) = crate::domain::record::held_on_warning(r.held_on, today) {
                let line = source
                    .lines()
                    .position(|l| l.trim_start().starts_with("held_on"))
                    .map(|l| format!(":{}", l + 1))
                    .unwrap_or_default();
                warnings.insert(f, format!("warning: {}{line}: held_on: {w}", f.display()));
            }
            let same = by_id
                .entry(format!(
                    "{}\0{}",
                    r.id,
                    r.language.replace('_', "-").to_ascii_lowercase()
                ))
                .or_default();
            if !same.contains(&f) {
                same.push(f);
            }
            languages
                .entry(r.id.to_string())
                .or_default()
                .push(r.language.clone());
            ids.insert(f, r.id.to_string());
        }
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let duplicate = by_id.iter().find(|(_, v)| v.len() > 1 && v.contains(&f));
            let outcome = match duplicate {
                Some((key, same)) => {
                    let (id, language) = key.split_once('\0').unwrap_or((key, ""));
                    let others: Vec<_> = same
                        .iter()
                        .filter(|o| **o != f)
                        .map(|o| o.display().to_string())
                        .collect();
                    Err(OpsError::invalid(
                        "id",
                        format!(
                            "`{id}` is also the id of {} in this import, in the same language (`{language}`); each record needs its own id, and each of its language versions its own `language`",
                            others.join(", ")
                        ),
                    ))
                }
                None => {
                    let also = ids
                        .get(f)
                        .and_then(|id| languages.get(id))
                        .cloned()
                        .unwrap_or_default();
                    self.import_version(actor, f, &also).await
                }
            };
            let (warning, wechat_size) = match &outcome {
                Ok(r) => (warnings.get(f).cloned(), self.wechat_size(&r.id).await?),
                Err(_) => (None, None),
            };
            out.push(FileImport {
                file: f.clone(),
                outcome,
                warning,
                wechat_size,
            });
        }
        Ok(out)
    }

    /// Whether WeChat is configured and a schedule delivers to it.
    pub fn sends_to_wechat(&self) -> bool {
        self.config.wechat.is_some()
            && self
                .config
                .schedules
                .iter()
                .any(|s| s.channels.contains(&ChannelKind::Wechat))
    }

    /// Records, optionally only those in one state (`state`: draft, approved, published).
    pub async fn records(&self, state: Option<&str>) -> Result<Vec<RecordSummary>> {
        let state = super::parse_opt::<RecordState>("state", state)?;
        Ok(self
            .store
            .records(state)
            .await?
            .iter()
            .map(RecordSummary::from)
            .collect())
    }

    /// One record, whole.
    pub async fn record(&self, id: &str) -> Result<RecordDetail> {
        self.store.record(id).await?.ok_or_else(|| no_record(id))
    }

    /// Approves a record so the next firing sends it, `approved_by` the actor. Refused
    /// when WeChat would refuse its images, or when its WeChat article is too long (while
    /// a schedule sends over WeChat).
    pub async fn approve(&self, actor: &Actor, id: &str) -> Result<Approval> {
        let by = actor.name.trim();
        crate::domain::text::check_line(by, 200, true).map_err(|m| OpsError::invalid("by", m))?;
        let r = self.record(id).await?;
        check_approvable(self, &r).await?;
        let outcome = match self.store.approve_record(id, by, self.clock.now()).await {
            Err(crate::store::StoreError::NotFound(_)) => return Err(no_record(id)),
            other => other?,
        };
        if outcome == ApproveOutcome::Approved {
            self.audit(
                actor,
                AuditEntry::new("record.approve", format!("record:{id}"))
                    .before(serde_json::json!({"state": r.state}))
                    .after(serde_json::json!({"state": RecordState::Approved, "content_hash": r.content_hash})),
            )
            .await;
        }
        Ok(Approval {
            id: id.to_string(),
            outcome,
            by: by.to_string(),
        })
    }

    /// Sends a draft or approved record back to its editor with a comment: it is a draft
    /// again (no longer sent) and keeps the comment. Refused for a published record.
    pub async fn send_back(&self, actor: &Actor, id: &str, comment: &str) -> Result<SentBack> {
        let comment = comment.trim();
        if comment.is_empty() {
            return Err(OpsError::invalid("comment", "say why the record goes back"));
        }
        if comment.chars().count() > 2000 {
            return Err(OpsError::invalid("comment", "at most 2,000 characters"));
        }
        let before = match self
            .store
            .send_back_record(id, &actor.name, comment, self.clock.now())
            .await
        {
            Err(crate::store::StoreError::NotFound(_)) => return Err(no_record(id)),
            Ok(None) => {
                return Err(OpsError::Refused {
                    why: Refusal::Published,
                    message: format!("record `{id}` is published: it cannot be sent back"),
                })
            }
            Ok(Some(s)) => s,
            Err(e) => return Err(e.into()),
        };
        self.audit(
            actor,
            AuditEntry::new("record.send_back", format!("record:{id}"))
                .before(serde_json::json!({"state": before}))
                .after(serde_json::json!({"state": RecordState::Draft, "comment": comment})),
        )
        .await;
        Ok(SentBack {
            id: id.to_string(),
            state: RecordState::Draft,
            was: before,
            comment: comment.to_string(),
            by: actor.name.clone(),
        })
    }

    /// The record's bulletin as the channel will carry it; the unsubscribe link points
    /// at `/unsubscribe/PREVIEW`.
    pub async fn preview(&self, input: PreviewInput<'_>) -> Result<Preview> {
        let stored = self.record(input.id).await?;
        let version = match input.language {
            Some(l) => stored.version(l).ok_or_else(|| {
                OpsError::not_found(
                    Missing::Record,
                    format!(
                        "record `{}` has no version in `{l}`; its versions: {}",
                        input.id,
                        stored.languages().join(", ")
                    ),
                )
            })?,
            None if input.channel == ChannelKind::Wechat => self.wechat_version(&stored),
            None => &stored.record,
        };
        if input.channel == ChannelKind::Wechat {
            let a = self.wechat_article(version)?;
            let size = crate::render::wechat_content_size(&a.html);
            let max = crate::render::WECHAT_CONTENT_MAX;
            return Ok(Preview {
                content_type: "text/html",
                body: format!(
                    "<!-- title: {} | author: {} | digest: {} -->\n{}\n",
                    a.title, a.author, a.digest, a.html
                ),
                wechat_size: Some(WechatSize {
                    size,
                    max,
                    schedule: wechat_schedule(&self.config),
                    too_long: size >= max,
                }),
            });
        }
        let widths = vec![self
            .store
            .record_images(input.id)
            .await?
            .iter()
            .map(|i| i.width)
            .collect::<Vec<_>>()];
        let rendered = crate::render::render_bulletin(
            std::slice::from_ref(version),
            &widths,
            &self.config.publisher,
            &self.config.default_language,
        )?;
        let url = format!("{}/unsubscribe/PREVIEW", self.config.unsubscribe.base_url);
        // The bulletin does not exist yet: its web version link is a stand-in.
        let archive = &self.config.archive;
        let web = archive
            .base_url
            .as_ref()
            .filter(|_| archive.enabled)
            .map(|b| format!("{b}/archive/PREVIEW"));
        let web = |body: &str| crate::render::with_web_url(body, web.as_deref());
        Ok(match input.format {
            PreviewFormat::Html => Preview {
                content_type: "text/html",
                body: crate::render::personalise(&web(&rendered.html), &url),
                wechat_size: None,
            },
            PreviewFormat::Text => Preview {
                content_type: "text/plain",
                body: format!(
                    "Subject: {}\n\n{}",
                    rendered.subject,
                    crate::render::personalise(&web(&rendered.text), &url)
                ),
                wechat_size: None,
            },
        })
    }

    /// The size of the record's WeChat article when a schedule sends over WeChat (what
    /// `import` reports after each file); None when none does or there is no such record.
    pub async fn wechat_size(&self, id: &str) -> Result<Option<WechatSize>> {
        let Some(r) = self.store.record(id).await? else {
            return Ok(None);
        };
        let (size, schedule) =
            crate::render::wechat_article_size(&self.config, self.wechat_version(&r))?;
        let max = crate::render::WECHAT_CONTENT_MAX;
        Ok(schedule.map(|s| WechatSize {
            size,
            max,
            schedule: Some(s),
            too_long: size >= max,
        }))
    }

    /// The version of `r` the WeChat account publishes: the one for `wechat.language`
    /// (default zh-Hans), else the primary.
    pub fn wechat_version<'r>(&self, r: &'r StoredRecord) -> &'r crate::domain::SessionRecord {
        let language = self
            .config
            .wechat
            .as_ref()
            .map_or("zh-Hans", |w| w.language.as_str());
        r.version_for(Some(language))
    }

    fn wechat_article(
        &self,
        r: &crate::domain::SessionRecord,
    ) -> Result<crate::render::WechatArticle> {
        let author = self
            .config
            .wechat
            .as_ref()
            .map_or("", |w| w.author.as_str());
        Ok(crate::render::render_wechat_article(
            std::slice::from_ref(r),
            &self.config.publisher,
            &self.config.default_language,
            author,
        )?)
    }
}

fn wechat_schedule(config: &crate::config::Config) -> Option<String> {
    config
        .schedules
        .iter()
        .find(|s| s.channels.contains(&ChannelKind::Wechat))
        .map(|s| s.name.clone())
}

fn no_record(id: &str) -> OpsError {
    OpsError::not_found(Missing::Record, format!("no record `{id}`"))
}

/// The checks before approval: WeChat must take the record's images (field `id`), and
/// its article must fit WeChat's limit, while a schedule sends over WeChat.
async fn check_approvable(ops: &Ops, r: &StoredRecord) -> Result<()> {
    let id = r.record.id.to_string();
    if let Some(why) =
        crate::channel::wechat::approval_refusal(&ops.config, ops.store.as_ref(), &id).await?
    {
        return Err(OpsError::invalid("id", why));
    }
    crate::render::check_approvable(&ops.config, ops.wechat_version(r)).map_err(|message| {
        OpsError::Refused {
            why: Refusal::ArticleTooLong,
            message: message.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ops::testing;
    use chrono::TimeZone;

    #[tokio::test]
    async fn approval_checks_the_approver_the_record_and_the_wechat_article() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        let file = t.dir.path().join("record.toml");
        // Too long for WeChat, while the demo's schedule sends over WeChat.
        std::fs::write(&file, testing::example_record(30)).unwrap();
        let id = ops
            .import_record_file(&Actor::local("editor"), &file)
            .await
            .unwrap()
            .id;
        let size = ops
            .wechat_size(&id)
            .await
            .unwrap()
            .expect("a WeChat schedule");
        assert!(size.too_long, "{size:?}");

        for by in ["  ", "two\nlines", &"x".repeat(201)] {
            match ops.approve(&Actor::local(by), &id).await {
                Err(OpsError::Invalid { field, .. }) => assert_eq!(field, "by"),
                other => panic!("{by:?}: {other:?}"),
            }
        }
        match ops.approve(&Actor::local("editor"), "no-such-record").await {
            Err(OpsError::NotFound { what, .. }) => assert_eq!(what, Missing::Record),
            other => panic!("{other:?}"),
        }
        match ops.approve(&Actor::local("editor"), &id).await {
            Err(OpsError::Refused { why, message }) => {
                assert_eq!(why, Refusal::ArticleTooLong);
                assert!(message.contains("WeChat takes under 20,000"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ops.record(&id).await.unwrap().state, RecordState::Draft);

        // The example as it is fits: approved, at the injected clock's time.
        std::fs::write(&file, testing::example_record(0)).unwrap();
        ops.import_record_file(&Actor::local("editor"), &file)
            .await
            .unwrap();
        assert!(!ops.wechat_size(&id).await.unwrap().unwrap().too_long);
        let done = ops.approve(&Actor::local(" editor "), &id).await.unwrap();
        assert_eq!(
            (done.outcome, done.by.as_str()),
            (ApproveOutcome::Approved, "editor")
        );
        let r = ops.record(&id).await.unwrap();
        assert_eq!(r.state, RecordState::Approved);
        assert_eq!(r.approved_at, Some(t.clock.now()));
        let again = ops.approve(&Actor::local("editor"), &id).await;
        assert_eq!(again.unwrap().outcome, ApproveOutcome::AlreadyApproved);
    }

    #[tokio::test]
    async fn previews_show_each_channel_with_the_preview_unsubscribe_link() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        let file = t.dir.path().join("record.toml");
        std::fs::write(&file, testing::example_record(0)).unwrap();
        let id = ops
            .import_record_file(&Actor::local("editor"), &file)
            .await
            .unwrap()
            .id;
        let preview = |channel, format| {
            let ops = ops.clone();
            let id = id.clone();
            async move {
                ops.preview(PreviewInput {
                    id: &id,
                    channel,
                    format,
                    language: None,
                })
                .await
                .unwrap()
            }
        };
        let text = preview(ChannelKind::Email, PreviewFormat::Text).await;
        assert_eq!(text.content_type, "text/plain");
        assert!(text.body.starts_with("Subject: "), "{}", text.body);
        assert!(text.body.contains("/unsubscribe/PREVIEW"));
        let html = preview(ChannelKind::Email, PreviewFormat::Html).await;
        assert!(html.body.contains("<html"));
        assert!(html.wechat_size.is_none());
        let wechat = preview(ChannelKind::Wechat, PreviewFormat::Html).await;
        assert!(wechat.body.starts_with("<!-- title: "), "{}", wechat.body);
        let size = wechat.wechat_size.unwrap();
        assert_eq!(size.max, crate::render::WECHAT_CONTENT_MAX);
        assert!(size.size > 0 && !size.too_long);
        assert_eq!(size.schedule.as_deref(), Some("after-each-session"));
    }

    #[tokio::test]
    async fn an_import_refuses_every_file_sharing_an_id_and_warns_of_an_odd_date() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        let example = testing::example_record(0);
        let write = |name: &str, text: &str| {
            let f = t.dir.path().join(name);
            std::fs::write(&f, text).unwrap();
            f
        };
        let a = write("a.toml", &example);
        let b = write(
            "b.toml",
            &example.replace("Parallel Session 2:", "Session 2:"),
        );
        // Held more than five years before the (injected) today: a warning, imported anyway.
        let other = write(
            "c.toml",
            &example.replace(
                "id = \"lmc-2020-parallel-session-2\"",
                "id = \"lmc-2020-other\"",
            ),
        );
        let out = ops
            .import_records(
                &Actor::local("editor"),
                &[a.clone(), b.clone(), other.clone(), a.clone()],
            )
            .await
            .unwrap();
        assert_eq!(out.len(), 4);
        for r in [&out[0], &out[1], &out[3]] {
            match &r.outcome {
                Err(OpsError::Invalid { field, message }) => {
                    assert_eq!(field, "id");
                    assert!(message.contains("is also the id of"), "{message}");
                }
                other => panic!("{}: {other:?}", r.file.display()),
            }
        }
        let c = out[2].outcome.as_ref().unwrap();
        assert_eq!(c.id, "lmc-2020-other");
        let warning = out[2].warning.as_deref().unwrap();
        assert!(
            warning.contains("c.toml:")
                && warning.contains("held_on: 2020-07-30 is more than five years ago"),
            "{warning}"
        );
        assert!(out[2].wechat_size.is_some());
        assert!(ops.record("lmc-2020-parallel-session-2").await.is_err());

        // A year later in the example's own time the date is not odd.
        t.clock
            .set(chrono::Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap());
        let out = ops
            .import_records(&Actor::local("editor"), &[a])
            .await
            .unwrap();
        assert!(
            out[0].outcome.is_ok() && out[0].warning.is_none(),
            "{out:?}"
        );
    }
}
