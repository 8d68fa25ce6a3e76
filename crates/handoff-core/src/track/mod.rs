//! Live state of every relay, derived only from its inputs: the plan, the pings, the handoffs
//! recorded in the custody log and the operator's plan shifts. It knows which leg holds the
//! object, how far along it is, whether it is off route or silent, when every remaining handoff
//! will happen, and how good its earlier predictions were.
//!
//! The one idea: the state is a fold of the inputs in time order (device time, then arrival
//! sequence), and applying one input is a step on a state value ([`step`]). A late input does
//! not reset the relay: the tracker keeps checkpoints of each relay's state (every
//! [`CHECKPOINT_EVERY`] pings and at every leg's end, finished legs shared between them) and
//! replays only from the checkpoint before the late input, so its cost is the inputs after that
//! checkpoint, not the relay's history. A ping of a carrier who can no longer affect the relay
//! (their legs are all verified done) costs nothing at all. Any order and any batching of the
//! same inputs gives the same state, and a restart rebuilds it.
//!
//! Memory stays bounded: pings older than [`KEEP_INPUTS_MS`] of device time behind a relay's
//! newest are let go (the store keeps them). An input older than that asks for a deep replay
//! ([`Tracker::take_history_requests`]): the caller pages the relay's pings from the store and
//! hands them to [`Tracker::replay_history`].
//!
//! A leg ends (the live view moves on) when a handoff is recorded, when the giver's and the
//! receiver's devices meet at the exchange point (proximity, a verified handoff), when its
//! holder reaches the exchange point, when a later leg's carrier is seen moving along their own
//! leg (the object has evidently moved on), or, for a leg at a place that nobody tracks (a
//! stage), when its planned duration (plus any delay announced while it is on) has run out.
//! Only recorded and proximity handoffs are verified; the others move the live view but write
//! nothing to the custody log, and each leg keeps how its end is known ([`EndCause`]), so an
//! assumption is never shown as a fact. Consecutive legs with the same carriers are one stint:
//! the boundary between them is a change of mode that the tracker passes by itself (the
//! holder at the end of one segment, or seen along the next), never a handoff to verify.

mod approach;
mod band;
mod predict;
#[cfg(test)]
mod props;
mod saved;
mod step;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::geodesic::Coord;
use crate::ping::Ping;
use crate::plan::Plan;

pub use band::{PRIOR as BAND_PRIOR, Quantiles as BandQuantiles, band};
pub use predict::{LEAD_BUCKETS_S, LeadAccuracy, LegAccuracy, Sample, by_lead};
pub use saved::{FORMAT, Frozen, SavedError};
use step::{Ctx, RelayState};
pub use step::{OFF_ROUTE_PINGS, PROXIMITY_WINDOW_MS};

/// A position older than this is shown as stale (with its age).
pub const STALE_MS: i64 = 60_000;
/// A checkpoint of a relay's state is kept after this many applied pings (and at leg ends).
pub const CHECKPOINT_EVERY: usize = 32;
/// Pings this far (device time) behind a relay's newest are let go from memory (older inputs
/// are replayed from the store).
pub const KEEP_INPUTS_MS: i64 = 10 * 60_000;
/// Checkpoints older than the kept pings, half a window apart, before they thin out further.
const OLD_CHECKPOINTS: usize = 24;

/// The order of pings: device time, then arrival sequence (stable, unlike names).
pub type Key = (Timestamp, u64);

/// Where a carrier was, as matched to their leg.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fix {
    pub t: Timestamp,
    pub lon: f64,
    pub lat: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_m: Option<f64>,
    pub along_m: f64,
    pub cross_track_m: f64,
    /// Within the leg's public corridor ([`public_corridor_m`]): spectators see a carrier only
    /// there; operators see every fix.
    #[serde(skip)]
    pub on_course: bool,
}

/// How far from a leg's route (or place) a carrier is still shown to spectators: GPS noise and
/// the detours of a course, never a home or a hotel kilometres away. A flight's track strays
/// far from the planned great circle, a boat's and a parachute's less.
#[must_use]
pub fn public_corridor_m(mode: crate::plan::Mode, acc_m: Option<f64>) -> f64 {
    use crate::plan::Mode;
    let base: f64 = match mode {
        Mode::Flight => 100_000.0,
        Mode::Boat | Mode::Parachute => 5_000.0,
        _ => 250.0,
    };
    base.max(3.0 * acc_m.unwrap_or(0.0))
}

/// Whether a position is in a leg's public corridor: for the exports, which read pings from
/// the store.
#[must_use]
pub fn on_course(leg: &crate::plan::Leg, lon: f64, lat: f64, acc_m: Option<f64>) -> bool {
    let here = crate::geodesic::Coord::new(lon, lat);
    let cross = match leg.geometry.route() {
        Some(route) => route.project(here, None).cross_track_m,
        None => crate::geodesic::distance_m(leg.geometry.start(), here),
    };
    cross <= public_corridor_m(leg.mode, acc_m)
}

/// An operator's delay of the remaining plan: from `from_leg` on, `ms` later, announced `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub at: Timestamp,
    pub from_leg: usize,
    pub ms: i64,
}

/// How the tracker knows a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// A leg nobody tracks (a stage): its planned time, plus the delays announced while it was
    /// on, ran out. An assumption: nothing was recorded or reported.
    PlannedTime,
    /// Inferred from positions: the holder reached the exchange point, or a later carrier (or
    /// the holder, on a later segment of their stint) was seen moving along their own leg.
    Positions,
    /// A verified handoff from leg `leg` (this leg, or the end of its stint): recorded in the
    /// custody log, or the two devices met at the exchange point (proximity).
    Verified { leg: usize },
}

/// What an input did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A carrier's position on their current leg moved.
    /// `fraction` is the share of the leg covered, so listeners need not look the leg up.
    Position {
        relay: String,
        leg: usize,
        fix: Fix,
        fraction: f64,
    },
    /// The live view moved on: a leg ended and the next one (if any) began. When the plan's
    /// leg is a `segment` (the next has the same carriers), this is a change of mode, not a
    /// handoff.
    Handoff {
        relay: String,
        from_leg: usize,
        to_leg: Option<usize>,
        at: Timestamp,
        by: EndCause,
    },
    /// A late input made the relay replay: its view may have changed, though nothing above
    /// says how (the position watchers have is still the newest).
    Replayed { relay: String },
    /// The giver's and the receiver's devices met at the exchange point: a verified handoff
    /// for the custody log.
    Proximity {
        relay: String,
        from_leg: usize,
        at: Timestamp,
        giver_device: String,
        receiver_device: String,
        distance_m: f64,
        position: Coord,
    },
}

/// One committed ping on its way in: from `device`, bound to `carrier` (of `relay` only, when
/// the device was registered for one: in race mode every team has a "Runner 1"), numbered
/// `seq` in arrival order.
#[derive(Debug, Clone, Copy)]
pub struct PingOf<'a> {
    pub device: &'a str,
    pub carrier: &'a str,
    pub relay: Option<&'a str>,
    pub seq: u64,
    pub ping: &'a Ping,
}

/// A relay needs pings the tracker has let go: those of `carriers` from `since` on (device
/// time), to be passed to [`Tracker::replay_history`] with `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    pub relay: String,
    pub carriers: Vec<String>,
    pub since: Option<Timestamp>,
    after: Option<Key>,
}

/// What raises an alert when it turns on: per relay, the leg holding the object and its flags.
///
/// With each flag that is on, the instant it rose as the fold of the inputs has it, not as the
/// clock of the look that saw it: overdue, the end of the leg's planned duration and slack;
/// off route, the first ping of the run off the route; silent, the last fix (or the leg's
/// start) plus the silence allowed. Servers folding the same inputs name the same instants, so
/// an alert raised by several of them is known to be one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub leg: Option<usize>,
    pub overdue: bool,
    pub off_route: bool,
    pub silent: bool,
    pub overdue_since: Option<Timestamp>,
    pub off_route_since: Option<Timestamp>,
    pub silent_since: Option<Timestamp>,
}

/// How much a tracker holds, for the operator and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    pub pings: usize,
    pub checkpoints: usize,
}

#[derive(Debug, Clone)]
struct Input {
    carrier: Arc<str>,
    device: Arc<str>,
    ping: Ping,
}

#[derive(Debug, Clone)]
struct RelayTrack {
    /// The pings not yet let go, in fold order: the input.
    pings: BTreeMap<Key, Input>,
    /// Recorded handoffs (from leg, at), sorted by time: the input from the custody log.
    recorded: Vec<(usize, Timestamp)>,
    /// Plan shifts, sorted by when they were announced.
    shifts: Vec<Shift>,
    /// How each recorded handoff was verified, by the leg it ends (what the view says of it;
    /// no input of the fold).
    methods: HashMap<usize, crate::custody::Method>,
    state: RelayState,
    /// Every ping up to this key has been applied to `state`.
    last_applied: Option<Key>,
    /// The state right after applying the ping at each key.
    checkpoints: BTreeMap<Key, RelayState>,
    since_checkpoint: usize,
    /// Pings up to this key were let go (the store has them).
    released: Option<Key>,
    /// The latest `now` time has been advanced to.
    watermark: Option<Timestamp>,
    /// Pings applied again by replays, in all: what late inputs cost.
    replayed: u64,
}

