//! One relay's derived state and the step that applies one input to it. The state is a plain
//! value ([`RelayState`]): cloning it is cheap (each leg's track sits behind an `Arc` and is
//! copied only when written), which is what lets the tracker keep checkpoints and replay from
//! them. Time moves as a discrete-event fold ([`advance_time`]): between two inputs the only
//! things that happen are recorded handoffs taking effect, shifts becoming known, the first leg
//! starting and untracked legs (a stage) running out, each at its own instant, in order.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::eta::{PaceEvidence, PaceWindow, stopped_below_mps};
use crate::geodesic::{Coord, distance_m};
use crate::ping::Ping;
use crate::plan::{Leg, Relay};

use super::approach::{Approach, closest_on_path};
use super::{Change, EndCause, Fix, Shift};

/// Consecutive pings beyond the off-route distance before a carrier is flagged off route.
pub const OFF_ROUTE_PINGS: u32 = 3;
/// Pings this long before a relay's planned start are of no use (warming up, travelling there).
const EARLY_MS: i64 = 10 * 60_000;
/// Giver and receiver at the exchange point within this long of each other: a proximity handoff.
pub const PROXIMITY_WINDOW_MS: i64 = 120_000;
/// Fixes of the current leg kept for the delayed public view.
const RECENT_FIXES: usize = 64;

/// What one leg has seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct LegTrack {
    pub actual_start: Option<Timestamp>,
    pub actual_end: Option<Timestamp>,
    /// When a verified handoff (recorded or proximity) ended this leg.
    pub verified_at: Option<Timestamp>,
    /// How the leg's end is known (set when it ends).
    pub ended_by: Option<EndCause>,
    pub along_m: f64,
    /// When `along_m` last moved forward (or the leg began): the base of the plausibility check.
    pub along_t: Option<Timestamp>,
    pub last_fix: Option<Fix>,
    /// Recent fixes, for the delayed public view (emptied when the leg ends).
    pub recent: Vec<Fix>,
    /// The holder's closest approach to the leg's end, once in its end zone.
    pub approach: Option<Approach>,
    pub off_route_run: u32,
    /// The device time of the first ping of the current run off the route (`None` while on it).
    pub off_route_since: Option<Timestamp>,
    pub pace: PaceWindow,
    /// The carrier's pace over the whole leg so far: what the current leg's ETA is made of.
    pub evidence: PaceEvidence,
    /// (when predicted, predicted end) in milliseconds, for ETA accuracy.
    pub predictions: Vec<(i64, i64)>,
}

/// Legs per shared chunk of [`Legs`].
const CHUNK: usize = 32;

/// Every leg's track, copy-on-write at two levels (chunks of legs, then legs): cloning the
/// state for a checkpoint copies one pointer per 32 legs, and writing a leg copies its chunk's
/// pointers and that leg only. A torch relay has 10,000 legs.
#[derive(Debug, Clone)]
pub(crate) struct Legs {
    chunks: Vec<Arc<Vec<Arc<LegTrack>>>>,
    len: usize,
}

impl Legs {
    fn new(n: usize) -> Self {
        let blank = Arc::new(LegTrack::default());
        let chunks = (0..n.div_ceil(CHUNK))
            .map(|c| Arc::new(vec![Arc::clone(&blank); CHUNK.min(n - c * CHUNK)]))
            .collect();
        Self { chunks, len: n }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, i: usize) -> Option<&LegTrack> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).map(|l| &**l)
    }

    fn make_mut(&mut self, i: usize) -> &mut LegTrack {
        Arc::make_mut(&mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK])
    }

    pub fn iter(&self) -> impl Iterator<Item = &LegTrack> {
        self.chunks.iter().flat_map(|c| c.iter().map(|l| &**l))
    }

    /// The shared chunks, for saving the state with its sharing ([`super::saved`]).
    pub fn chunks(&self) -> &[Arc<Vec<Arc<LegTrack>>>] {
        &self.chunks
    }

    /// Legs made of saved chunks: `None` unless every chunk but the last is full and they hold
    /// `len` legs in all.
    pub fn from_chunks(chunks: Vec<Arc<Vec<Arc<LegTrack>>>>, len: usize) -> Option<Self> {
        let full = chunks.iter().rev().skip(1).all(|c| c.len() == CHUNK);
        let last_ok = chunks.last().is_none_or(|c| (1..=CHUNK).contains(&c.len()));
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        (full && last_ok && total == len).then_some(Self { chunks, len })
    }
}

