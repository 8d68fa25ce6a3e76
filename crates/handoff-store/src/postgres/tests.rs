//! Tests of the PostgreSQL store against a real server: the shared suite every backend passes
//! ([`crate::suite`]), then what only a shared server has (writers racing for one custody step,
//! readers paging the pings and the change feed while writers commit, the database itself
//! refusing edits of facts, migrations, durable commits). Each test gets a schema of its own
//! ([`TestSchema`]); without `HANDOFF_TEST_PG` it says it was skipped and passes. The tests
//! of the URL, of an unreachable server and of the error mapping need no server and always run.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx_core::query::query;
use sqlx_core::row::Row;

use super::testing::TestSchema;
use super::{PostgresStore, migrations};
use crate::error::{Result, StoreError};
use crate::suite::{at, custody, delivery, device, ping, webhook};
use crate::{Inserted, Store};

/// A store on a schema of its own, or `None` (skipped, with a line) without `HANDOFF_TEST_PG`.
async fn fresh_store(test: &str) -> Result<Option<(TestSchema, PostgresStore)>> {
    let Some(db) = TestSchema::create(&format!("postgres::tests::{test}")).await? else {
        return Ok(None);
    };
    let store = db.store().await?;
    Ok(Some((db, store)))
}

/// What the shared suite asks of a backend: a fresh store, and what must outlive it.
async fn fresh() -> Result<Option<(Arc<dyn Store>, TestSchema)>> {
    Ok(fresh_store("suite")
        .await?
        .map(|(db, store)| (Arc::new(store) as Arc<dyn Store>, db)))
}

mod suite {
    crate::store_suite!(super::fresh());
}

/// The body runs with `db: TestSchema` and `s: PostgresStore` on it, a fresh schema that is
/// dropped after; without `HANDOFF_TEST_PG` the test returns at once (skipped).
macro_rules! on_postgres {
    ($test:ident, |$db:ident, $s:ident| $body:block) => {
        let Some(($db, $s)) = fresh_store(stringify!($test)).await? else {
            return Ok(());
        };
        $body
    };
}

fn task_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Task(e.to_string())
}

// ---- what the suite cannot see: PostgreSQL's own values, schema and settings ----

#[tokio::test]
async fn a_nan_measurement_is_no_value_as_on_sqlite() -> Result<()> {
    on_postgres!(a_nan_measurement_is_no_value_as_on_sqlite, |_db, s| {
        // SQLite keeps a NaN as NULL: so does this backend.
        let mut nan = ping("flag-handover", "moto", at(2));
        nan.ping.acc_m = Some(f64::NAN);
        s.insert_pings(vec![nan]).await?;
        let stored = s.pings_by_time("flag-handover", None, 10).await?;
        assert_eq!(stored[0].ping.acc_m, None);
    });
    Ok(())
}

#[tokio::test]
async fn text_postgres_cannot_hold_is_invalid_input() -> Result<()> {
    on_postgres!(text_postgres_cannot_hold_is_invalid_input, |_db, s| {
        let mut nul = device("flag-handover", "moto", "hash-nul");
        nul.carrier = "Tom\0Cruise".to_owned();
        let refused = s.add_device(nul).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        assert!(s.devices("flag-handover").await?.is_empty());
    });
    Ok(())
}

#[tokio::test]
async fn reconnecting_keeps_everything() -> Result<()> {
    on_postgres!(reconnecting_keeps_everything, |db, s| {
        s.put_plan("flag-handover", "{}", "p1", at(0)).await?;
        s.add_device(device("flag-handover", "moto", "tok")).await?;
        s.insert_pings(vec![
            ping("flag-handover", "moto", at(1)),
            ping("flag-handover", "moto", at(2)),
        ])
        .await?;
        s.append_custody("flag-handover", custody("flag", "{}", "h0", "p1"), at(1))
            .await?;
        s.close().await;

        // A second connect (a restart, or a second node) finds the schema migrated.
        let s = db.store().await?;
        assert_eq!(s.plan("flag-handover").await?.map(|p| p.version), Some(1));
        assert!(s.device_by_token_hash("tok").await?.is_some());
        assert_eq!(s.ping_count().await?, 2);
        let again = s
            .insert_pings(vec![ping("flag-handover", "moto", at(2))])
            .await?;
        assert_eq!(
            again,
            [Inserted::Duplicate],
            "idempotence survives a restart"
        );
        s.append_custody("flag-handover", custody("flag", "{}", "h1", "h0"), at(1))
            .await?;
        assert_eq!(s.custody("flag-handover", "flag").await?.len(), 2);
    });
    Ok(())
}

