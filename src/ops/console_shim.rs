//! Stand-ins for two operations the identity branch (h17a) writes properly, so the
//! console builds before that branch is merged: importing a record from uploaded text
//! and one page of a list's subscribers. Deleted when h17a is merged.

use super::{Ops, Result};
use crate::domain::record::{parse_record, RecordError, RecordErrors};
use crate::domain::Actor;
use crate::store::{NewRecord, SubscriberRow};

use super::records::ImportedRecord;

/// One page of a list's subscribers matching a search.
#[derive(Debug, Clone)]
pub struct SubscriberPage {
    pub list: String,
    pub subscribers: Vec<SubscriberRow>,
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

impl Ops {
    /// A record's TOML text, named `name`, stored as a draft (no images).
    pub async fn import_record_text(
        &self,
        _actor: &Actor,
        name: &str,
        source: &str,
    ) -> Result<ImportedRecord> {
        let record = parse_record(source, name, &self.config.default_language)?;
        if !record.images.is_empty() {
            return Err(RecordErrors(vec![RecordError {
                file: name.to_string(),
                line: None,
                column: None,
                field: Some("images[1].file".into()),
                message: "an uploaded record cannot bring image files".into(),
            }])
            .into());
        }
        let content_hash = record.content_hash(&[]);
        let id = record.id.to_string();
        let outcome = self
            .store
            .import_record(
                &NewRecord {
                    record,
                    images: Vec::new(),
                    content_hash,
                    source_file: name.to_string(),
                },
                self.clock.now(),
            )
            .await?;
        Ok(ImportedRecord { id, outcome })
    }

    /// Subscribers of `list` whose address contains `q` (`@domain`: of that domain).
    pub async fn subscribers(
        &self,
        list: &str,
        q: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<SubscriberPage> {
        let l = self.list(list).await?;
        let q = q.map(|q| q.trim().to_lowercase()).filter(|q| !q.is_empty());
        let keep = |s: &SubscriberRow| match &q {
            None => true,
            Some(q) if q.starts_with('@') => s.email.ends_with(q.as_str()),
            Some(q) => s.email.contains(q.as_str()),
        };
        let (mut after, mut total, mut out) = (0, 0i64, Vec::new());
        loop {
            let page = self.store.subscribers_page(l.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for s in page.into_iter().filter(|s| keep(s)) {
                if total >= offset as i64 && out.len() < limit as usize {
                    out.push(s);
                }
                total += 1;
            }
        }
        Ok(SubscriberPage {
            list: l.name,
            subscribers: out,
            total,
            limit,
            offset,
        })
    }
}
