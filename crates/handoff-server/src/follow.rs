//! Following the store's change feed, for a store that other servers write to as well
//! (several `handoff serve` nodes on one PostgreSQL): every input another node committed (a
//! plan version, a device, pings, a custody entry, a webhook) reaches this node's engines, so a
//! spectator on any node sees the same live state.
//!
//! The feed ([`Store::changes_since`]) is read from where it stood when the server opened the
//! store, page by page, woken by [`Store::subscribe`] and, in case a wake-up was missed (a
//! reconnect, another process's commit that this one cannot hear), at least every second.
//! What this node wrote itself comes back too, and is passed over: a write of pings this node
//! applied itself (known by its first `seq`; should one slip through, the tracker skips pings
//! it holds), a custody entry the chain already has (not loaded again), and the entries this
//! node appended (not announced twice to its streams).
//!
//! A custody entry another node committed is queued for the webhooks here too: the outbox
//! keeps it once whoever queues it ([`crate::webhooks`]), so it is sent even if the node that
//! committed it died before queueing it.
//!
//! [`Store::changes_since`]: handoff_store::Store::changes_since
//! [`Store::subscribe`]: handoff_store::Store::subscribe

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use handoff_core::custody::Entry;
use handoff_store::{ChangeRow, Device, StoredCustody, StoredPing};

use crate::app::AppState;
use crate::engine::Committed;

/// How many changes one read of the feed takes.
const PAGE: usize = 1_000;

/// Reads the feed at least this often, woken or not.
const AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// And at most this often: each read first asks PostgreSQL for the horizon, which waits for the
/// commits in flight and holds new ones back meanwhile (the feed lock). Woken by every commit
/// (this node's own too), a reader that read at once would ask a thousand times a second under
/// a race's load and serialise every writer; a wake-up within this time of the last read is
/// served by the next one, which costs another node's viewers at most this much delay.
const AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// What a node following the feed must know of its own writes.
#[derive(Debug, Default)]
pub struct Own {
    following: std::sync::atomic::AtomicBool,
    /// Store sequences of custody entries this node appended and announced itself, until the
    /// feed brings them back.
    custody: Mutex<HashSet<i64>>,
    /// The first `seq` of each write of pings this node applied itself, likewise. A change of
    /// the feed may hold several of them (the store stores concurrent writes in one statement,
    /// one change per run of one event), so it forgets every one in the change's range.
    pings: Mutex<BTreeSet<i64>>,
}

impl Own {
    /// Notes a custody entry this node appended (and announced to its own streams).
    pub fn appended(&self, seq: i64) {
        if self.following.load(std::sync::atomic::Ordering::Relaxed) {
            self.custody
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(seq);
        }
    }

    /// Notes a write of pings (its first `seq`) that this node applies itself.
    pub fn stored_pings(&self, first: i64) {
        if self.following.load(std::sync::atomic::Ordering::Relaxed) {
            self.pings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(first);
        }
    }

    /// Whether the feed's custody entry `seq` was this node's (forgetting it).
    fn was_mine(&self, seq: i64) -> bool {
        self.custody
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seq)
    }

    /// Whether the feed's change of pings `first..=last` was this node's write (forgetting
    /// every write of this node it holds).
    fn stored_by_me(&self, first: i64, last: i64) -> bool {
        let mut pings = self.pings.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = pings.contains(&first);
        let mut in_change = pings.split_off(&first);
        let mut beyond = in_change.split_off(&last.saturating_add(1));
        pings.append(&mut beyond);
        mine
    }
}

