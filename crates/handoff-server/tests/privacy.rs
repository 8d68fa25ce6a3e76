//! The public delay holds on every public route: with `public_delay = "2m"`, spectators learn
//! of a handoff, a leg's end and a carrier's positions only two minutes after they happened
//! (after the entry was recorded), in `/live` (and its ETag), the custody export, the calendar,
//! the track exports and the accuracy report; operators see everything at once.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::common::{
    ADMIN, CARRIERS, DEVICES, EVENT, PLAN, RUN, STAGE, Server, at, flag, plan, planned_speed_mps,
    walk,
};

/// The test plan with a two-minute public delay.
fn delayed_plan() -> String {
    let p = PLAN.replace(
        "name = \"Olympic flag: through Paris\"\n",
        "name = \"Olympic flag: through Paris\"\npublic_delay = \"2m\"\n",
    );
    assert_ne!(p, PLAN);
    p
}

async fn server() -> Result<Server> {
    let mut s = Server::with_plan(EVENT, &delayed_plan(), at(-60)).await?;
    for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
        let token = s.device(device, carrier).await?;
        s.tokens.push(token);
    }
    Ok(s)
}

async fn etag(s: &Server, admin: bool) -> Result<String> {
    let mut req = s.http.get(s.url(&format!("/api/v1/events/{EVENT}/live")));
    if admin {
        req = req.bearer_auth(ADMIN);
    }
    let resp = req.send().await?;
    Ok(resp
        .headers()
        .get("etag")
        .context("an ETag")?
        .to_str()?
        .to_string())
}

