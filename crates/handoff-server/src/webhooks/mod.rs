//! Outgoing webhooks: an event's organisers register URLs, and every verified handoff and every
//! alert (`overdue`, `off_route`, `silent`) as it rises is POSTed to each webhook subscribed to
//! its kind. The one idea: a notification is a row in the store's outbox, queued once per
//! webhook and fact by whichever server learns of the fact, and delivered by whichever
//! server's worker ([`worker`]) claims it; so several servers on one database send each
//! notification once, and a server that stops mid-retry leaves the retry to another server, or
//! to its own next start. A notification never waits on, nor fails, the thing it reports: the
//! handoff is committed and streamed before it is queued, and every attempt lands in the
//! store's delivery log, so an organiser can see what their receiver was sent and what it
//! answered.
//!
//! **Once per fact.** The outbox keeps one row per `(event, webhook, key)`, and every server
//! derives the same key from the same fact: `handoff:{relay}:{n}` for the custody entry at
//! position `n` of the relay's log (a handoff, or a correction of one), and
//! `{kind}:{relay}:{leg}:{ms}` for an alert, `ms` being the instant the alert rose as the
//! engine's fold computes it from the inputs ([`handoff_core::track::Flags`]: the leg's due
//! time, the first ping off the route, the last fix plus the silence allowed), not the moment a
//! server's clock noticed. The node that appends a custody entry queues it in the same task
//! that commits it (before the `201`), and every node following the feed queues it again (a
//! no-op, unless the first died in between); every server, when it starts, queues again the
//! entries of the last few minutes ([`requeue_custody`]: a no-op, unless it stopped between the
//! commit and the queueing, which on one node no one else would mend); each node raises alerts
//! from its own engine.
//!
//! Each delivery is `POST url` with the JSON body `{"kind","event","delivery","payload"}` and
//! the headers `X-Handoff-Event: <kind>`, `X-Handoff-Delivery: <id>` (the same on every retry,
//! from any server, so a receiver can drop duplicates) and `X-Handoff-Signature:
//! sha256=<hex>`, the HMAC-SHA256 of the raw body under the webhook's secret (check it before
//! trusting the body, with a constant-time comparison).
//!
//! The HTTP client is built without TLS (`reqwest` with default features off): deliveries to
//! `https://` URLs fail, with that reason in the log. Put a TLS-terminating proxy on an
//! `http://` URL, or enable a TLS feature of `reqwest`, to reach an `https://` receiver.
//!
//! Which webhooks a fact goes to is read from a cache per event: loaded when the event's plan
//! is installed, updated when one is added through this node, and reloaded when the change feed
//! brings one another node added ([`crate::follow`]).

mod guard;
pub mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use handoff_core::custody::{Entry, Kind};
use handoff_store::{NewNotification, Webhook};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::AppState;
use crate::engine::Alert;
pub use guard::{literal_ip, public_address};

/// The kinds of notification a webhook may subscribe to.
pub const KINDS: [&str; 4] = ["handoff", "overdue", "off_route", "silent"];
/// Attempts per notification: the first, then retries after 1, 2, 4 and 8 × the base delay.
pub const ATTEMPTS: u32 = 5;
/// The base delay between attempts when none is set.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// How long one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhooks of every event (a cache of the store's table), the client that calls them, and
/// the wake-up of this server's delivery worker.
pub struct Webhooks {
    client: reqwest::Client,
    /// Whether targets on loopback, link-local and private addresses are allowed (off: a
    /// webhook must not reach into the server's own network).
    private_ok: Arc<AtomicBool>,
    backoff_ms: AtomicU64,
    by_event: RwLock<HashMap<String, Vec<Arc<Webhook>>>>,
    /// Rung when this server queues a notification: its worker claims it at once.
    queued: tokio::sync::Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("backoff", &self.backoff())
            .finish_non_exhaustive()
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhooks {
    #[must_use]
    pub fn new() -> Self {
        let private_ok = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .dns_resolver(guard::Guard {
                private_ok: Arc::clone(&private_ok),
            })
            .user_agent(concat!("handoff/", env!("CARGO_PKG_VERSION")))
            // A receiver that redirects is misconfigured: say so in the log rather than follow
            // a POST somewhere the organiser did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            private_ok,
            backoff_ms: AtomicU64::new(
                u64::try_from(DEFAULT_BACKOFF.as_millis()).unwrap_or(u64::MAX),
            ),
            by_event: RwLock::new(HashMap::new()),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// Allows webhook targets on loopback, link-local and private addresses (`handoff serve
    /// --allow-private-webhooks`; tests, whose receivers listen on 127.0.0.1).
    pub fn allow_private_targets(&self, allow: bool) {
        self.private_ok.store(allow, Ordering::Relaxed);
    }

    /// Whether a target address may be called.
    #[must_use]
    pub fn may_call(&self, ip: IpAddr) -> bool {
        self.private_ok.load(Ordering::Relaxed) || public_address(ip)
    }

    /// The base delay between attempts (doubled after each failed one).
    #[must_use]
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms.load(Ordering::Relaxed))
    }

