//! Saved engine state: each event's tracker is written to the store now and then (every
//! [`SAVE_EVERY`] when something changed, after an install's catch-up, at clean shutdown), so
//! a start restores it and replays only the pings stored after it instead of every ping.
//!
//! The saved state is a cache, never a source: it names its plan version and hash and its
//! format, and anything else (or anything that does not decode) is ignored for the full
//! replay. It is valid from its cursor: every ping of the event with a store sequence up to
//! it is in the state. Pings are applied out of sequence order (ingest requests run side by
//! side), so the cursor is not the largest sequence applied: [`Applied`] tracks each ingest
//! request from before its store write to after its apply, and the cursor stops below the
//! first one still under way. Custody is not part of it: the chains are loaded from the store
//! at every start and the tracker synced with them, which replays only what changed.
//!
//! An event with a public delay has a second engine, the public one ([`crate::public`]); its
//! saved state holds both trackers and the pings not yet public ([`Both`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use handoff_core::track::{FORMAT, Tracker};
use handoff_store::EngineCheckpoint;

use crate::app::AppState;
use crate::engine::{Committed, EventLive};

/// How often a changed engine is saved while the server runs.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The ingest requests of one event under way, to know up to which store sequence every ping
/// has been applied. Shared by the engines of successive plan versions of the event (a request
/// that began on the old one ends after it has reached the new one).
#[derive(Debug, Default)]
pub struct Applied {
    inner: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    /// Per request under way: every ping it stores has a sequence above this.
    below: BTreeMap<u64, i64>,
    /// The largest sequence applied by a finished request.
    max: i64,
}

impl Applied {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An ingest request begins, before its store write: the store numbers what it commits in
    /// commit order, so whatever this request stores comes after every ping applied so far.
    pub fn begin(self: &Arc<Self>) -> Ticket {
        let mut open = self.open();
        let id = open.next;
        open.next += 1;
        let floor = open.max;
        open.below.insert(id, floor);
        Ticket {
            applied: Arc::clone(self),
            id,
            committed: false,
        }
    }

    /// Every ping stored through this server up to this sequence has been applied, as far as
    /// ingest knows (catch-ups from the store are counted by [`EventLive::cursor`]).
    #[must_use]
    pub fn through(&self) -> i64 {
        let open = self.open();
        open.below
            .values()
            .copied()
            .min()
            .map_or(open.max, |b| b.min(open.max))
    }
}

/// One ingest request under way ([`Applied::begin`]). Dropped before [`Ticket::committed`]
/// (the write failed: nothing stored) it ends; dropped after it without [`Ticket::finish`] (the
/// apply never finished) it holds the cursor back for good, which costs later starts some
/// replay but never loses a ping.
#[derive(Debug)]
pub struct Ticket {
    applied: Arc<Applied>,
    id: u64,
    committed: bool,
}

impl Ticket {
    /// The write committed; its first new ping has sequence `first`.
    pub fn committed(&mut self, first: i64) {
        self.committed = true;
        if let Some(b) = self.applied.open().below.get_mut(&self.id) {
            *b = (*b).max(first - 1);
        }
    }

    /// Every ping the request stored (the last one `last`) has been applied.
    pub fn finish(mut self, last: Option<i64>) {
        let mut open = self.applied.open();
        open.below.remove(&self.id);
        if let Some(l) = last {
            open.max = open.max.max(l);
        }
        drop(open);
        self.committed = false; // ended: nothing for `drop` to do
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.committed {
            self.applied.open().below.remove(&self.id);
        }
    }
}

/// The saved state of an event with a public delay: `MAGIC`, then the operators' tracker and
/// the public one, each as [`Tracker`]'s saved form behind its length (u64, little-endian),
/// then the pings not yet public (JSON).
struct Both;

type Parts<'a> = (&'a [u8], &'a [u8], Vec<Committed>);

impl Both {
    const MAGIC: &'static [u8] = b"handoff delayed engines\n";

