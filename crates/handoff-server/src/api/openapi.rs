//! The OpenAPI 3.1 description of the HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! It is generated, not written beside the code: every route of [`crate::app::router`] is
//! registered from its handler's `#[utoipa::path]` attribute (utoipa-axum's `routes!`), so a
//! route cannot be mounted without appearing here, and the paths here are the router's. The
//! request bodies are the handlers' own `Deserialize` types; the JSON answers built with
//! `json!` are described by the types below, which the API fuzzer (`scripts/fuzz-api`) checks
//! against real answers.
//!
//! One convention is added to every operation in [`finish`] rather than repeated on each: any
//! 4xx carries the contract's error body `{"error":{"code","message","field"?}}` (one
//! `IntoResponse` impl makes every one of them).

use std::sync::{Arc, LazyLock};

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{self, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's frame: title, security schemes, the shared schemas. The paths are added by
/// the router as it registers each handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "handoff",
        description = "A relay tracker: plans, device ingest (our batch API, OsmAnd, OwnTracks), \
            the live snapshot and stream, handoffs and the custody log, exports and webhooks. \
            Prose and examples: docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (HANDOFF_ADMIN_TOKEN, or printed on first start).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device token, as `POST /api/v1/events/{event}/devices` returned it.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "owntracks",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("User: the device id; password: the device token."))
                    .build(),
            ),
        );
    }
}

/// Adds what every operation shares (the 4xx error body) to the document the router built.
#[must_use]
pub fn finish(mut doc: openapi::OpenApi) -> openapi::OpenApi {
    let error: RefOr<Response> = openapi::ResponseBuilder::new()
        .description(
            "Refused: `{\"error\":{\"code\",\"message\",\"field\"?}}` (docs/api.md, Errors). \
             429 and 503 carry `Retry-After`.",
        )
        .content(
            "application/json",
            openapi::ContentBuilder::new()
                .schema(Some(openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("4XX".to_string())
                .or_insert_with(|| error.clone());
        }
    }
    doc
}

/// The description as JSON, built once.
static DOCUMENT: LazyLock<Arc<str>> = LazyLock::new(|| {
    let (_, doc) = crate::app::api_router().split_for_parts();
    serde_json::to_string(&finish(doc))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        .into()
});

/// The OpenAPI description of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.to_string(),
    )
}

// ---- The wire shapes of the JSON answers built with `json!` ----

/// Every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `missing_field`, `unauthorized`, `not_next`, …
    pub code: String,
    /// What to change, for a person.
    pub message: String,
    /// The offending value, as the client spelled it.
    pub field: Option<String>,
    /// More (every problem of a plan, under `problems`).
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a custody log failed verification at start-up.
    pub status: String,
    pub events: u64,
    /// The server's clock (RFC 3339): what `handoff replay` stamps and paces its pings by
    /// (the demo's runs faster than real time).
    pub now: String,
    /// The logs that failed, each `{event, relay, problem}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub unverified_custody: Option<Vec<Value>>,
}

#[derive(ToSchema)]
pub struct EventList {
    pub events: Vec<EventSummary>,
}

#[derive(ToSchema)]
pub struct EventSummary {
    pub id: String,
    pub name: String,
    pub version: i64,
    /// The planned start (RFC 3339), if the plan has legs.
    #[schema(value_type = Option<String>)]
    pub start: Option<String>,
    #[schema(value_type = Option<String>)]
    pub end: Option<String>,
    pub relays: u64,
}

#[derive(ToSchema)]
pub struct PlanStored {
    pub event: String,
    pub version: i64,
    /// SHA-256 of the stored TOML (what the custody log commits to).
    pub plan_hash: String,
}

#[derive(ToSchema)]
pub struct PlanJson {
    pub version: i64,
    pub plan_hash: String,
    /// The plan as the server reads it.
    #[schema(value_type = Object)]
    pub plan: Value,
}

#[derive(ToSchema)]
pub struct DeviceRegistered {
    pub device: String,
    pub carrier: String,
    /// Shown once; stored hashed.
    pub token: String,
    pub relay: Option<String>,
    pub speed_unit: Option<String>,
}

#[derive(ToSchema)]
pub struct DeviceToken {
    pub device: String,
    pub carrier: String,
    /// The new token, shown once and stored hashed; null when revoked.
    pub token: Option<String>,
    /// When the token was re-issued or revoked (RFC 3339).
    pub token_at: String,
}