impl std::ops::Index<usize> for Legs {
    type Output = LegTrack;
    fn index(&self, i: usize) -> &LegTrack {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// A device seen inside an exchange radius.
#[derive(Debug, Clone)]
pub(crate) struct Near {
    pub t: Timestamp,
    pub device: Arc<str>,
    pub distance_m: f64,
}

/// The derived state of one relay: a function of the inputs applied so far.
#[derive(Debug, Clone)]
pub(crate) struct RelayState {
    pub current: usize,
    /// Legs below this have a verified end (recorded or proximity).
    pub verified: usize,
    pub giver_near: Option<Near>,
    pub receiver_near: Option<Near>,
    pub last_prediction_ms: Option<i64>,
    /// How many of the relay's recorded handoffs and shifts (each sorted by time) are applied.
    pub recorded_applied: usize,
    pub shifts_applied: usize,
    /// The latest instant a time-driven event took effect at (a recorded handoff, a shift, the
    /// first leg's start, a stage running out). A ping older than it arrived too late to be
    /// applied on top: the relay replays from a checkpoint before it.
    pub transition_t: Option<Timestamp>,
    pub legs: Legs,
}

impl RelayState {
    pub fn new(n_legs: usize) -> Self {
        Self {
            current: 0,
            verified: 0,
            giver_near: None,
            receiver_near: None,
            last_prediction_ms: None,
            recorded_applied: 0,
            shifts_applied: 0,
            transition_t: None,
            legs: Legs::new(n_legs),
        }
    }

    /// Leg `i`'s track, for writing (copied first if a checkpoint shares it).
    pub fn leg_mut(&mut self, i: usize) -> &mut LegTrack {
        self.legs.make_mut(i)
    }

    fn transition(&mut self, at: Timestamp) {
        self.transition_t = Some(self.transition_t.map_or(at, |t| t.max(at)));
    }
}

/// The inputs a step reads besides the ping: the plan's relay, the recorded handoffs (from
/// leg, at) sorted by time, and the shifts sorted by time.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub relay: &'a Relay,
    pub recorded: &'a [(usize, Timestamp)],
    pub shifts: &'a [Shift],
    /// How each recorded handoff was verified (by the leg it ends): read by the view only.
    pub methods: &'a std::collections::HashMap<usize, crate::custody::Method>,
}

impl Ctx<'_> {
    /// Milliseconds the plan of leg `i` moved by, counting the first `known` shifts.
    pub fn shift_ms(&self, i: usize, known: usize) -> i64 {
        self.shifts
            .iter()
            .take(known)
            .filter(|s| i >= s.from_leg)
            .map(|s| s.ms)
            .sum()
    }

    /// Milliseconds of delay announced for leg `i` while it was in progress (from `since`),
    /// counting the first `known` shifts.
    pub fn held_ms(&self, i: usize, since: Timestamp, known: usize) -> i64 {
        self.shifts
            .iter()
            .take(known)
            .filter(|s| i >= s.from_leg && s.at >= since)
            .map(|s| s.ms)
            .sum()
    }
}

pub(crate) fn shifted(t: Timestamp, ms: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_millis(ms)).unwrap_or(t)
}

/// The next time-driven event of a relay at or before `now`.
enum Due {
    Recorded(usize, Timestamp),
    Shift(Timestamp),
    Start(Timestamp),
    End(usize, Timestamp),
}

