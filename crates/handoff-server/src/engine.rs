//! The server's live engine: one `EventLive` per event, with its relays' custody chains, the
//! stream every page listens to, and the precomputed `/live` documents. Its `Tracker` (the pure
//! fold of its inputs) has one owner: a thread of its own, to which ingest, custody, the clock
//! and every reader send jobs, run one at a time in the order they were sent (see
//! [`EventLive::run`]). Nothing else touches the tracker, so no request waits on a lock another
//! holds through a replay, and the engine's CPU work never stalls the async runtime.
//!
//! Pings reach it only after the store has committed them, and custody entries only after they
//! are stored, so what streams out is always durable. A job is queued when it is sent, not when
//! its answer is awaited: once the commit is followed by the send (no `.await` between), a
//! client that hangs up cannot leave the live state behind the store; and the work that must
//! follow a commit runs in a task of its own ([`apply_committed`]).
//!
//! Every stream message is one [`Message`], serialised once into a [`Frame`] that every
//! subscriber shares; the `snapshot` that opens a stream is the `/live` document itself (the
//! compact one: legs as [`LegLive`], their static part being in the plan).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use axum::body::Bytes;
use handoff_core::custody::{Custody, Entry, Kind};
use handoff_core::ping::Ping;
use handoff_core::plan::Plan;
use handoff_core::snapshot::{EndedBy, LegLive, RelayStatus, RelayView, Snapshot, wire};
use handoff_core::track::{
    Change, EndCause, Flags, Held, HistoryRequest, LegAccuracy, PingOf, Shift, Tracker,
};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::app::AppState;

/// One stream message, as the pages read it: the SSE event name is its `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A holder's position moved. `now` is the server's clock when it was sent (absent when
    /// the event has a public delay: a delayed message would set the pages' clocks back).
    Position {
        relay: String,
        leg: usize,
        #[serde(serialize_with = "wire::milli")]
        t: Timestamp,
        lon: f64,
        lat: f64,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "wire::decimetre_opt"
        )]
        acc_m: Option<f64>,
        #[serde(serialize_with = "wire::decimetre")]
        along_m: f64,
        #[serde(serialize_with = "wire::fraction")]
        fraction: f64,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "wire::milli_opt"
        )]
        now: Option<Timestamp>,
    },
    /// A relay's progress, flags and the ETA of each of its legs.
    Eta(EtaMessage),
    /// Custody moved on: assumed by the tracker (`verified: false`, `ended_by` `planned_time`
    /// or `positions`) or recorded in the log (`verified: true`, `ended_by` its method).
    Handoff {
        relay: String,
        from_leg: usize,
        to_leg: Option<usize>,
        at: Timestamp,
        verified: bool,
        ended_by: EndedBy,
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<handoff_core::custody::Method>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// The holder changed mode (a leg ended and the next, with the same carriers, began): a
    /// segment change within one stint of custody, not a handoff. `ended_by` says how the
    /// tracker knew (absent when a verified handoff later in the stint moved it on).
    Segment {
        relay: String,
        from_leg: usize,
        to_leg: usize,
        at: Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        ended_by: Option<EndedBy>,
    },
    /// An entry appended to a relay's custody log.
    Custody { relay: String, entry: Entry },
    /// An alert turned on.
    Alert(Alert),
    /// The plan changed: `kind` is `shift` (times moved), `plan` (a custody log noted a new
    /// version) or `version` (a new version replaced this one: reconnect).
    Plan {
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        relay: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        entry: Option<Entry>,
        event: String,
        version: i64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct EtaMessage {
    pub relay: String,
    pub status: RelayStatus,
    pub current_leg: Option<usize>,
    #[serde(serialize_with = "wire::second")]
    pub eta_finish: Timestamp,
    pub off_route: bool,
    pub overdue: bool,
    pub silent: bool,
    /// Each leg as the compact `/live` has it.
    pub legs: Vec<LegLive>,
    #[serde(serialize_with = "wire::milli")]
    pub now: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: &'static str,
    pub event: String,
    pub relay: String,
    pub leg: Option<usize>,
    pub holders: Vec<String>,
    /// When this server raised it.
    pub at: Timestamp,
    /// When it rose as the engine's fold computes it (the same on every server folding the
    /// same inputs): what tells one alert from another ([`Flags`]). Not on the wire.
    #[serde(skip)]
    pub since: Option<Timestamp>,
}

impl Message {
    /// The SSE event name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Position { .. } => "position",
            Self::Eta(_) => "eta",
            Self::Handoff { .. } => "handoff",
            Self::Segment { .. } => "segment",
            Self::Custody { .. } => "custody",
            Self::Alert(_) => "alert",
            Self::Plan { .. } => "plan",
        }
    }

    /// The relay the message is about (none for a new plan version of the whole event).
    #[must_use]
    pub fn relay(&self) -> Option<&str> {
        match self {
            Self::Position { relay, .. }
            | Self::Handoff { relay, .. }
            | Self::Segment { relay, .. }
            | Self::Custody { relay, .. } => Some(relay),
            Self::Eta(e) => Some(&e.relay),
            Self::Alert(a) => Some(&a.relay),
            Self::Plan { relay, .. } => relay.as_deref(),
        }
    }

    /// Serialised once, for every subscriber.
    #[must_use]
    pub fn frame(&self) -> Arc<Frame> {
        self.frame_with_id(None)
    }

    /// The message as sent with an SSE id: the store sequence number of the custody entry it
    /// tells of.
    #[must_use]
    pub fn frame_with_id(&self, id: Option<i64>) -> Arc<Frame> {
        Arc::new(Frame {
            event: self.name(),
            relay: self.relay().map(Arc::from),
            data: serde_json::to_string(self).unwrap_or_else(|_| "{}".into()),
            id,
        })
    }
}

