//! The embedded SQLite backend: one file in WAL mode, one writer thread with group commit
//! ([`writer`]), and a small pool of read-only connections used from `spawn_blocking`, so that
//! no SQLite call ever runs on a tokio worker.
//!
//! Durability: in WAL mode `synchronous=NORMAL` fsyncs only at checkpoints, so a power loss can
//! drop the last committed transactions — not acceptable when a 2xx promises a ping is stored.
//! `synchronous=FULL` fsyncs the WAL at every commit; group commit amortises that fsync over all
//! the requests waiting at the time, which is what keeps ingest fast.

pub mod backup;
mod codes;
pub mod copy;
mod migrations;
mod outbox;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, ffi, params};
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::{
    Change, ChangeKind, ChangeRow, ClaimedNotification, CodeStep, Delivery, Device, DeviceToken,
    EngineCheckpoint, HandoffCode, Inserted, NewCustody, NewDelivery, NewDevice, NewNotification,
    NewPing, NewWebhook, PingKey, QueuedNotification, Store, StoredCustody, StoredPing, StoredPlan,
    Webhook,
};
use writer::Writer;

/// The name errors of this backend carry.
const BACKEND: &str = "SQLite";

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections kept open between queries (more are opened under load, then closed).
const MAX_IDLE_READERS: usize = 4;

/// The SQLite store. Open it once and share it (`Arc<dyn Store>`); dropping it (or
/// [`SqliteStore::close`]) stops the writer after it has committed everything queued and
/// checkpointed the WAL into the database file.
pub struct SqliteStore {
    path: PathBuf,
    // Fields drop in order: the readers close before the writer, whose connection is then the
    // last one and closes the WAL.
    readers: Arc<ReadPool>,
    writer: Writer,
    /// The newest committed change, published by the writer after each commit.
    newest_change: watch::Receiver<i64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and starts
    /// the writer thread. Blocking (file I/O, migrations): call it at start-up, or from
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened, [`StoreError::Invalid`] when it
    /// cannot be put in WAL mode, [`StoreError::SchemaTooNew`] when a newer build wrote it.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = open_writer(path)?;
        let readers = Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        // Open one reader now, so that a file readers cannot use fails at open, not later.
        readers.with(|_| Ok(()))?;
        let (publish, subscribed) = watch::channel(newest_change(&conn)?);
        // Runs on the writer thread after each commit: every subscriber learns the new end of
        // the feed. A failed look-up only delays the wake-up to the next commit.
        let on_commit = move |conn: &Connection| {
            if let Ok(newest) = newest_change(conn) {
                publish.send_if_modified(|seen| {
                    let moved = newest > *seen;
                    if moved {
                        *seen = newest;
                    }
                    moved
                });
            }
        };
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Writer::spawn(conn, Box::new(on_commit))?,
            readers,
            newest_change: subscribed,
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed since open: fewer than write requests when group commit
    /// merged them.
    #[must_use]
    pub fn transactions_committed(&self) -> u64 {
        self.writer.commits()
    }

    /// Stops the writer after it has committed everything queued and checkpointed the WAL
    /// (TRUNCATE: afterwards the `.db` file alone holds everything), and reports whether it
    /// stopped cleanly. Dropping the store does the same, without the report.
    ///
    /// # Errors
    /// [`StoreError::Task`] when the writer thread had panicked; the checkpoint's error when
    /// another connection kept it from finishing.
    pub async fn close(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.close_blocking())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`SqliteStore::close`], from a thread that may block (after the runtime has stopped).
    ///
    /// # Errors
    /// As [`SqliteStore::close`].
    pub fn close_blocking(self) -> Result<()> {
        let SqliteStore {
            mut writer,
            readers,
            ..
        } = self;
        drop(readers);
        writer.stop()
    }

    /// Runs a read on a pooled read-only connection, off the async runtime.
    async fn read<T, F>(&self, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Opens (creating if needed) the database at `path` for writing: WAL mode, `synchronous=FULL`,
/// the schema migrated to this build's.
fn open_writer(path: &Path) -> Result<Connection> {
    let open_error = open_error(path);
    let mut conn = Connection::open(path).map_err(&open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&open_error)?;
    // WAL: readers never block the writer nor the writer them. The mode is stored in the
    // file; the pragma answers with the mode in force, which must be "wal" (an in-memory or
    // otherwise unsupported database would stay in another mode).
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(&open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid(format!(
            "{} cannot be put in WAL mode (it stayed in {mode} mode)",
            path.display()
        )));
    }
    // FULL, not NORMAL: see the module note on durability.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&open_error)?;
    migrations::migrate(&mut conn)?;
    Ok(conn)
}

