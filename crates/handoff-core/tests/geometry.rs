//! Property tests of route geometry: random walks of 10–500 m steps anywhere on Earth (with
//! extra weight near the poles and the antimeridian, where degree arithmetic breaks), checked
//! against brute force with WGS 84 geodesics.

use handoff_core::geodesic::{Coord, destination, distance_m};
use handoff_core::route::{BACKWARD_COST_FACTOR, HINT_WINDOW_M, Route};
use proptest::prelude::*;

/// Where a route starts: anywhere, near the antimeridian, or at high latitude.
fn start() -> impl Strategy<Value = Coord> {
    prop_oneof![
        (-180.0..180.0, -85.0..85.0f64).prop_map(|(lon, lat)| Coord::new(lon, lat)),
        (179.95..=180.0f64, -70.0..70.0f64, any::<bool>())
            .prop_map(|(lon, lat, west)| { Coord::new(if west { -lon } else { lon }, lat) }),
        (-180.0..180.0, 80.0..89.99f64, any::<bool>())
            .prop_map(|(lon, lat, south)| { Coord::new(lon, if south { -lat } else { lat }) }),
    ]
}

/// A random walk: each vertex 10–500 m from the previous one, in any direction (so routes
/// double back, cross themselves and make hairpins).
fn random_route() -> impl Strategy<Value = Route> {
    (
        start(),
        prop::collection::vec((0.0..360.0f64, 10.0..500.0f64), 1..30),
    )
        .prop_map(|(first, steps)| {
            let mut points = vec![first];
            for (azimuth_deg, step_m) in steps {
                let last = points[points.len() - 1];
                points.push(destination(last, azimuth_deg, step_m));
            }
            Route::new(points).expect("a random walk is a valid route")
        })
}

fn nearest_vertex_m(route: &Route, p: Coord) -> f64 {
    route
        .points()
        .iter()
        .map(|&v| distance_m(p, v))
        .fold(f64::INFINITY, f64::min)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) A projection is never farther than the nearest vertex (nor than any sampled point
    /// of the route), and its along-distance names its own foot.
    #[test]
    fn projection_is_never_farther_than_the_route(
        route in random_route(),
        at in 0.0..=1.0f64,
        azimuth_deg in 0.0..360.0f64,
        off_m in 0.0..2_000.0f64,
    ) {
        let p = destination(route.point_at(at * route.length_m()), azimuth_deg, off_m);
        let pr = route.project(p, None);
        let vertex_m = nearest_vertex_m(&route, p);
        prop_assert!(
            pr.cross_track_m <= vertex_m + 0.5 + 1e-6 * vertex_m,
            "cross-track {} > nearest vertex {vertex_m}: {pr:?}", pr.cross_track_m
        );
        let mut sampled_m = f64::INFINITY;
        let mut s = 0.0;
        while s <= route.length_m() {
            sampled_m = sampled_m.min(distance_m(p, route.point_at(s)));
            s += 10.0;
        }
        prop_assert!(pr.cross_track_m <= sampled_m + 0.5, "{pr:?} vs sampled {sampled_m}");
        prop_assert!((pr.cross_track_m - distance_m(p, pr.point)).abs() < 1e-6);
        let foot_m = distance_m(route.point_at(pr.along_m), pr.point);
        prop_assert!(foot_m < 0.5, "point_at(along) is {foot_m} m from the foot: {pr:?}");
    }

    /// (b) Walking forwards along the route, each ping hinted with the previous along-distance,
    /// never runs backwards: by at most 1 m of numerical slack plus, where another branch is
    /// within the hint window, 1/BACKWARD_COST_FACTOR of the distance moved.
    #[test]
    fn monotone_walk_gives_monotone_progress(
        route in random_route(),
        mut fractions in prop::collection::vec(0.0..=1.0f64, 1..80),
    ) {
        fractions.sort_by(f64::total_cmp);
        let mut hint_m = 0.0;
        for f in fractions {
            let s = f * route.length_m();
            let pr = route.project(route.point_at(s), Some(hint_m));
            let slack_m = 1.0 + (s - hint_m).max(0.0) / BACKWARD_COST_FACTOR;
            prop_assert!(
                pr.along_m >= hint_m - slack_m,
                "at {s} m: along {} after {hint_m} ({pr:?})", pr.along_m
            );
            // On the route itself, so any other branch chosen is within the hint window.
            prop_assert!(pr.cross_track_m <= HINT_WINDOW_M + 0.5, "{pr:?}");
            hint_m = pr.along_m;
        }
    }

    /// (c) Along-distance is within [0, length], with or without a hint, near or far.
    #[test]
    fn along_is_within_the_route(
        route in random_route(),
        at in -0.2..=1.2f64,
        azimuth_deg in 0.0..360.0f64,
        off_m in 0.0..20_000.0f64,
        hint in prop::option::of(-1_000.0..30_000.0f64),
    ) {
        let anchor = route.point_at(at * route.length_m());
        let p = destination(anchor, azimuth_deg, off_m);
        let pr = route.project(p, hint);
        prop_assert!(pr.along_m >= 0.0 && pr.along_m <= route.length_m(), "{pr:?}");
        prop_assert!(pr.segment + 1 < route.points().len());
        let seg = route.cumulative_m()[pr.segment]..=route.cumulative_m()[pr.segment + 1];
        prop_assert!(seg.contains(&pr.along_m), "{pr:?} outside its segment {seg:?}");
    }
}
