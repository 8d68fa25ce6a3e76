//! From the written plan to a checked `Plan`: every rule `plan check` enforces lives here, and
//! every problem is collected (not just the first) with the span of the value to change.

use super::raw::{RawLeg, RawPlan, RawRoute, Sp};
use super::routefile::{RouteFiles, parse_route_file, safe_relative};
use super::{
    Course, CourseLeg, Event, Geometry, Leg, Milestone, Mode, Place, Plan, Problem, Problems,
    Relay, terrain_profile,
};
use crate::geodesic::{Coord, densify, distance_m};
use crate::route::{Route, RouteError};
use crate::schedule::{fmt_distance, fmt_duration};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ZonedDateTime};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

/// A tracked carrier silent this long is flagged, unless the plan says otherwise.
const DEFAULT_SILENT_AFTER_MS: i64 = 5 * 60_000;
/// Great-circle legs (`route = { from, to }`) get a vertex at least this often.
const GEODESIC_STEP_M: f64 = 20_000.0;
/// A place counts as "where a route starts" for its zone within this distance.
const ZONE_PLACE_RADIUS_M: f64 = 100_000.0;

struct Cx<'a> {
    problems: Vec<Problem>,
    files: &'a dyn RouteFiles,
    places: HashMap<String, Place>,
    event_zone: String,
}

impl Cx<'_> {
    fn err(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(Some(span), field, message));
    }
}