/// Read-only connections reused between queries. A connection is `Send` but not `Sync`, so
/// each query takes one out of the pool for its duration.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn with<T>(&self, query: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        // The pool holds no invariant a panic could break: a poisoned lock is still usable.
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = query(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection> {
        let open_error = open_error(&self.path);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(&open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&open_error)?;
        Ok(conn)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_plan(
        &self,
        event_id: &str,
        plan_json: &str,
        plan_hash: &str,
        at: Timestamp,
    ) -> Result<i64> {
        let plan = StoredPlan {
            event_id: event_id.to_owned(),
            version: 0,
            plan_json: plan_json.to_owned(),
            plan_hash: plan_hash.to_owned(),
            created_at: at,
        };
        self.writer
            .submit(1, move |conn| put_plan(conn, &plan))
            .await
    }

    async fn latest_plans(&self) -> Result<Vec<StoredPlan>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, version, plan_json, plan_hash, created_us FROM plans AS p
                 WHERE version = (SELECT MAX(version) FROM plans WHERE event_id = p.event_id)
                 ORDER BY event_id",
            )?;
            let plans = stmt.query_map([], plan_from_row)?;
            Ok(plans.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn plan(&self, event_id: &str) -> Result<Option<StoredPlan>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, version, plan_json, plan_hash, created_us FROM plans
                 WHERE event_id = ?1 ORDER BY version DESC LIMIT 1",
            )?;
            Ok(stmt.query_row([&event_id], plan_from_row).optional()?)
        })
        .await
    }

    async fn add_device(&self, device: NewDevice) -> Result<()> {
        self.writer
            .submit(1, move |conn| add_device(conn, &device))
            .await
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| {
            // Both lookups by the hash use an index; the view then says whether it is in force.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices_now
                 WHERE (event_id, device_id) IN (
                     SELECT event_id, device_id FROM device_tokens WHERE token_hash = ?1
                     UNION ALL
                     SELECT event_id, device_id FROM devices WHERE token_hash = ?1
                 ) AND token_hash = ?1"
            ))?;
            Ok(stmt.query_row([&token_hash], device_from_row).optional()?)
        })
        .await
    }

    async fn devices(&self, event_id: &str) -> Result<Vec<Device>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices_now WHERE event_id = ?1 ORDER BY device_id"
            ))?;
            let devices = stmt.query_map([&event_id], device_from_row)?;
            Ok(devices.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_device_token(
        &self,
        event_id: &str,
        device_id: &str,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> Result<Device> {
        let (event_id, device_id) = (event_id.to_owned(), device_id.to_owned());
        let token_hash = token_hash.map(str::to_owned);
        self.writer
            .submit(1, move |conn| {
                set_device_token(conn, &event_id, &device_id, token_hash.as_deref(), at)
            })
            .await
    }

    async fn insert_pings(&self, batch: Vec<NewPing>) -> Result<Vec<Inserted>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // SQLite stores NaN as NULL: refuse it here rather than fail a NOT NULL in the writer.
        crate::input::check_positions(&batch)?;
        self.writer
            .submit(batch.len(), move |conn| insert_pings(conn, &batch))
            .await
    }

    async fn pings_after(
        &self,
        event_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        let event_id = event_id.to_owned();
        let limit = sql_limit(limit);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PING_COLUMNS} FROM pings WHERE event_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3"
            ))?;
            let pings = stmt.query_map(params![event_id, after, limit], ping_from_row)?;
            Ok(pings.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn pings_by_time(
        &self,
        event_id: &str,
        after: Option<PingKey>,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        let event_id = event_id.to_owned();
        let limit = sql_limit(limit);
        // Before every stored ping: no instant is below the minimum, no seq below 0.
        let (t_us, seq) = after.map_or((i64::MIN, -1), |k| (k.t.as_microsecond(), k.seq));
        self.read(move |conn| {
            // The row-value comparison walks `pings_by_event_time` (event_id, t_us, then the
            // rowid every index entry ends with) from the key on.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PING_COLUMNS} FROM pings
                 WHERE event_id = ?1 AND (t_us, seq) > (?2, ?3)
                 ORDER BY t_us, seq LIMIT ?4"
            ))?;
            let pings = stmt.query_map(params![event_id, t_us, seq, limit], ping_from_row)?;
            Ok(pings.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn pings_for_device(
        &self,
        event_id: &str,
        device_id: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        let (event_id, device_id) = (event_id.to_owned(), device_id.to_owned());
        let from_us = from.map_or(i64::MIN, Timestamp::as_microsecond);
        let to_us = to.map_or(i64::MAX, Timestamp::as_microsecond);
        let limit = sql_limit(limit);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PING_COLUMNS} FROM pings
                 WHERE event_id = ?1 AND device_id = ?2 AND t_us >= ?3 AND t_us < ?4
                 ORDER BY t_us, seq LIMIT ?5"
            ))?;
            let pings = stmt.query_map(
                params![event_id, device_id, from_us, to_us, limit],
                ping_from_row,
            )?;
            Ok(pings.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn append_custody(
        &self,
        event_id: &str,
        entry: NewCustody,
        at: Timestamp,
    ) -> Result<i64> {
        let event_id = event_id.to_owned();
        self.writer
            .submit(1, move |conn| append_custody(conn, &event_id, &entry, at))
            .await
    }

    async fn append_custody_many(
        &self,
        event_id: &str,
        entries: Vec<NewCustody>,
        at: Timestamp,
    ) -> Result<Vec<i64>> {
        let event_id = event_id.to_owned();
        // One writer task: its savepoint makes the entries land together or not at all.
        self.writer
            .submit(entries.len(), move |conn| {
                entries
                    .iter()
                    .map(|e| append_custody(conn, &event_id, e, at))
                    .collect()
            })
            .await
    }

    async fn custody(&self, event_id: &str, relay_id: &str) -> Result<Vec<StoredCustody>> {
        let (event_id, relay_id) = (event_id.to_owned(), relay_id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CUSTODY_COLUMNS} FROM custody
                 WHERE event_id = ?1 AND relay_id = ?2 ORDER BY seq"
            ))?;
            let entries = stmt.query_map([&event_id, &relay_id], custody_from_row)?;
            Ok(entries.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn ping_count(&self) -> Result<i64> {
        self.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM pings", [], |row| row.get(0))?))
            .await
    }

    async fn add_webhook(&self, webhook: NewWebhook) -> Result<()> {
        // The kinds are stored comma-separated: a comma inside one would split it.
        crate::input::check_kinds(&webhook)?;
        self.writer
            .submit(1, move |conn| add_webhook(conn, &webhook))
            .await
    }

    async fn webhooks(&self, event_id: &str) -> Result<Vec<Webhook>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE event_id = ?1 ORDER BY rowid"
            ))?;
            let hooks = stmt.query_map([&event_id], webhook_from_row)?;
            Ok(hooks.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn log_delivery(&self, delivery: NewDelivery) -> Result<i64> {
        self.writer
            .submit(1, move |conn| log_delivery(conn, &delivery))
            .await
    }

    async fn deliveries(&self, event_id: &str, limit: usize) -> Result<Vec<Delivery>> {
        let event_id = event_id.to_owned();
        let limit = sql_limit(limit);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE event_id = ?1 ORDER BY seq DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![event_id, limit], delivery_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn put_handoff_code(&self, code: HandoffCode) -> Result<()> {
        self.writer
            .submit(1, move |conn| codes::put(conn, &code))
            .await
    }

    async fn handoff_codes(&self, event_id: &str, relay_id: &str) -> Result<Vec<HandoffCode>> {
        let (event_id, relay_id) = (event_id.to_owned(), relay_id.to_owned());
        self.read(move |conn| codes::of_relay(conn, &event_id, &relay_id))
            .await
    }

    async fn strike_handoff_code(
        &self,
        step: &CodeStep,
        code_hash: &str,
        burn_at: u32,
    ) -> Result<Option<u32>> {
        let (step, code_hash) = (step.clone(), code_hash.to_owned());
        self.writer
            .submit(1, move |conn| {
                codes::strike(conn, &step, &code_hash, burn_at)
            })
            .await
    }

    async fn delete_handoff_code(&self, step: &CodeStep, code_hash: &str) -> Result<()> {
        let (step, code_hash) = (step.clone(), code_hash.to_owned());
        self.writer
            .submit(1, move |conn| codes::delete(conn, &step, &code_hash))
            .await
    }

    async fn enqueue_notifications(&self, notifications: Vec<NewNotification>) -> Result<usize> {
        if notifications.is_empty() {
            return Ok(0);
        }
        self.writer
            .submit(notifications.len(), move |conn| {
                outbox::enqueue(conn, &notifications)
            })
            .await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedNotification>> {
        // A look first, on a reader: the worker asks every second, and an idle outbox should
        // not cost the writer a transaction each time.
        if !self.read(move |conn| outbox::any_due(conn, now)).await? {
            return Ok(Vec::new());
        }
        // The one writer claims: no other claim interleaves with this one.
        let limit = sql_limit(limit);
        self.writer
            .submit(1, move |conn| outbox::claim(conn, now, until, limit))
            .await
    }

    async fn settle_notification(
        &self,
        outbox_seq: i64,
        attempt: NewDelivery,
        next: Option<Timestamp>,
    ) -> Result<i64> {
        self.writer
            .submit(1, move |conn| {
                let seq = log_delivery(conn, &attempt)?;
                outbox::settle(conn, outbox_seq, attempt.attempt, next)?;
                Ok(seq)
            })
            .await
    }

    async fn notifications(&self, event_id: &str, limit: usize) -> Result<Vec<QueuedNotification>> {
        let (event_id, limit) = (event_id.to_owned(), sql_limit(limit));
        self.read(move |conn| outbox::of_event(conn, &event_id, limit))
            .await
    }

    async fn put_engine_checkpoint(&self, checkpoint: EngineCheckpoint) -> Result<()> {
        self.writer
            .submit(1, move |conn| put_engine_checkpoint(conn, &checkpoint))
            .await
    }

    async fn engine_checkpoint(&self, event_id: &str) -> Result<Option<EngineCheckpoint>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, plan_version, plan_hash, format, cursor, created_us, state
                 FROM engine_checkpoints WHERE event_id = ?1",
            )?;
            Ok(stmt
                .query_row([&event_id], |row| {
                    Ok(EngineCheckpoint {
                        event_id: row.get(0)?,
                        plan_version: row.get(1)?,
                        plan_hash: row.get(2)?,
                        format: row.get(3)?,
                        cursor: row.get(4)?,
                        created_at: timestamp(row, 5)?,
                        state: row.get(6)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn delete_engine_checkpoint(&self, event_id: &str) -> Result<()> {
        let event_id = event_id.to_owned();
        self.writer
            .submit(1, move |conn| {
                conn.prepare_cached("DELETE FROM engine_checkpoints WHERE event_id = ?1")?
                    .execute([&event_id])?;
                Ok(())
            })
            .await
    }

    async fn changes_since(&self, after: i64, limit: usize) -> Result<Vec<Change>> {
        let limit = sql_limit(limit);
        self.read(move |conn| changes_since(conn, after, limit))
            .await
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.newest_change.clone()
    }
}

// ---- writes: each runs on the writer thread, inside the request's savepoint ----

fn put_engine_checkpoint(conn: &Connection, c: &EngineCheckpoint) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO engine_checkpoints
             (event_id, plan_version, plan_hash, format, cursor, created_us, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (event_id) DO UPDATE SET
             plan_version = excluded.plan_version, plan_hash = excluded.plan_hash,
             format = excluded.format, cursor = excluded.cursor,
             created_us = excluded.created_us, state = excluded.state
         WHERE excluded.plan_version >= engine_checkpoints.plan_version",
    )?
    .execute(params![
        c.event_id,
        c.plan_version,
        c.plan_hash,
        c.format,
        c.cursor,
        c.created_at.as_microsecond(),
        c.state
    ])?;
    Ok(())
}

fn put_plan(conn: &Connection, plan: &StoredPlan) -> Result<i64> {
    // The version is allocated in the INSERT itself, inside the write transaction, and the
    // primary key (event_id, version) refuses a second row with it: two writers (two processes
    // on one file) can never store the same version, and the loser gets a Conflict.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO plans (event_id, version, plan_json, plan_hash, created_us)
             SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4 FROM plans WHERE event_id = ?1
             RETURNING version",
        )?
        .query_row(
            params![
                plan.event_id,
                plan.plan_json,
                plan.plan_hash,
                plan.created_at.as_microsecond()
            ],
            |row| row.get::<_, i64>(0),
        );
    let version = match inserted {
        Ok(version) => version,
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!(
                "another writer stored a new plan of event '{}' at the same moment; retry",
                plan.event_id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    record_change(conn, ChangeKind::Plan, &plan.event_id, Some(version), None)?;
    Ok(version)
}

fn add_device(conn: &Connection, device: &NewDevice) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO devices (event_id, device_id, carrier, token_hash, created_us, relay_id,
                                  speed_unit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            device.event_id,
            device.device_id,
            device.carrier,
            device.token_hash,
            device.created_at.as_microsecond(),
            device.relay_id,
            device.speed_unit.map(SpeedUnit::as_str)
        ]);
    match inserted {
        Ok(_) => record_change(
            conn,
            ChangeKind::Device,
            &device.event_id,
            None,
            Some(&device.device_id),
        ),
        Err(e) if is_unique_violation(&e) => {
            let taken: bool = conn
                .prepare_cached("SELECT 1 FROM devices WHERE event_id = ?1 AND device_id = ?2")?
                .exists([&device.event_id, &device.device_id])?;
            Err(StoreError::Conflict(if taken {
                format!(
                    "device '{}' is already registered for event '{}'",
                    device.device_id, device.event_id
                )
            } else {
                "the token hash is already in use by another device".to_owned()
            }))
        }
        Err(e) => Err(e.into()),
    }
}

fn set_device_token(
    conn: &Connection,
    event_id: &str,
    device_id: &str,
    token_hash: Option<&str>,
    at: Timestamp,
) -> Result<Device> {
    let registered = conn
        .prepare_cached("SELECT 1 FROM devices WHERE event_id = ?1 AND device_id = ?2")?
        .exists([event_id, device_id])?;
    if !registered {
        return Err(StoreError::NotFound(format!(
            "device '{device_id}' is not registered for event '{event_id}'"
        )));
    }
    if let Some(hash) = token_hash {
        let used = conn
            .prepare_cached(
                "SELECT 1 FROM devices WHERE token_hash = ?1
                 UNION ALL SELECT 1 FROM device_tokens WHERE token_hash = ?1",
            )?
            .exists([hash])?;
        if used {
            return Err(StoreError::Conflict(
                "the token hash is already in use by another device".to_owned(),
            ));
        }
    }
    conn.prepare_cached(
        "INSERT INTO device_tokens (event_id, device_id, token_hash, created_us)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        event_id,
        device_id,
        token_hash,
        at.as_microsecond()
    ])?;
    record_change(conn, ChangeKind::Device, event_id, None, Some(device_id))?;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices_now WHERE event_id = ?1 AND device_id = ?2"
        ))?
        .query_row([event_id, device_id], device_from_row)?)
}

