//! The store's one error type, the same for every backend. Callers branch on
//! [`StoreError::Conflict`] (a uniqueness rule refused the write: HTTP 409),
//! [`StoreError::Invalid`] (the input can never be stored: 400) and [`StoreError::Unavailable`]
//! (nothing was stored, the same request may succeed in a moment: 503 with `Retry-After`);
//! everything else is an operational failure (503 without a promise).
//!
//! No variant names a driver's type: a backend wraps its own errors in [`StoreError::Backend`]
//! (or [`StoreError::Open`]) with its name, so the server and the binary compile against this
//! enum whatever backends are built in. The conversions from a driver's error live in that
//! backend's module.
//!
//! The enum is `Clone` because one group commit answers many callers: when the commit fails,
//! every request in it gets the same error, so backend errors are held in an `Arc`.

use std::sync::Arc;

/// A backend's own error, shared between the callers of one failed commit.
pub type BackendError = Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (a device already registered, a custody entry that is
    /// not the next one). The message says which rule and which ids.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The write names a row that is not stored (a device that was never registered). The
    /// message says which.
    #[error("not found: {0}")]
    NotFound(String),

    /// The input can never be stored as it is (for example a non-finite coordinate).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// The backend cannot commit right now (the database is locked by another process past the
    /// busy timeout, restarting, or out of connections). Nothing of the request was stored;
    /// the same request may succeed if retried in a moment.
    #[error("{backend} cannot commit right now, try again: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },

    /// The database could not be opened or prepared. `target` says where (a file, or a server
    /// address without credentials).
    #[error("cannot open the {backend} database {target}: {source}")]
    Open {
        backend: &'static str,
        target: String,
        #[source]
        source: BackendError,
    },

    /// The database was written by a newer build of handoff; refusing it beats corrupting it.
    #[error(
        "the database schema is version {found}, newer than this build knows ({known}): \
         upgrade handoff or point it at another database"
    )]
    SchemaTooNew { found: i64, known: i64 },

    /// Any other error of the backend while reading or writing.
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: BackendError,
    },

    /// The store was closed (or its writer stopped) before the request was answered; nothing
    /// from an unanswered write may be assumed durable.
    #[error("the store is closed")]
    Closed,

    /// A blocking task that ran a query panicked or was cancelled.
    #[error("a store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether retrying the same request soon may succeed (the server answers 503 with
    /// `Retry-After`).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_error_names_its_backend_and_keeps_its_source() {
        let io = std::io::Error::other("disk I/O error");
        let e = StoreError::Backend {
            backend: "SQLite",
            source: Arc::new(io),
        };
        assert_eq!(e.to_string(), "SQLite: disk I/O error");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk I/O error"));
        assert!(!e.is_retryable());
        let busy = StoreError::Unavailable {
            backend: "SQLite",
            message: "database is locked".to_owned(),
        };
        assert!(busy.is_retryable());
        assert!(busy.to_string().contains("try again"), "{busy}");
    }
}
