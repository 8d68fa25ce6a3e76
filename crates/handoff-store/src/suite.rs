//! The behavioural test suite every [`Store`] backend must pass: the trait's contract
//! (idempotent duplicates, conflicts, the custody `prev_hash` rule, all-or-nothing batches,
//! plan versions 1, 2, 3…, paged reads, the change feed, the caller's instants, checkpoints,
//! webhooks and deliveries) written once against `Arc<dyn Store>`, as atuin runs the same
//! tests on each of its databases. What only one backend has (SQLite's file, WAL, group commit,
//! migrations of old files) is tested in that backend's own module.
//!
//! Built with the crate's `suite` feature (and in its own tests). A backend runs the whole suite
//! with one macro call, [`store_suite!`](crate::store_suite), which makes one `#[tokio::test]`
//! per case, named after it, so a failure names the case. Its argument is an expression, run
//! anew for each case, that gives a fresh, empty store:
//! `Result<Option<(Arc<dyn Store>, guard)>, E>`, where `guard` is anything that must outlive
//! the store (a temporary folder, a scratch schema) and `None` skips the case (no server to
//! test against). SQLite does it in `sqlite/tests.rs`:
//!
//! ```ignore
//! async fn fresh() -> Result<Option<(Arc<dyn Store>, tempfile::TempDir)>> {
//!     let TestDb { dir, store } = open_temp()?;
//!     Ok(Some((Arc::new(store), dir)))
//! }
//!
//! mod suite {
//!     crate::store_suite!(super::fresh());
//! }
//! ```
//!
//! PostgreSQL does the same in `postgres/tests.rs`, on a schema of its own per case
//! (`postgres::testing::TestSchema`, `None` when `HANDOFF_TEST_PG` is not set). From another
//! crate: `handoff-store = { …, features = ["suite"] }` and tokio with `macros` and
//! `rt-multi-thread` in its dev-dependencies, calling `handoff_store::store_suite!`.
//!
//! A new case is a `pub async fn name(s: Arc<dyn Store>) -> Result<()>` here plus its name
//! in the macro's list.
//!
//! A case panics (an `assert!`) or returns the store's error when the backend breaks the
//! contract. Instants are fixed ones far from the present, so a backend that stamps rows with
//! its own clock fails [`rows_keep_the_callers_instants`].

use std::sync::Arc;
use std::time::Duration;

use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;

use crate::error::{Result, StoreError};
use crate::{
    ChangeKind, ChangeRow, CodeStep, EngineCheckpoint, HandoffCode, Inserted, NewCustody,
    NewDelivery, NewDevice, NewNotification, NewPing, NewWebhook, Store,
};

/// Runs every case of the suite against the stores its argument makes: one `#[tokio::test]`
/// per case, named after it. See the [`suite`](crate::suite) module for the argument.
#[macro_export]
macro_rules! store_suite {
    ($fresh:expr) => {
        $crate::store_suite!(@cases $fresh;
            plan_versions_increment_per_event,
            concurrent_plans_get_distinct_versions,
            device_registered_twice_is_a_conflict,
            device_is_found_by_token_hash,
            a_devices_relay_and_speed_unit_are_kept,
            a_device_token_is_reissued_and_revoked,
            rows_keep_the_callers_instants,
            stored_rows_redact_their_secrets_in_debug,
            duplicate_pings_are_detected_within_and_across_batches,
            pings_page_in_device_time_order_with_every_field,
            a_devices_pings_page_within_a_window,
            pings_page_in_arrival_order,
            non_finite_coordinates_are_refused,
            concurrent_ping_batches_all_succeed,
            custody_chain_appends_in_order_and_refuses_a_stale_prev_hash,
            two_handoffs_from_one_head_win_exactly_once,
            custody_for_several_relays_lands_together_or_not_at_all,
            webhooks_come_back_in_order_with_their_kinds,
            a_webhook_id_taken_twice_is_a_conflict_and_a_comma_kind_invalid,
            deliveries_come_back_newest_first_per_event_and_limited,
            a_handoff_code_is_replaced_counted_and_burnt,
            wrong_attempts_at_a_code_add_up_across_writers,
            a_notification_is_queued_once_per_webhook_and_key,
            a_claim_holds_a_notification_until_its_lease_ends,
            notifications_are_retried_when_due_and_settled_once,
            concurrent_claims_never_share_a_notification,
            one_engine_checkpoint_per_event_the_newest_plan_version_wins,
            the_change_feed_carries_every_input_in_commit_order,
            the_change_feed_pages_and_leaves_out_what_was_not_stored,
            subscribe_wakes_on_every_commit,
        );
    };
    (@cases $fresh:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case()
            -> ::std::result::Result<(), ::std::boxed::Box<dyn ::std::error::Error + Send + Sync>>
            {
                let Some((store, guard)) = $fresh.await? else {
                    eprintln!("skipped: no store to test against");
                    return Ok(());
                };
                $crate::suite::$case(store).await?;
                drop(guard);
                Ok(())
            }
        )+
    };
}

// ---- fixtures, shared with the backends' own tests ----

