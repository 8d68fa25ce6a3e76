//! Persistence for handoff behind one trait, [`Store`]: append-only plans (versioned), devices,
//! pings and custody-log entries, and the event's webhooks with their delivery log. Live state
//! is derived from these rows; the one exception is a cache of it, the newest saved state of
//! each event's engine ([`EngineCheckpoint`]), which lets a start skip most of the replay and
//! can always be dropped and rebuilt from the rows. Beside them, what several servers on one
//! database must share rather than each hold alone: the givers' one-time handoff codes
//! ([`HandoffCode`], wrong attempts counted by the store) and the webhook outbox
//! ([`NewNotification`]: queued once per fact, claimed with a lease, settled with each attempt).
//!
//! One idea runs through the API: **an answered write is durable**. Every write method returns
//! only after its transaction has committed, so the server may answer 2xx as soon as the call
//! returns. Uniqueness rules live in the schema (not in a check-then-write in the caller), so a
//! duplicate ping is idempotent and a handoff wins exactly once even with several writers.
//!
//! The trait is backend-neutral: [`StoreError`] names no driver type, the store reads no clock
//! (every instant is an argument), reads that grow with a relay are paged, and every input is
//! numbered in one change feed ([`Store::changes_since`], [`Store::subscribe`]) that other
//! nodes can follow. [`sqlite::SqliteStore`] is the embedded default; [`postgres::PostgresStore`]
//! implements the same trait on a PostgreSQL server that several nodes can share. The trait is
//! object-safe (`Arc<dyn Store>`). Every backend must pass the shared suite in [`suite`]
//! (feature `suite`), run with one [`store_suite!`] call. Moving a whole store to another
//! database, identities kept, is not the trait's job: [`copy`] does it through a narrow export
//! and import of each backend.

pub mod copy;
pub mod error;
mod input;
pub mod postgres;
pub mod sqlite;
#[cfg(any(test, feature = "suite"))]
pub mod suite;

use std::fmt;

use async_trait::async_trait;
use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use tokio::sync::watch;

pub use error::{BackendError, Result, StoreError};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The persistence capability the server needs, the same for every backend. All methods are
/// async and never block the runtime; writes return after commit.
///
/// Contract points every backend keeps (and [`suite`] checks, when built with the `suite`
/// feature):
/// - **No clock inside.** Every instant a row carries (`created_at`, `received_at`, `at`) is
///   given by the caller, so a store replays the same under a simulated clock.
/// - **Bounded reads.** Anything that grows with a relay (pings, the change feed) is read in
///   pages of at most `limit` rows; what is bounded by the plan (devices, custody logs,
///   webhooks) is read whole.
/// - **One change feed.** Every input (plan version, device, ping, custody entry — shifts and
///   corrections included —, webhook) gets a number in ONE increasing sequence when it is
///   committed, in commit order (the pings of one event stored by one write share a number): once a reader has seen change `n`, no change numbered below
///   `n` can still appear. [`Store::changes_since`] pages through it, [`Store::subscribe`]
///   wakes on new numbers.
#[async_trait]
pub trait Store: Send + Sync {
    /// Appends a new version of `event_id`'s plan, stamped `at`, and returns its version number
    /// (1, 2, …). Versions are allocated by the database (unique per event), so concurrent
    /// writers never share one; a writer that loses such a race gets
    /// [`StoreError::Conflict`] and may retry.
    async fn put_plan(
        &self,
        event_id: &str,
        plan_json: &str,
        plan_hash: &str,
        at: Timestamp,
    ) -> Result<i64>;

    /// The latest version of every event's plan, ordered by event id.
    async fn latest_plans(&self) -> Result<Vec<StoredPlan>>;

    /// The latest version of one event's plan, if it has any.
    async fn plan(&self, event_id: &str) -> Result<Option<StoredPlan>>;

    /// Registers a device. [`StoreError::Conflict`] when `(event_id, device_id)` is already
    /// registered, or (vanishingly unlikely) when the token hash is already in use.
    async fn add_device(&self, device: NewDevice) -> Result<()>;

    /// The device whose current token hashes to `token_hash` (SHA-256 hex, computed by the
    /// caller). A token replaced or revoked by [`Store::set_device_token`] finds nothing.
    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>>;

