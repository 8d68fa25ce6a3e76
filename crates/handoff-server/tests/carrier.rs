//! `GET /carrier/me`: a device token learns its own event, device and carrier, and when its
//! newest fix was taken (sent by any app: the carrier page, Traccar Client, OwnTracks), so the
//! carrier page can warn a carrier who holds the object but whose phone is not sharing. Only
//! the token's own device is told, and a late fix never makes the newest look older.

use anyhow::Result;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{CARRIERS, DEVICES, EVENT, RUN, Server, answer, at};

async fn me(server: &Server, token: &str) -> Result<Value> {
    let (status, body) = answer(
        server
            .http
            .get(server.url("/carrier/me"))
            .bearer_auth(token),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "GET /carrier/me: {status} {body}");
    Ok(body)
}

#[tokio::test]
async fn me_gives_the_devices_own_newest_fix() -> Result<()> {
    let server = Server::with_relay().await?;
    let runner = server.tokens[RUN].clone();
    let other = server.tokens[RUN + 1].clone();

    let body = me(&server, &runner).await?;
    assert_eq!(body["event"], EVENT);
    assert_eq!(body["device"], DEVICES[RUN]);
    assert_eq!(body["carrier"], CARRIERS[RUN]);
    assert_eq!(body["last_fix"], Value::Null, "no fix yet: {body}");

    // A fix, then a late one taken earlier: the newest stays the newest.
    server.set_clock(at(130));
    server
        .send(
            &runner,
            &[json!({ "t": at(120).to_string(), "lon": 2.3522, "lat": 48.8566, "acc": 8 })],
        )
        .await?;
    server
        .send(
            &runner,
            &[json!({ "t": at(100).to_string(), "lon": 2.3521, "lat": 48.8566 })],
        )
        .await?;
    let fix = &me(&server, &runner).await?["last_fix"];
    assert_eq!(fix["t"], at(120).to_string(), "{fix}");
    assert_eq!(fix["received_at"], at(130).to_string(), "{fix}");
    assert_eq!(fix["acc_m"], 8.0, "{fix}");

    // Another device's fix is not this one's.
    server
        .send(
            &other,
            &[json!({ "t": at(140).to_string(), "lon": 2.3522, "lat": 48.8566 })],
        )
        .await?;
    assert_eq!(
        me(&server, &runner).await?["last_fix"]["t"],
        at(120).to_string()
    );
    assert_eq!(
        me(&server, &other).await?["last_fix"]["t"],
        at(140).to_string()
    );
    Ok(())
}
