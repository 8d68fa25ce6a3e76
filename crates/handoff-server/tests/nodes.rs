//! Several nodes on one PostgreSQL (only when `HANDOFF_TEST_PG` is set; skipped with a line
//! otherwise): each `handoff serve` follows the store's change feed, so what one node is sent
//! reaches every node's viewers, and a handoff raced on two nodes wins exactly once. Codes and
//! webhook deliveries live in the database: a giver's code from one node is accepted on the
//! other, wrong codes on both add up, and a fact both nodes learn of (a raced handoff, an alert
//! each raises) reaches a webhook once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    BIKE, CARRIERS, DEVICES, EVENT, PLAN, RUN, STAGE, Server, SseReader, TestClock, TestDb, answer,
    as_admin, at, plan, planned_speed_mps, route, walk,
};
use crate::webhooks::{Receiver, SECRET};

const HANDOFFS: &str = "/api/v1/events/paris/relays/flag/handoffs";

/// Two servers on one new PostgreSQL schema, the plan uploaded and the devices registered on
/// the first; `None` when the tests do not run against PostgreSQL.
async fn two_nodes() -> Result<Option<(Server, Server)>> {
    let db = TestDb::new().await?;
    if !matches!(*db, TestDb::Postgres(_)) {
        eprintln!("several nodes: skipped (they share a PostgreSQL; set HANDOFF_TEST_PG)");
        return Ok(None);
    }
    let clock = TestClock::new(at(-60));
    let mut a = Server::open(Arc::clone(&db), clock.clone()).await?;
    a.upload(EVENT, PLAN).await?;
    for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
        let token = a.device(device, carrier).await?;
        a.tokens.push(token);
    }
    let mut b = Server::open(db, clock).await?;
    b.tokens.clone_from(&a.tokens);
    Ok(Some((a, b)))
}

#[tokio::test]
async fn a_ping_sent_to_one_node_reaches_the_other_nodes_stream_within_a_second() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    a.tick_at(at(130)).await;
    b.tick_at(at(130)).await;
    // The stage ends on both nodes (each node's clock); the runner is then on the course.
    let mut sse = SseReader::new(
        b.http
            .get(b.url(&format!("/api/v1/events/{EVENT}/stream")))
            .timeout(Duration::from_secs(20))
            .send()
            .await?,
    );
    ensure!(
        sse.next(Duration::from_secs(3))
            .await?
            .context("a snapshot")?
            .event
            == "snapshot"
    );
    let p = plan();
    let f = walk(&p, RUN, at(121), planned_speed_mps(&p, RUN), 4, None)[2];
    let sent = std::time::Instant::now();
    a.send(&a.tokens[RUN].clone(), &[f.json()]).await?;
    let seen = sse.until("position", Duration::from_secs(1)).await?;
    let took = sent.elapsed();
    let pos = &seen.last().context("a position")?.data;
    ensure!(pos["t"] == json!(f.t.to_string()), "{pos}");
    ensure!(took < Duration::from_secs(1), "{took:?}");
    Ok(())
}