/// One stream message as sent: the SSE event name, the relay it is about (for the streams of
/// one relay), and its JSON data.
#[derive(Debug)]
pub struct Frame {
    pub event: &'static str,
    pub relay: Option<Arc<str>>,
    pub data: String,
    /// The SSE `id`: set on the messages of a custody entry (its store sequence number), so
    /// that a viewer reconnecting with `Last-Event-ID` gets the entries it missed.
    pub id: Option<i64>,
}

/// The entries of `chain` (of `relay`) stored after `after`, with their store sequence
/// numbers (entries without one are never "after" anything).
pub fn entries_after(relay: &str, chain: &Chain, after: i64) -> Vec<(String, Entry, i64)> {
    // Sequence numbers increase along a chain: the new ones are at its end.
    let new = chain.stored.partition_point(|&s| s <= after);
    chain.entries[new.min(chain.entries.len())..]
        .iter()
        .zip(&chain.stored[new..])
        .map(|(e, &s)| (relay.to_string(), e.clone(), s))
        .collect()
}

/// One relay's custody chain as stored, and the state it implies.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub entries: Vec<Entry>,
    /// The store's sequence number of each entry of `entries` (where known: a chain built from
    /// entries alone has none), increasing along the chain and across every relay and node:
    /// the id of the entry's stream messages, by which a reconnecting viewer says what it has
    /// seen (`Last-Event-ID`).
    pub stored: Vec<i64>,
    pub state: Custody,
    /// The latest requests answered by an `Idempotency-Key` (key, fingerprint of the request,
    /// the entry it stored), newest last: a retried request gets the same entry back.
    pub answered: std::collections::VecDeque<(String, u64, Entry)>,
    /// Why the stored log failed verification at start-up (an edited, removed or unreadable
    /// entry), if it did: `entries` then hold only the verified prefix, and nothing more is
    /// appended until an operator repairs the store (restores a backup) and restarts.
    pub broken: Option<String>,
}

/// Idempotency keys remembered per relay (a retry comes within seconds; a relay's whole log
/// is rarely longer).
const ANSWERED_KEYS: usize = 256;

impl Chain {
    #[must_use]
    pub fn new(n_legs: usize, entries: Vec<Entry>) -> Self {
        let state = Custody::from_entries(n_legs, &entries);
        Self {
            entries,
            stored: Vec::new(),
            state,
            answered: std::collections::VecDeque::new(),
            broken: None,
        }
    }

    /// A chain from its stored lines (with each one's store sequence number), verified as
    /// `handoff log verify` does: the entries up to the first that fails, and why it failed.
    #[must_use]
    pub fn verified(n_legs: usize, stored: &[(i64, String)]) -> Self {
        let lines: Vec<&str> = stored.iter().map(|(_, l)| l.as_str()).collect();
        let (upto, mut broken) = match handoff_core::custody::verify(&lines.join("\n")) {
            Ok(_) => (lines.len(), None),
            Err(_) if lines.is_empty() => (0, None), // a new relay: opened with its genesis
            // `index` counts the entries before the bad one: all of them verified.
            Err(e) => (e.index, Some(e.to_string())),
        };
        let mut good = Vec::with_capacity(upto);
        for line in &lines[..upto] {
            match serde_json::from_str::<Entry>(line) {
                Ok(e) => good.push(e),
                Err(e) => {
                    broken.get_or_insert_with(|| format!("unreadable entry: {e}"));
                    break;
                }
            }
        }
        let mut chain = Self::new(n_legs, good);
        chain.stored = stored[..chain.entries.len()]
            .iter()
            .map(|(s, _)| *s)
            .collect();
        chain.broken = broken;
        chain
    }

    /// The entry a request with this idempotency key stored, and its request's fingerprint.
    #[must_use]
    pub fn answered(&self, key: &str) -> Option<(u64, &Entry)> {
        self.answered
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, f, e)| (*f, e))
    }

    /// Remembers what a keyed request stored.
    pub fn remember(&mut self, key: String, fingerprint: u64, entry: Entry) {
        if self.answered.len() >= ANSWERED_KEYS {
            self.answered.pop_front();
        }
        self.answered.push_back((key, fingerprint, entry));
    }

    /// Handoffs as the log says (corrections applied): (from leg, at).
    #[must_use]
    pub fn recorded(&self) -> Vec<(usize, Timestamp)> {
        self.state
            .ends
            .iter()
            .enumerate()
            .filter_map(|(leg, at)| at.map(|t| (leg, t)))
            .collect()
    }

    /// Plan shifts, when each was announced.
    #[must_use]
    pub fn shifts(&self) -> Vec<Shift> {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::Shift)
            .map(|e| Shift {
                at: e.at,
                from_leg: e.from.as_ref().map_or(0, |h| h.leg),
                ms: e.shift_s.unwrap_or(0).saturating_mul(1000),
            })
            .collect()
    }
}

/// Which legs a `/live` document carries: the live part of each (the default; carriers, modes,
/// lengths and planned times are in the plan) or everything (`?legs=full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legs {
    Compact,
    Full,
}

/// The gzip level of `/live` documents. A document is compressed once for every request
/// that gets it, so it is worth compressing hard; measured on the compact document of a
/// 1,000-team race (docs/benchmarks.md), level 6 takes a fifth of level 9's time for a body
/// within 3 % of its size.
const GZIP_LEVEL: u32 = 6;

