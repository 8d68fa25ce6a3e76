//! The ETA evaluation: real recorded tracks replayed through the engine as live pings, and the
//! error of each prediction measured against when the track really reached the exchange point.
//!
//! The one idea: the truth comes from the recording, never from the engine. Each track is
//! split into [`LEGS`] legs at vertices of its own (simplified) line, so the instant the
//! carrier reached each exchange point is a recorded fix's time. The plan gives each leg the
//! mode's flat-ground pace ([`Mode::prior_speed_mps`]), as a planner without the track would.
//! Each leg's carrier has a device that sends the recorded fixes of that leg, in order, to a
//! [`Tracker`] on a clock set by the pings (fast, in process, deterministic). At 25, 50 and 75 %
//! of each leg's real duration the relay's ETAs are read and set beside three baselines computed
//! from the same fixes: the planned end, remaining distance over the pace of the last three
//! minutes, and remaining distance over the average pace on the leg so far.
//!
//! An error is |predicted − real| as a percentage of the real duration of the leg whose end is
//! predicted (the current leg's, or the next leg's for its end).

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::geodesic::{Coord, distance_m};
use crate::ping::Ping;
use crate::plan::{Mode, NoFiles, Plan, parse};
use crate::track::{BAND_PRIOR, BandQuantiles, Tracker};

/// Legs each track is split into.
pub const LEGS: usize = 3;
/// When predictions are read, as fractions of each leg's real duration.
pub const FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];
/// The window of the "recent pace" baseline.
pub const RECENT_MS: i64 = 180_000;
/// The planned route is the track simplified (Ramer–Douglas–Peucker) to this tolerance in
/// degrees (~3 m): a course as drawn on a map, without the jitter of every fix.
const SIMPLIFY_DEG: f64 = 0.000_03;
/// A recording ends at the carrier's arrival: the first fix from which every later one is within
/// this distance of the last (a device left recording at the finish adds only GPS jitter).
const ARRIVED_M: f64 = 15.0;
/// A waiting receiver reports from the exchange point this often ([`Options::receiver_waits`]).
const WAIT_EVERY_MS: i64 = 30_000;

/// Why a track cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}: not readable GPX: {1}")]
    Gpx(String, String),
    #[error("{0}: too few timed points ({1}); a track needs at least 20 fixes with times")]
    TooShort(String, usize),
    #[error("{0}: the evaluation's plan does not validate: {1}")]
    Plan(String, String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

/// A recorded track: timed fixes in time order, and the mode it was recorded in.
#[derive(Debug, Clone)]
pub struct Track {
    pub name: String,
    pub mode: Mode,
    pub fixes: Vec<(Timestamp, Coord)>,
}

impl Track {
    /// The timed points of every track segment of a GPX file, in order (a point not later than
    /// the one before it is dropped), up to the arrival ([`arrival`]): a recording that goes on
    /// while its carrier stands at the finish is cut where they got there, since the truth the
    /// evaluation measures against is when the track reached the end.
    ///
    /// # Errors
    /// Unreadable GPX, or fewer than 20 timed points.
    pub fn from_gpx(name: &str, mode: Mode, text: &str) -> Result<Self> {
        let gpx =
            gpx::read(text.as_bytes()).map_err(|e| EvalError::Gpx(name.into(), e.to_string()))?;
        let mut fixes: Vec<(Timestamp, Coord)> = Vec::new();
        for w in gpx
            .tracks
            .iter()
            .flat_map(|t| &t.segments)
            .flat_map(|s| &s.points)
        {
            let Some(t) = w
                .time
                .and_then(|t| t.format().ok())
                .and_then(|s| s.parse::<Timestamp>().ok())
            else {
                continue;
            };
            if fixes.last().is_some_and(|(last, _)| t <= *last) {
                continue;
            }
            let p = w.point();
            fixes.push((t, Coord::with_ele(p.x(), p.y(), w.elevation)));
        }
        fixes.truncate(arrival(&fixes) + 1);
        if fixes.len() < 20 {
            return Err(EvalError::TooShort(name.into(), fixes.len()));
        }
        Ok(Self {
            name: name.into(),
            mode,
            fixes,
        })
    }
}

/// The index of the fix at which a recording arrives at its end: the first from which it stays
/// within [`ARRIVED_M`] of its last fix (the last index of an empty recording is 0).
fn arrival(fixes: &[(Timestamp, Coord)]) -> usize {
    let Some(&(_, end)) = fixes.last() else {
        return 0;
    };
    fixes
        .iter()
        .rposition(|&(_, c)| distance_m(c, end) > ARRIVED_M)
        .map_or(0, |i| i + 1)
}

/// How a track is replayed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The next leg's carrier waits at the exchange point with their phone on, reporting every
    /// 30 s from five minutes before the handoff (a stationary phone: the only pings here that
    /// are not recorded fixes).
    pub receiver_waits: bool,
}

