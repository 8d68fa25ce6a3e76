//! The SQLite side of [`crate::copy`]: an export that reads a database file in one read
//! transaction (a WAL snapshot: whatever a server still writes meanwhile, the pages are of one
//! commit), and an import that writes a file inside one `BEGIN IMMEDIATE` transaction (the
//! write lock is held from the emptiness check to the commit, so nothing else lands in between,
//! and a failure leaves the file as it was). Every table is paged by its rowid (`seq` where the
//! table has one), which only grows. The connection is not `Sync`, so each call takes it off
//! the async runtime (`spawn_blocking`) behind a mutex.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, Row, params};

use super::{
    BUSY_TIMEOUT, CUSTODY_COLUMNS, DELIVERY_COLUMNS, PING_COLUMNS, REGISTERED_DEVICE_COLUMNS,
    WEBHOOK_COLUMNS, custody_from_row, delivery_from_row, device_from_row, device_token_from_row,
    migrations, open_error, open_writer, ping_from_row, plan_from_row, sql_limit, webhook_from_row,
    writer,
};
use crate::copy::{Export, FeedEntry, FeedRow, Import, Rows, Table};
use crate::error::{Result, StoreError};
use handoff_core::ping::SpeedUnit;

const PLAN_COLUMNS: &str = "event_id, version, plan_json, plan_hash, created_us";
const CHANGE_COLUMNS: &str = "seq, kind, event_id, row_seq, last_seq, row_id";
const DEVICE_TOKEN_COLUMNS: &str = "seq, event_id, device_id, token_hash, created_us";

/// Runs `work` on the connection, off the async runtime.
async fn blocking<C, T, F>(conn: &Arc<Mutex<C>>, work: F) -> Result<T>
where
    C: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut C) -> Result<T> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        // Nothing a panic could leave half-done is kept beside the connection.
        let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut guard)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
}

/// The newest change and the newest delivery: what a writer would move.
fn newest(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM changes),
                (SELECT COALESCE(MAX(seq), 0) FROM webhook_deliveries)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// Opens an existing database file for reading only (`query_only`; opened read-write so that
/// a WAL file and its index can be used whether or not a server has them open).
fn open_existing(path: &Path) -> Result<Connection> {
    let open_error = open_error(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&open_error)?;
    Ok(conn)
}

/// A snapshot of a SQLite database, read a page at a time.
#[derive(Debug)]
pub struct SqliteExport {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// The last rowid returned, per table.
    after: HashMap<Table, i64>,
    /// [`newest`] in the snapshot.
    newest: (i64, i64),
}