    /// Sets the base delay between attempts (tests use a few milliseconds). It applies to the
    /// attempts this server makes.
    pub fn set_backoff(&self, base: Duration) {
        self.backoff_ms.store(
            u64::try_from(base.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Replaces the cached webhooks of an event (at install, from the store).
    pub fn load(&self, event_id: &str, hooks: Vec<Webhook>) {
        self.by_event
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                event_id.to_owned(),
                hooks.into_iter().map(Arc::new).collect(),
            );
    }

    /// Caches a webhook just stored.
    pub fn add(&self, hook: Webhook) {
        self.by_event
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hook.event_id.clone())
            .or_default()
            .push(Arc::new(hook));
    }

    /// The webhooks of an event subscribed to `kind`.
    #[must_use]
    pub fn subscribed(&self, event_id: &str, kind: &str) -> Vec<Arc<Webhook>> {
        self.by_event
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_id)
            .map(|hooks| hooks.iter().filter(|h| h.wants(kind)).cloned().collect())
            .unwrap_or_default()
    }
}

/// The outbox rows of `payload` as a `kind` notification of `event` known by `key`, one for
/// each of `hooks`; `None` (logged) without randomness for their delivery ids.
fn notifications<'a>(
    hooks: impl IntoIterator<Item = &'a Arc<Webhook>>,
    event: &str,
    kind: &str,
    key: &str,
    payload: &Value,
) -> Option<Vec<NewNotification>> {
    let created_at = worker::wall_clock();
    let mut rows = Vec::new();
    for hook in hooks {
        let delivery_id = match delivery_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(
                    event,
                    kind,
                    "webhooks: no randomness for a delivery id: {e}"
                );
                return None;
            }
        };
        let body =
            json!({ "kind": kind, "event": event, "delivery": delivery_id, "payload": payload });
        rows.push(NewNotification {
            event_id: event.to_owned(),
            webhook_id: hook.webhook_id.clone(),
            key: key.to_owned(),
            delivery_id,
            kind: kind.to_owned(),
            body: body.to_string(),
            created_at,
        });
    }
    Some(rows)
}

/// Queues `rows` and wakes this server's worker if any was new (a failure is logged: the
/// fact itself is stored either way).
async fn queue(state: &AppState, event: &str, what: &str, rows: Vec<NewNotification>) {
    if rows.is_empty() {
        return;
    }
    match state.store.enqueue_notifications(rows).await {
        Ok(0) => {} // another server queued it first
        Ok(_) => state.webhooks.queued.notify_one(),
        Err(e) => tracing::error!(event, what, "webhooks: queueing a notification: {e}"),
    }
}

/// Queues `payload` as a `kind` notification of `event`, known by `key` (see the module note),
/// for every webhook of the event subscribed to it, and wakes this server's worker. Returns
/// once the outbox has them (a failure is logged: the fact itself is stored either way).
pub async fn enqueue(state: &AppState, event: &str, kind: &str, key: &str, payload: &Value) {
    let hooks = state.webhooks.subscribed(event, kind);
    if hooks.is_empty() {
        return;
    }
    if let Some(rows) = notifications(&hooks, event, kind, key, payload) {
        queue(state, event, key, rows).await;
    }
}

/// The key and payload of a custody entry's `handoff` notification, if it has one: a handoff,
/// or a correction of one (with the entry, so a receiver sees which). Other entries are not
/// notified.
fn custody_notification(relay: &str, entry: &Entry) -> Option<(String, Value)> {
    matches!(entry.kind, Kind::Handoff | Kind::Correction).then(|| {
        (
            format!("handoff:{relay}:{}", entry.seq),
            json!({ "relay": relay, "entry": entry }),
        )
    })
}