/// Waits (up to 2 s) until `s` sees the flag on leg `leg`, handed on by a recorded handoff:
/// the other node's entry reached its custody chain.
async fn wait_for_leg(s: &Server, leg: usize) -> Result<()> {
    for _ in 0..100 {
        let live = s.live(true).await?;
        let relay = &live["relays"][0];
        if relay["current_leg"] == json!(leg) && relay["legs"][leg - 1]["verified"] == true {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the node does not see the flag handed on to leg {leg}")
}

/// Registers a webhook for `kinds` on `on`, and waits (up to 5 s) until `other` knows it too:
/// the webhook reached it through the change feed.
async fn webhook_on_both(on: &Server, other: &Server, url: &str, kinds: &[&str]) -> Result<()> {
    for s in [on, other] {
        s.state.webhooks.set_backoff(Duration::from_millis(20));
        s.state.webhooks.allow_private_targets(true);
    }
    let (status, body) = as_admin(
        on.http
            .post(on.url(&format!("/api/v1/events/{EVENT}/webhooks")))
            .json(&json!({ "url": url, "secret": SECRET, "kinds": kinds })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    for _ in 0..250 {
        if kinds
            .iter()
            .all(|k| other.state.webhooks.subscribed(EVENT, k).len() == 1)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the other node never learnt of the webhook")
}

/// The outbox of the event once its notifications are all done (up to 5 s).
async fn settled_outbox(s: &Server) -> Result<Vec<handoff_store::QueuedNotification>> {
    for _ in 0..250 {
        let queued = s.state.store.notifications(EVENT, 100).await?;
        if !queued.is_empty() && queued.iter().all(|n| n.next_at.is_none()) {
            return Ok(queued);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "the outbox never settled: {:?}",
        s.state.store.notifications(EVENT, 100).await?
    )
}

/// The runner's code, asked for on `s`.
async fn code(s: &Server) -> Result<String> {
    let (status, body) = answer(
        s.http
            .post(s.url(&format!("{HANDOFFS}/code")))
            .bearer_auth(&s.tokens[RUN]),
    )
    .await?;
    ensure!(status == StatusCode::OK, "code: {status} {body}");
    Ok(body["code"].as_str().unwrap_or_default().to_owned())
}

/// The cyclist enters `code` on `s`, at the exchange.
async fn enter(s: &Server, code: &str) -> Result<(StatusCode, serde_json::Value)> {
    let p = plan();
    let exchange = route(&p, RUN).point_at(route(&p, RUN).length_m());
    answer(
        s.http
            .post(s.url(HANDOFFS))
            .bearer_auth(&s.tokens[BIKE])
            .json(&json!({ "code": code, "position": [exchange.lon, exchange.lat] })),
    )
    .await
}

/// The operator records the handoff from `from_leg` on `s`.
async fn record(s: &Server, from_leg: usize) -> Result<(StatusCode, serde_json::Value)> {
    as_admin(
        s.http
            .post(s.url(HANDOFFS))
            .json(&json!({ "from_leg": from_leg })),
    )
    .await
}

/// Both nodes with the flag on the runner's leg (the stage handed on by the operator on A).
async fn runner_holds_the_flag(a: &Server, b: &Server) -> Result<()> {
    a.tick_at(at(130)).await;
    b.tick_at(at(130)).await;
    let (status, body) = record(a, STAGE).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    wait_for_leg(b, RUN).await
}

#[tokio::test]
async fn a_code_asked_for_on_one_node_is_accepted_on_the_other() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    runner_holds_the_flag(&a, &b).await?;
    let code = code(&a).await?;
    let (status, entry) = enter(&b, &code).await?;
    ensure!(status == StatusCode::CREATED, "{status} {entry}");
    ensure!(entry["evidence"]["method"] == "two_party", "{entry}");
    ensure!(entry["evidence"]["giver_device"] == DEVICES[RUN], "{entry}");
    ensure!(entry["from"]["leg"] == json!(RUN), "{entry}");
    // Used once: on the node that issued it, the same code records nothing more.
    wait_for_leg(&a, BIKE).await?;
    let (status, body) = enter(&a, &code).await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");
    Ok(())
}

#[tokio::test]
async fn wrong_codes_on_two_nodes_add_up_and_the_fifth_burns_the_code() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    runner_holds_the_flag(&a, &b).await?;
    let right = code(&a).await?;
    let wrong = format!("{right}0");
    for (i, s) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (status, body) = enter(s, &wrong).await?;
        ensure!(
            status == StatusCode::CONFLICT && body["error"]["message"] == "wrong code",
            "wrong code {}: {status} {body}",
            i + 1
        );
    }
    let (status, body) = enter(&b, &wrong).await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many attempts")),
        "the fifth wrong code, on either node, burns it: {body}"
    );
    // Burnt for both nodes: the right code now finds nothing to match.
    for s in [&a, &b] {
        let (status, body) = enter(s, &right).await?;
        ensure!(
            status == StatusCode::CONFLICT && body["error"]["code"] == "bad_code",
            "{status} {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_webhook_added_on_one_node_is_called_for_a_handoff_on_the_other() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    let rx = Receiver::start(0).await?;
    webhook_on_both(&a, &b, &rx.url, &["handoff"]).await?;
    b.tick_at(at(100)).await;
    let (status, body) = record(&b, STAGE).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let got = rx.wait_for(1).await?;
    ensure!(got[0].signature_ok && got[0].event == "handoff", "{got:?}");
    ensure!(
        got[0].body["payload"]["entry"]["hash"] == body["hash"],
        "{got:?}"
    );
    let queued = settled_outbox(&b).await?;
    ensure!(queued.len() == 1, "{queued:?}");
    Ok(())
}

#[tokio::test]
async fn one_handoff_raced_on_two_nodes_is_recorded_once() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    // The webhook both nodes notify: the raced handoff reaches it once.
    let rx = Receiver::start(0).await?;
    webhook_on_both(&a, &b, &rx.url, &["handoff"]).await?;
    a.tick_at(at(100)).await;
    b.tick_at(at(100)).await;
    let path = format!("/api/v1/events/{EVENT}/relays/flag/handoffs");
    let body = json!({ "from_leg": STAGE });
    let (ra, rb) = tokio::join!(
        as_admin(a.http.post(a.url(&path)).json(&body)),
        as_admin(b.http.post(b.url(&path)).json(&body)),
    );
    let ((sa, ba), (sb, bb)) = (ra?, rb?);
    let mut statuses = [sa, sb];
    statuses.sort();
    ensure!(
        statuses == [StatusCode::CREATED, StatusCode::CONFLICT],
        "A {sa} {ba}, B {sb} {bb}"
    );
    for s in [&a, &b] {
        let log = s
            .text(&format!("/api/v1/events/{EVENT}/relays/flag/custody"), true)
            .await?;
        let handoffs = log
            .lines()
            .filter(|l| l.contains("\"kind\":\"handoff\""))
            .count();
        ensure!(handoffs == 1, "{handoffs} handoffs in {log}");
    }
    // Both nodes then agree on who holds the flag, and the loser's next handoff links on.
    for s in [&a, &b] {
        wait_for_leg(s, RUN).await?;
    }
    // The winner queued the handoff's notification, the other node (following the feed) the
    // same one again: one row, one delivery.
    let got = rx.wait_for(1).await?;
    let queued = settled_outbox(&a).await?;
    ensure!(queued.len() == 1, "{queued:?}");
    ensure!(queued[0].key == "handoff:flag:1", "{queued:?}");
    let winner = if sa == StatusCode::CREATED { &ba } else { &bb };
    ensure!(
        got[0].body["payload"]["entry"]["hash"] == winner["hash"],
        "{got:?}"
    );
    // A poll of both workers later, still one.
    tokio::time::sleep(handoff_server::webhooks::worker::POLL + Duration::from_millis(300)).await;
    ensure!(rx.got().len() == 1, "{:?}", rx.got());
    let loser = if sa == StatusCode::CREATED { &b } else { &a };
    let (status, body) = as_admin(
        loser
            .http
            .post(loser.url(&path))
            .json(&json!({ "from_leg": RUN })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    Ok(())
}

#[tokio::test]
async fn a_viewer_of_a_restarted_node_misses_no_handoff_once_it_reconnects() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    a.tick_at(at(100)).await;
    b.tick_at(at(100)).await;
    let stream = format!("/api/v1/events/{EVENT}/stream");
    let handoffs = format!("/api/v1/events/{EVENT}/relays/flag/handoffs");
    let mut sse = SseReader::new(
        b.http
            .get(b.url(&stream))
            .timeout(Duration::from_secs(20))
            .send()
            .await?,
    );
    let first = sse
        .next(Duration::from_secs(3))
        .await?
        .context("a snapshot")?;
    ensure!(first.event == "snapshot", "{}", first.event);
    // A handoff recorded on node A reaches node B's viewer, with its id.
    let (status, body) = as_admin(
        a.http
            .post(a.url(&handoffs))
            .json(&json!({ "from_leg": STAGE })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let got = sse.until("handoff", Duration::from_secs(2)).await?;
    let seen = got.last().and_then(|e| e.id.clone()).context("an id")?;
    // Node B goes down; while it is down, node A records the next handoff.
    drop(sse);
    let (db, clock, tokens) = b.stop().await?;
    a.tick_at(at(400)).await;
    let (status, body) = as_admin(
        a.http
            .post(a.url(&handoffs))
            .json(&json!({ "from_leg": RUN })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    // Node B is back; its viewer reconnects saying what it saw, and is sent what it missed.
    let mut b = Server::open(db, clock).await?;
    b.tokens = tokens;
    let mut back = SseReader::new(
        b.http
            .get(b.url(&stream))
            .header("Last-Event-ID", &seen)
            .timeout(Duration::from_secs(20))
            .send()
            .await?,
    );
    let got = back.until("handoff", Duration::from_secs(3)).await?;
    ensure!(got[0].event == "snapshot", "{}", got[0].event);
    let missed = got.last().context("a handoff")?;
    ensure!(missed.data["from_leg"] == json!(RUN), "{:?}", missed.data);
    ensure!(
        missed.id.as_deref().and_then(|i| i.parse::<i64>().ok()) > seen.parse::<i64>().ok(),
        "{:?} after {seen}",
        missed.id
    );
    Ok(())
}

#[tokio::test]
async fn an_alert_both_nodes_raise_reaches_a_webhook_once() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    let rx = Receiver::start(0).await?;
    webhook_on_both(&a, &b, &rx.url, &["overdue"]).await?;
    let mut streams = Vec::new();
    for s in [&a, &b] {
        let mut sse = SseReader::new(
            as_admin_stream(s)
                .timeout(Duration::from_secs(20))
                .send()
                .await?,
        );
        ensure!(
            sse.next(Duration::from_secs(3))
                .await?
                .context("a snapshot")?
                .event
                == "snapshot"
        );
        streams.push(sse);
    }
    // The stage ends on time; the runner's 7 minutes (and 2 of slack) run out at 660 s.
    a.tick_at(at(130)).await;
    b.tick_at(at(130)).await;
    a.tick_at(at(1_000)).await;
    b.tick_at(at(1_000)).await;
    // Each node's engine raises the alert (and `silent`, which the webhook does not want)…
    for sse in &mut streams {
        let mut kinds = Vec::new();
        while !kinds.contains(&json!("overdue")) {
            ensure!(kinds.len() < 2, "alerts {kinds:?}, none overdue");
            let seen = sse.until("alert", Duration::from_secs(3)).await?;
            kinds.push(seen.last().context("an alert")?.data["kind"].clone());
        }
    }
    // …and the webhook gets it once: one row in the outbox, whoever queued it first.
    let got = rx.wait_for(1).await?;
    ensure!(got[0].event == "overdue", "{got:?}");
    ensure!(got[0].body["payload"]["leg"] == json!(RUN), "{got:?}");
    let queued = settled_outbox(&b).await?;
    ensure!(queued.len() == 1, "{queued:?}");
    ensure!(queued[0].key.starts_with("overdue:flag:1:"), "{queued:?}");
    // Later ticks on both nodes raise nothing new.
    a.tick_at(at(1_001)).await;
    b.tick_at(at(1_001)).await;
    tokio::time::sleep(handoff_server::webhooks::worker::POLL + Duration::from_millis(300)).await;
    ensure!(rx.got().len() == 1, "{:?}", rx.got());
    ensure!(b.state.store.notifications(EVENT, 100).await?.len() == 1);
    Ok(())
}

/// `GET …/stream` with the admin token.
fn as_admin_stream(s: &Server) -> reqwest::RequestBuilder {
    s.http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .bearer_auth(crate::common::ADMIN)
}

#[tokio::test]
async fn a_token_revoked_on_one_node_is_refused_by_the_other_within_a_second() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
    a.tick_at(at(130)).await;
    b.tick_at(at(130)).await;
    let p = plan();
    // A fix every 4 s: enough for one request every 20 ms for the second B may take.
    let fixes = walk(&p, RUN, at(121), planned_speed_mps(&p, RUN), 4, None);
    let old = a.tokens[RUN].clone();
    b.send(&old, &[fixes[0].json()]).await?;
    let path = format!("/api/v1/events/{EVENT}/devices/{}/token", DEVICES[RUN]);

    // Revoked on A: B, which has the old token in its cache, refuses it once the feed says so.
    let (status, body) = as_admin(a.http.delete(a.url(&path))).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    let revoked = std::time::Instant::now();
    let mut i = 1;
    loop {
        let (status, _) = b
            .post_pings(
                Some(&old),
                Some("application/json"),
                json!([fixes[i].json()]).to_string(),
            )
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        ensure!(status == StatusCode::OK, "{status}");
        ensure!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still takes the revoked token"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Re-issued on A: B takes the new token at once (it asks the store) and never the old.
    let (status, body) = as_admin(a.http.post(a.url(&path))).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    let new = body["token"].as_str().context("a token")?.to_owned();
    b.send(&new, &[fixes[i + 1].json()]).await?;
    let (status, _) = b
        .post_pings(
            Some(&old),
            Some("application/json"),
            json!([fixes[i + 2].json()]).to_string(),
        )
        .await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status}");
    Ok(())
}
