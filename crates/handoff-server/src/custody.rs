//! The custody log as the server keeps it: one hash chain per relay, appended only after the
//! store has committed the entry (the store's unique constraint on `prev_hash` makes a handoff
//! win exactly once, even across nodes), then applied to the tracker and streamed. The store
//! write and what must follow it run in a task of their own, so a client that hangs up mid-write
//! cannot leave the chain in memory behind the store; and a chain that lost a race to another
//! writer is reloaded from the store, never left wedged.

use handoff_core::custody::{Entry, Evidence, Holder, Kind, Method, Point};
use handoff_core::track::Change;

use std::collections::HashMap;
use std::sync::Arc;

use crate::app::AppState;
use crate::engine::{Chain, EventLive, Message};
use crate::error::{ApiError, Result};

/// Loads every relay's chain from the store, opening it (genesis, committing to the plan's
/// hash) or noting a new plan version, and makes the tracker agree with it.
pub async fn open_chains(state: &AppState, live: &EventLive) -> Result<()> {
    let now = state.now();
    for relay in &live.plan.relays {
        let mut chain = load_chain(state, live, &relay.id).await?;
        let mut draft = None;
        if chain.broken.is_some() {
            // Nothing is linked to a log that does not verify.
        } else if chain.entries.is_empty() {
            let mut g = Entry::draft(Kind::Genesis, &live.plan.event.id, &relay.id, now, now);
            g.plan_hash = Some(live.plan_hash.clone());
            g.plan_version = Some(live.version);
            g.prev_hash = live.plan_hash.clone();
            draft = Some(g);
        } else if chain.state.plan_hash.as_deref() != Some(live.plan_hash.as_str()) {
            let mut p = Entry::draft(Kind::Plan, &live.plan.event.id, &relay.id, now, now);
            p.plan_hash = Some(live.plan_hash.clone());
            p.plan_version = Some(live.version);
            draft = Some(p);
        }
        if let Some(d) = draft {
            match store_entry(state, &live.plan.event.id, &mut chain, d).await {
                Ok(_) => {}
                // Another node (or a concurrent install) opened it first: take theirs.
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
                    chain = load_chain(state, live, &relay.id).await?;
                }
                Err(e) => return Err(e),
            }
        }
        // Proximity found here is recorded by the caller after the pings are applied.
        live.sync_custody(&relay.id, &chain, now).await;
        live.chains.lock().await.insert(relay.id.clone(), chain);
    }
    Ok(())
}

/// A relay's chain as the store has it, verified: a log that fails (an entry edited, removed,
/// reordered or unreadable) is kept up to its last good entry and marked broken, and the rest
/// of the server runs on.
async fn load_chain(state: &AppState, live: &EventLive, relay: &str) -> Result<Chain> {
    let n_legs = live.plan.relay(relay).map_or(0, |r| r.legs.len());
    let stored = state.store.custody(&live.plan.event.id, relay).await?;
    let lines: Vec<(i64, String)> = stored.into_iter().map(|s| (s.seq, s.entry_json)).collect();
    let chain = Chain::verified(n_legs, &lines);
    if let Some(why) = &chain.broken {
        tracing::error!(
            event = %live.plan.event.id,
            relay,
            "the custody log failed verification: {why}; no entry is appended to it until the store is repaired (restore a backup) and the server restarted"
        );
    }
    Ok(chain)
}

/// Links, seals and stores `draft` at the head of `chain`.
async fn store_entry(
    state: &AppState,
    event: &str,
    chain: &mut Chain,
    mut draft: Entry,
) -> Result<Entry> {
    let (seq, prev) = chain.state.next_link();
    draft.seq = seq;
    if draft.kind != Kind::Genesis {
        draft.prev_hash = prev;
    }
    let entry = draft.sealed();
    let row = handoff_store::NewCustody {
        relay_id: entry.relay.clone(),
        entry_json: entry.to_line(),
        hash: entry.hash.clone(),
        prev_hash: entry.prev_hash.clone(),
    };
    let seq = state.store.append_custody(event, row, state.now()).await.map_err(|e| match e {
        handoff_store::StoreError::Conflict(_) => ApiError::conflict("another entry was appended to this custody log at the same moment; reload and try again"),
        other => other.into(),
    })?;
    state.own.appended(seq);
    chain.state.apply(&entry);
    chain.entries.push(entry.clone());
    chain.stored.push(seq);
    Ok(entry)
}

