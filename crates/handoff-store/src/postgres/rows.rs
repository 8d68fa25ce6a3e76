//! Reading the store's rows back from PostgreSQL: the column lists the queries select (as
//! macros, so every query stays a `&'static str`: sqlx refuses a formatted string unless told
//! it is safe) and the decoders that turn a row into the trait's types.

use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use sqlx_core::row::Row;
use sqlx_postgres::PgRow;

use crate::error::{Result, StoreError};
use crate::{Delivery, Device, DeviceToken, StoredCustody, StoredPing, StoredPlan, Webhook};

/// The columns [`ping_from_row`] reads.
macro_rules! ping_columns {
    () => {
        "seq, event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m, \
         batt_pct, received_us"
    };
}

/// The columns [`device_from_row`] reads, of `devices_now` (a device with its token in force)
/// named by the prefix (`""` or `"d."`).
macro_rules! device_columns {
    ($t:literal) => {
        concat!(
            $t,
            "event_id, ",
            $t,
            "device_id, ",
            $t,
            "carrier, ",
            $t,
            "token_hash, ",
            $t,
            "created_us, ",
            $t,
            "relay_id, ",
            $t,
            "speed_unit, ",
            $t,
            "token_us"
        )
    };
}

/// The same of the `devices` table itself: a device as registered, with its first token.
macro_rules! registered_device_columns {
    () => {
        "event_id, device_id, carrier, token_hash, created_us, relay_id, speed_unit, created_us"
    };
}

/// The columns [`device_token_from_row`] reads.
macro_rules! device_token_columns {
    () => {
        "seq, event_id, device_id, token_hash, created_us"
    };
}

/// The columns [`webhook_from_row`] reads, of the table named by the prefix.
macro_rules! webhook_columns {
    ($t:literal) => {
        concat!(
            $t,
            "event_id, ",
            $t,
            "webhook_id, ",
            $t,
            "url, ",
            $t,
            "secret, ",
            $t,
            "kinds, ",
            $t,
            "created_us"
        )
    };
}

/// The columns [`custody_from_row`] reads.
macro_rules! custody_columns {
    () => {
        "seq, event_id, relay_id, entry_json, hash, prev_hash, created_us"
    };
}

/// The columns [`delivery_from_row`] reads.
macro_rules! delivery_columns {
    () => {
        "seq, event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us"
    };
}

pub(super) fn ping_from_row(row: &PgRow) -> Result<StoredPing> {
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

pub(super) fn plan_from_row(row: &PgRow) -> Result<StoredPlan> {
    Ok(StoredPlan {
        event_id: row.try_get(0)?,
        version: row.try_get(1)?,
        plan_json: row.try_get(2)?,
        plan_hash: row.try_get(3)?,
        created_at: timestamp(row, 4)?,
    })
}

pub(super) fn device_from_row(row: &PgRow) -> Result<Device> {
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
        token_at: timestamp(row, 7)?,
    })
}

pub(super) fn device_token_from_row(row: &PgRow) -> Result<DeviceToken> {
    Ok(DeviceToken {
        seq: row.try_get(0)?,
        event_id: row.try_get(1)?,
        device_id: row.try_get(2)?,
        token_hash: row.try_get(3)?,
        created_at: timestamp(row, 4)?,
    })
}

pub(super) fn webhook_from_row(row: &PgRow) -> Result<Webhook> {
    Ok(Webhook {
        event_id: row.try_get(0)?,
        webhook_id: row.try_get(1)?,
        url: row.try_get(2)?,
        secret: row.try_get(3)?,
        kinds: row.try_get(4)?,
        created_at: timestamp(row, 5)?,
    })
}

pub(super) fn custody_from_row(row: &PgRow) -> Result<StoredCustody> {
    Ok(StoredCustody {
        seq: row.try_get(0)?,
        event_id: row.try_get(1)?,
        relay_id: row.try_get(2)?,
        entry_json: row.try_get(3)?,
        hash: row.try_get(4)?,
        prev_hash: row.try_get(5)?,
        created_at: timestamp(row, 6)?,
    })
}

pub(super) fn delivery_from_row(row: &PgRow) -> Result<Delivery> {
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
}

/// Reads a BIGINT microseconds column back into an instant.
pub(super) fn timestamp(row: &PgRow, index: usize) -> Result<Timestamp> {
    let us: i64 = row.try_get(index)?;
    Timestamp::from_microsecond(us)
        .map_err(|e| StoreError::Invalid(format!("a stored time ({us} µs) is out of range: {e}")))
}

/// A stored integer back into the narrower type the schema's CHECK keeps it in.
pub(super) fn narrow<T: TryFrom<i64>>(value: impl Into<i64>, column: &str) -> Result<T> {
    let value = value.into();
    T::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("a stored {column} ({value}) is out of range")))
}