fn insert_pings(conn: &Connection, batch: &[NewPing]) -> Result<Vec<Inserted>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO pings (event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg,
                            alt_m, batt_pct, received_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (event_id, device_id, t_us) DO NOTHING",
    )?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // The pings stored so far of the current event: one change for each run of one event.
    let mut run: Option<(&str, i64, i64)> = None;
    for item in batch {
        let p = &item.ping;
        let changed = stmt.execute(params![
            item.event_id,
            item.device_id,
            p.t.as_microsecond(),
            p.lon,
            p.lat,
            p.acc_m,
            p.speed_mps,
            p.heading_deg,
            p.alt_m,
            p.batt_pct,
            item.received_at.as_microsecond(),
        ])?;
        outcomes.push(if changed == 0 {
            Inserted::Duplicate
        } else {
            let seq = conn.last_insert_rowid();
            run = match run {
                Some((event, first, last)) if event == item.event_id && seq == last + 1 => {
                    Some((event, first, seq))
                }
                other => {
                    if let Some(done) = other {
                        record_pings_change(conn, done)?;
                    }
                    Some((item.event_id.as_str(), seq, seq))
                }
            };
            Inserted::New { seq }
        });
    }
    if let Some(done) = run {
        record_pings_change(conn, done)?;
    }
    Ok(outcomes)
}

