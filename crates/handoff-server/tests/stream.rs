//! The read side as pages use it: the SSE stream (a snapshot first, then what changes, as it
//! changes) and the cacheable `/live` snapshot with its ETag.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};

use crate::common::{
    ADMIN, BIKE, CARRIERS, EVENT, Fix, RUN, STAGE, Server, SseEvent, SseReader, at, flag, plan,
    planned_speed_mps, route, ts, walk,
};

const SOON: Duration = Duration::from_secs(1);

fn named<'e>(events: &'e [SseEvent], name: &str) -> Option<&'e SseEvent> {
    events.iter().find(|e| e.event == name)
}

/// Which handoff a `handoff` event announces: relay, legs and time.
fn which(handoff: &Value) -> Value {
    let keys = ["relay", "from_leg", "to_leg", "at"];
    keys.iter()
        .map(|k| ((*k).to_owned(), handoff[k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_positions_etas_and_handoffs() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(60)).await;
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .timeout(Duration::from_secs(9))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut sse = SseReader::new(resp);

    let first = sse.next(SOON).await?.context("no first event")?;
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["event"], EVENT);
    assert_eq!(
        (
            &flag(&first.data)["current_leg"],
            &flag(&first.data)["holders"]
        ),
        (&json!(STAGE), &json!([CARRIERS[STAGE]]))
    );

    // The stage's two minutes run out.
    s.tick_at(at(121)).await;
    let events = sse.until("eta", SOON).await?;
    let handoff = &named(&events, "handoff")
        .context("a handoff before the eta")?
        .data;
    assert_eq!(
        which(handoff),
        json!({ "relay": "flag", "from_leg": 0, "to_leg": 1, "at": at(120).to_string() })
    );
    assert_eq!(
        events.last().map(|e| &e.data["current_leg"]),
        Some(&json!(RUN))
    );

    // The runner's first ping: her position, then the ETAs it changes.
    let plan = plan();
    let route = route(&plan, RUN);
    let p = route.point_at(100.0);
    s.set_clock(at(160));
    let sent = Instant::now();
    s.send(
        &s.tokens[RUN].clone(),
        &[json!({ "t": at(160).to_string(), "lon": p.lon, "lat": p.lat, "acc": 6 })],
    )
    .await?;
    let events = sse.until("eta", SOON).await?;
    assert!(sent.elapsed() < SOON, "{:?}", sent.elapsed());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["position", "eta"]);
    let position = &named(&events, "position")
        .context("a position before the eta")?
        .data;
    assert_eq!(
        (&position["relay"], &position["leg"], &position["t"]),
        (&json!("flag"), &json!(RUN), &json!(at(160).to_string()))
    );
    assert_eq!(
        (
            position["lon"].as_f64(),
            position["lat"].as_f64(),
            position["acc_m"].as_f64()
        ),
        (Some(p.lon), Some(p.lat), Some(6.0))
    );
    let along = position["along_m"].as_f64().unwrap_or(0.0);
    assert!((along - 100.0).abs() < 1.0, "{position}");
    assert!(
        // Written to 0.1 m and 0.01 %.
        (position["fraction"].as_f64().unwrap_or(0.0) - along / route.length_m()).abs() < 1e-4,
        "{position}"
    );
    let eta = &named(&events, "eta").context("an eta")?.data;
    assert_eq!(
        (&eta["relay"], &eta["status"], &eta["current_leg"]),
        (&json!("flag"), &json!("running"), &json!(RUN))
    );
    let legs = eta["legs"].as_array().context("the legs' ETAs")?;
    assert_eq!(legs.len(), 4);
    assert!(ts(&legs[RUN]["eta_end"]) > at(160));
    assert_eq!(ts(&eta["eta_finish"]), ts(&legs[3]["eta_end"]));

    // She reaches the Louvre: the flag passes to the cyclist.
    let end = route.point_at(route.length_m());
    s.set_clock(at(560));
    let sent = Instant::now();
    s.send(
        &s.tokens[RUN].clone(),
        &[json!({ "t": at(560).to_string(), "lon": end.lon, "lat": end.lat, "acc": 6 })],
    )
    .await?;
    let events = sse.until("eta", SOON).await?;
    assert!(sent.elapsed() < SOON, "{:?}", sent.elapsed());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["position", "handoff", "eta"]);
    let handoff = &named(&events, "handoff").context("a handoff")?.data;
    assert_eq!(
        which(handoff),
        json!({ "relay": "flag", "from_leg": RUN, "to_leg": BIKE, "at": at(560).to_string() })
    );
    let eta = &named(&events, "eta").context("an eta")?.data;
    assert_eq!(eta["current_leg"], BIKE);
    assert_eq!(
        ts(&eta["legs"][RUN]["eta_end"]),
        at(560),
        "a leg that is done has its real end"
    );
    Ok(())
}

