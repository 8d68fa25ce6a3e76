//! The race as it really happens, for the phones to report: a 36-leg course west from Mt. Hood
//! (like `examples/relay-race`, but generated, so the plan is self-contained), teams with
//! staggered starts and a pace of their own, and where each runner is at any instant — the
//! active one along their leg, the next one waiting at the exchange, the one just relieved
//! still there for a minute, the others parked in a van beside the start of their next leg,
//! well off the route (so their pings are ones the server should find cheap).
//!
//! Everything is a pure function of the team, the runner and the device time, so the same
//! seed gives the same race, and the unit tests can check the geometry the tracker relies on
//! (the last ping of a leg lands inside the exchange radius).

use std::fmt::Write as _;

use jiff::{Timestamp, tz::TimeZone};

use super::rng::Rng;

pub const LEGS: usize = 36;
/// Exchange radius of every leg, as in `examples/relay-race`.
pub const EXCHANGE_RADIUS_M: f64 = 30.0;
/// The plan's pace: 10 km/h, six minutes a kilometre.
pub const PLANNED_SPEED_MPS: f64 = 10.0 / 3.6;
/// A relieved runner stays this long at the exchange before walking to the van.
const RESTING_MS: i64 = 60_000;
/// Vans park this far to the side of the route.
const VAN_OFFSET_M: f64 = 400.0;
/// Route vertices are this far apart.
const VERTEX_M: f64 = 100.0;
/// Timberline Lodge, Mt. Hood: the start.
const ORIGIN: [f64; 2] = [-121.7115, 45.3305];
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// One leg's line: vertices `[lon, lat]` and the distance along it at each.
pub struct Leg {
    pub points: Vec<[f64; 2]>,
    cum_m: Vec<f64>,
}

impl Leg {
    pub fn length_m(&self) -> f64 {
        self.cum_m.last().copied().unwrap_or(0.0)
    }

    /// The point `along_m` metres along the leg (clamped to its ends), and the heading there
    /// in radians (0 = north, clockwise).
    pub fn at(&self, along_m: f64) -> ([f64; 2], f64) {
        let n = self.points.len();
        let d = along_m.clamp(0.0, self.length_m());
        let i = self.cum_m.partition_point(|&c| c <= d).clamp(1, n - 1);
        let (a, b) = (self.points[i - 1], self.points[i]);
        let span = self.cum_m[i] - self.cum_m[i - 1];
        let f = if span > 0.0 {
            (d - self.cum_m[i - 1]) / span
        } else {
            0.0
        };
        let p = [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f];
        (p, heading(a, b))
    }

    pub fn start(&self) -> [f64; 2] {
        self.points[0]
    }

    pub fn end(&self) -> [f64; 2] {
        self.points[self.points.len() - 1]
    }

    /// The planned duration, at the plan's pace, in whole seconds.
    pub fn planned_s(&self) -> i64 {
        #[allow(clippy::cast_possible_truncation)] // a few thousand seconds
        let s = (self.length_m() / PLANNED_SPEED_MPS).round() as i64;
        s
    }
}

pub struct Course {
    pub legs: Vec<Leg>,
}

impl Course {
    /// 36 legs of 5 to 10 km laid end to end, heading west with gentle bends (about 270 km).
    pub fn generate() -> Self {
        let mut here = ORIGIN;
        let mut s_m = 0.0_f64;
        let mut legs = Vec::with_capacity(LEGS);
        for i in 0..LEGS {
            #[allow(clippy::cast_precision_loss)]
            let length_m = 5_000.0 + ((i * 37) % 11) as f64 * 500.0;
            let mut points = vec![here];
            let mut cum_m = vec![0.0];
            let mut done = 0.0;
            while done < length_m - 1e-6 {
                let step = VERTEX_M.min(length_m - done);
                let bearing = (270.0_f64
                    + 25.0 * (s_m / 17_000.0 * std::f64::consts::TAU).sin()
                    + 10.0 * (s_m / 5_300.0 * std::f64::consts::TAU).sin())
                .to_radians();
                let next = offset(here, bearing, step);
                done += distance_m(here, next);
                s_m += step;
                points.push(next);
                cum_m.push(done);
                here = next;
            }
            legs.push(Leg { points, cum_m });
        }
        Self { legs }
    }

    /// The `[[courses]]` table and its legs, route points inline.
    pub fn toml(&self, id: &str) -> String {
        let mut s = format!("[[courses]]\nid = \"{id}\"\nname = \"loadgen: {LEGS} legs\"\n");
        for (i, leg) in self.legs.iter().enumerate() {
            let _ = write!(
                s,
                "\n# Leg {}: {:.2} km\n[[courses.legs]]\nmode = \"run\"\nexchange_radius_m = {EXCHANGE_RADIUS_M}\nduration = \"{}s\"\nroute = {{ points = [",
                i + 1,
                leg.length_m() / 1_000.0,
                leg.planned_s()
            );
            for (k, p) in leg.points.iter().enumerate() {
                let sep = if k == 0 { "" } else { ", " };
                let _ = write!(s, "{sep}[{:.6}, {:.6}]", p[0], p[1]);
            }
            s.push_str("] }\n");
        }
        s
    }
}

