//! The givers' one-time handoff codes on SQLite, one row per step (migration 8). The writes run
//! on the writer thread, so a strike's increment and the delete that burns the code are one
//! step that nothing interleaves with.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::timestamp;
use crate::error::Result;
use crate::{CodeStep, HandoffCode};

pub(super) fn put(conn: &Connection, c: &HandoffCode) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO handoff_codes (event_id, relay_id, from_leg, code_hash, device_id, chain_len,
                                    expires_us, attempts, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)
         ON CONFLICT (event_id, relay_id, from_leg) DO UPDATE SET
             code_hash = excluded.code_hash, device_id = excluded.device_id,
             chain_len = excluded.chain_len, expires_us = excluded.expires_us, attempts = 0,
             created_us = excluded.created_us",
    )?
    .execute(params![
        c.step.event_id,
        c.step.relay_id,
        c.step.from_leg,
        c.code_hash,
        c.device_id,
        i64::try_from(c.chain_len).unwrap_or(i64::MAX),
        c.expires_at.as_microsecond(),
        c.created_at.as_microsecond()
    ])?;
    Ok(())
}

pub(super) fn of_relay(
    conn: &Connection,
    event_id: &str,
    relay_id: &str,
) -> Result<Vec<HandoffCode>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, relay_id, from_leg, code_hash, device_id, chain_len, expires_us,
                attempts, created_us
         FROM handoff_codes WHERE event_id = ?1 AND relay_id = ?2 ORDER BY from_leg",
    )?;
    let codes = stmt.query_map([event_id, relay_id], code_from_row)?;
    Ok(codes.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn strike(
    conn: &Connection,
    step: &CodeStep,
    code_hash: &str,
    burn_at: u32,
) -> Result<Option<u32>> {
    let attempts: Option<u32> = conn
        .prepare_cached(
            "UPDATE handoff_codes SET attempts = attempts + 1
             WHERE event_id = ?1 AND relay_id = ?2 AND from_leg = ?3 AND code_hash = ?4
             RETURNING attempts",
        )?
        .query_row(
            params![step.event_id, step.relay_id, step.from_leg, code_hash],
            |row| row.get(0),
        )
        .optional()?;
    if attempts.is_some_and(|n| n >= burn_at) {
        delete(conn, step, code_hash)?;
    }
    Ok(attempts)
}

pub(super) fn delete(conn: &Connection, step: &CodeStep, code_hash: &str) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM handoff_codes
         WHERE event_id = ?1 AND relay_id = ?2 AND from_leg = ?3 AND code_hash = ?4",
    )?
    .execute(params![
        step.event_id,
        step.relay_id,
        step.from_leg,
        code_hash
    ])?;
    Ok(())
}

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<HandoffCode> {
    let chain_len: i64 = row.get(5)?;
    Ok(HandoffCode {
        step: CodeStep {
            event_id: row.get(0)?,
            relay_id: row.get(1)?,
            from_leg: row.get(2)?,
        },
        code_hash: row.get(3)?,
        device_id: row.get(4)?,
        // The schema's CHECK keeps it non-negative.
        chain_len: u64::try_from(chain_len).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, Type::Integer, Box::new(e))
        })?,
        expires_at: timestamp(row, 6)?,
        attempts: row.get(7)?,
        created_at: timestamp(row, 8)?,
    })
}