#[tokio::test]
async fn a_late_batch_replays_without_announcing_old_handoffs_again() -> Result<()> {
    let s = Server::with_relay().await?;
    let plan = plan();
    s.tick_at(at(120)).await;
    let run = walk(&plan, RUN, at(120), planned_speed_mps(&plan, RUN), 10, None);
    let arrived = run.last().context("a walk")?.t;
    let ride = walk(
        &plan,
        BIKE,
        arrived,
        planned_speed_mps(&plan, BIKE),
        10,
        None,
    );
    // The runner's watch lost the network for a while mid-leg; the cyclist is off.
    let offline = 10..15;
    let online: Vec<Value> = run
        .iter()
        .enumerate()
        .filter(|(i, _)| !offline.contains(i))
        .map(|(_, f)| f.json())
        .collect();
    let late: Vec<Value> = run[offline].iter().map(Fix::json).collect();
    let ridden = &ride[..4];
    s.set_clock(ridden.last().context("a ride")?.t);
    s.send(&s.tokens[RUN].clone(), &online).await?;
    s.send(
        &s.tokens[BIKE].clone(),
        &ridden.iter().map(Fix::json).collect::<Vec<_>>(),
    )
    .await?;
    let before = s.live(false).await?;
    assert_eq!(flag(&before)["current_leg"], BIKE);

    let resp = s
        .http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .timeout(Duration::from_secs(9))
        .send()
        .await?;
    let mut sse = SseReader::new(resp);
    assert_eq!(
        sse.next(SOON).await?.context("a snapshot")?.event,
        "snapshot"
    );
    // The watch reconnects and uploads its buffer: the relay is replayed from the start.
    s.send(&s.tokens[RUN].clone(), &late).await?;
    // Nothing watchers see changed (the gap was mid-leg of a finished leg): nothing is sent.
    // The cyclist's next ping is then the very next news.
    let next = &ride[4];
    s.set_clock(next.t);
    s.send(&s.tokens[BIKE].clone(), &[next.json()]).await?;
    let events = sse.until("eta", SOON).await?;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        ["position", "eta"],
        "only the news: no handoff announced twice, no old positions"
    );
    let position = &events[0].data;
    assert_eq!(
        (&position["leg"], ts(&position["t"])),
        (&json!(BIKE), next.t),
        "{position}"
    );
    let after = s.live(false).await?;
    assert_eq!(
        flag(&after)["legs"][RUN]["actual_end"],
        flag(&before)["legs"][RUN]["actual_end"]
    );
    Ok(())
}

#[tokio::test]
async fn live_answers_304_while_nothing_changed() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(150)).await;
    let url = s.url(&format!("/api/v1/events/{EVENT}/live"));
    let etag_of = |r: &reqwest::Response| {
        r.headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };

    let r = s.http.get(&url).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()),
        Some("public, max-age=1")
    );
    let e1 = etag_of(&r);
    assert!(
        e1.starts_with('"') && e1.ends_with('"'),
        "a strong ETag: {e1}"
    );

    let r = s.http.get(&url).header(IF_NONE_MATCH, &e1).send().await?;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag_of(&r), e1);
    assert!(r.bytes().await?.is_empty());
    // The operators' view is another representation.
    let r = s
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .header(IF_NONE_MATCH, &e1)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(etag_of(&r), e1);

    // A ping changes the view.
    let p = route(&plan(), RUN).point_at(80.0);
    s.send(
        &s.tokens[RUN].clone(),
        &[json!({ "t": at(150).to_string(), "lon": p.lon, "lat": p.lat })],
    )
    .await?;
    let r = s.http.get(&url).header(IF_NONE_MATCH, &e1).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let e2 = etag_of(&r);
    assert_ne!(e2, e1);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(ts(&flag(&body)["position"]["t"]), at(150));
    assert_eq!(
        s.http
            .get(&url)
            .header(IF_NONE_MATCH, &e2)
            .send()
            .await?
            .status(),
        StatusCode::NOT_MODIFIED
    );

    // So does time passing (ages and countdowns move every second).
    s.set_clock(at(151));
    let r = s.http.get(&url).header(IF_NONE_MATCH, &e2).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(etag_of(&r), e2);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(ts(&body["now"]), at(151));
    assert_eq!(flag(&body)["position"]["age_s"], 1);
    Ok(())
}

