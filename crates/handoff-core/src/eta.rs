//! The pace model behind every ETA: start from the plan's own pace for the leg (its length over
//! its planned duration, read as its pace on flat ground), scale it by how the relay's finished
//! legs went against their plan, and hand over to the pace the carrier is really making as
//! evidence accumulates ([`PaceEvidence`]). Foot and bike legs with an elevation profile count
//! every distance in flat-equivalent metres (Tobler's hiking function on foot, a rider's
//! constant power by bike: [`slope_cost`]), the distance observed and the distance ahead alike,
//! so a carrier seen climbing slowly is not expected to descend slowly.
//!
//! The observed pace is split into how fast the carrier goes while moving (recency-weighted,
//! so a change of pace shows within minutes) and how much of the time they stop (over the whole
//! leg): a rest in progress then moves the ETA with the clock instead of collapsing the pace, and
//! rests already taken are expected again in proportion.

use crate::plan::{Leg, Locomotion};
use std::collections::VecDeque;
use std::sync::LazyLock;

/// How much recent movement [`PaceWindow`] holds (the plausibility check's anchors).
pub const PACE_WINDOW_MS: i64 = 180_000;

/// How fast the moving pace forgets: a moving interval this long ago weighs 1/e of one now.
const MOVING_MEMORY_S: f64 = 180.0;
/// Observation and plan weigh the same after this long observed on the leg; after 3 minutes
/// the observation weighs 86 %, after 30 minutes 98 % (with no finished legs behind the prior).
const EVIDENCE_HALF_S: f64 = 30.0;
/// A prior made of the relay's finished legs weighs as this share of their time observed …
/// (0.5 until session 15: chosen on four tracks, it held a new carrier to the relay's pace for
/// too long on the nine tracks added then; docs/eta.md has the sweep and its leave-one-out
/// check.)
const HISTORY_WEIGHT: f64 = 0.25;
/// … up to this long.
const HISTORY_MAX_S: f64 = 900.0;
/// The share of time stopped counts this much time as moving before any is observed, so one
/// early pause does not read as a carrier who is stopped most of the time.
const STOP_PRIOR_S: f64 = 300.0;
/// Movement is judged over stretches at least this long (ms).
const STRETCH_MS: i64 = 30_000;
/// Slower than this share of the mode's usual speed between two fixes is stopped.
const STOPPED_SHARE_OF_PRIOR: f64 = 0.1;

/// Tobler's hiking function: walking speed (km/h) on a slope `grade` (rise over run).
#[must_use]
pub fn tobler_kmh(grade: f64) -> f64 {
    6.0 * (-3.5 * (grade + 0.05).abs()).exp()
}

/// A rider and bike's weight (kg), rolling resistance coefficient, and air drag `½ ρ CdA`
/// (kg/m: air at 1.2 kg/m³, an upright rider's CdA of 0.4 m²): a recreational road rider,
/// textbook values, not fitted to any track.
const BIKE_MASS_KG: f64 = 85.0;
const BIKE_CRR: f64 = 0.005;
const BIKE_DRAG_KG_PER_M: f64 = 0.24;
/// The rider's steady power (W): about 28 km/h on the flat with the values above.
const BIKE_POWER_W: f64 = 150.0;
/// Downhill a rider brakes for bends and traffic rather than reach terminal speed (m/s, 50 km/h);
/// on a climb too steep to ride they push, at walking pace.
const BIKE_MAX_MPS: f64 = 13.9;
const BIKE_MIN_MPS: f64 = 1.4;
const GRAVITY_MPS2: f64 = 9.81;

/// A rider's speed (m/s) on a slope `grade` (rise over run) at a steady 150 W: the `v` where
/// `v × (m g (Crr cos θ + sin θ) + ½ ρ CdA v²)` is the power (one positive root whatever the
/// slope), between walking pace and 50 km/h.
#[must_use]
pub fn bike_speed_mps(grade: f64) -> f64 {
    let theta = grade.atan();
    let force_n = BIKE_MASS_KG * GRAVITY_MPS2 * (BIKE_CRR * theta.cos() + theta.sin());
    let excess = |v: f64| BIKE_DRAG_KG_PER_M * v.powi(3) + force_n * v - BIKE_POWER_W;
    // Negative at 0 and rising past its only positive root: bisect to a millimetre a second.
    let (mut lo, mut hi) = (0.0, 2.0 * BIKE_MAX_MPS);
    if excess(hi) < 0.0 {
        return BIKE_MAX_MPS;
    }
    while hi - lo > 1e-3 {
        let mid = 0.5 * (lo + hi);
        if excess(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).clamp(BIKE_MIN_MPS, BIKE_MAX_MPS)
}

/// How much longer (or shorter) a stretch on a slope `grade` takes than the same length on
/// flat ground, for a leg that climbs as `how` does.
#[must_use]
pub fn slope_cost(how: Locomotion, grade: f64) -> f64 {
    match how {
        Locomotion::Foot => tobler_kmh(0.0) / tobler_kmh(grade),
        Locomotion::Bike => {
            // The flat speed is the same for every stretch of every route: solved once.
            static FLAT_MPS: LazyLock<f64> = LazyLock::new(|| bike_speed_mps(0.0));
            *FLAT_MPS / bike_speed_mps(grade)
        }
    }
}

/// The speed the plan expects on this leg (m/s): its length over its planned duration, or
/// the mode's prior when the leg has no length or no duration.
#[must_use]
pub fn planned_speed_mps(leg: &Leg) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let secs = leg.duration_ms() as f64 / 1000.0;
    let len = leg.length_m();
    if len > 0.0 && secs > 0.0 {
        len / secs
    } else {
        leg.mode.prior_speed_mps()
    }
}

