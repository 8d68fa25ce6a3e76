//! The server as a library: [`AppState::open`] rebuilds every event's live state from the
//! store, and [`launch`] serves it on a listener until `shutdown` resolves, so tests start it on
//! `127.0.0.1:0` and the binary on the address it was given.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::routing::get;
use handoff_core::plan::{self, NoFiles};
use handoff_store::{Device, Store, StoredPing, StoredPlan};
use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api;
use crate::auth::AdminToken;
use crate::engine::EventLive;
use crate::error::{ApiError, Result};
use crate::metrics::Metrics;

/// Where "now" comes from: the system clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub struct Config {
    pub admin: AdminToken,
    /// `None`: the system clock.
    pub clock: Option<Clock>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub admin: AdminToken,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Set when the server is shutting down, so live streams end and shutdown can finish.
    pub closing: tokio::sync::watch::Sender<bool>,
    events: RwLock<HashMap<String, Arc<EventLive>>>,
    /// Installs of plan versions, one at a time (so a stale version never wins).
    installing: tokio::sync::Mutex<()>,
    /// Saves of engine states, one at a time (`checkpoint::save`).
    pub(crate) saving: tokio::sync::Mutex<()>,
    /// Registered devices by the token in force (a cache of the store's).
    devices: RwLock<DeviceCache>,
    /// Outgoing webhooks of every event (a cache of the store's table) and their client.
    pub webhooks: crate::webhooks::Webhooks,
    /// What this node wrote itself, for following the store's change feed ([`crate::follow`]).
    pub own: crate::follow::Own,
    /// The newest change in the store's feed when the server opened it, before its engines
    /// were built: where following the feed starts.
    pub feed_start: i64,
    /// Rate limits on failed sign-ins and wrong handoff codes.
    pub limits: crate::limits::Limiters,
    /// Reports of known devices that could not be stored, per device (in memory).
    pub dropped: crate::ingest::dropped::Dropped,
    /// The detected unit of each device's OsmAnd `speed` (in memory).
    pub speed_units: crate::ingest::speed_unit::SpeedUnits,
    /// Each device's newest fix (in memory), for the operators' list of phones.
    pub last_fixes: crate::ingest::last_fix::LastFixes,
    /// The organiser's street basemap (a PMTiles file), served at `/basemap.pmtiles` when set
    /// ([`crate::pages::Basemap`]).
    pub basemap: crate::pages::Basemap,
}

/// The stored form of a plan: its TOML source, self-contained (routes inline).
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanEnvelope {
    format: String,
    source: String,
}

impl AppState {
    /// Opens the server's state over `store`, rebuilding live state from what is stored.
    ///
    /// # Errors
    /// When the store cannot be read or a stored plan no longer parses.
    pub async fn open(store: Arc<dyn Store>, config: Config) -> Result<Arc<Self>> {
        let clock = config.clock.unwrap_or_else(|| Arc::new(Timestamp::now));
        let feed_start = *store.subscribe().borrow();
        let state = Arc::new(Self {
            store,
            admin: config.admin,
            clock,
            metrics: Metrics::default(),
            closing: tokio::sync::watch::Sender::new(false),
            events: RwLock::new(HashMap::new()),
            installing: tokio::sync::Mutex::new(()),
            saving: tokio::sync::Mutex::new(()),
            devices: RwLock::new(DeviceCache::default()),
            webhooks: crate::webhooks::Webhooks::new(),
            own: crate::follow::Own::default(),
            feed_start,
            limits: crate::limits::Limiters::default(),
            dropped: crate::ingest::dropped::Dropped::default(),
            speed_units: crate::ingest::speed_unit::SpeedUnits::default(),
            last_fixes: crate::ingest::last_fix::LastFixes::default(),
            basemap: crate::pages::Basemap::default(),
        });
        for stored in state.store.latest_plans().await? {
            state.install(&stored).await?;
        }
        Ok(state)
    }

