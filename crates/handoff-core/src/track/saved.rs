//! A tracker's derived state as bytes, so that a restart need not fold every stored ping
//! again: per relay the live state, the pings still held, the checkpoints, the inputs from
//! the custody log, and the deep replays asked for but not yet answered.
//!
//! The one idea: the bytes are a cache of a fold, never a source. They name the format and the
//! plan (its hash) they belong to, and [`Tracker::restore`] refuses any other, or anything it
//! cannot read back exactly, so the caller falls back to the full fold of the inputs. Legs are
//! shared between the live state and its checkpoints ([`super::step::Legs`]): each distinct leg
//! and chunk is written once and the sharing is rebuilt on the way back, so a restored tracker
//! holds what the saved one held (and saving it again gives the same bytes).
//!
//! Saving is in two steps so a live server holds its lock only for the first: [`Tracker::freeze`]
//! (or [`Tracker::freeze_part`]) copies the state (cheap: the legs are shared, not copied), and
//! [`Frozen::encode`] writes the bytes from that copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::step::{LegTrack, Legs, Near, RelayState};
use super::{Fix, HistoryRequest, Input, Key, RelayTrack, Shift, Tracker};
use crate::eta::{PaceEvidence, PaceWindow};
use crate::ping::Ping;
use crate::plan::Plan;

/// The version of the saved form. Bump it whenever what is saved, or what it means, changes:
/// a saved state of another version is refused (and the state rebuilt from the inputs).
pub const FORMAT: u32 = 7;

/// The first bytes of a saved tracker, then [`FORMAT`] (4 bytes, little-endian), the SHA-256
/// of the body (32 bytes: a flipped bit would otherwise decode as another state), the body.
const MAGIC: &[u8; 8] = b"HANDOFFT";

/// Why a saved state was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SavedError {
    #[error("not a saved tracker state")]
    NotSaved,
    #[error("saved in format {found}, this build reads format {FORMAT}")]
    Format { found: u32 },
    #[error("the saved state is damaged (its checksum does not match)")]
    Damaged,
    #[error("saved for plan {found}, not for plan {expected}")]
    Plan { found: String, expected: String },
    #[error("the saved state is unreadable: {0}")]
    Decode(String),
    #[error("the saved state does not fit the plan: {0}")]
    Mismatch(String),
}

/// A copy of a tracker's state (or of some of its relays), taken to be encoded.
#[derive(Debug, Clone, Default)]
pub struct Frozen {
    relays: Vec<(usize, RelayTrack)>,
    local_seq: u64,
    pending: Vec<HistoryRequest>,
}

impl Tracker {
    /// A copy of the whole state, to [`Frozen::encode`] away from whatever guards the tracker.
    #[must_use]
    pub fn freeze(&self) -> Frozen {
        self.freeze_part(0, self.relays.len())
    }