fn entries(ndjson: &str) -> Vec<Value> {
    ndjson
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn the_public_delay_holds_on_every_public_route() -> Result<()> {
    let s = server().await?;
    let p = plan();
    // The stage ends early: the operator records the handoff at 100 s, at 105 s.
    s.tick_at(at(105)).await;
    let (status, body) = crate::common::as_admin(
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/relays/flag/handoffs")))
            .json(&json!({ "from_leg": STAGE, "at": at(100).to_string() })),
    )
    .await?;
    ensure!(status.as_u16() == 201, "{status} {body}");
    // The runner sets off and reports.
    let run = walk(&p, RUN, at(100), planned_speed_mps(&p, RUN), 10, None);
    for f in run.iter().take_while(|f| f.t <= at(200)) {
        s.set_clock(f.t);
        s.send(&s.tokens[RUN].clone(), &[f.json()]).await?;
    }
    s.tick_at(at(200)).await;

    // Operators see the run; spectators (as of 80 s) still see the stage.
    let admin = s.live(true).await?;
    ensure!(flag(&admin)["current_leg"] == json!(RUN), "{admin}");
    let public = s.live(false).await?;
    let pf = flag(&public);
    ensure!(
        pf["current_leg"] == json!(STAGE),
        "the next leg leaked: {pf}"
    );
    ensure!(
        pf["legs"][0].get("actual_end").is_none(),
        "the real end leaked: {pf}"
    );
    // The stage's performers sent no fix, and the runner's are not public yet: no position.
    ensure!(pf["position"].is_null(), "a position leaked: {pf}");
    let full = s.live_full(false).await?;
    ensure!(
        flag(&full)["legs"][RUN]["status"] == json!("upcoming"),
        "{full}"
    );

    // The custody export: spectators get the log recorded two minutes ago and before.
    let path = format!("/api/v1/events/{EVENT}/relays/flag/custody");
    let public_log = entries(&s.text(&path, false).await?);
    let admin_log = entries(&s.text(&path, true).await?);
    ensure!(
        public_log.len() == 1 && admin_log.len() == 2,
        "{public_log:?}"
    );
    // The calendar and the tracks do not know of the early end or the run.
    let ics = s
        .text(&format!("/api/v1/events/{EVENT}/calendar.ics"), false)
        .await?;
    ensure!(
        !ics.contains("20240811T210140Z"),
        "the real end leaked: {ics}"
    );
    let geo: Value = serde_json::from_str(
        &s.text(
            &format!("/api/v1/events/{EVENT}/relays/flag/track.geojson"),
            false,
        )
        .await?,
    )?;
    let features = geo["features"].as_array().context("features")?;
    ensure!(
        features
            .iter()
            .all(|f| f["properties"]["leg"] != json!(RUN)),
        "the run leaked into the track: {geo}"
    );
    // A new ping changes the operators' document, not the spectators'.
    let (before, admin_before) = (etag(&s, false).await?, etag(&s, true).await?);
    let next = run
        .iter()
        .find(|f| f.t > at(200))
        .context("a fix after 200 s")?;
    s.send(&s.tokens[RUN].clone(), &[next.json()]).await?;
    ensure!(
        etag(&s, false).await? == before,
        "the public ETag moved with a ping"
    );
    ensure!(
        etag(&s, true).await? != admin_before,
        "the operators' did not"
    );

    // Two minutes after the entry was recorded (and the end), spectators know.
    s.tick_at(at(230)).await;
    let public = s.live(false).await?;
    let pf = flag(&public);
    ensure!(pf["current_leg"] == json!(RUN), "{pf}");
    ensure!(
        pf["legs"][0]["actual_end"] == json!(at(100).to_string()),
        "{pf}"
    );
    ensure!(entries(&s.text(&path, false).await?).len() == 2);
    let ics = s
        .text(&format!("/api/v1/events/{EVENT}/calendar.ics"), false)
        .await?;
    ensure!(ics.contains("20240811T210140Z"), "{ics}");
    // Positions up to 110 s are public, none after.
    let t = pf["position"]["t"].as_str().context("a public position")?;
    ensure!(t.parse::<jiff::Timestamp>()? <= at(110), "{pf}");
    Ok(())
}

#[tokio::test]
async fn a_carrier_is_public_only_on_the_course_once_the_leg_has_begun() -> Result<()> {
    // No public delay: this is about where a carrier is shown at all.
    let mut s = Server::with_plan(EVENT, PLAN, at(-480)).await?;
    for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
        let token = s.device(device, carrier).await?;
        s.tokens.push(token);
    }
    let home = json!({ "lon": 2.7522, "lat": 48.8566, "acc": 5 }); // 29 km east of the stage
    let ping = |t: jiff::Timestamp, at: &Value| {
        let mut p = at.clone();
        p["t"] = json!(t.to_string());
        p
    };
    // Eight minutes before the start, the first carrier's phone reports from home.
    s.tick_at(at(-400)).await;
    s.send(&s.tokens[STAGE].clone(), &[ping(at(-400), &home)])
        .await?;
    for admin in [false, true] {
        let live = s.live(admin).await?;
        let f = flag(&live);
        ensure!(
            f["status"] == json!("planned"),
            "the relay started early: {f}"
        );
        ensure!(f["position"].is_null(), "home was shown: {f}");
    }
    // The stage begins on time; the home fix stays out of the public track.
    s.tick_at(at(30)).await;
    let stage = json!({ "lon": 2.3522, "lat": 48.8566, "acc": 5 });
    s.set_clock(at(40));
    s.send(&s.tokens[STAGE].clone(), &[ping(at(40), &stage)])
        .await?;
    let live = s.live(false).await?;
    ensure!(flag(&live)["status"] == json!("running"), "{live}");
    ensure!(flag(&live)["position"]["lon"] == json!(2.3522), "{live}");
    // Gone home mid-leg: operators see it, spectators keep the last fix on the course.
    s.set_clock(at(60));
    s.send(&s.tokens[STAGE].clone(), &[ping(at(60), &home)])
        .await?;
    ensure!(flag(&s.live(true).await?)["position"]["lon"] == json!(2.7522));
    let public = s.live(false).await?;
    ensure!(
        flag(&public)["position"]["lon"] == json!(2.3522),
        "{public}"
    );
    for path in ["track.geojson", "track.gpx"] {
        let text = s
            .text(&format!("/api/v1/events/{EVENT}/relays/flag/{path}"), false)
            .await?;
        ensure!(
            !text.contains("2.7522"),
            "home in the public {path}: {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn operators_follow_the_undelayed_stream_spectators_the_delayed_one() -> Result<()> {
    use crate::common::SseReader;
    use std::time::Duration;
    let s = server().await?;
    let p = plan();
    s.tick_at(at(130)).await;
    let url = s.url(&format!("/api/v1/events/{EVENT}/stream"));
    let open = |admin: bool| {
        let mut req = s.http.get(&url).timeout(Duration::from_secs(20));
        if admin {
            req = req.bearer_auth(ADMIN);
        }
        req.send()
    };
    let mut operators = SseReader::new(open(true).await?);
    let mut spectators = SseReader::new(open(false).await?);
    for (who, sse) in [
        ("operators", &mut operators),
        ("spectators", &mut spectators),
    ] {
        let first = sse
            .next(Duration::from_secs(2))
            .await?
            .context("a snapshot")?;
        ensure!(first.event == "snapshot", "{who}: {}", first.event);
    }
    // The runner reports at 130 s: operators see the fix at once, spectators two minutes on.
    let run = walk(&p, RUN, at(121), planned_speed_mps(&p, RUN), 9, None);
    let f = run[1];
    s.send(&s.tokens[RUN].clone(), &[f.json()]).await?;
    let seen = operators.until("position", Duration::from_secs(2)).await?;
    let pos = &seen.last().context("a position")?.data;
    ensure!(pos["t"] == json!(f.t.to_string()), "{pos}");
    ensure!(
        pos.get("now").is_some(),
        "an undelayed position says when it was sent: {pos}"
    );
    // Spectators: nothing about the fix while it is not public (the tick streams their etas).
    s.tick_at(at(140)).await;
    while let Some(e) = spectators.next(Duration::from_millis(300)).await? {
        ensure!(
            e.event != "position",
            "a position leaked to spectators: {:?}",
            e.data
        );
    }
    s.tick_at(f.t.checked_add(jiff::SignedDuration::from_mins(2))?)
        .await;
    let seen = spectators.until("position", Duration::from_secs(2)).await?;
    let pos = &seen.last().context("a position")?.data;
    ensure!(pos["t"] == json!(f.t.to_string()), "{pos}");
    ensure!(pos.get("now").is_none(), "{pos}");
    Ok(())
}

#[tokio::test]
async fn a_reconnecting_spectator_is_sent_only_the_handoffs_already_public() -> Result<()> {
    use crate::common::SseReader;
    use std::time::Duration;
    let s = server().await?;
    s.tick_at(at(100)).await;
    let (status, body) = crate::common::as_admin(
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/relays/flag/handoffs")))
            .json(&serde_json::json!({ "from_leg": STAGE })),
    )
    .await?;
    ensure!(status == reqwest::StatusCode::CREATED, "{status} {body}");
    let url = s.url(&format!("/api/v1/events/{EVENT}/stream"));
    let reconnect = |id: &'static str| {
        s.http
            .get(&url)
            .header("Last-Event-ID", id)
            .timeout(Duration::from_secs(20))
            .send()
    };
    // As if it had seen nothing at all: still nothing of the handoff while it is not public.
    let mut early = SseReader::new(reconnect("0").await?);
    let first = early
        .next(Duration::from_secs(2))
        .await?
        .context("a snapshot")?;
    ensure!(first.event == "snapshot", "{}", first.event);
    while let Some(e) = early.next(Duration::from_millis(300)).await? {
        // (The log's genesis is public: it may come again.)
        ensure!(
            e.event != "handoff" && e.data["entry"]["kind"] != json!("handoff"),
            "an entry not yet public was sent to a reconnecting spectator: {:?}",
            e.data
        );
    }
    // Two minutes on it is public, and a spectator reconnecting then is sent it.
    s.tick_at(at(100 + 121)).await;
    let mut later = SseReader::new(reconnect("0").await?);
    let got = later.until("handoff", Duration::from_secs(2)).await?;
    ensure!(
        got.last()
            .is_some_and(|e| e.data["from_leg"] == json!(STAGE))
    );
    Ok(())
}
