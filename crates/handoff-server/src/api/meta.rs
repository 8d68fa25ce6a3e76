//! `GET /healthz` and `GET /metrics`; and the answers for a path no route serves and a method
//! a route does not take, JSON like every other error (axum's own are empty).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

/// `GET /healthz`: `ok`, or `degraded` with the custody logs that failed verification at
/// start-up (each refuses new entries until the store is repaired); and the server's clock.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "ok, or degraded", body = crate::api::openapi::Health))
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut unverified = Vec::new();
    for live in state.events() {
        for (relay, chain) in live.chains.lock().await.iter() {
            if let Some(why) = &chain.broken {
                unverified
                    .push(json!({ "event": live.plan.event.id, "relay": relay, "problem": why }));
            }
        }
    }
    let status = if unverified.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let mut body = json!({ "status": status, "events": state.events().len(), "now": state.now() });
    if !unverified.is_empty() {
        body["unverified_custody"] = json!(unverified);
    }
    Json(body)
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The router's fallback: 404 with the contract's error body.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route `{}`", uri.path()))
}

/// A known path asked with a method it does not take: 405 (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "`{}` does not take {method}; the Allow header lists what it takes",
            uri.path()
        ),
    )
}
