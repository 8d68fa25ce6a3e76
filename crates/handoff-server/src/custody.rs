//! The custody log as the server keeps it: one hash chain per relay, appended only after the
//! store has committed the entry (the store's unique constraint on `prev_hash` makes a handoff
//! win exactly once, even across nodes), then applied to the tracker and streamed.

use handoff_core::custody::{Entry, Evidence, Holder, Kind, Method, Point};
use handoff_core::track::Change;
use serde_json::json;

use crate::app::AppState;
use crate::error::{ApiError, Result};
use crate::live::{Chain, EventLive};

/// Loads every relay's chain from the store, opening it (genesis, committing to the plan's
/// hash) or noting a new plan version, and makes the tracker agree with it.
pub async fn open_chains(state: &AppState, live: &EventLive) -> Result<()> {
    let now = state.now();
    for relay in &live.plan.relays {
        let stored = state.store.custody(&live.plan.event.id, &relay.id).await?;
        let mut entries = Vec::with_capacity(stored.len());
        for s in stored {
            let e: Entry = serde_json::from_str(&s.entry_json).map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "custody",
                    format!(
                        "stored custody entry {} of {} is unreadable: {e}",
                        s.seq, relay.id
                    ),
                )
            })?;
            entries.push(e);
        }
        let mut chain = Chain::new(relay.legs.len(), entries);
        let mut draft = None;
        if chain.entries.is_empty() {
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
            store_entry(state, &live.plan.event.id, &mut chain, d).await?;
        }
        // Proximity found here is recorded by the caller after the pings are applied.
        let _ = live.sync_custody(&relay.id, &chain, now);
        live.chains.lock().await.insert(relay.id.clone(), chain);
    }
    Ok(())
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
    state.store.append_custody(event, &entry.relay, &entry.to_line(), &entry.hash, &entry.prev_hash).await.map_err(|e| match e {
        handoff_store::StoreError::Conflict(_) => ApiError::conflict("another entry was appended to this custody log at the same moment; reload and try again"),
        other => other.into(),
    })?;
    chain.state.apply(&entry);
    chain.entries.push(entry.clone());
    Ok(entry)
}

/// Appends an entry built by `build` from the chain's current state (which it may refuse),
/// then updates the tracker and streams the entry.
///
/// # Errors
/// What `build` refuses (409), or storage failures.
pub async fn append(
    state: &AppState,
    live: &EventLive,
    relay: &str,
    build: impl FnOnce(&Chain) -> Result<Entry>,
) -> Result<Entry> {
    let mut chains = live.chains.lock().await;
    let chain = chains
        .get_mut(relay)
        .ok_or_else(|| ApiError::not_found(format!("no relay `{relay}` in this event")))?;
    let draft = build(chain)?;
    let entry = store_entry(state, &live.plan.event.id, chain, draft).await?;
    let found = live.sync_custody(relay, chain, state.now());
    drop(chains);
    let data = json!({ "relay": relay, "entry": entry });
    match entry.kind {
        Kind::Handoff => live.send("handoff", json!({ "relay": relay, "from_leg": entry.from.as_ref().map(|h| h.leg), "to_leg": entry.to.as_ref().map(|h| h.leg), "at": entry.at, "verified": true, "method": entry.evidence.as_ref().map(|e| e.method), "seq": entry.seq })),
        Kind::Shift | Kind::Plan => live.send("plan", data.clone()),
        Kind::Correction | Kind::Genesis => {}
    }
    live.send("custody", data);
    crate::webhooks::notify_custody(state, live, relay, &entry);
    if !found.is_empty() {
        // A late-recorded handoff can reveal proximity handoffs after it.
        Box::pin(record_proximity(state, live, found)).await;
    }
    Ok(entry)
}

/// Records the proximity handoffs the tracker found, skipping those the log already has.
pub async fn record_proximity(state: &AppState, live: &EventLive, found: Vec<Change>) {
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
            if chain.state.current != from_leg {
                return Err(ApiError::conflict("already recorded"));
            }
            let mut e = Entry::draft(Kind::Handoff, &live.plan.event.id, &relay, at, state.now());
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
}
