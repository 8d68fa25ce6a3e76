//! Exports, read back with the parsers other tools use: the calendar feed (iCalendar, one
//! event per leg, at the live ETAs), a relay's actual track (GPX and GeoJSON, only the pings
//! taken while each carrier held the object) and the organisers' CSV of every ping.

use anyhow::{Context, Result, ensure};
use icalendar::{Component, EventLike};
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, at};

/// A 2-minute stage at the Hôtel de Ville, a run to the Louvre, a run to the Concorde.
const PARIS: &str = r#"
[event]
id = "paris"
name = "Olympic flag: through Paris"
timezone = "Europe/Paris"

[[places]]
id = "hotel-de-ville"
name = "Hôtel de Ville"
at = [2.3522, 48.8566]
timezone = "Europe/Paris"

[[places]]
id = "louvre"
name = "Louvre"
at = [2.3385, 48.8617]
timezone = "Europe/Paris"

[[places]]
id = "concorde"
name = "Place de la Concorde"
at = [2.3212, 48.8656]
timezone = "Europe/Paris"

[[relays]]
id = "flag"
name = "Olympic flag"
object = "Olympic flag"

[[relays.legs]]
carriers = ["Anne Hidalgo"]
mode = "stage"
place = "hotel-de-ville"
start = "2024-08-11T23:00:00+02:00[Europe/Paris]"
duration = "2m"

[[relays.legs]]
carriers = ["Marie-José Pérec"]
mode = "run"
route = { points = [
    [2.3522, 48.8566], [2.3495, 48.8577], [2.3470, 48.8586], [2.3441, 48.8597], [2.3412, 48.8607],
    [2.3385, 48.8617],
] }
duration = "7m"

[[relays.legs]]
carriers = ["Tony Estanguet"]
mode = "run"
route = { points = [
    [2.3385, 48.8617], [2.3330, 48.8627], [2.3280, 48.8636], [2.3240, 48.8645], [2.3212, 48.8656],
] }
duration = "8m"
"#;

/// A stage in Fiji, then a flight east across the antimeridian to Apia.
const PACIFIC: &str = r#"
[event]
id = "pacific"
name = "Across the date line"
timezone = "Pacific/Fiji"

[[places]]
id = "suva"
name = "Suva"
at = [178.44, -18.14]
timezone = "Pacific/Fiji"

[[places]]
id = "apia"
name = "Apia"
at = [-171.77, -13.83]
timezone = "Pacific/Apia"

[[relays]]
id = "canoe"
name = "Canoe paddle"
object = "Paddle"

[[relays.legs]]
carriers = ["Ratu"]
mode = "stage"
place = "suva"
start = "2024-08-11T21:00:00Z"
duration = "2m"

[[relays.legs]]
carriers = ["Pilot"]
mode = "flight"
route = { points = [[178.44, -18.14], [179.5, -17.0], [-179.5, -16.0], [-171.77, -13.83]] }
duration = "2h"
"#;

