//! The phones: each reports where its runner is every `ping_every` of device time, and each
//! report reaches the server after a random network delay of its own, so a team's pings arrive
//! out of order while their device times stay true. One scheduler task holds two queues — the
//! next ping of each phone (by device time) and the reports on their way (by send time) — and
//! wakes every few milliseconds to move them on; each report is then one OsmAnd `GET` in a task
//! of its own, at most `max_in_flight` at once.
//!
//! The load is open-loop: reports leave when their time comes, however slow the server is, so
//! a falling rate of answers means the server fell behind, and a server that falls behind
//! shows as lag rather than as a politely slower client.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::Client;
use tokio::sync::Semaphore;

use super::Clock;
use super::course::{self, Course, Role, Team};
use super::rng::Rng;
use super::setup::Phone;
use super::sse::{Sent, histogram};

/// Knots per metre per second (OsmAnd's `speed` is in knots).
const KNOTS_PER_MPS: f64 = 3600.0 / 1852.0;
const TICK: Duration = Duration::from_millis(5);
/// A holder's ping with no `position` message after this long is given up on.
const FORGET_AFTER: Duration = Duration::from_secs(300);

pub struct Plan {
    pub course: Arc<Course>,
    pub teams: Arc<Vec<Team>>,
    pub phones: Arc<Vec<Phone>>,
    pub runners: usize,
    pub ping_every_ms: i64,
    pub max_delay_ms: u64,
    pub max_in_flight: usize,
    pub seed: u64,
}

/// What the phones saw, per clock bucket of completion (see [`Clock::bucket`]).
pub struct Reports {
    pub buckets: Vec<Bucket>,
    pub first_error: Option<String>,
    /// How late the scheduler sent reports, against when they were due (µs).
    pub slip_us: Histogram<u64>,
    /// Reports by what their runner was doing.
    pub holder_pings: u64,
    pub other_pings: u64,
    /// Most reports under way at once: sent to the server, or waiting in loadgen for one of
    /// the `max_in_flight` connections (a server falling behind makes this grow).
    pub peak_pending: u64,
    /// How long reports waited in loadgen for a free slot (µs); latency is counted after it.
    pub queued_us: Histogram<u64>,
    /// Reports still unanswered when loadgen stopped waiting (a minute after the last one).
    pub unanswered: u64,
    /// Holder pings that got no `position` message of their own within a minute.
    pub unmatched: u64,
}

#[derive(Clone)]
pub struct Bucket {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

struct Shared {
    buckets: Vec<Bucket>,
    first_error: Option<String>,
    queued_us: Histogram<u64>,
}

/// A report on its way: ordered by when it reaches the server.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Outgoing {
    send_ms: i64,
    seq: u64,
    phone: u32,
    t_ms: i64,
    holder: bool,
    query: String,
}