#[tokio::test]
async fn a_newer_schema_is_refused() -> Result<()> {
    on_postgres!(a_newer_schema_is_refused, |db, s| {
        query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99, 'from the future', true, '\\x00', 0)",
        )
        .execute(s.pool())
        .await?;
        s.close().await;
        let opened = db.store().await;
        assert!(
            matches!(
                opened,
                Err(StoreError::SchemaTooNew { found: 99, known })
                    if known == migrations::latest_version()
            ),
            "{opened:?}"
        );
    });
    Ok(())
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_facts() -> Result<()> {
    on_postgres!(the_database_refuses_to_change_or_remove_facts, |_db, s| {
        s.put_plan("e", "{}", "p", at(0)).await?;
        s.add_device(device("e", "moto", "tok")).await?;
        s.set_device_token("e", "moto", Some("tok-2"), at(1))
            .await?;
        s.insert_pings(vec![ping("e", "moto", at(1))]).await?;
        s.append_custody("e", custody("flag", "{}", "h0", "p"), at(1))
            .await?;
        s.add_webhook(webhook("e", "wh1", &[])).await?;
        s.log_delivery(delivery("e", 1, Some(200))).await?;
        for table in [
            "plans",
            "devices",
            "device_tokens",
            "pings",
            "custody",
            "webhooks",
            "webhook_deliveries",
        ] {
            for sql in [
                format!("UPDATE {table} SET event_id = 'forged'"),
                format!("DELETE FROM {table}"),
                format!("TRUNCATE {table}"),
            ] {
                let refused = query(sqlx_core::sql_str::AssertSqlSafe(sql.clone()))
                    .execute(s.pool())
                    .await;
                assert!(
                    refused
                        .as_ref()
                        .is_err_and(|e| e.to_string().contains("append-only")),
                    "{sql}: {refused:?}"
                );
            }
        }
        // An entry that does not follow the one before it is refused by the schema itself.
        let forged = query(
            "INSERT INTO custody (event_id, relay_id, position, entry_json, hash, prev_hash,
                                  created_us)
             VALUES ('e', 'flag', 1, '{}', 'h1', 'not-h0', 0)",
        )
        .execute(s.pool())
        .await;
        assert!(
            forged
                .as_ref()
                .is_err_and(|e| e.to_string().contains("does not follow")),
            "{forged:?}"
        );
        assert_eq!(s.ping_count().await?, 1);
        assert_eq!(s.custody("e", "flag").await?.len(), 1);
    });
    Ok(())
}

#[tokio::test]
async fn the_first_admin_token_hash_kept_wins() -> Result<()> {
    on_postgres!(the_first_admin_token_hash_kept_wins, |_db, s| {
        assert_eq!(s.admin_token_hash().await?, None);
        assert_eq!(s.keep_admin_token_hash("first", at(0)).await?, "first");
        assert_eq!(s.keep_admin_token_hash("second", at(1)).await?, "first");
        assert_eq!(s.admin_token_hash().await?.as_deref(), Some("first"));
    });
    Ok(())
}

#[tokio::test]
async fn commits_are_flushed_even_where_the_server_default_is_not() -> Result<()> {
    on_postgres!(
        commits_are_flushed_even_where_the_server_default_is_not,
        |db, s| {
            s.close().await;
            for (asked, kept) in [("off", "on"), ("local", "local"), ("on", "on")] {
                let options = db.options().options([("synchronous_commit", asked)]);
                let store = PostgresStore::connect_with(options).await?;
                let row = query("SELECT current_setting('synchronous_commit')")
                    .fetch_one(store.pool())
                    .await?;
                assert_eq!(row.try_get::<String, _>(0)?, kept, "asked {asked}");
                store.close().await;
            }
        }
    );
    Ok(())
}

