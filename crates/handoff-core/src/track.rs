//! Live state of every relay, derived only from the plan and the pings (and, later, recorded
//! handoffs): which leg holds the object, how far along it is, whether it is off route, and
//! when every remaining handoff will happen. Deterministic: the state is a function of the set
//! of pings (applied in device-time order) and of `now`, so a late or out-of-order ping gives
//! the same result as if it had come in order, and a restart rebuilds the same state.
//!
//! A leg ends (an inferred handoff) when its holder reaches the exchange point, when a later
//! leg's carrier is seen moving along their own leg (the object has evidently moved on), or,
//! for a leg at a place that nobody tracks (a stage), when its planned duration has run out.

use crate::eta::{PaceWindow, planned_speed_ahead_mps};
use crate::geodesic::{Coord, distance_m};
use crate::ping::Ping;
use crate::plan::{Leg, Plan};
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
    last_fix: Option<Fix>,
    /// Recent fixes, for the delayed public view.
    recent: Vec<Fix>,
    off_route_run: u32,
    pace: PaceWindow,
}

#[derive(Debug, Clone)]
struct RelayTrack {
    /// Every ping of every carrier of this relay, sorted by (t, carrier): the input.
    pings: Vec<(Timestamp, Arc<str>, Ping)>,
    /// How many of `pings` have been applied to `legs`.
    applied: usize,
    current: usize,
    legs: Vec<LegTrack>,
}

impl RelayTrack {
    fn new(n_legs: usize) -> Self {
        Self {
            pings: Vec::new(),
            applied: 0,
            current: 0,
            legs: vec![LegTrack::default(); n_legs],
        }
    }

    fn reset(&mut self) {
        let n = self.legs.len();
        self.applied = 0;
        self.current = 0;
        self.legs = vec![LegTrack::default(); n];
    }
}

/// What a ping did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A carrier's position on their current leg moved.
    Position { relay: String, leg: usize, fix: Fix },
    /// A leg ended and the next one (if any) began.
    Handoff {
        relay: String,
        from_leg: usize,
        to_leg: Option<usize>,
        at: Timestamp,
    },
}

/// The live state of one event.
#[derive(Debug, Clone)]
pub struct Tracker {
    plan: Arc<Plan>,
    relays: Vec<RelayTrack>,
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
        Self {
            plan,
            relays,
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

    /// Applies one ping from a device bound to `carrier`. Pings may come in any order; one that
    /// is older than what its relay has already applied makes that relay replay in order.
    pub fn apply(&mut self, carrier: &str, ping: &Ping) -> Vec<Change> {
        self.apply_batch(std::iter::once((carrier, ping)))
    }

    /// Applies many pings at once (a phone's buffered batch): each relay replays at most once.
    pub fn apply_batch<'a>(
        &mut self,
        pings: impl IntoIterator<Item = (&'a str, &'a Ping)>,
    ) -> Vec<Change> {
        let mut touched: Vec<usize> = Vec::new();
        for (carrier, ping) in pings {
            let Some(legs) = self.carrier_legs.get(carrier) else {
                continue;
            };
            let carrier: Arc<str> = Arc::from(carrier);
            let mut relays: Vec<usize> = legs.iter().map(|(r, _)| *r).collect();
            relays.dedup();
            for ri in relays {
                let rt = &mut self.relays[ri];
                let key = (ping.t, &carrier);
                let pos = rt.pings.partition_point(|(t, c, _)| (*t, c) <= key);
                if pos > 0 && rt.pings[pos - 1].0 == ping.t && rt.pings[pos - 1].1 == carrier {
                    continue; // same device time twice: idempotent
                }
                rt.pings.insert(pos, (ping.t, Arc::clone(&carrier), *ping));
                if pos < rt.applied {
                    rt.reset();
                }
                if !touched.contains(&ri) {
                    touched.push(ri);
                }
            }
        }
        let mut changes = Vec::new();
        for ri in touched {
            self.catch_up(ri, &mut changes);
        }
        changes
    }

    fn catch_up(&mut self, ri: usize, changes: &mut Vec<Change>) {
        let plan = Arc::clone(&self.plan);
        let relay = &plan.relays[ri];
        let rt = &mut self.relays[ri];
        while rt.applied < rt.pings.len() {
            let (t, carrier, ping) = rt.pings[rt.applied].clone();
            rt.applied += 1;
            advance_time(relay, rt, t, changes);
            apply_ping(relay, rt, &carrier, &ping, changes);
        }
    }

