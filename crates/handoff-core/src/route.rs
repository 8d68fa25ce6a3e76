//! A leg's route: its vertices, the cumulative geodesic distance at each vertex, and the spatial
//! index that projects a ping onto the route in O(log n).
//!
//! The one idea: *search on the sphere in 3-D, measure on the ellipsoid*. Each segment is a
//! great-circle arc between unit vectors, indexed in an R-tree by a 3-D box that contains the
//! whole arc, so the nearest segments come out in true distance order at any latitude, over the
//! poles and across the antimeridian (degrees are not metric). The foot of the perpendicular on an
//! arc is exact on the sphere; what we report (distance along, cross-track) is WGS 84 geodesic
//! metres. Where the route passes near itself, the carrier's last along-distance (the hint)
//! picks the branch, and going backwards costs more than going forwards.

use crate::geodesic::{Coord, along, distance_m};
use crate::plan::Locomotion;
use rstar::{AABB, PointDistance, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams};
use std::sync::OnceLock;

/// Candidates whose cross-track distance is within `max(nearest + this, 2 × nearest)` metres
/// compete on their along-distance when a hint is given.
pub const HINT_WINDOW_M: f64 = 25.0;

/// With a hint, a candidate `d` metres *behind* the hint costs as much as one `d × this` metres
/// ahead of it: carriers move forwards, GPS noise moves them back only a little. This keeps a
/// walk round a hairpin or along a switchback from snapping to the branch already travelled,
/// while a small backward jitter at a place the route passes again later does not jump a lap.
pub const BACKWARD_COST_FACTOR: f64 = 10.0;

/// A lower bound of the WGS 84 geodesic distance per radian of the sphere on which (lat, lon)
/// are drawn as spherical coordinates: the smallest radius of curvature of the ellipsoid,
/// `a (1 − e²)` (meridional, at the equator), rounded down.
const MIN_RADIUS_M: f64 = 6_335_400.0;

/// A polyline with at least two vertices, its cumulative length in metres and a spatial index
/// over its segments.
#[derive(Debug, Clone)]
pub struct Route {
    points: Vec<Coord>,
    cum_m: Vec<f64>,
    /// Vertices as unit vectors (x towards lon 0 on the equator, z towards the north pole).
    units: Vec<[f64; 3]>,
    has_elevation: bool,
    index: RTree<ArcSegment, IndexParams>,
    /// [`Route::flat_equivalent_m`]'s profiles, on foot and by bike, each made on first use.
    flat_equivalent: [OnceLock<Vec<f64>>; 2],
}

/// A route's slopes are judged over stretches this long: an elevation profile (a GPS recording,
/// a terrain model) is too noisy at the scale of a few metres to take grade from.
const TERRAIN_STRETCH_M: f64 = 100.0;
/// … between elevations smoothed over this far either side (the mean of the profile every
/// [`TERRAIN_SAMPLE_M`], the window narrowed near the route's ends so that its total rise is
/// kept): a recorded route's elevation jumps by tens of metres where its GPS settles, and read
/// as a climb that the carrier took at a run, that misleads every ETA after it (docs/eta.md,
/// session 15: chosen among 0–1,000 m on the evaluation's tracks, checked leaving each out).
const TERRAIN_SMOOTH_M: f64 = 300.0;
/// The step at which the elevation is sampled for [`TERRAIN_SMOOTH_M`].
const TERRAIN_SAMPLE_M: f64 = 10.0;

/// Why a list of points cannot be a route.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("a route needs at least 2 points, this one has {0}")]
    TooFewPoints(usize),
    #[error("point {index} is not a valid coordinate (lon {lon}, lat {lat})")]
    BadCoord { index: usize, lon: f64, lat: f64 },
}

/// Where a position falls on a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Geodesic distance from the route's start to `point`, in [0, `length_m`].
    pub along_m: f64,
    /// Geodesic distance from the projected position to its foot `point`.
    pub cross_track_m: f64,
    /// The segment holding `point`: from vertex `segment` to vertex `segment + 1`.
    pub segment: usize,
    /// The foot on the route (elevation interpolated when both ends of the segment have one).
    pub point: Coord,
}