/// Runs the phones from the clock's start until the end of its race, then sends what is still
/// on its way and waits for every answer.
pub async fn run(
    client: Client,
    base: &reqwest::Url,
    plan: Plan,
    clock: Clock,
    sent: Arc<Sent>,
) -> Reports {
    let url = base
        .join("osmand")
        .map(|u| u.to_string())
        .unwrap_or_default();
    let shared = Arc::new(Mutex::new(Shared {
        buckets: (0..clock.buckets())
            .map(|_| Bucket {
                requests: 0,
                errors: 0,
                latency_us: histogram(),
            })
            .collect(),
        first_error: None,
        queued_us: histogram(),
    }));
    let limit = Arc::new(Semaphore::new(plan.max_in_flight));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut peak_pending = 0;
    let mut rng = Rng::new(plan.seed ^ 0x005e_ed0f_face);
    let slot_ms = (plan.ping_every_ms / i64::try_from(plan.runners).unwrap_or(1)).max(1);
    // The next ping of each phone, by device time; phases keep a team's phones apart.
    let mut due: BinaryHeap<Reverse<(i64, u32)>> = plan
        .phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let phase = i64::from(p.runner) * slot_ms
                + i64::try_from(rng.below(u64::try_from(slot_ms).unwrap_or(1))).unwrap_or(0);
            Reverse((clock.unix_ms + phase, u32::try_from(i).unwrap_or(u32::MAX)))
        })
        .collect();
    let mut on_the_way: BinaryHeap<Reverse<Outgoing>> = BinaryHeap::new();
    let end_ms = clock.unix_ms + clock.warmup_ms + clock.race_ms;
    let (mut seq, mut holder_pings, mut other_pings) = (0_u64, 0, 0);
    let mut slip_us = histogram();
    let (mut pruned_at, mut unmatched) = (Instant::now(), 0);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now_ms = clock.now_ms();
        while let Some(Reverse((t_ms, i))) = due.peek().copied() {
            if t_ms > now_ms {
                break;
            }
            due.pop();
            let phone = &plan.phones[i as usize];
            let team = &plan.teams[phone.team as usize];
            let fix = course::fix(
                &plan.course,
                team,
                plan.runners,
                phone.runner.into(),
                t_ms,
                &mut rng,
            );
            let query = format!(
                "?id={}&lat={:.6}&lon={:.6}&timestamp={t_ms}&speed={:.2}&bearing={:.0}&accuracy=5&batt=80",
                phone.token,
                fix.lat,
                fix.lon,
                fix.speed_mps * KNOTS_PER_MPS,
                fix.bearing_deg
            );
            let delay_ms = i64::try_from(rng.below(plan.max_delay_ms + 1)).unwrap_or(0);
            seq += 1;
            on_the_way.push(Reverse(Outgoing {
                send_ms: t_ms + delay_ms,
                seq,
                phone: i,
                t_ms,
                holder: matches!(fix.role, Role::Running(_)),
                query,
            }));
            if t_ms + plan.ping_every_ms < end_ms {
                due.push(Reverse((t_ms + plan.ping_every_ms, i)));
            }
        }
        while on_the_way
            .peek()
            .is_some_and(|Reverse(o)| o.send_ms <= now_ms)
        {
            let Some(Reverse(o)) = on_the_way.pop() else {
                break;
            };
            let now = Instant::now();
            slip_us.saturating_record(
                u64::try_from((clock.unix_ms_at(now) - o.send_ms).max(0)).unwrap_or(0) * 1_000 + 1,
            );
            if o.holder {
                holder_pings += 1;
                sent.note(plan.phones[o.phone as usize].team, o.t_ms, now);
            } else {
                other_pings += 1;
            }
            let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            peak_pending = peak_pending.max(n);
            let request = client.get(format!("{url}{}", o.query));
            let (limit, shared, in_flight) = (
                Arc::clone(&limit),
                Arc::clone(&shared),
                Arc::clone(&in_flight),
            );
            tokio::spawn(async move {
                let queued = Instant::now();
                let _permit = limit.acquire_owned().await;
                let t0 = Instant::now();
                let result = match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => {
                        let status = r.status();
                        Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                    }
                    Err(e) => Err(e.to_string()),
                };
                let done = Instant::now();
                let us = u64::try_from(done.duration_since(t0).as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                {
                    let mut guard = shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let s = &mut *guard;
                    let b = &mut s.buckets[clock.bucket(done)];
                    b.requests += 1;
                    b.latency_us.saturating_record(us);
                    s.queued_us.saturating_record(
                        u64::try_from(t0.duration_since(queued).as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    );
                    if let Err(e) = result {
                        b.errors += 1;
                        s.first_error.get_or_insert(e);
                    }
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if due.is_empty() && on_the_way.is_empty() {
            break;
        }
        if pruned_at.elapsed() >= Duration::from_secs(5) {
            pruned_at = Instant::now();
            if let Some(before) = pruned_at.checked_sub(FORGET_AFTER) {
                unmatched += sent.forget_older(before);
            }
        }
    }
    // Every answer, or a minute at most.
    let waited = Instant::now();
    while in_flight.load(Ordering::Relaxed) > 0 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Reports {
        buckets: s.buckets.clone(),
        first_error: s.first_error.clone(),
        queued_us: s.queued_us.clone(),
        unanswered: in_flight.load(Ordering::Relaxed),
        slip_us,
        holder_pings,
        other_pings,
        peak_pending,
        unmatched,
    }
}