    fn encode(operators: &[u8], public: &[u8], pending: &[Committed]) -> Vec<u8> {
        let pending = serde_json::to_vec(pending).unwrap_or_default();
        let mut out = Vec::with_capacity(
            Self::MAGIC.len() + 16 + operators.len() + public.len() + pending.len(),
        );
        out.extend_from_slice(Self::MAGIC);
        for part in [operators, public] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&pending);
        out
    }

    /// The three parts (the operators' tracker, the public one, the pings not yet public), or
    /// why not.
    fn decode(bytes: &[u8]) -> Result<Parts<'_>, String> {
        let mut rest = bytes
            .strip_prefix(Self::MAGIC)
            .ok_or("not the saved state of an event with a public delay")?;
        let mut part = || -> Result<&[u8], String> {
            let (len, body) = rest.split_first_chunk::<8>().ok_or("cut short")?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| e.to_string())?;
            if body.len() < len {
                return Err("cut short".into());
            }
            let (this, after) = body.split_at(len);
            rest = after;
            Ok(this)
        };
        let operators = part()?;
        let public = part()?;
        let pending = serde_json::from_slice(rest).map_err(|e| format!("pending pings: {e}"))?;
        Ok((operators, public, pending))
    }
}

/// Restores `live`'s tracker (and its public engine's, with a public delay) from the event's
/// saved state, if one is kept for its plan version, hash and this build's format; the
/// catch-up then goes on from its cursor. Whatever goes wrong is logged and leaves the engine
/// as it was, for the full replay.
pub async fn restore(state: &AppState, live: &EventLive) -> bool {
    let event = &live.plan.event.id;
    let saved = match state.store.engine_checkpoint(event).await {
        Ok(Some(c)) => c,
        Ok(None) => return false,
        Err(e) => {
            eprintln!(
                "handoff: {event}: the saved engine state is unreadable ({e}); replaying every ping"
            );
            return false;
        }
    };
    if saved.plan_version != live.version
        || saved.plan_hash != live.plan_hash
        || saved.format != FORMAT
    {
        eprintln!(
            "handoff: {event}: the saved engine state is of plan version {} (format {}), not {} \
             (format {FORMAT}); replaying every ping",
            saved.plan_version, saved.format, live.version
        );
        return false;
    }
    let (plan, hash, cursor) = (Arc::clone(&live.plan), live.plan_hash.clone(), saved.cursor);
    let delayed = live.public.is_some();
    let restored = tokio::task::spawn_blocking(move || {
        if !delayed {
            return Tracker::restore(plan, &saved.state, &hash)
                .map(|t| (t, None))
                .map_err(|e| e.to_string());
        }
        let (operators, public, pending) = Both::decode(&saved.state)?;
        let operators = Tracker::restore(Arc::clone(&plan), operators, &hash);
        let public = Tracker::restore(plan, public, &hash);
        match (operators, public) {
            (Ok(o), Ok(p)) => Ok((o, Some((p, pending)))),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        }
    })
    .await;
    match restored {
        Ok(Ok((tracker, public))) => {
            if let (Some(p), Some((tracker, pending))) = (&live.public, public) {
                p.restore(tracker, pending);
            }
            live.restore(tracker, cursor);
            true
        }
        Ok(Err(e)) => {
            eprintln!(
                "handoff: {event}: the saved engine state is refused ({e}); replaying every ping"
            );
            false
        }
        Err(e) => {
            eprintln!(
                "handoff: {event}: restoring the saved engine state failed ({e}); replaying every ping"
            );
            false
        }
    }
}

