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
//! Arrival order: a sequence hands out `seq` at insert, not at commit, so two concurrent
//! transactions can commit out of order, and a reader paging by `seq > cursor` in between
//! would move its cursor past a row that becomes visible later, and never read it. The schema
//! closes that gap with one advisory lock (the migration explains it): every ping insert holds
//! it shared from before its rows get their `seq`s to its commit, so writers run side by side;
//! [`Store::pings_after`] first takes it exclusive for a moment to learn the horizon, the
//! highest `seq` whose transaction is over, and reads only up to it. Writers pay nothing but a
//! shared lock; a reader waits for the commits in flight (and holds new ones back that long).
//! docs/operations.md has the measured cost, and that of the simpler alternative (one
//! exclusive lock around every insert, which makes commits one at a time).

mod migrations;
pub mod testing;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};

use crate::error::{Result, StoreError};
use crate::{
    Delivery, Device, EngineCheckpoint, Inserted, NewCustody, NewDelivery, NewDevice, NewPing,
    NewWebhook, Store, StoredCustody, StoredPing, StoredPlan, Webhook,
};

/// Connections kept to the server at most (one per request being served).
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection (or for the server to answer a new one)
/// before it fails; the server answers 503 then.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a plan version taken by a concurrent commit is retried with the next one.
const PLAN_VERSION_ATTEMPTS: u32 = 16;