pub(super) fn build(src: &str, files: &dyn RouteFiles) -> Result<Plan, Problems> {
    let (raw, unknown_keys): (RawPlan, _) = super::raw::read(src).map_err(|p| Problems(vec![p]))?;
    let mut cx = Cx {
        problems: unknown_keys,
        files,
        places: HashMap::new(),
        event_zone: "UTC".into(),
    };

    let event = build_event(&mut cx, &raw);
    let mut places = Vec::new();
    for (i, p) in raw.places.iter().enumerate() {
        if let Some(place) = build_place(&mut cx, p, i) {
            places.push(place);
        }
    }
    let milestones = raw
        .milestones
        .iter()
        .enumerate()
        .filter_map(|(i, m)| build_milestone(&mut cx, m, i))
        .collect();

    let mut courses: Vec<Course> = Vec::new();
    let mut course_ids = HashSet::new();
    for (ci, c) in raw.courses.iter().enumerate() {
        let field = format!("courses[{ci}]");
        check_id(&mut cx, &c.get_ref().id, &format!("{field}.id"), "course");
        if !course_ids.insert(c.get_ref().id.get_ref().clone()) {
            cx.err(
                c.get_ref().id.span(),
                &format!("{field}.id"),
                format!(
                    "duplicate course id `{}`; each course needs its own id",
                    c.get_ref().id.get_ref()
                ),
            );
        }
        if c.get_ref().legs.is_empty() {
            cx.err(
                c.span(),
                &field,
                format!(
                    "course `{}` has no legs; add [[courses.legs]] tables",
                    c.get_ref().id.get_ref()
                ),
            );
        }
        let mut legs: Vec<CourseLeg> = Vec::new();
        for (li, l) in c.get_ref().legs.iter().enumerate() {
            let lf = format!("{field}.legs[{li}]");
            let Some((mode, geometry)) = build_geometry(&mut cx, l, &lf) else {
                continue;
            };
            let rl = l.get_ref();
            if let Some(st) = &rl.start {
                cx.err(st.span(), &format!("{lf}.start"), "a course leg has no fixed time (each team starts at its own `start`); remove `start`");
            }
            let carriers = rl
                .carriers
                .as_ref()
                .map(|c| check_carriers(&mut cx, c, &format!("{lf}.carriers")));
            let duration = match (&rl.duration, &rl.end) {
                (Some(d), None) => parse_duration(&mut cx, d, &format!("{lf}.duration")),
                (None, None) => default_duration(&mut cx, mode, &geometry, l.span(), &lf),
                (_, Some(e)) => {
                    cx.err(e.span(), &format!("{lf}.end"), "a course leg has no fixed time; give its expected `duration` instead of `end`");
                    None
                }
            };
            let Some(duration) = duration else { continue };
            let radius = exchange_radius(&mut cx, rl, mode, &lf);
            check_speed(
                &mut cx,
                mode,
                geometry.length_m(),
                duration,
                rl,
                l.span(),
                &lf,
                li,
            );
            if let Some(prev) = legs.last() {
                check_gap(
                    &mut cx,
                    prev.geometry.end(),
                    prev.exchange_radius_m,
                    li,
                    &geometry,
                    rl,
                    l.span(),
                    &lf,
                );
            }
            legs.push(CourseLeg {
                name: rl.name.as_ref().map(|n| n.get_ref().clone()),
                carriers,
                mode,
                flat_m: terrain_profile(mode, &geometry),
                geometry,
                duration_ms: duration.as_millis().try_into().unwrap_or(i64::MAX),
                exchange_radius_m: radius,
            });
        }
        courses.push(Course {
            id: c.get_ref().id.get_ref().clone(),
            name: c
                .get_ref()
                .name
                .as_ref()
                .map_or_else(|| c.get_ref().id.get_ref().clone(), |n| n.get_ref().clone()),
            legs,
        });
    }

    let mut relays = Vec::new();
    let mut relay_ids = HashSet::new();
    for (ri, r) in raw.relays.iter().enumerate() {
        let field = format!("relays[{ri}]");
        let rr = r.get_ref();
        check_id(&mut cx, &rr.id, &format!("{field}.id"), "relay");
        if !relay_ids.insert(rr.id.get_ref().clone()) {
            cx.err(
                rr.id.span(),
                &format!("{field}.id"),
                format!(
                    "duplicate relay id `{}`; each relay needs its own id",
                    rr.id.get_ref()
                ),
            );
        }
        let legs = match (&rr.course, &rr.legs) {
            (Some(course), None) => race_legs(
                &mut cx,
                r,
                course,
                &courses,
                raw.courses
                    .iter()
                    .map(|c| c.get_ref().id.get_ref().as_str())
                    .collect(),
                &field,
            ),
            (None, Some(legs)) => {
                if let Some(c) = &rr.carriers {
                    cx.err(c.span(), &format!("{field}.carriers"), "relay-level `carriers` are for race relays (`course = \"…\"`); name the carriers on each leg");
                }
                relay_legs(&mut cx, r, legs, &field)
            }
            (Some(course), Some(_)) => {
                cx.err(
                    course.span(),
                    &format!("{field}.course"),
                    "a relay runs either a `course` or its own `legs`, not both",
                );
                Vec::new()
            }
            (None, None) => {
                cx.err(
                    rr.id.span(),
                    &field,
                    format!(
                        "relay `{}` has no legs; add [[relays.legs]] tables or `course = \"…\"`",
                        rr.id.get_ref()
                    ),
                );
                Vec::new()
            }
        };
        let mut legs = legs;
        super::mark_segments(&mut legs);
        relays.push(Relay {
            id: rr.id.get_ref().clone(),
            name: rr
                .name
                .as_ref()
                .map_or_else(|| rr.id.get_ref().clone(), |n| n.get_ref().clone()),
            object: rr
                .object
                .as_ref()
                .map_or_else(String::new, |o| o.get_ref().clone()),
            course: rr.course.as_ref().map(|c| c.get_ref().clone()),
            legs,
        });
    }

    if cx.problems.is_empty() {
        Ok(Plan {
            event,
            places,
            milestones,
            courses,
            relays,
        })
    } else {
        cx.problems
            .sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
        Err(Problems(cx.problems))
    }
}

/// The TOML parser's messages, with its trailing newline trimmed.
fn check_id(cx: &mut Cx, id: &Sp<String>, field: &str, what: &str) {
    let s = id.get_ref();
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        cx.err(
            id.span(),
            field,
            format!("{what} id `{s}` must be 1 to 64 characters of a-z, 0-9 and -"),
        );
    }
}

fn check_zone(cx: &mut Cx, z: &Sp<String>, field: &str) -> bool {
    if TimeZone::get(z.get_ref()).is_ok() {
        true
    } else {
        cx.err(z.span(), field, format!("unknown time zone `{}`; use an IANA name such as Europe/Paris or America/Los_Angeles", z.get_ref()));
        false
    }
}

