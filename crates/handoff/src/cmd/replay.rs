//! `handoff replay`: recorded GPX tracks sent as live pings through the batch API, in the
//! server's time. The earliest point of all the tracks becomes the server's now, every point
//! keeps its recorded offset from it (so the legs of a relay, recorded one after another, stay
//! one after another), and each ping is sent when the server's clock reaches its stamp. That
//! clock is read from `/healthz`: real time on a real server, faster on `handoff demo`'s. So the
//! pings are as a phone would send them while the plan runs, and the server's ETAs mean
//! something; dividing the stamps by a speed while the plan runs in real time did not.

use anyhow::{Context, bail};
use handoff_core::schedule::fmt_duration;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Untimed track points are this far apart.
const UNTIMED_STEP_S: f64 = 5.0;

/// How long the server's clock is watched before the first ping, to measure its rate.
const RATE_WINDOW: Duration = Duration::from_millis(1500);

/// How often the server's clock is read again while waiting (its rate may change: the demo's
/// runs each leg at its own rate).
const RESYNC: Duration = Duration::from_secs(2);

/// How far (seconds of the server's time) the estimate of its clock may drift between two
/// readings. The demo's clock changes rate from leg to leg, up to an eleven-hour flight in half a
/// minute (1,320×): read every 2 s there, a drop in rate would leave the estimate 44 minutes
/// ahead, and pings stamped that far ahead are refused (ingest allows 10 minutes).
const MAX_DRIFT_S: f64 = 30.0;

/// How often the clock is read while waiting, at `rate`: every [`RESYNC`], or sooner on a fast
/// clock ([`MAX_DRIFT_S`]), never more often than every 20 ms.
fn resync_every(rate: f64) -> Duration {
    RESYNC.min(Duration::from_secs_f64((MAX_DRIFT_S / rate).max(0.02)))
}

/// A `--speed` within this fraction of the server's measured rate is the same rate.
const RATE_TOLERANCE: f64 = 0.15;

/// One track point: seconds from the track's first timed point, lon, lat, elevation.
type TrackPoint = (f64, f64, f64, Option<f64>);

/// Every track point of a GPX file, timed, and the time of its first timed point (`None` for
/// an untimed track).
fn points(track: &Path) -> anyhow::Result<(Vec<TrackPoint>, Option<Timestamp>)> {
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
    Ok((out, first))
}

/// The server's clock as seen from here: at local instant `at` it read `now`, and it runs
/// `rate` times as fast as real time.
struct ServerClock {
    http: reqwest::Client,
    url: String,
    at: Instant,
    now: Timestamp,
    rate: f64,
}

impl ServerClock {
    /// One reading of `/healthz`'s `now`, placed at the middle of the request.
    async fn read(http: &reqwest::Client, url: &str) -> anyhow::Result<(Instant, Timestamp)> {
        let sent = Instant::now();
        let resp = http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let now = body["now"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .with_context(|| {
                format!("{url} answered {status} without its clock (`now`): {body}")
            })?;
        Ok((sent + sent.elapsed() / 2, now))
    }

    /// Watches the server's clock for [`RATE_WINDOW`] to learn how fast it runs.
    async fn measure(server: &str) -> anyhow::Result<ServerClock> {
        let http = reqwest::Client::new();
        let url = format!("{server}/healthz");
        let (a, first) = Self::read(&http, &url).await?;
        tokio::time::sleep(RATE_WINDOW).await;
        let (at, now) = Self::read(&http, &url).await?;
        let rate = first.duration_until(now).as_secs_f64() / at.duration_since(a).as_secs_f64();
        if !(rate.is_finite() && rate > 0.0) {
            bail!("{url}: the server's clock does not move forward ({first}, then {now})");
        }
        Ok(ServerClock {
            http,
            url,
            at,
            now,
            rate,
        })
    }

    /// The server's time now, as estimated.
    fn estimate(&self) -> anyhow::Result<Timestamp> {
        let ahead = self.at.elapsed().as_secs_f64() * self.rate;
        Ok(self.now.checked_add(SignedDuration::from_secs_f64(ahead))?)
    }

    /// Waits until the server's clock reaches `t`. The clock (and its rate, from the two
    /// readings) is read again whenever [`resync_every`] has passed since the last reading,
    /// however short the waits: pings a second apart are under a millisecond apart on the
    /// demo's fastest clock.
    async fn wait_until(&mut self, t: Timestamp) -> anyhow::Result<()> {
        loop {
            if self.at.elapsed() >= resync_every(self.rate) {
                let (at, now) = Self::read(&self.http, &self.url).await?;
                let real = at.duration_since(self.at).as_secs_f64();
                let rate = self.now.duration_until(now).as_secs_f64() / real;
                if rate.is_finite() && rate > 0.0 {
                    self.rate = rate;
                }
                (self.at, self.now) = (at, now);
            }
            let left = self.estimate()?.duration_until(t).as_secs_f64() / self.rate;
            if left <= 0.0 {
                return Ok(());
            }
            let nap = Duration::from_secs_f64(left).min(resync_every(self.rate));
            tokio::time::sleep(nap).await;
        }
    }
}

/// One device's part of the replay.
struct Part<'a> {
    device: &'a str,
    token: &'a str,
    track: &'a Path,
    points: Vec<TrackPoint>,
    /// The track's first point, in seconds after the earliest first point of all the tracks.
    offset_s: f64,
    accepted: u64,
    duplicates: u64,
}

