//! When a carrier reached an exchange point (or the finish): the time of their closest
//! approach to it, not the moment they entered its radius.
//!
//! The one idea: entering the radius is only the start of an approach. While the holder is in
//! the leg's end zone, each fix offers a candidate (the closest point to the exchange on the
//! straight path from the previous fix to this one, with its interpolated time, so passing the
//! point between two fixes is caught too); the approach is over when a fix is at the point
//! ([`ARRIVED_M`]), moves away from the closest by more than GPS noise, or leaves the zone.
//! Its time is the stamp of the leg's end; a waiting receiver's phone confirms the handoff no
//! earlier than that.

use jiff::{SignedDuration, Timestamp};

use crate::geodesic::Coord;

/// A carrier this close to the exchange point has reached it.
pub(crate) const ARRIVED_M: f64 = 10.0;
/// A fix farther than the closest approach by this much (or twice its accuracy) is moving away.
const AWAY_M: f64 = 15.0;

/// The holder's closest approach to their leg's end so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Approach {
    pub t: Timestamp,
    pub distance_m: f64,
    /// The approach is over: `t` is when the carrier reached the exchange point.
    pub over: bool,
}

/// Metres east and north of `origin` (a local flat frame: fine over the few hundred metres
/// between two fixes).
fn local_m(origin: Coord, p: Coord) -> (f64, f64) {
    const M_PER_DEG: f64 = 111_320.0;
    let east = (p.lon - origin.lon) * M_PER_DEG * origin.lat.to_radians().cos();
    let north = (p.lat - origin.lat) * M_PER_DEG;
    (east, north)
}

/// The closest point to `target` on the straight path from `prev` to `here`: its time
/// (interpolated between the fixes) and its distance.
pub(crate) fn closest_on_path(
    prev: Option<(Timestamp, Coord)>,
    here: (Timestamp, Coord),
    target: Coord,
) -> (Timestamp, f64) {
    let (bx, by) = local_m(target, here.1);
    let Some((t0, p0)) = prev.filter(|(t0, _)| *t0 < here.0) else {
        return (here.0, bx.hypot(by));
    };
    let (ax, ay) = local_m(target, p0);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let s = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let d = (ax + s * dx).hypot(ay + s * dy);
    let span = here.0.duration_since(t0);
    let t = t0
        .checked_add(SignedDuration::from_secs_f64(span.as_secs_f64() * s))
        .unwrap_or(here.0);
    (t, d)
}

impl Approach {
    /// The approach after one more fix of the holder: `inside` the end zone or not, `here_m`
    /// from the exchange point, `candidate` its closest point on the way there.
    pub(crate) fn step(
        prev: Option<Approach>,
        inside: bool,
        here_m: f64,
        candidate: (Timestamp, f64),
        acc_m: Option<f64>,
    ) -> Option<Approach> {
        match prev {
            Some(a) if a.over => Some(a),
            None if !inside => None,
            Some(a) if !inside => Some(Approach { over: true, ..a }),
            _ => {
                let best = match prev {
                    Some(a) if a.distance_m <= candidate.1 => a,
                    _ => Approach {
                        t: candidate.0,
                        distance_m: candidate.1,
                        over: false,
                    },
                };
                let away = (2.0 * acc_m.unwrap_or(0.0)).max(AWAY_M);
                let over = best.distance_m <= ARRIVED_M || here_m > best.distance_m + away;
                Some(Approach { over, ..best })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_723_410_000 + s).unwrap()
    }

    #[test]
    fn passing_the_point_between_two_fixes_is_stamped_where_it_was_passed() {
        let target = Coord::new(2.35, 48.85);
        // 100 m west at 0 s, 100 m east at 20 s: passed the point at 10 s, right on it.
        let dlon = 100.0 / (111_320.0 * 48.85_f64.to_radians().cos());
        let (at, d) = closest_on_path(
            Some((t(0), Coord::new(2.35 - dlon, 48.85))),
            (t(20), Coord::new(2.35 + dlon, 48.85)),
            target,
        );
        assert_eq!(at, t(10));
        assert!(d < 0.01, "{d}");
        // No fix before: the fix itself.
        let (at, d) = closest_on_path(None, (t(20), Coord::new(2.35 + dlon, 48.85)), target);
        assert_eq!(at, t(20));
        assert!((d - 100.0).abs() < 0.5, "{d}");
    }

    #[test]
    fn an_approach_ends_at_the_point_when_moving_away_or_on_leaving_the_zone() {
        let a = Approach::step(None, true, 40.0, (t(0), 40.0), None).unwrap();
        assert!(!a.over);
        let a = Approach::step(Some(a), true, 25.0, (t(5), 25.0), None).unwrap();
        assert_eq!((a.t, a.over), (t(5), false));
        // GPS noise around the closest fix does not end it; moving 15 m farther does.
        let a = Approach::step(Some(a), true, 35.0, (t(10), 25.0), None).unwrap();
        assert_eq!((a.t, a.over), (t(5), false));
        let a = Approach::step(Some(a), true, 41.0, (t(15), 35.0), None).unwrap();
        assert_eq!((a.t, a.over), (t(5), true));
        // Reaching the point ends it at once; leaving the zone ends it at the closest.
        let b = Approach::step(None, true, 8.0, (t(3), 8.0), None).unwrap();
        assert_eq!((b.t, b.over), (t(3), true));
        let c = Approach::step(None, true, 30.0, (t(3), 30.0), None);
        let c = Approach::step(c, false, 80.0, (t(9), 60.0), None).unwrap();
        assert_eq!((c.t, c.over), (t(3), true));
        assert_eq!(Approach::step(None, false, 80.0, (t(9), 60.0), None), None);
    }
}