/// An instant of the test relay, `seconds` after a fixed start in 2026.
#[must_use]
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_786_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A ping of `device_id` taken at `t`, received at `at(1_000)`.
#[must_use]
pub fn ping(event_id: &str, device_id: &str, t: Timestamp) -> NewPing {
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

/// Tom Cruise's device `device_id`, registered at `at(0)`.
#[must_use]
pub fn device(event_id: &str, device_id: &str, token_hash: &str) -> NewDevice {
    NewDevice {
        event_id: event_id.to_owned(),
        device_id: device_id.to_owned(),
        carrier: "Tom Cruise".to_owned(),
        relay_id: None,
        token_hash: token_hash.to_owned(),
        speed_unit: None,
        created_at: at(0),
    }
}

/// A custody entry with hash `hash` following `prev_hash` in `relay_id`'s log.
#[must_use]
pub fn custody(relay_id: &str, entry_json: &str, hash: &str, prev_hash: &str) -> NewCustody {
    NewCustody {
        relay_id: relay_id.to_owned(),
        entry_json: entry_json.to_owned(),
        hash: hash.to_owned(),
        prev_hash: prev_hash.to_owned(),
    }
}

/// A webhook wanting `kinds`, registered at `at(0)`.
#[must_use]
pub fn webhook(event_id: &str, webhook_id: &str, kinds: &[&str]) -> NewWebhook {
    NewWebhook {
        event_id: event_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        url: "http://127.0.0.1:9000/hook".to_owned(),
        secret: "a-secret-of-24-characters".to_owned(),
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        created_at: at(0),
    }
}

/// Attempt `attempt` at delivering notification `d-1` to webhook `wh1`, answered `status`.
pub fn delivery(event_id: &str, attempt: u32, status: Option<u16>) -> NewDelivery {
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

/// The code step from leg `from_leg` of relay `flag` in event `e`.
#[must_use]
pub fn code_step(from_leg: u32) -> CodeStep {
    CodeStep {
        event_id: "e".to_owned(),
        relay_id: "flag".to_owned(),
        from_leg,
    }
}

/// A code for `step` with hash `code_hash`, issued at `at(0)` for ten minutes.
#[must_use]
pub fn handoff_code(step: CodeStep, code_hash: &str) -> HandoffCode {
    HandoffCode {
        step,
        code_hash: code_hash.to_owned(),
        device_id: "hidalgo-phone".to_owned(),
        chain_len: 1,
        expires_at: at(600),
        attempts: 0,
        created_at: at(0),
    }
}

/// A `handoff` notification to webhook `webhook_id` of event `e` under `key`, queued at `t`.
#[must_use]
pub fn notification(
    webhook_id: &str,
    key: &str,
    delivery_id: &str,
    t: Timestamp,
) -> NewNotification {
    NewNotification {
        event_id: "e".to_owned(),
        webhook_id: webhook_id.to_owned(),
        key: key.to_owned(),
        delivery_id: delivery_id.to_owned(),
        kind: "handoff".to_owned(),
        body: format!("{{\"delivery\":\"{delivery_id}\"}}"),
        created_at: t,
    }
}

/// Attempt `attempt` at delivery `delivery_id` to `wh1` of event `e`, made at `t`.
#[must_use]
pub fn attempt_at(
    delivery_id: &str,
    attempt: u32,
    status: Option<u16>,
    t: Timestamp,
) -> NewDelivery {
    NewDelivery {
        event_id: "e".to_owned(),
        webhook_id: "wh1".to_owned(),
        delivery_id: delivery_id.to_owned(),
        kind: "handoff".to_owned(),
        attempt,
        status,
        error: (status != Some(200)).then(|| "the receiver answered 500".to_owned()),
        at: t,
    }
}

/// A saved engine state of plan `version` up to ping `cursor`.
pub fn engine_checkpoint(event: &str, version: i64, cursor: i64, state: &[u8]) -> EngineCheckpoint {
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

/// The `seq` of each outcome, `None` for a duplicate.
#[must_use]
pub fn seqs(outcomes: &[Inserted]) -> Vec<Option<i64>> {
    outcomes
        .iter()
        .map(|o| match o {
            Inserted::New { seq } => Some(*seq),
            Inserted::Duplicate => None,
        })
        .collect()
}

fn joined<T>(result: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    result.map_err(|e| StoreError::Task(e.to_string()))
}

// ---- plans ----

pub async fn plan_versions_increment_per_event(s: Arc<dyn Store>) -> Result<()> {
    assert_eq!(s.plan("flag-handover").await?, None);
    assert!(s.latest_plans().await?.is_empty());
    assert_eq!(
        s.put_plan("flag-handover", r#"{"v":1}"#, "h1", at(1))
            .await?,
        1
    );
    assert_eq!(
        s.put_plan("flag-handover", r#"{"v":2}"#, "h2", at(2))
            .await?,
        2
    );
    assert_eq!(s.put_plan("concert", r#"{"c":1}"#, "c1", at(3)).await?, 1);

    let latest = s
        .plan("flag-handover")
        .await?
        .expect("the event has a plan");
    assert_eq!(
        (latest.version, latest.plan_json.as_str()),
        (2, r#"{"v":2}"#)
    );
    assert_eq!(latest.plan_hash, "h2");
    assert_eq!(latest.created_at, at(2));

    let all = s.latest_plans().await?;
    let summary: Vec<_> = all
        .iter()
        .map(|p| (p.event_id.as_str(), p.version, p.plan_hash.as_str()))
        .collect();
    assert_eq!(summary, [("concert", 1, "c1"), ("flag-handover", 2, "h2")]);
    Ok(())
}

/// Versions come from the database, not from a read-then-write in the caller: writers racing
/// on one event get 1, 2, … each once (a loser may be told to retry, never given a taken one).
pub async fn concurrent_plans_get_distinct_versions(s: Arc<dyn Store>) -> Result<()> {
    const WRITERS: i64 = 8;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let hash = format!("h{i}");
                for _ in 0..20 {
                    match s.put_plan("race", "{}", &hash, at(i)).await {
                        Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
                        other => return other,
                    }
                }
                Err(StoreError::Conflict(
                    "still losing after 20 tries".to_owned(),
                ))
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(joined(task.await)??);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>());
    assert_eq!(s.plan("race").await?.map(|p| p.version), Some(WRITERS));
    Ok(())
}

// ---- devices ----

pub async fn device_registered_twice_is_a_conflict(s: Arc<dyn Store>) -> Result<()> {
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
    assert_eq!(
        s.device_by_token_hash("aa").await?.map(|d| d.event_id),
        Some("flag-handover".to_owned())
    );
    Ok(())
}

pub async fn device_is_found_by_token_hash(s: Arc<dyn Store>) -> Result<()> {
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
    assert_eq!(found.token_hash.as_deref(), Some("hash-2"));
    assert_eq!(found.token_at, found.created_at);
    assert_eq!(s.device_by_token_hash("nope").await?, None);

    let ids: Vec<_> = s
        .devices("flag-handover")
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["heli", "moto"], "ordered by device id");
    assert!(s.devices("nobody").await?.is_empty());
    Ok(())
}

pub async fn a_device_token_is_reissued_and_revoked(s: Arc<dyn Store>) -> Result<()> {
    s.add_device(device("flag-handover", "moto", "hash-1"))
        .await?;
    s.add_device(device("flag-handover", "heli", "hash-h"))
        .await?;
    let before = *s.subscribe().borrow();

    let moto = s
        .set_device_token("flag-handover", "moto", Some("hash-2"), at(10))
        .await?;
    assert_eq!(moto.token_hash.as_deref(), Some("hash-2"));
    assert_eq!((moto.created_at, moto.token_at), (at(0), at(10)));
    assert_eq!(s.device_by_token_hash("hash-1").await?, None, "replaced");
    assert_eq!(s.device_by_token_hash("hash-2").await?, Some(moto.clone()));

    // A hash that is, or was, a token of any device is refused; nothing is stored from it.
    for (device_id, hash) in [("heli", "hash-2"), ("heli", "hash-1"), ("moto", "hash-h")] {
        let taken = s
            .set_device_token("flag-handover", device_id, Some(hash), at(11))
            .await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    }
    let unknown = s
        .set_device_token("flag-handover", "nobody", Some("hash-x"), at(11))
        .await;
    assert!(
        matches!(&unknown, Err(StoreError::NotFound(m)) if m.contains("nobody")),
        "{unknown:?}"
    );
    let elsewhere = s.set_device_token("concert", "moto", None, at(11)).await;
    assert!(
        matches!(elsewhere, Err(StoreError::NotFound(_))),
        "{elsewhere:?}"
    );

    let revoked = s
        .set_device_token("flag-handover", "moto", None, at(20))
        .await?;
    assert_eq!((revoked.token_hash, revoked.token_at), (None, at(20)));
    assert_eq!(s.device_by_token_hash("hash-2").await?, None, "revoked");
    let again = s
        .set_device_token("flag-handover", "moto", Some("hash-3"), at(30))
        .await?;
    assert_eq!(s.device_by_token_hash("hash-3").await?, Some(again.clone()));
    assert_eq!(
        s.device_by_token_hash("hash-h").await?.map(|d| d.device_id),
        Some("heli".to_owned()),
        "the other device is untouched"
    );
    let listed = s.devices("flag-handover").await?;
    assert_eq!(listed.iter().find(|d| d.device_id == "moto"), Some(&again));

    // Each change is one `Device` change of the feed, read as the device now is.
    let feed = whole_feed(&*s, before, 2).await?;
    assert_eq!(feed.len(), 3, "{feed:?}");
    for change in &feed {
        assert_eq!(change.row, crate::ChangeRow::Device(again.clone()));
    }
    assert_eq!(*s.subscribe().borrow(), feed[2].seq);
    Ok(())
}

pub async fn a_devices_relay_and_speed_unit_are_kept(s: Arc<dyn Store>) -> Result<()> {
    let mut d = device("race", "osmand-app", "hash-osmand");
    d.speed_unit = Some(SpeedUnit::Mps);
    d.relay_id = Some("team-a".to_owned());
    s.add_device(d).await?;
    s.add_device(device("race", "traccar", "hash-traccar"))
        .await?;
    let kept: Vec<_> = s
        .devices("race")
        .await?
        .into_iter()
        .map(|d| (d.device_id, d.relay_id, d.speed_unit))
        .collect();
    assert_eq!(
        kept,
        [
            (
                "osmand-app".to_owned(),
                Some("team-a".to_owned()),
                Some(SpeedUnit::Mps)
            ),
            ("traccar".to_owned(), None, None)
        ]
    );
    let found = s
        .device_by_token_hash("hash-osmand")
        .await?
        .expect("registered");
    assert_eq!(
        (found.relay_id.as_deref(), found.speed_unit),
        (Some("team-a"), Some(SpeedUnit::Mps))
    );
    Ok(())
}

/// The store has no clock: every instant it keeps is the one its caller gave.
pub async fn rows_keep_the_callers_instants(s: Arc<dyn Store>) -> Result<()> {
    // Far from any "now" a backend could read.
    let long_ago = |second: i64| {
        Timestamp::from_second(1_000_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
    };
    s.put_plan("e", "{}", "p", long_ago(1)).await?;
    let mut d = device("e", "moto", "tok");
    d.created_at = long_ago(2);
    s.add_device(d).await?;
    let mut hook = webhook("e", "wh1", &[]);
    hook.created_at = long_ago(3);
    s.add_webhook(hook).await?;
    s.append_custody("e", custody("flag", "{}", "h0", "p"), long_ago(4))
        .await?;
    s.append_custody_many("e", vec![custody("flag", "{}", "h1", "h0")], long_ago(5))
        .await?;
    let mut p = ping("e", "moto", long_ago(6));
    p.received_at = long_ago(7);
    s.insert_pings(vec![p]).await?;

    assert_eq!(s.plan("e").await?.map(|p| p.created_at), Some(long_ago(1)));
    assert_eq!(
        s.device_by_token_hash("tok").await?.map(|d| d.created_at),
        Some(long_ago(2))
    );
    assert_eq!(s.webhooks("e").await?[0].created_at, long_ago(3));
    let log: Vec<_> = s
        .custody("e", "flag")
        .await?
        .into_iter()
        .map(|c| c.created_at)
        .collect();
    assert_eq!(log, [long_ago(4), long_ago(5)]);
    let pings = s.pings_after("e", 0, 10).await?;
    assert_eq!(
        pings
            .iter()
            .map(|p| (p.ping.t, p.received_at))
            .collect::<Vec<_>>(),
        [(long_ago(6), long_ago(7))]
    );
    Ok(())
}

pub async fn stored_rows_redact_their_secrets_in_debug(s: Arc<dyn Store>) -> Result<()> {
    let new = device("e", "moto", "5ecre7hash");
    assert!(!format!("{new:?}").contains("5ecre7hash"));
    s.add_device(new).await?;
    let stored = s
        .device_by_token_hash("5ecre7hash")
        .await?
        .expect("registered");
    let shown = format!("{stored:?}");
    assert!(
        !shown.contains("5ecre7hash") && shown.contains("moto"),
        "{shown}"
    );

    let new = webhook("e", "wh1", &[]);
    assert!(!format!("{new:?}").contains("a-secret-of-24-characters"));
    s.add_webhook(new).await?;
    let shown = format!("{:?}", s.webhooks("e").await?);
    assert!(!shown.contains("a-secret-of-24-characters"), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("wh1"),
        "{shown}"
    );
    // Nor does the change feed show them.
    let shown = format!("{:?}", s.changes_since(0, 10).await?);
    assert!(
        !shown.contains("5ecre7hash") && !shown.contains("a-secret-of-24-characters"),
        "{shown}"
    );
    Ok(())
}

// ---- pings ----

pub async fn duplicate_pings_are_detected_within_and_across_batches(
    s: Arc<dyn Store>,
) -> Result<()> {
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
    assert!(second[1] > first[4], "{second:?}");
    assert_eq!(s.ping_count().await?, 5);
    assert!(s.insert_pings(Vec::new()).await?.is_empty());
    Ok(())
}

pub async fn pings_page_in_device_time_order_with_every_field(s: Arc<dyn Store>) -> Result<()> {
    // Late, buffered pings arrive after newer ones; two devices share an instant.
    let mut bare = ping("flag-handover", "moto", at(30));
    bare.ping.acc_m = None;
    bare.ping.heading_deg = None;
    bare.ping.batt_pct = None;
    bare.ping.speed_mps = Some(12.25);
    bare.ping.alt_m = Some(-3.5);
    bare.received_at = at(1_001);
    s.insert_pings(vec![bare.clone(), ping("flag-handover", "moto", at(10))])
        .await?;
    s.insert_pings(vec![
        ping("flag-handover", "heli", at(20)),
        ping("flag-handover", "moto", at(0)),
        ping("flag-handover", "boat", at(10)),
    ])
    .await?;

    for page_size in [1, 2, 5, 100] {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = s.pings_by_time("flag-handover", after, page_size).await?;
            assert!(page.len() <= page_size);
            let Some(last) = page.last() else { break };
            after = Some(last.key());
            all.extend(page);
        }
        let order: Vec<_> = all
            .iter()
            .map(|p| (p.device_id.as_str(), p.ping.t))
            .collect();
        assert_eq!(
            order,
            [
                ("moto", at(0)),
                ("moto", at(10)),
                ("boat", at(10)), // the same instant: in arrival order
                ("heli", at(20)),
                ("moto", at(30))
            ],
            "pages of {page_size}"
        );
        let last = &all[4];
        assert_eq!(last.ping, bare.ping);
        assert_eq!(last.received_at, bare.received_at);
        assert_eq!(all[1].ping, ping("flag-handover", "moto", at(10)).ping);
    }
    assert!(s.pings_by_time("concert", None, 10).await?.is_empty());
    Ok(())
}

pub async fn a_devices_pings_page_within_a_window(s: Arc<dyn Store>) -> Result<()> {
    let batch = (0..10)
        .rev()
        .map(|k| ping("flag-handover", "moto", at(k * 10)))
        .chain([ping("flag-handover", "heli", at(15))])
        .collect();
    s.insert_pings(batch).await?;
    let window = s
        .pings_for_device("flag-handover", "moto", Some(at(10)), Some(at(30)), 100)
        .await?;
    let times: Vec<_> = window.iter().map(|p| p.ping.t).collect();
    assert_eq!(times, [at(10), at(20)], "from is inclusive, to exclusive");

    // Paged by moving `from` past the last one.
    let mut from = None;
    let mut times = Vec::new();
    loop {
        let page = s
            .pings_for_device("flag-handover", "moto", from, None, 3)
            .await?;
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        from = last
            .ping
            .t
            .checked_add(jiff::SignedDuration::from_micros(1))
            .ok();
        times.extend(page.iter().map(|p| p.ping.t));
    }
    assert_eq!(times, (0..10).map(|k| at(k * 10)).collect::<Vec<_>>());
    assert!(
        s.pings_for_device("flag-handover", "nobody", None, None, 10)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn pings_page_in_arrival_order(s: Arc<dyn Store>) -> Result<()> {
    let batch: Vec<NewPing> = (0..5).rev().map(|k| ping("race", "a1", at(k))).collect();
    s.insert_pings(batch).await?;
    s.insert_pings(vec![ping("other", "a1", at(0))]).await?;
    let first = s.pings_after("race", 0, 3).await?;
    assert_eq!(first.len(), 3);
    let rest = s.pings_after("race", first[2].seq, 3).await?;
    assert_eq!(rest.len(), 2);
    let seqs: Vec<i64> = first.iter().chain(&rest).map(|p| p.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Arrival order, not device time: the batch came newest first.
    assert!(first[0].ping.t > first[1].ping.t);
    assert!(s.pings_after("race", rest[1].seq, 3).await?.is_empty());
    assert_eq!(s.pings_after("other", 0, 10).await?.len(), 1);
    assert!(s.pings_after("nobody", 0, 10).await?.is_empty());
    Ok(())
}

pub async fn non_finite_coordinates_are_refused(s: Arc<dyn Store>) -> Result<()> {
    let mut bad = ping("flag-handover", "moto", at(1));
    bad.ping.lat = f64::NAN;
    let result = s
        .insert_pings(vec![ping("flag-handover", "moto", at(0)), bad])
        .await;
    assert!(
        matches!(&result, Err(StoreError::Invalid(m)) if m.contains("ping 1")),
        "{result:?}"
    );
    assert_eq!(s.ping_count().await?, 0, "none of the batch is stored");
    Ok(())
}

pub async fn concurrent_ping_batches_all_succeed(s: Arc<dyn Store>) -> Result<()> {
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let device_id = format!("runner-{}", i % 10);
                s.insert_pings(vec![
                    ping("race", &device_id, at(i)),
                    ping("race", &device_id, at(i + 1_000)),
                ])
                .await
            })
        })
        .collect();
    for task in tasks {
        let outcomes = joined(task.await)??;
        assert!(outcomes.iter().all(|o| matches!(o, Inserted::New { .. })));
    }
    assert_eq!(s.ping_count().await?, 200);
    Ok(())
}

// ---- custody ----

pub async fn custody_chain_appends_in_order_and_refuses_a_stale_prev_hash(
    s: Arc<dyn Store>,
) -> Result<()> {
    let e = "flag-handover";
    let first = s
        .append_custody(e, custody("flag", "{\"n\":0}", "h0", "plan-hash"), at(1))
        .await?;
    let second = s
        .append_custody(e, custody("flag", "{\"n\":1}", "h1", "h0"), at(2))
        .await?;
    assert!(second > first);

    // A second handoff from the same head loses: it is not the next one any more.
    let stale = s
        .append_custody(e, custody("flag", "{\"n\":1b}", "h1b", "h0"), at(3))
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict(m)) if m.contains("h0")),
        "{stale:?}"
    );
    let unknown = s
        .append_custody(e, custody("flag", "{}", "hx", "nowhere"), at(3))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::Conflict(_))),
        "{unknown:?}"
    );
    // A hash can't appear twice in one chain (that would be a cycle).
    let cycle = s
        .append_custody(e, custody("flag", "{}", "h0", "h1"), at(3))
        .await;
    assert!(matches!(cycle, Err(StoreError::Conflict(_))), "{cycle:?}");
    // Other relays have their own chains.
    s.append_custody(e, custody("stage", "{}", "s0", "plan-hash"), at(4))
        .await?;

    let log = s.custody(e, "flag").await?;
    let chain: Vec<_> = log
        .iter()
        .map(|e| (e.prev_hash.as_str(), e.hash.as_str(), e.entry_json.as_str()))
        .collect();
    assert_eq!(
        chain,
        [("plan-hash", "h0", "{\"n\":0}"), ("h0", "h1", "{\"n\":1}")]
    );
    assert_eq!(
        (
            log[0].seq,
            log[0].event_id.as_str(),
            log[0].relay_id.as_str()
        ),
        (first, e, "flag")
    );
    assert!(s.custody(e, "nobody").await?.is_empty());
    Ok(())
}

