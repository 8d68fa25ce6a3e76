//! The live shell around the pure tracker: one `EventLive` per event holds its `Tracker`, and
//! a broadcast channel that fans every change out to the SSE streams. Pings reach it only
//! after the store has committed them, so what streams out is always durable.

use std::sync::{Arc, Mutex, MutexGuard};

use handoff_core::live::{RelayView, Snapshot};
use handoff_core::ping::Ping;
use handoff_core::plan::Plan;
use handoff_core::track::{Change, Tracker};
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

pub struct EventLive {
    pub plan: Arc<Plan>,
    pub version: i64,
    pub plan_hash: String,
    /// The plan's source as stored (TOML).
    pub source: String,
    tracker: Mutex<Tracker>,
    pub tx: broadcast::Sender<Arc<StreamMsg>>,
    /// Bumped on every change; part of the `/live` ETag.
    seq: std::sync::atomic::AtomicU64,
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
            tx,
            seq: 0.into(),
        }
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic while holding the lock leaves a consistent tracker (every method finishes
        // its update before returning), so recover the guard rather than poison the server.
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies committed pings (carrier, ping) and streams what changed.
    pub fn apply(&self, pings: &[(String, Ping)], now: Timestamp) {
        let (changes, views) = {
            let mut tr = self.tracker();
            let changes = tr.apply_batch(pings.iter().map(|(c, p)| (c.as_str(), p)));
            let views = relay_views(&tr, &changes, now);
            (changes, views)
        };
        self.publish(&changes, views);
    }

    /// Lets time pass (stage legs end on time) and streams what changed.
    pub fn tick(&self, now: Timestamp) {
        let (changes, views) = {
            let mut tr = self.tracker();
            let changes = tr.tick(now);
            let views = relay_views(&tr, &changes, now);
            (changes, views)
        };
        self.publish(&changes, views);
    }

    fn publish(&self, changes: &[Change], views: Vec<RelayView>) {
        if changes.is_empty() {
            return;
        }
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay_ms = self.plan.event.public_delay_ms;
        for c in changes {
            let msg = match c {
                Change::Position { relay, leg, fix } => {
                    let len = self
                        .plan
                        .relay(relay)
                        .and_then(|r| r.legs.get(*leg))
                        .map_or(0.0, handoff_core::plan::Leg::length_m);
                    let fraction = if len > 0.0 {
                        (fix.along_m / len).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    StreamMsg {
                        event: "position",
                        data: json!({ "relay": relay, "leg": leg, "t": fix.t, "lon": fix.lon, "lat": fix.lat, "acc_m": fix.acc_m, "along_m": fix.along_m, "fraction": fraction }),
                    }
                }
                Change::Handoff {
                    relay,
                    from_leg,
                    to_leg,
                    at,
                } => StreamMsg {
                    event: "handoff",
                    data: json!({ "relay": relay, "from_leg": from_leg, "to_leg": to_leg, "at": at }),
                },
            };
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
            let legs: Vec<_> = v.legs.iter().map(|l| json!({ "index": l.index, "status": l.status, "eta_start": l.eta_start, "eta_end": l.eta_end, "delta_s": l.delta_s })).collect();
            let _ = self.tx.send(Arc::new(StreamMsg {
                event: "eta",
                data: json!({ "relay": v.id, "status": v.status, "current_leg": v.current_leg, "eta_finish": v.eta_finish, "off_route": v.off_route, "overdue": v.overdue, "legs": legs }),
            }));
        }
    }

    #[must_use]
    pub fn snapshot(&self, now: Timestamp, public: bool) -> Snapshot {
        self.tracker().snapshot(now, public)
    }

    #[must_use]
    pub fn knows_carrier(&self, carrier: &str) -> bool {
        self.tracker().knows_carrier(carrier)
    }
}

/// The (public) view of every relay a batch of changes touched, for the `eta` messages.
fn relay_views(tr: &Tracker, changes: &[Change], now: Timestamp) -> Vec<RelayView> {
    let mut ids: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            Change::Position { relay, .. } | Change::Handoff { relay, .. } => relay.as_str(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| tr.relay_view(id, now, true))
        .collect()
}
