//! The relay plan: what an event is (places, milestones, relays of legs, courses for race mode)
//! once it has been read and checked. [`parse`] is the only way in: it reads the TOML (keeping
//! every value's position), resolves route files through [`RouteFiles`], and either returns a
//! `Plan` in which every invariant holds, or every problem it found, each with its position.

mod build;
pub mod mode;
pub mod problem;
mod raw;
pub mod routefile;

use crate::geodesic::Coord;
use crate::route::Route;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};
use std::sync::Arc;

pub use mode::{Locomotion, Mode, PaceClass};
pub use problem::{Problem, Problems};
pub use routefile::{NoFiles, RouteFiles};

/// A validated plan. Times are UTC instants; zones are kept as IANA names for display.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub event: Event,
    pub places: Vec<Place>,
    pub milestones: Vec<Milestone>,
    pub courses: Vec<Course>,
    pub relays: Vec<Relay>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// IANA zone for times that belong to no place.
    pub timezone: String,
    /// Spectators see positions this many milliseconds late.
    pub public_delay_ms: i64,
    /// A tracked carrier silent this long raises an alert.
    pub silent_after_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Place {
    pub id: String,
    pub name: String,
    pub at: Coord,
    pub timezone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    pub name: String,
    /// The instant counted down to (start of the day in the place's zone for a date-only one).
    pub at: Timestamp,
    /// Set when the plan gave only a date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<jiff::civil::Date>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    pub timezone: String,
}

/// Legs shared by many relays (race mode): geometry and expected durations, no carriers.
#[derive(Debug, Clone, Serialize)]
pub struct Course {
    pub id: String,
    pub name: String,
    pub legs: Vec<CourseLeg>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CourseLeg {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Carriers for this leg in every team (else the team's carriers in rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carriers: Option<Vec<String>>,
    pub mode: Mode,
    pub geometry: Geometry,
    /// [`Leg::flat_m`], for the relays that run this leg of the course.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flat_m: Option<Vec<f64>>,
    pub duration_ms: i64,
    pub exchange_radius_m: f64,
}

/// One chain of custody of one object.
#[derive(Debug, Clone, Serialize)]
pub struct Relay {
    pub id: String,
    pub name: String,
    pub object: String,
    /// Race mode: the course whose legs this relay runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    pub legs: Vec<Leg>,
}

impl Relay {
    #[must_use]
    pub fn start(&self) -> Option<Timestamp> {
        self.legs.first().map(|l| l.start)
    }

    #[must_use]
    pub fn end(&self) -> Option<Timestamp> {
        self.legs.last().map(|l| l.end)
    }

    /// The last leg of the stint leg `i` is part of: consecutive legs with the same carriers
    /// (Tom Cruise's motorcycle, flight and parachute) are one stint of custody, and only the
    /// end of a stint is a handoff. `i` itself when its end is a handoff (or the finish).
    #[must_use]
    pub fn stint_end(&self, i: usize) -> usize {
        let mut k = i;
        while self.legs.get(k).is_some_and(|l| l.segment) {
            k += 1;
        }
        k
    }

    /// The first leg of the stint leg `i` is part of.
    #[must_use]
    pub fn stint_start(&self, i: usize) -> usize {
        let mut k = i;
        while k > 0 && self.legs.get(k - 1).is_some_and(|l| l.segment) {
            k -= 1;
        }
        k
    }
}

/// Whether two carrier groups are the same people (in any order): a leg from one to the other
/// is a segment change, not a handoff.
#[must_use]
pub fn same_carriers(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    !a.is_empty() && a == b
}

/// Marks each leg whose next leg has the same carriers ([`Leg::segment`]).
pub(crate) fn mark_segments(legs: &mut [Leg]) {
    for i in 0..legs.len() {
        let same = legs
            .get(i + 1)
            .is_some_and(|n| same_carriers(&legs[i].carriers, &n.carriers));
        legs[i].segment = same;
    }
}

/// One carrier group holding the object, with where and when.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    /// 0-based position in the relay.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub carriers: Vec<String>,
    pub mode: Mode,
    /// Devices named in the plan for this leg (more can be bound to carriers at run time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Race mode: the index of the course leg this is (the geometry is the course's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_leg: Option<usize>,
    #[serde(skip_serializing_if = "Geometry::is_from_course")]
    pub geometry: Geometry,
    /// The leg's terrain as the pages need it to time a point of it as the engine does: the
    /// flat-equivalent distance from the leg's start to each point of its route
    /// ([`terrain_profile`]). Absent where time goes evenly with distance (no elevation, or a
    /// mode slopes do not slow), and on a race's legs, whose course leg has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flat_m: Option<Vec<f64>>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub exchange_radius_m: f64,
    /// IANA zone where the leg starts, and where it ends (they differ for a flight).
    pub start_zone: String,
    pub end_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The next leg has the same carriers: this leg's end is a segment change (a change of
    /// mode within one stint of custody), not a handoff; nothing is verified or recorded there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub segment: bool,
}

impl Leg {
    #[must_use]
    pub fn duration_ms(&self) -> i64 {
        self.end
            .duration_since(self.start)
            .as_millis()
            .try_into()
            .unwrap_or(i64::MAX)
    }

