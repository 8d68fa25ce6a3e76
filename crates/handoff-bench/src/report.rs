//! What a run found, as Markdown that can go straight into `docs/benchmarks.md`, and the
//! server-side count it is checked against (`handoff_pings_accepted_total` on `/metrics`).

use std::fmt::Write as _;

use anyhow::Context;
use reqwest::{Client, Url};

use crate::scenario::Outcome;

pub struct Run {
    pub server: String,
    pub devices: u64,
    pub concurrency: usize,
    pub max_seconds: u64,
    pub scenarios: Vec<Outcome>,
    /// Pings the server counted as stored during the run.
    pub stored: u64,
    /// Pings the server acknowledged to loadgen.
    pub acknowledged: u64,
}

impl Run {
    /// No request failed and the server stored exactly what it acknowledged.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.errors == 0) && self.stored == self.acknowledged
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Target: {}; {} devices, {} requests in flight, at most {} s per scenario.\n",
            self.server, self.devices, self.concurrency, self.max_seconds
        );
        s.push_str("| Scenario | Requests | Pings | Time (s) | Requests/s | Pings/s | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | Errors |\n");
        s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for o in &self.scenarios {
            let secs = o.elapsed.as_secs_f64().max(1e-9);
            let ms = |q: f64| millis(o.latency_us.value_at_quantile(q));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1}{} | {} | {} | {} | {} | {} | {} | {} |",
                o.name,
                thousands(o.requests),
                thousands(o.pings),
                secs,
                if o.timed_out { " (time limit)" } else { "" },
                thousands(per_second(o.requests, secs)),
                thousands(per_second(o.pings, secs)),
                ms(0.50),
                ms(0.90),
                ms(0.99),
                millis(o.latency_us.max()),
                o.errors,
            );
        }
        let verdict = if self.stored == self.acknowledged {
            "they match"
        } else {
            "MISMATCH"
        };
        let _ = writeln!(
            s,
            "\nPings acknowledged: {}; stored according to the server (`handoff_pings_accepted_total`, change over the run): {} — {verdict}.",
            thousands(self.acknowledged),
            thousands(self.stored)
        );
        for o in self.scenarios.iter().filter(|o| o.errors > 0) {
            let _ = writeln!(
                s,
                "\n{}: {} errors; the first: {}",
                o.name,
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            );
        }
        s
    }
}

/// The sum of `handoff_pings_accepted_total` over every wire format.
pub async fn accepted_total(client: &Client, base: &Url) -> anyhow::Result<u64> {
    let text = client
        .get(base.join("metrics")?)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    sum_metric(&text, "handoff_pings_accepted_total").context("reading /metrics")
}

fn sum_metric(text: &str, name: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue; // another metric whose name starts the same
        }
        let value = rest.rsplit(' ').next().unwrap_or_default();
        let value: f64 = value
            .parse()
            .with_context(|| format!("unreadable sample: {line}"))?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // a counter: whole, non-negative
        let value = value as u64;
        total += value;
    }
    Ok(total)
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn per_second(n: u64, secs: f64) -> u64 {
    (n as f64 / secs).round() as u64
}

#[allow(clippy::cast_precision_loss)]
fn millis(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// PostgreSQL's own insert rate of the rows a run stored, beside the server's (when known).
pub fn raw_markdown(rows: &[(&str, crate::pg::Raw, Option<f64>)]) -> String {
    let mut s = String::from(
        "PostgreSQL's own rate for the same rows (`raw_pings`, LIKE pings INCLUDING ALL, no triggers), as many connections as requests in flight:\n\n\
         | Rows as | Rows | Commits | Time (s) | Rows/s | handoff's pings/s | handoff ÷ raw |\n\
         |---|--:|--:|--:|--:|--:|--:|\n",
    );
    for (name, raw, server) in rows {
        let rate = raw.rows_per_s();
        let (mine, ratio) = match server {
            Some(r) => (
                format!("{r:.0}"),
                format!("{:.0} %", 100.0 * r / rate.max(1e-9)),
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {:.1} | {rate:.0} | {mine} | {ratio} |",
            raw.rows,
            raw.commits,
            raw.elapsed.as_secs_f64()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_summed_over_formats_and_other_metrics_are_ignored() {
        let text = "# TYPE handoff_pings_accepted counter\nhandoff_pings_accepted_total{format=\"osmand\"} 20000\nhandoff_pings_accepted_total{format=\"batch\"} 200000\nhandoff_pings_accepted_totalx 5\nhandoff_pings_duplicate_total{format=\"batch\"} 7\n# EOF\n";
        assert_eq!(
            sum_metric(text, "handoff_pings_accepted_total").ok(),
            Some(220_000)
        );
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
