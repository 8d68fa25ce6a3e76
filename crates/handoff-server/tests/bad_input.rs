//! One test per class of bad input: the status, the contract's `error.code` and `error.field`,
//! and, as much as the answer, that nothing was stored. A phone route answers a known device
//! 200 even then (phones retry a refused report forever): there the report is counted as
//! dropped, with its field, in the device listing and `/metrics`. Then the inputs that are
//! well formed but of no use (stored, never shown), and the plan and device uploads that are
//! refused.

use anyhow::Result;
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    ADMIN, BIKE, CARRIERS, DEVICES, EVENT, LOOP, PLAN, RUN, Server, answer, at, error_of, flag,
    plan, route,
};

/// A server where the runner holds the flag, the clock at T0 + 200 s, and one ping of hers
/// stored (so "nothing stored" is checked against a count that is not zero).
async fn running() -> Result<Server> {
    let s = Server::with_relay().await?;
    s.tick_at(at(200)).await;
    s.send(&s.tokens[RUN].clone(), &[good(at(160), 100.0)])
        .await?;
    assert_eq!(s.ping_count().await?, 1);
    Ok(s)
}

/// A valid ping of the runner, `along_m` along her leg.
fn good(t: Timestamp, along_m: f64) -> Value {
    let p = route(&plan(), RUN).point_at(along_m);
    json!({ "t": t.to_string(), "lon": p.lon, "lat": p.lat, "acc": 8 })
}

/// Asserts a refusal: status, `error.code`, `error.field`; and that the store still holds
/// `count` pings.
async fn assert_refused(
    s: &Server,
    (status, body): (StatusCode, Value),
    want: (StatusCode, &str, Option<&str>),
    count: i64,
) -> Result<()> {
    assert_eq!(status, want.0, "{body}");
    assert_eq!(error_of(&body), (want.1, want.2), "{body}");
    assert_eq!(
        s.ping_count().await?,
        count,
        "nothing is stored after {body}"
    );
    Ok(())
}

/// An OwnTracks location report.
fn owntracks(lat: f64, lon: f64, tst: i64) -> Value {
    json!({ "_type": "location", "lat": lat, "lon": lon, "tst": tst })
}

/// `POST /owntracks` with HTTP Basic credentials `user:password`; the caller adds the body.
fn owntracks_post(s: &Server, user: &str, password: &str) -> reqwest::RequestBuilder {
    s.http
        .post(s.url("/owntracks"))
        .basic_auth(user, Some(password))
}

/// A Traccar Client JSON body, at T0 + 170 s.
fn traccar(lat: f64, lon: f64, device_id: &str) -> Value {
    json!({
        "location": {
            "timestamp": "2024-08-11T21:02:50Z",
            "coords": { "latitude": lat, "longitude": lon }
        },
        "device_id": device_id
    })
}

/// Sends a batch of the one ping `ping`: answered 200, the ping refused at index 0 with
/// `want` as its `(code, field)`, and nothing more stored than the one ping of [`running`].
async fn assert_refused_in_batch(
    s: &Server,
    token: &str,
    ping: Value,
    want: (&str, Option<&str>),
) -> Result<()> {
    let (status, reply) = s
        .post_pings(
            Some(token),
            Some("application/json"),
            json!([ping]).to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            reply["accepted"].as_u64(),
            reply["rejected"][0]["index"].as_u64()
        ),
        (Some(0), Some(0)),
        "{reply}"
    );
    assert_eq!(error_of(&reply["rejected"][0]), want);
    assert_eq!(s.ping_count().await?, 1);
    Ok(())
}

/// `n` pings of a phone left on for hours before the event, one a second, one JSON object each.
fn backlog(n: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"t":"{}","lon":2.3522,"lat":48.8566}}"#,
                at(-20_000 + i)
            )
        })
        .collect()
}

fn osmand_query(id: &str, lat: &str, lon: &str, timestamp: &str) -> String {
    serde_urlencoded::to_string([
        ("id", id),
        ("lat", lat),
        ("lon", lon),
        ("timestamp", timestamp),
    ])
    .unwrap_or_default()
}

