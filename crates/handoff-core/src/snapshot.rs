//! The live view as spectators and operators read it (`GET …/live`, the SSE `snapshot`): per
//! relay the current leg, holders, last position with its age, progress, off-route and stale
//! flags, and the ETA of every remaining handoff; and the countdowns to the milestones.

use crate::plan::{Leg, Mode, Plan, Relay};
use crate::track::Fix;
use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub event: String,
    pub name: String,
    pub now: Timestamp,
    pub relays: Vec<RelayView>,
    pub countdowns: Vec<CountdownView>,
}

impl Snapshot {
    #[must_use]
    pub fn new(plan: &Plan, now: Timestamp, relays: Vec<RelayView>) -> Self {
        let countdowns = crate::schedule::countdowns(plan, now)
            .into_iter()
            .map(|c| CountdownView {
                name: c.name,
                at: c.at,
                timezone: c.timezone,
                remaining_s: c.remaining.as_secs(),
            })
            .collect();
        Self {
            event: plan.event.id.clone(),
            name: plan.event.name.clone(),
            now,
            relays,
            countdowns,
        }
    }

    #[must_use]
    pub fn relay(&self, id: &str) -> Option<&RelayView> {
        self.relays.iter().find(|r| r.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountdownView {
    pub name: String,
    pub at: Timestamp,
    pub timezone: String,
    pub remaining_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayStatus {
    Planned,
    Running,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayView {
    pub id: String,
    pub name: String,
    pub object: String,
    pub status: RelayStatus,
    /// Index of the leg holding the object (absent before the start and after the finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_leg: Option<usize>,
    pub holders: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The holder's last public position (none while nobody holds it or it is not yet public).
    pub position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub off_route: bool,
    pub overdue: bool,
    /// The holder of a tracked leg has not reported for the event's `silent_after`.
    pub silent: bool,
    /// The ETA of the finish (the last leg's end).
    pub eta_finish: Timestamp,
    pub planned_finish: Timestamp,
    pub legs: Vec<LegView>,
}

impl RelayView {
    #[must_use]
    pub fn new(
        relay: &Relay,
        current: usize,
        legs: Vec<LegView>,
        position: Option<Position>,
        silent: bool,
        now: Timestamp,
    ) -> Self {
        let cur = legs.get(current).filter(|l| l.status == LegStatus::Current);
        let status = if current >= relay.legs.len() {
            RelayStatus::Finished
        } else if cur.is_some() {
            RelayStatus::Running
        } else {
            RelayStatus::Planned
        };
        let eta_finish = legs.last().map_or(now, |l| l.eta_end);
        let planned_finish = legs.last().map_or(now, |l| l.planned_end);
        Self {
            id: relay.id.clone(),
            name: relay.name.clone(),
            object: relay.object.clone(),
            status,
            current_leg: cur.map(|l| l.index),
            holders: cur.map(|l| l.carriers.clone()).unwrap_or_default(),
            mode: cur.map(|l| l.mode),
            position: if cur.is_some() { position } else { None },
            progress: cur.map(|l| Progress {
                along_m: l.along_m,
                length_m: l.length_m,
                fraction: l.fraction(),
            }),
            off_route: cur.is_some_and(|l| l.off_route),
            overdue: cur.is_some_and(|l| l.overdue(now)),
            silent: cur.is_some() && silent,
            eta_finish,
            planned_finish,
            legs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    pub along_m: f64,
    pub length_m: f64,
    pub fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub t: Timestamp,
    pub lon: f64,
    pub lat: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_m: Option<f64>,
    pub age_s: i64,
    pub stale: bool,
}

impl Position {
    #[must_use]
    pub fn new(fix: Fix, now: Timestamp, stale_ms: i64) -> Self {
        let age_ms = (now.as_millisecond() - fix.t.as_millisecond()).max(0);
        Self {
            t: fix.t,
            lon: fix.lon,
            lat: fix.lat,
            acc_m: fix.acc_m,
            age_s: age_ms / 1000,
            stale: age_ms > stale_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LegStatus {
    Done,
    Current,
    Upcoming,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegView {
    pub index: usize,
    pub carriers: Vec<String>,
    pub mode: Mode,
    pub status: LegStatus,
    pub planned_start: Timestamp,
    pub planned_end: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_start: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_end: Option<Timestamp>,
    /// Predicted (or, once done, actual) start and end.
    pub eta_start: Timestamp,
    pub eta_end: Timestamp,
    /// ETA minus plan at the leg's end, seconds (positive = late).
    pub delta_s: i64,
    pub along_m: f64,
    pub length_m: f64,
    pub off_route: bool,
    /// Done, and its end is a verified handoff in the custody log (not only inferred).
    pub verified: bool,
}

impl LegView {
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        leg: &Leg,
        planned_start: Timestamp,
        planned_end: Timestamp,
        actual_start: Option<Timestamp>,
        actual_end: Option<Timestamp>,
        eta_start: Timestamp,
        eta_end: Timestamp,
        status: LegStatus,
        along_m: f64,
        off_route: bool,
        verified: bool,
    ) -> Self {
        Self {
            index: leg.index,
            carriers: leg.carriers.clone(),
            mode: leg.mode,
            status,
            planned_start,
            planned_end,
            actual_start,
            actual_end,
            eta_start,
            eta_end,
            delta_s: eta_end.duration_since(planned_end).as_secs(),
            along_m: if status == LegStatus::Done {
                leg.length_m()
            } else {
                along_m
            },
            length_m: leg.length_m(),
            off_route: status == LegStatus::Current && off_route,
            verified: status == LegStatus::Done && verified,
        }
    }

    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.length_m > 0.0 {
            (self.along_m / self.length_m).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Running past its planned end by more than the slack (a fifth of the leg, 2 to 15 min).
    #[must_use]
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.status == LegStatus::Current
            && overdue(
                self.planned_start,
                self.planned_end,
                self.actual_start.unwrap_or(self.planned_start),
                now,
            )
    }
}

/// A leg that began at `start` is overdue once its planned duration plus a slack (a fifth of
/// it, between 2 and 15 minutes) has passed.
#[must_use]
pub fn overdue(
    planned_start: Timestamp,
    planned_end: Timestamp,
    start: Timestamp,
    now: Timestamp,
) -> bool {
    let planned_ms = planned_end.duration_since(planned_start).as_millis();
    let slack_ms = (planned_ms / 5).clamp(120_000, 900_000);
    let due_ms = i128::from(start.as_millisecond()) + planned_ms + slack_ms;
    i128::from(now.as_millisecond()) > due_ms
}
