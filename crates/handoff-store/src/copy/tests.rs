//! Copies between real stores: one filled through the [`Store`] trait (two events, plan
//! versions, devices with their bindings, pings in batches that mix events, duplicates and
//! late ones, custody chains, webhooks, deliveries, a checkpoint), copied in pages of two rows,
//! then every read of the trait compared on both ends, and the next write of each kind given
//! the same number on both. SQLite to SQLite always; every pair with PostgreSQL when
//! `HANDOFF_TEST_PG` is set.

use std::path::Path;

use handoff_core::ping::SpeedUnit;
use sqlx_core::query::query;

use super::{CopyError, FeedEntry, FeedRow, Import, Progress, Rows, Table, copy, runs};
use crate::error::{Result, StoreError};
use crate::postgres::copy::{PostgresExport, PostgresImport, same_database};
use crate::postgres::testing::TestSchema;
use crate::sqlite::copy::{SqliteExport, SqliteImport};
use crate::suite::{at, custody, delivery, device, engine_checkpoint, ping, webhook};
use crate::{
    Change, Delivery, Device, NewDevice, PostgresStore, SqliteStore, Store, StoredCustody,
    StoredPing, StoredPlan, Webhook,
};

/// Writes a little of everything, the way a server would.
async fn fill(s: &dyn Store) -> Result<()> {
    s.put_plan("flag", r#"{"v":1}"#, "p1", at(0)).await?;
    s.put_plan("race", r#"{"race":1}"#, "r1", at(1)).await?;
    s.put_plan("flag", r#"{"v":2}"#, "p2", at(2)).await?;
    s.add_device(NewDevice {
        relay_id: Some("team-a".to_owned()),
        speed_unit: Some(SpeedUnit::Knots),
        carrier: "Runner 1".to_owned(),
        ..device("race", "a1", "hash-a1")
    })
    .await?;
    s.add_device(device("flag", "moto", "hash-moto")).await?;
    s.add_device(device("flag", "bike", "hash-bike")).await?;
    // A token re-issued, and one revoked: both must stay so on the copy.
    s.set_device_token("flag", "moto", Some("hash-moto-2"), at(6))
        .await?;
    s.set_device_token("flag", "bike", None, at(7)).await?;
    s.add_webhook(webhook("flag", "wh2", &["handoff", "overdue"]))
        .await?;
    s.add_webhook(webhook("flag", "wh1", &[])).await?;
    s.append_custody("flag", custody("flag", r#"{"seq":0}"#, "h0", "p1"), at(3))
        .await?;
    s.insert_pings(vec![
        ping("flag", "moto", at(10)),
        ping("flag", "moto", at(11)),
        ping("race", "a1", at(10)),
        ping("flag", "bike", at(12)),
        ping("flag", "moto", at(10)), // a duplicate in the batch
    ])
    .await?;
    // A late batch: before what was sent already, with one more duplicate.
    s.insert_pings(vec![
        ping("flag", "moto", at(5)),
        ping("flag", "moto", at(11)),
    ])
    .await?;
    s.append_custody("flag", custody("flag", r#"{"seq":1}"#, "h1", "h0"), at(20))
        .await?;
    s.append_custody(
        "race",
        custody("team-a", r#"{"seq":0}"#, "t0", "r1"),
        at(21),
    )
    .await?;
    s.append_custody_many(
        "flag",
        vec![custody("flag", r#"{"shift":300}"#, "h2", "h1")],
        at(22),
    )
    .await?;
    for attempt in 1..=3 {
        s.log_delivery(delivery("flag", attempt, (attempt == 3).then_some(200)))
            .await?;
    }
    s.put_engine_checkpoint(engine_checkpoint("flag", 2, 4, b"state"))
        .await?;
    Ok(())
}

/// Everything the trait reads back, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Contents {
    plans: Vec<StoredPlan>,
    devices: Vec<Device>,
    by_token: Vec<Option<Device>>,
    pings: Vec<StoredPing>,
    by_time: Vec<StoredPing>,
    logs: Vec<Vec<StoredCustody>>,
    webhooks: Vec<Webhook>,
    deliveries: Vec<Delivery>,
    /// Every input, plan versions included, with its number.
    feed: Vec<Change>,
    newest: i64,
    ping_count: i64,
}

async fn contents(s: &dyn Store) -> Result<Contents> {
    let mut c = Contents {
        plans: s.latest_plans().await?,
        devices: Vec::new(),
        by_token: Vec::new(),
        pings: Vec::new(),
        by_time: Vec::new(),
        logs: Vec::new(),
        webhooks: Vec::new(),
        deliveries: Vec::new(),
        feed: s.changes_since(0, 1_000).await?,
        newest: *s.subscribe().borrow(),
        ping_count: s.ping_count().await?,
    };
    for event in ["flag", "race"] {
        c.devices.extend(s.devices(event).await?);
        c.pings.extend(s.pings_after(event, 0, 1_000).await?);
        c.by_time.extend(s.pings_by_time(event, None, 1_000).await?);
        c.webhooks.extend(s.webhooks(event).await?);
        c.deliveries.extend(s.deliveries(event, 1_000).await?);
    }
    for hash in ["hash-a1", "hash-moto", "hash-moto-2", "hash-bike"] {
        c.by_token.push(s.device_by_token_hash(hash).await?);
    }
    for (event, relay) in [("flag", "flag"), ("race", "team-a")] {
        c.logs.push(s.custody(event, relay).await?);
    }
    Ok(c)
}

/// The copy is the same store: every read equal, and no checkpoint; and the target goes on
/// after the copied numbers (the next plan version, ping, entry, delivery and change), with
/// its uniqueness rules in force.
async fn assert_same(from: &dyn Store, to: &dyn Store) -> Result<()> {
    let (a, b) = (contents(from).await?, contents(to).await?);
    assert_eq!(a, b);
    assert_eq!(a.feed.len(), 18, "{:?}", a.feed);
    assert_eq!(
        a.by_token.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true, false],
        "the replaced and the revoked token find nothing"
    );
    assert_eq!(a.ping_count, 5);
    assert!(to.engine_checkpoint("flag").await?.is_none());

    assert_eq!(to.put_plan("flag", r#"{"v":3}"#, "p3", at(30)).await?, 3);
    let entry = custody("flag", r#"{"seq":3}"#, "h3", "h2");
    let seq = to.append_custody("flag", entry, at(31)).await?;
    assert!(a.logs.iter().flatten().all(|e| e.seq < seq), "{seq}");
    let stale = to
        .append_custody("flag", custody("flag", "{}", "hx", "h1"), at(32))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let inserted = to.insert_pings(vec![ping("flag", "moto", at(40))]).await?;
    let crate::Inserted::New { seq } = inserted[0] else {
        panic!("{inserted:?}")
    };
    assert!(a.pings.iter().all(|p| p.seq < seq), "{seq}");
    let again = to.insert_pings(vec![ping("flag", "moto", at(10))]).await?;
    assert_eq!(again, [crate::Inserted::Duplicate]);
    let seq = to.log_delivery(delivery("flag", 4, Some(200))).await?;
    assert!(a.deliveries.iter().all(|d| d.seq < seq), "{seq}");
    let dup = to.add_device(device("flag", "other", "hash-moto")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let reused = to
        .set_device_token("flag", "bike", Some("hash-moto-2"), at(41))
        .await;
    assert!(matches!(reused, Err(StoreError::Conflict(_))), "{reused:?}");
    let feed = to.changes_since(a.newest, 10).await?;
    assert_eq!(feed.len(), 3, "the plan, the entry and the ping: {feed:?}");
    assert_eq!(*to.subscribe().borrow(), feed[2].seq);
    Ok(())
}

/// Runs the copy in pages of two rows, checking the progress it reports.
async fn run_copy(from: &mut dyn super::Export, to: &mut dyn Import) -> Result<super::Copied> {
    let mut seen: Vec<Progress> = Vec::new();
    let copied = match copy(from, to, 2, &mut |p| seen.push(p)).await {
        Ok(copied) => copied,
        Err(CopyError::Store(e)) => return Err(e),
        Err(refused) => panic!("{refused}"),
    };
    for table in Table::ALL {
        let of: Vec<&Progress> = seen.iter().filter(|p| p.table == table).collect();
        assert_eq!(of.first().map(|p| p.done), Some(0), "{table:?}: {seen:?}");
        assert!(of.iter().all(|p| p.done <= p.total), "{seen:?}");
        assert_eq!(
            of.last().map(|p| (p.done, p.total)),
            Some((copied.of(table), copied.of(table))),
            "{table:?}"
        );
    }
    to.commit().await?;
    Ok(copied)
}

fn sqlite(dir: &Path, name: &str) -> Result<SqliteStore> {
    SqliteStore::open(&dir.join(name))
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))
}

#[tokio::test]
async fn sqlite_to_sqlite_keeps_every_row_and_number() -> Result<()> {
    let dir = tempdir()?;
    let source = sqlite(dir.path(), "from.db")?;
    fill(&source).await?;
    let mut export = SqliteExport::open(&dir.path().join("from.db"))?;
    let mut import = SqliteImport::create(&dir.path().join("to.db"))?;
    let copied = run_copy(&mut export, &mut import).await?;
    drop((export, import));
    assert_eq!(
        copied.rows,
        [
            (Table::Plans, 3),
            (Table::Devices, 3),
            (Table::DeviceTokens, 2),
            (Table::Webhooks, 2),
            (Table::Custody, 4),
            (Table::Pings, 5),
            (Table::Deliveries, 3),
            (Table::Changes, 18),
        ]
    );
    let logs: Vec<(&str, &str)> = copied
        .logs
        .iter()
        .map(|(e, r)| (e.as_str(), r.as_str()))
        .collect();
    assert_eq!(logs, [("flag", "flag"), ("race", "team-a")]);
    let target = sqlite(dir.path(), "to.db")?;
    assert!(source.engine_checkpoint("flag").await?.is_some());
    assert_same(&source, &target).await
}

#[tokio::test]
async fn a_target_that_holds_anything_is_refused_and_left_as_it_was() -> Result<()> {
    let dir = tempdir()?;
    let source = sqlite(dir.path(), "from.db")?;
    fill(&source).await?;
    source.close().await?;
    let target = sqlite(dir.path(), "to.db")?;
    target
        .put_engine_checkpoint(engine_checkpoint("flag", 1, 0, b"stale"))
        .await?;
    target.close().await?;
    let mut export = SqliteExport::open(&dir.path().join("from.db"))?;
    let mut import = SqliteImport::create(&dir.path().join("to.db"))?;
    let refused = copy(&mut export, &mut import, 100, &mut |_| {}).await;
    let Err(CopyError::TargetNotEmpty(held)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(held, [("engine_checkpoints", 1)]);
    drop(import);
    let target = sqlite(dir.path(), "to.db")?;
    assert_eq!(target.ping_count().await?, 0);
    assert!(target.latest_plans().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_source_written_during_the_copy_is_refused_and_nothing_committed() -> Result<()> {
    let dir = tempdir()?;
    let source = sqlite(dir.path(), "from.db")?;
    fill(&source).await?;
    let mut export = SqliteExport::open(&dir.path().join("from.db"))?;
    // A server still running on the source: its write is after the snapshot.
    source
        .insert_pings(vec![ping("flag", "moto", at(50))])
        .await?;
    let mut import = SqliteImport::create(&dir.path().join("to.db"))?;
    let moved = copy(&mut export, &mut import, 100, &mut |_| {}).await;
    assert!(matches!(moved, Err(CopyError::SourceMoved)), "{moved:?}");
    assert!(moved.is_err_and(|e| e.to_string().contains("stop every server")));
    drop(import);
    let target = sqlite(dir.path(), "to.db")?;
    assert!(target.changes_since(0, 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_file_that_is_not_a_handoff_database_is_refused() -> Result<()> {
    let dir = tempdir()?;
    let missing = SqliteExport::open(&dir.path().join("none.db"));
    assert!(
        matches!(&missing, Err(StoreError::Invalid(m)) if m.contains("there is no database")),
        "{missing:?}"
    );
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").map_err(|e| StoreError::Task(e.to_string()))?;
    let foreign = SqliteExport::open(&empty);
    assert!(
        matches!(&foreign, Err(StoreError::Invalid(m)) if m.contains("holds no handoff data")),
        "{foreign:?}"
    );
    Ok(())
}

fn pinged(seq: i64, event: &str) -> StoredPing {
    let p = ping(event, "moto", at(seq));
    StoredPing {
        seq,
        event_id: p.event_id,
        device_id: p.device_id,
        ping: p.ping,
        received_at: p.received_at,
    }
}

#[tokio::test]
async fn a_change_of_interleaved_pings_becomes_one_sqlite_change_per_run() -> Result<()> {
    // What PostgreSQL can hold and SQLite cannot: one write's pings 1 and 3, another's 2.
    let dir = tempdir()?;
    let path = dir.path().join("to.db");
    let mut import = SqliteImport::create(&path)?;
    import
        .write(Rows::Pings((1..=3).map(|s| pinged(s, "e")).collect()))
        .await?;
    let change = |seq, runs| FeedEntry {
        seq,
        event_id: "e".to_owned(),
        row: FeedRow::Pings { runs },
    };
    import
        .write(Rows::Changes(vec![
            change(1, vec![(1, 1), (3, 3)]),
            change(2, vec![(2, 2)]),
        ]))
        .await?;
    import.commit().await?;
    drop(import);
    let store = SqliteStore::open(&path)?;
    let feed: Vec<(i64, Vec<i64>)> = store
        .changes_since(0, 10)
        .await?
        .into_iter()
        .map(|c| match c.row {
            crate::ChangeRow::Pings(p) => (c.seq, p.iter().map(|p| p.seq).collect()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(feed, [(1, vec![1]), (2, vec![3]), (3, vec![2])]);
    Ok(())
}

#[test]
fn seqs_make_runs_of_consecutive_numbers() {
    assert_eq!(runs(&[]), []);
    assert_eq!(runs(&[4]), [(4, 4)]);
    assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), [(1, 3), (7, 7), (9, 10)]);
}

// ---- with PostgreSQL (HANDOFF_TEST_PG) ----

async fn schema(test: &str) -> Result<Option<(TestSchema, PostgresStore)>> {
    let Some(db) = TestSchema::create(&format!("copy::tests::{test}")).await? else {
        return Ok(None);
    };
    let store = db.store().await?;
    Ok(Some((db, store)))
}

#[tokio::test]
async fn sqlite_to_postgres_and_back_keeps_every_row_and_number() -> Result<()> {
    let Some((_db, pg)) = schema("sqlite_to_postgres_and_back").await? else {
        return Ok(());
    };
    let dir = tempdir()?;
    let source = sqlite(dir.path(), "from.db")?;
    fill(&source).await?;
    let mut export = SqliteExport::open(&dir.path().join("from.db"))?;
    let mut import = PostgresImport::begin(&pg).await?;
    run_copy(&mut export, &mut import).await?;
    drop((export, import));
    assert_eq!(contents(&source).await?, contents(&pg).await?);
    // A second copy into it is refused, naming what it holds.
    let mut again = SqliteExport::open(&dir.path().join("from.db"))?;
    let mut into = PostgresImport::begin(&pg).await?;
    let refused = copy(&mut again, &mut into, 100, &mut |_| {}).await;
    let Err(CopyError::TargetNotEmpty(held)) = refused else {
        panic!("{refused:?}")
    };
    assert!(held.contains(&("pings", 5)), "{held:?}");
    drop((again, into));

    // And PostgreSQL back into a new SQLite file: the same again.
    let mut export = PostgresExport::begin(&pg).await?;
    let mut import = SqliteImport::create(&dir.path().join("back.db"))?;
    run_copy(&mut export, &mut import).await?;
    drop((export, import));
    let back = sqlite(dir.path(), "back.db")?;
    assert_same(&pg, &back).await
}

#[tokio::test]
async fn postgres_to_postgres_keeps_every_row_and_number() -> Result<()> {
    let Some((_a, from)) = schema("postgres_to_postgres_from").await? else {
        return Ok(());
    };
    let Some((_b, to)) = schema("postgres_to_postgres_to").await? else {
        return Ok(());
    };
    fill(&from).await?;
    assert!(!same_database(&from, &to).await?);
    assert!(same_database(&from, &from.clone()).await?);
    let mut export = PostgresExport::begin(&from).await?;
    let mut import = PostgresImport::begin(&to).await?;
    run_copy(&mut export, &mut import).await?;
    drop((export, import));
    assert_same(&from, &to).await
}

#[tokio::test]
async fn interleaved_postgres_pings_reach_sqlite_in_the_same_order() -> Result<()> {
    let Some((_db, pg)) = schema("interleaved_postgres_pings").await? else {
        return Ok(());
    };
    pg.put_plan("e", "{}", "p", at(0)).await?;
    // Two writers' pings interleaved in the sequence, as concurrent commits leave them.
    query(
        "INSERT INTO pings (event_id, device_id, t_us, lon, lat, received_us)
         SELECT 'e', 'moto', t, 2.35, 48.85, t FROM generate_series(1, 3) AS t",
    )
    .execute(pg.pool())
    .await?;
    query(
        "INSERT INTO changes (kind, event_id, ping_seqs)
         VALUES ('ping', 'e', '{1,3}'), ('ping', 'e', '{2}')",
    )
    .execute(pg.pool())
    .await?;
    let dir = tempdir()?;
    let mut export = PostgresExport::begin(&pg).await?;
    let mut import = SqliteImport::create(&dir.path().join("to.db"))?;
    run_copy(&mut export, &mut import).await?;
    drop((export, import));
    let back = sqlite(dir.path(), "to.db")?;
    let order = |feed: Vec<Change>| -> Vec<i64> {
        feed.into_iter()
            .flat_map(|c| match c.row {
                crate::ChangeRow::Pings(p) => p.iter().map(|p| p.seq).collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    let (a, b) = (
        pg.changes_since(0, 10).await?,
        back.changes_since(0, 10).await?,
    );
    assert_eq!((a.len(), b.len()), (3, 4), "one more change on SQLite");
    assert_eq!(order(a), [1, 3, 2]);
    assert_eq!(order(b), [1, 3, 2]);
    // The next change on SQLite comes after the renumbered ones.
    assert_eq!(back.put_plan("e", "{}", "p2", at(1)).await?, 2);
    assert_eq!(back.changes_since(4, 10).await?.len(), 1);
    Ok(())
}