    #[must_use]
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The live event `id`, or the API's 404 naming it.
    ///
    /// # Errors
    /// 404 when there is no such event.
    pub fn live_event(&self, id: &str) -> Result<Arc<EventLive>> {
        self.event(id)
            .ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))
    }

    #[must_use]
    pub fn event(&self, id: &str) -> Option<Arc<EventLive>> {
        self.events
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    #[must_use]
    pub fn events(&self) -> Vec<Arc<EventLive>> {
        let mut v: Vec<_> = self
            .events
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.plan.event.id.cmp(&b.plan.event.id));
        v
    }

    /// Parses a stored plan, builds its engine (from the saved state of this very plan version
    /// if one is kept, then the pings stored after it; else from every stored ping, a page at a
    /// time, in arrival order: the engine gives the same state for any order), syncs it with
    /// the custody chains, makes it the live one, then catches up from its cursor with what was
    /// committed meanwhile (those pings reached the old engine), and saves it in the
    /// background. Installs are serialised and an older version never replaces a newer one.
    pub(crate) async fn install(self: &Arc<Self>, stored: &StoredPlan) -> Result<Arc<EventLive>> {
        let _one_at_a_time = self.installing.lock().await;
        if let Some(current) = self.event(&stored.event_id)
            && current.version >= stored.version
        {
            return Ok(current);
        }
        let env: PlanEnvelope = serde_json::from_str(&stored.plan_json).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "stored_plan",
                format!("stored plan of {} is unreadable: {e}", stored.event_id),
            )
        })?;
        let plan = plan::parse(&env.source, &NoFiles).map_err(|p| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "stored_plan",
                format!("stored plan of {} no longer parses: {p}", stored.event_id),
            )
        })?;
        // Ingest requests under way on the old version's engine end after reaching this one.
        let applied = self
            .event(&stored.event_id)
            .map_or_else(Default::default, |old| Arc::clone(&old.applied));
        let live = EventLive::new(
            Arc::new(plan),
            stored.version,
            stored.plan_hash.clone(),
            env.source,
            applied,
        );
        self.webhooks.load(
            &stored.event_id,
            self.store.webhooks(&stored.event_id).await?,
        );
        crate::checkpoint::restore(self, &live).await;
        crate::custody::open_chains(self, &live).await?;
        self.catch_up(&live).await?;
        // Deep replays the custody sync asked for, or the saved state still had to do.
        crate::engine::serve_history(self, &live, live.take_history().await).await;
        live.tick(self.now()).await;
        let old = self
            .events
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(stored.event_id.clone(), Arc::clone(&live));
        // Pings committed while the new engine was being built went to the old one.
        self.catch_up(&live).await?;
        if let Some(old) = old {
            old.send_everyone(&crate::engine::Message::Plan {
                kind: "version",
                relay: None,
                entry: None,
                event: stored.event_id.clone(),
                version: stored.version,
            });
            // End its streams a moment later (the `plan` message goes out first); the pages
            // reconnect to the new version by themselves.
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                old.retired.send_replace(true);
            });
        }
        let (state, saved) = (Arc::clone(self), Arc::clone(&live));
        tokio::spawn(async move {
            if let Err(e) = crate::checkpoint::save(&state, &saved).await {
                eprintln!(
                    "handoff: {}: saving the engine state failed: {e}",
                    saved.plan.event.id
                );
            }
        });
        Ok(live)
    }

    /// Applies the event's pings stored after the engine's cursor, a page at a time.
    async fn catch_up(self: &Arc<Self>, live: &Arc<EventLive>) -> Result<()> {
        const PAGE: usize = 50_000;
        let event = &live.plan.event.id;
        let devices = self.store.devices(event).await?;
        let carrier_of: HashMap<&str, &handoff_store::Device> =
            devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
        loop {
            let page = self.store.pings_after(event, live.cursor(), PAGE).await?;
            let Some(last) = page.last().map(|p| p.seq) else {
                break;
            };
            let full = page.len() == PAGE;
            let pings: Vec<crate::engine::Committed> = page
                .into_iter()
                .filter_map(|p| {
                    carrier_of
                        .get(p.device_id.as_str())
                        .map(|d| crate::engine::Committed {
                            carrier: d.carrier.clone(),
                            relay: d.relay_id.clone(),
                            device: p.device_id,
                            seq: p.seq,
                            ping: p.ping,
                        })
                })
                .collect();
            let (found, history) = live.apply(pings.into(), self.now()).await;
            live.advance_cursor(last);
            // Proximity handoffs the log does not have yet (the server stopped before storing
            // them) are recorded now; those it has are skipped.
            crate::custody::record_proximity(self, live, found).await;
            crate::engine::serve_history(self, live, history).await;
            if !full {
                break;
            }
        }
        let mut cache = self
            .devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for d in devices {
            cache.remember(d);
        }
        Ok(())
    }

    /// Stores a new version of an event's plan (TOML source, already checked) and installs it.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put_plan(
        self: &Arc<Self>,
        event_id: &str,
        source: String,
    ) -> Result<Arc<EventLive>> {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(source.as_bytes()));
        let json = serde_json::to_string(&PlanEnvelope {
            format: "toml".into(),
            source,
        })
        .map_err(|e| ApiError::bad_request("plan", e.to_string()))?;
        let created_at = self.now();
        let version = self
            .store
            .put_plan(event_id, &json, &hash, created_at)
            .await?;
        let stored = StoredPlan {
            event_id: event_id.to_string(),
            version,
            plan_json: json,
            plan_hash: hash,
            created_at,
        };
        self.install(&stored).await
    }

    /// One device's pings with `from <= t < to`, in device-time order, read from the store in
    /// pages (each one short query, whatever the length of the device's history).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn device_pings(
        &self,
        event: &str,
        device: &str,
        mut from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<StoredPing>> {
        const PAGE: usize = 5_000;
        let mut pings = Vec::new();
        loop {
            let page = self
                .store
                .pings_for_device(event, device, from, to, PAGE)
                .await?;
            let full = page.len() == PAGE;
            // A device has one ping per instant: the next page starts just past the last.
            from = page
                .last()
                .and_then(|p| p.ping.t.checked_add(SignedDuration::from_micros(1)).ok());
            pings.extend(page);
            if !full || from.is_none() {
                return Ok(pings);
            }
        }
    }

    /// The device a token belongs to.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn device_by_token(&self, token: &str) -> Result<Option<Device>> {
        let hash = crate::auth::token_hash(token);
        if let Some(d) = self
            .devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_hash
            .get(&hash)
        {
            return Ok(Some(d.clone()));
        }
        // Another node may have registered it (its feed change is still to come).
        let found = self.store.device_by_token_hash(&hash).await?;
        if let Some(d) = &found {
            self.devices
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remember_if_unknown(d.clone());
        }
        Ok(found)
    }

    /// The device as the store now has it (registered, or its token changed): the token in
    /// force finds it, any earlier one no longer does.
    pub fn remember_device(&self, d: Device) {
        self.devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(d);
    }

    /// Lets time pass on every event (stage legs end on time, overdue flags rise), and queues
    /// each alert that rose for the webhooks subscribed to its kind.
    pub async fn tick(self: &Arc<Self>) {
        let now = self.now();
        for e in self.events() {
            for alert in e.tick(now).await {
                crate::webhooks::enqueue_alert(self, &alert).await;
            }
            // The public engine may need pings brought back from the store.
            if e.wants_public_history() {
                let (state, live) = (Arc::clone(self), Arc::clone(&e));
                tokio::spawn(async move {
                    crate::engine::serve_public_history(&state, &live).await;
                });
            }
        }
    }
}