impl Route {
    /// Builds a route from its vertices, with its spatial index.
    ///
    /// # Errors
    /// Fewer than two points, or a coordinate out of range or not finite.
    pub fn new(points: Vec<Coord>) -> Result<Self, RouteError> {
        if points.len() < 2 {
            return Err(RouteError::TooFewPoints(points.len()));
        }
        for (index, c) in points.iter().enumerate() {
            if !(c.lon.is_finite()
                && c.lat.is_finite()
                && (-180.0..=180.0).contains(&c.lon)
                && (-90.0..=90.0).contains(&c.lat))
            {
                return Err(RouteError::BadCoord {
                    index,
                    lon: c.lon,
                    lat: c.lat,
                });
            }
        }
        let mut cum_m = Vec::with_capacity(points.len());
        let mut acc = 0.0;
        cum_m.push(0.0);
        for w in points.windows(2) {
            acc += distance_m(w[0], w[1]);
            cum_m.push(acc);
        }
        let units: Vec<[f64; 3]> = points.iter().map(|&c| unit_vector(c)).collect();
        let arcs = units
            .windows(2)
            .enumerate()
            .map(|(index, w)| ArcSegment {
                a: w[0],
                b: w[1],
                index,
            })
            .collect();
        let has_elevation = points.iter().all(|c| c.ele_m.is_some_and(f64::is_finite));
        Ok(Self {
            points,
            cum_m,
            units,
            has_elevation,
            index: RTree::bulk_load_with_params(arcs),
            flat_equivalent: [OnceLock::new(), OnceLock::new()],
        })
    }

    #[must_use]
    pub fn points(&self) -> &[Coord] {
        &self.points
    }

    /// Cumulative distance in metres at each vertex (first is 0).
    #[must_use]
    pub fn cumulative_m(&self) -> &[f64] {
        &self.cum_m
    }

    #[must_use]
    pub fn length_m(&self) -> f64 {
        self.cum_m.last().copied().unwrap_or(0.0)
    }

    #[must_use]
    pub fn start(&self) -> Coord {
        self.points[0]
    }

    #[must_use]
    pub fn end(&self) -> Coord {
        self.points[self.points.len() - 1]
    }

    /// Whether every vertex has an elevation (then `point_at`, `elevation_at` and
    /// `grade_between` carry it).
    #[must_use]
    pub fn has_elevation(&self) -> bool {
        self.has_elevation
    }

    /// Projects a position onto the route.
    ///
    /// Without a hint, the nearest point of the route wins. With `hint_along_m` (the carrier's
    /// last known along-distance), every local nearest point whose cross-track distance is within
    /// `max(nearest + HINT_WINDOW_M, 2 × nearest)` competes, and the one closest to the hint
    /// wins, distance behind the hint counting `BACKWARD_COST_FACTOR` times: that is how a
    /// route that loops back or passes near itself is told apart.
    ///
    /// A position with a non-finite coordinate projects to the start with an infinite
    /// cross-track distance.
    #[must_use]
    pub fn project(&self, p: Coord, hint_along_m: Option<f64>) -> Projection {
        if !(p.lon.is_finite() && p.lat.is_finite()) {
            return Projection {
                along_m: 0.0,
                cross_track_m: f64::INFINITY,
                segment: 0,
                point: self.start(),
            };
        }
        let p = Coord::new(p.lon, p.lat.clamp(-90.0, 90.0));
        let pv = unit_vector(p);
        let hint_m = hint_along_m.filter(|h| h.is_finite());

        // Visit arcs in increasing spherical distance until none left can be close enough.
        let mut candidates: Vec<Candidate> = Vec::with_capacity(4);
        let mut nearest_m = f64::INFINITY;
        for (arc, chord2) in self.index.nearest_neighbor_iter_with_distance_2(pv) {
            let reach_m = if hint_m.is_some() {
                hint_window_m(nearest_m)
            } else {
                nearest_m
            };
            if chord_to_angle(chord2) * MIN_RADIUS_M > reach_m {
                break;
            }
            let foot = arc_foot(arc.a, arc.b, pv);
            let point = self.foot_coord(arc.index, &foot);
            let cross_track_m = distance_m(p, point);
            nearest_m = nearest_m.min(cross_track_m);
            candidates.push(Candidate {
                segment: arc.index,
                foot,
                point,
                cross_track_m,
            });
        }

        let nearest = candidates
            .iter()
            .min_by(|x, y| x.cross_track_m.total_cmp(&y.cross_track_m));
        let Some(nearest) = nearest else {
            // Unreachable (a route has at least one segment); answer something sensible.
            return self.projection(&self.candidate_on(0, pv, p));
        };
        let Some(hint_m) = hint_m else {
            return self.projection(nearest);
        };
        let window_m = hint_window_m(nearest.cross_track_m);
        candidates
            .iter()
            .filter(|c| c.cross_track_m <= window_m && self.is_local_nearest(c, pv))
            .map(|c| self.projection(c))
            .min_by(|x, y| {
                hint_cost_m(x.along_m, hint_m)
                    .total_cmp(&hint_cost_m(y.along_m, hint_m))
                    .then(x.cross_track_m.total_cmp(&y.cross_track_m))
            })
            .unwrap_or_else(|| self.projection(nearest))
    }

