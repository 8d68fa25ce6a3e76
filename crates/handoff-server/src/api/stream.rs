//! The read side: `GET …/live` (a snapshot, cacheable with an ETag) and `GET …/stream` (SSE: a
//! `snapshot` first, then `position`, `eta`, `handoff` and `plan` events as they happen).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use serde::Deserialize;

use crate::app::AppState;
use crate::engine::Legs;
use crate::error::{ApiError, Result};

/// `?legs=compact` (the default) or `?legs=full`.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    legs: Option<String>,
}

/// `GET /api/v1/events/{event}/live`. The admin token gets the undelayed view. The body is
/// the engine's precomputed document (built once per change and second, for every request),
/// gzip-compressed when the client accepts it. Its legs carry what changes live, unless
/// `?legs=full` asks for everything (carriers, mode, planned times, distances).
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/live",
    operation_id = "live_snapshot",
    tag = "live",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "The snapshot (admin: undelayed)", body = crate::api::openapi::LiveSnapshot), (status = 304, description = "Not modified (If-None-Match)"))
)]
pub async fn live(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let e = state.live_event(&event)?;
    let query: LiveQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query", format!("unreadable query: {e}")))?;
    let legs = match query.legs.as_deref() {
        None | Some("compact") => Legs::Compact,
        Some("full") => Legs::Full,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`legs` is `compact` (the default) or `full`, not `{other}`"),
            )
            .field("legs"));
        }
    };
    let public = !state.admin.matches(&headers);
    let doc = e.document(state.now(), public, legs).await;
    let etag = HeaderValue::from_str(&doc.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = HeaderValue::from_static(if public {
        "public, max-age=1"
    } else {
        "private, no-store"
    });
    let vary = HeaderValue::from_static("Accept-Encoding, Authorization");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(doc.etag.as_str())
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache),
                (header::VARY, vary),
            ],
        )
            .into_response());
    }
    let gzip = crate::pages::accepts_gzip(&headers);
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, etag),
            (header::VARY, vary),
        ],
        if gzip {
            doc.gzip().await
        } else {
            doc.json.clone()
        },
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// Decrements the SSE client gauge when a stream is dropped.
struct ClientGuard(Arc<AppState>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.dec();
    }
}

/// `?relay=ID`: the stream of one relay only; `?last_event_id=N`: as the `Last-Event-ID`
/// header (for a client that opens a new connection rather than letting `EventSource`
/// reconnect).
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    relay: Option<String>,
    last_event_id: Option<String>,
}

/// The custody entry a reconnecting viewer saw last (the `Last-Event-ID` header, or the query's
/// `last_event_id`): `None` for a first connection. An id this server never sent is refused.
fn last_seen(headers: &HeaderMap, query: &StreamQuery) -> Result<Option<i64>> {
    let (given, field) = match headers.get("last-event-id") {
        Some(v) => (Some(v.to_str().unwrap_or("?").trim()), "Last-Event-ID"),
        None => (
            query.last_event_id.as_deref().map(str::trim),
            "last_event_id",
        ),
    };
    match given {
        None | Some("") => Ok(None),
        Some(id) => id
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_value",
                    format!(
                        "`{field}` is the id of a message of this stream (a number), not `{id}`"
                    ),
                )
                .field(field)
            }),
    }
}