fn append_custody(
    conn: &Connection,
    event_id: &str,
    entry: &NewCustody,
    at: Timestamp,
) -> Result<i64> {
    let chain = format!(
        "the custody log of relay '{}' in event '{event_id}'",
        entry.relay_id
    );
    // The UNIQUE (event, relay, prev_hash) constraint stops two entries following one head;
    // this check also stops an entry following an old, or unknown, hash.
    let head: Option<String> = conn
        .prepare_cached(
            "SELECT hash FROM custody WHERE event_id = ?1 AND relay_id = ?2
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([event_id, &entry.relay_id], |row| row.get(0))
        .optional()?;
    if let Some(head) = head
        && head != entry.prev_hash
    {
        return Err(StoreError::Conflict(format!(
            "{chain} has moved on: prev_hash {} is not its head {head}",
            entry.prev_hash
        )));
    }
    let inserted = conn
        .prepare_cached(
            "INSERT INTO custody (event_id, relay_id, entry_json, hash, prev_hash, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            event_id,
            entry.relay_id,
            entry.entry_json,
            entry.hash,
            entry.prev_hash,
            at.as_microsecond()
        ]);
    match inserted {
        Ok(_) => {
            let seq = conn.last_insert_rowid();
            record_change(conn, ChangeKind::Custody, event_id, Some(seq), None)?;
            Ok(seq)
        }
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "{chain} already has an entry with hash {} or after prev_hash {}",
            entry.hash, entry.prev_hash
        ))),
        Err(e) => Err(e.into()),
    }
}

