//! What real phone apps send, over real HTTP: Traccar Client's heartbeat, OwnTracks iOS's `-1`
//! markers and Android's empty body, the OsmAnd form's `-1`s, encrypted OwnTracks payloads.
//! A known device is never answered 4xx (its app would retry the report forever, blocking its
//! queue): what can be stored is, what cannot is counted for the operator. And the unit of the
//! OsmAnd `speed`, which is knots from Traccar Client but m/s from the OsmAnd app or GPSLogger,
//! told from the device's own fixes or given when the device is registered.

use anyhow::{Context, Result};
use handoff_store::StoredPing;
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN, CARRIERS, DEVICES, EVENT, RUN, Server, answer, at, plan, route};

/// The relay server with the clock at T0 + 200 s (the runner holds the flag).
async fn running() -> Result<Server> {
    let s = Server::with_relay().await?;
    s.tick_at(at(200)).await;
    Ok(s)
}

fn runner_at(along_m: f64) -> (f64, f64) {
    let p = route(&plan(), RUN).point_at(along_m);
    (p.lon, p.lat)
}

async fn pings_of(s: &Server, device: &str) -> Result<Vec<StoredPing>> {
    Ok(s.stored()
        .await?
        .into_iter()
        .filter(|p| p.device_id == device)
        .collect())
}

fn osmand(s: &Server, pairs: &[(&str, &str)]) -> Result<reqwest::RequestBuilder> {
    let query = serde_urlencoded::to_string(pairs)?;
    Ok(s.http.get(s.url(&format!("/osmand?{query}"))))
}

#[tokio::test]
async fn a_traccar_client_heartbeat_without_a_fix_is_200_counted_and_not_stored() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let heartbeat = [
        ("id", token.as_str()),
        ("timestamp", "1723410190"),
        ("batt", "81.5"),
        ("charge", "false"),
    ];
    s.assert_dropped(
        osmand(&s, &heartbeat)?,
        DEVICES[RUN],
        ("osmand", "no_position"),
    )
    .await?;
    // Traccar Client for Android POSTs its parameters in the query string, with no body.
    let query = serde_urlencoded::to_string(heartbeat)?;
    let post = s.http.post(s.url(&format!("/osmand?{query}")));
    s.assert_dropped(post, DEVICES[RUN], ("osmand", "no_position"))
        .await?;
    // The JSON form without coordinates.
    let json = s.http.post(s.url("/osmand")).json(&json!({
        "location": { "timestamp": "2024-08-11T21:03:10Z", "battery": { "level": 0.8 } },
        "device_id": token
    }));
    s.assert_dropped(json, DEVICES[RUN], ("osmand", "no_position"))
        .await?;
    let last = &s.listed_device(DEVICES[RUN]).await?["dropped"]["last"];
    assert_eq!(
        (&last["reason"], &last["field"]),
        (&json!("no_position"), &json!("location.coords")),
        "{last}"
    );
    // The heartbeat of a device nobody registered is still a 401.
    let (status, body) = answer(osmand(
        &s,
        &[
            ("id", "not-a-token"),
            ("timestamp", "1723410190"),
            ("batt", "81"),
        ],
    )?)
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(s.ping_count().await?, 0);
    Ok(())
}

#[tokio::test]
async fn osmand_minus_one_is_unknown_and_the_fix_is_stored() -> Result<()> {
    let s = running().await?;
    let token = s.tokens[RUN].clone();
    let (lon, lat) = runner_at(150.0);
    let req = osmand(
        &s,
        &[
            ("id", &token),
            ("timestamp", "1723410190"),
            ("lat", &lat.to_string()),
            ("lon", &lon.to_string()),
            ("speed", "-1"),
            ("bearing", "-1"),
            ("accuracy", "-1"),
            ("batt", "-1"),
            ("altitude", "35"),
        ],
    )?;
    let (status, body) = answer(req).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = pings_of(&s, DEVICES[RUN]).await?;
    let p = stored.first().context("the fix is stored")?.ping;
    assert_eq!((p.t, p.lon, p.lat), (at(190), lon, lat));
    assert_eq!(
        (p.speed_mps, p.heading_deg, p.acc_m, p.batt_pct, p.alt_m),
        (None, None, None, None, Some(35.0)),
        "-1 is unknown, not 359° nor a refusal"
    );
    assert_eq!(s.dropped(DEVICES[RUN], "out_of_range").await?, 0);
    Ok(())
}

