//! Geodesic measurement on the WGS 84 ellipsoid (GeographicLib's algorithms, via
//! `geographiclib-rs`): lengths in metres, great-circle densification for long legs (a flight),
//! and splitting a line where it crosses the antimeridian so GeoJSON viewers draw it right.
//!
//! Coordinates are `[lon, lat]` everywhere, as in GeoJSON.

use geographiclib_rs::{DirectGeodesic, Geodesic, InverseGeodesic};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// One vertex: longitude and latitude in degrees (WGS 84), optional elevation in metres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coord {
    pub lon: f64,
    pub lat: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ele_m: Option<f64>,
}

impl Coord {
    #[must_use]
    pub const fn new(lon: f64, lat: f64) -> Self {
        Self {
            lon,
            lat,
            ele_m: None,
        }
    }

    #[must_use]
    pub const fn with_ele(lon: f64, lat: f64, ele_m: Option<f64>) -> Self {
        Self { lon, lat, ele_m }
    }
}

fn wgs84() -> &'static Geodesic {
    static G: OnceLock<Geodesic> = OnceLock::new();
    G.get_or_init(Geodesic::wgs84)
}

/// Geodesic distance in metres between two points on the WGS 84 ellipsoid.
#[must_use]
pub fn distance_m(a: Coord, b: Coord) -> f64 {
    let s12: f64 = wgs84().inverse(a.lat, a.lon, b.lat, b.lon);
    s12
}

/// Initial bearing (degrees clockwise from north) of the geodesic from `a` to `b`.
#[must_use]
pub fn bearing_deg(a: Coord, b: Coord) -> f64 {
    let (_s12, azi1, _azi2, _a12): (f64, f64, f64, f64) =
        wgs84().inverse(a.lat, a.lon, b.lat, b.lon);
    azi1
}

/// The point `distance_m` along the geodesic from `a` towards `b`.
#[must_use]
pub fn along(a: Coord, b: Coord, distance_m: f64) -> Coord {
    let (_s12, azi1, _azi2, _a12): (f64, f64, f64, f64) =
        wgs84().inverse(a.lat, a.lon, b.lat, b.lon);
    let (lat, lon): (f64, f64) = wgs84().direct(a.lat, a.lon, azi1, distance_m);
    Coord::new(normalize_lon(lon), lat)
}

/// The point reached by following the geodesic from `from` with initial bearing `azimuth_deg`
/// (degrees clockwise from north) for `distance_m` metres. Elevation is not carried over.
#[must_use]
pub fn destination(from: Coord, azimuth_deg: f64, distance_m: f64) -> Coord {
    let (lat, lon): (f64, f64) = wgs84().direct(from.lat, from.lon, azimuth_deg, distance_m);
    Coord::new(normalize_lon(lon), lat)
}

/// The geodesic from `a` to `b` as a polyline whose vertices are at most `max_step_m` apart
/// (both ends included), so a flight from Paris to Los Angeles draws and measures as the great
/// circle it is rather than a straight line on a Mercator map.
#[must_use]
pub fn densify(a: Coord, b: Coord, max_step_m: f64) -> Vec<Coord> {
    let (s12, azi1, _azi2, _a12): (f64, f64, f64, f64) =
        wgs84().inverse(a.lat, a.lon, b.lat, b.lon);
    let step = max_step_m.max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = ((s12 / step).ceil() as usize).max(1);
    let mut out = Vec::with_capacity(n + 1);
    out.push(a);
    for i in 1..n {
        #[allow(clippy::cast_precision_loss)]
        let s = s12 * (i as f64) / (n as f64);
        let (lat, lon): (f64, f64) = wgs84().direct(a.lat, a.lon, azi1, s);
        out.push(Coord::new(normalize_lon(lon), lat));
    }
    out.push(b);
    out
}

/// Longitude folded into [-180, 180).
#[must_use]
pub fn normalize_lon(lon: f64) -> f64 {
    let l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    if l == -180.0 && lon > 0.0 { 180.0 } else { l }
}

