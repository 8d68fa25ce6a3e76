//! The live engine never drifts from the store: a client that hangs up mid-write, pings that
//! arrive while a new plan version is installed, two uploads at once, and shifts (a stage in
//! progress stays in progress, its ETAs move; a race-wide delay moves every relay).

use std::time::Duration;

use anyhow::{Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;

use crate::common::{
    ADMIN, BIKE, EVENT, LOOP, PLAN, RUN, STAGE, Server, at, flag, plan, planned_speed_mps, route,
    ts, walk,
};

/// Sends a raw HTTP request and hangs up at once, before any answer.
async fn send_and_hang_up(s: &Server, request: &str) -> Result<()> {
    let addr = s.base.trim_start_matches("http://");
    // A blocking socket is fine here: connecting and a small write finish in the kernel.
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.write_all(request.as_bytes())?;
    conn.flush()?;
    drop(conn);
    Ok(())
}

/// Waits (bounded) until `check` holds.
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
async fn a_custody_write_whose_client_hung_up_is_applied_and_the_next_handoff_succeeds()
-> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(30)).await;
    let path = format!("/api/v1/events/{EVENT}/relays/flag/handoffs");
    let body = "{}";
    let addr = s.base.trim_start_matches("http://");
    send_and_hang_up(
        &s,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
             Idempotency-Key: hung-up-1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    // The entry reaches the store (genesis + the handoff)…
    eventually("the handoff is stored", || async {
        Ok(s.state.store.custody(EVENT, "flag").await?.len() == 2)
    })
    .await?;
    // …and the live state: the runner holds the flag, and the next handoff is the next one.
    eventually("the live state follows", || async {
        Ok(flag(&s.live(true).await?)["current_leg"] == json!(RUN))
    })
    .await?;
    // The client retries with the same key (it never saw the answer): it gets the entry that
    // was stored, and nothing is recorded twice.
    let (status, again) = crate::common::as_admin(
        s.http
            .post(s.url(&path))
            .header("Idempotency-Key", "hung-up-1")
            .body(body),
    )
    .await?;
    ensure!(status == StatusCode::OK, "{status} {again}");
    ensure!(again["seq"] == json!(1), "{again}");
    ensure!(s.state.store.custody(EVENT, "flag").await?.len() == 2);
    let next = s.handoff(EVENT, "flag").await?;
    ensure!(next["from"]["leg"] == json!(RUN), "{next}");
    Ok(())
}

#[tokio::test]
async fn pings_whose_client_hung_up_are_applied() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    let p = plan();
    let fixes = walk(&p, RUN, at(121), 3.0, 10, None);
    let f = &fixes[1];
    s.tick_at(at(140)).await;
    let addr = s.base.trim_start_matches("http://");
    send_and_hang_up(
        &s,
        &format!(
            "GET /osmand?id={}&lat={}&lon={}&timestamp={} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
            s.tokens[RUN],
            f.lat,
            f.lon,
            f.t.as_second()
        ),
    )
    .await?;
    eventually("the ping is stored", || async {
        Ok(s.ping_count().await? == 1)
    })
    .await?;
    eventually("the ping is in the live state", || async {
        let live = s.live(true).await?;
        Ok(flag(&live)["position"]["t"] == json!(f.t.to_string()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn pings_sent_while_a_new_plan_version_installs_all_reach_it() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    let p = plan();
    let fixes = walk(&p, RUN, at(121), 2.5, 2, None);
    let token = s.tokens[RUN].clone();
    let renamed = PLAN.replace("name = \"Olympic flag: through Paris\"", "name = \"v2\"");
    let (sent, installed) = tokio::join!(
        async {
            for f in &fixes {
                s.send(&token, &[f.json()]).await?;
            }
            Ok::<_, anyhow::Error>(())
        },
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            s.upload(EVENT, &renamed).await
        }
    );
    sent?;
    installed?;
    s.tick_at(at(600)).await;
    let before = s.live(true).await?;
    ensure!(before["name"] == json!("v2"), "{}", before["name"]);
    let last = fixes.last().map(|f| f.t).expect("fixes");
    // The live state has every ping: it equals a rebuild from the store after a restart.
    let (dir, clock, _) = s.stop().await?;
    let again = Server::open(dir, clock).await?;
    again.tick_at(at(600)).await;
    let after = again.live(true).await?;
    ensure!(
        before == after,
        "live state before the restart:\n{before}\nafter:\n{after}"
    );
    ensure!(
        flag(&after)["current_leg"].as_u64() > Some(RUN as u64)
            || ts(&flag(&after)["position"]["t"]) == last,
        "{after}"
    );
    Ok(())
}

#[tokio::test]
async fn two_uploads_at_once_leave_the_newer_version_live() -> Result<()> {
    let s = Server::with_relay().await?;
    for round in 0..5 {
        let a = PLAN.replace(
            "name = \"Olympic flag: through Paris\"",
            &format!("name = \"a{round}\""),
        );
        let b = PLAN.replace(
            "name = \"Olympic flag: through Paris\"",
            &format!("name = \"b{round}\""),
        );
        let (ra, rb) = tokio::join!(s.upload(EVENT, &a), s.upload(EVENT, &b));
        ra?;
        rb?;
        let stored = s.state.store.plan(EVENT).await?.expect("a plan");
        let live = s.state.event(EVENT).expect("the event");
        ensure!(
            live.version == stored.version,
            "live version {} but the store's newest is {}",
            live.version,
            stored.version
        );
    }
    Ok(())
}

fn leg<'a>(live: &'a Value, relay: &str, i: usize) -> &'a Value {
    &live["relays"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == json!(relay)))
        .expect("the relay")["legs"][i]
}

