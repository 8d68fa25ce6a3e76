//! Outgoing webhooks, end to end: a receiver on `127.0.0.1` (a tiny axum server in the test)
//! gets each verified handoff and each rising alert as a signed POST, checks the signature with
//! the secret the way a real receiver would, and can answer 500 to make the server retry. The
//! delivery log is read back over the admin API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::common::{Server, as_admin, at};

const EVENT: &str = "hooks";
pub(crate) const SECRET: &str = "a-long-random-webhook-secret";

/// A 2-minute stage at the Hôtel de Ville, then two short runs along the Rue de Rivoli.
const PLAN: &str = r#"
[event]
id = "hooks"
name = "Webhooks through Paris"
timezone = "Europe/Paris"

[[places]]
id = "hotel-de-ville"
name = "Hôtel de Ville"
at = [2.3522, 48.8566]
timezone = "Europe/Paris"

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
route = { points = [[2.3522, 48.8566], [2.3495, 48.8577], [2.3470, 48.8586]] }
duration = "2m"

[[relays.legs]]
carriers = ["Tony Estanguet"]
mode = "run"
route = { points = [[2.3470, 48.8586], [2.3441, 48.8597], [2.3412, 48.8607]] }
duration = "2m"
"#;

/// The path `/api/v1/events/hooks{rest}`.
fn hooks(rest: &str) -> String {
    format!("/api/v1/events/{EVENT}{rest}")
}

/// A server with the plan uploaded, its clock at `t`, retrying after 20, 40, 80 … ms, and
/// calling webhooks on loopback (where the test receivers listen).
async fn start(t: Timestamp) -> Result<Server> {
    let s = Server::with_plan(EVENT, PLAN, t).await?;
    s.state.webhooks.set_backoff(Duration::from_millis(20));
    s.state.webhooks.allow_private_targets(true);
    Ok(s)
}

/// Registers a webhook and returns its id.
async fn add_webhook(s: &Server, url: &str, kinds: &[&str]) -> Result<String> {
    let (status, body) = as_admin(
        s.http
            .post(s.url(&hooks("/webhooks")))
            .json(&json!({ "url": url, "secret": SECRET, "kinds": kinds })),
    )
    .await?;
    ensure!(
        status == StatusCode::CREATED,
        "POST webhook: {status} {body}"
    );
    Ok(body["id"].as_str().context("an id")?.to_owned())
}

/// The delivery log, newest first.
async fn deliveries(s: &Server) -> Result<Vec<Value>> {
    let (status, body) = as_admin(s.http.get(s.url(&hooks("/webhooks/deliveries")))).await?;
    ensure!(status == StatusCode::OK, "GET deliveries: {status} {body}");
    Ok(body["deliveries"].as_array().cloned().unwrap_or_default())
}

/// Waits (up to 5 s) until the log holds `n` attempts.
async fn wait_for_deliveries(s: &Server, n: usize) -> Result<Vec<Value>> {
    for _ in 0..250 {
        let log = deliveries(s).await?;
        if log.len() >= n {
            return Ok(log);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "the delivery log never reached {n} attempts: {:?}",
        deliveries(s).await?
    )
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) event: String,
    pub(crate) delivery: String,
    pub(crate) content_type: String,
    pub(crate) signature_ok: bool,
    pub(crate) body: Value,
}

/// The test's webhook receiver: it checks each signature with the secret, keeps what it got,
/// and answers 500 to the first `fail_first` requests, 200 after.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    _stop: oneshot::Sender<()>,
}

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: usize,
    seen: Arc<AtomicUsize>,
}

