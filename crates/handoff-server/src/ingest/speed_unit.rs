//! Which unit a device's OsmAnd-form `speed` is in, told from its own fixes.
//!
//! Traccar reads that field as knots, and Traccar Client sends knots; but the OsmAnd app,
//! GPSLogger's `%SPD` and Colota send metres per second in the same field, and nothing in the
//! request says which. The fixes do: the ground speed between two fixes (distance over time)
//! is what the phone measured, so the ratio of the reported numbers to it is the unit's factor
//! (1.94 for knots, 1 for m/s, 3.6 for km/h). One pair is noisy (GPS jitter, a bend between
//! the fixes), so the decision is the median ratio over a window of pairs, taken only when it
//! lies clearly near one unit's factor. Until then a device's speed is read as knots, as
//! Traccar does, unless the operator registered its unit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use handoff_core::geodesic::{Coord, distance_m};
use handoff_core::ping::SpeedUnit;
use jiff::{SignedDuration, Timestamp};

/// Pairs kept for the median: enough to outvote a few bad ones, few enough to follow a device
/// that was re-configured.
const WINDOW: usize = 15;
/// Pairs needed before any decision.
const MIN_SAMPLES: usize = 5;
/// The two fixes of a pair must be at least this far apart, and this many times their summed
/// accuracies, so that GPS jitter is small against the distance.
const MIN_DISTANCE_M: f64 = 30.0;
const ACCURACY_FACTOR: f64 = 2.0;
/// A pair spanning longer than this says little about the speed at either end (a stop, a
/// detour): the older fix is dropped instead.
const MAX_SPAN: SignedDuration = SignedDuration::from_mins(3);
/// Below this ground speed a phone's reported speed is mostly noise.
const MIN_GROUND_MPS: f64 = 1.0;
/// How far (as a factor, in log space) the median may lie from a unit's factor and still be
/// taken for it: ln 1.2, so 20 % either way. The factors are 1.85 to 1.94 apart: at most one
/// unit matches, and a median between two units decides nothing.
const TOLERANCE_LN: f64 = 0.182_321_6;

/// One fix of a device with a speed in its unknown unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub t: Timestamp,
    pub lon: f64,
    pub lat: f64,
    pub acc_m: Option<f64>,
    /// The `speed` number as the device sent it.
    pub speed: f64,
}

/// The running estimate for one device.
#[derive(Debug, Default, Clone)]
pub struct Detector {
    /// The first fix of the pair being measured, and the reported speeds since it.
    anchor: Option<Fix>,
    speeds_since: Vec<f64>,
    /// Reported number / ground speed in m/s, one per measured pair, newest last.
    ratios: VecDeque<f64>,
    decided: Option<SpeedUnit>,
}

impl Detector {
    /// Takes a fix into the estimate; returns the unit decided so far.
    pub fn observe(&mut self, fix: Fix) -> Option<SpeedUnit> {
        let Some(anchor) = self.anchor else {
            self.restart_at(fix);
            return self.decided;
        };
        let span = fix.t.duration_since(anchor.t);
        if span <= SignedDuration::ZERO {
            // A late fix: the pair is measured forwards in device time only.
            return self.decided;
        }
        if span > MAX_SPAN {
            self.restart_at(fix);
            return self.decided;
        }
        self.speeds_since.push(fix.speed);
        let distance_m = distance_m(
            Coord::new(anchor.lon, anchor.lat),
            Coord::new(fix.lon, fix.lat),
        );
        let jitter_m = ACCURACY_FACTOR * (anchor.acc_m.unwrap_or(0.0) + fix.acc_m.unwrap_or(0.0));
        if distance_m < MIN_DISTANCE_M.max(jitter_m) {
            return self.decided;
        }
        let ground_mps = distance_m / span.as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // a handful of speeds
        let reported = self.speeds_since.iter().sum::<f64>() / self.speeds_since.len() as f64;
        if ground_mps >= MIN_GROUND_MPS && reported > 0.0 {
            if self.ratios.len() == WINDOW {
                self.ratios.pop_front();
            }
            self.ratios.push_back(reported / ground_mps);
            if let Some(unit) = self.estimate() {
                self.decided = Some(unit);
            }
        }
        self.restart_at(fix);
        self.decided
    }

    fn restart_at(&mut self, fix: Fix) {
        self.anchor = Some(fix);
        self.speeds_since.clear();
        self.speeds_since.push(fix.speed);
    }

    /// The unit whose factor the median ratio is clearly near, with enough pairs.
    fn estimate(&self) -> Option<SpeedUnit> {
        if self.ratios.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<f64> = self.ratios.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            f64::midpoint(sorted[mid - 1], sorted[mid])
        } else {
            sorted[mid]
        };
        SpeedUnit::ALL
            .into_iter()
            .find(|u| (median / u.per_mps()).ln().abs() <= TOLERANCE_LN)
    }

    /// The unit decided, if any.
    #[must_use]
    pub fn decided(&self) -> Option<SpeedUnit> {
        self.decided
    }

    /// How many pairs the estimate holds now.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.ratios.len()
    }
}

/// The detectors of every device, by (event, device). In memory: after a restart a device is
/// detected again from its next fixes (read as knots meanwhile, unless its unit is registered).
#[derive(Debug, Default)]
pub struct SpeedUnits {
    detectors: Mutex<HashMap<(String, String), Detector>>,
}

/// What is known of a device's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub unit: Option<SpeedUnit>,
    pub samples: usize,
}

impl SpeedUnits {
    /// Takes a fix of a device whose unit is not registered; returns the unit to read it with.
    pub fn observe(&self, event: &str, device: &str, fix: Fix) -> SpeedUnit {
        let mut detectors = self
            .detectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        detectors
            .entry((event.to_owned(), device.to_owned()))
            .or_default()
            .observe(fix)
            .unwrap_or(SpeedUnit::Knots)
    }