/// Who predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Predictor {
    /// The engine: the relay view's `eta_end`.
    Handoff,
    /// The plan's end of the leg.
    Planned,
    /// Remaining distance over the pace of the last [`RECENT_MS`].
    RecentPace,
    /// Remaining distance over the average pace on the leg so far.
    LegAverage,
}

impl Predictor {
    pub const ALL: [Predictor; 4] = [
        Predictor::Handoff,
        Predictor::Planned,
        Predictor::RecentPace,
        Predictor::LegAverage,
    ];

    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Predictor::Handoff => "handoff",
            Predictor::Planned => "planned end time",
            Predictor::RecentPace => "remaining distance ÷ pace of the last 3 min",
            Predictor::LegAverage => "remaining distance ÷ average pace on the leg so far",
        }
    }
}

/// Whose end is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The end of the leg in progress.
    Current,
    /// The end of the leg after it.
    Next,
}

/// One prediction's error.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub track: String,
    pub leg: usize,
    pub fraction: f64,
    pub target: Target,
    pub predictor: Predictor,
    /// Signed error (predicted − real), % of the real duration of the predicted leg.
    pub error_pct: f64,
    /// The engine's only: whether the real end was inside the ETA's band (`eta_lo`–`eta_hi`).
    pub inside_band: Option<bool>,
    /// The engine's only: `ln(real time to go / predicted time to go)`, what the band's prior
    /// quantiles are measured from (`track::BAND_PRIOR`).
    pub ln_to_go: Option<f64>,
}

/// How far the engine's stamp of a leg's end was from the real one.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub track: String,
    pub leg: usize,
    /// Engine's end − real end, seconds (negative: stamped early). `None`: never ended.
    pub error_s: Option<f64>,
}

/// Every sample of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tracks: Vec<String>,
    pub samples: Vec<Sample>,
    pub stamps: Vec<Stamp>,
    /// The engine's samples again, each track replayed with its bands' prior measured on the
    /// other tracks only ([`held_out_prior`]): the bands' calibration out of sample. Only the
    /// bands differ from [`Self::samples`] (a band never moves an ETA).
    pub held_out: Vec<Sample>,
    /// "When does it pass here": points of the route ahead, timed as the live page times them.
    pub passes: Vec<Pass>,
}

/// A point of the route ahead of the holder, timed as the live page times a tapped point or a
/// stop (`stopTime` in `web/src/js/plan.js`, mirrored by [`pass_time`]): between the holder's
/// last seen point (or the leg's start) and the leg's ETA, by distance or by the leg's terrain.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub track: String,
    /// The leg under way when the time was read, and how far into it (of its real duration).
    pub leg: usize,
    pub fraction: f64,
    /// A point of the current leg (a third and two thirds of the way from the holder to its
    /// end) or of the next (a quarter, half and three quarters of its length).
    pub target: Target,
    /// Timed by the leg's terrain ([`crate::plan::Leg::flat_m`]) rather than evenly by distance.
    pub by_terrain: bool,
    /// Signed error (predicted − real time the recording passed the point), % of the real
    /// duration of the point's leg.
    pub error_pct: f64,
    /// Whether the recording passed the point inside the band the page gives it.
    pub inside_band: Option<bool>,
}

/// When a point `along_m` metres along a leg is passed, as the live page reckons it: the leg's
/// ETA view `lv` (actual start, else its ETA; its ETA end), interpolated by `share` (the share
/// of the leg's time up to a distance along it); on the leg under way, from the holder's last
/// seen point (`seen`: metres along, time) for a point ahead of them. With it the band the
/// point is likely passed in, while the leg is not done and its ETA has one: its edges brought
/// back the same way, and on a leg still to come from the band of its start (`start_band`, the
/// leg before's), which is as uncertain as that leg's end.
fn pass_time(
    lv: &crate::snapshot::LegView,
    seen: Option<(f64, Timestamp)>,
    share: impl Fn(f64) -> f64,
    along_m: f64,
    start_band: Option<(Timestamp, Timestamp)>,
) -> (Timestamp, Option<(Timestamp, Timestamp)>) {
    use crate::snapshot::LegStatus;
    let t0 = lv.actual_start.unwrap_or(lv.eta_start);
    let t1 = lv.actual_end.unwrap_or(lv.eta_end);
    let s = share(along_m);
    let between = |from: Timestamp, to: Timestamp, x: f64| {
        plus_secs(from, secs_f64(to.duration_since(from)) * x)
    };
    let ahead_of_seen = seen.and_then(|(seen_m, seen_t)| {
        let p = share(seen_m);
        (p > 0.0 && p < 1.0 && seen_t >= t0 && seen_t <= t1 && s >= p).then_some((seen_t, p))
    });
    let at = |start: Timestamp, end: Timestamp| match ahead_of_seen {
        Some((seen_t, p)) => between(seen_t, end, (s - p) / (1.0 - p)),
        None => between(start, end, s),
    };
    let band = lv
        .eta_lo
        .zip(lv.eta_hi)
        .filter(|_| lv.status != LegStatus::Done)
        .map(|(lo, hi)| {
            let (start_lo, start_hi) = start_band
                .filter(|_| lv.status == LegStatus::Upcoming)
                .unwrap_or((t0, t0));
            (at(start_lo, lo), at(start_hi, hi))
        });
    (at(t0, t1), band)
}

