//! `pmtiles-fixture IN.geojson OUT.pmtiles [MAX_ZOOM]`: a small vector-tile basemap for the
//! browser tests, made from a GeoJSON FeatureCollection of lines (streets): every tile from
//! zoom 0 to `MAX_ZOOM` (default 15) that the lines' bounding box touches, each holding every
//! line (clipped to the tile by the encoder), in the layer named by the feature's `layer`
//! property (`roads` if none), with its `kind` and `name`: the Protomaps basemap schema that
//! protomaps-leaflet's styles draw. Not a tiler for real maps (no simplification, no
//! polygons): an organiser's extract comes from the Protomaps builds (docs/operations.md).

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context, Result, bail};
use mvt::{GeomEncoder, GeomType, Tile};
use pmtiles::{PmTilesWriter, TileCoord, TileType};
use serde_json::Value;

/// The tiles' extent, the usual one.
const EXTENT: u32 = 4096;

/// One line of the input: its layer, tags and points (lon, lat).
struct Line {
    layer: String,
    kind: String,
    name: Option<String>,
    points: Vec<(f64, f64)>,
}

/// Web Mercator in [0, 1]², y down.
fn world(lon: f64, lat: f64) -> (f64, f64) {
    let phi = lat.clamp(-85.051_128, 85.051_128).to_radians();
    let x = (lon + 180.0) / 360.0;
    let y = (1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / std::f64::consts::PI) / 2.0;
    (x, y)
}

fn lines(geojson: &Value) -> Result<Vec<Line>> {
    let features = geojson["features"]
        .as_array()
        .context("the input is not a GeoJSON FeatureCollection")?;
    let mut out = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let props = &f["properties"];
        let text = |key: &str| props[key].as_str().map(str::to_owned);
        let geometry = &f["geometry"];
        let parts: Vec<&Value> = match geometry["type"].as_str() {
            Some("LineString") => vec![&geometry["coordinates"]],
            Some("MultiLineString") => geometry["coordinates"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            other => bail!("feature {i}: a {other:?} geometry; only lines are tiled"),
        };
        for part in parts {
            let points = part
                .as_array()
                .with_context(|| format!("feature {i}: coordinates are not a list"))?
                .iter()
                .map(|p| match (p[0].as_f64(), p[1].as_f64()) {
                    (Some(lon), Some(lat)) => Ok((lon, lat)),
                    _ => bail!("feature {i}: a position is not [lon, lat]"),
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(Line {
                layer: text("layer").unwrap_or_else(|| "roads".to_owned()),
                kind: text("kind").unwrap_or_else(|| "minor_road".to_owned()),
                name: text("name"),
                points,
            });
        }
    }
    Ok(out)
}

/// The tile `(z, x, y)` holding `lines`, or `None` if none crosses it.
fn tile(z: u8, tx: u32, ty: u32, lines: &[Line]) -> Result<Option<Vec<u8>>> {
    let scale = f64::from(1u32 << z);
    let mut tile = Tile::new(EXTENT);
    let mut layers: Vec<(String, mvt::Layer)> = Vec::new();
    for line in lines {
        let mut encoder = GeomEncoder::new(GeomType::Linestring);
        for &(lon, lat) in &line.points {
            let (x, y) = world(lon, lat);
            let px = (x * scale - f64::from(tx)) * f64::from(EXTENT);
            let py = (y * scale - f64::from(ty)) * f64::from(EXTENT);
            #[allow(clippy::cast_possible_truncation)]
            encoder.add_point(px as f32, py as f32)?;
        }
        let geometry = encoder.encode()?;
        if geometry.is_empty() {
            continue;
        }
        let at = match layers.iter().position(|(name, _)| *name == line.layer) {
            Some(at) => at,
            None => {
                layers.push((line.layer.clone(), tile.create_layer(&line.layer)));
                layers.len() - 1
            }
        };
        let (name, layer) = layers.remove(at);
        let mut feature = layer.into_feature(geometry);
        feature.add_tag_string("kind", &line.kind);
        if let Some(n) = &line.name {
            feature.add_tag_string("name", n);
        }
        layers.insert(at, (name, feature.into_layer()));
    }
    if layers.is_empty() {
        return Ok(None);
    }
    for (_, layer) in layers {
        tile.add_layer(layer)?;
    }
    Ok(Some(tile.to_bytes()?))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        bail!("usage: pmtiles-fixture IN.geojson OUT.pmtiles [MAX_ZOOM]");
    };
    let max_zoom: u8 = rest
        .first()
        .map_or(Ok(15), |z| z.parse())
        .context("MAX_ZOOM")?;
    let geojson: Value = serde_json::from_reader(File::open(input).with_context(|| input.clone())?)
        .with_context(|| format!("{input}: not JSON"))?;
    let lines = lines(&geojson)?;
    let all = lines.iter().flat_map(|l| l.points.iter().copied());
    let (mut w, mut s, mut e, mut n) = (180.0_f64, 90.0_f64, -180.0_f64, -90.0_f64);
    for (lon, lat) in all {
        (w, s, e, n) = (w.min(lon), s.min(lat), e.max(lon), n.max(lat));
    }
    if w > e {
        bail!("{input}: no lines");
    }
    let file = BufWriter::new(File::create(output).with_context(|| output.clone())?);
    let mut writer = PmTilesWriter::new(TileType::Mvt)
        .min_zoom(0)
        .max_zoom(max_zoom)
        .bounds(w, s, e, n)
        .center((w + e) / 2.0, (s + n) / 2.0)
        .center_zoom(max_zoom.min(14))
        .metadata(r#"{"name":"handoff test streets","attribution":"test fixture"}"#)
        .create(file)?;
    let mut count = 0;
    for z in 0..=max_zoom {
        let scale = f64::from(1u32 << z);
        let (x0, y0) = world(w, n);
        let (x1, y1) = world(e, s);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let range = |a: f64, b: f64| {
            let last = (1u32 << z) - 1;
            ((a * scale) as u32).min(last)..=((b * scale) as u32).min(last)
        };
        for tx in range(x0, x1) {
            for ty in range(y0, y1) {
                if let Some(bytes) = tile(z, tx, ty, &lines)? {
                    writer.add_tile(TileCoord::new(z, tx, ty)?, &bytes)?;
                    count += 1;
                }
            }
        }
    }
    writer.finalize()?;
    println!(
        "{output}: {count} tiles, zoom 0–{max_zoom}, {} lines",
        lines.len()
    );
    Ok(())
}