// ---- what only a shared server has: writers racing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_for_one_custody_step_give_exactly_one_entry() -> Result<()> {
    on_postgres!(
        writers_racing_for_one_custody_step_give_exactly_one_entry,
        |_db, s| {
            s.append_custody("race", custody("team-1", "{}", "h0", "plan"), at(1))
                .await?;
            // Sixteen nodes record the same handoff at once (from h0), and sixteen the first entry
            // of a new chain, each committing to a plan hash of its own.
            let mut tasks = Vec::new();
            for i in 0..16 {
                let (next, first) = (s.clone(), s.clone());
                tasks.push(tokio::spawn(async move {
                    next.append_custody(
                        "race",
                        custody("team-1", "{}", &format!("h1-{i}"), "h0"),
                        at(1),
                    )
                    .await
                }));
                tasks.push(tokio::spawn(async move {
                    first
                        .append_custody(
                            "race",
                            custody("team-2", "{}", &format!("g0-{i}"), &format!("p{i}")),
                            at(1),
                        )
                        .await
                }));
            }
            let (mut won, mut lost) = (0, 0);
            for task in tasks {
                match task.await.map_err(task_error)? {
                    Ok(_) => won += 1,
                    Err(StoreError::Conflict(_)) => lost += 1,
                    Err(e) => return Err(e),
                }
            }
            assert_eq!(
                (won, lost),
                (2, 30),
                "one winner per step, a clean conflict for the rest"
            );
            assert_eq!(s.custody("race", "team-1").await?.len(), 2);
            assert_eq!(s.custody("race", "team-2").await?.len(), 1);
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_paging_by_seq_while_writers_commit_misses_nothing() -> Result<()> {
    on_postgres!(
        a_reader_paging_by_seq_while_writers_commit_misses_nothing,
        |_db, s| {
            // Eight writers commit batches of varied size (so their transactions overlap and
            // would commit out of seq order without the feed lock) while a reader follows the
            // pings' cursor as the live engine does, and another the change feed's, as another
            // node would.
            const WRITERS: i64 = 8;
            const BATCHES: i64 = 25;
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for b in 0..BATCHES {
                            let batch = (0..=(b % 7) * 5)
                                .map(|k| ping("race", &format!("runner-{w}"), at(b * 1_000 + k)))
                                .collect();
                            s.insert_pings(batch).await?;
                        }
                        Ok::<_, StoreError>(())
                    })
                })
                .collect();
            let expected: i64 = WRITERS * (0..BATCHES).map(|b| (b % 7) * 5 + 1).sum::<i64>();
            let (mut cursor, mut seen) = (0, BTreeSet::new());
            let (mut feed_cursor, mut fed) = (0, BTreeSet::new());
            let mut writers_done = false;
            loop {
                let page = s.pings_after("race", cursor, 100).await?;
                for p in &page {
                    assert!(seen.insert(p.seq), "seq {} read twice", p.seq);
                    cursor = cursor.max(p.seq);
                }
                let changes = s.changes_since(feed_cursor, 10).await?;
                for c in &changes {
                    assert!(c.seq > feed_cursor, "change {} after {feed_cursor}", c.seq);
                    feed_cursor = c.seq;
                    if let crate::ChangeRow::Pings(pings) = &c.row {
                        fed.extend(pings.iter().map(|p| p.seq));
                    }
                }
                if page.is_empty() && changes.is_empty() {
                    if writers_done {
                        break;
                    }
                    writers_done = writers.iter().all(tokio::task::JoinHandle::is_finished);
                    tokio::task::yield_now().await;
                }
            }
            for w in writers {
                w.await.map_err(task_error)??;
            }
            assert_eq!(s.ping_count().await?, expected);
            assert_eq!(
                i64::try_from(seen.len()).unwrap_or(i64::MAX),
                expected,
                "the cursor skipped pings committed behind it"
            );
            assert_eq!(
                fed, seen,
                "the change feed skipped pings committed behind it"
            );
        }
    );
    Ok(())
}

// ---- no server needed ----

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() -> Result<()> {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let refused = PostgresStore::connect("postgres://handoff:s3cret-pw@127.0.0.1:1/handoff").await;
    match refused {
        Err(e @ StoreError::Open { .. }) => {
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("127.0.0.1:1/handoff"), "{shown}");
            assert!(
                shown.contains("refused"),
                "the reason, not a pool timeout: {shown}"
            );
            assert!(!shown.contains("s3cret-pw"), "{shown}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_server_that_cannot_answer_now_is_a_retry_later_and_a_closed_pool_a_closed_store() {
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    for retry in [
        sqlx_core::Error::PoolTimedOut,
        sqlx_core::Error::Io(refused),
    ] {
        let e = StoreError::from(retry);
        assert!(e.is_retryable(), "{e:?}");
    }
    assert!(matches!(
        StoreError::from(sqlx_core::Error::PoolClosed),
        StoreError::Closed
    ));
    let other = StoreError::from(sqlx_core::Error::RowNotFound);
    assert!(
        matches!(
            other,
            StoreError::Backend {
                backend: "PostgreSQL",
                ..
            }
        ),
        "{other:?}"
    );
}

#[test]
fn a_malformed_url_is_refused_with_the_form_it_should_have() {
    for url in ["postgres://user:s3cret-pw@host:port/db", "mysql://host/db"] {
        let refused = super::parse_url(url);
        match refused {
            Err(StoreError::Invalid(m)) => {
                assert!(m.contains("postgres://USER:PASSWORD@HOST"), "{m}");
                assert!(!m.contains("s3cret-pw"), "{m}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}