/// Saves `live`'s engine if it is still the event's engine and changed since it was last
/// saved; returns the size of what was written. The copy is taken a few relays at a time
/// under the engine's lock; encoding and writing happen outside it.
///
/// # Errors
/// Storage failures.
pub async fn save(
    state: &Arc<AppState>,
    live: &Arc<EventLive>,
) -> crate::error::Result<Option<usize>> {
    let _one_at_a_time = state.saving.lock().await;
    let current = state
        .event(&live.plan.event.id)
        .is_some_and(|l| Arc::ptr_eq(&l, live));
    // The cursor first: whatever is applied before it is in the copy taken after. Pings that
    // change nothing watchers see move only the cursor.
    let mark = (live.seq(), live.applied_through());
    if !current || live.saved_at() == Some(mark) {
        return Ok(None);
    }
    let cursor = mark.1;
    let frozen = live.freeze().await;
    // The public engine's part in one job of the owner after the operators' parts: every ping
    // in those is in it too, applied or pending.
    let public = match live.public {
        Some(_) => live
            .run(|_, live| live.public.as_ref().map(crate::public::Delayed::freeze))
            .await
            .flatten(),
        None => None,
    };
    if live.public.is_some() && public.is_none() {
        return Ok(None); // the job panicked: nothing to save this time
    }
    let (plan, hash) = (Arc::clone(&live.plan), live.plan_hash.clone());
    let bytes = tokio::task::spawn_blocking(move || {
        let operators = frozen.encode(&plan, &hash);
        match public {
            Some((p, pending)) => Both::encode(&operators, &p.encode(&plan, &hash), &pending),
            None => operators,
        }
    })
    .await
    .map_err(|e| {
        crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding the engine state failed: {e}"),
        )
    })?;
    let size = bytes.len();
    state
        .store
        .put_engine_checkpoint(EngineCheckpoint {
            event_id: live.plan.event.id.clone(),
            plan_version: live.version,
            plan_hash: live.plan_hash.clone(),
            format: FORMAT,
            cursor,
            created_at: state.now(),
            state: bytes,
        })
        .await?;
    live.mark_saved(mark);
    Ok(Some(size))
}

/// Saves every event's engine that changed (logging failures): periodically and at shutdown.
pub async fn save_all(state: &Arc<AppState>) {
    for live in state.events() {
        if let Err(e) = save(state, &live).await {
            eprintln!(
                "handoff: {}: saving the engine state failed: {e}",
                live.plan.event.id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_round_trip_and_a_cut_or_foreign_state_is_refused() {
        let ping = handoff_core::ping::Ping {
            t: jiff::Timestamp::from_second(1_723_410_000).unwrap(),
            lon: 2.35,
            lat: 48.85,
            acc_m: Some(5.0),
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        };
        let pending = vec![Committed {
            device: "bike-1".into(),
            carrier: "Tony Estanguet".into(),
            relay: Some("flag".into()),
            seq: 42,
            ping,
        }];
        let bytes = Both::encode(b"operators", b"public part", &pending);
        let (o, p, back) = Both::decode(&bytes).unwrap();
        assert_eq!((o, p), (&b"operators"[..], &b"public part"[..]));
        assert_eq!(back, pending);
        for cut in [
            Both::MAGIC.len() + 3,
            Both::MAGIC.len() + 12,
            bytes.len() - 1,
        ] {
            assert!(Both::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Both::decode(b"operators").is_err());
    }

    #[test]
    fn the_cursor_stops_below_the_first_request_under_way() {
        let applied = Arc::new(Applied::default());
        let mut a = applied.begin();
        let mut b = applied.begin();
        a.committed(10);
        b.committed(12);
        // b is applied first (requests run side by side): 10 and 11 are not applied yet.
        b.finish(Some(13));
        assert_eq!(applied.through(), 9);
        let c = applied.begin(); // its pings will come after 13
        a.finish(Some(11));
        assert_eq!(applied.through(), 13);
        drop(c); // its write failed: nothing stored, nothing to wait for
        assert_eq!(applied.through(), 13);
        let mut d = applied.begin();
        d.committed(20);
        drop(d); // committed but never applied: held back for good
        let e = applied.begin();
        e.finish(Some(25));
        assert_eq!(applied.through(), 19);
    }
}
