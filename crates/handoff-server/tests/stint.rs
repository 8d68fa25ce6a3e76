//! One carrier across consecutive legs is one stint: the change of mode between them is a
//! segment change, not a handoff. Over HTTP: the record and code endpoints refuse it by name
//! (409 `segment_change`) and aim at the end of the stint, the tracker moves on to the next
//! segment by itself and streams a `segment` (not a `handoff`), the custody log holds no
//! "X → X" entry and verifies; and every done leg says how its end is known (`ended_by`),
//! an assumed one (`planned_time`, `positions`) apart from a verified one.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, SseEvent, SseReader, answer, as_admin, at, error_of};

const EVENT: &str = "stint";
const HANDOFFS: &str = "/api/v1/events/stint/relays/flag/handoffs";
const SOON: Duration = Duration::from_secs(2);

/// A 2-minute stage; Tom Cruise on a motorcycle (1.46 km), then on foot (730 m): one stint;
/// then a skater.
const PLAN: &str = r#"
[event]
id = "stint"
name = "One stint, two modes"

[[places]]
id = "hdv"
name = "Hôtel de Ville"
at = [2.3522, 48.8566]
timezone = "Europe/Paris"

[[relays]]
id = "flag"
object = "Olympic flag"

[[relays.legs]]
carriers = ["Anne Hidalgo"]
mode = "stage"
place = "hdv"
start = "2024-08-11T21:00:00Z"
duration = "2m"

[[relays.legs]]
carriers = ["Tom Cruise"]
mode = "motorcycle"
route = { points = [[2.3522, 48.8566], [2.3722, 48.8566]] }
duration = "4m"

[[relays.legs]]
carriers = ["Tom Cruise"]
mode = "run"
route = { points = [[2.3722, 48.8566], [2.3822, 48.8566]] }
duration = "5m"

[[relays.legs]]
carriers = ["Jagger Eaton"]
mode = "skateboard"
route = { points = [[2.3822, 48.8566], [2.3922, 48.8566]] }
duration = "6m"
"#;

fn ping(s: i64, lon: f64) -> Value {
    json!({ "t": at(s).to_string(), "lon": lon, "lat": 48.8566, "acc": 5 })
}

/// Tom's pings along the motorcycle leg, from 130 s to its end at 290 s (33 km/h).
fn motorcycle_ride() -> Vec<Value> {
    (0..=8_u8)
        .map(|k| ping(130 + i64::from(k) * 20, 2.3522 + 0.02 * f64::from(k) / 8.0))
        .collect()
}

async fn live_full(s: &Server) -> Result<Value> {
    let body = s
        .text(&format!("/api/v1/events/{EVENT}/live?legs=full"), true)
        .await?;
    Ok(serde_json::from_str(&body)?)
}

async fn live(s: &Server) -> Result<Value> {
    let body = s
        .text(&format!("/api/v1/events/{EVENT}/live"), true)
        .await?;
    Ok(serde_json::from_str(&body)?)
}

fn leg(live: &Value, i: usize) -> &Value {
    &live["relays"][0]["legs"][i]
}

async fn record(s: &Server, token: Option<&str>, body: Value) -> Result<(StatusCode, Value)> {
    let req = s.http.post(s.url(HANDOFFS)).json(&body);
    match token {
        Some(t) => answer(req.bearer_auth(t)).await,
        None => as_admin(req).await,
    }
}