    /// Lets time pass with no ping: legs at a place end when their duration runs out.
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
        let delay = if public {
            SignedDuration::from_millis(self.plan.event.public_delay_ms)
        } else {
            SignedDuration::ZERO
        };
        let as_of = now.checked_sub(delay).unwrap_or(now);
        let relays = self
            .plan
            .relays
            .iter()
            .zip(&self.relays)
            .map(|(r, rt)| relay_view(r, rt, now, as_of))
            .collect();
        crate::live::Snapshot::new(&self.plan, now, relays)
    }

    /// The live view of one relay at `now` (what an `eta` update carries).
    #[must_use]
    pub fn relay_view(
        &self,
        relay: &str,
        now: Timestamp,
        public: bool,
    ) -> Option<crate::live::RelayView> {
        let ri = self.plan.relays.iter().position(|r| r.id == relay)?;
        let delay = if public {
            SignedDuration::from_millis(self.plan.event.public_delay_ms)
        } else {
            SignedDuration::ZERO
        };
        let as_of = now.checked_sub(delay).unwrap_or(now);
        Some(relay_view(
            &self.plan.relays[ri],
            &self.relays[ri],
            now,
            as_of,
        ))
    }

    /// Index of the leg holding the object in relay `relay` (== legs.len() when finished).
    #[must_use]
    pub fn current_leg(&self, relay: &str) -> Option<usize> {
        let ri = self.plan.relays.iter().position(|r| r.id == relay)?;
        Some(self.relays[ri].current)
    }
}

/// Starts the first leg at its planned start, and ends legs nobody tracks when their time is up.
fn advance_time(
    relay: &crate::plan::Relay,
    rt: &mut RelayTrack,
    now: Timestamp,
    changes: &mut Vec<Change>,
) {
    loop {
        let i = rt.current;
        let Some(leg) = relay.legs.get(i) else { return };
        if rt.legs[i].actual_start.is_none() {
            if i == 0 && now >= leg.start {
                rt.legs[0].actual_start = Some(leg.start);
            } else {
                return;
            }
        }
        let Some(start) = rt.legs[i].actual_start else {
            return;
        };
        let untracked = leg.geometry.route().is_none() && rt.legs[i].last_fix.is_none();
        let due = start
            .checked_add(SignedDuration::from_millis(leg.duration_ms()))
            .unwrap_or(start);
        if untracked && now >= due {
            end_leg(relay, rt, i, due, changes);
        } else {
            return;
        }
    }
}

