use handoff_core::eval::Track;
use handoff_core::plan::{Locomotion, Mode};
use handoff_core::route::Route;
fn main() {
    let chunk_m: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000.0);
    for name in [
        "hike-tenerife-5km",
        "hike-gpsmap64s-17km",
        "run-garmin-connect-12km",
        "run-visnjan-4km",
        "run-taipei-riverside-5km",
        "run-santa-rosa-marathon-42km",
    ] {
        let text = std::fs::read_to_string(format!("crates/handoff-core/tests/tracks/{name}.gpx"))
            .unwrap();
        let t = Track::from_gpx(name, Mode::Walk, &text).unwrap();
        let pts: Vec<_> = t.fixes.iter().map(|f| f.1).collect();
        let r = Route::new(pts).unwrap();
        let mut cum = vec![0.0];
        for w in t.fixes.windows(2) {
            cum.push(cum.last().unwrap() + handoff_core::geodesic::distance_m(w[0].1, w[1].1));
        }
        let len = *cum.last().unwrap();
        let time_at = |x: f64| -> f64 {
            let i = cum.partition_point(|&c| c < x).min(cum.len() - 1);
            (t.fixes[i].0 - t.fixes[0].0).as_secs_f64()
        };
        let mut rows = vec![];
        let mut a = 0.0;
        while a + chunk_m / 2.0 < len {
            let b = (a + chunk_m).min(len);
            let real = time_at(b) - time_at(a);
            let foot = r.flat_equivalent_m(Locomotion::Foot, a, b);
            let e = |x: f64| {
                let i = cum.partition_point(|&c| c < x).min(cum.len() - 1);
                t.fixes[i].1.ele_m.unwrap()
            };
            rows.push((
                real / (b - a),
                real / foot,
                (e(b) - e(a)) / (b - a),
                foot / (b - a),
            ));
            a = b;
        }
        let cv = |k: usize| {
            let v: Vec<f64> = rows
                .iter()
                .map(|r| match k {
                    0 => r.0,
                    _ => r.1,
                })
                .map(f64::ln)
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        println!(
            "{name}: len {len:.0} sd ln(s/m) flat {:.3} tobler {:.3}",
            cv(0),
            cv(1)
        );
        for r in &rows {
            println!(
                "   grade {:+.3} cost {:.2}  flat {:.3} tobler {:.3}",
                r.2, r.3, r.0, r.1
            );
        }
    }
}
