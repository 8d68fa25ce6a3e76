//! Live state of every relay, derived only from its inputs: the plan, the pings, the handoffs
//! recorded in the custody log and the operator's plan shifts. It knows which leg holds the
//! object, how far along it is, whether it is off route or silent, when every remaining handoff
//! will happen, and how good its earlier predictions were. Deterministic: the state is a
//! function of the inputs (pings applied in device-time order) and of `now`, so a late or
//! out-of-order ping gives the same result as if it had come in order, and a restart rebuilds
//! the same state.
//!
//! A leg ends (the live view moves on) when a handoff is recorded, when the giver's and the
//! receiver's devices meet at the exchange point (proximity, a verified handoff), when its
//! holder reaches the exchange point, when a later leg's carrier is seen moving along their own
//! leg (the object has evidently moved on), or, for a leg at a place that nobody tracks (a
//! stage), when its planned duration has run out. Only recorded and proximity handoffs are
//! verified; the others move the live view but write nothing to the custody log.

use crate::eta::{PaceWindow, planned_speed_ahead_mps};
use crate::geodesic::{Coord, distance_m};
use crate::ping::Ping;
use crate::plan::{Leg, Plan, Relay};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Consecutive pings beyond the off-route distance before a carrier is flagged off route.
pub const OFF_ROUTE_PINGS: u32 = 3;
/// A position older than this is shown as stale (with its age).
pub const STALE_MS: i64 = 60_000;
/// Pings this long before a relay's planned start are of no use (warming up, travelling there).
const EARLY_MS: i64 = 10 * 60_000;
/// Giver and receiver at the exchange point within this long of each other: a proximity handoff.
pub const PROXIMITY_WINDOW_MS: i64 = 120_000;
/// ETA predictions are sampled at most this often (device time).
const PREDICTION_EVERY_MS: i64 = 20_000;
/// Predictions are kept for the current leg's end and this many handoffs after it.
const PREDICTION_LEGS: usize = 4;

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
}

#[derive(Debug, Clone, Default)]
struct LegTrack {
    actual_start: Option<Timestamp>,
    actual_end: Option<Timestamp>,
    along_m: f64,
    /// When `along_m` last moved forward (or the leg began): the base of the plausibility check.
    along_t: Option<Timestamp>,
    last_fix: Option<Fix>,
    /// Recent fixes, for the delayed public view.
    recent: Vec<Fix>,
    off_route_run: u32,
    pace: PaceWindow,
    /// (when predicted, predicted end) in milliseconds, for ETA accuracy.
    predictions: Vec<(i64, i64)>,
}

/// A device seen inside an exchange radius.
#[derive(Debug, Clone)]
struct Near {
    t: Timestamp,
    device: Arc<str>,
    distance_m: f64,
}

#[derive(Debug, Clone)]
struct RelayTrack {
    /// Every ping of every carrier of this relay, sorted by (t, carrier, device): the input.
    pings: Vec<(Timestamp, Arc<str>, Arc<str>, Ping)>,
    /// Recorded handoffs (from leg, at), sorted by time: the input from the custody log.
    recorded: Vec<(usize, Timestamp)>,
    /// Plan shifts (from leg, milliseconds): the input from the operator.
    shifts: Vec<(usize, i64)>,
    /// How many of `pings` and `recorded` have been applied.
    applied: usize,
    recorded_applied: usize,
    current: usize,
    /// Legs below this have a verified end (recorded or proximity).
    verified: usize,
    giver_near: Option<Near>,
    receiver_near: Option<Near>,
    last_prediction_ms: Option<i64>,
    legs: Vec<LegTrack>,
}

impl RelayTrack {
    fn new(n_legs: usize) -> Self {
        Self {
            pings: Vec::new(),
            recorded: Vec::new(),
            shifts: Vec::new(),
            applied: 0,
            recorded_applied: 0,
            current: 0,
            verified: 0,
            giver_near: None,
            receiver_near: None,
            last_prediction_ms: None,
            legs: vec![LegTrack::default(); n_legs],
        }
    }

    /// Forgets the derived state (keeps the inputs) so they can be replayed in order.
    fn reset(&mut self) {
        let n = self.legs.len();
        self.applied = 0;
        self.recorded_applied = 0;
        self.current = 0;
        self.verified = 0;
        self.giver_near = None;
        self.receiver_near = None;
        self.last_prediction_ms = None;
        self.legs = vec![LegTrack::default(); n];
    }

