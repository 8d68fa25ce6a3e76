//! Every wire format end to end: what a phone sends, what the store then holds (in SI units,
//! read back through the store from the SQLite file), and the progress and ETAs `/live` shows.
//! The runner's pings lie exactly on her route, so progress is known to the metre.

use anyhow::Result;
use handoff_core::ping::Ping;
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    BIKE, CARRIERS, DEVICES, LOOP, RUN, Server, answer, at, at_ms, flag, metric, plan, route,
    secs_between, ts,
};

/// A server whose stage has ended (at T0 + 2 min): the runner holds the flag, the clock reads
/// T0 + `now_s`.
async fn running(now_s: i64) -> Result<Server> {
    let s = Server::with_relay().await?;
    s.tick_at(at(now_s)).await;
    Ok(s)
}

/// The point `along_m` metres along the run, as (lon, lat).
fn on_run(along_m: f64) -> (f64, f64) {
    let p = route(&plan(), RUN).point_at(along_m);
    (p.lon, p.lat)
}

fn run_length_m() -> f64 {
    route(&plan(), RUN).length_m()
}

/// A ping with only the required values.
fn bare(t: Timestamp, (lon, lat): (f64, f64)) -> Ping {
    Ping {
        t,
        lon,
        lat,
        acc_m: None,
        speed_mps: None,
        heading_deg: None,
        alt_m: None,
        batt_pct: None,
    }
}

/// The pings the runner's device has stored.
async fn runner_pings(s: &Server) -> Result<Vec<Ping>> {
    Ok(s.stored()
        .await?
        .into_iter()
        .filter(|p| p.device_id == DEVICES[RUN])
        .map(|p| p.ping)
        .collect())
}

/// Asserts that `/live?legs=full` shows the runner holding the flag, `along_m` into her leg, last seen at
/// `seen` (at `pos`), and that the later handoffs follow from her leg's ETA by their planned
/// durations (5 min of bike, 7 min of loop).
fn assert_runner_at(live: &Value, along_m: f64, seen: Timestamp, pos: (f64, f64)) {
    let r = flag(live);
    assert_eq!(r["status"], "running", "{r}");
    assert_eq!(r["current_leg"], 1);
    assert_eq!(r["holders"], json!([CARRIERS[RUN]]));
    assert_eq!(r["mode"], "run");
    let progress = &r["progress"];
    let length = run_length_m();
    assert!(
        (progress["along_m"].as_f64().unwrap_or(-1.0) - along_m).abs() < 1.0,
        "progress {progress}, want {along_m} m"
    );
    assert!(
        // Written to 0.1 m.
        (progress["length_m"].as_f64().unwrap_or(-1.0) - length).abs() <= 0.05 + 1e-9,
        "{progress}"
    );
    assert!(
        (progress["fraction"].as_f64().unwrap_or(-1.0) - along_m / length).abs() < 1e-3,
        "{progress}"
    );
    assert_eq!(ts(&r["position"]["t"]), seen);
    assert!((r["position"]["lon"].as_f64().unwrap_or(0.0) - pos.0).abs() < 1e-9);
    assert!((r["position"]["lat"].as_f64().unwrap_or(0.0) - pos.1).abs() < 1e-9);
    assert_eq!(r["off_route"], false);
    let legs = &r["legs"];
    assert_eq!(legs[0]["status"], "done");
    assert_eq!(legs[1]["status"], "current");
    assert!((legs[1]["along_m"].as_f64().unwrap_or(-1.0) - along_m).abs() < 1.0);
    // Later legs take their planned durations scaled by the relay's pace against its plan so
    // far (the same factor for both).
    let mut ratios = Vec::new();
    for (i, minutes) in [(BIKE, 5), (LOOP, 7)] {
        assert_eq!(
            ts(&legs[i]["eta_start"]),
            ts(&legs[i - 1]["eta_end"]),
            "leg {i} starts when leg {} ends",
            i - 1
        );
        let took = ts(&legs[i]["eta_end"]).duration_since(ts(&legs[i]["eta_start"]));
        ratios.push(took.as_secs_f64() / SignedDuration::from_mins(minutes).as_secs_f64());
    }
    assert!((ratios[0] - ratios[1]).abs() < 0.01, "{ratios:?}");
    assert!((0.25..=4.0).contains(&ratios[0]), "{ratios:?}");
    assert_eq!(ts(&r["eta_finish"]), ts(&legs[LOOP]["eta_end"]));
}

