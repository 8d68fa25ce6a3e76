//! Events: upload a plan (`PUT`, admin), read plans, register and list devices (admin).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use handoff_core::ping::SpeedUnit;
use handoff_core::plan::{self, NoFiles};
use handoff_store::NewDevice;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::auth::{new_token, token_hash};
use crate::error::{ApiError, Result};

/// Plans are small even with every route inline; 1 MiB is generous for one leg, not for a
/// 36-leg race course with dense tracks, hence more here than for pings.
pub const MAX_PLAN_BYTES: usize = 16 << 20;
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a request body up to `limit` bytes; larger is a 413 with the contract's JSON body.
/// A request's body, at most `limit` bytes, all of it within the connection's body deadline
/// (a client that trickles it gets 408).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes> {
    let deadline = crate::serve::body_deadline();
    tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} s", deadline.as_secs()),
            )
        })?
        .map_err(|_| ApiError::too_large(format!("the body is larger than {limit} bytes")))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `PUT /api/v1/events/{event}`: a self-contained plan as TOML or JSON.
#[utoipa::path(
    put,
    path = "/api/v1/events/{event}",
    tag = "events",
    params(("event" = String, Path, description = "The event id")),
    request_body(description = "A self-contained plan (routes inline), TOML or the same as JSON", content(("application/toml"), ("application/json"))),
    security(("admin" = [])),
    responses((status = 200, description = "Stored and live", body = crate::api::openapi::PlanStored))
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    let bytes = read_body(body, MAX_PLAN_BYTES).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("invalid_utf8", "the plan is not UTF-8"))?;
    let source = match content_type(&headers).as_str() {
        "application/toml" | "text/toml" | "text/plain" | "" => text.to_string(),
        "application/json" => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request("malformed_json", format!("the plan is not valid JSON: {e}"))
            })?;
            toml::to_string(&v).map_err(|e| {
                ApiError::bad_request(
                    "invalid_plan",
                    format!("the JSON plan has no TOML equivalent (null values?): {e}"),
                )
            })?
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("a plan is application/toml or application/json, not {other}"),
            ));
        }
    };
    let parsed = plan::parse(&source, &NoFiles).map_err(|problems| {
        let first = &problems.0[0];
        let all: Vec<_> = problems
            .0
            .iter()
            .map(|p| {
                let (line, col) = p.line_col(&source);
                json!({ "field": p.field, "message": p.message, "line": line, "col": col })
            })
            .collect();
        let mut e = ApiError::bad_request("invalid_plan", first.message.clone());
        if !first.field.is_empty() {
            e = e.field(first.field.clone());
        }
        e.details = Some(json!({ "problems": all }));
        e
    })?;
    if parsed.event.id != event {
        return Err(ApiError::bad_request(
            "invalid_plan",
            format!(
                "the plan's event.id is `{}` but the URL names `{event}`",
                parsed.event.id
            ),
        )
        .field("event.id"));
    }
    let live = state.put_plan(&event, source).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "event": event, "version": live.version, "plan_hash": live.plan_hash })),
    ))
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "list_events",
    tag = "events",
    responses((status = 200, description = "Every event", body = crate::api::openapi::EventList))
)]
pub async fn list(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let events: Vec<_> = state
        .events()
        .iter()
        .map(|e| json!({ "id": e.plan.event.id, "name": e.plan.event.name, "version": e.version, "start": e.plan.start(), "end": e.plan.end(), "relays": e.plan.relays.len() }))
        .collect();
    Json(json!({ "events": events }))
}

