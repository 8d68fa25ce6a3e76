//! Fresh PostgreSQL schemas for tests, here and in the server's and the binary's tests.
//!
//! `HANDOFF_TEST_PG` names a database where tests may create schemas
//! (`postgres://USER:PASSWORD@HOST:PORT/DB`, the user owning `DB`). Each [`TestSchema`] is a
//! new schema of its own there, which its store uses through `search_path`, dropped when the
//! value is dropped (even when the test panics): tests run in parallel and leave nothing
//! behind. A schema rather than a database: `CREATE DATABASE` and `DROP DATABASE` force a
//! checkpoint each, seconds apiece under a test run's load, while a schema costs what its
//! tables do. Without the variable, [`TestSchema::create`] says on stderr that the test is
//! skipped and returns `None`: the test passes, and the line shows it did not run.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx_core::connection::Connection as _;
use sqlx_core::query::query;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgConnectOptions, PgConnection};

use super::{PostgresStore, parse_url};
use crate::error::Result;

/// The variable that turns the PostgreSQL tests on.
pub const TEST_PG_VAR: &str = "HANDOFF_TEST_PG";

/// Connections a test's store keeps at most. Tests run side by side (and some start a server
/// per case), and PostgreSQL's default limit is 100 connections for all of them together; a
/// test needs only a few (one of them is the store's `LISTEN` connection).
pub const TEST_POOL: u32 = 5;

/// A schema made for one test; dropped with this value.
#[derive(Debug)]
pub struct TestSchema {
    url: String,
    server: PgConnectOptions,
    schema: String,
}

impl TestSchema {
    /// A new, empty schema in the `HANDOFF_TEST_PG` database, or `None` (and a line on stderr
    /// naming `test`) when the variable is unset.
    ///
    /// # Errors
    /// When the variable is set but the server cannot be reached or refuses to create a
    /// schema: a test that was asked to run against PostgreSQL must not pass silently.
    pub async fn create(test: &str) -> Result<Option<TestSchema>> {
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
        let schema = format!(
            "handoff_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_microsecond() % 1_000_000_000
        );
        let mut admin = connect_server(&server).await?;
        // The name is ours (letters, digits and underscores): nothing to quote.
        query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        Ok(Some(TestSchema {
            url,
            server,
            schema,
        }))
    }

    /// The connection options of a store on this schema.
    #[must_use]
    pub fn options(&self) -> PgConnectOptions {
        self.server
            .clone()
            .options([("search_path", self.schema.as_str())])
    }

    /// The URL of a store on this schema, with the user and password of `HANDOFF_TEST_PG` (for
    /// a test that starts `handoff serve --db`).
    #[must_use]
    pub fn url(&self) -> String {
        let join = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{join}options=-c%20search_path%3D{}",
            self.url, self.schema
        )
    }

    /// A store on this schema (migrated), with a pool of [`TEST_POOL`] connections.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn store(&self) -> Result<PostgresStore> {
        PostgresStore::connect_sized(self.options(), TEST_POOL).await
    }

    /// The schema's name.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

async fn connect_server(server: &PgConnectOptions) -> Result<PgConnection> {
    PgConnection::connect_with(server)
        .await
        .map_err(|source| super::open_error(&super::target_of(server), source))
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop may run inside a runtime (which must not block on another) or after it: a thread
        // of its own with a runtime of its own works in both.
        let (server, schema) = (self.server.clone(), std::mem::take(&mut self.schema));
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut admin = connect_server(&server).await.map_err(|e| e.to_string())?;
                // A connection of the test still inside a transaction would hold its locks
                // forever: give up rather than hang the test run.
                query("SET lock_timeout = '10s'")
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| format!("{schema}: {e}"))?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_owned()) {
            let _ = writeln!(std::io::stderr(), "could not drop a test schema: {e}");
        }
    }
}
