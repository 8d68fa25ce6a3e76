//! The givers' one-time handoff codes on PostgreSQL, one row per step (migration 0003). Every
//! node reads and counts the same rows, so a code asked for on one node is checked on any, and
//! wrong attempts on several nodes add up: each is one `UPDATE … attempts = attempts + 1` (the
//! row lock orders concurrent strikes), and the strike that reaches the limit deletes the code
//! in the same transaction.

use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgPool, PgRow};

use super::rows::{narrow, timestamp};
use crate::error::Result;
use crate::{CodeStep, HandoffCode};

pub(super) async fn put(pool: &PgPool, c: &HandoffCode) -> Result<()> {
    query(
        "INSERT INTO handoff_codes (event_id, relay_id, from_leg, code_hash, device_id, chain_len,
                                    expires_us, attempts, created_us)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)
         ON CONFLICT (event_id, relay_id, from_leg) DO UPDATE SET
             code_hash = excluded.code_hash, device_id = excluded.device_id,
             chain_len = excluded.chain_len, expires_us = excluded.expires_us, attempts = 0,
             created_us = excluded.created_us",
    )
    .bind(&c.step.event_id)
    .bind(&c.step.relay_id)
    .bind(i64::from(c.step.from_leg))
    .bind(&c.code_hash)
    .bind(&c.device_id)
    .bind(i64::try_from(c.chain_len).unwrap_or(i64::MAX))
    .bind(c.expires_at.as_microsecond())
    .bind(c.created_at.as_microsecond())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn of_relay(
    pool: &PgPool,
    event_id: &str,
    relay_id: &str,
) -> Result<Vec<HandoffCode>> {
    let rows = query(
        "SELECT event_id, relay_id, from_leg, code_hash, device_id, chain_len, expires_us,
                attempts, created_us
         FROM handoff_codes WHERE event_id = $1 AND relay_id = $2 ORDER BY from_leg",
    )
    .bind(event_id)
    .bind(relay_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(code_from_row).collect()
}

pub(super) async fn strike(
    pool: &PgPool,
    step: &CodeStep,
    code_hash: &str,
    burn_at: u32,
) -> Result<Option<u32>> {
    let mut tx = pool.begin().await?;
    let counted = query(
        "UPDATE handoff_codes SET attempts = attempts + 1
         WHERE event_id = $1 AND relay_id = $2 AND from_leg = $3 AND code_hash = $4
         RETURNING attempts",
    )
    .bind(&step.event_id)
    .bind(&step.relay_id)
    .bind(i64::from(step.from_leg))
    .bind(code_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let attempts: Option<u32> = counted
        .map(|row| narrow(row.try_get::<i64, _>(0)?, "attempts"))
        .transpose()?;
    if attempts.is_some_and(|n| n >= burn_at) {
        delete_in(&mut tx, step, code_hash).await?;
    }
    tx.commit().await?;
    Ok(attempts)
}

pub(super) async fn delete(pool: &PgPool, step: &CodeStep, code_hash: &str) -> Result<()> {
    let mut conn = pool.acquire().await?;
    delete_in(&mut conn, step, code_hash).await
}

async fn delete_in(
    conn: &mut sqlx_postgres::PgConnection,
    step: &CodeStep,
    code_hash: &str,
) -> Result<()> {
    query(
        "DELETE FROM handoff_codes
         WHERE event_id = $1 AND relay_id = $2 AND from_leg = $3 AND code_hash = $4",
    )
    .bind(&step.event_id)
    .bind(&step.relay_id)
    .bind(i64::from(step.from_leg))
    .bind(code_hash)
    .execute(conn)
    .await?;
    Ok(())
}

fn code_from_row(row: &PgRow) -> Result<HandoffCode> {
    Ok(HandoffCode {
        step: CodeStep {
            event_id: row.try_get(0)?,
            relay_id: row.try_get(1)?,
            from_leg: narrow(row.try_get::<i64, _>(2)?, "from_leg")?,
        },
        code_hash: row.try_get(3)?,
        device_id: row.try_get(4)?,
        chain_len: narrow(row.try_get::<i64, _>(5)?, "chain_len")?,
        expires_at: timestamp(row, 6)?,
        attempts: narrow(row.try_get::<i64, _>(7)?, "attempts")?,
        created_at: timestamp(row, 8)?,
    })
}
