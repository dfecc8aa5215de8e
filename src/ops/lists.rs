//! List operations: create and show lists, add, remove and mark subscribers, import a
//! CSV of subscribers in batches, export a list as CSV.

use super::audit::AuditEntry;
use super::{Missing, Ops, OpsError, Result};
use crate::domain::subscriber::{CsvSubscribers, NewSubscriber, RowError, SubscriberStatus};
use crate::domain::Actor;
use crate::domain::{EmailAddress, ListName};
use crate::store::{ListSummary, SubscriberRow, UpsertCounts};
use serde::Serialize;

/// Subscribers written to the store per transaction during an import.
pub const IMPORT_BATCH: usize = 1000;

/// What creating a list did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ListCreated {
    pub name: String,
    /// False: a list of that name already existed (nothing changed).
    pub created: bool,
}

/// A list with its first subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct ListDetail {
    pub list: ListSummary,
    pub subscribers: Vec<SubscriberRow>,
    /// Subscribers in every status (more than `subscribers` holds when it was cut short).
    pub total: i64,
}

/// One subscriber to add (or update) on a list.
#[derive(Debug, Clone, Copy)]
pub struct AddSubscriberInput<'a> {
    pub list: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub language: Option<&'a str>,
}

/// What adding one subscriber did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    Added,
    Updated,
    /// Already on the list with these details.
    Unchanged,
}

/// A subscriber added, updated or found unchanged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberAdded {
    pub list: String,
    pub email: String,
    pub outcome: AddOutcome,
}

/// One subscriber of one list (removed, or whose status was set).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberChanged {
    pub list: String,
    pub email: String,
    /// The status now (None: removed).
    pub status: Option<SubscriberStatus>,
}

/// What a CSV import did: the counts, and the rows refused (by line).
#[derive(Debug, Clone, Default)]
pub struct SubscriberImport {
    pub counts: UpsertCounts,
    pub rejected: Vec<RowError>,
    /// Header columns that were not read (only email, name and language are).
    pub ignored_columns: Vec<String>,
}

impl SubscriberImport {
    /// The per-line report, as `bulletin lists import` prints it (`source` names the file).
    pub fn report(&self, source: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.ignored_columns.is_empty() {
            out.push(format!(
                "{source}: line 1: column(s) ignored (only email, name and language are read): {}",
                self.ignored_columns.join(", ")
            ));
        }
        for e in &self.rejected {
            out.push(format!("{source}: {e}: skipped"));
        }
        out
    }
}

/// A CSV import as the API answers it: the counts, the refused rows and the report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub list: String,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows refused, by line (nothing of them stored).
    pub rejected: Vec<RejectedRow>,
    pub ignored_columns: Vec<String>,
    /// One line per remark, as the CLI prints them.
    pub report: Vec<String>,
}

/// A CSV row refused, by its line in the file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    pub line: u64,
    pub message: String,
}

impl ImportReport {
    pub fn new(list: &str, source: &str, i: &SubscriberImport) -> Self {
        Self {
            list: list.to_string(),
            added: i.counts.added,
            updated: i.counts.updated,
            unchanged: i.counts.unchanged,
            rejected: i
                .rejected
                .iter()
                .map(|e| RejectedRow {
                    line: e.line,
                    message: e.message.clone(),
                })
                .collect(),
            ignored_columns: i.ignored_columns.clone(),
            report: i.report(source),
        }
    }
}

/// One page of a list's subscribers, found by a search.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberPage {
    pub list: String,
    pub subscribers: Vec<SubscriberRow>,
    /// Subscribers matching in all.
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ListExport {
    pub list: String,
    pub written: u64,
}

impl Ops {
    /// Every list with its counts by subscriber status.
    pub async fn lists(&self) -> Result<Vec<ListSummary>> {
        Ok(self.store.lists().await?)
    }

    /// A list by name; NotFound (with how to create it) if there is none.
    pub async fn list(&self, name: &str) -> Result<ListSummary> {
        let ln = list_name(name)?;
        self.store.list(&ln).await?.ok_or_else(|| {
            OpsError::not_found(
                Missing::List,
                format!("no list `{ln}` (create it with `bulletin lists create {ln}`)"),
            )
        })
    }

