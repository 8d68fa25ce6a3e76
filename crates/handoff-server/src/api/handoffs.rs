//! Handoffs and the custody log over HTTP: record the next handoff (operator, or two-party with
//! the giver's one-time code), correct one, shift the remaining plan, read the log (NDJSON) and
//! the ETA accuracy measured at each real handoff.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff_core::custody::{Entry, Evidence, HandoffError, Holder, Kind, Method, Point};
use handoff_store::{CodeStep, Device, HandoffCode};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use std::hash::{Hash, Hasher};

use super::events::{MAX_BODY_BYTES, read_body};
use crate::app::AppState;
use crate::auth::bearer;
use crate::custody::{Keyed, append_keyed};
use crate::engine::{Chain, EventLive};
use crate::error::{ApiError, Result};

/// How long a giver's one-time code is valid.
const CODE_TTL_MS: i64 = 10 * 60_000;
/// Wrong codes before a code is burnt (six digits; this keeps guessing hopeless).
const CODE_ATTEMPTS: u32 = 5;

/// The step a code is issued for.
fn code_step(event: &str, relay: &str, from_leg: usize) -> CodeStep {
    CodeStep {
        event_id: event.to_owned(),
        relay_id: relay.to_owned(),
        from_leg: u32::try_from(from_leg).unwrap_or(u32::MAX),
    }
}

/// What the store keeps of a code: SHA-256 of the code with its step, so the same digits for
/// two steps hash apart. It keeps the code out of dumps, backups and `psql` in clear; six
/// digits are found again from the hash by trying them all, so it is no defence against
/// someone who reads the live table within the code's ten minutes (who could as well write
/// the custody log).
fn code_hash(step: &CodeStep, code: &str) -> String {
    use sha2::Digest;
    let text = format!(
        "handoff code\n{}\n{}\n{}\n{}",
        step.event_id, step.relay_id, step.from_leg, code
    );
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// What checking a code inside the append found, for the store to be told after it (the check
/// runs under the chain's lock and cannot wait on the store).
#[derive(Default)]
struct CodeOutcome {
    /// A wrong code was entered for this issued code: count it.
    wrong: Option<(CodeStep, String)>,
    /// The issued code had expired: delete it.
    expired: Option<(CodeStep, String)>,
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

fn from_handoff_error(e: &HandoffError) -> ApiError {
    let code = match e {
        HandoffError::Finished(_) => "finished",
        HandoffError::NotNext { .. } => "not_next",
        HandoffError::NoSuchEntry(_) | HandoffError::AlreadyVoid(_) | HandoffError::NotLast(_) => {
            "bad_correction"
        }
        HandoffError::BeforePrevious { .. } => "before_previous",
        HandoffError::SegmentChange { .. } => "segment_change",
    };
    conflict(code, e.to_string())
}

/// Whether a device may act in `relay`: a device registered for one relay (race mode, where
/// every team has a "Runner 1") acts in that relay only.
fn bound_to(device: &Device, relay: &str) -> bool {
    device.relay_id.as_deref().is_none_or(|r| r == relay)
}

/// Admin, or a device of this event (by its bearer token).
enum Caller {
    Admin,
    Device(Device),
}

async fn caller(state: &AppState, headers: &HeaderMap, event: &str) -> Result<Caller> {
    if state.admin.matches(headers) {
        return Ok(Caller::Admin);
    }
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "send the admin token or a device token: Authorization: Bearer <token>",
        )
    })?;
    let device = state
        .device_by_token(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    if device.event_id != event {
        return Err(ApiError::unauthorized(
            "this device belongs to another event",
        ));
    }
    Ok(Caller::Device(device))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffBody {
    /// `handoff` (default) or `correction`.
    #[serde(default)]
    kind: Option<String>,
    /// The leg handing on; defaults to the one holding the object per the log.
    from_leg: Option<usize>,
    /// When it happened (RFC 3339); defaults to now. Late marking is normal.
    at: Option<String>,
    /// Two-party: the giver's one-time code, entered on the receiver's device.
    code: Option<String>,
    /// `[lon, lat]` where it happened.
    position: Option<[f64; 2]>,
    note: Option<String>,
    /// Correction: the seq of the entry corrected, and whether it did not happen at all.
    corrects: Option<u64>,
    #[serde(default)]
    void: bool,
}

fn parse_at(state: &AppState, at: Option<&str>) -> Result<Timestamp> {
    let now = state.now();
    let Some(s) = at else { return Ok(now) };
    let t: Timestamp = s.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_value",
            format!("`at` must be an RFC 3339 time such as 2024-08-11T21:09:00Z: {e}"),
        )
        .field("at")
    })?;
    if t.as_millisecond() > now.as_millisecond() + 60_000 {
        return Err(ApiError::bad_request(
            "future_timestamp",
            "`at` is in the future; a handoff is recorded when it has happened",
        )
        .field("at"));
    }
    Ok(t)
}