/// The PostgreSQL store: a pool of connections to one database. Cheap to share
/// (`Arc<dyn Store>`); [`PostgresStore::close`] waits for the connections to close.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    target: String,
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
    /// [`StoreError::Invalid`] for a malformed URL, [`StoreError::Connect`] when the server
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
        // Warnings and up only: the migrator's "already exists, skipping" notices on every start
        // are not news.
        let options = options
            .application_name("handoff")
            .options([("client_min_messages", "warning")]);
        let target = target_of(&options);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| Box::pin(async move { require_durable_commits(conn).await }))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: target.clone(),
                source: Arc::new(source),
            })?;
        migrations::migrate(&pool).await?;
        Ok(PostgresStore { pool, target })
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

    /// Keeps `token_hash` as the admin token's hash unless one is kept already (another node
    /// may have started first), and returns the one kept: `token_hash` only if it won.
    ///
    /// # Errors
    /// PostgreSQL's error when the write fails.
    pub async fn keep_admin_token_hash(&self, token_hash: &str) -> Result<String> {
        query(
            "INSERT INTO admin_token (token_hash, created_us) VALUES ($1, $2)
             ON CONFLICT (only_one) DO NOTHING",
        )
        .bind(token_hash)
        .bind(Timestamp::now().as_microsecond())
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

impl From<sqlx_core::Error> for StoreError {
    fn from(error: sqlx_core::Error) -> Self {
        // SQLSTATE class 22 is "data exception": a value PostgreSQL can never store as given
        // (a NUL character in a text, say). That is the input's fault, not the server's.
        if let Some(db) = error.as_database_error()
            && db.code().is_some_and(|c| c.starts_with("22"))
        {
            return StoreError::Invalid(format!("PostgreSQL refused a value: {}", db.message()));
        }
        StoreError::Postgres(Arc::new(error))
    }
}

// The columns `ping_from_row` and `device_from_row` read, as literals: every query stays a
// `&'static str` (sqlx refuses a formatted string unless told it is safe).
macro_rules! ping_columns {
    () => {
        "seq, event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m, \
         batt_pct, received_us"
    };
}
macro_rules! device_columns {
    () => {
        "event_id, device_id, carrier, token_hash, created_us, relay_id, speed_unit"
    };
}

/// The constraint a unique violation broke, if `error` is one.
fn unique_violation(error: &sqlx_core::Error) -> Option<String> {
    let db = error.as_database_error()?;
    (db.code().as_deref() == Some("23505")).then(|| db.constraint().unwrap_or_default().to_owned())
}

/// Refuses what SQLite cannot store either: the two backends accept the same pings.
fn check_finite(batch: &[NewPing]) -> Result<()> {
    match batch
        .iter()
        .position(|p| !p.ping.lon.is_finite() || !p.ping.lat.is_finite())
    {
        Some(index) => Err(StoreError::Invalid(format!(
            "ping {index} has a non-finite longitude or latitude"
        ))),
        None => Ok(()),
    }
}

/// An optional measurement as SQLite keeps it: NaN is no value (SQLite binds NaN as NULL).
fn measured(value: Option<f64>) -> Option<f64> {
    value.filter(|v| !v.is_nan())
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_plan(&self, event_id: &str, plan_json: &str, plan_hash: &str) -> Result<i64> {
        // MAX + 1 inside the INSERT; two nodes computing the same version collide on the
        // primary key (the loser waits for the winner's commit), and the loser tries again.
        for _ in 0..PLAN_VERSION_ATTEMPTS {
            let inserted = query(
                "INSERT INTO plans (event_id, version, plan_json, plan_hash, created_us)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4
                 FROM plans WHERE event_id = $1
                 RETURNING version",
            )
            .bind(event_id)
            .bind(plan_json)
            .bind(plan_hash)
            .bind(Timestamp::now().as_microsecond())
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(row.try_get(0)?),
                Err(e) if unique_violation(&e).is_some() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!(
            "event '{event_id}' got {PLAN_VERSION_ATTEMPTS} new plan versions from other \
             writers while this one was being stored; try again"
        )))
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
        let inserted = query(
            "INSERT INTO devices (event_id, device_id, carrier, relay_id, token_hash, speed_unit,
                                  created_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&device.event_id)
        .bind(&device.device_id)
        .bind(&device.carrier)
        .bind(&device.relay_id)
        .bind(&device.token_hash)
        .bind(device.speed_unit.map(SpeedUnit::as_str))
        .bind(Timestamp::now().as_microsecond())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => match unique_violation(&e).as_deref() {
                Some("devices_token_hash_key") => Err(StoreError::Conflict(
                    "the token hash is already in use by another device".to_owned(),
                )),
                Some(_) => Err(StoreError::Conflict(format!(
                    "device '{}' is already registered for event '{}'",
                    device.device_id, device.event_id
                ))),
                None => Err(e.into()),
            },
        }
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>> {
        let row = query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, event_id: &str) -> Result<Vec<Device>> {
        let rows = query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE event_id = $1 ORDER BY device_id"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn insert_pings(&self, batch: Vec<NewPing>) -> Result<Vec<Inserted>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        check_finite(&batch)?;
        insert_pings(&self.pool, &batch).await
    }

    async fn pings(&self, event_id: &str) -> Result<Vec<StoredPing>> {
        let rows = query(concat!(
            "SELECT ",
            ping_columns!(),
            " FROM pings WHERE event_id = $1 ORDER BY t_us, seq"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ping_from_row).collect()
    }

    async fn pings_after(
        &self,
        event_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredPing>> {
        // Its own statement (and transaction), so that the lock is released at once and the
        // page's snapshot is taken after every transaction below the horizon has ended.
        let horizon: i64 = query("SELECT handoff_ping_horizon()")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
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
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
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
    ) -> Result<Vec<StoredPing>> {
        let rows = query(concat!(
            "SELECT ",
            ping_columns!(),
            " FROM pings
             WHERE event_id = $1 AND device_id = $2 AND t_us >= $3 AND t_us < $4
             ORDER BY t_us, seq"
        ))
        .bind(event_id)
        .bind(device_id)
        .bind(from.map_or(i64::MIN, Timestamp::as_microsecond))
        .bind(to.map_or(i64::MAX, Timestamp::as_microsecond))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ping_from_row).collect()
    }

    async fn append_custody(
        &self,
        event_id: &str,
        relay_id: &str,
        entry_json: &str,
        hash: &str,
        prev_hash: &str,
    ) -> Result<i64> {
        let entry = NewCustody {
            relay_id: relay_id.to_owned(),
            entry_json: entry_json.to_owned(),
            hash: hash.to_owned(),
            prev_hash: prev_hash.to_owned(),
        };
        let mut tx = self.pool.begin().await?;
        let seq = append_custody(&mut tx, event_id, &entry).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn append_custody_many(
        &self,
        event_id: &str,
        entries: Vec<NewCustody>,
    ) -> Result<Vec<i64>> {
        // One transaction: the first refused entry rolls back the others.
        let mut tx = self.pool.begin().await?;
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in &entries {
            seqs.push(append_custody(&mut tx, event_id, entry).await?);
        }
        tx.commit().await?;
        Ok(seqs)
    }

    async fn custody(&self, event_id: &str, relay_id: &str) -> Result<Vec<StoredCustody>> {
        let rows = query(
            "SELECT seq, event_id, relay_id, entry_json, hash, prev_hash, created_us
             FROM custody WHERE event_id = $1 AND relay_id = $2 ORDER BY position",
        )
        .bind(event_id)
        .bind(relay_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredCustody {
                    seq: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    relay_id: row.try_get(2)?,
                    entry_json: row.try_get(3)?,
                    hash: row.try_get(4)?,
                    prev_hash: row.try_get(5)?,
                    created_at: timestamp(row, 6)?,
                })
            })
            .collect()
    }

    async fn ping_count(&self) -> Result<i64> {
        let row = query("SELECT COUNT(*) FROM pings")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn add_webhook(&self, webhook: NewWebhook) -> Result<()> {
        // Kept as an array here, but the kinds SQLite refuses (it stores them comma-separated)
        // are refused here too: the backends accept the same webhooks.
        if let Some(kind) = webhook
            .kinds
            .iter()
            .find(|k| k.is_empty() || k.contains(','))
        {
            return Err(StoreError::Invalid(format!(
                "webhook kind '{kind}' is empty or contains a comma"
            )));
        }
        let inserted = query(
            "INSERT INTO webhooks (event_id, webhook_id, url, secret, kinds, created_us)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.event_id)
        .bind(&webhook.webhook_id)
        .bind(&webhook.url)
        .bind(&webhook.secret)
        .bind(&webhook.kinds)
        .bind(Timestamp::now().as_microsecond())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e).is_some() => Err(StoreError::Conflict(format!(
                "webhook '{}' already exists for event '{}'",
                webhook.webhook_id, webhook.event_id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn webhooks(&self, event_id: &str) -> Result<Vec<Webhook>> {
        let rows = query(
            "SELECT event_id, webhook_id, url, secret, kinds, created_us FROM webhooks
             WHERE event_id = $1 ORDER BY seq",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Webhook {
                    event_id: row.try_get(0)?,
                    webhook_id: row.try_get(1)?,
                    url: row.try_get(2)?,
                    secret: row.try_get(3)?,
                    kinds: row.try_get(4)?,
                    created_at: timestamp(row, 5)?,
                })
            })
            .collect()
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
        let rows = query(
            "SELECT seq, event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us
             FROM webhook_deliveries WHERE event_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(event_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Delivery {
                    seq: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    webhook_id: row.try_get(2)?,
                    delivery_id: row.try_get(3)?,
                    kind: row.try_get(4)?,
                    attempt: narrow(row.try_get::<i64, _>(5)?, "attempt")?,
                    status: row
                        .try_get::<Option<i32>, _>(6)?
                        .map(|s| narrow(s, "status"))
                        .transpose()?,
                    error: row.try_get(7)?,
                    at: timestamp(row, 8)?,
                })
            })
            .collect()
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
}

// ---- writes that take more than one statement ----

/// The batch as one multi-row insert from arrays (eleven binds whatever its size), in batch
/// order, in one statement (its own transaction: one round trip, committed when it returns;
/// the schema's trigger takes the feed lock). A row that is already stored, or repeats an earlier row of the
/// batch, is skipped by `ON CONFLICT DO NOTHING`; `RETURNING` names the rows that were stored,
/// and the first item of the batch with each such key is the one that was.
async fn insert_pings(pool: &PgPool, batch: &[NewPing]) -> Result<Vec<Inserted>> {
    let n = batch.len();
    let mut event_ids = Vec::with_capacity(n);
    let mut device_ids = Vec::with_capacity(n);
    let (mut t_us, mut received_us) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut lon, mut lat) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut acc, mut speed, mut heading, mut alt, mut batt) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for item in batch {
        let p = &item.ping;
        event_ids.push(item.event_id.as_str());
        device_ids.push(item.device_id.as_str());
        t_us.push(p.t.as_microsecond());
        lon.push(p.lon);
        lat.push(p.lat);
        acc.push(measured(p.acc_m));
        speed.push(measured(p.speed_mps));
        heading.push(measured(p.heading_deg));
        alt.push(measured(p.alt_m));
        batt.push(measured(p.batt_pct));
        received_us.push(item.received_at.as_microsecond());
    }
    let rows = query(
        "INSERT INTO pings (event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg,
                            alt_m, batt_pct, received_us)
         SELECT event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m,
                batt_pct, received_us
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::float8[], $5::float8[],
                     $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                     $11::int8[]) WITH ORDINALITY
              AS b (event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m,
                    batt_pct, received_us, n)
         ORDER BY n
         ON CONFLICT (event_id, device_id, t_us) DO NOTHING
         RETURNING seq, event_id, device_id, t_us",
    )
    .bind(&event_ids)
    .bind(&device_ids)
    .bind(&t_us)
    .bind(&lon)
    .bind(&lat)
    .bind(&acc)
    .bind(&speed)
    .bind(&heading)
    .bind(&alt)
    .bind(&batt)
    .bind(&received_us)
    .fetch_all(pool)
    .await?;

    let mut stored: HashMap<(String, String, i64), i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        stored.insert(
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            row.try_get(0)?,
        );
    }
    Ok(batch
        .iter()
        .map(|item| {
            let key = (
                item.event_id.clone(),
                item.device_id.clone(),
                item.ping.t.as_microsecond(),
            );
            // `remove`: a later item with the same key is the duplicate.
            stored
                .remove(&key)
                .map_or(Inserted::Duplicate, |seq| Inserted::New { seq })
        })
        .collect())
}