fn next_due(cx: Ctx<'_>, st: &RelayState, now: Timestamp, before: bool) -> Option<Due> {
    let mut best: Option<(Timestamp, Due)> = None;
    let mut consider = |at: Timestamp, d: Due| {
        let due = if before { at < now } else { at <= now };
        if due && best.as_ref().is_none_or(|(b, _)| at < *b) {
            best = Some((at, d));
        }
    };
    // At equal instants the earlier-listed wins: recorded handoffs, then shifts, then the plan.
    if let Some(&(leg, at)) = cx.recorded.get(st.recorded_applied) {
        consider(at, Due::Recorded(leg, at));
    }
    if let Some(s) = cx.shifts.get(st.shifts_applied) {
        consider(s.at, Due::Shift(s.at));
    }
    let i = st.current;
    if let Some(leg) = cx.relay.legs.get(i) {
        match st.legs[i].actual_start {
            None if i == 0 => {
                let start = shifted(leg.start, cx.shift_ms(0, st.shifts_applied));
                consider(start, Due::Start(start));
            }
            None => {}
            Some(start) => {
                let untracked = leg.geometry.route().is_none() && st.legs[i].last_fix.is_none();
                if untracked {
                    let due = untracked_end(cx, i, start, st.shifts_applied);
                    consider(due, Due::End(i, due));
                }
            }
        }
    }
    best.map(|(_, d)| d)
}

/// When an untracked leg (a stage) that began at `start` runs out: its planned duration plus
/// the delays announced while it was on.
pub(crate) fn untracked_end(cx: Ctx<'_>, i: usize, start: Timestamp, known: usize) -> Timestamp {
    let leg = &cx.relay.legs[i];
    shifted(start, leg.duration_ms() + cx.held_ms(i, start, known))
}

/// Lets time pass up to `now`, one event at a time. With `before`, only the events strictly
/// before `now` (time passing up to a ping: a ping goes before the events of its own instant,
/// so a handoff found by that very ping and later recorded at its time changes nothing).
pub(crate) fn advance_time(
    cx: Ctx<'_>,
    st: &mut RelayState,
    now: Timestamp,
    before: bool,
    changes: &mut Vec<Change>,
) {
    while let Some(due) = next_due(cx, st, now, before) {
        match due {
            Due::Recorded(leg, at) => {
                st.recorded_applied += 1;
                st.transition(at);
                verified_end(cx, st, leg, at, changes);
            }
            Due::Shift(at) => {
                st.shifts_applied += 1;
                st.transition(at);
            }
            Due::Start(at) => {
                st.transition(at);
                st.leg_mut(0).actual_start = Some(at);
            }
            Due::End(i, at) => {
                st.transition(at);
                end_leg(cx.relay, st, i, at, EndCause::PlannedTime, changes);
            }
        }
    }
}

/// A verified handoff from leg `from` at `at`: the live view catches up if it was behind, or
/// takes the verified time if it had already moved on by inference.
fn verified_end(
    cx: Ctx<'_>,
    st: &mut RelayState,
    from: usize,
    at: Timestamp,
    changes: &mut Vec<Change>,
) {
    let relay = cx.relay;
    if from >= relay.legs.len() {
        return;
    }
    if st.legs[from].verified_at == Some(at) {
        // Verified already at this very instant (proximity found it, then the log recorded it).
        return;
    }
    if st.current <= from {
        let cur = st.current;
        if st.legs[cur].actual_start.is_none() {
            let planned = shifted(relay.legs[cur].start, cx.shift_ms(cur, st.shifts_applied));
            st.leg_mut(cur).actual_start = Some(at.min(planned));
        }
        for k in cur..=from {
            end_leg(relay, st, k, at, EndCause::Verified { leg: from }, changes);
        }
    } else {
        let lt = st.leg_mut(from);
        lt.actual_end = Some(at);
        lt.ended_by = Some(EndCause::Verified { leg: from });
        if from + 1 < st.legs.len() {
            st.leg_mut(from + 1).actual_start = Some(at);
        }
    }
    st.leg_mut(from).verified_at = Some(at);
    st.verified = st.verified.max(from + 1);
    st.giver_near = None;
    st.receiver_near = None;
}