pub fn run(
    server: &str,
    devices: &[String],
    tokens: &[String],
    tracks: &[PathBuf],
    speed: Option<f64>,
) -> anyhow::Result<ExitCode> {
    if devices.len() != tracks.len() || tokens.len() != tracks.len() {
        bail!(
            "give one --device and one --token per track, in the same order: got {} device(s), \
             {} token(s) and {} track(s)",
            devices.len(),
            tokens.len(),
            tracks.len()
        );
    }
    if let Some(s) = speed
        && !(s.is_finite() && s > 0.0)
    {
        bail!("--speed must be a positive number");
    }
    let mut parts = Vec::with_capacity(tracks.len());
    for ((device, token), track) in devices.iter().zip(tokens).zip(tracks) {
        let (points, first) = points(track)?;
        parts.push((device, token, track, points, first));
    }
    // The tracks keep their recorded times relative to one another (untimed ones start with
    // the earliest).
    let earliest = parts.iter().filter_map(|p| p.4).min();
    let mut parts: Vec<Part> = parts
        .into_iter()
        .map(|(device, token, track, points, first)| Part {
            device,
            token,
            track,
            points,
            offset_s: first
                .zip(earliest)
                .map_or(0.0, |(f, e)| e.duration_until(f).as_secs_f64()),
            accepted: 0,
            duplicates: 0,
        })
        .collect();
    // Every ping of every track, in the order of its offset: (offset, part, point).
    let mut order: Vec<(f64, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (0..p.points.len()).map(move |j| (p.offset_s + p.points[j].0, i, j)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let server = server.trim_end_matches('/');
    let url = format!("{server}/api/v1/pings");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut clock = rt.block_on(ServerClock::measure(server))?;
    if let Some(s) = speed
        && (clock.rate - s).abs() > s * RATE_TOLERANCE
    {
        bail!(
            "--speed {s}: the server's clock runs at {:.1}× real time, so pings paced {s}× \
             faster would not match its plan. Leave --speed out to replay in the server's time \
             (real time on a real server), or replay against a server whose clock runs {s}× \
             faster (as handoff demo's does)",
            clock.rate
        );
    }
    let start = clock.estimate()?;
    let span_s = order.last().map_or(0.0, |o| o.0);
    println!(
        "replaying {} track(s) ({} points) to {url} in the server's time (its clock runs at \
         {:.1}× real time): {} of it, about {} here",
        parts.len(),
        order.len(),
        clock.rate,
        fmt_duration(SignedDuration::from_secs_f64(span_s.max(0.0))),
        fmt_duration(SignedDuration::from_secs_f64(
            (span_s / clock.rate).max(0.0)
        )),
    );
    for p in &parts {
        println!("  {} as device {}", p.track.display(), p.device);
    }
    // A bar on a terminal; elsewhere (a pipe, a log) a line at each tenth of the pings.
    let tty = std::io::stderr().is_terminal();
    let n = order.len() as u64;
    let bar = if tty {
        ProgressBar::new(n)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40.cyan/blue}] {pos}/{len} pings  {msg}")?
            .progress_chars("█▌ "),
    );
    bar.set_prefix(if parts.len() == 1 {
        parts[0].device.to_string()
    } else {
        format!("{} devices", parts.len())
    });
    rt.block_on(async {
        let http = reqwest::Client::new();
        for &(offset, i, j) in &order {
            let t = start.checked_add(SignedDuration::from_secs_f64(offset))?;
            clock.wait_until(t).await?;
            let part = &mut parts[i];
            let (_, lon, lat, ele) = part.points[j];
            let ping = json!([{ "t": t.to_string(), "lon": lon, "lat": lat, "alt": ele }]);
            let resp = http
                .post(&url)
                .bearer_auth(part.token)
                .json(&ping)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{url} answered {status} for device {}: {body}", part.device);
            }
            if let Some(r) = body["rejected"].as_array().and_then(|r| r.first()) {
                let line = format!("{}: refused: {}", part.device, r["error"]["message"]);
                if tty {
                    bar.println(line);
                } else {
                    eprintln!("{line}");
                }
            }
            part.accepted += body["accepted"].as_u64().unwrap_or(0);
            part.duplicates += body["duplicates"].as_u64().unwrap_or(0);
            bar.inc(1);
            let sent = bar.position();
            if !tty && sent * 10 / n > (sent - 1) * 10 / n {
                println!("  {sent}/{n} pings sent");
            }
        }
        anyhow::Ok(())
    })?;
    bar.finish_with_message("done");
    for p in &parts {
        println!(
            "{} ({}): {} pings accepted, {} duplicates",
            p.track.display(),
            p.device,
            p.accepted,
            p.duplicates
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_is_read_often_enough_to_drift_half_a_minute_at_most() {
        assert_eq!(resync_every(1.0), RESYNC);
        assert_eq!(resync_every(15.0), RESYNC);
        // The demo's flight: 1,320× real time, read every 23 ms (30 s of its time).
        let flight = resync_every(1320.0).as_secs_f64();
        assert!((flight * 1320.0 - MAX_DRIFT_S).abs() < 1e-6, "{flight}");
        assert_eq!(resync_every(1.0e6), Duration::from_millis(20));
    }

    /// A real server on 127.0.0.1:0 (a SQLite file in `dir`) on the demo's own clock, running
    /// 1,000× real time for its first 2 s, then 50× (the demo slowing from its flight to a leg
    /// on foot), and that clock.
    async fn server_whose_clock_slows(
        dir: &std::path::Path,
    ) -> (String, std::sync::Arc<crate::demo::clock::DemoClock>) {
        use handoff_server::auth::{AdminToken, new_token};
        use handoff_server::{AppState, Config};
        use std::sync::Arc;
        let base: Timestamp = "2026-01-01T00:00:00Z".parse().expect("instant");
        let clock = Arc::new(crate::demo::clock::DemoClock::new(
            base,
            0.0,
            &[
                (SignedDuration::from_secs(2_000), 2.0),
                (SignedDuration::from_secs(5_000), 100.0),
            ],
        ));
        let store = handoff_store::SqliteStore::open(&dir.join("h.db")).expect("store");
        let c = Arc::clone(&clock);
        let state = AppState::open(
            Arc::new(store),
            Config {
                admin: AdminToken::new(&new_token().expect("token")),
                clock: Some(Arc::new(move || c.now())),
            },
        )
        .await
        .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(handoff_server::launch(
            state,
            listener,
            None,
            std::future::pending(),
        ));
        (url, clock)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_a_millisecond_apart_still_follow_a_drop_in_the_servers_rate() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let (url, server) = server_whose_clock_slows(dir.path()).await;
        let started = Instant::now();
        let mut clock = ServerClock::measure(&url).await.expect("clock");
        // Pings a second apart in the server's time: a millisecond apart at 1,000×, 20 ms at
        // 50×. Before, only a full nap read the clock again, and waits this short never napped
        // that long: after the drop the estimate ran on at 1,000× and the pings ran ahead of the
        // server's clock by minutes within a second (ingest refuses stamps 10 minutes ahead).
        let mut t = clock.estimate().expect("estimate");
        let drop_at: Timestamp = "2026-01-01T00:33:20Z".parse().expect("instant");
        let (mut waits, mut after_drop) = (0, 0);
        while started.elapsed() < Duration::from_millis(3500) {
            t = t
                .checked_add(SignedDuration::from_secs(1))
                .expect("in range");
            clock.wait_until(t).await.expect("wait");
            waits += 1;
            after_drop += usize::from(t > drop_at);
            let ahead_s = server.now().duration_until(t).as_secs_f64();
            // The estimate may drift MAX_DRIFT_S between readings, plus the error of placing a
            // reading at the middle of its request (a few ms on loopback: seconds at 1,000×).
            assert!(
                ahead_s <= MAX_DRIFT_S + 30.0,
                "wait {waits}: {ahead_s:.0} s ahead of the server's clock at {:?}",
                started.elapsed()
            );
        }
        // Both rates were waited through: ~500 pings at 1,000×, then ~75 at 50×.
        assert!(
            waits - after_drop > 100,
            "{waits} waits, {after_drop} after the drop"
        );
        assert!(
            after_drop > 20,
            "{waits} waits, {after_drop} after the drop"
        );
    }
}