    /// Where the object is handed on: the end of the route, or the stage's place.
    #[must_use]
    pub fn exchange_point(&self) -> Coord {
        self.geometry.end()
    }

    #[must_use]
    pub fn length_m(&self) -> f64 {
        self.geometry.length_m()
    }

    /// The share (0–1) of the leg's time spent by `along_m` metres along it, as the pages
    /// reckon it (`timeShare` in `web/src/js/plan.js`) from a terrain profile `flat_m` (the leg's
    /// [`Self::flat_m`], or a race leg's course leg's): its flat-equivalent distance,
    /// interpolated between the route's points, over the whole leg's. By distance without one.
    #[must_use]
    pub fn time_share(&self, flat_m: Option<&[f64]>, along_m: f64) -> f64 {
        let len = self.length_m();
        let a = along_m.clamp(0.0, len.max(0.0));
        let cum = self.geometry.route().map(|r| r.cumulative_m());
        let profile = cum.zip(flat_m).filter(|(cum, flat)| {
            cum.len() >= 2 && flat.len() == cum.len() && flat.last().is_some_and(|&t| t > 0.0)
        });
        let Some((cum, flat)) = profile else {
            return if len > 0.0 { a / len } else { 0.0 };
        };
        let total = flat[flat.len() - 1];
        let i = cum.partition_point(|&c| c < a).clamp(1, cum.len() - 1);
        let span = (cum[i] - cum[i - 1]).max(1e-9);
        let f = flat[i - 1] + (flat[i] - flat[i - 1]) * ((a - cum[i - 1]) / span).clamp(0.0, 1.0);
        (f / total).clamp(0.0, 1.0)
    }
}

/// The flat-equivalent distance (m, to a decimetre) from the start of a route to each of its
/// points ([`Route::flat_equivalent_m`]), for a leg of `mode` on `geometry`: what the pages time
/// a point of a leg by ([`Leg::flat_m`]). `None` where it would be the plain distance: no route,
/// no elevation, or a mode whose pace slopes do not change.
#[must_use]
pub fn terrain_profile(mode: Mode, geometry: &Geometry) -> Option<Vec<f64>> {
    let route = geometry.route().filter(|r| r.has_elevation())?;
    let how = mode.locomotion()?;
    Some(
        route
            .cumulative_m()
            .iter()
            .map(|&a| (route.flat_equivalent_m(how, 0.0, a) * 10.0).round() / 10.0)
            .collect(),
    )
}

/// Where a leg happens: along a route or at one place.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Geometry {
    Route {
        #[serde(serialize_with = "serialize_route")]
        route: Arc<Route>,
        /// Shared with a course (race mode): the JSON gives it once, under `courses`.
        #[serde(skip)]
        from_course: bool,
    },
    Place {
        place: String,
        at: Coord,
    },
}

impl Geometry {
    #[must_use]
    pub const fn is_from_course(&self) -> bool {
        matches!(
            self,
            Self::Route {
                from_course: true,
                ..
            }
        )
    }

    #[must_use]
    pub fn start(&self) -> Coord {
        match self {
            Self::Route { route, .. } => route.start(),
            Self::Place { at, .. } => *at,
        }
    }

    #[must_use]
    pub fn end(&self) -> Coord {
        match self {
            Self::Route { route, .. } => route.end(),
            Self::Place { at, .. } => *at,
        }
    }

    #[must_use]
    pub fn length_m(&self) -> f64 {
        match self {
            Self::Route { route, .. } => route.length_m(),
            Self::Place { .. } => 0.0,
        }
    }

    #[must_use]
    pub fn route(&self) -> Option<&Arc<Route>> {
        match self {
            Self::Route { route, .. } => Some(route),
            Self::Place { .. } => None,
        }
    }
}

fn serialize_route<S: Serializer>(route: &Arc<Route>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Route", 2)?;
    st.serialize_field("length_m", &route.length_m())?;
    let pts: Vec<[f64; 2]> = route.points().iter().map(|c| [c.lon, c.lat]).collect();
    st.serialize_field("points", &pts)?;
    st.end()
}

