//! The writes of inputs on PostgreSQL: each stores its row and numbers it in the change feed in
//! one statement (a data-modifying CTE: both rows commit, or neither), or, for custody entries,
//! in one transaction. Each returns the `seq` of its last change, for the store's subscribers.
//! Uniqueness is the schema's: a unique violation becomes a [`StoreError::Conflict`] naming the
//! rule, whichever node's commit won.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgConnection, PgPool};

use super::rows::device_from_row;
use crate::error::{Result, StoreError};
use crate::{Device, Inserted, NewCustody, NewDevice, NewPing, NewWebhook};
use handoff_core::ping::SpeedUnit;

/// How often a plan version taken by a concurrent commit is retried with the next one.
const PLAN_VERSION_ATTEMPTS: u32 = 16;

/// The constraint a unique violation broke, if `error` is one.
fn unique_violation(error: &sqlx_core::Error) -> Option<String> {
    let db = error.as_database_error()?;
    (db.code().as_deref() == Some("23505")).then(|| db.constraint().unwrap_or_default().to_owned())
}

/// An optional measurement as SQLite keeps it: NaN is no value (SQLite binds NaN as NULL).
fn measured(value: Option<f64>) -> Option<f64> {
    value.filter(|v| !v.is_nan())
}

/// Stores a new plan version (MAX + 1 inside the INSERT) and its change; returns
/// `(version, change)`. Two nodes computing the same version collide on the primary key (the
/// loser waits for the winner's commit) and the loser tries again with the next one.
pub(super) async fn put_plan(
    pool: &PgPool,
    event_id: &str,
    plan_json: &str,
    plan_hash: &str,
    at: Timestamp,
) -> Result<(i64, i64)> {
    for _ in 0..PLAN_VERSION_ATTEMPTS {
        let inserted = query(
            "WITH p AS (
                 INSERT INTO plans (event_id, version, plan_json, plan_hash, created_us)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4
                 FROM plans WHERE event_id = $1
                 RETURNING event_id, version
             ), c AS (
                 INSERT INTO changes (kind, event_id, row_seq)
                 SELECT 'plan', event_id, version FROM p
                 RETURNING seq
             )
             SELECT p.version, c.seq FROM p, c",
        )
        .bind(event_id)
        .bind(plan_json)
        .bind(plan_hash)
        .bind(at.as_microsecond())
        .fetch_one(pool)
        .await;
        match inserted {
            Ok(row) => return Ok((row.try_get(0)?, row.try_get(1)?)),
            Err(e) if unique_violation(&e).is_some() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict(format!(
        "event '{event_id}' got {PLAN_VERSION_ATTEMPTS} new plan versions from other writers \
         while this one was being stored; retry"
    )))
}