/// Longest note on a custody entry, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// How far a device's `at` may be from the server's time: a phone records a handoff as it
/// happens.
const DEVICE_AT_WINDOW_MS: i64 = 2 * 60_000;
/// How far before its planned start a relay's handoff may be dated.
const BEFORE_START_MS: i64 = 7 * 24 * 3_600_000;
/// How far from the exchange point a device's reported position may be (or ten exchange radii,
/// when that is more): a phone at the exchange, with a poor fix.
const DEVICE_POSITION_SLACK_M: f64 = 500.0;

/// A note on a custody entry: human text of a bounded size. No control characters but line
/// breaks and tabs, so every JSON tool writes the entry's canonical form the same way (`jq`
/// escapes U+007F, serde_json does not).
pub fn check_note(note: Option<&str>) -> Result<()> {
    let Some(n) = note else { return Ok(()) };
    if n.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "too_long",
            format!("a note is at most {MAX_NOTE_CHARS} characters"),
        )
        .field("note"));
    }
    if let Some(c) = n
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!(
                "a note is text: control character U+{:04X} is not allowed (line breaks and tabs are)",
                u32::from(c)
            ),
        )
        .field("note"));
    }
    Ok(())
}

/// The request's `Idempotency-Key`, with a fingerprint of who asks what.
fn idempotency(
    headers: &HeaderMap,
    who: &Caller,
    relay: &str,
    body: &[u8],
) -> Result<Option<Keyed>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_value",
                "an Idempotency-Key is 1 to 255 visible ASCII characters (a UUID, say)",
            )
            .field("Idempotency-Key")
        })?;
    let mut h = std::hash::DefaultHasher::new();
    match who {
        Caller::Admin => "admin".hash(&mut h),
        Caller::Device(d) => d.device_id.hash(&mut h),
    }
    relay.hash(&mut h);
    body.hash(&mut h);
    Ok(Some(Keyed {
        key: key.to_string(),
        fingerprint: h.finish(),
    }))
}

/// `POST /api/v1/events/{event}/relays/{relay}/handoffs`.
///
/// Every handoff request names the step it records: `from_leg`, or the giver's code (issued
/// for one step), or an `Idempotency-Key` (its retries get the first answer). Checking the
/// request and appending the entry are one step under the chain's lock, so two requests at
/// once never both pass a check made for one of them.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/relays/{relay}/handoffs",
    tag = "handoffs",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry record nothing twice")),
    request_body(content = inline(HandoffBody), description = "Every field is optional; an empty body means the next handoff, now"),
    security(("admin" = []), ("device" = [])),
    responses((status = 201, description = "Recorded: the custody entry", body = crate::api::openapi::CustodyEntry), (status = 200, description = "A retry with the same Idempotency-Key: the first entry", body = crate::api::openapi::CustodyEntry))
)]
pub async fn record(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let answer = record_step(&state, &event, &relay, &headers, body).await;
    if let Err(e) = &answer {
        // In the request's span (with its id); never the token or the code.
        tracing::info!(
            event,
            relay,
            status = e.status.as_u16(),
            code = e.code,
            "handoff refused: {}",
            e.message
        );
    }
    answer
}

