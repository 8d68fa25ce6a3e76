//! How the cost of projecting a ping onto a route grows with the route's size (it should grow
//! like log n: an R-tree descent plus a constant number of geodesic calls).
//!
//! Run with `cargo bench -p handoff-core --bench projection`; results go in
//! `docs/benchmarks.md`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use handoff_core::geodesic::{Coord, destination, distance_m};
use handoff_core::route::Route;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64), so runs are comparable without a `rand`
/// dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)]
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

/// A wandering route of `n` vertices 10–50 m apart, its heading drifting by up to ±20° per
/// vertex (roads rather than a random scribble), starting near the antimeridian at 60° N so the
/// big ones cross it and wander over a wide range of latitudes.
fn wandering_route(n: usize, rng: &mut SplitMix) -> Vec<Coord> {
    let mut points = Vec::with_capacity(n);
    let mut at = Coord::new(179.5, 60.0);
    let mut heading_deg: f64 = 90.0;
    points.push(at);
    while points.len() < n {
        heading_deg = (heading_deg + rng.range(-20.0, 20.0)).rem_euclid(360.0);
        at = destination(at, heading_deg, rng.range(10.0, 50.0));
        points.push(at);
    }
    points
}

/// Pings near the route: a random place along it, moved up to 50 m in a random direction.
fn pings_near(route: &Route, count: usize, rng: &mut SplitMix) -> Vec<(Coord, f64)> {
    (0..count)
        .map(|_| {
            let along_m = rng.range(0.0, route.length_m());
            let p = destination(
                route.point_at(along_m),
                rng.range(0.0, 360.0),
                rng.range(0.0, 50.0),
            );
            (p, along_m - rng.range(0.0, 100.0))
        })
        .collect()
}

/// Pings every 25 m along a stretch of the route (wrapping round a short one), each moved up
/// to 20 m in a random direction.
fn pings_in_order(route: &Route, count: usize, rng: &mut SplitMix) -> Vec<(Coord, f64)> {
    #[allow(clippy::cast_precision_loss)]
    let stretch_m = 25.0 * count as f64;
    let from_m = rng.range(0.0, (route.length_m() - stretch_m).max(0.0));
    (0..count)
        .map(|k| {
            #[allow(clippy::cast_precision_loss)]
            let along_m = (from_m + 25.0 * k as f64) % route.length_m();
            let p = destination(
                route.point_at(along_m),
                rng.range(0.0, 360.0),
                rng.range(0.0, 20.0),
            );
            (p, along_m)
        })
        .collect()
}

fn projection(c: &mut Criterion) {
    let mut rng = SplitMix(0x00C0_FFEE);
    let mut group = c.benchmark_group("project");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [1_000, 100_000, 1_000_000] {
        let points = wandering_route(n, &mut rng);
        let started = Instant::now();
        let route = Route::new(points).expect("a generated route is valid");
        eprintln!(
            "Route::new with {n} vertices ({:.0} km): {:.2?}",
            route.length_m() / 1000.0,
            started.elapsed()
        );
        let pings = pings_near(&route, 4096, &mut rng);
        group.bench_with_input(BenchmarkId::new("nearest", n), &route, |b, route| {
            let mut i = 0;
            b.iter(|| {
                let (p, _) = pings[i % pings.len()];
                i += 1;
                black_box(route.project(black_box(p), None))
            });
        });
        // Pings every 25 m along the route, as one carrier sends them: the tree's path stays
        // in cache, which separates the index's own growth from memory latency.
        let in_order = pings_in_order(&route, 4096, &mut rng);
        group.bench_with_input(
            BenchmarkId::new("nearest-in-order", n),
            &route,
            |b, route| {
                let mut i = 0;
                b.iter(|| {
                    let (p, _) = in_order[i % in_order.len()];
                    i += 1;
                    black_box(route.project(black_box(p), None))
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("hinted", n), &route, |b, route| {
            let mut i = 0;
            b.iter(|| {
                let (p, hint_m) = pings[i % pings.len()];
                i += 1;
                black_box(route.project(black_box(p), Some(hint_m)))
            });
        });
    }
    group.finish();

    // The floor under every projection: one WGS 84 inverse geodesic.
    let a = Coord::new(2.36015, 48.92446);
    let b = Coord::new(2.3610, 48.9250);
    c.bench_function("geodesic/distance_m", |bench| {
        bench.iter(|| black_box(distance_m(black_box(a), black_box(b))));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    targets = projection
}
criterion_main!(benches);
