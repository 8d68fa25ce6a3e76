//! What spectators see of an event with a public delay: a second engine of its own, fed only
//! what has become public. A ping becomes public when its device time is older than the delay;
//! a custody entry when it was recorded longer ago than the delay. Everything public (the
//! `/live` document and its ETag, the stream, the calendar, the tracks, the accuracy report,
//! the custody export) is derived from this engine, so nothing of the last `delay` can be read
//! around it: not a leg's real end, not a recorded handoff, not an ETA that moved with an
//! undelayed ping. Operators (the admin token) read the undelayed engine.
//!
//! An event without a delay has no second engine: its one engine is public.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use handoff_core::custody::Entry;
use handoff_core::plan::Plan;
use handoff_core::snapshot::{RelayView, Snapshot};
use handoff_core::track::{HistoryRequest, LegAccuracy, PingOf, Tracker};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

use crate::engine::{Chain, Committed, Frame, Message};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Inputs not public yet, and each relay's log with how much of it is public.
#[derive(Default)]
struct Pending {
    /// Pings by the device time they were taken (and arrival), released when it is older than
    /// the delay.
    pings: BTreeMap<(Timestamp, i64), Committed>,
    /// Each relay's custody entries as the log has them, and the public prefix of it as a
    /// chain (extended entry by entry as they become public, never rebuilt).
    /// (Of the log, only its entries and their store sequence numbers are kept.)
    logs: HashMap<String, (Chain, Chain)>,
}

/// The public engine of an event with a public delay.
pub struct Delayed {
    delay: SignedDuration,
    plan: Arc<Plan>,
    version: i64,
    tracker: Mutex<Tracker>,
    pending: Mutex<Pending>,
    /// Bumped when the public state changes (part of the public `/live` ETag).
    seq: AtomicU64,
    /// The spectators' stream.
    pub tx: broadcast::Sender<Arc<Frame>>,
}

