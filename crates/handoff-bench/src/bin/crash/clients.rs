//! The concurrent clients: one task per ingest format (each with devices of its own, under the
//! per-device rate limit), one per relay recording every kind of custody entry, and one doing
//! event-wide shifts. Each writes what the server acknowledged (a 2xx) into the [`Ledger`], and
//! what it sent without an answer, so the checks can tell lost data from unacknowledged data.
//!
//! A request holds the read side of the gate while it is in flight: the harness takes the write
//! side to pause every client (for the replay comparison), never to dodge a kill.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use handoff_core::custody::{Custody, Entry, Kind};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::rng::Rng;

/// Seconds before now of each device's first ping: every ping is in the past (the server
/// refuses the future), and one a second per device leaves hours of room.
pub const PING_BASE_AGO_S: i64 = 12 * 3600;

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub token: String,
}

/// A ping the server acknowledged.
#[derive(Debug, Clone)]
pub struct AckedPing {
    pub format: &'static str,
    pub device: String,
    pub t_s: i64,
    pub lon: f64,
    pub lat: f64,
}

/// A custody entry the server acknowledged.
#[derive(Debug, Clone)]
pub struct AckedEntry {
    /// How it was recorded: `operator from_leg`, `two-party`, `void`, …
    pub kind: &'static str,
    pub relay: String,
    pub hash: String,
}

/// What the clients did, as the server answered it.
#[derive(Default)]
pub struct Ledger {
    pub pings: Mutex<Vec<AckedPing>>,
    pub entries: Mutex<Vec<AckedEntry>>,
    /// Batches sent without an answer (or with a 5xx): each must be stored whole or not at all.
    pub unanswered_batches: Mutex<Vec<Vec<(String, i64)>>>,
    /// Notes of event-wide shifts sent without an answer: in every relay's log or in none.
    pub unanswered_shifts: Mutex<Vec<String>>,
    /// Idempotency-Key replays that got another entry than the first answer (must stay 0).
    pub replay_mismatches: Mutex<Vec<String>>,
    pub requests: AtomicU64,
    pub refused: AtomicU64,
    pub unanswered: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    pub fn acked_pings(&self) -> Vec<AckedPing> {
        lock(&self.pings).clone()
    }
    pub fn acked_entries(&self) -> Vec<AckedEntry> {
        lock(&self.entries).clone()
    }
    /// Records a ping and an entry that were never sent (`--phantom`: the checks must fail).
    pub fn phantom(&self) {
        lock(&self.pings).push(AckedPing {
            format: "phantom",
            device: "r1-a".to_owned(),
            t_s: 1,
            lon: 2.35,
            lat: 48.85,
        });
        self.ack_entry("phantom", "r1", &"0".repeat(64));
    }

    fn ack_entry(&self, kind: &'static str, relay: &str, hash: &str) {
        lock(&self.entries).push(AckedEntry {
            kind,
            relay: relay.to_owned(),
            hash: hash.to_owned(),
        });
    }
}