    /// Creates a list (nothing changes if it exists).
    pub async fn create_list(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
    ) -> Result<ListCreated> {
        let ln = list_name(name)?;
        crate::domain::text::check_line(description, 500, false)
            .map_err(|m| OpsError::invalid("description", m))?;
        let created = self
            .store
            .create_list(&ln, description, self.clock.now())
            .await?;
        if created {
            self.audit(
                actor,
                AuditEntry::new("list.create", format!("list:{ln}"))
                    .after(serde_json::json!({"description": description})),
            )
            .await;
        }
        Ok(ListCreated {
            name: ln.to_string(),
            created,
        })
    }

    /// A list and its first `limit` subscribers.
    pub async fn list_detail(&self, name: &str, limit: u32) -> Result<ListDetail> {
        let list = self.list(name).await?;
        let subscribers = self.store.subscribers_page(list.id, 0, limit).await?;
        let total = list.active + list.unsubscribed + list.bounced;
        Ok(ListDetail {
            list,
            subscribers,
            total,
        })
    }

    /// Adds one subscriber, or updates their name and language (never re-activates one
    /// who left).
    pub async fn add_subscriber(
        &self,
        actor: &Actor,
        input: AddSubscriberInput<'_>,
    ) -> Result<SubscriberAdded> {
        let list = self.list(input.list).await?;
        let s = NewSubscriber::parse(input.email, input.name, input.language)
            .map_err(|m| OpsError::invalid("email", m))?;
        let email = s.email.to_string();
        let c = self
            .store
            .upsert_subscribers(list.id, &[s], self.clock.now())
            .await?;
        let outcome = if c.added == 1 {
            AddOutcome::Added
        } else if c.updated == 1 {
            AddOutcome::Updated
        } else {
            AddOutcome::Unchanged
        };
        if outcome != AddOutcome::Unchanged {
            self.audit(
                actor,
                AuditEntry::new("subscriber.add", format!("list:{}", list.name)).after(
                    serde_json::json!({"email": email, "name": input.name, "language": input.language, "outcome": outcome}),
                ),
            )
            .await;
        }
        Ok(SubscriberAdded {
            list: list.name,
            email,
            outcome,
        })
    }

    /// Removes one subscriber from a list; NotFound if the address is not on it.
    pub async fn remove_subscriber(
        &self,
        actor: &Actor,
        list: &str,
        email: &str,
    ) -> Result<SubscriberChanged> {
        let list = self.list(list).await?;
        let e = email_address(email)?;
        if !self.store.remove_subscriber(list.id, e.as_str()).await? {
            return Err(not_on_list(&e, &list.name));
        }
        self.audit(
            actor,
            AuditEntry::new("subscriber.remove", format!("list:{}", list.name))
                .before(serde_json::json!({"email": e.as_str()})),
        )
        .await;
        Ok(SubscriberChanged {
            list: list.name,
            email: e.to_string(),
            status: None,
        })
    }

    /// Marks one subscriber active, unsubscribed or bounced.
    pub async fn set_subscriber_status(
        &self,
        actor: &Actor,
        list: &str,
        email: &str,
        status: &str,
    ) -> Result<SubscriberChanged> {
        let list = self.list(list).await?;
        let e = email_address(email)?;
        let st = SubscriberStatus::parse(status).map_err(|m| OpsError::invalid("status", m))?;
        if !self
            .store
            .set_subscriber_status(list.id, e.as_str(), st, self.clock.now())
            .await?
        {
            return Err(not_on_list(&e, &list.name));
        }
        self.audit(
            actor,
            AuditEntry::new("subscriber.status", format!("list:{}", list.name))
                .after(serde_json::json!({"email": e.as_str(), "status": st})),
        )
        .await;
        Ok(SubscriberChanged {
            list: list.name,
            email: e.to_string(),
            status: Some(st),
        })
    }

    /// Imports CSV subscribers into the named list in batches of [`IMPORT_BATCH`].
    pub async fn import_csv<R: std::io::Read>(
        &self,
        actor: &Actor,
        list: &str,
        rows: CsvSubscribers<R>,
    ) -> Result<SubscriberImport> {
        let list = self.list(list).await?;
        let out = import_rows(self, list.id, rows).await?;
        self.audit(
            actor,
            AuditEntry::new("list.import", format!("list:{}", list.name))
                .after(serde_json::json!({"counts": out.counts, "rejected": out.rejected.len()})),
        )
        .await;
        Ok(out)
    }