#[tokio::test]
async fn owntracks_ios_batt_and_acc_of_minus_one_are_unknown() -> Result<()> {
    let s = running().await?;
    let (lon, lat) = runner_at(150.0);
    // OwnTracks iOS without a battery reading or accuracy.
    let body = json!({
        "_type": "location", "acc": -1, "alt": 0, "batt": -1, "bs": 0, "conn": "w",
        "cog": -1, "lat": lat, "lon": lon, "m": 1, "t": "p", "tid": "MP",
        "tst": 1_723_410_190, "vac": -1, "vel": -1,
        "topic": "owntracks/perec/iphone", "created_at": 1_723_410_191
    });
    let req = s
        .http
        .post(s.url("/owntracks"))
        .basic_auth(DEVICES[RUN], Some(&s.tokens[RUN]))
        .json(&body);
    let (status, reply) = answer(req).await?;
    assert_eq!((status, &reply), (StatusCode::OK, &json!([])));
    let stored = pings_of(&s, DEVICES[RUN]).await?;
    let p = stored.first().context("the fix is stored")?.ping;
    assert_eq!((p.t, p.lon, p.lat), (at(190), lon, lat));
    assert_eq!(
        (p.acc_m, p.batt_pct, p.speed_mps, p.heading_deg),
        (None, None, None, None)
    );
    Ok(())
}