    /// Milliseconds the operator shifted leg `i`'s plan by.
    fn shift_ms(&self, i: usize) -> i64 {
        self.shifts
            .iter()
            .filter(|(from, _)| i >= *from)
            .map(|(_, ms)| ms)
            .sum()
    }
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
    /// The live view moved on: a leg ended and the next one (if any) began.
    Handoff {
        relay: String,
        from_leg: usize,
        to_leg: Option<usize>,
        at: Timestamp,
    },
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

/// How good the ETA predictions of one leg's end were, once it really ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegAccuracy {
    pub leg: usize,
    pub actual_end: Timestamp,
    pub predictions: usize,
    /// Mean of |predicted − actual| over all predictions, seconds.
    pub mean_abs_error_s: f64,
    pub max_abs_error_s: i64,
    /// The earliest prediction's error and how long before the end it was made (seconds).
    pub first_error_s: i64,
    pub first_lead_s: i64,
    /// The last prediction before the end.
    pub last_error_s: i64,
    pub last_lead_s: i64,
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
        Self {
            plan,
            relays,
            relay_ids,
            carrier_legs,
        }
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

    fn relay_index(&self, relay: &str) -> Option<usize> {
        self.relay_ids.get(relay).copied()
    }

    /// Applies one ping from `device`, bound to `carrier`. Pings may come in any order; one
    /// older than what its relay has already applied makes that relay replay in order.
    pub fn apply(&mut self, device: &str, carrier: &str, ping: &Ping) -> Vec<Change> {
        self.apply_batch(std::iter::once((device, carrier, ping)))
    }

    /// Applies many pings (device, carrier, ping) at once, such as a phone's buffered batch:
    /// each relay replays at most once.
    pub fn apply_batch<'a>(
        &mut self,
        pings: impl IntoIterator<Item = (&'a str, &'a str, &'a Ping)>,
    ) -> Vec<Change> {
        let mut touched: Vec<usize> = Vec::new();
        let mut replayed: Vec<(usize, usize)> = Vec::new();
        for (device, carrier, ping) in pings {
            let Some(legs) = self.carrier_legs.get(carrier) else {
                continue;
            };
            let carrier: Arc<str> = Arc::from(carrier);
            let device: Arc<str> = Arc::from(device);
            let mut relays: Vec<usize> = legs.iter().map(|(r, _)| *r).collect();
            relays.dedup();
            for ri in relays {
                let rt = &mut self.relays[ri];
                let key = (ping.t, &carrier, &device);
                let pos = rt.pings.partition_point(|(t, c, d, _)| (*t, c, d) <= key);
                if pos > 0 {
                    let (t, c, d, _) = &rt.pings[pos - 1];
                    if *t == ping.t && *c == carrier && *d == device {
                        continue; // same device time twice: idempotent
                    }
                }
                rt.pings.insert(
                    pos,
                    (ping.t, Arc::clone(&carrier), Arc::clone(&device), *ping),
                );
                if pos < rt.applied {
                    if !replayed.iter().any(|(r, _)| *r == ri) {
                        replayed.push((ri, rt.current));
                    }
                    rt.reset();
                }
                if !touched.contains(&ri) {
                    touched.push(ri);
                }
            }
        }
        let mut changes = Vec::new();
        for ri in touched {
            let mut these = Vec::new();
            self.catch_up(ri, None, &mut these);
            match replayed.iter().find(|(r, _)| *r == ri) {
                Some(&(_, before)) => changes.extend(news_of_replay(these, before)),
                None => changes.extend(these),
            }
        }
        changes
    }

