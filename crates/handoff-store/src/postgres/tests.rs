//! Tests of the PostgreSQL store against a real server: the SQLite store's behavioural tests
//! run again here (same inputs, same outcomes), then what only a shared server has (writers
//! racing for one custody step or one plan version, a reader paging while writers commit,
//! the database refusing edits of facts). Each test gets a fresh database ([`TestDatabase`]);
//! without `HANDOFF_TEST_PG` it says it was skipped and passes. The tests of the URL and of an
//! unreachable server need no server and always run.

use std::collections::BTreeSet;
use std::sync::Arc;

use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use sqlx_core::query::query;
use sqlx_core::row::Row;

use super::testing::TestDatabase;
use super::{PostgresStore, migrations};
use crate::error::{Result, StoreError};
use crate::{
    EngineCheckpoint, Inserted, NewCustody, NewDelivery, NewDevice, NewPing, NewWebhook, Store,
};

/// A fresh database and a store on it, or `None` (skipped) without `HANDOFF_TEST_PG`.
async fn fresh(test: &str) -> Result<Option<(TestDatabase, PostgresStore)>> {
    let Some(db) = TestDatabase::create(&format!("postgres::tests::{test}")).await? else {
        return Ok(None);
    };
    let store = db.store().await?;
    Ok(Some((db, store)))
}

/// The body runs with `db: TestDatabase` and `s: PostgresStore` on it, a fresh database that is
/// dropped after; without `HANDOFF_TEST_PG` the test returns at once (skipped).
macro_rules! on_postgres {
    ($test:ident, |$db:ident, $s:ident| $body:block) => {
        let Some(($db, $s)) = fresh(stringify!($test)).await? else {
            return Ok(());
        };
        $body
    };
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

fn task_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Task(e.to_string())
}

// ---- the SQLite store's behaviour, on PostgreSQL ----