#[tokio::test]
async fn an_unknown_or_wrong_token_is_401() -> Result<()> {
    let s = running().await?;
    let body = Value::from(vec![good(at(170), 120.0)]).to_string();
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized", None);
    let wrong = s
        .post_pings(
            Some("0123456789abcdef"),
            Some("application/json"),
            body.clone(),
        )
        .await?;
    assert_refused(&s, wrong, unauthorized, 1).await?;
    // The admin token is no device token.
    let admin = s
        .post_pings(Some(ADMIN), Some("application/json"), body.clone())
        .await?;
    assert_refused(&s, admin, unauthorized, 1).await?;
    // A token with one character changed.
    let mut near = s.tokens[RUN].clone();
    near.replace_range(0..1, if near.starts_with('0') { "1" } else { "0" });
    let near_miss = s
        .post_pings(Some(&near), Some("application/json"), body)
        .await?;
    assert_refused(&s, near_miss, unauthorized, 1).await?;
    let p = route(&plan(), RUN).point_at(120.0);
    let osmand = s
        .osmand_get(&osmand_query(
            &near,
            &p.lat.to_string(),
            &p.lon.to_string(),
            "1723410170",
        ))
        .await?;
    assert_refused(&s, osmand, unauthorized, 1).await?;
    let traccar = traccar(p.lat, p.lon, "nobody");
    let traccar = answer(s.http.post(s.url("/osmand")).json(&traccar)).await?;
    assert_refused(&s, traccar, unauthorized, 1).await?;
    let req = owntracks_post(&s, DEVICES[RUN], "wrong-token").json(&owntracks(
        p.lat,
        p.lon,
        1_723_410_170,
    ));
    assert_refused(&s, answer(req).await?, unauthorized, 1).await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_token_is_401() -> Result<()> {
    let s = running().await?;
    let body = Value::from(vec![good(at(170), 120.0)]).to_string();
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized", None);
    let none = s
        .post_pings(None, Some("application/json"), body.clone())
        .await?;
    assert_refused(&s, none, unauthorized, 1).await?;
    let req = s
        .http
        .post(s.url("/api/v1/pings"))
        .header("authorization", "Bearer ")
        .header("content-type", "application/json")
        .body(body);
    assert_refused(&s, answer(req).await?, unauthorized, 1).await?;
    let p = route(&plan(), RUN).point_at(120.0);
    let req = s
        .http
        .post(s.url("/owntracks"))
        .json(&owntracks(p.lat, p.lon, 1_723_410_170));
    assert_refused(&s, answer(req).await?, unauthorized, 1).await?;
    // OsmAnd carries its token as `id`: without one, the request names the missing field.
    let osmand = s
        .osmand_get(&format!("lat={}&lon={}&timestamp=1723410170", p.lat, p.lon))
        .await?;
    assert_refused(
        &s,
        osmand,
        (StatusCode::BAD_REQUEST, "missing_field", Some("id")),
        1,
    )
    .await?;
    Ok(())
}

/// The field the last dropped report of the runner named.
async fn last_dropped_field(s: &Server) -> Result<Value> {
    Ok(s.listed_device(DEVICES[RUN]).await?["dropped"]["last"]["field"].clone())
}

#[tokio::test]
async fn malformed_json_is_400_unless_a_known_phone_sent_it() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let malformed = (StatusCode::BAD_REQUEST, "malformed_json", None);
    let cut = format!("[{}, {{\"t\":", good(at(170), 120.0));
    for body in [cut.as_str(), "42"] {
        let refused = s
            .post_pings(Some(&token), Some("application/json"), body.to_owned())
            .await?;
        assert_refused(&s, refused, malformed, 1).await?;
    }
    let traccar = s
        .http
        .post(s.url("/osmand"))
        .header("content-type", "application/json")
        .body("{\"location\":");
    assert_refused(&s, answer(traccar).await?, malformed, 1).await?;
    // OwnTracks authenticates in a header: the device is known, so its report is dropped.
    let owntracks = owntracks_post(&s, DEVICES[RUN], &token).body("{\"_type\":\"location\",");
    let reply = s
        .assert_dropped(owntracks, DEVICES[RUN], ("owntracks", "malformed"))
        .await?;
    assert_eq!(reply, json!([]));
    Ok(())
}