    /// Sets the handoffs recorded in a relay's custody log (from leg, at), corrections applied,
    /// and replays the relay so the live view agrees with the log.
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
        if rt.recorded == recorded {
            return Vec::new();
        }
        rt.recorded = recorded;
        let before = rt.current;
        rt.reset();
        let mut changes = Vec::new();
        self.catch_up(ri, Some(now), &mut changes);
        news_of_replay(changes, before)
    }

    /// Sets the operator's plan shifts (from leg, milliseconds) of a relay.
    pub fn set_shifts(
        &mut self,
        relay: &str,
        shifts: Vec<(usize, i64)>,
        now: Timestamp,
    ) -> Vec<Change> {
        let Some(ri) = self.relay_index(relay) else {
            return Vec::new();
        };
        let rt = &mut self.relays[ri];
        if rt.shifts == shifts {
            return Vec::new();
        }
        rt.shifts = shifts;
        let before = rt.current;
        rt.reset();
        let mut changes = Vec::new();
        self.catch_up(ri, Some(now), &mut changes);
        news_of_replay(changes, before)
    }

    /// Applies the inputs not yet applied, in time order; then lets time pass up to `now`.
    fn catch_up(&mut self, ri: usize, now: Option<Timestamp>, changes: &mut Vec<Change>) {
        let plan = Arc::clone(&self.plan);
        let relay = &plan.relays[ri];
        let rt = &mut self.relays[ri];
        while rt.applied < rt.pings.len() {
            let (t, carrier, device, ping) = rt.pings[rt.applied].clone();
            rt.applied += 1;
            advance_time(relay, rt, t, changes);
            apply_ping(relay, rt, &carrier, &device, &ping, changes);
        }
        if let Some(now) = now {
            advance_time(relay, rt, now, changes);
        }
    }

    /// Lets time pass with no ping: recorded handoffs take effect, legs at a place end when
    /// their duration runs out.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Change> {
        let mut changes = Vec::new();
        let plan = Arc::clone(&self.plan);
        for (ri, relay) in plan.relays.iter().enumerate() {
            advance_time(relay, &mut self.relays[ri], now, &mut changes);
        }
        changes
    }

    /// The live view at `now`. `public` hides positions newer than the event's public delay.
    #[must_use]
    pub fn snapshot(&self, now: Timestamp, public: bool) -> crate::live::Snapshot {
        let as_of = self.as_of(now, public);
        let relays = self
            .plan
            .relays
            .iter()
            .zip(&self.relays)
            .map(|(r, rt)| relay_view(r, rt, &self.plan, now, as_of))
            .collect();
        crate::live::Snapshot::new(&self.plan, now, relays)
    }

    fn as_of(&self, now: Timestamp, public: bool) -> Timestamp {
        if public {
            now.checked_sub(SignedDuration::from_millis(self.plan.event.public_delay_ms))
                .unwrap_or(now)
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
    ) -> Option<crate::live::RelayView> {
        let ri = self.relay_index(relay)?;
        Some(relay_view(
            &self.plan.relays[ri],
            &self.relays[ri],
            &self.plan,
            now,
            self.as_of(now, public),
        ))
    }

    /// Index of the leg holding the object in relay `relay` (== legs.len() when finished).
    #[must_use]
    pub fn current_leg(&self, relay: &str) -> Option<usize> {
        Some(self.relays[self.relay_index(relay)?].current)
    }

    /// ETA accuracy of every leg that has ended.
    #[must_use]
    pub fn accuracy(&self, relay: &str) -> Option<Vec<LegAccuracy>> {
        let rt = &self.relays[self.relay_index(relay)?];
        Some(
            rt.legs
                .iter()
                .enumerate()
                .filter_map(|(i, lt)| {
                    let end = lt.actual_end?;
                    let end_ms = end.as_millisecond();
                    let preds: Vec<(i64, i64)> = lt
                        .predictions
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t <= end_ms)
                        .collect();
                    let (first, last) = (preds.first()?, preds.last()?);
                    let errs: Vec<i64> =
                        preds.iter().map(|(_, eta)| (eta - end_ms) / 1000).collect();
                    #[allow(clippy::cast_precision_loss)]
                    let mean = errs.iter().map(|e| e.abs() as f64).sum::<f64>() / errs.len() as f64;
                    Some(LegAccuracy {
                        leg: i,
                        actual_end: end,
                        predictions: preds.len(),
                        mean_abs_error_s: (mean * 10.0).round() / 10.0,
                        max_abs_error_s: errs.iter().map(|e| e.abs()).max().unwrap_or(0),
                        first_error_s: (first.1 - end_ms) / 1000,
                        first_lead_s: (end_ms - first.0) / 1000,
                        last_error_s: (last.1 - end_ms) / 1000,
                        last_lead_s: (end_ms - last.0) / 1000,
                    })
                })
                .collect(),
        )
    }
}