pub(crate) fn end_leg(
    relay: &Relay,
    st: &mut RelayState,
    i: usize,
    at: Timestamp,
    by: EndCause,
    changes: &mut Vec<Change>,
) {
    let routed = relay
        .legs
        .get(i)
        .and_then(|l| l.geometry.route().map(|_| l.length_m()));
    let lt = st.leg_mut(i);
    lt.actual_end = Some(at);
    lt.ended_by = Some(by);
    if let Some(len) = routed {
        lt.along_m = len;
    }
    // A finished leg keeps its summary; the working set goes.
    lt.recent = Vec::new();
    lt.pace.clear();
    st.current = i + 1;
    let to_leg = (i + 1 < relay.legs.len()).then_some(i + 1);
    if let Some(n) = to_leg {
        st.leg_mut(n).actual_start = Some(at);
    }
    changes.push(Change::Handoff {
        relay: relay.id.clone(),
        from_leg: i,
        to_leg,
        at,
        by,
    });
}

pub(crate) fn off_route_limit_m(acc_m: Option<f64>) -> f64 {
    (2.0 * acc_m.unwrap_or(0.0)).max(50.0)
}

/// Proximity: the giver's and the receiver's devices inside the exchange radius of the first
/// unverified exchange point, within two minutes of each other. That point is the end of the
/// stint custody is in: a change of mode by the same carriers is no exchange (the one phone
/// would otherwise meet itself there).
fn proximity(
    cx: Ctx<'_>,
    st: &mut RelayState,
    carrier: &str,
    device: &Arc<str>,
    ping: &Ping,
    changes: &mut Vec<Change>,
) {
    let relay = cx.relay;
    let p = relay.stint_end(st.verified);
    let (Some(giver), Some(receiver)) = (relay.legs.get(p), relay.legs.get(p + 1)) else {
        return;
    };
    let is_giver = giver.carriers.iter().any(|c| c == carrier);
    let is_receiver = receiver.carriers.iter().any(|c| c == carrier);
    if !is_giver && !is_receiver {
        return;
    }
    let here = Coord::new(ping.lon, ping.lat);
    let d = distance_m(giver.exchange_point(), here);
    if d <= giver.exchange_radius_m {
        let near = Near {
            t: ping.t,
            device: Arc::clone(device),
            distance_m: d,
        };
        if is_giver {
            st.giver_near = Some(near.clone());
        }
        if is_receiver {
            st.receiver_near = Some(near);
        }
    }
    // The receiver setting off along their own leg: the giver has evidently arrived.
    let moving_on = is_receiver && clear_along(receiver, here, ping);
    confirm_proximity(cx, st, moving_on, ping.t, changes);
}

/// Records the proximity handoff at the first unverified exchange once both devices were
/// there and the giver's approach is over (the leg ended, the giver at the point or leaving
/// it, or the receiver setting off), at `t`: the fix that shows it. A receiver waiting at the
/// exchange confirms it when the giver reaches the point, not when the giver enters the
/// radius. A leg with no route (a stage) has no approach: both being there is enough.
///
/// The time is that fix's, never earlier: the custody log records it, and a recorded handoff
/// takes effect at its time in the fold, so it must be a time the fold reaches in order (a ping
/// goes before the events of its own instant). The closest approach may be a few seconds
/// before it; an unverified end ([`EndCause::Positions`]) is stamped there.
fn confirm_proximity(
    cx: Ctx<'_>,
    st: &mut RelayState,
    moving_on: bool,
    t: Timestamp,
    changes: &mut Vec<Change>,
) {
    let relay = cx.relay;
    let p = relay.stint_end(st.verified);
    let Some(giver) = relay.legs.get(p) else {
        return;
    };
    let (Some(g), Some(r)) = (&st.giver_near, &st.receiver_near) else {
        return;
    };
    if (g.t.as_millisecond() - r.t.as_millisecond()).abs() > PROXIMITY_WINDOW_MS {
        return;
    }
    let over = giver.geometry.route().is_none()
        || st.current > p
        || moving_on
        || st.legs[p].approach.is_some_and(|a| a.over);
    if !over {
        return;
    }
    let at = t;
    let change = Change::Proximity {
        relay: relay.id.clone(),
        from_leg: p,
        at,
        giver_device: g.device.to_string(),
        receiver_device: r.device.to_string(),
        distance_m: g.distance_m.max(r.distance_m),
        position: giver.exchange_point(),
    };
    verified_end(cx, st, p, at, changes);
    changes.push(change);
}

