//! Demo time: the relay's real schedule (fourteen hours, an eleven-hour flight among them) runs
//! in about three minutes, each leg compressed by its own factor so the flight does not
//! dominate. The server, the simulator and every timestamp use this clock, so the plan keeps
//! its real durations and speeds (and passes `plan check`) while the show stays short.

use jiff::{SignedDuration, Timestamp};
use std::time::Instant;

/// From this real offset (seconds since the demo started) on, virtual time runs from `virt` at
/// `rate` virtual seconds per real second.
#[derive(Debug, Clone, Copy)]
struct Segment {
    real_s: f64,
    virt: Timestamp,
    rate: f64,
}

#[derive(Debug, Clone)]
pub struct DemoClock {
    started: Instant,
    segments: Vec<Segment>,
}

impl DemoClock {
    /// `spans`: consecutive (virtual duration, real seconds to show it in), starting at
    /// `virt_start`; before and after them time runs at the real rate.
    #[must_use]
    pub fn new(virt_start: Timestamp, lead_s: f64, spans: &[(SignedDuration, f64)]) -> Self {
        let mut segments = vec![Segment {
            real_s: 0.0,
            virt: virt_start
                .checked_sub(SignedDuration::from_secs_f64(lead_s))
                .unwrap_or(virt_start),
            rate: 1.0,
        }];
        let (mut real_s, mut virt) = (lead_s, virt_start);
        for &(d, show_s) in spans {
            let show_s = show_s.max(0.05);
            segments.push(Segment {
                real_s,
                virt,
                rate: d.as_secs_f64() / show_s,
            });
            real_s += show_s;
            virt = virt.checked_add(d).unwrap_or(virt);
        }
        segments.push(Segment {
            real_s,
            virt,
            rate: 1.0,
        });
        Self {
            started: Instant::now(),
            segments,
        }
    }

    /// Seconds since the demo started.
    #[must_use]
    pub fn real_elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Virtual time at a real offset.
    #[must_use]
    pub fn at(&self, real_s: f64) -> Timestamp {
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.real_s <= real_s)
            .unwrap_or(&self.segments[0]);
        seg.virt
            .checked_add(SignedDuration::from_secs_f64(
                (real_s - seg.real_s) * seg.rate,
            ))
            .unwrap_or(seg.virt)
    }

    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.at(self.real_elapsed_s())
    }

    /// Real seconds the whole compressed schedule takes (lead-in included).
    #[must_use]
    pub fn show_s(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.real_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_compress_each_span_to_its_show_time() {
        let v0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = DemoClock::new(
            v0,
            2.0,
            &[
                (SignedDuration::from_hours(11), 30.0),
                (SignedDuration::from_mins(4), 8.0),
            ],
        );
        assert_eq!(
            c.at(0.0),
            v0.checked_sub(SignedDuration::from_secs(2)).unwrap()
        );
        assert_eq!(c.at(2.0), v0);
        assert_eq!(
            c.at(32.0),
            v0.checked_add(SignedDuration::from_hours(11)).unwrap()
        );
        assert_eq!(
            c.at(17.0),
            v0.checked_add(SignedDuration::from_mins(330)).unwrap()
        );
        assert_eq!(
            c.at(40.0),
            v0.checked_add(SignedDuration::from_mins(664)).unwrap()
        );
        assert_eq!(
            c.at(41.0),
            v0.checked_add(SignedDuration::from_secs(664 * 60 + 1))
                .unwrap()
        );
        assert!((c.show_s() - 40.0).abs() < 1e-9);
    }
}