async fn record_step(
    state: &Arc<AppState>,
    event: &str,
    relay: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let (state, event, relay) = (state.clone(), event.to_string(), relay.to_string());
    let live = state.live_event(&event)?;
    let who = caller(&state, headers, &event).await?;
    let bytes = read_body(body, MAX_BODY_BYTES).await?;
    let b: HandoffBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        HandoffBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("malformed_json", format!("unreadable handoff: {e}"))
        })?
    };
    let r = live
        .plan
        .relay(&relay)
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))?
        .clone();
    let key = idempotency(headers, &who, &relay, &bytes)?;
    check_note(b.note.as_deref())?;
    let at = parse_at(&state, b.at.as_deref())?;
    let now = state.now();
    let earliest = r
        .legs
        .first()
        .map(|l| l.start.as_millisecond() - BEFORE_START_MS);
    if earliest.is_some_and(|e| at.as_millisecond() < e) {
        return Err(ApiError::bad_request(
            "out_of_range",
            "`at` is more than 7 days before the relay's planned start",
        )
        .field("at"));
    }
    if let Caller::Device(_) = who
        && (at.as_millisecond() - now.as_millisecond()).abs() > DEVICE_AT_WINDOW_MS
    {
        return Err(ApiError::bad_request(
            "out_of_range",
            "a device records a handoff as it happens: leave `at` out (the server's time) or send a time within 2 minutes of it",
        )
        .field("at"));
    }
    if let Some([lon, lat]) = b.position
        && !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat))
    {
        return Err(
            ApiError::bad_request("out_of_range", "position is [lon, lat] in degrees")
                .field("position"),
        );
    }
    let (entry, created) = match b.kind.as_deref().unwrap_or("handoff") {
        "handoff" => {
            if matches!(who, Caller::Admin) && b.from_leg.is_none() && key.is_none() {
                return Err(ApiError::bad_request(
                    "missing_field",
                    "name the handoff you record: `from_leg` (the leg handing on), or send an Idempotency-Key header so a repeated request records nothing twice",
                )
                .field("from_leg"));
            }
            // A device's request carries the giver's code: the codes issued for this relay are
            // read before the append, and checked inside it, under the chain's lock.
            let issued = match &who {
                Caller::Device(_) => state.store.handoff_codes(&event, &relay).await?,
                Caller::Admin => Vec::new(),
            };
            let mut outcome = CodeOutcome::default();
            let appended = append_keyed(&state, &live, &relay, key, |chain| {
                // The next handoff is at the end of the stint custody is in: a change of mode
                // by the same carriers is no handoff (`segment_change` when named).
                let next = chain.state.next_from(&r);
                let (from_leg, method, giver_device, receiver_device) = match &who {
                    Caller::Admin => (b.from_leg.unwrap_or(next), Method::Operator, None, None),
                    Caller::Device(d) => {
                        let check = CodeCheck {
                            relay: &r,
                            receiver: d,
                            body: &b,
                            chain,
                            issued: &issued,
                        };
                        let (leg, giver) = check_code(&state, &live, &check, &mut outcome)?;
                        (leg, Method::TwoParty, Some(giver), Some(d.device_id.clone()))
                    }
                };
                chain
                    .state
                    .check_next(&r, from_leg, at)
                    .map_err(|e| from_handoff_error(&e))?;
                let from = &r.legs[from_leg];
                let exchange = from.exchange_point();
                let p = b.position.map_or(exchange, |[lon, lat]| {
                    handoff_core::geodesic::Coord::new(lon, lat)
                });
                let slack = DEVICE_POSITION_SLACK_M.max(10.0 * from.exchange_radius_m);
                if matches!(who, Caller::Device(_))
                    && handoff_core::geodesic::distance_m(p, exchange) > slack
                {
                    return Err(ApiError::bad_request(
                        "out_of_range",
                        format!(
                            "the position is {:.0} m from the exchange; a device records the handoff where it happens (within {slack:.0} m)",
                            handoff_core::geodesic::distance_m(p, exchange)
                        ),
                    )
                    .field("position"));
                }
                let mut e = Entry::draft(Kind::Handoff, &event, &relay, at, now);
                e.from = Some(Holder {
                    leg: from_leg,
                    carriers: from.carriers.clone(),
                });
                // After the last leg there is no receiver: the entry records the arrival.
                e.to = r.legs.get(from_leg + 1).map(|to| Holder {
                    leg: from_leg + 1,
                    carriers: to.carriers.clone(),
                });
                e.position = Some(Point::from_deg(p.lon, p.lat));
                e.evidence = Some(Evidence {
                    method,
                    giver_device,
                    receiver_device,
                    distance_m: None,
                });
                e.note.clone_from(&b.note);
                Ok(e)
            })
            .await;
            settle_codes(&state, outcome, appended.as_ref().ok(), &issued).await?;
            appended?
        }
        "correction" => {
            if !matches!(who, Caller::Admin) {
                return Err(ApiError::unauthorized(
                    "only an operator (admin token) corrects the custody log",
                ));
            }
            let target = b.corrects.ok_or_else(|| {
                ApiError::bad_request(
                    "missing_field",
                    "a correction names the `corrects` entry (its seq)",
                )
                .field("corrects")
            })?;
            append_keyed(&state, &live, &relay, key, |chain| {
                let leg = chain
                    .state
                    .check_correction(target, b.void)
                    .map_err(|e| from_handoff_error(&e))?;
                let mut e = Entry::draft(Kind::Correction, &event, &relay, at, now);
                e.corrects = Some(target);
                e.void = b.void;
                e.from = Some(Holder {
                    leg,
                    carriers: r.legs[leg].carriers.clone(),
                });
                e.to = r.legs.get(leg + 1).map(|l| Holder {
                    leg: leg + 1,
                    carriers: l.carriers.clone(),
                });
                e.note.clone_from(&b.note);
                Ok(e)
            })
            .await?
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("kind is `handoff` or `correction`, not `{other}`"),
            )
            .field("kind"));
        }
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK // a retry: the entry the first request stored
    };
    Ok((status, Json(entry)).into_response())
}