fn build_event(cx: &mut Cx, raw: &RawPlan) -> Event {
    let e = raw.event.get_ref();
    check_id(cx, &e.id, "event.id", "event");
    if e.name.get_ref().trim().is_empty() {
        cx.err(
            e.name.span(),
            "event.name",
            "event name is empty; give the name spectators will see",
        );
    }
    let timezone = match &e.timezone {
        Some(z) if check_zone(cx, z, "event.timezone") => z.get_ref().clone(),
        _ => "UTC".to_string(),
    };
    cx.event_zone.clone_from(&timezone);
    let public_delay_ms = e
        .public_delay
        .as_ref()
        .and_then(|d| parse_duration(cx, d, "event.public_delay"))
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(i64::MAX));
    let silent_after_ms = e
        .silent_after
        .as_ref()
        .and_then(|d| parse_duration(cx, d, "event.silent_after"))
        .map_or(DEFAULT_SILENT_AFTER_MS, |d| {
            d.as_millis().try_into().unwrap_or(i64::MAX)
        });
    Event {
        id: e.id.get_ref().clone(),
        name: e.name.get_ref().clone(),
        description: e.description.clone(),
        timezone,
        public_delay_ms,
        silent_after_ms,
    }
}

fn build_place(cx: &mut Cx, p: &Sp<super::raw::RawPlace>, i: usize) -> Option<Place> {
    let field = format!("places[{i}]");
    let rp = p.get_ref();
    check_id(cx, &rp.id, &format!("{field}.id"), "place");
    if cx.places.contains_key(rp.id.get_ref()) {
        cx.err(
            rp.id.span(),
            &format!("{field}.id"),
            format!(
                "duplicate place id `{}`; each place needs its own id",
                rp.id.get_ref()
            ),
        );
        return None;
    }
    // A bad coordinate is reported once; the place still exists for the legs that use it.
    let at = coord_from(cx, &rp.at, &format!("{field}.at")).unwrap_or(Coord::new(0.0, 0.0));
    let zone_ok = check_zone(cx, &rp.timezone, &format!("{field}.timezone"));
    let place = Place {
        id: rp.id.get_ref().clone(),
        name: rp
            .name
            .as_ref()
            .map_or_else(|| rp.id.get_ref().clone(), |n| n.get_ref().clone()),
        at,
        timezone: if zone_ok {
            rp.timezone.get_ref().clone()
        } else {
            "UTC".into()
        },
    };
    cx.places.insert(place.id.clone(), place.clone());
    Some(place)
}

/// `[lon, lat]` or `[lon, lat, ele]`, each number checked with its own position.
fn coord_from(cx: &mut Cx, at: &Sp<Vec<Sp<f64>>>, field: &str) -> Option<Coord> {
    let v = at.get_ref();
    if !(2..=3).contains(&v.len()) {
        cx.err(
            at.span(),
            field,
            format!(
                "expected [lon, lat] (2 numbers), found {} number{}",
                v.len(),
                if v.len() == 1 { "" } else { "s" }
            ),
        );
        return None;
    }
    let (lon, lat) = (*v[0].get_ref(), *v[1].get_ref());
    let mut ok = true;
    if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        cx.err(v[0].span(), &format!("{field}[0]"), format!("longitude {lon} is out of range; it must be in [-180, 180] (coordinates are [lon, lat], as in GeoJSON)"));
        ok = false;
    }
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
        cx.err(v[1].span(), &format!("{field}[1]"), format!("latitude {lat} is out of range; it must be in [-90, 90] (coordinates are [lon, lat], as in GeoJSON)"));
        ok = false;
    }
    ok.then(|| Coord::with_ele(lon, lat, v.get(2).map(|e| *e.get_ref())))
}

fn build_milestone(cx: &mut Cx, m: &Sp<super::raw::RawMilestone>, i: usize) -> Option<Milestone> {
    let field = format!("milestones[{i}]");
    let rm = m.get_ref();
    let place = match &rm.place {
        Some(p) => {
            if let Some(pl) = cx.places.get(p.get_ref()) {
                Some(pl.clone())
            } else {
                cx.err(
                    p.span(),
                    &format!("{field}.place"),
                    unknown_place_msg(cx, p.get_ref()),
                );
                return None;
            }
        }
        None => None,
    };
    let zone_name = place
        .as_ref()
        .map_or_else(|| cx.event_zone.clone(), |p| p.timezone.clone());
    let (at, date) = match (&rm.date, &rm.at) {
        (Some(d), None) => match d.get_ref().parse::<jiff::civil::Date>() {
            Ok(date) => match date.to_zoned_datetime(super::zone(&zone_name)) {
                Ok(z) => (z.timestamp(), Some(date)),
                Err(e) => {
                    cx.err(
                        d.span(),
                        &format!("{field}.date"),
                        format!("date `{}` does not exist in {zone_name}: {e}", d.get_ref()),
                    );
                    return None;
                }
            },
            Err(e) => {
                cx.err(
                    d.span(),
                    &format!("{field}.date"),
                    format!("`{}` is not a date like 2028-07-14 ({e})", d.get_ref()),
                );
                return None;
            }
        },
        (None, Some(a)) => (parse_instant(cx, a, &format!("{field}.at"))?.0, None),
        _ => {
            cx.err(
                m.span(),
                &field,
                format!(
                    "milestone `{}` needs exactly one of `date` or `at`",
                    rm.name.get_ref()
                ),
            );
            return None;
        }
    };
    Some(Milestone {
        name: rm.name.get_ref().clone(),
        at,
        date,
        place: place.map(|p| p.id),
        timezone: zone_name,
    })
}

