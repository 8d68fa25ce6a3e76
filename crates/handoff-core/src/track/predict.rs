//! Predictions: when every remaining handoff of a relay will happen (the current leg's end from
//! its pace, each later leg its expected duration after the one before), the delays an operator
//! announced, and the record of earlier predictions that lets accuracy be measured at the real
//! handoff.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::eta::{flat_m, planned_s, planned_speed_mps};
use crate::plan::{Leg, PaceClass, Relay};

use super::Fix;
use super::step::{Ctx, LegTrack, RelayState, shifted, untracked_end};

/// ETA predictions are sampled at most this often (device time).
const PREDICTION_EVERY_MS: i64 = 20_000;
/// Predictions are kept for the current leg's end and this many handoffs after it.
const PREDICTION_LEGS: usize = 4;
/// A silent carrier is assumed to keep moving this long after their last fix, then stopped.
pub(crate) const SILENT_MOVING_MS: i64 = 30_000;
/// Predictions kept per leg; beyond it the record thins out evenly.
const PREDICTIONS_MAX: usize = 512;

/// How good the ETA predictions of one leg's end were, once it really ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegAccuracy {
    pub leg: usize,
    pub actual_end: Timestamp,
    /// How long the leg really took (seconds, to the millisecond), when its start is known: what
    /// [`LeadAccuracy::median_abs_error_pct`] is a share of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    pub predictions: usize,
    /// Mean of |predicted − actual| over all predictions, seconds (to the millisecond). It
    /// mixes predictions made long before the end with those made seconds before: read
    /// [`LegAccuracy::by_lead`].
    pub mean_abs_error_s: f64,
    pub max_abs_error_s: i64,
    /// The earliest prediction's error and how long before the end it was made (seconds).
    pub first_error_s: i64,
    pub first_lead_s: i64,
    /// The last prediction before the end.
    pub last_error_s: i64,
    pub last_lead_s: i64,
    /// The errors by how long before the real end they were made ([`LEAD_BUCKETS_S`]).
    pub by_lead: Vec<LeadAccuracy>,
    /// Every prediction as (lead, error) in milliseconds, with the leg's duration, for
    /// pooling legs ([`by_lead`]).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// One prediction measured at the real end: made `lead_ms` before it, off by `error_ms`
/// (predicted − actual), on a leg that took `duration_ms` (if known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub lead_ms: i64,
    pub error_ms: i64,
    pub duration_ms: Option<i64>,
}

/// The lead times predictions are grouped by, in seconds: [0, 1 min), [1, 5 min), [5, 15 min),
/// [15, 30 min), [30, 60 min), 60 min and more.
pub const LEAD_BUCKETS_S: [i64; 6] = [0, 60, 300, 900, 1800, 3600];

/// The errors of the predictions made within one range of lead times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadAccuracy {
    /// Made at least this long before the real end (seconds) …
    pub lead_from_s: i64,
    /// … and less than this (none: no upper bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_to_s: Option<i64>,
    pub predictions: usize,
    /// Median and 90th percentile of |predicted − actual|, seconds.
    pub median_abs_error_s: f64,
    pub p90_abs_error_s: f64,
    /// Median of |predicted − actual| as a percentage of the leg's real duration (over the
    /// predictions whose leg's duration is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_abs_error_pct: Option<f64>,
}

/// The `q` quantile (0–1) of sorted `v`, nearest rank.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// One decimal.
fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `samples` grouped by lead time ([`LEAD_BUCKETS_S`]), the empty groups left out.
#[must_use]
pub fn by_lead(samples: &[Sample]) -> Vec<LeadAccuracy> {
    let mut out = Vec::new();
    for (i, &from) in LEAD_BUCKETS_S.iter().enumerate() {
        let to = LEAD_BUCKETS_S.get(i + 1).copied();
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.lead_ms >= from * 1000 && to.is_none_or(|to| s.lead_ms < to * 1000))
            .collect();
        if inside.is_empty() {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        let mut abs: Vec<f64> = inside
            .iter()
            .map(|s| s.error_ms.abs() as f64 / 1000.0)
            .collect();
        abs.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let mut pct: Vec<f64> = inside
            .iter()
            .filter_map(|s| {
                let d = s.duration_ms.filter(|d| *d > 0)?;
                Some(s.error_ms.abs() as f64 * 100.0 / d as f64)
            })
            .collect();
        pct.sort_by(f64::total_cmp);
        out.push(LeadAccuracy {
            lead_from_s: from,
            lead_to_s: to,
            predictions: inside.len(),
            median_abs_error_s: tenth(quantile(&abs, 0.5)),
            p90_abs_error_s: tenth(quantile(&abs, 0.9)),
            median_abs_error_pct: (!pct.is_empty()).then(|| tenth(quantile(&pct, 0.5))),
        });
    }
    out
}

