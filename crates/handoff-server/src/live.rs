//! The live shell around the pure tracker: one `EventLive` per event holds its `Tracker`, its
//! relays' custody chains, and a broadcast channel that fans every change out to the SSE
//! streams. Pings reach it only after the store has committed them, and custody entries only
//! after they are stored, so what streams out is always durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use handoff_core::custody::{Custody, Entry, Kind};
use handoff_core::live::{RelayView, Snapshot};
use handoff_core::ping::Ping;
use handoff_core::plan::Plan;
use handoff_core::track::{Change, LegAccuracy, Tracker};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

/// One message on the live stream: the SSE event name and its JSON data.
#[derive(Debug, Clone, Serialize)]
pub struct StreamMsg {
    pub event: &'static str,
    pub data: serde_json::Value,
}

/// One relay's custody chain as stored, and the state it implies.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub entries: Vec<Entry>,
    pub state: Custody,
}

impl Chain {
    #[must_use]
    pub fn new(n_legs: usize, entries: Vec<Entry>) -> Self {
        let state = Custody::from_entries(n_legs, &entries);
        Self { entries, state }
    }

    /// Handoffs as the log says (corrections applied): (from leg, at).
    #[must_use]
    pub fn recorded(&self) -> Vec<(usize, Timestamp)> {
        self.state
            .ends
            .iter()
            .enumerate()
            .filter_map(|(leg, at)| at.map(|t| (leg, t)))
            .collect()
    }

    /// Plan shifts: (from leg, milliseconds).
    #[must_use]
    pub fn shifts(&self) -> Vec<(usize, i64)> {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::Shift)
            .map(|e| {
                (
                    e.from.as_ref().map_or(0, |h| h.leg),
                    e.shift_s.unwrap_or(0).saturating_mul(1000),
                )
            })
            .collect()
    }
}

/// Alert flags of one relay, to raise an alert when one turns on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    leg: Option<usize>,
    overdue: bool,
    off_route: bool,
    silent: bool,
}