#[tokio::test]
async fn a_shift_during_a_stage_keeps_it_on_and_moves_its_etas() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(60)).await;
    let before = s.live(true).await?;
    ensure!(flag(&before)["current_leg"] == json!(STAGE), "{before}");
    let (end0, next0) = (
        ts(&leg(&before, "flag", STAGE)["eta_end"]),
        ts(&leg(&before, "flag", RUN)["eta_end"]),
    );
    let delta0 = leg(&before, "flag", RUN)["delta_s"].clone();
    s.admin_post(
        &format!("/api/v1/events/{EVENT}/shift"),
        json!({ "minutes": 5 }),
    )
    .await?;
    // Past the stage's planned 2 minutes: it is still on, for 5 more.
    s.tick_at(at(200)).await;
    let after = s.live(true).await?;
    ensure!(flag(&after)["current_leg"] == json!(STAGE), "{after}");
    ensure!(
        leg(&after, "flag", STAGE)["status"] == json!("current"),
        "{after}"
    );
    let (end1, next1) = (
        ts(&leg(&after, "flag", STAGE)["eta_end"]),
        ts(&leg(&after, "flag", RUN)["eta_end"]),
    );
    ensure!(
        end1.duration_since(end0).as_secs() == 300,
        "{end0} → {end1}"
    );
    ensure!(
        next1.duration_since(next0).as_secs() == 300,
        "{next0} → {next1}"
    );
    ensure!(
        leg(&after, "flag", RUN)["delta_s"] == delta0,
        "the ETA moved with the plan: {delta0} → {}",
        leg(&after, "flag", RUN)["delta_s"]
    );
    // And it ends when its extended time is up.
    s.tick_at(at(421)).await;
    ensure!(flag(&s.live(true).await?)["current_leg"] == json!(RUN));
    Ok(())
}

#[tokio::test]
async fn a_race_wide_shift_moves_every_relay() -> Result<()> {
    let two = PLAN.replace(
        "[[relays]]\nid = \"flag\"",
        "[[relays]]\nid = \"twin\"\nname = \"Twin\"\nobject = \"Baton\"\n\n[[relays.legs]]\n\
         carriers = [\"Somebody\"]\nmode = \"stage\"\nplace = \"concorde\"\n\
         start = \"2024-08-11T23:00:00+02:00[Europe/Paris]\"\nduration = \"10m\"\n\n\
         [[relays]]\nid = \"flag\"",
    );
    let s = Server::with_plan(EVENT, &two, at(-60)).await?;
    s.tick_at(at(60)).await;
    let before = s.live(true).await?;
    let reply = s
        .admin_post(
            &format!("/api/v1/events/{EVENT}/shift"),
            json!({ "minutes": 3 }),
        )
        .await?;
    ensure!(reply["shifted"] == json!(2), "{reply}");
    s.tick_at(at(61)).await;
    let after = s.live(true).await?;
    for relay in ["flag", "twin"] {
        let (a, b) = (
            ts(&leg(&before, relay, 0)["eta_end"]),
            ts(&leg(&after, relay, 0)["eta_end"]),
        );
        ensure!(b.duration_since(a).as_secs() == 180, "{relay}: {a} → {b}");
    }
    Ok(())
}

