//! The street basemap: `GET /basemap` says whether there is one, `GET /basemap.pmtiles` serves
//! the file given to the server with range requests (as the pages' PMTiles reader asks), and a
//! file that is not PMTiles version 3 is refused by name before anything is served.

use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Server, at};

/// A PMTiles version 3 header (127 bytes: the magic, the version, then zeros) and some bytes.
fn pmtiles_like() -> Vec<u8> {
    let mut bytes = b"PMTiles\x03".to_vec();
    bytes.resize(127, 0);
    bytes[101] = 14; // max zoom
    bytes.extend((0..1_000u32).map(|i| (i % 251) as u8));
    bytes
}

#[tokio::test]
async fn the_basemap_is_served_in_byte_ranges_and_only_when_set() -> Result<()> {
    let s = Server::start_at(at(0)).await?;
    // None set: the pages are told so, and the file is a 404 with a JSON error.
    let info: Value = s.http.get(s.url("/basemap")).send().await?.json().await?;
    ensure!(info["pmtiles"].is_null(), "{info}");
    let none = s.http.get(s.url("/basemap.pmtiles")).send().await?;
    ensure!(none.status() == StatusCode::NOT_FOUND, "{}", none.status());
    let body: Value = none.json().await?;
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--basemap")),
        "{body}"
    );

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("paris.pmtiles");
    let bytes = pmtiles_like();
    std::fs::write(&file, &bytes)?;
    s.state.basemap.serve(&file).map_err(anyhow::Error::msg)?;
    let info: Value = s.http.get(s.url("/basemap")).send().await?.json().await?;
    ensure!(info["pmtiles"] == "/basemap.pmtiles", "{info}");

    // The header, as the pages read it first.
    let head = s
        .http
        .get(s.url("/basemap.pmtiles"))
        .header("Range", "bytes=0-126")
        .send()
        .await?;
    ensure!(
        head.status() == StatusCode::PARTIAL_CONTENT,
        "{}",
        head.status()
    );
    let headers = head.headers().clone();
    ensure!(
        headers.get("content-range").and_then(|v| v.to_str().ok())
            == Some(&format!("bytes 0-126/{}", bytes.len()) as &str),
        "{headers:?}"
    );
    ensure!(
        headers.get("content-type").and_then(|v| v.to_str().ok())
            == Some("application/vnd.pmtiles"),
        "{headers:?}"
    );
    ensure!(
        headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("max-age")),
        "{headers:?}"
    );
    ensure!(head.bytes().await?[..] == bytes[..127]);
    // A range in the middle, and the whole file.
    let mid = s
        .http
        .get(s.url("/basemap.pmtiles"))
        .header("Range", "bytes=500-599")
        .send()
        .await?;
    ensure!(mid.status() == StatusCode::PARTIAL_CONTENT);
    ensure!(mid.bytes().await?[..] == bytes[500..600]);
    let whole = s.http.get(s.url("/basemap.pmtiles")).send().await?;
    ensure!(whole.status() == StatusCode::OK);
    ensure!(whole.bytes().await?[..] == bytes[..]);
    // A range past the end is refused, as HTTP says.
    let past = s
        .http
        .get(s.url("/basemap.pmtiles"))
        .header("Range", "bytes=999999-")
        .send()
        .await?;
    ensure!(
        past.status() == StatusCode::RANGE_NOT_SATISFIABLE,
        "{}",
        past.status()
    );
    // Set once.
    ensure!(s.state.basemap.serve(&file).is_err());
    s.stop().await?;
    Ok(())
}

#[test]
fn a_file_that_is_not_pmtiles_3_is_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let geojson = dir.path().join("streets.geojson");
    std::fs::write(&geojson, br#"{"type":"FeatureCollection","features":[]}"#)?;
    let e = handoff_server::pages::check_basemap(&geojson)
        .err()
        .context("refused")?;
    ensure!(
        e.contains("streets.geojson") && e.contains("not a PMTiles file"),
        "{e}"
    );
    let v2 = dir.path().join("old.pmtiles");
    std::fs::write(&v2, b"PMTiles\x02........")?;
    let e = handoff_server::pages::check_basemap(&v2)
        .err()
        .context("refused")?;
    ensure!(e.contains("version 2"), "{e}");
    let missing = dir.path().join("missing.pmtiles");
    let e = handoff_server::pages::check_basemap(&missing)
        .err()
        .context("refused")?;
    ensure!(
        e.contains("missing.pmtiles") && e.contains("cannot read"),
        "{e}"
    );
    Ok(())
}