/// A request's `Idempotency-Key`, and a fingerprint of what it asked (the same key with
/// another request is refused).
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub fingerprint: u64,
}

/// Appends an entry built by `build` from the chain's current state (which it may refuse),
/// then updates the tracker and streams the entry: [`append_many`] for one relay.
///
/// # Errors
/// What `build` refuses (409), a lost race with another writer (409, the chain reloaded), or
/// storage failures.
pub async fn append(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    relay: &str,
    build: impl FnOnce(&Chain) -> Result<Entry>,
) -> Result<Entry> {
    Ok(append_keyed(state, live, relay, None, build).await?.0)
}

/// [`append`] for a request that may carry an idempotency key: a request whose key the chain
/// has seen gets the entry it stored the first time, and nothing is appended (the bool is
/// false then). The check, the append and remembering the key happen under the chain's lock.
///
/// # Errors
/// As [`append`]; 422 for a key used before with another request.
pub async fn append_keyed(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    relay: &str,
    key: Option<Keyed>,
    build: impl FnOnce(&Chain) -> Result<Entry>,
) -> Result<(Entry, bool)> {
    let mut replayed = None;
    let remember = key.clone().map(|k| (relay.to_string(), k));
    let mut entries = write(state, live, remember, |chains| {
        let chain = chains
            .get(relay)
            .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in this event")))?;
        refuse_unverified(relay, chain)?;
        if let Some(k) = &key
            && let Some((fingerprint, entry)) = chain.answered(&k.key)
        {
            if fingerprint != k.fingerprint {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for another request; use a new key for a new handoff",
                )
                .field("Idempotency-Key"));
            }
            replayed = Some(entry.clone());
            return Ok(Vec::new());
        }
        Ok(vec![(relay.to_string(), build(chain)?)])
    })
    .await?;
    if let Some(e) = replayed {
        return Ok((e, false));
    }
    entries.pop().map(|e| (e, true)).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the custody write stored nothing",
        )
    })
}

/// A log that failed verification at start-up takes no new entry.
fn refuse_unverified(relay: &str, chain: &Chain) -> Result<()> {
    match &chain.broken {
        None => Ok(()),
        Some(why) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "custody_unverified",
            format!(
                "the custody log of `{relay}` failed verification when the server started ({why}); nothing is appended to it until an operator restores the store from a backup and restarts"
            ),
        )),
    }
}

/// Appends one entry to each of several relays' chains (a race-wide shift: one store
/// transaction, all or nothing); `build` drafts them from the chains (relay id, draft). Then
/// each relay is brought up to date once, the entries are streamed, and the proximity
/// handoffs a late-recorded one reveals are recorded. The store write and everything after
/// it run in a task of their own: they finish even if the caller is dropped.
///
/// # Errors
/// What `build` refuses, a lost race (409, the chains reloaded), or storage failures.
pub async fn append_many(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    build: impl FnOnce(&HashMap<String, Chain>) -> Result<Vec<(String, Entry)>>,
) -> Result<Vec<Entry>> {
    write(state, live, None, build).await
}

