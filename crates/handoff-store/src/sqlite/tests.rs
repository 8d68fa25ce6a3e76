//! Tests of the SQLite store against real files in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::writer::MAX_BATCH_REQUESTS;
use crate::error::{Result, StoreError};
use crate::{EngineCheckpoint, Inserted, NewDelivery, NewDevice, NewPing, NewWebhook, Store};

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

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_786_000_000 + seconds).expect("a 2026 instant is in range")
}

fn ping(event_id: &str, device_id: &str, t: Timestamp) -> NewPing {
    NewPing {
        event_id: event_id.to_owned(),
        device_id: device_id.to_owned(),
        ping: Ping {
            t,
            lon: 2.36015,
            lat: 48.92446,
            acc_m: Some(4.5),
            speed_mps: None,
            heading_deg: Some(270.0),
            alt_m: None,
            batt_pct: Some(81.0),
        },
        received_at: at(1_000),
    }
}

fn device(event_id: &str, device_id: &str, token_hash: &str) -> NewDevice {
    NewDevice {
        event_id: event_id.to_owned(),
        device_id: device_id.to_owned(),
        carrier: "Tom Cruise".to_owned(),
        relay_id: None,
        token_hash: token_hash.to_owned(),
        speed_unit: None,
    }
}

fn seqs(outcomes: &[Inserted]) -> Vec<Option<i64>> {
    outcomes
        .iter()
        .map(|o| match o {
            Inserted::New { seq } => Some(*seq),
            Inserted::Duplicate => None,
        })
        .collect()
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
async fn plan_versions_increment_per_event() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    assert_eq!(s.plan("flag-handover").await?, None);
    assert_eq!(s.put_plan("flag-handover", r#"{"v":1}"#, "h1").await?, 1);
    assert_eq!(s.put_plan("flag-handover", r#"{"v":2}"#, "h2").await?, 2);
    assert_eq!(s.put_plan("concert", r#"{"c":1}"#, "c1").await?, 1);

    let latest = s
        .plan("flag-handover")
        .await?
        .expect("the event has a plan");
    assert_eq!(
        (latest.version, latest.plan_json.as_str()),
        (2, r#"{"v":2}"#)
    );
    assert_eq!(latest.plan_hash, "h2");

    let all = s.latest_plans().await?;
    let summary: Vec<_> = all
        .iter()
        .map(|p| (p.event_id.as_str(), p.version, p.plan_hash.as_str()))
        .collect();
    assert_eq!(summary, [("concert", 1, "c1"), ("flag-handover", 2, "h2")]);
    Ok(())
}

#[tokio::test]
async fn device_registered_twice_is_a_conflict() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    s.add_device(device("flag-handover", "cruise-moto", "aa"))
        .await?;
    let again = s
        .add_device(device("flag-handover", "cruise-moto", "bb"))
        .await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m.contains("cruise-moto")),
        "{again:?}"
    );
    let same_token = s.add_device(device("flag-handover", "other", "aa")).await;
    assert!(
        matches!(same_token, Err(StoreError::Conflict(_))),
        "{same_token:?}"
    );
    // The same device id in another event is another device.
    s.add_device(device("concert", "cruise-moto", "cc")).await?;
    assert_eq!(s.devices("flag-handover").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn device_is_found_by_token_hash() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    s.add_device(device("flag-handover", "moto", "hash-1"))
        .await?;
    s.add_device(device("flag-handover", "heli", "hash-2"))
        .await?;

    let found = s.device_by_token_hash("hash-2").await?.expect("registered");
    assert_eq!(
        (found.event_id.as_str(), found.device_id.as_str()),
        ("flag-handover", "heli")
    );
    assert_eq!(found.carrier, "Tom Cruise");
    assert_eq!(s.device_by_token_hash("nope").await?, None);

    let ids: Vec<_> = s
        .devices("flag-handover")
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["heli", "moto"]);
    Ok(())
}

#[tokio::test]
async fn a_devices_speed_unit_is_kept() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    let mut d = device("flag-handover", "osmand-app", "hash-osmand");
    d.speed_unit = Some(SpeedUnit::Mps);
    s.add_device(d).await?;
    s.add_device(device("flag-handover", "traccar", "hash-traccar"))
        .await?;
    let units: Vec<(String, Option<SpeedUnit>)> = s
        .devices("flag-handover")
        .await?
        .into_iter()
        .map(|d| (d.device_id, d.speed_unit))
        .collect();
    assert_eq!(
        units,
        [
            ("osmand-app".to_owned(), Some(SpeedUnit::Mps)),
            ("traccar".to_owned(), None)
        ]
    );
    let found = s.device_by_token_hash("hash-osmand").await?;
    assert_eq!(found.and_then(|d| d.speed_unit), Some(SpeedUnit::Mps));
    Ok(())
}

#[tokio::test]
async fn device_debug_redacts_the_token_hash() -> Result<()> {
    let db = open_temp()?;
    let new = device("flag-handover", "moto", "5ecre7hash");
    assert!(!format!("{new:?}").contains("5ecre7hash"));
    db.store.add_device(new).await?;
    let stored = db
        .store
        .device_by_token_hash("5ecre7hash")
        .await?
        .expect("registered");
    let shown = format!("{stored:?}");
    assert!(
        !shown.contains("5ecre7hash") && shown.contains("moto"),
        "{shown}"
    );
    Ok(())
}

#[tokio::test]
async fn duplicate_pings_are_detected_within_and_across_batches() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    let first = s
        .insert_pings(vec![
            ping("flag-handover", "moto", at(1)),
            ping("flag-handover", "moto", at(2)),
            ping("flag-handover", "moto", at(1)), // resent within the batch
            ping("flag-handover", "heli", at(1)), // same time, other device
            ping("concert", "moto", at(1)),       // same device id, other event
        ])
        .await?;
    let first = seqs(&first);
    assert_eq!(first.iter().filter(|s| s.is_none()).count(), 1);
    assert_eq!(first[2], None);
    assert!(first[0] < first[1], "seq follows arrival: {first:?}");

    let second = s
        .insert_pings(vec![
            ping("flag-handover", "moto", at(2)), // resent in a later batch
            ping("flag-handover", "moto", at(3)),
        ])
        .await?;
    let second = seqs(&second);
    assert_eq!(second[0], None);
    assert!(second[1] > first[3], "{second:?}");
    assert_eq!(s.ping_count().await?, 5);
    assert!(s.insert_pings(Vec::new()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn pings_come_back_in_device_time_order_with_every_field() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    // Late, buffered pings arrive after newer ones.
    let mut bare = ping("flag-handover", "moto", at(30));
    bare.ping.acc_m = None;
    bare.ping.heading_deg = None;
    bare.ping.batt_pct = None;
    bare.ping.speed_mps = Some(12.25);
    bare.ping.alt_m = Some(-3.5);
    s.insert_pings(vec![bare.clone(), ping("flag-handover", "moto", at(10))])
        .await?;
    s.insert_pings(vec![
        ping("flag-handover", "heli", at(20)),
        ping("flag-handover", "moto", at(0)),
    ])
    .await?;

    let all = s.pings("flag-handover").await?;
    let order: Vec<_> = all
        .iter()
        .map(|p| (p.device_id.as_str(), p.ping.t))
        .collect();
    assert_eq!(
        order,
        [
            ("moto", at(0)),
            ("moto", at(10)),
            ("heli", at(20)),
            ("moto", at(30))
        ]
    );
    let last = &all[3];
    assert_eq!(last.ping, bare.ping);
    assert_eq!(last.received_at, bare.received_at);
    assert_eq!(all[1].ping, ping("flag-handover", "moto", at(10)).ping);

    let window = s
        .pings_for_device("flag-handover", "moto", Some(at(10)), Some(at(30)))
        .await?;
    let times: Vec<_> = window.iter().map(|p| p.ping.t).collect();
    assert_eq!(times, [at(10)], "from is inclusive, to exclusive");
    let open = s
        .pings_for_device("flag-handover", "moto", None, None)
        .await?;
    assert_eq!(open.len(), 3);
    assert!(s.pings("concert").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn non_finite_coordinates_are_refused() -> Result<()> {
    let db = open_temp()?;
    let mut bad = ping("flag-handover", "moto", at(1));
    bad.ping.lat = f64::NAN;
    let result = db
        .store
        .insert_pings(vec![ping("flag-handover", "moto", at(0)), bad])
        .await;
    assert!(
        matches!(&result, Err(StoreError::Invalid(m)) if m.contains("ping 1")),
        "{result:?}"
    );
    assert_eq!(db.store.ping_count().await?, 0);
    Ok(())
}

#[tokio::test]
async fn custody_chain_appends_in_order_and_refuses_a_stale_prev_hash() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    let first = s
        .append_custody("flag-handover", "flag", "{\"n\":0}", "h0", "plan-hash")
        .await?;
    let second = s
        .append_custody("flag-handover", "flag", "{\"n\":1}", "h1", "h0")
        .await?;
    assert!(second > first);

    // A second handoff from the same head loses: it is not the next one any more.
    let stale = s
        .append_custody("flag-handover", "flag", "{\"n\":1b}", "h1b", "h0")
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict(m)) if m.contains("h0")),
        "{stale:?}"
    );
    let unknown = s
        .append_custody("flag-handover", "flag", "{}", "hx", "nowhere")
        .await;
    assert!(
        matches!(unknown, Err(StoreError::Conflict(_))),
        "{unknown:?}"
    );
    // A hash can't appear twice in one chain (that would be a cycle).
    let cycle = s
        .append_custody("flag-handover", "flag", "{}", "h0", "h1")
        .await;
    assert!(matches!(cycle, Err(StoreError::Conflict(_))), "{cycle:?}");
    // Other relays have their own chains.
    s.append_custody("flag-handover", "stage", "{}", "s0", "plan-hash")
        .await?;

    let log = s.custody("flag-handover", "flag").await?;
    let chain: Vec<_> = log
        .iter()
        .map(|e| (e.prev_hash.as_str(), e.hash.as_str(), e.entry_json.as_str()))
        .collect();
    assert_eq!(
        chain,
        [("plan-hash", "h0", "{\"n\":0}"), ("h0", "h1", "{\"n\":1}")]
    );
    assert_eq!(log[0].seq, first);
    Ok(())
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() -> Result<()> {
    let db = open_temp()?;
    let path = db.store.path().to_owned();
    db.store.put_plan("flag-handover", "{}", "p1").await?;
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
        .append_custody("flag-handover", "flag", "{}", "h0", "p1")
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
        .append_custody("flag-handover", "flag", "{}", "h1", "h0")
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
async fn concurrent_inserts_all_succeed() -> Result<()> {
    let db = open_temp()?;
    let store = Arc::new(db.store);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let device_id = format!("runner-{}", i % 10);
                store
                    .insert_pings(vec![
                        ping("race", &device_id, at(i)),
                        ping("race", &device_id, at(i + 1_000)),
                    ])
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcomes = task.await.map_err(|e| StoreError::Task(e.to_string()))??;
        assert!(outcomes.iter().all(|o| matches!(o, Inserted::New { .. })));
    }
    assert_eq!(store.ping_count().await?, 200);
    assert!(store.transactions_committed() <= 100);
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
    db.store.put_plan("e", "{}", "h").await?;
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
        .append_custody("flag-handover", "flag", "{}", "h0", "p")
        .await?;
    let conn = rusqlite::Connection::open(db.store.path())?;
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    assert_eq!(mode, "wal");
    for sql in [
        "UPDATE pings SET lon = 0",
        "DELETE FROM pings",
        "UPDATE custody SET hash = 'forged'",
        "DELETE FROM custody",
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
async fn the_store_is_usable_as_a_trait_object() -> Result<()> {
    let db = open_temp()?;
    let shared: Arc<dyn Store> = Arc::new(db.store);
    assert_eq!(shared.put_plan("e", "{}", "h").await?, 1);
    assert_eq!(shared.latest_plans().await?.len(), 1);
    Ok(())
}

fn webhook(event_id: &str, webhook_id: &str, kinds: &[&str]) -> NewWebhook {
    NewWebhook {
        event_id: event_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        url: "http://127.0.0.1:9000/hook".to_owned(),
        secret: "a-secret-of-24-characters".to_owned(),
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
    }
}

fn delivery(event_id: &str, attempt: u32, status: Option<u16>) -> NewDelivery {
    NewDelivery {
        event_id: event_id.to_owned(),
        webhook_id: "wh1".to_owned(),
        delivery_id: "d-1".to_owned(),
        kind: "handoff".to_owned(),
        attempt,
        status,
        error: status.is_none().then(|| "connection refused".to_owned()),
        at: at(i64::from(attempt)),
    }
}

#[tokio::test]
async fn webhooks_come_back_in_order_with_their_kinds() -> Result<()> {
    let db = open_temp()?;
    db.store
        .add_webhook(webhook("flag-handover", "wh1", &[]))
        .await?;
    db.store
        .add_webhook(webhook("flag-handover", "wh0", &["overdue", "off_route"]))
        .await?;
    db.store
        .add_webhook(webhook("race", "wh1", &["silent"]))
        .await?;
    let hooks = db.store.webhooks("flag-handover").await?;
    let ids: Vec<&str> = hooks.iter().map(|h| h.webhook_id.as_str()).collect();
    assert_eq!(ids, ["wh1", "wh0"], "in the order they were added");
    assert!(hooks[0].kinds.is_empty());
    assert!(hooks[0].wants("handoff") && hooks[0].wants("silent"));
    assert_eq!(hooks[1].kinds, ["overdue", "off_route"]);
    assert!(hooks[1].wants("off_route") && !hooks[1].wants("handoff"));
    assert_eq!(hooks[1].secret, "a-secret-of-24-characters");
    assert_eq!(hooks[1].url, "http://127.0.0.1:9000/hook");
    assert_eq!(db.store.webhooks("race").await?.len(), 1);
    assert!(db.store.webhooks("nobody").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_webhook_id_taken_twice_is_a_conflict_and_a_comma_kind_invalid() -> Result<()> {
    let db = open_temp()?;
    db.store.add_webhook(webhook("e", "wh1", &[])).await?;
    let again = db.store.add_webhook(webhook("e", "wh1", &["silent"])).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let comma = db.store.add_webhook(webhook("e", "wh2", &["a,b"])).await;
    assert!(matches!(comma, Err(StoreError::Invalid(_))), "{comma:?}");
    assert_eq!(db.store.webhooks("e").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn webhook_debug_redacts_the_secret() -> Result<()> {
    let db = open_temp()?;
    let new = webhook("e", "wh1", &[]);
    assert!(!format!("{new:?}").contains("a-secret-of-24-characters"));
    db.store.add_webhook(new).await?;
    let stored = db.store.webhooks("e").await?;
    let shown = format!("{stored:?}");
    assert!(!shown.contains("a-secret-of-24-characters"), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("wh1"),
        "{shown}"
    );
    Ok(())
}

#[tokio::test]
async fn deliveries_come_back_newest_first_per_event_and_limited() -> Result<()> {
    let db = open_temp()?;
    let first = db.store.log_delivery(delivery("e", 1, None)).await?;
    db.store
        .log_delivery(delivery("other", 1, Some(200)))
        .await?;
    let second = db.store.log_delivery(delivery("e", 2, Some(500))).await?;
    let third = db.store.log_delivery(delivery("e", 3, Some(204))).await?;
    assert!(first < second && second < third);
    let all = db.store.deliveries("e", 10).await?;
    let attempts: Vec<u32> = all.iter().map(|d| d.attempt).collect();
    assert_eq!(attempts, [3, 2, 1], "newest first");
    assert_eq!(all[0].seq, third);
    assert_eq!(all[0].status, Some(204));
    assert!(all[0].succeeded() && !all[1].succeeded() && !all[2].succeeded());
    assert_eq!(all[2].status, None);
    assert_eq!(all[2].error.as_deref(), Some("connection refused"));
    assert_eq!(all[2].at, at(1));
    assert_eq!(all[2].delivery_id, "d-1");
    assert_eq!(all[2].kind, "handoff");
    assert_eq!(db.store.deliveries("e", 2).await?.len(), 2);
    assert_eq!(db.store.deliveries("other", 10).await?.len(), 1);
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
async fn entries_for_several_relays_land_together_or_not_at_all() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    for relay in ["a", "b"] {
        s.append_custody("race", relay, "{}", &format!("{relay}0"), "plan")
            .await?;
    }
    let entry = |relay: &str, prev: &str| crate::NewCustody {
        relay_id: relay.to_owned(),
        entry_json: "{\"kind\":\"shift\"}".to_owned(),
        hash: format!("{relay}1"),
        prev_hash: prev.to_owned(),
    };
    // One of them follows a stale head: neither is stored.
    let refused = s
        .append_custody_many("race", vec![entry("a", "a0"), entry("b", "stale")])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(s.custody("race", "a").await?.len(), 1);
    assert_eq!(s.custody("race", "b").await?.len(), 1);
    let seqs = s
        .append_custody_many("race", vec![entry("a", "a0"), entry("b", "b0")])
        .await?;
    assert_eq!(seqs.len(), 2);
    assert_eq!(s.custody("race", "a").await?.len(), 2);
    assert_eq!(s.custody("race", "b").await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn pings_page_in_arrival_order_and_devices_keep_their_relay() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    let mut d = device("race", "a1", "hash-a1");
    d.relay_id = Some("team-a".to_owned());
    s.add_device(d).await?;
    let found = s
        .device_by_token_hash("hash-a1")
        .await?
        .expect("registered");
    assert_eq!(found.relay_id.as_deref(), Some("team-a"));
    assert_eq!(found.speed_unit, None);
    let batch: Vec<NewPing> = (0..5)
        .rev()
        .map(|k| NewPing {
            event_id: "race".to_owned(),
            device_id: "a1".to_owned(),
            ping: handoff_core::ping::Ping {
                t: at(k),
                lon: 2.0,
                lat: 48.0,
                acc_m: None,
                speed_mps: None,
                heading_deg: None,
                alt_m: None,
                batt_pct: None,
            },
            received_at: at(10),
        })
        .collect();
    s.insert_pings(batch).await?;
    let first = s.pings_after("race", 0, 3).await?;
    assert_eq!(first.len(), 3);
    let rest = s.pings_after("race", first[2].seq, 3).await?;
    assert_eq!(rest.len(), 2);
    let seqs: Vec<i64> = first.iter().chain(&rest).map(|p| p.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Arrival order, not device time: the batch came newest first.
    assert!(first[0].ping.t > first[1].ping.t);
    assert!(s.pings_after("other", 0, 10).await?.is_empty());
    Ok(())
}

fn engine_checkpoint(event: &str, version: i64, cursor: i64, state: &[u8]) -> EngineCheckpoint {
    EngineCheckpoint {
        event_id: event.to_owned(),
        plan_version: version,
        plan_hash: format!("hash-{version}"),
        format: 1,
        cursor,
        created_at: at(cursor),
        state: state.to_vec(),
    }
}

#[tokio::test]
async fn one_engine_checkpoint_per_event_the_newest_plan_versions_wins() -> Result<()> {
    let db = open_temp()?;
    let s = &db.store;
    assert_eq!(s.engine_checkpoint("paris").await?, None);
    s.put_engine_checkpoint(engine_checkpoint("paris", 1, 10, b"one"))
        .await?;
    s.put_engine_checkpoint(engine_checkpoint("lyon", 1, 11, b"lyon"))
        .await?;
    s.put_engine_checkpoint(engine_checkpoint("paris", 2, 20, &[0, 255, 7]))
        .await?;
    assert_eq!(
        s.engine_checkpoint("paris").await?,
        Some(engine_checkpoint("paris", 2, 20, &[0, 255, 7])),
        "replaced, bytes kept exactly"
    );
    // A retired version's late write does not replace the newer one.
    s.put_engine_checkpoint(engine_checkpoint("paris", 1, 30, b"stale"))
        .await?;
    assert_eq!(
        s.engine_checkpoint("paris").await?.map(|c| c.cursor),
        Some(20)
    );
    s.delete_engine_checkpoint("paris").await?;
    assert_eq!(s.engine_checkpoint("paris").await?, None);
    assert_eq!(
        s.engine_checkpoint("lyon").await?.map(|c| c.state),
        Some(b"lyon".to_vec())
    );
    Ok(())
}

#[tokio::test]
async fn dropping_the_store_checkpoints_the_wal_so_the_file_alone_holds_everything() -> Result<()> {
    let TestDb { dir, store } = open_temp()?;
    let path = dir.path().join("handoff.db");
    let batch: Vec<NewPing> = (0..100).map(|i| ping("ev", "dev", at(i))).collect();
    store.insert_pings(batch).await?;
    store
        .append_custody("ev", "flag", r#"{"seq":0}"#, "h0", "plan")
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