/// Samples the ETAs of the next few handoffs, to measure them when they really happen.
pub(crate) fn record_predictions(cx: Ctx<'_>, st: &mut RelayState, t: Timestamp) {
    let t_ms = t.as_millisecond();
    if st
        .last_prediction_ms
        .is_some_and(|last| t_ms - last < PREDICTION_EVERY_MS)
    {
        return;
    }
    st.last_prediction_ms = Some(t_ms);
    let cur = st.current;
    let etas = eta_times(cx, st, st.shifts_applied, t, None, cur + PREDICTION_LEGS);
    for (i, (_, eta)) in etas.into_iter().enumerate().skip(cur).take(PREDICTION_LEGS) {
        let preds = &mut st.leg_mut(i).predictions;
        preds.push((t_ms, eta.as_millisecond()));
        if preds.len() > PREDICTIONS_MAX {
            // Keep every other one: the record thins out evenly rather than forgetting the start.
            let kept: Vec<(i64, i64)> = preds.iter().copied().step_by(2).collect();
            *preds = kept;
        }
    }
}

/// The predicted (or, once done, actual) start and end of every leg at `now`, counting the
/// first `known` shifts: the current leg's end from its pace plus the delays announced while it
/// is on, each later leg its expected duration ([`expected_ms`]) after the one before it, at
/// the pace ratio of its class on the finished legs and the current one as it was expected to
/// end at its holder's last fix (so a leg predicted to take 1.2 × its plan expects the same of
/// the legs of its kind that follow, however its first minutes went). Only
/// the first `upto` legs (a prediction needs the next few, a view all of them). With `public`,
/// the current leg's end as of the last fix spectators may see under the public delay (none:
/// its holder not yet seen, as far as they may know); without, as of the holder's last fix.
pub(crate) fn eta_times(
    cx: Ctx<'_>,
    st: &RelayState,
    known: usize,
    now: Timestamp,
    public: Option<Option<Fix>>,
    upto: usize,
) -> Vec<(Timestamp, Timestamp)> {
    let relay: &Relay = cx.relay;
    let cur = st.current;
    // Each class of leg by its own pace against the plan; a leg of none keeps its plan.
    let finished = pace_ratios(relay, st, now);
    let mut ratios = finished;
    let mut out = Vec::with_capacity(relay.legs.len());
    let mut next_start: Option<Timestamp> = None;
    for (i, (leg, lt)) in relay.legs.iter().zip(st.legs.iter()).enumerate().take(upto) {
        let planned_start = shifted(leg.start, cx.shift_ms(i, known));
        let (s, e) = if i < cur {
            (
                lt.actual_start.unwrap_or(planned_start),
                lt.actual_end
                    .unwrap_or(shifted(leg.end, cx.shift_ms(i, known))),
            )
        } else if let (true, Some(start)) = (i == cur, lt.actual_start) {
            let held = cx.held_ms(i, start, known);
            let end = if leg.geometry.route().is_none() && lt.last_fix.is_none() {
                untracked_end(cx, i, start, known).max(now)
            } else {
                // With a public delay, spectators get the ETA as of the last public fix.
                let (along_m, fix) = public.map_or((lt.along_m, lt.last_fix), |f| {
                    (f.map_or(0.0, |f| f.along_m), f)
                });
                let eta = |at| current_eta(leg, lt, along_m, fix, start, at, finished.of(leg));
                // The legs still to come count this one as it was expected to end at the fix
                // the ETA stands on: its time so far alone, over the distance covered, would
                // keep a slow start the carrier has long made up. Not as of now: a silence is
                // this carrier's (a dead phone, a fall) and slows only the handoffs after it.
                ratios = finished.counting(leg, start, eta(fix.map_or(start, |f| f.t)));
                shifted(eta(now), held).max(now)
            };
            (start, end)
        } else {
            // An upcoming leg starts when the one before it ends.
            let start = next_start.unwrap_or(planned_start);
            (start, shifted(start, expected_ms(leg, ratios.of(leg).0)))
        };
        next_start = Some(e);
        out.push((s, e));
    }
    out
}