#[tokio::test]
async fn owntracks_android_empty_body_is_200_with_an_empty_list() -> Result<()> {
    let s = running().await?;
    let before = s.listed_device(DEVICES[RUN]).await?["dropped"]["total"].clone();
    let req = s
        .http
        .post(s.url("/owntracks"))
        .basic_auth(DEVICES[RUN], Some(&s.tokens[RUN]))
        .header("content-type", "application/json")
        .body("");
    let (status, reply) = answer(req).await?;
    assert_eq!((status, &reply), (StatusCode::OK, &json!([])));
    assert_eq!(s.ping_count().await?, 0);
    // Not a report at all: nothing counted either.
    assert_eq!(
        s.listed_device(DEVICES[RUN]).await?["dropped"]["total"],
        before
    );
    // With a wrong password it is still a 401.
    let req = s
        .http
        .post(s.url("/owntracks"))
        .basic_auth(DEVICES[RUN], Some("wrong"))
        .body("");
    assert_eq!(answer(req).await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn owntracks_encrypted_and_unreadable_messages_are_counted_with_the_fix() -> Result<()> {
    let s = running().await?;
    let post = |body: &str| {
        s.http
            .post(s.url("/owntracks"))
            .basic_auth(DEVICES[RUN], Some(&s.tokens[RUN]))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let reply = s
        .assert_dropped(
            post(r#"{"_type":"encrypted","data":"fV9bB9zTjKa1TUkZnK2O+g=="}"#),
            DEVICES[RUN],
            ("owntracks", "encrypted"),
        )
        .await?;
    assert_eq!(reply, json!([]));
    let last = &s.listed_device(DEVICES[RUN]).await?["dropped"]["last"];
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("Encryption key")),
        "{last}"
    );
    // A location without coordinates, and one without `_type`.
    s.assert_dropped(
        post(r#"{"_type":"location","tst":1723410190,"batt":50}"#),
        DEVICES[RUN],
        ("owntracks", "no_position"),
    )
    .await?;
    s.assert_dropped(
        post(r#"{"lat":48.86,"lon":2.35,"tst":1723410190}"#),
        DEVICES[RUN],
        ("owntracks", "malformed"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_batch_keeps_its_rejected_list_and_counts_it_per_device() -> Result<()> {
    let s = running().await?;
    let (lon, lat) = runner_at(150.0);
    let body = json!([
        { "t": at(190).to_string(), "lon": lon, "lat": lat },
        { "t": at(191).to_string(), "lon": lon, "lat": 91 },
        { "t": at(2000).to_string(), "lon": lon, "lat": lat },
    ]);
    let (status, reply) = s
        .post_pings(
            Some(&s.tokens[RUN]),
            Some("application/json"),
            body.to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["accepted"], 1);
    let codes: Vec<&Value> = reply["rejected"]
        .as_array()
        .map(|r| r.iter().map(|r| &r["error"]["code"]).collect())
        .unwrap_or_default();
    assert_eq!(codes, [&json!("out_of_range"), &json!("future_timestamp")]);
    let device = s.listed_device(DEVICES[RUN]).await?;
    assert_eq!(
        device["dropped"]["by_reason"],
        json!({ "out_of_range": 1, "future_timestamp": 1 }),
        "{device}"
    );
    assert_eq!(s.dropped_metric("batch", "future_timestamp").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn the_device_listing_is_for_the_admin_only() -> Result<()> {
    let s = running().await?;
    let path = format!("/api/v1/events/{EVENT}/devices");
    for token in [None, Some(s.tokens[RUN].as_str())] {
        let mut req = s.http.get(s.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(answer(req).await?.0, StatusCode::UNAUTHORIZED);
    }
    let req = s
        .http
        .get(s.url("/api/v1/events/nope/devices"))
        .bearer_auth(ADMIN);
    assert_eq!(answer(req).await?.0, StatusCode::NOT_FOUND);
    let d = s.listed_device(DEVICES[RUN]).await?;
    assert_eq!(
        (&d["carrier"], &d["dropped"]["total"], &d["speed_unit"]),
        (
            &json!(CARRIERS[RUN]),
            &json!(0),
            &json!({ "registered": null, "detected": null, "pairs": 0, "used": "knots" })
        ),
        "{d}"
    );
    Ok(())
}

/// Sends the runner's track, 4 m/s for 20 fixes 10 s apart, through the OsmAnd query form with
/// `speed` written in `per_mps` units (1.0: m/s; 1.943844: knots), from device `token`.
async fn send_track(s: &Server, token: &str, per_mps: f64) -> Result<()> {
    for i in 0..20_i32 {
        let along_m = 100.0 + 40.0 * f64::from(i);
        let (lon, lat) = runner_at(along_m);
        let t: Timestamp = at(130 + 10 * i64::from(i));
        // A little speed noise, as a phone's Doppler speed has.
        let speed = 4.0 * (1.0 + 0.05 * f64::from(i % 3 - 1)) * per_mps;
        let (status, body) = answer(osmand(
            s,
            &[
                ("id", token),
                ("timestamp", &t.as_second().to_string()),
                ("lat", &lat.to_string()),
                ("lon", &lon.to_string()),
                ("accuracy", "5"),
                ("speed", &speed.to_string()),
            ],
        )?)
        .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn the_speed_unit_of_a_device_is_detected_from_its_fixes() -> Result<()> {
    const KNOTS_PER_MPS: f64 = 3600.0 / 1852.0;
    for (unit, per_mps) in [("mps", 1.0), ("knots", KNOTS_PER_MPS)] {
        let s = Server::with_relay().await?;
        s.tick_at(at(400)).await;
        send_track(&s, &s.tokens[RUN], per_mps).await?;
        let d = s.listed_device(DEVICES[RUN]).await?;
        assert_eq!(d["speed_unit"]["detected"], unit, "{d}");
        assert_eq!(d["speed_unit"]["used"], unit, "{d}");
        let stored = pings_of(&s, DEVICES[RUN]).await?;
        assert_eq!(stored.len(), 20);
        let speed = |k: usize| stored[k].ping.speed_mps.unwrap_or(f64::NAN);
        // Once detected, the speed is stored in m/s truly: about 4.
        for k in 10..20 {
            assert!(
                (speed(k) - 4.0).abs() < 0.25,
                "{unit} fix {k}: {}",
                speed(k)
            );
        }
        // Before that, the first fix was read as knots, as Traccar reads the field.
        let want_first = 4.0 * 0.95 * per_mps / KNOTS_PER_MPS;
        assert!((speed(0) - want_first).abs() < 1e-9, "{unit}: {}", speed(0));
    }
    Ok(())
}

#[tokio::test]
async fn a_speed_unit_given_at_registration_is_used_from_the_first_fix() -> Result<()> {
    let s = running().await?;
    let register = |body: Value| {
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/devices")))
            .bearer_auth(ADMIN)
            .json(&body)
    };
    let (status, reply) = answer(register(json!({
        "device": "perec-osmand", "carrier": CARRIERS[RUN], "speed_unit": "mps"
    })))
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["speed_unit"], "mps");
    let token = reply["token"].as_str().context("a token")?.to_owned();
    let (lon, lat) = runner_at(150.0);
    let (status, _) = answer(osmand(
        &s,
        &[
            ("id", &token),
            ("timestamp", "1723410190"),
            ("lat", &lat.to_string()),
            ("lon", &lon.to_string()),
            ("speed", "3.5"),
        ],
    )?)
    .await?;
    assert_eq!(status, StatusCode::OK);
    let stored = pings_of(&s, "perec-osmand").await?;
    assert_eq!(stored.first().and_then(|p| p.ping.speed_mps), Some(3.5));
    let d = s.listed_device("perec-osmand").await?;
    assert_eq!(
        d["speed_unit"],
        json!({ "registered": "mps", "detected": null, "pairs": 0, "used": "mps" })
    );
    // A unit it does not know is refused, naming the field, and registers nothing.
    let (status, reply) = answer(register(json!({
        "device": "perec-gpslogger", "carrier": CARRIERS[RUN], "speed_unit": "m/s"
    })))
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["field"], "speed_unit");
    assert!(s.listed_device("perec-gpslogger").await.is_err());
    Ok(())
}