/// Appends one entry after the chain's head, inside the caller's transaction. The head check
/// gives the clear message; the UNIQUE constraints (position, prev_hash, hash) decide a race
/// with another writer, whose commit makes this insert fail.
async fn append_custody(tx: &mut PgConnection, event_id: &str, entry: &NewCustody) -> Result<i64> {
    let chain = format!(
        "the custody log of relay '{}' in event '{event_id}'",
        entry.relay_id
    );
    let head = query(
        "SELECT position, hash FROM custody WHERE event_id = $1 AND relay_id = $2
         ORDER BY position DESC LIMIT 1",
    )
    .bind(event_id)
    .bind(&entry.relay_id)
    .fetch_optional(&mut *tx)
    .await?;
    let position = match head {
        None => 0,
        Some(row) => {
            let (position, hash): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            if hash != entry.prev_hash {
                return Err(StoreError::Conflict(format!(
                    "{chain} has moved on: prev_hash {} is not its head {hash}",
                    entry.prev_hash
                )));
            }
            position + 1
        }
    };
    let inserted = query(
        "INSERT INTO custody (event_id, relay_id, position, entry_json, hash, prev_hash,
                              created_us)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING seq",
    )
    .bind(event_id)
    .bind(&entry.relay_id)
    .bind(position)
    .bind(&entry.entry_json)
    .bind(&entry.hash)
    .bind(&entry.prev_hash)
    .bind(Timestamp::now().as_microsecond())
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(row) => Ok(row.try_get(0)?),
        Err(e) => match unique_violation(&e).as_deref() {
            Some("custody_position_key" | "custody_prev_hash_key") => {
                Err(StoreError::Conflict(format!(
                    "{chain} has moved on: another entry after prev_hash {} was stored first",
                    entry.prev_hash
                )))
            }
            Some(_) => Err(StoreError::Conflict(format!(
                "{chain} already has an entry with hash {} or after prev_hash {}",
                entry.hash, entry.prev_hash
            ))),
            None => Err(e.into()),
        },
    }
}

