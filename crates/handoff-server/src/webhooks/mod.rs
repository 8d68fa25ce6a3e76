//! Outgoing webhooks: an event's organisers register URLs, and every verified handoff and every
//! alert (`overdue`, `off_route`, `silent`) as it rises is POSTed to each webhook subscribed to
//! its kind. The one idea: a notification never waits on, nor fails, the thing it reports. The
//! handoff is already committed and streamed when [`notify`] runs; delivery happens in its own
//! task, is retried with exponential backoff, and every attempt lands in the store's delivery
//! log, so an organiser can see what their receiver was sent and what it answered.
//!
//! Each delivery is `POST url` with the JSON body `{"kind","event","delivery","payload"}` and
//! the headers `X-Handoff-Event: <kind>`, `X-Handoff-Delivery: <id>` (the same on every retry,
//! so a receiver can drop duplicates) and `X-Handoff-Signature: sha256=<hex>`, the HMAC-SHA256
//! of the raw body under the webhook's secret (check it before trusting the body, with a
//! constant-time comparison).
//!
//! The HTTP client is built without TLS (`reqwest` with default features off): deliveries to
//! `https://` URLs fail, with that reason in the log. Put a TLS-terminating proxy on an
//! `http://` URL, or enable a TLS feature of `reqwest`, to reach an `https://` receiver.
//!
//! Webhooks are cached per event in memory: loaded when the event's plan is installed, updated
//! when one is added through this node.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use handoff_core::custody::{Entry, Kind};
use handoff_store::{NewDelivery, Store, Webhook};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::{AppState, Clock};
use crate::engine::EventLive;