/// Several writers (nodes) recording the same handoff at once: exactly one entry is stored.
pub async fn two_handoffs_from_one_head_win_exactly_once(s: Arc<dyn Store>) -> Result<()> {
    s.append_custody("e", custody("flag", "{}", "h0", "plan"), at(0))
        .await?;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let entry = custody("flag", &format!("{{\"by\":{i}}}"), &format!("h1-{i}"), "h0");
                s.append_custody("e", entry, at(1)).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match joined(task.await)? {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.custody("e", "flag").await?.len(), 2);
    Ok(())
}

pub async fn custody_for_several_relays_lands_together_or_not_at_all(
    s: Arc<dyn Store>,
) -> Result<()> {
    for relay in ["a", "b"] {
        s.append_custody(
            "race",
            custody(relay, "{}", &format!("{relay}0"), "plan"),
            at(0),
        )
        .await?;
    }
    let shift = |relay: &str, prev: &str| {
        custody(relay, "{\"kind\":\"shift\"}", &format!("{relay}1"), prev)
    };
    // One of them follows a stale head: neither is stored.
    let refused = s
        .append_custody_many("race", vec![shift("a", "a0"), shift("b", "stale")], at(1))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(s.custody("race", "a").await?.len(), 1);
    assert_eq!(s.custody("race", "b").await?.len(), 1);
    let seqs = s
        .append_custody_many("race", vec![shift("a", "a0"), shift("b", "b0")], at(1))
        .await?;
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1], "{seqs:?}");
    assert_eq!(s.custody("race", "a").await?[1].seq, seqs[0]);
    assert_eq!(s.custody("race", "b").await?[1].seq, seqs[1]);
    assert!(
        s.append_custody_many("race", Vec::new(), at(2))
            .await?
            .is_empty()
    );
    Ok(())
}