async fn receive(State(rx): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // What a receiver does: recompute the HMAC of the raw body, compare in constant time.
    let signature_ok = header("x-handoff-signature")
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|sig| {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
            mac.update(&body);
            mac.verify_slice(&sig).is_ok()
        });
    rx.got.lock().expect("lock").push(Received {
        event: header("x-handoff-event"),
        delivery: header("x-handoff-delivery"),
        content_type: header("content-type"),
        signature_ok,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if rx.seen.fetch_add(1, Ordering::SeqCst) < rx.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Result<Receiver> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(ReceiverState {
                got: Arc::clone(&got),
                fail_first,
                seen: Arc::new(AtomicUsize::new(0)),
            });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Receiver {
            url,
            got,
            _stop: stop,
        })
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits (up to 5 s) until the receiver has had `n` requests.
    pub(crate) async fn wait_for(&self, n: usize) -> Result<Vec<Received>> {
        for _ in 0..250 {
            let got = self.got();
            if got.len() >= n {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("the receiver never had {n} requests: {:?}", self.got())
    }
}

#[tokio::test]
async fn a_verified_handoff_reaches_the_webhook_signed() -> Result<()> {
    let rx = Receiver::start(0).await?;
    let s = start(at(60)).await?;
    let id = add_webhook(&s, &rx.url, &["handoff"]).await?;
    s.set_clock(at(121));
    let entry = s.handoff(EVENT, "flag").await?;

    let log = wait_for_deliveries(&s, 1).await?;
    let got = rx.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert!(r.signature_ok, "the signature checks out with the secret");
    assert_eq!(r.event, "handoff");
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.body["kind"], "handoff");
    assert_eq!(r.body["event"], EVENT);
    assert_eq!(r.body["delivery"], r.delivery.as_str());
    assert_eq!(r.body["payload"]["relay"], "flag");
    assert_eq!(r.body["payload"]["entry"]["hash"], entry["hash"]);
    assert_eq!(r.body["payload"]["entry"]["from"]["leg"], 0);
    assert_eq!(r.body["payload"]["entry"]["to"]["leg"], 1);

    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["webhook"], id.as_str());
    assert_eq!(log[0]["delivery"], r.delivery.as_str());
    assert_eq!(log[0]["kind"], "handoff");
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["ok"], true);
    assert_eq!(log[0]["error"], Value::Null);

    // The list shows the webhook, never its secret.
    let (status, body) = as_admin(s.http.get(s.url(&hooks("/webhooks")))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["webhooks"][0]["id"], id.as_str());
    assert_eq!(body["webhooks"][0]["url"], rx.url.as_str());
    assert_eq!(body["webhooks"][0]["kinds"], json!(["handoff"]));
    assert!(!body.to_string().contains(SECRET), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_failed_delivery_is_retried_and_each_attempt_logged() -> Result<()> {
    let rx = Receiver::start(1).await?;
    let s = start(at(60)).await?;
    add_webhook(&s, &rx.url, &[]).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;

    let log = wait_for_deliveries(&s, 2).await?;
    // Newest first: the retry, then the first attempt.
    let attempts: Vec<&Value> = log.iter().map(|d| &d["attempt"]).collect();
    assert_eq!(attempts, [&json!(2), &json!(1)], "{log:?}");
    assert_eq!(log[1]["status"], 500);
    assert_eq!(log[1]["ok"], false);
    assert!(
        log[1]["error"].as_str().is_some_and(|e| e.contains("500")),
        "{log:?}"
    );
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["ok"], true);
    assert_eq!(log[0]["delivery"], log[1]["delivery"], "one notification");
    // No third attempt after the success.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deliveries(&s).await?.len(), 2);

    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].delivery, got[1].delivery, "a retry keeps its id");
    assert_eq!(got[0].body, got[1].body, "and its body");
    assert!(got.iter().all(|r| r.signature_ok));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_receiver_gets_five_attempts_with_the_reason() -> Result<()> {
    // A port that was free a moment ago: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", closed.local_addr()?);
    drop(closed);
    let s = start(at(60)).await?;
    add_webhook(&s, &url, &["handoff"]).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;
    // 20 + 40 + 80 + 160 ms of backoff.
    let log = wait_for_deliveries(&s, 5).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let log_after = deliveries(&s).await?;
    assert_eq!(
        log_after.len(),
        5,
        "five attempts, then it gives up: {log_after:?}"
    );
    for (i, d) in log.iter().enumerate() {
        assert_eq!(d["attempt"], 5 - i, "{log:?}");
        assert_eq!(d["status"], Value::Null);
        assert!(
            d["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{log:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn alerts_reach_only_the_webhooks_subscribed_to_their_kind() -> Result<()> {
    let handoffs = Receiver::start(0).await?;
    let alerts = Receiver::start(0).await?;
    let s = start(at(60)).await?;
    add_webhook(&s, &handoffs.url, &["handoff"]).await?;
    add_webhook(&s, &alerts.url, &["overdue"]).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;
    wait_for_deliveries(&s, 1).await?;
    // The runner's 2-minute leg, 20 minutes on: overdue (and silent, which nobody wants).
    s.set_clock(at(121 + 20 * 60));
    s.state.tick().await;
    wait_for_deliveries(&s, 2).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let got = alerts.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].event, "overdue");
    assert!(got[0].signature_ok);
    let alert = &got[0].body["payload"];
    assert_eq!(alert["kind"], "overdue");
    assert_eq!(alert["relay"], "flag");
    assert_eq!(alert["leg"], 1);
    assert_eq!(alert["holders"], json!(["Marie-José Pérec"]));
    let kinds: Vec<String> = handoffs.got().iter().map(|r| r.event.clone()).collect();
    assert_eq!(kinds, ["handoff"], "the handoff webhook got no alert");
    // Still overdue a tick later: the alert rose once.
    s.state.tick().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(alerts.got().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_webhook_needs_the_admin_an_http_url_a_long_secret_and_known_kinds() -> Result<()> {
    let s = start(at(60)).await?;
    let post = |body: Value| s.http.post(s.url(&hooks("/webhooks"))).json(&body);
    for (body, field) in [
        (
            json!({ "url": "ftp://127.0.0.1/x", "secret": SECRET }),
            "url",
        ),
        (json!({ "url": "not a url", "secret": SECRET }), "url"),
        (json!({ "secret": SECRET }), "url"),
        (
            json!({ "url": "http://127.0.0.1:9/x", "secret": "short" }),
            "secret",
        ),
        (json!({ "url": "http://127.0.0.1:9/x" }), "secret"),
        (
            json!({ "url": "http://127.0.0.1:9/x", "secret": SECRET, "kinds": ["handoff", "lunch"] }),
            "kinds",
        ),
    ] {
        let (status, answer) = as_admin(post(body.clone())).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let anonymous = post(json!({ "url": "http://127.0.0.1:9/x", "secret": SECRET }))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    for path in ["/webhooks", "/webhooks/deliveries"] {
        let r = s.http.get(s.url(&hooks(path))).send().await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = as_admin(
        s.http
            .post(s.url("/api/v1/events/nowhere/webhooks"))
            .json(&json!({ "url": "http://127.0.0.1:9/x", "secret": SECRET })),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was registered by the refused requests.
    let (_, list) = as_admin(s.http.get(s.url(&hooks("/webhooks")))).await?;
    assert_eq!(list["webhooks"], json!([]));
    Ok(())
}

#[tokio::test]
async fn webhooks_survive_a_restart() -> Result<()> {
    let rx = Receiver::start(0).await?;
    let s = Server::start_at(at(60)).await?;
    s.state.put_plan(EVENT, PLAN.to_owned()).await?;
    s.state
        .store
        .add_webhook(handoff_store::NewWebhook {
            event_id: EVENT.to_owned(),
            webhook_id: "wh_stored".to_owned(),
            url: rx.url.clone(),
            secret: SECRET.to_owned(),
            kinds: vec!["handoff".to_owned()],
            created_at: s.state.now(),
        })
        .await?;
    let (dir, clock, _) = s.stop().await?;
    // A new server over the same file loads the webhook when it installs the event.
    clock.set(at(121));
    let s = Server::open(dir, clock).await?;
    let state = &s.state;
    assert_eq!(state.webhooks.subscribed(EVENT, "handoff").len(), 1);
    assert!(state.webhooks.subscribed(EVENT, "silent").is_empty());
    Ok(())
}

#[tokio::test]
async fn a_delivery_pending_at_shutdown_is_retried_after_a_restart() -> Result<()> {
    let rx = Receiver::start(1).await?;
    let s = start(at(60)).await?;
    // The retry falls due 2 s after the first attempt: after the server has stopped.
    s.state.webhooks.set_backoff(Duration::from_secs(2));
    add_webhook(&s, &rx.url, &["handoff"]).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;
    let first = wait_for_deliveries(&s, 1).await?;
    assert_eq!(first[0]["ok"], false, "{first:?}");
    let (dir, clock, _) = s.stop().await?;
    assert_eq!(rx.got().len(), 1, "no retry before the stop");

    let s = Server::open(dir, clock).await?;
    s.state.webhooks.allow_private_targets(true);
    // What the outbox kept across the restart: the notification, one attempt made, due again.
    let queued = s.state.store.notifications(EVENT, 100).await?;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].attempts, 1);
    assert!(queued[0].next_at.is_some(), "{queued:?}");
    assert_eq!(
        queued[0].delivery_id,
        first[0]["delivery"].as_str().unwrap_or_default()
    );
    // The new server's worker makes the retry: the same delivery, signed, delivered.
    let got = rx.wait_for(2).await?;
    let mut log = deliveries(&s).await?;
    for _ in 0..250 {
        if log.first().is_some_and(|d| d["ok"] == true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = deliveries(&s).await?;
    }
    assert_eq!(log[0]["ok"], true, "{log:?}");
    assert_eq!(log[0]["delivery"], first[0]["delivery"], "{log:?}");
    assert!(
        log[0]["attempt"].as_u64().is_some_and(|a| a >= 2),
        "{log:?}"
    );
    assert_eq!(got[1].delivery, got[0].delivery, "one notification");
    assert_eq!(got[1].body, got[0].body);
    assert!(got.iter().all(|r| r.signature_ok));
    let done = s.state.store.notifications(EVENT, 100).await?;
    assert_eq!(done[0].next_at, None, "delivered: done");
    Ok(())
}

#[tokio::test]
async fn a_handoff_committed_but_never_queued_is_queued_at_the_next_start() -> Result<()> {
    let rx = Receiver::start(0).await?;
    let s = start(at(60)).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;
    let (dir, clock, _) = s.stop().await?;
    // Written to the store while no server runs: a webhook registered before the handoff
    // (at 60 s) that nothing was queued for, as when a server stops between the commit and
    // the outbox insert; and one registered after it, which is not owed it. (With a server
    // running, a follower on PostgreSQL would load the first in time to queue it.)
    let hook = |id: &str, created_at| handoff_store::NewWebhook {
        event_id: EVENT.to_owned(),
        webhook_id: id.to_owned(),
        url: rx.url.clone(),
        secret: SECRET.to_owned(),
        kinds: vec!["handoff".to_owned()],
        created_at,
    };
    let store = dir.store().await?;
    store.add_webhook(hook("wh_before", at(60))).await?;
    store.add_webhook(hook("wh_after", at(130))).await?;
    assert!(store.notifications(EVENT, 100).await?.is_empty());
    drop(store);
    assert!(rx.got().is_empty());

    let s = Server::open(dir, clock).await?;
    s.state.webhooks.allow_private_targets(true);
    let got = rx.wait_for(1).await?;
    assert_eq!(got[0].event, "handoff");
    assert_eq!(
        got[0].body["payload"]["entry"]["kind"], "handoff",
        "{:?}",
        got[0].body
    );
    assert!(got[0].signature_ok);
    let queued = s.state.store.notifications(EVENT, 100).await?;
    let owed: Vec<&str> = queued.iter().map(|n| n.webhook_id.as_str()).collect();
    assert_eq!(owed, ["wh_before"], "{queued:?}");
    Ok(())
}

#[tokio::test]
async fn a_webhook_cannot_reach_into_the_servers_own_network() -> Result<()> {
    let rx = Receiver::start(0).await?;
    let s = Server::with_plan(EVENT, PLAN, at(60)).await?;
    s.state.webhooks.set_backoff(Duration::from_millis(20));
    // An address in the URL is refused at once.
    for url in [
        rx.url.clone(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]:9/x".to_owned(),
        "http://10.0.0.7/x".to_owned(),
    ] {
        let (status, body) = as_admin(
            s.http
                .post(s.url(&hooks("/webhooks")))
                .json(&json!({ "url": url, "secret": SECRET })),
        )
        .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url} → {body}");
        assert_eq!(body["error"]["field"], "url", "{body}");
    }
    // A name is checked where it is resolved, at every call: `localhost` never gets the POST.
    let by_name = rx.url.replace("127.0.0.1", "localhost");
    add_webhook(&s, &by_name, &["handoff"]).await?;
    s.set_clock(at(121));
    s.handoff(EVENT, "flag").await?;
    let log = wait_for_deliveries(&s, 1).await?;
    assert_eq!(log[0]["ok"], false, "{log:?}");
    let why = log[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("loopback"), "{why}");
    assert!(rx.got().is_empty(), "the receiver on loopback was called");
    Ok(())
}