/// What a two-party handoff is checked against: the relay, the receiver's device and request,
/// the chain as it stands under its lock, and the codes issued for the relay.
struct CodeCheck<'a> {
    relay: &'a handoff_core::plan::Relay,
    receiver: &'a Device,
    body: &'a HandoffBody,
    chain: &'a Chain,
    issued: &'a [HandoffCode],
}

/// Checks a two-party handoff under the chain's lock: the receiver's device enters the code
/// the giver's device got for the next handoff (the end of the stint custody is in). Returns
/// the step's leg and the giver's device id; what the store must be told (a wrong code to
/// count, an expired one to delete) goes to `outcome`.
///
/// A code is used once, whichever node checks it: it is issued for one step, and accepted only
/// while that step is the next one and no entry for it was appended after the code was issued
/// (`chain_len`); the entry it records follows the chain's head, and the custody log's unique
/// constraint on `prev_hash` (position, on PostgreSQL) admits one entry after a head, so of two
/// nodes accepting one code at once only one appends. Voiding the handoff afterwards makes the
/// step the next one again, but not the code valid: an entry for its step followed it.
fn check_code(
    state: &AppState,
    live: &EventLive,
    check: &CodeCheck<'_>,
    outcome: &mut CodeOutcome,
) -> Result<(usize, String)> {
    let (relay, receiver, b) = (check.relay, check.receiver, check.body);
    let custody = &check.chain.state;
    let (strikes, code, now) = (&state.limits.codes, b.code.as_deref(), state.now());
    let next = custody.next_from(relay);
    let from = b.from_leg.unwrap_or(next);
    if from != next {
        // Names a segment change, or another step: the same answer as an operator gets.
        let at = now;
        custody
            .check_next(relay, from, at)
            .map_err(|e| from_handoff_error(&e))?;
        return Err(conflict(
            "not_next",
            format!(
                "not the next handoff: the next handoff is from leg {next} to leg {}",
                next + 1
            ),
        ));
    }
    let to = relay
        .legs
        .get(from + 1)
        .ok_or_else(|| conflict("finished", "the relay has finished"))?;
    if !to.carriers.contains(&receiver.carrier) || !bound_to(receiver, &relay.id) {
        return Err(conflict(
            "wrong_party",
            format!(
                "{} does not receive the next handoff ({} → {})",
                receiver.carrier,
                relay.legs[from].carriers.join(", "),
                to.carriers.join(", ")
            ),
        ));
    }
    let code = code.ok_or_else(|| {
        ApiError::bad_request("missing_field", "enter the giver's one-time code").field("code")
    })?;
    let key = (live.plan.event.id.clone(), relay.id.clone());
    let clock = std::time::Instant::now();
    if let Some(wait) = strikes.refused(&key, clock) {
        return Err(ApiError::too_many(
            "too many wrong codes for this relay; wait, then ask the giver for a new code",
            crate::limits::seconds(wait),
        ));
    }
    let step = code_step(&live.plan.event.id, &relay.id, from);
    let spent_since = |issued: &HandoffCode| {
        let after = usize::try_from(issued.chain_len).unwrap_or(usize::MAX);
        check.chain.entries.iter().skip(after).any(|e| {
            matches!(e.kind, Kind::Handoff | Kind::Correction)
                && e.from.as_ref().is_some_and(|h| h.leg == from)
        })
    };
    let Some(issued) = check
        .issued
        .iter()
        .find(|c| c.step == step && c.attempts < CODE_ATTEMPTS && !spent_since(c))
    else {
        return Err(conflict(
            "bad_code",
            "no code was issued for this handoff; the giver asks for one on their device",
        ));
    };
    if issued.expires_at < now {
        outcome.expired = Some((step, issued.code_hash.clone()));
        return Err(conflict(
            "code_expired",
            "the code has expired; the giver asks for a new one",
        ));
    }
    if issued.code_hash != code_hash(&step, code.trim()) {
        strikes.strike(key, clock);
        outcome.wrong = Some((step, issued.code_hash.clone()));
        // The answer says whether this strike burnt the code: the store counts it.
        return Err(conflict("bad_code", "wrong code"));
    }
    Ok((from, issued.device_id.clone()))
}