    /// Gives a registered device a new token (`Some(hash)`) or revokes its token (`None`),
    /// stamped `at`, and returns the device as it now is. Its previous token stops working
    /// with the commit. The change is appended (the registration stays as it was) and is one
    /// more `Device` change of the feed. [`StoreError::NotFound`] when the device is not
    /// registered; [`StoreError::Conflict`] when the hash is, or was, any device's token.
    async fn set_device_token(
        &self,
        event_id: &str,
        device_id: &str,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> Result<Device>;

    /// The devices of one event, ordered by device id.
    async fn devices(&self, event_id: &str) -> Result<Vec<Device>>;

    /// Stores a batch of pings, one outcome per item in the same order. A ping with the same
    /// event, device and device time `t` as a stored one (or an earlier one in the batch) is a
    /// [`Inserted::Duplicate`], not an error: phones resend. Returns after commit.
    async fn insert_pings(&self, batch: Vec<NewPing>) -> Result<Vec<Inserted>>;

    /// Up to `limit` pings of an event with `seq > after`, in arrival (`seq`) order: the pages
    /// the live engine rebuilds and catches up from.
    async fn pings_after(
        &self,
        event_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredPing>>;

    /// Up to `limit` pings of an event in device-time order (`t`, then `seq`), starting after
    /// `after` (from the first when `None`). The next page starts after the last one's
    /// [`StoredPing::key`].
    async fn pings_by_time(
        &self,
        event_id: &str,
        after: Option<PingKey>,
        limit: usize,
    ) -> Result<Vec<StoredPing>>;

    /// Up to `limit` of one device's pings with `from <= t < to` (each bound optional), in
    /// device-time order. A device has one ping per instant, so the next page is the same call
    /// with `from` just past the last one's `t`.
    async fn pings_for_device(
        &self,
        event_id: &str,
        device_id: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<StoredPing>>;

    /// Appends an entry, stamped `at`, to the custody log of `(event_id, entry.relay_id)` and
    /// returns its `seq`. `entry.prev_hash` must be the `hash` of the chain's current head
    /// ([`StoreError::Conflict`] otherwise); the first entry of a chain may commit to anything
    /// (the plan's hash).
    async fn append_custody(&self, event_id: &str, entry: NewCustody, at: Timestamp)
    -> Result<i64>;

    /// Appends one entry to each of several custody logs of an event, all or nothing, in one
    /// transaction (a race-wide shift), each with the rules of [`Store::append_custody`].
    /// Returns their `seq`s in order.
    async fn append_custody_many(
        &self,
        event_id: &str,
        entries: Vec<NewCustody>,
        at: Timestamp,
    ) -> Result<Vec<i64>>;

    /// The custody log of one relay, in chain order (bounded by its legs and corrections).
    async fn custody(&self, event_id: &str, relay_id: &str) -> Result<Vec<StoredCustody>>;

    /// How many pings are stored in all (for metrics and tests).
    async fn ping_count(&self) -> Result<i64>;

    /// Registers a webhook of an event. [`StoreError::Conflict`] when `(event_id, webhook_id)`
    /// is already taken.
    async fn add_webhook(&self, webhook: NewWebhook) -> Result<()>;

    /// The webhooks of one event, in the order they were added.
    async fn webhooks(&self, event_id: &str) -> Result<Vec<Webhook>>;

    /// Appends one delivery attempt to the event's webhook log and returns its `seq`.
    async fn log_delivery(&self, delivery: NewDelivery) -> Result<i64>;

    /// The last `limit` delivery attempts of an event, newest first.
    async fn deliveries(&self, event_id: &str, limit: usize) -> Result<Vec<Delivery>>;

    /// Keeps a giver's one-time code for its step `(event, relay, from leg)`, replacing the
    /// code issued for that step before (its wrong attempts start again from 0).
    async fn put_handoff_code(&self, code: HandoffCode) -> Result<()>;

    /// The codes issued for the steps of one relay and not deleted since (expired ones too:
    /// the caller tells), ordered by step.
    async fn handoff_codes(&self, event_id: &str, relay_id: &str) -> Result<Vec<HandoffCode>>;

    /// Counts one wrong attempt at the code of `step` whose hash is `code_hash`, as one atomic
    /// increment (attempts on several servers add up); when the count reaches `burn_at` the
    /// code is deleted in the same transaction. Returns the count, or `None` when that code is
    /// no longer there (spent, burnt, or replaced by a newer code).
    async fn strike_handoff_code(
        &self,
        step: &CodeStep,
        code_hash: &str,
        burn_at: u32,
    ) -> Result<Option<u32>>;

    /// Deletes the code of `step` if it is still the one whose hash is `code_hash` (a code
    /// issued since stays).
    async fn delete_handoff_code(&self, step: &CodeStep, code_hash: &str) -> Result<()>;

    /// Queues notifications in the webhook outbox, each unless one with the same
    /// `(event, webhook, key)` was queued before (by any server, delivered or not): the same
    /// fact gives the same key on every server, so it is delivered once. Returns how many were
    /// new.
    async fn enqueue_notifications(&self, notifications: Vec<NewNotification>) -> Result<usize>;

    /// Claims up to `limit` queued notifications due at `now` (not delivered nor given up, no
    /// claim alive), each until `until`: nobody else claims it before then, so a server that
    /// dies with a claim only delays it. Oldest due first, each with its webhook's URL and
    /// secret.
    async fn claim_notifications(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedNotification>>;

    /// Records an attempt at a claimed notification, in one transaction: the attempt goes to
    /// the delivery log ([`Store::log_delivery`]; its `seq` is returned), and the notification
    /// is due again at `next` or, with `None`, done; its claim ends. Should the notification
    /// have moved on meanwhile (the claim ran out and another server attempted it), only the
    /// log is written.
    async fn settle_notification(
        &self,
        outbox_seq: i64,
        attempt: NewDelivery,
        next: Option<Timestamp>,
    ) -> Result<i64>;

    /// The first `limit` notifications of an event's outbox, oldest first (for tools and
    /// tests: what was queued, and where each one stands).
    async fn notifications(&self, event_id: &str, limit: usize) -> Result<Vec<QueuedNotification>>;

    /// Keeps `checkpoint` as its event's newest saved engine state, replacing the one kept,
    /// unless that one is of a newer plan version.
    async fn put_engine_checkpoint(&self, checkpoint: EngineCheckpoint) -> Result<()>;

    /// The saved engine state of an event, if one is kept.
    async fn engine_checkpoint(&self, event_id: &str) -> Result<Option<EngineCheckpoint>>;

    /// Drops the saved engine state of an event (the next start replays every ping).
    async fn delete_engine_checkpoint(&self, event_id: &str) -> Result<()>;

    /// Up to `limit` changes with `seq > after`, in `seq` (commit) order, each carrying its
    /// row (or, for pings, the rows of one write). Start from 0; the next page starts after the
    /// last one's `seq`.
    async fn changes_since(&self, after: i64, limit: usize) -> Result<Vec<Change>>;

    /// The `seq` of the newest committed change (0 before the first), updated after every
    /// commit: await `changed()` on it, then read [`Store::changes_since`] from the last `seq`
    /// seen. A write of this store is in it by the time the write returns; a write of another
    /// process or node arrives when the backend hears of it (SQLite: not at all, it has no
    /// notifications; PostgreSQL: not yet, `LISTEN` is still to come, so another node's write
    /// is found by the next read). A wake-up may cover several commits, so a reader
    /// always reads up to the end of the feed.
    fn subscribe(&self) -> watch::Receiver<i64>;

    /// Whether other servers write to this store too (several nodes on one PostgreSQL): each
    /// server then follows the change feed to learn what the others committed. SQLite: no, one
    /// server owns its file.
    fn shared(&self) -> bool {
        false
    }
}

/// The saved state of an event's live engine: derived data, valid only for the plan version
/// and hash and the format it names; every ping of the event with `seq <= cursor` is in it.
#[derive(Clone, PartialEq, Eq)]
pub struct EngineCheckpoint {
    pub event_id: String,
    pub plan_version: i64,
    pub plan_hash: String,
    pub format: u32,
    pub cursor: i64,
    pub created_at: Timestamp,
    pub state: Vec<u8>,
}

// Megabytes of state are of no use in a log.
impl fmt::Debug for EngineCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineCheckpoint")
            .field("event_id", &self.event_id)
            .field("plan_version", &self.plan_version)
            .field("plan_hash", &self.plan_hash)
            .field("format", &self.format)
            .field("cursor", &self.cursor)
            .field("created_at", &self.created_at)
            .field("state_bytes", &self.state.len())
            .finish()
    }
}

/// One version of an event's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub event_id: String,
    /// 1 for the first plan of an event, then one more per [`Store::put_plan`].
    pub version: i64,
    pub plan_json: String,
    pub plan_hash: String,
    pub created_at: Timestamp,
}

/// A device to register. The token itself never reaches the store, only its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub event_id: String,
    pub device_id: String,
    pub carrier: String,
    /// The relay the carrier carries in, when the name alone does not say (race mode).
    pub relay_id: Option<String>,
    /// SHA-256 of the device token, lowercase hex.
    pub token_hash: String,
    /// The unit of its OsmAnd-form `speed`, when the operator knows it (`None`: detected).
    pub speed_unit: Option<SpeedUnit>,
    /// When it was registered (the caller's clock).
    pub created_at: Timestamp,
}