/// One `/live` document, serialised once and compressed on the first request that asks.
#[derive(Debug)]
pub struct Document {
    pub etag: String,
    pub json: Bytes,
    gzip: tokio::sync::OnceCell<Bytes>,
}

impl Document {
    fn new(etag: String, json: Vec<u8>) -> Self {
        Self {
            etag,
            json: Bytes::from(json),
            gzip: tokio::sync::OnceCell::new(),
        }
    }

    /// The document gzip-compressed, computed once: requests that come while it is being
    /// compressed wait for it without holding a thread.
    pub async fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| async { Bytes::from(gzip(&self.json, GZIP_LEVEL)) })
            .await
            .clone()
    }
}

/// `bytes` gzip-compressed at `level` (0–9).
#[must_use]
pub fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// The latest `/live` document of one kind (public or admin, compact or full): the change
/// count when its build began, the second it is of, and whether a build is under way.
#[derive(Default)]
struct Slot {
    doc: Option<(u64, i64, Arc<Document>)>,
    building: bool,
}

pub struct EventLive {
    pub plan: Arc<Plan>,
    pub version: i64,
    pub plan_hash: String,
    /// The plan's source as stored (TOML).
    pub source: String,
    /// Where the jobs for the tracker's owner go (see [`EventLive::run`]).
    inbox: tokio::sync::mpsc::UnboundedSender<Job>,
    /// Custody chains by relay id. An async mutex, shared so an append can finish in a task
    /// of its own after the request that started it has gone.
    pub chains: Arc<tokio::sync::Mutex<HashMap<String, Chain>>>,
    flags: Mutex<HashMap<String, Flags>>,
    pub tx: broadcast::Sender<Arc<Frame>>,
    /// Set when a newer plan version replaces this one: its streams end, and the pages'
    /// `EventSource` reconnects to the new one by itself.
    pub retired: tokio::sync::watch::Sender<bool>,
    /// Bumped on every change; part of the `/live` ETag.
    seq: AtomicU64,
    /// Every ping up to this store sequence has been read from the store by a catch-up (or was
    /// in the saved state restored); pings applied as they come are counted by `applied`.
    cursor: AtomicI64,
    /// The ingest requests under way (shared with the engines of the event's other versions).
    pub applied: Arc<crate::checkpoint::Applied>,
    /// The change count ([`EventLive::seq`]) and the cursor when the engine was last saved.
    saved: Mutex<Option<(u64, i64)>>,
    /// The cursor of the saved state this engine was restored from, if it was.
    restored_from: Mutex<Option<i64>>,
    /// The `/live` documents (public and admin, each compact and full; see [`slot_of`]), and a
    /// wake-up for requests waiting on a build.
    published: Mutex<[Slot; 4]>,
    /// With a public delay, the engine spectators see (see [`crate::public`]); without one,
    /// this engine is public.
    pub public: Option<crate::public::Delayed>,
    /// Deep replays the public engine asked for, to serve from the store.
    public_history: Mutex<Vec<HistoryRequest>>,
    /// Relays whose custody log failed verification at start-up (marked in every view).
    unverified: Mutex<std::collections::HashSet<String>>,
    built: tokio::sync::Notify,
}

/// Work for the owner of an event's tracker.
type Job = Box<dyn FnOnce(&mut Tracker, &EventLive) + Send>;

/// The owner of an event's tracker: runs the jobs sent to it, in order, until the event's
/// engine is dropped (its inbox closes).
fn own(
    mut tracker: Tracker,
    live: Weak<EventLive>,
    mut inbox: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = inbox.blocking_recv() {
        let Some(live) = live.upgrade() else { break };
        // A job that panics loses its answer (its caller sees the engine gone), not the engine:
        // every step of the tracker finishes before it returns, so its state is whole.
        let run = std::panic::AssertUnwindSafe(|| job(&mut tracker, &live));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(event = %live.plan.event.id, "an engine job panicked");
        }
    }
}

/// A `/live` build under way: when it ends (or unwinds), its slot is free and waiters wake.
struct Building<'a> {
    live: &'a EventLive,
    kind: usize,
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        lock(&self.live.published)[self.kind].building = false;
        self.live.built.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (every update finishes
    // before the guard drops), so recover the guard rather than poison the server.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A committed ping on its way to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Committed {
    pub device: String,
    pub carrier: String,
    /// The relay the device is bound to, if it was registered for one.
    pub relay: Option<String>,
    pub seq: i64,
    pub ping: Ping,
}