/// One team: its start and when each of its legs really ends (the team has a pace of its own,
/// and each runner theirs).
pub struct Team {
    pub id: String,
    pub name: String,
    /// Planned (and real) start, Unix ms.
    pub start_ms: i64,
    /// `ends_ms[i]`: when leg `i` really ends (the runner reaches the exchange), Unix ms.
    pub ends_ms: Vec<i64>,
    speeds_mps: Vec<f64>,
}

impl Team {
    /// Team `j`, with `runners` runners, starting at `start_ms` (Unix ms): a team pace within
    /// ±10 % of the plan's, and each runner's within ±8 % of the team's.
    pub fn new(course: &Course, j: usize, runners: usize, start_ms: i64, rng: &mut Rng) -> Self {
        let team_factor = rng.range(0.90, 1.10);
        let speeds_mps: Vec<f64> = (0..runners)
            .map(|_| PLANNED_SPEED_MPS * team_factor * rng.range(0.92, 1.08))
            .collect();
        let mut ends_ms = Vec::with_capacity(LEGS);
        let mut t = start_ms;
        for (i, leg) in course.legs.iter().enumerate() {
            let v = speeds_mps[i % runners];
            #[allow(clippy::cast_possible_truncation)]
            let took_ms = (leg.length_m() / v * 1_000.0).round() as i64;
            t += took_ms;
            ends_ms.push(t);
        }
        Self {
            id: team_id(j),
            name: format!("Team {}", j + 1),
            start_ms,
            ends_ms,
            speeds_mps,
        }
    }

    pub fn carrier(&self, runner: usize) -> String {
        format!("{} Runner {}", self.name, runner + 1)
    }

    /// The `[[relays]]` table of this team.
    pub fn toml(&self, course: &str, runners: usize) -> String {
        let start = Timestamp::from_millisecond(self.start_ms)
            .unwrap_or_default()
            .to_zoned_datetime(TimeZone::UTC);
        let carriers: Vec<String> = (0..runners)
            .map(|r| format!("\"{}\"", self.carrier(r)))
            .collect();
        format!(
            "\n[[relays]]\nid = \"{}\"\nname = \"{}\"\nobject = \"Baton\"\ncourse = \"{course}\"\nstart = \"{start}\"\ncarriers = [{}]\n",
            self.id,
            self.name,
            carriers.join(", ")
        )
    }

    /// The leg under way at `t_ms`: `None` before the start, `Some(LEGS)` after the finish.
    pub fn leg_at(&self, t_ms: i64) -> Option<usize> {
        (t_ms >= self.start_ms).then(|| self.ends_ms.partition_point(|&e| e <= t_ms))
    }

    /// When leg `i` really began.
    pub fn leg_start_ms(&self, i: usize) -> i64 {
        if i == 0 {
            self.start_ms
        } else {
            self.ends_ms[i - 1]
        }
    }
}

pub fn team_id(j: usize) -> String {
    format!("team-{:04}", j + 1)
}

/// What a runner is doing, as their phone sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Holding the baton on this leg.
    Running(usize),
    /// At the exchange, about to receive the baton for this leg.
    Waiting(usize),
    /// Just handed off at the end of this leg.
    Resting(usize),
    /// In the van, parked beside the start of their next leg (or the finish).
    Van,
}

/// One position fix of a runner's phone.
pub struct Fix {
    pub role: Role,
    pub lon: f64,
    pub lat: f64,
    pub speed_mps: f64,
    pub bearing_deg: f64,
}

/// Where `runner` of `team` is at `t_ms`, with a few metres of GPS noise from `rng`.
pub fn fix(
    course: &Course,
    team: &Team,
    runners: usize,
    runner: usize,
    t_ms: i64,
    rng: &mut Rng,
) -> Fix {
    let role = role(team, runners, runner, t_ms);
    let (p, bearing, speed_mps, noise_m) = match role {
        Role::Running(i) => {
            #[allow(clippy::cast_precision_loss)]
            let along_m =
                (t_ms - team.leg_start_ms(i)) as f64 / 1_000.0 * team.speeds_mps[i % runners];
            let (p, h) = course.legs[i].at(along_m);
            (p, h, team.speeds_mps[i % runners], 3.0)
        }
        Role::Waiting(i) => (course.legs[i].start(), 0.0, 0.0, 8.0),
        Role::Resting(i) => (course.legs[i].end(), 0.0, 0.0, 8.0),
        Role::Van => {
            let from = team.leg_at(t_ms).map_or(0, |c| c + 1);
            let next = (from..LEGS).find(|i| i % runners == runner);
            let (p, h) = match next {
                Some(i) => course.legs[i].at(0.0),
                None => course.legs[LEGS - 1].at(f64::MAX),
            };
            // To the right of the route, square to it.
            let side = offset(p, h + std::f64::consts::FRAC_PI_2, VAN_OFFSET_M);
            (side, 0.0, 0.0, 3.0)
        }
    };
    let noisy = offset(
        p,
        rng.range(0.0, std::f64::consts::TAU),
        rng.range(0.0, noise_m),
    );
    Fix {
        role,
        lon: noisy[0],
        lat: noisy[1],
        speed_mps,
        bearing_deg: bearing.to_degrees().rem_euclid(360.0),
    }
}

