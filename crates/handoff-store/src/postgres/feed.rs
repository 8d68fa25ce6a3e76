//! The change feed on PostgreSQL: reading it (a page of `changes` up to the horizon, each
//! change with its row, loaded a kind at a time rather than a query per change) and waking
//! this store's subscribers after its own commits and, through `LISTEN` ([`listen`]), after
//! other nodes' (the schema's `changes_notify` trigger notifies at each commit). The schema's
//! feed lock makes the horizon safe (see the migration).

use std::collections::HashMap;

use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use tokio::sync::watch;

use super::rows::{
    custody_from_row, device_from_row, ping_from_row, plan_from_row, webhook_from_row,
};
use crate::error::{Result, StoreError};
use crate::{Change, ChangeKind, ChangeRow, StoredPing};

/// Wakes `newest` with the notifications other nodes' commits send, until `stop` resolves (the
/// store was dropped) or the pool closes; says on `listening` when it has begun to listen (it
/// is dropped unsent if it cannot). A notification lost while the connection was down is
/// not replayed: subscribers read the feed to its end on any wake-up, and at least every second.
pub(super) async fn listen(
    pool: PgPool,
    newest: std::sync::Weak<Newest>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let channel: String = match query("SELECT 'handoff_changes:' || current_schema()")
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get(0))
    {
        Ok(c) => c,
        Err(_) => return, // no wake-ups from other nodes: the periodic reads still find them
    };
    let Ok(mut listener) = sqlx_postgres::PgListener::connect_with(&pool).await else {
        return;
    };
    if listener.listen(&channel).await.is_err() {
        return;
    }
    // From here on every other node's commit wakes this store's subscribers.
    let _ = listening.send(());
    loop {
        tokio::select! {
            _ = &mut stop => return,
            n = listener.recv() => match n {
                Ok(n) => {
                    let Some(newest) = newest.upgrade() else { return };
                    if let Ok(seq) = n.payload().parse::<i64>() {
                        newest.committed(seq);
                    }
                }
                // The pool closed (the store is closing), or the server is gone for now.
                Err(sqlx_core::Error::PoolClosed) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
            },
        }
    }
}

/// The newest change this store has committed (or found at connect), for `subscribe`.
#[derive(Debug)]
pub(super) struct Newest(watch::Sender<i64>);

impl Newest {
    pub(super) async fn load(pool: &PgPool) -> Result<Newest> {
        let newest: i64 = query("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        Ok(Newest(watch::channel(newest).0))
    }

    /// After a commit that numbered change `seq`: wakes the subscribers if it is news.
    pub(super) fn committed(&self, seq: i64) {
        self.0.send_if_modified(|newest| {
            let news = seq > *newest;
            if news {
                *newest = seq;
            }
            news
        });
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<i64> {
        self.0.subscribe()
    }
}

/// The highest `seq` of `changes` (or of `pings`, with `handoff_ping_horizon`) whose
/// transaction is over: every row up to it that will ever be visible is visible now. Its own
/// statement, so that the lock is released at once and the next statement's snapshot is taken
/// after those transactions ended.
pub(super) async fn horizon(pool: &PgPool, function: Horizon) -> Result<i64> {
    let sql = match function {
        Horizon::Pings => "SELECT handoff_ping_horizon()",
        Horizon::Changes => "SELECT handoff_change_horizon()",
    };
    Ok(query(sql).fetch_one(pool).await?.try_get(0)?)
}

/// Which sequence [`horizon`] reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Horizon {
    Pings,
    Changes,
}

/// One row of `changes`: what it numbers, before its row is loaded.
struct Key {
    seq: i64,
    kind: ChangeKind,
    event_id: String,
    row_seq: Option<i64>,
    ping_seqs: Vec<i64>,
    row_id: Option<String>,
}

/// Up to `limit` changes after `after`, in `seq` order, each with its row.
pub(super) async fn changes_since(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<Change>> {
    let horizon = horizon(pool, Horizon::Changes).await?;
    if horizon <= after {
        return Ok(Vec::new());
    }
    let keys = query(
        "SELECT seq, kind, event_id, row_seq, ping_seqs, row_id FROM changes
         WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
    )
    .bind(after)
    .bind(horizon)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(Key {
            seq: row.try_get(0)?,
            kind: row.try_get::<String, _>(1)?.parse()?,
            event_id: row.try_get(2)?,
            row_seq: row.try_get(3)?,
            ping_seqs: row.try_get::<Option<Vec<i64>>, _>(4)?.unwrap_or_default(),
            row_id: row.try_get(5)?,
        })
    })
    .collect::<Result<Vec<Key>>>()?;
    let mut rows = Rows::load(pool, &keys).await?;
    keys.into_iter()
        .map(|key| {
            let missing = || {
                StoreError::Invalid(format!(
                    "change {} names a {} of event '{}' that is not stored",
                    key.seq,
                    key.kind.as_str(),
                    key.event_id
                ))
            };
            let row = match key.kind {
                ChangeKind::Plan => key
                    .row_seq
                    .and_then(|v| rows.plans.remove(&(key.event_id.clone(), v)))
                    .map(ChangeRow::Plan),
                // A device can be named by several changes of a page (its registration, a new
                // token): each gets the device as it now is.
                ChangeKind::Device => key
                    .row_id
                    .and_then(|id| rows.devices.get(&(key.event_id.clone(), id)).cloned())
                    .map(ChangeRow::Device),
                ChangeKind::Webhook => key
                    .row_id
                    .and_then(|id| rows.webhooks.remove(&(key.event_id.clone(), id)))
                    .map(ChangeRow::Webhook),
                ChangeKind::Custody => key
                    .row_seq
                    .and_then(|seq| rows.custody.remove(&seq))
                    .map(ChangeRow::Custody),
                ChangeKind::Ping => {
                    let pings: Option<Vec<StoredPing>> = key
                        .ping_seqs
                        .iter()
                        .map(|seq| rows.pings.remove(seq))
                        .collect();
                    pings.filter(|p| !p.is_empty()).map(ChangeRow::Pings)
                }
            };
            Ok(Change {
                seq: key.seq,
                row: row.ok_or_else(missing)?,
            })
        })
        .collect()
}

