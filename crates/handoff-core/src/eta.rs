//! The pace model behind every ETA: start from the plan's own pace for the leg (its length over
//! its planned duration), adjust foot and bike legs for the slope still ahead (Tobler's hiking
//! function), and blend in the pace the carrier is really making as evidence accumulates.

use crate::plan::Leg;
use std::collections::VecDeque;

/// How much recent movement the observed pace looks at.
pub const PACE_WINDOW_MS: i64 = 180_000;
/// Observed pace counts fully once it spans this long; less, and the plan's pace weighs more.
const FULL_TRUST_MS: f64 = 120_000.0;

/// Tobler's hiking function: walking speed (km/h) on a slope `grade` (rise over run).
#[must_use]
pub fn tobler_kmh(grade: f64) -> f64 {
    6.0 * (-3.5 * (grade + 0.05).abs()).exp()
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

/// The planned speed for what is left of a leg from `along_m`: on foot or by bike with an
/// elevation profile, scaled by how much harder (or easier) the rest is than the whole leg.
#[must_use]
pub fn planned_speed_ahead_mps(leg: &Leg, along_m: f64) -> f64 {
    let base = planned_speed_mps(leg);
    if !leg.mode.is_muscle_powered() {
        return base;
    }
    let Some(route) = leg.geometry.route() else {
        return base;
    };
    let (Some(whole), Some(rest)) = (
        route.grade_between(0.0, route.length_m()),
        route.grade_between(along_m, route.length_m()),
    ) else {
        return base;
    };
    base * tobler_kmh(rest) / tobler_kmh(whole)
}

/// Recent (time, distance along) samples of the current leg, for observed pace.
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

    /// The pace to predict with: the plan's pace ahead, blended with what is observed in
    /// proportion to how long it has been observed. Never zero, so an ETA always exists.
    #[must_use]
    pub fn blended_mps(&self, planned_mps: f64) -> f64 {
        let planned = planned_mps.max(0.1);
        match self.observed() {
            #[allow(clippy::cast_precision_loss)]
            Some((obs, span_ms)) => {
                let w = (span_ms as f64 / FULL_TRUST_MS).min(1.0) * 0.8;
                (w * obs + (1.0 - w) * planned).max(planned * 0.1)
            }
            None => planned,
        }
    }
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
    fn blended_pace_moves_from_plan_to_observation() {
        let mut w = PaceWindow::default();
        assert!((w.blended_mps(3.0) - 3.0).abs() < 1e-12);
        for i in 0..=180 {
            w.push(i * 1000, f64::from(i32::try_from(i).unwrap_or(0)) * 5.0);
        }
        let (obs, span) = w.observed().unwrap();
        assert!((obs - 5.0).abs() < 1e-9);
        assert_eq!(span, 180_000);
        let b = w.blended_mps(3.0);
        assert!(b > 4.5 && b < 5.0, "{b}");
    }
}