/// The band around each ETA of `times` ([`eta_times`] at `now`): none for the legs done; the
/// current leg's end with the current quantiles, every later end with the later ones; each
/// measured from the evidence the ETAs stand on (so it does not move with the clock between
/// fixes), and widened by the current carrier's silence beyond [`SILENT_MOVING_MS`] since
/// `seen`, the holder's fix the view stands on (for a delayed view, the last public one). A
/// holder not seen on the leg is not silent: their ETA is the plan's, and so is its band. A
/// delay an operator announced for the current leg (the first `known` shifts) is not
/// uncertain: the band is around the rest. The relay's own errors are shrunk toward
/// `band_prior` ([`super::band::quantiles`]).
pub(crate) fn eta_bands(
    cx: Ctx<'_>,
    st: &RelayState,
    known: usize,
    now: Timestamp,
    times: &[(Timestamp, Timestamp)],
    seen: Option<Fix>,
    band_prior: super::band::Quantiles,
) -> Vec<Option<(Timestamp, Timestamp)>> {
    let cur = st.current;
    let q = super::band::quantiles(st, band_prior);
    // What the ETAs stand on: the holder's fix, else the leg's start; before the relay starts,
    // its predicted start.
    let started = st.legs.get(cur).filter(|lt| lt.actual_start.is_some());
    let seen = seen.filter(|_| started.is_some());
    let evidence = started.and_then(|lt| seen.map(|f| f.t).or(lt.actual_start));
    let announced_ms = started
        .and_then(|lt| lt.actual_start)
        .map_or(0, |start| cx.held_ms(cur, start, known));
    let from = shifted(
        evidence
            .or_else(|| times.get(cur).map(|&(start, _)| start))
            .unwrap_or(now),
        announced_ms.max(0),
    );
    // A silent carrier may have moved on unseen or stopped: beyond the time they are assumed
    // to keep moving after their last fix, the band widens.
    let silent_ms = seen.map_or(0, |f| {
        now.as_millisecond() - f.t.as_millisecond() - SILENT_MOVING_MS
    });
    times
        .iter()
        .enumerate()
        .map(|(i, &(_, eta))| {
            if i < cur {
                return None;
            }
            let quantiles = if i == cur && started.is_some() {
                q.current
            } else {
                q.later
            };
            Some(super::band::band(eta, from, now, quantiles, silent_ms))
        })
        .collect()
}

/// The relay's pace against its plan on its finished legs, for each class of leg
/// ([`PaceClass`], at its place in [`PaceClass::ALL`]): the time really taken and the time
/// planned for it, summed over the ended legs of that class with a route. A relay that runs
/// 20 % slower than planned on its first legs will likely do so on the next of their kind: it
/// is the current leg's prior pace (which the carrier's own observed pace takes over from
/// within minutes), and, with the current leg counted ([`PaceRatios::counting`]), it scales
/// the planned duration of every leg of the class still to come. One pass over the legs for
/// every class.
fn pace_ratios(relay: &Relay, st: &RelayState, now: Timestamp) -> PaceRatios {
    let mut ratios = PaceRatios([(0.0, 0.0); PaceClass::ALL.len()]);
    for (leg, lt) in relay.legs.iter().zip(st.legs.iter()).take(st.current) {
        if let Some(start) = lt.actual_start {
            ratios.add(leg, start, lt.actual_end.unwrap_or(now), leg.length_m());
        }
    }
    ratios
}

/// [`pace_ratios`]: for each class of leg, the seconds taken and the seconds planned for them.
#[derive(Clone, Copy)]
struct PaceRatios([(f64, f64); PaceClass::ALL.len()]);