/// A registered device.
#[derive(Clone, PartialEq, Eq)]
pub struct Device {
    pub event_id: String,
    pub device_id: String,
    pub carrier: String,
    /// The relay the carrier carries in, when the name alone does not say (race mode).
    pub relay_id: Option<String>,
    /// SHA-256 of the device's current token, lowercase hex; `None` once revoked. Redacted in
    /// `Debug`. (In a copy's [`copy::Rows::Devices`], the token it was registered with.)
    pub token_hash: Option<String>,
    /// The unit of its OsmAnd-form `speed`, when the operator registered it (`None`: detected).
    pub speed_unit: Option<SpeedUnit>,
    pub created_at: Timestamp,
    /// When its current token was issued (or revoked): `created_at` until it is changed.
    pub token_at: Timestamp,
}

/// A change of a device's token after its registration ([`Store::set_device_token`]), as
/// stored: in `seq` order, the last one per device is in force.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken {
    pub seq: i64,
    pub event_id: String,
    pub device_id: String,
    /// SHA-256 of the new token; `None`: revoked. Redacted in `Debug`.
    pub token_hash: Option<String>,
    pub created_at: Timestamp,
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceToken")
            .field("seq", &self.seq)
            .field("event_id", &self.event_id)
            .field("device_id", &self.device_id)
            .field("revoked", &self.token_hash.is_none())
            .field("created_at", &self.created_at)
            .finish()
    }
}