fn unknown_place_msg(cx: &Cx, id: &str) -> String {
    let mut known: Vec<&str> = cx.places.keys().map(String::as_str).collect();
    known.sort_unstable();
    if known.is_empty() {
        format!("unknown place `{id}`; declare it in a [[places]] table")
    } else {
        format!("unknown place `{id}`; known places: {}", known.join(", "))
    }
}

/// A timestamp as RFC 9557 (`…+02:00[Europe/Paris]`) or RFC 3339 (`…Z`, `…-07:00`), with the
/// zone name when one was given.
fn parse_instant(cx: &mut Cx, s: &Sp<String>, field: &str) -> Option<(Timestamp, Option<String>)> {
    let text = s.get_ref();
    if text.contains('[') {
        match text.parse::<ZonedDateTime>() {
            Ok(z) => Some((z.timestamp(), z.time_zone().iana_name().map(str::to_string))),
            Err(e) => {
                cx.err(
                    s.span(),
                    field,
                    format!("`{text}` is not a valid RFC 9557 timestamp: {e}"),
                );
                None
            }
        }
    } else {
        match text.parse::<Timestamp>() {
            Ok(t) => Some((t, None)),
            Err(e) => {
                cx.err(s.span(), field, format!("`{text}` is not a timestamp like 2024-08-11T23:05:00+02:00[Europe/Paris]: {e}"));
                None
            }
        }
    }
}

/// The longest public delay and silence threshold: beyond a day they hide the relay itself.
const MAX_EVENT_DURATION: SignedDuration = SignedDuration::from_hours(24);
/// The longest leg (a stage or a sea crossing can take days; a torch relay's legs take minutes).
const MAX_LEG_DURATION: SignedDuration = SignedDuration::from_hours(30 * 24);

