//! GPX and GeoJSON route files: points or an error, never a panic; points are finite degrees.
#![no_main]

use handoff_core::plan::routefile::{parse_geojson, parse_gpx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for points in [parse_gpx(text), parse_geojson(text)].into_iter().flatten() {
        for p in points {
            assert!(p.lon.is_finite() && p.lat.is_finite(), "{p:?}");
        }
    }
});
