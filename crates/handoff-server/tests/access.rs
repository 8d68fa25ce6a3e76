//! The access matrix: every route the server describes (`GET /api/v1/openapi.json`, which is
//! built from the same registrations as the router) × every kind of caller, each cell on a
//! fresh server, with a request that would succeed for the right caller. A route without a row
//! here fails the test, and so does a row for a route that is gone. The table is also
//! docs/security.md's "Access matrix", checked against it.
//!
//! The set-up of every cell: event A (`paris`) with devices of its first two carriers (the
//! giver of the first handoff, who has asked for a code, and its receiver), and event B
//! (`lyon`, the same plan under another id) with a device of its own.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::common::{ADMIN, CARRIERS, PLAN, Server, as_admin, at};

const OTHER_EVENT: &str = "lyon";

/// Who calls. The order of the matrix's columns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// No credential at all.
    Nobody,
    /// A credential of the right shape that the server never issued.
    WrongToken,
    /// A device registered for event B.
    OtherEvent,
    /// A device of event A of a carrier the route is not about (the receiver, for a route
    /// about the giver, and the other way round).
    OtherCarrier,
    /// The device of event A the route is about (the giver asks for the code, the receiver
    /// records the handoff); any device of event A elsewhere.
    Device,
    Admin,
}

const ROLES: [Role; 6] = [
    Role::Nobody,
    Role::WrongToken,
    Role::OtherEvent,
    Role::OtherCarrier,
    Role::Device,
    Role::Admin,
];

const HEADINGS: [&str; 6] = [
    "none",
    "wrong token",
    "device of another event",
    "device of another carrier",
    "device of this event",
    "admin",
];

/// One route: its method and path as described, and the status each role gets (`None`: the
/// role does not apply, as "another carrier" on a route about no carrier).
struct Row {
    method: &'static str,
    path: &'static str,
    expect: [Option<u16>; 6],
}