#[tokio::test]
async fn a_latitude_out_of_range_names_its_field() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let out = ("osmand", "out_of_range");
    for lat in ["91", "-90.0001"] {
        let query = osmand_query(&token, lat, "2.35", "1723410170");
        let req = s.http.get(s.url(&format!("/osmand?{query}")));
        s.assert_dropped(req, DEVICES[RUN], out).await?;
        assert_eq!(last_dropped_field(&s).await?, "lat");
    }
    let traccar = traccar(148.86, 2.35, &token);
    let req = s.http.post(s.url("/osmand")).json(&traccar);
    s.assert_dropped(req, DEVICES[RUN], out).await?;
    assert_eq!(last_dropped_field(&s).await?, "location.coords.latitude");
    // In a batch, the ping is refused at its index and the request is answered 200.
    let ping = json!({ "t": at(170).to_string(), "lon": 2.35, "lat": 91 });
    assert_refused_in_batch(&s, &token, ping, ("out_of_range", Some("lat"))).await
}

#[tokio::test]
async fn a_longitude_out_of_range_names_its_field() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    for lon in ["181", "-180.5"] {
        let query = osmand_query(&token, "48.86", lon, "1723410170");
        let req = s.http.get(s.url(&format!("/osmand?{query}")));
        s.assert_dropped(req, DEVICES[RUN], ("osmand", "out_of_range"))
            .await?;
        assert_eq!(last_dropped_field(&s).await?, "lon");
    }
    let req =
        owntracks_post(&s, DEVICES[RUN], &token).json(&owntracks(48.86, 362.35, 1_723_410_170));
    s.assert_dropped(req, DEVICES[RUN], ("owntracks", "out_of_range"))
        .await?;
    assert_eq!(last_dropped_field(&s).await?, "lon");
    let ping = json!({ "t": at(170).to_string(), "lon": -200, "lat": 48.86 });
    assert_refused_in_batch(&s, &token, ping, ("out_of_range", Some("lon"))).await
}

#[tokio::test]
async fn nan_and_infinity_are_refused_as_not_finite() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let not_finite = ("osmand", "not_finite");
    for (lat, lon, field) in [
        ("NaN", "2.35", "lat"),
        ("48.86", "inf", "lon"),
        ("48.86", "-Infinity", "lon"),
        ("nan", "2.35", "lat"),
    ] {
        let query = osmand_query(&token, lat, lon, "1723410170");
        let req = s.http.get(s.url(&format!("/osmand?{query}")));
        s.assert_dropped(req, DEVICES[RUN], not_finite).await?;
        assert_eq!(last_dropped_field(&s).await?, field);
    }
    let query = serde_urlencoded::to_string([
        ("id", token.as_str()),
        ("lat", "48.86"),
        ("lon", "2.35"),
        ("timestamp", "1723410170"),
        ("speed", "NaN"),
    ])?;
    let req = s.http.get(s.url(&format!("/osmand?{query}")));
    s.assert_dropped(req, DEVICES[RUN], not_finite).await?;
    assert_eq!(last_dropped_field(&s).await?, "speed");
    Ok(())
}