/// The runner's predicted arrival at the Louvre, `/live`'s `legs[1].eta_end`.
fn run_eta(live: &Value) -> Timestamp {
    ts(&flag(live)["legs"][RUN]["eta_end"])
}

/// When she would arrive from `along_m` at `t` at `speed_mps`.
fn arrival(t: Timestamp, along_m: f64, speed_mps: f64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs_f64(
        (run_length_m() - along_m) / speed_mps,
    ))
    .unwrap_or(t)
}

/// The plan's pace for the run: its length over 7 minutes.
fn planned_mps() -> f64 {
    run_length_m() / 420.0
}

/// Asserts that an ETA blends the plan's pace with a slower observed one: later than the plan's
/// pace alone would give, earlier than the observed pace alone.
fn assert_blended(eta: Timestamp, t: Timestamp, along_m: f64, observed_mps: f64) {
    assert!(observed_mps < planned_mps());
    let (by_plan, by_observation) = (
        arrival(t, along_m, planned_mps()),
        arrival(t, along_m, observed_mps),
    );
    assert!(
        eta > by_plan && eta < by_observation,
        "ETA {eta} should lie between {by_plan} (plan) and {by_observation} (observed)"
    );
}

#[tokio::test]
async fn a_json_array_is_stored_in_si_units_and_moves_the_runner() -> Result<()> {
    let s = running(200).await?;
    let (p1, p2) = (on_run(100.0), on_run(200.0));
    let body = json!([
        {
            "t": "2024-08-11T21:02:40Z", "lon": p1.0, "lat": p1.1,
            "acc": 4.5, "speed": 2.5, "heading": 291.5, "alt": 35.2, "batt": 87
        },
        // The same API with an offset: 23:03:20 in Paris is 21:03:20 UTC.
        { "t": "2024-08-11T23:03:20+02:00", "lon": p2.0, "lat": p2.1, "satellites": 9 }
    ]);
    let (status, reply) = s
        .post_pings(
            Some(&s.tokens[RUN]),
            Some("application/json"),
            body.to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply,
        json!({ "accepted": 2, "duplicates": 0, "rejected": [] })
    );

    let want = [
        Ping {
            acc_m: Some(4.5),
            speed_mps: Some(2.5),
            heading_deg: Some(291.5),
            alt_m: Some(35.2),
            batt_pct: Some(87.0),
            ..bare(at(160), p1)
        },
        bare(at(200), p2),
    ];
    assert_eq!(runner_pings(&s).await?, want);
    assert_eq!(s.ping_count().await?, 2);

    let live = s.live_full(false).await?;
    assert_runner_at(&live, 200.0, at(200), p2);
    // 100 m in 40 s (2.5 m/s) observed, slower than the plan's 2.7 m/s.
    assert_blended(run_eta(&live), at(200), 200.0, 2.5);
    Ok(())
}

#[tokio::test]
async fn ndjson_is_read_line_by_line() -> Result<()> {
    let s = running(240).await?;
    let (p1, p2, p3) = (on_run(100.0), on_run(200.0), on_run(300.0));
    let body = format!(
        "{}\r\n\r\n{}\n   \n{}\n",
        json!({ "t": at(160).to_string(), "lon": p1.0, "lat": p1.1, "acc": 6 }),
        json!({ "t": at(200).to_string(), "lon": p2.0, "lat": p2.1, "batt": 55.5 }),
        json!({ "t": at(240).to_string(), "lon": p3.0, "lat": p3.1, "speed": 2.5 }),
    );
    let (status, reply) = s
        .post_pings(Some(&s.tokens[RUN]), Some("application/x-ndjson"), body)
        .await?;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({ "accepted": 3, "duplicates": 0, "rejected": [] })
        )
    );
    let want = [
        Ping {
            acc_m: Some(6.0),
            ..bare(at(160), p1)
        },
        Ping {
            batt_pct: Some(55.5),
            ..bare(at(200), p2)
        },
        Ping {
            speed_mps: Some(2.5),
            ..bare(at(240), p3)
        },
    ];
    assert_eq!(runner_pings(&s).await?, want);
    let live = s.live_full(false).await?;
    assert_runner_at(&live, 300.0, at(240), p3);
    assert_blended(run_eta(&live), at(240), 300.0, 2.5);
    Ok(())
}