fn parse_duration(cx: &mut Cx, s: &Sp<String>, field: &str) -> Option<SignedDuration> {
    let (max, what) = if field.starts_with("event.") {
        (MAX_EVENT_DURATION, "24h")
    } else {
        (MAX_LEG_DURATION, "30 days (720h)")
    };
    match s.get_ref().parse::<SignedDuration>() {
        Ok(d) if d > max => {
            cx.err(
                s.span(),
                field,
                format!("duration `{}` is too long: at most {what}", s.get_ref()),
            );
            None
        }
        Ok(d) if d.is_negative() => {
            let why = if field.starts_with("event.") {
                "a delay cannot be negative"
            } else {
                "a leg cannot end before it starts"
            };
            cx.err(
                s.span(),
                field,
                format!("duration `{}` is negative; {why}", s.get_ref()),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(
                s.span(),
                field,
                format!(
                    "`{}` is not a duration like 4m, 25m or 11h30m ({e})",
                    s.get_ref()
                ),
            );
            None
        }
    }
}

fn default_duration(
    cx: &mut Cx,
    mode: Mode,
    geometry: &Geometry,
    span: Range<usize>,
    field: &str,
) -> Option<SignedDuration> {
    if matches!(geometry, Geometry::Place { .. }) || mode == Mode::Stage {
        cx.err(
            span,
            field,
            "a leg at a place needs `duration` (or `end`); there is no distance to derive it from",
        );
        return None;
    }
    Some(SignedDuration::from_secs_f64(
        geometry.length_m() / mode.prior_speed_mps(),
    ))
}

fn exchange_radius(cx: &mut Cx, l: &RawLeg, mode: Mode, field: &str) -> f64 {
    match &l.exchange_radius_m {
        Some(r) if r.get_ref().is_finite() && *r.get_ref() >= 0.0 => *r.get_ref(),
        Some(r) => {
            cx.err(
                r.span(),
                &format!("{field}.exchange_radius_m"),
                format!(
                    "exchange radius {} m must be a non-negative number of metres",
                    r.get_ref()
                ),
            );
            mode.default_exchange_radius_m()
        }
        None => mode.default_exchange_radius_m(),
    }
}

/// Mode and where the leg happens (route or place).
fn build_geometry(cx: &mut Cx, l: &Sp<RawLeg>, field: &str) -> Option<(Mode, Geometry)> {
    let rl = l.get_ref();
    let mode = if let Ok(m) = rl.mode.get_ref().parse::<Mode>() {
        Some(m)
    } else {
        let all: Vec<&str> = super::mode::ALL_MODES.iter().map(|m| m.as_str()).collect();
        cx.err(
            rl.mode.span(),
            &format!("{field}.mode"),
            format!(
                "unknown mode `{}`; use one of {}",
                rl.mode.get_ref(),
                all.join("|")
            ),
        );
        None
    };
    let geometry = match (&rl.place, &rl.route) {
        (Some(p), None) => {
            if let Some(pl) = cx.places.get(p.get_ref()) {
                Some(Geometry::Place {
                    place: pl.id.clone(),
                    at: pl.at,
                })
            } else {
                let msg = unknown_place_msg(cx, p.get_ref());
                cx.err(p.span(), &format!("{field}.place"), msg);
                None
            }
        }
        (None, Some(r)) => {
            build_route(cx, r, &format!("{field}.route")).map(|route| Geometry::Route {
                route: Arc::new(route),
                from_course: false,
            })
        }
        (Some(p), Some(_)) => {
            cx.err(
                p.span(),
                &format!("{field}.place"),
                "a leg has either a `route` (a line) or a `place` (a point), not both",
            );
            None
        }
        (None, None) => {
            cx.err(
                rl.mode.span(),
                field,
                "this leg has neither a `route` nor a `place`; say where it happens",
            );
            None
        }
    };
    if let (Some(Mode::Stage), Some(Geometry::Route { .. })) = (mode, &geometry) {
        cx.err(
            rl.mode.span(),
            &format!("{field}.mode"),
            "a stage leg happens at one place: give `place = \"…\"` instead of a route",
        );
        return None;
    }
    Some((mode?, geometry?))
}

fn build_route(cx: &mut Cx, r: &Sp<RawRoute>, field: &str) -> Option<Route> {
    let rr = r.get_ref();
    let forms = usize::from(rr.file.is_some())
        + usize::from(rr.points.is_some())
        + usize::from(rr.from.is_some() || rr.to.is_some());
    if forms != 1 {
        cx.err(r.span(), field, "give the route as exactly one of { file = \"…\" }, { points = [[lon, lat], …] } or { from = \"place\", to = \"place\" }");
        return None;
    }
    let points: Vec<Coord> = if let Some(f) = &rr.file {
        let rel = match safe_relative(f.get_ref()) {
            Ok(p) => p,
            Err(m) => {
                cx.err(f.span(), &format!("{field}.file"), m);
                return None;
            }
        };
        let text = match cx.files.read(&rel) {
            Ok(t) => t,
            Err(m) => {
                cx.err(f.span(), &format!("{field}.file"), m);
                return None;
            }
        };
        match parse_route_file(f.get_ref(), &text) {
            Ok(p) => p,
            Err(m) => {
                cx.err(
                    f.span(),
                    &format!("{field}.file"),
                    format!("{}: {m}", f.get_ref()),
                );
                return None;
            }
        }
    } else if let Some(pts) = &rr.points {
        let mut out = Vec::with_capacity(pts.get_ref().len());
        for (i, p) in pts.get_ref().iter().enumerate() {
            let v = p.get_ref();
            let pf = format!("{field}.points[{i}]");
            if !(2..=3).contains(&v.len()) {
                cx.err(
                    p.span(),
                    &pf,
                    format!("expected [lon, lat], found {} numbers", v.len()),
                );
                return None;
            }
            let (lon, lat) = (v[0], v[1]);
            if !(lon.is_finite()
                && (-180.0..=180.0).contains(&lon)
                && lat.is_finite()
                && (-90.0..=90.0).contains(&lat))
            {
                cx.err(p.span(), &pf, format!("point {} [{lon}, {lat}] is out of range; points are [lon, lat] with lon in [-180, 180] and lat in [-90, 90]", i + 1));
                return None;
            }
            out.push(Coord::with_ele(lon, lat, v.get(2).copied()));
        }
        out
    } else {
        let (Some(from), Some(to)) = (&rr.from, &rr.to) else {
            cx.err(
                r.span(),
                field,
                "a geodesic route needs both `from` and `to` place ids",
            );
            return None;
        };
        let mut ends = Vec::new();
        for (p, name) in [(from, "from"), (to, "to")] {
            if let Some(pl) = cx.places.get(p.get_ref()) {
                ends.push(pl.at);
            } else {
                let msg = unknown_place_msg(cx, p.get_ref());
                cx.err(p.span(), &format!("{field}.{name}"), msg);
            }
        }
        let [a, b] = ends[..] else { return None };
        densify(a, b, GEODESIC_STEP_M)
    };
    match Route::new(points) {
        Ok(route) => Some(route),
        Err(RouteError::BadCoord { index, lon, lat }) => {
            let span = rr.file.as_ref().map_or(r.span(), Sp::span);
            cx.err(span, field, format!("point {} of the route [{lon}, {lat}] is out of range; points are [lon, lat] with lon in [-180, 180] and lat in [-90, 90]", index + 1));
            None
        }
        Err(e) => {
            let span = rr.file.as_ref().map_or(r.span(), Sp::span);
            cx.err(span, field, format!("{e}; fix the route"));
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_speed(
    cx: &mut Cx,
    mode: Mode,
    length_m: f64,
    duration: SignedDuration,
    rl: &RawLeg,
    leg_span: Range<usize>,
    field: &str,
    index: usize,
) {
    if length_m <= 0.0 || mode == Mode::Stage {
        return;
    }
    let (lo, hi) = mode.plausible_kmh();
    let secs = duration.as_secs_f64();
    let span = rl
        .duration
        .as_ref()
        .or(rl.end.as_ref())
        .map_or(leg_span, Sp::span);
    if secs <= 0.0 {
        cx.err(
            span,
            field,
            format!(
                "leg {} covers {} in 0s; a moving leg needs a positive duration",
                index + 1,
                fmt_distance(length_m)
            ),
        );
        return;
    }
    let kmh = length_m / secs * 3.6;
    if kmh < lo || kmh > hi {
        cx.err(
            span,
            field,
            format!(
                "leg {} covers {} in {}: {:.1} km/h is implausible for {mode} (expected {lo}–{hi} km/h); check the duration or the route",
                index + 1,
                fmt_distance(length_m),
                fmt_duration(duration),
                kmh
            ),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn check_gap(
    cx: &mut Cx,
    prev_end: Coord,
    prev_radius_m: f64,
    index: usize,
    geometry: &Geometry,
    rl: &RawLeg,
    leg_span: Range<usize>,
    field: &str,
) {
    let gap = distance_m(prev_end, geometry.start());
    if gap > prev_radius_m {
        let span = rl
            .route
            .as_ref()
            .map(Sp::span)
            .or_else(|| rl.place.as_ref().map(Sp::span))
            .unwrap_or(leg_span);
        cx.err(
            span,
            field,
            format!(
                "leg {} ends {} from where leg {} starts; exchange radius is {} (join the routes, or set exchange_radius_m on leg {})",
                index,
                fmt_distance(gap),
                index + 1,
                fmt_distance(prev_radius_m),
                index
            ),
        );
    }
}

/// Zone where a point is: the nearest place's within 100 km, else `fallback`.
fn zone_near(cx: &Cx, at: Coord, fallback: &str) -> String {
    cx.places
        .values()
        .map(|p| (distance_m(p.at, at), p))
        .filter(|(d, _)| *d <= ZONE_PLACE_RADIUS_M)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(|| fallback.to_string(), |(_, p)| p.timezone.clone())
}

fn check_carriers(cx: &mut Cx, c: &Sp<Vec<Sp<String>>>, field: &str) -> Vec<String> {
    if c.get_ref().is_empty() {
        cx.err(
            c.span(),
            field,
            "carriers is empty; name who holds the object on this leg",
        );
    }
    for (i, name) in c.get_ref().iter().enumerate() {
        if name.get_ref().trim().is_empty() {
            cx.err(
                name.span(),
                &format!("{field}[{i}]"),
                "a carrier's name is empty",
            );
        }
    }
    c.get_ref()
        .iter()
        .map(|s| s.get_ref().trim().to_string())
        .collect()
}

fn relay_legs(
    cx: &mut Cx,
    r: &Sp<super::raw::RawRelay>,
    legs: &Sp<Vec<Sp<RawLeg>>>,
    field: &str,
) -> Vec<Leg> {
    let rr = r.get_ref();
    if legs.get_ref().is_empty() {
        cx.err(
            legs.span(),
            &format!("{field}.legs"),
            format!("relay `{}` has no legs", rr.id.get_ref()),
        );
    }
    let relay_start = rr
        .start
        .as_ref()
        .and_then(|s| parse_instant(cx, s, &format!("{field}.start")));
    let mut out: Vec<Leg> = Vec::new();
    let mut prev_end: Option<Timestamp> = relay_start.as_ref().map(|s| s.0);
    let mut prev_ok = true;
    for (li, l) in legs.get_ref().iter().enumerate() {
        let lf = format!("{field}.legs[{li}]");
        let rl = l.get_ref();
        let carriers = match &rl.carriers {
            Some(c) => check_carriers(cx, c, &format!("{lf}.carriers")),
            None => {
                cx.err(
                    rl.mode.span(),
                    &format!("{lf}.carriers"),
                    "this leg has no carriers; say who holds the object (carriers = [\"…\"])",
                );
                Vec::new()
            }
        };
        let geo = build_geometry(cx, l, &lf);
        let start = match &rl.start {
            Some(s) => parse_instant(cx, s, &format!("{lf}.start")),
            None => {
                if prev_end.is_none() && prev_ok {
                    cx.err(rl.mode.span(), &format!("{lf}.start"), "the first leg needs a `start` (later legs start when the previous one ends)");
                }
                prev_end.map(|t| (t, None))
            }
        };
        let Some((mode, geometry)) = geo else {
            prev_ok = false;
            prev_end = None;
            continue;
        };
        let Some((start, start_zone_given)) = start else {
            prev_ok = false;
            prev_end = None;
            continue;
        };
        if let (Some(s), Some(pe)) = (&rl.start, prev_end)
            && start < pe
            && li > 0
        {
            cx.err(
                s.span(),
                &format!("{lf}.start"),
                format!(
                    "leg {} starts {} before leg {} ends; legs of a relay cannot overlap",
                    li + 1,
                    fmt_duration(pe.duration_since(start)),
                    li
                ),
            );
        }
        let end = match (&rl.duration, &rl.end) {
            (Some(d), None) => parse_duration(cx, d, &format!("{lf}.duration"))
                .and_then(|d| start.checked_add(d).ok()),
            (None, Some(e)) => parse_instant(cx, e, &format!("{lf}.end")).and_then(|(e_ts, _)| {
                if e_ts < start {
                    cx.err(
                        e.span(),
                        &format!("{lf}.end"),
                        format!(
                            "leg {} ends {} before it starts",
                            li + 1,
                            fmt_duration(start.duration_since(e_ts))
                        ),
                    );
                    None
                } else {
                    Some(e_ts)
                }
            }),
            (Some(d), Some(_)) => {
                cx.err(
                    d.span(),
                    &format!("{lf}.duration"),
                    "give `duration` or `end`, not both",
                );
                None
            }
            (None, None) => default_duration(cx, mode, &geometry, l.span(), &lf)
                .and_then(|d| start.checked_add(d).ok()),
        };
        let Some(end) = end else {
            prev_ok = false;
            prev_end = None;
            continue;
        };
        check_speed(
            cx,
            mode,
            geometry.length_m(),
            end.duration_since(start),
            rl,
            l.span(),
            &lf,
            li,
        );
        let radius = exchange_radius(cx, rl, mode, &lf);
        if let Some(prev) = out.last()
            && prev.index + 1 == li
        {
            check_gap(
                cx,
                prev.exchange_point(),
                prev.exchange_radius_m,
                li,
                &geometry,
                rl,
                l.span(),
                &lf,
            );
        }
        let (start_zone, end_zone) = leg_zones(
            cx,
            &geometry,
            rl,
            start_zone_given,
            out.last().map(|p| p.end_zone.as_str()),
        );
        out.push(Leg {
            index: li,
            name: rl.name.as_ref().map(|n| n.get_ref().clone()),
            carriers,
            mode,
            devices: rl
                .devices
                .as_ref()
                .map(|d| d.get_ref().iter().map(|s| s.get_ref().clone()).collect())
                .unwrap_or_default(),
            course_leg: None,
            flat_m: terrain_profile(mode, &geometry),
            geometry,
            start,
            end,
            exchange_radius_m: radius,
            start_zone,
            end_zone,
            note: rl.note.as_ref().map(|n| n.get_ref().clone()),
            segment: false,
        });
        prev_end = Some(end);
        prev_ok = true;
    }
    out
}

fn leg_zones(
    cx: &Cx,
    geometry: &Geometry,
    rl: &RawLeg,
    given: Option<String>,
    prev_zone: Option<&str>,
) -> (String, String) {
    let fallback = prev_zone.unwrap_or(&cx.event_zone).to_string();
    let place_zone = |id: Option<&Sp<String>>| {
        id.and_then(|p| cx.places.get(p.get_ref()))
            .map(|p| p.timezone.clone())
    };
    let route = rl.route.as_ref().map(Sp::get_ref);
    let start_zone = given
        .or_else(|| place_zone(rl.place.as_ref()))
        .or_else(|| place_zone(route.and_then(|r| r.from.as_ref())))
        .unwrap_or_else(|| zone_near(cx, geometry.start(), &fallback));
    let end_zone = place_zone(rl.place.as_ref())
        .or_else(|| place_zone(route.and_then(|r| r.to.as_ref())))
        .unwrap_or_else(|| zone_near(cx, geometry.end(), &start_zone));
    (start_zone, end_zone)
}

fn race_legs(
    cx: &mut Cx,
    r: &Sp<super::raw::RawRelay>,
    course: &Sp<String>,
    courses: &[Course],
    course_ids: Vec<&str>,
    field: &str,
) -> Vec<Leg> {
    let rr = r.get_ref();
    let Some(c) = courses.iter().find(|c| &c.id == course.get_ref()) else {
        if !course_ids.contains(&course.get_ref().as_str()) {
            let msg = if course_ids.is_empty() {
                format!(
                    "unknown course `{}`; declare it in a [[courses]] table",
                    course.get_ref()
                )
            } else {
                format!(
                    "unknown course `{}`; known courses: {}",
                    course.get_ref(),
                    course_ids.join(", ")
                )
            };
            cx.err(course.span(), &format!("{field}.course"), msg);
        }
        return Vec::new();
    };
    let carriers = match &rr.carriers {
        Some(cs) => check_carriers(cx, cs, &format!("{field}.carriers")),
        None => {
            cx.err(
                rr.id.span(),
                &format!("{field}.carriers"),
                "a race relay needs its team's `carriers`; leg i is run by carriers[i mod n]",
            );
            return Vec::new();
        }
    };
    let start = if let Some(s) = &rr.start {
        parse_instant(cx, s, &format!("{field}.start"))
    } else {
        cx.err(
            rr.id.span(),
            &format!("{field}.start"),
            "a race relay needs its team's `start`",
        );
        None
    };
    let Some(start) = start else {
        return Vec::new();
    };
    if carriers.is_empty() {
        return Vec::new();
    }
    let mut t = start.0;
    let mut prev_zone: Option<String> = start.1;
    let mut out = Vec::with_capacity(c.legs.len());
    for (i, cl) in c.legs.iter().enumerate() {
        let end = t
            .checked_add(SignedDuration::from_millis(cl.duration_ms))
            .unwrap_or(t);
        let fallback = prev_zone.clone().unwrap_or_else(|| cx.event_zone.clone());
        let start_zone = zone_near(cx, cl.geometry.start(), &fallback);
        let end_zone = zone_near(cx, cl.geometry.end(), &start_zone);
        let geometry = match &cl.geometry {
            Geometry::Route { route, .. } => Geometry::Route {
                route: Arc::clone(route),
                from_course: true,
            },
            g @ Geometry::Place { .. } => g.clone(),
        };
        out.push(Leg {
            index: i,
            name: cl.name.clone(),
            carriers: cl
                .carriers
                .clone()
                .unwrap_or_else(|| vec![carriers[i % carriers.len()].clone()]),
            mode: cl.mode,
            devices: Vec::new(),
            course_leg: Some(i),
            flat_m: None,
            geometry,
            start: t,
            end,
            exchange_radius_m: cl.exchange_radius_m,
            start_zone,
            end_zone: end_zone.clone(),
            note: None,
            segment: false,
        });
        prev_zone = Some(end_zone);
        t = end;
    }
    out
}