/// The rows a page of changes names, one query per kind present.
#[derive(Default)]
struct Rows {
    plans: HashMap<(String, i64), crate::StoredPlan>,
    devices: HashMap<(String, String), crate::Device>,
    webhooks: HashMap<(String, String), crate::Webhook>,
    custody: HashMap<i64, crate::StoredCustody>,
    pings: HashMap<i64, StoredPing>,
}

impl Rows {
    async fn load(pool: &PgPool, keys: &[Key]) -> Result<Rows> {
        let mut rows = Rows::default();
        let of = |kind: ChangeKind| keys.iter().filter(move |k| k.kind == kind);

        let plans: (Vec<&str>, Vec<i64>) = of(ChangeKind::Plan)
            .filter_map(|k| Some((k.event_id.as_str(), k.row_seq?)))
            .unzip();
        if !plans.0.is_empty() {
            for row in query(
                "SELECT p.event_id, p.version, p.plan_json, p.plan_hash, p.created_us
                 FROM plans p JOIN UNNEST($1::text[], $2::int8[]) AS k (event_id, version)
                      ON p.event_id = k.event_id AND p.version = k.version",
            )
            .bind(&plans.0)
            .bind(&plans.1)
            .fetch_all(pool)
            .await?
            {
                let plan = plan_from_row(&row)?;
                rows.plans
                    .insert((plan.event_id.clone(), plan.version), plan);
            }
        }

        let devices = by_id(&of(ChangeKind::Device).collect::<Vec<_>>());
        if !devices.0.is_empty() {
            for row in query(concat!(
                "SELECT ",
                device_columns!("d."),
                " FROM devices_now d JOIN UNNEST($1::text[], $2::text[]) AS k (event_id, device_id)
                      ON d.event_id = k.event_id AND d.device_id = k.device_id"
            ))
            .bind(&devices.0)
            .bind(&devices.1)
            .fetch_all(pool)
            .await?
            {
                let device = device_from_row(&row)?;
                rows.devices
                    .insert((device.event_id.clone(), device.device_id.clone()), device);
            }
        }

        let webhooks = by_id(&of(ChangeKind::Webhook).collect::<Vec<_>>());
        if !webhooks.0.is_empty() {
            for row in query(concat!(
                "SELECT ",
                webhook_columns!("w."),
                " FROM webhooks w JOIN UNNEST($1::text[], $2::text[]) AS k (event_id, webhook_id)
                      ON w.event_id = k.event_id AND w.webhook_id = k.webhook_id"
            ))
            .bind(&webhooks.0)
            .bind(&webhooks.1)
            .fetch_all(pool)
            .await?
            {
                let hook = webhook_from_row(&row)?;
                rows.webhooks
                    .insert((hook.event_id.clone(), hook.webhook_id.clone()), hook);
            }
        }

        let custody: Vec<i64> = of(ChangeKind::Custody).filter_map(|k| k.row_seq).collect();
        if !custody.is_empty() {
            for row in query(concat!(
                "SELECT ",
                custody_columns!(),
                " FROM custody WHERE seq = ANY($1::int8[])"
            ))
            .bind(&custody)
            .fetch_all(pool)
            .await?
            {
                let entry = custody_from_row(&row)?;
                rows.custody.insert(entry.seq, entry);
            }
        }

        let pings: Vec<i64> = of(ChangeKind::Ping)
            .flat_map(|k| k.ping_seqs.iter().copied())
            .collect();
        if !pings.is_empty() {
            for row in query(concat!(
                "SELECT ",
                ping_columns!(),
                " FROM pings WHERE seq = ANY($1::int8[])"
            ))
            .bind(&pings)
            .fetch_all(pool)
            .await?
            {
                let ping = ping_from_row(&row)?;
                rows.pings.insert(ping.seq, ping);
            }
        }
        Ok(rows)
    }
}

/// `(event ids, row ids)` of changes that name their row by id.
fn by_id<'k>(keys: &[&'k Key]) -> (Vec<&'k str>, Vec<&'k str>) {
    keys.iter()
        .filter_map(|k| Some((k.event_id.as_str(), k.row_id.as_deref()?)))
        .unzip()
}
