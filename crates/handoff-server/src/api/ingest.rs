//! The ingest endpoints: our batch API, the OsmAnd protocol (Traccar Client, OsmAnd,
//! GPSLogger…) and OwnTracks HTTP. Each authenticates the device, decodes with
//! `crate::ingest`, stores the pings (the answer waits for the commit: a 2xx means durable),
//! then hands the new ones to the event's tracker.
//!
//! On the phone routes, once the device is known, a report that can never be stored is
//! answered as if it were (phones retry a refused one forever, blocking their queue) and
//! counted per device instead ([`crate::ingest::dropped`]); a 4xx there means bad credentials,
//! or a request too broken to say whose it is.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff_core::ping::{Ping, SpeedUnit};
use handoff_store::{Device, Inserted, NewPing};
use serde_json::json;

use super::events::{MAX_BODY_BYTES, read_body};
use crate::app::AppState;
use crate::auth::bearer;
use crate::engine::{Committed, apply_committed};
use crate::error::{ApiError, Result};
use crate::ingest::{IngestError, batch, osmand, owntracks, speed_unit};
use crate::metrics::{DroppedLabel, FormatLabel};

/// Stores pings of one device and applies the new ones. Returns (accepted, duplicates).
/// The write and the apply run in a task of their own: once the store has them, the live
/// state gets them, even if the phone hangs up before the answer.
async fn store_and_apply(
    state: &Arc<AppState>,
    device: &Device,
    pings: Vec<Ping>,
    format: &'static str,
) -> Result<(usize, usize)> {
    if pings.is_empty() {
        return Ok((0, 0));
    }
    let received_at = state.now();
    let batch: Vec<NewPing> = pings
        .iter()
        .map(|p| NewPing {
            event_id: device.event_id.clone(),
            device_id: device.device_id.clone(),
            ping: *p,
            received_at,
        })
        .collect();
    let task = {
        let (state, device) = (Arc::clone(state), device.clone());
        tokio::spawn(async move {
            // Counted as under way from before the write, so no saved state claims its pings
            // before they are applied.
            let live = state.event(&device.event_id);
            let mut ticket = live.as_ref().map(|l| l.applied.begin());
            let outcomes = state.store.insert_pings(batch).await?;
            // Shared (not copied) by the engines it goes to: the live one, and rarely a newer.
            let fresh: Arc<[Committed]> = outcomes
                .iter()
                .zip(&pings)
                .filter_map(|(o, p)| match o {
                    Inserted::New { seq } => Some(Committed {
                        device: device.device_id.clone(),
                        carrier: device.carrier.clone(),
                        relay: device.relay_id.clone(),
                        seq: *seq,
                        ping: *p,
                    }),
                    Inserted::Duplicate => None,
                })
                .collect();
            let counts = (fresh.len(), pings.len() - fresh.len());
            let (first, last) = (
                fresh.iter().map(|c| c.seq).min(),
                fresh.iter().map(|c| c.seq).max(),
            );
            if let (Some(t), Some(first)) = (ticket.as_mut(), first) {
                t.committed(first);
            }
            if let Some(first) = first {
                state.own.stored_pings(first);
            }
            if let Some(live) = live.or_else(|| state.event(&device.event_id)) {
                // Applied before the answer, so what was acknowledged is in the live state.
                apply_committed(&state, &live, Arc::clone(&fresh)).await;
                // A new plan version went live meanwhile, after its catch-up read the store.
                if let Some(newer) = state.event(&device.event_id)
                    && !Arc::ptr_eq(&newer, &live)
                {
                    apply_committed(&state, &newer, fresh).await;
                }
            }
            if let Some(t) = ticket {
                t.finish(last);
            }
            Ok::<_, ApiError>(counts)
        })
    };
    let (accepted, duplicates) = task.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("storing pings failed: {e}"),
        )
    })??;
    let label = FormatLabel { format };
    state
        .metrics
        .accepted
        .get_or_create(&label)
        .inc_by(accepted as u64);
    state
        .metrics
        .duplicates
        .get_or_create(&label)
        .inc_by(duplicates as u64);
    Ok((accepted, duplicates))
}