// ---- webhooks ----

pub async fn webhooks_come_back_in_order_with_their_kinds(s: Arc<dyn Store>) -> Result<()> {
    s.add_webhook(webhook("flag-handover", "wh1", &[])).await?;
    s.add_webhook(webhook("flag-handover", "wh0", &["overdue", "off_route"]))
        .await?;
    s.add_webhook(webhook("race", "wh1", &["silent"])).await?;
    let hooks = s.webhooks("flag-handover").await?;
    let ids: Vec<&str> = hooks.iter().map(|h| h.webhook_id.as_str()).collect();
    assert_eq!(ids, ["wh1", "wh0"], "in the order they were added");
    assert!(hooks[0].kinds.is_empty());
    assert!(hooks[0].wants("handoff") && hooks[0].wants("silent"));
    assert_eq!(hooks[1].kinds, ["overdue", "off_route"]);
    assert!(hooks[1].wants("off_route") && !hooks[1].wants("handoff"));
    assert_eq!(hooks[1].secret, "a-secret-of-24-characters");
    assert_eq!(hooks[1].url, "http://127.0.0.1:9000/hook");
    assert_eq!(s.webhooks("race").await?.len(), 1);
    assert!(s.webhooks("nobody").await?.is_empty());
    Ok(())
}

pub async fn a_webhook_id_taken_twice_is_a_conflict_and_a_comma_kind_invalid(
    s: Arc<dyn Store>,
) -> Result<()> {
    s.add_webhook(webhook("e", "wh1", &[])).await?;
    let again = s.add_webhook(webhook("e", "wh1", &["silent"])).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let comma = s.add_webhook(webhook("e", "wh2", &["a,b"])).await;
    assert!(matches!(comma, Err(StoreError::Invalid(_))), "{comma:?}");
    let empty = s.add_webhook(webhook("e", "wh3", &[""])).await;
    assert!(matches!(empty, Err(StoreError::Invalid(_))), "{empty:?}");
    assert_eq!(s.webhooks("e").await?.len(), 1);
    Ok(())
}