async fn stream(s: &Server) -> Result<SseReader> {
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/events/{EVENT}/stream")))
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    let mut sse = SseReader::new(resp);
    let first = sse.next(SOON).await?.context("no snapshot")?;
    anyhow::ensure!(first.event == "snapshot", "{}", first.event);
    Ok(sse)
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

#[tokio::test]
async fn a_change_of_mode_by_the_same_carrier_is_no_handoff() -> Result<()> {
    let s = Server::with_plan(EVENT, PLAN, at(-60)).await?;
    let tom = s.device_in(EVENT, "tom-phone", "Tom Cruise").await?;
    let jagger = s.device_in(EVENT, "jagger-phone", "Jagger Eaton").await?;
    let mut sse = stream(&s).await?;

    // The stage's two minutes run out: an assumed handoff, streamed and shown as one.
    s.tick_at(at(121)).await;
    let events = sse.until("eta", SOON).await?;
    let handoff = events
        .iter()
        .find(|e| e.event == "handoff")
        .context("a handoff")?;
    assert_eq!(
        (
            &handoff.data["verified"],
            &handoff.data["ended_by"],
            &handoff.data["from_leg"]
        ),
        (&json!(false), &json!("planned_time"), &json!(0))
    );
    let full = live_full(&s).await?;
    assert_eq!(
        (
            &leg(&full, 0)["ended_by"],
            &leg(&full, 0)["verified"],
            &leg(&full, 0)["segment"]
        ),
        (&json!("planned_time"), &json!(false), &Value::Null)
    );
    assert_eq!(leg(&full, 1)["segment"], json!(true), "{full}");
    assert_eq!(leg(&full, 1).get("ended_by"), None, "not done yet");
    assert_eq!(leg(&live(&s).await?, 0)["ended_by"], json!("planned_time"));

    // Nothing recorded yet: Tom holds nothing per the log, so he gets no code.
    let (st, body) = answer(
        s.http
            .post(s.url(&format!("{HANDOFFS}/code")))
            .bearer_auth(&tom),
    )
    .await?;
    assert_eq!(
        (st, error_of(&body).0),
        (StatusCode::CONFLICT, "wrong_party")
    );

    // The operator records the stage's end: verified, and said so.
    let (st, body) = record(
        &s,
        None,
        json!({ "from_leg": 0, "at": at(120).to_string() }),
    )
    .await?;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let full = live_full(&s).await?;
    assert_eq!(
        (&leg(&full, 0)["ended_by"], &leg(&full, 0)["verified"]),
        (&json!("operator"), &json!(true))
    );

    // The motorcycle → run boundary is named: refused as a segment change, naming the next
    // real handoff.
    let (st, body) = record(&s, None, json!({ "from_leg": 1 })).await?;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let (code, _) = error_of(&body);
    assert_eq!(code, "segment_change");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("leg 1 to leg 2 is a segment change")
            && message.contains("from motorcycle to run")
            && message.contains("the next handoff is from leg 2 (Tom Cruise → Jagger Eaton)"),
        "{message}"
    );

    // Tom's code is for the end of his stint, not for the change of mode.
    let (st, body) = answer(
        s.http
            .post(s.url(&format!("{HANDOFFS}/code")))
            .bearer_auth(&tom),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!((&body["from_leg"], &body["to_leg"]), (&json!(2), &json!(3)));
    let code = body["code"].as_str().context("a code")?.to_owned();
    // Entered for the segment change: refused by name, and the code is not spent.
    s.set_clock(at(125));
    let (st, body) = record(&s, Some(&jagger), json!({ "code": code, "from_leg": 1 })).await?;
    assert_eq!(
        (st, error_of(&body).0),
        (StatusCode::CONFLICT, "segment_change"),
        "{body}"
    );

    // Tom rides to the end of the motorcycle leg and runs on: the tracker moves on by itself,
    // and streams a segment change, not a handoff.
    let moto = motorcycle_ride();
    s.set_clock(at(290));
    s.send(&tom, &moto).await?;
    s.set_clock(at(320));
    s.send(&tom, &[ping(320, 2.3752)]).await?;
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &SseEvent| e.event == "segment") {
        seen.extend(sse.until("eta", SOON).await?);
    }
    // (The only handoff streamed is the stage's, recorded above.)
    assert!(
        !seen
            .iter()
            .any(|e| e.event == "handoff" && e.data["from_leg"] != json!(0)),
        "{:?}",
        names(&seen)
    );
    let segment = seen
        .iter()
        .find(|e| e.event == "segment")
        .context("segment")?;
    assert_eq!(
        (
            &segment.data["from_leg"],
            &segment.data["to_leg"],
            &segment.data["ended_by"]
        ),
        (&json!(1), &json!(2), &json!("positions"))
    );
    let full = live_full(&s).await?;
    assert_eq!(full["relays"][0]["current_leg"], json!(2), "{full}");
    assert_eq!(full["relays"][0]["mode"], json!("run"));
    assert_eq!(leg(&full, 1)["ended_by"], json!("positions"));

    // The real handoff at the end of the stint: the skater enters Tom's code.
    s.set_clock(at(400));
    let (st, entry) = record(&s, Some(&jagger), json!({ "code": code })).await?;
    assert_eq!(st, StatusCode::CREATED, "{entry}");
    assert_eq!(
        (
            &entry["from"]["leg"],
            &entry["to"]["leg"],
            &entry["evidence"]["method"]
        ),
        (&json!(2), &json!(3), &json!("two_party"))
    );
    let full = live_full(&s).await?;
    assert_eq!(
        (&leg(&full, 2)["ended_by"], &leg(&full, 2)["verified"]),
        (&json!("two_party"), &json!(true))
    );
    // Custody is verified through the stint: its change of mode asked for nothing.
    assert_eq!(leg(&full, 1)["verified"], json!(true));

    // The log: no entry from a carrier to themself, and it verifies.
    let log = s
        .text(
            &format!("/api/v1/events/{EVENT}/relays/flag/custody"),
            false,
        )
        .await?;
    assert_eq!(handoff_core::custody::verify(&log), Ok(3));
    let steps: Vec<(Value, Value)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "handoff")
        .map(|e| (e["from"]["leg"].clone(), e["to"]["leg"].clone()))
        .collect();
    assert_eq!(steps, [(json!(0), json!(1)), (json!(2), json!(3))]);
    Ok(())
}

