//! What the race found, as Markdown for `docs/benchmarks.md`: the setup, one row per minute
//! (answers per second, latency, ping-to-SSE lag, the server's CPU and memory, loadgen's own
//! CPU and the whole machine's), the totals, the `/live` runs, and each of issue 11's targets
//! said to be met or not.

use std::fmt::Write as _;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::phones::Reports;
use super::setup::Setup;
use super::sse::{Seen, histogram};
use super::{Clock, Probe};
use crate::live::Live;
use crate::report::thousands;
use crate::usage::{Between, Sample};

/// Last minute's answers per second against the first's.
const RATE_TARGET: f64 = 0.90;
const LAG_P99_TARGET_MS: f64 = 1_000.0;
const CPU_TARGET_CORES: f64 = 1.0;
const LIVE_TARGET_PER_S: f64 = 5_000.0;

pub struct RaceRun {
    pub server: String,
    pub teams: usize,
    pub runners: usize,
    pub phones: usize,
    pub ping_every_s: u64,
    pub max_delay_ms: u64,
    pub start_spread_h: f64,
    pub seed: u64,
    pub max_in_flight: usize,
    pub load_before: String,
    pub load_after: String,
    pub setup: Setup,
    pub clock: Clock,
    pub reports: Reports,
    pub seen: Seen,
    pub unmatched: u64,
    pub samples: Vec<Sample>,
    pub probe: Probe,
    pub stored: u64,
    pub live: Vec<Live>,
}

/// One measured minute.
struct Minute {
    secs: f64,
    requests: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    lag_us: Histogram<u64>,
    usage: Between,
    server_rss_kib: Option<u64>,
}

impl RaceRun {
    /// Every request answered 2xx and the server stored exactly what it acknowledged.
    pub fn passed(&self) -> bool {
        self.errors() == 0 && self.stored == self.acknowledged()
    }

    fn errors(&self) -> u64 {
        self.reports.buckets.iter().map(|b| b.errors).sum()
    }

    fn acknowledged(&self) -> u64 {
        self.reports
            .buckets
            .iter()
            .map(|b| b.requests - b.errors)
            .sum()
    }

    fn minutes(&self) -> Vec<Minute> {
        (1..=self.clock.minutes())
            .map(|b| {
                let (from, to) = self.clock.span(b);
                let (a, z) = (self.sample_at(from), self.sample_at(to));
                Minute {
                    secs: to.duration_since(from).as_secs_f64(),
                    requests: self.reports.buckets[b].requests,
                    errors: self.reports.buckets[b].errors,
                    latency_us: self.reports.buckets[b].latency_us.clone(),
                    lag_us: self.seen.lag_us[b].clone(),
                    usage: Between::of(a, z),
                    server_rss_kib: z.server_rss_kib,
                }
            })
            .collect()
    }