fn end_leg(
    relay: &crate::plan::Relay,
    rt: &mut RelayTrack,
    i: usize,
    at: Timestamp,
    changes: &mut Vec<Change>,
) {
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

fn apply_ping(
    relay: &crate::plan::Relay,
    rt: &mut RelayTrack,
    carrier: &str,
    ping: &Ping,
    changes: &mut Vec<Change>,
) {
    let Some(first) = relay.legs.first() else {
        return;
    };
    if ping.t
        < first
            .start
            .checked_sub(SignedDuration::from_millis(EARLY_MS))
            .unwrap_or(first.start)
    {
        return; // before the event: kept in the store, never shown
    }
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
    changes.push(Change::Position {
        relay: relay.id.clone(),
        leg: li,
        fix,
    });
    // Reaching the exchange point ends the leg.
    if let Some(route) = leg.geometry.route() {
        let to_end = distance_m(route.end(), here);
        if lt.along_m >= route.length_m() - leg.exchange_radius_m
            && to_end <= leg.exchange_radius_m.max(limit)
        {
            end_leg(relay, rt, li, ping.t, changes);
        }
    }
}

/// A forward jump faster than the mode allows (plus the fix's uncertainty) is a mismatch
/// (the projection caught another branch of the route), not progress.
fn plausible_advance(leg: &Leg, lt: &LegTrack, along_m: f64, ping: &Ping) -> bool {
    let Some(prev) = lt.last_fix else { return true };
    #[allow(clippy::cast_precision_loss)]
    let dt_s = (ping.t.as_millisecond() - prev.t.as_millisecond()).max(0) as f64 / 1000.0;
    let (_, max_kmh) = leg.mode.plausible_kmh();
    let slack_m = 100.0 + 3.0 * ping.acc_m.unwrap_or(10.0);
    along_m - lt.along_m <= max_kmh / 3.6 * 1.5 * dt_s + slack_m
}

fn relay_view(
    relay: &crate::plan::Relay,
    rt: &RelayTrack,
    now: Timestamp,
    as_of: Timestamp,
) -> crate::live::RelayView {
    use crate::live::{LegStatus, LegView, Position, RelayView};
    let cur = rt.current;
    let mut legs = Vec::with_capacity(relay.legs.len());
    // ETA propagation: the current leg's end from pace, each later leg its planned duration on.
    let mut next_start: Option<Timestamp> = None;
    for (i, (leg, lt)) in relay.legs.iter().zip(&rt.legs).enumerate() {
        let status = if i < cur {
            LegStatus::Done
        } else if i == cur && lt.actual_start.is_some() {
            LegStatus::Current
        } else {
            LegStatus::Upcoming
        };
        let (eta_start, eta_end) = match status {
            LegStatus::Done => (
                lt.actual_start.unwrap_or(leg.start),
                lt.actual_end.unwrap_or(leg.end),
            ),
            LegStatus::Current => {
                let start = lt.actual_start.unwrap_or(leg.start);
                (start, current_eta(leg, lt, start, now))
            }
            LegStatus::Upcoming => {
                let start = next_start.unwrap_or(leg.start);
                (
                    start,
                    start
                        .checked_add(SignedDuration::from_millis(leg.duration_ms()))
                        .unwrap_or(start),
                )
            }
        };
        next_start = Some(eta_end);
        legs.push(LegView::new(
            leg,
            lt.actual_start,
            lt.actual_end,
            eta_start,
            eta_end,
            status,
            lt.along_m,
            lt.off_route_run >= OFF_ROUTE_PINGS,
        ));
    }
    let position = rt.legs.get(cur).and_then(|lt| {
        let fix = lt.recent.iter().rev().find(|f| f.t <= as_of).copied()?;
        let leg = &relay.legs[cur];
        Some(Position::new(fix, leg, now, STALE_MS))
    });
    RelayView::new(relay, cur, legs, position, now)
}

fn current_eta(leg: &Leg, lt: &LegTrack, start: Timestamp, now: Timestamp) -> Timestamp {
    let planned_end = start
        .checked_add(SignedDuration::from_millis(leg.duration_ms()))
        .unwrap_or(start);
    let Some(route) = leg.geometry.route() else {
        return planned_end.max(now);
    };
    let remaining_m = (route.length_m() - lt.along_m).max(0.0);
    let speed = lt
        .pace
        .blended_mps(planned_speed_ahead_mps(leg, lt.along_m));
    let from = lt.last_fix.map_or(start, |f| f.t);
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
            for ch in tr.apply(c, &p) {
                match ch {
                    Change::Handoff { from_leg, .. } => {
                        handoffs += 1;
                        assert_eq!(from_leg, 1);
                    }
                    Change::Position { leg: 1, fix, .. } => {
                        assert!(fix.along_m >= last_along, "progress ran backwards");
                        last_along = fix.along_m;
                    }
                    Change::Position { .. } => {}
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
            in_order.apply(c, &p);
        }
        let mut shuffled = tracker();
        let mut pings = walk();
        // A deterministic shuffle: reverse chunks, and hold 10 pings back as a late batch.
        let late: Vec<_> = pings.drain(5..15).collect();
        for chunk in pings.chunks(7).rev() {
            for (c, p) in chunk {
                shuffled.apply(c, p);
            }
        }
        shuffled.apply_batch(late.iter().map(|(c, p)| (*c, p)));
        let now = t(800);
        assert_eq!(in_order.snapshot(now, false), shuffled.snapshot(now, false));
    }

    #[test]
    fn a_later_carrier_moving_on_ends_the_missed_handoff() {
        let mut tr = tracker();
        tr.tick(t(241));
        tr.apply("Ann", &ping(250, 2.3510, 48.85));
        // Ann's phone dies; Bob is seen 300 m into leg 3.
        let ch = tr.apply("Bob", &ping(700, 2.3691, 48.85));
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
        assert!(tr.apply("Ann", &ping(-3600, 2.35, 48.85)).is_empty());
        assert!(tr.apply("Zed", &ping(300, 2.35, 48.85)).is_empty());
        for k in 0..3 {
            tr.apply("Ann", &ping(300 + k * 10, 2.355, 48.853)); // ~330 m north of the street
        }
        let snap = tr.snapshot(t(330), false);
        assert!(snap.relay("r").unwrap().off_route);
        tr.apply("Ann", &ping(340, 2.356, 48.8500));
        assert!(!tr.snapshot(t(345), false).relay("r").unwrap().off_route);
    }

    #[test]
    fn public_view_lags_by_the_public_delay() {
        let plan = PLAN.replace("name = \"T\"", "name = \"T\"\npublic_delay = \"30s\"");
        let mut tr = Tracker::new(Arc::new(parse(&plan, &NoFiles).unwrap()));
        tr.tick(t(241));
        tr.apply("Ann", &ping(250, 2.3510, 48.85));
        tr.apply("Ann", &ping(270, 2.3530, 48.85));
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
    }
}