    /// A page of a list's subscribers whose address or name contains `q` (a `q` starting
    /// with `@` matches the domain), by id.
    pub async fn subscribers(
        &self,
        list: &str,
        q: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<SubscriberPage> {
        let list = self.list(list).await?;
        let limit = super::check_limit(limit)?;
        let q = q.map(str::trim).filter(|q| !q.is_empty());
        let (subscribers, total) = self
            .store
            .search_subscribers(list.id, q, offset, limit)
            .await?;
        Ok(SubscriberPage {
            list: list.name,
            subscribers,
            total,
            limit,
            offset,
        })
    }

    /// Writes the named list as CSV (email, name, language, status, status changed at),
    /// a page of subscribers at a time.
    pub async fn export_csv<W: std::io::Write>(
        &self,
        list: &str,
        mut out: W,
    ) -> Result<ListExport> {
        let list = self.list(list).await?;
        let (mut after, mut n) = (0, 0u64);
        while let Some(page) = self.export_page(list.id, after).await? {
            out.write_all(&page.csv).map_err(csv::Error::from)?;
            after = page.last_id;
            n += page.rows;
        }
        if n == 0 {
            out.write_all(&csv_header()?).map_err(csv::Error::from)?;
        }
        out.flush().map_err(csv::Error::from)?;
        Ok(ListExport {
            list: list.name,
            written: n,
        })
    }

    /// One page (1,000) of list `list_id`'s subscribers after id `after` as CSV, the
    /// header first when `after` is 0; None when none is left. What a streamed export
    /// (`GET /api/lists/{name}/export`) sends a page at a time.
    pub async fn export_page(&self, list_id: i64, after: i64) -> Result<Option<ExportPage>> {
        let page = self.store.subscribers_page(list_id, after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        if after == 0 {
            w.write_record(EXPORT_COLUMNS)?;
        }
        for s in &page {
            w.write_record([
                s.email.as_str(),
                s.name.as_deref().unwrap_or(""),
                s.language.as_deref().unwrap_or(""),
                s.status.as_str(),
                &s.status_changed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ])?;
        }
        let csv = w
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok(Some(ExportPage {
            csv,
            last_id: last.id,
            rows: page.len() as u64,
        }))
    }
}

/// The columns of an export.
pub const EXPORT_COLUMNS: [&str; 5] = ["email", "name", "language", "status", "status_changed_at"];

/// The header line of an export alone (an empty list).
pub fn csv_header() -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(EXPORT_COLUMNS)?;
    w.into_inner()
        .map_err(|e| csv::Error::from(e.into_error()).into())
}

/// One page of an export.
pub struct ExportPage {
    pub csv: Vec<u8>,
    /// The last subscriber id on the page (the next page starts after it).
    pub last_id: i64,
    pub rows: u64,
}

/// Imports CSV rows into list `list_id` in batches of [`IMPORT_BATCH`]; returns the
/// counts and the refused rows (by line).
async fn import_rows<R: std::io::Read>(
    ops: &Ops,
    list_id: i64,
    rows: CsvSubscribers<R>,
) -> Result<SubscriberImport> {
    let mut out = SubscriberImport {
        ignored_columns: rows.ignored_columns().to_vec(),
        ..Default::default()
    };
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let add = |total: &mut UpsertCounts, c: UpsertCounts| {
        total.added += c.added;
        total.updated += c.updated;
        total.unchanged += c.unchanged;
    };
    for row in rows {
        match row {
            Ok(s) => batch.push(s),
            Err(e) => out.rejected.push(e),
        }
        if batch.len() >= IMPORT_BATCH {
            let b: Vec<NewSubscriber> = std::mem::take(&mut batch);
            let c = ops
                .store
                .upsert_subscribers(list_id, &b, ops.clock.now())
                .await?;
            add(&mut out.counts, c);
        }
    }
    let c = ops
        .store
        .upsert_subscribers(list_id, &batch, ops.clock.now())
        .await?;
    add(&mut out.counts, c);
    Ok(out)
}

fn list_name(name: &str) -> Result<ListName> {
    ListName::parse(name).map_err(|m| OpsError::invalid("list", m))
}

fn email_address(email: &str) -> Result<EmailAddress> {
    EmailAddress::parse(email).map_err(|m| OpsError::invalid("email", m))
}

fn not_on_list(e: &EmailAddress, list: &str) -> OpsError {
    OpsError::not_found(Missing::Subscriber, format!("{e} is not on list `{list}`"))
}
