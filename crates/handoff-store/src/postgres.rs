//! The PostgreSQL backend: the same [`Store`] as SQLite, on a server that several `handoff
//! serve` nodes can share. Queries are checked at run time (`sqlx` with binds, no
//! `DATABASE_URL` at build time); the schema is its own list of migrations ([`migrations`]).
//!
//! The rules live in the schema, so that they hold whichever node writes: UNIQUE keys make a
//! resent ping a duplicate and a custody step win exactly once (a per-chain `position` as well
//! as the `prev_hash`), triggers refuse UPDATE, DELETE and TRUNCATE of facts, and a plan
//! version taken by another node's commit is retried with the next one.
//!
//! Durability: every write method returns after its transaction has committed, and each
//! connection commits with `synchronous_commit` turned back on where the server's default is
//! `off`, so an answered write is on disk.
//!
//! Arrival order and the change feed: a sequence hands out `seq` at insert, not at commit, so
//! two concurrent transactions can commit out of order, and a reader paging by `seq > cursor`
//! in between would move its cursor past a row that becomes visible later, and never read it.
//! The schema closes that gap with one advisory lock (the migration explains it): every insert
//! into `pings` or `changes` holds it shared from before its rows get their `seq`s to its
//! commit, so writers run side by side; [`Store::pings_after`] and [`Store::changes_since`]
//! first take it exclusive for a moment to learn the horizon, the highest `seq` whose
//! transaction is over, and read only up to it. Writers pay nothing but a shared lock; a reader
//! waits for the commits in flight (and holds new ones back that long). docs/operations.md has
//! the measured cost, and that of the simpler alternative (one exclusive lock around every
//! insert, which makes commits one at a time). Every input's row and its change are written in
//! one statement (a data-modifying CTE) or one transaction.
//!
//! No clock: every instant a row carries is the caller's.

#[macro_use]
mod rows;
mod codes;
mod combine;
pub mod copy;
mod feed;
mod migrations;
mod outbox;
pub mod testing;
mod write;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx_core::connection::Connection as _;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::{
    Change, ClaimedNotification, CodeStep, Delivery, Device, EngineCheckpoint, HandoffCode,
    Inserted, NewCustody, NewDelivery, NewDevice, NewNotification, NewPing, NewWebhook, PingKey,
    QueuedNotification, Store, StoredCustody, StoredPing, StoredPlan, Webhook,
};
use feed::{Horizon, Newest};
use rows::{
    custody_from_row, delivery_from_row, device_from_row, narrow, ping_from_row, plan_from_row,
    timestamp, webhook_from_row,
};

/// The backend's name in errors.
const BACKEND: &str = "PostgreSQL";

/// Connections kept to the server at most (one per request being served, and the one that
/// listens for the other nodes' commits).
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection (or for the server to answer a new one)
/// before it fails; the server answers 503 then.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store: a pool of connections to one database. Cheap to share
/// (`Arc<dyn Store>`); [`PostgresStore::close`] waits for the connections to close.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    target: String,
    newest: Arc<Newest>,
    /// Groups concurrent ping writes into one statement ([`combine`]).
    pings: combine::Combiner,
    /// Ends the `LISTEN` task when the last copy of the store is dropped.
    _listening: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// `host:port/database` of a connection URL: what a message may show (never the password).
fn target_of(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(the user's database)")
    )
}

