//! The harness every area shares: a real server on `127.0.0.1:0` over a real SQLite file in a
//! temporary folder (or, when `HANDOFF_TEST_PG` names a PostgreSQL database, a schema of its own
//! there, dropped after the test: the same tests on the other backend), with a clock that only
//! the test moves, so that every snapshot (its `now` included) is the same on every run. Also the test plan (an Olympic flag relay through Paris),
//! and a walker that turns "this carrier is `d` metres along leg `i` at time `t`" into pings,
//! with seeded GPS noise.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use handoff_core::geodesic::destination;
use handoff_core::plan::{NoFiles, Plan};
use handoff_core::route::Route;
use handoff_server::auth::AdminToken;
use handoff_server::{AppState, Clock, Config};
use handoff_store::postgres::testing::{TEST_PG_VAR, TestSchema};
use handoff_store::{SqliteStore, Store, StoredPing};
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "test-admin-token";
pub const EVENT: &str = "paris";
/// 2024-08-11T21:00:00Z (23:00 in Paris): the stage at the Hôtel de Ville begins.
pub const T0_S: i64 = 1_723_410_000;

/// The carriers, one per leg, and the device each carries.
pub const CARRIERS: [&str; 4] = [
    "Anne Hidalgo",
    "Marie-José Pérec",
    "Tony Estanguet",
    "Teddy Riner",
];
pub const DEVICES: [&str; 4] = [
    "hidalgo-phone",
    "perec-watch",
    "estanguet-bike",
    "riner-phone",
];
pub const STAGE: usize = 0;
pub const RUN: usize = 1;
pub const BIKE: usize = 2;
pub const LOOP: usize = 3;

/// A 2-minute stage at the Hôtel de Ville; a 1.15 km run west along the Rue de Rivoli to the
/// Louvre; a 1.35 km bike ride along the Seine to the Place de la Concorde; and a run that goes
/// out along the Champs-Élysées, around a block and back along the same street to the
/// Concorde (a lollipop: the route passes every point of its stem twice).
pub const PLAN: &str = r#"
[event]
id = "paris"
name = "Olympic flag: through Paris"
timezone = "Europe/Paris"

[[places]]
id = "hotel-de-ville"
name = "Hôtel de Ville"
at = [2.3522, 48.8566]
timezone = "Europe/Paris"

[[places]]
id = "concorde"
name = "Place de la Concorde"
at = [2.3212, 48.8656]
timezone = "Europe/Paris"

[[milestones]]
name = "Flag at the Concorde"
at = "2024-08-11T23:14:00+02:00[Europe/Paris]"
place = "concorde"

[[relays]]
id = "flag"
name = "Olympic flag"
object = "Olympic flag"

[[relays.legs]]
carriers = ["Anne Hidalgo"]
mode = "stage"
place = "hotel-de-ville"
start = "2024-08-11T23:00:00+02:00[Europe/Paris]"
duration = "2m"

[[relays.legs]]
carriers = ["Marie-José Pérec"]
mode = "run"
route = { points = [
    [2.3522, 48.8566], [2.3495, 48.8577], [2.3470, 48.8586], [2.3441, 48.8597], [2.3412, 48.8607],
    [2.3385, 48.8617],
] }
duration = "7m"

[[relays.legs]]
carriers = ["Tony Estanguet"]
mode = "bike"
route = { points = [
    [2.3385, 48.8617], [2.3330, 48.8627], [2.3280, 48.8636], [2.3240, 48.8645], [2.3212, 48.8656],
] }
duration = "5m"

[[relays.legs]]
carriers = ["Teddy Riner"]
mode = "run"
route = { points = [
    [2.3212, 48.8656], [2.3175, 48.8667],
    [2.3160, 48.8676], [2.3145, 48.8667], [2.3160, 48.8658], [2.3175, 48.8667],
    [2.3212, 48.8656],
] }
duration = "7m"
"#;

/// `T0_S + s` seconds.
pub fn at(s: i64) -> Timestamp {
    at_ms(s * 1000)
}

