//! Error bands around ETAs: for every leg still to end, an interval meant to hold its real end
//! four times out of five (the 10th to the 90th percentile).
//!
//! The one idea: what is uncertain is the time still to go, and it is uncertain in proportion.
//! A prediction made `R` before its end turns out to need `R × r`; the band is
//! `now + R × [r₁₀, r₉₀]`, with the quantiles of `ln r` taken from the errors this relay's own
//! finished legs showed (each prediction recorded for them, [`super::predict`]), shrunk toward a
//! prior measured on the evaluation's real tracks ([`PRIOR`]) until the relay has a few legs of
//! its own. The current leg's end and the ends after it have separate quantiles: a later end
//! also carries the pace of legs nobody has seen yet. A silent carrier's band widens by the time
//! beyond [`super::predict::SILENT_MOVING_MS`]: they may have moved on unseen, or stopped.

use jiff::{SignedDuration, Timestamp};

use super::step::RelayState;

/// The quantiles of `ln(real time to go / predicted time to go)` (10th, 90th percentile) the
/// bands start from, for the current leg's end and for the ends after it: the spread measured
/// with `cargo run --release -p handoff-core --example eta` (the "spread" lines of its report)
/// on the nineteen tracks of `tests/tracks/` at 25, 50 and 75 % of each leg on 2026-12-04,
/// with the routes' elevation smoothed and the later legs' ratio counting the current leg as
/// it is expected to end (the later ends' spread was −0.30 / +0.15 before that, session 15).
/// On the nineteen before the smoothing it was −0.20 /
/// +0.22 and −0.25 / +0.21; on the ten tracks before them −0.21 / +0.21 and −0.21 / +0.14;
/// until session 13, −0.30 /
/// +0.20 and −0.25 / +0.15 (eight tracks, rounded outward to 0.05). In-sample on those tracks:
/// a relay's own legs take over ([`PRIOR_LEGS`]).
pub const PRIOR: Quantiles = Quantiles {
    current: (-0.29, 0.19),
    later: (-0.26, 0.14),
};
/// The prior weighs as much as this many finished legs of the relay's own.
const PRIOR_LEGS: f64 = 3.0;
/// The finished legs (the latest) whose predictions calibrate the band.
const HISTORY_LEGS: usize = 8;
/// Predictions used per finished leg (evenly spread over its record).
const PER_LEG: usize = 16;
/// Predictions made less than this long before the end are left out: seconds before a handoff
/// any error is a large share of the time to go.
const MIN_LEAD_MS: i64 = 60_000;

/// Lower and upper quantile of `ln r`, for the current leg's end and the later ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub current: (f64, f64),
    pub later: (f64, f64),
}

/// The `q` quantile (0–1) of `v` (reordered in place), linearly interpolated. Two selections,
/// not a sort: a race's pool holds tens of thousands of errors.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let pos = q * (v.len() - 1) as f64;
    let frac = pos - pos.floor();
    let (_, &mut lo, above) = v.select_nth_unstable_by(pos.floor() as usize, f64::total_cmp);
    let hi = if frac > 0.0 {
        above.iter().copied().min_by(f64::total_cmp).unwrap_or(lo)
    } else {
        lo
    };
    Some(lo + (hi - lo) * frac)
}

/// The errors a relay's finished legs showed: `ln r` of their predictions, for the current
/// leg's end and for later ends, and how many legs each set comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Errors {
    current: Vec<f64>,
    later: Vec<f64>,
    legs_current: usize,
    legs_later: usize,
}

/// The errors of a relay's latest `legs` finished legs ([`PER_LEG`] predictions each, evenly
/// spread over its record; none made less than [`MIN_LEAD_MS`] before the end).
pub(crate) fn errors(st: &RelayState, legs: usize) -> Errors {
    let mut out = Errors::default();
    let done = st.current.min(st.legs.len());
    for lt in st.legs.iter().take(done).skip(done.saturating_sub(legs)) {
        let (Some(start), Some(end)) = (lt.actual_start, lt.actual_end) else {
            continue;
        };
        let (start_ms, end_ms) = (start.as_millisecond(), end.as_millisecond());
        let usable: Vec<(i64, i64)> = lt
            .predictions
            .iter()
            .copied()
            .filter(|&(t, eta)| end_ms - t >= MIN_LEAD_MS && eta > t)
            .collect();
        let step = usable.len().div_ceil(PER_LEG).max(1);
        let (n_current, n_later) = (out.current.len(), out.later.len());
        for &(t, eta) in usable.iter().step_by(step) {
            #[allow(clippy::cast_precision_loss)]
            let ln_r = ((end_ms - t) as f64 / (eta - t) as f64).ln();
            if t >= start_ms {
                out.current.push(ln_r);
            } else {
                out.later.push(ln_r);
            }
        }
        out.legs_current += usize::from(out.current.len() > n_current);
        out.legs_later += usize::from(out.later.len() > n_later);
    }
    out
}