/// When the recording passed `along_m` metres along its leg: `progress` ([`progress`])
/// interpolated between the fixes either side.
fn passed_at(progress: &[(Timestamp, f64)], along_m: f64) -> Option<Timestamp> {
    let i = progress.iter().position(|&(_, a)| a >= along_m)?;
    let Some(&(t0, a0)) = i.checked_sub(1).and_then(|j| progress.get(j)) else {
        return Some(progress[i].0);
    };
    let (t1, a1) = progress[i];
    let x = if a1 > a0 {
        (along_m - a0) / (a1 - a0)
    } else {
        1.0
    };
    Some(plus_secs(t0, secs_f64(t1.duration_since(t0)) * x))
}

/// One leg of the evaluation's plan, with its truth.
struct LegCase {
    /// Indices into the track's fixes: the leg runs from `from` to `to` (inclusive).
    from: usize,
    to: usize,
    planned_end: Timestamp,
}

/// Evaluates each track and gathers the samples.
///
/// # Errors
/// A track whose plan does not validate.
pub fn evaluate(tracks: &[Track], options: Options) -> Result<Report> {
    let mut report = Report::default();
    for track in tracks {
        evaluate_track(track, options, BAND_PRIOR, &mut report)?;
        report.tracks.push(track.name.clone());
    }
    for track in tracks {
        let Some(prior) = held_out_prior(&report.samples, &track.name) else {
            continue;
        };
        let mut again = Report::default();
        evaluate_track(track, options, prior, &mut again)?;
        report.held_out.extend(
            again
                .samples
                .into_iter()
                .filter(|s| s.predictor == Predictor::Handoff),
        );
    }
    Ok(report)
}

/// The bands' prior as [`BAND_PRIOR`] is made (the 10th and 90th percentiles of the engine's
/// `ln(real / predicted time to go)`, the current leg's end and the next's), from every track's
/// samples but `left_out`'s; `None` when no other track has any.
fn held_out_prior(samples: &[Sample], left_out: &str) -> Option<BandQuantiles> {
    let spread = |target: Target| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.track != left_out && s.target == target)
            .filter_map(|s| s.ln_to_go)
            .collect();
        Some((quantile(&v, 0.1)?, quantile(&v, 0.9)?))
    };
    Some(BandQuantiles {
        current: spread(Target::Current)?,
        later: spread(Target::Next)?,
    })
}

