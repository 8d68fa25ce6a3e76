//! `handoff plan check` and `handoff plan show`.

use super::count;
use crate::files::DirFiles;
use anyhow::Context;
use handoff_core::plan::{self, Plan};
use handoff_core::schedule::{self, fmt_countdown, fmt_distance, local, local_and_utc_lines, utc};
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

/// Every line on stdout, in file order: `FILE: ok (…)` for a valid plan, else one
/// `FILE:LINE:COL: message` line per problem.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match load(f) {
            Ok(p) => {
                let legs: usize = p.relays.iter().map(|r| r.legs.len()).sum();
                println!(
                    "{}: ok ({}, {})",
                    f.display(),
                    count(p.relays.len(), "relay"),
                    count(legs, "leg")
                );
                if let Some(note) = shared_carriers_note(&p) {
                    println!("{}: note: {note}", f.display());
                }
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

/// A warning (not an error) for carrier names in several relays: a device names its relay.
fn shared_carriers_note(plan: &Plan) -> Option<String> {
    let shared = plan.shared_carriers();
    let (name, relays) = shared.first()?;
    Some(format!(
        "{} appear in several relays (\"{name}\" in {relays}); register each of their devices \
         with its relay, POST …/devices {{\"device\", \"carrier\", \"relay\"}}, so teams never \
         see each other's pings, codes or handoffs",
        if shared.len() == 1 {
            "1 carrier name".to_string()
        } else {
            format!("{} carrier names", shared.len())
        }
    ))
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
        // Short cells over several lines (a time as its date, local time and UTC), so the
        // table reads at 100 columns.
        let mut t = crate::table::new();
        t.set_header(["leg", "carriers", "mode", "from → to", "start", "end"]);
        for r in rows.iter().filter(|r| r.relay == relay.id) {
            t.add_row([
                r.leg.to_string(),
                r.carriers.join(", "),
                if r.distance_m > 0.0 {
                    format!("{}\n{}", r.mode, fmt_distance(r.distance_m))
                } else {
                    r.mode.to_string()
                },
                if r.from == r.to {
                    r.from.clone()
                } else {
                    format!("{}\n→ {}", r.from, r.to)
                },
                local_and_utc_lines(r.start, &r.start_zone),
                local_and_utc_lines(r.end, &r.end_zone),
            ]);
        }
        crate::table::keep_whole(&mut t, &[0, 2, 4, 5]);
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

/// The plan's TOML with every `route = { file = … }` replaced by its points, so the server
/// gets a self-contained plan and never reads a path.
pub fn inline_routes(path: &Path) -> anyhow::Result<String> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&src).with_context(|| format!("{} is not valid TOML", path.display()))?;
    inline_route_files(&mut doc, &DirFiles::beside(path))?;
    Ok(toml::to_string(&doc)?)
}

/// Replaces every `route = { file = … }` of a plan document by `points`, read through `files`.
pub fn inline_route_files(
    doc: &mut toml::Table,
    files: &dyn handoff_core::plan::RouteFiles,
) -> anyhow::Result<()> {
    use handoff_core::plan::routefile::{parse_route_file, safe_relative};
    for section in ["relays", "courses"] {
        let Some(toml::Value::Array(items)) = doc.get_mut(section) else {
            continue;
        };
        for item in items {
            let Some(toml::Value::Array(legs)) = item.get_mut("legs") else {
                continue;
            };
            for leg in legs {
                let Some(route) = leg.get_mut("route").and_then(toml::Value::as_table_mut) else {
                    continue;
                };
                let Some(file) = route
                    .get("file")
                    .and_then(toml::Value::as_str)
                    .map(str::to_string)
                else {
                    continue;
                };
                let rel = safe_relative(&file).map_err(|m| anyhow::anyhow!(m))?;
                let text = files.read(&rel).map_err(|m| anyhow::anyhow!(m))?;
                let pts =
                    parse_route_file(&file, &text).map_err(|m| anyhow::anyhow!("{file}: {m}"))?;
                let points: Vec<toml::Value> = pts
                    .iter()
                    .map(|c| {
                        let mut v = vec![toml::Value::Float(c.lon), toml::Value::Float(c.lat)];
                        if let Some(e) = c.ele_m {
                            v.push(toml::Value::Float(e));
                        }
                        toml::Value::Array(v)
                    })
                    .collect();
                route.remove("file");
                route.insert("points".into(), toml::Value::Array(points));
            }
        }
    }
    Ok(())
}

/// Moves every relay's times (leg `start`s and `end`s, a race team's `start`) by `by`;
/// milestones stay, as they are the real dates counted down to.
pub fn shift_relays(doc: &mut toml::Table, by: jiff::SignedDuration) -> anyhow::Result<()> {
    let shift = |v: &mut toml::Value| -> anyhow::Result<()> {
        let Some(text) = v.as_str() else {
            return Ok(());
        };
        // With a zone (RFC 9557) it stays in that zone; with an offset only, it becomes UTC.
        let moved = if text.contains('[') {
            text.parse::<jiff::ZonedDateTime>()?
                .checked_add(by)?
                .to_string()
        } else {
            text.parse::<jiff::Timestamp>()?
                .checked_add(by)?
                .to_string()
        };
        *v = toml::Value::String(moved);
        Ok(())
    };
    let Some(toml::Value::Array(relays)) = doc.get_mut("relays") else {
        return Ok(());
    };
    for relay in relays.iter_mut().filter_map(toml::Value::as_table_mut) {
        if let Some(v) = relay.get_mut("start") {
            shift(v)?;
        }
        let Some(toml::Value::Array(legs)) = relay.get_mut("legs") else {
            continue;
        };
        for leg in legs.iter_mut().filter_map(toml::Value::as_table_mut) {
            for key in ["start", "end"] {
                if let Some(v) = leg.get_mut(key) {
                    shift(v)?;
                }
            }
        }
    }
    Ok(())
}

pub fn push(file: &Path, server: &str, token: &str, rebase_now: bool) -> anyhow::Result<ExitCode> {
    let plan = match load(file) {
        Ok(p) => p,
        Err(lines) => {
            for l in lines {
                println!("{l}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut body = inline_routes(file)?;
    if rebase_now && let Some(start) = plan.start() {
        let now = jiff::Timestamp::now().round(jiff::Unit::Second)?;
        let by = now.duration_since(start);
        let mut doc: toml::Table = toml::from_str(&body)?;
        shift_relays(&mut doc, by)?;
        body = toml::to_string(&doc)?;
        println!(
            "rebased: the plan starts now ({}), its times moved by {}",
            handoff_core::schedule::utc(now),
            handoff_core::schedule::fmt_signed(by)
        );
    }
    let url = format!(
        "{}/api/v1/events/{}",
        server.trim_end_matches('/'),
        plan.event.id
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = rt.block_on(async {
        let resp = reqwest::Client::new()
            .put(&url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        anyhow::Ok((status, resp.text().await.unwrap_or_default()))
    })?;
    if status.is_success() {
        println!("pushed {} to {url}: {text}", plan.event.id);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{url} answered {status}: {text}");
        Ok(ExitCode::FAILURE)
    }
}