#[tokio::test]
async fn a_new_plan_version_ends_old_streams_after_saying_so() -> Result<()> {
    let s = Server::with_relay().await?;
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .timeout(Duration::from_secs(9))
        .send()
        .await?;
    let mut sse = SseReader::new(resp);
    assert_eq!(
        sse.next(SOON).await?.context("no first event")?.event,
        "snapshot"
    );
    let (status, body) = s
        .put_plan(Some(ADMIN), "application/toml", crate::common::PLAN)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The old stream says a new plan came, then ends (so EventSource reconnects).
    let mut saw_plan = false;
    let ended = loop {
        match sse.next(Duration::from_secs(3)).await {
            Ok(Some(e)) => saw_plan |= e.event == "plan" && e.data["version"] == 2,
            Ok(None) => break false,
            Err(e) => break e.to_string().contains("the stream ended"),
        }
    };
    assert!(saw_plan, "no plan event on the old stream");
    assert!(ended, "the old stream stayed open");
    // A new connection is served by the new version.
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .timeout(Duration::from_secs(9))
        .send()
        .await?;
    let mut sse = SseReader::new(resp);
    assert_eq!(
        sse.next(SOON).await?.context("no first event")?.event,
        "snapshot"
    );
    Ok(())
}

/// The leg fields of the default `/live`: what changes while a relay runs.
const COMPACT_LEG: [&str; 11] = [
    "index",
    "status",
    "eta_start",
    "eta_end",
    "band_s",
    "delta_s",
    "shift_s",
    "actual_start",
    "actual_end",
    "verified",
    "ended_by",
];

