//! Copying a whole store into an empty one, row for row: what `handoff migrate` runs to move an
//! event from SQLite to PostgreSQL (or between any two databases of either kind).
//!
//! The copy keeps every identity, so the target is the same database on another backend: plan
//! versions and their upload times, devices with their token hashes and bindings (and every later re-issue or revocation), every ping
//! with its `seq` and received time, every custody entry as stored (`seq`, hashes, the entry's
//! bytes, so each log still verifies), webhooks in their order, the delivery log, and the change
//! feed with its numbers. The [`Store`](crate::Store) trait's writes cannot do that (a plan's
//! version and an entry's `seq` are allocated by the store), so each backend has a narrow pair
//! instead, outside the trait every node uses: an [`Export`] that reads ONE snapshot of the
//! source in pages (never a relay's millions of pings at once), and an [`Import`] that writes
//! them through the backend's fast path inside ONE transaction. [`copy`] drives the two and
//! refuses a target that holds anything; the caller commits. A failure anywhere before the
//! commit leaves the target as it was.
//!
//! Engine checkpoints ([`crate::EngineCheckpoint`]) are not copied: they are derived, and a
//! server rebuilds them from the rows at its first start. A new table is one more [`Table`]
//! and [`Rows`] variant, which each backend's export and import then has to handle (the
//! compiler lists the places).

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::{
    ChangeKind, Delivery, Device, DeviceToken, StoredCustody, StoredPing, StoredPlan, Webhook,
};

/// The tables of facts a copy carries, in the order it writes them (the rows a later table
/// names, such as a change's ping, come first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Plans,
    Devices,
    DeviceTokens,
    Webhooks,
    Custody,
    Pings,
    Deliveries,
    Changes,
}

impl Table {
    /// Every table, in copy order.
    pub const ALL: [Table; 8] = [
        Table::Plans,
        Table::Devices,
        Table::DeviceTokens,
        Table::Webhooks,
        Table::Custody,
        Table::Pings,
        Table::Deliveries,
        Table::Changes,
    ];

    /// Its name in both schemas.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Table::Plans => "plans",
            Table::Devices => "devices",
            Table::DeviceTokens => "device_tokens",
            Table::Webhooks => "webhooks",
            Table::Custody => "custody",
            Table::Pings => "pings",
            Table::Deliveries => "webhook_deliveries",
            Table::Changes => "changes",
        }
    }

    /// What a row of it is, for people: `12 pings`, `1 plan version`.
    #[must_use]
    pub fn noun(self, n: u64) -> String {
        let (one, many) = match self {
            Table::Plans => ("plan version", "plan versions"),
            Table::Devices => ("device", "devices"),
            Table::DeviceTokens => ("device token change", "device token changes"),
            Table::Webhooks => ("webhook", "webhooks"),
            Table::Custody => ("custody entry", "custody entries"),
            Table::Pings => ("ping", "pings"),
            Table::Deliveries => ("webhook delivery", "webhook deliveries"),
            Table::Changes => ("change", "changes"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }

    /// Rows per page at most: a plan (routes inline) can be megabytes, so fewer of those.
    fn page_rows(self, page_rows: usize) -> usize {
        match self {
            Table::Plans => page_rows.clamp(1, 8),
            _ => page_rows.max(1),
        }
    }
}

/// One page of one table, as both backends read and write it.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Plans(Vec<StoredPlan>),
    /// As registered: each with the token it was registered with (`token_at` = `created_at`).
    Devices(Vec<Device>),
    /// In `seq` order: each re-issue or revocation of a device's token.
    DeviceTokens(Vec<DeviceToken>),
    /// In the order they were added.
    Webhooks(Vec<Webhook>),
    /// In `seq` order (so each chain in its own order).
    Custody(Vec<StoredCustody>),
    /// In `seq` order.
    Pings(Vec<StoredPing>),
    /// In `seq` order.
    Deliveries(Vec<Delivery>),
    /// In `seq` order.
    Changes(Vec<FeedEntry>),
}

impl Rows {
    /// The table these rows belong to.
    #[must_use]
    pub fn table(&self) -> Table {
        match self {
            Rows::Plans(_) => Table::Plans,
            Rows::Devices(_) => Table::Devices,
            Rows::DeviceTokens(_) => Table::DeviceTokens,
            Rows::Webhooks(_) => Table::Webhooks,
            Rows::Custody(_) => Table::Custody,
            Rows::Pings(_) => Table::Pings,
            Rows::Deliveries(_) => Table::Deliveries,
            Rows::Changes(_) => Table::Changes,
        }
    }

    /// How many rows.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Rows::Plans(r) => r.len(),
            Rows::Devices(r) => r.len(),
            Rows::DeviceTokens(r) => r.len(),
            Rows::Webhooks(r) => r.len(),
            Rows::Custody(r) => r.len(),
            Rows::Pings(r) => r.len(),
            Rows::Deliveries(r) => r.len(),
            Rows::Changes(r) => r.len(),
        }
    }

    /// Whether there are none (the table is done).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row of the change feed as stored: its number and the input it names (not the input's
/// row itself, which the other tables carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub seq: i64,
    pub event_id: String,
    pub row: FeedRow,
}

