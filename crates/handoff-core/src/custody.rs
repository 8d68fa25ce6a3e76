//! The custody log: who held the object when, as a hash chain nobody can quietly rewrite.
//!
//! Each entry is a JSON object; its `hash` is the SHA-256 (hex) of the entry's canonical JSON
//! without the `hash` key (keys sorted, no whitespace, UTF-8: what `jq -cS 'del(.hash)'`
//! prints), and its `prev_hash` is the previous entry's `hash`. The first entry (`genesis`)
//! commits to the plan's hash. Nothing in a hashed entry is a floating-point number (positions
//! are integer 1e-7 degrees), so any JSON tool reproduces the bytes. A wrong entry is never
//! edited: a `correction` entry is appended that says what was wrong.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::plan::Relay;

/// The format version written in every entry.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Opens the chain, committing to the plan.
    Genesis,
    /// Custody passed from one leg to the next.
    Handoff,
    /// Fixes an earlier entry (a wrong time, a handoff that did not happen).
    Correction,
    /// The operator shifted the remaining plan.
    Shift,
    /// A new version of the plan was uploaded.
    Plan,
}

/// How a handoff was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Recorded by an operator (admin token).
    Operator,
    /// The receiver's device entered the giver's one-time code.
    TwoParty,
    /// Both devices were inside the exchange radius within two minutes of each other.
    Proximity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub leg: usize,
    pub carriers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Longitude and latitude in 1e-7 degrees (integers keep the hash tool-independent).
    pub lon_e7: i64,
    pub lat_e7: i64,
}

impl Point {
    #[must_use]
    pub fn from_deg(lon: f64, lat: f64) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        Self {
            lon_e7: (lon * 1e7).round() as i64,
            lat_e7: (lat * 1e7).round() as i64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub giver_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_device: Option<String>,
    /// Proximity: the larger of the two devices' distances to the exchange point, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<i64>,
}

/// One entry of a relay's custody log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub v: u32,
    /// Position in the chain, from 0.
    pub seq: u64,
    pub kind: Kind,
    pub event: String,
    pub relay: String,
    /// When it happened (for a handoff: the moment custody passed).
    pub at: Timestamp,
    /// When it was written to the log.
    pub recorded_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Holder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Holder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Point>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Correction: the `seq` of the entry it corrects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<u64>,
    /// Correction: the corrected entry did not happen at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
    /// Shift: seconds added to the plan from leg `from.leg` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_s: Option<i64>,
    /// Genesis and plan entries: the plan's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// Keys sorted at every level, no whitespace: the bytes that are hashed.
#[must_use]
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map keeps insertion order only with `preserve_order`; inserting in sorted
    // order is canonical either way.
    sorted(v).to_string()
}

/// The hash of an entry given as JSON: SHA-256 of its canonical form without `hash`.
#[must_use]
pub fn hash_value(v: &Value) -> String {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("hash");
    }
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