/// The registered devices, found by the token in force.
#[derive(Debug, Default)]
struct DeviceCache {
    by_hash: HashMap<String, Device>,
    /// Every device this cache has heard of, with the hash of its token in force (`None`:
    /// revoked).
    known: HashMap<(String, String), Option<String>>,
}

impl DeviceCache {
    fn remember(&mut self, d: Device) {
        let key = (d.event_id.clone(), d.device_id.clone());
        if let Some(Some(old)) = self.known.insert(key, d.token_hash.clone()) {
            self.by_hash.remove(&old);
        }
        if let Some(hash) = d.token_hash.clone() {
            self.by_hash.insert(hash, d);
        }
    }

    /// Remembers a device read from the store only if nothing is known of it yet: the read
    /// may be older than a change of its token that the feed has already brought.
    fn remember_if_unknown(&mut self, d: Device) {
        let key = (d.event_id.clone(), d.device_id.clone());
        if !self.known.contains_key(&key) {
            self.remember(d);
        }
    }
}

/// The routes of the API and the ingest protocols, and the pages.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, _) = api_router().split_for_parts();
    routes
        .fallback(api::meta::no_route)
        .method_not_allowed_fallback(api::meta::method_not_allowed)
        .with_state(state)
}

/// Every route, each registered from its handler's `#[utoipa::path]` attribute (method and
/// path), so the OpenAPI description (`GET /api/v1/openapi.json`) lists exactly what is
/// mounted. A route goes in with `.routes(routes!(handler))`, never `.route(…)`: the access
/// matrix test (`tests/access.rs`) checks every described route, and fails on one it has no
/// row for.
pub fn api_router() -> OpenApiRouter<Arc<AppState>> {
    use api::{events, exports, handoffs, ingest, meta, openapi, stream, webhooks};
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(events::list))
        .routes(routes!(events::put, events::get))
        .routes(routes!(stream::live))
        .routes(routes!(stream::stream))
        .routes(routes!(events::add_device, events::list_devices))
        .routes(routes!(events::reissue_token, events::revoke_token))
        .routes(routes!(events::source))
        .routes(routes!(handoffs::shift))
        .routes(routes!(handoffs::record))
        .routes(routes!(handoffs::code))
        .routes(routes!(handoffs::custody))
        .routes(routes!(handoffs::accuracy))
        .routes(routes!(webhooks::add, webhooks::list))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(exports::calendar))
        .routes(routes!(exports::track_gpx))
        .routes(routes!(exports::track_geojson))
        .routes(routes!(exports::pings_csv))
        .routes(routes!(ingest::pings))
        .routes(routes!(ingest::osmand_get, ingest::osmand_post))
        .routes(routes!(ingest::owntracks))
        // The pages (live map, console, carrier) and their embedded assets.
        .merge(crate::pages::router())
}

