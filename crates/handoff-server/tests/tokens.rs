//! A device's token re-issued and revoked (a phone lost, a token leaked, a carrier's new
//! phone): the old token stops working in every protocol at once, the new one works, a
//! revoked one works nowhere, and all of it holds across a restart; the device keeps its id
//! and its history.

use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN, DEVICES, EVENT, RUN, Server, answer, at, error_of, plan, route};

fn token_path(device: &str) -> String {
    format!("/api/v1/events/{EVENT}/devices/{device}/token")
}

/// A fix of the runner, `along_m` along the run, at `t` seconds.
fn fix(along_m: f64, t: i64) -> Value {
    let p = route(&plan(), RUN).point_at(along_m);
    json!({ "lon": p.lon, "lat": p.lat, "t": at(t).to_string(), "acc_m": 5.0 })
}

/// What each protocol answers a report with `token`: the JSON batch API, the OsmAnd form and
/// OwnTracks HTTP.
async fn answers(s: &Server, token: &str, t: i64) -> Result<[StatusCode; 3]> {
    let (json_api, _) = s
        .post_pings(
            Some(token),
            Some("application/json"),
            json!([fix(50.0, t)]).to_string(),
        )
        .await?;
    let p = route(&plan(), RUN).point_at(60.0);
    let query = serde_urlencoded::to_string([
        ("id", token.to_owned()),
        ("lat", p.lat.to_string()),
        ("lon", p.lon.to_string()),
        ("timestamp", at(t + 1).as_second().to_string()),
    ])?;
    let (osmand, _) = s.osmand_get(&query).await?;
    let p = route(&plan(), RUN).point_at(70.0);
    let owntracks = s
        .http
        .post(s.url("/owntracks"))
        .basic_auth(DEVICES[RUN], Some(token))
        .json(&json!({ "_type": "location", "lat": p.lat, "lon": p.lon, "tst": at(t + 2).as_second() }));
    let (owntracks, _) = answer(owntracks).await?;
    Ok([json_api, osmand, owntracks])
}

/// `POST` (re-issue) or `DELETE` (revoke) of the runner's token with the admin token: its
/// answer, which must be 200.
async fn set_token(s: &Server, method: reqwest::Method) -> Result<Value> {
    let req = s.http.request(method, s.url(&token_path(DEVICES[RUN])));
    let (status, body) = answer(req.bearer_auth(ADMIN)).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    Ok(body)
}

const OK3: [StatusCode; 3] = [StatusCode::OK; 3];
const REFUSED3: [StatusCode; 3] = [StatusCode::UNAUTHORIZED; 3];

#[tokio::test]
async fn a_reissued_token_replaces_the_old_and_a_revoked_one_works_nowhere() -> Result<()> {
    let s = Server::with_relay().await?;
    s.tick_at(at(200)).await;
    let first = s.tokens[RUN].clone();
    ensure!(answers(&s, &first, 200).await? == OK3);

    // Re-issued: the new token is shown once; the old one is refused by every protocol.
    s.set_clock(at(210));
    let body = set_token(&s, reqwest::Method::POST).await?;
    let second = body["token"].as_str().context("a new token")?.to_owned();
    ensure!(second != first && second.len() >= 32, "{body}");
    ensure!(
        body["device"] == DEVICES[RUN] && body["token_at"] == json!(at(210).to_string()),
        "{body}"
    );
    ensure!(answers(&s, &first, 220).await? == REFUSED3);
    ensure!(answers(&s, &second, 230).await? == OK3);
    let listed = s.listed_device(DEVICES[RUN]).await?;
    ensure!(
        listed["token"] == "active" && listed["token_at"] == json!(at(210).to_string()),
        "{listed}"
    );
    let stored = s.ping_count().await?;
    ensure!(stored == 6, "3 reports with each working token: {stored}");

    // Revoked: nothing gets through until a new token is issued; what was sent stays.
    s.set_clock(at(240));
    let body = set_token(&s, reqwest::Method::DELETE).await?;
    ensure!(body["token"].is_null(), "{body}");
    ensure!(answers(&s, &second, 250).await? == REFUSED3);
    let listed = s.listed_device(DEVICES[RUN]).await?;
    ensure!(
        listed["token"] == "revoked" && listed["token_at"] == json!(at(240).to_string()),
        "{listed}"
    );
    ensure!(
        s.ping_count().await? == stored,
        "nothing stored from a revoked token"
    );

    // A restart keeps both: the old tokens stay refused.
    let (db, clock, _) = s.stop().await?;
    let s = Server::open(db, clock).await?;
    ensure!(answers(&s, &second, 260).await? == REFUSED3);
    ensure!(answers(&s, &first, 270).await? == REFUSED3);
    let body = set_token(&s, reqwest::Method::POST).await?;
    let third = body["token"].as_str().context("a new token")?.to_owned();
    ensure!(answers(&s, &third, 280).await? == OK3);
    ensure!(s.ping_count().await? == stored + 3);
    Ok(())
}

#[tokio::test]
async fn a_token_of_no_device_is_404_naming_the_device_and_admin_only() -> Result<()> {
    let s = Server::with_relay().await?;
    for req in [
        s.http.post(s.url(&token_path("nobody-phone"))),
        s.http.delete(s.url(&token_path("nobody-phone"))),
    ] {
        let (status, body) = answer(req.bearer_auth(ADMIN)).await?;
        ensure!(status == StatusCode::NOT_FOUND, "{status} {body}");
        ensure!(error_of(&body) == ("not_found", Some("device")), "{body}");
        ensure!(body.to_string().contains("nobody-phone"), "{body}");
    }
    let (status, _) = answer(
        s.http
            .post(s.url(&format!(
                "/api/v1/events/nowhere/devices/{}/token",
                DEVICES[RUN]
            )))
            .bearer_auth(ADMIN),
    )
    .await?;
    ensure!(status == StatusCode::NOT_FOUND);
    // A device cannot re-issue (or revoke) even its own token.
    let own = s.tokens[RUN].clone();
    let (status, _) = answer(
        s.http
            .delete(s.url(&token_path(DEVICES[RUN])))
            .bearer_auth(&own),
    )
    .await?;
    ensure!(status == StatusCode::UNAUTHORIZED);
    ensure!(
        answers(&s, &own, 200).await?[0] == StatusCode::OK,
        "still in force"
    );
    Ok(())
}