/// What a replay changed for those watching: handoffs beyond the leg that held the object
/// before, proximity findings (the custody log ignores those it has), and the last position.
fn news_of_replay(changes: Vec<Change>, before: usize) -> Vec<Change> {
    let last_position = changes
        .iter()
        .rposition(|c| matches!(c, Change::Position { .. }));
    changes
        .into_iter()
        .enumerate()
        .filter(|(i, c)| match c {
            Change::Position { .. } => Some(*i) == last_position,
            Change::Handoff { from_leg, .. } => *from_leg >= before,
            Change::Proximity { .. } => true,
        })
        .map(|(_, c)| c)
        .collect()
}

/// Lets time pass: the first leg starts at its (shifted) planned start, recorded handoffs up
/// to `now` take effect, legs nobody tracks end when their time is up.
fn advance_time(relay: &Relay, rt: &mut RelayTrack, now: Timestamp, changes: &mut Vec<Change>) {
    loop {
        if let Some(&(leg, at)) = rt.recorded.get(rt.recorded_applied)
            && at <= now
        {
            rt.recorded_applied += 1;
            verified_end(relay, rt, leg, at, changes);
            continue;
        }
        let i = rt.current;
        let Some(leg) = relay.legs.get(i) else { return };
        if rt.legs[i].actual_start.is_none() {
            let start = shifted(leg.start, rt.shift_ms(i));
            if i == 0 && now >= start {
                rt.legs[0].actual_start = Some(start);
            } else {
                return;
            }
        }
        let Some(start) = rt.legs[i].actual_start else {
            return;
        };
        let untracked = leg.geometry.route().is_none() && rt.legs[i].last_fix.is_none();
        let due = shifted(start, leg.duration_ms());
        if untracked && now >= due {
            end_leg(relay, rt, i, due, changes);
        } else {
            return;
        }
    }
}

fn shifted(t: Timestamp, ms: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_millis(ms)).unwrap_or(t)
}

/// A verified handoff from leg `from` at `at`: the live view catches up if it was behind, or
/// takes the verified time if it had already moved on by inference.
fn verified_end(
    relay: &Relay,
    rt: &mut RelayTrack,
    from: usize,
    at: Timestamp,
    changes: &mut Vec<Change>,
) {
    if from >= relay.legs.len() {
        return;
    }
    if rt.current <= from {
        if rt.legs[rt.current].actual_start.is_none() {
            rt.legs[rt.current].actual_start = Some(at.min(shifted(
                relay.legs[rt.current].start,
                rt.shift_ms(rt.current),
            )));
        }
        for k in rt.current..=from {
            end_leg(relay, rt, k, at, changes);
        }
    } else {
        rt.legs[from].actual_end = Some(at);
        if let Some(next) = rt.legs.get_mut(from + 1) {
            next.actual_start = Some(at);
        }
    }
    rt.verified = rt.verified.max(from + 1);
    rt.giver_near = None;
    rt.receiver_near = None;
}

fn end_leg(relay: &Relay, rt: &mut RelayTrack, i: usize, at: Timestamp, changes: &mut Vec<Change>) {
    rt.legs[i].actual_end = Some(at);
    if let Some(l) = relay.legs.get(i)
        && l.geometry.route().is_some()
    {
        rt.legs[i].along_m = l.length_m();
    }
    rt.current = i + 1;
    let to_leg = (i + 1 < relay.legs.len()).then_some(i + 1);
    if let Some(n) = to_leg {
        rt.legs[n].actual_start = Some(at);
    }
    changes.push(Change::Handoff {
        relay: relay.id.clone(),
        from_leg: i,
        to_leg,
        at,
    });
}

fn off_route_limit_m(acc_m: Option<f64>) -> f64 {
    (2.0 * acc_m.unwrap_or(0.0)).max(50.0)
}