/// The input a [`FeedEntry`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedRow {
    Plan {
        version: i64,
    },
    Device {
        device_id: String,
    },
    Webhook {
        webhook_id: String,
    },
    Custody {
        seq: i64,
    },
    /// The pings of one write, as runs of consecutive `seq`s `(first, last)`: SQLite's changes
    /// are one run each; PostgreSQL's may be several (concurrent writers interleave in its
    /// sequence).
    Pings {
        runs: Vec<(i64, i64)>,
    },
}

impl FeedEntry {
    /// The kind of input it names.
    #[must_use]
    pub fn kind(&self) -> ChangeKind {
        match self.row {
            FeedRow::Plan { .. } => ChangeKind::Plan,
            FeedRow::Device { .. } => ChangeKind::Device,
            FeedRow::Webhook { .. } => ChangeKind::Webhook,
            FeedRow::Custody { .. } => ChangeKind::Custody,
            FeedRow::Pings { .. } => ChangeKind::Ping,
        }
    }
}

/// Sorted `seq`s as runs of consecutive ones: `[1, 2, 3, 7]` is `[(1, 3), (7, 7)]`.
#[must_use]
pub fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &seq in seqs {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

/// The source side: one consistent snapshot of a store, read a page at a time.
#[async_trait]
pub trait Export: Send {
    /// Rows of `table` in the snapshot.
    async fn count(&mut self, table: Table) -> crate::Result<u64>;

    /// The next page of `table` (at most `limit` rows, in the order [`Rows`] names), after the
    /// last one this export returned; empty when the table is done.
    async fn next_page(&mut self, table: Table, limit: usize) -> crate::Result<Rows>;

    /// Whether the source took new changes or deliveries after the snapshot was taken (a
    /// server still running on it): the copy would miss them.
    async fn moved_on(&mut self) -> crate::Result<bool>;
}

/// The target side: rows written inside one transaction, visible to nobody until
/// [`Import::commit`]; dropped without it, nothing was written.
#[async_trait]
pub trait Import: Send {
    /// The tables of the target that hold rows, with how many (engine checkpoints included:
    /// one left there would be trusted for the copied events).
    async fn held(&mut self) -> crate::Result<Vec<(&'static str, u64)>>;

    /// Writes one page, identities as given.
    async fn write(&mut self, rows: Rows) -> crate::Result<()>;

    /// Commits everything written, with the target's sequences moved past the copied numbers
    /// (so the next ping, entry or change gets the next number).
    async fn commit(&mut self) -> crate::Result<()>;
}

/// What went wrong in a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds rows already: a copy goes into an empty database only.
    #[error(
        "the target already holds data ({}); migrate into an empty database (it never merges \
         into nor overwrites one)",
        list(.0)
    )]
    TargetNotEmpty(Vec<(&'static str, u64)>),

    /// The source was written while it was read.
    #[error(
        "the source took new writes while it was being copied (is a server still running on \
         it?); nothing was committed to the target: stop every server on the source and run \
         the migration again"
    )]
    SourceMoved,

    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(held: &[(&'static str, u64)]) -> String {
    held.iter()
        .map(|(table, n)| format!("{table}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a copy wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table, in copy order.
    pub rows: Vec<(Table, u64)>,
    /// Every custody log copied: `(event, relay)`.
    pub logs: BTreeSet<(String, String)>,
}

impl Copied {
    /// Rows copied of `table`.
    #[must_use]
    pub fn of(&self, table: Table) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// How far a copy has got, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub table: Table,
    /// Rows of the table written so far.
    pub done: u64,
    /// Rows of the table in the source's snapshot.
    pub total: u64,
}

/// Copies every table of `from` into `to`, `page_rows` rows a page (fewer for plans), telling
/// `progress` after each page (and once at the start of each table). Refuses a target that
/// holds anything, and a source that was written meanwhile. Does NOT commit: the caller adds
/// what it keeps beside the store, then calls [`Import::commit`].
///
/// # Errors
/// [`CopyError::TargetNotEmpty`] before anything is written, [`CopyError::SourceMoved`] after
/// the copy (nothing committed), and either store's error.
pub async fn copy(
    from: &mut dyn Export,
    to: &mut dyn Import,
    page_rows: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Copied, CopyError> {
    let held = to.held().await?;
    if !held.is_empty() {
        return Err(CopyError::TargetNotEmpty(held));
    }
    let mut copied = Copied::default();
    for table in Table::ALL {
        let total = from.count(table).await?;
        let mut done = 0;
        progress(Progress { table, done, total });
        loop {
            let page = from.next_page(table, table.page_rows(page_rows)).await?;
            if page.is_empty() {
                break;
            }
            if let Rows::Custody(entries) = &page {
                copied.logs.extend(
                    entries
                        .iter()
                        .map(|e| (e.event_id.clone(), e.relay_id.clone())),
                );
            }
            done += u64::try_from(page.len()).unwrap_or(u64::MAX);
            to.write(page).await?;
            progress(Progress { table, done, total });
        }
        copied.rows.push((table, done));
    }
    if from.moved_on().await? {
        return Err(CopyError::SourceMoved);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests;
