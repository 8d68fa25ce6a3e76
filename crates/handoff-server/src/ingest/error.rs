//! The one error type of ingest. It is a flat record rather than an enum because it travels
//! straight to the client as `{"error":{"code","message","field"}}`: `code` is the stable,
//! machine-readable part, `message` says what to change, and `field` names the offending value
//! exactly as the client spelled it (`lat`, `location.coords.latitude`, `timestamp`), so a
//! developer can find it in their own payload.

use serde::Serialize;

/// `Result` with [`IngestError`] as the error.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Why a request, or one ping in it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    /// Stable code, one of the `IngestError::*` constants.
    pub code: &'static str,
    /// What is wrong and what to send instead, for a human.
    pub message: String,
    /// The offending field as the client named it; `None` for whole-request problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IngestError {
    pub const MALFORMED_JSON: &'static str = "malformed_json";
    pub const MISSING_FIELD: &'static str = "missing_field";
    pub const INVALID_VALUE: &'static str = "invalid_value";
    pub const OUT_OF_RANGE: &'static str = "out_of_range";
    pub const NOT_FINITE: &'static str = "not_finite";
    pub const FUTURE_TIMESTAMP: &'static str = "future_timestamp";
    pub const UNSUPPORTED_MEDIA_TYPE: &'static str = "unsupported_media_type";
    pub const TOO_MANY_PINGS: &'static str = "too_many_pings";
    pub const UNAUTHORIZED: &'static str = "unauthorized";
    /// An OwnTracks payload encrypted with a key the server does not have: never sent to a
    /// client (the report is counted as dropped), but kept apart so the operator is told why.
    pub const ENCRYPTED: &'static str = "encrypted";

    pub fn new(code: &'static str, message: impl Into<String>, field: Option<&str>) -> Self {
        IngestError {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    /// The HTTP status this error answers with when it refuses a whole request.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self.code {
            Self::UNAUTHORIZED => 401,
            Self::TOO_MANY_PINGS => 413,
            Self::UNSUPPORTED_MEDIA_TYPE => 415,
            _ => 400,
        }
    }

    pub(crate) fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(Self::MALFORMED_JSON, message, None)
    }

    pub(crate) fn missing_field(field: &str) -> Self {
        Self::new(
            Self::MISSING_FIELD,
            format!("`{field}` is required"),
            Some(field),
        )
    }

    pub(crate) fn invalid_value(field: &str, message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_VALUE, message, Some(field))
    }

    pub(crate) fn out_of_range(field: &str, message: impl Into<String>) -> Self {
        Self::new(Self::OUT_OF_RANGE, message, Some(field))
    }

    pub(crate) fn not_finite(field: &str) -> Self {
        Self::new(
            Self::NOT_FINITE,
            format!("`{field}` must be a finite number (NaN and infinity are refused)"),
            Some(field),
        )
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Self::UNAUTHORIZED, message, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_code() {
        let field = Some("lat");
        assert_eq!(
            IngestError::new(IngestError::OUT_OF_RANGE, "x", field).status(),
            400
        );
        assert_eq!(IngestError::unauthorized("x").status(), 401);
        assert_eq!(
            IngestError::new(IngestError::TOO_MANY_PINGS, "x", None).status(),
            413
        );
        assert_eq!(
            IngestError::new(IngestError::UNSUPPORTED_MEDIA_TYPE, "x", None).status(),
            415
        );
    }

    #[test]
    fn serializes_as_the_contract_error_body_and_displays_the_message() {
        let e = IngestError::out_of_range("lat", "lat 91 is outside [-90, 90] degrees");
        assert_eq!(e.to_string(), "lat 91 is outside [-90, 90] degrees");
        assert_eq!(
            serde_json::to_value(&e).ok(),
            Some(serde_json::json!({
                "code": "out_of_range",
                "message": "lat 91 is outside [-90, 90] degrees",
                "field": "lat"
            }))
        );
        let whole = IngestError::malformed_json("not JSON");
        assert_eq!(
            serde_json::to_value(&whole).ok(),
            Some(serde_json::json!({"code": "malformed_json", "message": "not JSON"}))
        );
    }
}
