//! The live view as spectators and operators read it (`GET …/live`, the SSE `snapshot`): per
//! relay the current leg, holders, last position with its age, progress, off-route and stale
//! flags, and the ETA of every remaining handoff; and the countdowns to the milestones.
//!
//! Two shapes of leg: [`LegView`], everything about a leg, and [`LegLive`], only what changes
//! while the relay runs (status, ETAs, actual times, how far a shift moved it). The rest
//! (carriers, mode, length, planned times) is in the plan, so the event-wide document sends
//! `LegLive`s: for a 1,000-team race that is most of its size. Values are kept exact here and
//! rounded only as they are written out ([`wire`]): an ETA to the second, an instant to the
//! millisecond, a distance to 0.1 m.

use crate::plan::{Leg, Mode, Plan, Relay};
use crate::track::Fix;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// The live view of an event, with legs of type `L` ([`LegView`] or [`LegLive`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot<L = LegView> {
    pub event: String,
    pub name: String,
    #[serde(serialize_with = "wire::milli")]
    pub now: Timestamp,
    pub relays: Vec<RelayView<L>>,
    pub countdowns: Vec<CountdownView>,
}

impl Snapshot {
    #[must_use]
    pub fn new(plan: &Plan, now: Timestamp, relays: Vec<RelayView>) -> Self {
        let countdowns = crate::schedule::countdowns(plan, now)
            .into_iter()
            .map(|c| CountdownView {
                name: c.name,
                at: c.at,
                date: c.date,
                timezone: c.timezone,
                remaining_s: c.remaining.as_secs(),
            })
            .collect();
        Self {
            event: plan.event.id.clone(),
            name: plan.event.name.clone(),
            now,
            relays,
            countdowns,
        }
    }

    /// The same view with only the live part of each leg.
    #[must_use]
    pub fn compact(self) -> Snapshot<LegLive> {
        Snapshot {
            event: self.event,
            name: self.name,
            now: self.now,
            relays: self.relays.into_iter().map(RelayView::compact).collect(),
            countdowns: self.countdowns,
        }
    }
}

