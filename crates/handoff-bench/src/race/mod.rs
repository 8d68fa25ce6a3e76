//! The race scenario (`--scenario race`): issue 11's relay race at full scale — by default
//! 1,000 teams × 12 runners on a 36-leg course, every runner's phone reporting every 5 s of
//! device time over OsmAnd single requests, each report delayed by 0–10 s of network, for five
//! minutes after a warm-up — with one spectator on the SSE stream measuring ping-to-SSE lag,
//! the server's CPU and memory sampled from `/proc`, and afterwards `/live` loaded by many
//! clients, gzip and plain.
//!
//! Time is real: the plan is built around now (teams started over the last hours, the last few
//! start during the run), the handoffs already run are recorded with their real times before
//! the phones start, and every device time is the wall clock at the moment of the fix.

mod course;
mod phones;
mod report;
mod rng;
mod setup;
mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use jiff::Timestamp;
use reqwest::Client;
use tokio::sync::watch;

use crate::target::Target;
use crate::usage::{self, Sample};

pub use report::RaceRun;

#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Race scenario (--scenario race)")]
pub struct RaceArgs {
    /// Teams in the race, each a relay on the 36-leg course.
    #[arg(long, default_value_t = 1_000)]
    pub teams: usize,
    /// Runners per team, one phone each (leg i is run by runner i mod this).
    #[arg(long, default_value_t = 12)]
    pub runners: usize,
    /// Seconds of race measured, after a warm-up as long as the longest network delay.
    #[arg(long, default_value_t = 300)]
    pub race_seconds: u64,
    /// Each phone reports every this many seconds of device time.
    #[arg(long, default_value_t = 5)]
    pub ping_every_s: u64,
    /// Each report reaches the server after a random network delay of up to this many ms.
    #[arg(long, default_value_t = 10_000)]
    pub max_delay_ms: u64,
    /// Team starts are staggered over this many hours, the last team starting a few minutes
    /// after the plan is uploaded.
    #[arg(long, default_value_t = 12.0)]
    pub start_spread_h: f64,
    /// Seed for the paces, the phones' phases, GPS noise and network delays.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// At most this many reports in flight at once (a server that falls behind makes the rest
    /// wait in loadgen, which the lag then shows).
    #[arg(long, default_value_t = 1_024)]
    pub max_in_flight: usize,
    /// A spectator's page loads `/live` this often during the race, in seconds (0: never).
    #[arg(long, default_value_t = 5)]
    pub live_probe_s: u64,
    /// After the race, `--concurrency` clients load `/live` for this many seconds with gzip,
    /// then as long without (0: skip).
    #[arg(long, default_value_t = 20)]
    pub live_seconds: u64,
    /// No SSE spectator (so no lag is measured): to see what the stream costs the server.
    #[arg(long)]
    pub no_spectator: bool,
    /// The pid of `--server`, to report its CPU and memory (known for a server loadgen starts).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl RaceArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if !(1..=10_000).contains(&self.teams) {
            bail!("--teams must be within 1..=10000");
        }
        if !(2..=course::LEGS).contains(&self.runners) {
            bail!("--runners must be within 2..={}", course::LEGS);
        }
        if !(10..=3_600).contains(&self.race_seconds) {
            bail!("--race-seconds must be within 10..=3600");
        }
        if !(1..=60).contains(&self.ping_every_s) {
            bail!("--ping-every-s must be within 1..=60");
        }
        if self.max_delay_ms > 60_000 {
            bail!("--max-delay-ms is at most 60000");
        }
        if !(0.0..=24.0).contains(&self.start_spread_h) {
            bail!("--start-spread-h must be within 0..=24 (the course takes about a day)");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 4_096 {
            bail!("--max-in-flight must be within 1..=4096");
        }
        Ok(())
    }
}

/// The race's time line: a warm-up, then the measured minutes. Buckets: 0 is the warm-up,
/// 1..=M the minutes of the race, M + 1 what comes after (the last reports on their way).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    /// The wall clock at `start`, Unix ms.
    pub unix_ms: i64,
    pub warmup_ms: i64,
    pub race_ms: i64,
}

impl Clock {
    fn new(warmup_ms: i64, race_ms: i64) -> Self {
        Self {
            start: Instant::now(),
            unix_ms: Timestamp::now().as_millisecond(),
            warmup_ms,
            race_ms,
        }
    }

    #[cfg(test)]
    pub fn for_tests(start: Instant) -> Self {
        Self {
            start,
            unix_ms: 0,
            warmup_ms: 10_000,
            race_ms: 120_000,
        }
    }

