//! Several nodes on one PostgreSQL (only when `HANDOFF_TEST_PG` is set; skipped with a line
//! otherwise): each `handoff serve` follows the store's change feed, so what one node is sent
//! reaches every node's viewers, and a handoff raced on two nodes wins exactly once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    CARRIERS, DEVICES, EVENT, PLAN, RUN, STAGE, Server, SseReader, TestClock, TestDb, as_admin, at,
    plan, planned_speed_mps, walk,
};

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

#[tokio::test]
async fn one_handoff_raced_on_two_nodes_is_recorded_once() -> Result<()> {
    let Some((a, b)) = two_nodes().await? else {
        return Ok(());
    };
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
        let mut ok = false;
        for _ in 0..100 {
            let live = s.live(true).await?;
            if live["relays"][0]["current_leg"] == json!(RUN) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ensure!(ok, "a node does not see the handoff");
    }
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
