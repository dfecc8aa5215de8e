//! List operations: create and show lists, add, remove and mark subscribers, import a
//! CSV of subscribers in batches, export a list as CSV.

use super::{Missing, Ops, OpsError, Result};
use crate::domain::subscriber::{CsvSubscribers, NewSubscriber, RowError, SubscriberStatus};
use crate::domain::{EmailAddress, ListName};
use crate::store::{ListSummary, SubscriberRow, UpsertCounts};
use serde::Serialize;

/// Subscribers written to the store per transaction during an import.
pub const IMPORT_BATCH: usize = 1000;

/// What creating a list did.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    Added,
    Updated,
    /// Already on the list with these details.
    Unchanged,
}

/// A subscriber added, updated or found unchanged.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberAdded {
    pub list: String,
    pub email: String,
    pub outcome: AddOutcome,
}

/// One subscriber of one list (removed, or whose status was set).
#[derive(Debug, Clone, Serialize)]
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
    pub async fn create_list(&self, name: &str, description: &str) -> Result<ListCreated> {
        let ln = list_name(name)?;
        let created = self
            .store
            .create_list(&ln, description, self.clock.now())
            .await?;
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
    pub async fn add_subscriber(&self, input: AddSubscriberInput<'_>) -> Result<SubscriberAdded> {
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
        Ok(SubscriberAdded {
            list: list.name,
            email,
            outcome,
        })
    }

    /// Removes one subscriber from a list; NotFound if the address is not on it.
    pub async fn remove_subscriber(&self, list: &str, email: &str) -> Result<SubscriberChanged> {
        let list = self.list(list).await?;
        let e = email_address(email)?;
        if !self.store.remove_subscriber(list.id, e.as_str()).await? {
            return Err(not_on_list(&e, &list.name));
        }
        Ok(SubscriberChanged {
            list: list.name,
            email: e.to_string(),
            status: None,
        })
    }

    /// Marks one subscriber active, unsubscribed or bounced.
    pub async fn set_subscriber_status(
        &self,
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
        Ok(SubscriberChanged {
            list: list.name,
            email: e.to_string(),
            status: Some(st),
        })
    }

    /// Imports CSV subscribers into the named list in batches of [`IMPORT_BATCH`].
    pub async fn import_csv<R: std::io::Read>(
        &self,
        list: &str,
        rows: CsvSubscribers<R>,
    ) -> Result<SubscriberImport> {
        let list = self.list(list).await?;
        import_rows(self, list.id, rows).await
    }

    /// Writes the named list as CSV (email, name, language, status, status changed at),
    /// a page of subscribers at a time.
    pub async fn export_csv<W: std::io::Write>(&self, list: &str, out: W) -> Result<ListExport> {
        let list = self.list(list).await?;
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["email", "name", "language", "status", "status_changed_at"])?;
        let (mut after, mut n) = (0, 0u64);
        loop {
            let page = self.store.subscribers_page(list.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for s in &page {
                w.write_record([
                    s.email.as_str(),
                    s.name.as_deref().unwrap_or(""),
                    s.language.as_deref().unwrap_or(""),
                    s.status.as_str(),
                    &s.status_changed_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ])?;
                n += 1;
            }
        }
        w.flush().map_err(csv::Error::from)?;
        Ok(ListExport {
            list: list.name,
            written: n,
        })
    }
}

/// Imports CSV rows into list `list_id` in batches of [`IMPORT_BATCH`]; returns the
/// counts and the refused rows (by line).
pub async fn import_rows<R: std::io::Read>(
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