impl Delayed {
    #[must_use]
    pub fn new(plan: Arc<Plan>, version: i64) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            delay: SignedDuration::from_millis(plan.event.public_delay_ms),
            tracker: Mutex::new(Tracker::new(Arc::clone(&plan))),
            plan,
            version,
            pending: Mutex::new(Pending::default()),
            seq: AtomicU64::new(0),
            tx,
        }
    }

    /// The instant up to which things are public at `now`.
    #[must_use]
    pub fn as_of(&self, now: Timestamp) -> Timestamp {
        // A delay beyond the time scale shows nothing, never everything.
        now.checked_sub(self.delay).unwrap_or(Timestamp::MIN)
    }

    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Takes committed pings: those already older than the delay are applied at once, the
    /// others when their time comes. Returns the deep replays the public engine asks for.
    pub fn pings(&self, pings: &[Committed], now: Timestamp) -> Vec<HistoryRequest> {
        let as_of = self.as_of(now);
        let mut ready = Vec::new();
        {
            let mut pending = lock(&self.pending);
            for p in pings {
                if p.ping.t <= as_of {
                    ready.push(p.clone());
                } else {
                    pending.pings.insert((p.ping.t, p.seq), p.clone());
                }
            }
        }
        self.apply(&ready, now)
    }

    fn apply(&self, pings: &[Committed], now: Timestamp) -> Vec<HistoryRequest> {
        if pings.is_empty() {
            return Vec::new();
        }
        let mut tr = lock(&self.tracker);
        let changes = tr.apply_batch(pings.iter().map(|p| PingOf {
            device: &p.device,
            carrier: &p.carrier,
            relay: p.relay.as_deref(),
            seq: p.seq.unsigned_abs(),
            ping: &p.ping,
        }));
        self.publish(&tr, &changes, now);
        tr.take_history_requests()
    }

    /// Takes a relay's custody log as it now is (the public part is released by [`tick`]).
    ///
    /// [`tick`]: Self::tick
    pub fn custody(&self, relay: &str, chain: &Chain, now: Timestamp) {
        {
            let n_legs = self.plan.relay(relay).map_or(0, |r| r.legs.len());
            let mut pending = lock(&self.pending);
            let (log, public) = pending.logs.entry(relay.to_string()).or_insert_with(|| {
                (
                    Chain::new(n_legs, Vec::new()),
                    Chain::new(n_legs, Vec::new()),
                )
            });
            // The chain only grows, unless it was reloaded from the store after a lost race:
            // then its newest known entry is not where it was.
            let known = log.entries.len();
            let grown = known <= chain.entries.len()
                && log
                    .entries
                    .last()
                    .is_none_or(|e| chain.entries[known - 1].hash == e.hash);
            if grown {
                log.entries.extend(chain.entries[known..].iter().cloned());
                log.stored
                    .extend(chain.stored.get(known..).unwrap_or_default());
            } else {
                log.entries.clone_from(&chain.entries);
                log.stored.clone_from(&chain.stored);
                *public = Chain::new(n_legs, Vec::new());
            }
        }
        self.release_custody(now);
    }

    /// Releases the custody entries recorded longer ago than the delay: the public engine
    /// takes the handoffs and shifts of the public part of each log, and the stream announces
    /// each entry.
    fn release_custody(&self, now: Timestamp) {
        let as_of = self.as_of(now);
        let mut released = Vec::new();
        {
            let mut pending = lock(&self.pending);
            for (relay, (log, public)) in &mut pending.logs {
                // Entries are appended in order, so the public part is a prefix.
                let from = public.entries.len();
                let newly: Vec<(Entry, Option<i64>)> = log.entries[from..]
                    .iter()
                    .zip((from..).map(|i| log.stored.get(i).copied()))
                    .take_while(|(e, _)| e.recorded_at <= as_of)
                    .map(|(e, seq)| (e.clone(), seq))
                    .collect();
                if newly.is_empty() {
                    continue;
                }
                for (e, seq) in &newly {
                    public.state.apply(e);
                    public.entries.push(e.clone());
                    public.stored.extend(*seq);
                }
                released.push((
                    relay.clone(),
                    (public.recorded(), public.state.methods()),
                    public.shifts(),
                    newly,
                ));
            }
        }
        for (relay, (recorded, methods), shifts, entries) in released {
            {
                let mut tr = lock(&self.tracker);
                tr.set_methods(&relay, methods);
                let mut changes = tr.set_shifts(&relay, shifts, as_of);
                changes.extend(tr.set_recorded(&relay, recorded, as_of));
                self.publish(&tr, &changes, now);
            }
            for (e, seq) in &entries {
                for msg in crate::custody::messages(&relay, e, &self.plan.event.id, self.version) {
                    self.send_frame(msg.frame_with_id(*seq));
                }
            }
        }
    }

    /// The public entries stored after `after` (store sequence numbers), of `only` one relay
    /// or of all, with their relay and sequence number, in the store's order.
    #[must_use]
    pub fn entries_after(&self, after: i64, only: Option<&str>) -> Vec<(String, Entry, i64)> {
        let pending = lock(&self.pending);
        let mut out = Vec::new();
        for (relay, (_, public)) in &pending.logs {
            if only.is_none_or(|o| o == relay) {
                out.extend(crate::engine::entries_after(relay, public, after));
            }
        }
        out.sort_by_key(|(_, _, seq)| *seq);
        out
    }

    /// The newest store sequence number of a public entry (of `only` one relay, or of all).
    #[must_use]
    pub fn newest_entry(&self, only: Option<&str>) -> i64 {
        lock(&self.pending)
            .logs
            .iter()
            .filter(|(relay, _)| only.is_none_or(|o| o == relay.as_str()))
            .filter_map(|(_, (_, public))| public.stored.last().copied())
            .max()
            .unwrap_or(0)
    }

    /// How many entries of a relay's log are public.
    #[must_use]
    pub fn public_entries(&self, relay: &str) -> usize {
        lock(&self.pending)
            .logs
            .get(relay)
            .map_or(0, |(_, public)| public.entries.len())
    }

    /// Lets the delay pass: releases the pings and entries that became public, and lets the
    /// public engine's time pass to `now − delay` (a stage leg ends for spectators when it
    /// ended that long ago). Returns the deep replays asked for.
    pub fn tick(&self, now: Timestamp) -> Vec<HistoryRequest> {
        let as_of = self.as_of(now);
        let ready: Vec<Committed> = {
            let mut pending = lock(&self.pending);
            let later = pending.pings.split_off(&(as_of, i64::MAX));
            std::mem::replace(&mut pending.pings, later)
                .into_values()
                .collect()
        };
        let mut history = self.apply(&ready, now);
        self.release_custody(now);
        let mut tr = lock(&self.tracker);
        let changes = tr.tick(as_of);
        self.publish(&tr, &changes, now);
        history.extend(tr.take_history_requests());
        history
    }

    /// Replays a relay of the public engine with pings brought back from the store (only
    /// those already public).
    pub fn replay_history(
        &self,
        request: &HistoryRequest,
        pings: Vec<Committed>,
        now: Timestamp,
    ) -> Vec<HistoryRequest> {
        let as_of = self.as_of(now);
        let mut tr = lock(&self.tracker);
        let changes = tr.replay_history(
            request,
            pings
                .into_iter()
                .filter(|p| p.ping.t <= as_of)
                .map(|p| (p.device, p.carrier, p.seq.unsigned_abs(), p.ping)),
        );
        self.publish(&tr, &changes, now);
        tr.take_history_requests()
    }

    /// A copy of the public engine's state to save beside the operators' engine: its tracker
    /// and the pings not yet public. Take it in a job of the event's owner
    /// ([`crate::engine::EventLive::run`]), which is where the public engine is fed pings, so
    /// every ping the operators' engine has is in one of the two.
    #[must_use]
    pub fn freeze(&self) -> (handoff_core::track::Frozen, Vec<Committed>) {
        let frozen = {
            let tr = lock(&self.tracker);
            tr.freeze_part(0, tr.relay_count())
        };
        let pending = lock(&self.pending).pings.values().cloned().collect();
        (frozen, pending)
    }

    /// Takes over a saved state ([`Delayed::freeze`]). Only before the engine is live (an
    /// install): the custody logs are given to it afterwards, as to a new one.
    pub fn restore(&self, tracker: Tracker, pending: Vec<Committed>) {
        *lock(&self.tracker) = tracker;
        lock(&self.pending).pings = pending
            .into_iter()
            .map(|p| ((p.ping.t, p.seq), p))
            .collect();
    }

    /// Sends one message to every spectator.
    pub fn send(&self, msg: &Message) {
        self.send_frame(msg.frame());
    }

    fn send_frame(&self, frame: Arc<Frame>) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(frame);
    }

    fn publish(&self, tr: &Tracker, changes: &[handoff_core::track::Change], now: Timestamp) {
        if changes.is_empty() {
            return;
        }
        self.seq.fetch_add(1, Ordering::Relaxed);
        if self.tx.receiver_count() == 0 {
            return;
        }
        let views = crate::engine::relay_views(tr, changes, now);
        crate::engine::stream_changes(&self.tx, &self.plan, changes, views, now, false);
    }

    #[must_use]
    pub fn snapshot(&self, now: Timestamp) -> Snapshot {
        lock(&self.tracker).snapshot(now, true)
    }

    #[must_use]
    pub fn relay_view(&self, relay: &str, now: Timestamp) -> Option<RelayView> {
        lock(&self.tracker).relay_view(relay, now, true)
    }

    #[must_use]
    pub fn accuracy(&self, relay: &str) -> Option<Vec<LegAccuracy>> {
        lock(&self.tracker).accuracy(relay)
    }
}
