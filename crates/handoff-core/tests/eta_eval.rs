//! The ETA evaluation as a regression check: the recorded tracks of `tests/tracks/` replayed
//! through the engine (see `handoff_core::eval`); the engine's median errors must stay within
//! the bounds recorded here (docs/eta.md has the full report and the command behind it).
//! Lower a bound when the model gets better; raising one needs a reason in the commit.

use handoff_core::eval::{FRACTIONS, Options, Predictor, Report, Target, Track, evaluate};
use handoff_core::plan::{Locomotion, Mode};

fn tracks() -> Vec<Track> {
    [
        (
            "run-garmin-connect-12km",
            Mode::Run,
            include_str!("tracks/run-garmin-connect-12km.gpx"),
        ),
        (
            "hike-gpsmap64s-17km",
            Mode::Walk,
            include_str!("tracks/hike-gpsmap64s-17km.gpx"),
        ),
        (
            "ride-etrex10-17km",
            Mode::Bike,
            include_str!("tracks/ride-etrex10-17km.gpx"),
        ),
        (
            "run-visnjan-4km",
            Mode::Run,
            include_str!("tracks/run-visnjan-4km.gpx"),
        ),
        (
            "run-santa-rosa-marathon-42km",
            Mode::Run,
            include_str!("tracks/run-santa-rosa-marathon-42km.gpx"),
        ),
        (
            "run-taipei-riverside-5km",
            Mode::Run,
            include_str!("tracks/run-taipei-riverside-5km.gpx"),
        ),
        (
            "ride-berkelland-36km",
            Mode::Bike,
            include_str!("tracks/ride-berkelland-36km.gpx"),
        ),
        (
            "hike-tenerife-5km",
            Mode::Walk,
            include_str!("tracks/hike-tenerife-5km.gpx"),
        ),
        (
            "ride-stavelot-58km",
            Mode::Bike,
            include_str!("tracks/ride-stavelot-58km.gpx"),
        ),
        (
            "run-stavanger-9km",
            Mode::Run,
            include_str!("tracks/run-stavanger-9km.gpx"),
        ),
        (
            "run-chapel-hill-4km",
            Mode::Run,
            include_str!("tracks/run-chapel-hill-4km.gpx"),
        ),
        (
            "ride-hendersonville-17km",
            Mode::Bike,
            include_str!("tracks/ride-hendersonville-17km.gpx"),
        ),
        (
            "ride-milton-keynes-18km",
            Mode::Bike,
            include_str!("tracks/ride-milton-keynes-18km.gpx"),
        ),
        (
            "run-twin-cities-marathon-42km",
            Mode::Run,
            include_str!("tracks/run-twin-cities-marathon-42km.gpx"),
        ),
        (
            "run-new-river-50km",
            Mode::Run,
            include_str!("tracks/run-new-river-50km.gpx"),
        ),
        (
            "run-maribor-5km",
            Mode::Run,
            include_str!("tracks/run-maribor-5km.gpx"),
        ),
        (
            "ride-ioannina-51km",
            Mode::Bike,
            include_str!("tracks/ride-ioannina-51km.gpx"),
        ),
        (
            "ride-belfort-25km",
            Mode::Bike,
            include_str!("tracks/ride-belfort-25km.gpx"),
        ),
        (
            "run-vasteras-5km",
            Mode::Run,
            include_str!("tracks/run-vasteras-5km.gpx"),
        ),
    ]
    .into_iter()
    .map(|(name, mode, text)| Track::from_gpx(name, mode, text).expect("fixture parses"))
    .collect()
}

/// Median |error| (% of the leg's real duration) the engine may not exceed, at 25/50/75 %.
const CURRENT_MAX: [f64; 3] = [6.5, 4.0, 2.0];
const NEXT_MAX: [f64; 3] = [13.5, 12.5, 11.5];

fn medians(report: &Report, target: Target) -> Vec<f64> {
    FRACTIONS
        .iter()
        .map(|&f| {
            report
                .summary(Predictor::Handoff, target, f)
                .expect("samples")
                .0
        })
        .collect()
}