    /// The sample nearest to `at`.
    fn sample_at(&self, at: Instant) -> &Sample {
        let gap = |s: &Sample| {
            if s.at > at { s.at - at } else { at - s.at }
        };
        self.samples
            .iter()
            .min_by_key(|s| gap(s))
            .unwrap_or(&self.samples[0])
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let su = &self.setup;
        let _ = writeln!(
            s,
            "Target: {}. Race: {} teams × {} runners = {} phones on a 36-leg course (about 270 km), \
             starts staggered over {} h, one OsmAnd `GET /osmand` per ping every {} s of device \
             time per phone, each delayed by 0–{} ms of random network; warm-up {} s, then {} s \
             measured; seed {}. Load average before: {}; after the race: {}.\n",
            self.server,
            thousands(self.teams as u64),
            self.runners,
            thousands(self.phones as u64),
            self.start_spread_h,
            self.ping_every_s,
            thousands(self.max_delay_ms),
            self.clock.warmup_ms / 1_000,
            self.clock.race_ms / 1_000,
            self.seed,
            self.load_before,
            self.load_after,
        );
        let _ = writeln!(
            s,
            "Setup: plan upload {:.1} s ({} KiB of TOML); {} devices registered in {:.1} s; {} handoffs already run recorded by the operator in {:.1} s.\n",
            su.plan_s,
            thousands(su.plan_bytes as u64 / 1_024),
            thousands(self.phones as u64),
            su.devices_s,
            thousands(su.handoffs),
            su.handoffs_s
        );
        s.push_str("| Minute | Answers | Answers/s | Errors | p50 (ms) | p99 (ms) | max (ms) | Lag p50 (ms) | Lag p99 (ms) | Lag max (ms) | Server CPU (cores) | Server RSS (MiB) | loadgen CPU (cores) | Machine busy (cores) |\n");
        s.push_str("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let minutes = self.minutes();
        let mut total_latency = histogram();
        let mut total_lag = histogram();
        for (i, m) in minutes.iter().enumerate() {
            let _ = total_latency.add(&m.latency_us);
            let _ = total_lag.add(&m.lag_us);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                thousands(m.requests),
                thousands(rate(m.requests, m.secs)),
                m.errors,
                q(&m.latency_us, 0.50),
                q(&m.latency_us, 0.99),
                ms(m.latency_us.max()),
                q(&m.lag_us, 0.50),
                q(&m.lag_us, 0.99),
                ms(m.lag_us.max()),
                cores(m.usage.server_cores),
                mib(m.server_rss_kib),
                cores(m.usage.own_cores),
                cores(m.usage.machine_cores),
            );
        }
        let (from, to) = self.clock.window();
        let whole = Between::of(self.sample_at(from), self.sample_at(to));
        let secs = to.duration_since(from).as_secs_f64();
        let requests: u64 = minutes.iter().map(|m| m.requests).sum();
        let errors: u64 = minutes.iter().map(|m| m.errors).sum();
        let rss_max = self
            .samples
            .iter()
            .filter(|x| x.at >= from && x.at <= to)
            .filter_map(|x| x.server_rss_kib)
            .max();
        let _ = writeln!(
            s,
            "| **all** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} (max) | {} | {} |",
            thousands(requests),
            thousands(rate(requests, secs)),
            errors,
            q(&total_latency, 0.50),
            q(&total_latency, 0.99),
            ms(total_latency.max()),
            q(&total_lag, 0.50),
            q(&total_lag, 0.99),
            ms(total_lag.max()),
            cores(whole.server_cores),
            mib(rss_max),
            cores(whole.own_cores),
            cores(whole.machine_cores),
        );
        let r = &self.reports;
        let seen = &self.seen;
        let _ = writeln!(
            s,
            "\nAnswers are counted in the minute they came back; the lag is from the moment loadgen sent a holder's ping to the arrival of the `position` message for it on `GET …/stream` (one subscriber). \
             Holder pings sent: {} (other phones: {}); `position` messages: {}, of which {} matched a holder ping ({:.1} % of them), {} repeated one already matched; {} holder pings got no message of their own (a ping older than its holder's newest is folded in without one; given up after 5 minutes). \
             Other messages: {}. The stream opened with a {} KiB snapshot; later snapshots (the server found the subscriber lagging): {}; {} MiB read in all{}.",
            thousands(r.holder_pings),
            thousands(r.other_pings),
            thousands(seen.positions),
            thousands(seen.matched),
            pct(seen.matched, r.holder_pings),
            thousands(seen.repeats),
            thousands(self.unmatched),
            other_events(seen),
            thousands(seen.first_snapshot_bytes as u64 / 1_024),
            seen.later_snapshots,
            thousands(seen.bytes / (1_024 * 1_024)),
            seen.error
                .as_deref()
                .map(|e| format!(" (the stream ended: {e})"))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            s,
            "\nScheduler: reports left loadgen at most {} ms after they were due (p99 {} ms); at most {} reports under way at once (loadgen lets {} at a time go out; the others wait for a slot: p50 {} ms, p99 {} ms, max {} ms, not counted in the latency above); unanswered at the end: {}; loadgen's own RSS at most {} MiB. \
             Answers in the warm-up: {}; after the measured minutes (the last reports on their way): {}.",
            ms(r.slip_us.max()),
            q(&r.slip_us, 0.99),
            thousands(r.peak_pending),
            thousands(self.max_in_flight as u64),
            q(&r.queued_us, 0.50),
            q(&r.queued_us, 0.99),
            ms(r.queued_us.max()),
            thousands(r.unanswered),
            mib(self.samples.iter().filter_map(|x| x.own_rss_kib).max()),
            thousands(r.buckets[0].requests),
            thousands(r.buckets[r.buckets.len() - 1].requests),
        );
        if !self.probe.latency_us.is_empty() || self.probe.errors > 0 {
            let _ = writeln!(
                s,
                "\n`/live` during the race (gzip, one load every few seconds, as a page opening): {} loads, p50 {} ms, max {} ms, {} KiB on the wire, {} errors.",
                self.probe.latency_us.len(),
                q(&self.probe.latency_us, 0.50),
                ms(self.probe.latency_us.max()),
                thousands(self.probe.bytes as u64 / 1_024),
                self.probe.errors
            );
        }
        let _ = writeln!(
            s,
            "\nPings acknowledged: {}; stored according to the server (`handoff_pings_accepted_total`, change over the race): {} — {}.",
            thousands(self.acknowledged()),
            thousands(self.stored),
            if self.stored == self.acknowledged() {
                "they match"
            } else {
                "MISMATCH"
            }
        );
        if let Some(e) = &r.first_error {
            let _ = writeln!(s, "\n{} errors; the first: {e}", self.errors());
        }
        if !self.live.is_empty() {
            s.push_str(&self.live_table());
        }
        s.push_str(&self.targets(&minutes, &total_lag, whole));
        s
    }