impl Entry {
    /// An entry of `kind` with every optional part empty, to be filled in, linked
    /// (`seq`, `prev_hash`) and [`sealed`](Self::sealed).
    #[must_use]
    pub fn draft(
        kind: Kind,
        event: &str,
        relay: &str,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Self {
        Self {
            v: VERSION,
            seq: 0,
            kind,
            event: event.to_string(),
            relay: relay.to_string(),
            at,
            recorded_at,
            from: None,
            to: None,
            position: None,
            evidence: None,
            corrects: None,
            void: false,
            shift_s: None,
            plan_hash: None,
            plan_version: None,
            note: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Fills in `v`, `hash` from the rest.
    #[must_use]
    pub fn sealed(mut self) -> Self {
        self.v = VERSION;
        self.hash = String::new();
        let v = serde_json::to_value(&self).unwrap_or(Value::Null);
        self.hash = hash_value(&v);
        self
    }

    /// The entry as one line of NDJSON (the form stored and exported).
    #[must_use]
    pub fn to_line(&self) -> String {
        serde_json::to_value(self)
            .map(|v| canonical_json(&v))
            .unwrap_or_default()
    }
}

/// What is wrong with a chain, at the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index} (line {line}): {reason}")]
pub struct VerifyError {
    /// 0-based position of the first bad entry in what was given.
    pub index: usize,
    pub line: usize,
    pub reason: String,
}

/// Re-checks a chain given as NDJSON lines (blank lines ignored): every hash, every link, the
/// sequence numbers, and that it opens with a genesis entry. Returns the number of entries.
///
/// # Errors
/// The first bad entry and what is wrong with it.
pub fn verify(ndjson: &str) -> Result<usize, VerifyError> {
    let mut prev: Option<(String, u64)> = None;
    let mut index = 0;
    for (i, line) in ndjson.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| VerifyError {
            index,
            line: i + 1,
            reason,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let stated = v
            .get("hash")
            .and_then(Value::as_str)
            .ok_or_else(|| err("no `hash`".into()))?;
        let actual = hash_value(&v);
        if stated != actual {
            return Err(err(format!(
                "hash mismatch: the entry hashes to {actual} but says {stated}; its content was changed"
            )));
        }
        let entry: Entry =
            serde_json::from_value(v).map_err(|e| err(format!("not a custody entry: {e}")))?;
        match &prev {
            None => {
                if entry.kind != Kind::Genesis {
                    return Err(err(format!(
                        "the chain must open with a genesis entry, found {:?}; entries before it were removed",
                        entry.kind
                    )));
                }
                if entry.plan_hash.as_deref() != Some(entry.prev_hash.as_str()) {
                    return Err(err(
                        "the genesis entry must commit to the plan hash (prev_hash = plan_hash)"
                            .into(),
                    ));
                }
                if entry.seq != 0 {
                    return Err(err(format!(
                        "the genesis entry has seq {}, expected 0",
                        entry.seq
                    )));
                }
            }
            Some((prev_hash, prev_seq)) => {
                if &entry.prev_hash != prev_hash {
                    return Err(err(format!(
                        "prev_hash {} does not match the previous entry's hash {prev_hash}: an entry was removed, inserted or reordered",
                        entry.prev_hash
                    )));
                }
                if entry.seq != prev_seq + 1 {
                    return Err(err(format!(
                        "seq {} follows seq {prev_seq}: entries were removed or reordered",
                        entry.seq
                    )));
                }
            }
        }
        prev = Some((entry.hash.clone(), entry.seq));
        index += 1;
    }
    if prev.is_none() {
        return Err(VerifyError {
            index: 0,
            line: 0,
            reason: "the log is empty".into(),
        });
    }
    Ok(index)
}

/// Why a handoff cannot be recorded (answered 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("the relay has finished: leg {0} was the last")]
    Finished(usize),
    #[error(
        "not the next handoff: custody is with leg {current} ({holders}), so the next handoff is from leg {from} (to leg {next}, or the finish after the last leg)"
    )]
    NotNext {
        current: usize,
        /// The leg whose end is the next handoff (the end of the stint custody is in).
        from: usize,
        next: usize,
        holders: String,
    },
    #[error("entry {0} does not exist or is not a handoff that can be corrected")]
    NoSuchEntry(u64),
    #[error("entry {0} was already voided")]
    AlreadyVoid(u64),
    #[error("only the last handoff can be voided; later handoffs build on entry {0}")]
    NotLast(u64),
    #[error("the handoff time {at} is before the previous handoff at {previous}")]
    BeforePrevious { at: Timestamp, previous: Timestamp },
    #[error(
        "leg {leg} to leg {next} is a segment change, not a handoff: the same carriers ({carriers}) go on from {from_mode} to {to_mode}, so nothing is recorded there; the next handoff is from leg {handoff} ({carriers} → {receivers})"
    )]
    SegmentChange {
        leg: usize,
        next: usize,
        carriers: String,
        from_mode: String,
        to_mode: String,
        /// The leg whose end is the next real custody change.
        handoff: usize,
        receivers: String,
    },
}