/// The time (s) the plan gives the stretch of a leg from `from_m` to `to_m`: its planned pace is
/// read as its pace on flat ground, and the stretch is as long as its flat equivalent
/// ([`flat_m`]). Over a whole leg with no elevation, its planned duration.
#[must_use]
pub fn planned_s(leg: &Leg, from_m: f64, to_m: f64) -> f64 {
    flat_m(leg, from_m, to_m) / planned_speed_mps(leg).max(0.1)
}

/// The flat-equivalent length of the stretch of a leg from `from_m` to `to_m`: on foot or by
/// bike with an elevation profile, as long as the flat ground that takes the same time
/// ([`Route::flat_equivalent_m`]); otherwise its length.
///
/// [`Route::flat_equivalent_m`]: crate::route::Route::flat_equivalent_m
#[must_use]
pub fn flat_m(leg: &Leg, from_m: f64, to_m: f64) -> f64 {
    match (leg.geometry.route(), leg.mode.locomotion()) {
        (Some(route), Some(how)) => route.flat_equivalent_m(how, from_m, to_m),
        _ => (to_m - from_m).max(0.0),
    }
}

/// Recent (time, distance along) samples of the current leg: the anchors of the plausibility
/// check, and the recent pace the tracker compares to see whether an ETA moved.
#[derive(Debug, Clone, Default)]
pub struct PaceWindow {
    samples: VecDeque<(i64, f64)>,
}

impl PaceWindow {
    /// A window holding `samples` (time ms, metres along), oldest first, as [`Self::samples`]
    /// gave them.
    #[must_use]
    pub fn from_samples(samples: impl IntoIterator<Item = (i64, f64)>) -> Self {
        Self {
            samples: samples.into_iter().collect(),
        }
    }