pub async fn deliveries_come_back_newest_first_per_event_and_limited(
    s: Arc<dyn Store>,
) -> Result<()> {
    let first = s.log_delivery(delivery("e", 1, None)).await?;
    s.log_delivery(delivery("other", 1, Some(200))).await?;
    let second = s.log_delivery(delivery("e", 2, Some(500))).await?;
    let third = s.log_delivery(delivery("e", 3, Some(204))).await?;
    assert!(first < second && second < third);
    let all = s.deliveries("e", 10).await?;
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
    assert_eq!(s.deliveries("e", 2).await?.len(), 2);
    assert_eq!(s.deliveries("other", 10).await?.len(), 1);
    Ok(())
}

// ---- one-time handoff codes ----

pub async fn a_handoff_code_is_replaced_counted_and_burnt(s: Arc<dyn Store>) -> Result<()> {
    assert!(s.handoff_codes("e", "flag").await?.is_empty());
    s.put_handoff_code(handoff_code(code_step(0), "old"))
        .await?;
    s.put_handoff_code(handoff_code(code_step(2), "other-step"))
        .await?;
    assert_eq!(
        s.strike_handoff_code(&code_step(0), "old", 5).await?,
        Some(1)
    );
    // A new code for the step replaces the old one and starts its count again.
    let mut new = handoff_code(code_step(0), "new");
    new.expires_at = at(900);
    new.chain_len = 3;
    s.put_handoff_code(new.clone()).await?;
    let codes = s.handoff_codes("e", "flag").await?;
    assert_eq!(codes.len(), 2, "one code per step: {codes:?}");
    assert_eq!(codes[0], new, "kept as given, attempts from 0");
    assert_eq!(codes[1].step, code_step(2));
    assert!(s.handoff_codes("e", "other-relay").await?.is_empty());
    // Strikes at the replaced code count nothing; at the new one they count to the limit,
    // which burns it.
    assert_eq!(s.strike_handoff_code(&code_step(0), "old", 5).await?, None);
    for n in 1..5 {
        assert_eq!(
            s.strike_handoff_code(&code_step(0), "new", 5).await?,
            Some(n)
        );
    }
    assert_eq!(s.handoff_codes("e", "flag").await?[0].attempts, 4);
    assert_eq!(
        s.strike_handoff_code(&code_step(0), "new", 5).await?,
        Some(5)
    );
    let left = s.handoff_codes("e", "flag").await?;
    assert_eq!(left.len(), 1, "burnt: {left:?}");
    assert_eq!(s.strike_handoff_code(&code_step(0), "new", 5).await?, None);
    // A delete names the code it deletes: a newer one stays.
    s.delete_handoff_code(&code_step(2), "not-this-one").await?;
    assert_eq!(s.handoff_codes("e", "flag").await?.len(), 1);
    s.delete_handoff_code(&code_step(2), "other-step").await?;
    assert!(s.handoff_codes("e", "flag").await?.is_empty());
    // The hash is a lookup key for the code: not in logs.
    let shown = format!("{:?}", handoff_code(code_step(1), "c0ffee"));
    assert!(!shown.contains("c0ffee"), "{shown}");
    Ok(())
}