    /// The point `along_m` metres from the start, following the geodesic of its segment
    /// (clamped to the route; elevation interpolated linearly when the segment has it).
    #[must_use]
    pub fn point_at(&self, along_m: f64) -> Coord {
        let along_m = self.clamp_along(along_m);
        let i = self.segment_at(along_m);
        let (a, b) = (self.points[i], self.points[i + 1]);
        let seg_m = self.cum_m[i + 1] - self.cum_m[i];
        let d_m = along_m - self.cum_m[i];
        if d_m <= 0.0 || seg_m <= 0.0 {
            return a;
        }
        if d_m >= seg_m {
            return b;
        }
        let mut c = along(a, b, d_m);
        c.ele_m = lerp_ele(a, b, d_m / seg_m);
        c
    }

    /// Elevation in metres `along_m` from the start (clamped), when the route has elevation.
    #[must_use]
    pub fn elevation_at(&self, along_m: f64) -> Option<f64> {
        if !self.has_elevation {
            return None;
        }
        let along_m = self.clamp_along(along_m);
        let i = self.segment_at(along_m);
        let seg_m = self.cum_m[i + 1] - self.cum_m[i];
        let t = if seg_m > 0.0 {
            ((along_m - self.cum_m[i]) / seg_m).clamp(0.0, 1.0)
        } else {
            0.0
        };
        lerp_ele(self.points[i], self.points[i + 1], t)
    }

    /// Mean grade (rise over run, e.g. 0.05 for 5 % uphill) of the route in its own direction
    /// between two along-distances (clamped to the route; their order does not matter). `None`
    /// when the route has no elevation or the span is shorter than a millimetre.
    #[must_use]
    pub fn grade_between(&self, from_m: f64, to_m: f64) -> Option<f64> {
        let (from_m, to_m) = (self.clamp_along(from_m), self.clamp_along(to_m));
        let run_m = to_m - from_m;
        if run_m.abs() < 1e-3 {
            return None;
        }
        let rise_m = self.elevation_at(to_m)? - self.elevation_at(from_m)?;
        Some(rise_m / run_m)
    }