fn role(team: &Team, runners: usize, runner: usize, t_ms: i64) -> Role {
    let Some(c) = team.leg_at(t_ms) else {
        return if runner == 0 {
            Role::Waiting(0)
        } else {
            Role::Van
        };
    };
    if c < LEGS && c % runners == runner {
        return Role::Running(c);
    }
    if c + 1 < LEGS && (c + 1) % runners == runner {
        return Role::Waiting(c + 1);
    }
    if c >= 1 && (c - 1) % runners == runner && t_ms - team.leg_start_ms(c) < RESTING_MS {
        return Role::Resting(c - 1);
    }
    Role::Van
}

/// Great-circle distance on a sphere: close enough to WGS 84 for placing runners.
pub fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (la1, la2) = (a[1].to_radians(), b[1].to_radians());
    let dla = la2 - la1;
    let dlo = (b[0] - a[0]).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// The point `d_m` metres from `p` towards `bearing` (radians), on a local flat frame.
fn offset(p: [f64; 2], bearing: f64, d_m: f64) -> [f64; 2] {
    let north = d_m * bearing.cos();
    let east = d_m * bearing.sin();
    let dlat = (north / EARTH_RADIUS_M).to_degrees();
    let dlon = (east / (EARTH_RADIUS_M * p[1].to_radians().cos())).to_degrees();
    [p[0] + dlon, p[1] + dlat]
}

/// Heading from `a` to `b` in radians (0 = north, clockwise), on a local flat frame.
fn heading(a: [f64; 2], b: [f64; 2]) -> f64 {
    let east = (b[0] - a[0]) * a[1].to_radians().cos();
    let north = b[1] - a[1];
    east.atan2(north)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(course: &Course) -> Team {
        Team::new(course, 416, 12, 1_700_000_000_000, &mut Rng::new(7))
    }

    #[test]
    fn the_course_has_36_legs_of_5_to_10_km_end_to_end() {
        let c = Course::generate();
        assert_eq!(c.legs.len(), LEGS);
        for w in c.legs.windows(2) {
            assert!(distance_m(w[0].end(), w[1].start()) < 0.01);
        }
        for l in &c.legs {
            assert!(
                (4_999.0..=10_001.0).contains(&l.length_m()),
                "{}",
                l.length_m()
            );
        }
        let toml = c.toml("coast");
        assert_eq!(toml.matches("[[courses.legs]]").count(), LEGS);
    }

    #[test]
    fn one_runner_runs_the_next_waits_at_the_exchange_and_names_are_per_team() {
        let c = Course::generate();
        let t = team(&c);
        assert_eq!(t.carrier(2), "Team 417 Runner 3");
        let mid = (t.leg_start_ms(13) + t.ends_ms[13]) / 2;
        let roles: Vec<Role> = (0..12).map(|r| role(&t, 12, r, mid)).collect();
        assert_eq!(roles[1], Role::Running(13));
        assert_eq!(roles[2], Role::Waiting(14));
        assert_eq!(roles.iter().filter(|r| **r == Role::Van).count(), 10);
        let just_after = t.ends_ms[13] + 10_000;
        assert_eq!(role(&t, 12, 1, just_after), Role::Resting(13));
        assert!(t.toml("coast", 12).contains("\"Team 417 Runner 12\"]"));
    }

    #[test]
    fn a_runner_pinging_every_5_s_lands_inside_the_exchange_radius() {
        let c = Course::generate();
        let t = team(&c);
        let mut rng = Rng::new(1);
        for leg in [0, 7, 35] {
            let end = c.legs[leg].end();
            let mut closest = f64::MAX;
            let mut ms = t.leg_start_ms(leg);
            while ms < t.ends_ms[leg] {
                let f = fix(&c, &t, 12, leg % 12, ms, &mut rng);
                assert_eq!(f.role, Role::Running(leg));
                closest = closest.min(distance_m(end, [f.lon, f.lat]));
                ms += 5_000;
            }
            assert!(closest < EXCHANGE_RADIUS_M - 5.0, "leg {leg}: {closest} m");
            let w = fix(&c, &t, 12, (leg + 1) % 12, t.ends_ms[leg] - 1, &mut rng);
            if leg + 1 < LEGS {
                assert!(distance_m(end, [w.lon, w.lat]) <= 8.5);
            }
        }
    }

    #[test]
    fn vans_park_well_off_the_route() {
        let c = Course::generate();
        let t = team(&c);
        let mut rng = Rng::new(3);
        let mid = (t.leg_start_ms(13) + t.ends_ms[13]) / 2;
        let f = fix(&c, &t, 12, 5, mid, &mut rng);
        assert_eq!(f.role, Role::Van);
        let next = c.legs[17].start(); // runner 6's next leg
        let d = distance_m(next, [f.lon, f.lat]);
        assert!((390.0..=410.0).contains(&d), "{d}");
    }
}
