//! The webhook outbox on PostgreSQL (migration 0003): every node queues what it learns, once
//! per `(event, webhook, key)` (`ON CONFLICT DO NOTHING`), and every node's delivery worker
//! claims due rows with `FOR UPDATE SKIP LOCKED` (two workers never wait for, nor take, the
//! same row) and a lease in `claimed_until_us` (a dead node's claim runs out and another node
//! attempts the row). An attempt is settled in one statement: its delivery log row, and the
//! notification's next due time or its end.

use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;

use super::rows::{narrow, timestamp};
use crate::error::{Result, StoreError};
use crate::{ClaimedNotification, NewDelivery, NewNotification, QueuedNotification};

pub(super) async fn enqueue(pool: &PgPool, items: &[NewNotification]) -> Result<usize> {
    let column = |f: fn(&NewNotification) -> &str| items.iter().map(f).collect::<Vec<&str>>();
    let created: Vec<i64> = items
        .iter()
        .map(|n| n.created_at.as_microsecond())
        .collect();
    let rows = query(
        "INSERT INTO webhook_outbox (event_id, webhook_id, dedupe_key, delivery_id, kind, body,
                                     attempts, next_us, created_us)
         SELECT event_id, webhook_id, dedupe_key, delivery_id, kind, body, 0, created_us,
                created_us
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::int8[]) WITH ORDINALITY
              AS n (event_id, webhook_id, dedupe_key, delivery_id, kind, body, created_us, i)
         ORDER BY i
         ON CONFLICT (event_id, webhook_id, dedupe_key) DO NOTHING
         RETURNING seq",
    )
    .bind(column(|n| &n.event_id))
    .bind(column(|n| &n.webhook_id))
    .bind(column(|n| &n.key))
    .bind(column(|n| &n.delivery_id))
    .bind(column(|n| &n.kind))
    .bind(column(|n| &n.body))
    .bind(&created)
    .fetch_all(pool)
    .await?;
    Ok(rows.len())
}

pub(super) async fn claim(
    pool: &PgPool,
    now: Timestamp,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<ClaimedNotification>> {
    let rows = query(
        "WITH due AS (
             SELECT seq FROM webhook_outbox
             WHERE next_us IS NOT NULL AND next_us <= $1
               AND (claimed_until_us IS NULL OR claimed_until_us <= $1)
             ORDER BY next_us, seq LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE webhook_outbox o SET claimed_until_us = $2 FROM due WHERE o.seq = due.seq
             RETURNING o.seq, o.event_id, o.webhook_id, o.dedupe_key, o.delivery_id, o.kind,
                       o.body, o.attempts, o.next_us
         )
         SELECT c.seq, c.event_id, c.webhook_id, c.dedupe_key, c.delivery_id, c.kind, c.body,
                c.attempts, w.url, w.secret
         FROM claimed c JOIN webhooks w USING (event_id, webhook_id)
         ORDER BY c.next_us, c.seq",
    )
    .bind(now.as_microsecond())
    .bind(until.as_microsecond())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedNotification {
                seq: row.try_get(0)?,
                event_id: row.try_get(1)?,
                webhook_id: row.try_get(2)?,
                key: row.try_get(3)?,
                delivery_id: row.try_get(4)?,
                kind: row.try_get(5)?,
                body: row.try_get(6)?,
                attempts: narrow(row.try_get::<i64, _>(7)?, "attempts")?,
                url: row.try_get(8)?,
                secret: row.try_get(9)?,
            })
        })
        .collect()
}

pub(super) async fn settle(
    pool: &PgPool,
    outbox_seq: i64,
    d: &NewDelivery,
    next: Option<Timestamp>,
) -> Result<i64> {
    // Both in one statement: the data-modifying CTE runs whether or not its row is read, and
    // commits with the log row.
    let row = query(
        "WITH o AS (
             UPDATE webhook_outbox SET attempts = $5, next_us = $10, claimed_until_us = NULL
             WHERE seq = $9 AND attempts = $5 - 1 AND next_us IS NOT NULL
         )
         INSERT INTO webhook_deliveries
             (event_id, webhook_id, delivery_id, kind, attempt, status, error, at_us)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING seq",
    )
    .bind(&d.event_id)
    .bind(&d.webhook_id)
    .bind(&d.delivery_id)
    .bind(&d.kind)
    .bind(i64::from(d.attempt))
    .bind(d.status.map(i32::from))
    .bind(&d.error)
    .bind(d.at.as_microsecond())
    .bind(outbox_seq)
    .bind(next.map(Timestamp::as_microsecond))
    .fetch_one(pool)
    .await?;
    Ok(row.try_get(0)?)
}

pub(super) async fn of_event(
    pool: &PgPool,
    event_id: &str,
    limit: i64,
) -> Result<Vec<QueuedNotification>> {
    let rows = query(
        "SELECT seq, event_id, webhook_id, dedupe_key, delivery_id, kind, attempts, next_us,
                claimed_until_us, created_us
         FROM webhook_outbox WHERE event_id = $1 ORDER BY seq LIMIT $2",
    )
    .bind(event_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let instant = |us: Option<i64>| {
        us.map(|us| {
            Timestamp::from_microsecond(us).map_err(|e| {
                StoreError::Invalid(format!("a stored time ({us} µs) is out of range: {e}"))
            })
        })
        .transpose()
    };
    rows.iter()
        .map(|row| {
            Ok(QueuedNotification {
                seq: row.try_get(0)?,
                event_id: row.try_get(1)?,
                webhook_id: row.try_get(2)?,
                key: row.try_get(3)?,
                delivery_id: row.try_get(4)?,
                kind: row.try_get(5)?,
                attempts: narrow(row.try_get::<i64, _>(6)?, "attempts")?,
                next_at: instant(row.try_get(7)?)?,
                claimed_until: instant(row.try_get(8)?)?,
                created_at: timestamp(row, 9)?,
            })
        })
        .collect()
}
