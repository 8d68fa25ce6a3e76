//! `handoff replay`: a recorded GPX track sent as live pings through the batch API, its times
//! shifted so the first point is now, paced like the recording (or `--speed` times faster).

use anyhow::{Context, bail};
use handoff_core::schedule::fmt_duration;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Untimed track points are this far apart.
const UNTIMED_STEP_S: f64 = 5.0;

/// One track point: seconds from the first point, lon, lat, elevation.
type TrackPoint = (f64, f64, f64, Option<f64>);

/// Every track point of a GPX file, timed.
fn points(track: &Path) -> anyhow::Result<Vec<TrackPoint>> {
    let text = std::fs::read_to_string(track)
        .with_context(|| format!("cannot read {}", track.display()))?;
    let gpx = gpx::read(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not valid GPX: {e}", track.display()))?;
    let wps: Vec<&gpx::Waypoint> = gpx
        .tracks
        .iter()
        .flat_map(|t| t.segments.iter())
        .flat_map(|s| s.points.iter())
        .collect();
    if wps.is_empty() {
        bail!("{}: the GPX has no track points", track.display());
    }
    let times: Vec<Option<Timestamp>> = wps
        .iter()
        .map(|w| {
            w.time
                .and_then(|t| t.format().ok())
                .and_then(|s| s.parse().ok())
        })
        .collect();
    let first = times.iter().flatten().next().copied();
    let mut out = Vec::with_capacity(wps.len());
    for (i, (w, t)) in wps.iter().zip(&times).enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let offset = match (t, first) {
            (Some(t), Some(f)) => t.duration_since(f).as_secs_f64(),
            _ => i as f64 * UNTIMED_STEP_S,
        };
        let p = w.point();
        out.push((offset, p.x(), p.y(), w.elevation));
    }
    Ok(out)
}

pub fn run(
    server: &str,
    device: &str,
    token: &str,
    track: &Path,
    speed: f64,
) -> anyhow::Result<ExitCode> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let pts = points(track)?;
    let url = format!("{}/api/v1/pings", server.trim_end_matches('/'));
    let span_s = pts.last().map_or(0.0, |p| p.0) / speed;
    println!(
        "replaying {} ({} points) to {url} as device {device}: about {} at speed {speed}",
        track.display(),
        pts.len(),
        fmt_duration(SignedDuration::from_secs_f64(span_s.max(0.0)))
    );
    let start = Timestamp::now();
    // A bar on a terminal; elsewhere (a pipe, a log) a line at each tenth of the track.
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(pts.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40.cyan/blue}] {pos}/{len} pings  {msg}")?
            .progress_chars("█▌ "),
    );
    bar.set_prefix(device.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let n = pts.len() as u64;
    let (accepted, duplicates) = rt.block_on(async {
        let http = reqwest::Client::new();
        let (mut accepted, mut duplicates) = (0, 0);
        for (offset, lon, lat, ele) in &pts {
            let due = std::time::Duration::from_secs_f64(offset.max(0.0) / speed);
            let elapsed = start.duration_until(Timestamp::now()).unsigned_abs();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
            let t = start.checked_add(SignedDuration::from_secs_f64(offset / speed))?;
            let ping = json!([{ "t": t.to_string(), "lon": lon, "lat": lat, "alt": ele }]);
            let resp = http
                .post(&url)
                .bearer_auth(token)
                .json(&ping)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{url} answered {status}: {body}");
            }
            if let Some(r) = body["rejected"].as_array().and_then(|r| r.first()) {
                let line = format!("refused: {}", r["error"]["message"]);
                if tty {
                    bar.println(line);
                } else {
                    eprintln!("{line}");
                }
            }
            accepted += body["accepted"].as_u64().unwrap_or(0);
            duplicates += body["duplicates"].as_u64().unwrap_or(0);
            bar.inc(1);
            let sent = bar.position();
            if !tty && sent * 10 / n > (sent - 1) * 10 / n {
                println!("  {sent}/{n} pings sent ({accepted} accepted)");
            }
        }
        anyhow::Ok((accepted, duplicates))
    })?;
    bar.finish_with_message("done");
    println!(
        "{}: {accepted} pings accepted, {duplicates} duplicates",
        track.display()
    );
    Ok(ExitCode::SUCCESS)
}
