//! Following the store's change feed (what a node on a shared PostgreSQL does): pings and
//! custody entries another node commits reach this node's engine, its streams and its chains,
//! so its spectators see them and its next handoff links to them. Here "another node" writes
//! straight into the store under the running server.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use handoff_core::custody::{Entry, Evidence, Holder, Kind, Method};
use handoff_core::ping::Ping;
use handoff_store::{NewCustody, NewPing};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    DEVICES, EVENT, RUN, STAGE, Server, SseReader, as_admin, at, flag, plan, planned_speed_mps,
    walk,
};

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    for _ in 0..200 {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{what}: not within 5 s")
}

#[tokio::test]
async fn what_another_node_commits_reaches_this_nodes_engine_streams_and_chains() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    let follower = tokio::spawn(handoff_server::follow::run(
        std::sync::Arc::clone(&s.state),
        s.state.feed_start,
    ));
    let mut sse = SseReader::new(
        s.http
            .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
            .timeout(Duration::from_secs(20))
            .send()
            .await?,
    );
    ensure!(
        sse.next(Duration::from_secs(2))
            .await?
            .context("a snapshot")?
            .event
            == "snapshot"
    );

    // Another node records the stage → run handoff, linked to the head of the chain.
    let p = plan();
    let live = s.state.event(EVENT).context("the event")?;
    let (seq, prev) = live.chains.lock().await["flag"].state.next_link();
    let legs = &p.relays[0].legs;
    let mut e = Entry::draft(Kind::Handoff, EVENT, "flag", at(125), at(126));
    e.from = Some(Holder {
        leg: STAGE,
        carriers: legs[STAGE].carriers.clone(),
    });
    e.to = Some(Holder {
        leg: RUN,
        carriers: legs[RUN].carriers.clone(),
    });
    e.evidence = Some(Evidence {
        method: Method::Operator,
        giver_device: None,
        receiver_device: None,
        distance_m: None,
    });
    e.seq = seq;
    e.prev_hash = prev;
    let e = e.sealed();
    s.state
        .store
        .append_custody(
            EVENT,
            NewCustody {
                relay_id: "flag".into(),
                entry_json: e.to_line(),
                hash: e.hash.clone(),
                prev_hash: e.prev_hash.clone(),
            },
            at(126),
        )
        .await?;
    // This node's spectators are told, and its view moves on. (The follower started from
    // where the feed stood when the server opened the store, so the chain's first entries
    // come by first: this node wrote them before it followed.)
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &crate::common::SseEvent| {
        m.event == "custody" && m.data["entry"]["kind"] == "handoff"
    }) {
        seen.extend(sse.until("custody", Duration::from_secs(3)).await?);
    }
    ensure!(
        seen.iter()
            .any(|m| m.event == "handoff" && m.data["from_leg"] == json!(STAGE)),
        "the handoff was streamed: {:?}",
        seen.iter().map(|m| &m.event).collect::<Vec<_>>()
    );
    ensure!(flag(&s.live(true).await?)["current_leg"] == json!(RUN));

    // And another node's runner reports: the pings reach this node's engine.
    let f = walk(&p, RUN, at(125), planned_speed_mps(&p, RUN), 4, None)[1];
    s.state
        .store
        .insert_pings(vec![NewPing {
            event_id: EVENT.into(),
            device_id: DEVICES[RUN].into(),
            ping: Ping {
                t: f.t,
                lon: f.lon,
                lat: f.lat,
                acc_m: Some(f.acc_m),
                speed_mps: None,
                heading_deg: None,
                alt_m: None,
                batt_pct: None,
            },
            received_at: at(130),
        }])
        .await?;
    eventually("the other node's ping is in the live view", || async {
        Ok(flag(&s.live(true).await?)["position"]["t"] == json!(f.t.to_string()))
    })
    .await?;

    // This node's chain has the other node's entry: its next handoff links to it (no 409).
    let (status, body) = as_admin(
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/relays/flag/handoffs")))
            .json(&json!({ "from_leg": RUN })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    follower.abort();
    Ok(())
}