/// Everyone gets the same answer.
const fn all(s: u16) -> [Option<u16>; 6] {
    [Some(s), Some(s), Some(s), None, Some(s), Some(s)]
}
/// Only the admin token.
const ADMIN_ONLY: [Option<u16>; 6] = [Some(401), Some(401), Some(401), None, Some(401), Some(200)];
const fn admin_only(s: u16) -> [Option<u16>; 6] {
    [Some(401), Some(401), Some(401), None, Some(401), Some(s)]
}
/// A device reporting its own position (into its own event, whichever it is).
const fn ingest(nobody: u16) -> [Option<u16>; 6] {
    [
        Some(nobody),
        Some(401),
        Some(200),
        None,
        Some(200),
        Some(401),
    ]
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { method: "GET", path: "/healthz", expect: all(200) },
    Row { method: "GET", path: "/metrics", expect: all(200) },
    Row { method: "GET", path: "/api/v1/openapi.json", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events", expect: all(200) },
    Row { method: "PUT", path: "/api/v1/events/{event}", expect: ADMIN_ONLY },
    Row { method: "GET", path: "/api/v1/events/{event}", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/live", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/stream", expect: all(200) },
    Row { method: "POST", path: "/api/v1/events/{event}/devices", expect: admin_only(201) },
    Row { method: "GET", path: "/api/v1/events/{event}/devices", expect: ADMIN_ONLY },
    Row { method: "POST", path: "/api/v1/events/{event}/devices/{device}/token", expect: ADMIN_ONLY },
    Row { method: "DELETE", path: "/api/v1/events/{event}/devices/{device}/token", expect: ADMIN_ONLY },
    Row { method: "GET", path: "/api/v1/events/{event}/plan.toml", expect: all(200) },
    Row { method: "POST", path: "/api/v1/events/{event}/shift", expect: ADMIN_ONLY },
    // The receiver records with the giver's code; the giver cannot (409 wrong_party).
    Row { method: "POST", path: "/api/v1/events/{event}/relays/{relay}/handoffs",
          expect: [Some(401), Some(401), Some(401), Some(409), Some(201), Some(201)] },
    // The giver asks for the code; the receiver does not hold the object (409 wrong_party);
    // an operator records handoffs directly and gets no code (400 not_a_device).
    Row { method: "POST", path: "/api/v1/events/{event}/relays/{relay}/handoffs/code",
          expect: [Some(401), Some(401), Some(401), Some(409), Some(200), Some(400)] },
    Row { method: "GET", path: "/api/v1/events/{event}/relays/{relay}/custody", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/relays/{relay}/accuracy", expect: all(200) },
    Row { method: "POST", path: "/api/v1/events/{event}/webhooks", expect: admin_only(201) },
    Row { method: "GET", path: "/api/v1/events/{event}/webhooks", expect: ADMIN_ONLY },
    Row { method: "GET", path: "/api/v1/events/{event}/webhooks/deliveries", expect: ADMIN_ONLY },
    Row { method: "GET", path: "/api/v1/events/{event}/calendar.ics", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/relays/{relay}/track.gpx", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/relays/{relay}/track.geojson", expect: all(200) },
    Row { method: "GET", path: "/api/v1/events/{event}/pings.csv", expect: ADMIN_ONLY },
    Row { method: "POST", path: "/api/v1/pings", expect: ingest(401) },
    // Without an `id` the request says nothing of whose it is: 400 (missing_field).
    Row { method: "GET", path: "/osmand", expect: ingest(400) },
    Row { method: "POST", path: "/osmand", expect: ingest(400) },
    Row { method: "POST", path: "/owntracks", expect: ingest(401) },
    Row { method: "GET", path: "/", expect: all(200) },
    Row { method: "GET", path: "/e/{event}", expect: all(200) },
    Row { method: "GET", path: "/e/{event}/console", expect: all(200) },
    Row { method: "GET", path: "/carrier", expect: all(200) },
    Row { method: "GET", path: "/assets/{path}", expect: all(200) },
    // A 200 for everyone: `{"admin": bool}` tells the console whether its token is the admin's.
    Row { method: "GET", path: "/console/session", expect: all(200) },
    Row { method: "POST", path: "/console/qr", expect: ADMIN_ONLY },
    // A device learns its own event and carrier, whichever event it is of.
    Row { method: "GET", path: "/carrier/me", expect: [Some(401), Some(401), Some(200), None, Some(200), Some(401)] },
    // Public, as the pages are: where the street basemap is, and (none here) the file.
    Row { method: "GET", path: "/basemap", expect: all(200) },
    Row { method: "GET", path: "/basemap.pmtiles", expect: all(404) },
];

/// A server set up as every cell needs it, and the credentials of each role.
struct Cell {
    server: Server,
    giver: String,
    receiver: String,
    other_event: String,
    code: String,
}

async fn cell() -> Result<Cell> {
    let server = Server::start_at(at(30)).await?;
    // The webhook row registers a receiver on loopback (nothing listens: no delivery leaves).
    server.state.webhooks.allow_private_targets(true);
    server.upload("paris", PLAN).await?;
    let lyon = PLAN.replacen("id = \"paris\"", "id = \"lyon\"", 1);
    server.upload(OTHER_EVENT, &lyon).await?;
    let giver = server.device("giver-phone", CARRIERS[0]).await?;
    let receiver = server.device("receiver-phone", CARRIERS[1]).await?;
    let other_event = server
        .device_in(OTHER_EVENT, "lyon-phone", CARRIERS[0])
        .await?;
    let resp = server
        .http
        .post(server.url("/api/v1/events/paris/relays/flag/handoffs/code"))
        .bearer_auth(&giver)
        .send()
        .await?;
    ensure!(resp.status() == 200, "the giver's code: {}", resp.status());
    let code: Value = resp.json().await?;
    let code = code["code"].as_str().context("a code")?.to_owned();
    Ok(Cell {
        server,
        giver,
        receiver,
        other_event,
        code,
    })
}

/// The device token a role presents on `path` (`None` for nobody; the admin token for admin).
fn token_of(c: &Cell, path: &str, role: Role) -> Option<String> {
    let about_giver = path.ends_with("/handoffs/code");
    let (this, other) = if about_giver {
        (&c.giver, &c.receiver)
    } else {
        (&c.receiver, &c.giver)
    };
    match role {
        Role::Nobody => None,
        Role::WrongToken => Some("0".repeat(64)),
        Role::OtherEvent => Some(c.other_event.clone()),
        Role::OtherCarrier => Some(other.clone()),
        Role::Device => Some(this.clone()),
        Role::Admin => Some(ADMIN.to_owned()),
    }
}

/// The device id that goes with a role's token (OwnTracks' Basic user name).
fn device_id_of(role: Role) -> &'static str {
    match role {
        Role::OtherEvent => "lyon-phone",
        _ => "receiver-phone",
    }
}

/// The request of one cell: the route's path filled in, a body that the right caller would
/// have accepted, and the role's credential where the route's protocol carries it.
fn request(c: &Cell, row: &Row, role: Role) -> Result<RequestBuilder> {
    let path = row
        .path
        .replace("{event}", "paris")
        .replace("{relay}", "flag")
        .replace("{device}", "receiver-phone")
        .replace("{path}", "vendor/leaflet/leaflet.js");
    let s = &c.server;
    let method: Method = row.method.parse()?;
    let token = token_of(c, row.path, role);
    let t = at(30).to_string();
    let ping = json!({ "t": t, "lon": 2.3522, "lat": 48.8566 });
    let osmand_query = |id: Option<&str>| {
        let mut q = format!("lat=48.8566&lon=2.3522&timestamp={}", at(30).as_second());
        if let Some(id) = id {
            q = format!("id={id}&{q}");
        }
        q
    };
    let req = match (row.method, row.path) {
        ("GET", "/osmand") => s
            .http
            .get(s.url(&format!("/osmand?{}", osmand_query(token.as_deref())))),
        ("POST", "/osmand") => s
            .http
            .post(s.url("/osmand"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(osmand_query(token.as_deref())),
        ("POST", "/owntracks") => {
            let mut r = s.http.post(s.url("/owntracks")).json(&json!({
                "_type": "location", "lat": 48.8566, "lon": 2.3522, "tst": at(30).as_second()
            }));
            if let Some(tok) = &token {
                r = r.basic_auth(device_id_of(role), Some(tok));
            }
            return Ok(r);
        }
        _ => {
            let mut r = s.http.request(method, s.url(&path));
            r = match row.path {
                "/api/v1/events/{event}" if row.method == "PUT" => r
                    .header("content-type", "application/toml")
                    .body(PLAN.to_owned()),
                "/api/v1/events/{event}/devices" => {
                    r.json(&json!({ "device": "new-phone", "carrier": CARRIERS[2] }))
                }
                "/api/v1/events/{event}/shift" => r.json(&json!({ "minutes": 5 })),
                "/api/v1/events/{event}/relays/{relay}/handoffs" => {
                    r.json(&json!({ "from_leg": 0, "code": c.code }))
                }
                "/api/v1/events/{event}/webhooks" if row.method == "POST" => r.json(&json!({
                    "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef0123"
                })),
                "/api/v1/pings" => r.json(&json!([ping])),
                "/console/qr" => r.json(&json!({ "text": "hello" })),
                _ => r,
            };
            if let Some(tok) = &token {
                r = r.bearer_auth(tok);
            }
            return Ok(r);
        }
    };
    Ok(req)
}

/// The status one cell answers, on a server of its own.
async fn status_of(row: &Row, role: Role) -> Result<u16> {
    let c = cell().await?;
    let resp = request(&c, row, role)?.send().await?;
    let status = resp.status().as_u16();
    drop(resp);
    // Stopped before its database goes: a server only dropped winds down in the background,
    // still holding connections while the next cells start theirs.
    c.server.stop().await?;
    Ok(status)
}

/// The matrix as a markdown table: ✓ for a 2xx, the status otherwise, `—` where the role does
/// not apply.
fn markdown(rows: &[Row]) -> String {
    let mut out = format!("| Route | {} |\n", HEADINGS.join(" | "));
    out.push_str(&format!("|---|{}\n", "---|".repeat(HEADINGS.len())));
    for row in rows {
        let cells: Vec<String> = row
            .expect
            .iter()
            .map(|e| match e {
                None => "—".to_owned(),
                Some(s) if (200..300).contains(s) => format!("✓ {s}"),
                Some(s) => s.to_string(),
            })
            .collect();
        out.push_str(&format!(
            "| `{} {}` | {} |\n",
            row.method,
            row.path,
            cells.join(" | ")
        ));
    }
    out
}

#[tokio::test]
async fn every_route_has_a_row_and_every_row_a_route() -> Result<()> {
    let s = Server::start().await?;
    let (status, doc) = as_admin(s.http.get(s.url("/api/v1/openapi.json"))).await?;
    ensure!(status == 200, "{status} {doc}");
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .context("paths")?
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|m| ["get", "put", "post", "delete", "patch"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let rows: BTreeSet<(String, String)> = ROWS
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = described.difference(&rows).collect();
    let gone: Vec<_> = rows.difference(&described).collect();
    ensure!(
        missing.is_empty() && gone.is_empty(),
        "routes without a row in tests/access.rs: {missing:?}; rows for no route: {gone:?}"
    );
    ensure!(rows.len() == ROWS.len(), "a route has two rows");
    Ok(())
}

/// A route mounted with a bare `.route(…)` would be served but neither described nor in the
/// matrix: the routers register every route from its handler's description, the one
/// exception being the assets' catch-all (described by hand as `/assets/{path}`).
#[test]
fn every_route_is_registered_from_its_description() {
    let app = include_str!("../src/app.rs");
    let api = app
        .split("pub fn api_router()")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("app.rs has api_router()");
    assert_eq!(api.matches(".route(").count(), 0, "{api}");
    let pages = include_str!("../src/pages.rs");
    let router = pages
        .split("pub fn router()")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("pages.rs has router()");
    assert_eq!(router.matches(".route(").count(), 1, "{router}");
    assert!(router.contains(".route(\"/assets/{*path}\""), "{router}");
}

#[tokio::test]
async fn only_the_allowed_callers_get_through() -> Result<()> {
    let cells: Vec<(usize, usize)> = (0..ROWS.len())
        .flat_map(|r| (0..ROLES.len()).map(move |k| (r, k)))
        .filter(|&(r, k)| ROWS[r].expect[k].is_some())
        .collect();
    let answers: Vec<(usize, usize, Result<u16>)> = futures_util::stream::iter(cells)
        .map(|(r, k)| async move { (r, k, status_of(&ROWS[r], ROLES[k]).await) })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut wrong = Vec::new();
    for (r, k, got) in answers {
        let row = &ROWS[r];
        let got = got.with_context(|| format!("{} {} as {:?}", row.method, row.path, ROLES[k]))?;
        if Some(got) != row.expect[k] {
            wrong.push(format!(
                "{} {} as {}: {got}, the matrix says {:?}",
                row.method, row.path, HEADINGS[k], row.expect[k]
            ));
        }
    }
    wrong.sort();
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

#[test]
fn docs_security_md_shows_this_matrix() {
    let doc = include_str!("../../../docs/security.md");
    let table = markdown(ROWS);
    let shown = doc
        .split("<!-- access-matrix -->\n")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /access-matrix -->").next())
        .unwrap_or("");
    assert!(
        shown == table,
        "docs/security.md's access matrix (between <!-- access-matrix --> and \
         <!-- /access-matrix -->) differs from tests/access.rs; it should read:\n\n{table}"
    );
}