#[tokio::test]
async fn live_legs_are_compact_unless_full_ones_are_asked_for() -> Result<()> {
    let s = Server::with_relay().await?;
    let runner = s.tokens[RUN].clone();
    s.tick_at(at(125)).await;
    let start = route(&plan(), RUN).point_at(0.0);
    let p = route(&plan(), RUN).point_at(123.456);
    s.send(
        &runner,
        &[
            json!({"t": at(121).to_string(), "lon": start.lon, "lat": start.lat}),
            json!({"t": at(150).to_string(), "lon": p.lon, "lat": p.lat, "acc": 7.25}),
        ],
    )
    .await?;
    s.admin_post(
        &format!("/api/v1/events/{EVENT}/shift"),
        json!({ "minutes": 5 }),
    )
    .await?;
    s.set_clock(at(160));
    let plan_body = s.text(&format!("/api/v1/events/{EVENT}"), false).await?;
    let plan_body: Value = serde_json::from_str(&plan_body)?;
    for admin in [false, true] {
        let compact = s.live(admin).await?;
        let full = s.live_full(admin).await?;
        // Everything but the legs is the same document.
        for key in ["event", "name", "now", "countdowns"] {
            anyhow::ensure!(compact[key] == full[key], "{key}: {compact} vs {full}");
        }
        let (c, f) = (flag(&compact), flag(&full));
        let relay = c.as_object().context("a relay")?;
        for (key, value) in relay.iter().filter(|(k, _)| *k != "legs") {
            anyhow::ensure!(*value == f[key], "{key}: {value} vs {}", f[key]);
        }
        // Distances to 0.1 m, fractions to 0.01 %, ETAs to the second.
        let along = c["progress"]["along_m"].as_f64().context("along_m")?;
        let decimetres = along * 10.0;
        anyhow::ensure!(
            (decimetres.round() - decimetres).abs() < 1e-6 && (along - 123.5).abs() < 1.0,
            "{c}"
        );
        anyhow::ensure!(c["position"]["acc_m"] == json!(7.3), "{c}");
        anyhow::ensure!(
            !c["eta_finish"].as_str().context("eta")?.contains('.'),
            "{c}"
        );
        let (cl, fl) = (
            c["legs"].as_array().context("legs")?,
            f["legs"].as_array().context("legs")?,
        );
        anyhow::ensure!(cl.len() == 4 && fl.len() == 4, "{c}");
        let fl_prev = |i: usize, key: &str| fl[i - 1][key].clone();
        // The run's start is the stage's end, so it is left out.
        anyhow::ensure!(
            cl[RUN].get("eta_start").is_none() && cl[RUN].get("actual_start").is_none(),
            "{c}"
        );
        for (i, (cl, fl)) in cl.iter().zip(fl).enumerate() {
            let leg = cl.as_object().context("a leg")?;
            for (key, value) in leg {
                anyhow::ensure!(COMPACT_LEG.contains(&key.as_str()), "leg {i}: {key}");
                if key == "band_s" {
                    // The full leg's band as seconds from its ETA (each as written).
                    let second = |k: &str| -> Result<i64> {
                        let t: jiff::Timestamp = fl[k].as_str().context("an instant")?.parse()?;
                        Ok(t.as_second())
                    };
                    let end = second("eta_end")?;
                    let band = json!([second("eta_lo")? - end, second("eta_hi")? - end]);
                    anyhow::ensure!(*value == band, "leg {i}: {value} vs {band} ({fl})");
                    continue;
                }
                anyhow::ensure!(*value == fl[key], "leg {i} {key}: {value} vs {}", fl[key]);
            }
            // Every leg not yet done has a band, around its ETA.
            let done = fl["status"] == "done";
            anyhow::ensure!(leg.contains_key("band_s") != done, "leg {i}: {cl}");
            if let Some(band) = leg.get("band_s") {
                let (lo, hi) = (band[0].as_i64(), band[1].as_i64());
                anyhow::ensure!(
                    lo.is_some_and(|lo| lo <= 0) && hi.is_some_and(|hi| hi > 0),
                    "leg {i}: {band}"
                );
            }
            // A start left out is the end of the leg before.
            if i > 0 {
                anyhow::ensure!(
                    leg.contains_key("eta_start") || fl["eta_start"] == fl_prev(i, "eta_end"),
                    "leg {i}: {cl} {fl}"
                );
                anyhow::ensure!(
                    leg.contains_key("actual_start")
                        || fl["actual_start"].is_null()
                        || fl["actual_start"] == fl_prev(i, "actual_end"),
                    "leg {i}: {cl} {fl}"
                );
            }
            for key in [
                "carriers",
                "mode",
                "planned_start",
                "planned_end",
                "length_m",
            ] {
                anyhow::ensure!(!fl[key].is_null(), "full leg {i} has {key}: {fl}");
            }
            // What the pages derive: the plan's times moved by the leg's shift; the planned
            // end is also the ETA less the delay.
            let shift = jiff::SignedDuration::from_secs(cl["shift_s"].as_i64().unwrap_or(0));
            let planned = &plan_body["plan"]["relays"][0]["legs"][i];
            for (plan_key, key) in [("start", "planned_start"), ("end", "planned_end")] {
                anyhow::ensure!(
                    ts(&planned[plan_key]).checked_add(shift)? == ts(&fl[key]),
                    "leg {i}: {key} {} is the plan's {} + {shift}",
                    fl[key],
                    planned[plan_key]
                );
            }
            let delta = jiff::SignedDuration::from_secs(cl["delta_s"].as_i64().context("Δ")?);
            anyhow::ensure!(
                ts(&cl["eta_end"]).checked_sub(delta)? == ts(&fl["planned_end"]),
                "leg {i}: {cl} {fl}"
            );
        }
        // The shift moved the legs from the one holding the flag on.
        anyhow::ensure!(cl[0].get("shift_s").is_none(), "{c}");
        anyhow::ensure!(cl[RUN]["shift_s"] == json!(300), "{c}");
    }
    // Two documents, two ETags; a wrong `legs` is named.
    let url = s.url(&format!("/api/v1/events/{EVENT}/live"));
    let etag = |r: &reqwest::Response| r.headers().get(ETAG).cloned();
    let compact = s.http.get(&url).send().await?;
    let full = s.http.get(format!("{url}?legs=full")).send().await?;
    anyhow::ensure!(etag(&compact).is_some() && etag(&compact) != etag(&full));
    let (status, body) = crate::common::answer(s.http.get(format!("{url}?legs=some"))).await?;
    anyhow::ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    anyhow::ensure!(
        crate::common::error_of(&body) == ("invalid_query", Some("legs")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn the_stream_of_one_relay_carries_that_relay_only() -> Result<()> {
    let s = Server::with_plan("race", crate::engine::RACE, at(-60)).await?;
    let token = |device: &'static str, relay: &'static str| {
        let req = s
            .http
            .post(s.url("/api/v1/events/race/devices"))
            .bearer_auth(ADMIN)
            .json(&json!({ "device": device, "carrier": "Runner 1", "relay": relay }));
        async move {
            let (_, body) = crate::common::answer(req).await?;
            Ok::<String, anyhow::Error>(body["token"].as_str().unwrap_or_default().to_owned())
        }
    };
    let a = token("a1", "team-a").await?;
    let b = token("b1", "team-b").await?;
    s.tick_at(at(30)).await;
    let missing = s
        .http
        .get(s.url("/api/v1/events/race/stream?relay=team-z"))
        .send()
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let resp = s
        .http
        .get(s.url("/api/v1/events/race/stream?relay=team-b"))
        .timeout(Duration::from_secs(9))
        .send()
        .await?;
    let mut sse = SseReader::new(resp);
    let first = sse.next(SOON).await?.context("no snapshot")?;
    assert_eq!(first.event, "snapshot");
    let ids: Vec<&Value> = first.data["relays"]
        .as_array()
        .context("relays")?
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("team-b")]);
    // Team A's runner moves: nothing on team B's stream. Then team B's does: the next message
    // is about team B.
    let ping = |k: i64| json!({ "t": at(30 + k).to_string(), "lon": 2.351 + 0.0002 * k as f64, "lat": 48.85, "acc": 5 });
    for k in 0..3 {
        s.send(&a, &[ping(k)]).await?;
    }
    s.send(&b, &[ping(3)]).await?;
    let next = sse.next(SOON).await?.context("a message for team B")?;
    assert_eq!(next.data["relay"], "team-b", "{:?}", next.data);
    Ok(())
}

#[tokio::test]
async fn a_viewer_reconnecting_with_its_last_event_id_gets_the_handoffs_it_missed() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(60)).await;
    let url = s.url(&format!("/api/v1/events/{EVENT}/stream"));
    let open = |last: Option<&str>| {
        let mut req = s.http.get(&url).timeout(Duration::from_secs(9));
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        req.send()
    };
    let mut sse = SseReader::new(open(None).await?);
    let first = sse.next(SOON).await?.context("no snapshot")?;
    assert_eq!(first.event, "snapshot");
    let seen = first.id.clone().context("the snapshot has an id")?;
    drop(sse);

    // While the viewer is away, the stage hands over.
    let handoffs = s.url(&format!("/api/v1/events/{EVENT}/relays/flag/handoffs"));
    let resp = s
        .http
        .post(&handoffs)
        .bearer_auth(ADMIN)
        .json(&json!({ "from_leg": STAGE }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Back, saying what it saw: the snapshot (now with the runner), then the handoff it
    // missed, with an id past the one it gave.
    let mut back = SseReader::new(open(Some(&seen)).await?);
    let got = back.until("handoff", SOON).await?;
    assert_eq!(got[0].event, "snapshot");
    assert_eq!(flag(&got[0].data)["current_leg"], json!(RUN));
    let handoff = got.last().context("a handoff")?;
    assert_eq!(handoff.data["from_leg"], json!(STAGE));
    let id: i64 = handoff
        .id
        .as_deref()
        .context("the handoff has an id")?
        .parse()?;
    assert!(id > seen.parse::<i64>()?, "{id} after {seen}");
    // The new snapshot already knows of it: reconnecting from there brings nothing again.
    assert_eq!(got[0].id.as_deref(), Some(id.to_string().as_str()));
    let mut again = SseReader::new(open(Some(&id.to_string())).await?);
    assert_eq!(
        again.next(SOON).await?.context("a snapshot")?.event,
        "snapshot"
    );
    while let Some(e) = again.next(Duration::from_millis(300)).await? {
        assert_ne!(e.event, "handoff", "announced again: {:?}", e.data);
    }
    // A new connection (not EventSource's own reconnect) says it in the query.
    let mut by_query = SseReader::new(
        s.http
            .get(format!("{url}?last_event_id={seen}"))
            .timeout(Duration::from_secs(9))
            .send()
            .await?,
    );
    let got = by_query.until("handoff", SOON).await?;
    assert_eq!(got.last().and_then(|e| e.id.clone()), Some(id.to_string()));
    // An id the server never sent is refused, naming where it came from.
    let resp = open(Some("yesterday")).await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["field"], json!("Last-Event-ID"), "{body}");
    Ok(())
}