    fn live_table(&self) -> String {
        let mut s = String::from(
            "\n| `/live` after the race | Requests | Time (s) | Requests/s | Bytes per answer | p50 (ms) | p99 (ms) | max (ms) | Errors | Server CPU (cores) | loadgen CPU (cores) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for l in &self.live {
            let o = &l.outcome;
            let secs = o.elapsed.as_secs_f64();
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                o.name,
                thousands(o.requests),
                secs,
                thousands(rate(o.requests, secs)),
                thousands(l.body_bytes as u64),
                q(&o.latency_us, 0.50),
                q(&o.latency_us, 0.99),
                ms(o.latency_us.max()),
                o.errors,
                cores(l.usage.server_cores),
                cores(l.usage.own_cores),
            );
        }
        for l in self.live.iter().filter(|l| l.outcome.errors > 0) {
            let _ = writeln!(
                s,
                "\n{}: the first error: {}",
                l.outcome.name,
                l.outcome.first_error.as_deref().unwrap_or("?")
            );
        }
        s
    }

    fn targets(&self, minutes: &[Minute], lag: &Histogram<u64>, whole: Between) -> String {
        let mut s = String::from("\nIssue 11's targets:\n");
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
            let (a, z) = (
                rate(first.requests, first.secs),
                rate(last.requests, last.secs),
            );
            #[allow(clippy::cast_precision_loss)]
            let ratio = if a > 0 { z as f64 / a as f64 } else { 0.0 };
            let _ = writeln!(
                s,
                "- Answers/s do not fall (last minute ≥ {:.0} % of the first): {} / {} = {:.1} % — {}.",
                RATE_TARGET * 100.0,
                thousands(z),
                thousands(a),
                ratio * 100.0,
                verdict(ratio >= RATE_TARGET)
            );
        }
        let p99 = lag.value_at_quantile(0.99);
        #[allow(clippy::cast_precision_loss)]
        let p99_ms = p99 as f64 / 1_000.0;
        let _ = writeln!(
            s,
            "- Ping-to-SSE lag p99 < {LAG_P99_TARGET_MS:.0} ms: {p99_ms:.1} ms — {}.",
            verdict(!lag.is_empty() && p99_ms < LAG_P99_TARGET_MS)
        );
        match whole.server_cores {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "- Server under one core: {c:.2} cores on average over the measured minutes — {}.",
                    verdict(c < CPU_TARGET_CORES)
                );
            }
            None => s.push_str(
                "- Server under one core: not measured (no server pid; pass --server-pid).\n",
            ),
        }
        if let Some(l) = self.live.iter().find(|l| l.gzip) {
            let secs = l.outcome.elapsed.as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let per_s = rate(l.outcome.requests, secs) as f64;
            let _ = writeln!(
                s,
                "- `/live` with gzip ≥ {LIVE_TARGET_PER_S:.0} requests/s: {} — {}.",
                thousands(rate(l.outcome.requests, secs)),
                verdict(per_s >= LIVE_TARGET_PER_S && l.outcome.errors == 0)
            );
        }
        s
    }
}

fn other_events(seen: &Seen) -> String {
    let mut v: Vec<(&String, &u64)> = seen
        .by_event
        .iter()
        .filter(|(k, _)| k.as_str() != "position")
        .collect();
    v.sort();
    let parts: Vec<String> = v
        .into_iter()
        .map(|(k, n)| format!("`{k}` {}", thousands(*n)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn rate(n: u64, secs: f64) -> u64 {
    (n as f64 / secs.max(1e-9)).round() as u64
}

#[allow(clippy::cast_precision_loss)]
fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn q(h: &Histogram<u64>, quantile: f64) -> String {
    if h.is_empty() {
        "–".into()
    } else {
        ms(h.value_at_quantile(quantile))
    }
}

#[allow(clippy::cast_precision_loss)]
fn ms(us: u64) -> String {
    let v = us as f64 / 1_000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn cores(c: Option<f64>) -> String {
    c.map_or_else(|| "–".into(), |c| format!("{c:.2}"))
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "–".into(), |k| format!("{:.0}", k as f64 / 1_024.0))
}
