//! Tests of the SQLite store against real files in a temporary directory: the shared suite
//! ([`crate::suite`]) on a fresh file per case, then what only this backend has (the file,
//! WAL, group commit, migrations of old files, backups).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::SqliteStore;
use super::writer::MAX_BATCH_REQUESTS;
use crate::error::{Result, StoreError};
use crate::suite::{at, custody, delivery, device, ping, webhook};
use crate::{ChangeKind, ChangeRow, Inserted, NewPing, Store};

/// A fresh store on a new file, for one case of the shared suite.
async fn fresh() -> Result<Option<(Arc<dyn Store>, tempfile::TempDir)>> {
    let TestDb { dir, store } = open_temp()?;
    Ok(Some((Arc::new(store), dir)))
}

mod suite {
    crate::store_suite!(super::fresh());
}

struct TestDb {
    // Keeps the directory alive for the store's lifetime.
    dir: tempfile::TempDir,
    store: SqliteStore,
}

fn open_temp() -> Result<TestDb> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
    let store = SqliteStore::open(&dir.path().join("handoff.db"))?;
    Ok(TestDb { dir, store })
}

/// Parks the writer thread inside a request until the returned sender is used or dropped, so
/// that later requests queue up behind it.
async fn hold_writer(
    store: &Arc<SqliteStore>,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, writer_parked) = oneshot::channel::<()>();
    let held_store = Arc::clone(store);
    let held = tokio::spawn(async move {
        held_store
            .writer
            .submit(0, move |_| {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
    });
    writer_parked
        .await
        .expect("the writer runs the parking request");
    (release, held)
}

/// Waits until `n` requests are queued for the writer.
async fn until_queued(store: &SqliteStore, n: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while store.writer.queued() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("requests reach the writer's queue");
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() -> Result<()> {
    let db = open_temp()?;
    let path = db.store.path().to_owned();
    db.store
        .put_plan("flag-handover", "{}", "p1", at(0))
        .await?;
    db.store
        .add_device(device("flag-handover", "moto", "tok"))
        .await?;
    db.store
        .insert_pings(vec![
            ping("flag-handover", "moto", at(1)),
            ping("flag-handover", "moto", at(2)),
        ])
        .await?;
    db.store
        .append_custody("flag-handover", custody("flag", "{}", "h0", "p1"), at(0))
        .await?;
    let TestDb { dir, store } = db;
    store.close().await?;

    let store = SqliteStore::open(&path)?;
    assert_eq!(
        store.plan("flag-handover").await?.map(|p| p.version),
        Some(1)
    );
    assert!(store.device_by_token_hash("tok").await?.is_some());
    assert_eq!(store.ping_count().await?, 2);
    assert_eq!(store.custody("flag-handover", "flag").await?.len(), 1);
    // Still a duplicate after the restart: idempotence survives it.
    let again = store
        .insert_pings(vec![ping("flag-handover", "moto", at(2))])
        .await?;
    assert_eq!(again, [Inserted::Duplicate]);
    // And the chain continues from the stored head.
    store
        .append_custody("flag-handover", custody("flag", "{}", "h1", "h0"), at(0))
        .await?;
    drop(store);
    drop(dir);
    Ok(())
}

#[tokio::test]
async fn a_newer_schema_is_refused() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
    let path = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update(None, "user_version", 99)?;
    }
    let opened = SqliteStore::open(&path);
    assert!(
        matches!(
            opened,
            Err(StoreError::SchemaTooNew { found: 99, known })
                if known == super::migrations::latest_version()
        ),
        "{opened:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_one_transaction() -> Result<()> {
    let db = open_temp()?;
    let store = Arc::new(db.store);
    let (release, held) = hold_writer(&store).await;
    let before = store.transactions_committed();

    let requests: u64 = 200;
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let store = Arc::clone(&store);
            let t = at(i64::try_from(i).expect("small"));
            tokio::spawn(async move { store.insert_pings(vec![ping("race", "r1", t)]).await })
        })
        .collect();
    until_queued(&store, 200).await;
    drop(release);
    held.await.map_err(|e| StoreError::Task(e.to_string()))??;
    for task in tasks {
        task.await.map_err(|e| StoreError::Task(e.to_string()))??;
    }

    // The parking request's own transaction, then the backlog in full groups.
    let cap = u64::try_from(MAX_BATCH_REQUESTS).expect("small");
    let used = store.transactions_committed() - before;
    assert_eq!(used, 1 + requests.div_ceil(cap));
    assert!(used < requests);
    assert_eq!(store.ping_count().await?, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_does_not_fail_its_group() -> Result<()> {
    let db = open_temp()?;
    let store = Arc::new(db.store);
    store.add_device(device("race", "r1", "t1")).await?;
    let (release, held) = hold_writer(&store).await;

    let dup = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.add_device(device("race", "r1", "t2")).await })
    };
    until_queued(&store, 1).await;
    let pings = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.insert_pings(vec![ping("race", "r1", at(5))]).await })
    };
    until_queued(&store, 2).await;
    let before = store.transactions_committed();
    drop(release);
    held.await.map_err(|e| StoreError::Task(e.to_string()))??;

    let dup = dup.await.map_err(|e| StoreError::Task(e.to_string()))?;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let pings = pings.await.map_err(|e| StoreError::Task(e.to_string()))??;
    assert!(matches!(pings[..], [Inserted::New { .. }]));
    // Both were in one transaction after the parking one.
    assert_eq!(store.transactions_committed() - before, 2);
    assert_eq!(store.ping_count().await?, 1);
    assert_eq!(store.devices("race").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_closed_store_reports_a_clean_stop() -> Result<()> {
    let db = open_temp()?;
    db.store.put_plan("e", "{}", "h", at(0)).await?;
    db.store.close().await?;
    drop(db.dir);
    Ok(())
}

#[tokio::test]
async fn the_file_is_wal_and_its_rows_append_only() -> Result<()> {
    let db = open_temp()?;
    db.store
        .insert_pings(vec![ping("flag-handover", "moto", at(1))])
        .await?;
    db.store
        .append_custody("flag-handover", custody("flag", "{}", "h0", "p"), at(0))
        .await?;
    db.store
        .add_device(device("flag-handover", "moto", "tok"))
        .await?;
    db.store
        .set_device_token("flag-handover", "moto", None, at(2))
        .await?;
    let conn = rusqlite::Connection::open(db.store.path())?;
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    assert_eq!(mode, "wal");
    for sql in [
        "UPDATE pings SET lon = 0",
        "DELETE FROM pings",
        "UPDATE custody SET hash = 'forged'",
        "DELETE FROM custody",
        "UPDATE devices SET token_hash = 'forged'",
        "UPDATE device_tokens SET token_hash = 'forged'",
        "DELETE FROM device_tokens",
    ] {
        let refused = conn.execute(sql, []);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
    assert_eq!(db.store.ping_count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn webhook_rows_are_append_only_and_survive_a_reopen() -> Result<()> {
    let db = open_temp()?;
    db.store
        .add_webhook(webhook("e", "wh1", &["handoff"]))
        .await?;
    db.store.log_delivery(delivery("e", 1, Some(200))).await?;
    let conn = rusqlite::Connection::open(db.store.path())?;
    for sql in [
        "UPDATE webhooks SET secret = 'stolen'",
        "DELETE FROM webhooks",
        "UPDATE webhook_deliveries SET status = 200",
        "DELETE FROM webhook_deliveries",
    ] {
        let refused = conn.execute(sql, []);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
    drop(conn);
    let path = db.store.path().to_owned();
    db.store.close().await?;
    let reopened = SqliteStore::open(&path)?;
    assert_eq!(reopened.webhooks("e").await?[0].kinds, ["handoff"]);
    assert_eq!(reopened.deliveries("e", 10).await?.len(), 1);
    drop(reopened);
    drop(db.dir);
    Ok(())
}

#[tokio::test]
async fn dropping_the_store_checkpoints_the_wal_so_the_file_alone_holds_everything() -> Result<()> {
    let TestDb { dir, store } = open_temp()?;
    let path = dir.path().join("handoff.db");
    let batch: Vec<NewPing> = (0..100).map(|i| ping("ev", "dev", at(i))).collect();
    store.insert_pings(batch).await?;
    store
        .append_custody("ev", custody("flag", r#"{"seq":0}"#, "h0", "plan"), at(0))
        .await?;
    // A reader still open (pooled, idle) must not keep the checkpoint from finishing; dropping
    // the store (as a server does on exit) must checkpoint as closing it does.
    assert_eq!(store.ping_count().await?, 100);
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let wal = dir.path().join("handoff.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "the WAL is empty"
    );

    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).map_err(|e| StoreError::Task(e.to_string()))?;
    let contents = super::backup::inspect(&copy)?;
    assert!(contents.is_sound(), "{:?}", contents.integrity);
    assert_eq!((contents.pings, contents.entries), (100, 1));
    Ok(())
}

#[tokio::test]
async fn a_backup_is_one_complete_file_and_never_overwrites() -> Result<()> {
    let TestDb { dir, store } = open_temp()?;
    let batch: Vec<NewPing> = (0..10).map(|i| ping("ev", "dev", at(i))).collect();
    store.insert_pings(batch).await?;
    let out = dir.path().join("backup.db");
    // The store is open (its newest pages in the WAL) while the backup runs.
    super::backup::backup(&dir.path().join("handoff.db"), &out)?;
    for leftover in ["backup.db-wal", "backup.db-shm", "backup.db.partial"] {
        assert!(!dir.path().join(leftover).exists(), "{leftover}");
    }
    assert_eq!(super::backup::inspect(&out)?.pings, 10);
    let again = super::backup::backup(&dir.path().join("handoff.db"), &out);
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
    assert_eq!(super::backup::inspect(&out)?.pings, 10);
    store.close().await?;
    Ok(())
}

/// A file written by the build before the change feed (schema 6), with a row of every kind,
/// opened by this one: the inputs already stored are numbered in the feed in the order they
/// were stamped, their own seqs are kept, and new inputs follow them.
#[tokio::test]
async fn a_file_from_before_the_change_feed_is_upgraded_with_its_history_numbered() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Task(e.to_string()))?;
    let path = dir.path().join("v6.db");
    {
        let mut conn = rusqlite::Connection::open(&path)?;
        super::migrations::migrate_to(&mut conn, 6)?;
        let us = |s: i64| at(s).as_microsecond();
        conn.execute_batch(&format!(
            "INSERT INTO plans VALUES ('e', 1, '{{}}', 'p1', {p1});
             INSERT INTO devices (event_id, device_id, carrier, token_hash, created_us)
                 VALUES ('e', 'moto', 'Tom Cruise', 'tok', {dev});
             INSERT INTO pings (seq, event_id, device_id, t_us, lon, lat, received_us)
                 VALUES (7, 'e', 'moto', {t1}, 2.0, 48.0, {rx}),
                        (8, 'e', 'moto', {t0}, 2.0, 48.0, {rx});
             INSERT INTO custody (event_id, relay_id, entry_json, hash, prev_hash, created_us)
                 VALUES ('e', 'flag', '{{}}', 'h0', 'p1', {handoff});
             INSERT INTO webhooks VALUES ('e', 'wh1', 'http://127.0.0.1:9/h', 's', '', {hook});
             INSERT INTO plans VALUES ('e', 2, '{{}}', 'p2', {p2});",
            p1 = us(0),
            dev = us(1),
            t0 = us(2),
            t1 = us(3),
            rx = us(4),
            handoff = us(5),
            hook = us(6),
            p2 = us(7),
        ))?;
    }
    let store = SqliteStore::open(&path)?;
    let feed = store.changes_since(0, 100).await?;
    let shape: Vec<_> = feed.iter().map(|c| (c.seq, c.kind())).collect();
    assert_eq!(
        shape,
        [
            (1, ChangeKind::Plan),
            (2, ChangeKind::Device),
            (3, ChangeKind::Ping),
            (4, ChangeKind::Ping),
            (5, ChangeKind::Custody),
            (6, ChangeKind::Webhook),
            (7, ChangeKind::Plan),
        ]
    );
    let pings: Vec<i64> = feed
        .iter()
        .filter_map(|c| match &c.row {
            ChangeRow::Pings(p) => Some(p[0].seq),
            _ => None,
        })
        .collect();
    assert_eq!(pings, [7, 8], "the pings keep their seqs, in arrival order");
    assert_eq!(*store.subscribe().borrow(), 7);

    let new = store.insert_pings(vec![ping("e", "moto", at(10))]).await?;
    assert_eq!(new, [Inserted::New { seq: 9 }]);
    assert_eq!(store.put_plan("e", "{}", "p3", at(11)).await?, 3);
    let next: Vec<_> = store
        .changes_since(7, 10)
        .await?
        .iter()
        .map(|c| (c.seq, c.kind()))
        .collect();
    assert_eq!(next, [(8, ChangeKind::Ping), (9, ChangeKind::Plan)]);
    assert_eq!(*store.subscribe().borrow(), 9);
    store.close().await?;

    // The feed is as append-only as what it numbers.
    let conn = rusqlite::Connection::open(&path)?;
    for sql in ["UPDATE changes SET seq = seq + 100", "DELETE FROM changes"] {
        let refused = conn.execute(sql, []);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
    Ok(())
}

/// A lock held by another process past the busy timeout is "try again", not a failure.
#[tokio::test]
async fn a_database_locked_by_another_process_is_unavailable_not_broken() -> Result<()> {
    let db = open_temp()?;
    let other = rusqlite::Connection::open(db.store.path())?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    let started = std::time::Instant::now();
    let refused = db.store.put_plan("e", "{}", "h", at(0)).await;
    assert!(
        matches!(&refused, Err(e @ StoreError::Unavailable { backend: "SQLite", .. }) if e.is_retryable()),
        "{refused:?}"
    );
    assert!(
        started.elapsed() >= super::BUSY_TIMEOUT / 2,
        "it waited first"
    );
    other.execute_batch("ROLLBACK")?;
    assert_eq!(db.store.put_plan("e", "{}", "h", at(0)).await?, 1);
    assert_eq!(db.store.changes_since(0, 10).await?.len(), 1);
    Ok(())
}