/// Counts a report of a known device that `e` keeps from being stored, for the operator.
fn drop_report(state: &AppState, device: &Device, format: &'static str, e: &IngestError) {
    let reason = state
        .dropped
        .count(&device.event_id, &device.device_id, format, e);
    state
        .metrics
        .dropped
        .get_or_create(&DroppedLabel {
            format,
            reason: reason.as_str(),
        })
        .inc();
}

/// Stores one decoded report of a known device, or counts it when it cannot be stored.
async fn store_or_drop(
    state: &Arc<AppState>,
    device: &Device,
    format: &'static str,
    ping: std::result::Result<Ping, IngestError>,
) -> Result<()> {
    match ping {
        Ok(p) => {
            store_and_apply(state, device, vec![p], format).await?;
        }
        Err(e) => drop_report(state, device, format, &e),
    }
    Ok(())
}

/// The unit to read a device's OsmAnd `speed` in: as registered, else as detected from its
/// fixes so far (this one included), else knots.
fn speed_unit_of(state: &AppState, device: &Device, fix: speed_unit::Fix) -> SpeedUnit {
    device.speed_unit.unwrap_or_else(|| {
        state
            .speed_units
            .observe(&device.event_id, &device.device_id, fix)
    })
}

async fn device_for(state: &AppState, token: Option<&str>) -> Result<Device> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::unauthorized("send the device token: Authorization: Bearer <token>")
    })?;
    let device = state.device_by_token(token).await?.ok_or_else(|| {
        ApiError::unauthorized(
            "unknown device token; register the device with POST /api/v1/events/{event}/devices",
        )
    })?;
    // A phone catching up after a tunnel sends fast, but not this fast for long.
    let key = (device.event_id.clone(), device.device_id.clone());
    if let Some(wait) = state.limits.ingest.take(&key, Instant::now()) {
        return Err(ApiError::too_many(
            format!(
                "more than {} reports a minute from this device; send batches, or wait",
                crate::limits::INGEST_PER_MINUTE
            ),
            crate::limits::seconds(wait),
        ));
    }
    Ok(device)
}

fn observe(state: &AppState, format: &'static str, started: Instant, r: &Result<Response>) {
    state
        .metrics
        .latency
        .get_or_create(&FormatLabel { format })
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = r {
        state.metrics.reject(e.code);
    }
}

/// `POST /api/v1/pings`: a JSON array or NDJSON of pings from one device.
#[utoipa::path(
    post,
    path = "/api/v1/pings",
    tag = "ingest",
    request_body(description = "A JSON array (or one object) or NDJSON of pings of one device", content((crate::api::openapi::PingIn = "application/json"), ("application/x-ndjson"))),
    security(("device" = [])),
    responses((status = 200, description = "Stored (durable); per-ping refusals listed", body = crate::api::openapi::PingsAnswer))
)]
pub async fn pings(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let r = pings_inner(&state, &headers, body).await;
    observe(&state, "batch", started, &r);
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn pings_inner(state: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Result<Response> {
    let device = device_for(state, bearer(headers)).await?;
    let bytes = read_body(body, MAX_BODY_BYTES).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let items = batch::decode_batch(&bytes, ct, state.now())?;
    let mut good = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(p) => good.push(p),
            Err(e) => {
                state.metrics.reject(e.code);
                drop_report(state, &device, "batch", &e);
                rejected.push(json!({ "index": index, "error": e }));
            }
        }
    }
    let (accepted, duplicates) = store_and_apply(state, &device, good, "batch").await?;
    Ok(
        Json(json!({ "accepted": accepted, "duplicates": duplicates, "rejected": rejected }))
            .into_response(),
    )
}

fn query_pairs(q: Option<&str>) -> Result<Vec<(String, String)>> {
    serde_urlencoded::from_str(q.unwrap_or("")).map_err(|e| {
        ApiError::bad_request("invalid_query", format!("unreadable query string: {e}"))
    })
}

