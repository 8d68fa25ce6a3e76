//! The webhook outbox on SQLite (migration 8). One server owns the file, so its one writer
//! thread is all the claiming needs: a claim is an `UPDATE … RETURNING` that no other write
//! interleaves with. Claims still carry a lease, as on PostgreSQL: a server killed with a claim
//! leaves a row that the next start attempts once the lease is over.

use jiff::Timestamp;
use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};

use super::timestamp;
use crate::error::Result;
use crate::{ClaimedNotification, NewNotification, QueuedNotification};

/// The notifications due at `?1`: not done, and no claim alive.
const DUE: &str = "next_us IS NOT NULL AND next_us <= ?1 \
                   AND (claimed_until_us IS NULL OR claimed_until_us <= ?1)";

pub(super) fn enqueue(conn: &Connection, items: &[NewNotification]) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO webhook_outbox (event_id, webhook_id, dedupe_key, delivery_id, kind, body,
                                     attempts, next_us, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)
         ON CONFLICT (event_id, webhook_id, dedupe_key) DO NOTHING",
    )?;
    let mut new = 0;
    for n in items {
        new += stmt.execute(params![
            n.event_id,
            n.webhook_id,
            n.key,
            n.delivery_id,
            n.kind,
            n.body,
            n.created_at.as_microsecond()
        ])?;
    }
    Ok(new)
}

pub(super) fn any_due(conn: &Connection, now: Timestamp) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM webhook_outbox WHERE {DUE} LIMIT 1"))?
        .exists([now.as_microsecond()])?)
}

pub(super) fn claim(
    conn: &Connection,
    now: Timestamp,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<ClaimedNotification>> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE webhook_outbox SET claimed_until_us = ?2
         WHERE seq IN (SELECT seq FROM webhook_outbox WHERE {DUE} ORDER BY next_us, seq LIMIT ?3)
         RETURNING seq, next_us"
    ))?;
    let mut claimed: Vec<(i64, i64)> = stmt
        .query_map(
            params![now.as_microsecond(), until.as_microsecond(), limit],
            |row| Ok((row.get(1)?, row.get(0)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    // RETURNING promises no order: oldest due first, as the store does.
    claimed.sort_unstable();
    let mut read = conn.prepare_cached(
        "SELECT o.seq, o.event_id, o.webhook_id, o.dedupe_key, o.delivery_id, o.kind, o.body,
                o.attempts, w.url, w.secret
         FROM webhook_outbox AS o
         JOIN webhooks AS w ON w.event_id = o.event_id AND w.webhook_id = o.webhook_id
         WHERE o.seq = ?1",
    )?;
    let mut out = Vec::with_capacity(claimed.len());
    for (_, seq) in claimed {
        // Webhooks are append-only: a queued notification's webhook is there.
        out.push(read.query_row([seq], |row| {
            Ok(ClaimedNotification {
                seq: row.get(0)?,
                event_id: row.get(1)?,
                webhook_id: row.get(2)?,
                key: row.get(3)?,
                delivery_id: row.get(4)?,
                kind: row.get(5)?,
                body: row.get(6)?,
                attempts: row.get(7)?,
                url: row.get(8)?,
                secret: row.get(9)?,
            })
        })?);
    }
    Ok(out)
}

/// Moves a notification on after attempt `attempt` (the delivery log row is the caller's),
/// unless another attempt settled it first.
pub(super) fn settle(
    conn: &Connection,
    outbox_seq: i64,
    attempt: u32,
    next: Option<Timestamp>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_outbox SET attempts = ?2, next_us = ?3, claimed_until_us = NULL
         WHERE seq = ?1 AND attempts = ?2 - 1 AND next_us IS NOT NULL",
    )?
    .execute(params![
        outbox_seq,
        attempt,
        next.map(Timestamp::as_microsecond)
    ])?;
    Ok(())
}

pub(super) fn of_event(
    conn: &Connection,
    event_id: &str,
    limit: i64,
) -> Result<Vec<QueuedNotification>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id, webhook_id, dedupe_key, delivery_id, kind, attempts, next_us,
                claimed_until_us, created_us
         FROM webhook_outbox WHERE event_id = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![event_id, limit], |row| {
        Ok(QueuedNotification {
            seq: row.get(0)?,
            event_id: row.get(1)?,
            webhook_id: row.get(2)?,
            key: row.get(3)?,
            delivery_id: row.get(4)?,
            kind: row.get(5)?,
            attempts: row.get(6)?,
            next_at: opt_timestamp(row, 7)?,
            claimed_until: opt_timestamp(row, 8)?,
            created_at: timestamp(row, 9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Reads a nullable INTEGER microseconds column back into an instant.
fn opt_timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    let us: Option<i64> = row.get(index)?;
    us.map(|us| {
        Timestamp::from_microsecond(us).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, Box::new(e))
        })
    })
    .transpose()
}
