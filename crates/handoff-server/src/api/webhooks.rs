//! Webhooks over HTTP (admin): register one, list them (never their secrets), and read the
//! delivery log. Delivery itself lives in [`crate::webhooks`].

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use handoff_store::NewWebhook;
use serde::Deserialize;
use serde_json::json;

use super::events::{MAX_BODY_BYTES, read_body};
use crate::app::AppState;
use crate::error::{ApiError, Result};
use crate::webhooks::KINDS;

/// A secret shorter than this is too easy to guess for an HMAC key.
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_BYTES: usize = 1024;
const MAX_URL_BYTES: usize = 2048;
/// Delivery log entries returned when no `limit` is given, and at most.
const DEFAULT_LOG_LIMIT: usize = 100;
const MAX_LOG_LIMIT: usize = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    url: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
}

fn check_url(state: &AppState, url: Option<String>) -> Result<String> {
    let url = url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing_field", "give the URL to POST notifications to")
                .field("url")
        })?;
    if url.len() > MAX_URL_BYTES {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("a webhook URL is at most {MAX_URL_BYTES} bytes"),
        )
        .field("url"));
    }
    let parsed = reqwest::Url::parse(&url).map_err(|e| {
        ApiError::bad_request(
            "invalid_value",
            format!("`{url}` is not a URL ({e}); give one such as http://example.org/handoff"),
        )
        .field("url")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("a webhook URL is http:// or https:// with a host, not `{url}`"),
        )
        .field("url"));
    }
    // A name is checked again at every call, where it is resolved (it may change).
    if let Some(ip) = crate::webhooks::literal_ip(&url)
        && !state.webhooks.may_call(ip)
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!(
                "{ip} is a loopback, link-local or private address; a webhook goes to a public host (an operator who means it starts the server with --allow-private-webhooks)"
            ),
        )
        .field("url"));
    }
    Ok(url)
}

fn check_secret(secret: Option<String>) -> Result<String> {
    let secret = secret.ok_or_else(|| {
        ApiError::bad_request(
            "missing_field",
            "give a secret: each delivery is signed with HMAC-SHA256 under it",
        )
        .field("secret")
    })?;
    if secret.chars().count() < MIN_SECRET_CHARS || secret.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!(
                "a webhook secret is {MIN_SECRET_CHARS} to {MAX_SECRET_BYTES} characters; use a long random one"
            ),
        )
        .field("secret"));
    }
    Ok(secret)
}

fn check_kinds(kinds: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(kinds.len());
    for k in kinds {
        if !KINDS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!(
                    "`{k}` is not a kind of notification; kinds are {} (none: all)",
                    KINDS.join(", ")
                ),
            )
            .field("kinds"));
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

/// `POST /api/v1/events/{event}/webhooks` (admin): `{"url","secret","kinds"?}` → 201 `{"id"}`.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/webhooks",
    operation_id = "add_webhook",
    tag = "webhooks",
    params(("event" = String, Path, description = "The event id")),
    request_body = NewWebhookBody,
    security(("admin" = [])),
    responses((status = 201, description = "Subscribed", body = crate::api::openapi::WebhookAdded))
)]
pub async fn add(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    state.live_event(&event)?;
    let bytes = read_body(body, MAX_BODY_BYTES).await?;
    let b: NewWebhookBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"url\":\"…\",\"secret\":\"…\",\"kinds\":[…]}}: {e}"),
        )
    })?;
    let url = check_url(&state, b.url)?;
    let secret = check_secret(b.secret)?;
    let kinds = check_kinds(b.kinds)?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "random",
            format!("no randomness: {e}"),
        )
    })?;
    let id = format!("wh_{}", hex::encode(id));
    let registered_at = state.now();
    state
        .store
        .add_webhook(NewWebhook {
            event_id: event.clone(),
            webhook_id: id.clone(),
            url: url.clone(),
            secret: secret.clone(),
            kinds: kinds.clone(),
            created_at: registered_at,
        })
        .await?;
    state.webhooks.add(handoff_store::Webhook {
        event_id: event,
        webhook_id: id.clone(),
        url: url.clone(),
        secret,
        kinds: kinds.clone(),
        created_at: registered_at,
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "url": url, "kinds": kinds })),
    ))
}

/// `GET /api/v1/events/{event}/webhooks` (admin): the webhooks, without their secrets.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    params(("event" = String, Path, description = "The event id")),
    security(("admin" = [])),
    responses((status = 200, description = "The subscriptions (secrets not shown)", body = crate::api::openapi::WebhookList))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    state.live_event(&event)?;
    let hooks: Vec<_> = state
        .store
        .webhooks(&event)
        .await?
        .into_iter()
        .map(|h| json!({ "id": h.webhook_id, "url": h.url, "kinds": h.kinds, "created_at": h.created_at }))
        .collect();
    Ok(Json(json!({ "event": event, "webhooks": hooks })))
}

#[derive(Deserialize)]
pub struct LogQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/events/{event}/webhooks/deliveries?limit=N` (admin): the last attempts,
/// newest first.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/webhooks/deliveries",
    tag = "webhooks",
    params(("event" = String, Path, description = "The event id"), ("limit" = Option<u32>, Query, description = "At most this many (default 100, at most 1000)")),
    security(("admin" = [])),
    responses((status = 200, description = "The newest deliveries first", body = crate::api::openapi::DeliveryLog))
)]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    state.admin.require(&headers)?;
    state.live_event(&event)?;
    let q: LogQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|e| {
        ApiError::bad_request("invalid_value", format!("`limit` is a whole number: {e}"))
            .field("limit")
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT).clamp(1, MAX_LOG_LIMIT);
    let log: Vec<_> = state
        .store
        .deliveries(&event, limit)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "seq": d.seq,
                "webhook": d.webhook_id,
                "delivery": d.delivery_id,
                "kind": d.kind,
                "attempt": d.attempt,
                "status": d.status,
                "ok": d.succeeded(),
                "error": d.error,
                "at": d.at,
            })
        })
        .collect();
    Ok(Json(json!({ "event": event, "deliveries": log })))
}