/// The kinds of notification a webhook may subscribe to.
pub const KINDS: [&str; 4] = ["handoff", "overdue", "off_route", "silent"];
/// Attempts per notification: the first, then retries after 1, 2, 4 and 8 × the base delay.
pub const ATTEMPTS: u32 = 5;
/// The base delay between attempts when none is set.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// How long one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhooks of every event (a cache of the store's table), and the client that calls them.
pub struct Webhooks {
    client: reqwest::Client,
    /// Whether targets on loopback, link-local and private addresses are allowed (off: a
    /// webhook must not reach into the server's own network).
    private_ok: Arc<AtomicBool>,
    backoff_ms: AtomicU64,
    by_event: RwLock<HashMap<String, Vec<Arc<Webhook>>>>,
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
            .dns_resolver(Guard {
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

    /// Sets the base delay between attempts (tests use a few milliseconds).
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

/// Sends `payload` as a `kind` notification to every webhook of the event subscribed to it,
/// each in its own task. Returns at once.
pub fn notify(state: &AppState, live: &EventLive, kind: &str, payload: &Value) {
    let event = &live.plan.event.id;
    let hooks = state.webhooks.subscribed(event, kind);
    if hooks.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        eprintln!(
            "handoff: webhooks: no async runtime to deliver a `{kind}` notification of {event}"
        );
        return;
    };
    for hook in hooks {
        let delivery_id = match delivery_id() {
            Ok(id) => id,
            Err(e) => {
                eprintln!("handoff: webhooks: no randomness for a delivery id: {e}");
                return;
            }
        };
        let body =
            json!({ "kind": kind, "event": event, "delivery": delivery_id, "payload": payload });
        let delivery = Delivery {
            hook,
            kind: kind.to_owned(),
            delivery_id,
            body: body.to_string().into_bytes(),
        };
        let ctx = Context {
            store: Arc::clone(&state.store),
            client: state.webhooks.client.clone(),
            private_ok: Arc::clone(&state.webhooks.private_ok),
            clock: Arc::clone(&state.clock),
            backoff: state.webhooks.backoff(),
            closing: state.closing.subscribe(),
        };
        runtime.spawn(deliver(ctx, delivery));
    }
}

/// Notifies `handoff` webhooks of a custody entry just stored: a handoff, or a correction of
/// one (with the entry, so a receiver sees which). Other entries are not notified.
pub fn notify_custody(state: &AppState, live: &EventLive, relay: &str, entry: &Entry) {
    if matches!(entry.kind, Kind::Handoff | Kind::Correction) {
        notify(
            state,
            live,
            "handoff",
            &json!({ "relay": relay, "entry": entry }),
        );
    }
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

/// What one delivery task needs from the server.
struct Context {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    private_ok: Arc<AtomicBool>,
    clock: Clock,
    backoff: Duration,
    /// Retries stop when the server shuts down.
    closing: tokio::sync::watch::Receiver<bool>,
}

/// One notification to one webhook.
struct Delivery {
    hook: Arc<Webhook>,
    kind: String,
    delivery_id: String,
    body: Vec<u8>,
}

/// Attempts a delivery up to [`ATTEMPTS`] times, logging each attempt.
async fn deliver(mut ctx: Context, d: Delivery) {
    let signature = signature(&d.hook.secret, &d.body);
    for attempt in 1..=ATTEMPTS {
        let (status, error) = tokio::select! {
            outcome = attempt_once(&ctx.client, &ctx.private_ok, &d, &signature) => outcome,
            () = closed(&mut ctx.closing) => return,
        };
        let delivered = error.is_none();
        let logged = ctx
            .store
            .log_delivery(NewDelivery {
                event_id: d.hook.event_id.clone(),
                webhook_id: d.hook.webhook_id.clone(),
                delivery_id: d.delivery_id.clone(),
                kind: d.kind.clone(),
                attempt,
                status,
                error,
                at: (ctx.clock)(),
            })
            .await;
        if let Err(e) = logged {
            eprintln!(
                "handoff: webhooks: could not log attempt {attempt} of delivery {}: {e}",
                d.delivery_id
            );
        }
        if delivered || attempt == ATTEMPTS {
            return;
        }
        let wait = ctx.backoff.saturating_mul(1 << (attempt - 1));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = closed(&mut ctx.closing) => return,
        }
    }
}

/// Resolves once the server is shutting down.
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone: the server has stopped.
    let _ = closing.wait_for(|c| *c).await;
}

/// One POST: the receiver's status, and why the attempt failed (`None` when it answered 2xx).
async fn attempt_once(
    client: &reqwest::Client,
    private_ok: &AtomicBool,
    d: &Delivery,
    signature: &str,
) -> (Option<u16>, Option<String>) {
    // An address in the URL is not resolved, so the guard on names does not see it.
    if let Some(ip) = literal_ip(&d.hook.url)
        && !(private_ok.load(Ordering::Relaxed) || public_address(ip))
    {
        return (
            None,
            Some(format!(
                "{ip} is a loopback, link-local or private address: not called (handoff serve --allow-private-webhooks allows it)"
            )),
        );
    }
    let sent = client
        .post(&d.hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Handoff-Event", &d.kind)
        .header("X-Handoff-Delivery", &d.delivery_id)
        .header("X-Handoff-Signature", signature)
        .body(d.body.clone())
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
        Ok(resp) => (
            Some(resp.status().as_u16()),
            Some(format!("the receiver answered {}", resp.status())),
        ),
        // Without the URL: it may carry credentials, and the log shows the webhook anyway.
        Err(e) => (None, Some(error_chain(&e.without_url()))),
    }
}

/// An error and its causes, as one line ("connection refused" is usually a cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
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

/// The address a URL names literally, if it does (`http://10.0.0.1/…`, `http://[::1]/…`).
#[must_use]
pub fn literal_ip(url: &str) -> Option<IpAddr> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local (cloud metadata services live there), shared (CGNAT), unspecified,
/// multicast or broadcast, nor an IPv4 one of those in IPv6 clothing.
#[must_use]
pub fn public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || x == 0
                || (x == 100 && (64..128).contains(&y)))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return public_address(IpAddr::V4(v4));
            }
            let first = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves webhook hosts and keeps only the addresses a webhook may call, at the moment of
/// the call (a name that resolved to a public address when registered may not later point
/// inside).
struct Guard {
    private_ok: Arc<AtomicBool>,
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let private_ok = self.private_ok.load(Ordering::Relaxed);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| private_ok || public_address(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, link-local or private addresses: not called"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod ssrf_tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_called() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!public_address(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(public_address(public.parse().unwrap()), "{public}");
        }
        assert_eq!(
            literal_ip("http://[::1]:8080/x"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(literal_ip("https://example.org/x"), None);
    }
}