impl<L> Snapshot<L> {
    #[must_use]
    pub fn relay(&self, id: &str) -> Option<&RelayView<L>> {
        self.relays.iter().find(|r| r.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountdownView {
    pub name: String,
    pub at: Timestamp,
    /// Set when the milestone is a day, not an instant (`at` is the start of it in `timezone`):
    /// pages show the date, with its year, and no time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<jiff::civil::Date>,
    pub timezone: String,
    pub remaining_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayStatus {
    Planned,
    Running,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayView<L = LegView> {
    pub id: String,
    pub name: String,
    pub object: String,
    pub status: RelayStatus,
    /// Index of the leg holding the object (absent before the start and after the finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_leg: Option<usize>,
    pub holders: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The holder's last public position (none while nobody holds it or it is not yet public).
    pub position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub off_route: bool,
    pub overdue: bool,
    /// The holder of a tracked leg has not reported for the event's `silent_after`.
    pub silent: bool,
    /// The ETA of the finish (the last leg's end).
    #[serde(serialize_with = "wire::second")]
    pub eta_finish: Timestamp,
    #[serde(serialize_with = "wire::milli")]
    pub planned_finish: Timestamp,
    /// The relay's custody log failed verification when the server started: its handoffs are
    /// as far as the log verified, and it takes no new entry until an operator repairs it.
    /// (Present only then.)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub custody_unverified: bool,
    pub legs: Vec<L>,
}

impl RelayView {
    #[must_use]
    pub fn new(
        relay: &Relay,
        current: usize,
        legs: Vec<LegView>,
        position: Option<Position>,
        silent: bool,
        now: Timestamp,
    ) -> Self {
        let cur = legs.get(current).filter(|l| l.status == LegStatus::Current);
        let status = if current >= relay.legs.len() {
            RelayStatus::Finished
        } else if cur.is_some() {
            RelayStatus::Running
        } else {
            RelayStatus::Planned
        };
        let eta_finish = legs.last().map_or(now, |l| l.eta_end);
        let planned_finish = legs.last().map_or(now, |l| l.planned_end);
        Self {
            id: relay.id.clone(),
            name: relay.name.clone(),
            object: relay.object.clone(),
            status,
            current_leg: cur.map(|l| l.index),
            holders: cur.map(|l| l.carriers.clone()).unwrap_or_default(),
            mode: cur.map(|l| l.mode),
            position: if cur.is_some() { position } else { None },
            progress: cur.map(|l| Progress {
                along_m: l.along_m,
                length_m: l.length_m,
                fraction: l.fraction(),
            }),
            off_route: cur.is_some_and(|l| l.off_route),
            overdue: cur.is_some_and(|l| l.overdue(now)),
            silent: cur.is_some() && silent,
            eta_finish,
            planned_finish,
            custody_unverified: false,
            legs,
        }
    }

    /// The same view with only the live part of each leg.
    #[must_use]
    pub fn compact(self) -> RelayView<LegLive> {
        RelayView {
            id: self.id,
            name: self.name,
            object: self.object,
            status: self.status,
            current_leg: self.current_leg,
            holders: self.holders,
            mode: self.mode,
            position: self.position,
            progress: self.progress,
            off_route: self.off_route,
            overdue: self.overdue,
            silent: self.silent,
            eta_finish: self.eta_finish,
            planned_finish: self.planned_finish,
            custody_unverified: self.custody_unverified,
            legs: live_legs(&self.legs),
        }
    }
}

/// The live part of each of a relay's legs (in order).
#[must_use]
pub fn live_legs(legs: &[LegView]) -> Vec<LegLive> {
    let mut prev = None;
    legs.iter()
        .map(|l| {
            let live = l.live(prev);
            prev = Some(l);
            live
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    #[serde(serialize_with = "wire::decimetre")]
    pub along_m: f64,
    #[serde(serialize_with = "wire::decimetre")]
    pub length_m: f64,
    #[serde(serialize_with = "wire::fraction")]
    pub fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    #[serde(serialize_with = "wire::milli")]
    pub t: Timestamp,
    pub lon: f64,
    pub lat: f64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::decimetre_opt"
    )]
    pub acc_m: Option<f64>,
    pub age_s: i64,
    pub stale: bool,
}

impl Position {
    #[must_use]
    pub fn new(fix: Fix, now: Timestamp, stale_ms: i64) -> Self {
        let age_ms = (now.as_millisecond() - fix.t.as_millisecond()).max(0);
        Self {
            t: fix.t,
            lon: fix.lon,
            lat: fix.lat,
            acc_m: fix.acc_m,
            age_s: age_ms / 1000,
            stale: age_ms > stale_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LegStatus {
    Done,
    Current,
    Upcoming,
}

/// Everything about one leg (`/live?legs=full`, and what the exports read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegView {
    pub index: usize,
    pub carriers: Vec<String>,
    pub mode: Mode,
    pub status: LegStatus,
    /// The plan's times, moved by the operator's shifts.
    #[serde(serialize_with = "wire::milli")]
    pub planned_start: Timestamp,
    #[serde(serialize_with = "wire::milli")]
    pub planned_end: Timestamp,
    /// How far the operator's shifts moved this leg's planned times, seconds (absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub shift_s: i64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::milli_opt"
    )]
    pub actual_start: Option<Timestamp>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::milli_opt"
    )]
    pub actual_end: Option<Timestamp>,
    /// Predicted (or, once done, actual) start and end.
    #[serde(serialize_with = "wire::second")]
    pub eta_start: Timestamp,
    #[serde(serialize_with = "wire::second")]
    pub eta_end: Timestamp,
    /// The band around `eta_end` meant to hold the real end four times out of five (10th to
    /// 90th percentile of the errors this relay and the evaluation showed); absent once done.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::second_opt"
    )]
    pub eta_lo: Option<Timestamp>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::second_opt"
    )]
    pub eta_hi: Option<Timestamp>,
    /// ETA minus plan at the leg's end, seconds (positive = late).
    pub delta_s: i64,
    #[serde(serialize_with = "wire::decimetre")]
    pub along_m: f64,
    #[serde(serialize_with = "wire::decimetre")]
    pub length_m: f64,
    pub off_route: bool,
    /// Done, and custody up to its end is verified: its end is a verified handoff in the
    /// custody log (not only inferred), or, for a `segment`, the stint's handoff after it is.
    pub verified: bool,
    /// How the end of a done leg is known (absent until it is done): see [`EndedBy`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
    /// The next leg has the same carriers: this leg's end is a change of mode within one stint
    /// of custody, not a handoff (absent when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub segment: bool,
}