/// Proximity: the giver's and the receiver's devices inside the exchange radius of the first
/// unverified exchange point, within two minutes of each other.
fn proximity(
    relay: &Relay,
    rt: &mut RelayTrack,
    carrier: &str,
    device: &Arc<str>,
    ping: &Ping,
    changes: &mut Vec<Change>,
) {
    let p = rt.verified;
    let (Some(giver), Some(receiver)) = (relay.legs.get(p), relay.legs.get(p + 1)) else {
        return;
    };
    let exchange = giver.exchange_point();
    let d = distance_m(exchange, Coord::new(ping.lon, ping.lat));
    if d > giver.exchange_radius_m {
        return;
    }
    let near = Near {
        t: ping.t,
        device: Arc::clone(device),
        distance_m: d,
    };
    if giver.carriers.iter().any(|c| c == carrier) {
        rt.giver_near = Some(near.clone());
    }
    if receiver.carriers.iter().any(|c| c == carrier) {
        rt.receiver_near = Some(near);
    }
    let (Some(g), Some(r)) = (&rt.giver_near, &rt.receiver_near) else {
        return;
    };
    if (g.t.as_millisecond() - r.t.as_millisecond()).abs() > PROXIMITY_WINDOW_MS {
        return;
    }
    let at = g.t.max(r.t);
    let change = Change::Proximity {
        relay: relay.id.clone(),
        from_leg: p,
        at,
        giver_device: g.device.to_string(),
        receiver_device: r.device.to_string(),
        distance_m: g.distance_m.max(r.distance_m),
        position: exchange,
    };
    verified_end(relay, rt, p, at, changes);
    changes.push(change);
}

fn apply_ping(
    relay: &Relay,
    rt: &mut RelayTrack,
    carrier: &str,
    device: &Arc<str>,
    ping: &Ping,
    changes: &mut Vec<Change>,
) {
    let Some(first) = relay.legs.first() else {
        return;
    };
    if ping.t < shifted(first.start, rt.shift_ms(0) - EARLY_MS) {
        return; // before the event: kept in the store, never shown
    }
    proximity(relay, rt, carrier, device, ping, changes);
    // The carrier's legs from the current one on; a later one means the object moved on.
    let cur = rt.current;
    let Some(li) = relay
        .legs
        .iter()
        .skip(cur)
        .position(|l| l.carriers.iter().any(|c| c == carrier))
        .map(|k| k + cur)
    else {
        return; // after their last leg, or they hold nothing in this relay now
    };
    let leg = &relay.legs[li];
    let here = Coord::new(ping.lon, ping.lat);
    if li > cur {
        // A later carrier moving along their own leg, clear of its start: earlier legs are over.
        let Some(route) = leg.geometry.route() else {
            return;
        };
        let p = route.project(here, Some(0.0));
        let clear = leg.exchange_radius_m.max(off_route_limit_m(ping.acc_m));
        if p.along_m > clear && p.cross_track_m <= off_route_limit_m(ping.acc_m) {
            if rt.legs[cur].actual_start.is_none() {
                rt.legs[cur].actual_start = Some(ping.t);
            }
            for k in cur..li {
                end_leg(relay, rt, k, ping.t, changes);
            }
        } else {
            return;
        }
    }
    let lt = &mut rt.legs[li];
    if lt.actual_start.is_none() {
        lt.actual_start = Some(ping.t);
    }
    let (along_m, cross_m) = match leg.geometry.route() {
        Some(route) => {
            let p = route.project(here, Some(lt.along_m));
            (p.along_m, p.cross_track_m)
        }
        None => (0.0, distance_m(leg.geometry.start(), here)),
    };
    let limit = off_route_limit_m(ping.acc_m);
    if cross_m > limit {
        lt.off_route_run += 1;
    } else {
        lt.off_route_run = 0;
        if along_m > lt.along_m && plausible_advance(leg, lt, along_m, ping) {
            lt.along_m = along_m;
            lt.along_t = Some(ping.t);
        }
    }
    let fix = Fix {
        t: ping.t,
        lon: ping.lon,
        lat: ping.lat,
        acc_m: ping.acc_m,
        along_m: lt.along_m,
        cross_track_m: cross_m,
    };
    lt.last_fix = Some(fix);
    lt.recent.push(fix);
    if lt.recent.len() > 64 {
        lt.recent.drain(..32);
    }
    lt.pace.push(ping.t.as_millisecond(), lt.along_m);
    let length_m = leg.length_m();
    let fraction = if length_m > 0.0 {
        (lt.along_m / length_m).clamp(0.0, 1.0)
    } else {
        0.0
    };
    changes.push(Change::Position {
        relay: relay.id.clone(),
        leg: li,
        fix,
        fraction,
    });
    record_predictions(relay, rt, ping.t);
    // Reaching the exchange point ends the leg.
    let lt = &rt.legs[li];
    if let Some(route) = leg.geometry.route() {
        let to_end = distance_m(route.end(), here);
        if lt.along_m >= route.length_m() - leg.exchange_radius_m
            && to_end <= leg.exchange_radius_m.max(limit)
        {
            end_leg(relay, rt, li, ping.t, changes);
        }
    }
}