    pub fn unix_ms_at(&self, at: Instant) -> i64 {
        self.unix_ms + i64::try_from(at.duration_since(self.start).as_millis()).unwrap_or(0)
    }

    pub fn now_ms(&self) -> i64 {
        self.unix_ms_at(Instant::now())
    }

    pub fn minutes(&self) -> usize {
        usize::try_from(self.race_ms.div_euclid(60_000) + i64::from(self.race_ms % 60_000 != 0))
            .unwrap_or(0)
    }

    pub fn buckets(&self) -> usize {
        self.minutes() + 2
    }

    pub fn bucket(&self, at: Instant) -> usize {
        let e = i64::try_from(at.duration_since(self.start).as_millis()).unwrap_or(i64::MAX);
        if e < self.warmup_ms {
            0
        } else if e >= self.warmup_ms + self.race_ms {
            self.minutes() + 1
        } else {
            1 + usize::try_from((e - self.warmup_ms) / 60_000).unwrap_or(0)
        }
    }

    /// When bucket `b` (a minute, 1..=M) begins and ends.
    pub fn span(&self, b: usize) -> (Instant, Instant) {
        let ms = |x: i64| self.start + Duration::from_millis(u64::try_from(x).unwrap_or(0));
        let from = self.warmup_ms + i64::try_from(b.saturating_sub(1)).unwrap_or(0) * 60_000;
        let to = (from + 60_000).min(self.warmup_ms + self.race_ms);
        (ms(from), ms(to))
    }

    /// The measured part of the race.
    pub fn window(&self) -> (Instant, Instant) {
        (self.span(1).0, self.span(self.minutes()).1)
    }
}

/// `/live` loaded now and then during the race, as a spectator opening the page would.
pub struct Probe {
    pub latency_us: Histogram<u64>,
    pub bytes: usize,
    pub errors: u64,
}

