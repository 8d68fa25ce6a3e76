//! `handoff plan check` and `handoff plan show`.

use crate::files::DirFiles;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use handoff_core::plan::{self, Plan};
use handoff_core::schedule::{self, fmt_countdown, local, utc};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Reads and checks one plan; on failure the problems are already rendered, one per line.
pub fn load(path: &Path) -> Result<Plan, Vec<String>> {
    let shown = path.display().to_string();
    let src =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: cannot read: {e}")])?;
    plan::parse(&src, &DirFiles::beside(path))
        .map_err(|ps| ps.0.iter().map(|p| p.render(&shown, &src)).collect())
}

pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match load(f) {
            Ok(p) => {
                let legs: usize = p.relays.iter().map(|r| r.legs.len()).sum();
                eprintln!(
                    "{}: ok ({} relays, {legs} legs)",
                    f.display(),
                    p.relays.len()
                );
            }
            Err(lines) => {
                ok = false;
                for l in lines {
                    println!("{l}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn show(file: &Path) -> anyhow::Result<ExitCode> {
    let plan = match load(file) {
        Ok(p) => p,
        Err(lines) => {
            for l in lines {
                println!("{l}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    print!("{}", render_schedule(&plan, jiff::Timestamp::now()));
    Ok(ExitCode::SUCCESS)
}

/// The schedule and countdowns as text (a table per relay).
pub fn render_schedule(plan: &Plan, now: jiff::Timestamp) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", plan.event.name, plan.event.id);
    let rows = schedule::rows(plan);
    for relay in &plan.relays {
        let _ = writeln!(
            out,
            "\nRelay {}{}",
            relay.name,
            if relay.object.is_empty() {
                String::new()
            } else {
                format!(" — {}", relay.object)
            }
        );
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        t.set_header([
            "leg",
            "carriers",
            "mode",
            "from → to",
            "distance",
            "start (local)",
            "end (local)",
            "start (UTC)",
            "end (UTC)",
        ]);
        for r in rows.iter().filter(|r| r.relay == relay.id) {
            t.add_row([
                r.leg.to_string(),
                r.carriers.join(", "),
                r.mode.to_string(),
                if r.from == r.to {
                    r.from.clone()
                } else {
                    format!("{} → {}", r.from, r.to)
                },
                if r.distance_m > 0.0 {
                    fmt_km(r.distance_m)
                } else {
                    "—".into()
                },
                r.start_local(),
                r.end_local(),
                utc(r.start),
                utc(r.end),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    let cds = schedule::countdowns(plan, now);
    if !cds.is_empty() {
        let _ = writeln!(out, "\nCountdowns (from {}):", utc(now));
        for c in cds {
            let when = local(c.at, &c.timezone);
            if c.remaining.is_negative() {
                let _ = writeln!(
                    out,
                    "  {:<32} {when}   passed {} ago",
                    c.name,
                    fmt_countdown(c.remaining)
                );
            } else {
                let _ = writeln!(
                    out,
                    "  {:<32} {when}   in {}",
                    c.name,
                    fmt_countdown(c.remaining)
                );
            }
        }
    }
    out
}

fn fmt_km(m: f64) -> String {
    if m < 1000.0 {
        format!("{m:.0} m")
    } else {
        format!("{:.1} km", m / 1000.0)
    }
}