/// What every client shares.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub base: String,
    pub admin: String,
    pub event: String,
    pub ledger: Arc<Ledger>,
    pub gate: Arc<RwLock<()>>,
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sends a request under the gate; `None` when no answer came (refused connection, reset,
    /// timeout: the server was down or died meanwhile).
    async fn send(&self, req: reqwest::RequestBuilder) -> Option<(StatusCode, String)> {
        let _inflight = self.gate.read().await;
        self.ledger.requests.fetch_add(1, Ordering::Relaxed);
        let answer = match req.send().await {
            Ok(r) => {
                let status = r.status();
                r.text().await.ok().map(|body| (status, body))
            }
            Err(_) => None,
        };
        match &answer {
            Some((s, _)) if s.is_success() => {}
            Some((s, _)) if s.is_client_error() => {
                self.ledger.refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.ledger.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
        answer
    }
}

/// Sleeps a random pause, or waits a little longer when the server did not answer.
async fn pause(rng: &mut Rng, answered: bool, min_ms: u64, max_ms: u64) {
    let ms = if answered {
        min_ms + rng.below(max_ms - min_ms)
    } else {
        20
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OsmandGet,
    OsmandForm,
    OsmandJson,
    OwnTracks,
    BatchJson,
    BatchNdjson,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::OsmandGet => "OsmAnd GET query",
            Format::OsmandForm => "OsmAnd POST form",
            Format::OsmandJson => "OsmAnd JSON",
            Format::OwnTracks => "OwnTracks",
            Format::BatchJson => "batch JSON array",
            Format::BatchNdjson => "batch NDJSON",
        }
    }

    pub const ALL: [Format; 6] = [
        Format::OsmandGet,
        Format::OsmandForm,
        Format::OsmandJson,
        Format::OwnTracks,
        Format::BatchJson,
        Format::BatchNdjson,
    ];
}

/// One device's next ping time and a position (off the routes, so that no proximity handoff
/// is found between the harness's own handoffs).
struct Track {
    device: Device,
    next_t: i64,
}

/// Sends pings in `format` from `devices`, in turn, until stopped.
pub async fn pings(shared: Shared, format: Format, devices: Vec<Device>, mut rng: Rng) {
    let base_t = jiff::Timestamp::now().as_second() - PING_BASE_AGO_S;
    let mut tracks: Vec<Track> = devices
        .into_iter()
        .map(|device| Track {
            device,
            next_t: base_t,
        })
        .collect();
    let mut turn = 0;
    while !shared.stopped() {
        let count = tracks.len();
        let track = &mut tracks[turn % count];
        turn += 1;
        let n = match format {
            Format::BatchJson | Format::BatchNdjson => {
                usize::try_from(1 + rng.below(19)).unwrap_or(1)
            }
            _ => 1,
        };
        let batch: Vec<AckedPing> = (0..n)
            .map(|i| AckedPing {
                format: format.name(),
                device: track.device.id.clone(),
                t_s: track.next_t + i64::try_from(i).unwrap_or(0),
                lon: 2.35 + rng.range(0.0, 1.0) * 0.03,
                lat: 48.851 + rng.range(0.0, 1.0) * 0.002,
            })
            .collect();
        track.next_t += i64::try_from(n).unwrap_or(1);
        let req = request(&shared, format, &track.device, &batch);
        let answer = shared.send(req).await;
        let stored = match (&answer, format) {
            (Some((s, body)), Format::BatchJson | Format::BatchNdjson) if s.is_success() => {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                let rejected = v["rejected"].as_array().map_or(1, Vec::len);
                let counted =
                    v["accepted"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0);
                rejected == 0 && counted == n as u64
            }
            (Some((s, _)), _) => s.is_success(),
            (None, _) => false,
        };
        if stored {
            lock(&shared.ledger.pings).extend(batch);
        } else if answer.as_ref().is_none_or(|(s, _)| s.is_server_error()) && n > 1 {
            lock(&shared.ledger.unanswered_batches)
                .push(batch.iter().map(|p| (p.device.clone(), p.t_s)).collect());
        }
        pause(&mut rng, answer.is_some(), 20, 60).await;
    }
}

fn iso(t_s: i64) -> String {
    jiff::Timestamp::from_second(t_s).map_or_else(|_| String::new(), |t| t.to_string())
}

fn request(
    shared: &Shared,
    format: Format,
    device: &Device,
    batch: &[AckedPing],
) -> reqwest::RequestBuilder {
    let c = &shared.client;
    let p = &batch[0];
    let query = || {
        vec![
            ("id", device.token.clone()),
            ("lat", p.lat.to_string()),
            ("lon", p.lon.to_string()),
            ("timestamp", p.t_s.to_string()),
            ("accuracy", "5".to_owned()),
            ("batt", "80".to_owned()),
        ]
    };
    let ping_json = |p: &AckedPing| json!({"t": iso(p.t_s), "lon": p.lon, "lat": p.lat, "acc": 5.0, "batt": 80.0});
    match format {
        Format::OsmandGet => c.get(format!(
            "{}/osmand?{}",
            shared.base,
            serde_urlencoded::to_string(query()).unwrap_or_default()
        )),
        Format::OsmandForm => c
            .post(format!("{}/osmand", shared.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(query()).unwrap_or_default()),
        Format::OsmandJson => c.post(format!("{}/osmand", shared.base)).json(&json!({
            "location": {
                "timestamp": iso(p.t_s),
                "coords": {"latitude": p.lat, "longitude": p.lon, "accuracy": 5.0, "speed": 1.2, "heading": 90.0, "altitude": 35.0},
                "battery": {"level": 0.8}
            },
            "device_id": device.token,
        })),
        Format::OwnTracks => c
            .post(format!("{}/owntracks", shared.base))
            .basic_auth(&device.id, Some(&device.token))
            .json(&json!({"_type": "location", "lat": p.lat, "lon": p.lon, "tst": p.t_s, "acc": 5})),
        Format::BatchJson => c
            .post(format!("{}/api/v1/pings", shared.base))
            .bearer_auth(&device.token)
            .json(&Value::Array(batch.iter().map(ping_json).collect())),
        Format::BatchNdjson => {
            let body: String = batch.iter().map(|p| format!("{}\n", ping_json(p))).collect();
            c.post(format!("{}/api/v1/pings", shared.base))
                .bearer_auth(&device.token)
                .header("content-type", "application/x-ndjson")
                .body(body)
        }
    }
}

/// The relay's custody log as the server serves it, folded (`None`: no answer).
/// Where the relay stands: the leg holding the object, and the live handoff that ended the
/// leg before it (`seq`, `at`), if any.
struct Standing {
    current: usize,
    last: Option<(u64, jiff::Timestamp)>,
}

async fn custody_state(shared: &Shared, relay: &str, n_legs: usize) -> Option<Standing> {
    let url = format!(
        "{}/api/v1/events/{}/relays/{relay}/custody",
        shared.base, shared.event
    );
    let (status, body) = shared.send(shared.client.get(url)).await?;
    if !status.is_success() {
        return None;
    }
    let entries: Vec<Entry> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let custody = Custody::from_entries(n_legs, &entries);
    // The seq of the live handoff that ended each leg (voids undo it), as the server folds it.
    let mut ended_by: Vec<Option<u64>> = vec![None; n_legs];
    for e in &entries {
        match (e.kind, &e.from, e.corrects) {
            (Kind::Handoff, Some(from), _) if from.leg < n_legs => ended_by[from.leg] = Some(e.seq),
            (Kind::Correction, _, Some(target)) if e.void => {
                for s in &mut ended_by {
                    if *s == Some(target) {
                        *s = None;
                    }
                }
            }
            _ => {}
        }
    }
    let last = custody.current.checked_sub(1).and_then(|leg| {
        Some((
            ended_by.get(leg).copied().flatten()?,
            custody.ends.get(leg).copied().flatten()?,
        ))
    });
    Some(Standing {
        current: custody.current,
        last,
    })
}

/// Records custody entries of every kind on one relay until stopped: operator handoffs naming
/// `from_leg`, operator handoffs with an `Idempotency-Key` (sometimes replayed at once: the
/// same entry must come back), two-party handoffs with the giver's code, corrections, voids,
/// and shifts of this relay. Voids keep the relay going back and forth, so it never runs out
/// of handoffs to record.
pub async fn relay(shared: Shared, relay: String, legs: Vec<Device>, mut rng: Rng) {
    let n_legs = legs.len();
    let url = format!(
        "{}/api/v1/events/{}/relays/{relay}/handoffs",
        shared.base, shared.event
    );
    let mut key = 0u64;
    while !shared.stopped() {
        let Some(standing) = custody_state(&shared, &relay, n_legs).await else {
            pause(&mut rng, false, 0, 0).await;
            continue;
        };
        let current = standing.current;
        let last = standing.last.map(|(seq, _)| seq);
        let last_at = standing.last.map(|(_, at)| at);
        let roll = rng.below(100);
        let admin = |b: reqwest::RequestBuilder| b.bearer_auth(&shared.admin);
        // 20 % operator with from_leg, 20 % operator with an Idempotency-Key, 20 % two-party
        // (operator for the arrival, which has no receiver), 25 % void, 7 % correction, 8 %
        // shift of this relay: forward more than back, so the relay cycles near its end and
        // back again instead of finishing.
        let answer = if current >= n_legs || ((60..92).contains(&roll) && last.is_some()) {
            // A correction of the last handoff: void it (it did not happen) or move its time.
            let seq = last.unwrap_or(0);
            let void = current >= n_legs || roll < 85;
            let body = if void {
                json!({"kind": "correction", "corrects": seq, "void": true, "note": "did not happen"})
            } else {
                let at = last_at.map_or_else(jiff::Timestamp::now, |t| {
                    t - jiff::SignedDuration::from_millis(500)
                });
                json!({"kind": "correction", "corrects": seq, "at": at.to_string(), "note": "marked late"})
            };
            let a = shared
                .send(admin(shared.client.post(&url)).json(&body))
                .await;
            ack_entry(
                &shared,
                if void { "void" } else { "correction" },
                &relay,
                a.as_ref(),
            );
            a
        } else if roll >= 92 {
            let minutes = if rng.below(2) == 0 { 1 } else { -1 };
            let a = shared
                .send(
                    admin(shared.client.post(format!(
                        "{}/api/v1/events/{}/shift",
                        shared.base, shared.event
                    )))
                    .json(&json!({"minutes": minutes, "relay": relay})),
                )
                .await;
            if let Some((s, body)) = &a
                && s.is_success()
            {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                for e in v["entries"].as_array().into_iter().flatten() {
                    if let Some(h) = e["hash"].as_str() {
                        shared.ledger.ack_entry("relay shift", &relay, h);
                    }
                }
            }
            a
        } else if !(20..60).contains(&roll) || (current + 1 >= n_legs && roll >= 40) {
            // Operator, naming the step (the arrival after the last leg is always this kind).
            let a = shared
                .send(admin(shared.client.post(&url)).json(&json!({"from_leg": current})))
                .await;
            ack_entry(&shared, "operator, from_leg", &relay, a.as_ref());
            a
        } else if roll < 40 {
            key += 1;
            let k = format!("crash-{relay}-{}-{key}", rng.below(u64::MAX));
            let send = || {
                shared.send(
                    admin(shared.client.post(&url))
                        .header("idempotency-key", &k)
                        .json(&json!({})),
                )
            };
            let a = send().await;
            ack_entry(&shared, "operator, Idempotency-Key", &relay, a.as_ref());
            if let Some((s, first)) = &a
                && *s == StatusCode::CREATED
                && rng.below(3) == 0
            {
                // A retry as a phone or a double click sends it: the same entry, answered 200.
                if let Some((s2, again)) = send().await {
                    let hash = |b: &str| {
                        serde_json::from_str::<Value>(b)
                            .ok()
                            .and_then(|v| v["hash"].as_str().map(str::to_owned))
                    };
                    if s2 == StatusCode::OK && hash(&again) != hash(first) {
                        lock(&shared.ledger.replay_mismatches)
                            .push(format!("{relay} key {k}: {first} then {again}"));
                    } else if s2 == StatusCode::CREATED {
                        // The server restarted in between: keys live in its memory, so this
                        // was a new handoff (documented in docs/api.md).
                        ack_entry(
                            &shared,
                            "operator, Idempotency-Key",
                            &relay,
                            Some(&(s2, again.clone())),
                        );
                    }
                }
            }
            a
        } else {
            // Two-party: the giver's device asks for a code, the receiver's device enters it.
            let giver = &legs[current];
            let receiver = &legs[current + 1];
            let code_url = format!("{url}/code");
            match shared
                .send(shared.client.post(&code_url).bearer_auth(&giver.token))
                .await
            {
                Some((s, body)) if s.is_success() => {
                    let code = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let a = shared
                        .send(
                            shared
                                .client
                                .post(&url)
                                .bearer_auth(&receiver.token)
                                .json(&json!({"code": code})),
                        )
                        .await;
                    ack_entry(&shared, "two-party, giver's code", &relay, a.as_ref());
                    a
                }
                other => other,
            }
        };
        pause(&mut rng, answer.is_some(), 20, 80).await;
    }
}

/// Records the entry in a 2xx handoff answer.
fn ack_entry(
    shared: &Shared,
    kind: &'static str,
    relay: &str,
    answer: Option<&(StatusCode, String)>,
) {
    if let Some((s, body)) = answer
        && s.is_success()
        && let Some(h) = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["hash"].as_str().map(str::to_owned))
    {
        shared.ledger.ack_entry(kind, relay, &h);
    }
}

/// Event-wide shifts (one entry in every relay's log, all or nothing), each with a note of its
/// own so that an unanswered one can be found in the logs.
pub async fn event_shifts(shared: Shared, mut rng: Rng) {
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        let note = format!("event shift {n}-{}", rng.below(u64::MAX));
        let minutes = if n.is_multiple_of(2) { 1 } else { -1 };
        let a = shared
            .send(
                shared
                    .client
                    .post(format!(
                        "{}/api/v1/events/{}/shift",
                        shared.base, shared.event
                    ))
                    .bearer_auth(&shared.admin)
                    .json(&json!({"minutes": minutes, "note": note})),
            )
            .await;
        match &a {
            Some((s, body)) if s.is_success() => {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                for e in v["entries"].as_array().into_iter().flatten() {
                    if let (Some(r), Some(h)) = (e["relay"].as_str(), e["hash"].as_str()) {
                        shared.ledger.ack_entry("event-wide shift", r, h);
                    }
                }
            }
            Some((s, _)) if s.is_client_error() => {}
            _ => lock(&shared.ledger.unanswered_shifts).push(note),
        }
        pause(&mut rng, a.is_some(), 300, 900).await;
    }
}
