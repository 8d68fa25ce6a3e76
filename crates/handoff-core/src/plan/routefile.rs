//! Route files beside a plan: GPX (tracks, or routes when there is no track) and GeoJSON
//! (LineString, MultiLineString, Feature, FeatureCollection). Parsing only; reading the bytes is
//! the caller's job, through [`RouteFiles`], so the core stays free of I/O.

use crate::geodesic::Coord;
use std::path::{Component, Path, PathBuf};

/// Gives the text of a route file named (relative to the plan) in the plan.
pub trait RouteFiles {
    /// # Errors
    /// A message saying why the file cannot be read (missing, not allowed, …).
    fn read(&self, relative: &Path) -> Result<String, String>;
}

/// Refuses every file reference: for plans uploaded over HTTP, where the server must never
/// read a path named in a request.
pub struct NoFiles;

impl RouteFiles for NoFiles {
    fn read(&self, _relative: &Path) -> Result<String, String> {
        Err("route files are not accepted in an uploaded plan; inline the points (`handoff plan push` does this for you)".into())
    }
}

/// Checks that a route file path stays inside the plan's folder: relative, and no `..` that
/// climbs above it. Returns the normalized relative path.
///
/// # Errors
/// A message naming what is wrong with the path.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!(
                        "route file `{path}` is outside the plan's folder; keep route files beside the plan"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "route file `{path}` is an absolute path; give it relative to the plan's folder"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("route file `{path}` names no file"));
    }
    Ok(out)
}

/// Parses a route file by its extension.
///
/// # Errors
/// A message saying what is wrong with the file's content.
pub fn parse_route_file(name: &str, text: &str) -> Result<Vec<Coord>, String> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".gpx") {
        parse_gpx(text)
    } else if lower.ends_with(".geojson") || lower.ends_with(".json") {
        parse_geojson(text)
    } else {
        Err(format!("route file `{name}` is neither .gpx nor .geojson"))
    }
}

/// Points of a GPX file: all track segments in order; the routes when there is no track.
///
/// # Errors
/// Unreadable GPX, or no points at all.
pub fn parse_gpx(text: &str) -> Result<Vec<Coord>, String> {
    let gpx = gpx::read(text.as_bytes()).map_err(|e| format!("not valid GPX: {e}"))?;
    let to_coord = |w: &gpx::Waypoint| {
        let p = w.point();
        Coord::with_ele(p.x(), p.y(), w.elevation)
    };
    let mut pts: Vec<Coord> = gpx
        .tracks
        .iter()
        .flat_map(|t| t.segments.iter())
        .flat_map(|s| s.points.iter())
        .map(to_coord)
        .collect();
    if pts.is_empty() {
        pts = gpx
            .routes
            .iter()
            .flat_map(|r| r.points.iter())
            .map(to_coord)
            .collect();
    }
    if pts.is_empty() {
        return Err("GPX file has no track or route points; a route needs at least 2".into());
    }
    Ok(pts)
}

/// Points of a GeoJSON line: LineString, MultiLineString (parts joined in order), or a Feature
/// or FeatureCollection holding those.
///
/// # Errors
/// Unreadable GeoJSON, or a geometry that is not a line.
pub fn parse_geojson(text: &str) -> Result<Vec<Coord>, String> {
    use geojson::{GeoJson, GeometryValue};
    let gj: GeoJson = text
        .parse()
        .map_err(|e| format!("not valid GeoJSON: {e}"))?;
    let geometries: Vec<geojson::Geometry> = match gj {
        GeoJson::Geometry(g) => vec![g],
        GeoJson::Feature(f) => f.geometry.into_iter().collect(),
        GeoJson::FeatureCollection(fc) => {
            fc.features.into_iter().filter_map(|f| f.geometry).collect()
        }
    };
    let mut pts = Vec::new();
    for g in geometries {
        let lines: Vec<geojson::LineStringType> = match g.value {
            GeometryValue::LineString { coordinates } => vec![coordinates],
            GeometryValue::MultiLineString { coordinates } => coordinates,
            other => {
                return Err(format!(
                    "GeoJSON geometry is a {}; a route must be a LineString or MultiLineString",
                    other.type_name()
                ));
            }
        };
        for line in lines {
            for pos in line {
                let s = pos.as_slice();
                if s.len() < 2 {
                    return Err("GeoJSON position with fewer than 2 numbers".into());
                }
                pts.push(Coord::with_ele(s[0], s[1], s.get(2).copied()));
            }
        }
    }
    if pts.is_empty() {
        return Err("GeoJSON has no line coordinates; a route needs at least 2 points".into());
    }
    Ok(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_may_not_escape() {
        assert!(safe_relative("routes/a.gpx").is_ok());
        assert_eq!(
            safe_relative("routes/../a.gpx").ok(),
            Some(PathBuf::from("a.gpx"))
        );
        assert!(safe_relative("../secret.gpx").is_err());
        assert!(safe_relative("routes/../../x.gpx").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
    }

    #[test]
    fn gpx_track_and_route_fallback() {
        let trk = r#"<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">
<trk><trkseg><trkpt lat="48.9" lon="2.3"><ele>40</ele></trkpt><trkpt lat="48.91" lon="2.31"/></trkseg></trk></gpx>"#;
        let pts = parse_gpx(trk).unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0], Coord::with_ele(2.3, 48.9, Some(40.0)));
        let rte = r#"<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">
<rte><rtept lat="1" lon="2"/><rtept lat="1.5" lon="2.5"/></rte></gpx>"#;
        assert_eq!(parse_gpx(rte).unwrap().len(), 2);
        let empty = r#"<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1"></gpx>"#;
        assert!(
            parse_gpx(empty)
                .unwrap_err()
                .contains("no track or route points")
        );
    }

    #[test]
    fn geojson_forms() {
        let ls = r#"{"type":"LineString","coordinates":[[2,48],[2.1,48.1,35]]}"#;
        assert_eq!(
            parse_geojson(ls).unwrap()[1],
            Coord::with_ele(2.1, 48.1, Some(35.0))
        );
        let fc = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"MultiLineString","coordinates":[[[0,0],[1,1]],[[1,1],[2,2]]]}}]}"#;
        assert_eq!(parse_geojson(fc).unwrap().len(), 4);
        let poly = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#;
        assert!(parse_geojson(poly).unwrap_err().contains("Polygon"));
    }
}
