//! Exports in the formats other tools read: the schedule as an iCalendar feed whose times
//! follow the live ETAs (subscribe once, and the calendar moves with the relay), a relay's
//! actual track as GPX or GeoJSON, and every stored ping as CSV for the organisers.
//!
//! Privacy shapes the tracks: a carrier's position is public only while they hold the object,
//! so a track is built from the pings of a leg's carriers' devices taken inside that leg's
//! actual window (from the handoff that gave them the object to the one that passed it on, or
//! to now less the event's public delay), never from pings outside an active leg.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use handoff_core::geodesic::{Coord, split_antimeridian};
use handoff_core::plan::{Plan, Relay};
use handoff_core::schedule::{local, place_name};
use handoff_core::snapshot::LegView;
use handoff_store::StoredPing;
use icalendar::{Calendar, Component, Event, EventLike, Property};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::app::AppState;
use crate::engine::EventLive;
use crate::error::{ApiError, Result};

/// Calendar clients are asked to refresh this often: the ETAs move.
const CALENDAR_REFRESH: &str = "PT5M";

fn relay_of<'p>(plan: &'p Plan, event: &str, relay: &str) -> Result<&'p Relay> {
    plan.relay(relay)
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "export",
        format!("could not write the {what}: {e}"),
    )
}

/// A download: its media type, a file name, and a short cache (the data moves live).
fn download(content_type: &str, filename: &str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "public, max-age=30".to_owned()),
        ],
        body.into(),
    )
        .into_response()
}

/// An instant as iCalendar's UTC DATE-TIME (`20240811T210500Z`).
fn ical_utc(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Where a leg happens, by the names of the places nearest its ends.
fn leg_location(plan: &Plan, leg: &handoff_core::plan::Leg) -> String {
    let from = place_name(plan, leg.geometry.start());
    let to = place_name(plan, leg.geometry.end());
    if from == to {
        from
    } else {
        format!("{from} → {to}")
    }
}

/// `GET /api/v1/events/{event}/calendar.ics`: one VEVENT per leg of every relay, at its live
/// ETA (its actual times once done).
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/calendar.ics",
    tag = "exports",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "iCalendar: every leg and milestone", content_type = "text/calendar", body = String))
)]
pub async fn calendar(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    let now = state.now();
    let snapshot = live.snapshot(now, true).await;
    let plan = &live.plan;
    let mut cal = Calendar::empty();
    cal.append_property(Property::new("VERSION", "2.0"))
        .append_property(Property::new("PRODID", "-//handoff//relay schedule//EN"))
        .append_property(Property::new("CALSCALE", "GREGORIAN"))
        .append_property(Property::new("METHOD", "PUBLISH"))
        .append_property(Property::new("X-PUBLISHED-TTL", CALENDAR_REFRESH))
        .append_property(
            Property::new("REFRESH-INTERVAL", CALENDAR_REFRESH).add_parameter("VALUE", "DURATION"),
        )
        .name(&plan.event.name);
    for view in &snapshot.relays {
        let Some(relay) = plan.relay(&view.id) else {
            continue;
        };
        let n = relay.legs.len();
        for lv in &view.legs {
            let Some(leg) = relay.legs.get(lv.index) else {
                continue;
            };
            let description = format!(
                "Leg {} of {n} of {}. Planned {} to {}; the times here follow the live estimate ({}).",
                lv.index + 1,
                relay.name,
                local(lv.planned_start, &leg.start_zone),
                local(lv.planned_end, &leg.end_zone),
                serde_json::to_value(lv.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            );
            let ev = Event::new()
                .uid(&format!(
                    "{}-{}-{}@handoff",
                    plan.event.id, relay.id, lv.index
                ))
                .add_property("DTSTAMP", ical_utc(now))
                .add_property("DTSTART", ical_utc(lv.eta_start))
                .add_property("DTEND", ical_utc(lv.eta_end.max(lv.eta_start)))
                .summary(&format!(
                    "{}: {} ({})",
                    relay.name,
                    lv.carriers.join(", "),
                    lv.mode
                ))
                .location(&leg_location(plan, leg))
                .description(&description)
                .done();
            cal.push(ev);
        }
    }
    Ok(download(
        "text/calendar; charset=utf-8",
        &format!("{event}.ics"),
        cal.done().to_string(),
    ))
}

/// One leg's actual track: the pings of its carriers' devices inside its actual window.
struct LegTrack<'a> {
    view: &'a LegView,
    start: Timestamp,
    end: Timestamp,
    pings: Vec<StoredPing>,
}