/// `GET /api/v1/events/{event}/stream`, or `?relay=ID` for one relay's messages only (a race
/// spectator following their team needs none of the other 999: its first `snapshot` holds
/// that relay alone, and messages about other relays are not sent). With the admin token the
/// operators' stream: undelayed when the event has a public delay (the same stream otherwise).
/// `EventSource` cannot send the header; the console reads the stream with `fetch`.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/stream",
    tag = "live",
    params(
        ("event" = String, Path, description = "The event id"),
        ("relay" = Option<String>, Query, description = "Only this relay's messages"),
        ("last_event_id" = Option<String>, Query, description = "As the `Last-Event-ID` header: the id of the last message seen; the custody entries stored since are sent after the snapshot"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last message seen (EventSource sends it when it reconnects); the custody entries stored since are sent after the snapshot"),
    ),
    responses(
        (status = 200, description = "SSE: `snapshot` first (its id: the newest custody entry it reflects), then `position`, `eta`, `handoff`, `segment`, `custody`, `plan`, `alert` (admin: undelayed); the messages of a custody entry carry its id", content_type = "text/event-stream", body = String),
    )
)]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let e = state.live_event(&event)?;
    let query: StreamQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query", format!("unreadable query: {e}")))?;
    if let Some(r) = &query.relay
        && e.plan.relay(r).is_none()
    {
        return Err(ApiError::not_found(format!("no relay `{r}` in `{event}`")).field("relay"));
    }
    let seen = last_seen(&headers, &query)?;
    let only: Option<Arc<str>> = query.relay.as_deref().map(Arc::from);
    let public = !state.admin.matches(&headers);
    let rx = if public {
        e.stream_tx().subscribe()
    } else {
        e.tx.subscribe()
    };
    // Subscribed first: an entry stored from here on comes through `rx`; those stored before
    // are in the snapshot, and those after `seen` are sent again after it, so a viewer that
    // reconnects (to this node or another) misses no handoff. One stored in between may come
    // twice, with the same id.
    let (missed, newest) = e.entries_after(seen, only.as_deref(), public).await;
    let first = snapshot_event(&e, state.now(), only.as_deref(), public)
        .await
        .id(newest.to_string());
    let missed: Vec<Event> = missed
        .iter()
        .flat_map(|(relay, entry, seq)| {
            crate::custody::messages(relay, entry, &e.plan.event.id, e.version)
                .into_iter()
                .map(move |m| sse_event(&m.frame_with_id(Some(*seq))))
        })
        .collect();
    state.metrics.sse_clients.inc();
    let guard = Arc::new(ClientGuard(Arc::clone(&state)));
    let mut closing = state.closing.subscribe();
    let mut retired = e.retired.subscribe();
    // The stream ends when the server shuts down or a new plan version replaces this one.
    let closed = async move {
        tokio::select! {
            _ = closing.wait_for(|c| *c) => {}
            _ = retired.wait_for(|r| *r) => {}
        }
    };
    let live = Arc::clone(&e);
    let st = Arc::clone(&state);
    let updates = futures_util::stream::unfold(rx, move |mut rx| {
        let (live, st, guard, only) = (
            Arc::clone(&live),
            Arc::clone(&st),
            Arc::clone(&guard),
            only.clone(),
        );
        async move {
            let _keep = guard;
            let event = loop {
                match rx.recv().await {
                    // Another relay's message, on the stream of one relay: not sent.
                    Ok(msg)
                        if only
                            .as_ref()
                            .is_some_and(|o| msg.relay.as_ref().is_some_and(|r| r != o)) => {}
                    Ok(msg) => break sse_event(&msg),
                    // A slow client missed messages: it gets the whole picture again and goes
                    // on from the newest message, not from the stale ones still queued (which
                    // would leave it behind, and send it the whole picture again and again).
                    Err(RecvError::Lagged(_)) => {
                        rx = rx.resubscribe();
                        break snapshot_event(&live, st.now(), only.as_deref(), public).await;
                    }
                    Err(RecvError::Closed) => return None,
                }
            };
            Some((Ok::<_, Infallible>(event), rx))
        }
    });
    let all = futures_util::stream::iter(
        std::iter::once(first)
            .chain(missed)
            .map(Ok::<_, Infallible>),
    )
    .chain(updates)
    .take_until(closed);
    Ok(Sse::new(all).keep_alive(KeepAlive::default()))
}

/// A frame as an SSE event (with its id, if it has one).
fn sse_event(frame: &crate::engine::Frame) -> Event {
    let event = Event::default().event(frame.event).data(&frame.data);
    match frame.id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}

/// The first message of a stream: the `/live` document (public or the operators', shared by
/// every stream of the event), or for the stream of one relay, a snapshot with that relay only.
async fn snapshot_event(
    e: &crate::engine::EventLive,
    now: jiff::Timestamp,
    only: Option<&str>,
    public: bool,
) -> Event {
    let data = match only {
        None => {
            let doc = e.document(now, public, Legs::Compact).await;
            String::from_utf8_lossy(&doc.json).into_owned()
        }
        Some(relay) => {
            let view = e.relay_view(relay, now, public).await;
            let snap =
                handoff_core::snapshot::Snapshot::new(&e.plan, now, view.into_iter().collect());
            serde_json::to_string(&snap.compact()).unwrap_or_default()
        }
    };
    Event::default().event("snapshot").data(data)
}
