//! The delivery worker, one per server: it claims the outbox's due notifications (whoever
//! queued them), attempts each, logs the attempt and schedules the next one with the backoff
//! (or marks the notification done) in one store write. A claim is a lease of [`LEASE`]: a
//! server that dies mid-attempt leaves the notification to another server, or to its own next
//! start, once the lease runs out; between attempts nothing is held, so a retry is made by
//! whichever worker finds it due first.
//!
//! It wakes when this server queues a notification, when a retry it scheduled falls due, and
//! every [`POLL`] for what other servers queued or scheduled. Its times are the system clock's
//! ([`wall_clock`]), not the server's clock (which a test or a simulation sets): a retry waits
//! for real time to pass, as the network does. Servers sharing a database should keep their
//! clocks in sync (NTP), as leases are compared across them. The delivery log's `at` is the
//! server's clock, like every other instant it stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use handoff_store::{ClaimedNotification, NewDelivery, Store};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::{ATTEMPTS, guard, signature};
use crate::app::{AppState, Clock};

/// How long a claim holds a notification: longer than an attempt may take.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often the outbox is looked at when nothing woke the worker.
pub const POLL: Duration = Duration::from_secs(1);
/// Attempts under way at once (one slow receiver does not hold up the others).
const IN_FLIGHT: usize = 32;

/// The instant the outbox is scheduled by: the system clock.
#[must_use]
pub fn wall_clock() -> Timestamp {
    Timestamp::now()
}

/// `t + d`, or `t` at the end of time.
fn later(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Delivers the outbox's notifications until the server shuts down (attempts under way then
/// are dropped: their claims run out, and they are made again).
pub async fn run(state: Arc<AppState>) {
    let mut closing = state.closing.subscribe();
    let mut attempts = tokio::task::JoinSet::new();
    // The soonest retry this server scheduled (other servers' are found by polling).
    let mut retry_at: Option<Instant> = None;
    super::requeue_custody(&state).await;
    loop {
        if *closing.borrow() {
            return;
        }
        if retry_at.is_some_and(|r| r <= Instant::now()) {
            retry_at = None;
        }
        let free = IN_FLIGHT.saturating_sub(attempts.len());
        if free > 0 {
            let now = wall_clock();
            match state
                .store
                .claim_notifications(now, later(now, LEASE), free)
                .await
            {
                Ok(claimed) => {
                    for n in claimed {
                        attempts.spawn(attempt(Attempt::of(&state), n));
                    }
                }
                Err(e) => tracing::warn!("webhooks: claiming due notifications: {e}"),
            }
        }
        let poll = Instant::now() + POLL;
        let wake_at = retry_at.map_or(poll, |r| r.min(poll));
        tokio::select! {
            () = state.webhooks.queued.notified() => {}
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                if let Ok(Some(wait)) = done {
                    let at = Instant::now() + wait;
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                }
            }
            () = tokio::time::sleep_until(wake_at) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

/// What one attempt needs from the server.
struct Attempt {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    private_ok: Arc<AtomicBool>,
    clock: Clock,
    backoff: Duration,
}

impl Attempt {
    fn of(state: &AppState) -> Self {
        Self {
            store: Arc::clone(&state.store),
            client: state.webhooks.client.clone(),
            private_ok: Arc::clone(&state.webhooks.private_ok),
            clock: Arc::clone(&state.clock),
            backoff: state.webhooks.backoff(),
        }
    }
}

/// Makes the next attempt at a claimed notification and settles it: logged, and done or due
/// again after the backoff. Returns how long until that retry.
async fn attempt(ctx: Attempt, n: ClaimedNotification) -> Option<Duration> {
    let number = n.attempts + 1;
    let (status, error) = post(&ctx.client, &ctx.private_ok, &n).await;
    let retry = (error.is_some() && number < ATTEMPTS)
        .then(|| ctx.backoff.saturating_mul(1 << (number - 1).min(16)));
    let logged = ctx
        .store
        .settle_notification(
            n.seq,
            NewDelivery {
                event_id: n.event_id.clone(),
                webhook_id: n.webhook_id.clone(),
                delivery_id: n.delivery_id.clone(),
                kind: n.kind.clone(),
                attempt: number,
                status,
                error,
                at: (ctx.clock)(),
            },
            retry.map(|wait| later(wall_clock(), wait)),
        )
        .await;
    match logged {
        Ok(_) => retry,
        Err(e) => {
            // The claim runs out and the attempt is made again.
            tracing::error!(
                event = %n.event_id,
                "webhooks: could not record attempt {number} of delivery {}: {e}",
                n.delivery_id
            );
            None
        }
    }
}

/// One POST: the receiver's status, and why the attempt failed (`None` when it answered 2xx).
async fn post(
    client: &reqwest::Client,
    private_ok: &AtomicBool,
    n: &ClaimedNotification,
) -> (Option<u16>, Option<String>) {
    // An address in the URL is not resolved, so the guard on names does not see it.
    if let Some(ip) = guard::literal_ip(&n.url)
        && !(private_ok.load(Ordering::Relaxed) || guard::public_address(ip))
    {
        return (
            None,
            Some(format!(
                "{ip} is a loopback, link-local or private address: not called (handoff serve --allow-private-webhooks allows it)"
            )),
        );
    }
    let sent = client
        .post(&n.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Handoff-Event", &n.kind)
        .header("X-Handoff-Delivery", &n.delivery_id)
        .header(
            "X-Handoff-Signature",
            signature(&n.secret, n.body.as_bytes()),
        )
        .body(n.body.clone())
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
    fn a_lease_and_a_retry_are_counted_from_the_given_instant() {
        let t = Timestamp::from_second(1_786_000_000).expect("an instant");
        assert_eq!(
            later(t, Duration::from_millis(1500)).as_millisecond(),
            t.as_millisecond() + 1500
        );
        assert_eq!(later(t, Duration::MAX), Timestamp::MAX);
    }
}