/// The state a chain implies: who holds the object per the log, and the plan shift.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custody {
    /// Leg holding the object according to the log (0 before any handoff).
    pub current: usize,
    /// Time of each leg's end as recorded (index = the leg handed on), corrections applied.
    pub ends: Vec<Option<Timestamp>>,
    /// Seq of the live handoff entry that ended each leg.
    handoff_seq: Vec<Option<u64>>,
    /// How the live handoff entry that ended each leg was verified.
    method: Vec<Option<Method>>,
    pub shift_s: i64,
    pub shift_from_leg: usize,
    pub head: Option<(u64, String)>,
    /// Plan hash the chain last committed to.
    pub plan_hash: Option<String>,
}

impl Custody {
    /// Folds entries (already verified) into the state.
    #[must_use]
    pub fn from_entries(n_legs: usize, entries: &[Entry]) -> Self {
        let mut c = Self {
            ends: vec![None; n_legs],
            handoff_seq: vec![None; n_legs],
            method: vec![None; n_legs],
            ..Self::default()
        };
        for e in entries {
            c.apply(e);
        }
        c
    }

    pub fn apply(&mut self, e: &Entry) {
        match e.kind {
            Kind::Genesis | Kind::Plan => self.plan_hash.clone_from(&e.plan_hash),
            Kind::Handoff => {
                if let Some(from) = &e.from
                    && from.leg < self.ends.len()
                {
                    self.ends[from.leg] = Some(e.at);
                    self.handoff_seq[from.leg] = Some(e.seq);
                    if let Some(m) = self.method.get_mut(from.leg) {
                        *m = Some(e.evidence.as_ref().map_or(Method::Operator, |ev| ev.method));
                    }
                    self.current = from.leg + 1;
                }
            }
            Kind::Correction => {
                if let Some(target) = e.corrects
                    && let Some(leg) = self.handoff_seq.iter().position(|s| *s == Some(target))
                {
                    if e.void {
                        self.ends[leg] = None;
                        self.handoff_seq[leg] = None;
                        if let Some(m) = self.method.get_mut(leg) {
                            *m = None;
                        }
                        self.current = leg;
                    } else {
                        self.ends[leg] = Some(e.at);
                    }
                }
            }
            Kind::Shift => {
                self.shift_s += e.shift_s.unwrap_or(0);
                self.shift_from_leg = e.from.as_ref().map_or(0, |h| h.leg);
            }
        }
        self.head = Some((e.seq, e.hash.clone()));
    }

    /// The leg whose end is the next handoff: the end of the stint custody is in (the legs
    /// after `current` with the same carriers are one stint: their boundaries are segment
    /// changes, not handoffs).
    #[must_use]
    pub fn next_from(&self, relay: &Relay) -> usize {
        relay.stint_end(self.current)
    }

    /// Checks that a handoff from `from_leg` at `at` is the next one: the end of the stint
    /// custody is in. A boundary inside that stint (a change of mode by the same carriers) is
    /// refused as a segment change, naming the handoff that is next.
    ///
    /// # Errors
    /// Why it is not.
    pub fn check_next(
        &self,
        relay: &Relay,
        from_leg: usize,
        at: Timestamp,
    ) -> Result<(), HandoffError> {
        let n_legs = relay.legs.len();
        // The last leg's "handoff" is the arrival: after it, nothing is next.
        if self.current >= n_legs {
            return Err(HandoffError::Finished(n_legs.saturating_sub(1)));
        }
        let next = self.next_from(relay);
        let names = |i: usize| {
            relay
                .legs
                .get(i)
                .map_or_else(|| "the finish".to_string(), |l| l.carriers.join(", "))
        };
        if from_leg != next {
            if let Some(leg) = relay.legs.get(from_leg).filter(|l| l.segment)
                && let Some(to) = relay.legs.get(from_leg + 1)
            {
                return Err(HandoffError::SegmentChange {
                    leg: from_leg,
                    next: from_leg + 1,
                    carriers: names(from_leg),
                    from_mode: leg.mode.to_string(),
                    to_mode: to.mode.to_string(),
                    handoff: relay.stint_end(from_leg),
                    receivers: names(relay.stint_end(from_leg) + 1),
                });
            }
            return Err(HandoffError::NotNext {
                current: self.current,
                from: next,
                next: next + 1,
                holders: names(self.current),
            });
        }
        // The previous recorded handoff (a voided one leaves custody inside its giver's stint).
        let previous = self
            .ends
            .get(..self.current)
            .and_then(|e| e.iter().rev().find_map(|t| *t));
        if let Some(prev) = previous
            && at < prev
        {
            return Err(HandoffError::BeforePrevious { at, previous: prev });
        }
        Ok(())
    }