/// Rows per store write when queueing again after a start.
const REQUEUE_ROWS: usize = 500;
/// How far back, by the server's clock, a start looks for entries whose notification may
/// never have been queued: a restart after a crash takes seconds. Older entries are left
/// alone, so that a database copied without its outbox (`handoff migrate`) does not send its
/// whole history again.
const REQUEUE_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Queues again, at a server's start, the `handoff` notification of every custody entry each
/// webhook would have been sent: those recorded since the webhook was registered. The outbox
/// keeps a row for every notification, delivered or not, and ignores a key it has, so this adds
/// only the ones whose entry was committed but never queued: a server that stopped between the
/// two writes (on one node, no other node follows the feed to queue them). Entries recorded
/// before a webhook existed are never sent to it, nor those older than [`REQUEUE_WINDOW`].
pub async fn requeue_custody(state: &AppState) {
    let since = state
        .now()
        .checked_sub(REQUEUE_WINDOW)
        .unwrap_or(jiff::Timestamp::MIN);
    for live in state.events() {
        let event = &live.plan.event.id;
        let hooks = state.webhooks.subscribed(event, "handoff");
        let Some(oldest) = hooks.iter().map(|h| h.created_at).min() else {
            continue;
        };
        let oldest = oldest.max(since);
        let entries: Vec<(String, Entry)> = {
            let chains = live.chains.lock().await;
            chains
                .iter()
                .flat_map(|(relay, chain)| {
                    chain
                        .entries
                        .iter()
                        .filter(|e| e.recorded_at >= oldest)
                        .map(move |e| (relay.clone(), e.clone()))
                })
                .collect()
        };
        let mut rows = Vec::new();
        for (relay, entry) in &entries {
            let Some((key, payload)) = custody_notification(relay, entry) else {
                continue;
            };
            let since = hooks.iter().filter(|h| entry.recorded_at >= h.created_at);
            let Some(more) = notifications(since, event, "handoff", &key, &payload) else {
                return;
            };
            rows.extend(more);
            if rows.len() >= REQUEUE_ROWS {
                queue(state, event, "handoff", std::mem::take(&mut rows)).await;
            }
        }
        queue(state, event, "handoff", rows).await;
    }
}

/// Queues `handoff` notifications of a custody entry stored in `relay`'s log: a handoff, or a
/// correction of one (with the entry, so a receiver sees which). Other entries are not
/// notified.
pub async fn enqueue_custody(state: &AppState, event: &str, relay: &str, entry: &Entry) {
    if let Some((key, payload)) = custody_notification(relay, entry) {
        enqueue(state, event, "handoff", &key, &payload).await;
    }
}

/// Queues the notifications of an alert that rose.
pub async fn enqueue_alert(state: &AppState, alert: &Alert) {
    let Ok(payload) = serde_json::to_value(alert) else {
        return;
    };
    enqueue(state, &alert.event, alert.kind, &alert_key(alert), &payload).await;
}

/// The key of an alert: its kind, relay, leg and the instant it rose (milliseconds).
fn alert_key(alert: &Alert) -> String {
    let leg = alert.leg.map_or_else(|| "-".to_owned(), |l| l.to_string());
    let since = alert
        .since
        .map_or_else(|| "-".to_owned(), |t| t.as_millisecond().to_string());
    format!("{}:{}:{leg}:{since}", alert.kind, alert.relay)
}

/// HMAC-SHA256 of `body` under `secret`, as the `X-Handoff-Signature` header carries it.
#[must_use]
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A random id in the shape of a UUID (version 4).
fn delivery_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn delivery_ids_look_like_version_4_uuids_and_differ() {
        let a = delivery_id().expect("randomness");
        let b = delivery_id().expect("randomness");
        assert_ne!(a, b);
        let lengths: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn an_alert_is_known_by_its_kind_relay_leg_and_the_instant_it_rose() {
        let t = |s: i64| jiff::Timestamp::from_second(1_723_410_000 + s).expect("an instant");
        let alert = |leg: Option<usize>, since: i64, at: i64| Alert {
            kind: "silent",
            event: "paris".into(),
            relay: "flag".into(),
            leg,
            holders: vec!["Marie-José Pérec".into()],
            at: t(at),
            since: Some(t(since)),
        };
        // Two servers noticing the same silence at different moments: one key.
        assert_eq!(
            alert_key(&alert(Some(1), 300, 301)),
            alert_key(&alert(Some(1), 300, 302))
        );
        assert_eq!(
            alert_key(&alert(Some(1), 300, 301)),
            "silent:flag:1:1723410300000"
        );
        // Another silence, or the same on another leg: another notification.
        assert_ne!(
            alert_key(&alert(Some(1), 300, 301)),
            alert_key(&alert(Some(1), 400, 401))
        );
        assert_ne!(
            alert_key(&alert(Some(1), 300, 301)),
            alert_key(&alert(Some(2), 300, 301))
        );
    }

    #[test]
    fn subscriptions_follow_the_kinds() {
        let hooks = Webhooks::new();
        let hook = |id: &str, kinds: &[&str]| Webhook {
            event_id: "e".into(),
            webhook_id: id.into(),
            url: "http://127.0.0.1:1/".into(),
            secret: "0123456789abcdef".into(),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
        };
        hooks.load("e", vec![hook("all", &[])]);
        hooks.add(hook("alerts", &["overdue", "silent"]));
        let ids = |kind: &str| -> Vec<String> {
            hooks
                .subscribed("e", kind)
                .iter()
                .map(|h| h.webhook_id.clone())
                .collect()
        };
        assert_eq!(ids("handoff"), ["all"]);
        assert_eq!(ids("silent"), ["all", "alerts"]);
        assert!(hooks.subscribed("other", "handoff").is_empty());
    }
}