/// This relay's quantiles: its latest finished legs' errors, shrunk toward `prior` ([`PRIOR`],
/// or in race mode the course's [`Pool`]).
pub(crate) fn quantiles(st: &RelayState, prior: Quantiles) -> Quantiles {
    let mut own = errors(st, HISTORY_LEGS);
    Quantiles {
        current: shrink(prior.current, &mut own.current, own.legs_current),
        later: shrink(prior.later, &mut own.later, own.legs_later),
    }
}

/// Finished legs of each team that go into its course's pool.
const POOL_LEGS: usize = 2;

/// Race mode: the errors of every team on one course, pooled. A team that has finished no leg
/// yet has its bands from the teams ahead of it on the same course rather than from the prior
/// alone, and every team's own legs are shrunk toward the pool instead of toward [`PRIOR`]. Each
/// team gives its latest [`POOL_LEGS`] finished legs (its own count too: with a thousand teams,
/// one is a thousandth of the pool; with two, the pool leans toward each team's own legs).
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    /// Each team's part, by its place on the course.
    parts: Vec<Errors>,
    /// The pool's quantiles: every part, shrunk toward [`PRIOR`] by the legs they come from.
    quantiles: Quantiles,
    /// A part changed since the quantiles were made.
    stale: bool,
}

impl Pool {
    pub(crate) fn new(teams: usize) -> Self {
        Self {
            parts: vec![Errors::default(); teams],
            quantiles: PRIOR,
            stale: false,
        }
    }

    /// Team `k`'s part from its state now: the quantiles go stale if it changed.
    pub(crate) fn update(&mut self, k: usize, st: &RelayState) {
        let part = errors(st, POOL_LEGS);
        if let Some(slot) = self.parts.get_mut(k)
            && *slot != part
        {
            *slot = part;
            self.stale = true;
        }
    }

    /// Makes the quantiles again if a part changed (once per batch of changes, not per team:
    /// a catch-up ends thousands of legs).
    pub(crate) fn refresh(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        let (mut current, mut later) = (Vec::new(), Vec::new());
        let (mut legs_current, mut legs_later) = (0, 0);
        for p in &self.parts {
            current.extend_from_slice(&p.current);
            later.extend_from_slice(&p.later);
            legs_current += p.legs_current;
            legs_later += p.legs_later;
        }
        self.quantiles = Quantiles {
            current: shrink(PRIOR.current, &mut current, legs_current),
            later: shrink(PRIOR.later, &mut later, legs_later),
        };
    }

    /// The quantiles a team of this course starts from.
    pub(crate) fn quantiles(&self) -> Quantiles {
        self.quantiles
    }
}

/// The prior's quantiles and the observed ones, weighted by legs.
#[allow(clippy::cast_precision_loss)]
fn shrink(prior: (f64, f64), seen: &mut [f64], legs: usize) -> (f64, f64) {
    let (Some(lo), Some(hi)) = (quantile(seen, 0.1), quantile(seen, 0.9)) else {
        return prior;
    };
    let w = legs as f64 / (legs as f64 + PRIOR_LEGS);
    (
        (1.0 - w) * prior.0 + w * lo.min(0.0),
        (1.0 - w) * prior.1 + w * hi.max(0.0),
    )
}