#[tokio::test]
async fn a_clock_more_than_ten_minutes_ahead_is_refused() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    // The server's clock reads T0 + 200 s: eleven minutes later is a broken phone clock.
    let ahead = at(200 + 11 * 60);
    let p = route(&plan(), RUN).point_at(120.0);
    let query = osmand_query(
        &token,
        &p.lat.to_string(),
        &p.lon.to_string(),
        &ahead.as_second().to_string(),
    );
    let req = s.http.get(s.url(&format!("/osmand?{query}")));
    s.assert_dropped(req, DEVICES[RUN], ("osmand", "future_timestamp"))
        .await?;
    assert_eq!(last_dropped_field(&s).await?, "timestamp");
    let req =
        owntracks_post(&s, DEVICES[RUN], &token).json(&owntracks(p.lat, p.lon, ahead.as_second()));
    s.assert_dropped(req, DEVICES[RUN], ("owntracks", "future_timestamp"))
        .await?;
    assert_eq!(last_dropped_field(&s).await?, "tst");
    assert_refused_in_batch(
        &s,
        &token,
        good(ahead, 120.0),
        ("future_timestamp", Some("t")),
    )
    .await?;
    // Nine minutes ahead is a clock a little off, not broken: kept.
    s.send(&token, &[good(at(200 + 9 * 60), 130.0)]).await?;
    assert_eq!(s.ping_count().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let pings = json!([good(at(170), 120.0), good(at(180), 140.0)]).to_string();
    // Valid JSON that would store two pings, padded with whitespace to just past 1 MiB.
    let mut big = pings.clone();
    big.push_str(&" ".repeat((1 << 20) + 1 - big.len()));
    assert_eq!(big.len(), (1 << 20) + 1);
    let too_large = (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);
    let refused = s
        .post_pings(Some(&token), Some("application/json"), big)
        .await?;
    assert_refused(&s, refused, too_large, 1).await?;
    let mut big_form = osmand_query(&token, "48.86", "2.35", "1723410170");
    big_form.push_str(&format!("&pad={}", "x".repeat(1 << 20)));
    let req = s
        .http
        .post(s.url("/osmand"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big_form);
    assert_refused(&s, answer(req).await?, too_large, 1).await?;
    // Exactly 1 MiB is within the limit.
    let mut limit = pings;
    limit.push_str(&" ".repeat((1 << 20) - limit.len()));
    let (status, reply) = s
        .post_pings(Some(&token), Some("application/json"), limit)
        .await?;
    assert_eq!(
        (status, reply["accepted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{reply}"
    );
    assert_eq!(s.ping_count().await?, 3);
    Ok(())
}

#[tokio::test]
async fn more_than_10000_pings_in_one_batch_is_413() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let too_many = (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pings", None);
    let over = backlog(10_001);
    for (content_type, body) in [
        ("application/json", format!("[{}]", over.join(","))),
        ("application/x-ndjson", over.join("\n")),
    ] {
        let refused = s.post_pings(Some(&token), Some(content_type), body).await?;
        assert_refused(&s, refused, too_many, 1).await?;
    }
    let (status, reply) = s
        .post_pings(
            Some(&token),
            Some("application/json"),
            format!("[{}]", backlog(10_000).join(",")),
        )
        .await?;
    assert_eq!(
        (status, reply["accepted"].as_u64()),
        (StatusCode::OK, Some(10_000))
    );
    assert_eq!(s.ping_count().await?, 10_001);
    Ok(())
}

#[tokio::test]
async fn a_wrong_content_type_is_415() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let body = json!([good(at(170), 120.0)]).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        None,
    ] {
        let refused = s.post_pings(Some(&token), ct, body.clone()).await?;
        assert_refused(
            &s,
            refused,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            ),
            1,
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn owntracks_basic_auth_must_name_the_tokens_own_device() -> Result<()> {
    let s = running().await?;
    let p = route(&plan(), RUN).point_at(120.0);
    let owntracks = owntracks(p.lat, p.lon, 1_723_410_170);
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized", None);
    // The runner's token under the cyclist's device id, and under a name nobody has.
    for user in [DEVICES[BIKE], "someone-else"] {
        let req = owntracks_post(&s, user, &s.tokens[RUN]).json(&owntracks);
        assert_refused(&s, answer(req).await?, unauthorized, 1).await?;
    }
    let req = s
        .http
        .post(s.url("/owntracks"))
        .bearer_auth(&s.tokens[RUN])
        .json(&owntracks);
    assert_refused(&s, answer(req).await?, unauthorized, 1).await?;
    Ok(())
}

#[tokio::test]
async fn a_mixed_batch_stores_the_good_and_lists_the_bad_by_index() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let batch = json!([
        good(at(170), 120.0),
        { "t": at(175).to_string(), "lon": 2.35, "lat": 91 },
        good(at(180), 140.0),
        { "lon": 2.35, "lat": 48.86 },
        { "t": at(185).to_string(), "lon": "2.35", "lat": 48.86 },
        [2.35, 48.86],
        { "t": at(1000).to_string(), "lon": 2.35, "lat": 48.86 },
        good(at(190), 160.0),
    ]);
    let (status, reply) = s
        .post_pings(Some(&token), Some("application/json"), batch.to_string())
        .await?;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["accepted"].as_u64(), reply["duplicates"].as_u64()),
        (Some(3), Some(0)),
        "{reply}"
    );
    let rejected: Vec<(u64, (&str, Option<&str>))> = reply["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (r["index"].as_u64().unwrap_or(99), error_of(r)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        rejected,
        [
            (1, ("out_of_range", Some("lat"))),
            (3, ("missing_field", Some("t"))),
            (4, ("invalid_value", Some("lon"))),
            (5, ("malformed_json", None)),
            (6, ("future_timestamp", Some("t"))),
        ]
    );
    assert_eq!(s.ping_count().await?, 4);
    let stored: Vec<Timestamp> = s.stored().await?.into_iter().map(|p| p.ping.t).collect();
    assert_eq!(stored, [at(160), at(170), at(180), at(190)]);
    let live = s.live(false).await?;
    assert!(
        (flag(&live)["progress"]["along_m"].as_f64().unwrap_or(0.0) - 160.0).abs() < 1.0,
        "{live}"
    );
    Ok(())
}