/// [`append_many`], remembering the idempotency key of the request (relay, key) with what it
/// stored, in the same task that applies it.
async fn write(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
    remember: Option<(String, Keyed)>,
    build: impl FnOnce(&HashMap<String, Chain>) -> Result<Vec<(String, Entry)>>,
) -> Result<Vec<Entry>> {
    let mut chains = Arc::clone(&live.chains).lock_owned().await;
    let drafts = build(&chains)?;
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    for (relay, _) in &drafts {
        if let Some(c) = chains.get(relay) {
            refuse_unverified(relay, c)?;
        }
    }
    let (state, live) = (Arc::clone(state), Arc::clone(live));
    let task = tokio::spawn(async move {
        let mut sealed = Vec::with_capacity(drafts.len());
        for (relay, mut draft) in drafts {
            let chain = chains
                .get(&relay)
                .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in this event")))?;
            let (seq, prev) = chain.state.next_link();
            draft.seq = seq;
            draft.prev_hash = prev;
            sealed.push((relay, draft.sealed()));
        }
        let rows = sealed
            .iter()
            .map(|(relay, e)| handoff_store::NewCustody {
                relay_id: relay.clone(),
                entry_json: e.to_line(),
                hash: e.hash.clone(),
                prev_hash: e.prev_hash.clone(),
            })
            .collect();
        let stored = state
            .store
            .append_custody_many(&live.plan.event.id, rows, state.now())
            .await;
        if let Ok(seqs) = &stored {
            for seq in seqs {
                state.own.appended(*seq);
            }
        }
        let seqs = match stored {
            Ok(seqs) => seqs,
            Err(e) => {
                if matches!(e, handoff_store::StoreError::Conflict(_)) {
                    for (relay, _) in &sealed {
                        if let Ok(mut fresh) = load_chain(&state, &live, relay).await {
                            live.sync_custody(relay, &fresh, state.now()).await;
                            if let Some(old) = chains.get_mut(relay) {
                                fresh.answered = std::mem::take(&mut old.answered);
                            }
                            chains.insert(relay.clone(), fresh);
                        }
                    }
                    return Err(ApiError::conflict(
                        "another entry was appended to this custody log at the same moment; reload and try again",
                    ));
                }
                return Err(e.into());
            }
        };
        let now = state.now();
        let mut found = Vec::new();
        for ((relay, entry), seq) in sealed.iter().zip(&seqs) {
            if let Some(chain) = chains.get_mut(relay) {
                chain.state.apply(entry);
                chain.entries.push(entry.clone());
                chain.stored.push(*seq);
                found.extend(live.sync_custody(relay, chain, now).await);
                if let Some((r, k)) = &remember
                    && r == relay
                {
                    chain.remember(k.key.clone(), k.fingerprint, entry.clone());
                }
            }
        }
        drop(chains);
        for ((relay, entry), seq) in sealed.iter().zip(&seqs) {
            announce(&state, &live, relay, entry, *seq).await;
        }
        // A late-recorded handoff can reveal proximity handoffs after it, and one recorded long
        // after it happened may need pings the engine has let go.
        record_proximity(&state, &live, found).await;
        crate::engine::serve_history(&state, &live, live.take_history().await).await;
        Ok(sealed.into_iter().map(|(_, e)| e).collect())
    });
    task.await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the custody write failed: {e}"),
        )
    })?
}

/// Makes this node's chain of `relay` hold the entry whose hash is `hash` (committed by
/// another node, or by this one): when it does not have it, the chain is loaded again from the
/// store (keeping the idempotency keys it has answered) and the tracker synced with it.
/// Whether the chain has the entry now.
pub async fn adopt(state: &Arc<AppState>, live: &Arc<EventLive>, relay: &str, hash: &str) -> bool {
    let has = |c: &Chain| c.entries.iter().rev().any(|e| e.hash == hash);
    let mut chains = Arc::clone(&live.chains).lock_owned().await;
    if chains.get(relay).is_some_and(has) {
        return true;
    }
    let mut fresh = match load_chain(state, live, relay).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(event = %live.plan.event.id, relay, "loading the custody log again: {e}");
            return false;
        }
    };
    if let Some(old) = chains.get_mut(relay) {
        fresh.answered = std::mem::take(&mut old.answered);
    }
    let found = live.sync_custody(relay, &fresh, state.now()).await;
    let now_has = has(&fresh);
    chains.insert(relay.to_string(), fresh);
    drop(chains);
    record_proximity(state, live, found).await;
    crate::engine::serve_history(state, live, live.take_history().await).await;
    now_has
}