#[tokio::test]
async fn plan_versions_increment_per_event() -> Result<()> {
    on_postgres!(plan_versions_increment_per_event, |_db, s| {
        assert_eq!(s.plan("flag-handover").await?, None);
        assert_eq!(s.put_plan("flag-handover", r#"{"v":1}"#, "h1").await?, 1);
        assert_eq!(s.put_plan("flag-handover", r#"{"v":2}"#, "h2").await?, 2);
        assert_eq!(s.put_plan("concert", r#"{"c":1}"#, "c1").await?, 1);
        let latest = s
            .plan("flag-handover")
            .await?
            .expect("the event has a plan");
        assert_eq!(
            (
                latest.version,
                latest.plan_json.as_str(),
                latest.plan_hash.as_str()
            ),
            (2, r#"{"v":2}"#, "h2")
        );
        let summary: Vec<_> = s
            .latest_plans()
            .await?
            .into_iter()
            .map(|p| (p.event_id, p.version, p.plan_hash))
            .collect();
        assert_eq!(
            summary,
            [
                ("concert".to_owned(), 1, "c1".to_owned()),
                ("flag-handover".to_owned(), 2, "h2".to_owned())
            ]
        );
    });
    Ok(())
}

#[tokio::test]
async fn device_registered_twice_is_a_conflict() -> Result<()> {
    on_postgres!(device_registered_twice_is_a_conflict, |_db, s| {
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
            matches!(&same_token, Err(StoreError::Conflict(m)) if m.contains("token hash")),
            "{same_token:?}"
        );
        s.add_device(device("concert", "cruise-moto", "cc")).await?;
        assert_eq!(s.devices("flag-handover").await?.len(), 1);
    });
    Ok(())
}

#[tokio::test]
async fn devices_are_found_by_token_hash_with_relay_and_speed_unit() -> Result<()> {
    on_postgres!(
        devices_are_found_by_token_hash_with_relay_and_speed_unit,
        |_db, s| {
            let mut moto = device("flag-handover", "moto", "hash-1");
            moto.speed_unit = Some(SpeedUnit::Mps);
            moto.relay_id = Some("team-a".to_owned());
            s.add_device(moto).await?;
            s.add_device(device("flag-handover", "heli", "hash-2"))
                .await?;

            let found = s.device_by_token_hash("hash-2").await?.expect("registered");
            assert_eq!(
                (
                    found.event_id.as_str(),
                    found.device_id.as_str(),
                    found.carrier.as_str()
                ),
                ("flag-handover", "heli", "Tom Cruise")
            );
            assert_eq!((found.relay_id, found.speed_unit), (None, None));
            let moto = s.device_by_token_hash("hash-1").await?.expect("registered");
            assert_eq!(moto.relay_id.as_deref(), Some("team-a"));
            assert_eq!(moto.speed_unit, Some(SpeedUnit::Mps));
            assert!(!format!("{moto:?}").contains("hash-1"), "redacted in Debug");
            assert_eq!(s.device_by_token_hash("nope").await?, None);
            let ids: Vec<_> = s
                .devices("flag-handover")
                .await?
                .into_iter()
                .map(|d| d.device_id)
                .collect();
            assert_eq!(ids, ["heli", "moto"]);
        }
    );
    Ok(())
}

#[tokio::test]
async fn duplicate_pings_are_detected_within_and_across_batches() -> Result<()> {
    on_postgres!(
        duplicate_pings_are_detected_within_and_across_batches,
        |_db, s| {
            let mut resent = ping("flag-handover", "moto", at(1));
            resent.ping.lon = 3.0; // a resend that differs: the first one stays
            let first = s
                .insert_pings(vec![
                    ping("flag-handover", "moto", at(1)),
                    ping("flag-handover", "moto", at(2)),
                    resent,                               // resent within the batch
                    ping("flag-handover", "heli", at(1)), // same time, other device
                    ping("concert", "moto", at(1)),       // same device id, other event
                ])
                .await?;
            let first = seqs(&first);
            assert_eq!(first.iter().filter(|s| s.is_none()).count(), 1);
            assert_eq!(first[2], None);
            assert!(
                first[0] < first[1] && first[1] < first[3],
                "arrival order: {first:?}"
            );

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
            let kept = s
                .pings_for_device("flag-handover", "moto", None, Some(at(2)))
                .await?;
            assert_eq!(
                kept[0].ping.lon, 2.36015,
                "the first of the batch is the one kept"
            );
            assert!(s.insert_pings(Vec::new()).await?.is_empty());
        }
    );
    Ok(())
}

#[tokio::test]
async fn pings_come_back_in_device_time_order_with_every_field() -> Result<()> {
    on_postgres!(
        pings_come_back_in_device_time_order_with_every_field,
        |_db, s| {
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
            assert_eq!(all[3].ping, bare.ping);
            assert_eq!(all[3].received_at, bare.received_at);
            assert_eq!(all[1].ping, ping("flag-handover", "moto", at(10)).ping);

            let window = s
                .pings_for_device("flag-handover", "moto", Some(at(10)), Some(at(30)))
                .await?;
            let times: Vec<_> = window.iter().map(|p| p.ping.t).collect();
            assert_eq!(times, [at(10)], "from is inclusive, to exclusive");
            assert_eq!(
                s.pings_for_device("flag-handover", "moto", None, None)
                    .await?
                    .len(),
                3
            );
            assert!(s.pings("concert").await?.is_empty());
        }
    );
    Ok(())
}

#[tokio::test]
async fn non_finite_coordinates_are_refused_and_a_nan_measurement_is_no_value() -> Result<()> {
    on_postgres!(
        non_finite_coordinates_are_refused_and_a_nan_measurement_is_no_value,
        |_db, s| {
            let mut bad = ping("flag-handover", "moto", at(1));
            bad.ping.lat = f64::NAN;
            let result = s
                .insert_pings(vec![ping("flag-handover", "moto", at(0)), bad])
                .await;
            assert!(
                matches!(&result, Err(StoreError::Invalid(m)) if m.contains("ping 1")),
                "{result:?}"
            );
            assert_eq!(s.ping_count().await?, 0);
            // SQLite keeps a NaN as NULL: so does this backend.
            let mut nan = ping("flag-handover", "moto", at(2));
            nan.ping.acc_m = Some(f64::NAN);
            s.insert_pings(vec![nan]).await?;
            assert_eq!(s.pings("flag-handover").await?[0].ping.acc_m, None);
        }
    );
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
async fn custody_chain_appends_in_order_and_refuses_a_stale_prev_hash() -> Result<()> {
    on_postgres!(
        custody_chain_appends_in_order_and_refuses_a_stale_prev_hash,
        |_db, s| {
            let first = s
                .append_custody("flag-handover", "flag", "{\"n\":0}", "h0", "plan-hash")
                .await?;
            let second = s
                .append_custody("flag-handover", "flag", "{\"n\":1}", "h1", "h0")
                .await?;
            assert!(second > first);
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
            let cycle = s
                .append_custody("flag-handover", "flag", "{}", "h0", "h1")
                .await;
            assert!(matches!(cycle, Err(StoreError::Conflict(_))), "{cycle:?}");
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
        }
    );
    Ok(())
}

#[tokio::test]
async fn entries_for_several_relays_land_together_or_not_at_all() -> Result<()> {
    on_postgres!(
        entries_for_several_relays_land_together_or_not_at_all,
        |_db, s| {
            for relay in ["a", "b"] {
                s.append_custody("race", relay, "{}", &format!("{relay}0"), "plan")
                    .await?;
            }
            let entry = |relay: &str, prev: &str| NewCustody {
                relay_id: relay.to_owned(),
                entry_json: "{\"kind\":\"shift\"}".to_owned(),
                hash: format!("{relay}1"),
                prev_hash: prev.to_owned(),
            };
            let refused = s
                .append_custody_many("race", vec![entry("a", "a0"), entry("b", "stale")])
                .await;
            assert!(
                matches!(refused, Err(StoreError::Conflict(_))),
                "{refused:?}"
            );
            assert_eq!(s.custody("race", "a").await?.len(), 1);
            assert_eq!(s.custody("race", "b").await?.len(), 1);
            let stored = s
                .append_custody_many("race", vec![entry("a", "a0"), entry("b", "b0")])
                .await?;
            assert!(stored[0] < stored[1], "{stored:?}");
            assert_eq!(s.custody("race", "a").await?.len(), 2);
            assert_eq!(s.custody("race", "b").await?.len(), 2);
        }
    );
    Ok(())
}

#[tokio::test]
async fn pings_page_in_arrival_order() -> Result<()> {
    on_postgres!(pings_page_in_arrival_order, |_db, s| {
        let batch: Vec<NewPing> = (0..5).rev().map(|k| ping("race", "a1", at(k))).collect();
        s.insert_pings(batch).await?;
        let first = s.pings_after("race", 0, 3).await?;
        assert_eq!(first.len(), 3);
        let rest = s.pings_after("race", first[2].seq, 3).await?;
        assert_eq!(rest.len(), 2);
        let seqs: Vec<i64> = first.iter().chain(&rest).map(|p| p.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(
            first[0].ping.t > first[1].ping.t,
            "arrival order, not device time"
        );
        assert!(s.pings_after("other", 0, 10).await?.is_empty());
    });
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
async fn webhooks_come_back_in_order_and_a_taken_id_or_comma_kind_is_refused() -> Result<()> {
    on_postgres!(
        webhooks_come_back_in_order_and_a_taken_id_or_comma_kind_is_refused,
        |_db, s| {
            s.add_webhook(webhook("flag-handover", "wh1", &[])).await?;
            s.add_webhook(webhook("flag-handover", "wh0", &["overdue", "off_route"]))
                .await?;
            s.add_webhook(webhook("race", "wh1", &["silent"])).await?;
            let hooks = s.webhooks("flag-handover").await?;
            let ids: Vec<&str> = hooks.iter().map(|h| h.webhook_id.as_str()).collect();
            assert_eq!(ids, ["wh1", "wh0"], "in the order they were added");
            assert!(hooks[0].kinds.is_empty() && hooks[0].wants("silent"));
            assert_eq!(hooks[1].kinds, ["overdue", "off_route"]);
            assert_eq!(hooks[1].secret, "a-secret-of-24-characters");
            assert_eq!(hooks[1].url, "http://127.0.0.1:9000/hook");
            assert!(!format!("{hooks:?}").contains("a-secret-of-24-characters"));

            let again = s.add_webhook(webhook("race", "wh1", &[])).await;
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
            let comma = s.add_webhook(webhook("race", "wh2", &["a,b"])).await;
            assert!(matches!(comma, Err(StoreError::Invalid(_))), "{comma:?}");
            assert_eq!(s.webhooks("race").await?.len(), 1);
            assert!(s.webhooks("nobody").await?.is_empty());
        }
    );
    Ok(())
}

#[tokio::test]
async fn deliveries_come_back_newest_first_per_event_and_limited() -> Result<()> {
    on_postgres!(
        deliveries_come_back_newest_first_per_event_and_limited,
        |_db, s| {
            let first = s.log_delivery(delivery("e", 1, None)).await?;
            s.log_delivery(delivery("other", 1, Some(200))).await?;
            let second = s.log_delivery(delivery("e", 2, Some(500))).await?;
            let third = s.log_delivery(delivery("e", 3, Some(204))).await?;
            assert!(first < second && second < third);
            let all = s.deliveries("e", 10).await?;
            let attempts: Vec<u32> = all.iter().map(|d| d.attempt).collect();
            assert_eq!(attempts, [3, 2, 1], "newest first");
            assert_eq!((all[0].seq, all[0].status), (third, Some(204)));
            assert!(all[0].succeeded() && !all[1].succeeded() && !all[2].succeeded());
            assert_eq!(all[2].status, None);
            assert_eq!(all[2].error.as_deref(), Some("connection refused"));
            assert_eq!(all[2].at, at(1));
            assert_eq!(
                (all[2].delivery_id.as_str(), all[2].kind.as_str()),
                ("d-1", "handoff")
            );
            assert_eq!(s.deliveries("e", 2).await?.len(), 2);
            assert_eq!(s.deliveries("other", 10).await?.len(), 1);
        }
    );
    Ok(())
}

fn engine_checkpoint(event: &str, version: i64, cursor: i64, state: &[u8]) -> EngineCheckpoint {
    EngineCheckpoint {
        event_id: event.to_owned(),
        plan_version: version,
        plan_hash: format!("hash-{version}"),
        format: u32::MAX,
        cursor,
        created_at: at(cursor),
        state: state.to_vec(),
    }
}

#[tokio::test]
async fn one_engine_checkpoint_per_event_the_newest_plan_version_wins() -> Result<()> {
    on_postgres!(
        one_engine_checkpoint_per_event_the_newest_plan_version_wins,
        |_db, s| {
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
                "replaced, bytes and format kept exactly"
            );
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
        }
    );
    Ok(())
}

#[tokio::test]
async fn reconnecting_keeps_everything() -> Result<()> {
    on_postgres!(reconnecting_keeps_everything, |db, s| {
        s.put_plan("flag-handover", "{}", "p1").await?;
        s.add_device(device("flag-handover", "moto", "tok")).await?;
        s.insert_pings(vec![
            ping("flag-handover", "moto", at(1)),
            ping("flag-handover", "moto", at(2)),
        ])
        .await?;
        s.append_custody("flag-handover", "flag", "{}", "h0", "p1")
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
        s.append_custody("flag-handover", "flag", "{}", "h1", "h0")
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
        s.put_plan("e", "{}", "p").await?;
        s.add_device(device("e", "moto", "tok")).await?;
        s.insert_pings(vec![ping("e", "moto", at(1))]).await?;
        s.append_custody("e", "flag", "{}", "h0", "p").await?;
        s.add_webhook(webhook("e", "wh1", &[])).await?;
        s.log_delivery(delivery("e", 1, Some(200))).await?;
        for table in [
            "plans",
            "devices",
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
async fn the_store_is_usable_as_a_trait_object() -> Result<()> {
    on_postgres!(the_store_is_usable_as_a_trait_object, |_db, s| {
        let shared: Arc<dyn Store> = Arc::new(s);
        assert_eq!(shared.put_plan("e", "{}", "h").await?, 1);
        assert_eq!(shared.latest_plans().await?.len(), 1);
    });
    Ok(())
}

#[tokio::test]
async fn the_first_admin_token_hash_kept_wins() -> Result<()> {
    on_postgres!(the_first_admin_token_hash_kept_wins, |_db, s| {
        assert_eq!(s.admin_token_hash().await?, None);
        assert_eq!(s.keep_admin_token_hash("first").await?, "first");
        assert_eq!(s.keep_admin_token_hash("second").await?, "first");
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
            s.append_custody("race", "team-1", "{}", "h0", "plan")
                .await?;
            // Sixteen nodes record the same handoff at once (from h0), and sixteen the first entry
            // of a new chain, each committing to a plan hash of its own.
            let mut tasks = Vec::new();
            for i in 0..16 {
                let (next, first) = (s.clone(), s.clone());
                tasks.push(tokio::spawn(async move {
                    next.append_custody("race", "team-1", "{}", &format!("h1-{i}"), "h0")
                        .await
                }));
                tasks.push(tokio::spawn(async move {
                    first
                        .append_custody(
                            "race",
                            "team-2",
                            "{}",
                            &format!("g0-{i}"),
                            &format!("p{i}"),
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
async fn writers_racing_for_plan_versions_each_get_their_own() -> Result<()> {
    on_postgres!(
        writers_racing_for_plan_versions_each_get_their_own,
        |_db, s| {
            let tasks: Vec<_> = (0..12)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move { s.put_plan("e", "{}", &format!("h{i}")).await })
                })
                .collect();
            let mut versions = BTreeSet::new();
            for task in tasks {
                versions.insert(task.await.map_err(task_error)??);
            }
            assert_eq!(
                versions,
                (1..=12).collect(),
                "every version once, none skipped"
            );
            assert_eq!(s.plan("e").await?.map(|p| p.version), Some(12));
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
            // cursor as the live engine does.
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
            let mut writers_done = false;
            loop {
                let page = s.pings_after("race", cursor, 100).await?;
                for p in &page {
                    assert!(seen.insert(p.seq), "seq {} read twice", p.seq);
                    cursor = cursor.max(p.seq);
                }
                if page.is_empty() {
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
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_all_succeed() -> Result<()> {
    on_postgres!(concurrent_inserts_all_succeed, |_db, s| {
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let s = s.clone();
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
            let outcomes = task.await.map_err(task_error)??;
            assert!(outcomes.iter().all(|o| matches!(o, Inserted::New { .. })));
        }
        assert_eq!(s.ping_count().await?, 200);
        let row = query("SELECT COUNT(DISTINCT seq) FROM pings")
            .fetch_one(s.pool())
            .await?;
        assert_eq!(row.try_get::<i64, _>(0)?, 200);
    });
    Ok(())
}

// ---- no server needed ----

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() -> Result<()> {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let refused = PostgresStore::connect("postgres://handoff:s3cret-pw@127.0.0.1:1/handoff").await;
    match refused {
        Err(e @ StoreError::Connect { .. }) => {
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("127.0.0.1:1/handoff"), "{shown}");
            assert!(!shown.contains("s3cret-pw"), "{shown}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    Ok(())
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