#[tokio::test]
async fn osmand_query_reads_every_timestamp_form_and_speed_in_knots() -> Result<()> {
    let s = running(160).await?;
    let token = s.tokens[RUN].clone();
    let forms = [
        // (time, along, timestamp as sent)
        (at(160), 100.0, "1723410160".to_owned()),
        (at_ms(200_500), 200.0, "1723410200500".to_owned()),
        (at(240), 300.0, "2024-08-11T23:04:00+02:00".to_owned()),
        (at(280), 400.0, "2024-08-11 21:04:40".to_owned()),
    ];
    for (k, (t, along, timestamp)) in forms.iter().enumerate() {
        s.set_clock(*t);
        let (lon, lat) = on_run(*along);
        let query = serde_urlencoded::to_string([
            ("id", token.as_str()),
            ("timestamp", timestamp),
            ("lat", &lat.to_string()),
            ("lon", &lon.to_string()),
            ("speed", "10"),
            ("bearing", "291.5"),
            ("altitude", "35.2"),
            ("accuracy", "4.5"),
            ("batt", "87"),
            ("hdop", "0.9"),
        ])?;
        let (status, reply) = s.osmand_get(&query).await?;
        assert_eq!(status, StatusCode::OK, "{timestamp}: {reply}");
        let live = s.live_full(false).await?;
        assert_runner_at(&live, *along, *t, (lon, lat));
        if k == 0 {
            // One fix: no pace observed yet, so the ETA is the plan's pace from where she is.
            let want = arrival(*t, *along, planned_mps());
            assert!(
                secs_between(want, run_eta(&live)).abs() < 1.0,
                "ETA {} want {want}",
                run_eta(&live)
            );
        }
    }
    let stored = runner_pings(&s).await?;
    assert_eq!(stored.len(), 4);
    for (p, (t, along, timestamp)) in stored.iter().zip(&forms) {
        assert_eq!(p.t, *t, "timestamp={timestamp}");
        let (lon, lat) = on_run(*along);
        assert_eq!((p.lon, p.lat), (lon, lat));
        // 10 knots is 10 nautical miles (1852 m) an hour.
        let speed = p.speed_mps.unwrap_or(f64::NAN);
        assert!((speed - 5.1444).abs() < 1e-4, "{speed}");
        assert_eq!(
            (p.heading_deg, p.alt_m, p.acc_m, p.batt_pct),
            (Some(291.5), Some(35.2), Some(4.5), Some(87.0))
        );
    }
    Ok(())
}