impl PaceRatios {
    /// The ratio `leg` is expected at, and the seconds taken it is made of: its class's (time
    /// taken over time planned, clamped to 4× either way; 1 before a minute of plan is behind
    /// it), or 1 (no seconds) for a leg that keeps its plan.
    fn of(&self, leg: &Leg) -> (f64, f64) {
        leg.mode.pace_class().map_or((1.0, 0.0), |class| {
            let (taken_s, planned_s) = self.0[class as usize];
            if planned_s < 60.0 || taken_s <= 0.0 {
                (1.0, 0.0)
            } else {
                ((taken_s / planned_s).clamp(0.25, 4.0), taken_s)
            }
        })
    }

    /// These ratios with `leg` counted whole, from `start` to `end` (the current leg's ETA,
    /// without the delays an operator announced for it).
    fn counting(mut self, leg: &Leg, start: Timestamp, end: Timestamp) -> Self {
        self.add(leg, start, end, leg.length_m());
        self
    }

    /// Counts `along_m` of `leg` covered from `start` to `end`, if it is a leg of a class with
    /// a route.
    fn add(&mut self, leg: &Leg, start: Timestamp, end: Timestamp, along_m: f64) {
        let (Some(class), Some(_)) = (leg.mode.pace_class(), leg.geometry.route()) else {
            return;
        };
        #[allow(clippy::cast_precision_loss)]
        let taken = (end.as_millisecond() - start.as_millisecond()).max(0) as f64 / 1000.0;
        let (taken_s, planned_total_s) = &mut self.0[class as usize];
        *taken_s += taken;
        *planned_total_s += planned_s(leg, 0.0, along_m);
    }
}

/// How long an upcoming leg is expected to take: its plan (on foot or by bike, slowed by its
/// slopes: [`planned_s`]), scaled by the pace ratio of its class when it is a leg with a route
/// (a stage keeps its planned time; a flight, a jump, its plan on its route).
fn expected_ms(leg: &Leg, ratio: f64) -> i64 {
    let Some(route) = leg.geometry.route() else {
        return leg.duration_ms();
    };
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let ms = (planned_s(leg, 0.0, route.length_m()) * 1000.0 * ratio).round() as i64;
    ms
}

/// The current leg's end from the pace still to come: the plan's flat-ground pace scaled by the
/// relay's ratio on its finished legs, handing over to the carrier's observed pace on flat-ground
/// terms ([`PaceEvidence`](crate::eta::PaceEvidence)), then slowed or sped up by the terrain
/// of the rest of the leg.
fn current_eta(
    leg: &Leg,
    lt: &LegTrack,
    along_m: f64,
    fix: Option<Fix>,
    start: Timestamp,
    now: Timestamp,
    (finished_ratio, history_s): (f64, f64),
) -> Timestamp {
    let planned_end = shifted(start, leg.duration_ms());
    let Some(route) = leg.geometry.route() else {
        return planned_end.max(now);
    };
    let remaining_m = (route.length_m() - along_m).max(0.0);
    // Paces are in flat-equivalent metres a second (the prior and the observation alike), so a
    // climb observed is not carried onto the descent ahead: the speed over the rest is the
    // blended one on the rest's terrain.
    let prior_mps = planned_speed_mps(leg) / finished_ratio;
    let flat_mps = lt.evidence.blended_with_history_mps(prior_mps, history_s);
    let remaining_flat_m = flat_m(leg, along_m, route.length_m());
    let speed = if remaining_m > 1.0 && remaining_flat_m > 1.0 {
        flat_mps * remaining_m / remaining_flat_m
    } else {
        flat_mps
    };
    // A carrier not seen on the leg yet (a phone off on a flight, or never switched on) is
    // expected at the pace from the start, not assumed stopped there: nothing says they did.
    let (from, left_m) = match fix {
        Some(f) => (
            f.t.max(now),
            silent_remaining_m(remaining_m, speed, leg.exchange_radius_m, f.t, now),
        ),
        None => (start, remaining_m),
    };
    let eta = from
        .checked_add(SignedDuration::from_secs_f64(left_m / speed))
        .unwrap_or(planned_end);
    eta.max(now)
}