fn secs_f64(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

fn plus_secs(t: Timestamp, s: f64) -> Timestamp {
    // A bounded pace keeps this well inside the time scale; saturate rather than fail.
    let s = s.clamp(-1.0e9, 1.0e9);
    t.checked_add(SignedDuration::from_secs_f64(s))
        .unwrap_or(Timestamp::MAX)
}

/// The plan: three legs along the simplified track, split at the vertices nearest to a third
/// and two thirds of its length, each planned at the mode's flat pace.
fn plan_of(track: &Track) -> Result<(Arc<Plan>, Vec<LegCase>)> {
    use geo::SimplifyIdx;
    let line: geo::LineString<f64> = track
        .fixes
        .iter()
        .map(|(_, c)| geo::coord! { x: c.lon, y: c.lat })
        .collect();
    let kept = line.simplify_idx(SIMPLIFY_DEG);
    let mut cum = vec![0.0];
    for w in kept.windows(2) {
        let d = distance_m(track.fixes[w[0]].1, track.fixes[w[1]].1);
        cum.push(cum.last().copied().unwrap_or(0.0) + d);
    }
    let total = cum.last().copied().unwrap_or(0.0);
    let mut cuts = vec![0];
    for k in 1..LEGS {
        #[allow(clippy::cast_precision_loss)]
        let goal = total * k as f64 / LEGS as f64;
        let j = (0..cum.len())
            .min_by(|&a, &b| (cum[a] - goal).abs().total_cmp(&(cum[b] - goal).abs()))
            .unwrap_or(0);
        cuts.push(j.max(cuts.last().copied().unwrap_or(0) + 1));
    }
    cuts.push(kept.len() - 1);
    let start = track.fixes[0].0;
    let mut toml = format!(
        "[event]\nid = \"eval\"\nname = \"ETA evaluation: {}\"\n[[relays]]\nid = \"r\"\n",
        track.name.replace('"', "'")
    );
    let mut legs = Vec::new();
    let mut planned_end = start;
    for k in 0..LEGS {
        let vertices = &kept[cuts[k]..=cuts[k + 1]];
        let length_m = cum[cuts[k + 1]] - cum[cuts[k]];
        let planned_s = (length_m / track.mode.prior_speed_mps()).round().max(60.0);
        let points: Vec<String> = vertices
            .iter()
            .map(|&i| {
                let c = track.fixes[i].1;
                match c.ele_m {
                    Some(e) => format!("[{}, {}, {e}]", c.lon, c.lat),
                    None => format!("[{}, {}]", c.lon, c.lat),
                }
            })
            .collect();
        let _ = write!(
            toml,
            "[[relays.legs]]\ncarriers = [\"C{k}\"]\nmode = \"{}\"\nroute = {{ points = [{}] }}\nduration = \"{planned_s}s\"\n",
            track.mode,
            points.join(", ")
        );
        if k == 0 {
            let _ = writeln!(toml, "start = \"{start}\"");
        }
        planned_end = plus_secs(planned_end, planned_s);
        legs.push(LegCase {
            from: kept[cuts[k]],
            to: kept[cuts[k + 1]],
            planned_end,
        });
    }
    let plan =
        parse(&toml, &NoFiles).map_err(|p| EvalError::Plan(track.name.clone(), p.to_string()))?;
    Ok((Arc::new(plan), legs))
}

fn ping_at(t: Timestamp, c: Coord) -> Ping {
    Ping {
        t,
        lon: c.lon,
        lat: c.lat,
        acc_m: None,
        speed_mps: None,
        heading_deg: None,
        alt_m: c.ele_m,
        batt_pct: None,
    }
}

/// A baseline's view of one leg: (time, metres along the leg) of each fix, progress kept
/// monotone as the engine keeps it.
fn progress(plan: &Plan, track: &Track, k: usize, case: &LegCase) -> Vec<(Timestamp, f64)> {
    let leg = &plan.relays[0].legs[k];
    let Some(route) = leg.geometry.route() else {
        return Vec::new();
    };
    let mut along = 0.0_f64;
    track.fixes[case.from..=case.to]
        .iter()
        .map(|&(t, c)| {
            let p = route.project(c, Some(along));
            along = along.max(p.along_m);
            (t, along)
        })
        .collect()
}

fn evaluate_track(
    track: &Track,
    options: Options,
    band_prior: BandQuantiles,
    report: &mut Report,
) -> Result<()> {
    let (plan, cases) = plan_of(track)?;
    let legs = &plan.relays[0].legs;
    let real_end: Vec<Timestamp> = cases.iter().map(|c| track.fixes[c.to].0).collect();
    let real_start: Vec<Timestamp> = cases.iter().map(|c| track.fixes[c.from].0).collect();
    let real_s: Vec<f64> = (0..LEGS)
        .map(|k| secs_f64(real_end[k].duration_since(real_start[k])).max(1.0))
        .collect();
    // Every ping, in time order: each leg's fixes from its carrier's device (the exchange fix
    // from both phones, which are both there), and a waiting receiver's if asked for.
    let mut pings: Vec<(Timestamp, usize, Ping)> = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        for &(t, at) in &track.fixes[c.from..=c.to] {
            pings.push((t, k, ping_at(t, at)));
        }
        if options.receiver_waits && k + 1 < LEGS {
            let exchange = track.fixes[c.to].1;
            let mut t = plus_secs(real_end[k], -300.0);
            while t < real_end[k] {
                pings.push((t, k + 1, ping_at(t, exchange)));
                t = plus_secs(t, secs_f64(SignedDuration::from_millis(WAIT_EVERY_MS)));
            }
        }
    }
    pings.sort_by_key(|(t, k, _)| (*t, *k));
    let progress: Vec<Vec<(Timestamp, f64)>> = (0..LEGS)
        .map(|k| progress(&plan, track, k, &cases[k]))
        .collect();
    let mut reads: Vec<(Timestamp, usize, f64)> = Vec::new();
    for k in 0..LEGS {
        for f in FRACTIONS {
            reads.push((plus_secs(real_start[k], real_s[k] * f), k, f));
        }
    }
    reads.sort_by_key(|(t, k, _)| (*t, *k));
    let carriers: Vec<String> = (0..LEGS).map(|k| format!("C{k}")).collect();
    let mut tr = Tracker::new(Arc::clone(&plan)).with_band_prior(band_prior);
    let mut next = 0;
    for (now, k, f) in reads {
        while let Some((t, who, p)) = pings.get(next) {
            if *t > now {
                break;
            }
            tr.apply(&carriers[*who], &carriers[*who], p);
            next += 1;
        }
        tr.tick(now);
        let Some(view) = tr.relay_view("r", now, false) else {
            continue;
        };
        let mut push_banded =
            |target: Target, predictor: Predictor, eta: Timestamp, band: Option<_>| {
                let j = if target == Target::Current { k } else { k + 1 };
                let to_go = |t: Timestamp| secs_f64(t.duration_since(now));
                report.samples.push(Sample {
                    track: track.name.clone(),
                    leg: k,
                    fraction: f,
                    target,
                    predictor,
                    error_pct: secs_f64(eta.duration_since(real_end[j])) / real_s[j] * 100.0,
                    inside_band: band.map(|(lo, hi): (Timestamp, Timestamp)| {
                        lo <= real_end[j] && real_end[j] <= hi
                    }),
                    ln_to_go: (predictor == Predictor::Handoff
                        && to_go(eta) > 0.0
                        && to_go(real_end[j]) > 0.0)
                        .then(|| (to_go(real_end[j]) / to_go(eta)).ln()),
                });
            };
        let has_next = k + 1 < LEGS;
        // "When does it pass here", for points ahead: on the current leg from where the holder
        // was last seen, and on the next leg.
        let seen = view
            .position
            .map(|p| (view.legs[k].along_m, p.t))
            .filter(|_| view.current_leg == Some(k));
        for (target, j) in [(Target::Current, k), (Target::Next, k + 1)] {
            if j >= LEGS {
                continue;
            }
            let leg = &legs[j];
            let points: Vec<f64> = if target == Target::Current {
                let from = seen.map_or(0.0, |(a, _)| a);
                [1.0 / 3.0, 2.0 / 3.0]
                    .map(|x| from + (leg.length_m() - from) * x)
                    .to_vec()
            } else {
                [0.25, 0.5, 0.75].map(|x| leg.length_m() * x).to_vec()
            };
            for along_m in points {
                let Some(real) = passed_at(&progress[j], along_m) else {
                    continue;
                };
                for by_terrain in [false, true] {
                    let flat = leg.flat_m.as_deref().filter(|_| by_terrain);
                    let (at, band) = pass_time(
                        &view.legs[j],
                        seen.filter(|_| j == k),
                        |a| leg.time_share(flat, a),
                        along_m,
                        j.checked_sub(1)
                            .and_then(|i| view.legs[i].eta_lo.zip(view.legs[i].eta_hi)),
                    );
                    report.passes.push(Pass {
                        track: track.name.clone(),
                        leg: k,
                        fraction: f,
                        target,
                        by_terrain,
                        error_pct: secs_f64(at.duration_since(real)) / real_s[j] * 100.0,
                        inside_band: band.map(|(lo, hi)| lo <= real && real <= hi),
                    });
                }
            }
        }
        let band = |l: &crate::snapshot::LegView| l.eta_lo.zip(l.eta_hi);
        push_banded(
            Target::Current,
            Predictor::Handoff,
            view.legs[k].eta_end,
            band(&view.legs[k]),
        );
        if has_next {
            push_banded(
                Target::Next,
                Predictor::Handoff,
                view.legs[k + 1].eta_end,
                band(&view.legs[k + 1]),
            );
        }
        let mut push = |target, predictor, eta| push_banded(target, predictor, eta, None);
        push(Target::Current, Predictor::Planned, cases[k].planned_end);
        if has_next {
            push(Target::Next, Predictor::Planned, cases[k + 1].planned_end);
        }
        // The baselines, from the fixes of this leg up to now.
        let seen: Vec<(Timestamp, f64)> = progress[k]
            .iter()
            .copied()
            .filter(|(t, _)| *t <= now)
            .collect();
        let Some(&(last_t, along)) = seen.last() else {
            continue;
        };
        let planned_mps = legs[k].length_m() / (legs[k].duration_ms() as f64 / 1000.0).max(1.0);
        let floor = planned_mps * 0.1;
        let back = plus_secs(last_t, -(RECENT_MS as f64) / 1000.0);
        let (t0, a0) = seen
            .iter()
            .rev()
            .find(|(t, _)| *t <= back)
            .copied()
            .unwrap_or((real_start[k], 0.0));
        let recent = (along - a0) / secs_f64(last_t.duration_since(t0)).max(1.0);
        let average = along / secs_f64(last_t.duration_since(real_start[k])).max(1.0);
        let remaining = (legs[k].length_m() - along).max(0.0);
        for (predictor, pace) in [
            (Predictor::RecentPace, recent),
            (Predictor::LegAverage, average),
        ] {
            let pace = pace.max(floor);
            let end = plus_secs(last_t, remaining / pace).max(now);
            push(Target::Current, predictor, end);
            if has_next {
                push(
                    Target::Next,
                    predictor,
                    plus_secs(end, legs[k + 1].length_m() / pace),
                );
            }
        }
    }
    // The rest of the pings, then time well past the finish: every leg's stamp.
    for (_, who, p) in &pings[next..] {
        tr.apply(&carriers[*who], &carriers[*who], p);
    }
    let after = plus_secs(real_end[LEGS - 1], 600.0);
    tr.tick(after);
    if let Some(view) = tr.relay_view("r", after, false) {
        for (k, end) in real_end.iter().enumerate() {
            report.stamps.push(Stamp {
                track: track.name.clone(),
                leg: k,
                error_s: view.legs[k]
                    .actual_end
                    .map(|e| secs_f64(e.duration_since(*end))),
            });
        }
    }
    Ok(())
}