#[tokio::test]
async fn osmand_form_body_with_the_location_and_deviceid_aliases() -> Result<()> {
    let s = running(240).await?;
    let token = s.tokens[RUN].clone();
    let (p1, p2) = (on_run(100.0), on_run(250.0));
    let forms = [
        serde_urlencoded::to_string([
            ("id", token.as_str()),
            ("lat", &p1.1.to_string()),
            ("lon", &p1.0.to_string()),
            ("timestamp", "2024-08-11 21:02:40"),
            ("speed", "5.4"),
        ])?,
        serde_urlencoded::to_string([
            ("deviceid", token.as_str()),
            ("location", &format!("{},{}", p2.1, p2.0)),
            ("timestamp", "1723410220"),
            ("heading", "-90"),
        ])?,
    ];
    for body in forms {
        let req = s
            .http
            .post(s.url("/osmand"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let (status, reply) = answer(req).await?;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let want = [
        Ping {
            speed_mps: Some(5.4 * 1852.0 / 3600.0),
            ..bare(at(160), p1)
        },
        Ping {
            heading_deg: Some(270.0),
            ..bare(at(220), p2)
        },
    ];
    assert_eq!(runner_pings(&s).await?, want);
    assert_runner_at(&s.live_full(false).await?, 250.0, at(220), p2);
    Ok(())
}

#[tokio::test]
async fn traccar_client_json_body_in_metres_per_second_with_unknowns() -> Result<()> {
    let s = running(240).await?;
    let token = s.tokens[RUN].clone();
    let (p1, p2) = (on_run(150.0), on_run(300.0));
    let bodies = [
        json!({
            "location": {
                "timestamp": "2024-08-11T21:03:00.000Z",
                "coords": {
                    "latitude": p1.1, "longitude": p1.0, "accuracy": 7.5,
                    "speed": 2.6, "heading": -1, "altitude": -1
                },
                "is_moving": true, "odometer": 412.5, "event": "motionchange",
                "battery": { "level": 0.85, "is_charging": false },
                "activity": { "type": "running" }
            },
            "device_id": token
        }),
        // Unix milliseconds, and "unknown" for the speed and the battery.
        json!({
            "location": {
                "timestamp": 1_723_410_240_000_i64,
                "coords": {
                    "latitude": p2.1, "longitude": p2.0, "accuracy": 5,
                    "speed": -1, "heading": 290.0, "altitude": 35
                },
                "battery": { "level": -1, "is_charging": true }
            },
            "device_id": token
        }),
    ];
    for body in bodies {
        let (status, reply) = answer(s.http.post(s.url("/osmand")).json(&body)).await?;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let want = [
        Ping {
            acc_m: Some(7.5),
            speed_mps: Some(2.6),
            batt_pct: Some(85.0),
            ..bare(at(180), p1)
        },
        Ping {
            acc_m: Some(5.0),
            heading_deg: Some(290.0),
            alt_m: Some(35.0),
            ..bare(at(240), p2)
        },
    ];
    assert_eq!(runner_pings(&s).await?, want);
    let live = s.live_full(false).await?;
    assert_runner_at(&live, 300.0, at(240), p2);
    // 150 m in 60 s: 2.5 m/s.
    assert_blended(run_eta(&live), at(240), 300.0, 2.5);
    Ok(())
}

#[tokio::test]
async fn owntracks_location_in_kmh_and_percent_other_types_ignored() -> Result<()> {
    let s = running(240).await?;
    let (device, token) = (DEVICES[RUN], s.tokens[RUN].clone());
    let (p1, p2) = (on_run(100.0), on_run(250.0));
    let owntracks = |body: Value| {
        s.http
            .post(s.url("/owntracks"))
            .basic_auth(device, Some(&token))
            .json(&body)
    };
    let locations = [
        json!({
            "_type": "location", "lat": p1.1, "lon": p1.0, "tst": 1_723_410_160, "acc": 12,
            "alt": 35, "vel": 36, "cog": 290, "batt": 64, "tid": "MP", "conn": "m",
            "created_at": 1_723_410_161
        }),
        json!({
            "_type": "location", "lat": p2.1, "lon": p2.0, "tst": 1_723_410_220, "vel": 9,
            "batt": 63
        }),
    ];
    for body in locations {
        let (status, reply) = answer(owntracks(body)).await?;
        assert_eq!((status, reply), (StatusCode::OK, json!([])));
    }
    let want = [
        Ping {
            acc_m: Some(12.0),
            speed_mps: Some(10.0),
            heading_deg: Some(290.0),
            alt_m: Some(35.0),
            batt_pct: Some(64.0),
            ..bare(at(160), p1)
        },
        Ping {
            speed_mps: Some(2.5),
            batt_pct: Some(63.0),
            ..bare(at(220), p2)
        },
    ];
    assert_eq!(runner_pings(&s).await?, want);
    // Messages that are not locations: accepted (else the app would drop them), not stored.
    for body in [
        json!({
            "_type": "transition", "event": "enter", "desc": "Louvre", "tst": 1_723_410_230,
            "lat": p2.1, "lon": p2.0, "acc": 10, "t": "c"
        }),
        json!({ "_type": "lwt", "tst": 1_723_410_230 }),
        json!({ "_type": "status", "android": { "hib": 0 } }),
    ] {
        let (status, reply) = answer(owntracks(body)).await?;
        assert_eq!((status, reply), (StatusCode::OK, json!([])));
    }
    assert_eq!(s.ping_count().await?, 2);
    let live = s.live_full(false).await?;
    assert_runner_at(&live, 250.0, at(220), p2);
    assert_blended(run_eta(&live), at(220), 250.0, 2.5);
    Ok(())
}

#[tokio::test]
async fn a_resent_ping_is_a_duplicate_stored_once_whatever_the_format() -> Result<()> {
    let s = running(200).await?;
    let token = s.tokens[RUN].clone();
    let (p1, p2) = (on_run(100.0), on_run(150.0));
    let first = json!({ "t": at(160).to_string(), "lon": p1.0, "lat": p1.1, "batt": 80 });
    let second = json!({ "t": at(180).to_string(), "lon": p2.0, "lat": p2.1 });
    let reply = s.send(&token, &[first]).await?;
    assert_eq!(
        reply,
        json!({ "accepted": 1, "duplicates": 0, "rejected": [] })
    );
    // The phone resends its buffer: the old ping (with a changed battery), and a new one twice.
    let resent = json!({ "t": at(160).to_string(), "lon": p1.0, "lat": p1.1, "batt": 79 });
    let reply = s.send(&token, &[resent, second.clone(), second]).await?;
    assert_eq!(
        reply,
        json!({ "accepted": 1, "duplicates": 2, "rejected": [] })
    );
    // The same instant over OsmAnd.
    let query = serde_urlencoded::to_string([
        ("id", token.as_str()),
        ("lat", &p2.1.to_string()),
        ("lon", &p2.0.to_string()),
        ("timestamp", "1723410180"),
    ])?;
    assert_eq!(s.osmand_get(&query).await?.0, StatusCode::OK);

    assert_eq!(s.ping_count().await?, 2);
    // The first copy is the one kept.
    assert_eq!(
        runner_pings(&s).await?,
        [
            Ping {
                batt_pct: Some(80.0),
                ..bare(at(160), p1)
            },
            bare(at(180), p2)
        ]
    );
    assert_runner_at(&s.live_full(false).await?, 150.0, at(180), p2);
    let metrics = s.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            "handoff_pings_duplicate_total",
            "format=\"batch\""
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "handoff_pings_duplicate_total",
            "format=\"osmand\""
        ),
        Some(1.0),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn metrics_count_accepted_and_rejected_pings() -> Result<()> {
    let s = running(200).await?;
    let token = s.tokens[RUN].clone();
    let (p1, p2) = (on_run(100.0), on_run(150.0));
    let body = json!([
        { "t": at(160).to_string(), "lon": p1.0, "lat": p1.1 },
        { "t": at(170).to_string(), "lon": p1.0, "lat": 91.0 },
        { "t": at(180).to_string(), "lon": p2.0, "lat": p2.1 },
    ]);
    let (status, _) = s
        .post_pings(Some(&token), Some("application/json"), body.to_string())
        .await?;
    assert_eq!(status, StatusCode::OK);
    let query = serde_urlencoded::to_string([
        ("id", token.as_str()),
        ("lat", &p2.1.to_string()),
        ("lon", &p2.0.to_string()),
        ("timestamp", "1723410190"),
    ])?;
    assert_eq!(s.osmand_get(&query).await?.0, StatusCode::OK);
    let owntracks = json!({ "_type": "location", "lat": p2.1, "lon": p2.0, "tst": 1_723_410_195 });
    let req = s
        .http
        .post(s.url("/owntracks"))
        .basic_auth(DEVICES[RUN], Some(&token))
        .json(&owntracks);
    assert_eq!(answer(req).await?.0, StatusCode::OK);
    let (status, _) = s
        .post_pings(Some("not-a-token"), Some("application/json"), "[]")
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A known device's report that cannot be stored is answered 200 and counted as dropped.
    let (status, _) = s
        .osmand_get(&format!("id={token}&lat=NaN&lon=2.35"))
        .await?;
    assert_eq!(status, StatusCode::OK);

    let m = s.metrics().await?;
    for (name, labels, want) in [
        ("handoff_pings_accepted_total", "format=\"batch\"", 2.0),
        ("handoff_pings_accepted_total", "format=\"osmand\"", 1.0),
        ("handoff_pings_accepted_total", "format=\"owntracks\"", 1.0),
        (
            "handoff_pings_rejected_total",
            "reason=\"out_of_range\"",
            1.0,
        ),
        (
            "handoff_pings_rejected_total",
            "reason=\"unauthorized\"",
            1.0,
        ),
        (
            "handoff_reports_dropped_total",
            "format=\"osmand\",reason=\"not_finite\"",
            1.0,
        ),
        (
            "handoff_reports_dropped_total",
            "format=\"batch\",reason=\"out_of_range\"",
            1.0,
        ),
        (
            "handoff_ingest_latency_seconds_count",
            "format=\"batch\"",
            2.0,
        ),
    ] {
        assert_eq!(
            metric(&m, name, labels),
            Some(want),
            "{name}{{{labels}}} in\n{m}"
        );
    }
    assert_eq!(
        metric(&m, "handoff_pings_rejected_total", "reason=\"not_finite\""),
        None
    );
    assert_eq!(s.ping_count().await?, 4);
    Ok(())
}