/// Tells the store what checking a code found, after the append (under the chain's lock the
/// check could not wait on it), and answers a wrong code with whether it burnt the code: a
/// wrong code is counted (attempts on every node add up, and the fifth deletes the code), an
/// expired code deleted, a code that recorded its handoff deleted. Each runs in a task of its
/// own, so a caller who hangs up does not escape the count.
async fn settle_codes(
    state: &AppState,
    outcome: CodeOutcome,
    appended: Option<&(Entry, bool)>,
    issued: &[HandoffCode],
) -> Result<()> {
    let store = Arc::clone(&state.store);
    if let Some((step, hash)) = outcome.wrong {
        let counted =
            tokio::spawn(
                async move { store.strike_handoff_code(&step, &hash, CODE_ATTEMPTS).await },
            )
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
        return Err(if counted.is_some_and(|n| n >= CODE_ATTEMPTS) {
            conflict(
                "bad_code",
                "wrong code, and too many attempts: the giver asks for a new one",
            )
        } else {
            conflict("bad_code", "wrong code")
        });
    }
    let spent = appended
        .filter(|(e, created)| {
            *created
                && e.evidence
                    .as_ref()
                    .is_some_and(|v| v.method == Method::TwoParty)
        })
        .and_then(|(e, _)| {
            let leg = e.from.as_ref()?.leg;
            issued
                .iter()
                .find(|c| c.step == code_step(&e.event, &e.relay, leg))
                .map(|c| (c.step.clone(), c.code_hash.clone()))
        });
    // Hygiene: a spent or expired code is refused anyway (see `check_code`).
    if let Some((step, hash)) = outcome.expired.or(spent) {
        tokio::spawn(async move {
            if let Err(e) = store.delete_handoff_code(&step, &hash).await {
                tracing::warn!(relay = %step.relay_id, "deleting a used handoff code: {e}");
            }
        });
    }
    Ok(())
}

