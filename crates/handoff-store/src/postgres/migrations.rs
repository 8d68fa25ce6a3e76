//! The PostgreSQL schema as numbered SQL files (`crates/handoff-store/migrations/postgres/`),
//! embedded in the binary and applied by sqlx's migrator at connect: it records what ran in
//! `_sqlx_migrations` (with a checksum, so an edited released migration is refused), and takes
//! an advisory lock, so that two nodes starting at once apply each migration exactly once.
//! A database migrated by a newer build (a version this one does not know) is refused rather
//! than misread. Never edit a released migration: add the next file here and in [`MIGRATIONS`].

use std::borrow::Cow;

use sqlx_core::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx_core::sql_str::SqlSafeStr;
use sqlx_postgres::PgPool;

use crate::error::{Result, StoreError};

/// `(version, description, SQL)`, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "notify",
        include_str!("../../migrations/postgres/0002_notify.sql"),
    ),
    (
        3,
        "shared state",
        include_str!("../../migrations/postgres/0003_shared_state.sql"),
    ),
    (
        4,
        "device tokens",
        include_str!("../../migrations/postgres/0004_device_tokens.sql"),
    ),
];

/// The schema version this build writes.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Brings the schema up to [`latest_version`].
pub(super) async fn migrate(pool: &PgPool) -> Result<()> {
    match migrator().run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(found)) => Err(StoreError::SchemaTooNew {
            found,
            known: latest_version(),
        }),
        Err(MigrateError::Execute(e)) => Err(e.into()),
        Err(e) => Err(StoreError::Backend {
            backend: super::BACKEND,
            source: std::sync::Arc::new(e),
        }),
    }
}