/// Registers a device and its change; returns the change.
pub(super) async fn add_device(pool: &PgPool, device: &NewDevice) -> Result<i64> {
    let inserted = query(
        "WITH d AS (
             INSERT INTO devices (event_id, device_id, carrier, relay_id, token_hash, speed_unit,
                                  created_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING event_id, device_id
         )
         INSERT INTO changes (kind, event_id, row_id) SELECT 'device', event_id, device_id FROM d
         RETURNING seq",
    )
    .bind(&device.event_id)
    .bind(&device.device_id)
    .bind(&device.carrier)
    .bind(&device.relay_id)
    .bind(&device.token_hash)
    .bind(device.speed_unit.map(SpeedUnit::as_str))
    .bind(device.created_at.as_microsecond())
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(row) => Ok(row.try_get(0)?),
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

/// Appends a device's new token (or its revocation) and its change, in one transaction; returns
/// the device as it now is and the change.
pub(super) async fn set_device_token(
    pool: &PgPool,
    event_id: &str,
    device_id: &str,
    token_hash: Option<&str>,
    at: Timestamp,
) -> Result<(Device, i64)> {
    let mut tx = pool.begin().await?;
    let registered = query("SELECT 1 FROM devices WHERE event_id = $1 AND device_id = $2")
        .bind(event_id)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !registered {
        return Err(StoreError::NotFound(format!(
            "device '{device_id}' is not registered for event '{event_id}'"
        )));
    }
    let in_use =
        || StoreError::Conflict("the token hash is already in use by another device".to_owned());
    if let Some(hash) = token_hash {
        let registration = query("SELECT 1 FROM devices WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
        if registration.is_some() {
            return Err(in_use());
        }
    }
    let inserted = query(
        "WITH t AS (
             INSERT INTO device_tokens (event_id, device_id, token_hash, created_us)
             VALUES ($1, $2, $3, $4)
             RETURNING event_id, device_id
         )
         INSERT INTO changes (kind, event_id, row_id) SELECT 'device', event_id, device_id FROM t
         RETURNING seq",
    )
    .bind(event_id)
    .bind(device_id)
    .bind(token_hash)
    .bind(at.as_microsecond())
    .fetch_one(&mut *tx)
    .await;
    let change: i64 = match inserted {
        Ok(row) => row.try_get(0)?,
        Err(e) if unique_violation(&e).is_some() => return Err(in_use()),
        Err(e) => return Err(e.into()),
    };
    let row = query(concat!(
        "SELECT ",
        device_columns!(""),
        " FROM devices_now WHERE event_id = $1 AND device_id = $2"
    ))
    .bind(event_id)
    .bind(device_id)
    .fetch_one(&mut *tx)
    .await?;
    let device = device_from_row(&row)?;
    tx.commit().await?;
    Ok((device, change))
}

/// Registers a webhook and its change; returns the change.
pub(super) async fn add_webhook(pool: &PgPool, webhook: &NewWebhook) -> Result<i64> {
    let inserted = query(
        "WITH w AS (
             INSERT INTO webhooks (event_id, webhook_id, url, secret, kinds, created_us)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING event_id, webhook_id
         )
         INSERT INTO changes (kind, event_id, row_id) SELECT 'webhook', event_id, webhook_id FROM w
         RETURNING seq",
    )
    .bind(&webhook.event_id)
    .bind(&webhook.webhook_id)
    .bind(&webhook.url)
    .bind(&webhook.secret)
    .bind(&webhook.kinds)
    .bind(webhook.created_at.as_microsecond())
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(row) => Ok(row.try_get(0)?),
        Err(e) if unique_violation(&e).is_some() => Err(StoreError::Conflict(format!(
            "webhook '{}' already exists for event '{}'",
            webhook.webhook_id, webhook.event_id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The batch as one multi-row insert from arrays (eleven binds whatever its size), in batch
/// order, with one change per run of one event's pings it stored, all in one statement (its own
/// transaction: one round trip, committed when it returns; the schema's triggers take the
/// feed lock). A row that is already stored, or repeats an earlier row of the batch, is skipped
/// by `ON CONFLICT DO NOTHING`; `RETURNING` names the rows that were stored, and the first item
/// of the batch with each such key is the one that was. Returns the outcomes and the newest
/// change (none when every ping was a duplicate).
pub(super) async fn insert_pings(
    pool: &PgPool,
    batch: &[NewPing],
) -> Result<(Vec<Inserted>, Option<i64>)> {
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
        "WITH stored AS (
             INSERT INTO pings (event_id, device_id, t_us, lon, lat, acc_m, speed_mps,
                                heading_deg, alt_m, batt_pct, received_us)
             SELECT event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m,
                    batt_pct, received_us
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::float8[], $5::float8[],
                         $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                         $11::int8[]) WITH ORDINALITY
                  AS b (event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg,
                        alt_m, batt_pct, received_us, n)
             ORDER BY n
             ON CONFLICT (event_id, device_id, t_us) DO NOTHING
             RETURNING seq, event_id, device_id, t_us
         ), runs AS (
             -- Runs of one event in batch order (which is seq order here), as SQLite numbers
             -- them: a duplicate, not stored, does not break a run.
             SELECT seq, event_id, COUNT(*) FILTER (WHERE starts) OVER (ORDER BY seq) AS run
             FROM (SELECT seq, event_id,
                          event_id IS DISTINCT FROM LAG(event_id) OVER (ORDER BY seq) AS starts
                   FROM stored) AS o
         ), feed AS (
             INSERT INTO changes (kind, event_id, ping_seqs)
             SELECT 'ping', MIN(event_id), array_agg(seq ORDER BY seq) FROM runs
             GROUP BY run ORDER BY run
             RETURNING seq
         )
         SELECT seq, event_id, device_id, t_us, (SELECT MAX(seq) FROM feed) FROM stored",
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

    let mut change = None;
    let mut stored: HashMap<(String, String, i64), i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        stored.insert(
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            row.try_get(0)?,
        );
        change = change.max(row.try_get::<Option<i64>, _>(4)?);
    }
    let outcomes = batch
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
        .collect();
    Ok((outcomes, change))
}

/// Appends one entry after the chain's head, and its change, inside the caller's transaction;
/// returns `(seq, change)`. The head check gives the clear message; the UNIQUE constraints
/// (position, prev_hash, hash) decide a race with another writer, whose commit makes this
/// insert fail.
pub(super) async fn append_custody(
    tx: &mut PgConnection,
    event_id: &str,
    entry: &NewCustody,
    at: Timestamp,
) -> Result<(i64, i64)> {
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
        "WITH e AS (
             INSERT INTO custody (event_id, relay_id, position, entry_json, hash, prev_hash,
                                  created_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING seq, event_id
         ), c AS (
             INSERT INTO changes (kind, event_id, row_seq) SELECT 'custody', event_id, seq FROM e
             RETURNING seq
         )
         SELECT e.seq, c.seq FROM e, c",
    )
    .bind(event_id)
    .bind(&entry.relay_id)
    .bind(position)
    .bind(&entry.entry_json)
    .bind(&entry.hash)
    .bind(&entry.prev_hash)
    .bind(at.as_microsecond())
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
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