// A token hash is not the token, but it is a lookup key for one: keep it out of logs.
impl fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDevice")
            .field("event_id", &self.event_id)
            .field("device_id", &self.device_id)
            .field("carrier", &self.carrier)
            .field("relay_id", &self.relay_id)
            .field("token_hash", &"<redacted>")
            .field("speed_unit", &self.speed_unit)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("event_id", &self.event_id)
            .field("device_id", &self.device_id)
            .field("carrier", &self.carrier)
            .field("relay_id", &self.relay_id)
            .field(
                "token_hash",
                &self.token_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("speed_unit", &self.speed_unit)
            .field("created_at", &self.created_at)
            .field("token_at", &self.token_at)
            .finish()
    }
}

/// A ping to store, with who sent it and when the server received it.
///
/// Times are kept to the microsecond: two pings of one device less than 1 µs apart are the
/// same ping.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPing {
    pub event_id: String,
    pub device_id: String,
    pub ping: Ping,
    pub received_at: Timestamp,
}

/// What became of one ping of an [`Store::insert_pings`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now, under this sequence number (increasing in arrival order).
    New { seq: i64 },
    /// Already stored (same event, device and device time): nothing written.
    Duplicate,
}

/// A stored ping.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPing {
    /// Arrival order across the whole store.
    pub seq: i64,
    pub event_id: String,
    pub device_id: String,
    pub ping: Ping,
    pub received_at: Timestamp,
}

impl StoredPing {
    /// Its place in the event's device-time order ([`Store::pings_by_time`]).
    #[must_use]
    pub fn key(&self) -> PingKey {
        PingKey {
            t: self.ping.t,
            seq: self.seq,
        }
    }
}