impl SqliteExport {
    /// Opens the handoff database at `path` and takes the snapshot the copy reads. A file of an
    /// older build is first migrated to this build's schema (as `handoff serve` would); nothing
    /// else is ever written to it. Blocking.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when there is no file or it holds no handoff schema,
    /// [`StoreError::SchemaTooNew`] for a file of a newer build, SQLite's error otherwise.
    pub fn open(path: &Path) -> Result<SqliteExport> {
        if !path.is_file() {
            return Err(StoreError::Invalid(format!(
                "there is no database at {}",
                path.display()
            )));
        }
        let mut conn = open_existing(path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version == 0 {
            return Err(StoreError::Invalid(format!(
                "{} holds no handoff data (an empty or foreign SQLite file)",
                path.display()
            )));
        }
        // Upgrades an older file, refuses a newer one; a no-op otherwise.
        migrations::migrate(&mut conn)?;
        conn.pragma_update(None, "query_only", true)?;
        // The first read after BEGIN fixes the snapshot every page comes from.
        conn.execute_batch("BEGIN")?;
        let newest = newest(&conn)?;
        Ok(SqliteExport {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            after: HashMap::new(),
            newest,
        })
    }
}

/// Up to `limit` rows of `table` after rowid `after`, each decoded with `decode` from
/// `columns`, and the last rowid read.
fn page<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    after: i64,
    limit: i64,
    decode: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, i64)> {
    let width = columns.split(',').count();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns}, rowid FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![after, limit], |row| {
            Ok((row.get::<_, i64>(width)?, decode(row)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let last = rows.last().map_or(after, |(rowid, _)| *rowid);
    Ok((rows.into_iter().map(|(_, row)| row).collect(), last))
}

type ChangeKey = (
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn feed_entry((seq, kind, event_id, row_seq, last_seq, row_id): ChangeKey) -> Result<FeedEntry> {
    let broken = || {
        StoreError::Invalid(format!(
            "change {seq} ({kind}) does not name its row as stored"
        ))
    };
    let row = match kind.as_str() {
        "plan" => FeedRow::Plan {
            version: row_seq.ok_or_else(broken)?,
        },
        "custody" => FeedRow::Custody {
            seq: row_seq.ok_or_else(broken)?,
        },
        "ping" => FeedRow::Pings {
            runs: vec![(row_seq.ok_or_else(broken)?, last_seq.ok_or_else(broken)?)],
        },
        "device" => FeedRow::Device {
            device_id: row_id.ok_or_else(broken)?,
        },
        "webhook" => FeedRow::Webhook {
            webhook_id: row_id.ok_or_else(broken)?,
        },
        _ => return Err(broken()),
    };
    Ok(FeedEntry { seq, event_id, row })
}

fn read_page(conn: &Connection, table: Table, after: i64, limit: i64) -> Result<(Rows, i64)> {
    let name = table.name();
    Ok(match table {
        Table::Plans => {
            let (rows, last) = page(conn, name, PLAN_COLUMNS, after, limit, plan_from_row)?;
            (Rows::Plans(rows), last)
        }
        Table::Devices => {
            let columns = REGISTERED_DEVICE_COLUMNS;
            let (rows, last) = page(conn, name, columns, after, limit, device_from_row)?;
            (Rows::Devices(rows), last)
        }
        Table::DeviceTokens => {
            let columns = DEVICE_TOKEN_COLUMNS;
            let (rows, last) = page(conn, name, columns, after, limit, device_token_from_row)?;
            (Rows::DeviceTokens(rows), last)
        }
        Table::Webhooks => {
            let (rows, last) = page(conn, name, WEBHOOK_COLUMNS, after, limit, webhook_from_row)?;
            (Rows::Webhooks(rows), last)
        }
        Table::Custody => {
            let (rows, last) = page(conn, name, CUSTODY_COLUMNS, after, limit, custody_from_row)?;
            (Rows::Custody(rows), last)
        }
        Table::Pings => {
            let (rows, last) = page(conn, name, PING_COLUMNS, after, limit, ping_from_row)?;
            (Rows::Pings(rows), last)
        }
        Table::Deliveries => {
            let (rows, last) = page(
                conn,
                name,
                DELIVERY_COLUMNS,
                after,
                limit,
                delivery_from_row,
            )?;
            (Rows::Deliveries(rows), last)
        }
        Table::Changes => {
            let (keys, last) = page(conn, name, CHANGE_COLUMNS, after, limit, |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?;
            let entries = keys.into_iter().map(feed_entry).collect::<Result<_>>()?;
            (Rows::Changes(entries), last)
        }
    })
}

#[async_trait]
impl Export for SqliteExport {
    async fn count(&mut self, table: Table) -> Result<u64> {
        let name = table.name();
        blocking(&self.conn, move |conn| {
            let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {name}"), [], |row| {
                row.get(0)
            })?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn next_page(&mut self, table: Table, limit: usize) -> Result<Rows> {
        let after = self.after.get(&table).copied().unwrap_or(0);
        let limit = sql_limit(limit);
        let (rows, last) =
            blocking(&self.conn, move |conn| read_page(conn, table, after, limit)).await?;
        self.after.insert(table, last);
        Ok(rows)
    }

    async fn moved_on(&mut self) -> Result<bool> {
        let (path, seen) = (self.path.clone(), self.newest);
        // A connection of its own: the export's is inside the snapshot.
        let now = tokio::task::spawn_blocking(move || newest(&open_existing(&path)?))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(now != seen)
    }
}

/// What the import's connection carries between pages.
#[derive(Debug)]
struct Target {
    conn: Connection,
    /// How far the change feed's numbers have been moved up: a PostgreSQL change whose pings
    /// are several runs of `seq`s becomes one SQLite change per run, so each later change is
    /// numbered that much higher (order and everything else kept).
    renumbered: i64,
}

/// A SQLite database being filled by a copy, inside one transaction.
#[derive(Debug)]
pub struct SqliteImport {
    target: Arc<Mutex<Target>>,
}

impl SqliteImport {
    /// Opens (creating if needed, with this build's schema) the database at `path` and starts
    /// the transaction the copy writes in, holding the file's write lock until
    /// [`Import::commit`] (or until dropped, which rolls everything back). Blocking.
    ///
    /// # Errors
    /// As [`super::SqliteStore::open`]; [`StoreError::Unavailable`] when another process holds
    /// the write lock past the busy timeout.
    pub fn create(path: &Path) -> Result<SqliteImport> {
        let conn = open_writer(path)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(SqliteImport {
            target: Arc::new(Mutex::new(Target {
                conn,
                renumbered: 0,
            })),
        })
    }
}

fn write_rows(target: &mut Target, rows: &Rows) -> Result<()> {
    let conn = &target.conn;
    match rows {
        Rows::Plans(plans) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO plans (event_id, version, plan_json, plan_hash, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in plans {
                stmt.execute(params![
                    p.event_id,
                    p.version,
                    p.plan_json,
                    p.plan_hash,
                    p.created_at.as_microsecond()
                ])?;
            }
        }
        Rows::Devices(devices) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO devices (event_id, device_id, carrier, token_hash, created_us,
                                      relay_id, speed_unit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for d in devices {
                stmt.execute(params![
                    d.event_id,
                    d.device_id,
                    d.carrier,
                    d.token_hash,
                    d.created_at.as_microsecond(),
                    d.relay_id,
                    d.speed_unit.map(SpeedUnit::as_str)
                ])?;
            }
        }
        Rows::DeviceTokens(tokens) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO device_tokens (seq, event_id, device_id, token_hash, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for t in tokens {
                stmt.execute(params![
                    t.seq,
                    t.event_id,
                    t.device_id,
                    t.token_hash,
                    t.created_at.as_microsecond()
                ])?;
            }
        }
        Rows::Webhooks(hooks) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO webhooks (event_id, webhook_id, url, secret, kinds, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for w in hooks {
                stmt.execute(params![
                    w.event_id,
                    w.webhook_id,
                    w.url,
                    w.secret,
                    w.kinds.join(","),
                    w.created_at.as_microsecond()
                ])?;
            }
        }
        Rows::Custody(entries) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO custody (seq, event_id, relay_id, entry_json, hash, prev_hash,
                                      created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in entries {
                stmt.execute(params![
                    e.seq,
                    e.event_id,
                    e.relay_id,
                    e.entry_json,
                    e.hash,
                    e.prev_hash,
                    e.created_at.as_microsecond()
                ])?;
            }
        }
        Rows::Pings(pings) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO pings (seq, event_id, device_id, t_us, lon, lat, acc_m, speed_mps,
                                    heading_deg, alt_m, batt_pct, received_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for s in pings {
                let p = &s.ping;
                stmt.execute(params![
                    s.seq,
                    s.event_id,
                    s.device_id,
                    p.t.as_microsecond(),
                    p.lon,
                    p.lat,
                    p.acc_m,
                    p.speed_mps,
                    p.heading_deg,
                    p.alt_m,
                    p.batt_pct,
                    s.received_at.as_microsecond()
                ])?;
            }
        }
        Rows::Deliveries(deliveries) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO webhook_deliveries
                     (seq, event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for d in deliveries {
                stmt.execute(params![
                    d.seq,
                    d.event_id,
                    d.webhook_id,
                    d.delivery_id,
                    d.kind,
                    d.attempt,
                    d.status,
                    d.error,
                    d.at.as_microsecond()
                ])?;
            }
        }
        Rows::Changes(entries) => write_changes(target, entries)?,
    }
    Ok(())
}

fn write_changes(target: &mut Target, entries: &[FeedEntry]) -> Result<()> {
    let mut stmt = target.conn.prepare_cached(
        "INSERT INTO changes (seq, kind, event_id, row_seq, last_seq, row_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in entries {
        let kind = e.kind().as_str();
        let seq = e.seq + target.renumbered;
        match &e.row {
            FeedRow::Plan { version: n } | FeedRow::Custody { seq: n } => {
                stmt.execute(params![seq, kind, e.event_id, n, None::<i64>, None::<&str>])?;
            }
            FeedRow::Device { device_id: id } | FeedRow::Webhook { webhook_id: id } => {
                stmt.execute(params![seq, kind, e.event_id, None::<i64>, None::<i64>, id])?;
            }
            FeedRow::Pings { runs } => {
                if runs.is_empty() {
                    return Err(StoreError::Invalid(format!(
                        "change {} names no pings",
                        e.seq
                    )));
                }
                for (run, (first, last)) in (0..).zip(runs) {
                    stmt.execute(params![
                        seq + run,
                        kind,
                        e.event_id,
                        first,
                        last,
                        None::<&str>
                    ])?;
                }
                target.renumbered += i64::try_from(runs.len()).unwrap_or(i64::MAX) - 1;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Import for SqliteImport {
    async fn held(&mut self) -> Result<Vec<(&'static str, u64)>> {
        blocking(&self.target, |target| {
            let mut held = Vec::new();
            let names = Table::ALL.iter().map(|t| t.name());
            for name in names.chain(["engine_checkpoints"]) {
                let n: i64 =
                    target
                        .conn
                        .query_row(&format!("SELECT COUNT(*) FROM {name}"), [], |row| {
                            row.get(0)
                        })?;
                if n > 0 {
                    held.push((name, u64::try_from(n).unwrap_or(0)));
                }
            }
            Ok(held)
        })
        .await
    }

    async fn write(&mut self, rows: Rows) -> Result<()> {
        blocking(&self.target, move |target| write_rows(target, &rows)).await
    }

    async fn commit(&mut self) -> Result<()> {
        blocking(&self.target, |target| {
            target.conn.execute_batch("COMMIT")?;
            // Committed: a checkpoint the server would do anyway, so that the file alone holds
            // the copy. Another reader can keep it from finishing; the data is safe either way.
            let _ = writer::checkpoint(&target.conn);
            Ok(())
        })
        .await
    }
}
