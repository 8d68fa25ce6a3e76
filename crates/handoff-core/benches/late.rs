//! What a late ping costs the live engine on a relay that has seen a million pings.
//!
//! A torch-like relay: 1,700 legs of 500 m walked one after another, the holder's phone and
//! the next bearer's phone (waiting at the exchange) each reporting once a second: 1,000,000
//! pings over ~139 hours. The tracker is fed them in order (with its default memory window),
//! then measured applying one more ping that is 30 s late, and one that is 1 h late (older
//! than the kept window, so it asks for a deep replay: the pings since the checkpoint before it
//! are handed back, as the server pages them from the store, and the relay replays from there).
//!
//! `cargo bench -p handoff-core --bench late`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use handoff_core::ping::Ping;
use handoff_core::plan::{NoFiles, parse};
use handoff_core::track::{PingOf, Tracker};
use jiff::Timestamp;

#[path = "support/torch.rs"]
mod torch;

const PINGS: usize = 1_000_000;
/// 1,700 legs of 300 s: 600 pings a leg, so a million pings cover the relay.
const TORCH: torch::Torch = torch::Torch {
    legs: 1_700,
    leg_s: 300,
};

fn late(c: &mut Criterion) {
    let plan = Arc::new(parse(&TORCH.plan(), &NoFiles).expect("the bench plan parses"));
    let mut tr = Tracker::new(Arc::clone(&plan));
    let all: Vec<(String, Ping)> = (0..PINGS)
        .map(|k| {
            let (c, p) = TORCH.ping(k);
            (format!("B{c}"), p)
        })
        .collect();
    let rss_before = rss_kib();
    let started = Instant::now();
    for (k, (carrier, p)) in all.iter().enumerate() {
        tr.apply_batch(std::iter::once(PingOf {
            device: carrier,
            carrier,
            relay: None,
            seq: k as u64 + 1,
            ping: p,
        }));
    }
    eprintln!(
        "fed {PINGS} pings in order in {:.2} s ({:.2} µs each); held: {:?}; resident memory grew by {} KiB",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e6 / PINGS as f64,
        tr.held(),
        rss_kib().saturating_sub(rss_before)
    );
    let newest = all.last().map(|(_, p)| p.t).expect("pings");
    // The holder's phone, one ping it buffered: 30 s late (at an instant nobody reported at).
    let holder = &all[PINGS - 2].0;
    let mut p30 = all[PINGS - 62].1;
    p30.t = newest - jiff::SignedDuration::from_millis(30_500);
    let mut group = c.benchmark_group("late ping");
    group.sample_size(30);
    group.bench_function("30 s late, in memory", |b| {
        b.iter_batched(
            || tr.clone(),
            |mut t| {
                black_box(t.apply_batch(std::iter::once(PingOf {
                    device: holder,
                    carrier: holder,
                    relay: None,
                    seq: u64::MAX - 1,
                    ping: &p30,
                })));
                t
            },
            BatchSize::LargeInput,
        );
    });
    // One hour late: the tracker has let those pings go and asks for them back.
    let hour_back = PINGS - 7_200 - 1;
    let (c1h, mut p1h) = all[hour_back].clone();
    p1h.t -= jiff::SignedDuration::from_millis(500);
    group.bench_function("1 h late, deep replay", |b| {
        b.iter_batched(
            || tr.clone(),
            |mut t| {
                t.apply_batch(std::iter::once(PingOf {
                    device: &c1h,
                    carrier: &c1h,
                    relay: None,
                    seq: u64::MAX - 2,
                    ping: &p1h,
                }));
                let requests = t.take_history_requests();
                assert_eq!(requests.len(), 1, "a deep replay is asked for");
                for r in &requests {
                    let since = r.since.unwrap_or(Timestamp::MIN);
                    // What the store would page back: the relay's pings since the checkpoint.
                    let from = all.partition_point(|(_, p)| p.t < since);
                    let history = all[from..]
                        .iter()
                        .enumerate()
                        .map(|(i, (c, p))| (c.clone(), c.clone(), (from + i) as u64 + 1, *p))
                        .chain(std::iter::once((
                            c1h.clone(),
                            c1h.clone(),
                            u64::MAX - 2,
                            p1h,
                        )));
                    black_box(t.replay_history(r, history));
                }
                t
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// The process's resident memory (Linux), KiB; 0 where unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

criterion_group!(benches, late);
criterion_main!(benches);