impl RelayTrack {
    fn new(n_legs: usize) -> Self {
        Self {
            pings: BTreeMap::new(),
            recorded: Vec::new(),
            shifts: Vec::new(),
            methods: HashMap::new(),
            state: RelayState::new(n_legs),
            last_applied: None,
            checkpoints: BTreeMap::new(),
            since_checkpoint: 0,
            released: None,
            watermark: None,
            replayed: 0,
        }
    }

    /// Time has been looked at up to `now`.
    fn see(&mut self, now: Timestamp) {
        self.watermark = Some(self.watermark.map_or(now, |w| w.max(now)));
    }

    /// How far the state has been advanced: its newest ping or the latest `now`.
    fn advanced(&self) -> Option<Timestamp> {
        let last = self.last_applied.map(|(t, _)| t);
        match (last, self.watermark) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The newest checkpoint before `key`, or `None` for the very start.
    fn checkpoint_before(&self, key: Key) -> Option<(&Key, &RelayState)> {
        self.checkpoints.range(..key).next_back()
    }
}

/// The live state of one event.
#[derive(Debug, Clone)]
pub struct Tracker {
    plan: Arc<Plan>,
    relays: Vec<RelayTrack>,
    /// relay id → index (looked up on every stream update; a race has a thousand teams).
    relay_ids: HashMap<String, usize>,
    /// carrier → (relay index, leg index) of every leg they carry.
    carrier_legs: HashMap<String, Vec<(usize, usize)>>,
    /// Arrival numbers for [`Tracker::apply`] (callers with a store pass its sequence).
    local_seq: u64,
    keep_ms: i64,
    history: Vec<HistoryRequest>,
    /// Deep replays handed out by [`Tracker::take_history_requests`] and not answered yet: a
    /// saved state carries them, so a restart serves them (the state does not reflect them).
    pending: Vec<HistoryRequest>,
    /// Carrier and device names, shared by the pings held.
    names: std::collections::HashSet<Arc<str>>,
    /// Race mode: the band errors of each course's teams ([`band::Pool`]) …
    pools: Vec<band::Pool>,
    /// … and each relay's (pool, place in it), for the relays that run a course.
    pool_of: Vec<Option<(usize, usize)>>,
    /// What a relay outside a race shrinks its own band errors toward: [`band::PRIOR`], except in
    /// the ETA evaluation, which holds each track's own errors out of it ([`crate::eval`]).
    band_prior: band::Quantiles,
}

impl Tracker {
    #[must_use]
    pub fn new(plan: Arc<Plan>) -> Self {
        let mut carrier_legs: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (ri, r) in plan.relays.iter().enumerate() {
            for l in &r.legs {
                for c in &l.carriers {
                    carrier_legs
                        .entry(c.clone())
                        .or_default()
                        .push((ri, l.index));
                }
            }
        }
        let relays = plan
            .relays
            .iter()
            .map(|r| RelayTrack::new(r.legs.len()))
            .collect();
        let relay_ids = plan
            .relays
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let mut courses: Vec<(&str, usize)> = Vec::new();
        let pool_of: Vec<Option<(usize, usize)>> = plan
            .relays
            .iter()
            .map(|r| {
                let course = r.course.as_deref()?;
                let p = match courses.iter().position(|(c, _)| *c == course) {
                    Some(p) => p,
                    None => {
                        courses.push((course, 0));
                        courses.len() - 1
                    }
                };
                let k = courses[p].1;
                courses[p].1 += 1;
                Some((p, k))
            })
            .collect();
        let pools = courses.iter().map(|&(_, n)| band::Pool::new(n)).collect();
        Self {
            plan,
            relays,
            relay_ids,
            carrier_legs,
            local_seq: 0,
            keep_ms: KEEP_INPUTS_MS,
            history: Vec::new(),
            pending: Vec::new(),
            names: std::collections::HashSet::new(),
            pools,
            pool_of,
            band_prior: band::PRIOR,
        }
    }

    /// The same tracker with `prior` in place of [`band::PRIOR`] for relays outside a race (not
    /// saved: the evaluation's, to measure bands out of sample).
    pub(crate) fn with_band_prior(mut self, prior: band::Quantiles) -> Self {
        self.band_prior = prior;
        self
    }

    /// Relay `ri`'s part of its course's pool, from its state now (the pool's quantiles are made
    /// again by [`Self::refresh_pools`]).
    fn update_pool(&mut self, ri: usize) {
        if let Some(&Some((p, k))) = self.pool_of.get(ri) {
            self.pools[p].update(k, &self.relays[ri].state);
        }
    }

    /// Makes every pool whose parts changed again: once at the end of each change to the
    /// tracker.
    fn refresh_pools(&mut self) {
        for pool in &mut self.pools {
            pool.refresh();
        }
    }

    /// Every relay's part of its pool, after a restore.
    pub(crate) fn rebuild_pools(&mut self) {
        for ri in 0..self.relays.len() {
            self.update_pool(ri);
        }
        self.refresh_pools();
    }

    /// The band quantiles relay `ri`'s own legs are shrunk toward: its course's pool in race
    /// mode, else [`band::PRIOR`] (or the evaluation's, [`Self::with_band_prior`]).
    fn band_prior(&self, ri: usize) -> band::Quantiles {
        match self.pool_of.get(ri) {
            Some(&Some((p, _))) => self.pools[p].quantiles(),
            _ => self.band_prior,
        }
    }

    /// Keeps pings in memory for `ms` of device time behind each relay's newest (default
    /// [`KEEP_INPUTS_MS`]).
    #[must_use]
    pub fn keeping(mut self, ms: i64) -> Self {
        self.keep_ms = ms.max(0);
        self
    }

    #[must_use]
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Does this carrier carry anything in the plan?
    #[must_use]
    pub fn knows_carrier(&self, carrier: &str) -> bool {
        self.carrier_legs.contains_key(carrier)
    }

    /// The relays (ids) this carrier carries in.
    #[must_use]
    pub fn relays_of(&self, carrier: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .carrier_legs
            .get(carrier)
            .into_iter()
            .flatten()
            .map(|(r, _)| self.plan.relays[*r].id.as_str())
            .collect();
        out.dedup();
        out
    }

    fn relay_index(&self, relay: &str) -> Option<usize> {
        self.relay_ids.get(relay).copied()
    }

    /// Applies one ping from `device`, bound to `carrier`, numbered in arrival order by the
    /// tracker itself.
    pub fn apply(&mut self, device: &str, carrier: &str, ping: &Ping) -> Vec<Change> {
        self.local_seq += 1;
        self.apply_batch(std::iter::once(PingOf {
            device,
            carrier,
            relay: None,
            seq: self.local_seq,
            ping,
        }))
    }

    /// Applies pings in any order, such as a phone's buffered batch: each in-order one is a
    /// step, and each relay that got late ones replays once, from the checkpoint before the
    /// earliest.
    pub fn apply_batch<'a>(&mut self, pings: impl IntoIterator<Item = PingOf<'a>>) -> Vec<Change> {
        let plan = Arc::clone(&self.plan);
        // relay → the leg it held before the batch
        let mut touched: Vec<(usize, usize)> = Vec::new();
        // relay → the earliest late key that can change it
        let mut late: HashMap<usize, Key> = HashMap::new();
        let mut changes = Vec::new();
        for PingOf {
            device,
            carrier,
            relay,
            seq,
            ping,
        } in pings
        {
            let Some(legs) = self.carrier_legs.get(carrier) else {
                continue;
            };
            let bound = relay.map(|r| self.relay_ids.get(r).copied());
            let mut relays: Vec<usize> = legs
                .iter()
                .map(|(r, _)| *r)
                .filter(|r| bound.is_none_or(|b| b == Some(*r)))
                .collect();
            relays.dedup();
            let key = (ping.t, seq);
            // One shared copy of each name, not two allocations per ping held.
            let carrier_name = intern(&mut self.names, carrier);
            let device_name = intern(&mut self.names, device);
            for ri in relays {
                let rt = &mut self.relays[ri];
                if rt.pings.contains_key(&key) {
                    continue; // applied already (a catch-up from the store overlaps)
                }
                if rt.released.is_some_and(|r| key <= r) {
                    request_history(&mut self.history, &plan, ri, rt, key);
                    continue;
                }
                let input = Input {
                    carrier: Arc::clone(&carrier_name),
                    device: Arc::clone(&device_name),
                    ping: *ping,
                };
                if !touched.iter().any(|&(r, _)| r == ri) {
                    touched.push((ri, rt.state.current));
                }
                // A ping goes before the events of its own instant: one at the instant of the
                // latest event is late too.
                let in_order = rt.last_applied.is_none_or(|k| key > k)
                    && rt.state.transition_t.is_none_or(|tt| ping.t > tt);
                if let Some(from) = late.get_mut(&ri) {
                    *from = (*from).min(key);
                    rt.pings.insert(key, input);
                } else if in_order {
                    step_ping(&plan, ri, rt, key, &input, &mut changes);
                    rt.pings.insert(key, input);
                } else {
                    let blank;
                    let before = match rt.checkpoint_before(key) {
                        Some((_, s)) => s,
                        None => {
                            blank = RelayState::new(plan.relays[ri].legs.len());
                            &blank
                        }
                    };
                    // The first checkpoint after it bounds the state at its time from above
                    // (the live state, if there is none yet).
                    let upper = rt
                        .checkpoints
                        .range((Bound::Excluded(key), Bound::Unbounded))
                        .next()
                        .map_or(&rt.state, |(_, s)| s);
                    let affects = step::may_affect(&plan.relays[ri], before, upper, carrier, ping);
                    if affects {
                        late.insert(ri, key);
                    }
                    rt.pings.insert(key, input);
                }
            }
        }
        for &(ri, held) in &touched {
            let rt = &mut self.relays[ri];
            let replayed = late.remove(&ri);
            if let Some(from) = replayed {
                changes.extend(replay(&plan, ri, rt, from));
            } else if let Some(w) = rt.watermark {
                advance(&plan, ri, rt, w, &mut changes);
            }
            release(rt, self.keep_ms);
            // In order, a relay's finished legs change only when one more ends; a replay may
            // change any of them.
            if replayed.is_some() || rt.state.current != held {
                self.update_pool(ri);
            }
        }
        self.refresh_pools();
        changes
    }