/// Parses a `postgres://` or `postgresql://` URL (any libpq form sqlx accepts).
///
/// # Errors
/// [`StoreError::Invalid`] naming what is wrong, without echoing the URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<PgConnectOptions> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Invalid(
            "a PostgreSQL URL starts with postgres:// (postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
                .to_owned(),
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| {
        StoreError::Invalid(format!(
            "the PostgreSQL URL is not valid ({e}); the form is \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        ))
    })
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) and
    /// applies pending migrations (one node at a time: the migrator takes an advisory lock).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a malformed URL, [`StoreError::Open`] when the server
    /// cannot be reached or refuses the login, [`StoreError::SchemaTooNew`] when a newer
    /// build migrated the database.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with(parse_url(url)?).await
    }

    /// [`PostgresStore::connect`] with options already parsed.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(options: PgConnectOptions) -> Result<PostgresStore> {
        PostgresStore::connect_sized(options, MAX_CONNECTIONS).await
    }

    /// [`PostgresStore::connect_with`] keeping at most `max_connections` connections (tests,
    /// which run many stores at once against one server's connection limit).
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_sized(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<PostgresStore> {
        // Warnings and up only: the migrator's "already exists, skipping" notices on every start
        // are not news.
        let options = options
            .application_name("handoff")
            .options([("client_min_messages", "warning")]);
        let target = target_of(&options);
        // One connection first: the pool retries a failed connect until its timeout and then
        // says only that it timed out; this says why (refused, no such database, bad password),
        // and at once.
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|source| open_error(&target, source))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| Box::pin(async move { require_durable_commits(conn).await }))
            .connect_with(options)
            .await
            .map_err(|source| open_error(&target, source))?;
        migrations::migrate(&pool).await?;
        let newest = Arc::new(Newest::load(&pool).await?);
        let (listening, stop) = tokio::sync::oneshot::channel();
        let (began, listens) = tokio::sync::oneshot::channel();
        tokio::spawn(feed::listen(
            pool.clone(),
            Arc::downgrade(&newest),
            stop,
            began,
        ));
        // A store that is open hears the other nodes' commits from then on: a change committed
        // elsewhere after `connect` returns wakes its subscribers at once, not at the next
        // periodic read. Not hearing them is no reason to refuse to open (the periodic reads
        // find every change), so a listener that fails or is slow to start is only waited for
        // so long.
        if !matches!(
            tokio::time::timeout(ACQUIRE_TIMEOUT, listens).await,
            Ok(Ok(()))
        ) {
            eprintln!(
                "handoff: {target}: not listening for other nodes' commits; they are read every second"
            );
        }
        Ok(PostgresStore {
            pings: combine::Combiner::spawn(&pool),
            pool,
            target,
            newest,
            _listening: Arc::new(listening),
        })
    }

    /// `host:port/database` of the server (no password).
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection pool, for tools and tests that run their own SQL on the same database.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The hash of the admin token `handoff serve` generated on a first start, if one is kept.
    ///
    /// # Errors
    /// PostgreSQL's error when the read fails.
    pub async fn admin_token_hash(&self) -> Result<Option<String>> {
        let row = query("SELECT token_hash FROM admin_token")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Keeps `token_hash` (generated `at`) as the admin token's hash unless one is kept
    /// already (another node may have started first), and returns the one kept: `token_hash`
    /// only if it won.
    ///
    /// # Errors
    /// PostgreSQL's error when the write fails.
    pub async fn keep_admin_token_hash(&self, token_hash: &str, at: Timestamp) -> Result<String> {
        query(
            "INSERT INTO admin_token (token_hash, created_us) VALUES ($1, $2)
             ON CONFLICT (only_one) DO NOTHING",
        )
        .bind(token_hash)
        .bind(at.as_microsecond())
        .execute(&self.pool)
        .await?;
        self.admin_token_hash().await?.ok_or_else(|| {
            StoreError::Invalid("the admin token's hash was removed while it was stored".into())
        })
    }
}