/// A place in an event's device-time order of pings: device time, then arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PingKey {
    pub t: Timestamp,
    pub seq: i64,
}

/// An entry to append to a relay's custody log ([`Store::append_custody`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustody {
    pub relay_id: String,
    pub entry_json: String,
    pub hash: String,
    pub prev_hash: String,
}

/// One entry of a relay's custody log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCustody {
    /// Append order across the whole store (so also the chain order within one relay).
    pub seq: i64,
    pub event_id: String,
    pub relay_id: String,
    pub entry_json: String,
    pub hash: String,
    pub prev_hash: String,
    pub created_at: Timestamp,
}

/// A webhook to register: where to POST, the secret that signs each body, and the kinds of
/// notification wanted (empty: all).
#[derive(Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub event_id: String,
    pub webhook_id: String,
    /// An `http://` or `https://` URL, checked by the caller.
    pub url: String,
    /// The HMAC key. Kept as given (signing needs it); redacted in `Debug`.
    pub secret: String,
    /// `handoff`, `overdue`, `off_route`, `silent`; empty means every kind. Each one non-empty
    /// and without a comma ([`StoreError::Invalid`] otherwise).
    pub kinds: Vec<String>,
    /// When it was registered (the caller's clock).
    pub created_at: Timestamp,
}

/// A registered webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub event_id: String,
    pub webhook_id: String,
    pub url: String,
    /// The HMAC key. Redacted in `Debug`.
    pub secret: String,
    /// Empty means every kind.
    pub kinds: Vec<String>,
    pub created_at: Timestamp,
}

impl Webhook {
    /// Whether this webhook wants notifications of `kind`.
    #[must_use]
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind)
    }
}

// The secret signs every delivery: whoever reads it can forge them.
impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhook")
            .field("event_id", &self.event_id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("kinds", &self.kinds)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("event_id", &self.event_id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("kinds", &self.kinds)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One attempt at delivering a notification to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub event_id: String,
    pub webhook_id: String,
    /// The same for every attempt at one notification (the `X-Handoff-Delivery` header).
    pub delivery_id: String,
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status the receiver answered, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed (a network error, or a status that is not 2xx).
    pub error: Option<String>,
    pub at: Timestamp,
}

/// A logged delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Append order across the whole store.
    pub seq: i64,
    pub event_id: String,
    pub webhook_id: String,
    pub delivery_id: String,
    pub kind: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: Timestamp,
}

impl Delivery {
    /// The receiver answered 2xx.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The step a giver's one-time code is issued for: one relay's handoff from one leg.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodeStep {
    pub event_id: String,
    pub relay_id: String,
    pub from_leg: u32,
}

/// A giver's one-time handoff code as the store keeps it: hashed (by the caller), with the
/// giver's device, its expiry and the wrong attempts counted so far.
#[derive(Clone, PartialEq, Eq)]
pub struct HandoffCode {
    pub step: CodeStep,
    /// A hash of the code (computed by the caller). Redacted in `Debug`.
    pub code_hash: String,
    /// The giver's device.
    pub device_id: String,
    /// How many entries the relay's custody log had when the code was issued: an entry for
    /// the step at or after that position spends the code.
    pub chain_len: u64,
    pub expires_at: Timestamp,
    /// Wrong attempts so far (0 when stored by [`Store::put_handoff_code`]).
    pub attempts: u32,
    pub created_at: Timestamp,
}

// Six digits behind a hash are quickly found again by trying them all: keep them out of logs.
impl fmt::Debug for HandoffCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffCode")
            .field("step", &self.step)
            .field("code_hash", &"<redacted>")
            .field("device_id", &self.device_id)
            .field("chain_len", &self.chain_len)
            .field("expires_at", &self.expires_at)
            .field("attempts", &self.attempts)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A notification to queue in the webhook outbox ([`Store::enqueue_notifications`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub event_id: String,
    pub webhook_id: String,
    /// What makes it one notification: every server derives the same key from the same fact
    /// (`handoff:{relay}:{seq}`, `overdue:{relay}:{leg}:{instant}`).
    pub key: String,
    /// The `X-Handoff-Delivery` id, the same on every attempt (the first server's, when
    /// several queue it).
    pub delivery_id: String,
    pub kind: String,
    /// The body every attempt POSTs (JSON text), signed at each attempt.
    pub body: String,
    /// When it was queued; it is due at once.
    pub created_at: Timestamp,
}

/// A queued notification claimed for an attempt ([`Store::claim_notifications`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedNotification {
    /// Its place in the outbox, for [`Store::settle_notification`].
    pub seq: i64,
    pub event_id: String,
    pub webhook_id: String,
    pub key: String,
    pub delivery_id: String,
    pub kind: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The webhook's URL and HMAC key (redacted in `Debug`).
    pub url: String,
    pub secret: String,
}