/// `T0_S` plus `ms` milliseconds.
pub fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(T0_S * 1000 + ms).expect("a time near 2024")
}

/// The test plan as the core reads it, for its geometry.
pub fn plan() -> Plan {
    handoff_core::plan::parse(PLAN, &NoFiles).expect("the test plan is valid")
}

pub fn route(plan: &Plan, leg: usize) -> &Route {
    plan.relays[0].legs[leg]
        .geometry
        .route()
        .expect("a leg with a route")
}

/// Parses a JSON timestamp.
pub fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64()
}

/// The relay's view in a snapshot.
pub fn flag(live: &Value) -> &Value {
    &live["relays"][0]
}

/// `(code, field)` of a contract error body `{"error":{"code","message","field"?}}`.
pub fn error_of(body: &Value) -> (&str, Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error says what to change: {body}"
    );
    (
        e["code"].as_str().unwrap_or("<no code>"),
        e["field"].as_str(),
    )
}

/// A clock that only the test moves, in milliseconds since the epoch.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn new(t: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(t.as_millisecond())))
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millisecond(), Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        let ms = Arc::clone(&self.0);
        Arc::new(move || {
            Timestamp::from_millisecond(ms.load(Ordering::SeqCst)).unwrap_or(Timestamp::UNIX_EPOCH)
        })
    }
}

/// The database of a test server, kept across a restart: a SQLite file in a temporary
/// folder, or a PostgreSQL schema of its own when `HANDOFF_TEST_PG` is set (dropped with this).
#[derive(Debug)]
pub enum TestDb {
    Sqlite(TempDir),
    // Boxed: its connection options are large, and a test holds one of these at a time anyway.
    Postgres(Box<TestSchema>),
}

impl TestDb {
    /// A new, empty database on the backend the environment selects.
    pub async fn new() -> Result<Arc<TestDb>> {
        let db = if std::env::var_os(TEST_PG_VAR).is_some_and(|v| !v.is_empty()) {
            let pg = TestSchema::create("server test")
                .await?
                .context("HANDOFF_TEST_PG is set")?;
            TestDb::Postgres(Box::new(pg))
        } else {
            TestDb::Sqlite(tempfile::tempdir()?)
        };
        Ok(Arc::new(db))
    }

    /// A store on it (the server's, or one a test opens on a stopped server's database).
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            TestDb::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("h.db"))?),
            TestDb::Postgres(pg) => Arc::new(pg.store().await?),
        })
    }
}

/// A running server.
pub struct Server {
    pub state: Arc<AppState>,
    pub base: String,
    pub clock: TestClock,
    pub http: reqwest::Client,
    /// One token per leg's carrier (`tokens[RUN]` is the runner's), once registered.
    pub tokens: Vec<String>,
    dir: Arc<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// A server over a new, empty database, its clock a minute before the start.
    pub async fn start() -> Result<Server> {
        Server::start_at(at(-60)).await
    }

    /// A server over a new, empty database, its clock at `t`.
    pub async fn start_at(t: Timestamp) -> Result<Server> {
        Server::open(TestDb::new().await?, TestClock::new(t)).await
    }

    /// A server over a new database with `plan` (the TOML of event `event`) uploaded, its
    /// clock at `t`; no device registered.
    pub async fn with_plan(event: &str, plan: &str, t: Timestamp) -> Result<Server> {
        let s = Server::start_at(t).await?;
        s.upload(event, plan).await?;
        Ok(s)
    }

