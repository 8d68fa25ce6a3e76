//! Fresh PostgreSQL databases for tests, here and in the server's integration tests.
//!
//! `HANDOFF_TEST_PG` names a server where tests may create databases
//! (`postgres://USER:PASSWORD@HOST:PORT/DB`, the user with CREATEDB; `DB` is only where the
//! `CREATE DATABASE` runs). Each [`TestDatabase`] is a new database of its own, dropped when
//! the value is dropped (even when the test panics), so tests run in parallel and leave
//! nothing behind. Without the variable, [`TestDatabase::create`] says on stderr that the
//! test is skipped and returns `None`: the test passes, and the line shows it did not run.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx_core::connection::Connection as _;
use sqlx_core::query::query;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgConnectOptions, PgConnection};

use super::{PostgresStore, parse_url};
use crate::error::{Result, StoreError};

/// The variable that turns the PostgreSQL tests on.
pub const TEST_PG_VAR: &str = "HANDOFF_TEST_PG";

/// A database made for one test; dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    server: PgConnectOptions,
    name: String,
}

impl TestDatabase {
    /// A new, empty database on the `HANDOFF_TEST_PG` server, or `None` (and a line on stderr
    /// naming `test`) when the variable is unset.
    ///
    /// # Errors
    /// When the variable is set but the server cannot be reached or refuses to create a
    /// database: a test that was asked to run against PostgreSQL must not pass silently.
    pub async fn create(test: &str) -> Result<Option<TestDatabase>> {
        let Some(url) = std::env::var(TEST_PG_VAR).ok().filter(|u| !u.is_empty()) else {
            // Straight to the stream: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped on PostgreSQL ({TEST_PG_VAR} is not set)"
            );
            return Ok(None);
        };
        let server = parse_url(&url)?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "handoff_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_microsecond() % 1_000_000_000
        );
        let mut admin = connect_server(&server).await?;
        // The name is ours (digits and underscores): nothing to escape.
        query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        Ok(Some(TestDatabase { server, name }))
    }

    /// The connection options of this database.
    #[must_use]
    pub fn options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// Its URL, with the user and password of `HANDOFF_TEST_PG` (for a test that starts
    /// `handoff serve --db`).
    #[must_use]
    pub fn url(&self) -> String {
        let url = std::env::var(TEST_PG_VAR).unwrap_or_default();
        let (base, params) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(b, p)| (b, Some(p)));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let path = base[authority..]
            .find('/')
            .map_or(base.len(), |i| authority + i);
        let mut fresh = format!("{}/{}", &base[..path], self.name);
        if let Some(params) = params {
            fresh.push('?');
            fresh.push_str(params);
        }
        fresh
    }

    /// A store on this database (migrated).
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn store(&self) -> Result<PostgresStore> {
        PostgresStore::connect_with(self.options()).await
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

async fn connect_server(server: &PgConnectOptions) -> Result<PgConnection> {
    PgConnection::connect_with(server)
        .await
        .map_err(|source| StoreError::Connect {
            target: super::target_of(server),
            source: std::sync::Arc::new(source),
        })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (which must not block on another) or after it: a thread
        // of its own with a runtime of its own works in both. FORCE ends connections a store
        // left open.
        let (server, name) = (self.server.clone(), std::mem::take(&mut self.name));
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut admin = connect_server(&server).await.map_err(|e| e.to_string())?;
                query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_owned()) {
            let _ = writeln!(std::io::stderr(), "could not drop a test database: {e}");
        }
    }
}