/// Progress faster than the mode allows (plus the fix's uncertainty) is a mismatch (the
/// projection caught another branch of the route), not progress. The speed is bounded over
/// time, not per step: against every point where progress last moved forward within the pace
/// window (and the leg's start), so ten pings a second cannot each add the slack. Measured
/// from accepted progress, not the last fix, so a carrier who was off the route for a while
/// is picked up again where they rejoin it.
fn plausible_advance(leg: &Leg, lt: &LegTrack, along_m: f64, ping: &Ping) -> bool {
    let (_, max_kmh) = leg.mode.plausible_kmh();
    let max_mps = max_kmh / 3.6 * 1.5;
    let slack_m = 100.0 + 3.0 * ping.acc_m.unwrap_or(10.0);
    let t_ms = ping.t.as_millisecond();
    let within = |since_ms: i64, from_m: f64| {
        #[allow(clippy::cast_precision_loss)]
        let dt_s = (t_ms - since_ms).max(0) as f64 / 1000.0;
        along_m - from_m <= max_mps * dt_s + slack_m
    };
    let mut anchors: Vec<(i64, f64)> = Vec::new();
    if let Some(start) = lt.actual_start {
        anchors.push((start.as_millisecond(), 0.0));
    }
    let mut before: Option<f64> = None;
    for (t, a) in lt.pace.samples() {
        if before.is_none_or(|b| a > b) {
            anchors.push((t, a));
        }
        before = Some(a);
    }
    if let Some(since) = lt.along_t {
        anchors.push((since.as_millisecond(), lt.along_m));
    }
    anchors.iter().all(|&(t, a)| within(t, a))
}

/// Applies one ping of `carrier`'s `device` (time has already been advanced to it).
pub(crate) fn apply_ping(
    cx: Ctx<'_>,
    st: &mut RelayState,
    carrier: &str,
    device: &Arc<str>,
    ping: &Ping,
    changes: &mut Vec<Change>,
) {
    let relay = cx.relay;
    let Some(first) = relay.legs.first() else {
        return;
    };
    if ping.t < shifted(first.start, cx.shift_ms(0, st.shifts_applied) - EARLY_MS) {
        return; // before the event: kept in the store, never shown
    }
    proximity(cx, st, carrier, device, ping, changes);
    // The carrier's legs from the current one on; a later one means the object moved on.
    let cur = st.current;
    let Some(first) = relay
        .legs
        .iter()
        .skip(cur)
        .position(|l| l.carriers.iter().any(|c| c == carrier))
        .map(|k| k + cur)
    else {
        return; // after their last leg, or they hold nothing in this relay now
    };
    let here = Coord::new(ping.lon, ping.lat);
    // Within a stint (one carrier, several modes) the ping may be on a later segment: the
    // carrier is seen along the flight's route, clear of its start, so the motorcycle is over.
    let li = (first + 1..=relay.stint_end(first))
        .rev()
        .find(|&k| clear_along(&relay.legs[k], here, ping))
        .unwrap_or(first);
    let leg = &relay.legs[li];
    if st.legs[cur].actual_start.is_none() {
        // The relay has not begun (time has been advanced to the ping: its first leg starts at
        // its planned time): a carrier's phone on the way there, or at home, neither starts it
        // nor shows where they are.
        return;
    }
    if li > cur {
        // A later carrier (or the holder on a later segment of their stint) moving along
        // their own leg, clear of its start: earlier legs are over.
        if clear_along(leg, here, ping) {
            for k in cur..li {
                // Where the holder came closest to the exchange, if they were seen near it.
                let at = st.legs[k]
                    .approach
                    .map_or(ping.t, |a| a.t)
                    .max(st.legs[k].actual_start.unwrap_or(ping.t))
                    .min(ping.t);
                end_leg(relay, st, k, at, EndCause::Positions, changes);
            }
        } else {
            return;
        }
    }
    let lt = st.leg_mut(li);
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
        lt.off_route_since.get_or_insert(ping.t);
    } else {
        lt.off_route_run = 0;
        lt.off_route_since = None;
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
        on_course: cross_m <= super::public_corridor_m(leg.mode, ping.acc_m),
    };
    lt.recent.push(fix);
    if lt.recent.len() > RECENT_FIXES {
        lt.recent.drain(..RECENT_FIXES / 2);
    }
    lt.pace.push(ping.t.as_millisecond(), lt.along_m);
    lt.evidence.push(
        ping.t.as_millisecond(),
        lt.along_m,
        stopped_below_mps(leg.mode),
        |a, b| crate::eta::flat_m(leg, a, b),
    );
    let length_m = leg.length_m();
    let fraction = if length_m > 0.0 {
        (lt.along_m / length_m).clamp(0.0, 1.0)
    } else {
        0.0
    };
    // The end zone: most of the leg done, near its end. The leg ends at the closest approach.
    let prev_fix = lt.last_fix;
    if let Some(route) = leg.geometry.route() {
        let end = route.end();
        let here_m = distance_m(end, here);
        let inside = lt.along_m >= route.length_m() - leg.exchange_radius_m
            && here_m <= leg.exchange_radius_m.max(limit);
        let candidate = closest_on_path(
            prev_fix.map(|f| (f.t, Coord::new(f.lon, f.lat))),
            (ping.t, here),
            end,
        );
        lt.approach = Approach::step(lt.approach, inside, here_m, candidate, ping.acc_m);
    }
    lt.last_fix = Some(fix);
    let reached_end = lt
        .approach
        .filter(|a| a.over)
        .map(|a| a.t.max(lt.actual_start.unwrap_or(a.t)));
    changes.push(Change::Position {
        relay: relay.id.clone(),
        leg: li,
        fix,
        fraction,
    });
    super::predict::record_predictions(cx, st, ping.t);
    // Reaching the exchange point ends the leg (at the closest approach), and may complete a
    // proximity handoff with a receiver already there.
    if let Some(at) = reached_end {
        end_leg(relay, st, li, at, EndCause::Positions, changes);
        confirm_proximity(cx, st, false, ping.t, changes);
    }
}