/// `GET /osmand?id=…&lat=…&lon=…&timestamp=…`.
#[utoipa::path(
    get,
    path = "/osmand",
    tag = "ingest",
    params(("id" = Option<String>, Query, description = "The device token (or `deviceid`)"), ("deviceid" = Option<String>, Query), ("lat" = Option<f64>, Query), ("lon" = Option<f64>, Query), ("location" = Option<String>, Query, description = "`lat,lon`"), ("timestamp" = Option<String>, Query, description = "Unix seconds or milliseconds, ISO 8601, or `yyyy-MM-dd HH:mm:ss`"), ("speed" = Option<f64>, Query, description = "Knots (Traccar Client); per device otherwise"), ("bearing" = Option<f64>, Query), ("heading" = Option<f64>, Query), ("altitude" = Option<f64>, Query), ("accuracy" = Option<f64>, Query), ("hdop" = Option<f64>, Query), ("batt" = Option<f64>, Query)),
    responses((status = 200, description = "Stored, or counted as dropped (a known device always gets a 2xx)"))
)]
pub async fn osmand_get(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let started = Instant::now();
    let r = async {
        let pairs = query_pairs(q.as_deref())?;
        osmand_pairs(&state, &pairs).await
    }
    .await;
    observe(&state, "osmand", started, &r);
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /osmand`: the query form, a form body, or Traccar Client's JSON body.
#[utoipa::path(
    post,
    path = "/osmand",
    tag = "ingest",
    params(("id" = Option<String>, Query, description = "The device token (or in the form body)")),
    request_body(description = "The query form's fields as a form body, or Traccar Client's JSON", content(("application/x-www-form-urlencoded"), (crate::api::openapi::TraccarJson = "application/json"))),
    responses((status = 200, description = "Stored, or counted as dropped (a known device always gets a 2xx)"))
)]
pub async fn osmand_post(
    State(state): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("application/json") {
            let (id, report) = osmand::decode_json(&bytes)?;
            let device = device_for(&state, Some(&id)).await?;
            store_or_drop(&state, &device, "osmand", report.ping(state.now())).await?;
            return Ok(StatusCode::OK.into_response());
        }
        let mut pairs = query_pairs(q.as_deref())?;
        if !bytes.is_empty() {
            let body_pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).map_err(|e| {
                    ApiError::bad_request("invalid_form", format!("unreadable form body: {e}"))
                })?;
            pairs.extend(body_pairs);
        }
        osmand_pairs(&state, &pairs).await
    }
    .await;
    observe(&state, "osmand", started, &r);
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn osmand_pairs(state: &Arc<AppState>, pairs: &[(String, String)]) -> Result<Response> {
    let device = device_for(state, Some(osmand::device_id(pairs)?)).await?;
    let now = state.now();
    let ping = osmand::decode_params(pairs, now)
        .and_then(|report| report.ping(now, |fix| speed_unit_of(state, &device, fix)));
    store_or_drop(state, &device, "osmand", ping).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /owntracks`: Basic auth (user = device id, password = token); replies `[]`.
#[utoipa::path(
    post,
    path = "/owntracks",
    tag = "ingest",
    request_body(content = crate::api::openapi::OwnTracksMessage, content_type = "application/json"),
    security(("owntracks" = [])),
    responses((status = 200, description = "`[]`: stored, ignored (other `_type`s) or counted as dropped", body = Vec<Object>))
)]
pub async fn owntracks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = async {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::from(IngestError::new(
                    IngestError::UNAUTHORIZED,
                    "OwnTracks needs Basic auth: user = device id, password = token",
                    None,
                ))
            })?;
        let (user, token) = owntracks::basic_auth(auth)?;
        let device = device_for(&state, Some(&token)).await?;
        if device.device_id != user {
            return Err(ApiError::unauthorized(
                "the user name is not the device id this token belongs to",
            ));
        }
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        match owntracks::decode(&bytes, state.now()) {
            Ok(None) => {}
            Ok(Some(ping)) => store_or_drop(&state, &device, "owntracks", Ok(ping)).await?,
            Err(e) => drop_report(&state, &device, "owntracks", &e),
        }
        Ok(Json(json!([])).into_response())
    }
    .await;
    observe(&state, "owntracks", started, &r);
    r.unwrap_or_else(IntoResponse::into_response)
}