/// How a done leg's end is known: verified (`operator`, `two_party`, `proximity`: the custody
/// log's evidence, or proximity the server found and is recording) or assumed (`planned_time`:
/// a leg nobody tracks, such as a stage, ran out of planned time; `positions`: inferred from
/// positions, the holder at the exchange point or a later carrier seen on their own leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    Operator,
    TwoParty,
    Proximity,
    PlannedTime,
    Positions,
}

impl EndedBy {
    /// A verified end, not an assumption.
    #[must_use]
    pub fn verified(self) -> bool {
        matches!(self, Self::Operator | Self::TwoParty | Self::Proximity)
    }
}

impl From<crate::custody::Method> for EndedBy {
    fn from(m: crate::custody::Method) -> Self {
        use crate::custody::Method;
        match m {
            Method::Operator => Self::Operator,
            Method::TwoParty => Self::TwoParty,
            Method::Proximity => Self::Proximity,
        }
    }
}

/// What of a leg changes while the relay runs: the default `/live` leg, and the `eta`
/// message's. Its planned times are the plan's moved by `shift_s`; its progress, while it is
/// current, is the relay's `progress`. A leg starts when the one before it ends, so a start
/// that is the previous leg's end is left out (in a race that is most of them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegLive {
    pub index: usize,
    pub status: LegStatus,
    /// Absent when it is the previous leg's `eta_end` (as written, to the second).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::second_opt"
    )]
    pub eta_start: Option<Timestamp>,
    #[serde(serialize_with = "wire::second")]
    pub eta_end: Timestamp,
    /// The band around `eta_end` ([`LegView::eta_lo`] to [`LegView::eta_hi`]) as seconds from it
    /// as written, `[lo, hi]` with `lo ≤ 0 ≤ hi`: two small numbers instead of two more instants
    /// on every leg of a 1,000-team race. Absent once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band_s: Option<[i64; 2]>,
    pub delta_s: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub shift_s: i64,
    /// Absent before the leg starts, and when it is the previous leg's `actual_end` (as
    /// written, to the millisecond).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::milli_opt"
    )]
    pub actual_start: Option<Timestamp>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::milli_opt"
    )]
    pub actual_end: Option<Timestamp>,
    pub verified: bool,
    /// How a done leg's end is known (absent until it is done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
}