    /// A copy of the state of relays `from..from + n` (by plan order): a live server copies a
    /// few relays at a time and [`Frozen::extend`]s, so ingest never waits long on the copy.
    #[must_use]
    pub fn freeze_part(&self, from: usize, n: usize) -> Frozen {
        let end = from.saturating_add(n).min(self.relays.len());
        let ids: HashSet<&str> = (from..end)
            .map(|ri| self.plan.relays[ri].id.as_str())
            .collect();
        Frozen {
            relays: (from..end)
                .map(|ri| (ri, self.relays[ri].clone()))
                .collect(),
            local_seq: self.local_seq,
            pending: self
                .pending
                .iter()
                .chain(&self.history)
                .filter(|h| ids.contains(h.relay.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// How many relays the tracker follows (for [`Tracker::freeze_part`]).
    #[must_use]
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// A tracker of `plan` in the state that [`Frozen::encode`] saved for `plan_hash`. The
    /// deep replays that were still unanswered are asked for again
    /// ([`Tracker::take_history_requests`]).
    ///
    /// # Errors
    /// Another format, another plan, or bytes that do not decode into a state of this plan.
    pub fn restore(plan: Arc<Plan>, bytes: &[u8], plan_hash: &str) -> Result<Tracker, SavedError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(SavedError::NotSaved)?;
        let (format, body) = body.split_first_chunk::<4>().ok_or(SavedError::NotSaved)?;
        let found = u32::from_le_bytes(*format);
        if found != FORMAT {
            return Err(SavedError::Format { found });
        }
        let (digest, body) = body.split_first_chunk::<32>().ok_or(SavedError::NotSaved)?;
        if sha2::Sha256::digest(body)[..] != digest[..] {
            return Err(SavedError::Damaged);
        }
        let saved: Body =
            postcard::from_bytes(body).map_err(|e| SavedError::Decode(e.to_string()))?;
        if saved.plan_hash != plan_hash {
            return Err(SavedError::Plan {
                found: saved.plan_hash,
                expected: plan_hash.to_string(),
            });
        }
        let mut tr = Tracker::new(plan);
        Reader::new(&saved, &mut tr)?.fill(saved, &mut tr)?;
        tr.rebuild_pools();
        Ok(tr)
    }
}

impl Frozen {
    /// Adds the relays of another part of the same tracker.
    pub fn extend(&mut self, other: Frozen) {
        self.relays.extend(other.relays);
        self.local_seq = self.local_seq.max(other.local_seq);
        self.pending.extend(other.pending);
    }

    /// The saved form, for the plan whose hash is `plan_hash`.
    #[must_use]
    pub fn encode(&self, plan: &Plan, plan_hash: &str) -> Vec<u8> {
        let mut w = Writer::default();
        let mut relays: Vec<&(usize, RelayTrack)> = self.relays.iter().collect();
        relays.sort_by_key(|(ri, _)| *ri);
        let relays = relays
            .into_iter()
            .map(|(ri, rt)| w.relay(&plan.relays[*ri].id, rt))
            .collect();
        let body = Body {
            plan_hash: plan_hash.to_string(),
            relays,
            local_seq: self.local_seq,
            pending: self.pending.iter().map(SavedRequest::of).collect(),
            names: w.names,
            legs: w.legs,
            chunks: w.chunks,
        };
        // Writing plain data to a Vec cannot fail.
        let body = postcard::to_allocvec(&body).unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + 32 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&sha2::Sha256::digest(&body));
        out.extend(body);
        out
    }
}

// ---- the saved form: plain data, times as nanoseconds, names and legs by index ----

type Nanos = i128;
type SavedKey = (Nanos, u64);

#[derive(Serialize, Deserialize)]
struct Body {
    plan_hash: String,
    relays: Vec<SavedRelay>,
    local_seq: u64,
    pending: Vec<SavedRequest>,
    /// Carrier and device names.
    names: Vec<String>,
    /// Every distinct leg track.
    legs: Vec<SavedLeg>,
    /// Every distinct chunk of legs (indices into `legs`).
    chunks: Vec<Vec<u32>>,
}

#[derive(Serialize, Deserialize)]
struct SavedRelay {
    id: String,
    /// (arrival sequence, carrier, device, ping): the key is (ping time, sequence).
    pings: Vec<(u64, u32, u32, SavedPing)>,
    recorded: Vec<(usize, Nanos)>,
    /// How each recorded handoff was verified, by leg (sorted: the same state saves the same).
    methods: Vec<(usize, crate::custody::Method)>,
    shifts: Vec<(Nanos, usize, i64)>,
    state: SavedState,
    last_applied: Option<SavedKey>,
    checkpoints: Vec<(SavedKey, SavedState)>,
    since_checkpoint: usize,
    released: Option<SavedKey>,
    watermark: Option<Nanos>,
    replayed: u64,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    current: usize,
    verified: usize,
    giver_near: Option<(Nanos, u32, f64)>,
    receiver_near: Option<(Nanos, u32, f64)>,
    last_prediction_ms: Option<i64>,
    recorded_applied: usize,
    shifts_applied: usize,
    transition_t: Option<Nanos>,
    /// Indices into the chunks.
    chunks: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct SavedLeg {
    actual_start: Option<Nanos>,
    actual_end: Option<Nanos>,
    verified_at: Option<Nanos>,
    ended_by: Option<super::EndCause>,
    along_m: f64,
    along_t: Option<Nanos>,
    last_fix: Option<SavedFix>,
    recent: Vec<SavedFix>,
    /// The closest approach to the leg's end: (time, distance, over).
    approach: Option<(Nanos, f64, bool)>,
    off_route_run: u32,
    off_route_since: Option<Nanos>,
    pace: Vec<(i64, f64)>,
    /// [`PaceEvidence::parts`].
    evidence: (Option<(i64, f64)>, [f64; 4]),
    predictions: Vec<(i64, i64)>,
}

#[derive(Serialize, Deserialize)]
struct SavedFix {
    t: Nanos,
    lon: f64,
    lat: f64,
    acc_m: Option<f64>,
    along_m: f64,
    cross_track_m: f64,
    on_course: bool,
}

#[derive(Serialize, Deserialize)]
struct SavedPing {
    t: Nanos,
    lon: f64,
    lat: f64,
    acc_m: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    alt_m: Option<f64>,
    batt_pct: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct SavedRequest {
    relay: String,
    carriers: Vec<String>,
    since: Option<Nanos>,
    after: Option<SavedKey>,
}

fn nanos(t: Timestamp) -> Nanos {
    t.as_nanosecond()
}

fn key_of(k: super::Key) -> SavedKey {
    (nanos(k.0), k.1)
}

impl SavedFix {
    fn of(f: &Fix) -> Self {
        Self {
            t: nanos(f.t),
            lon: f.lon,
            lat: f.lat,
            acc_m: f.acc_m,
            along_m: f.along_m,
            cross_track_m: f.cross_track_m,
            on_course: f.on_course,
        }
    }

    fn fix(&self) -> Result<Fix, SavedError> {
        Ok(Fix {
            t: time(self.t)?,
            lon: self.lon,
            lat: self.lat,
            acc_m: self.acc_m,
            along_m: self.along_m,
            cross_track_m: self.cross_track_m,
            on_course: self.on_course,
        })
    }
}

impl SavedPing {
    fn of(p: &Ping) -> Self {
        Self {
            t: nanos(p.t),
            lon: p.lon,
            lat: p.lat,
            acc_m: p.acc_m,
            speed_mps: p.speed_mps,
            heading_deg: p.heading_deg,
            alt_m: p.alt_m,
            batt_pct: p.batt_pct,
        }
    }

    fn ping(&self) -> Result<Ping, SavedError> {
        Ok(Ping {
            t: time(self.t)?,
            lon: self.lon,
            lat: self.lat,
            acc_m: self.acc_m,
            speed_mps: self.speed_mps,
            heading_deg: self.heading_deg,
            alt_m: self.alt_m,
            batt_pct: self.batt_pct,
        })
    }
}

impl SavedRequest {
    fn of(h: &HistoryRequest) -> Self {
        Self {
            relay: h.relay.clone(),
            carriers: h.carriers.clone(),
            since: h.since.map(nanos),
            after: h.after.map(key_of),
        }
    }
}

/// Gives each distinct name, leg and chunk its index, in the order first met (so the bytes
/// depend only on the state and its sharing).
#[derive(Default)]
struct Writer {
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    legs: Vec<SavedLeg>,
    leg_ids: HashMap<*const LegTrack, u32>,
    chunks: Vec<Vec<u32>>,
    chunk_ids: HashMap<*const Vec<Arc<LegTrack>>, u32>,
}

fn index(len: usize) -> u32 {
    // More than 4 billion distinct legs or names cannot be held in memory in the first place.
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Writer {
    fn name(&mut self, n: &str) -> u32 {
        if let Some(&i) = self.name_ids.get(n) {
            return i;
        }
        let i = index(self.names.len());
        self.names.push(n.to_string());
        self.name_ids.insert(n.to_string(), i);
        i
    }

    fn leg(&mut self, l: &Arc<LegTrack>) -> u32 {
        let ptr = Arc::as_ptr(l);
        if let Some(&i) = self.leg_ids.get(&ptr) {
            return i;
        }
        let i = index(self.legs.len());
        self.legs.push(SavedLeg {
            actual_start: l.actual_start.map(nanos),
            actual_end: l.actual_end.map(nanos),
            verified_at: l.verified_at.map(nanos),
            ended_by: l.ended_by,
            along_m: l.along_m,
            along_t: l.along_t.map(nanos),
            last_fix: l.last_fix.as_ref().map(SavedFix::of),
            recent: l.recent.iter().map(SavedFix::of).collect(),
            approach: l.approach.map(|a| (nanos(a.t), a.distance_m, a.over)),
            off_route_run: l.off_route_run,
            off_route_since: l.off_route_since.map(nanos),
            pace: l.pace.samples().collect(),
            evidence: l.evidence.parts(),
            predictions: l.predictions.clone(),
        });
        self.leg_ids.insert(ptr, i);
        i
    }

    fn chunk(&mut self, c: &Arc<Vec<Arc<LegTrack>>>) -> u32 {
        let ptr = Arc::as_ptr(c);
        if let Some(&i) = self.chunk_ids.get(&ptr) {
            return i;
        }
        let legs = c.iter().map(|l| self.leg(l)).collect();
        let i = index(self.chunks.len());
        self.chunks.push(legs);
        self.chunk_ids.insert(ptr, i);
        i
    }

    fn near(&mut self, n: Option<&Near>) -> Option<(Nanos, u32, f64)> {
        n.map(|n| (nanos(n.t), self.name(&n.device), n.distance_m))
    }

    fn state(&mut self, st: &RelayState) -> SavedState {
        SavedState {
            current: st.current,
            verified: st.verified,
            giver_near: self.near(st.giver_near.as_ref()),
            receiver_near: self.near(st.receiver_near.as_ref()),
            last_prediction_ms: st.last_prediction_ms,
            recorded_applied: st.recorded_applied,
            shifts_applied: st.shifts_applied,
            transition_t: st.transition_t.map(nanos),
            chunks: st.legs.chunks().iter().map(|c| self.chunk(c)).collect(),
        }
    }

    fn relay(&mut self, id: &str, rt: &RelayTrack) -> SavedRelay {
        let pings = rt
            .pings
            .iter()
            .map(|((_, seq), input)| {
                (
                    *seq,
                    self.name(&input.carrier),
                    self.name(&input.device),
                    SavedPing::of(&input.ping),
                )
            })
            .collect();
        SavedRelay {
            id: id.to_string(),
            pings,
            recorded: rt.recorded.iter().map(|&(l, at)| (l, nanos(at))).collect(),
            methods: {
                let mut m: Vec<_> = rt.methods.iter().map(|(l, m)| (*l, *m)).collect();
                m.sort_by_key(|(l, _)| *l);
                m
            },
            shifts: rt
                .shifts
                .iter()
                .map(|s| (nanos(s.at), s.from_leg, s.ms))
                .collect(),
            state: self.state(&rt.state),
            last_applied: rt.last_applied.map(key_of),
            checkpoints: rt
                .checkpoints
                .iter()
                .map(|(k, st)| (key_of(*k), self.state(st)))
                .collect(),
            since_checkpoint: rt.since_checkpoint,
            released: rt.released.map(key_of),
            watermark: rt.watermark.map(nanos),
            replayed: rt.replayed,
        }
    }
}

fn time(ns: Nanos) -> Result<Timestamp, SavedError> {
    Timestamp::from_nanosecond(ns).map_err(|e| SavedError::Decode(e.to_string()))
}

fn key(k: SavedKey) -> Result<Key, SavedError> {
    Ok((time(k.0)?, k.1))
}

fn opt_time(ns: Option<Nanos>) -> Result<Option<Timestamp>, SavedError> {
    ns.map(time).transpose()
}

fn at<T: Clone>(v: &[T], i: u32, what: &str) -> Result<T, SavedError> {
    usize::try_from(i)
        .ok()
        .and_then(|i| v.get(i))
        .cloned()
        .ok_or_else(|| SavedError::Decode(format!("{what} {i} is not in the saved state")))
}

/// Rebuilds the shared names, legs and chunks, then each relay from them.
struct Reader {
    names: Vec<Arc<str>>,
    chunks: Vec<Arc<Vec<Arc<LegTrack>>>>,
}

impl Reader {
    fn new(saved: &Body, tr: &mut Tracker) -> Result<Self, SavedError> {
        let names: Vec<Arc<str>> = saved
            .names
            .iter()
            .map(|n| super::intern(&mut tr.names, n))
            .collect();
        let mut legs = Vec::with_capacity(saved.legs.len());
        for l in &saved.legs {
            let mut recent = Vec::with_capacity(l.recent.len());
            for f in &l.recent {
                recent.push(f.fix()?);
            }
            legs.push(Arc::new(LegTrack {
                actual_start: opt_time(l.actual_start)?,
                actual_end: opt_time(l.actual_end)?,
                verified_at: opt_time(l.verified_at)?,
                ended_by: l.ended_by,
                along_m: l.along_m,
                along_t: opt_time(l.along_t)?,
                last_fix: l.last_fix.as_ref().map(SavedFix::fix).transpose()?,
                recent,
                approach: l
                    .approach
                    .map(|(t, distance_m, over)| {
                        Ok::<_, SavedError>(super::approach::Approach {
                            t: time(t)?,
                            distance_m,
                            over,
                        })
                    })
                    .transpose()?,
                off_route_run: l.off_route_run,
                off_route_since: opt_time(l.off_route_since)?,
                pace: PaceWindow::from_samples(l.pace.iter().copied()),
                evidence: PaceEvidence::from_parts(l.evidence.0, l.evidence.1),
                predictions: l.predictions.clone(),
            }));
        }
        let mut chunks = Vec::with_capacity(saved.chunks.len());
        for c in &saved.chunks {
            let ls = c
                .iter()
                .map(|&i| at(&legs, i, "leg"))
                .collect::<Result<Vec<_>, _>>()?;
            chunks.push(Arc::new(ls));
        }
        Ok(Self { names, chunks })
    }

    fn near(&self, n: Option<(Nanos, u32, f64)>) -> Result<Option<Near>, SavedError> {
        n.map(|(t, device, distance_m)| {
            Ok(Near {
                t: time(t)?,
                device: at(&self.names, device, "name")?,
                distance_m,
            })
        })
        .transpose()
    }

    fn state(&self, s: &SavedState, n_legs: usize) -> Result<RelayState, SavedError> {
        let chunks = s
            .chunks
            .iter()
            .map(|&i| at(&self.chunks, i, "chunk"))
            .collect::<Result<Vec<_>, _>>()?;
        let legs = Legs::from_chunks(chunks, n_legs)
            .ok_or_else(|| SavedError::Mismatch(format!("a state without its {n_legs} legs")))?;
        if s.current > n_legs || s.verified > n_legs {
            return Err(SavedError::Mismatch("a leg beyond the relay's last".into()));
        }
        Ok(RelayState {
            current: s.current,
            verified: s.verified,
            giver_near: self.near(s.giver_near)?,
            receiver_near: self.near(s.receiver_near)?,
            last_prediction_ms: s.last_prediction_ms,
            recorded_applied: s.recorded_applied,
            shifts_applied: s.shifts_applied,
            transition_t: opt_time(s.transition_t)?,
            legs,
        })
    }

    fn relay(&self, s: SavedRelay, n_legs: usize) -> Result<RelayTrack, SavedError> {
        let mut pings = BTreeMap::new();
        for (seq, carrier, device, p) in &s.pings {
            let ping = p.ping()?;
            pings.insert(
                (ping.t, *seq),
                Input {
                    carrier: at(&self.names, *carrier, "name")?,
                    device: at(&self.names, *device, "name")?,
                    ping,
                },
            );
        }
        let mut checkpoints = BTreeMap::new();
        for (k, st) in &s.checkpoints {
            checkpoints.insert(key(*k)?, self.state(st, n_legs)?);
        }
        let recorded = s
            .recorded
            .iter()
            .map(|&(l, t)| Ok((l, time(t)?)))
            .collect::<Result<Vec<_>, SavedError>>()?;
        let shifts = s
            .shifts
            .iter()
            .map(|&(t, from_leg, ms)| {
                Ok(Shift {
                    at: time(t)?,
                    from_leg,
                    ms,
                })
            })
            .collect::<Result<Vec<_>, SavedError>>()?;
        let state = self.state(&s.state, n_legs)?;
        if state.recorded_applied > recorded.len() || state.shifts_applied > shifts.len() {
            return Err(SavedError::Mismatch(
                "more custody inputs applied than saved".into(),
            ));
        }
        Ok(RelayTrack {
            pings,
            recorded,
            shifts,
            methods: s.methods.iter().copied().collect(),
            state,
            last_applied: s.last_applied.map(key).transpose()?,
            checkpoints,
            since_checkpoint: s.since_checkpoint,
            released: s.released.map(key).transpose()?,
            watermark: opt_time(s.watermark)?,
            replayed: s.replayed,
        })
    }

    fn fill(self, saved: Body, tr: &mut Tracker) -> Result<(), SavedError> {
        let plan = Arc::clone(&tr.plan);
        if saved.relays.len() != plan.relays.len() {
            return Err(SavedError::Mismatch(format!(
                "{} relays saved, the plan has {}",
                saved.relays.len(),
                plan.relays.len()
            )));
        }
        for (ri, (s, relay)) in saved.relays.into_iter().zip(&plan.relays).enumerate() {
            if s.id != relay.id {
                return Err(SavedError::Mismatch(format!(
                    "relay {} saved where the plan has {}",
                    s.id, relay.id
                )));
            }
            tr.relays[ri] = self.relay(s, relay.legs.len())?;
        }
        tr.local_seq = saved.local_seq;
        for h in saved.pending {
            tr.history.push(HistoryRequest {
                relay: h.relay,
                carriers: h.carriers,
                since: opt_time(h.since)?,
                after: h.after.map(key).transpose()?,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Refusals; the round trip itself is a property test (`props.rs`).

    use super::*;
    use crate::plan::{NoFiles, parse};
    use crate::track::tests::{PLAN, ping, tracker};

    #[test]
    fn another_plan_format_or_garbage_is_refused() {
        let mut tr = tracker();
        tr.apply("ann-phone", "Ann", &ping(250, 2.351, 48.85));
        let plan = Arc::clone(tr.plan());
        let bytes = tr.freeze().encode(&plan, "h1");
        assert!(Tracker::restore(Arc::clone(&plan), &bytes, "h1").is_ok());
        assert!(matches!(
            Tracker::restore(Arc::clone(&plan), &bytes, "h2"),
            Err(SavedError::Plan { .. })
        ));
        let mut other = bytes.clone();
        other[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(FORMAT + 1).to_le_bytes());
        assert_eq!(
            Tracker::restore(Arc::clone(&plan), &other, "h1").err(),
            Some(SavedError::Format { found: FORMAT + 1 })
        );
        assert_eq!(
            Tracker::restore(Arc::clone(&plan), b"{\"json\":1}", "h1").err(),
            Some(SavedError::NotSaved)
        );
        let mut flipped = bytes.clone();
        let middle = flipped.len() - 20;
        flipped[middle] ^= 1;
        assert_eq!(
            Tracker::restore(Arc::clone(&plan), &flipped, "h1").err(),
            Some(SavedError::Damaged)
        );
        assert_eq!(
            Tracker::restore(Arc::clone(&plan), &bytes[..20], "h1").err(),
            Some(SavedError::NotSaved)
        );
        let renamed = PLAN.replace("id = \"r\"", "id = \"x\"");
        let plan2 = Arc::new(parse(&renamed, &NoFiles).unwrap());
        assert!(matches!(
            Tracker::restore(plan2, &bytes, "h1"),
            Err(SavedError::Mismatch(_))
        ));
    }
}