    /// What has been detected of a device so far.
    #[must_use]
    pub fn detected(&self, event: &str, device: &str) -> Detected {
        let detectors = self
            .detectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        detectors
            .get(&(event.to_owned(), device.to_owned()))
            .map_or(
                Detected {
                    unit: None,
                    samples: 0,
                },
                |d| Detected {
                    unit: d.decided(),
                    samples: d.samples(),
                },
            )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use handoff_core::geodesic::destination;

    use super::*;
    use crate::ingest::tests::ts;

    /// A tiny deterministic noise source (an LCG), in [-1, 1).
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            #[allow(clippy::cast_precision_loss)]
            let u = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
            2.0 * u - 1.0
        }
    }

    /// A track of `n` fixes every `every_s` seconds at `true_mps` heading east then north (a
    /// corner), with `jitter_m` of position noise and ±10 % speed noise, its speed sent in `unit`.
    fn track(unit: SpeedUnit, true_mps: f64, every_s: i64, n: usize, jitter_m: f64) -> Vec<Fix> {
        let mut noise = Noise(7);
        let start = ts("2024-08-11T21:00:00Z");
        let mut at = Coord::new(2.3522, 48.8566);
        (0..n)
            .map(|i| {
                let heading = if i < n / 2 { 90.0 } else { 0.0 };
                if i > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let step = true_mps * every_s as f64;
                    at = destination(at, heading, step);
                }
                let seen = destination(
                    destination(at, 0.0, jitter_m * noise.next()),
                    90.0,
                    jitter_m * noise.next(),
                );
                let i = i64::try_from(i).unwrap();
                Fix {
                    t: start
                        .checked_add(SignedDuration::from_secs(i * every_s))
                        .unwrap(),
                    lon: seen.lon,
                    lat: seen.lat,
                    acc_m: Some(jitter_m),
                    speed: (true_mps * (1.0 + 0.1 * noise.next())) * unit.per_mps(),
                }
            })
            .collect()
    }

    fn detect(fixes: &[Fix]) -> Option<SpeedUnit> {
        let mut d = Detector::default();
        fixes.iter().map(|f| d.observe(*f)).last().flatten()
    }

    #[test]
    fn a_bike_in_mps_a_car_in_knots_and_a_runner_in_kmh_are_told_apart() {
        for unit in SpeedUnit::ALL {
            for (mps, every_s, jitter_m) in [(5.0, 5, 5.0), (15.0, 10, 8.0), (3.0, 10, 4.0)] {
                let fixes = track(unit, mps, every_s, 60, jitter_m);
                assert_eq!(detect(&fixes), Some(unit), "{unit} at {mps} m/s");
            }
        }
    }

    #[test]
    fn nothing_is_decided_from_too_few_pairs() {
        let fixes = track(SpeedUnit::Mps, 5.0, 10, 5, 3.0);
        let mut d = Detector::default();
        for f in &fixes {
            assert_eq!(d.observe(*f), None);
        }
        assert_eq!(d.samples(), 4);
    }

    #[test]
    fn a_phone_standing_still_or_reporting_zero_decides_nothing() {
        // Standing still with 5 m of jitter and a reported speed of noise.
        let still = track(SpeedUnit::Mps, 0.0, 5, 100, 5.0);
        assert_eq!(detect(&still), None);
        let mut zeros = track(SpeedUnit::Mps, 5.0, 5, 100, 3.0);
        for f in &mut zeros {
            f.speed = 0.0;
        }
        assert_eq!(detect(&zeros), None);
    }

    #[test]
    fn a_speed_that_fits_no_unit_decides_nothing() {
        // Reported numbers 2.7 times the ground speed: neither knots (1.94) nor km/h (3.6).
        let mut fixes = track(SpeedUnit::Mps, 5.0, 10, 60, 3.0);
        for f in &mut fixes {
            f.speed *= 2.7;
        }
        assert_eq!(detect(&fixes), None);
    }

    #[test]
    fn a_few_wild_pairs_are_outvoted() {
        let mut fixes = track(SpeedUnit::Mps, 5.0, 10, 40, 3.0);
        for f in fixes.iter_mut().step_by(7) {
            f.speed *= 6.0;
        }
        assert_eq!(detect(&fixes), Some(SpeedUnit::Mps));
    }

    #[test]
    fn late_fixes_and_long_gaps_do_not_make_pairs() {
        let fixes = track(SpeedUnit::Mps, 5.0, 10, 12, 3.0);
        let mut d = Detector::default();
        d.observe(fixes[5]);
        // Older than the anchor: ignored.
        d.observe(fixes[1]);
        assert_eq!(d.samples(), 0);
        // Ten minutes on: a new anchor, no pair.
        let mut later = fixes[6];
        later.t = later.t.checked_add(SignedDuration::from_mins(10)).unwrap();
        d.observe(later);
        assert_eq!(d.samples(), 0);
    }

    #[test]
    fn the_registry_reads_knots_until_a_unit_is_decided() {
        let units = SpeedUnits::default();
        let fixes = track(SpeedUnit::Mps, 5.0, 10, 30, 3.0);
        let used: Vec<SpeedUnit> = fixes
            .iter()
            .map(|f| units.observe("paris", "osmand-app", *f))
            .collect();
        assert_eq!(used[0], SpeedUnit::Knots);
        assert_eq!(used.last(), Some(&SpeedUnit::Mps));
        assert_eq!(
            units.detected("paris", "osmand-app").unit,
            Some(SpeedUnit::Mps)
        );
        assert_eq!(
            units.detected("paris", "another"),
            Detected {
                unit: None,
                samples: 0
            }
        );
    }
}