/// The `q` quantile (0..=1) of `values`, linearly interpolated; `None` when empty.
#[must_use]
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - pos.floor()))
}

/// The share (0–1) of `samples`' real ends inside the engine's band, for one target at one
/// fraction of the leg (all three when `fraction` is `None`).
fn coverage(samples: &[Sample], target: Target, fraction: Option<f64>) -> Option<f64> {
    share_inside(
        samples
            .iter()
            .filter(|s| {
                s.target == target && fraction.is_none_or(|f| (s.fraction - f).abs() < 1e-9)
            })
            .filter_map(|s| s.inside_band),
    )
}

/// The share (0–1) of `inside` that is true; `None` when empty.
fn share_inside(inside: impl Iterator<Item = bool>) -> Option<f64> {
    let (mut yes, mut n) = (0_u32, 0_u32);
    for b in inside {
        yes += u32::from(b);
        n += 1;
    }
    (n > 0).then(|| f64::from(yes) / f64::from(n))
}

impl Report {
    /// The absolute errors (%) of one predictor for one target at one fraction of the leg.
    #[must_use]
    pub fn errors(&self, predictor: Predictor, target: Target, fraction: f64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| {
                s.predictor == predictor
                    && s.target == target
                    && (s.fraction - fraction).abs() < 1e-9
            })
            .map(|s| s.error_pct.abs())
            .collect()
    }

    /// Median and 90th percentile of the absolute error (%).
    #[must_use]
    pub fn summary(
        &self,
        predictor: Predictor,
        target: Target,
        fraction: f64,
    ) -> Option<(f64, f64)> {
        let e = self.errors(predictor, target, fraction);
        Some((quantile(&e, 0.5)?, quantile(&e, 0.9)?))
    }

    /// Head to head with a baseline: on how many of the predictions for one target at one
    /// fraction of the leg the engine was closer to the real end than `baseline` (same track,
    /// leg and instant), and of how many. A median can move by a point when one prediction
    /// crosses it; this says whether the engine is better prediction by prediction.
    #[must_use]
    pub fn closer_than(
        &self,
        baseline: Predictor,
        target: Target,
        fraction: f64,
    ) -> Option<(usize, usize)> {
        let at = |p: Predictor| {
            self.samples.iter().filter(move |s| {
                s.predictor == p && s.target == target && (s.fraction - fraction).abs() < 1e-9
            })
        };
        let (mut closer, mut n) = (0, 0);
        for ours in at(Predictor::Handoff) {
            let Some(theirs) = at(baseline).find(|s| s.track == ours.track && s.leg == ours.leg)
            else {
                continue;
            };
            n += 1;
            closer += usize::from(ours.error_pct.abs() < theirs.error_pct.abs());
        }
        (n > 0).then_some((closer, n))
    }

    /// The share (0–1) of real ends inside the engine's band, for one target at one fraction of
    /// the leg (all three when `fraction` is `None`).
    #[must_use]
    pub fn band_coverage(&self, target: Target, fraction: Option<f64>) -> Option<f64> {
        coverage(&self.samples, target, fraction)
    }

    /// [`Self::band_coverage`] with each track's bands' prior measured on the other tracks
    /// ([`Self::held_out`]).
    #[must_use]
    pub fn held_out_coverage(&self, target: Target, fraction: Option<f64>) -> Option<f64> {
        coverage(&self.held_out, target, fraction)
    }

    /// The 10th and 90th percentiles of `ln(real / predicted time to go)` of the engine's
    /// predictions for one target, over the three fractions.
    #[must_use]
    pub fn to_go_spread(&self, target: Target) -> Option<(f64, f64)> {
        let v: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.target == target)
            .filter_map(|s| s.ln_to_go)
            .collect();
        Some((quantile(&v, 0.1)?, quantile(&v, 0.9)?))
    }

    /// "When does it pass here": median and 90th percentile of |error| (%) of the points of one
    /// target read at one fraction of the leg, timed by terrain or by distance, and how many.
    #[must_use]
    pub fn pass_summary(
        &self,
        target: Target,
        fraction: f64,
        by_terrain: bool,
    ) -> Option<(f64, f64, usize)> {
        let e: Vec<f64> = self
            .passes
            .iter()
            .filter(|p| {
                p.target == target
                    && p.by_terrain == by_terrain
                    && (p.fraction - fraction).abs() < 1e-9
            })
            .map(|p| p.error_pct.abs())
            .collect();
        Some((quantile(&e, 0.5)?, quantile(&e, 0.9)?, e.len()))
    }

    /// The share (0–1) of points ahead (of one target, read at one fraction of the leg, timed by
    /// terrain) passed inside the band the page gives them.
    #[must_use]
    pub fn pass_band_coverage(&self, target: Target, fraction: f64) -> Option<f64> {
        share_inside(
            self.passes
                .iter()
                .filter(|p| {
                    p.target == target && p.by_terrain && (p.fraction - fraction).abs() < 1e-9
                })
                .filter_map(|p| p.inside_band),
        )
    }

    /// Stamp errors (engine − real, seconds) of the legs that ended.
    #[must_use]
    pub fn stamp_errors(&self) -> Vec<f64> {
        self.stamps.iter().filter_map(|s| s.error_s).collect()
    }

    /// The report as Markdown tables.
    #[must_use]
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for (target, title) in [
            (Target::Current, "current leg's end"),
            (Target::Next, "next leg's end"),
        ] {
            let n = self.errors(Predictor::Handoff, target, FRACTIONS[0]).len();
            let _ = writeln!(
                out,
                "**{title}** ({n} predictions at each point): median / 90th percentile of |error|, % of the leg's real duration\n"
            );
            let _ = writeln!(out, "| prediction | at 25 % | at 50 % | at 75 % |");
            let _ = writeln!(out, "|---|---|---|---|");
            for p in Predictor::ALL {
                let cells: Vec<String> = FRACTIONS
                    .iter()
                    .map(|&f| {
                        self.summary(p, target, f)
                            .map_or_else(|| "–".into(), |(m, p90)| format!("{m:.1} / {p90:.1}"))
                    })
                    .collect();
                let _ = writeln!(out, "| {} | {} |", p.label(), cells.join(" | "));
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "**Head to head**: predictions on which handoff was closer to the real end than the baseline (same leg, same instant)\n"
        );
        let _ = writeln!(
            out,
            "| end | baseline | at 25 % | at 50 % | at 75 % |\n|---|---|---|---|---|"
        );
        for (target, title) in [
            (Target::Current, "current leg's"),
            (Target::Next, "next leg's"),
        ] {
            for p in Predictor::ALL.into_iter().skip(1) {
                let cells: Vec<String> = FRACTIONS
                    .iter()
                    .map(|&f| {
                        self.closer_than(p, target, f)
                            .map_or_else(|| "–".into(), |(w, n)| format!("{w} of {n}"))
                    })
                    .collect();
                let _ = writeln!(out, "| {title} | {} | {} |", p.label(), cells.join(" | "));
            }
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "**Error bands** (`eta_lo`–`eta_hi`, meant to hold 80 %): share of real ends inside\n"
        );
        let _ = writeln!(
            out,
            "| end | at 25 % | at 50 % | at 75 % | all | spread of ln(real ÷ predicted time to go), 10th / 90th pct |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for (target, title) in [
            (Target::Current, "current leg's"),
            (Target::Next, "next leg's"),
        ] {
            let pct =
                |c: Option<f64>| c.map_or_else(|| "–".into(), |c| format!("{:.0} %", c * 100.0));
            let cells: Vec<String> = FRACTIONS
                .iter()
                .map(|&f| pct(self.band_coverage(target, Some(f))))
                .collect();
            let spread = self
                .to_go_spread(target)
                .map_or_else(|| "–".into(), |(a, b)| format!("{a:+.2} / {b:+.2}"));
            let _ = writeln!(
                out,
                "| {title} | {} | {} | {spread} |",
                cells.join(" | "),
                pct(self.band_coverage(target, None))
            );
            if !self.held_out.is_empty() {
                let cells: Vec<String> = FRACTIONS
                    .iter()
                    .map(|&f| pct(self.held_out_coverage(target, Some(f))))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {title}, prior from the other tracks | {} | {} | – |",
                    cells.join(" | "),
                    pct(self.held_out_coverage(target, None))
                );
            }
        }
        out.push('\n');
        if !self.passes.is_empty() {
            let n = |target| {
                self.pass_summary(target, FRACTIONS[0], false)
                    .map_or(0, |(_, _, n)| n)
            };
            let _ = writeln!(
                out,
                "**When does it pass here** (points ahead, timed as the live page times them: {} on the current leg, a third and two thirds of the way from the holder to its end; {} on the next, at a quarter, half and three quarters of it, at each point): median / 90th percentile of |error|, % of the point's leg's real duration\n",
                n(Target::Current),
                n(Target::Next)
            );
            let _ = writeln!(
                out,
                "| timed | current leg, at 25 % | at 50 % | at 75 % | next leg, at 25 % | at 50 % | at 75 % |\n|---|---|---|---|---|---|---|"
            );
            // One row: a cell for each target at each fraction.
            let mut row = |label: &str, cell: &dyn Fn(Target, f64) -> Option<String>| {
                let cells: Vec<String> = [Target::Current, Target::Next]
                    .iter()
                    .flat_map(|&t| FRACTIONS.iter().map(move |&f| (t, f)))
                    .map(|(t, f)| cell(t, f).unwrap_or_else(|| "–".into()))
                    .collect();
                let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
            };
            for (by_terrain, label) in [
                (false, "evenly by distance"),
                (true, "by the leg's terrain"),
            ] {
                row(label, &|t, f| {
                    let (m, p90, _) = self.pass_summary(t, f, by_terrain)?;
                    Some(format!("{m:.1} / {p90:.1}"))
                });
            }
            row("passed inside the band shown (by terrain)", &|t, f| {
                Some(format!("{:.0} %", self.pass_band_coverage(t, f)? * 100.0))
            });
            out.push('\n');
        }
        let stamps = self.stamp_errors();
        let never = self.stamps.len() - stamps.len();
        let abs: Vec<f64> = stamps.iter().map(|x| x.abs()).collect();
        let _ = writeln!(
            out,
            "**Legs' end stamps** (engine − real, {} legs{}): median |error| {:.0} s, 90th percentile {:.0} s, earliest {:+.0} s, latest {:+.0} s\n",
            stamps.len(),
            if never > 0 {
                format!(", {never} never ended")
            } else {
                String::new()
            },
            quantile(&abs, 0.5).unwrap_or(f64::NAN),
            quantile(&abs, 0.9).unwrap_or(f64::NAN),
            stamps.iter().copied().fold(f64::INFINITY, f64::min),
            stamps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_left_on_at_the_finish_ends_at_the_arrival() {
        let t0: Timestamp = "2024-08-11T20:00:00Z".parse().expect("time");
        let at = |s: i32| {
            t0.checked_add(SignedDuration::from_secs(i64::from(s)))
                .expect("time")
        };
        // 100 fixes 5 s and ~20 m apart eastward, then 40 fixes standing there, a few metres off.
        let mut fixes: Vec<(Timestamp, Coord)> = (0..100_i32)
            .map(|i| (at(i * 5), Coord::new(2.0 + f64::from(i) * 0.000_27, 48.0)))
            .collect();
        let stop = fixes[99].1;
        for i in 0..40_i32 {
            let off = f64::from(i % 3) * 0.000_02;
            fixes.push((at(500 + i * 5), Coord::new(stop.lon + off, stop.lat - off)));
        }
        assert_eq!(arrival(&fixes), 99);
        // Without a tail the recording is whole; an empty one has nothing to cut.
        assert_eq!(arrival(&fixes[..100]), 99);
        assert_eq!(arrival(&[]), 0);
    }

    fn sample(track: &str, predictor: Predictor, error_pct: f64) -> Sample {
        Sample {
            track: track.into(),
            leg: 0,
            fraction: 0.25,
            target: Target::Current,
            predictor,
            error_pct,
            inside_band: None,
            ln_to_go: None,
        }
    }

    #[test]
    fn a_held_out_prior_comes_from_the_other_tracks_only() {
        let spread = |track: &str, target: Target, lns: &[f64]| -> Vec<Sample> {
            lns.iter()
                .map(|&ln| Sample {
                    target,
                    ln_to_go: Some(ln),
                    ..sample(track, Predictor::Handoff, 0.0)
                })
                .collect()
        };
        let mut samples = spread("a", Target::Current, &[-9.0, 9.0]);
        samples.extend(spread("a", Target::Next, &[-9.0, 9.0]));
        samples.extend(spread("b", Target::Current, &[-0.1, 0.0, 0.1]));
        samples.extend(spread("b", Target::Next, &[-0.2, 0.2]));
        let prior = held_out_prior(&samples, "a").expect("b has samples");
        assert!((prior.current.0 - -0.08).abs() < 1e-9, "{prior:?}");
        assert!((prior.current.1 - 0.08).abs() < 1e-9, "{prior:?}");
        assert!((prior.later.0 - -0.16).abs() < 1e-9, "{prior:?}");
        assert!((prior.later.1 - 0.16).abs() < 1e-9, "{prior:?}");
        // Leaving out the only track with samples of a kind leaves no prior.
        samples.retain(|s| s.track == "a" || s.target == Target::Current);
        assert!(held_out_prior(&samples, "a").is_none());
    }

    #[test]
    fn head_to_head_compares_the_same_prediction_by_its_absolute_error() {
        let report = Report {
            tracks: vec!["a".into(), "b".into(), "c".into()],
            samples: vec![
                sample("a", Predictor::Handoff, -2.0),
                sample("a", Predictor::RecentPace, 3.0),
                sample("b", Predictor::Handoff, 5.0),
                sample("b", Predictor::RecentPace, -4.0),
                // A tie is not closer; a prediction with no baseline beside it is not counted.
                sample("c", Predictor::Handoff, 1.0),
                sample("c", Predictor::RecentPace, -1.0),
                sample("d", Predictor::Handoff, 0.0),
            ],
            stamps: Vec::new(),
            held_out: Vec::new(),
            passes: Vec::new(),
        };
        assert_eq!(
            report.closer_than(Predictor::RecentPace, Target::Current, 0.25),
            Some((1, 3))
        );
        assert_eq!(
            report.closer_than(Predictor::LegAverage, Target::Current, 0.25),
            None
        );
        assert_eq!(
            report.closer_than(Predictor::RecentPace, Target::Next, 0.25),
            None
        );
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        let q = quantile(&(0..=10).map(f64::from).collect::<Vec<_>>(), 0.9).unwrap();
        assert!((q - 9.0).abs() < 1e-12);
    }
}