/// `GET /api/v1/events/{event}`: the plan as JSON.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}",
    tag = "events",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "The plan as JSON", body = crate::api::openapi::PlanJson))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
) -> Result<impl IntoResponse> {
    let e = state.live_event(&event)?;
    Ok(Json(
        json!({ "version": e.version, "plan_hash": e.plan_hash, "plan": &*e.plan }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewDeviceBody {
    device: Option<String>,
    carrier: Option<String>,
    /// The relay the carrier carries in: needed when the name is in several (race mode).
    relay: Option<String>,
    /// The unit of the device's OsmAnd-form `speed` (`knots`, `mps`, `kmh`); detected when
    /// left out.
    speed_unit: Option<String>,
}

/// `POST /api/v1/events/{event}/devices` (admin): binds a device to a carrier; the token is
/// shown once and stored hashed.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/devices",
    tag = "events",
    params(("event" = String, Path, description = "The event id")),
    request_body = NewDeviceBody,
    security(("admin" = [])),
    responses((status = 201, description = "Registered; the token is shown once", body = crate::api::openapi::DeviceRegistered))
)]
pub async fn add_device(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    let bytes = read_body(body, MAX_BODY_BYTES).await?;
    let b: NewDeviceBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"device\":\"…\",\"carrier\":\"…\"}}: {e}"),
        )
    })?;
    let live = state.live_event(&event)?;
    let device = b.device.filter(|d| !d.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request("missing_field", "give the device's id").field("device")
    })?;
    if device.len() > 128 || device.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "a device id is at most 128 printable characters",
        )
        .field("device"));
    }
    let carrier = b.carrier.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request("missing_field", "give the carrier's name as in the plan")
            .field("carrier")
    })?;
    if !live.knows_carrier(&carrier) {
        let mut names: Vec<&str> = live
            .plan
            .relays
            .iter()
            .flat_map(|r| {
                r.legs
                    .iter()
                    .flat_map(|l| l.carriers.iter().map(String::as_str))
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let shown: Vec<&str> = names.iter().take(20).copied().collect();
        return Err(ApiError::bad_request(
            "unknown_carrier",
            format!(
                "`{carrier}` carries nothing in this plan; carriers include: {}",
                shown.join(", ")
            ),
        )
        .field("carrier"));
    }
    let relays = live.relays_of(&carrier);
    let relay = match b.relay {
        Some(r) if !relays.contains(&r) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!(
                    "`{carrier}` carries nothing in relay `{r}`; they carry in: {}",
                    relays.join(", ")
                ),
            )
            .field("relay"));
        }
        Some(r) => Some(r),
        None if relays.len() > 1 => {
            let shown: Vec<&str> = relays.iter().take(10).map(String::as_str).collect();
            return Err(ApiError::bad_request(
                "missing_field",
                format!(
                    "`{carrier}` carries in {} relays ({}{}): say which one with `relay`",
                    relays.len(),
                    shown.join(", "),
                    if relays.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            )
            .field("relay"));
        }
        None => None,
    };
    let speed_unit = b
        .speed_unit
        .map(|u| {
            u.parse::<SpeedUnit>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_value",
                    format!(
                        "`speed_unit` is the unit of the app's OsmAnd `speed`: \"knots\" \
                         (Traccar Client), \"mps\" (the OsmAnd app, GPSLogger, Colota) or \
                         \"kmh\"; leave it out to have it detected; got {u:?}"
                    ),
                )
                .field("speed_unit")
            })
        })
        .transpose()?;
    let token = new_token()?;
    let hash = token_hash(&token);
    let registered_at = state.now();
    let nd = NewDevice {
        event_id: event.clone(),
        device_id: device.clone(),
        carrier: carrier.clone(),
        relay_id: relay.clone(),
        token_hash: hash.clone(),
        speed_unit,
        created_at: registered_at,
    };
    state.store.add_device(nd).await.map_err(|e| match e {
        handoff_store::StoreError::Conflict(_) => ApiError::conflict(format!(
            "device `{device}` is already registered for this event"
        ))
        .field("device"),
        other => other.into(),
    })?;
    state.remember_device(handoff_store::Device {
        event_id: event,
        device_id: device.clone(),
        carrier: carrier.clone(),
        relay_id: relay.clone(),
        token_hash: Some(hash),
        speed_unit,
        created_at: registered_at,
        token_at: registered_at,
    });
    let mut answer = json!({ "device": device, "carrier": carrier, "token": token });
    if let Some(r) = relay {
        answer["relay"] = json!(r);
    }
    if let Some(u) = speed_unit {
        answer["speed_unit"] = json!(u);
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `POST /api/v1/events/{event}/devices/{device}/token` (admin): a new token for a registered
/// device (a phone lost, a token leaked, a carrier's new phone). The old token stops working
/// with the commit on this server, and on the others as soon as they read the change (about a
/// second); the device keeps its id, carrier and history. The token is shown once.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/devices/{device}/token",
    tag = "events",
    params(
        ("event" = String, Path, description = "The event id"),
        ("device" = String, Path, description = "The device id")
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Re-issued; the new token is shown once", body = crate::api::openapi::DeviceToken),
        (status = 404, description = "No such event or device", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn reissue_token(
    State(state): State<Arc<AppState>>,
    Path((event, device)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    set_token(&state, &headers, &event, &device, Some(new_token()?)).await
}

/// `DELETE /api/v1/events/{event}/devices/{device}/token` (admin): revokes a device's token.
/// Its reports are refused from then on (as an unknown token's) until a new token is issued;
/// what it sent before stays.
#[utoipa::path(
    delete,
    path = "/api/v1/events/{event}/devices/{device}/token",
    tag = "events",
    params(
        ("event" = String, Path, description = "The event id"),
        ("device" = String, Path, description = "The device id")
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Revoked (`token` is null)", body = crate::api::openapi::DeviceToken),
        (status = 404, description = "No such event or device", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Path((event, device)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    set_token(&state, &headers, &event, &device, None).await
}

/// Stores a device's new token (or, with `None`, its revocation), puts it in force on this
/// server, and answers with it (shown this once).
async fn set_token(
    state: &AppState,
    headers: &HeaderMap,
    event: &str,
    device: &str,
    token: Option<String>,
) -> Result<Json<serde_json::Value>> {
    state.admin.require(headers)?;
    state.live_event(event)?;
    let hash = token.as_deref().map(token_hash);
    let d = state
        .store
        .set_device_token(event, device, hash.as_deref(), state.now())
        .await
        .map_err(|e| match e {
            handoff_store::StoreError::NotFound(_) => ApiError::not_found(format!(
                "device `{device}` is not registered for event `{event}`"
            ))
            .field("device"),
            other => other.into(),
        })?;
    let answer = json!({ "device": d.device_id, "carrier": d.carrier, "token": token, "token_at": d.token_at });
    state.remember_device(d);
    Ok(Json(answer))
}

/// `GET /api/v1/events/{event}/devices` (admin): every registered device, with what the
/// operator needs to look after it: its OsmAnd speed unit (registered or detected) and the
/// reports it sent that could not be stored, by reason, with the last one's message. The
/// detection and the counts are in memory, since this server started.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/devices",
    tag = "events",
    params(("event" = String, Path, description = "The event id")),
    security(("admin" = [])),
    responses((status = 200, description = "Every device", body = crate::api::openapi::DeviceList))
)]
pub async fn list_devices(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    let live = state.live_event(&event)?;
    let (now, silent_ms) = (state.now(), live.plan.event.silent_after_ms);
    let devices: Vec<_> = state
        .store
        .devices(&event)
        .await?
        .into_iter()
        .map(|d| {
            let detected = state.speed_units.detected(&event, &d.device_id);
            let dropped = state.dropped.of(&event, &d.device_id);
            let last = state.last_fixes.of(&event, &d.device_id);
            json!({
                "device": d.device_id,
                "carrier": d.carrier,
                "relay": d.relay_id,
                "created_at": d.created_at,
                // Whether its token works, and since when (registration, re-issue, revocation).
                "token": if d.token_hash.is_some() { "active" } else { "revoked" },
                "token_at": d.token_at,
                "speed_unit": {
                    "registered": d.speed_unit,
                    "detected": detected.unit,
                    "pairs": detected.samples,
                    "used": d.speed_unit.or(detected.unit).unwrap_or(SpeedUnit::Knots),
                },
                "dropped": {
                    "total": dropped.total(),
                    "by_reason": dropped.by_reason,
                    "last": dropped.last,
                },
                "last_fix": last,
                // Reporting: a fix arrived within the event's `silent_after`.
                "online": last.is_some_and(|f| {
                    now.duration_since(f.received_at).as_millis() <= i128::from(silent_ms)
                }),
            })
        })
        .collect();
    Ok(Json(json!({ "event": event, "devices": devices })))
}

/// `GET /api/v1/events/{event}/plan.toml`: the plan exactly as stored, so its SHA-256 can be
/// checked against the `plan_hash` the custody log commits to.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/plan.toml",
    tag = "events",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "The plan exactly as stored", content_type = "application/toml", body = String))
)]
pub async fn source(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
) -> Result<impl IntoResponse> {
    let e = state.live_event(&event)?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        e.source.clone(),
    ))
}