/// The legs of a relay that have started, each with its public track, in leg order (so the
/// i-th track is leg i's).
async fn tracks<'a>(
    state: &AppState,
    live: &EventLive,
    relay: &handoff_core::plan::Relay,
    legs: &'a [LegView],
    now: Timestamp,
) -> Result<Vec<LegTrack<'a>>> {
    let event = &live.plan.event.id;
    let devices = state.store.devices(event).await?;
    let mut devices_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for d in &devices {
        devices_of
            .entry(d.carrier.as_str())
            .or_default()
            .push(d.device_id.as_str());
    }
    // Positions become public only after the event's public delay.
    let public_until = now
        .checked_sub(SignedDuration::from_millis(live.plan.event.public_delay_ms))
        // A delay beyond the time scale shows nothing, never everything.
        .unwrap_or(Timestamp::MIN);
    let mut out = Vec::new();
    for view in legs {
        let Some(start) = view.actual_start else {
            break;
        };
        let end = view.actual_end.unwrap_or(now).min(public_until);
        let mut pings = Vec::new();
        if start <= end {
            // `to` is exclusive: one microsecond past the handoff keeps a ping taken at it.
            let to = end
                .checked_add(SignedDuration::from_micros(1))
                .unwrap_or(end);
            for carrier in &view.carriers {
                for device in devices_of.get(carrier.as_str()).into_iter().flatten() {
                    pings.extend(
                        state
                            .device_pings(event, device, Some(start), Some(to))
                            .await?,
                    );
                }
            }
        }
        // Only on the leg's course: a carrier is public while carrying the object along it.
        if let Some(leg) = relay.legs.get(view.index) {
            pings.retain(|p| {
                handoff_core::track::on_course(leg, p.ping.lon, p.ping.lat, p.ping.acc_m)
            });
        }
        pings.sort_by_key(|p| (p.ping.t, p.seq));
        out.push(LegTrack {
            view,
            start,
            end,
            pings,
        });
    }
    Ok(out)
}

fn gpx_time(t: Timestamp) -> Option<gpx::Time> {
    time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .ok()
        .map(gpx::Time::from)
}

/// `GET /api/v1/events/{event}/relays/{relay}/track.gpx`: one track, one segment per leg that
/// has started (segment i is leg i).
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/relays/{relay}/track.gpx",
    tag = "exports",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id")),
    responses((status = 200, description = "The public track as GPX", content_type = "application/gpx+xml", body = String))
)]
pub async fn track_gpx(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    let r = relay_of(&live.plan, &event, &relay)?;
    let now = state.now();
    let view = live
        .relay_view(&relay, now, true)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))?;
    let legs = tracks(&state, &live, r, &view.legs, now).await?;
    let mut track = gpx::Track::new();
    track.name = Some(r.name.clone());
    track.type_ = Some("handoff relay".to_owned());
    track.description = Some(
        legs.iter()
            .map(|l| {
                format!(
                    "leg {}: {} ({})",
                    l.view.index + 1,
                    l.view.carriers.join(", "),
                    l.view.mode
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    for leg in &legs {
        let mut segment = gpx::TrackSegment::new();
        for p in &leg.pings {
            let mut w = gpx::Waypoint::new(geo::Point::new(p.ping.lon, p.ping.lat));
            w.elevation = p.ping.alt_m;
            w.time = gpx_time(p.ping.t);
            segment.points.push(w);
        }
        track.segments.push(segment);
    }
    let doc = gpx::Gpx {
        version: gpx::GpxVersion::Gpx11,
        creator: Some("handoff".to_owned()),
        metadata: Some(gpx::Metadata {
            name: Some(live.plan.event.name.clone()),
            time: gpx_time(now),
            ..gpx::Metadata::default()
        }),
        tracks: vec![track],
        ..gpx::Gpx::default()
    };
    let mut body = Vec::new();
    gpx::write(&doc, &mut body).map_err(|e| internal("GPX track", e))?;
    Ok(download(
        "application/gpx+xml",
        &format!("{event}-{relay}.gpx"),
        body,
    ))
}

/// `GET /api/v1/events/{event}/relays/{relay}/track.geojson`: a FeatureCollection with one
/// Feature per leg that has started; its geometry a LineString, a MultiLineString when it
/// crosses the antimeridian, or null with fewer than two positions.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/relays/{relay}/track.geojson",
    tag = "exports",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id")),
    responses((status = 200, description = "The public track as GeoJSON", content_type = "application/geo+json", body = Object))
)]
pub async fn track_geojson(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    let r = relay_of(&live.plan, &event, &relay)?;
    let now = state.now();
    let view = live
        .relay_view(&relay, now, true)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))?;
    let legs = tracks(&state, &live, r, &view.legs, now).await?;
    let features = legs.iter().map(|leg| {
        let coords: Vec<Coord> = leg
            .pings
            .iter()
            .map(|p| Coord::new(p.ping.lon, p.ping.lat))
            .collect();
        let geometry = (coords.len() >= 2).then(|| {
            let parts = split_antimeridian(&coords);
            let line =
                |part: &[Coord]| -> Vec<[f64; 2]> { part.iter().map(|c| [c.lon, c.lat]).collect() };
            if let [only] = parts.as_slice() {
                geojson::Geometry::new_line_string(line(only))
            } else {
                geojson::Geometry::new(geojson::GeometryValue::new_multi_line_string(
                    parts.iter().map(|p| line(p)),
                ))
            }
        });
        let properties = json!({
            "relay": r.id,
            "leg": leg.view.index,
            "carriers": leg.view.carriers,
            "mode": leg.view.mode,
            "start": leg.start,
            "end": leg.view.actual_end,
            // The track runs to here: the handoff, or now less the public delay.
            "until": leg.end,
            "points": leg.pings.len(),
            "times": leg.pings.iter().map(|p| p.ping.t).collect::<Vec<_>>(),
        });
        geojson::Feature {
            geometry,
            properties: properties.as_object().cloned(),
            ..geojson::Feature::default()
        }
    });
    let collection = geojson::FeatureCollection::new(features);
    let body = serde_json::to_vec(&collection).map_err(|e| internal("GeoJSON track", e))?;
    Ok(download(
        "application/geo+json",
        &format!("{event}-{relay}.geojson"),
        body,
    ))
}