/// Two teams on one course, both with a "Runner 1" and a "Runner 2".
pub const RACE: &str = r#"
[event]
id = "race"
name = "Two teams"

[[courses]]
id = "c"
[[courses.legs]]
mode = "run"
route = { points = [[2.3500, 48.8500], [2.3650, 48.8500]] }
duration = "6m"
[[courses.legs]]
mode = "run"
route = { points = [[2.3650, 48.8500], [2.3800, 48.8500]] }
duration = "6m"

[[relays]]
id = "team-a"
course = "c"
start = "2024-08-11T21:00:00Z"
carriers = ["Runner 1", "Runner 2"]

[[relays]]
id = "team-b"
course = "c"
start = "2024-08-11T21:00:00Z"
carriers = ["Runner 1", "Runner 2"]
"#;

#[tokio::test]
async fn two_teams_sharing_carrier_names_never_mix() -> Result<()> {
    let s = Server::with_plan("race", RACE, at(-60)).await?;
    // A name in two relays needs the relay.
    let (status, body) = s.register_in("race", "a1", "Runner 1").await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    ensure!(
        crate::common::error_of(&body) == ("missing_field", Some("relay")),
        "{body}"
    );
    let register = |device: &'static str, carrier: &'static str, relay: &'static str| {
        let req = s
            .http
            .post(s.url("/api/v1/events/race/devices"))
            .bearer_auth(ADMIN)
            .json(&json!({ "device": device, "carrier": carrier, "relay": relay }));
        async move {
            let (status, body) = crate::common::answer(req).await?;
            ensure!(status == StatusCode::CREATED, "{status} {body}");
            Ok::<String, anyhow::Error>(body["token"].as_str().unwrap_or_default().to_owned())
        }
    };
    let a1 = register("a1", "Runner 1", "team-a").await?;
    let a2 = register("a2", "Runner 2", "team-a").await?;
    let b2 = register("b2", "Runner 2", "team-b").await?;
    s.tick_at(at(200)).await;
    // Team A's runner 1 runs half the first leg; team B has not moved.
    for k in 0..=10 {
        let lon = 2.35 + 0.0075 * f64::from(k) / 10.0;
        let t = at(10 + i64::from(k) * 10);
        s.send(
            &a1,
            &[json!({ "t": t.to_string(), "lon": lon, "lat": 48.85, "acc": 5 })],
        )
        .await?;
    }
    let live = s.text("/api/v1/events/race/live", true).await?;
    let live: Value = serde_json::from_str(&live)?;
    let relay = |id: &str| {
        live["relays"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == json!(id)))
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (relay("team-a"), relay("team-b"));
    ensure!(a["progress"]["fraction"].as_f64() > Some(0.3), "{a}");
    ensure!(b["position"].is_null(), "team B saw team A's runner: {b}");
    ensure!(b["progress"]["along_m"].as_f64() == Some(0.0), "{b}");
    // Team A's runner 2 asks for a code; team B's runner 2 cannot use it, team A's can.
    let code_path = "/api/v1/events/race/relays/team-a/handoffs/code";
    let (_, _) = crate::common::answer(s.http.post(s.url(code_path)).bearer_auth(&a1)).await?;
    let (status, body) =
        crate::common::answer(s.http.post(s.url(code_path)).bearer_auth(&a2)).await?;
    ensure!(
        status == StatusCode::CONFLICT,
        "runner 2 holds nothing yet: {status} {body}"
    );
    let (status, body) = crate::common::answer(
        s.http
            .post(s.url("/api/v1/events/race/relays/team-a/handoffs"))
            .bearer_auth(&b2)
            .json(&json!({ "code": "000000" })),
    )
    .await?;
    ensure!(
        status == StatusCode::CONFLICT && crate::common::error_of(&body).0 == "wrong_party",
        "team B's runner 2 received team A's flag: {status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_ping_older_than_the_engine_keeps_is_replayed_from_the_store() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(120)).await;
    s.handoff(EVENT, "flag").await?; // the stage → the runner, by the operator
    let p = plan();
    let run = walk(&p, RUN, at(120), planned_speed_mps(&p, RUN), 10, None);
    let arrived = run.last().map(|f| f.t).expect("a run");
    let ride = walk(&p, BIKE, arrived, planned_speed_mps(&p, BIKE), 10, None);
    let rode = ride.last().map(|f| f.t).expect("a ride");
    // The cyclist's phone reports only once clear of the exchange…
    let ride: Vec<_> = ride.into_iter().filter(|f| f.true_along_m > 80.0).collect();
    let lap = walk(&p, LOOP, rode, planned_speed_mps(&p, LOOP), 10, None);
    // …and its report from the exchange, waiting as the runner arrives, is held back (no
    // network) until long after: older than the engine keeps.
    let exchange = route(&p, BIKE).point_at(0.0);
    let waiting = json!({ "t": (arrived - jiff::SignedDuration::from_secs(20)).to_string(),
                          "lon": exchange.lon, "lat": exchange.lat, "acc": 5 });
    for (token, fixes) in [(RUN, &run), (BIKE, &ride), (LOOP, &lap)] {
        for f in fixes.iter() {
            s.set_clock(f.t);
            s.send(&s.tokens[token].clone(), &[f.json()]).await?;
        }
    }
    let before = s.live(true).await?;
    ensure!(
        flag(&before)["legs"][RUN]["verified"] == json!(false),
        "{before}"
    );
    ensure!(
        s.state.event(EVENT).expect("the event").held().await.pings
            < run.len() + ride.len() + lap.len(),
        "the engine let the oldest pings go"
    );
    s.send(&s.tokens[BIKE].clone(), &[waiting]).await?;
    // Replayed from the store: giver and receiver met at the exchange, a verified handoff.
    let after = s.live(true).await?;
    ensure!(
        flag(&after)["legs"][RUN]["verified"] == json!(true),
        "{after}"
    );
    let log = s
        .text(
            &format!("/api/v1/events/{EVENT}/relays/flag/custody"),
            false,
        )
        .await?;
    ensure!(log.contains("\"proximity\""), "{log}");
    // And it is the state a restart rebuilds from the store.
    let (dir, clock, _) = s.stop().await?;
    let again = Server::open(dir, clock).await?;
    ensure!(
        after == again.live(true).await?,
        "a restart gives another state"
    );
    Ok(())
}