pub struct EventLive {
    pub plan: Arc<Plan>,
    pub version: i64,
    pub plan_hash: String,
    /// The plan's source as stored (TOML).
    pub source: String,
    tracker: Mutex<Tracker>,
    /// Custody chains by relay id. An async mutex: appending waits for the store.
    pub chains: tokio::sync::Mutex<HashMap<String, Chain>>,
    /// One-time handoff codes by (relay, from leg).
    pub codes: Mutex<HashMap<(String, usize), crate::api::handoffs::Code>>,
    flags: Mutex<HashMap<String, Flags>>,
    pub tx: broadcast::Sender<Arc<StreamMsg>>,
    /// Set when a newer plan version replaces this one: its streams end, and the pages'
    /// `EventSource` reconnects to the new one by itself.
    pub retired: tokio::sync::watch::Sender<bool>,
    /// Bumped on every change; part of the `/live` ETag.
    seq: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (every update finishes
    // before the guard drops), so recover the guard rather than poison the server.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EventLive {
    #[must_use]
    pub fn new(plan: Arc<Plan>, version: i64, plan_hash: String, source: String) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            tracker: Mutex::new(Tracker::new(Arc::clone(&plan))),
            plan,
            version,
            plan_hash,
            source,
            chains: tokio::sync::Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            flags: Mutex::new(HashMap::new()),
            tx,
            retired: tokio::sync::watch::Sender::new(false),
            seq: 0.into(),
        }
    }

    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies committed pings (device, carrier, ping), streams what changed, and returns the
    /// proximity handoffs found (for the custody log).
    pub fn apply(&self, pings: &[(String, String, Ping)], now: Timestamp) -> Vec<Change> {
        let (changes, views) = {
            let mut tr = lock(&self.tracker);
            let changes = tr.apply_batch(pings.iter().map(|(d, c, p)| (d.as_str(), c.as_str(), p)));
            let views = relay_views(&tr, &changes, now);
            (changes, views)
        };
        self.publish(&changes, views, now);
        changes
            .into_iter()
            .filter(|c| matches!(c, Change::Proximity { .. }))
            .collect()
    }

    /// Lets time pass (stage legs end on time), streams what changed, raises alerts.
    pub fn tick(&self, now: Timestamp) -> Vec<serde_json::Value> {
        let (changes, views, all) = {
            let mut tr = lock(&self.tracker);
            let changes = tr.tick(now);
            let views = relay_views(&tr, &changes, now);
            let all: Vec<RelayView> = self
                .plan
                .relays
                .iter()
                .filter_map(|r| tr.relay_view(&r.id, now, false))
                .collect();
            (changes, views, all)
        };
        self.publish(&changes, views, now);
        self.alerts(&all, now)
    }

    /// Makes the tracker agree with a relay's custody chain, streams what changed, and returns
    /// the proximity handoffs the replay found (an earlier gap in the log may have hidden them).
    pub fn sync_custody(&self, relay: &str, chain: &Chain, now: Timestamp) -> Vec<Change> {
        let (changes, views) = {
            let mut tr = lock(&self.tracker);
            let mut changes = tr.set_shifts(relay, chain.shifts(), now);
            changes.extend(tr.set_recorded(relay, chain.recorded(), now));
            let mut views = relay_views(&tr, &changes, now);
            if views.is_empty() {
                views.extend(tr.relay_view(relay, now, true));
            }
            (changes, views)
        };
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.publish(&changes, views, now);
        changes
            .into_iter()
            .filter(|c| matches!(c, Change::Proximity { .. }))
            .collect()
    }

    /// Sends one message to every stream.
    pub fn send(&self, event: &'static str, data: serde_json::Value) {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Arc::new(StreamMsg { event, data }));
    }

    /// Alert transitions since the last look: a flag turning on for the leg now current.
    fn alerts(&self, views: &[RelayView], now: Timestamp) -> Vec<serde_json::Value> {
        let mut flags = lock(&self.flags);
        let mut out = Vec::new();
        for v in views {
            let now_flags = Flags {
                leg: v.current_leg,
                overdue: v.overdue,
                off_route: v.off_route,
                silent: v.silent,
            };
            let before = flags.get(&v.id).copied().unwrap_or_default();
            let same_leg = before.leg == now_flags.leg;
            for (kind, on, was) in [
                ("overdue", now_flags.overdue, before.overdue),
                ("off_route", now_flags.off_route, before.off_route),
                ("silent", now_flags.silent, before.silent),
            ] {
                if on && !(was && same_leg) {
                    let alert = json!({ "kind": kind, "event": self.plan.event.id, "relay": v.id, "leg": v.current_leg, "holders": v.holders, "at": now });
                    out.push(alert);
                }
            }
            flags.insert(v.id.clone(), now_flags);
        }
        drop(flags);
        for a in &out {
            self.send("alert", a.clone());
        }
        out
    }

    fn publish(&self, changes: &[Change], views: Vec<RelayView>, now: Timestamp) {
        if changes.is_empty() && views.is_empty() {
            return;
        }
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay_ms = self.plan.event.public_delay_ms;
        for c in changes {
            let msg = match c {
                Change::Position {
                    relay,
                    leg,
                    fix,
                    fraction,
                } => StreamMsg {
                    event: "position",
                    data: json!({ "relay": relay, "leg": leg, "t": fix.t, "lon": fix.lon, "lat": fix.lat, "acc_m": fix.acc_m, "along_m": fix.along_m, "fraction": fraction, "now": now }),
                },
                Change::Handoff {
                    relay,
                    from_leg,
                    to_leg,
                    at,
                } => StreamMsg {
                    event: "handoff",
                    data: json!({ "relay": relay, "from_leg": from_leg, "to_leg": to_leg, "at": at, "verified": false }),
                },
                // The verified handoff is announced when its custody entry is stored.
                Change::Proximity { .. } => continue,
            };
            let mut msg = msg;
            if delay_ms > 0
                && msg.event == "position"
                && let Some(o) = msg.data.as_object_mut()
            {
                // Delivered later: its `now` would set spectators' clocks back.
                o.remove("now");
            }
            let msg = Arc::new(msg);
            if delay_ms > 0 && msg.event == "position" {
                // Spectators see positions only after the event's public delay.
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(delay_ms.unsigned_abs()))
                        .await;
                    let _ = tx.send(msg);
                });
            } else {
                let _ = self.tx.send(msg);
            }
        }
        for v in views {
            let legs: Vec<_> = v.legs.iter().map(|l| json!({ "index": l.index, "status": l.status, "eta_start": l.eta_start, "eta_end": l.eta_end, "delta_s": l.delta_s, "verified": l.verified })).collect();
            let _ = self.tx.send(Arc::new(StreamMsg {
                event: "eta",
                data: json!({ "relay": v.id, "status": v.status, "current_leg": v.current_leg, "eta_finish": v.eta_finish, "off_route": v.off_route, "overdue": v.overdue, "silent": v.silent, "legs": legs, "now": now }),
            }));
        }
    }

    #[must_use]
    pub fn snapshot(&self, now: Timestamp, public: bool) -> Snapshot {
        lock(&self.tracker).snapshot(now, public)
    }

    #[must_use]
    pub fn relay_view(&self, relay: &str, now: Timestamp, public: bool) -> Option<RelayView> {
        lock(&self.tracker).relay_view(relay, now, public)
    }

    #[must_use]
    pub fn accuracy(&self, relay: &str) -> Option<Vec<LegAccuracy>> {
        lock(&self.tracker).accuracy(relay)
    }

    #[must_use]
    pub fn knows_carrier(&self, carrier: &str) -> bool {
        lock(&self.tracker).knows_carrier(carrier)
    }
}

/// The (public) view of every relay a batch of changes touched, for the `eta` messages.
fn relay_views(tr: &Tracker, changes: &[Change], now: Timestamp) -> Vec<RelayView> {
    let mut ids: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            Change::Position { relay, .. }
            | Change::Handoff { relay, .. }
            | Change::Proximity { relay, .. } => relay.as_str(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| tr.relay_view(id, now, true))
        .collect()
}
