//! The demo's scenario: the flag handover from `examples/flag-handover` (embedded in the
//! binary), rebased so it starts now, with the beach concert moved to begin as the flag
//! reaches the sand; how many real seconds each leg gets on screen; and how each exchange is
//! verified (as it would be for real: an operator on stage, proximity where both carriers have
//! phones, the two-party code at the Hollywood Sign).

use handoff_core::plan::{Mode, RouteFiles};
use jiff::{SignedDuration, Timestamp};
use std::path::Path;

const PLAN: &str = include_str!("../../../../examples/flag-handover/plan.toml");
const ROUTES: &[(&str, &str)] = &[
    (
        "routes/paris-motorcycle.gpx",
        include_str!("../../../../examples/flag-handover/routes/paris-motorcycle.gpx"),
    ),
    (
        "routes/hollywood-skateboard.geojson",
        include_str!("../../../../examples/flag-handover/routes/hollywood-skateboard.geojson"),
    ),
    (
        "routes/la-bike.gpx",
        include_str!("../../../../examples/flag-handover/routes/la-bike.gpx"),
    ),
    (
        "routes/santa-monica-run.geojson",
        include_str!("../../../../examples/flag-handover/routes/santa-monica-run.geojson"),
    ),
];

/// The example's route files, from the binary.
pub struct EmbeddedFiles;

impl RouteFiles for EmbeddedFiles {
    fn read(&self, relative: &Path) -> Result<String, String> {
        let name = relative.to_string_lossy().replace('\\', "/");
        ROUTES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| (*t).to_string())
            .ok_or_else(|| format!("the demo has no route file `{name}`"))
    }
}

/// Real seconds a leg is shown for at `--speed 1`.
#[must_use]
pub fn show_seconds(mode: Mode) -> f64 {
    match mode {
        Mode::Stage => 9.0,
        Mode::Motorcycle => 24.0,
        Mode::Flight => 30.0,
        Mode::Parachute => 12.0,
        Mode::Skateboard => 18.0,
        Mode::Bike => 24.0,
        Mode::Run => 16.0,
        _ => 15.0,
    }
}

/// How an exchange is verified in the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// An operator records it (a stage: nobody on it carries a phone).
    Operator,
    /// Both carriers' phones at the exchange point (the server finds it).
    Proximity,
    /// The receiver enters the giver's one-time code.
    TwoParty,
}

/// The plan source with route files inlined, the flag relay starting at `start` and the
/// concert starting when the flag's planned schedule reaches the beach.
///
/// # Errors
/// When the embedded example cannot be read (a build problem).
pub fn rebased_plan(start: Timestamp) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(PLAN)?;
    crate::cmd::plan::inline_route_files(&mut doc, &EmbeddedFiles)?;
    // Parse once to learn the flag relay's planned length.
    let probe = handoff_core::plan::parse(&toml::to_string(&doc)?, &handoff_core::plan::NoFiles)
        .map_err(|p| anyhow::anyhow!("the embedded example does not parse: {p}"))?;
    let flag = probe
        .relay("flag")
        .ok_or_else(|| anyhow::anyhow!("the example has no `flag` relay"))?;
    let flag_len = flag
        .end()
        .unwrap_or(flag.legs[0].start)
        .duration_since(flag.legs[0].start);
    let concert_start = start.checked_add(flag_len).unwrap_or(start);
    let Some(toml::Value::Array(relays)) = doc.get_mut("relays") else {
        anyhow::bail!("the example has no relays");
    };
    for r in relays {
        let id = r
            .get("id")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let at = if id == "flag" { start } else { concert_start };
        if let Some(toml::Value::Array(legs)) = r.get_mut("legs")
            && let Some(first) = legs.first_mut().and_then(toml::Value::as_table_mut)
        {
            first.insert("start".into(), toml::Value::String(at.to_string()));
        }
    }
    Ok(toml::to_string(&doc)?)
}

/// The clock's spans: every flag leg, then every concert leg, each with its show time.
#[must_use]
pub fn spans(plan: &handoff_core::plan::Plan, speed: f64) -> Vec<(SignedDuration, f64)> {
    let mut out = Vec::new();
    for id in ["flag", "stage"] {
        if let Some(r) = plan.relay(id) {
            for l in &r.legs {
                let show = if id == "stage" {
                    10.0
                } else {
                    show_seconds(l.mode)
                };
                out.push((l.end.duration_since(l.start), show / speed.max(0.01)));
            }
        }
    }
    out
}

/// How the exchange after a leg of mode `from_mode` is verified (the arrival after the last
/// leg is always recorded by an operator).
#[must_use]
pub fn verification(relay: &str, from_mode: Mode) -> Verify {
    match (relay, from_mode) {
        ("flag", Mode::Parachute) => Verify::TwoParty,
        ("flag", Mode::Stage) | ("stage", _) => Verify::Operator,
        _ => Verify::Proximity,
    }
}