// ---- row decoding ----

fn ping_from_row(row: &PgRow) -> Result<StoredPing> {
    Ok(StoredPing {
        seq: row.try_get(0)?,
        event_id: row.try_get(1)?,
        device_id: row.try_get(2)?,
        ping: Ping {
            t: timestamp(row, 3)?,
            lon: row.try_get(4)?,
            lat: row.try_get(5)?,
            acc_m: row.try_get(6)?,
            speed_mps: row.try_get(7)?,
            heading_deg: row.try_get(8)?,
            alt_m: row.try_get(9)?,
            batt_pct: row.try_get(10)?,
        },
        received_at: timestamp(row, 11)?,
    })
}

fn plan_from_row(row: &PgRow) -> Result<StoredPlan> {
    Ok(StoredPlan {
        event_id: row.try_get(0)?,
        version: row.try_get(1)?,
        plan_json: row.try_get(2)?,
        plan_hash: row.try_get(3)?,
        created_at: timestamp(row, 4)?,
    })
}

fn device_from_row(row: &PgRow) -> Result<Device> {
    let speed_unit: Option<String> = row.try_get(6)?;
    Ok(Device {
        event_id: row.try_get(0)?,
        device_id: row.try_get(1)?,
        carrier: row.try_get(2)?,
        token_hash: row.try_get(3)?,
        created_at: timestamp(row, 4)?,
        relay_id: row.try_get(5)?,
        speed_unit: speed_unit
            .map(|name| {
                name.parse::<SpeedUnit>().map_err(|e| {
                    StoreError::Invalid(format!("a stored device has speed unit '{name}': {e}"))
                })
            })
            .transpose()?,
    })
}

/// Reads a BIGINT microseconds column back into an instant.
fn timestamp(row: &PgRow, index: usize) -> Result<Timestamp> {
    let us: i64 = row.try_get(index)?;
    Timestamp::from_microsecond(us)
        .map_err(|e| StoreError::Invalid(format!("a stored time ({us} µs) is out of range: {e}")))
}

/// A stored integer back into the narrower type the schema's CHECK keeps it in.
fn narrow<T: TryFrom<i64>>(value: impl Into<i64>, column: &str) -> Result<T> {
    let value = value.into();
    T::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("a stored {column} ({value}) is out of range")))
}

#[cfg(test)]
mod tests;