/// The band of an ETA `eta` that stands on evidence taken at `from` (the holder's last fix, the
/// leg's start; or, before a relay starts, its planned start), read at `now`, `silent_ms` past
/// the time a silent carrier is assumed to keep moving: `from + (eta − from) × [e^lo, e^hi]`,
/// widened by the silence on both sides, never before `now`. It moves only with its evidence
/// (and the silence), not with the clock: two reads between two fixes give the same band.
/// Always holds `eta`.
#[must_use]
pub fn band(
    eta: Timestamp,
    from: Timestamp,
    now: Timestamp,
    (lo, hi): (f64, f64),
    silent_ms: i64,
) -> (Timestamp, Timestamp) {
    let to_go_s = eta.duration_since(from).as_secs_f64().max(0.0);
    #[allow(clippy::cast_precision_loss)]
    let silent_s = silent_ms.max(0) as f64 / 1000.0;
    let at = |s: f64| {
        from.checked_add(SignedDuration::from_secs_f64(s.clamp(-1.0e9, 1.0e9)))
            .unwrap_or(eta)
    };
    let lo_s = to_go_s * lo.min(0.0).exp() - silent_s;
    let hi_s = to_go_s * hi.max(0.0).exp() + silent_s;
    (at(lo_s).max(now).min(eta), at(hi_s).max(eta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_723_410_000 + s).expect("valid")
    }

    #[test]
    fn the_band_scales_with_the_time_to_go() {
        let q = (-0.2, 0.3);
        let (lo, hi) = band(ts(1000), ts(0), ts(0), q, 0);
        let (lo2, hi2) = band(ts(2000), ts(0), ts(0), q, 0);
        let width = |a: Timestamp, b: Timestamp| b.duration_since(a).as_secs_f64();
        assert!((width(lo2, hi2) - 2.0 * width(lo, hi)).abs() < 1e-3);
        assert!(
            (ts(1000).duration_since(lo).as_secs_f64() - 1000.0 * (1.0 - (-0.2f64).exp())).abs()
                < 1e-3
        );
        // At the end, nothing is left to be wrong about.
        assert_eq!(band(ts(0), ts(0), ts(0), q, 0), (ts(0), ts(0)));
    }

    #[test]
    fn a_silent_carriers_band_widens_with_the_silence() {
        let q = PRIOR.current;
        let mut last = 0.0;
        for silent_s in [0, 60, 300, 900] {
            let (lo, hi) = band(ts(1200), ts(0), ts(0), q, silent_s * 1000);
            let width = hi.duration_since(lo).as_secs_f64();
            assert!(width > last, "{silent_s} s silent: {width} !> {last}");
            assert!(lo >= ts(0));
            last = width;
        }
    }

    #[test]
    fn the_band_moves_with_its_evidence_not_with_the_clock() {
        let q = PRIOR.later;
        // Read twice between two fixes: the same band (two servers, or two reads, agree).
        let first = band(ts(1200), ts(0), ts(10), q, 0);
        assert_eq!(band(ts(1200), ts(0), ts(25), q, 0), first);
        // A newer fix with the same ETA: less time to go from it, a narrower band.
        let (lo, hi) = band(ts(1200), ts(600), ts(610), q, 0);
        assert!(hi.duration_since(lo) < first.1.duration_since(first.0));
        // Never a lower end already past.
        assert_eq!(band(ts(1200), ts(0), ts(1100), q, 0).0, ts(1100));
    }

    #[test]
    fn quantiles_interpolate_between_the_ranks() {
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), Some(2.5));
        assert!((quantile(&mut v, 0.1).unwrap() - 1.3).abs() < 1e-12);
        assert!((quantile(&mut v, 0.9).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(quantile(&mut v, 1.0), Some(4.0));
        assert_eq!(quantile(&mut [7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn with_no_history_the_prior_holds() {
        let st = RelayState::new(3);
        assert_eq!(quantiles(&st, PRIOR), PRIOR);
    }

    #[test]
    fn a_relay_that_ran_late_widens_the_upper_side() {
        let mut st = RelayState::new(3);
        // Leg 0 took 1000 s; every prediction said half the time really left.
        let leg = st.leg_mut(0);
        leg.actual_start = Some(ts(0));
        leg.actual_end = Some(ts(1000));
        let (start, end) = (ts(0).as_millisecond(), ts(1000).as_millisecond());
        leg.predictions = (0..50)
            .map(|i| start + i * 20_000)
            .map(|t| (t, t + (end - t) / 2))
            .collect();
        st.current = 1;
        let q = quantiles(&st, PRIOR);
        assert!(q.current.1 > PRIOR.current.1, "{q:?}");
        assert_eq!(q.later, PRIOR.later);
    }

    #[test]
    fn a_race_pool_is_its_teams_errors_together() {
        // A thousand teams, each with two finished legs' 16 errors of each kind: the pool's
        // quantiles are those of all 64,000 errors, shrunk by 2,000 legs against the prior's 3.
        let mut pool = Pool::new(1000);
        let mut all = (Vec::new(), Vec::new());
        for k in 0..1000u32 {
            let e = |i: u32| f64::from((k * 37 + i * 11) % 101) / 100.0 - 0.4;
            let part = Errors {
                current: (0..32).map(e).collect(),
                later: (0..32).map(|i| e(i) * 2.0).collect(),
                legs_current: 2,
                legs_later: 2,
            };
            all.0.extend_from_slice(&part.current);
            all.1.extend_from_slice(&part.later);
            pool.parts[k as usize] = part;
        }
        pool.stale = true;
        pool.refresh();
        let q = pool.quantiles();
        let w = 2000.0 / 2003.0;
        let expect = |prior: f64, seen: f64| (1.0 - w) * prior + w * seen;
        let (lo, hi) = (
            quantile(&mut all.0, 0.1).unwrap(),
            quantile(&mut all.0, 0.9).unwrap(),
        );
        assert!(
            (q.current.0 - expect(PRIOR.current.0, lo)).abs() < 1e-12,
            "{q:?}"
        );
        assert!(
            (q.current.1 - expect(PRIOR.current.1, hi)).abs() < 1e-12,
            "{q:?}"
        );
        let hi_later = quantile(&mut all.1, 0.9).unwrap();
        assert!(
            (q.later.1 - expect(PRIOR.later.1, hi_later)).abs() < 1e-12,
            "{q:?}"
        );
        // Nothing changed: nothing is made again.
        assert!(!pool.stale);
    }

    proptest! {
        #[test]
        fn the_band_holds_its_eta_and_is_never_negative(
            to_go in 0i64..200_000,
            lo in -3.0f64..1.0,
            hi in -1.0f64..3.0,
            silent in -10_000i64..5_000_000,
        ) {
            let now = ts(0);
            let eta = ts(to_go);
            let (a, b) = band(eta, now, now, (lo, hi), silent);
            prop_assert!(a <= eta && eta <= b);
            prop_assert!(a >= now);
        }
    }
}