/// Follows the store's change feed from `from` (the newest change when the store was opened)
/// until the server shuts down. Spawn it once per server whose store others write to.
pub async fn run(state: Arc<AppState>, from: i64) {
    state
        .own
        .following
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut wake = state.store.subscribe();
    let mut closing = state.closing.subscribe();
    let mut cursor = from;
    let mut devices: HashMap<(String, String), Device> = HashMap::new();
    loop {
        let read_at = tokio::time::Instant::now();
        loop {
            let page = match state.store.changes_since(cursor, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("following the store's changes: {e}; retrying");
                    break;
                }
            };
            let Some(last) = page.last().map(|c| c.seq) else {
                break;
            };
            let full = page.len() == PAGE;
            for change in page {
                apply(&state, change.row, &mut devices).await;
            }
            cursor = last;
            if !full {
                break;
            }
        }
        tokio::select! {
            _ = wake.changed() => {}
            () = tokio::time::sleep(AT_LEAST_EVERY) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        tokio::select! {
            () = tokio::time::sleep_until(read_at + AT_MOST_EVERY) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

async fn apply(
    state: &Arc<AppState>,
    row: ChangeRow,
    devices: &mut HashMap<(String, String), Device>,
) {
    match row {
        ChangeRow::Plan(stored) => {
            if let Err(e) = state.install(&stored).await {
                tracing::error!(event = %stored.event_id, "installing plan version {} from the feed: {e}", stored.version);
            }
        }
        ChangeRow::Device(d) => {
            devices.insert((d.event_id.clone(), d.device_id.clone()), d.clone());
            state.remember_device(d);
        }
        ChangeRow::Pings(pings) => self::pings(state, pings, devices).await,
        ChangeRow::Custody(c) => custody(state, c).await,
        ChangeRow::Webhook(w) => match state.store.webhooks(&w.event_id).await {
            Ok(hooks) => state.webhooks.load(&w.event_id, hooks),
            Err(e) => tracing::error!(event = %w.event_id, "reloading the webhooks: {e}"),
        },
    }
}

/// Pings another node stored (or this one: the tracker skips those it holds).
async fn pings(
    state: &Arc<AppState>,
    pings: Vec<StoredPing>,
    devices: &mut HashMap<(String, String), Device>,
) {
    let Some(event) = pings.first().map(|p| p.event_id.clone()) else {
        return;
    };
    let (first, last) = (pings.first().map(|p| p.seq), pings.last().map(|p| p.seq));
    if let (Some(first), Some(last)) = (first, last)
        && state.own.stored_by_me(first, last)
    {
        return; // applied by this node's ingest already
    }
    let Some(live) = state.event(&event) else {
        return;
    };
    let mut committed = Vec::with_capacity(pings.len());
    for p in pings {
        let key = (p.event_id.clone(), p.device_id.clone());
        if !devices.contains_key(&key) {
            // Registered before this node followed, or its change is still to come.
            match state.store.devices(&event).await {
                Ok(all) => devices.extend(
                    all.into_iter()
                        .map(|d| ((d.event_id.clone(), d.device_id.clone()), d)),
                ),
                Err(e) => tracing::error!(event, "reading the devices: {e}"),
            }
        }
        let Some(d) = devices.get(&key) else { continue };
        committed.push(Committed {
            device: p.device_id,
            carrier: d.carrier.clone(),
            relay: d.relay_id.clone(),
            seq: p.seq,
            ping: p.ping,
        });
    }
    if !committed.is_empty() {
        crate::engine::apply_committed(state, &live, committed.into()).await;
    }
}

/// A custody entry: the relay's chain is loaded again if it does not have it, and the entry
/// streamed to this node's listeners unless this node appended it (and streamed it) itself.
async fn custody(state: &Arc<AppState>, c: StoredCustody) {
    let mine = state.own.was_mine(c.seq);
    let Some(live) = state.event(&c.event_id) else {
        return;
    };
    if crate::custody::adopt(state, &live, &c.relay_id, &c.hash).await && !mine {
        match serde_json::from_str::<Entry>(&c.entry_json) {
            Ok(entry) => {
                for msg in
                    crate::custody::messages(&c.relay_id, &entry, &live.plan.event.id, live.version)
                {
                    live.send_frame(msg.frame_with_id(Some(c.seq)));
                }
                crate::webhooks::enqueue_custody(state, &c.event_id, &c.relay_id, &entry).await;
            }
            Err(e) => {
                tracing::error!(event = %c.event_id, relay = %c.relay_id, "an unreadable custody entry in the feed: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Own;

    #[test]
    fn a_change_holding_several_of_this_nodes_writes_forgets_them_all() {
        let own = Own::default();
        own.following
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Four writes of this node; the store put the first three in one statement, which the
        // feed brings as one change (seqs 10..=15), and the fourth in a change of its own.
        for first in [10, 12, 14, 20] {
            own.stored_pings(first);
        }
        assert!(own.stored_by_me(10, 15));
        assert_eq!(own.pings.lock().map(|p| p.len()).unwrap_or(99), 1);
        // Another node's change is not this node's, and forgets nothing of it.
        assert!(!own.stored_by_me(16, 19));
        assert!(own.stored_by_me(20, 20));
        assert_eq!(own.pings.lock().map(|p| p.len()).unwrap_or(99), 0);
    }
}