/// Streams a stored entry (its store sequence number `seq` the messages' id) and queues its
/// webhook notifications (in the task that stored it: the request's answer waits for them, and
/// a request that hangs up does not stop them).
async fn announce(state: &AppState, live: &EventLive, relay: &str, entry: &Entry, seq: i64) {
    for msg in messages(relay, entry, &live.plan.event.id, live.version) {
        live.send_frame(msg.frame_with_id(Some(seq)));
    }
    crate::webhooks::enqueue_custody(state, &live.plan.event.id, relay, entry).await;
}

/// The stream messages of a stored entry: the verified handoff or the plan change it records,
/// then the entry itself.
#[must_use]
pub fn messages(relay: &str, entry: &Entry, event: &str, version: i64) -> Vec<Message> {
    let mut out = Vec::with_capacity(2);
    match entry.kind {
        Kind::Handoff => out.push(Message::Handoff {
            relay: relay.to_string(),
            from_leg: entry.from.as_ref().map_or(0, |h| h.leg),
            to_leg: entry.to.as_ref().map(|h| h.leg),
            at: entry.at,
            verified: true,
            ended_by: entry
                .evidence
                .as_ref()
                .map_or(handoff_core::snapshot::EndedBy::Operator, |e| {
                    e.method.into()
                }),
            method: entry.evidence.as_ref().map(|e| e.method),
            seq: Some(entry.seq),
        }),
        Kind::Shift | Kind::Plan => out.push(Message::Plan {
            kind: if entry.kind == Kind::Shift {
                "shift"
            } else {
                "plan"
            },
            relay: Some(relay.to_string()),
            entry: Some(entry.clone()),
            event: event.to_string(),
            version,
        }),
        Kind::Correction | Kind::Genesis => {}
    }
    out.push(Message::Custody {
        relay: relay.to_string(),
        entry: entry.clone(),
    });
    out
}

/// Records the proximity handoffs the tracker found, skipping those the log already has.
pub fn record_proximity<'a>(
    state: &'a Arc<AppState>,
    live: &'a Arc<EventLive>,
    found: Vec<Change>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    // Boxed with its `Send` spelled out: appending an entry can find more proximity handoffs,
    // and a recursive future's `Send` cannot be inferred.
    Box::pin(async move {
        for c in found {
            let Change::Proximity {
                relay,
                from_leg,
                at,
                giver_device,
                receiver_device,
                distance_m,
                position,
            } = c
            else {
                continue;
            };
            let Some(r) = live.plan.relay(&relay) else {
                continue;
            };
            let (Some(from), Some(to)) = (r.legs.get(from_leg), r.legs.get(from_leg + 1)) else {
                continue;
            };
            let result = append(state, live, &relay, |chain| {
                // The next handoff is the end of the stint custody is in.
                if chain.state.next_from(r) != from_leg {
                    return Err(ApiError::conflict("already recorded"));
                }
                let mut e =
                    Entry::draft(Kind::Handoff, &live.plan.event.id, &relay, at, state.now());
                e.from = Some(Holder {
                    leg: from_leg,
                    carriers: from.carriers.clone(),
                });
                e.to = Some(Holder {
                    leg: from_leg + 1,
                    carriers: to.carriers.clone(),
                });
                e.position = Some(Point::from_deg(position.lon, position.lat));
                #[allow(clippy::cast_possible_truncation)]
                let d = distance_m.round() as i64;
                e.evidence = Some(Evidence {
                    method: Method::Proximity,
                    giver_device: Some(giver_device),
                    receiver_device: Some(receiver_device),
                    distance_m: Some(d),
                });
                Ok(e)
            })
            .await;
            if let Err(e) = result
                && e.status != axum::http::StatusCode::CONFLICT
            {
                // Not lost: the pings are stored, and the next start-up finds this handoff again.
                eprintln!("handoff: could not record a proximity handoff of {relay}: {e}");
            }
        }
    })
}