    /// A server with the test plan uploaded and one device registered per carrier.
    pub async fn with_relay() -> Result<Server> {
        let mut s = Server::start().await?;
        s.upload(EVENT, PLAN).await?;
        for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
            let token = s.device(device, carrier).await?;
            s.tokens.push(token);
        }
        Ok(s)
    }

    /// A server over the database `dir` (a new one, or one a stopped server left).
    pub async fn open(dir: Arc<TestDb>, clock: TestClock) -> Result<Server> {
        Server::open_with(dir, clock, handoff_server::serve::Limits::default()).await
    }

    /// A server over a new, empty database with other connection limits and timeouts.
    pub async fn with_limits(limits: handoff_server::serve::Limits) -> Result<Server> {
        Server::open_with(TestDb::new().await?, TestClock::new(at(-60)), limits).await
    }

    /// [`Server::open`] with `limits`.
    pub async fn open_with(
        dir: Arc<TestDb>,
        clock: TestClock,
        limits: handoff_server::serve::Limits,
    ) -> Result<Server> {
        let store = dir.store().await?;
        Server::open_store(dir, store, clock, limits).await
    }

    /// A server over `store` (opened on `dir` some other way: through a proxy, say).
    pub async fn open_store(
        dir: Arc<TestDb>,
        store: Arc<dyn Store>,
        clock: TestClock,
        limits: handoff_server::serve::Limits,
    ) -> Result<Server> {
        let config = Config {
            admin: AdminToken::new(ADMIN),
            clock: Some(clock.clock()),
        };
        let state = AppState::open(store, config).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(handoff_server::app::launch_with(
            Arc::clone(&state),
            listener,
            None,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Server {
            state,
            base,
            clock,
            http,
            tokens: Vec::new(),
            dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Shuts the server down (as Ctrl-C would) and hands back its database and clock.
    pub async fn stop(mut self) -> Result<(Arc<TestDb>, TestClock, Vec<String>)> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Idle keep-alive connections of our client would hold graceful shutdown open.
            self.http = reqwest::Client::new();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .context("the server did not stop within 5 s")???;
        }
        Ok((
            Arc::clone(&self.dir),
            self.clock.clone(),
            std::mem::take(&mut self.tokens),
        ))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn set_clock(&self, t: Timestamp) {
        self.clock.set(t);
    }

    /// Moves the clock to `t` and lets the server see the time pass (stage legs end).
    pub async fn tick_at(&self, t: Timestamp) {
        self.clock.set(t);
        self.state.tick().await;
    }

    /// `PUT /api/v1/events/{EVENT}` with whatever token, content type and body.
    pub async fn put_plan(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> Result<(StatusCode, Value)> {
        self.put_event_plan(EVENT, token, content_type, body).await
    }

    /// `PUT /api/v1/events/{event}` with whatever token, content type and body.
    pub async fn put_event_plan(
        &self,
        event: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .put(self.url(&format!("/api/v1/events/{event}")))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req).await
    }

    /// The admin uploads `plan` (TOML) as event `event`; it must be accepted.
    pub async fn upload(&self, event: &str, plan: &str) -> Result<()> {
        let (status, body) = self
            .put_event_plan(event, Some(ADMIN), "application/toml", plan)
            .await?;
        ensure!(status == StatusCode::OK, "PUT plan: {status} {body}");
        Ok(())
    }

    /// `POST …/devices` with the admin token.
    pub async fn register(&self, device: &str, carrier: &str) -> Result<(StatusCode, Value)> {
        self.register_in(EVENT, device, carrier).await
    }

    /// `POST /api/v1/events/{event}/devices` with the admin token.
    pub async fn register_in(
        &self,
        event: &str,
        device: &str,
        carrier: &str,
    ) -> Result<(StatusCode, Value)> {
        let req = self
            .http
            .post(self.url(&format!("/api/v1/events/{event}/devices")))
            .bearer_auth(ADMIN)
            .json(&json!({ "device": device, "carrier": carrier }));
        answer(req).await
    }

    /// Registers a device and returns its token.
    pub async fn device(&self, device: &str, carrier: &str) -> Result<String> {
        self.device_in(EVENT, device, carrier).await
    }

    /// Registers a device for event `event` and returns its token.
    pub async fn device_in(&self, event: &str, device: &str, carrier: &str) -> Result<String> {
        let (status, body) = self.register_in(event, device, carrier).await?;
        ensure!(
            status == StatusCode::CREATED,
            "register {device}: {status} {body}"
        );
        Ok(body["token"].as_str().context("a token")?.to_owned())
    }

    /// `POST /api/v1/pings` with whatever token, content type and body.
    pub async fn post_pings(
        &self,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.post(self.url("/api/v1/pings")).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        answer(req).await
    }

    /// Sends a carrier's walk in batches of six, the clock following the fixes.
    pub async fn send_walk(&self, leg: usize, fixes: &[Fix]) -> Result<()> {
        for batch in fixes.chunks(6) {
            self.set_clock(batch.last().context("a batch")?.t);
            self.send(
                &self.tokens[leg].clone(),
                &batch.iter().map(Fix::json).collect::<Vec<_>>(),
            )
            .await?;
        }
        Ok(())
    }

    /// Sends pings of one device as a JSON array; every one must be accepted.
    pub async fn send(&self, token: &str, pings: &[Value]) -> Result<Value> {
        let (status, body) = self
            .post_pings(
                Some(token),
                Some("application/json"),
                Value::from(pings.to_vec()).to_string(),
            )
            .await?;
        ensure!(status == StatusCode::OK, "POST pings: {status} {body}");
        ensure!(
            body["rejected"].as_array().is_some_and(Vec::is_empty),
            "rejected: {body}"
        );
        Ok(body)
    }

    /// `GET path` (with the admin token or none): the status and the body as text.
    pub async fn get_text(&self, path: &str, admin: bool) -> Result<(StatusCode, String)> {
        let mut req = self.http.get(self.url(path));
        if admin {
            req = req.bearer_auth(ADMIN);
        }
        let resp = req.send().await?;
        Ok((resp.status(), resp.text().await?))
    }

    /// `GET path`, which must answer 200: the body as text.
    pub async fn text(&self, path: &str, admin: bool) -> Result<String> {
        let (status, body) = self.get_text(path, admin).await?;
        ensure!(status == StatusCode::OK, "GET {path}: {status} {body}");
        Ok(body)
    }

    /// `POST path` with the admin token and a JSON body, which must answer 2xx.
    pub async fn admin_post(&self, path: &str, body: Value) -> Result<Value> {
        let (status, reply) = as_admin(self.http.post(self.url(path)).json(&body)).await?;
        ensure!(status.is_success(), "POST {path}: {status} {reply}");
        Ok(reply)
    }

    /// The operator records the next handoff of `relay` of event `event`, now: the entry. The
    /// request names no leg, so it carries an idempotency key (a fresh one).
    pub async fn handoff(&self, event: &str, relay: &str) -> Result<Value> {
        let path = format!("/api/v1/events/{event}/relays/{relay}/handoffs");
        let key = format!("test-{}", getrandom::u64()?);
        let req = self
            .http
            .post(self.url(&path))
            .header("Idempotency-Key", key);
        let (status, body) = as_admin(req.json(&json!({}))).await?;
        ensure!(
            status == StatusCode::CREATED,
            "POST handoff: {status} {body}"
        );
        Ok(body)
    }

    /// `GET /osmand?{query}`.
    pub async fn osmand_get(&self, query: &str) -> Result<(StatusCode, Value)> {
        answer(self.http.get(self.url(&format!("/osmand?{query}")))).await
    }

    /// `GET …/live`: the public view, or the operators' (admin token) one, with compact legs.
    pub async fn live(&self, admin: bool) -> Result<Value> {
        self.live_query(admin, "").await
    }

    /// `GET …/live?legs=full`: every leg with everything (carriers, planned times, distances).
    pub async fn live_full(&self, admin: bool) -> Result<Value> {
        self.live_query(admin, "?legs=full").await
    }

    async fn live_query(&self, admin: bool, query: &str) -> Result<Value> {
        let mut req = self
            .http
            .get(self.url(&format!("/api/v1/events/{EVENT}/live{query}")));
        if admin {
            req = req.bearer_auth(ADMIN);
        }
        let (status, body) = answer(req).await?;
        ensure!(status == StatusCode::OK, "GET live: {status} {body}");
        Ok(body)
    }

    /// How many pings the database holds.
    pub async fn ping_count(&self) -> Result<i64> {
        Ok(self.state.store.ping_count().await?)
    }

    /// Every stored ping of the event in device-time order, as the store gives them back
    /// (page by page, in pages small enough that a test with a few pings crosses pages).
    pub async fn stored(&self) -> Result<Vec<StoredPing>> {
        let mut all: Vec<StoredPing> = Vec::new();
        loop {
            let after = all.last().map(StoredPing::key);
            let page = self.state.store.pings_by_time(EVENT, after, 7).await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// `GET /api/v1/events/{EVENT}/devices` (admin): the listed device `device`.
    pub async fn listed_device(&self, device: &str) -> Result<Value> {
        let req = self
            .http
            .get(self.url(&format!("/api/v1/events/{EVENT}/devices")));
        let (status, body) = as_admin(req).await?;
        ensure!(status == StatusCode::OK, "GET devices: {status} {body}");
        body["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["device"] == device))
            .cloned()
            .with_context(|| format!("{device} in {body}"))
    }

    /// How many reports of `device` were dropped for `reason`, as the device listing says.
    pub async fn dropped(&self, device: &str, reason: &str) -> Result<u64> {
        let d = self.listed_device(device).await?;
        Ok(d["dropped"]["by_reason"][reason].as_u64().unwrap_or(0))
    }

    /// The value of `handoff_reports_dropped_total{format,reason}` in `/metrics` (0 if absent).
    pub async fn dropped_metric(&self, format: &str, reason: &str) -> Result<f64> {
        let m = self.metrics().await?;
        Ok(metric(
            &m,
            "handoff_reports_dropped_total",
            &format!("format=\"{format}\",reason=\"{reason}\""),
        )
        .unwrap_or(0.0))
    }

    /// Sends `req`, a report of the known device `device` that can never be stored, and
    /// asserts what a phone needs: a 2xx, nothing stored, and the report counted under
    /// `(format, reason)` in the device listing and in `/metrics`. The answer's body.
    pub async fn assert_dropped(
        &self,
        req: reqwest::RequestBuilder,
        device: &str,
        (format, reason): (&str, &str),
    ) -> Result<Value> {
        let stored = self.ping_count().await?;
        let listed = self.dropped(device, reason).await?;
        let counted = self.dropped_metric(format, reason).await?;
        let (status, body) = answer(req).await?;
        ensure!(status == StatusCode::OK, "want 200, got {status} {body}");
        ensure!(
            self.ping_count().await? == stored,
            "nothing is stored after {body}"
        );
        let now_listed = self.dropped(device, reason).await?;
        ensure!(
            now_listed == listed + 1,
            "{device} dropped[{reason}] {listed} → {now_listed}"
        );
        let now_counted = self.dropped_metric(format, reason).await?;
        ensure!(
            (now_counted - counted - 1.0).abs() < 1e-9,
            "handoff_reports_dropped_total{{{format},{reason}}} {counted} → {now_counted}"
        );
        Ok(body)
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The value of the sample `name{labels}` in Prometheus text.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends a request; the status and the body as JSON (`null` for an empty body, a string for
/// one that is not JSON).
pub async fn answer(req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, body))
}

/// Sends a request with the admin token; the status and the body, as [`answer`] gives them.
pub async fn as_admin(req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    answer(req.bearer_auth(ADMIN)).await
}

/// Seeded pseudo-random numbers (a 64-bit LCG with Knuth's MMIX constants): GPS noise that is
/// the same on every run.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The top 53 bits, as a fraction of 1.
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

/// One position report of a carrier moving along their leg, with where they truly were.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    pub leg: usize,
    pub t: Timestamp,
    pub true_along_m: f64,
    pub lon: f64,
    pub lat: f64,
    pub acc_m: f64,
}

impl Fix {
    /// The ping as the batch API takes it.
    pub fn json(&self) -> Value {
        json!({ "t": self.t.to_string(), "lon": self.lon, "lat": self.lat, "acc": self.acc_m })
    }
}

/// A carrier moving along leg `leg` at a constant `speed_mps` from `start`, one fix every
/// `every_s` seconds from the leg's start to its end (the last fix exactly at the end, on the
/// whole second after). With `noise`, each fix is 5–15 m off in a random direction and reports
/// an accuracy of 5–20 m, as a phone in a city street does; without, it is on the route, 5 m.
pub fn walk(
    plan: &Plan,
    leg: usize,
    start: Timestamp,
    speed_mps: f64,
    every_s: i64,
    mut noise: Option<&mut Lcg>,
) -> Vec<Fix> {
    let route = route(plan, leg);
    let length_m = route.length_m();
    #[allow(clippy::cast_possible_truncation)]
    let total_s = (length_m / speed_mps).ceil() as i64;
    let mut times: Vec<i64> = (0..total_s)
        .step_by(usize::try_from(every_s).unwrap_or(1))
        .collect();
    times.push(total_s);
    times
        .into_iter()
        .map(|s| {
            #[allow(clippy::cast_precision_loss)]
            let true_along_m = (s as f64 * speed_mps).min(length_m);
            let on_route = route.point_at(true_along_m);
            let (here, acc_m) = match noise.as_deref_mut() {
                Some(rng) => {
                    let (azimuth, off_m, acc_m) = (
                        rng.range(0.0, 360.0),
                        rng.range(5.0, 15.0),
                        rng.range(5.0, 20.0),
                    );
                    (destination(on_route, azimuth, off_m), acc_m)
                }
                None => (on_route, 5.0),
            };
            let t = start
                .checked_add(jiff::SignedDuration::from_secs(s))
                .expect("a time near 2024");
            Fix {
                leg,
                t,
                true_along_m,
                lon: here.lon,
                lat: here.lat,
                acc_m,
            }
        })
        .collect()
}

/// The planned speed of a leg: its length over its planned duration.
pub fn planned_speed_mps(plan: &Plan, leg: usize) -> f64 {
    let l = &plan.relays[0].legs[leg];
    #[allow(clippy::cast_precision_loss)]
    let secs = l.duration_ms() as f64 / 1000.0;
    l.length_m() / secs
}

/// The fields of one SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
    /// The message's `id:`, if it has one.
    pub id: Option<String>,
}

/// Reads a `text/event-stream` body event by event, from raw chunks.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, waiting at most `within`; `None` when none came in time.
    pub async fn next(&mut self, within: Duration) -> Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                let mut id = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok(Some(SseEvent {
                    event,
                    id,
                    data: serde_json::from_str(&data)
                        .with_context(|| format!("SSE data is not JSON: {data}"))?,
                }));
            }
            let Ok(chunk) = tokio::time::timeout_at(deadline, self.resp.chunk()).await else {
                return Ok(None);
            };
            let chunk = chunk?.context("the stream ended")?;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Events until one named `name` arrives (within `within` in all); the ones before it too.
    pub async fn until(&mut self, name: &str, within: Duration) -> Result<Vec<SseEvent>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(e) = self.next(left).await? else {
                let names: Vec<_> = seen.iter().map(|e: &SseEvent| e.event.clone()).collect();
                anyhow::bail!("no `{name}` event within {within:?}; got {names:?}");
            };
            let done = e.event == name;
            seen.push(e);
            if done {
                return Ok(seen);
            }
        }
    }
}

/// The runner's leg at 90 % of the planned pace from 120 s, then the bike's at the planned pace,
/// a fix every 5 s with noise from `seed`: what the restart tests send.
pub fn run_then_bike(seed: u64) -> (Vec<Fix>, Vec<Fix>) {
    let plan = plan();
    let mut rng = Lcg::new(seed);
    let run = walk(
        &plan,
        RUN,
        at(120),
        0.9 * planned_speed_mps(&plan, RUN),
        5,
        Some(&mut rng),
    );
    let start = run.last().map_or(at(500), |f| f.t);
    let bike = walk(
        &plan,
        BIKE,
        start,
        planned_speed_mps(&plan, BIKE),
        5,
        Some(&mut rng),
    );
    (run, bike)
}
