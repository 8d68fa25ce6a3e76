//! The carriers' phones, simulated: each moves along its leg's route at about the planned pace,
//! with GPS noise and realistic accuracy values, and reports through the real ingest path in
//! the formats real apps use (OsmAnd query and form, Traccar Client JSON, OwnTracks, our batch
//! API and NDJSON). Tom Cruise's phone loses signal over the Atlantic and sends its buffered
//! positions late, in one batch; Kate Courtney strays off the route for a moment. Handoffs
//! happen as they would for real: the operator on stage, proximity of the two phones at an
//! exchange, the two-party code at the Hollywood Sign.

use super::clock::DemoClock;
use super::scenario::{Verify, verification};
use anyhow::Context;
use handoff_core::geodesic::Coord;
use handoff_core::plan::{Geometry, Mode, Plan, Relay};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// How a phone talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Traccar Client / OsmAnd: `GET /osmand?id=…` (speed in knots, time in ms).
    OsmandQuery,
    /// GPSLogger and others: `POST /osmand` with a form body (ISO time).
    OsmandForm,
    /// Traccar Client 9: `POST /osmand` with a JSON body (speed in m/s).
    TraccarJson,
    /// OwnTracks: `POST /owntracks`, Basic auth (speed in km/h).
    OwnTracks,
    /// Our batch API, NDJSON.
    Ndjson,
}

/// One simulated phone.
#[derive(Debug)]
pub struct Phone {
    pub device: String,
    pub token: String,
    pub wire: Wire,
    /// Positions kept while there is no signal.
    buffer: Vec<Value>,
    batt_pct: f64,
}

impl Phone {
    #[must_use]
    pub fn new(device: &str, token: String, wire: Wire) -> Self {
        Self {
            device: device.into(),
            token,
            wire,
            buffer: Vec::new(),
            batt_pct: 96.0,
        }
    }
}

/// A small deterministic random source (xorshift64*): the demo's noise is the same every run.
#[derive(Debug)]
pub struct Noise(u64);

impl Noise {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        #[allow(clippy::cast_precision_loss)]
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        u
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Moves `c` by metres east and north.
fn offset(c: Coord, east_m: f64, north_m: f64) -> Coord {
    let lat = c.lat + north_m / 111_320.0;
    let lon = c.lon + east_m / (111_320.0 * c.lat.to_radians().cos().max(0.01));
    Coord::with_ele(lon, lat, c.ele_m)
}

/// A position report as the simulator makes it, before a wire format is chosen.
#[derive(Debug, Clone, Copy)]
struct Fix {
    t: Timestamp,
    at: Coord,
    acc_m: f64,
    speed_mps: f64,
    heading_deg: f64,
    alt_m: Option<f64>,
}

pub struct Sim {
    pub base: String,
    pub admin: String,
    pub clock: Arc<DemoClock>,
    pub plan: Arc<Plan>,
    /// Phones by carrier.
    pub phones: HashMap<String, Phone>,
    http: reqwest::Client,
    noise: Noise,
}

/// Where one relay is in the simulation.
#[derive(Debug)]
struct Progress {
    leg: usize,
    started: Timestamp,
    /// Faster (> 1) or slower than planned, per leg.
    pace: f64,
}

impl Sim {
    #[must_use]
    pub fn new(
        base: String,
        admin: String,
        clock: Arc<DemoClock>,
        plan: Arc<Plan>,
        phones: HashMap<String, Phone>,
    ) -> Self {
        Self {
            base,
            admin,
            clock,
            plan,
            phones,
            http: reqwest::Client::new(),
            noise: Noise::new(0x5eed_2024),
        }
    }

    /// Runs every relay to its end. `tick_ms`: how often (real time) phones report.
    pub async fn run(&mut self, tick_ms: u64) -> anyhow::Result<()> {
        let plan = Arc::clone(&self.plan);
        let mut state: Vec<Progress> = plan
            .relays
            .iter()
            .map(|r| Progress {
                leg: 0,
                started: r.legs[0].start,
                pace: 1.0,
            })
            .collect();
        loop {
            let now = self.clock.now();
            let mut all_done = true;
            for (ri, relay) in plan.relays.iter().enumerate() {
                if state[ri].leg >= relay.legs.len() {
                    continue;
                }
                all_done = false;
                if now < relay.legs[0].start {
                    continue;
                }
                self.step(relay, &mut state[ri], now).await?;
            }
            if all_done {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(tick_ms)).await;
        }
    }

