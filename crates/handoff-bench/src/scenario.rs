//! The two scenarios and the driver they share: `concurrency` workers take request numbers
//! from one counter until the count is reached or the time is up, time each request, and keep
//! a latency histogram each, merged at the end. A request counts as an error unless the server
//! acknowledged every ping in it as new.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::{Client, Url};

use crate::fixture::{Fixture, Window};

/// Knots per metre per second (a knot is 1852 m per hour).
const KNOTS_PER_MPS: f64 = 3600.0 / 1852.0;

pub struct Outcome {
    pub name: String,
    /// Requests answered (successfully or not).
    pub requests: u64,
    /// Pings the server acknowledged as stored.
    pub pings: u64,
    pub errors: u64,
    /// The first error, to show what went wrong.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Whether the time limit, rather than the count, ended the scenario.
    pub timed_out: bool,
    /// Latency of each request, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Scenario (a): live phones, one OsmAnd `GET /osmand?…` per ping, spread over the devices.
pub async fn osmand(
    client: &Client,
    base: &Url,
    fixture: &Arc<Fixture>,
    requests: u64,
    concurrency: usize,
    max: Duration,
) -> Outcome {
    let url = base
        .join("osmand")
        .map(|u| u.to_string())
        .unwrap_or_default();
    let (client, fixture) = (client.clone(), Arc::clone(fixture));
    drive("OsmAnd `GET /osmand`, 1 ping per request", requests, concurrency, max, move |i| {
        let n = fixture.device_count();
        let (d, k) = (i % n, i / n);
        let f = fixture.fix(Window::OsmAnd, d, k);
        let token = &fixture.devices[usize::try_from(d).unwrap_or_default()].token;
        let request = client.get(format!(
            "{url}?id={token}&lat={:.6}&lon={:.6}&timestamp={}&speed={:.3}&bearing=90&altitude=35&accuracy=5&batt=80",
            f.lat,
            f.lon,
            f.t_ms,
            f.speed_mps * KNOTS_PER_MPS
        ));
        async move {
            let r = request.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            if status.is_success() { Ok(1) } else { Err(format!("{status}: {}", r.text().await.unwrap_or_default())) }
        }
    })
    .await
}

/// Scenario (b): phones uploading a backlog, `batch_size` pings per `POST /api/v1/pings`.
pub async fn batch(
    client: &Client,
    base: &Url,
    fixture: &Arc<Fixture>,
    batches: u64,
    batch_size: u64,
    concurrency: usize,
    max: Duration,
) -> Outcome {
    let url = base
        .join("api/v1/pings")
        .map(|u| u.to_string())
        .unwrap_or_default();
    let (client, fixture) = (client.clone(), Arc::clone(fixture));
    let name = format!(
        "Batch `POST /api/v1/pings`, {} pings per request",
        crate::report::thousands(batch_size)
    );
    drive(&name, batches, concurrency, max, move |j| {
        let n = fixture.device_count();
        let (d, round) = (j % n, j / n);
        let mut body = String::with_capacity(usize::try_from(batch_size).unwrap_or_default() * 140);
        body.push('[');
        for k in 0..batch_size {
            let f = fixture.fix(Window::Batch, d, round * batch_size + k);
            let t = jiff::Timestamp::from_millisecond(f.t_ms).unwrap_or_default();
            if k > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"t":"{t}","lon":{:.6},"lat":{:.6},"acc":5,"speed":{:.2},"heading":90,"alt":35,"batt":80}}"#,
                f.lon, f.lat, f.speed_mps
            );
        }
        body.push(']');
        let token = &fixture.devices[usize::try_from(d).unwrap_or_default()].token;
        let request = client.post(&url).bearer_auth(token).header("content-type", "application/json").body(body);
        async move {
            let r = request.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.text().await.map_err(|e| e.to_string())?;
            let answer: serde_json::Value = serde_json::from_str(&text).map_err(|_| format!("{status}: {text}"))?;
            let accepted = answer["accepted"].as_u64().unwrap_or(0);
            if status.is_success() && accepted == batch_size {
                Ok(accepted)
            } else {
                let mut short = text;
                short.truncate(300);
                Err(format!("{status}: {short}"))
            }
        }
    })
    .await
}

/// Runs `request(i)` for i = 0, 1, … on `concurrency` workers until `count` requests have
/// started or `max` has passed; a request already started is waited for.
pub async fn drive<F, Fut>(
    name: &str,
    count: u64,
    concurrency: usize,
    max: Duration,
    request: F,
) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (request, next) = (Arc::clone(&request), Arc::clone(&next));
            tokio::spawn(async move {
                let mut w = Worker::default();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t0 = Instant::now();
                    let r = request(i).await;
                    w.record(t0.elapsed(), r);
                }
                w
            })
        })
        .collect();
    let mut total = Worker::default();
    for w in workers {
        match w.await {
            Ok(w) => total.merge(w),
            Err(e) => total.record(Duration::ZERO, Err(format!("worker failed: {e}"))),
        }
    }
    let elapsed = started.elapsed();
    Outcome {
        name: name.to_owned(),
        requests: total.requests,
        pings: total.pings,
        errors: total.errors,
        first_error: total.first_error,
        elapsed,
        timed_out: next.load(Ordering::Relaxed) < count,
        latency_us: total.latency_us,
    }
}

struct Worker {
    requests: u64,
    pings: u64,
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
}

impl Default for Worker {
    fn default() -> Self {
        // 1 µs to 10 minutes at 3 significant digits.
        let latency_us = Histogram::new_with_bounds(1, 600_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self {
            requests: 0,
            pings: 0,
            errors: 0,
            first_error: None,
            latency_us,
        }
    }
}

impl Worker {
    fn record(&mut self, took: Duration, r: Result<u64, String>) {
        self.requests += 1;
        self.latency_us
            .saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1));
        match r {
            Ok(pings) => self.pings += pings,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Worker) {
        self.requests += other.requests;
        self.pings += other.pings;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }
}