/// Samples the ETAs of the next few handoffs, to measure them when they really happen.
fn record_predictions(relay: &Relay, rt: &mut RelayTrack, t: Timestamp) {
    let t_ms = t.as_millisecond();
    if rt
        .last_prediction_ms
        .is_some_and(|last| t_ms - last < PREDICTION_EVERY_MS)
    {
        return;
    }
    rt.last_prediction_ms = Some(t_ms);
    let etas = eta_ends(relay, rt, t);
    let cur = rt.current;
    for (i, eta) in etas.into_iter().enumerate().skip(cur).take(PREDICTION_LEGS) {
        let preds = &mut rt.legs[i].predictions;
        preds.push((t_ms, eta.as_millisecond()));
        if preds.len() > 512 {
            // Keep every other one: the record thins out evenly rather than forgetting the start.
            let kept: Vec<(i64, i64)> = preds.iter().copied().step_by(2).collect();
            *preds = kept;
        }
    }
}

/// The predicted (or, once done, actual) start and end of every leg at `now`: the current
/// leg's end from its pace, each later leg its planned duration after the one before it.
fn eta_times(
    relay: &Relay,
    rt: &RelayTrack,
    now: Timestamp,
    public_fix: Option<Fix>,
) -> Vec<(Timestamp, Timestamp)> {
    let cur = rt.current;
    let mut out = Vec::with_capacity(relay.legs.len());
    let mut next_start: Option<Timestamp> = None;
    for (i, (leg, lt)) in relay.legs.iter().zip(&rt.legs).enumerate() {
        let planned_start = shifted(leg.start, rt.shift_ms(i));
        let (s, e) = if i < cur {
            (
                lt.actual_start.unwrap_or(planned_start),
                lt.actual_end.unwrap_or(shifted(leg.end, rt.shift_ms(i))),
            )
        } else if i == cur && lt.actual_start.is_some() {
            let start = lt.actual_start.unwrap_or(planned_start);
            // With a public delay, spectators get the ETA as of the last public fix.
            let (along_m, fix) =
                public_fix.map_or((lt.along_m, lt.last_fix), |f| (f.along_m, Some(f)));
            (start, current_eta(leg, lt, along_m, fix, start, now))
        } else {
            // An upcoming leg starts when the one before it ends.
            let start = next_start.unwrap_or(planned_start);
            (start, shifted(start, leg.duration_ms()))
        };
        next_start = Some(e);
        out.push((s, e));
    }
    out
}