    /// How far the stretch from `from_m` to `to_m` (clamped, in order) is worth on flat ground
    /// for someone who climbs as `how` does: its length weighted by [`slope_cost`] on the slope
    /// of each [`TERRAIN_STRETCH_M`] of the route, between elevations smoothed over
    /// [`TERRAIN_SMOOTH_M`] either side (Tobler's hiking function on foot, a rider's
    /// constant power by bike: a climb counts longer, a descent shorter). The stretch's own
    /// length when the route has no elevation.
    ///
    /// [`slope_cost`]: crate::eta::slope_cost
    #[must_use]
    pub fn flat_equivalent_m(&self, how: Locomotion, from_m: f64, to_m: f64) -> f64 {
        let (from_m, to_m) = (self.clamp_along(from_m), self.clamp_along(to_m));
        if to_m <= from_m {
            return 0.0;
        }
        if !self.has_elevation {
            return to_m - from_m;
        }
        let slot = match how {
            Locomotion::Foot => &self.flat_equivalent[0],
            Locomotion::Bike => &self.flat_equivalent[1],
        };
        let profile = slot.get_or_init(|| {
            // The flat-equivalent distance from the start at every stretch's boundary.
            let len = self.length_m();
            let mut cum = vec![0.0];
            let mut a = 0.0;
            // Each boundary's smoothed elevation once: it ends one stretch and starts the next.
            let mut ea = self.smoothed_elevation(0.0);
            while a < len {
                let b = (a + TERRAIN_STRETCH_M).min(len);
                let eb = self.smoothed_elevation(b);
                let cost = match (ea, eb) {
                    (Some(ea), Some(eb)) if b - a > 1e-3 => {
                        crate::eta::slope_cost(how, (eb - ea) / (b - a))
                    }
                    _ => 1.0,
                };
                cum.push(cum.last().copied().unwrap_or(0.0) + (b - a) * cost);
                (a, ea) = (b, eb);
            }
            cum
        });
        let at = |x: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let k = ((x / TERRAIN_STRETCH_M) as usize).min(profile.len().saturating_sub(2));
            #[allow(clippy::cast_precision_loss)]
            let start = k as f64 * TERRAIN_STRETCH_M;
            let next = profile.get(k + 1).copied().unwrap_or(profile[k]);
            let span = (self.length_m().min(start + TERRAIN_STRETCH_M) - start).max(1e-9);
            profile[k] + (next - profile[k]) * ((x - start) / span).clamp(0.0, 1.0)
        };
        at(to_m) - at(from_m)
    }

    /// The elevation `along_m` from the start averaged over [`TERRAIN_SMOOTH_M`] either side
    /// (less near the ends, so the first and last points keep their own), when the route has
    /// elevation.
    fn smoothed_elevation(&self, along_m: f64) -> Option<f64> {
        let along_m = self.clamp_along(along_m);
        let half = TERRAIN_SMOOTH_M
            .min(along_m)
            .min(self.length_m() - along_m)
            .max(0.0);
        #[allow(clippy::cast_possible_truncation)]
        let n = (half / TERRAIN_SAMPLE_M).floor() as i64;
        let mut sum = 0.0;
        for k in -n..=n {
            #[allow(clippy::cast_precision_loss)]
            let x = along_m + k as f64 * TERRAIN_SAMPLE_M;
            sum += self.elevation_at(x)?;
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = sum / (2 * n + 1) as f64;
        Some(mean)
    }

    fn clamp_along(&self, along_m: f64) -> f64 {
        if along_m.is_nan() {
            0.0
        } else {
            along_m.clamp(0.0, self.length_m())
        }
    }

    /// The segment holding `along_m` (already clamped): the last whose start is at or before it.
    fn segment_at(&self, along_m: f64) -> usize {
        let after = self.cum_m.partition_point(|&c| c <= along_m);
        after.saturating_sub(1).min(self.points.len() - 2)
    }

    fn foot_coord(&self, segment: usize, foot: &ArcFoot) -> Coord {
        let (a, b) = (self.points[segment], self.points[segment + 1]);
        match foot.clamped {
            Some(End::Start) => a,
            Some(End::End) => b,
            None => {
                let (lon, lat) = lon_lat_deg(foot.foot);
                Coord::with_ele(lon, lat, lerp_ele(a, b, foot.t))
            }
        }
    }

    fn candidate_on(&self, segment: usize, pv: [f64; 3], p: Coord) -> Candidate {
        let foot = arc_foot(self.units[segment], self.units[segment + 1], pv);
        let point = self.foot_coord(segment, &foot);
        Candidate {
            segment,
            foot,
            cross_track_m: distance_m(p, point),
            point,
        }
    }

    fn projection(&self, c: &Candidate) -> Projection {
        let i = c.segment;
        let along_m = match c.foot.clamped {
            Some(End::Start) => self.cum_m[i],
            Some(End::End) => self.cum_m[i + 1],
            None => (self.cum_m[i] + distance_m(self.points[i], c.point))
                .clamp(self.cum_m[i], self.cum_m[i + 1]),
        };
        Projection {
            along_m,
            cross_track_m: c.cross_track_m,
            segment: i,
            point: c.point,
        }
    }

    /// A foot clamped to a vertex is a genuine alternative (a local minimum of the distance
    /// along the route) only when the other segment at that vertex has no closer point;
    /// otherwise it is just the corner next to the real foot, and letting it compete with the
    /// hint would drag projections towards the hint.
    fn is_local_nearest(&self, c: &Candidate, pv: [f64; 3]) -> bool {
        // A perpendicular foot within a millimetre of a vertex is at the vertex.
        const AT_VERTEX_CHORD2: f64 = 1e-3 / 6.371e6 * (1e-3 / 6.371e6);
        let (a, b) = (self.units[c.segment], self.units[c.segment + 1]);
        let end = c.foot.clamped.or_else(|| {
            if dist2(c.foot.foot, a) < AT_VERTEX_CHORD2 {
                Some(End::Start)
            } else if dist2(c.foot.foot, b) < AT_VERTEX_CHORD2 {
                Some(End::End)
            } else {
                None
            }
        });
        let neighbour = match end {
            None => return true,
            Some(End::Start) if c.segment > 0 => c.segment - 1,
            Some(End::End) if c.segment + 2 < self.points.len() => c.segment + 1,
            Some(_) => return true,
        };
        let other = arc_foot(self.units[neighbour], self.units[neighbour + 1], pv);
        other.chord2 >= c.foot.chord2
    }
}

/// One arc the index returned, with its foot and geodesic cross-track distance.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    segment: usize,
    foot: ArcFoot,
    point: Coord,
    cross_track_m: f64,
}

fn hint_window_m(nearest_m: f64) -> f64 {
    (nearest_m + HINT_WINDOW_M).max(2.0 * nearest_m)
}

fn hint_cost_m(along_m: f64, hint_m: f64) -> f64 {
    let ahead_m = along_m - hint_m;
    if ahead_m >= 0.0 {
        ahead_m
    } else {
        -ahead_m * BACKWARD_COST_FACTOR
    }
}

fn lerp_ele(a: Coord, b: Coord, t: f64) -> Option<f64> {
    Some(a.ele_m? + (b.ele_m? - a.ele_m?) * t).filter(|e| e.is_finite())
}

/// Wider nodes than rstar's default (6): a shallower tree means fewer cache misses on the
/// way down a route of a million vertices, which is where the time goes.
#[derive(Debug, Clone, Copy)]
struct IndexParams;

impl RTreeParams for IndexParams {
    const MIN_SIZE: usize = 6;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// A segment in the index: a minor great-circle arc between two unit vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ArcSegment {
    a: [f64; 3],
    b: [f64; 3],
    index: usize,
}

impl RTreeObject for ArcSegment {
    type Envelope = AABB<[f64; 3]>;