fn add_webhook(conn: &Connection, webhook: &NewWebhook) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO webhooks (event_id, webhook_id, url, secret, kinds, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            webhook.event_id,
            webhook.webhook_id,
            webhook.url,
            webhook.secret,
            webhook.kinds.join(","),
            webhook.created_at.as_microsecond()
        ]);
    match inserted {
        Ok(_) => record_change(
            conn,
            ChangeKind::Webhook,
            &webhook.event_id,
            None,
            Some(&webhook.webhook_id),
        ),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "webhook '{}' already exists for event '{}'",
            webhook.webhook_id, webhook.event_id
        ))),
        Err(e) => Err(e.into()),
    }
}

fn log_delivery(conn: &Connection, d: &NewDelivery) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries
             (event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        d.event_id,
        d.webhook_id,
        d.delivery_id,
        d.kind,
        d.attempt,
        d.status,
        d.error,
        d.at.as_microsecond()
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Numbers an input in the change feed, in the same savepoint as the input's own row (so both
/// commit, or roll back, together). `row_seq` / `row_id` name the row within its table: see
/// migration 7.
fn record_change(
    conn: &Connection,
    kind: ChangeKind,
    event_id: &str,
    row_seq: Option<i64>,
    row_id: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO changes (kind, event_id, row_seq, row_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind.as_str(), event_id, row_seq, row_id])?;
    Ok(())
}