    /// Deep replays the tracker needs: pings it has let go. See [`Tracker::replay_history`].
    pub fn take_history_requests(&mut self) -> Vec<HistoryRequest> {
        let taken = std::mem::take(&mut self.history);
        for h in &taken {
            // One from an earlier point of the same relay covers it.
            if !self
                .pending
                .iter()
                .any(|p| p.relay == h.relay && p.after <= h.after)
            {
                self.pending.retain(|p| p.relay != h.relay);
                self.pending.push(h.clone());
            }
        }
        taken
    }

    /// Replays a relay with pings brought back from the store (device, carrier, arrival
    /// sequence, ping) for a [`HistoryRequest`]; pings it already holds are skipped.
    pub fn replay_history(
        &mut self,
        request: &HistoryRequest,
        pings: impl IntoIterator<Item = (String, String, u64, Ping)>,
    ) -> Vec<Change> {
        let plan = Arc::clone(&self.plan);
        let Some(ri) = self.relay_index(&request.relay) else {
            return Vec::new();
        };
        // Answered now (or asked again below, from an earlier point).
        self.pending
            .retain(|p| p.relay != request.relay || p.after < request.after);
        let rt = &mut self.relays[ri];
        // The checkpoint the request was made from may have been thinned away since.
        let base = match request.after {
            Some(a) => rt.checkpoints.range(..=a).next_back().map(|(k, _)| *k),
            None => None,
        };
        if base != request.after {
            let key = request.after.unwrap_or((Timestamp::UNIX_EPOCH, 0));
            request_history(&mut self.history, &plan, ri, rt, key);
            return Vec::new();
        }
        for (device, carrier, seq, ping) in pings {
            let key = (ping.t, seq);
            if base.is_some_and(|b| key <= b) {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = rt.pings.entry(key) {
                slot.insert(Input {
                    carrier: intern(&mut self.names, &carrier),
                    device: intern(&mut self.names, &device),
                    ping,
                });
            }
        }
        rt.released = base;
        let from = base.map_or((Timestamp::MIN, 0), |(t, s)| (t, s + 1));
        let changes = replay(&plan, ri, rt, from);
        release(rt, self.keep_ms);
        self.update_pool(ri);
        self.refresh_pools();
        changes
    }

    /// Sets the handoffs recorded in a relay's custody log (from leg, at), corrections applied.
    /// Only what follows the earliest changed handoff is replayed.
    pub fn set_recorded(
        &mut self,
        relay: &str,
        mut recorded: Vec<(usize, Timestamp)>,
        now: Timestamp,
    ) -> Vec<Change> {
        let Some(ri) = self.relay_index(relay) else {
            return Vec::new();
        };
        recorded.sort_by_key(|(leg, at)| (*at, *leg));
        let rt = &mut self.relays[ri];
        if already_reflected(rt, &recorded) {
            // Handoffs the state found itself (proximity) and the log now records at that very
            // time: at their place in the fold they change nothing, so nothing is replayed.
            let old = rt.recorded.len();
            for &(_, at) in &recorded[old..] {
                rt.state.transition_t = Some(rt.state.transition_t.map_or(at, |t| t.max(at)));
            }
            rt.state.recorded_applied = recorded.len();
            rt.recorded = recorded;
            return self.input_changed(ri, None, now);
        }
        let changed_at = first_difference(&rt.recorded, &recorded, |(_, at)| *at);
        rt.recorded = recorded;
        self.input_changed(ri, changed_at, now)
    }

    /// Sets how each recorded handoff of a relay was verified (the leg it ends, the method):
    /// what the view says of those legs' ends. Changes nothing else.
    pub fn set_methods(&mut self, relay: &str, methods: Vec<(usize, crate::custody::Method)>) {
        if let Some(ri) = self.relay_index(relay) {
            self.relays[ri].methods = methods.into_iter().collect();
        }
    }

    /// Sets the operator's plan shifts of a relay (in the order they were announced).
    pub fn set_shifts(
        &mut self,
        relay: &str,
        mut shifts: Vec<Shift>,
        now: Timestamp,
    ) -> Vec<Change> {
        let Some(ri) = self.relay_index(relay) else {
            return Vec::new();
        };
        shifts.sort_by_key(|s| s.at);
        let rt = &mut self.relays[ri];
        let changed_at = first_difference(&rt.shifts, &shifts, |s| s.at);
        rt.shifts = shifts;
        self.input_changed(ri, changed_at, now)
    }

    /// After a recorded handoff or shift changed from `changed_at` on: replay what it touches,
    /// then let time pass to `now`.
    fn input_changed(
        &mut self,
        ri: usize,
        changed_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Vec<Change> {
        let changes = self.replay_input(ri, changed_at, now);
        self.update_pool(ri);
        self.refresh_pools();
        changes
    }

    /// [`Self::input_changed`]'s replay.
    fn replay_input(
        &mut self,
        ri: usize,
        changed_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Vec<Change> {
        let plan = Arc::clone(&self.plan);
        let rt = &mut self.relays[ri];
        // Has the state already passed the change? If not, it takes effect as time reaches it.
        let passed = changed_at.is_some_and(|t0| rt.advanced().is_some_and(|a| t0 <= a));
        rt.see(now);
        let mut changes = Vec::new();
        let Some(t0) = changed_at.filter(|_| passed) else {
            advance(&plan, ri, rt, now, &mut changes);
            return changes;
        };
        let key = (t0, 0);
        if rt.released.is_some_and(|r| key <= r) {
            request_history(&mut self.history, &plan, ri, rt, key);
            return changes;
        }
        replay(&plan, ri, rt, key)
    }

    /// Lets time pass with no ping: recorded handoffs take effect, legs at a place end when
    /// their time is up.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Change> {
        let mut changes = Vec::new();
        let plan = Arc::clone(&self.plan);
        let mut ended = Vec::new();
        for (ri, rt) in self.relays.iter_mut().enumerate() {
            rt.see(now);
            let before = rt.state.current;
            advance(&plan, ri, rt, now, &mut changes);
            // Time alone changes a relay's finished legs only by ending one.
            if rt.state.current != before {
                ended.push(ri);
            }
        }
        for ri in ended {
            self.update_pool(ri);
        }
        self.refresh_pools();
        changes
    }

    /// The live view at `now`. `public` hides positions newer than the event's public delay.
    #[must_use]
    pub fn snapshot(&self, now: Timestamp, public: bool) -> crate::snapshot::Snapshot {
        let as_of = self.as_of(now, public);
        let relays = (0..self.relays.len())
            .map(|ri| self.view(ri, now, as_of, public))
            .collect();
        crate::snapshot::Snapshot::new(&self.plan, now, relays)
    }

    fn view(
        &self,
        ri: usize,
        now: Timestamp,
        as_of: Timestamp,
        public: bool,
    ) -> crate::snapshot::RelayView {
        let rt = &self.relays[ri];
        view::relay_view(
            cx(&self.plan, ri, rt),
            &rt.state,
            &self.plan,
            (now, as_of, public),
            self.band_prior(ri),
        )
    }

    fn as_of(&self, now: Timestamp, public: bool) -> Timestamp {
        if public {
            now.checked_sub(SignedDuration::from_millis(self.plan.event.public_delay_ms))
                // A delay beyond the time scale shows nothing, never everything.
                .unwrap_or(Timestamp::MIN)
        } else {
            now
        }
    }

    /// The live view of one relay at `now` (what an `eta` update carries).
    #[must_use]
    pub fn relay_view(
        &self,
        relay: &str,
        now: Timestamp,
        public: bool,
    ) -> Option<crate::snapshot::RelayView> {
        let ri = self.relay_index(relay)?;
        Some(self.view(ri, now, self.as_of(now, public), public))
    }

    /// Index of the leg holding the object in relay `relay` (== legs.len() when finished).
    #[must_use]
    pub fn current_leg(&self, relay: &str) -> Option<usize> {
        Some(self.relays[self.relay_index(relay)?].state.current)
    }

    /// ETA accuracy of every leg that has ended.
    #[must_use]
    pub fn accuracy(&self, relay: &str) -> Option<Vec<LegAccuracy>> {
        let rt = &self.relays[self.relay_index(relay)?];
        Some(predict::accuracy(&rt.state))
    }

    /// The alert flags of every relay at `now` (relay id, flags), cheap enough for every tick.
    #[must_use]
    pub fn flags(&self, now: Timestamp) -> Vec<(&str, Flags)> {
        self.relays
            .iter()
            .enumerate()
            .map(|(ri, rt)| {
                let f = view::flags(cx(&self.plan, ri, rt), &rt.state, &self.plan, now);
                (self.plan.relays[ri].id.as_str(), f)
            })
            .collect()
    }

    /// How many pings replays have applied again, in all (each in-order ping is applied once;
    /// a late input costs the pings after the checkpoint before it).
    #[must_use]
    pub fn replayed(&self) -> u64 {
        self.relays.iter().map(|rt| rt.replayed).sum()
    }

    /// What the tracker holds in memory.
    #[must_use]
    pub fn held(&self) -> Held {
        self.relays.iter().fold(Held::default(), |h, rt| Held {
            pings: h.pings + rt.pings.len(),
            checkpoints: h.checkpoints + rt.checkpoints.len(),
        })
    }
}

fn cx<'a>(plan: &'a Plan, ri: usize, rt: &'a RelayTrack) -> Ctx<'a> {
    Ctx {
        relay: &plan.relays[ri],
        recorded: &rt.recorded,
        shifts: &rt.shifts,
        methods: &rt.methods,
    }
}

/// The shared copy of `name`.
fn intern(names: &mut std::collections::HashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(n) = names.get(name) {
        return Arc::clone(n);
    }
    let n: Arc<str> = Arc::from(name);
    names.insert(Arc::clone(&n));
    n
}

/// Lets a relay's time pass to `now`.
fn advance(plan: &Plan, ri: usize, rt: &mut RelayTrack, now: Timestamp, changes: &mut Vec<Change>) {
    let c = Ctx {
        relay: &plan.relays[ri],
        recorded: &rt.recorded,
        shifts: &rt.shifts,
        methods: &rt.methods,
    };
    step::advance_time(c, &mut rt.state, now, false, changes);
}

/// One ping, in order: time passes to it, it is applied, and a checkpoint is kept when due.
fn step_ping(
    plan: &Plan,
    ri: usize,
    rt: &mut RelayTrack,
    key: Key,
    input: &Input,
    changes: &mut Vec<Change>,
) {
    let c = Ctx {
        relay: &plan.relays[ri],
        recorded: &rt.recorded,
        shifts: &rt.shifts,
        methods: &rt.methods,
    };
    let before = rt.state.current;
    step::advance_time(c, &mut rt.state, key.0, true, changes);
    step::apply_ping(
        c,
        &mut rt.state,
        &input.carrier,
        &input.device,
        &input.ping,
        changes,
    );
    rt.last_applied = Some(key);
    rt.since_checkpoint += 1;
    if rt.since_checkpoint >= CHECKPOINT_EVERY || rt.state.current != before {
        rt.checkpoints.insert(key, rt.state.clone());
        rt.since_checkpoint = 0;
    }
}

/// Replays a relay from the checkpoint before `from`: every checkpoint after it is dropped,
/// the pings after it are applied again in order, and time passes to the latest `now`.
fn replay_from(plan: &Plan, ri: usize, rt: &mut RelayTrack, from: Key, changes: &mut Vec<Change>) {
    let (base_key, base) = match rt.checkpoint_before(from) {
        Some((k, s)) => (Some(*k), s.clone()),
        None => (None, RelayState::new(plan.relays[ri].legs.len())),
    };
    let _dropped = rt
        .checkpoints
        .split_off(&base_key.map_or((Timestamp::MIN, 0), |(t, s)| (t, s + 1)));
    rt.state = base;
    rt.last_applied = base_key;
    rt.since_checkpoint = 0;
    let lower = base_key.map_or(Bound::Unbounded, Bound::Excluded);
    // The pings are read, not changed, while the state steps through them.
    let pings = std::mem::take(&mut rt.pings);
    for (key, input) in pings.range((lower, Bound::Unbounded)) {
        step_ping(plan, ri, rt, *key, input, changes);
        rt.replayed += 1;
    }
    rt.pings = pings;
    if let Some(w) = rt.watermark {
        advance(plan, ri, rt, w, changes);
    }
}

/// Lets go of pings older than the kept window (keeping a checkpoint to replay from) and thins
/// the checkpoints before it.
fn release(rt: &mut RelayTrack, keep_ms: i64) {
    let (Some((first, _)), Some((last_t, _))) = (rt.pings.keys().next().copied(), rt.last_applied)
    else {
        return;
    };
    let horizon = last_t
        .checked_sub(SignedDuration::from_millis(keep_ms))
        .unwrap_or(Timestamp::MIN);
    // Let go in steps of a quarter window, not on every ping.
    let slack = SignedDuration::from_millis(keep_ms / 4);
    if first.checked_add(slack).unwrap_or(Timestamp::MAX) >= horizon {
        return;
    }
    let Some(base) = rt
        .checkpoints
        .range(..(horizon, 0))
        .next_back()
        .map(|(k, _)| *k)
    else {
        return;
    };
    if rt.released.is_some_and(|r| r >= base) {
        return;
    }
    rt.pings = rt.pings.split_off(&(base.0, base.1 + 1));
    rt.released = Some(base);
    thin_old_checkpoints(rt, base, keep_ms);
}

/// Checkpoints older than the kept pings serve deep replays, whose cost is the pings from the
/// checkpoint before the late input: keep the newest checkpoint of each half window for
/// [`OLD_CHECKPOINTS`] windows back, then of ever wider spans (twice as wide each time the age
/// doubles), and the very first. The spans are fixed in time, so thinning again keeps them.
fn thin_old_checkpoints(rt: &mut RelayTrack, base: Key, keep_ms: i64) {
    let old: Vec<Key> = rt.checkpoints.range(..base).map(|(k, _)| *k).collect();
    let gap_ms = (keep_ms / 2).max(1);
    let near_ms = gap_ms.saturating_mul(i64::try_from(OLD_CHECKPOINTS).unwrap_or(i64::MAX));
    let base_ms = base.0.as_millisecond();
    let mut seen = std::collections::HashSet::new();
    for (i, k) in old.iter().enumerate().rev() {
        let t_ms = k.0.as_millisecond();
        let age_ms = base_ms.saturating_sub(t_ms);
        let tier = if age_ms < near_ms {
            0
        } else {
            (age_ms / near_ms).ilog2() + 1
        };
        let width = gap_ms.saturating_mul(1_i64 << tier.min(40));
        if !seen.insert((tier, t_ms.div_euclid(width))) && i != 0 {
            rt.checkpoints.remove(k);
        }
    }
}

fn request_history(
    out: &mut Vec<HistoryRequest>,
    plan: &Plan,
    ri: usize,
    rt: &RelayTrack,
    key: Key,
) {
    let relay = &plan.relays[ri];
    let after = rt.checkpoint_before(key).map(|(k, _)| *k);
    if out.iter().any(|h| h.relay == relay.id && h.after <= after) {
        return;
    }
    out.retain(|h| h.relay != relay.id);
    let mut carriers: Vec<String> = relay.legs.iter().flat_map(|l| l.carriers.clone()).collect();
    carriers.sort();
    carriers.dedup();
    out.push(HistoryRequest {
        relay: relay.id.clone(),
        carriers,
        since: after.map(|(t, _)| t),
        after,
    });
}

/// Whether `new` only appends, to a fully applied list, handoffs the state already has: each
/// leg verified (by proximity) at exactly that time, no later than what has been applied.
fn already_reflected(rt: &RelayTrack, new: &[(usize, Timestamp)]) -> bool {
    let old = &rt.recorded;
    new.len() > old.len()
        && new.starts_with(old)
        && rt.state.recorded_applied == old.len()
        && new[old.len()..].iter().all(|&(leg, at)| {
            rt.state.legs.get(leg).and_then(|l| l.verified_at) == Some(at)
                && rt.last_applied.is_some_and(|(t, _)| at <= t)
        })
}

/// What watchers see of a relay's state: whether a replay changed it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    current: usize,
    verified: usize,
    /// The current leg and its last fix.
    position: Option<(usize, Fix)>,
    along_m: f64,
    off_route_run: u32,
    pace: Option<(f64, i64)>,
    /// Each leg's actual start and end.
    times: Vec<(Option<Timestamp>, Option<Timestamp>)>,
}

impl Seen {
    fn of(st: &RelayState) -> Self {
        let cur = st.legs.get(st.current);
        Self {
            current: st.current,
            verified: st.verified,
            position: cur.and_then(|l| l.last_fix).map(|f| (st.current, f)),
            along_m: cur.map_or(0.0, |l| l.along_m),
            off_route_run: cur.map_or(0, |l| l.off_route_run),
            pace: cur.and_then(|l| l.pace.observed()),
            times: st
                .legs
                .iter()
                .map(|l| (l.actual_start, l.actual_end))
                .collect(),
        }
    }
}

/// The time of the earliest element that differs between two time-sorted lists.
fn first_difference<T: PartialEq>(
    old: &[T],
    new: &[T],
    at: impl Fn(&T) -> Timestamp,
) -> Option<Timestamp> {
    let same = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let a = old.get(same).map(&at);
    let b = new.get(same).map(&at);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Replays a relay from the checkpoint before `from` and tells those watching only what it
/// changed for them: handoffs beyond the leg that held the object before, proximity findings
/// (the custody log ignores those it has), the last position if it is not the one they have,
/// or else, if their view changed all the same, that the relay was replayed.
fn replay(plan: &Plan, ri: usize, rt: &mut RelayTrack, from: Key) -> Vec<Change> {
    let seen = Seen::of(&rt.state);
    let mut changes = Vec::new();
    replay_from(plan, ri, rt, from, &mut changes);
    let last_position = changes
        .iter()
        .rposition(|c| matches!(c, Change::Position { .. }));
    let mut news: Vec<Change> = changes
        .into_iter()
        .enumerate()
        .filter(|(i, c)| match c {
            Change::Position { leg, fix, .. } => {
                Some(*i) == last_position && Some((*leg, *fix)) != seen.position
            }
            Change::Handoff { from_leg, .. } => *from_leg >= seen.current,
            Change::Proximity { .. } | Change::Replayed { .. } => true,
        })
        .map(|(_, c)| c)
        .collect();
    if news.is_empty() && seen != Seen::of(&rt.state) {
        news.push(Change::Replayed {
            relay: plan.relays[ri].id.clone(),
        });
    }
    news
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NoFiles, parse};
    use crate::snapshot::{LegStatus, RelayStatus};

    /// A stage of 4 minutes, then two runners along a straight street in Paris (~1.1 km each).
    pub(super) const PLAN: &str = r#"
[event]
id = "t"
name = "T"
[[places]]
id = "a"
at = [2.3500, 48.8500]
timezone = "Europe/Paris"
[[relays]]
id = "r"
[[relays.legs]]
carriers = ["Stage"]
mode = "stage"
place = "a"
start = "2024-08-11T21:00:00Z"
duration = "4m"
[[relays.legs]]
carriers = ["Ann"]
mode = "run"
route = { points = [[2.3500, 48.8500], [2.3650, 48.8500]] }
duration = "6m"
[[relays.legs]]
carriers = ["Bob"]
mode = "run"
route = { points = [[2.3650, 48.8500], [2.3800, 48.8500]] }
duration = "6m"
"#;

    /// [`PLAN`] with these legs after its stage in place of its two runners.
    fn after_the_stage(legs: &str) -> String {
        let runners = PLAN
            .find("[[relays.legs]]\ncarriers = [\"Ann\"]")
            .expect("Ann's leg");
        format!("{}{legs}", &PLAN[..runners])
    }

    pub(super) fn tracker() -> Tracker {
        Tracker::new(Arc::new(parse(PLAN, &NoFiles).unwrap()))
    }

    pub(super) fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_723_410_000 + s).unwrap() // 2024-08-11T21:00:00Z
    }

    pub(super) fn ping(s: i64, lon: f64, lat: f64) -> Ping {
        Ping {
            t: t(s),
            lon,
            lat,
            acc_m: Some(8.0),
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        }
    }

    /// Ann runs leg 2 from 240 s to 600 s, Bob leg 3 from 600 s; one ping every 10 s.
    fn walk() -> Vec<(&'static str, Ping)> {
        let mut out = Vec::new();
        for k in 0..=36 {
            let f = f64::from(k) / 36.0;
            out.push((
                "Ann",
                ping(
                    240 + i64::from(k) * 10,
                    2.35 + 0.015 * f,
                    48.85 + if k % 2 == 0 { 0.00005 } else { -0.00005 },
                ),
            ));
        }
        for k in 1..=18 {
            let f = f64::from(k) / 36.0;
            out.push((
                "Bob",
                ping(600 + i64::from(k) * 10, 2.365 + 0.015 * f, 48.85),
            ));
        }
        out
    }

    #[test]
    fn stage_ends_on_time_then_runners_hand_off_at_the_exchange() {
        let mut tr = tracker();
        assert_eq!(tr.tick(t(-10)), vec![]);
        let ch = tr.tick(t(241));
        assert!(
            matches!(
                ch.as_slice(),
                [Change::Handoff {
                    from_leg: 0,
                    to_leg: Some(1),
                    ..
                }]
            ),
            "{ch:?}"
        );
        let mut handoffs = 0;
        let mut last_along = 0.0;
        for (c, p) in walk() {
            for ch in tr.apply(c, c, &p) {
                match ch {
                    Change::Handoff { from_leg, .. } => {
                        handoffs += 1;
                        assert_eq!(from_leg, 1);
                    }
                    Change::Position { leg: 1, fix, .. } => {
                        assert!(fix.along_m >= last_along, "progress ran backwards");
                        last_along = fix.along_m;
                    }
                    Change::Position { .. }
                    | Change::Proximity { .. }
                    | Change::Replayed { .. } => {}
                }
            }
        }
        assert_eq!(handoffs, 1);
        let snap = tr.snapshot(t(780), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.status, RelayStatus::Running);
        assert_eq!(r.current_leg, Some(2));
        assert_eq!(r.holders, vec!["Bob".to_string()]);
        assert_eq!(r.legs[1].status, LegStatus::Done);
        let frac = r.progress.unwrap().fraction;
        assert!((frac - 0.5).abs() < 0.05, "{frac}");
        // Bob is at half way after 3 minutes at the planned pace: ETA ≈ 600 + 360 s.
        let eta = r.legs[2].eta_end.as_second() - t(0).as_second();
        assert!((eta - 960).abs() < 30, "{eta}");
    }

    #[test]
    fn out_of_order_and_late_pings_give_the_same_state() {
        let mut in_order = tracker();
        for (c, p) in walk() {
            in_order.apply(c, c, &p);
        }
        let mut shuffled = tracker();
        let mut pings = walk();
        // A deterministic shuffle: reverse chunks, and hold 10 pings back as a late batch.
        let late: Vec<_> = pings.drain(5..15).collect();
        for chunk in pings.chunks(7).rev() {
            for (c, p) in chunk {
                shuffled.apply(c, c, p);
            }
        }
        shuffled.apply_batch(late.iter().zip(1000..).map(|((c, p), seq)| PingOf {
            device: c,
            carrier: c,
            relay: None,
            seq,
            ping: p,
        }));
        let now = t(800);
        assert_eq!(in_order.snapshot(now, false), shuffled.snapshot(now, false));
    }

    #[test]
    fn a_later_carrier_moving_on_ends_the_missed_handoff() {
        let mut tr = tracker();
        tr.tick(t(241));
        tr.apply("Ann", "Ann", &ping(250, 2.3510, 48.85));
        // Ann's phone dies; Bob is seen 300 m into leg 3.
        let ch = tr.apply("Bob", "Bob", &ping(700, 2.3691, 48.85));
        assert!(
            ch.iter().any(|c| matches!(
                c,
                Change::Handoff {
                    from_leg: 1,
                    to_leg: Some(2),
                    ..
                }
            )),
            "{ch:?}"
        );
        assert_eq!(tr.current_leg("r"), Some(2));
    }

    #[test]
    fn off_route_after_several_pings_and_pings_of_no_use_are_ignored() {
        let mut tr = tracker();
        tr.tick(t(241));
        // Before the event and from somebody with no leg: nothing changes.
        assert!(tr.apply("Ann", "Ann", &ping(-3600, 2.35, 48.85)).is_empty());
        assert!(tr.apply("Zed", "Zed", &ping(300, 2.35, 48.85)).is_empty());
        for k in 0..3 {
            tr.apply("Ann", "Ann", &ping(300 + k * 10, 2.355, 48.853)); // ~330 m north of the street
        }
        let snap = tr.snapshot(t(330), false);
        assert!(snap.relay("r").unwrap().off_route);
        tr.apply("Ann", "Ann", &ping(340, 2.356, 48.8500));
        assert!(!tr.snapshot(t(345), false).relay("r").unwrap().off_route);
    }

    #[test]
    fn flags_name_the_instant_each_rose_whenever_they_are_looked_at() {
        let flags = |tr: &Tracker, now: Timestamp| tr.flags(now)[0].1;
        let mut tr = tracker();
        tr.tick(t(241));
        tr.apply("Ann", "Ann", &ping(250, 2.3510, 48.85));
        for k in 0..4 {
            tr.apply("Ann", "Ann", &ping(300 + k * 10, 2.355, 48.853));
        }
        // Off route since its run's first ping; two looks a minute apart agree.
        let (a, b) = (flags(&tr, t(331)), flags(&tr, t(391)));
        assert!(a.off_route && b.off_route);
        assert_eq!(a.off_route_since, Some(t(300)));
        assert_eq!(b.off_route_since, Some(t(300)));
        // Back on the route, then off again: a new run, a new instant.
        tr.apply("Ann", "Ann", &ping(340, 2.356, 48.8500));
        assert_eq!(flags(&tr, t(341)).off_route_since, None);
        for k in 0..3 {
            tr.apply("Ann", "Ann", &ping(350 + k * 10, 2.357, 48.853));
        }
        assert_eq!(flags(&tr, t(371)).off_route_since, Some(t(350)));
        // Silent from the last fix plus the silence allowed; overdue from the plan and the
        // leg's start (240 s + 6 min + 2 min of slack), the same at every later look.
        let silent_after_s = tr.plan.event.silent_after_ms / 1000;
        for now in [t(2000), t(3000)] {
            let f = flags(&tr, now);
            assert!(f.silent && f.overdue, "{f:?}");
            assert_eq!(f.silent_since, Some(t(370 + silent_after_s)));
            assert_eq!(f.overdue_since, Some(t(240 + 360 + 120)));
        }
        let quiet = flags(&tr, t(372));
        assert!(!quiet.silent && !quiet.overdue);
        assert_eq!((quiet.silent_since, quiet.overdue_since), (None, None));
    }

    #[test]
    fn progress_resumes_where_a_carrier_rejoins_the_route() {
        let mut tr = tracker();
        tr.tick(t(241));
        tr.apply("Ann", "Ann", &ping(250, 2.3515, 48.85));
        // A wrong turn: 330 m off the street for a while…
        for k in 0..6 {
            tr.apply("Ann", "Ann", &ping(260 + k * 10, 2.354, 48.853));
        }
        // …then back on it, further along.
        tr.apply("Ann", "Ann", &ping(330, 2.3590, 48.85));
        tr.apply("Ann", "Ann", &ping(340, 2.3600, 48.85));
        let frac = tr
            .snapshot(t(341), false)
            .relay("r")
            .unwrap()
            .progress
            .unwrap()
            .fraction;
        assert!(frac > 0.6, "{frac}");
    }

    fn stint_tracker() -> Tracker {
        let plan = parse(crate::custody::tests::STINT_PLAN, &NoFiles).unwrap();
        Tracker::new(Arc::new(plan))
    }

    fn handoffs(ch: &[Change]) -> Vec<(usize, EndCause)> {
        ch.iter()
            .filter_map(|c| match c {
                Change::Handoff { from_leg, by, .. } => Some((*from_leg, *by)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_carrier_across_a_change_of_mode_moves_on_by_itself_and_never_meets_themself() {
        use crate::snapshot::EndedBy;
        let mut tr = stint_tracker();
        // The stage's time runs out: assumed, not verified.
        assert_eq!(handoffs(&tr.tick(t(241))), [(0, EndCause::PlannedTime)]);
        let snap = tr.snapshot(t(241), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.legs[0].ended_by, Some(EndedBy::PlannedTime));
        assert!(!r.legs[0].verified);
        assert!(!r.legs[0].segment && r.legs[1].segment);
        // Tom rides to the end of the motorcycle leg; the phone that ends it also starts the
        // run, at the very exchange point, and no proximity "handoff" to himself is found.
        let mut found = Vec::new();
        for k in 0..=12 {
            let lon = 2.35 + 0.05 * f64::from(k) / 12.0;
            found.extend(tr.apply("tom", "Tom", &ping(250 + i64::from(k) * 25, lon, 48.85)));
        }
        found.extend(tr.apply("tom", "Tom", &ping(560, 2.4000, 48.85)));
        assert_eq!(handoffs(&found), [(1, EndCause::Positions)]);
        assert!(
            !found.iter().any(|c| matches!(c, Change::Proximity { .. })),
            "{found:?}"
        );
        assert_eq!(tr.current_leg("r"), Some(2));
        let snap = tr.snapshot(t(560), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.legs[1].ended_by, Some(EndedBy::Positions));
        assert_eq!(r.holders, ["Tom".to_string()]);
        // The operator records the stage's end; then Tom and Ann meet at the end of the run:
        // the stint's real handoff, verified.
        tr.set_methods("r", vec![(0, crate::custody::Method::Operator)]);
        tr.set_recorded("r", vec![(0, t(240))], t(700));
        let snap = tr.snapshot(t(700), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.legs[0].ended_by, Some(EndedBy::Operator));
        assert_eq!(r.legs[1].ended_by, Some(EndedBy::Positions));
        assert_eq!(r.current_leg, Some(2));
        tr.apply("tom", "Tom", &ping(800, 2.4099, 48.85));
        let ch = tr.apply("ann", "Ann", &ping(805, 2.4100, 48.85));
        assert!(
            ch.iter()
                .any(|c| matches!(c, Change::Proximity { from_leg: 2, .. })),
            "{ch:?}"
        );
        let snap = tr.snapshot(t(806), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.legs[2].ended_by, Some(EndedBy::Proximity));
        assert!(r.legs[2].verified);
        assert_eq!(r.legs[3].ended_by, None, "not done yet");
    }

    #[test]
    fn a_carrier_seen_on_the_next_segment_ends_the_one_before() {
        let mut tr = stint_tracker();
        tr.tick(t(241));
        tr.apply("tom", "Tom", &ping(260, 2.3510, 48.85));
        // The phone was off for the rest of the ride: next seen 300 m into the run.
        let ch = tr.apply("tom", "Tom", &ping(620, 2.4041, 48.85));
        assert_eq!(handoffs(&ch), [(1, EndCause::Positions)]);
        assert_eq!(tr.current_leg("r"), Some(2));
        let snap = tr.snapshot(t(621), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.mode, Some(crate::plan::Mode::Run));
        assert_eq!(r.position.map(|p| p.lon), Some(2.4041));
    }

    #[test]
    fn a_recorded_end_says_how_it_was_verified() {
        use crate::custody::Method;
        use crate::snapshot::EndedBy;
        let mut tr = stint_tracker();
        tr.set_methods("r", vec![(0, Method::TwoParty)]);
        tr.set_recorded("r", vec![(0, t(230))], t(231));
        let snap = tr.snapshot(t(231), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.legs[0].ended_by, Some(EndedBy::TwoParty));
        assert!(r.legs[0].verified && r.legs[0].ended_by.is_some_and(EndedBy::verified));
        // The operator records the end of Tom's stint while his phone is off: the motorcycle
        // segment ends with it, and custody is verified through the stint.
        tr.set_methods("r", vec![(0, Method::TwoParty), (2, Method::Operator)]);
        tr.set_recorded("r", vec![(0, t(230)), (2, t(900))], t(901));
        let snap = tr.snapshot(t(901), false);
        let r = snap.relay("r").unwrap();
        assert_eq!(r.current_leg, Some(3));
        assert_eq!(r.legs[1].ended_by, Some(EndedBy::Operator));
        assert_eq!(r.legs[2].ended_by, Some(EndedBy::Operator));
        assert!(r.legs[1].verified && r.legs[2].verified);
        // The compact leg carries it too.
        let compact = snap.clone().compact();
        assert_eq!(
            compact.relay("r").unwrap().legs[2].ended_by,
            Some(EndedBy::Operator)
        );
    }

    /// Ann's pings every 10 s up to `last` (of 36 steps along her 1.1 km leg).
    fn ann_until(tr: &mut Tracker, last: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for k in 0..=last {
            #[allow(clippy::cast_precision_loss)]
            let f = k as f64 / 36.0;
            out.extend(tr.apply("Ann", "Ann", &ping(240 + k * 10, 2.35 + 0.015 * f, 48.85)));
        }
        out
    }

    #[test]
    fn a_receiver_waiting_at_the_exchange_confirms_when_the_giver_reaches_it() {
        let mut tr = tracker();
        // The stage's end is recorded: the next exchange to verify is Ann's to Bob.
        tr.set_recorded("r", vec![(0, t(240))], t(241));
        // Bob waits at the exchange from 500 s on; Ann enters the 50 m radius at 590 s (~30 m
        // out) and reaches the point at 600 s.
        let mut found = Vec::new();
        for s in (500..590).step_by(10) {
            found.extend(tr.apply("Bob", "Bob", &ping(s, 2.3650, 48.85)));
        }
        found.extend(ann_until(&mut tr, 35));
        found.extend(tr.apply("Bob", "Bob", &ping(595, 2.3650, 48.85)));
        assert!(handoffs(&found).is_empty(), "{found:?}");
        assert!(!found.iter().any(|c| matches!(c, Change::Proximity { .. })));
        let ch = tr.apply("Ann", "Ann", &ping(600, 2.3650, 48.85));
        let at: Vec<_> = ch
            .iter()
            .filter_map(|c| match c {
                Change::Proximity {
                    from_leg: 1, at, ..
                } => Some(*at),
                _ => None,
            })
            .collect();
        assert_eq!(at, [t(600)], "{ch:?}");
        let snap = tr.snapshot(t(601), false);
        assert_eq!(snap.relay("r").unwrap().legs[1].actual_end, Some(t(600)));
    }

    #[test]
    fn a_leg_ends_where_its_holder_passed_the_exchange_point_between_two_fixes() {
        let mut tr = tracker();
        tr.tick(t(241));
        ann_until(&mut tr, 34);
        let dlon = 40.0 / (111_320.0 * 48.85_f64.to_radians().cos());
        // 40 m short of the end at 590 s, 40 m past it at 600 s: passed it at 595 s.
        assert!(handoffs(&tr.apply("Ann", "Ann", &ping(590, 2.3650 - dlon, 48.85))).is_empty());
        let ch = tr.apply("Ann", "Ann", &ping(600, 2.3650 + dlon, 48.85));
        let at: Vec<_> = ch
            .iter()
            .filter_map(|c| match c {
                Change::Handoff {
                    from_leg: 1, at, ..
                } => Some(*at),
                _ => None,
            })
            .collect();
        assert_eq!(at.len(), 1, "{ch:?}");
        let off_ms = (at[0].as_millisecond() - t(595).as_millisecond()).abs();
        assert!(off_ms < 500, "stamped {} ms from the crossing", off_ms);
    }

    #[test]
    fn ten_pings_a_second_at_motorway_speed_are_not_tracked_to_the_finish() {
        let mut tr = tracker();
        tr.tick(t(241));
        // 106 km/h (29.4 m/s) along Ann's 1.1 km run, a ping every 100 ms.
        let len_m = 0.015 * 111_320.0 * 48.85_f64.to_radians().cos();
        let start_ms = t(250).as_millisecond();
        for i in 0..400_i64 {
            #[allow(clippy::cast_precision_loss)]
            let f = (29.4 * i as f64 / 10.0 / len_m).min(1.0);
            let mut p = ping(0, 2.35 + 0.015 * f, 48.85);
            p.t = Timestamp::from_millisecond(start_ms + i * 100).unwrap();
            tr.apply("Ann", "Ann", &p);
        }
        assert_eq!(tr.current_leg("r"), Some(1), "tracked to the exchange");
        let snap = tr.snapshot(t(300), false);
        let frac = snap.relay("r").unwrap().progress.unwrap().fraction;
        // What 26 km/h × 1.5 (the run's bound) allows in 40 s, plus the slack: well short.
        assert!(frac < 0.6, "{frac}");
    }

    #[test]
    fn a_silent_carriers_eta_moves_with_the_clock_and_never_reads_now_while_away() {
        let mut tr = tracker();
        tr.tick(t(241));
        // Ann is ~180 m from the exchange at 540 s, then her phone pauses.
        ann_until(&mut tr, 30);
        let mut last = t(540);
        for after in [10, 30, 60, 100, 140] {
            let now = t(540 + after);
            tr.tick(now);
            let snap = tr.snapshot(now, false);
            let eta = snap.relay("r").unwrap().legs[1].eta_end;
            assert!(
                eta.as_millisecond() - now.as_millisecond() >= 10_000,
                "{after} s silent: ETA {eta} reads now ({now})"
            );
            assert!(eta >= last, "{after} s silent: ETA went back");
            last = eta;
        }
    }

    #[test]
    fn a_slow_motorcycle_slows_the_car_after_it_not_the_flight_or_the_runner() {
        // The flag handover's shape: a motorcycle through the city, a flight, a runner, then a
        // car. The rider is stuck in traffic, at half the planned speed.
        let plan = after_the_stage(
            r#"[[relays.legs]]
carriers = ["Ann"]
mode = "motorcycle"
route = { points = [[2.3500, 48.8500], [2.3800, 48.8500]] }
duration = "6m"
[[relays.legs]]
carriers = ["Pilot"]
mode = "flight"
route = { points = [[2.3800, 48.8500], [3.3800, 48.8500]] }
duration = "20m"
[[relays.legs]]
carriers = ["Bob"]
mode = "run"
route = { points = [[3.3800, 48.8500], [3.3950, 48.8500]] }
duration = "6m"
[[relays.legs]]
carriers = ["Cat"]
mode = "car"
route = { points = [[3.3950, 48.8500], [3.4250, 48.8500]] }
duration = "6m"
"#,
        );
        let mut tr = Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()));
        tr.tick(t(241));
        // 2.2 km planned in 6 minutes; three quarters of it ridden in 9.
        for k in 0..=54 {
            #[allow(clippy::cast_precision_loss)]
            let f = k as f64 / 72.0;
            tr.apply("Ann", "Ann", &ping(240 + k * 10, 2.35 + 0.03 * f, 48.85));
        }
        let snap = tr.snapshot(t(781), false);
        let legs = &snap.relay("r").unwrap().legs;
        let took = |i: usize| {
            legs[i]
                .eta_end
                .duration_since(legs[i].eta_start)
                .as_secs_f64()
        };
        // The flight keeps its schedule and the runner their plan (both were doubled before);
        // the car, in the same traffic, is expected at the motorcycle's pace.
        assert!((took(2) - 1200.0).abs() < 1.0, "flight: {} s", took(2));
        assert!((took(3) - 360.0).abs() < 1.0, "run: {} s", took(3));
        assert!(took(4) > 1.8 * 360.0, "car: {} s", took(4));
    }

    #[test]
    fn the_next_runner_is_expected_at_the_pace_the_current_leg_is_expected_to_end_at() {
        // Ann and Bob have the same 1.1 km, 6-minute leg. Ann waits 3 minutes at the start,
        // then runs at the plan's pace; three quarters of the way along, 7.5 minutes in, her
        // leg is expected to take what it is expected to take, and so is Bob's: not her time so
        // far over the distance she covered, which counts her wait against a quarter of the leg
        // she has not run yet (that gave Bob 600 s against her 565 s).
        let mut tr = tracker();
        tr.tick(t(241));
        for k in 0..=45 {
            let lon = if k <= 18 {
                2.35
            } else {
                #[allow(clippy::cast_precision_loss)]
                let f = (k - 18) as f64 / 36.0;
                2.35 + 0.015 * f
            };
            tr.apply("Ann", "Ann", &ping(240 + k * 10, lon, 48.85));
        }
        let snap = tr.snapshot(t(691), false);
        let legs = &snap.relay("r").unwrap().legs;
        let took = |i: usize| {
            legs[i]
                .eta_end
                .duration_since(legs[i].eta_start)
                .as_secs_f64()
        };
        assert!(took(1) > 450.0, "Ann: {} s", took(1));
        assert!(
            (took(2) - took(1)).abs() < 1.0,
            "Bob {} s, Ann {} s",
            took(2),
            took(1)
        );
    }

    #[test]
    fn a_silent_carrier_delays_the_next_handoff_not_the_next_runners_pace() {
        // Ann runs her 1.1 km at the plan's pace to halfway, then goes silent (a dead phone).
        // Her ETA ages with the silence, and Bob's handoff with it; Bob's own leg is still
        // expected to take what hers was expected to take at her last fix (read as of now, her
        // silence slowed every later leg as if the relay had: Bob 361 s at 31 s silent, 630 s
        // at 300 s).
        let mut tr = tracker();
        tr.tick(t(241));
        for k in 0..=18 {
            #[allow(clippy::cast_precision_loss)]
            let lon = 2.35 + 0.015 * (k as f64 / 36.0);
            tr.apply("Ann", "Ann", &ping(240 + k * 10, lon, 48.85));
        }
        let read = |tr: &mut Tracker, s: i64| {
            tr.tick(t(s));
            let snap = tr.snapshot(t(s), false);
            let legs = &snap.relay("r").unwrap().legs;
            let took = |i: usize| {
                legs[i]
                    .eta_end
                    .duration_since(legs[i].eta_start)
                    .as_secs_f64()
            };
            (legs[1].eta_end, took(2))
        };
        let (ann_soon, bob_soon) = read(&mut tr, 451);
        let (ann_late, bob_late) = read(&mut tr, 720);
        assert!(ann_late > ann_soon, "Ann's ETA {ann_soon} → {ann_late}");
        assert!(
            (bob_late - bob_soon).abs() < 1.0,
            "Bob {bob_soon} s → {bob_late} s"
        );
    }

    #[test]
    fn a_flight_whose_phone_is_off_lands_on_its_plan_not_a_whole_flight_from_now() {
        // Bob's leg is a 20-minute flight; his phone is off (airplane mode) from the handoff.
        let plan = after_the_stage(
            r#"[[relays.legs]]
carriers = ["Ann"]
mode = "run"
route = { points = [[2.3500, 48.8500], [2.3650, 48.8500]] }
duration = "6m"
[[relays.legs]]
carriers = ["Bob"]
mode = "flight"
route = { points = [[2.3650, 48.8500], [3.3800, 48.8500]] }
duration = "20m"
"#,
        );
        let mut tr = Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()));
        tr.set_recorded("r", vec![(0, t(240)), (1, t(600))], t(601));
        let read = |tr: &mut Tracker, s: i64| {
            tr.tick(t(s));
            let view = tr.relay_view("r", t(s), false).unwrap();
            let l = &view.legs[2];
            (l.eta_end, l.eta_lo.unwrap(), l.eta_hi.unwrap())
        };
        // Nothing says the plane stopped at the gate: the landing stays at the plan's 1,800 s,
        // and its band does not widen with a silence nothing was expected to break (it slid a
        // second a second before: 2,670 s at 900 s in).
        let first = read(&mut tr, 600);
        assert_eq!(first.0, t(1800));
        // (Read before the band's lower edge, which never lies in the past.)
        for s in [660, 900, 1200] {
            assert_eq!(read(&mut tr, s), first, "{s} s");
        }
        // Seen once, mid-flight, then silent: that carrier ages as any silent carrier does.
        tr.apply("Bob", "Bob", &ping(1200, 2.8725, 48.85));
        let seen = read(&mut tr, 1200).0;
        let later = read(&mut tr, 1500).0;
        assert!(later > seen && later > t(1800), "{seen} → {later}");
    }

    #[test]
    fn a_later_leg_that_climbs_is_expected_to_take_longer_than_its_flat_plan() {
        // Bob's 1.1 km rises 110 m (10 %): Tobler walks it 1.42 times as long as the flat, and
        // the plan's 6 minutes are read as flat ground.
        let duration = |plan: &str| {
            let mut tr = Tracker::new(Arc::new(parse(plan, &NoFiles).unwrap()));
            tr.tick(t(241));
            let snap = tr.snapshot(t(241), false);
            let bob = &snap.relay("r").unwrap().legs[2];
            bob.eta_end.duration_since(bob.eta_start).as_secs_f64()
        };
        let flat = duration(PLAN);
        assert!((flat - 360.0).abs() < 1.0, "{flat}");
        let climb = PLAN.replace(
            "[[2.3650, 48.8500], [2.3800, 48.8500]]",
            "[[2.3650, 48.8500, 100], [2.3800, 48.8500, 210]]",
        );
        let up = duration(&climb);
        assert!((up / flat - (3.5_f64 * 0.1).exp()).abs() < 0.03, "{up} s");
    }

    #[test]
    fn a_carrier_seen_climbing_slowly_is_not_expected_to_descend_slowly() {
        // Ann's 1.1 km climbs 55 m in its first half (10 %) and comes down 27.5 m in its second
        // (5 %, Tobler's fastest). She runs the climb at the plan's flat pace slowed by the
        // slope (1.42 ×): 550 m in 255 s. On the descent the same effort is 0.84 × the flat,
        // 151 s on the raw profile. The route's elevation is smoothed over 300 m either side,
        // which rounds this short brow, so the expected time is her effort on the route's own
        // profile: 176 s, still far from the 255 s her climbing speed would take (the code
        // before session 13 said 239).
        let flat_mps = 1100.0 / 360.0;
        let cost = |grade: f64| crate::eta::slope_cost(crate::plan::Locomotion::Foot, grade);
        let plan = PLAN.replace(
            "[[2.3500, 48.8500], [2.3650, 48.8500]]",
            "[[2.3500, 48.8500, 100], [2.3575, 48.8500, 155], [2.3650, 48.8500, 127.5]]",
        );
        let mut tr = Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()));
        tr.set_recorded("r", vec![(0, t(240))], t(241));
        let climb_s = 550.0 * cost(0.10) / flat_mps;
        let fixes = 26;
        for k in 0..=fixes {
            let f = f64::from(k) / f64::from(fixes);
            #[allow(clippy::cast_possible_truncation)]
            let s = 240 + (climb_s * f).round() as i64;
            tr.apply("Ann", "Ann", &ping(s, 2.35 + 0.0075 * f, 48.85));
        }
        #[allow(clippy::cast_possible_truncation)]
        let now = t(240 + climb_s.round() as i64);
        tr.tick(now);
        let snap = tr.snapshot(now, false);
        let to_go = snap.relay("r").unwrap().legs[1]
            .eta_end
            .duration_since(now)
            .as_secs_f64();
        let route = parse(&plan, &NoFiles).unwrap().relays[0].legs[1]
            .geometry
            .route()
            .cloned()
            .unwrap();
        let foot = crate::plan::Locomotion::Foot;
        let effort_mps = route.flat_equivalent_m(foot, 0.0, 550.0) / climb_s;
        let descent_s = route.flat_equivalent_m(foot, 550.0, route.length_m()) / effort_mps;
        assert!(
            (to_go - descent_s).abs() < 10.0,
            "{to_go} s to go, {descent_s} s expected"
        );
        assert!(
            to_go < 0.8 * climb_s,
            "{to_go} s: read at her climbing speed"
        );
    }

    #[test]
    fn an_announced_delay_moves_the_band_and_does_not_widen_it() {
        let mut tr = tracker();
        tr.tick(t(241));
        ann_until(&mut tr, 12);
        let band = |tr: &Tracker| {
            let snap = tr.snapshot(t(365), false);
            let l = &snap.relay("r").unwrap().legs[1];
            let (lo, hi) = (l.eta_lo.unwrap(), l.eta_hi.unwrap());
            (l.eta_end, lo, hi.duration_since(lo).as_secs_f64())
        };
        let (eta, _, width) = band(&tr);
        tr.set_shifts(
            "r",
            vec![Shift {
                at: t(362),
                from_leg: 1,
                ms: 300_000,
            }],
            t(362),
        );
        let (later, _, shifted_width) = band(&tr);
        assert_eq!(later.duration_since(eta).as_secs(), 300);
        assert!(
            (shifted_width - width).abs() < 1.0,
            "{width} s wide, {shifted_width} s after the shift"
        );
    }

    /// Race mode: two legs of a course (~1.1 km each, 6 minutes planned), and the teams given.
    fn race(teams: &[(&str, i64)]) -> Tracker {
        let mut plan = String::from(
            r#"[event]
id = "race"
name = "Race"
[[courses]]
id = "c"
[[courses.legs]]
mode = "run"
route = { points = [[2.3500, 48.8500], [2.3650, 48.8500]] }
duration = "6m"
[[courses.legs]]
mode = "run"
route = { points = [[2.3650, 48.8500], [2.3800, 48.8500]] }
duration = "6m"
"#,
        );
        for (id, start_s) in teams {
            plan.push_str(&format!(
                "[[relays]]\nid = \"{id}\"\ncourse = \"c\"\nstart = \"{}\"\ncarriers = [\"{id}1\", \"{id}2\"]\n",
                t(*start_s)
            ));
        }
        Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()))
    }

    /// `carrier` runs from `lon0` to `lon1` at 48.85° N, from `from_s` for `secs`, a fix every
    /// 10 s.
    fn run_along(tr: &mut Tracker, carrier: &str, from_s: i64, secs: i64, lon0: f64, lon1: f64) {
        for k in 0..=secs / 10 {
            #[allow(clippy::cast_precision_loss)]
            let f = (k * 10) as f64 / secs as f64;
            tr.apply(
                carrier,
                carrier,
                &ping(from_s + k * 10, lon0 + (lon1 - lon0) * f, 48.85),
            );
        }
    }

    /// Team `b`'s band for its first leg, a minute after its start with a fix at the start
    /// line: (seconds from the fix to the upper end) ÷ (seconds from the fix to the ETA).
    fn upper_share(tr: &mut Tracker, start_s: i64) -> f64 {
        tr.tick(t(start_s));
        tr.apply("b1", "b1", &ping(start_s + 60, 2.3500, 48.85));
        let snap = tr.snapshot(t(start_s + 60), false);
        let leg = &snap.relay("b").unwrap().legs[0];
        let from = t(start_s + 60);
        leg.eta_hi.unwrap().duration_since(from).as_secs_f64()
            / leg.eta_end.duration_since(from).as_secs_f64()
    }

    #[test]
    fn a_team_that_has_finished_no_leg_has_its_band_from_the_teams_ahead_on_its_course() {
        // Team a's runners each ran half their leg at the planned pace, stood still for six
        // minutes (nobody could see that coming), then ran the rest: the predictions made
        // before each rest came out short. Team b starts an hour later and has run nothing.
        let mut with_a = race(&[("a", 0), ("b", 3600)]);
        with_a.tick(t(0));
        for (carrier, from_s, lon) in [("a1", 0, 2.3500), ("a2", 730, 2.3650)] {
            run_along(&mut with_a, carrier, from_s, 180, lon, lon + 0.0075);
            run_along(
                &mut with_a,
                carrier,
                from_s + 190,
                350,
                lon + 0.0075,
                lon + 0.0075,
            );
            run_along(
                &mut with_a,
                carrier,
                from_s + 550,
                180,
                lon + 0.0075,
                lon + 0.015,
            );
        }
        assert_eq!(with_a.current_leg("a"), Some(2), "team a finished");
        let a_own = super::band::quantiles(&with_a.relays[0].state, super::band::PRIOR);
        assert!(
            a_own.current.1 > super::band::PRIOR.current.1 + 0.1,
            "{a_own:?}"
        );
        // One team ahead: the pool is that team's errors shrunk toward the prior.
        assert_eq!(with_a.band_prior(1), a_own);
        let pooled = upper_share(&mut with_a, 3600);
        // The same team b on a course where nobody has run: the prior's band.
        let mut alone = race(&[("b", 3600)]);
        let prior = upper_share(&mut alone, 3600);
        assert!(
            (prior - super::band::PRIOR.current.1.exp()).abs() < 0.01,
            "{prior}"
        );
        // The view widens a band's ends to two significant figures (by under 10 %).
        let want = a_own.current.1.exp();
        assert!(
            pooled > want - 0.01 && pooled - 1.0 < (want - 1.0) * 1.1 + 0.01,
            "pooled {pooled}, team a's {a_own:?}"
        );
        assert!(pooled > prior + 0.1, "pooled {pooled}, prior {prior}");

        // The pool is derived state: a restored tracker gives the same band.
        let plan = Arc::clone(with_a.plan());
        let bytes = with_a.freeze().encode(&plan, "h");
        let restored = Tracker::restore(plan, &bytes, "h").unwrap();
        let view = |tr: &Tracker| tr.snapshot(t(3660), false).relay("b").unwrap().legs[0].eta_hi;
        assert_eq!(view(&restored), view(&with_a));
        // A relay not in a race keeps the prior alone.
        let mut flag = tracker();
        assert_eq!(flag.band_prior(0), super::band::PRIOR);
        flag.tick(t(241));
        assert_eq!(flag.band_prior(0), super::band::PRIOR);
    }

    #[test]
    fn public_view_lags_by_the_public_delay() {
        let plan = PLAN.replace("name = \"T\"", "name = \"T\"\npublic_delay = \"30s\"");
        let mut tr = Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()));
        tr.tick(t(241));
        tr.apply("Ann", "Ann", &ping(250, 2.3510, 48.85));
        tr.apply("Ann", "Ann", &ping(270, 2.3530, 48.85));
        let public = tr.snapshot(t(285), true);
        let private = tr.snapshot(t(285), false);
        assert_eq!(private.relay("r").unwrap().position.unwrap().t, t(270));
        // 285 s - 30 s = 255 s: the fix at 270 s is not public yet, the one at 250 s is.
        assert_eq!(public.relay("r").unwrap().position.unwrap().t, t(250));
        assert!(
            tr.snapshot(t(255), true)
                .relay("r")
                .unwrap()
                .position
                .is_none()
        );
        // Progress and ETA are as of the public fix too: they must not give the carrier away.
        let (pu, pr) = (public.relay("r").unwrap(), private.relay("r").unwrap());
        assert!(pu.progress.unwrap().along_m < pr.progress.unwrap().along_m);
        assert!(pu.legs[1].eta_end != pr.legs[1].eta_end);
    }
}