    async fn step(
        &mut self,
        relay: &Relay,
        p: &mut Progress,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let leg = &relay.legs[p.leg];
        let dur_s = leg.end.duration_since(leg.start).as_secs_f64().max(1.0);
        let elapsed_s = now.duration_since(p.started).as_secs_f64().max(0.0);
        match &leg.geometry {
            Geometry::Place { .. } => {
                if elapsed_s >= dur_s {
                    let at = p
                        .started
                        .checked_add(SignedDuration::from_secs_f64(dur_s))
                        .unwrap_or(now);
                    self.operator_handoff(&relay.id, p.leg, at).await?;
                    self.next_leg(relay, p, at);
                }
            }
            Geometry::Route { route, .. } => {
                let length = route.length_m();
                let speed = length / dur_s * p.pace;
                let along = (elapsed_s * speed).min(length);
                let frac = along / length.max(1.0);
                let holder = leg.carriers[0].clone();
                // Kate Courtney takes a wrong turn for a moment.
                let stray = if leg.mode == Mode::Bike && (0.40..0.46).contains(&frac) {
                    160.0
                } else {
                    0.0
                };
                let fix = self.fix(
                    route.point_at(along),
                    route.point_at((along + 10.0).min(length)),
                    now,
                    leg.mode,
                    speed,
                    stray,
                );
                // Over the ocean the flight has no signal: the phone keeps its positions.
                let offline = leg.mode == Mode::Flight && (0.15..0.85).contains(&frac);
                self.report(&holder, fix, offline, leg.mode).await?;
                let next = relay.legs.get(p.leg + 1);
                let verify = verification(&relay.id, leg.mode);
                // The next carrier waits at the exchange point, phone on.
                if let Some(next) = next
                    && verify == Verify::Proximity
                    && frac >= 0.85
                    && next.carriers[0] != holder
                {
                    let wait = self.fix(route.end(), route.end(), now, Mode::Walk, 0.0, 0.0);
                    self.report(&next.carriers[0].clone(), wait, false, Mode::Walk)
                        .await?;
                }
                if along >= length {
                    // The carrier arrived when the pace says, not at this tick: at high
                    // `--speed` a tick is many virtual minutes, and the relay would fall behind
                    // by one tick per leg.
                    let arrived = p
                        .started
                        .checked_add(SignedDuration::from_secs_f64(length / speed.max(1e-9)))
                        .map_or(now, |t| t.min(now));
                    let arrive = self.fix(route.end(), route.end(), arrived, leg.mode, 0.0, 0.0);
                    self.report(&holder, arrive, false, leg.mode).await?;
                    match (next, verify) {
                        (None, _) => self.operator_handoff(&relay.id, p.leg, arrived).await?,
                        (Some(n), Verify::Proximity) if n.carriers[0] != holder => {
                            let t = arrived
                                .checked_add(SignedDuration::from_secs(1))
                                .unwrap_or(arrived);
                            let wait = self.fix(route.end(), route.end(), t, Mode::Walk, 0.0, 0.0);
                            self.report(&n.carriers[0].clone(), wait, false, Mode::Walk)
                                .await?;
                        }
                        (Some(_), Verify::Proximity) => {} // the same phone carries on: its arrival is the proof
                        (Some(n), Verify::TwoParty) => {
                            self.two_party(&relay.id, &holder, &n.carriers[0]).await?
                        }
                        (Some(_), Verify::Operator) => {
                            self.operator_handoff(&relay.id, p.leg, arrived).await?
                        }
                    }
                    self.next_leg(relay, p, arrived);
                }
            }
        }
        Ok(())
    }

    fn next_leg(&mut self, relay: &Relay, p: &mut Progress, at: Timestamp) {
        p.leg += 1;
        p.started = at;
        // Within ±8 % of the planned pace; an airliner keeps to its schedule far better.
        let spread = if relay
            .legs
            .get(p.leg)
            .is_some_and(|l| l.mode == Mode::Flight)
        {
            0.02
        } else {
            0.16
        };
        p.pace = 1.0 - spread / 2.0 + spread * self.noise.unit();
    }

    fn fix(
        &mut self,
        on_route: Coord,
        ahead: Coord,
        t: Timestamp,
        mode: Mode,
        speed_mps: f64,
        stray_m: f64,
    ) -> Fix {
        let acc_m = if mode == Mode::Flight {
            30.0 + 40.0 * self.noise.unit()
        } else {
            4.0 + 11.0 * self.noise.unit()
        };
        let sigma = acc_m / 2.0;
        let at = offset(
            on_route,
            self.noise.normal() * sigma,
            self.noise.normal() * sigma + stray_m,
        );
        let heading_deg = handoff_core::geodesic::bearing_deg(on_route, ahead).rem_euclid(360.0);
        let alt_m = match mode {
            Mode::Flight => Some(10_700.0),
            Mode::Parachute => None,
            _ => on_route.ele_m,
        };
        Fix {
            t,
            at,
            acc_m,
            speed_mps,
            heading_deg,
            alt_m,
        }
    }