/// Numbers the pings `first..=last` of `event_id`, just stored by one write, as one change.
fn record_pings_change(conn: &Connection, (event_id, first, last): (&str, i64, i64)) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO changes (kind, event_id, row_seq, last_seq) VALUES ('ping', ?1, ?2, ?3)",
    )?
    .execute(params![event_id, first, last])?;
    Ok(())
}

/// The `seq` of the newest change (0 when there is none).
fn newest_change(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |row| {
            row.get(0)
        })?,
    )
}

/// A page of the change feed, each change with its row.
fn changes_since(conn: &Connection, after: i64, limit: i64) -> Result<Vec<Change>> {
    type Key = (
        i64,
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let keys: Vec<Key> = conn
        .prepare_cached(
            "SELECT seq, kind, event_id, row_seq, last_seq, row_id FROM changes
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![after, limit], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut changes = Vec::with_capacity(keys.len());
    for (seq, kind, event_id, row_seq, last_seq, row_id) in keys {
        let missing = || {
            StoreError::Invalid(format!(
                "change {seq} names a {kind} of event '{event_id}' that is not stored"
            ))
        };
        let kind: ChangeKind = kind.parse()?;
        let row = match kind {
            ChangeKind::Plan => {
                let mut stmt = conn.prepare_cached(
                    "SELECT event_id, version, plan_json, plan_hash, created_us FROM plans
                     WHERE event_id = ?1 AND version = ?2",
                )?;
                ChangeRow::Plan(
                    stmt.query_row(params![event_id, row_seq], plan_from_row)
                        .optional()?
                        .ok_or_else(missing)?,
                )
            }
            ChangeKind::Device => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices_now WHERE event_id = ?1 AND device_id = ?2"
                ))?;
                ChangeRow::Device(
                    stmt.query_row(params![event_id, row_id], device_from_row)
                        .optional()?
                        .ok_or_else(missing)?,
                )
            }
            ChangeKind::Ping => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {PING_COLUMNS} FROM pings WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
                ))?;
                let pings: Vec<StoredPing> = stmt
                    .query_map(params![row_seq, last_seq], ping_from_row)?
                    .collect::<rusqlite::Result<_>>()?;
                let expected = last_seq.zip(row_seq).map(|(last, first)| last - first + 1);
                if i64::try_from(pings.len()).ok() != expected {
                    return Err(missing());
                }
                ChangeRow::Pings(pings)
            }
            ChangeKind::Custody => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CUSTODY_COLUMNS} FROM custody WHERE seq = ?1"
                ))?;
                ChangeRow::Custody(
                    stmt.query_row([row_seq], custody_from_row)
                        .optional()?
                        .ok_or_else(missing)?,
                )
            }
            ChangeKind::Webhook => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE event_id = ?1 AND webhook_id = ?2"
                ))?;
                ChangeRow::Webhook(
                    stmt.query_row(params![event_id, row_id], webhook_from_row)
                        .optional()?
                        .ok_or_else(missing)?,
                )
            }
        };
        changes.push(Change { seq, row });
    }
    Ok(changes)
}

