//! The full ETA evaluation (docs/eta.md): every recorded track in `tests/tracks/` (or the
//! folder given), replayed through the engine; prints the report as Markdown.
//!
//! `cargo run --release -p handoff-core --example eta [DIR] [--samples]` (`--samples`: every
//! prediction's signed error, one a line, instead of the tables)

use handoff_core::eval::{Options, Track, evaluate};
use handoff_core::plan::Mode;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples = std::env::args().any(|a| a == "--samples");
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tracks").to_string());
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gpx"))
        .collect();
    names.sort();
    let mut tracks = Vec::new();
    for path in names {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some(mode) = mode_of(&name) else {
            eprintln!("{name}: skipped (name it run-…, ride-… or hike-…)");
            continue;
        };
        tracks.push(Track::from_gpx(
            &name,
            mode,
            &std::fs::read_to_string(&path)?,
        )?);
    }
    for (title, options) in [
        ("Receiver's phone off until the handoff", Options::default()),
        (
            "Receiver waiting at the exchange with the phone on",
            Options {
                receiver_waits: true,
            },
        ),
    ] {
        let report = evaluate(&tracks, options)?;
        if samples {
            // Every prediction's signed error, one a line (tab-separated), to see where a
            // median comes from.
            for s in &report.samples {
                println!(
                    "{}\t{}\t{}\t{:?}\t{:?}\t{:.1}",
                    s.track, s.leg, s.fraction, s.target, s.predictor, s.error_pct
                );
            }
            continue;
        }
        println!(
            "### {title}\n\n{} tracks: {}\n",
            report.tracks.len(),
            report.tracks.join(", ")
        );
        println!("{}", report.markdown());
    }
    Ok(())
}

/// The mode a track is planned in, from its file name.
fn mode_of(name: &str) -> Option<Mode> {
    match name.split('-').next()? {
        "run" => Some(Mode::Run),
        "ride" => Some(Mode::Bike),
        "hike" => Some(Mode::Walk),
        _ => None,
    }
}
