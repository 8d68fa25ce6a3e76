//! Predictions: when every remaining handoff of a relay will happen (the current leg's end from
//! its pace, each later leg its planned duration after the one before), the delays an operator
//! announced, and the record of earlier predictions that lets accuracy be measured at the real
//! handoff.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::eta::{planned_speed_ahead_mps, planned_speed_mps};
use crate::plan::{Leg, Relay};

use super::Fix;
use super::step::{Ctx, LegTrack, RelayState, shifted, untracked_end};

/// ETA predictions are sampled at most this often (device time).
const PREDICTION_EVERY_MS: i64 = 20_000;
/// Predictions are kept for the current leg's end and this many handoffs after it.
const PREDICTION_LEGS: usize = 4;
/// A silent carrier is assumed to keep moving this long after their last fix, then stopped.
const SILENT_MOVING_MS: i64 = 30_000;
/// Predictions kept per leg; beyond it the record thins out evenly.
const PREDICTIONS_MAX: usize = 512;

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
/// is on, each later leg its planned duration after the one before it. Only the first `upto`
/// legs (a prediction needs the next few, a view all of them).
pub(crate) fn eta_times(
    cx: Ctx<'_>,
    st: &RelayState,
    known: usize,
    now: Timestamp,
    public_fix: Option<Fix>,
    upto: usize,
) -> Vec<(Timestamp, Timestamp)> {
    let relay: &Relay = cx.relay;
    let cur = st.current;
    let ratio = pace_ratio(relay, st, now);
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
                let (along_m, fix) =
                    public_fix.map_or((lt.along_m, lt.last_fix), |f| (f.along_m, Some(f)));
                shifted(current_eta(leg, lt, along_m, fix, start, now), held).max(now)
            };
            (start, end)
        } else {
            // An upcoming leg starts when the one before it ends.
            let start = next_start.unwrap_or(planned_start);
            (start, shifted(start, expected_ms(leg, ratio)))
        };
        next_start = Some(e);
        out.push((s, e));
    }
    out
}

/// The relay's pace against its plan so far: time really taken over the time planned for the
/// distance really covered, on the legs with a route that have ended and the one in progress
/// (clamped to 4× either way; 1 before there is any evidence). A relay that runs 20 % slower
/// than planned on its first legs will likely do so on the next: this scales the planned
/// duration of every leg still to come. (Scaling the current leg's planned pace as well was
/// measured worse on the evaluation: a rest inflates the ratio just when the carrier's own
/// recent pace is the better guide; docs/eta.md.)
fn pace_ratio(relay: &Relay, st: &RelayState, now: Timestamp) -> f64 {
    let (mut taken_s, mut planned_s) = (0.0, 0.0);
    for (i, (leg, lt)) in relay
        .legs
        .iter()
        .zip(st.legs.iter())
        .enumerate()
        .take(st.current + 1)
    {
        let (Some(_), Some(start)) = (leg.geometry.route(), lt.actual_start) else {
            continue;
        };
        let end = if i < st.current {
            lt.actual_end.unwrap_or(now)
        } else {
            lt.last_fix.map_or(start, |f| f.t)
        };
        let along_m = if i < st.current {
            leg.length_m()
        } else {
            lt.along_m
        };
        #[allow(clippy::cast_precision_loss)]
        let taken = (end.as_millisecond() - start.as_millisecond()).max(0) as f64 / 1000.0;
        taken_s += taken;
        planned_s += along_m / planned_speed_mps(leg).max(0.1);
    }
    if planned_s < 60.0 || taken_s <= 0.0 {
        return 1.0;
    }
    (taken_s / planned_s).clamp(0.25, 4.0)
}

/// How long an upcoming leg is expected to take: its plan, scaled by the relay's pace ratio
/// when it is a leg with a route (a stage keeps its planned time).
fn expected_ms(leg: &Leg, ratio: f64) -> i64 {
    if leg.geometry.route().is_none() {
        return leg.duration_ms();
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let ms = (leg.duration_ms() as f64 * ratio).round() as i64;
    ms
}

/// The current leg's end from the pace still to come.
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
    let left_m = silent_remaining_m(remaining_m, speed, leg.exchange_radius_m, from, now);
    let eta = now
        .max(from)
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
            let preds: Vec<(i64, i64)> = lt
                .predictions
                .iter()
                .copied()
                .filter(|(t, _)| *t <= end_ms)
                .collect();
            let (first, last) = (preds.first()?, preds.last()?);
            let errs: Vec<i64> = preds.iter().map(|(_, eta)| (eta - end_ms) / 1000).collect();
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
        .collect()
}