#[tokio::test]
async fn a_ping_of_no_use_is_stored_but_never_shown() -> Result<()> {
    let s = running().await?;
    let before_public = s.live(false).await?;
    let shown = &flag(&before_public)["position"];
    assert_eq!(shown["t"], at(160).to_string());
    // The runner's phone, an hour before the event, at the Eiffel Tower.
    let eiffel = json!({ "t": at(-3600).to_string(), "lon": 2.2945, "lat": 48.8584, "acc": 10 });
    // The cyclist, waiting at the Louvre for the flag; the loop runner, warming up at home.
    let louvre = route(&plan(), BIKE).point_at(10.0);
    let waiting =
        json!({ "t": at(190).to_string(), "lon": louvre.lon, "lat": louvre.lat, "acc": 10 });
    let home = json!({ "t": at(195).to_string(), "lon": 2.4050, "lat": 48.8460, "acc": 10 });
    for (token, ping) in [
        (&s.tokens[RUN], eiffel),
        (&s.tokens[BIKE], waiting),
        (&s.tokens[LOOP], home),
    ] {
        let reply = s.send(token, &[ping]).await?;
        assert_eq!(reply["accepted"], 1);
    }
    assert_eq!(
        s.ping_count().await?,
        4,
        "a well-formed ping is kept even when it is of no use now"
    );
    let after = s.live(false).await?;
    assert_eq!(
        flag(&after)["position"],
        *shown,
        "the public position is still the runner's last one on her leg"
    );
    assert_eq!(flag(&after)["holders"], json!([CARRIERS[RUN]]));
    assert_eq!(flag(&after)["progress"], flag(&before_public)["progress"]);
    let text = after.to_string();
    for lon in ["2.2945", "2.405", &louvre.lon.to_string()] {
        assert!(!text.contains(lon), "{lon} is shown: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_broken_plan_is_400_naming_the_field_with_every_problem() -> Result<()> {
    let s = Server::with_relay().await?;
    let broken = PLAN
        .replace("at = [2.3212, 48.8656]", "at = [2.3212, 91.0]")
        .replace("mode = \"bike\"", "mode = \"hoverboard\"");
    let (status, body) = s.put_plan(Some(ADMIN), "application/toml", &broken).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (code, field) = error_of(&body);
    assert_eq!(code, "invalid_plan");
    let problems = body["error"]["details"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(problems.len() >= 2, "every problem is listed: {body}");
    assert_eq!(
        field,
        problems[0]["field"].as_str(),
        "error.field is the first problem's"
    );
    assert!(field.is_some_and(|f| f.starts_with("places[1]")), "{body}");
    assert!(
        problems
            .iter()
            .any(|p| p["field"].as_str().is_some_and(|f| f.contains("mode"))),
        "{body}"
    );
    for p in &problems {
        assert!(
            p["line"].as_u64().is_some_and(|l| l > 0) && p["message"].as_str().is_some(),
            "{p}"
        );
    }
    // A plan that is not TOML at all.
    let (status, body) = s
        .put_plan(Some(ADMIN), "application/toml", "[event\nid = ")
        .await?;
    assert_eq!(
        (status, error_of(&body).0),
        (StatusCode::BAD_REQUEST, "invalid_plan"),
        "{body}"
    );
    assert_plan_unchanged(&s).await
}

#[tokio::test]
async fn a_plan_naming_a_route_file_is_refused() -> Result<()> {
    let s = Server::with_relay().await?;
    // The bike leg's inline points, `route = { points = [ … ] }`.
    let bike = PLAN.find("mode = \"bike\"").unwrap_or_default();
    let from = bike + PLAN[bike..].find("route = {").unwrap_or_default();
    let to = from + PLAN[from..].find("] }").unwrap_or_default() + "] }".len();
    let points = &PLAN[from..to];
    assert!(points.starts_with("route = { points = [") && points.contains("[2.3330, 48.8627]"));
    let with_file = PLAN.replace(points, "route = { file = \"/etc/passwd\" }");
    let (status, body) = s
        .put_plan(Some(ADMIN), "application/toml", &with_file)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (code, field) = error_of(&body);
    assert_eq!(
        (code, field),
        ("invalid_plan", Some("relays[0].legs[2].route.file")),
        "{body}"
    );
    let relative = PLAN.replace(points, "route = { file = \"routes/seine.gpx\" }");
    let (status, body) = s
        .put_plan(Some(ADMIN), "application/toml", &relative)
        .await?;
    assert_eq!(
        (status, error_of(&body).1),
        (
            StatusCode::BAD_REQUEST,
            Some("relays[0].legs[2].route.file")
        ),
        "{body}"
    );
    assert_plan_unchanged(&s).await
}

#[tokio::test]
async fn only_the_admin_may_upload_a_plan() -> Result<()> {
    let s = Server::with_relay().await?;
    let renamed = PLAN.replace("through Paris", "hijacked");
    for token in [None, Some("guess"), Some(s.tokens[RUN].as_str())] {
        let (status, body) = s.put_plan(token, "application/toml", &renamed).await?;
        assert_eq!(
            (status, error_of(&body)),
            (StatusCode::UNAUTHORIZED, ("unauthorized", None)),
            "{body}"
        );
    }
    assert_plan_unchanged(&s).await
}

#[tokio::test]
async fn a_device_for_an_unknown_carrier_is_400() -> Result<()> {
    let s = Server::with_relay().await?;
    let (status, body) = s.register("ghost-phone", "Usain Bolt").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).1, Some("carrier"));
    let (status, body) = s.register("ghost-phone", "").await?;
    assert_eq!(
        (status, error_of(&body).1),
        (StatusCode::BAD_REQUEST, Some("carrier")),
        "{body}"
    );
    // Only the admin registers devices.
    let req = s
        .http
        .post(s.url(&format!("/api/v1/events/{EVENT}/devices")))
        .bearer_auth(&s.tokens[RUN])
        .json(&json!({ "device": "ghost-phone", "carrier": CARRIERS[RUN] }));
    let (status, body) = answer(req).await?;
    assert_eq!(
        (status, error_of(&body).0),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{body}"
    );
    // Nothing was registered: the id is still free.
    assert!(s.device("ghost-phone", CARRIERS[RUN]).await.is_ok());
    Ok(())
}

/// The event still has its first plan, as uploaded.
async fn assert_plan_unchanged(s: &Server) -> Result<()> {
    let (status, body) = answer(s.http.get(s.url(&format!("/api/v1/events/{EVENT}")))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], 1, "no new version was stored");
    assert_eq!(body["plan"]["event"]["name"], "Olympic flag: through Paris");
    Ok(())
}

#[tokio::test]
async fn an_unknown_route_or_method_answers_the_contracts_json_error() -> Result<()> {
    let s = Server::start().await?;
    for path in [
        "/no/such/route",
        "/api/v1/nope",
        "/api/v1/events/e/relays/r/nope",
    ] {
        let r = s.http.get(s.url(path)).send().await?;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            r.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}"
        );
        let body: Value = r.json().await?;
        assert_eq!(error_of(&body), ("not_found", None), "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(path)),
            "{body}"
        );
    }
    // A route that exists, asked with a method it does not take.
    let r = s.http.delete(s.url("/api/v1/events")).send().await?;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = r
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(allow.contains("GET"), "Allow: {allow}");
    let body: Value = r.json().await?;
    assert_eq!(error_of(&body), ("method_not_allowed", None), "{body}");
    Ok(())
}