/// How far a carrier last seen `remaining_m` from the end at `from` is assumed to be from it
/// at `now`: moving on at `speed` for [`SILENT_MOVING_MS`] after the last fix (the gap between
/// fixes), then stopped (an auto-pause, a dead phone). Never assumed inside the exchange
/// radius while last seen outside it: a silent carrier's ETA moves with the clock and does not
/// read "now" while they are still away.
fn silent_remaining_m(
    remaining_m: f64,
    speed: f64,
    radius_m: f64,
    from: Timestamp,
    now: Timestamp,
) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let silent_s =
        (now.as_millisecond() - from.as_millisecond()).clamp(0, SILENT_MOVING_MS) as f64 / 1000.0;
    let left = remaining_m - speed * silent_s;
    if remaining_m > radius_m {
        left.max(radius_m)
    } else {
        left.max(0.0)
    }
}

/// ETA accuracy of every leg that has ended.
pub(crate) fn accuracy(st: &RelayState) -> Vec<LegAccuracy> {
    st.legs
        .iter()
        .enumerate()
        .filter_map(|(i, lt)| {
            let end = lt.actual_end?;
            let end_ms = end.as_millisecond();
            let duration_ms = lt
                .actual_start
                .map(|s| end_ms - s.as_millisecond())
                .filter(|d| *d > 0);
            let preds: Vec<(i64, i64)> = lt
                .predictions
                .iter()
                .copied()
                .filter(|(t, _)| *t <= end_ms)
                .collect();
            let (first, last) = (preds.first()?, preds.last()?);
            let samples: Vec<Sample> = preds
                .iter()
                .map(|(t, eta)| Sample {
                    lead_ms: end_ms - t,
                    error_ms: eta - end_ms,
                    duration_ms,
                })
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let mean = samples
                .iter()
                .map(|s| s.error_ms.abs() as f64 / 1000.0)
                .sum::<f64>()
                / samples.len() as f64;
            #[allow(clippy::cast_precision_loss)]
            Some(LegAccuracy {
                leg: i,
                actual_end: end,
                duration_s: duration_ms.map(|d| d as f64 / 1000.0),
                predictions: preds.len(),
                mean_abs_error_s: tenth(mean),
                max_abs_error_s: samples
                    .iter()
                    .map(|s| s.error_ms.abs() / 1000)
                    .max()
                    .unwrap_or(0),
                first_error_s: (first.1 - end_ms) / 1000,
                first_lead_s: (end_ms - first.0) / 1000,
                last_error_s: (last.1 - end_ms) / 1000,
                last_lead_s: (end_ms - last.0) / 1000,
                by_lead: by_lead(&samples),
                samples,
            })
        })
        .collect()
}

#[cfg(test)]
mod lead_tests {
    use super::*;

    fn sample(lead_s: i64, error_ms: i64) -> Sample {
        Sample {
            lead_ms: lead_s * 1000,
            error_ms,
            duration_ms: Some(600_000),
        }
    }

    #[test]
    fn errors_are_grouped_by_lead_time_with_median_p90_and_share_of_the_leg() {
        // Seconds before the end: small errors; half an hour before: large ones.
        let samples = [
            sample(10, 1_500),
            sample(30, -2_500),
            sample(50, 500),
            sample(1_900, 120_000),
            sample(2_000, -60_000),
            sample(7_200, 300_000),
        ];
        let groups = by_lead(&samples);
        let spans: Vec<(i64, Option<i64>, usize)> = groups
            .iter()
            .map(|g| (g.lead_from_s, g.lead_to_s, g.predictions))
            .collect();
        assert_eq!(
            spans,
            [(0, Some(60), 3), (1800, Some(3600), 2), (3600, None, 1)]
        );
        // Not truncated to whole seconds: 0.5, 1.5, 2.5 s.
        assert!(
            (groups[0].median_abs_error_s - 1.5).abs() < 1e-9,
            "{groups:?}"
        );
        assert!((groups[0].p90_abs_error_s - 2.5).abs() < 1e-9);
        // 60 and 120 s of a 600 s leg: the median (nearest rank) is 10 %.
        assert_eq!(groups[1].median_abs_error_pct, Some(10.0));
        assert!(by_lead(&[]).is_empty());
    }
}
