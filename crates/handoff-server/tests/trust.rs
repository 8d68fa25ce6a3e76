//! Handoffs nobody can forge or race: every request names the step it records, check and
//! append are one step, a phone cannot date or place a handoff anywhere it likes, notes are
//! bounded text, and out-of-range shifts and delays are refused.

use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    ADMIN, BIKE, EVENT, PLAN, RUN, STAGE, Server, answer, as_admin, at, error_of, plan, route,
};

const HANDOFFS: &str = "/api/v1/events/paris/relays/flag/handoffs";

async fn custody(s: &Server) -> Result<Vec<Value>> {
    let text = s
        .text(
            &format!("/api/v1/events/{EVENT}/relays/flag/custody"),
            false,
        )
        .await?;
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

fn handoffs(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|e| e["kind"] == "handoff").collect()
}

/// The operator's request for `body`, with an optional idempotency key.
fn operator(s: &Server, body: &Value, key: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = s.http.post(s.url(HANDOFFS)).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req
}

#[tokio::test]
async fn a_double_click_records_one_handoff() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(30)).await;
    // A request that names no step is refused: a second click would record the next one.
    let (status, body) = as_admin(operator(&s, &json!({}), None)).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    ensure!(error_of(&body).1 == Some("from_leg"), "{body}");
    // Two clicks at once, both for the step the button showed: one is recorded.
    let step = json!({ "from_leg": STAGE });
    let (a, b) = tokio::join!(
        as_admin(operator(&s, &step, None)),
        as_admin(operator(&s, &step, None))
    );
    let mut statuses = [a?.0, b?.0];
    statuses.sort();
    ensure!(
        statuses == [StatusCode::CREATED, StatusCode::CONFLICT],
        "{statuses:?}"
    );
    // With an idempotency key and no leg: the retry gets the first answer, nothing twice.
    let (a, b) = tokio::join!(
        as_admin(operator(&s, &json!({}), Some("click-7"))),
        as_admin(operator(&s, &json!({}), Some("click-7")))
    );
    let ((sa, ea), (sb, eb)) = (a?, b?);
    let mut statuses = [sa, sb];
    statuses.sort();
    ensure!(
        statuses == [StatusCode::OK, StatusCode::CREATED],
        "{statuses:?} {ea} {eb}"
    );
    ensure!(
        ea["seq"] == eb["seq"] && ea["hash"] == eb["hash"],
        "{ea} {eb}"
    );
    // A key is 1 to 255 visible ASCII characters.
    for bad in ["", "has space", &"k".repeat(256)] {
        let (status, body) = as_admin(operator(&s, &json!({}), Some(bad))).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "{bad:?}: {status} {body}"
        );
        ensure!(error_of(&body).1 == Some("Idempotency-Key"), "{body}");
    }
    // The same key for another request is refused.
    let (status, body) =
        as_admin(operator(&s, &json!({ "note": "another" }), Some("click-7"))).await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status} {body}"
    );
    let log = custody(&s).await?;
    let legs: Vec<_> = handoffs(&log)
        .iter()
        .map(|e| e["from"]["leg"].clone())
        .collect();
    ensure!(legs == [json!(STAGE), json!(RUN)], "{legs:?}");
    Ok(())
}