/// `POST /api/v1/events/{event}/relays/{relay}/handoffs/code` (the giver's device): a
/// one-time code for the next handoff, to show the receiver.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/relays/{relay}/handoffs/code",
    tag = "handoffs",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id")),
    security(("device" = [])),
    responses((status = 200, description = "The giver's one-time code", body = crate::api::openapi::HandoffCode))
)]
pub async fn code(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    let Caller::Device(device) = caller(&state, &headers, &event).await? else {
        return Err(ApiError::bad_request(
            "not_a_device",
            "the giver's device asks for the code (device token); an operator records the handoff directly",
        ));
    };
    let r = live
        .plan
        .relay(&relay)
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))?;
    let (current, chain_len) = live
        .chains
        .lock()
        .await
        .get(&relay)
        .map_or((0, 0), |c| (c.state.current, c.entries.len()));
    let giver = r
        .legs
        .get(current)
        .ok_or_else(|| conflict("finished", "the relay has finished"))?;
    // The code is for the next handoff: the end of the holder's stint (a change of mode by the
    // same carriers asks for no code).
    let from = r.stint_end(current);
    if from + 1 >= r.legs.len() {
        return Err(conflict(
            "finished",
            "this is the last leg (or the last stint): there is no handoff after it",
        ));
    }
    if !giver.carriers.contains(&device.carrier) || !bound_to(&device, &relay) {
        return Err(conflict(
            "wrong_party",
            format!(
                "{} does not hold the object (leg {current}: {})",
                device.carrier,
                giver.carriers.join(", ")
            ),
        ));
    }
    let n = getrandom::u64()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "random", e.to_string()))?;
    let code = format!("{:06}", n % 1_000_000);
    let now = state.now();
    let expires_at = now
        .checked_add(jiff::SignedDuration::from_millis(CODE_TTL_MS))
        .unwrap_or(now);
    // In the store, so the receiver may enter it on any node; a new code for the step
    // replaces the old one.
    let step = code_step(&event, &relay, from);
    state
        .store
        .put_handoff_code(HandoffCode {
            code_hash: code_hash(&step, &code),
            step,
            device_id: device.device_id.clone(),
            chain_len: u64::try_from(chain_len).unwrap_or(u64::MAX),
            expires_at,
            attempts: 0,
            created_at: now,
        })
        .await?;
    Ok(Json(
        json!({ "code": code, "from_leg": from, "to_leg": from + 1, "expires_at": expires_at }),
    )
    .into_response())
}