/// `s` seconds rounded away from zero to two significant figures: −4,088 → −4,100, 2,991 →
/// 3,000; under 100 s unchanged. A band is an estimate from a few dozen errors: beyond two
/// figures its seconds are noise, and they were a third of a 1,000-team race's `/live`
/// gzipped (docs/benchmarks.md). Away from zero, so a band is only ever widened, by under 10 %.
fn outward_2sf(s: f64) -> f64 {
    let mut step = 1.0;
    while s.abs() >= 100.0 * step {
        step *= 10.0;
    }
    if step == 1.0 {
        return s;
    }
    (s.abs() / step).ceil() * step * s.signum()
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl LegView {
    /// The leg of `leg` whose plan the operator's shifts moved by `shift_ms`.
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        leg: &Leg,
        shift_ms: i64,
        actual_start: Option<Timestamp>,
        actual_end: Option<Timestamp>,
        eta_start: Timestamp,
        eta_end: Timestamp,
        status: LegStatus,
        along_m: f64,
        off_route: bool,
        verified: bool,
    ) -> Self {
        let shifted = |t: Timestamp| {
            t.checked_add(jiff::SignedDuration::from_millis(shift_ms))
                .unwrap_or(t)
        };
        let planned_end = shifted(leg.end);
        // To the nearest second (half up, as the ETA is written), so that `eta_end` as written
        // minus `delta_s` is the planned end.
        let late_ns = eta_end.duration_since(planned_end).as_nanos();
        Self {
            index: leg.index,
            carriers: leg.carriers.clone(),
            mode: leg.mode,
            status,
            planned_start: shifted(leg.start),
            planned_end,
            shift_s: shift_ms / 1000,
            actual_start,
            actual_end,
            eta_start,
            eta_end,
            eta_lo: None,
            eta_hi: None,
            delta_s: i64::try_from((late_ns + 500_000_000).div_euclid(1_000_000_000)).unwrap_or(0),
            along_m: if status == LegStatus::Done {
                leg.length_m()
            } else {
                along_m
            },
            length_m: leg.length_m(),
            off_route: status == LegStatus::Current && off_route,
            verified: status == LegStatus::Done && verified,
            ended_by: None,
            segment: leg.segment,
        }
    }

    /// The same leg with how its end is known (kept only once it is done).
    #[must_use]
    pub fn ended_by(mut self, by: Option<EndedBy>) -> Self {
        self.ended_by = by.filter(|_| self.status == LegStatus::Done);
        self
    }

    /// The same leg with the band around its ETA (kept only while it is not done), each end's
    /// distance from `eta_end` rounded away from it to two significant figures
    /// ([`outward_2sf`]).
    #[must_use]
    pub fn band(mut self, band: Option<(Timestamp, Timestamp)>) -> Self {
        let band = band.filter(|_| self.status != LegStatus::Done);
        let end = self.eta_end;
        let widened = |edge: Timestamp| {
            let s = outward_2sf(edge.duration_since(end).as_secs_f64());
            end.checked_add(SignedDuration::from_secs_f64(s))
                .unwrap_or(edge)
        };
        self.eta_lo = band.map(|b| widened(b.0));
        self.eta_hi = band.map(|b| widened(b.1));
        self
    }

    /// [`LegLive::band_s`]: the band's ends less `eta_end`, each as written (to the second; the
    /// band holds its ETA, so the first is never above 0 nor the second below).
    fn band_s(&self) -> Option<[i64; 2]> {
        let second = |t: Timestamp| wire::round(t, jiff::Unit::Second).as_second();
        let end = second(self.eta_end);
        Some([second(self.eta_lo?) - end, second(self.eta_hi?) - end])
    }

    /// Only what changes while the relay runs; `prev` is the leg before it.
    #[must_use]
    pub fn live(&self, prev: Option<&LegView>) -> LegLive {
        let same = |a: Option<Timestamp>, b: Option<Timestamp>, unit| {
            a.is_some() && a.map(|t| wire::round(t, unit)) == b.map(|t| wire::round(t, unit))
        };
        let chained_eta = same(
            Some(self.eta_start),
            prev.map(|p| p.eta_end),
            jiff::Unit::Second,
        );
        let chained_actual = self.status != LegStatus::Upcoming
            && same(
                self.actual_start,
                prev.and_then(|p| p.actual_end),
                jiff::Unit::Millisecond,
            );
        LegLive {
            index: self.index,
            status: self.status,
            eta_start: (!chained_eta).then_some(self.eta_start),
            eta_end: self.eta_end,
            band_s: self.band_s(),
            delta_s: self.delta_s,
            shift_s: self.shift_s,
            actual_start: self.actual_start.filter(|_| !chained_actual),
            actual_end: self.actual_end,
            verified: self.verified,
            ended_by: self.ended_by,
        }
    }

    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.length_m > 0.0 {
            (self.along_m / self.length_m).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Running past its planned end by more than the slack (a fifth of the leg, 2 to 15 min).
    #[must_use]
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.status == LegStatus::Current
            && overdue(
                self.planned_start,
                self.planned_end,
                self.actual_start.unwrap_or(self.planned_start),
                now,
            )
    }
}