#[test]
fn engine_errors_stay_within_the_recorded_bounds() {
    let report = evaluate(&tracks(), Options::default()).expect("tracks evaluate");
    // 19 tracks × 3 legs × 3 points for the current leg, the first two legs for the next.
    assert_eq!(
        report
            .errors(Predictor::Handoff, Target::Current, 0.5)
            .len(),
        57
    );
    assert_eq!(
        report.errors(Predictor::Handoff, Target::Next, 0.5).len(),
        38
    );
    for p in Predictor::ALL {
        assert_eq!(report.errors(p, Target::Current, 0.25).len(), 57, "{p:?}");
    }
    let current = medians(&report, Target::Current);
    let next = medians(&report, Target::Next);
    println!("{}", report.markdown());
    for (i, f) in FRACTIONS.iter().enumerate() {
        assert!(
            current[i] <= CURRENT_MAX[i],
            "current leg at {f}: {:.2} % > {} %",
            current[i],
            CURRENT_MAX[i]
        );
        assert!(
            next[i] <= NEXT_MAX[i],
            "next leg at {f}: {:.2} % > {} %",
            next[i],
            NEXT_MAX[i]
        );
    }
    // And closer than every baseline, at each point, for the current leg's end and the next.
    for target in [Target::Current, Target::Next] {
        let ours = medians(&report, target);
        for p in [
            Predictor::Planned,
            Predictor::RecentPace,
            Predictor::LegAverage,
        ] {
            for (i, f) in FRACTIONS.iter().enumerate() {
                let theirs = report.summary(p, target, *f).expect("samples").0;
                assert!(
                    ours[i] < theirs,
                    "{target:?} at {f}: {:.2} %, {p:?} {theirs:.2} %",
                    ours[i]
                );
            }
        }
    }
    // The bands hold 80 % ± 10 % of the real ends, for the current leg's and the next one's, at
    // each point (57 and 38 predictions: one prediction is 1.8 and 2.6 points); and so they do
    // out of sample, each track's bands starting from a prior measured on the other eighteen.
    for target in [Target::Current, Target::Next] {
        for f in FRACTIONS {
            let c = report.band_coverage(target, Some(f)).expect("bands");
            let held_out = report.held_out_coverage(target, Some(f)).expect("bands");
            assert!(
                (0.7..=0.9).contains(&c) && (0.7..=0.9).contains(&held_out),
                "{target:?} at {f}: {:.0} % inside ({:.0} % with the prior held out)",
                c * 100.0,
                held_out * 100.0
            );
        }
    }
    // Every leg ends, each at a stamp of its own.
    assert_eq!(report.stamp_errors().len(), 57, "{:?}", report.stamps);
    // "When does it pass here" on the leg under way: timed by its terrain, its points ahead
    // stay within these medians (% of the leg's real duration), and closer than timed evenly by
    // distance, as the page did until then (4.3 / 2.7 / 1.2 % on the nineteen tracks).
    for (i, f) in FRACTIONS.iter().enumerate() {
        let (terrain, _, n) = report
            .pass_summary(Target::Current, *f, true)
            .expect("points");
        let (distance, _, _) = report
            .pass_summary(Target::Current, *f, false)
            .expect("points");
        assert_eq!(n, 114, "two points ahead on each of the 57 legs");
        assert!(
            terrain <= PASS_CURRENT_MAX[i] && terrain < distance,
            "points ahead at {f}: {terrain:.2} % by terrain, {distance:.2} % by distance"
        );
        // And the band the page gives a point holds it 80 % ± 10 % of the time, on the next leg
        // too, whose points are as uncertain as its start (from one instant there: 67 % at 25 %).
        for target in [Target::Current, Target::Next] {
            let c = report.pass_band_coverage(target, *f).expect("bands");
            assert!(
                (0.7..=0.9).contains(&c),
                "points ahead, {target:?} at {f}: {:.0} % inside their band",
                c * 100.0
            );
        }
    }
}