/// A page size as SQLite's LIMIT takes it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    error.sqlite_error().is_some_and(|e| {
        e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    })
}

// ---- errors ----

// Kept in this module: nothing outside it sees a rusqlite type. A lock held by another
// process past the busy timeout is a retry-later, everything else a backend failure.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
                backend: BACKEND,
                message: error.to_string(),
            },
            _ => StoreError::Backend {
                backend: BACKEND,
                source: Arc::new(error),
            },
        }
    }
}

/// The error of opening (or preparing) the database file at `path`.
fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        backend: BACKEND,
        target: path.display().to_string(),
        source: Arc::new(source),
    }
}

// ---- row decoding ----

const PING_COLUMNS: &str = "seq, event_id, device_id, t_us, lon, lat, acc_m, speed_mps, \
                            heading_deg, alt_m, batt_pct, received_us";

fn ping_from_row(row: &Row<'_>) -> rusqlite::Result<StoredPing> {
    Ok(StoredPing {
        seq: row.get(0)?,
        event_id: row.get(1)?,
        device_id: row.get(2)?,
        ping: Ping {
            t: timestamp(row, 3)?,
            lon: row.get(4)?,
            lat: row.get(5)?,
            acc_m: row.get(6)?,
            speed_mps: row.get(7)?,
            heading_deg: row.get(8)?,
            alt_m: row.get(9)?,
            batt_pct: row.get(10)?,
        },
        received_at: timestamp(row, 11)?,
    })
}