/// Wrong codes entered on several nodes at once: every strike is counted, and exactly one of
/// them burns the code.
pub async fn wrong_attempts_at_a_code_add_up_across_writers(s: Arc<dyn Store>) -> Result<()> {
    s.put_handoff_code(handoff_code(code_step(1), "h")).await?;
    let strikes = |n: usize, burn_at: u32| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(
                    async move { s.strike_handoff_code(&code_step(1), "h", burn_at).await },
                )
            })
            .collect();
        async move {
            let mut counts = Vec::new();
            for task in tasks {
                counts.push(joined(task.await)??);
            }
            Ok::<_, StoreError>(counts)
        }
    };
    let mut counts = strikes(6, 100).await?;
    counts.sort_unstable();
    assert_eq!(counts, (1..=6).map(Some).collect::<Vec<_>>());
    assert_eq!(s.handoff_codes("e", "flag").await?[0].attempts, 6);
    // Burnt at 8: the 7th strike counts, the 8th burns the code, the rest find none.
    let counts = strikes(6, 8).await?;
    assert_eq!(
        counts.iter().filter(|c| **c == Some(8)).count(),
        1,
        "{counts:?}"
    );
    assert!(
        counts.iter().all(|c| c.is_none_or(|n| n <= 8)),
        "{counts:?}"
    );
    assert!(s.handoff_codes("e", "flag").await?.is_empty());
    Ok(())
}

// ---- the webhook outbox ----

pub async fn a_notification_is_queued_once_per_webhook_and_key(s: Arc<dyn Store>) -> Result<()> {
    s.add_webhook(webhook("e", "wh1", &[])).await?;
    s.add_webhook(webhook("e", "wh2", &[])).await?;
    let first = notification("wh1", "handoff:flag:7", "d-a", at(10));
    assert_eq!(s.enqueue_notifications(vec![first.clone()]).await?, 1);
    // Another node learns the same fact: same key, its own delivery id. Nothing new.
    let again = notification("wh1", "handoff:flag:7", "d-b", at(11));
    assert_eq!(s.enqueue_notifications(vec![again.clone()]).await?, 0);
    let batch = vec![
        again,
        notification("wh2", "handoff:flag:7", "d-c", at(11)),
        notification("wh1", "handoff:flag:8", "d-d", at(11)),
    ];
    assert_eq!(s.enqueue_notifications(batch).await?, 2);
    assert_eq!(s.enqueue_notifications(Vec::new()).await?, 0);
    let queued = s.notifications("e", 100).await?;
    let seen: Vec<(&str, &str, &str)> = queued
        .iter()
        .map(|n| {
            (
                n.webhook_id.as_str(),
                n.key.as_str(),
                n.delivery_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("wh1", "handoff:flag:7", "d-a"),
            ("wh2", "handoff:flag:7", "d-c"),
            ("wh1", "handoff:flag:8", "d-d")
        ]
    );
    assert_eq!(queued[0].created_at, at(10));
    assert_eq!(queued[0].next_at, Some(at(10)), "due at once");
    assert_eq!((queued[0].attempts, queued[0].claimed_until), (0, None));
    assert!(s.notifications("other", 100).await?.is_empty());
    assert_eq!(
        s.notifications("e", 2).await?.len(),
        2,
        "limited, oldest first"
    );
    Ok(())
}

/// A claim is a lease: nobody claims the notification again until it ends (the claimer may
/// be attempting it), and anybody may once it has (the claimer died).
pub async fn a_claim_holds_a_notification_until_its_lease_ends(s: Arc<dyn Store>) -> Result<()> {
    s.add_webhook(webhook("e", "wh1", &[])).await?;
    s.enqueue_notifications(vec![notification("wh1", "k", "d-1", at(10))])
        .await?;
    assert!(
        s.claim_notifications(at(9), at(69), 10).await?.is_empty(),
        "not due yet"
    );
    let claimed = s.claim_notifications(at(10), at(70), 10).await?;
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(
        (c.key.as_str(), c.delivery_id.as_str(), c.attempts),
        ("k", "d-1", 0)
    );
    assert_eq!(c.body, "{\"delivery\":\"d-1\"}");
    assert_eq!(c.url, "http://127.0.0.1:9000/hook");
    assert_eq!(c.secret, "a-secret-of-24-characters");
    assert!(
        !format!("{c:?}").contains(&c.secret),
        "the secret stays out of Debug"
    );
    assert_eq!(
        s.notifications("e", 100).await?[0].claimed_until,
        Some(at(70))
    );
    assert!(
        s.claim_notifications(at(69), at(129), 10).await?.is_empty(),
        "held"
    );
    let again = s.claim_notifications(at(70), at(130), 10).await?;
    assert_eq!(again.len(), 1, "the lease ran out: another node takes it");
    assert_eq!(again[0].seq, c.seq);
    Ok(())
}

pub async fn notifications_are_retried_when_due_and_settled_once(s: Arc<dyn Store>) -> Result<()> {
    s.add_webhook(webhook("e", "wh1", &[])).await?;
    s.enqueue_notifications(vec![
        notification("wh1", "late", "d-late", at(20)),
        notification("wh1", "early", "d-early", at(10)),
    ])
    .await?;
    let claimed = s.claim_notifications(at(30), at(90), 10).await?;
    let order: Vec<&str> = claimed.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(order, ["early", "late"], "oldest due first");
    let (early, late) = (&claimed[0], &claimed[1]);
    // The first attempt at `early` fails: logged, due again at 40 and free to claim then.
    let logged = s
        .settle_notification(
            early.seq,
            attempt_at("d-early", 1, Some(500), at(31)),
            Some(at(40)),
        )
        .await?;
    // `late` is delivered: done.
    s.settle_notification(late.seq, attempt_at("d-late", 1, Some(200), at(31)), None)
        .await?;
    let log = s.deliveries("e", 10).await?;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].seq, logged);
    assert_eq!(
        (log[1].delivery_id.as_str(), log[1].attempt),
        ("d-early", 1)
    );
    assert_eq!(log[1].status, Some(500));
    let queued = s.notifications("e", 100).await?;
    let early_row = queued.iter().find(|n| n.key == "early").expect("queued");
    assert_eq!(
        (
            early_row.attempts,
            early_row.next_at,
            early_row.claimed_until
        ),
        (1, Some(at(40)), None)
    );
    let late_row = queued.iter().find(|n| n.key == "late").expect("queued");
    assert_eq!((late_row.attempts, late_row.next_at), (1, None));
    assert!(s.claim_notifications(at(39), at(99), 10).await?.is_empty());
    let retry = s.claim_notifications(at(40), at(100), 10).await?;
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].key.as_str(), retry[0].attempts), ("early", 1));
    // A node whose claim ran out settles the attempt another node has settled since: its
    // attempt is logged, the notification is not moved back.
    s.settle_notification(
        retry[0].seq,
        attempt_at("d-early", 2, Some(200), at(41)),
        None,
    )
    .await?;
    s.settle_notification(
        retry[0].seq,
        attempt_at("d-early", 2, Some(500), at(42)),
        Some(at(50)),
    )
    .await?;
    let row = s
        .notifications("e", 100)
        .await?
        .into_iter()
        .find(|n| n.key == "early");
    assert_eq!(row.map(|r| (r.attempts, r.next_at)), Some((2, None)));
    assert_eq!(s.deliveries("e", 10).await?.len(), 4);
    assert!(
        s.claim_notifications(at(10_000), at(10_060), 10)
            .await?
            .is_empty(),
        "all done"
    );
    // Settled rows still hold their key: the fact is not queued again.
    assert_eq!(
        s.enqueue_notifications(vec![notification("wh1", "early", "d-x", at(60))])
            .await?,
        0
    );
    Ok(())
}

