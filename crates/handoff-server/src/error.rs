//! Every failure the HTTP API can answer with, mapped to a status and the contract's body
//! `{"error":{"code","message","field"?}}` in one `IntoResponse` impl.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use handoff_store::StoreError;
use serde_json::json;

use crate::ingest::IngestError;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Extra details (e.g. every problem of a plan).
    pub details: Option<serde_json::Value>,
    /// Seconds after which to try again (`Retry-After`, on 429 and 503).
    pub retry_after_s: Option<u64>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            details: None,
            retry_after_s: None,
        }
    }

    /// 429: over a rate limit; try again after `retry_after_s`.
    pub fn too_many(message: impl Into<String>, retry_after_s: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after_s = Some(retry_after_s.max(1));
        e
    }

    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            err["field"] = json!(f);
        }
        if let Some(d) = self.details {
            err["details"] = d;
        }
        let mut resp = (self.status, Json(json!({ "error": err }))).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self {
            status,
            code: e.code,
            message: e.message,
            field: e.field,
            details: None,
            retry_after_s: None,
        }
    }
}

/// Seconds a client is asked to wait before retrying a write the store could not commit.
const STORAGE_RETRY_AFTER_S: u64 = 1;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::Invalid(m) => Self::bad_request("invalid", m),
            // The database cannot commit for a moment (locked, restarting): the same answer,
            // with a time after which a retry may succeed.
            StoreError::Unavailable { .. } => {
                eprintln!("handoff: storage unavailable: {e}");
                let mut busy = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage is unavailable; nothing was stored, try again",
                );
                busy.retry_after_s = Some(STORAGE_RETRY_AFTER_S);
                busy
            }
            // 503, not 500: phone apps retry on 5xx, and nothing was acknowledged.
            // The detail (a path, a driver's message) is for the operator's log, not the client.
            other => {
                eprintln!("handoff: storage error: {other}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage is unavailable; nothing was stored, try again",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_tells_the_client_nothing_internal() {
        let e: ApiError = StoreError::Task("panicked reading /srv/secret/handoff.db".into()).into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("/srv"), "{}", e.message);
        assert_eq!(e.retry_after_s, None, "no promise that a retry helps");
    }

    #[test]
    fn a_store_that_cannot_commit_for_now_asks_for_a_retry() {
        let e: ApiError = StoreError::Unavailable {
            backend: "SQLite",
            message: "database is locked at /srv/secret/handoff.db".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after_s, Some(STORAGE_RETRY_AFTER_S));
        assert!(!e.message.contains("/srv"), "{}", e.message);
        let resp = e.into_response();
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "1");
    }
}