/// Only the OsmAnd protocol, at `/` as Traccar Client expects on its own port (5055).
pub fn osmand_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(api::ingest::osmand_get).post(api::ingest::osmand_post),
        )
        .route(
            "/osmand",
            get(api::ingest::osmand_get).post(api::ingest::osmand_post),
        )
        .fallback(api::meta::no_route)
        .method_not_allowed_fallback(api::meta::method_not_allowed)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, ticking live state every second,
/// with the default [`Limits`](crate::serve::Limits).
///
/// # Errors
/// I/O errors of the listener.
pub async fn launch(
    state: Arc<AppState>,
    listener: TcpListener,
    osmand: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    launch_with(
        state,
        listener,
        osmand,
        crate::serve::Limits::default(),
        shutdown,
    )
    .await
}

/// [`launch`] with other connection limits and timeouts.
///
/// # Errors
/// I/O errors of the listener.
pub async fn launch_with(
    state: Arc<AppState>,
    listener: TcpListener,
    osmand: Option<TcpListener>,
    limits: crate::serve::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(10);
    let ticker = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                state.tick().await;
            }
        })
    };
    let saver = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::checkpoint::SAVE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await; // the first tick is at once: installs have just saved
            loop {
                every.tick().await;
                crate::checkpoint::save_all(&state).await;
            }
        })
    };
    // Webhook notifications in the store's outbox, whichever server queued them.
    let deliverer = tokio::spawn(crate::webhooks::worker::run(Arc::clone(&state)));
    // With other nodes on the same store: what they commit reaches this node's engines.
    let follower = state
        .store
        .shared()
        .then(|| tokio::spawn(crate::follow::run(Arc::clone(&state), state.feed_start)));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let osmand_task = osmand.map(|l| {
        let app = crate::layers::around(osmand_router(Arc::clone(&state)), &state);
        let mut rx = stop_tx.subscribe();
        tokio::spawn(crate::serve::serve(
            l,
            app,
            limits,
            async move {
                let _ = rx.recv().await;
            },
            GRACE,
        ))
    });
    let app = crate::layers::around(router(Arc::clone(&state)), &state);
    let stop = stop_tx.clone();
    let closing = state.closing.clone();
    let result = crate::serve::serve(
        listener,
        app,
        limits,
        async move {
            shutdown.await;
            closing.send_replace(true);
            let _ = stop.send(());
        },
        GRACE,
    )
    .await;
    ticker.abort();
    saver.abort();
    deliverer.abort();
    if let Some(f) = follower {
        f.abort();
    }
    if let Some(t) = osmand_task {
        let _ = t.await;
    }
    // What changed since the last save, so the next start replays next to nothing.
    crate::checkpoint::save_all(&state).await;
    result
}