/// `GET /api/v1/events/{event}/relays/{relay}/custody`: the log as NDJSON.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/relays/{relay}/custody",
    tag = "handoffs",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id")),
    responses((status = 200, description = "The custody log, one entry a line", content_type = "application/x-ndjson", body = String))
)]
pub async fn custody(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    if live.plan.relay(&relay).is_none() {
        return Err(ApiError::not_found(format!(
            "no relay `{relay}` in `{event}`"
        )));
    }
    // Straight from the store: what an auditor checks is what was committed. With a public
    // delay, spectators get the entries recorded longer ago than it (a prefix of the log,
    // which verifies on its own); operators get all of it.
    let rows = state.store.custody(&event, &relay).await?;
    let shown = match &live.public {
        Some(p) if !state.admin.matches(&headers) => p.public_entries(&relay),
        _ => rows.len(),
    };
    let mut body = String::new();
    for r in rows.into_iter().take(shown) {
        body.push_str(&r.entry_json);
        body.push('\n');
    }
    // Whether the log verified when the server started (the body is served either way: it is
    // the evidence).
    let verified = live
        .chains
        .lock()
        .await
        .get(&relay)
        .is_none_or(|c| c.broken.is_none());
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::HeaderName::from_static("x-custody-verified"),
                if verified { "true" } else { "false" },
            ),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/events/{event}/relays/{relay}/accuracy`.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/relays/{relay}/accuracy",
    tag = "handoffs",
    params(("event" = String, Path, description = "The event id"), ("relay" = String, Path, description = "The relay id")),
    responses((status = 200, description = "ETA errors measured at each real handoff", body = crate::api::openapi::Accuracy))
)]
pub async fn accuracy(
    State(state): State<Arc<AppState>>,
    Path((event, relay)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let live = state.live_event(&event)?;
    let public = !state.admin.matches(&headers);
    let legs = live
        .accuracy(&relay, public)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in `{event}`")))?;
    // Every leg's predictions pooled, by how long before the real end they were made.
    let samples: Vec<_> = legs
        .iter()
        .flat_map(|l| l.samples.iter().copied())
        .collect();
    let overall = handoff_core::track::by_lead(&samples);
    Ok(
        Json(json!({ "event": event, "relay": relay, "legs": legs, "by_lead": overall }))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShiftBody {
    minutes: i64,
    relay: Option<String>,
    note: Option<String>,
}

/// `POST /api/v1/events/{event}/shift` (admin): shift the remaining plan of every relay (or
/// one) by N minutes, from the leg holding the object on.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/shift",
    tag = "handoffs",
    params(("event" = String, Path, description = "The event id")),
    request_body = ShiftBody,
    security(("admin" = [])),
    responses((status = 200, description = "The shift entries written", body = crate::api::openapi::Shifted))
)]
pub async fn shift(
    State(state): State<Arc<AppState>>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    state.admin.require(&headers)?;
    let live = state.live_event(&event)?;
    let bytes = read_body(body, MAX_BODY_BYTES).await?;
    let b: ShiftBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"minutes\": N}}: {e}"),
        )
    })?;
    check_note(b.note.as_deref())?;
    if b.minutes == 0 || b.minutes.unsigned_abs() > 7 * 24 * 60 {
        return Err(ApiError::bad_request(
            "out_of_range",
            "minutes must be non-zero and at most a week",
        )
        .field("minutes"));
    }
    let relays: Vec<String> = match &b.relay {
        Some(r) if live.plan.relay(r).is_none() => {
            return Err(
                ApiError::bad_request("invalid_value", format!("no relay `{r}`")).field("relay"),
            );
        }
        Some(r) => vec![r.clone()],
        None => live.plan.relays.iter().map(|r| r.id.clone()).collect(),
    };
    let now = state.now();
    // Each relay shifts from the leg it is on (a relay not started yet: from its first leg).
    let mut from: Vec<(String, usize)> = Vec::new();
    for relay in relays {
        let from_leg = live.relay_view(&relay, now, false).await.and_then(|v| {
            v.current_leg.or(
                if v.status == handoff_core::snapshot::RelayStatus::Planned {
                    Some(0)
                } else {
                    None
                },
            )
        });
        if let Some(leg) = from_leg {
            from.push((relay, leg)); // finished relays have nothing to shift
        }
    }
    // One store transaction for all of them (a race-wide delay), then one recompute each.
    let entries = crate::custody::append_many(&state, &live, |_| {
        Ok(from
            .iter()
            .filter_map(|(relay, leg)| {
                let r = live.plan.relay(relay)?;
                let mut e = Entry::draft(Kind::Shift, &event, relay, now, now);
                e.shift_s = Some(b.minutes * 60);
                e.from = Some(Holder {
                    leg: *leg,
                    carriers: r.legs[*leg].carriers.clone(),
                });
                e.note.clone_from(&b.note);
                Some((relay.clone(), e))
            })
            .collect())
    })
    .await?;
    Ok(Json(json!({ "shifted": entries.len(), "entries": entries })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// What `jq -cS 'del(.hash)' | tr -d '\n'` prints for each line (docs/custody.md's recipe).
    fn jq_canonical(lines: &[String]) -> Vec<String> {
        let mut jq = Command::new("jq")
            .args(["-cS", "del(.hash)"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("jq is installed (CI installs it: docs/custody.md's recipe uses it)");
        let mut input = jq.stdin.take().expect("stdin");
        let text = lines.join("\n");
        let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
        let out = jq.wait_with_output().expect("jq runs");
        writer.join().expect("writer").expect("write to jq");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(str::to_string)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Every note the server accepts hashes the same with the documented `jq` recipe as
        /// with the server's canonical JSON (U+007F once differed: jq escapes it).
        #[test]
        fn the_jq_recipe_agrees_with_the_server_on_accepted_notes(
            notes in proptest::collection::vec(any::<String>(), 32),
        ) {
            let t = Timestamp::from_second(1_723_410_000).unwrap();
            let mut entries = Vec::new();
            for (i, note) in notes.iter().enumerate() {
                // The strategy's strings are mostly refused (control characters): also try the
                // same note with them taken out, which must be accepted.
                let clean: String = note.chars().filter(|c| !c.is_control() || *c == '\n').collect();
                prop_assert!(check_note(Some(&clean)).is_ok() || clean.chars().count() > MAX_NOTE_CHARS);
                for n in [note.clone(), clean] {
                    if check_note(Some(&n)).is_err() {
                        continue;
                    }
                    let mut e = Entry::draft(Kind::Handoff, "ev", "r", t, t);
                    e.seq = u64::try_from(i).unwrap();
                    e.note = Some(n);
                    entries.push(e.sealed());
                }
            }
            let lines: Vec<String> = entries.iter().map(Entry::to_line).collect();
            let jq = jq_canonical(&lines);
            prop_assert_eq!(jq.len(), entries.len());
            for (e, j) in entries.iter().zip(&jq) {
                let hash = hex::encode(sha2::Sha256::digest(j.as_bytes()));
                prop_assert_eq!(&hash, &e.hash, "jq printed {}", j);
            }
        }
    }

    #[test]
    fn a_code_is_kept_as_a_hash_of_it_and_its_step() {
        let step = code_step("paris", "flag", 1);
        let hash = code_hash(&step, "042917");
        assert_eq!(hash, code_hash(&code_step("paris", "flag", 1), "042917"));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains("042917"));
        // The same digits for another step, relay or event are another hash.
        for other in [
            code_step("paris", "flag", 2),
            code_step("paris", "team-2", 1),
            code_step("lyon", "flag", 1),
        ] {
            assert_ne!(hash, code_hash(&other, "042917"), "{other:?}");
        }
        assert_ne!(hash, code_hash(&step, "042918"));
    }

    #[test]
    fn notes_are_bounded_text() {
        assert!(check_note(None).is_ok());
        assert!(check_note(Some("on stage\n\tthe flag")).is_ok());
        assert!(check_note(Some(&"é".repeat(MAX_NOTE_CHARS))).is_ok());
        assert!(check_note(Some(&"é".repeat(MAX_NOTE_CHARS + 1))).is_err());
        for bad in ["\u{7f}", "a\u{0}b", "\u{1b}[31m", "\u{85}", "\r"] {
            let e = check_note(Some(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("note"), "{bad:?}");
        }
    }
}