    /// The samples held, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.samples.iter().copied()
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Adds a sample (milliseconds since the epoch, metres along); keeps the window's span.
    pub fn push(&mut self, t_ms: i64, along_m: f64) {
        self.samples.push_back((t_ms, along_m));
        while let Some(&(t0, _)) = self.samples.front() {
            if t_ms - t0 > PACE_WINDOW_MS && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Observed speed (m/s) and how long (ms) it was observed over.
    #[must_use]
    pub fn observed(&self) -> Option<(f64, i64)> {
        let (&(t0, a0), &(t1, a1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1 - t0;
        #[allow(clippy::cast_precision_loss)]
        (dt >= 10_000).then(|| ((a1 - a0).max(0.0) / (dt as f64 / 1000.0), dt))
    }
}

/// The evidence of the carrier's pace on the leg so far: time moving and stopped, and the
/// flat-equivalent distance and time while moving weighted by recency (an interval 3 minutes
/// old weighs 1/e).
/// Four numbers and the last sample, whatever the leg's length: it is kept for the whole leg, not
/// a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaceEvidence {
    /// Where the stretch being observed began: time (ms since the epoch), metres along.
    last: Option<(i64, f64)>,
    moving_s: f64,
    stopped_s: f64,
    /// Recency-weighted flat-equivalent metres and seconds of the moving intervals.
    recent_m: f64,
    recent_s: f64,
}

impl PaceEvidence {
    /// Adds a sample (ms since the epoch, metres along the leg); `stopped_below_mps` is the speed
    /// (real metres a second) under which a stretch counts as stopped; `flat_m` gives a stretch's
    /// flat-equivalent length from its ends ([`flat_m`], or their difference on level ground).
    /// Stretches are judged once they span [`STRETCH_MS`], not fix by fix: a noisy fix that
    /// projects behind the progress held adds nothing for one fix interval, and that is not a
    /// stop.
    pub fn push(
        &mut self,
        t_ms: i64,
        along_m: f64,
        stopped_below_mps: f64,
        flat_m: impl Fn(f64, f64) -> f64,
    ) {
        let Some((t0, a0)) = self.last else {
            self.last = Some((t_ms, along_m));
            return;
        };
        if t_ms - t0 < STRETCH_MS {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let dt_s = (t_ms - t0) as f64 / 1000.0;
        let dd_m = (along_m - a0).max(0.0);
        if dd_m / dt_s >= stopped_below_mps {
            let keep = (-dt_s / MOVING_MEMORY_S).exp();
            self.recent_m = self.recent_m * keep + flat_m(a0, a0 + dd_m);
            self.recent_s = self.recent_s * keep + dt_s;
            self.moving_s += dt_s;
        } else {
            self.stopped_s += dt_s;
        }
        self.last = Some((t_ms, a0.max(along_m)));
    }

    /// Seconds observed on the leg (moving and stopped).
    #[must_use]
    pub fn observed_s(&self) -> f64 {
        self.moving_s + self.stopped_s
    }

    /// The share of the time the carrier is expected to spend stopped: the time stopped so far
    /// over the time observed plus [`STOP_PRIOR_S`].
    #[must_use]
    pub fn stopped_share(&self) -> f64 {
        self.stopped_s / (self.observed_s() + STOP_PRIOR_S)
    }

    /// Speed while moving (flat-equivalent m/s), recency-weighted; none before the carrier has
    /// moved.
    #[must_use]
    pub fn moving_mps(&self) -> Option<f64> {
        (self.recent_s > 0.0).then(|| self.recent_m / self.recent_s)
    }

    /// The pace to predict with (flat-equivalent m/s, as the prior must be): the prior, handing
    /// over to the observed pace (moving speed × share of time moving) as time on the leg is
    /// observed. Never below a tenth of the prior, so an ETA always exists. The prior is backed
    /// by `history_s` seconds of the relay's finished legs: it weighs as much as
    /// [`HISTORY_WEIGHT`] of that time observed (at most [`HISTORY_MAX_S`]) on top of
    /// [`EVIDENCE_HALF_S`].
    #[must_use]
    pub fn blended_with_history_mps(&self, prior_mps: f64, history_s: f64) -> f64 {
        let prior = prior_mps.max(0.1);
        let observed_s = self.observed_s();
        if observed_s <= 0.0 {
            return prior;
        }
        let moving = self.moving_mps().unwrap_or(prior);
        let observed = moving * (1.0 - self.stopped_share());
        let prior_s = EVIDENCE_HALF_S + (history_s.max(0.0) * HISTORY_WEIGHT).min(HISTORY_MAX_S);
        let w = observed_s / (observed_s + prior_s);
        (w * observed + (1.0 - w) * prior).max(prior * 0.1)
    }

    /// The saved form: the stretch's start and the four sums.
    #[must_use]
    pub fn parts(&self) -> (Option<(i64, f64)>, [f64; 4]) {
        (
            self.last,
            [self.moving_s, self.stopped_s, self.recent_m, self.recent_s],
        )
    }

    /// Evidence from [`Self::parts`].
    #[must_use]
    pub fn from_parts(last: Option<(i64, f64)>, sums: [f64; 4]) -> Self {
        let [moving_s, stopped_s, recent_m, recent_s] = sums;
        Self {
            last,
            moving_s,
            stopped_s,
            recent_m,
            recent_s,
        }
    }
}

/// The speed under which a carrier of `mode` counts as stopped (m/s).
#[must_use]
pub fn stopped_below_mps(mode: crate::plan::Mode) -> f64 {
    mode.prior_speed_mps() * STOPPED_SHARE_OF_PRIOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tobler_peaks_on_a_gentle_descent() {
        assert!((tobler_kmh(-0.05) - 6.0).abs() < 1e-12);
        assert!((tobler_kmh(0.0) - 5.036).abs() < 0.01);
        assert!(tobler_kmh(0.2) < tobler_kmh(0.0));
        assert!(tobler_kmh(-0.3) < tobler_kmh(-0.05));
    }

    #[test]
    fn a_rider_slows_on_every_climb_and_speeds_up_downhill_to_a_cap() {
        let kmh = |g: f64| bike_speed_mps(g) * 3.6;
        // 150 W against rolling and air alone: 28 km/h; the power checks out at the root.
        assert!((27.0..29.0).contains(&kmh(0.0)), "{}", kmh(0.0));
        let v = bike_speed_mps(0.0);
        let watts = v * (BIKE_MASS_KG * GRAVITY_MPS2 * BIKE_CRR + BIKE_DRAG_KG_PER_M * v * v);
        assert!((watts - BIKE_POWER_W).abs() < 0.1, "{watts}");
        // A 6 % climb costs about three times the flat (Tobler would say 1.23): gravity's
        // 50 N outweighs the air at any speed a rider holds there.
        assert!((9.0..10.5).contains(&kmh(0.06)), "{}", kmh(0.06));
        assert!((slope_cost(Locomotion::Bike, 0.06) - 2.9).abs() < 0.2);
        // Slower on every steeper climb, faster on every steeper descent, until the cap.
        let grades: Vec<f64> = (-20..=20).map(|i| f64::from(i) * 0.01).collect();
        for w in grades.windows(2) {
            assert!(kmh(w[1]) <= kmh(w[0]), "{w:?}");
        }
        assert!((kmh(-0.08) - 50.0).abs() < 0.1, "{}", kmh(-0.08));
        assert!((slope_cost(Locomotion::Bike, -0.02) - 0.75).abs() < 0.1);
        // A wall is walked, pushing.
        assert!((kmh(0.25) - 1.4 * 3.6).abs() < 1e-9);
    }

    /// Flat ground: a stretch is as long as it is.
    fn level(from_m: f64, to_m: f64) -> f64 {
        to_m - from_m
    }

    /// A carrier at `mps` for `secs`, a fix every 5 s, on top of `ev`.
    fn moving(ev: &mut PaceEvidence, from_s: i64, secs: i64, mps: f64, along_m: f64) -> f64 {
        let mut along = along_m;
        for i in 1..=secs / 5 {
            along += mps * 5.0;
            ev.push((from_s + i * 5) * 1000, along, 0.3, level);
        }
        along
    }

    #[test]
    fn evidence_moves_the_pace_from_prior_to_observation_as_time_is_observed() {
        let mut ev = PaceEvidence::default();
        assert!((ev.blended_with_history_mps(3.0, 0.0) - 3.0).abs() < 1e-12);
        ev.push(0, 0.0, 0.3, level);
        let mut along = 0.0;
        let mut last_gap = f64::INFINITY;
        for minute in 0..30 {
            along = moving(&mut ev, minute * 60, 60, 2.0, along);
            let gap = (ev.blended_with_history_mps(3.0, 0.0) - 2.0).abs();
            assert!(gap < last_gap, "minute {minute}: {gap} !< {last_gap}");
            last_gap = gap;
        }
        // Half an hour observed: within 3 % of the observed pace.
        assert!(last_gap < 0.03 * 2.0, "{last_gap}");
    }

    #[test]
    fn the_moving_pace_follows_a_change_within_minutes() {
        let mut ev = PaceEvidence::default();
        ev.push(0, 0.0, 0.3, level);
        let along = moving(&mut ev, 0, 1800, 3.0, 0.0);
        moving(&mut ev, 1800, 600, 2.0, along);
        let v = ev.moving_mps().unwrap();
        assert!((v - 2.0).abs() < 0.1, "{v}");
    }

    #[test]
    fn a_rest_slows_the_pace_by_its_share_not_to_a_halt() {
        let mut ev = PaceEvidence::default();
        ev.push(0, 0.0, 0.3, level);
        let along = moving(&mut ev, 0, 1200, 3.0, 0.0);
        let before = ev.blended_with_history_mps(3.0, 0.0);
        // Ten minutes standing still (fixes every 5 s at the same place).
        for i in 1..=120 {
            ev.push((1200 + i * 5) * 1000, along, 0.3, level);
        }
        let during = ev.blended_with_history_mps(3.0, 0.0);
        // The moving pace is remembered; the rest counts by its share of the time (10 of 35 min).
        assert!((ev.moving_mps().unwrap() - 3.0).abs() < 1e-9);
        assert!(
            during < before && during > 0.6 * before,
            "{before} → {during}"
        );
    }

    #[test]
    fn a_carrier_who_never_moved_is_slowed_by_the_time_stopped() {
        let mut ev = PaceEvidence::default();
        for i in 0..=120 {
            ev.push(i * 5000, 0.0, 0.3, level);
        }
        assert_eq!(ev.moving_mps(), None);
        let v = ev.blended_with_history_mps(3.0, 0.0);
        assert!((0.3..3.0).contains(&v), "{v}");
    }

    #[test]
    fn a_fix_that_adds_nothing_between_two_that_do_is_not_a_stop() {
        // A steady 3 m/s whose progress arrives every other fix (noise behind the progress held).
        let mut ev = PaceEvidence::default();
        for i in 0..=120 {
            ev.push(
                i * 5000,
                f64::from(i32::try_from(i / 2 * 2).unwrap_or(0)) * 15.0,
                0.3,
                level,
            );
        }
        assert!(ev.stopped_share() < 1e-12, "{}", ev.stopped_share());
        assert!((ev.moving_mps().unwrap() - 3.0).abs() < 0.1);
    }

    #[test]
    fn evidence_survives_its_saved_form() {
        let mut ev = PaceEvidence::default();
        ev.push(0, 0.0, 0.3, level);
        moving(&mut ev, 0, 300, 2.5, 0.0);
        let (last, sums) = ev.parts();
        assert_eq!(PaceEvidence::from_parts(last, sums), ev);
    }
}