/// Several workers (nodes) claiming at once: each notification goes to exactly one of them.
pub async fn concurrent_claims_never_share_a_notification(s: Arc<dyn Store>) -> Result<()> {
    s.add_webhook(webhook("e", "wh1", &[])).await?;
    let queued: Vec<NewNotification> = (0..24)
        .map(|i| notification("wh1", &format!("k{i}"), &format!("d{i}"), at(i)))
        .collect();
    s.enqueue_notifications(queued).await?;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.claim_notifications(at(100), at(160), 8).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let claimed = joined(task.await)??;
        assert!(claimed.len() <= 8);
        seqs.extend(claimed.into_iter().map(|c| c.seq));
    }
    let total = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), total, "a notification was claimed twice");
    assert_eq!(total, 24, "every due notification was claimed");
    Ok(())
}

// ---- engine checkpoints ----

pub async fn one_engine_checkpoint_per_event_the_newest_plan_version_wins(
    s: Arc<dyn Store>,
) -> Result<()> {
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

// ---- the change feed ----

/// Reads the whole feed after `after`, in pages of `page`.
async fn whole_feed(s: &dyn Store, after: i64, page: usize) -> Result<Vec<crate::Change>> {
    let mut all = Vec::new();
    let mut cursor = after;
    loop {
        let changes = s.changes_since(cursor, page).await?;
        assert!(changes.len() <= page);
        let Some(last) = changes.last() else {
            return Ok(all);
        };
        cursor = last.seq;
        all.extend(changes);
    }
}

pub async fn the_change_feed_carries_every_input_in_commit_order(s: Arc<dyn Store>) -> Result<()> {
    assert!(s.changes_since(0, 10).await?.is_empty());
    assert_eq!(*s.subscribe().borrow(), 0);

    s.put_plan("e", r#"{"v":1}"#, "p1", at(0)).await?;
    s.add_device(device("e", "moto", "tok")).await?;
    s.add_webhook(webhook("e", "wh1", &["handoff"])).await?;
    s.insert_pings(vec![ping("e", "moto", at(2)), ping("e", "moto", at(1))])
        .await?;
    s.append_custody(
        "e",
        custody("flag", r#"{"kind":"handoff"}"#, "h0", "p1"),
        at(3),
    )
    .await?;
    let shift = custody("flag", r#"{"kind":"shift","shift_s":300}"#, "h1", "h0");
    s.append_custody_many("e", vec![shift], at(4)).await?;
    s.put_plan("e", r#"{"v":2}"#, "p2", at(5)).await?;
    s.insert_pings(vec![ping("other", "moto", at(6))]).await?;
    // Not inputs: neither is in the feed.
    s.log_delivery(delivery("e", 1, Some(200))).await?;
    s.put_engine_checkpoint(engine_checkpoint("e", 2, 1, b"state"))
        .await?;

    let feed = whole_feed(&*s, 0, 100).await?;
    let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let shape: Vec<(ChangeKind, &str)> = feed.iter().map(|c| (c.kind(), c.event_id())).collect();
    assert_eq!(
        shape,
        [
            (ChangeKind::Plan, "e"),
            (ChangeKind::Device, "e"),
            (ChangeKind::Webhook, "e"),
            (ChangeKind::Ping, "e"),
            (ChangeKind::Custody, "e"),
            (ChangeKind::Custody, "e"),
            (ChangeKind::Plan, "e"),
            (ChangeKind::Ping, "other"),
        ]
    );
    let last = seqs[seqs.len() - 1];
    // Each carries its row, as the other reads give it.
    let ChangeRow::Plan(plan) = &feed[0].row else {
        panic!("{:?}", feed[0])
    };
    assert_eq!((plan.version, plan.plan_hash.as_str()), (1, "p1"));
    let ChangeRow::Device(d) = &feed[1].row else {
        panic!("{:?}", feed[1])
    };
    assert_eq!(Some(d), s.device_by_token_hash("tok").await?.as_ref());
    let ChangeRow::Webhook(w) = &feed[2].row else {
        panic!("{:?}", feed[2])
    };
    assert_eq!(w, &s.webhooks("e").await?[0]);
    // The two pings of one write are one change, in arrival order.
    let pings = s.pings_after("e", 0, 10).await?;
    assert_eq!(pings.len(), 2);
    assert_eq!(feed[3].row, ChangeRow::Pings(pings));
    let log = s.custody("e", "flag").await?;
    assert_eq!(feed[4].row, ChangeRow::Custody(log[0].clone()));
    let ChangeRow::Custody(shift) = &feed[5].row else {
        panic!("{:?}", feed[5])
    };
    assert!(shift.entry_json.contains("shift"), "{shift:?}");
    assert_eq!(shift, &log[1]);
    let ChangeRow::Plan(plan) = &feed[6].row else {
        panic!("{:?}", feed[6])
    };
    assert_eq!((plan.version, plan.plan_json.as_str()), (2, r#"{"v":2}"#));

    assert_eq!(*s.subscribe().borrow(), last, "the newest change");
    assert!(s.changes_since(last, 10).await?.is_empty());
    Ok(())
}

pub async fn the_change_feed_pages_and_leaves_out_what_was_not_stored(
    s: Arc<dyn Store>,
) -> Result<()> {
    s.add_device(device("e", "moto", "tok")).await?;
    s.append_custody("e", custody("flag", "{}", "h0", "plan"), at(0))
        .await?;
    let before = s.changes_since(0, 100).await?.len();
    // A duplicate ping, a refused device, a stale handoff, a refused shift, a bad batch:
    // nothing stored, nothing in the feed.
    s.insert_pings(vec![ping("e", "moto", at(1))]).await?;
    s.insert_pings(vec![ping("e", "moto", at(1))]).await?;
    assert!(s.add_device(device("e", "moto", "tok2")).await.is_err());
    let stale = custody("flag", "{}", "h1", "plan");
    assert!(s.append_custody("e", stale, at(2)).await.is_err());
    let many = vec![
        custody("flag", "{}", "h1", "h0"),
        custody("flag", "{}", "h2", "stale"),
    ];
    assert!(s.append_custody_many("e", many, at(2)).await.is_err());
    let mut bad = ping("e", "moto", at(9));
    bad.ping.lon = f64::INFINITY;
    assert!(s.insert_pings(vec![bad]).await.is_err());
    let after = s.changes_since(0, 100).await?;
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(after[before].kind(), ChangeKind::Ping);

    // One write, pings of two events taking turns (and a duplicate between two of one event):
    // one change per run of one event, 30 in all.
    let batch = (10..40)
        .map(|k| ping(if k % 2 == 0 { "e" } else { "f" }, "moto", at(k)))
        .chain([ping("f", "moto", at(39)), ping("f", "moto", at(40))])
        .collect();
    s.insert_pings(batch).await?;
    let all = whole_feed(&*s, 0, 1_000).await?;
    assert_eq!(all.len(), before + 1 + 30);
    let sizes: Vec<(&str, usize)> = all[before + 1..]
        .iter()
        .map(|c| match &c.row {
            ChangeRow::Pings(p) => (c.event_id(), p.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut expected: Vec<(&str, usize)> = (10..39)
        .map(|k| (if k % 2 == 0 { "e" } else { "f" }, 1))
        .collect();
    expected.push(("f", 2));
    assert_eq!(sizes, expected);
    for page in [1, 7, 31] {
        assert_eq!(whole_feed(&*s, 0, page).await?, all, "pages of {page}");
    }
    // From the middle on.
    let mid = all[10].seq;
    assert_eq!(whole_feed(&*s, mid, 4).await?, all[11..]);
    Ok(())
}

pub async fn subscribe_wakes_on_every_commit(s: Arc<dyn Store>) -> Result<()> {
    let wait = Duration::from_secs(10);
    let mut feed = s.subscribe();
    let start = *feed.borrow_and_update();
    let writer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.put_plan("e", "{}", "p1", at(0)).await })
    };
    tokio::time::timeout(wait, feed.changed())
        .await
        .map_err(|_| StoreError::Task("no wake-up after a plan".to_owned()))?
        .map_err(|_| StoreError::Closed)?;
    joined(writer.await)??;
    let newest = *feed.borrow_and_update();
    assert!(newest > start);
    let changes = s.changes_since(start, 10).await?;
    assert_eq!(changes.last().map(|c| c.seq), Some(newest));

    // Every kind of write wakes it, and the woken reader finds the row.
    for step in 0..4 {
        match step {
            0 => s.add_device(device("e", "moto", "tok")).await?,
            1 => {
                s.insert_pings(vec![ping("e", "moto", at(1))]).await?;
            }
            2 => {
                s.append_custody("e", custody("flag", "{}", "h0", "p1"), at(2))
                    .await?;
            }
            _ => s.add_webhook(webhook("e", "wh1", &[])).await?,
        }
        tokio::time::timeout(wait, feed.changed())
            .await
            .map_err(|_| StoreError::Task(format!("no wake-up after write {step}")))?
            .map_err(|_| StoreError::Closed)?;
        let seen = *feed.borrow_and_update();
        let page = s.changes_since(seen - 1, 10).await?;
        assert_eq!(page.first().map(|c| c.seq), Some(seen), "step {step}");
    }
    // A refused write commits nothing new: no wake-up promising a change.
    let newest = *feed.borrow_and_update();
    assert!(s.add_device(device("e", "moto", "tok")).await.is_err());
    assert_eq!(s.changes_since(newest, 10).await?, []);
    assert_eq!(*s.subscribe().borrow(), newest);
    Ok(())
}