/// Whether a ping is on `leg`'s route, clear of its start: its carrier is evidently on it.
fn clear_along(leg: &Leg, here: Coord, ping: &Ping) -> bool {
    let Some(route) = leg.geometry.route() else {
        return false;
    };
    let p = route.project(here, Some(0.0));
    let limit = off_route_limit_m(ping.acc_m);
    p.along_m > leg.exchange_radius_m.max(limit) && p.cross_track_m <= limit
}

/// Whether a late ping of `carrier` can change the fold, given the checkpoints before and
/// after it (`after` may be the live state: any state of the fold without it, later in time,
/// whose current leg and verified count bound those at the ping's time). Only a possible holder at that time, a giver or receiver inside
/// the exchange radius of a possibly-next exchange, or a later carrier on their own route clear
/// of its start can; anybody else's late ping (the runner waiting in the van) changes nothing.
pub(crate) fn may_affect(
    relay: &Relay,
    before: &RelayState,
    after: &RelayState,
    carrier: &str,
    ping: &Ping,
) -> bool {
    let legs: Vec<usize> = relay
        .legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.carriers.iter().any(|c| c == carrier))
        .map(|(i, _)| i)
        .collect();
    if legs
        .iter()
        .any(|&i| i >= before.current && i <= after.current)
    {
        return true;
    }
    let here = Coord::new(ping.lon, ping.lat);
    let last = relay.legs.len().saturating_sub(1);
    for p in before.verified..=after.verified.min(last) {
        // The exchange is at the end of the stint (see `proximity`).
        let p = relay.stint_end(p).min(last);
        let takes_part = legs.contains(&p) || legs.contains(&(p + 1));
        let giver = &relay.legs[p];
        if takes_part && distance_m(giver.exchange_point(), here) <= giver.exchange_radius_m {
            return true;
        }
    }
    let limit = off_route_limit_m(ping.acc_m);
    legs.iter().filter(|&&i| i > before.current).any(|&i| {
        let leg = &relay.legs[i];
        leg.geometry.route().is_some_and(|route| {
            let p = route.project(here, Some(0.0));
            p.along_m > leg.exchange_radius_m.max(limit) && p.cross_track_m <= limit
        })
    })
}