#[derive(ToSchema)]
pub struct DeviceList {
    pub event: String,
    /// Each with `device`, `carrier`, `relay`, `created_at`, `token` (`active` or `revoked`),
    /// `token_at`, `speed_unit`, `dropped`, `last_fix`
    /// (`{"t","received_at","batt_pct"?,"acc_m"?}` or null) and `online`.
    #[schema(value_type = Vec<Object>)]
    pub devices: Vec<Value>,
}

#[derive(ToSchema)]
pub struct PingsAnswer {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejected>,
}

#[derive(ToSchema)]
pub struct Rejected {
    /// The ping's index in the batch.
    pub index: u64,
    pub error: ErrorDetail,
}

/// One ping of `POST /api/v1/pings` (SI units; `-1` is not special here).
#[derive(ToSchema)]
pub struct PingIn {
    /// RFC 3339.
    pub t: String,
    pub lon: f64,
    pub lat: f64,
    /// Accuracy, metres.
    pub acc: Option<f64>,
    /// Metres a second.
    pub speed: Option<f64>,
    /// Degrees from north.
    pub heading: Option<f64>,
    /// Metres.
    pub alt: Option<f64>,
    /// Per cent.
    pub batt: Option<f64>,
}

/// Traccar Client 9+'s JSON body on `POST /osmand` (`-1` means unknown).
#[derive(ToSchema)]
pub struct TraccarJson {
    /// The device token.
    pub device_id: String,
    #[schema(value_type = Object)]
    pub location: Value,
}

/// An OwnTracks message; only `_type: "location"` is stored, others are accepted and ignored.
#[derive(ToSchema)]
pub struct OwnTracksMessage {
    #[schema(rename = "_type")]
    pub kind: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Unix seconds.
    pub tst: Option<i64>,
    pub acc: Option<f64>,
    pub alt: Option<f64>,
    /// km/h.
    pub vel: Option<f64>,
    pub cog: Option<f64>,
    pub batt: Option<f64>,
}

/// The live snapshot. Described loosely (its per-relay shape grows): `relays` and
/// `countdowns` are lists of objects.
#[derive(ToSchema)]
pub struct LiveSnapshot {
    #[schema(value_type = Vec<Object>)]
    pub relays: Vec<Value>,
}

#[derive(ToSchema)]
pub struct HandoffCode {
    /// Six digits, valid 10 minutes, for this step only.
    pub code: String,
    pub from_leg: u64,
    pub to_leg: u64,
    pub expires_at: String,
}

/// A custody log entry (docs/custody.md has every field).
#[derive(ToSchema)]
pub struct CustodyEntry {
    pub v: u64,
    pub seq: u64,
    /// `genesis`, `plan`, `handoff`, `correction`, `shift`, …
    pub kind: String,
    pub event: String,
    pub relay: String,
    pub at: String,
    pub recorded_at: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(ToSchema)]
pub struct Shifted {
    pub shifted: u64,
    pub entries: Vec<CustodyEntry>,
}

#[derive(ToSchema)]
pub struct Accuracy {
    pub event: String,
    pub relay: String,
    #[schema(value_type = Vec<Object>)]
    pub legs: Vec<Value>,
    /// Every leg's predictions pooled, by lead time.
    #[schema(value_type = Vec<Object>)]
    pub by_lead: Vec<Value>,
}

#[derive(ToSchema)]
pub struct WebhookAdded {
    pub id: String,
    pub url: String,
    pub kinds: Vec<String>,
}

#[derive(ToSchema)]
pub struct WebhookList {
    pub event: String,
    #[schema(value_type = Vec<Object>)]
    pub webhooks: Vec<Value>,
}

#[derive(ToSchema)]
pub struct DeliveryLog {
    pub event: String,
    #[schema(value_type = Vec<Object>)]
    pub deliveries: Vec<Value>,
}

#[derive(ToSchema)]
pub struct Session {
    pub admin: bool,
}

#[derive(ToSchema)]
pub struct Me {
    pub event: String,
    pub device: String,
    pub carrier: String,
    /// This device's newest fix since the server started (`{"t","received_at","batt_pct"?,
    /// "acc_m"?}`), or null.
    #[schema(value_type = Option<Object>)]
    pub last_fix: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_describes_its_errors() {
        let doc: Value = serde_json::from_str(&DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        assert!(paths.contains_key("/api/v1/openapi.json"));
        assert!(
            paths.contains_key("/assets/{path}"),
            "the catch-all is described"
        );
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
                assert!(
                    op["responses"]["4XX"]["content"]["application/json"].is_object(),
                    "{method} {path} has no 4XX error body"
                );
            }
        }
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert!(doc["components"]["securitySchemes"]["admin"].is_object());
    }
}