/// Turns `synchronous_commit` back on for this connection when the server's default is `off`
/// (a commit would then return before its WAL is flushed: not durable). The other settings all
/// flush locally at least (`local`, and `remote_write`, `remote_apply` for a synchronous
/// standby) and are left as the operator chose them.
async fn require_durable_commits(
    conn: &mut PgConnection,
) -> std::result::Result<(), sqlx_core::Error> {
    query(
        "SELECT set_config('synchronous_commit', 'on', false)
         WHERE current_setting('synchronous_commit') = 'off'",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The error of connecting to the server at `target`.
fn open_error(target: &str, source: sqlx_core::Error) -> StoreError {
    StoreError::Open {
        backend: BACKEND,
        target: target.to_owned(),
        source: Arc::new(source),
    }
}

// Kept in this module: nothing outside it sees a sqlx type. The input's fault is Invalid; a
// server that is unreachable, restarting, out of connections or that broke a transaction off
// to resolve a deadlock is a retry-later (nothing was committed); everything else a failure.
impl From<sqlx_core::Error> for StoreError {
    fn from(error: sqlx_core::Error) -> Self {
        use sqlx_core::Error as E;
        let retry_later = match &error {
            E::PoolTimedOut | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
            E::Database(db) => db.code().is_some_and(|code| {
                // 08: connection exception; 40001 serialization failure, 40P01 deadlock;
                // 53: insufficient resources (too many connections, disk full); 55P03 lock not
                // available; 57P01-03: the server is shutting down or starting.
                code.starts_with("08")
                    || code.starts_with("53")
                    || ["40001", "40P01", "55P03", "57P01", "57P02", "57P03"].contains(&&*code)
            }),
            _ => false,
        };
        if retry_later {
            return StoreError::Unavailable {
                backend: BACKEND,
                message: error.to_string(),
            };
        }
        // SQLSTATE class 22 is "data exception": a value PostgreSQL can never store as given
        // (a NUL character in a text, say). That is the input's fault, not the server's.
        if let Some(db) = error.as_database_error()
            && db.code().is_some_and(|c| c.starts_with("22"))
        {
            return StoreError::Invalid(format!("PostgreSQL refused a value: {}", db.message()));
        }
        if matches!(error, E::PoolClosed) {
            return StoreError::Closed;
        }
        StoreError::Backend {
            backend: BACKEND,
            source: Arc::new(error),
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_plan(
        &self,
        event_id: &str,
        plan_json: &str,
        plan_hash: &str,
        at: Timestamp,
    ) -> Result<i64> {
        let (version, change) =
            write::put_plan(&self.pool, event_id, plan_json, plan_hash, at).await?;
        self.newest.committed(change);
        Ok(version)
    }

    async fn latest_plans(&self) -> Result<Vec<StoredPlan>> {
        let rows = query(
            "SELECT DISTINCT ON (event_id) event_id, version, plan_json, plan_hash, created_us
             FROM plans ORDER BY event_id, version DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plan_from_row).collect()
    }

    async fn plan(&self, event_id: &str) -> Result<Option<StoredPlan>> {
        let row = query(
            "SELECT event_id, version, plan_json, plan_hash, created_us FROM plans
             WHERE event_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    async fn add_device(&self, device: NewDevice) -> Result<()> {
        let change = write::add_device(&self.pool, &device).await?;
        self.newest.committed(change);
        Ok(())
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>> {
        // Both lookups by the hash use an index; the view then says whether it is in force.
        let row = query(concat!(
            "SELECT ",
            device_columns!(""),
            " FROM devices_now
             WHERE (event_id, device_id) IN (
                 SELECT event_id, device_id FROM device_tokens WHERE token_hash = $1
                 UNION ALL
                 SELECT event_id, device_id FROM devices WHERE token_hash = $1
             ) AND token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, event_id: &str) -> Result<Vec<Device>> {
        let rows = query(concat!(
            "SELECT ",
            device_columns!(""),
            " FROM devices_now WHERE event_id = $1 ORDER BY device_id"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn set_device_token(
        &self,
        event_id: &str,
        device_id: &str,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> Result<Device> {
        let (device, change) =
            write::set_device_token(&self.pool, event_id, device_id, token_hash, at).await?;
        self.newest.committed(change);
        Ok(device)
    }

    async fn insert_pings(&self, batch: Vec<NewPing>) -> Result<Vec<Inserted>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        crate::input::check_positions(&batch)?;
        let (outcomes, change) = self.pings.insert(batch).await?;
        if let Some(change) = change {
            self.newest.committed(change);
        }
        Ok(outcomes)
    }

    async fn pings_after(
        &self,
        event_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        let horizon = feed::horizon(&self.pool, Horizon::Pings).await?;
        if horizon <= after {
            return Ok(Vec::new());
        }
        let rows = query(concat!(
            "SELECT ",
            ping_columns!(),
            " FROM pings WHERE event_id = $1 AND seq > $2 AND seq <= $3
             ORDER BY seq LIMIT $4"
        ))
        .bind(event_id)
        .bind(after)
        .bind(horizon)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ping_from_row).collect()
    }

    async fn pings_by_time(
        &self,
        event_id: &str,
        after: Option<PingKey>,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        // Before every stored ping: no instant is below the minimum, no seq below 0.
        let (t_us, seq) = after.map_or((i64::MIN, -1), |k| (k.t.as_microsecond(), k.seq));
        let rows = query(concat!(
            "SELECT ",
            ping_columns!(),
            " FROM pings WHERE event_id = $1 AND (t_us, seq) > ($2, $3)
             ORDER BY t_us, seq LIMIT $4"
        ))
        .bind(event_id)
        .bind(t_us)
        .bind(seq)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ping_from_row).collect()
    }

    async fn pings_for_device(
        &self,
        event_id: &str,
        device_id: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        let rows = query(concat!(
            "SELECT ",
            ping_columns!(),
            " FROM pings
             WHERE event_id = $1 AND device_id = $2 AND t_us >= $3 AND t_us < $4
             ORDER BY t_us, seq LIMIT $5"
        ))
        .bind(event_id)
        .bind(device_id)
        .bind(from.map_or(i64::MIN, Timestamp::as_microsecond))
        .bind(to.map_or(i64::MAX, Timestamp::as_microsecond))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ping_from_row).collect()
    }

    async fn append_custody(
        &self,
        event_id: &str,
        entry: NewCustody,
        at: Timestamp,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let (seq, change) = write::append_custody(&mut tx, event_id, &entry, at).await?;
        tx.commit().await?;
        self.newest.committed(change);
        Ok(seq)
    }

    async fn append_custody_many(
        &self,
        event_id: &str,
        entries: Vec<NewCustody>,
        at: Timestamp,
    ) -> Result<Vec<i64>> {
        // One transaction: the first refused entry rolls back the others.
        let mut tx = self.pool.begin().await?;
        let (mut seqs, mut newest) = (Vec::with_capacity(entries.len()), None);
        for entry in &entries {
            let (seq, change) = write::append_custody(&mut tx, event_id, entry, at).await?;
            seqs.push(seq);
            newest = Some(change);
        }
        tx.commit().await?;
        if let Some(change) = newest {
            self.newest.committed(change);
        }
        Ok(seqs)
    }

    async fn custody(&self, event_id: &str, relay_id: &str) -> Result<Vec<StoredCustody>> {
        let rows = query(concat!(
            "SELECT ",
            custody_columns!(),
            " FROM custody WHERE event_id = $1 AND relay_id = $2 ORDER BY position"
        ))
        .bind(event_id)
        .bind(relay_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(custody_from_row).collect()
    }

    async fn ping_count(&self) -> Result<i64> {
        let row = query("SELECT COUNT(*) FROM pings")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn add_webhook(&self, webhook: NewWebhook) -> Result<()> {
        // Kept as an array here, but the kinds SQLite refuses are refused here too.
        crate::input::check_kinds(&webhook)?;
        let change = write::add_webhook(&self.pool, &webhook).await?;
        self.newest.committed(change);
        Ok(())
    }

    async fn webhooks(&self, event_id: &str) -> Result<Vec<Webhook>> {
        let rows = query(concat!(
            "SELECT ",
            webhook_columns!(""),
            " FROM webhooks WHERE event_id = $1 ORDER BY seq"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn log_delivery(&self, delivery: NewDelivery) -> Result<i64> {
        let row = query(
            "INSERT INTO webhook_deliveries
                 (event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING seq",
        )
        .bind(&delivery.event_id)
        .bind(&delivery.webhook_id)
        .bind(&delivery.delivery_id)
        .bind(&delivery.kind)
        .bind(i64::from(delivery.attempt))
        .bind(delivery.status.map(i32::from))
        .bind(&delivery.error)
        .bind(delivery.at.as_microsecond())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    async fn deliveries(&self, event_id: &str, limit: usize) -> Result<Vec<Delivery>> {
        let rows = query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE event_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(event_id)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn put_handoff_code(&self, code: HandoffCode) -> Result<()> {
        codes::put(&self.pool, &code).await
    }

    async fn handoff_codes(&self, event_id: &str, relay_id: &str) -> Result<Vec<HandoffCode>> {
        codes::of_relay(&self.pool, event_id, relay_id).await
    }

    async fn strike_handoff_code(
        &self,
        step: &CodeStep,
        code_hash: &str,
        burn_at: u32,
    ) -> Result<Option<u32>> {
        codes::strike(&self.pool, step, code_hash, burn_at).await
    }

    async fn delete_handoff_code(&self, step: &CodeStep, code_hash: &str) -> Result<()> {
        codes::delete(&self.pool, step, code_hash).await
    }

    async fn enqueue_notifications(&self, notifications: Vec<NewNotification>) -> Result<usize> {
        if notifications.is_empty() {
            return Ok(0);
        }
        outbox::enqueue(&self.pool, &notifications).await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedNotification>> {
        outbox::claim(&self.pool, now, until, sql_limit(limit)).await
    }

    async fn settle_notification(
        &self,
        outbox_seq: i64,
        attempt: NewDelivery,
        next: Option<Timestamp>,
    ) -> Result<i64> {
        outbox::settle(&self.pool, outbox_seq, &attempt, next).await
    }

    async fn notifications(&self, event_id: &str, limit: usize) -> Result<Vec<QueuedNotification>> {
        outbox::of_event(&self.pool, event_id, sql_limit(limit)).await
    }

    async fn put_engine_checkpoint(&self, checkpoint: EngineCheckpoint) -> Result<()> {
        query(
            "INSERT INTO engine_checkpoints
                 (event_id, plan_version, plan_hash, format, cursor, created_us, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (event_id) DO UPDATE SET
                 plan_version = excluded.plan_version, plan_hash = excluded.plan_hash,
                 format = excluded.format, cursor = excluded.cursor,
                 created_us = excluded.created_us, state = excluded.state
             WHERE excluded.plan_version >= engine_checkpoints.plan_version",
        )
        .bind(&checkpoint.event_id)
        .bind(checkpoint.plan_version)
        .bind(&checkpoint.plan_hash)
        .bind(i64::from(checkpoint.format))
        .bind(checkpoint.cursor)
        .bind(checkpoint.created_at.as_microsecond())
        .bind(&checkpoint.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn engine_checkpoint(&self, event_id: &str) -> Result<Option<EngineCheckpoint>> {
        let row = query(
            "SELECT event_id, plan_version, plan_hash, format, cursor, created_us, state
             FROM engine_checkpoints WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(EngineCheckpoint {
                event_id: row.try_get(0)?,
                plan_version: row.try_get(1)?,
                plan_hash: row.try_get(2)?,
                format: narrow(row.try_get::<i64, _>(3)?, "format")?,
                cursor: row.try_get(4)?,
                created_at: timestamp(&row, 5)?,
                state: row.try_get(6)?,
            })
        })
        .transpose()
    }

    async fn delete_engine_checkpoint(&self, event_id: &str) -> Result<()> {
        query("DELETE FROM engine_checkpoints WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn changes_since(&self, after: i64, limit: usize) -> Result<Vec<Change>> {
        feed::changes_since(&self.pool, after, sql_limit(limit)).await
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.newest.subscribe()
    }

    // Several nodes may serve from one database: each follows the feed for the others' writes.
    fn shared(&self) -> bool {
        true
    }
}

/// A page size as a LIMIT takes it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