    /// Sends (or, offline, keeps) one position from `carrier`'s phone.
    async fn report(
        &mut self,
        carrier: &str,
        fix: Fix,
        offline: bool,
        mode: Mode,
    ) -> anyhow::Result<()> {
        let Some(phone) = self.phones.get_mut(carrier) else {
            return Ok(());
        };
        phone.batt_pct = (phone.batt_pct - 0.02).max(5.0);
        let item = json!({ "t": fix.t.to_string(), "lon": fix.at.lon, "lat": fix.at.lat, "acc": fix.acc_m, "speed": fix.speed_mps, "heading": fix.heading_deg, "alt": fix.alt_m, "batt": phone.batt_pct.round() });
        if offline {
            phone.buffer.push(item);
            return Ok(());
        }
        let base = &self.base;
        if !phone.buffer.is_empty() {
            // Back in coverage: the buffered positions go first, as one late batch.
            let batch = Value::Array(std::mem::take(&mut phone.buffer));
            let r = self
                .http
                .post(format!("{base}/api/v1/pings"))
                .bearer_auth(&phone.token)
                .json(&batch)
                .send()
                .await?;
            check(r, "late batch").await?;
        }
        let wire = if mode == Mode::Parachute {
            Wire::TraccarJson
        } else {
            phone.wire
        };
        let ms = fix.t.as_millisecond();
        let req = match wire {
            Wire::OsmandQuery => {
                let q = serde_urlencoded::to_string([
                    ("id", phone.token.clone()),
                    ("lat", fix.at.lat.to_string()),
                    ("lon", fix.at.lon.to_string()),
                    ("timestamp", ms.to_string()),
                    ("speed", (fix.speed_mps / 0.514_444).to_string()),
                    ("bearing", fix.heading_deg.to_string()),
                    ("accuracy", fix.acc_m.to_string()),
                    ("altitude", fix.alt_m.unwrap_or(0.0).to_string()),
                    ("batt", phone.batt_pct.round().to_string()),
                ])?;
                self.http.get(format!("{base}/osmand?{q}"))
            }
            Wire::OsmandForm => {
                let body = serde_urlencoded::to_string([
                    ("id", phone.token.clone()),
                    ("lat", fix.at.lat.to_string()),
                    ("lon", fix.at.lon.to_string()),
                    ("timestamp", fix.t.to_string()),
                    ("speed", (fix.speed_mps / 0.514_444).to_string()),
                    ("accuracy", fix.acc_m.to_string()),
                ])?;
                self.http.post(format!("{base}/osmand")).header("content-type", "application/x-www-form-urlencoded").body(body)
            }
            Wire::TraccarJson => self.http.post(format!("{base}/osmand")).json(&json!({
                "location": {
                    "timestamp": fix.t.to_string(),
                    "coords": { "latitude": fix.at.lat, "longitude": fix.at.lon, "accuracy": fix.acc_m, "speed": fix.speed_mps, "heading": fix.heading_deg, "altitude": fix.alt_m.unwrap_or(-1.0) },
                    "battery": { "level": phone.batt_pct / 100.0, "is_charging": false },
                    "is_moving": fix.speed_mps > 0.5
                },
                "device_id": phone.token
            })),
            Wire::OwnTracks => self.http.post(format!("{base}/owntracks")).basic_auth(&phone.device, Some(&phone.token)).json(&json!({
                "_type": "location", "lat": fix.at.lat, "lon": fix.at.lon, "tst": fix.t.as_second(), "acc": fix.acc_m.round(), "vel": (fix.speed_mps * 3.6).round(), "cog": fix.heading_deg.round(), "batt": phone.batt_pct.round(), "tid": "JE"
            })),
            Wire::Ndjson => self.http.post(format!("{base}/api/v1/pings")).bearer_auth(&phone.token).header("content-type", "application/x-ndjson").body(format!("{item}\n")),
        };
        check(req.send().await?, "ping").await
    }

    async fn operator_handoff(
        &self,
        relay: &str,
        from_leg: usize,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let url = format!(
            "{}/api/v1/events/{}/relays/{relay}/handoffs",
            self.base, self.plan.event.id
        );
        let r = self
            .http
            .post(url)
            .bearer_auth(&self.admin)
            .json(&json!({ "from_leg": from_leg, "at": at.to_string() }))
            .send()
            .await?;
        // 409: the server already has it (found by proximity): nothing to do.
        if r.status() == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        check(r, "operator handoff").await
    }

    /// The giver's phone shows a code; the receiver's phone enters it.
    async fn two_party(&self, relay: &str, giver: &str, receiver: &str) -> anyhow::Result<()> {
        let (Some(g), Some(r)) = (self.phones.get(giver), self.phones.get(receiver)) else {
            return Ok(());
        };
        let ev = format!(
            "{}/api/v1/events/{}/relays/{relay}",
            self.base, self.plan.event.id
        );
        let resp = self
            .http
            .post(format!("{ev}/handoffs/code"))
            .bearer_auth(&g.token)
            .send()
            .await?;
        let code: Value = resp.json().await.context("code response")?;
        let Some(code) = code.get("code").and_then(Value::as_str) else {
            anyhow::bail!("no code for the handoff from {giver}: {code}");
        };
        let resp = self
            .http
            .post(format!("{ev}/handoffs"))
            .bearer_auth(&r.token)
            .json(&json!({ "code": code }))
            .send()
            .await?;
        check(resp, "two-party handoff").await
    }
}

async fn check(r: reqwest::Response, what: &str) -> anyhow::Result<()> {
    if r.status().is_success() {
        return Ok(());
    }
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    anyhow::bail!("{what} refused: {status} {body}")
}