impl Plan {
    /// Carrier names that appear in more than one relay (race mode: every team has a
    /// "Runner 1"), with how many relays each is in, most first. A device of such a carrier is
    /// registered with its relay.
    #[must_use]
    pub fn shared_carriers(&self) -> Vec<(String, usize)> {
        let mut relays_of: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &self.relays {
            let mut names: Vec<&str> = r
                .legs
                .iter()
                .flat_map(|l| l.carriers.iter().map(String::as_str))
                .collect();
            names.sort_unstable();
            names.dedup();
            for n in names {
                *relays_of.entry(n).or_default() += 1;
            }
        }
        let mut shared: Vec<(String, usize)> = relays_of
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(c, n)| (c.to_string(), n))
            .collect();
        shared.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        shared
    }

    #[must_use]
    pub fn relay(&self, id: &str) -> Option<&Relay> {
        self.relays.iter().find(|r| r.id == id)
    }

    #[must_use]
    pub fn place(&self, id: &str) -> Option<&Place> {
        self.places.iter().find(|p| p.id == id)
    }

    /// Earliest planned start over all relays.
    #[must_use]
    pub fn start(&self) -> Option<Timestamp> {
        self.relays.iter().filter_map(Relay::start).min()
    }

    /// Latest planned end over all relays.
    #[must_use]
    pub fn end(&self) -> Option<Timestamp> {
        self.relays.iter().filter_map(Relay::end).max()
    }
}

/// The zone for an IANA name known to be valid (checked by `parse`); UTC otherwise.
#[must_use]
pub fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

/// Reads and checks a plan.
///
/// `files` resolves `route = { file = … }` references relative to the plan's folder.
///
/// # Errors
/// Every problem found, in source order, each with the span of the offending value.
pub fn parse(src: &str, files: &dyn RouteFiles) -> Result<Plan, Problems> {
    build::build(src, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    /// A walk up a steady 10 % climb for 10 km, then 10 km on the flat at the top (long enough
    /// that smoothing the elevation over a few hundred metres rounds only a sliver of the
    /// brow); then a ride on a route with no elevation.
    fn climb_then_flat() -> Plan {
        let deg_per_m = 1.0 / 111_319.5;
        let walk: Vec<String> = (0..=20)
            .map(|i| {
                let x = f64::from(i) * 1000.0;
                format!("[{}, 0.0, {}]", x * deg_per_m, (x.min(10_000.0)) * 0.1)
            })
            .collect();
        let toml = format!(
            "[event]\nid = \"t\"\nname = \"t\"\n[[relays]]\nid = \"r\"\n\
             [[relays.legs]]\ncarriers = [\"A\"]\nmode = \"walk\"\nroute = {{ points = [{}] }}\nduration = \"4h\"\nstart = \"2024-08-11T20:00:00Z\"\n\
             [[relays.legs]]\ncarriers = [\"B\"]\nmode = \"bike\"\nroute = {{ points = [[{}, 0.0], [{}, 0.0]] }}\nduration = \"1h\"\n",
            walk.join(", "),
            20_000.0 * deg_per_m,
            50_000.0 * deg_per_m,
        );
        parse(&toml, &NoFiles).expect("plan parses")
    }

    #[test]
    fn a_point_of_a_leg_is_timed_by_its_terrain_where_the_route_has_one() {
        let plan = climb_then_flat();
        let (walk, ride) = (&plan.relays[0].legs[0], &plan.relays[0].legs[1]);
        let flat = walk
            .flat_m
            .as_deref()
            .expect("a walk with elevation has a profile");
        assert_eq!(flat.len(), 21, "one distance a route point");
        // Tobler: a 10 % climb takes 1.42 × as long as the flat, so the climb is 1.42 / 2.42 of
        // the walk's time, not half of it.
        let cost = crate::eta::slope_cost(Locomotion::Foot, 0.1);
        let climb = cost / (cost + 1.0);
        let half = walk.time_share(Some(flat), 10_000.0);
        assert!((half - climb).abs() < 0.01, "{half} against {climb}");
        assert!(
            (walk.time_share(Some(flat), 5000.0) - climb / 2.0).abs() < 0.01,
            "even within the climb"
        );
        assert!((walk.time_share(Some(flat), 15_000.0) - (1.0 + climb) / 2.0).abs() < 0.01);
        assert!((walk.time_share(Some(flat), 50_000.0) - 1.0).abs() < 1e-12);
        // Without a profile (or with a route that has no elevation), time goes with distance.
        assert!((walk.time_share(None, walk.length_m() / 2.0) - 0.5).abs() < 1e-9);
        assert!(ride.flat_m.is_none());
        let quarter = ride.length_m() / 4.0;
        assert!((ride.time_share(ride.flat_m.as_deref(), quarter) - 0.25).abs() < 1e-9);
        // The pages get the profile with the plan's leg, and nothing for the ride.
        let json = serde_json::to_value(&plan).expect("plan serialises");
        let legs = &json["relays"][0]["legs"];
        assert_eq!(legs[0]["flat_m"].as_array().map(Vec::len), Some(21));
        assert!(legs[1].get("flat_m").is_none(), "{}", legs[1]);
    }

    #[test]
    fn the_same_people_in_any_order_are_one_stint_and_nobody_is_nobody() {
        assert!(same_carriers(&names(&["A", "B"]), &names(&["B", "A"])));
        assert!(same_carriers(&names(&["Tom"]), &names(&["Tom", "Tom"])));
        assert!(!same_carriers(&names(&["A", "B"]), &names(&["A"])));
        assert!(
            !same_carriers(&names(&[]), &names(&[])),
            "course legs without carriers"
        );
    }
}