/// Median |error| of "when does it pass here" for points ahead on the leg under way, timed by
/// its terrain, at 25/50/75 % (docs/eta.md).
const PASS_CURRENT_MAX: [f64; 3] = [4.0, 3.0, 1.5];

#[test]
fn legs_are_stamped_when_the_carrier_reached_the_exchange_not_when_they_came_near() {
    use handoff_core::eval::quantile;
    for receiver_waits in [false, true] {
        let report = evaluate(&tracks(), Options { receiver_waits }).expect("tracks evaluate");
        let errs = report.stamp_errors();
        assert_eq!(errs.len(), 57, "{:?}", report.stamps);
        let abs: Vec<f64> = errs.iter().map(|e| e.abs()).collect();
        // Entering the 50–75 m radius stamped legs up to 37 s early (240 s with a receiver
        // waiting there); the closest approach is within a few seconds. Without a receiver the
        // worst is hike-tenerife's finish, 7 s early (the hiker ambles the last metres inside
        // the radius); with one, hike-gpsmap64s's first handoff, 34 s early (one fix of its
        // ~30 s recording).
        let median = quantile(&abs, 0.5).expect("stamps");
        let worst = abs.iter().copied().fold(0.0, f64::max);
        let bound = if receiver_waits { 40.0 } else { 10.0 };
        assert!(
            median <= 5.0 && worst <= bound,
            "waiting {receiver_waits}: {errs:?}"
        );
    }
}

/// The spread (standard deviation of the logarithm) of a ride's time per flat-equivalent metre
/// over stretches of `chunk_m` of its own line, with slopes weighed as `how` does: the better
/// the model of slopes, the steadier that rate over climbs and descents.
fn spread_over_chunks(track: &Track, how: Locomotion, chunk_m: f64) -> f64 {
    use handoff_core::route::Route;
    // The fixes are the route's vertices: its distance along at each is the fix's.
    let route = Route::new(track.fixes.iter().map(|f| f.1).collect()).expect("route");
    let cum = route.cumulative_m();
    let len = route.length_m();
    let secs_at = |x: f64| {
        let i = cum.partition_point(|&c| c < x).min(cum.len() - 1);
        (track.fixes[i].0 - track.fixes[0].0).as_secs_f64()
    };
    let mut logs = Vec::new();
    let mut a = 0.0;
    while a + chunk_m / 2.0 < len {
        let b = (a + chunk_m).min(len);
        logs.push(((secs_at(b) - secs_at(a)) / route.flat_equivalent_m(how, a, b)).ln());
        a = b;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn a_riders_power_explains_the_recorded_rides_slopes_better_than_a_hikers_function() {
    // Over 5 km stretches, the hilly Stavelot ride's seconds per metre vary by a factor of
    // e^0.37 (sd) on flat distance, e^0.24 weighed by Tobler's function, e^0.19 by the rider's
    // power. Over the seven rides together the power model is steadier too (0.79 against 0.87
    // summed), but not on each: the Belfort ride (added in session 15, with fast descents) and
    // the Basel one are steadier by Tobler's function, Hendersonville's level (docs/eta.md).
    let rides: Vec<Track> = tracks()
        .into_iter()
        .filter(|t| t.mode == Mode::Bike)
        .collect();
    assert_eq!(rides.len(), 7);
    let (mut foot, mut bike) = (0.0, 0.0);
    for track in &rides {
        let (f, b) = (
            spread_over_chunks(track, Locomotion::Foot, 5_000.0),
            spread_over_chunks(track, Locomotion::Bike, 5_000.0),
        );
        if track.name == "ride-stavelot-58km" {
            assert!(b < 0.8 * f, "{b:.3} against {f:.3}");
        }
        foot += f;
        bike += b;
    }
    assert!(bike < 0.95 * foot, "{bike:.3} against {foot:.3}");
}