pub async fn run(
    client: &Client,
    target: &Target,
    event: &str,
    concurrency: usize,
    args: &RaceArgs,
) -> anyhow::Result<RaceRun> {
    let server_pid = args.server_pid.or(target.pid());
    let load_before = usage::load_average();
    let course = Arc::new(course::Course::generate());
    let now_ms = Timestamp::now().as_millisecond();
    let mut rng = rng::Rng::new(args.seed);
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let teams: Arc<Vec<course::Team>> = Arc::new(
        (0..args.teams)
            .map(|j| {
                // Team 1 started first; the last one starts three minutes from now.
                let behind =
                    args.start_spread_h * 3_600_000.0 * (1.0 - j as f64 / args.teams as f64);
                let start_ms = now_ms + 180_000 - behind as i64;
                course::Team::new(&course, j, args.runners, start_ms / 1_000 * 1_000, &mut rng)
            })
            .collect(),
    );

    eprintln!("loadgen: race: uploading the plan ({} teams)…", args.teams);
    let plan = setup::plan_toml(event, &course, &teams, args.runners);
    let plan_bytes = plan.len();
    let plan_s = setup::upload(client, target, event, plan).await?;
    eprintln!(
        "loadgen: race: registering {} phones…",
        args.teams * args.runners
    );
    let t0 = Instant::now();
    let phones = setup::register(client, target, event, &teams, args.runners, concurrency).await?;
    let devices_s = t0.elapsed().as_secs_f64();
    eprintln!("loadgen: race: recording the handoffs already run…");
    let t0 = Instant::now();
    let handoffs = setup::past_handoffs(
        client,
        target,
        event,
        &teams,
        Timestamp::now().as_millisecond(),
        concurrency,
    )
    .await?;
    let setup = setup::Setup {
        plan_bytes,
        plan_s,
        devices_s,
        handoffs,
        handoffs_s: t0.elapsed().as_secs_f64(),
    };
    let stored_before = crate::report::accepted_total(client, &target.base).await?;

    // The spectator connects first, then the phones start.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sent = Arc::new(sse::Sent::default());
    let warmup_ms = i64::try_from(args.max_delay_ms.div_ceil(1_000) * 1_000).unwrap_or(10_000);
    let race_ms = i64::try_from(args.race_seconds * 1_000).unwrap_or(300_000);
    let stream_url = target
        .base
        .join(&format!("api/v1/events/{event}/stream"))?
        .to_string();
    let stream = if args.no_spectator {
        None
    } else {
        Some(sse::connect(&crate::target::client(1)?, &stream_url).await?)
    };
    let clock = Clock::new(warmup_ms, race_ms);
    let spectator = match stream {
        Some(stream) => tokio::spawn(sse::read(stream, Arc::clone(&sent), clock, stop_rx.clone())),
        None => tokio::spawn(async move { sse::Seen::empty(clock) }),
    };
    let sampler = tokio::spawn(sample(server_pid, stop_rx.clone()));
    let probe = tokio::spawn(probe(
        client.clone(),
        target.base.join(&format!("api/v1/events/{event}/live"))?,
        args.live_probe_s,
        stop_rx.clone(),
    ));
    eprintln!(
        "loadgen: race: {} phones reporting for {} s (+ {} s warm-up)…",
        phones.len(),
        args.race_seconds,
        warmup_ms / 1_000
    );
    let plan = phones::Plan {
        course: Arc::clone(&course),
        teams: Arc::clone(&teams),
        phones: Arc::new(phones),
        runners: args.runners,
        ping_every_ms: i64::try_from(args.ping_every_s * 1_000).unwrap_or(5_000),
        max_delay_ms: args.max_delay_ms,
        max_in_flight: args.max_in_flight,
        seed: args.seed,
    };
    let phone_count = plan.phones.len();
    let reports = phones::run(
        crate::target::client(args.max_in_flight)?,
        &target.base,
        plan,
        clock,
        Arc::clone(&sent),
    )
    .await;
    // The last messages of the last reports.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let seen = spectator.await?;
    let samples = sampler.await?;
    let probe = probe.await?;
    let unmatched = reports.unmatched + sent.forget_older(Instant::now());
    let stored = crate::report::accepted_total(client, &target.base)
        .await?
        .saturating_sub(stored_before);
    let load_after = usage::load_average();

    let mut live = Vec::new();
    if args.live_seconds > 0 {
        for gzip in [true, false] {
            eprintln!(
                "loadgen: race: /live for {} s ({})…",
                args.live_seconds,
                if gzip { "gzip" } else { "plain" }
            );
            live.push(
                crate::live::hammer(
                    client,
                    &target.base,
                    event,
                    concurrency,
                    args.live_seconds,
                    gzip,
                    server_pid,
                )
                .await?,
            );
        }
    }
    Ok(RaceRun {
        server: target.describe(),
        teams: args.teams,
        runners: args.runners,
        phones: phone_count,
        ping_every_s: args.ping_every_s,
        max_delay_ms: args.max_delay_ms,
        start_spread_h: args.start_spread_h,
        seed: args.seed,
        max_in_flight: args.max_in_flight,
        load_before,
        load_after,
        setup,
        clock,
        reports,
        seen,
        unmatched,
        samples,
        probe,
        stored,
        live,
    })
}

/// Samples the server, loadgen and the machine every second until `stop`.
async fn sample(server_pid: Option<u32>, mut stop: watch::Receiver<bool>) -> Vec<Sample> {
    let mut out = vec![Sample::take(server_pid)];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => out.push(Sample::take(server_pid)),
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    out.push(Sample::take(server_pid));
    out
}

/// Loads `/live` (gzip) every `every_s` seconds until `stop`.
async fn probe(
    client: Client,
    url: reqwest::Url,
    every_s: u64,
    mut stop: watch::Receiver<bool>,
) -> Probe {
    let mut p = Probe {
        latency_us: sse::histogram(),
        bytes: 0,
        errors: 0,
    };
    if every_s == 0 {
        return p;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(every_s));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let t0 = Instant::now();
        let r = client
            .get(url.clone())
            .header("accept-encoding", "gzip")
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => {
                    p.bytes = b.len();
                    let us = u64::try_from(t0.elapsed().as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    p.latency_us.saturating_record(us);
                }
                Err(_) => p.errors += 1,
            },
            _ => p.errors += 1,
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::Clock;
    use std::time::{Duration, Instant};

    #[test]
    fn buckets_are_warm_up_minutes_and_after() {
        let start = Instant::now();
        let c = Clock {
            start,
            unix_ms: 0,
            warmup_ms: 10_000,
            race_ms: 150_000,
        };
        assert_eq!(c.minutes(), 3);
        assert_eq!(c.buckets(), 5);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(c.bucket(at(5)), 0);
        assert_eq!(c.bucket(at(10)), 1);
        assert_eq!(c.bucket(at(69)), 1);
        assert_eq!(c.bucket(at(70)), 2);
        assert_eq!(c.bucket(at(159)), 3);
        assert_eq!(c.bucket(at(160)), 4);
        assert_eq!(c.span(3), (at(130), at(160)));
    }
}