    /// Checks that entry `seq` is a handoff that may be corrected (voiding only the last).
    ///
    /// # Errors
    /// Why it may not.
    pub fn check_correction(&self, seq: u64, void: bool) -> Result<usize, HandoffError> {
        let leg = self
            .handoff_seq
            .iter()
            .position(|s| *s == Some(seq))
            .ok_or(HandoffError::NoSuchEntry(seq))?;
        if void && leg + 1 != self.current {
            return Err(HandoffError::NotLast(seq));
        }
        Ok(leg)
    }

    /// How each recorded handoff was verified: (the leg it ends, its method).
    #[must_use]
    pub fn methods(&self) -> Vec<(usize, Method)> {
        self.method
            .iter()
            .enumerate()
            .filter_map(|(leg, m)| m.map(|m| (leg, m)))
            .collect()
    }

    /// The next entry's seq and prev_hash.
    #[must_use]
    pub fn next_link(&self) -> (u64, String) {
        self.head
            .as_ref()
            .map_or((0, String::new()), |(s, h)| (s + 1, h.clone()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stage, then one carrier on two consecutive legs (a motorcycle, then on foot: one
    /// stint), then another runner.
    pub(crate) const STINT_PLAN: &str = r#"
[event]
id = "t"
name = "T"
[[places]]
id = "a"
at = [2.3500, 48.8500]
timezone = "Europe/Paris"
[[relays]]
id = "r"
[[relays.legs]]
carriers = ["Stage"]
mode = "stage"
place = "a"
start = "2024-08-11T21:00:00Z"
duration = "4m"
[[relays.legs]]
carriers = ["Tom"]
mode = "motorcycle"
route = { points = [[2.3500, 48.8500], [2.4000, 48.8500]] }
duration = "6m"
[[relays.legs]]
carriers = ["Tom"]
mode = "run"
route = { points = [[2.4000, 48.8500], [2.4100, 48.8500]] }
duration = "5m"
[[relays.legs]]
carriers = ["Ann"]
mode = "run"
route = { points = [[2.4100, 48.8500], [2.4200, 48.8500]] }
duration = "5m"
"#;

    pub(crate) fn stint_relay() -> Relay {
        let plan = crate::plan::parse(STINT_PLAN, &crate::plan::NoFiles).unwrap();
        plan.relays[0].clone()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn chain() -> Vec<Entry> {
        let plan_hash = "ab".repeat(32);
        let g = Entry {
            v: VERSION,
            seq: 0,
            kind: Kind::Genesis,
            event: "flag-handover".into(),
            relay: "flag".into(),
            at: ts("2024-08-11T21:05:00Z"),
            recorded_at: ts("2024-08-11T21:05:00Z"),
            from: None,
            to: None,
            position: None,
            evidence: None,
            corrects: None,
            void: false,
            shift_s: None,
            plan_hash: Some(plan_hash.clone()),
            plan_version: Some(1),
            note: None,
            prev_hash: plan_hash,
            hash: String::new(),
        }
        .sealed();
        let h = Entry {
            seq: 1,
            kind: Kind::Handoff,
            at: ts("2024-08-11T21:09:12Z"),
            recorded_at: ts("2024-08-11T21:09:13Z"),
            from: Some(Holder {
                leg: 0,
                carriers: vec!["Karen Bass".into(), "Simone Biles".into()],
            }),
            to: Some(Holder {
                leg: 1,
                carriers: vec!["Tom Cruise".into()],
            }),
            position: Some(Point::from_deg(2.36015, 48.92446)),
            evidence: Some(Evidence {
                method: Method::Operator,
                giver_device: None,
                receiver_device: None,
                distance_m: None,
            }),
            plan_hash: None,
            plan_version: None,
            prev_hash: g.hash.clone(),
            ..g.clone()
        }
        .sealed();
        vec![g, h]
    }

    fn ndjson(entries: &[Entry]) -> String {
        entries.iter().map(|e| e.to_line() + "\n").collect()
    }

    #[test]
    fn a_sealed_chain_verifies_and_folds() {
        let c = chain();
        assert_eq!(verify(&ndjson(&c)), Ok(2));
        let state = Custody::from_entries(3, &c);
        assert_eq!(state.current, 1);
        assert_eq!(state.ends[0], Some(ts("2024-08-11T21:09:12Z")));
        assert_eq!(state.next_link(), (2, c[1].hash.clone()));
    }

    #[test]
    fn one_changed_byte_removal_and_reordering_are_caught() {
        let c = chain();
        let text = ndjson(&c).replace("Tom Cruise", "Tom Cruisf");
        let e = verify(&text).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.reason.contains("hash mismatch"), "{e}");
        let e = verify(&ndjson(&c[1..])).unwrap_err();
        assert!(e.reason.contains("genesis"), "{e}");
        let e = verify(&ndjson(&[c[1].clone(), c[0].clone()])).unwrap_err();
        assert_eq!(e.index, 0);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"é"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn only_the_next_handoff_is_accepted() {
        let relay = stint_relay();
        let state = Custody::from_entries(4, &chain());
        // Custody is with Tom (leg 1), whose stint runs to the end of leg 2.
        assert_eq!(state.next_from(&relay), 2);
        assert!(
            state
                .check_next(&relay, 2, ts("2024-08-11T21:30:00Z"))
                .is_ok()
        );
        assert!(matches!(
            state.check_next(&relay, 0, ts("2024-08-11T21:30:00Z")),
            Err(HandoffError::NotNext {
                current: 1,
                from: 2,
                ..
            })
        ));
        assert!(matches!(
            state.check_next(&relay, 2, ts("2024-08-11T21:00:00Z")),
            Err(HandoffError::BeforePrevious { .. })
        ));
        assert_eq!(state.check_correction(1, true), Ok(0));
        assert_eq!(
            state.check_correction(7, false),
            Err(HandoffError::NoSuchEntry(7))
        );
    }

    #[test]
    fn a_change_of_mode_by_the_same_carrier_is_refused_naming_the_next_handoff() {
        let relay = stint_relay();
        assert!(relay.legs[1].segment && !relay.legs[0].segment && !relay.legs[2].segment);
        assert_eq!((relay.stint_end(1), relay.stint_start(2)), (2, 1));
        let state = Custody::from_entries(4, &chain());
        let e = state
            .check_next(&relay, 1, ts("2024-08-11T21:30:00Z"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                HandoffError::SegmentChange {
                    leg: 1,
                    next: 2,
                    handoff: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("segment change") && text.contains("motorcycle to run"),
            "{text}"
        );
        assert!(text.contains("from leg 2 (Tom → Ann)"), "{text}");
        // Before any handoff: the stage's end is next, and the segment is refused all the same.
        let fresh = Custody::from_entries(4, &chain()[..1]);
        assert_eq!(fresh.next_from(&relay), 0);
        assert!(matches!(
            fresh.check_next(&relay, 1, ts("2024-08-11T21:30:00Z")),
            Err(HandoffError::SegmentChange { .. })
        ));
    }

    #[test]
    fn an_old_log_that_recorded_a_same_carrier_step_still_folds_to_the_next_handoff() {
        let relay = stint_relay();
        let mut c = chain();
        let prev = c[1].clone();
        let mut old = prev.clone();
        old.seq = 2;
        old.at = ts("2024-08-11T21:15:00Z");
        old.from = Some(Holder {
            leg: 1,
            carriers: vec!["Tom".into()],
        });
        old.to = Some(Holder {
            leg: 2,
            carriers: vec!["Tom".into()],
        });
        old.prev_hash = prev.hash.clone();
        c.push(old.sealed());
        assert_eq!(verify(&ndjson(&c)), Ok(3));
        let state = Custody::from_entries(4, &c);
        assert_eq!((state.current, state.next_from(&relay)), (2, 2));
        assert!(
            state
                .check_next(&relay, 2, ts("2024-08-11T21:30:00Z"))
                .is_ok()
        );
    }
}
