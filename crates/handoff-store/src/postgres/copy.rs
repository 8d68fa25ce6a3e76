//! The PostgreSQL side of [`crate::copy`]: an export that reads one `REPEATABLE READ, READ
//! ONLY` transaction (a snapshot, whatever the nodes still write meanwhile), and an import that
//! writes inside one transaction through multi-row inserts from arrays (`UNNEST`, as
//! [`Store::insert_pings`](crate::Store::insert_pings) does), with the identities given
//! (`OVERRIDING SYSTEM VALUE`) and the sequences moved past them before the commit, so that
//! the next row written by `handoff serve` gets the next number.
//!
//! The import locks every table against other writers (`SHARE ROW EXCLUSIVE`, which readers do
//! not notice) before it checks that they are empty, so a second copy started at the same time
//! waits and is then refused, and no node's write lands in the middle of the copy. A custody
//! entry gets its chain position (which only this schema keeps) in the order of the source's
//! `seq`s; the schema's deferred check that each entry follows the one before runs at commit.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_core::transaction::Transaction;
use sqlx_postgres::{PgConnection, Postgres};

use super::PostgresStore;
use super::feed::Newest;
use super::rows::{
    custody_from_row, delivery_from_row, device_from_row, device_token_from_row, ping_from_row,
    plan_from_row, webhook_from_row,
};
use crate::copy::{Export, FeedEntry, FeedRow, Import, Rows, Table, runs};
use crate::error::{Result, StoreError};
use handoff_core::ping::SpeedUnit;

/// The tables a copy locks on the target: the facts, and what lives beside them.
const LOCKED: &str = "LOCK TABLE plans, devices, device_tokens, webhooks, custody, pings, \
                      webhook_deliveries, changes, engine_checkpoints, admin_token \
                      IN SHARE ROW EXCLUSIVE MODE";

/// The newest change and the newest delivery: what a writer would move.
async fn newest(conn: &mut PgConnection) -> Result<(i64, i64)> {
    let row = query(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM changes),
                (SELECT COALESCE(MAX(seq), 0) FROM webhook_deliveries)",
    )
    .fetch_one(conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Whether `a` and `b` are the same database and schema of one server, however their URLs
/// spell it (the server's start time tells servers apart).
///
/// # Errors
/// PostgreSQL's error when either cannot be asked.
pub async fn same_database(a: &PostgresStore, b: &PostgresStore) -> Result<bool> {
    let identity = "SELECT pg_postmaster_start_time()::text || ' ' || current_database() \
                    || ' ' || COALESCE(current_schema(), '')";
    let a: String = query(identity).fetch_one(&a.pool).await?.try_get(0)?;
    let b: String = query(identity).fetch_one(&b.pool).await?.try_get(0)?;
    Ok(a == b)
}

/// Where an export has got to in each table.
#[derive(Debug, Default)]
struct Cursors {
    /// The last `seq` returned, per table that has one.
    seq: HashMap<Table, i64>,
    /// The last `(event_id, version)` of a plan.
    plan: (String, i64),
    /// The last `(event_id, device_id)` of a device.
    device: (String, String),
}

/// A snapshot of a PostgreSQL store, read a page at a time.
pub struct PostgresExport {
    store: PostgresStore,
    tx: Transaction<'static, Postgres>,
    after: Cursors,
    newest: (i64, i64),
}

impl std::fmt::Debug for PostgresExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresExport")
            .field("target", &self.store.target)
            .finish_non_exhaustive()
    }
}

impl PostgresExport {
    /// Takes the snapshot of `store` that the copy reads (one of its connections, until the
    /// export is dropped).
    ///
    /// # Errors
    /// PostgreSQL's error.
    pub async fn begin(store: &PostgresStore) -> Result<PostgresExport> {
        let mut tx = store.pool.begin().await?;
        query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let newest = newest(&mut tx).await?;
        Ok(PostgresExport {
            store: store.clone(),
            tx,
            after: Cursors::default(),
            newest,
        })
    }

    fn after_seq(&self, table: Table) -> i64 {
        self.after.seq.get(&table).copied().unwrap_or(0)
    }
}