fn eta_ends(relay: &Relay, rt: &RelayTrack, now: Timestamp) -> Vec<Timestamp> {
    eta_times(relay, rt, now, None)
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// A forward jump faster than the mode allows (plus the fix's uncertainty) since progress last
/// moved is a mismatch (the projection caught another branch of the route), not progress.
/// Measured from the last accepted progress, not the last fix, so a carrier who was off the
/// route for a while is picked up again where they rejoin it.
fn plausible_advance(leg: &Leg, lt: &LegTrack, along_m: f64, ping: &Ping) -> bool {
    let Some(since) = lt.along_t.or(lt.actual_start) else {
        return true;
    };
    #[allow(clippy::cast_precision_loss)]
    let dt_s = (ping.t.as_millisecond() - since.as_millisecond()).max(0) as f64 / 1000.0;
    let (_, max_kmh) = leg.mode.plausible_kmh();
    let slack_m = 100.0 + 3.0 * ping.acc_m.unwrap_or(10.0);
    along_m - lt.along_m <= max_kmh / 3.6 * 1.5 * dt_s + slack_m
}

fn relay_view(
    relay: &Relay,
    rt: &RelayTrack,
    plan: &Plan,
    now: Timestamp,
    as_of: Timestamp,
) -> crate::live::RelayView {
    use crate::live::{LegStatus, LegView, Position, RelayView};
    let cur = rt.current;
    // The last fix spectators may see; with a public delay, progress and ETAs are as of it too,
    // or they would give away where the carrier is now.
    let public_fix = rt
        .legs
        .get(cur)
        .and_then(|lt| lt.recent.iter().rev().find(|f| f.t <= as_of).copied());
    let delayed = as_of < now;
    let times = eta_times(
        relay,
        rt,
        now,
        if delayed {
            Some(public_fix.unwrap_or_else(|| start_fix(relay, rt)))
        } else {
            None
        },
    );
    let legs = relay
        .legs
        .iter()
        .zip(&rt.legs)
        .zip(times)
        .enumerate()
        .map(|(i, ((leg, lt), (eta_start, eta_end)))| {
            let status = if i < cur {
                LegStatus::Done
            } else if i == cur && lt.actual_start.is_some() {
                LegStatus::Current
            } else {
                LegStatus::Upcoming
            };
            let shift = rt.shift_ms(i);
            LegView::new(
                leg,
                shifted(leg.start, shift),
                shifted(leg.end, shift),
                lt.actual_start,
                lt.actual_end,
                eta_start,
                eta_end,
                status,
                if delayed && i == cur {
                    public_fix.map_or(0.0, |f| f.along_m)
                } else {
                    lt.along_m
                },
                lt.off_route_run >= OFF_ROUTE_PINGS,
                i < rt.verified,
            )
        })
        .collect();
    let position = public_fix.map(|fix| Position::new(fix, now, STALE_MS));
    // Silent: a tracked leg whose holder has not reported for a while (or ever, since it began).
    let silent = rt.legs.get(cur).is_some_and(|lt| {
        let leg = &relay.legs[cur];
        let tracked = leg.geometry.route().is_some() || lt.last_fix.is_some();
        let since = lt.last_fix.map(|f| f.t).or(lt.actual_start);
        tracked
            && since.is_some_and(|s| {
                now.as_millisecond() - s.as_millisecond() > plan.event.silent_after_ms
            })
    });
    RelayView::new(relay, cur, legs, position, silent, now)
}

/// A stand-in fix at the start of the current leg, for a delayed view before any public fix.
fn start_fix(relay: &Relay, rt: &RelayTrack) -> Fix {
    let cur = rt.current.min(relay.legs.len().saturating_sub(1));
    let at = relay
        .legs
        .get(cur)
        .map_or(Coord::new(0.0, 0.0), |l| l.geometry.start());
    let t = rt
        .legs
        .get(cur)
        .and_then(|l| l.actual_start)
        .unwrap_or_else(|| {
            relay
                .legs
                .get(cur)
                .map_or(Timestamp::UNIX_EPOCH, |l| l.start)
        });
    Fix {
        t,
        lon: at.lon,
        lat: at.lat,
        acc_m: None,
        along_m: 0.0,
        cross_track_m: 0.0,
    }
}

fn current_eta(
    leg: &Leg,
    lt: &LegTrack,
    along_m: f64,
    fix: Option<Fix>,
    start: Timestamp,
    now: Timestamp,
) -> Timestamp {
    let planned_end = shifted(start, leg.duration_ms());
    let Some(route) = leg.geometry.route() else {
        return planned_end.max(now);
    };
    let remaining_m = (route.length_m() - along_m).max(0.0);
    let speed = lt.pace.blended_mps(planned_speed_ahead_mps(leg, along_m));
    let from = fix.map_or(start, |f| f.t);
    let eta = from
        .checked_add(SignedDuration::from_secs_f64(remaining_m / speed))
        .unwrap_or(planned_end);
    eta.max(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LegStatus, RelayStatus};
    use crate::plan::{NoFiles, parse};

    /// A stage of 4 minutes, then two runners along a straight street in Paris (~1.1 km each).
    const PLAN: &str = r#"
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

    fn tracker() -> Tracker {
        Tracker::new(Arc::new(parse(PLAN, &NoFiles).unwrap()))
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_723_410_000 + s).unwrap() // 2024-08-11T21:00:00Z
    }

    fn ping(s: i64, lon: f64, lat: f64) -> Ping {
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
                    Change::Position { .. } | Change::Proximity { .. } => {}
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
        shuffled.apply_batch(late.iter().map(|(c, p)| (*c, *c, p)));
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