/// Splits a polyline where it crosses the antimeridian (a jump of more than 180° in longitude
/// between consecutive vertices), inserting the crossing point at ±180 on both sides, as
/// RFC 7946 §3.1.9 asks of GeoJSON writers.
#[must_use]
pub fn split_antimeridian(points: &[Coord]) -> Vec<Vec<Coord>> {
    let mut parts: Vec<Vec<Coord>> = Vec::new();
    let mut current: Vec<Coord> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        if i > 0 {
            let q = points[i - 1];
            let dlon = p.lon - q.lon;
            if dlon.abs() > 180.0 {
                // Unwrap p next to q, find where the straight line crosses ±180.
                let edge = if q.lon > 0.0 { 180.0 } else { -180.0 };
                let p_lon_unwrapped = if dlon > 0.0 {
                    p.lon - 360.0
                } else {
                    p.lon + 360.0
                };
                let t = (edge - q.lon) / (p_lon_unwrapped - q.lon);
                let lat = q.lat + t * (p.lat - q.lat);
                current.push(Coord::new(edge, lat));
                parts.push(std::mem::take(&mut current));
                current.push(Coord::new(-edge, lat));
            }
        }
        current.push(p);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densified_flight_has_short_steps_and_same_length() {
        let cdg = Coord::new(2.4414, 48.9694);
        let lax = Coord::new(-118.4085, 33.9416);
        let line = densify(cdg, lax, 50_000.0);
        assert!(line.len() > 100);
        let total: f64 = line.windows(2).map(|w| distance_m(w[0], w[1])).sum();
        assert!((total - distance_m(cdg, lax)).abs() < 1.0, "{total}");
        assert!(
            line.windows(2)
                .all(|w| distance_m(w[0], w[1]) <= 50_000.0 + 1e-6)
        );
        // A great circle from Paris to LA goes far north of both ends (over Greenland-ish).
        assert!(line.iter().any(|c| c.lat > 60.0));
    }

    #[test]
    fn distance_matches_geographiclib_stade_de_france_to_hollywood_sign() {
        // Reference from the real GeographicLib (Python package `geographiclib` 2.1, installed
        // with `pip install geographiclib`), obtained by running:
        //   python3 -c "from geographiclib.geodesic import Geodesic; \
        //     print(Geodesic.WGS84.Inverse(48.92446, 2.36015, 34.13412, -118.32181)['s12'])"
        // which printed 9098937.028153783.
        const GEOGRAPHICLIB_S12_M: f64 = 9_098_937.028_153_783;
        let stade_de_france = Coord::new(2.36015, 48.92446);
        let hollywood_sign = Coord::new(-118.32181, 34.13412);
        let d = distance_m(stade_de_france, hollywood_sign);
        assert!(
            (d - GEOGRAPHICLIB_S12_M).abs() < 1.0,
            "{d} vs {GEOGRAPHICLIB_S12_M}"
        );
        // Symmetric, too.
        let back = distance_m(hollywood_sign, stade_de_france);
        assert!((back - GEOGRAPHICLIB_S12_M).abs() < 1.0, "{back}");
    }

    #[test]
    fn destination_inverts_distance_and_bearing() {
        let a = Coord::new(179.999, -16.5);
        let b = destination(a, 80.0, 1_234.5);
        assert!((distance_m(a, b) - 1_234.5).abs() < 1e-6);
        assert!((bearing_deg(a, b) - 80.0).abs() < 1e-6);
        assert!(b.lon < -179.0, "crossed the antimeridian: {b:?}");
    }

    #[test]
    fn antimeridian_split_inserts_edge_points() {
        let line = [Coord::new(170.0, 0.0), Coord::new(-170.0, 10.0)];
        let parts = split_antimeridian(&line);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].last().map(|c| c.lon), Some(180.0));
        assert_eq!(parts[1].first().map(|c| c.lon), Some(-180.0));
        assert!((parts[0].last().map_or(0.0, |c| c.lat) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn normalize_lon_folds() {
        assert!((normalize_lon(190.0) + 170.0).abs() < 1e-12);
        assert!((normalize_lon(-190.0) - 170.0).abs() < 1e-12);
        assert!((normalize_lon(45.0) - 45.0).abs() < 1e-12);
    }
}