    /// The chord's box grown by the arc's sagitta (how far the arc bulges outside its chord),
    /// so the box holds the whole arc and box distances stay lower bounds.
    fn envelope(&self) -> Self::Envelope {
        let half_chord2 = dist2(self.a, self.b) / 4.0;
        let sagitta = half_chord2 / (1.0 + (1.0 - half_chord2.min(1.0)).sqrt());
        let pad = sagitta + 1e-12;
        let lo = std::array::from_fn(|k| self.a[k].min(self.b[k]) - pad);
        let hi = std::array::from_fn(|k| self.a[k].max(self.b[k]) + pad);
        AABB::from_corners(lo, hi)
    }
}

impl PointDistance for ArcSegment {
    /// Squared chord length from the point to the nearest point of the arc: monotone in the
    /// great-circle distance, and consistent with the box distance.
    fn distance_2(&self, point: &[f64; 3]) -> f64 {
        arc_chord2(self.a, self.b, *point)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Start,
    End,
}

/// The nearest point of an arc to a point, all on the unit sphere.
#[derive(Debug, Clone, Copy)]
struct ArcFoot {
    foot: [f64; 3],
    /// Fraction of the arc's angle from `a` to the foot.
    t: f64,
    /// `Some` when the nearest point is an end of the arc.
    clamped: Option<End>,
    /// Squared chord from the point to the foot.
    chord2: f64,
}

fn arc_foot(a: [f64; 3], b: [f64; 3], p: [f64; 3]) -> ArcFoot {
    // a × (b − a) = a × b, computed from the small difference for precision on short arcs.
    let n = cross(a, sub(b, a));
    let n_len = norm(n);
    // Below ~6 nm on Earth the arc is a point (or its ends are antipodal: no unique arc).
    if n_len > 1e-15 {
        let n_hat = scale(n, 1.0 / n_len);
        let s = dot(p, n_hat); // sine of the angular distance to the great circle
        let q = sub(p, scale(n_hat, s));
        let q_len = norm(q);
        if q_len > 1e-12 {
            let f = scale(q, 1.0 / q_len);
            let after_a = dot(cross(a, f), n) >= 0.0;
            let before_b = dot(cross(f, b), n) >= 0.0;
            if after_a && before_b {
                let theta = n_len.atan2(dot(a, b));
                let t = if theta > 0.0 {
                    (norm(cross(a, f)).atan2(dot(a, f)) / theta).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let s2 = (s * s).min(1.0);
                // |p − f|² = 2 − 2 √(1 − s²), written without cancellation.
                let chord2 = 2.0 * s2 / (1.0 + (1.0 - s2).sqrt());
                return ArcFoot {
                    foot: f,
                    t,
                    clamped: None,
                    chord2,
                };
            }
        }
    }
    let (da, db) = (dist2(p, a), dist2(p, b));
    if db < da {
        ArcFoot {
            foot: b,
            t: 1.0,
            clamped: Some(End::End),
            chord2: db,
        }
    } else {
        ArcFoot {
            foot: a,
            t: 0.0,
            clamped: Some(End::Start),
            chord2: da,
        }
    }
}

/// `arc_foot(a, b, p).chord2` without locating the foot: what the index needs, cheaply.
fn arc_chord2(a: [f64; 3], b: [f64; 3], p: [f64; 3]) -> f64 {
    let n = cross(a, sub(b, a));
    let n_len2 = dot(n, n);
    if n_len2 > 1e-30 {
        let pn = dot(p, n);
        // q: p projected on the arc's plane (not normalised: only signs are needed).
        let q = sub(p, scale(n, pn / n_len2));
        if dot(q, q) > 1e-24 && dot(cross(a, q), n) >= 0.0 && dot(cross(q, b), n) >= 0.0 {
            let s2 = (pn * pn / n_len2).min(1.0);
            return 2.0 * s2 / (1.0 + (1.0 - s2).sqrt());
        }
    }
    dist2(p, a).min(dist2(p, b))
}

/// Angle in radians subtended by a chord of the unit sphere, from its squared length.
fn chord_to_angle(chord2: f64) -> f64 {
    2.0 * (chord2.max(0.0).sqrt() / 2.0).min(1.0).asin()
}

fn unit_vector(c: Coord) -> [f64; 3] {
    let (lat, lon) = (c.lat.to_radians(), c.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

fn lon_lat_deg(v: [f64; 3]) -> (f64, f64) {
    let lat = v[2].atan2(v[0].hypot(v[1])).to_degrees();
    let lon = v[1].atan2(v[0]).to_degrees();
    (lon, lat)
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn scale(a: [f64; 3], k: f64) -> [f64; 3] {
    [a[0] * k, a[1] * k, a[2] * k]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn dist2(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub(a, b);
    dot(d, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geodesic::destination;

    fn route(points: &[(f64, f64)]) -> Route {
        Route::new(
            points
                .iter()
                .map(|&(lon, lat)| Coord::new(lon, lat))
                .collect(),
        )
        .expect("valid route")
    }

    #[test]
    fn projects_onto_a_simple_line() {
        let r = route(&[(0.0, 0.0), (0.01, 0.0)]);
        let p = Coord::new(0.005, 0.001);
        let pr = r.project(p, None);
        let foot = Coord::new(0.005, 0.0);
        assert_eq!(pr.segment, 0);
        assert!(
            (pr.along_m - distance_m(r.start(), foot)).abs() < 0.01,
            "{pr:?}"
        );
        assert!(
            (pr.cross_track_m - distance_m(p, foot)).abs() < 0.01,
            "{pr:?}"
        );
        assert!((pr.point.lon - 0.005).abs() < 1e-9 && pr.point.lat.abs() < 1e-9);
        // On the line itself: no cross-track, and the same along-distance.
        let on = r.project(foot, None);
        assert!(on.cross_track_m < 1e-3 && (on.along_m - pr.along_m).abs() < 1e-3);
    }

    #[test]
    fn points_past_the_ends_clamp_to_zero_and_length() {
        let r = route(&[(0.0, 0.0), (0.01, 0.0), (0.02, 0.005)]);
        let before = r.project(Coord::new(-0.01, 0.0), None);
        assert!(before.along_m.abs() < f64::EPSILON, "{before:?}");
        assert_eq!(before.segment, 0);
        assert_eq!(before.point, r.start());
        let after = r.project(Coord::new(0.04, 0.015), Some(0.0));
        assert!(
            (after.along_m - r.length_m()).abs() < f64::EPSILON,
            "{after:?}"
        );
        assert_eq!(after.segment, 1);
        assert_eq!(after.point, r.end());
        assert!((after.cross_track_m - distance_m(Coord::new(0.04, 0.015), r.end())).abs() < 1e-9);
    }

    #[test]
    fn projects_across_the_antimeridian() {
        // Two vertices 0.02° of longitude apart on either side of ±180, at 10° N.
        let r = route(&[(179.99, 10.0), (-179.99, 10.0)]);
        assert!(r.length_m() < 2_500.0, "{}", r.length_m());
        let p = Coord::new(180.0, 10.001);
        let pr = r.project(p, None);
        assert!((pr.along_m - r.length_m() / 2.0).abs() < 0.5, "{pr:?}");
        assert!((pr.cross_track_m - 110.6).abs() < 1.0, "{pr:?}");
        assert!((pr.point.lon.abs() - 180.0).abs() < 1e-6, "{pr:?}");
        // From the other side of the seam too.
        let q = r.project(Coord::new(-179.995, 9.999), None);
        assert!((q.along_m - 0.75 * r.length_m()).abs() < 0.5, "{q:?}");
        let mid = r.point_at(r.length_m() / 2.0);
        assert!((mid.lon.abs() - 180.0).abs() < 1e-6, "{mid:?}");
    }

    #[test]
    fn projects_near_the_pole() {
        // A route over the north pole: lon means little here, metres still do.
        let r = route(&[(0.0, 89.99), (180.0, 89.99)]);
        let pole = Coord::new(0.0, 90.0);
        let pr = r.project(pole, None);
        assert!(pr.cross_track_m < 0.5, "{pr:?}");
        assert!((pr.along_m - r.length_m() / 2.0).abs() < 0.5, "{pr:?}");
        let side = destination(pole, 90.0, 100.0);
        assert!((r.project(side, None).cross_track_m - 100.0).abs() < 0.5);
    }

    /// Out along the equator for ~1.1 km, a 11 m step north, and back.
    fn out_and_back() -> Route {
        route(&[(0.0, 0.0), (0.01, 0.0), (0.01, 0.0001), (0.0, 0.0001)])
    }

    #[test]
    fn hint_picks_the_branch_of_a_loop_back() {
        let r = out_and_back();
        let out_m = r.cumulative_m()[1];
        let p = Coord::new(0.003, 0.00005);
        let on_way_out = r.project(p, Some(300.0));
        assert_eq!(on_way_out.segment, 0, "{on_way_out:?}");
        assert!(
            (on_way_out.along_m - 0.3 * out_m).abs() < 1.0,
            "{on_way_out:?}"
        );
        let on_way_back = r.project(p, Some(r.length_m() - 800.0));
        assert_eq!(on_way_back.segment, 2, "{on_way_back:?}");
        assert!(
            (on_way_back.along_m - (r.length_m() - 0.3 * out_m)).abs() < 1.0,
            "{on_way_back:?}"
        );
        // Without a hint, the nearest wins (both are about 5.5 m away here).
        let nearest = r.project(p, None);
        assert!((nearest.cross_track_m - on_way_out.cross_track_m).abs() < 0.1);
    }

    #[test]
    fn walking_round_a_hairpin_does_not_snap_back() {
        let r = out_and_back();
        let mut hint = 0.0;
        let mut s = 0.0;
        while s < r.length_m() {
            let pr = r.project(r.point_at(s), Some(hint));
            assert!(pr.along_m >= hint - 1.0, "at {s}: {pr:?} after {hint}");
            assert!((pr.along_m - s).abs() < 1.0, "at {s}: {pr:?}");
            hint = pr.along_m;
            s += 7.0;
        }
    }

    #[test]
    fn corner_next_to_the_foot_does_not_compete_with_the_hint() {
        // Straight north-east line; a ping 20 m off it just past a vertex, hinted 100 m behind:
        // the vertex (closer to the hint) is not a real alternative.
        let a = Coord::new(10.0, 50.0);
        let v = destination(a, 45.0, 500.0);
        let b = destination(v, 45.0, 500.0);
        let r = Route::new(vec![a, v, b]).expect("route");
        let foot = destination(v, 45.0, 5.0);
        let p = destination(foot, 135.0, 20.0);
        let pr = r.project(p, Some(405.0));
        assert!((pr.along_m - 505.0).abs() < 0.5, "{pr:?}");
    }

    #[test]
    fn point_at_interpolates_and_clamps() {
        let pts = vec![
            Coord::with_ele(0.0, 0.0, Some(100.0)),
            Coord::with_ele(0.01, 0.0, Some(200.0)),
        ];
        let r = Route::new(pts).expect("route");
        assert!(r.has_elevation());
        let mid = r.point_at(r.length_m() / 2.0);
        assert!(
            (mid.lon - 0.005).abs() < 1e-9 && mid.lat.abs() < 1e-9,
            "{mid:?}"
        );
        assert!((mid.ele_m.unwrap_or(0.0) - 150.0).abs() < 1e-9);
        assert_eq!(r.point_at(-5.0), r.start());
        assert_eq!(r.point_at(1e9), r.end());
        assert_eq!(r.point_at(f64::NAN), r.start());
        let grade = r.grade_between(0.0, r.length_m()).unwrap_or(0.0);
        assert!((grade - 100.0 / r.length_m()).abs() < 1e-12);
        assert!(r.grade_between(10.0, 10.0).is_none());
        let down = r.grade_between(r.length_m(), 0.0).unwrap_or(0.0);
        assert!((down - grade).abs() < 1e-12, "same direction of the route");
    }

    #[test]
    fn a_spike_in_a_recorded_elevation_is_not_read_as_a_climb() {
        // 2 km of flat street, the first 300 m of its recording's elevation a GPS settling:
        // 179 → 214 → 180 m (the Chapel Hill run's, tests/tracks). Taken as it is, that is a
        // 17 % climb and a 38 % descent; smoothed over a few hundred metres, a bump.
        let settling = [178.9, 193.4, 214.5, 180.4];
        let eles = settling.into_iter().chain(std::iter::repeat(178.9));
        let pts = (0..=20_u32)
            .zip(eles)
            .map(|(i, e)| Coord::with_ele(f64::from(i) * 0.0009, 0.0, Some(e)))
            .collect();
        let r = Route::new(pts).expect("route");
        let len = r.length_m();
        let whole = r.flat_equivalent_m(Locomotion::Foot, 0.0, len) / len;
        // Raw, stretch by stretch of 100 m: the climb and the descent add 15 % to the 2 km.
        let raw: f64 = (0..20)
            .map(|k| {
                let (a, b) = (f64::from(k) * len / 20.0, f64::from(k + 1) * len / 20.0);
                r.grade_between(a, b)
                    .map_or(1.0, |g| crate::eta::slope_cost(Locomotion::Foot, g))
            })
            .sum::<f64>()
            / 20.0;
        assert!(raw > 1.1, "{raw}");
        assert!(whole - 1.0 < (raw - 1.0) / 3.0, "{whole} against {raw}");
    }

    #[test]
    fn a_climb_is_worth_more_flat_ground_than_its_length_and_the_same_descent_less_or_more() {
        // 11 km east, flat for the first 5 km, then up 600 m over 6 km (10 %), elevation at
        // every 100 m (long enough that the elevation's smoothing, a few hundred metres either
        // side, rounds only the foot of the climb).
        let mut pts = Vec::new();
        for i in 0..=110 {
            let ele = if i <= 50 {
                100.0
            } else {
                100.0 + 10.0 * f64::from(i - 50)
            };
            pts.push(Coord::with_ele(f64::from(i) * 0.0009, 0.0, Some(ele)));
        }
        let up = Route::new(pts.clone()).expect("route");
        let len = up.length_m();
        let flat_part = up.flat_equivalent_m(Locomotion::Foot, 0.0, 4000.0);
        assert!((flat_part - 4000.0).abs() < 1e-6, "{flat_part}");
        // Tobler: 10 % up is walked at 6 e^(-3.5 × 0.15) km/h against 6 e^(-3.5 × 0.05) on the
        // flat, 1.42 times as long.
        let climb = up.flat_equivalent_m(Locomotion::Foot, len - 5000.0, len);
        let cost = (3.5_f64 * 0.10).exp();
        assert!((climb / 5000.0 - cost).abs() < 0.02, "{climb}");
        // In order, clamped, additive, and linear inside a stretch.
        assert!(up.flat_equivalent_m(Locomotion::Foot, 300.0, 200.0).abs() < 1e-12);
        assert!(
            (up.flat_equivalent_m(Locomotion::Foot, -50.0, 1e9)
                - up.flat_equivalent_m(Locomotion::Foot, 0.0, len))
            .abs()
                < 1e-9
        );
        let whole = up.flat_equivalent_m(Locomotion::Foot, 0.0, len);
        let split = up.flat_equivalent_m(Locomotion::Foot, 0.0, 777.0)
            + up.flat_equivalent_m(Locomotion::Foot, 777.0, len);
        assert!((whole - split).abs() < 1e-9);
        // The same route the other way: 10 % down is walked as fast as the flat (Tobler's function
        // peaks on a 5 % descent and falls off on either side of it), a gentle descent faster.
        pts.reverse();
        let down = Route::new(pts).expect("route");
        let descent = down.flat_equivalent_m(Locomotion::Foot, 0.0, 5000.0);
        assert!((descent / 5000.0 - 1.0).abs() < 0.01, "{descent}");
        let gentle = Route::new(vec![
            Coord::with_ele(0.0, 0.0, Some(100.0)),
            Coord::with_ele(0.009, 0.0, Some(50.0)),
        ])
        .expect("route");
        let eased =
            gentle.flat_equivalent_m(Locomotion::Foot, 0.0, gentle.length_m()) / gentle.length_m();
        assert!((eased - (-3.5_f64 * 0.05).exp()).abs() < 0.01, "{eased}");
        // By bike the same climb costs its rider's power model, far more than on foot, and the
        // descent far less; each profile is its own (asking for one does not change the other).
        let by_bike = up.flat_equivalent_m(Locomotion::Bike, len - 5000.0, len) / 5000.0;
        assert!((by_bike - crate::eta::slope_cost(Locomotion::Bike, 0.10)).abs() < 0.05);
        assert!(by_bike > 2.0 * climb / 5000.0, "{by_bike}");
        assert!((up.flat_equivalent_m(Locomotion::Foot, len - 5000.0, len) - climb).abs() < 1e-9);
        let coasting = down.flat_equivalent_m(Locomotion::Bike, 0.0, 5000.0) / 5000.0;
        assert!(coasting < 0.6, "{coasting}");
        // Without elevation, the length itself.
        let plain = route(&[(0.0, 0.0), (0.01, 0.0)]);
        assert!((plain.flat_equivalent_m(Locomotion::Foot, 10.0, 510.0) - 500.0).abs() < 1e-9);
        assert!((plain.flat_equivalent_m(Locomotion::Bike, 10.0, 510.0) - 500.0).abs() < 1e-9);
    }

    #[test]
    fn no_elevation_means_none() {
        let r = route(&[(0.0, 0.0), (0.01, 0.0)]);
        assert!(!r.has_elevation());
        assert!(r.point_at(100.0).ele_m.is_none());
        assert!(r.elevation_at(100.0).is_none());
        assert!(r.grade_between(0.0, 100.0).is_none());
    }

    #[test]
    fn non_finite_ping_is_infinitely_off_route() {
        let r = route(&[(0.0, 0.0), (0.01, 0.0)]);
        let pr = r.project(Coord::new(f64::NAN, 0.0), Some(10.0));
        assert!(pr.cross_track_m.is_infinite());
        assert!(pr.along_m.abs() < f64::EPSILON);
    }

    #[test]
    fn index_distance_agrees_with_the_foot() {
        let a = unit_vector(Coord::new(179.9995, 45.0));
        let b = unit_vector(Coord::new(-179.9995, 45.0005));
        for (lon, lat) in [
            (180.0, 45.0),
            (179.99, 45.0),
            (-179.99, 45.001),
            (0.0, -45.0),
        ] {
            let p = unit_vector(Coord::new(lon, lat));
            let full = arc_foot(a, b, p);
            let fast = arc_chord2(a, b, p);
            assert!(
                (full.chord2 - fast).abs() <= 1e-9 * fast + 1e-24,
                "{lon} {lat}: {} vs {fast}",
                full.chord2
            );
            assert!((dist2(full.foot, p) - fast).abs() <= 1e-12, "{lon} {lat}");
        }
    }

    #[test]
    fn duplicate_vertices_are_harmless() {
        let r = route(&[(0.0, 0.0), (0.0, 0.0), (0.01, 0.0), (0.01, 0.0)]);
        let pr = r.project(Coord::new(0.005, 0.0005), None);
        assert_eq!(pr.segment, 1);
        assert!((pr.along_m - r.length_m() / 2.0).abs() < 0.01, "{pr:?}");
    }
}