impl fmt::Debug for ClaimedNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedNotification")
            .field("seq", &self.seq)
            .field("event_id", &self.event_id)
            .field("webhook_id", &self.webhook_id)
            .field("key", &self.key)
            .field("delivery_id", &self.delivery_id)
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A notification in the outbox, as [`Store::notifications`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotification {
    pub seq: i64,
    pub event_id: String,
    pub webhook_id: String,
    pub key: String,
    pub delivery_id: String,
    pub kind: String,
    pub attempts: u32,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_at: Option<Timestamp>,
    /// Until when a server holds it for an attempt, if one does.
    pub claimed_until: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// One entry of the change feed ([`Store::changes_since`]): an input, numbered in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The position in the feed: increasing in commit order, across all events and kinds.
    pub seq: i64,
    /// The row the input stored.
    pub row: ChangeRow,
}

/// The row of a [`Change`]: one of the inputs live state is a fold over. A shift or a
/// correction is a custody entry (its `entry_json` says which kind).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeRow {
    Plan(StoredPlan),
    Device(Device),
    /// The pings of one event that one write stored (one [`Store::insert_pings`] call, so at
    /// most a request's worth), in `seq` order; never empty.
    Pings(Vec<StoredPing>),
    Custody(StoredCustody),
    Webhook(Webhook),
}

/// What kind of input a [`Change`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Plan,
    Device,
    Ping,
    Custody,
    Webhook,
}

impl ChangeKind {
    /// The name a backend may store it under: `plan`, `device`, `ping`, `custody`, `webhook`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Plan => "plan",
            ChangeKind::Device => "device",
            ChangeKind::Ping => "ping",
            ChangeKind::Custody => "custody",
            ChangeKind::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = StoreError;

    fn from_str(name: &str) -> Result<ChangeKind> {
        [
            ChangeKind::Plan,
            ChangeKind::Device,
            ChangeKind::Ping,
            ChangeKind::Custody,
            ChangeKind::Webhook,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or_else(|| StoreError::Invalid(format!("'{name}' is not a kind of change")))
    }
}

impl Change {
    /// The kind of input.
    #[must_use]
    pub fn kind(&self) -> ChangeKind {
        match &self.row {
            ChangeRow::Plan(_) => ChangeKind::Plan,
            ChangeRow::Device(_) => ChangeKind::Device,
            ChangeRow::Pings(_) => ChangeKind::Ping,
            ChangeRow::Custody(_) => ChangeKind::Custody,
            ChangeRow::Webhook(_) => ChangeKind::Webhook,
        }
    }

    /// The event the input belongs to.
    #[must_use]
    pub fn event_id(&self) -> &str {
        match &self.row {
            ChangeRow::Plan(p) => &p.event_id,
            ChangeRow::Device(d) => &d.event_id,
            ChangeRow::Pings(p) => p.first().map_or("", |p| &p.event_id),
            ChangeRow::Custody(c) => &c.event_id,
            ChangeRow::Webhook(w) => &w.event_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_kinds_round_trip_through_their_names() {
        for kind in [
            ChangeKind::Plan,
            ChangeKind::Device,
            ChangeKind::Ping,
            ChangeKind::Custody,
            ChangeKind::Webhook,
        ] {
            assert_eq!(kind.as_str().parse::<ChangeKind>().ok(), Some(kind));
        }
        assert!(matches!(
            "shift".parse::<ChangeKind>(),
            Err(StoreError::Invalid(m)) if m.contains("shift")
        ));
    }
}
