//! The plan as written: serde types mirroring the TOML, every value wrapped in `Spanned` so a
//! problem can point at the exact line and column. Nothing is checked here beyond types and
//! unknown keys; `build` turns this into a validated `Plan`.

use serde::Deserialize;
use toml::Spanned;

pub type Sp<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub event: Sp<RawEvent>,
    #[serde(default)]
    pub places: Vec<Sp<RawPlace>>,
    #[serde(default)]
    pub milestones: Vec<Sp<RawMilestone>>,
    #[serde(default)]
    pub relays: Vec<Sp<RawRelay>>,
    #[serde(default)]
    pub courses: Vec<Sp<RawCourse>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub id: Sp<String>,
    pub name: Sp<String>,
    /// Zone for times that belong to no place (date-only milestones without a place).
    pub timezone: Option<Sp<String>>,
    /// Spectators see positions this much later (e.g. "30s"); organisers see them live.
    pub public_delay: Option<Sp<String>>,
    /// A carrier who has not reported for this long is flagged silent (default 5m).
    pub silent_after: Option<Sp<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlace {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    pub at: Sp<Vec<Sp<f64>>>,
    pub timezone: Sp<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMilestone {
    pub name: Sp<String>,
    pub date: Option<Sp<String>>,
    pub at: Option<Sp<String>>,
    pub place: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    pub object: Option<Sp<String>>,
    pub course: Option<Sp<String>>,
    pub start: Option<Sp<String>>,
    pub carriers: Option<Sp<Vec<Sp<String>>>>,
    pub legs: Option<Sp<Vec<Sp<RawLeg>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCourse {
    pub id: Sp<String>,
    pub name: Option<Sp<String>>,
    #[serde(default)]
    pub legs: Vec<Sp<RawLeg>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLeg {
    pub name: Option<Sp<String>>,
    pub carriers: Option<Sp<Vec<Sp<String>>>>,
    pub mode: Sp<String>,
    pub place: Option<Sp<String>>,
    pub route: Option<Sp<RawRoute>>,
    pub devices: Option<Sp<Vec<Sp<String>>>>,
    pub start: Option<Sp<String>>,
    pub duration: Option<Sp<String>>,
    pub end: Option<Sp<String>>,
    pub exchange_radius_m: Option<Sp<f64>>,
    pub note: Option<Sp<String>>,
}

/// Exactly one of the three forms: `file`, `points`, or `from` + `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub file: Option<Sp<String>>,
    pub points: Option<Sp<Vec<Sp<Vec<f64>>>>>,
    pub from: Option<Sp<String>>,
    pub to: Option<Sp<String>>,
}