const CUSTODY_COLUMNS: &str = "seq, event_id, relay_id, entry_json, hash, prev_hash, created_us";

fn custody_from_row(row: &Row<'_>) -> rusqlite::Result<StoredCustody> {
    Ok(StoredCustody {
        seq: row.get(0)?,
        event_id: row.get(1)?,
        relay_id: row.get(2)?,
        entry_json: row.get(3)?,
        hash: row.get(4)?,
        prev_hash: row.get(5)?,
        created_at: timestamp(row, 6)?,
    })
}

const WEBHOOK_COLUMNS: &str = "event_id, webhook_id, url, secret, kinds, created_us";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let kinds: String = row.get(4)?;
    Ok(Webhook {
        event_id: row.get(0)?,
        webhook_id: row.get(1)?,
        url: row.get(2)?,
        secret: row.get(3)?,
        kinds: kinds
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: timestamp(row, 5)?,
    })
}

const DELIVERY_COLUMNS: &str =
    "seq, event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: row.get(0)?,
        event_id: row.get(1)?,
        webhook_id: row.get(2)?,
        delivery_id: row.get(3)?,
        kind: row.get(4)?,
        attempt: row.get(5)?,
        status: row.get(6)?,
        error: row.get(7)?,
        at: timestamp(row, 8)?,
    })
}

fn plan_from_row(row: &Row<'_>) -> rusqlite::Result<StoredPlan> {
    Ok(StoredPlan {
        event_id: row.get(0)?,
        version: row.get(1)?,
        plan_json: row.get(2)?,
        plan_hash: row.get(3)?,
        created_at: timestamp(row, 4)?,
    })
}

/// The columns [`device_from_row`] reads, of `devices_now` (a device with its token in force).
const DEVICE_COLUMNS: &str =
    "event_id, device_id, carrier, token_hash, created_us, relay_id, speed_unit, token_us";

/// The same of the `devices` table itself: a device as registered, with its first token.
pub(super) const REGISTERED_DEVICE_COLUMNS: &str =
    "event_id, device_id, carrier, token_hash, created_us, relay_id, speed_unit, created_us";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        event_id: row.get(0)?,
        device_id: row.get(1)?,
        carrier: row.get(2)?,
        token_hash: row.get(3)?,
        created_at: timestamp(row, 4)?,
        relay_id: row.get(5)?,
        speed_unit: speed_unit(row, 6)?,
        token_at: timestamp(row, 7)?,
    })
}

pub(super) fn device_token_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceToken> {
    Ok(DeviceToken {
        seq: row.get(0)?,
        event_id: row.get(1)?,
        device_id: row.get(2)?,
        token_hash: row.get(3)?,
        created_at: timestamp(row, 4)?,
    })
}

/// Reads a nullable speed-unit column (the schema's CHECK keeps it to the known names).
fn speed_unit(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<SpeedUnit>> {
    let name: Option<String> = row.get(index)?;
    name.map(|n| {
        n.parse::<SpeedUnit>()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::from(e)))
    })
    .transpose()
}

/// Reads an INTEGER microseconds column back into an instant.
pub(super) fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    let us: i64 = row.get(index)?;
    Timestamp::from_microsecond(us)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, Box::new(e)))
}

#[cfg(test)]
mod tests;
