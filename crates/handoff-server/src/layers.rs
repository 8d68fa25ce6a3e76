//! What wraps every route: a request id (`x-request-id`, taken from the client or made, and
//! sent back on the answer), a `tracing` span per request (method, path and request id; never
//! the query string, which carries OsmAnd device ids, nor any header), a log line for every
//! 5xx, and the limit on failed sign-ins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;
use crate::limits::seconds;

/// `router` with the request id, the request span and the sign-in limit around it.
pub fn around(router: Router, state: &Arc<AppState>) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(state),
            limit_failed_auth,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The user name of HTTP Basic credentials (OwnTracks: the device id).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_string())
}

/// Whether a request carries credentials: an `Authorization` header, or a phone protocol's
/// own (OsmAnd's `id` in the query, on the ingest paths).
fn credentialed(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || matches!(
            req.uri().path(),
            "/" | "/osmand" | "/owntracks" | "/api/v1/pings"
        )
}

/// Refuses requests with credentials from an address (or an OwnTracks user) that failed to
/// sign in too often this minute (429 with `Retry-After`); counts every 401 against both.
/// Requests without credentials (spectators) are never refused here.
async fn limit_failed_auth(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if !credentialed(&req) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user = basic_user(req.headers());
    let now = Instant::now();
    let limits = &state.limits;
    let wait = ip
        .and_then(|ip| limits.auth_by_ip.refused(&ip, now))
        .or_else(|| {
            user.as_ref()
                .and_then(|u| limits.auth_by_user.refused(u, now))
        });
    if let Some(w) = wait {
        state.metrics.reject("rate_limited");
        tracing::warn!(peer = ?ip, "refused: too many failed sign-ins");
        return ApiError::too_many(
            "too many failed sign-ins from here; wait and check the token",
            seconds(w),
        )
        .into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        if let Some(ip) = ip {
            limits.auth_by_ip.strike(ip, now);
        }
        if let Some(u) = user {
            limits.auth_by_user.strike(u, now);
        }
    }
    resp
}