fn feed_entry(row: &sqlx_postgres::PgRow) -> Result<FeedEntry> {
    let seq: i64 = row.try_get(0)?;
    let kind: String = row.try_get(1)?;
    let (row_seq, ping_seqs, row_id): (Option<i64>, Option<Vec<i64>>, Option<String>) =
        (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
    let broken = || {
        StoreError::Invalid(format!(
            "change {seq} ({kind}) does not name its row as stored"
        ))
    };
    let named = match kind.as_str() {
        "plan" => FeedRow::Plan {
            version: row_seq.ok_or_else(broken)?,
        },
        "custody" => FeedRow::Custody {
            seq: row_seq.ok_or_else(broken)?,
        },
        "ping" => FeedRow::Pings {
            runs: runs(&ping_seqs.ok_or_else(broken)?),
        },
        "device" => FeedRow::Device {
            device_id: row_id.ok_or_else(broken)?,
        },
        "webhook" => FeedRow::Webhook {
            webhook_id: row_id.ok_or_else(broken)?,
        },
        _ => return Err(broken()),
    };
    Ok(FeedEntry {
        seq,
        event_id: row.try_get(2)?,
        row: named,
    })
}

#[async_trait]
impl Export for PostgresExport {
    async fn count(&mut self, table: Table) -> Result<u64> {
        // The name is one of ours: nothing to quote.
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        let n: i64 = query(AssertSqlSafe(sql))
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn next_page(&mut self, table: Table, limit: usize) -> Result<Rows> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = self.after_seq(table);
        let conn = &mut *self.tx;
        let rows = match table {
            Table::Plans => {
                let (event, version) = &self.after.plan;
                let rows = query(
                    "SELECT event_id, version, plan_json, plan_hash, created_us FROM plans
                     WHERE (event_id, version) > ($1, $2) ORDER BY event_id, version LIMIT $3",
                )
                .bind(event)
                .bind(version)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let plans = rows.iter().map(plan_from_row).collect::<Result<Vec<_>>>()?;
                if let Some(p) = plans.last() {
                    self.after.plan = (p.event_id.clone(), p.version);
                }
                Rows::Plans(plans)
            }
            Table::Devices => {
                let (event, device) = &self.after.device;
                let rows = query(concat!(
                    "SELECT ",
                    registered_device_columns!(),
                    " FROM devices WHERE (event_id, device_id) > ($1, $2)
                     ORDER BY event_id, device_id LIMIT $3"
                ))
                .bind(event)
                .bind(device)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let devices = rows
                    .iter()
                    .map(device_from_row)
                    .collect::<Result<Vec<_>>>()?;
                if let Some(d) = devices.last() {
                    self.after.device = (d.event_id.clone(), d.device_id.clone());
                }
                Rows::Devices(devices)
            }
            Table::DeviceTokens => {
                let rows = query(concat!(
                    "SELECT ",
                    device_token_columns!(),
                    " FROM device_tokens WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let tokens = rows
                    .iter()
                    .map(device_token_from_row)
                    .collect::<Result<Vec<_>>>()?;
                if let Some(t) = tokens.last() {
                    self.after.seq.insert(table, t.seq);
                }
                Rows::DeviceTokens(tokens)
            }
            Table::Webhooks => {
                let rows = query(concat!(
                    "SELECT ",
                    webhook_columns!(""),
                    ", seq FROM webhooks WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                if let Some(last) = rows.last() {
                    self.after.seq.insert(table, last.try_get(6)?);
                }
                Rows::Webhooks(rows.iter().map(webhook_from_row).collect::<Result<_>>()?)
            }
            Table::Custody => {
                let rows = query(concat!(
                    "SELECT ",
                    custody_columns!(),
                    " FROM custody WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let entries = rows
                    .iter()
                    .map(custody_from_row)
                    .collect::<Result<Vec<_>>>()?;
                if let Some(e) = entries.last() {
                    self.after.seq.insert(table, e.seq);
                }
                Rows::Custody(entries)
            }
            Table::Pings => {
                let rows = query(concat!(
                    "SELECT ",
                    ping_columns!(),
                    " FROM pings WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let pings = rows.iter().map(ping_from_row).collect::<Result<Vec<_>>>()?;
                if let Some(p) = pings.last() {
                    self.after.seq.insert(table, p.seq);
                }
                Rows::Pings(pings)
            }
            Table::Deliveries => {
                let rows = query(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let deliveries = rows
                    .iter()
                    .map(delivery_from_row)
                    .collect::<Result<Vec<_>>>()?;
                if let Some(d) = deliveries.last() {
                    self.after.seq.insert(table, d.seq);
                }
                Rows::Deliveries(deliveries)
            }
            Table::Changes => {
                let rows = query(
                    "SELECT seq, kind, event_id, row_seq, ping_seqs, row_id FROM changes
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(conn)
                .await?;
                let entries = rows.iter().map(feed_entry).collect::<Result<Vec<_>>>()?;
                if let Some(e) = entries.last() {
                    self.after.seq.insert(table, e.seq);
                }
                Rows::Changes(entries)
            }
        };
        Ok(rows)
    }

    async fn moved_on(&mut self) -> Result<bool> {
        // Another connection: this export's own is inside the snapshot.
        let mut conn = self.store.pool.acquire().await?;
        Ok(newest(&mut conn).await? != self.newest)
    }
}

/// The error of a write after the commit.
fn committed() -> StoreError {
    StoreError::Invalid("the copy was committed already".to_owned())
}

/// A PostgreSQL store being filled by a copy, inside one transaction.
pub struct PostgresImport {
    target: String,
    /// The store's newest change, for its subscribers once the copy commits.
    newest: Arc<Newest>,
    /// `None` once committed.
    tx: Option<Transaction<'static, Postgres>>,
    /// The next chain position of each custody log written so far.
    positions: HashMap<(String, String), i64>,
}

impl std::fmt::Debug for PostgresImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresImport")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresImport {
    /// Starts the transaction the copy writes in on `store` (migrated at connect), with every
    /// table locked against other writers until [`Import::commit`]; dropped without it, the
    /// transaction rolls back.
    ///
    /// # Errors
    /// PostgreSQL's error.
    pub async fn begin(store: &PostgresStore) -> Result<PostgresImport> {
        let mut tx = store.pool.begin().await?;
        query(LOCKED).execute(&mut *tx).await?;
        Ok(PostgresImport {
            target: store.target.clone(),
            newest: Arc::clone(&store.newest),
            tx: Some(tx),
            positions: HashMap::new(),
        })
    }

    fn tx(&mut self) -> Result<&mut PgConnection> {
        self.tx.as_deref_mut().ok_or_else(committed)
    }

    /// Keeps `token_hash` as the admin token's hash (as `handoff serve` does on a first start)
    /// in the copy's transaction, unless the target keeps one already.
    ///
    /// # Errors
    /// PostgreSQL's error.
    pub async fn keep_admin_token_hash(&mut self, token_hash: &str, at: Timestamp) -> Result<()> {
        query(
            "INSERT INTO admin_token (token_hash, created_us) VALUES ($1, $2)
             ON CONFLICT (only_one) DO NOTHING",
        )
        .bind(token_hash)
        .bind(at.as_microsecond())
        .execute(self.tx()?)
        .await?;
        Ok(())
    }
}

/// Custody entries with their chain positions (counted on from `positions`, per log).
async fn write_custody(
    conn: &mut PgConnection,
    positions: &mut HashMap<(String, String), i64>,
    entries: &[crate::StoredCustody],
) -> Result<()> {
    let mut position = Vec::with_capacity(entries.len());
    for e in entries {
        let next = positions
            .entry((e.event_id.clone(), e.relay_id.clone()))
            .or_insert(0);
        position.push(*next);
        *next += 1;
    }
    let column =
        |f: fn(&crate::StoredCustody) -> &str| -> Vec<&str> { entries.iter().map(f).collect() };
    query(
        "INSERT INTO custody (seq, event_id, relay_id, position, entry_json, hash, prev_hash,
                              created_us)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[],
                              $6::text[], $7::text[], $8::int8[])",
    )
    .bind(entries.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(column(|e| &e.event_id))
    .bind(column(|e| &e.relay_id))
    .bind(&position)
    .bind(column(|e| &e.entry_json))
    .bind(column(|e| &e.hash))
    .bind(column(|e| &e.prev_hash))
    .bind(
        entries
            .iter()
            .map(|e| e.created_at.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_plans(conn: &mut PgConnection, plans: &[crate::StoredPlan]) -> Result<()> {
    // One statement each: a plan may be megabytes, and there are few.
    for p in plans {
        query(
            "INSERT INTO plans (event_id, version, plan_json, plan_hash, created_us)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.event_id)
        .bind(p.version)
        .bind(&p.plan_json)
        .bind(&p.plan_hash)
        .bind(p.created_at.as_microsecond())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_devices(conn: &mut PgConnection, devices: &[crate::Device]) -> Result<()> {
    let column = |f: fn(&crate::Device) -> &str| -> Vec<&str> { devices.iter().map(f).collect() };
    query(
        "INSERT INTO devices (event_id, device_id, carrier, relay_id, token_hash, speed_unit,
                              created_us)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::int8[])",
    )
    .bind(column(|d| &d.event_id))
    .bind(column(|d| &d.device_id))
    .bind(column(|d| &d.carrier))
    .bind(
        devices
            .iter()
            .map(|d| d.relay_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        devices
            .iter()
            .map(|d| d.token_hash.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        devices
            .iter()
            .map(|d| d.speed_unit.map(SpeedUnit::as_str))
            .collect::<Vec<_>>(),
    )
    .bind(
        devices
            .iter()
            .map(|d| d.created_at.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_device_tokens(conn: &mut PgConnection, tokens: &[crate::DeviceToken]) -> Result<()> {
    query(
        "INSERT INTO device_tokens (seq, event_id, device_id, token_hash, created_us)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[])",
    )
    .bind(tokens.iter().map(|t| t.seq).collect::<Vec<_>>())
    .bind(
        tokens
            .iter()
            .map(|t| t.event_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        tokens
            .iter()
            .map(|t| t.device_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        tokens
            .iter()
            .map(|t| t.token_hash.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        tokens
            .iter()
            .map(|t| t.created_at.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_webhooks(conn: &mut PgConnection, hooks: &[crate::Webhook]) -> Result<()> {
    // One statement each, in order (`seq` numbers them as added): there are few, and their
    // kinds are an array each.
    for w in hooks {
        query(
            "INSERT INTO webhooks (event_id, webhook_id, url, secret, kinds, created_us)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&w.event_id)
        .bind(&w.webhook_id)
        .bind(&w.url)
        .bind(&w.secret)
        .bind(&w.kinds)
        .bind(w.created_at.as_microsecond())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_pings(conn: &mut PgConnection, pings: &[crate::StoredPing]) -> Result<()> {
    let float = |f: fn(&crate::StoredPing) -> Option<f64>| -> Vec<Option<f64>> {
        pings.iter().map(f).collect()
    };
    query(
        "INSERT INTO pings (seq, event_id, device_id, t_us, lon, lat, acc_m, speed_mps,
                            heading_deg, alt_m, batt_pct, received_us)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::float8[],
                              $6::float8[], $7::float8[], $8::float8[], $9::float8[],
                              $10::float8[], $11::float8[], $12::int8[])",
    )
    .bind(pings.iter().map(|p| p.seq).collect::<Vec<_>>())
    .bind(
        pings
            .iter()
            .map(|p| p.event_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        pings
            .iter()
            .map(|p| p.device_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        pings
            .iter()
            .map(|p| p.ping.t.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .bind(pings.iter().map(|p| p.ping.lon).collect::<Vec<_>>())
    .bind(pings.iter().map(|p| p.ping.lat).collect::<Vec<_>>())
    .bind(float(|p| p.ping.acc_m))
    .bind(float(|p| p.ping.speed_mps))
    .bind(float(|p| p.ping.heading_deg))
    .bind(float(|p| p.ping.alt_m))
    .bind(float(|p| p.ping.batt_pct))
    .bind(
        pings
            .iter()
            .map(|p| p.received_at.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_deliveries(conn: &mut PgConnection, deliveries: &[crate::Delivery]) -> Result<()> {
    let text =
        |f: fn(&crate::Delivery) -> &str| -> Vec<&str> { deliveries.iter().map(f).collect() };
    query(
        "INSERT INTO webhook_deliveries
             (seq, event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::int8[], $7::int4[], $8::text[], $9::int8[])",
    )
    .bind(deliveries.iter().map(|d| d.seq).collect::<Vec<_>>())
    .bind(text(|d| &d.event_id))
    .bind(text(|d| &d.webhook_id))
    .bind(text(|d| &d.delivery_id))
    .bind(text(|d| &d.kind))
    .bind(
        deliveries
            .iter()
            .map(|d| i64::from(d.attempt))
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.status.map(i32::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.error.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.at.as_microsecond())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_changes(conn: &mut PgConnection, entries: &[FeedEntry]) -> Result<()> {
    let (mut run_change, mut run_first, mut run_last) = (Vec::new(), Vec::new(), Vec::new());
    let (mut row_seq, mut row_id) = (Vec::new(), Vec::new());
    for e in entries {
        let (n, id) = match &e.row {
            FeedRow::Plan { version: n } | FeedRow::Custody { seq: n } => (Some(*n), None),
            FeedRow::Device { device_id: id } | FeedRow::Webhook { webhook_id: id } => {
                (None, Some(id.as_str()))
            }
            FeedRow::Pings { runs } => {
                for (first, last) in runs {
                    run_change.push(e.seq);
                    run_first.push(*first);
                    run_last.push(*last);
                }
                (None, None)
            }
        };
        row_seq.push(n);
        row_id.push(id);
    }
    query(
        "WITH runs AS (
             SELECT c, s FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS r (c, f, l),
                  generate_series(r.f, r.l) AS s
         ), pinged AS (
             SELECT c, array_agg(s ORDER BY s) AS ping_seqs FROM runs GROUP BY c
         )
         INSERT INTO changes (seq, kind, event_id, row_seq, ping_seqs, row_id)
         OVERRIDING SYSTEM VALUE
         SELECT k.seq, k.kind, k.event_id, k.row_seq, pinged.ping_seqs, k.row_id
         FROM UNNEST($4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[])
              AS k (seq, kind, event_id, row_seq, row_id)
         LEFT JOIN pinged ON pinged.c = k.seq
         ORDER BY k.seq",
    )
    .bind(&run_change)
    .bind(&run_first)
    .bind(&run_last)
    .bind(entries.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(
        entries
            .iter()
            .map(|e| e.kind().as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        entries
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(&row_seq)
    .bind(&row_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Import for PostgresImport {
    async fn held(&mut self) -> Result<Vec<(&'static str, u64)>> {
        let mut held = Vec::new();
        let names = Table::ALL.iter().map(|t| t.name());
        for name in names.chain(["engine_checkpoints"]) {
            // The name is one of ours: nothing to quote.
            let sql = format!("SELECT COUNT(*) FROM {name}");
            let n: i64 = query(AssertSqlSafe(sql))
                .fetch_one(self.tx()?)
                .await?
                .try_get(0)?;
            if n > 0 {
                held.push((name, u64::try_from(n).unwrap_or(0)));
            }
        }
        Ok(held)
    }

    async fn write(&mut self, rows: Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let conn = self.tx.as_deref_mut().ok_or_else(committed)?;
        match &rows {
            Rows::Plans(plans) => write_plans(conn, plans).await,
            Rows::Devices(devices) => write_devices(conn, devices).await,
            Rows::DeviceTokens(tokens) => write_device_tokens(conn, tokens).await,
            Rows::Webhooks(hooks) => write_webhooks(conn, hooks).await,
            Rows::Custody(entries) => write_custody(conn, &mut self.positions, entries).await,
            Rows::Pings(pings) => write_pings(conn, pings).await,
            Rows::Deliveries(deliveries) => write_deliveries(conn, deliveries).await,
            Rows::Changes(entries) => write_changes(conn, entries).await,
        }
    }

    async fn commit(&mut self) -> Result<()> {
        let conn = self.tx()?;
        for table in [
            "pings",
            "custody",
            "device_tokens",
            "webhook_deliveries",
            "changes",
        ] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), MAX(seq)) FROM {table}
                 HAVING MAX(seq) IS NOT NULL"
            );
            query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
        }
        let (changes, _) = newest(conn).await?;
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        self.newest.committed(changes);
        Ok(())
    }
}