impl EventLive {
    /// The engine of one plan version, its owner thread started.
    ///
    /// # Panics
    /// When the system cannot start a thread.
    #[must_use]
    pub fn new(
        plan: Arc<Plan>,
        version: i64,
        plan_hash: String,
        source: String,
        applied: Arc<crate::checkpoint::Applied>,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(4096);
        let public = (plan.event.public_delay_ms > 0)
            .then(|| crate::public::Delayed::new(Arc::clone(&plan), version));
        let (inbox, jobs) = tokio::sync::mpsc::unbounded_channel();
        let tracker = Tracker::new(Arc::clone(&plan));
        let name = format!("engine {}", plan.event.id);
        let live = Arc::new(Self {
            inbox,
            plan,
            version,
            plan_hash,
            source,
            chains: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
            flags: Mutex::new(HashMap::new()),
            tx,
            retired: tokio::sync::watch::Sender::new(false),
            seq: 0.into(),
            cursor: AtomicI64::new(0),
            applied,
            saved: Mutex::new(None),
            restored_from: Mutex::new(None),
            published: Mutex::new(Default::default()),
            public,
            public_history: Mutex::new(Vec::new()),
            unverified: Mutex::new(std::collections::HashSet::new()),
            built: tokio::sync::Notify::new(),
        });
        let owner = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || own(tracker, owner, jobs))
            .expect("starting the engine's thread");
        live
    }

    /// Sends `job` to the tracker's owner and returns its answer (`None` if the job panicked).
    /// The job is queued at once, in order after every job sent before: awaiting the answer
    /// is optional, and dropping the future does not cancel the job.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Tracker, &EventLive) -> R + Send + 'static,
    ) -> impl Future<Output = Option<R>> + Send + 'static {
        let (answer, answered) = tokio::sync::oneshot::channel();
        // The owner runs as long as this engine exists, so the send cannot fail here.
        let _ = self.inbox.send(Box::new(move |tr, live| {
            let _ = answer.send(job(tr, live));
        }));
        async move { answered.await.ok() }
    }

    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Where the next catch-up from the store resumes.
    #[must_use]
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Moves the cursor on: every ping up to `seq` has been applied (pings of unknown devices
    /// included, which the engine has no use for).
    pub fn advance_cursor(&self, seq: i64) {
        self.cursor.fetch_max(seq, Ordering::Relaxed);
    }

    /// Every ping of the event up to this store sequence is in the engine: read by a
    /// catch-up, or applied by an ingest request with none before it still under way.
    #[must_use]
    pub fn applied_through(&self) -> i64 {
        self.cursor().max(self.applied.through())
    }

    /// Takes over a tracker restored from a saved state in which every ping up to `cursor` is.
    /// Only before the engine is live (an install).
    pub fn restore(&self, tracker: Tracker, cursor: i64) {
        drop(self.run(move |tr, _| *tr = tracker));
        self.advance_cursor(cursor);
        *lock(&self.restored_from) = Some(cursor);
    }

    /// The cursor of the saved state this engine started from, if it did.
    #[must_use]
    pub fn restored_from(&self) -> Option<i64> {
        *lock(&self.restored_from)
    }

    /// A copy of the tracker's state to save, taken a few relays at a time (a race has a
    /// thousand): the jobs sent meanwhile wait for one part, never for the whole copy.
    pub async fn freeze(&self) -> handoff_core::track::Frozen {
        const RELAYS_AT_A_TIME: usize = 16;
        let mut frozen = handoff_core::track::Frozen::default();
        for from in (0..self.plan.relays.len()).step_by(RELAYS_AT_A_TIME) {
            if let Some(part) = self
                .run(move |tr, _| tr.freeze_part(from, RELAYS_AT_A_TIME))
                .await
            {
                frozen.extend(part);
            }
        }
        frozen
    }

    /// The change count and the cursor when the engine was last saved.
    #[must_use]
    pub fn saved_at(&self) -> Option<(u64, i64)> {
        *lock(&self.saved)
    }

    pub fn mark_saved(&self, at: (u64, i64)) {
        *lock(&self.saved) = Some(at);
    }

    /// Applies committed pings, streams what changed, and answers the proximity handoffs found
    /// (for the custody log) and the deep replays the tracker asks for. Queued when called.
    pub fn apply(
        &self,
        pings: Arc<[Committed]>,
        now: Timestamp,
    ) -> impl Future<Output = (Vec<Change>, Vec<HistoryRequest>)> + Send + 'static {
        let done = self.run(move |tr, live| live.apply_on(tr, &pings, now));
        async move { done.await.unwrap_or_default() }
    }

    fn apply_on(
        &self,
        tr: &mut Tracker,
        pings: &[Committed],
        now: Timestamp,
    ) -> (Vec<Change>, Vec<HistoryRequest>) {
        let changes = tr.apply_batch(pings.iter().map(|p| PingOf {
            device: &p.device,
            carrier: &p.carrier,
            relay: p.relay.as_deref(),
            seq: p.seq.unsigned_abs(),
            ping: &p.ping,
        }));
        let views = self.views(tr, &changes, None, now);
        let history = tr.take_history_requests();
        self.publish(&changes, views, now);
        if let Some(p) = &self.public {
            let more = p.pings(pings, now);
            lock(&self.public_history).extend(more);
        }
        (proximity_of(changes), history)
    }

    /// Whether the public engine is waiting for deep replays.
    #[must_use]
    pub fn wants_public_history(&self) -> bool {
        !lock(&self.public_history).is_empty()
    }

    /// Deep replays the public engine asked for (served by [`serve_history`]).
    pub fn take_public_history(&self) -> Vec<HistoryRequest> {
        std::mem::take(&mut *lock(&self.public_history))
    }

    /// The stream spectators follow: the public engine's, when there is a public delay.
    #[must_use]
    pub fn stream_tx(&self) -> &broadcast::Sender<Arc<Frame>> {
        self.public.as_ref().map_or(&self.tx, |p| &p.tx)
    }

    /// Sends a message to operators and spectators alike (a new plan version).
    pub fn send_everyone(&self, msg: &Message) {
        self.send(msg);
        if let Some(p) = &self.public {
            p.send(msg);
        }
    }

    /// The public view of every relay the changes touched (or of `relay`, if none), for the
    /// `eta` messages: built only while somebody listens.
    fn views(
        &self,
        tr: &Tracker,
        changes: &[Change],
        relay: Option<&str>,
        now: Timestamp,
    ) -> Vec<RelayView> {
        if self.tx.receiver_count() == 0 {
            return Vec::new();
        }
        let mut views = relay_views(tr, changes, now);
        if views.is_empty() {
            views.extend(relay.and_then(|r| tr.relay_view(r, now, true)));
        }
        views
    }

    /// Replays a relay with its pings brought back from the store.
    pub async fn replay_history(
        &self,
        request: HistoryRequest,
        pings: Vec<Committed>,
        now: Timestamp,
    ) -> (Vec<Change>, Vec<HistoryRequest>) {
        let done = self.run(move |tr, live| {
            let changes = tr.replay_history(
                &request,
                pings
                    .into_iter()
                    .map(|p| (p.device, p.carrier, p.seq.unsigned_abs(), p.ping)),
            );
            let views = live.views(tr, &changes, Some(&request.relay), now);
            let history = tr.take_history_requests();
            live.bump();
            live.publish(&changes, views, now);
            (proximity_of(changes), history)
        });
        done.await.unwrap_or_default()
    }

    /// Lets time pass (stage legs end on time), streams what changed, raises alerts from the
    /// flags that turned on.
    pub async fn tick(&self, now: Timestamp) -> Vec<Alert> {
        let done = self.run(move |tr, live| {
            let changes = tr.tick(now);
            let views = live.views(tr, &changes, None, now);
            let flags: Vec<(String, Flags)> = tr
                .flags(now)
                .into_iter()
                .map(|(id, f)| (id.to_string(), f))
                .collect();
            live.publish(&changes, views, now);
            if let Some(p) = &live.public {
                let more = p.tick(now);
                lock(&live.public_history).extend(more);
            }
            live.alerts(&flags, now)
        });
        done.await.unwrap_or_default()
    }

    /// Makes the tracker agree with a relay's custody chain, streams what changed, and answers
    /// the proximity handoffs the replay found (an earlier gap in the log may have hidden them).
    /// Queued when called.
    pub fn sync_custody(
        &self,
        relay: &str,
        chain: &Chain,
        now: Timestamp,
    ) -> impl Future<Output = Vec<Change>> + Send + 'static {
        if chain.broken.is_some() {
            lock(&self.unverified).insert(relay.to_string());
        }
        if let Some(p) = &self.public {
            p.custody(relay, chain, now);
        }
        let (relay, shifts, recorded) = (relay.to_string(), chain.shifts(), chain.recorded());
        let methods = chain.state.methods();
        let done = self.run(move |tr, live| {
            tr.set_methods(&relay, methods);
            let mut changes = tr.set_shifts(&relay, shifts, now);
            changes.extend(tr.set_recorded(&relay, recorded, now));
            let views = live.views(tr, &changes, Some(&relay), now);
            live.bump();
            live.publish(&changes, views, now);
            proximity_of(changes)
        });
        async move { done.await.unwrap_or_default() }
    }

    /// Deep replays asked for by inputs other than pings (a handoff recorded long after it
    /// happened, a correction): the caller serves them with [`serve_history`].
    pub async fn take_history(&self) -> Vec<HistoryRequest> {
        self.run(|tr, _| tr.take_history_requests())
            .await
            .unwrap_or_default()
    }

    fn bump(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends one message to every stream.
    pub fn send(&self, msg: &Message) {
        self.send_frame(msg.frame());
    }

    /// Sends a message already made a frame (one with an id).
    pub fn send_frame(&self, frame: Arc<Frame>) {
        self.bump();
        let _ = self.tx.send(frame);
    }

    /// What a viewer reconnecting after the custody entry `after` (store sequence number)
    /// missed: the entries stored since, in the store's order, of `only` one relay or all;
    /// public: only those already public. And the newest entry the viewer now knows of (the
    /// id of its `snapshot`).
    pub async fn entries_after(
        &self,
        after: Option<i64>,
        only: Option<&str>,
        public: bool,
    ) -> (Vec<(String, Entry, i64)>, i64) {
        if public && let Some(p) = &self.public {
            let missed = after.map(|a| p.entries_after(a, only)).unwrap_or_default();
            return (missed, p.newest_entry(only));
        }
        let chains = self.chains.lock().await;
        let mine = chains
            .iter()
            .filter(|(relay, _)| only.is_none_or(|o| o == relay.as_str()));
        let newest = mine
            .clone()
            .filter_map(|(_, c)| c.stored.last().copied())
            .max()
            .unwrap_or(0);
        let mut missed: Vec<_> = after
            .map(|a| {
                mine.flat_map(|(relay, c)| entries_after(relay, c, a))
                    .collect()
            })
            .unwrap_or_default();
        missed.sort_by_key(|(_, _, seq)| *seq);
        (missed, newest)
    }

    /// Alert transitions since the last look: a flag turning on for the leg now current.
    fn alerts(&self, now_flags: &[(String, Flags)], now: Timestamp) -> Vec<Alert> {
        let mut flags = lock(&self.flags);
        let mut out = Vec::new();
        for (relay, f) in now_flags {
            let before = flags.get(relay).copied().unwrap_or_default();
            let same_leg = before.leg == f.leg;
            for (kind, on, was, since) in [
                ("overdue", f.overdue, before.overdue, f.overdue_since),
                (
                    "off_route",
                    f.off_route,
                    before.off_route,
                    f.off_route_since,
                ),
                ("silent", f.silent, before.silent, f.silent_since),
            ] {
                if on && !(was && same_leg) {
                    let holders = self
                        .plan
                        .relay(relay)
                        .and_then(|r| f.leg.and_then(|l| r.legs.get(l)))
                        .map(|l| l.carriers.clone())
                        .unwrap_or_default();
                    out.push(Alert {
                        kind,
                        event: self.plan.event.id.clone(),
                        relay: relay.clone(),
                        leg: f.leg,
                        holders,
                        at: now,
                        since,
                    });
                }
            }
            if before != *f {
                flags.insert(relay.clone(), *f);
            }
        }
        drop(flags);
        for a in &out {
            self.send(&Message::Alert(a.clone()));
        }
        out
    }

    fn publish(&self, changes: &[Change], views: Vec<RelayView>, now: Timestamp) {
        if changes.is_empty() && views.is_empty() {
            return;
        }
        self.bump();
        if self.tx.receiver_count() == 0 {
            return; // nobody listens (start-up, no page open)
        }
        // The operators' stream (and the public one, when the event has no delay).
        stream_changes(&self.tx, &self.plan, changes, views, now, true);
    }

    /// The live view at `now`: with `public`, what spectators may see (the public engine's,
    /// when there is a public delay).
    ///
    /// # Panics
    /// When building it panicked in the engine (a bug): the request fails as it would have
    /// had it built the view itself, rather than serve a view that is not the engine's.
    pub async fn snapshot(&self, now: Timestamp, public: bool) -> Snapshot {
        let mut snap = match (&self.public, public) {
            (Some(p), true) => p.snapshot(now),
            _ => self
                .run(move |tr, _| tr.snapshot(now, public))
                .await
                .expect("the engine built the live view"),
        };
        let unverified = lock(&self.unverified);
        if !unverified.is_empty() {
            for r in &mut snap.relays {
                r.custody_unverified = unverified.contains(&r.id);
            }
        }
        snap
    }

    /// The change count of the view `/live` serves (the public engine's for spectators).
    fn seq_of(&self, public: bool) -> u64 {
        match (&self.public, public) {
            (Some(p), true) => p.seq(),
            _ => self.seq(),
        }
    }

    /// The `/live` document at `now`: one that includes every change made before this call,
    /// shared by every request (and every stream's first message). One build runs at a time:
    /// requests that come while it runs wait for the next, so under a stream of changes (a
    /// race) builds follow each other instead of one per request, and nobody gets a document
    /// older than their request.
    pub async fn document(&self, now: Timestamp, public: bool, legs: Legs) -> Arc<Document> {
        let want = self.seq_of(public);
        let second = now.as_second();
        let kind = slot_of(public, legs);
        loop {
            let notified = self.built.notified();
            tokio::pin!(notified);
            let build = {
                let mut slots = lock(&self.published);
                let slot = &mut slots[kind];
                if let Some((seq, sec, doc)) = &slot.doc
                    && *seq >= want
                    && *sec == second
                {
                    return Arc::clone(doc);
                }
                if slot.building {
                    // Registered before the lock is let go, so the build's wake-up is not missed.
                    notified.as_mut().enable();
                    false
                } else {
                    slot.building = true;
                    true
                }
            };
            if build {
                // Whatever happens in the build, the slot is free again after it.
                let building = Building { live: self, kind };
                let seq = self.seq_of(public);
                let doc = Arc::new(self.build_document((seq, second), now, public, legs).await);
                lock(&self.published)[kind].doc = Some((seq, second, Arc::clone(&doc)));
                drop(building);
                return doc;
            }
            notified.await;
        }
    }

    async fn build_document(
        &self,
        at: (u64, i64),
        now: Timestamp,
        public: bool,
        legs: Legs,
    ) -> Document {
        let snap = self.snapshot(now, public).await;
        let etag = format!(
            "\"{}-{}-{}-{}{}\"",
            self.version,
            at.0,
            at.1,
            if public { "p" } else { "a" },
            if legs == Legs::Full { "f" } else { "" }
        );
        let json = match legs {
            Legs::Compact => serde_json::to_vec(&snap.compact()),
            Legs::Full => serde_json::to_vec(&snap),
        };
        Document::new(etag, json.unwrap_or_default())
    }

    pub async fn relay_view(&self, relay: &str, now: Timestamp, public: bool) -> Option<RelayView> {
        let mut view = match (&self.public, public) {
            (Some(p), true) => p.relay_view(relay, now),
            _ => {
                let id = relay.to_string();
                self.run(move |tr, _| tr.relay_view(&id, now, public))
                    .await
                    .flatten()
            }
        }?;
        view.custody_unverified = lock(&self.unverified).contains(relay);
        Some(view)
    }

    /// The ETA accuracy of each finished leg: with `public`, of those spectators know about.
    pub async fn accuracy(&self, relay: &str, public: bool) -> Option<Vec<LegAccuracy>> {
        match (&self.public, public) {
            (Some(p), true) => p.accuracy(relay),
            _ => {
                let id = relay.to_string();
                self.run(move |tr, _| tr.accuracy(&id)).await.flatten()
            }
        }
    }

    /// Whether the plan has a carrier of this name.
    #[must_use]
    pub fn knows_carrier(&self, carrier: &str) -> bool {
        !self.relays_of(carrier).is_empty()
    }

    /// The relays (ids) a carrier carries in, in the plan's order.
    #[must_use]
    pub fn relays_of(&self, carrier: &str) -> Vec<String> {
        self.plan
            .relays
            .iter()
            .filter(|r| {
                r.legs
                    .iter()
                    .any(|l| l.carriers.iter().any(|c| c == carrier))
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// What the engine holds in memory.
    pub async fn held(&self) -> Held {
        self.run(|tr, _| tr.held()).await.unwrap_or_default()
    }
}

/// Streams what changed: a `position`, `handoff` or `segment` message per change, then an
/// `eta` per relay view. `now` goes with a position only when the stream is undelayed (with a
/// delay it would say how old the fix is, to the second). A leg end the tracker takes from a
/// verified handoff is not streamed as a handoff here: its custody entry is (`announce`).
pub(crate) fn stream_changes(
    tx: &broadcast::Sender<Arc<Frame>>,
    plan: &Plan,
    changes: &[Change],
    views: Vec<RelayView>,
    now: Timestamp,
    undelayed: bool,
) {
    for c in changes {
        let msg = match c {
            // The stream is public: a carrier off the leg's course is not shown.
            Change::Position { fix, .. } if !fix.on_course => continue,
            Change::Position {
                relay,
                leg,
                fix,
                fraction,
            } => Message::Position {
                relay: relay.clone(),
                leg: *leg,
                t: fix.t,
                lon: fix.lon,
                lat: fix.lat,
                acc_m: fix.acc_m,
                along_m: fix.along_m,
                fraction: *fraction,
                now: undelayed.then_some(now),
            },
            Change::Handoff {
                relay,
                from_leg,
                to_leg,
                at,
                by,
            } => {
                let assumed = match by {
                    EndCause::PlannedTime => Some(EndedBy::PlannedTime),
                    EndCause::Positions => Some(EndedBy::Positions),
                    EndCause::Verified { .. } => None,
                };
                let segment = plan
                    .relay(relay)
                    .and_then(|r| r.legs.get(*from_leg))
                    .is_some_and(|l| l.segment);
                match (segment, to_leg, assumed) {
                    (true, Some(to), _) => Message::Segment {
                        relay: relay.clone(),
                        from_leg: *from_leg,
                        to_leg: *to,
                        at: *at,
                        ended_by: assumed,
                    },
                    (_, _, Some(ended_by)) => Message::Handoff {
                        relay: relay.clone(),
                        from_leg: *from_leg,
                        to_leg: *to_leg,
                        at: *at,
                        verified: false,
                        ended_by,
                        method: None,
                        seq: None,
                    },
                    // Verified: streamed with its custody entry.
                    _ => continue,
                }
            }
            // The verified handoff is announced when its custody entry is stored; a replay
            // is announced by the `eta` of its relay below.
            Change::Proximity { .. } | Change::Replayed { .. } => continue,
        };
        let _ = tx.send(msg.frame());
    }
    for v in views {
        let legs = handoff_core::snapshot::live_legs(&v.legs);
        let msg = Message::Eta(EtaMessage {
            relay: v.id,
            status: v.status,
            current_leg: v.current_leg,
            eta_finish: v.eta_finish,
            off_route: v.off_route,
            overdue: v.overdue,
            silent: v.silent,
            legs,
            now,
        });
        let _ = tx.send(msg.frame());
    }
}

/// Where the `/live` document of a kind is kept.
fn slot_of(public: bool, legs: Legs) -> usize {
    usize::from(!public) | usize::from(legs == Legs::Full) << 1
}

fn proximity_of(changes: Vec<Change>) -> Vec<Change> {
    changes
        .into_iter()
        .filter(|c| matches!(c, Change::Proximity { .. }))
        .collect()
}

/// Pings committed to the store, applied to the live state; the proximity handoffs found are
/// recorded, and the deep replays the tracker asks for served from the store. Call it from
/// the task that stored them (not from a request's own future): it must run to its end even
/// if the request is dropped.
pub async fn apply_committed(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    pings: Arc<[Committed]>,
) {
    state
        .last_fixes
        .note(&live.plan.event.id, &pings, state.now());
    let (found, history) = live.apply(pings, state.now()).await;
    crate::custody::record_proximity(state, live, found).await;
    serve_history(state, live, history).await;
}

/// Brings back from the store the pings a relay's deep replay needs, and replays it.
pub async fn serve_history(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    mut requests: Vec<HistoryRequest>,
) {
    // A few rounds at most: a request can lead to another when checkpoints were thinned.
    for _ in 0..4 {
        if requests.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for r in requests {
            let Some(pings) = history_pings(state, live, &r).await else {
                return;
            };
            let (found, more) = live.replay_history(r, pings, state.now()).await;
            crate::custody::record_proximity(state, live, found).await;
            next.extend(more);
        }
        requests = next;
    }
    serve_public_history(state, live).await;
}

/// [`serve_history`] for the public engine of an event with a public delay.
pub async fn serve_public_history(state: &Arc<AppState>, live: &Arc<EventLive>) {
    let Some(public) = &live.public else { return };
    for _ in 0..4 {
        let requests = live.take_public_history();
        if requests.is_empty() {
            return;
        }
        for r in requests {
            let Some(pings) = history_pings(state, live, &r).await else {
                return;
            };
            let more = public.replay_history(&r, pings, state.now());
            lock(&live.public_history).extend(more);
        }
    }
}

/// The stored pings a deep replay needs: those of the relay's carriers since its checkpoint.
async fn history_pings(
    state: &AppState,
    live: &EventLive,
    r: &HistoryRequest,
) -> Option<Vec<Committed>> {
    let devices = match state.store.devices(&live.plan.event.id).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(event = %live.plan.event.id, "deep replay: {e}");
            return None;
        }
    };
    let mut pings = Vec::new();
    let of_relay = |d: &&handoff_store::Device| {
        r.carriers.contains(&d.carrier) && d.relay_id.as_deref().is_none_or(|id| id == r.relay)
    };
    for d in devices.iter().filter(of_relay) {
        match state
            .device_pings(&live.plan.event.id, &d.device_id, r.since, None)
            .await
        {
            Ok(ps) => pings.extend(ps.into_iter().map(|p| Committed {
                device: p.device_id,
                carrier: d.carrier.clone(),
                relay: d.relay_id.clone(),
                seq: p.seq,
                ping: p.ping,
            })),
            Err(e) => {
                tracing::error!(relay = %r.relay, "deep replay: {e}");
                return None;
            }
        }
    }
    Some(pings)
}

/// The (public) view of every relay a batch of changes touched, for the `eta` messages.
pub(crate) fn relay_views(tr: &Tracker, changes: &[Change], now: Timestamp) -> Vec<RelayView> {
    let mut ids: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            Change::Position { relay, .. }
            | Change::Handoff { relay, .. }
            | Change::Replayed { relay }
            | Change::Proximity { relay, .. } => relay.as_str(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| tr.relay_view(id, now, true))
        .collect()
}

#[cfg(test)]
mod tests {
    //! The wire shape of every stream message, as the pages read it.

    use super::*;
    use handoff_core::custody::{Evidence, Holder, Method, Point};
    use handoff_core::snapshot::LegStatus;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_723_410_000 + s).unwrap()
    }

    fn entry() -> Entry {
        let mut e = Entry::draft(Kind::Handoff, "paris", "flag", t(300), t(301));
        e.from = Some(Holder {
            leg: 0,
            carriers: vec!["Anne Hidalgo".into()],
        });
        e.to = Some(Holder {
            leg: 1,
            carriers: vec!["Marie-José Pérec".into()],
        });
        e.position = Some(Point::from_deg(2.3522, 48.8566));
        e.evidence = Some(Evidence {
            method: Method::Operator,
            giver_device: None,
            receiver_device: None,
            distance_m: None,
        });
        e.prev_hash = "0".repeat(64);
        e.sealed()
    }

    fn frame(m: &Message) -> serde_json::Value {
        let f = m.frame();
        assert_eq!(f.event, m.name());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&f.data).unwrap()["type"],
            serde_json::json!(f.event),
            "the SSE event name is the message's type"
        );
        serde_json::from_str(&f.data).unwrap()
    }

    #[test]
    fn position() {
        insta::assert_json_snapshot!(frame(&Message::Position {
            relay: "flag".into(),
            leg: 1,
            t: t(200),
            lon: 2.3495,
            lat: 48.8577,
            // Written to 0.1 m and 0.01 %.
            acc_m: Some(8.04),
            along_m: 215.543_21,
            fraction: 0.187_000_04,
            now: Some(t(201)),
        }));
    }

    #[test]
    fn eta() {
        insta::assert_json_snapshot!(frame(&Message::Eta(EtaMessage {
            relay: "flag".into(),
            status: RelayStatus::Running,
            current_leg: Some(1),
            eta_finish: t(1500),
            off_route: false,
            overdue: false,
            silent: true,
            legs: vec![
                LegLive {
                    index: 0,
                    status: LegStatus::Done,
                    eta_start: Some(t(0)),
                    eta_end: t(120),
                    band_s: None,
                    delta_s: 0,
                    shift_s: 0,
                    actual_start: Some(t(0)),
                    actual_end: Some(t(120)),
                    verified: false,
                    // The stage's planned time ran out: assumed, nothing recorded yet.
                    ended_by: Some(EndedBy::PlannedTime),
                },
                LegLive {
                    index: 1,
                    status: LegStatus::Current,
                    eta_start: Some(t(120)),
                    eta_end: t(560),
                    band_s: None,
                    delta_s: 20,
                    shift_s: 0,
                    actual_start: Some(t(120)),
                    actual_end: None,
                    verified: false,
                    ended_by: None,
                }
            ],
            now: t(201),
        })));
    }

    #[test]
    fn handoff_custody_alert_and_plan() {
        insta::assert_json_snapshot!(
            "handoff",
            frame(&Message::Handoff {
                relay: "flag".into(),
                from_leg: 0,
                to_leg: Some(1),
                at: t(300),
                verified: true,
                ended_by: EndedBy::Operator,
                method: Some(Method::Operator),
                seq: Some(1),
            })
        );
        insta::assert_json_snapshot!(
            "assumed_handoff",
            frame(&Message::Handoff {
                relay: "flag".into(),
                from_leg: 0,
                to_leg: Some(1),
                at: t(240),
                verified: false,
                ended_by: EndedBy::PlannedTime,
                method: None,
                seq: None,
            })
        );
        insta::assert_json_snapshot!(
            "segment",
            frame(&Message::Segment {
                relay: "flag".into(),
                from_leg: 1,
                to_leg: 2,
                at: t(600),
                ended_by: Some(EndedBy::Positions),
            })
        );
        insta::assert_json_snapshot!(
            "custody",
            frame(&Message::Custody {
                relay: "flag".into(),
                entry: entry(),
            })
        );
        insta::assert_json_snapshot!(
            "alert",
            frame(&Message::Alert(Alert {
                kind: "off_route",
                event: "paris".into(),
                relay: "flag".into(),
                leg: Some(2),
                holders: vec!["Tony Estanguet".into()],
                at: t(900),
                since: Some(t(880)),
            }))
        );
        insta::assert_json_snapshot!(
            "plan",
            frame(&Message::Plan {
                kind: "shift",
                relay: Some("flag".into()),
                entry: None,
                event: "paris".into(),
                version: 2,
            })
        );
    }
}