#[tokio::test]
async fn live_is_one_document_sent_gzipped_to_who_asks() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(60)).await;
    let url = s.url(&format!("/api/v1/events/{EVENT}/live"));
    let plain = s.http.get(&url).send().await?;
    ensure!(plain.headers().get("content-encoding").is_none());
    let (etag, plain) = (plain.headers().get("etag").cloned(), plain.bytes().await?);
    let zipped = s
        .http
        .get(&url)
        .header("accept-encoding", "br, gzip")
        .send()
        .await?;
    ensure!(
        zipped
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            == Some("gzip"),
        "{:?}",
        zipped.headers()
    );
    ensure!(
        zipped
            .headers()
            .get("vary")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("Accept-Encoding")),
        "{:?}",
        zipped.headers()
    );
    ensure!(
        zipped.headers().get("etag").cloned() == etag,
        "the same document"
    );
    let body = zipped.bytes().await?;
    ensure!(body.len() < plain.len(), "{} ≥ {}", body.len(), plain.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut unzipped)?;
    ensure!(unzipped == plain, "the gzipped body is the plain one");
    Ok(())
}

#[tokio::test]
async fn the_engines_owner_runs_every_job_in_order_even_one_nobody_waits_for() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(140)).await;
    let p = plan();
    let live = s.state.event(EVENT).expect("the event");
    let carrier = p.relays[0].legs[RUN].carriers[0].clone();
    let fixes = walk(&p, RUN, at(121), 3.0, 5, None);
    // Sent, and the answers dropped unread: as if the task that sent them had been cancelled.
    for (i, f) in fixes.iter().take(3).enumerate() {
        let ping = handoff_core::ping::Ping {
            t: f.t,
            lon: f.lon,
            lat: f.lat,
            acc_m: Some(f.acc_m),
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        };
        drop(live.apply(
            std::sync::Arc::from([handoff_server::engine::Committed {
                device: "owner-test".into(),
                carrier: carrier.clone(),
                relay: None,
                seq: 1_000 + i64::try_from(i)?,
                ping,
            }]),
            at(140),
        ));
    }
    // A read sent after them is answered after them: it sees the last of the three.
    let view = live
        .relay_view("flag", at(140), false)
        .await
        .expect("the relay");
    let last = view.position.expect("a position");
    ensure!(
        last.t == fixes[2].t,
        "the view after three unawaited pings shows the fix at {}, not the third's ({})",
        last.t,
        fixes[2].t
    );
    Ok(())
}