#[tokio::test]
async fn a_phone_at_a_change_of_mode_meets_nobody_and_the_stint_end_is_found() -> Result<()> {
    let s = Server::with_plan(EVENT, PLAN, at(-60)).await?;
    let tom = s.device_in(EVENT, "tom-phone", "Tom Cruise").await?;
    let jagger = s.device_in(EVENT, "jagger-phone", "Jagger Eaton").await?;
    s.tick_at(at(121)).await;
    let (st, body) = record(
        &s,
        None,
        json!({ "from_leg": 0, "at": at(120).to_string() }),
    )
    .await?;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // Tom at the end of the motorcycle leg, which is also the start of his run: the same phone
    // is "giver" and "receiver" of the change of mode, and nothing is recorded for it.
    let moto = motorcycle_ride();
    s.set_clock(at(300));
    s.send(&tom, &moto).await?;
    s.send(&tom, &[ping(300, 2.3722)]).await?;
    // Then Tom and the skater meet at the end of the run: the stint's handoff, by proximity.
    s.set_clock(at(500));
    s.send(&tom, &[ping(480, 2.3800), ping(495, 2.3821)])
        .await?;
    s.send(&jagger, &[ping(498, 2.3822)]).await?;
    // The proximity entry is recorded after the pings are applied: wait for it (bounded).
    let mut log = String::new();
    for _ in 0..100 {
        log = s
            .text(
                &format!("/api/v1/events/{EVENT}/relays/flag/custody"),
                false,
            )
            .await?;
        if log.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handoff_core::custody::verify(&log),
        Ok(3),
        "{log}\n{}",
        live_full(&s).await?
    );
    let entries: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = entries.last().context("an entry")?;
    assert_eq!(
        (
            &last["from"]["leg"],
            &last["to"]["leg"],
            &last["evidence"]["method"]
        ),
        (&json!(2), &json!(3), &json!("proximity"))
    );
    let full = live_full(&s).await?;
    assert_eq!(full["relays"][0]["current_leg"], json!(3), "{full}");
    assert_eq!(leg(&full, 2)["ended_by"], json!("proximity"));
    assert_eq!(leg(&full, 1)["ended_by"], json!("positions"));
    Ok(())
}