/// An instant as iCalendar writes it in UTC.
fn ical(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Sends pings `(seconds after T0, [lon, lat])` of one device; all must be accepted.
async fn report(s: &Server, token: &str, pings: &[(i64, [f64; 2])]) -> Result<()> {
    let body: Vec<Value> = pings
        .iter()
        .map(|(t, [lon, lat])| json!({ "t": at(*t).to_string(), "lon": lon, "lat": lat, "acc": 5.0 }))
        .collect();
    let answer = s.send(token, &body).await?;
    ensure!(answer["accepted"] == pings.len(), "POST pings: {answer}");
    Ok(())
}

// Where each carrier was. In-window pings lie on their route; the others are far off it, so a
// leak would show.
const EIFFEL: [f64; 2] = [2.2945, 48.8584];
const ARC: [f64; 2] = [2.2950, 48.8738];
const NOTRE_DAME: [f64; 2] = [2.3499, 48.8530];
const PEREC_ON_LEG: [(i64, [f64; 2]); 4] = [
    (150, [2.3495, 48.8577]),
    (180, [2.3470, 48.8586]),
    (210, [2.3441, 48.8597]),
    (240, [2.3412, 48.8607]),
];
const ESTANGUET_ON_LEG: [(i64, [f64; 2]); 3] = [
    (320, [2.3330, 48.8627]),
    (350, [2.3280, 48.8636]),
    (380, [2.3240, 48.8645]),
];

/// The Paris relay, run: the stage, a handoff at T0+130 s, a run, a handoff at T0+300 s, and
/// the second runner under way at T0+400 s. Each runner's device also reports before or after
/// their leg (from Eiffel, the Arc, Notre-Dame). Returns the server, its clock at T0+400 s.
async fn paris_run() -> Result<Server> {
    let s = Server::with_plan("paris", PARIS, at(-60)).await?;
    let hidalgo = s
        .device_in("paris", "hidalgo-phone", "Anne Hidalgo")
        .await?;
    let perec = s
        .device_in("paris", "perec-watch", "Marie-José Pérec")
        .await?;
    let estanguet = s
        .device_in("paris", "estanguet-phone", "Tony Estanguet")
        .await?;
    s.set_clock(at(65));
    report(&s, &hidalgo, &[(30, [2.3522, 48.8566])]).await?;
    report(&s, &perec, &[(60, EIFFEL)]).await?;
    s.set_clock(at(130));
    s.handoff("paris", "flag").await?;
    s.set_clock(at(250));
    report(&s, &perec, &PEREC_ON_LEG).await?;
    report(&s, &estanguet, &[(200, ARC)]).await?;
    s.set_clock(at(300));
    s.handoff("paris", "flag").await?;
    s.set_clock(at(400));
    report(&s, &perec, &[(330, NOTRE_DAME)]).await?;
    report(&s, &estanguet, &ESTANGUET_ON_LEG).await?;
    Ok(s)
}

fn close(a: [f64; 2], b: [f64; 2]) -> bool {
    (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9
}

#[tokio::test]
async fn the_calendar_has_one_event_per_leg_at_the_live_etas() -> Result<()> {
    let s = Server::with_plan("paris", PARIS, at(-60)).await?;
    let text = s.text("/api/v1/events/paris/calendar.ics", false).await?;
    let cal: icalendar::Calendar = text.parse().map_err(anyhow::Error::msg)?;
    let events: Vec<&icalendar::Event> = cal.events().collect();
    assert_eq!(events.len(), 3, "one VEVENT per leg:\n{text}");
    let uids: Vec<&str> = events.iter().filter_map(|e| e.get_uid()).collect();
    assert_eq!(
        uids,
        [
            "paris-flag-0@handoff",
            "paris-flag-1@handoff",
            "paris-flag-2@handoff"
        ]
    );
    assert_eq!(
        events[1].get_summary(),
        Some("Olympic flag: Marie-José Pérec (run)")
    );
    assert_eq!(events[0].get_location(), Some("Hôtel de Ville"));
    assert_eq!(events[1].get_location(), Some("Hôtel de Ville → Louvre"));
    assert_eq!(
        events[2].get_location(),
        Some("Louvre → Place de la Concorde")
    );
    for e in &events {
        assert_eq!(e.property_value("DTSTAMP"), Some(ical(at(-60)).as_str()));
    }
    // Before the start, the ETAs are the plan: the last run 2 + 7 minutes after T0.
    assert_eq!(
        events[2].property_value("DTSTART"),
        Some(ical(at(540)).as_str())
    );
    assert_eq!(
        events[2].property_value("DTEND"),
        Some(ical(at(1020)).as_str())
    );

    // The operator shifts the plan by ten minutes: the feed moves with the live ETAs.
    s.admin_post("/api/v1/events/paris/shift", json!({ "minutes": 10 }))
        .await?;
    let text = s.text("/api/v1/events/paris/calendar.ics", false).await?;
    let cal: icalendar::Calendar = text.parse().map_err(anyhow::Error::msg)?;
    let events: Vec<&icalendar::Event> = cal.events().collect();
    assert_eq!(
        events[2].property_value("DTSTART"),
        Some(ical(at(540 + 600)).as_str())
    );
    let live: Value =
        serde_json::from_str(&s.text("/api/v1/events/paris/live?legs=full", false).await?)?;
    for (e, leg) in events
        .iter()
        .zip(live["relays"][0]["legs"].as_array().context("legs")?)
    {
        let eta = |key: &str| -> Result<String> {
            let t: Timestamp = leg[key].as_str().context("a time")?.parse()?;
            Ok(ical(t))
        };
        assert_eq!(
            e.property_value("DTSTART"),
            Some(eta("eta_start")?.as_str())
        );
        assert_eq!(e.property_value("DTEND"), Some(eta("eta_end")?.as_str()));
    }

    let (status, _) = s
        .get_text("/api/v1/events/nowhere/calendar.ics", false)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn the_gpx_track_holds_only_the_pings_taken_while_holding_the_flag() -> Result<()> {
    let s = paris_run().await?;
    let text = s
        .text("/api/v1/events/paris/relays/flag/track.gpx", false)
        .await?;
    let gpx = gpx::read(text.as_bytes())?;
    assert_eq!(gpx.tracks.len(), 1, "{text}");
    assert_eq!(gpx.tracks[0].name.as_deref(), Some("Olympic flag"));
    assert_eq!(
        gpx.metadata.as_ref().and_then(|m| m.name.as_deref()),
        Some("Olympic flag: through Paris")
    );
    let segments = &gpx.tracks[0].segments;
    assert_eq!(segments.len(), 3, "one segment per leg started:\n{text}");
    let points = |i: usize| -> Vec<[f64; 2]> {
        segments[i]
            .points
            .iter()
            .map(|w| [w.point().x(), w.point().y()])
            .collect()
    };
    assert_eq!(points(0), [[2.3522, 48.8566]], "the stage");
    let perec: Vec<[f64; 2]> = PEREC_ON_LEG.iter().map(|(_, p)| *p).collect();
    let estanguet: Vec<[f64; 2]> = ESTANGUET_ON_LEG.iter().map(|(_, p)| *p).collect();
    assert_eq!(points(1), perec);
    assert_eq!(points(2), estanguet);
    let times: Vec<Timestamp> = segments[1]
        .points
        .iter()
        .map(|w| {
            let t: time::OffsetDateTime = w.time.expect("a time").into();
            Timestamp::from_second(t.unix_timestamp()).expect("in range")
        })
        .collect();
    let expected: Vec<Timestamp> = PEREC_ON_LEG.iter().map(|(t, _)| at(*t)).collect();
    assert_eq!(times, expected);
    for leak in [EIFFEL, ARC, NOTRE_DAME] {
        assert!(
            !segments
                .iter()
                .flat_map(|s| &s.points)
                .any(|w| close([w.point().x(), w.point().y()], leak)),
            "a ping outside its carrier's leg is public: {leak:?}"
        );
    }
    let (status, _) = s
        .get_text("/api/v1/events/paris/relays/nobody/track.gpx", false)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn the_geojson_track_has_one_line_per_leg() -> Result<()> {
    let s = paris_run().await?;
    let text = s
        .text("/api/v1/events/paris/relays/flag/track.geojson", false)
        .await?;
    let fc: geojson::FeatureCollection = text.parse()?;
    assert_eq!(fc.features.len(), 3, "{text}");
    let props = |i: usize| fc.features[i].properties.clone().unwrap_or_default();
    assert_eq!(props(1)["leg"], 1);
    assert_eq!(props(1)["carriers"], json!(["Marie-José Pérec"]));
    assert_eq!(props(1)["mode"], "run");
    assert_eq!(props(2)["carriers"], json!(["Tony Estanguet"]));
    assert_eq!(props(2)["end"], Value::Null, "still running");
    // One position is no line.
    assert!(fc.features[0].geometry.is_none(), "{text}");
    for (i, expected) in [(1, &PEREC_ON_LEG[..]), (2, &ESTANGUET_ON_LEG[..])] {
        let geometry = fc.features[i].geometry.as_ref().context("a line")?;
        let geojson::GeometryValue::LineString { coordinates } = &geometry.value else {
            anyhow::bail!("leg {i} is not a LineString: {geometry:?}");
        };
        let got: Vec<[f64; 2]> = coordinates
            .iter()
            .map(|p| [p.as_slice()[0], p.as_slice()[1]])
            .collect();
        let want: Vec<[f64; 2]> = expected.iter().map(|(_, p)| *p).collect();
        assert_eq!(got, want, "leg {i}");
    }
    for leak in ["2.2945", "48.8738", "48.853,", "48.853]"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_track_across_the_antimeridian_is_split() -> Result<()> {
    let s = Server::with_plan("pacific", PACIFIC, at(-60)).await?;
    let pilot = s.device_in("pacific", "pilot-phone", "Pilot").await?;
    s.set_clock(at(130));
    s.handoff("pacific", "canoe").await?;
    s.set_clock(at(1800));
    report(
        &s,
        &pilot,
        &[
            (600, [179.0, -17.5]),
            (900, [179.8, -16.6]),
            (1200, [-179.8, -16.4]),
            (1500, [-178.0, -15.8]),
        ],
    )
    .await?;
    let text = s
        .text("/api/v1/events/pacific/relays/canoe/track.geojson", false)
        .await?;
    let fc: geojson::FeatureCollection = text.parse()?;
    let geometry = fc.features[1].geometry.as_ref().context("a line")?;
    let geojson::GeometryValue::MultiLineString { coordinates } = &geometry.value else {
        anyhow::bail!("not split at the antimeridian: {geometry:?}");
    };
    assert_eq!(coordinates.len(), 2, "{text}");
    let last_west = coordinates[0].last().context("a point")?.as_slice();
    let first_east = coordinates[1].first().context("a point")?.as_slice();
    assert!((last_west[0] - 180.0).abs() < 1e-9, "{text}");
    assert!((first_east[0] + 180.0).abs() < 1e-9, "{text}");
    assert!((last_west[1] - first_east[1]).abs() < 1e-9, "{text}");
    // GPX has no such rule: the segment keeps the four points as they are.
    let gpx = gpx::read(
        s.text("/api/v1/events/pacific/relays/canoe/track.gpx", false)
            .await?
            .as_bytes(),
    )?;
    assert_eq!(gpx.tracks[0].segments[1].points.len(), 4);
    Ok(())
}

#[tokio::test]
async fn the_csv_has_every_stored_ping_for_the_admin_only() -> Result<()> {
    let s = paris_run().await?;
    let (status, _) = s.get_text("/api/v1/events/paris/pings.csv", false).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let text = s.text("/api/v1/events/paris/pings.csv", true).await?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "device",
            "carrier",
            "t",
            "lon",
            "lat",
            "acc_m",
            "speed_mps",
            "heading_deg",
            "alt_m",
            "batt_pct",
            "received_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    // Every ping, in or out of a leg: 1 + 1 + 4 + 1 + 1 + 3.
    assert_eq!(rows.len(), 11, "{text}");
    let eiffel = rows
        .iter()
        .find(|r| &r[0] == "perec-watch" && &r[2] == at(60).to_string().as_str())
        .context("the early ping")?;
    assert_eq!(&eiffel[1], "Marie-José Pérec");
    assert_eq!(eiffel[3].parse::<f64>()?, EIFFEL[0]);
    assert_eq!(eiffel[4].parse::<f64>()?, EIFFEL[1]);
    assert_eq!(eiffel[5].parse::<f64>()?, 5.0);
    assert_eq!(&eiffel[6], "", "speed not reported");
    let received: Timestamp = eiffel[10].parse()?;
    assert_eq!(received, at(65));
    let times: Vec<Timestamp> = rows
        .iter()
        .map(|r| r[2].parse())
        .collect::<Result<_, _>>()?;
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    Ok(())
}