/// The columns of `pings.csv`.
pub const CSV_HEADER: [&str; 11] = [
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
    "received_at",
];

/// `GET /api/v1/events/{event}/pings.csv` (admin): every stored ping of the event, in device
/// time order. Empty cells are values the device did not report.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/pings.csv",
    tag = "exports",
    params(("event" = String, Path, description = "The event id")),
    security(("admin" = [])),
    responses((status = 200, description = "Every stored ping", content_type = "text/csv", body = String))
)]
pub async fn pings_csv(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    state.admin.require(&headers)?;
    let live = state.live_event(&event)?;
    let devices = state.store.devices(&live.plan.event.id).await?;
    let carrier_of: Arc<HashMap<String, String>> = Arc::new(
        devices
            .into_iter()
            .map(|d| (d.device_id, d.carrier))
            .collect(),
    );
    // The first page is read before answering, so that a store that cannot read is still a
    // clean 503; the rest is streamed page by page (an event's pings need not fit in memory).
    let first = state.store.pings_by_time(&event, None, CSV_PAGE).await?;
    let mut head = csv::Writer::from_writer(Vec::new());
    head.write_record(CSV_HEADER)
        .map_err(|e| internal("CSV", e))?;
    let first_chunk = csv_rows(head, &first, &carrier_of).map_err(|e| internal("CSV", e))?;
    let pages = CsvPages {
        store: Arc::clone(&state.store),
        event: event.clone(),
        carrier_of,
        after: next_page(&first),
    };
    let rest = futures_util::stream::try_unfold(pages, CsvPages::next);
    let body = futures_util::stream::iter([Ok(axum::body::Bytes::from(first_chunk))]).chain(rest);
    let mut resp = download(
        "text/csv; charset=utf-8",
        &format!("{event}-pings.csv"),
        axum::body::Body::from_stream(body),
    );
    // Positions of every device, also outside their legs: not for shared caches.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

/// Pings per page of the CSV export.
const CSV_PAGE: usize = 5_000;

/// Where the next page of a full page starts; `None` after a short one (the last).
fn next_page(page: &[StoredPing]) -> Option<handoff_store::PingKey> {
    if page.len() < CSV_PAGE {
        return None;
    }
    page.last().map(StoredPing::key)
}

/// The pages of the CSV export after the first.
struct CsvPages {
    store: Arc<dyn handoff_store::Store>,
    event: String,
    carrier_of: Arc<HashMap<String, String>>,
    after: Option<handoff_store::PingKey>,
}

impl CsvPages {
    /// The next page as CSV rows. An error ends the body early (the client sees a cut-off
    /// download, never a complete-looking file), and is logged.
    async fn next(self) -> std::io::Result<Option<(axum::body::Bytes, CsvPages)>> {
        let Some(after) = self.after else {
            return Ok(None);
        };
        let page = self
            .store
            .pings_by_time(&self.event, Some(after), CSV_PAGE)
            .await
            .map_err(|e| {
                tracing::error!(event = %self.event, "the CSV export stopped: {e}");
                std::io::Error::other("storage failed while exporting")
            })?;
        if page.is_empty() {
            return Ok(None);
        }
        let rows = csv_rows(
            csv::Writer::from_writer(Vec::new()),
            &page,
            &self.carrier_of,
        )
        .map_err(std::io::Error::other)?;
        let next = CsvPages {
            after: next_page(&page),
            ..self
        };
        Ok(Some((axum::body::Bytes::from(rows), next)))
    }
}

/// `pings` as CSV rows, after what `w` holds already.
fn csv_rows(
    mut w: csv::Writer<Vec<u8>>,
    pings: &[StoredPing],
    carrier_of: &HashMap<String, String>,
) -> std::result::Result<Vec<u8>, csv::Error> {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for p in pings {
        let q = &p.ping;
        w.write_record([
            p.device_id.clone(),
            carrier_of.get(&p.device_id).cloned().unwrap_or_default(),
            q.t.to_string(),
            q.lon.to_string(),
            q.lat.to_string(),
            opt(q.acc_m),
            opt(q.speed_mps),
            opt(q.heading_deg),
            opt(q.alt_m),
            opt(q.batt_pct),
            p.received_at.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}