/// The giver's code, asked for on the giver's phone.
async fn code(s: &Server, giver: usize) -> Result<String> {
    let (status, body) = answer(
        s.http
            .post(s.url(&format!("{HANDOFFS}/code")))
            .bearer_auth(&s.tokens[giver]),
    )
    .await?;
    ensure!(status == StatusCode::OK, "code: {status} {body}");
    Ok(body["code"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_code_checked_for_one_step_is_never_recorded_on_another() -> Result<()> {
    // The receiver enters the code for runner → cyclist while the operator records that same
    // handoff: one of them wins, and the log never holds a two-party entry for a later step.
    // (The code was once checked before the append, which then took the step it found: with
    // the operator's append in between, the receiver's code recorded cyclist → next.) To line
    // the requests up, the test holds the custody chains' lock (tokio's is fair: first come,
    // first served) while the receiver's request, then the operator's, queue on it.
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    let (status, body) = as_admin(operator(&s, &json!({ "from_leg": STAGE }), None)).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let code = code(&s, RUN).await?;
    let exchange = route(&plan(), RUN).point_at(route(&plan(), RUN).length_m());
    let live = s.state.event(EVENT).expect("the event");
    let held = live.chains.lock().await;
    let receiver = tokio::spawn(answer(
        s.http
            .post(s.url(HANDOFFS))
            .bearer_auth(&s.tokens[BIKE])
            .json(&json!({ "code": code, "position": [exchange.lon, exchange.lat] })),
    ));
    // Nothing to await: the request is queued on a lock the server does not report. If it
    // were not queued yet the operator would go first, and the test would still hold.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let op = tokio::spawn(as_admin(operator(&s, &json!({ "from_leg": RUN }), None)));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(held);
    let ((rs, rb), (os, ob)) = (receiver.await??, op.await??);
    ensure!(
        [rs, os].contains(&StatusCode::CREATED) && rs != os,
        "receiver {rs} {rb}, operator {os} {ob}"
    );
    let log = custody(&s).await?;
    let steps: Vec<_> = handoffs(&log)
        .iter()
        .map(|e| (e["from"]["leg"].clone(), e["evidence"]["method"].clone()))
        .collect();
    ensure!(
        steps.len() == 2 && steps[1].0 == json!(RUN),
        "a step skipped: {steps:?}"
    );
    for e in handoffs(&log) {
        if e["evidence"]["method"] == "two_party" {
            ensure!(
                e["from"]["leg"] == json!(RUN) && e["evidence"]["giver_device"] == "perec-watch",
                "two-party evidence on the wrong step: {e}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_receivers_phone_cannot_write_history_into_the_log() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    as_admin(operator(&s, &json!({ "from_leg": STAGE }), None)).await?;
    let code = code(&s, RUN).await?;
    let p = plan();
    let exchange = route(&p, RUN).point_at(route(&p, RUN).length_m());
    let near = [exchange.lon, exchange.lat];
    let receive = |body: Value| {
        answer(
            s.http
                .post(s.url(HANDOFFS))
                .bearer_auth(&s.tokens[BIKE])
                .json(&body),
        )
    };
    let refused = [
        (
            json!({ "code": code, "at": "0001-01-01T00:00:00Z", "position": near }),
            "at",
        ),
        (
            json!({ "code": code, "at": at(130 - 600).to_string(), "position": near }),
            "at",
        ),
        (
            json!({ "code": code, "position": [-180.0, -90.0] }),
            "position",
        ),
        (
            json!({ "code": code, "position": near, "note": "x".repeat(1_000_000) }),
            "note",
        ),
        (
            json!({ "code": code, "position": near, "note": "ok\u{7f}" }),
            "note",
        ),
    ];
    for (body, field) in refused {
        let (status, reply) = receive(body).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "{field}: {status} {reply}"
        );
        ensure!(error_of(&reply).1 == Some(field), "{field}: {reply}");
    }
    ensure!(handoffs(&custody(&s).await?).len() == 1, "nothing stored");
    // Dated by the server, placed where the phone was (near the exchange), a short note.
    let (status, entry) = receive(json!({
        "code": code, "position": near, "note": "at the Louvre\nall good"
    }))
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {entry}");
    ensure!(entry["at"] == json!(at(130).to_string()), "{entry}");
    Ok(())
}

#[tokio::test]
async fn out_of_range_shifts_and_delays_are_refused() -> Result<()> {
    let s = Server::with_relay().await?;
    for minutes in [i64::MIN, i64::MAX, 7 * 24 * 60 + 1, 0] {
        let (status, body) = as_admin(
            s.http
                .post(s.url(&format!("/api/v1/events/{EVENT}/shift")))
                .json(&json!({ "minutes": minutes })),
        )
        .await?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "{minutes}: {status} {body}"
        );
        ensure!(error_of(&body).1 == Some("minutes"), "{body}");
    }
    let (status, body) = as_admin(
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/shift")))
            .json(&json!({ "minutes": 5, "note": "bell\u{7}" })),
    )
    .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    // A public delay past the time scale once published positions at once: refused.
    let huge = PLAN.replace(
        "name = \"Olympic flag: through Paris\"\n",
        "name = \"Olympic flag: through Paris\"\npublic_delay = \"1000000000h\"\n",
    );
    ensure!(huge != PLAN);
    let (status, body) = s.put_plan(Some(ADMIN), "application/toml", &huge).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    ensure!(body.to_string().contains("too long"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_code_records_one_handoff_even_when_that_handoff_is_voided() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    as_admin(operator(&s, &json!({ "from_leg": STAGE }), None)).await?;
    let p = plan();
    let exchange = route(&p, RUN).point_at(route(&p, RUN).length_m());
    let enter = |code: &str| {
        answer(
            s.http
                .post(s.url(HANDOFFS))
                .bearer_auth(&s.tokens[BIKE])
                .json(&json!({ "code": code, "position": [exchange.lon, exchange.lat] })),
        )
    };
    let first = code(&s, RUN).await?;
    let issued = s.state.store.handoff_codes(EVENT, "flag").await?;
    ensure!(issued.len() == 1, "{issued:?}");
    let (status, entry) = enter(&first).await?;
    ensure!(status == StatusCode::CREATED, "{status} {entry}");
    // The code is deleted once used; should that delete never happen (the server stopped in
    // between), the code must still be spent: put it back.
    for _ in 0..250 {
        if s.state.store.handoff_codes(EVENT, "flag").await?.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ensure!(
        s.state.store.handoff_codes(EVENT, "flag").await?.is_empty(),
        "used: deleted"
    );
    s.state.store.put_handoff_code(issued[0].clone()).await?;
    // The operator voids it: runner → cyclist is the next handoff again…
    let (status, body) = as_admin(operator(
        &s,
        &json!({ "kind": "correction", "corrects": entry["seq"], "void": true }),
        None,
    ))
    .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    // …but the code that recorded it is spent.
    let (status, body) = enter(&first).await?;
    ensure!(
        status == StatusCode::CONFLICT && body["error"]["code"] == "bad_code",
        "{status} {body}"
    );
    let again = code(&s, RUN).await?;
    let (status, body) = enter(&again).await?;
    ensure!(status == StatusCode::CREATED, "a new code: {status} {body}");
    ensure!(
        handoffs(&custody(&s).await?).len() == 3,
        "stage, voided, again"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_handoff_codes_are_rate_limited_per_relay() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(130)).await;
    as_admin(operator(&s, &json!({ "from_leg": STAGE }), None)).await?;
    let p = plan();
    let exchange = route(&p, RUN).point_at(route(&p, RUN).length_m());
    let near = [exchange.lon, exchange.lat];
    let enter = |code: String| {
        answer(
            s.http
                .post(s.url(HANDOFFS))
                .bearer_auth(&s.tokens[BIKE])
                .json(&json!({ "code": code, "position": near })),
        )
    };
    // Guessing: each code burns after 5 wrong tries and the giver asks for another, until the
    // relay has had its 20 wrong codes for the 10 minutes.
    let limit = handoff_server::limits::CODE_FAILURES_PER_10_MIN;
    let mut right = String::new();
    for i in 0..limit {
        if i % 5 == 0 {
            right = code(&s, RUN).await?;
        }
        let (status, body) = enter(format!("{right}0")).await?;
        ensure!(
            status == StatusCode::CONFLICT && body["error"]["code"] == "bad_code",
            "guess {i}: {status} {body}"
        );
    }
    // Now even the right code waits: a guesser cannot go on with fresh codes.
    let right = code(&s, RUN).await?;
    let resp = s
        .http
        .post(s.url(HANDOFFS))
        .bearer_auth(&s.tokens[BIKE])
        .json(&json!({ "code": right, "position": near }))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::TOO_MANY_REQUESTS,
        "{}",
        resp.status()
    );
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .context("a Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=600).contains(&wait), "Retry-After {wait}");
    ensure!(
        handoffs(&custody(&s).await?).len() == 1,
        "nothing recorded by the guesses"
    );
    Ok(())
}
