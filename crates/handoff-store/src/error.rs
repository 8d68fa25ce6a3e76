//! The store's one error type. Callers branch on [`StoreError::Conflict`] (a uniqueness rule
//! refused the write: HTTP 409) and [`StoreError::Invalid`] (the input can never be stored: 400);
//! everything else is an operational failure (500/503).
//!
//! The enum is `Clone` because one group commit answers many callers: when the commit fails,
//! every request in it gets the same error, so backend errors are held in an `Arc`.

use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (a device already registered, a custody entry that is
    /// not the next one). The message says which rule and which ids.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The input can never be stored as it is (for example a non-finite coordinate).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// The database file could not be opened or prepared.
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Arc<rusqlite::Error>,
    },

    /// The file was written by a newer build of handoff; refusing it beats corrupting it.
    #[error(
        "the database schema is version {found}, newer than this build knows ({known}): \
         upgrade handoff or point it at another database"
    )]
    SchemaTooNew { found: i64, known: i64 },

    /// An error from SQLite while reading or writing.
    #[error("SQLite: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),

    /// The PostgreSQL server could not be reached, or refused the connection (`target` is
    /// `host:port/database`, never the password).
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Arc<sqlx_core::Error>,
    },

    /// An error from PostgreSQL (or the connection to it) while reading or writing.
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] Arc<sqlx_core::Error>),

    /// The store was closed (or its writer thread stopped) before the request was answered;
    /// nothing from an unanswered write may be assumed durable.
    #[error("the store is closed")]
    Closed,

    /// A blocking task that ran a query panicked or was cancelled.
    #[error("a store task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(error))
    }
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;