/// A leg that began at `start` is overdue once its planned duration plus a slack (a fifth of
/// it, between 2 and 15 minutes) has passed: after [`overdue_after`].
#[must_use]
pub fn overdue(
    planned_start: Timestamp,
    planned_end: Timestamp,
    start: Timestamp,
    now: Timestamp,
) -> bool {
    now.as_millisecond() > overdue_after(planned_start, planned_end, start).as_millisecond()
}

/// The instant after which a leg that began at `start` is overdue (see [`overdue`]): a
/// function of the plan and the leg's start alone, so every server folding the same inputs
/// names the same instant.
#[must_use]
pub fn overdue_after(
    planned_start: Timestamp,
    planned_end: Timestamp,
    start: Timestamp,
) -> Timestamp {
    let planned_ms = planned_end.duration_since(planned_start).as_millis();
    let slack_ms = (planned_ms / 5).clamp(120_000, 900_000);
    let due_ms = i128::from(start.as_millisecond()) + planned_ms + slack_ms;
    i64::try_from(due_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(if due_ms > 0 {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        })
}

/// How `/live` writes its numbers: exact inside, rounded on the wire to what they mean. An ETA
/// is a prediction (to the second), an instant that happened to the millisecond, a distance
/// to 0.1 m, a fraction to 0.01 %. Nothing reads these back: custody hashes and ETA accuracy
/// are computed from the exact values.
pub mod wire {
    use jiff::{Timestamp, Unit};
    use serde::Serializer;

    /// `t` to the nearest `unit` (half up), as it is written.
    #[must_use]
    pub fn round(t: Timestamp, unit: Unit) -> Timestamp {
        t.round(unit).unwrap_or(t)
    }

    fn rounded<S: Serializer>(t: Timestamp, unit: Unit, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&round(t, unit))
    }

    /// An optional ETA, to the second.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
    pub fn second_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => second(t, s),
            None => s.serialize_none(),
        }
    }

    /// An ETA, to the second.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn second<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        rounded(*t, Unit::Second, s)
    }

    /// An instant, to the millisecond.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn milli<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        rounded(*t, Unit::Millisecond, s)
    }

    /// An optional instant, to the millisecond.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
    pub fn milli_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => milli(t, s),
            None => s.serialize_none(),
        }
    }

    /// A distance, to 0.1 m.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature serde's `serialize_with` calls
    pub fn decimetre<S: Serializer>(m: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((m * 10.0).round() / 10.0)
    }

    /// An optional distance, to 0.1 m.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
    pub fn decimetre_opt<S: Serializer>(m: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => decimetre(m, s),
            None => s.serialize_none(),
        }
    }

    /// A fraction, to 0.01 %.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature serde's `serialize_with` calls
    pub fn fraction<S: Serializer>(f: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((f * 10_000.0).round() / 10_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_band_is_widened_to_two_significant_figures_and_never_narrowed() {
        assert_eq!(outward_2sf(-4088.0), -4100.0);
        assert_eq!(outward_2sf(2991.0), 3000.0);
        assert_eq!(outward_2sf(100.0), 100.0);
        assert_eq!(outward_2sf(101.0), 110.0);
        assert_eq!(outward_2sf(-99.5), -99.5);
        assert_eq!(outward_2sf(0.0), 0.0);
        assert_eq!(outward_2sf(123_456.0), 130_000.0);
        for s in (-300_000..300_000).step_by(7) {
            let s = f64::from(s) + 0.25;
            let w = outward_2sf(s);
            assert!(
                w.abs() >= s.abs() && w.abs() < 1.1 * s.abs() + 1e-9,
                "{s} → {w}"
            );
            assert!(w.signum() == s.signum(), "{s} → {w}");
        }
    }
}
