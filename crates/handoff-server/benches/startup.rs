//! How long `handoff serve` takes to rebuild an event's live state from its stored pings.
//!
//! A torch relay (10,000 legs of 500 m walked in 500 s each; the holder's phone and the next
//! bearer's, waiting at the exchange, at 1 Hz: 1,000 pings a leg, so 10,000,000 pings cover
//! the whole relay) with `PINGS` stored pings (default 1,000,000; `PINGS=10000000` for the
//! issue's target) in a fresh SQLite file, started once (which records the proximity handoffs
//! in the custody log, as a live server would have); then a restart is timed: reading every
//! ping a page at a time and folding it into the engine.
//!
//! `cargo bench -p handoff-server --bench startup` (`PINGS=… ` to change the size)

use std::sync::Arc;
use std::time::Instant;

use handoff_server::auth::AdminToken;
use handoff_server::{AppState, Config};
use handoff_store::{NewDevice, NewPing, SqliteStore, Store};
use jiff::Timestamp;

#[path = "../../handoff-core/benches/support/torch.rs"]
mod torch;

/// 10,000 legs of 500 s: 1,000 pings a leg, so ten million pings cover the relay.
const TORCH: torch::Torch = torch::Torch {
    legs: 10_000,
    leg_s: 500,
};
const LEGS: usize = TORCH.legs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("PINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("startup.db");
    let now = Timestamp::from_second(torch::T0 + i64::try_from(n / 2).unwrap_or(0) + 600)?;
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
        let state = AppState::open(
            Arc::clone(&store),
            Config {
                admin: AdminToken::new("bench"),
                clock: Some(Arc::new(move || now)),
            },
        )
        .await?;
        state.put_plan("torch", TORCH.plan()).await?;
        for i in 0..LEGS {
            store
                .add_device(NewDevice {
                    event_id: "torch".into(),
                    device_id: format!("d{i}"),
                    carrier: format!("B{i}"),
                    relay_id: None,
                    token_hash: format!("{i:064}"),
                    speed_unit: None,
                })
                .await?;
        }
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
            let batch = chunk
                .iter()
                .map(|&k| {
                    let (c, p) = TORCH.ping(k);
                    NewPing {
                        event_id: "torch".into(),
                        device_id: format!("d{c}"),
                        ping: p,
                        received_at: now,
                    }
                })
                .collect();
            store.insert_pings(batch).await?;
        }
        eprintln!(
            "stored {n} pings in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // A first start finds the proximity handoffs and records them in the custody log, as the
    // live server would have while the pings came in; the second start is the one timed.
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
        let started = Instant::now();
        let first = AppState::open(
            store,
            Config {
                admin: AdminToken::new("bench"),
                clock: Some(Arc::new(move || now)),
            },
        )
        .await?;
        let entries = first.store.custody("torch", "torch").await?.len();
        eprintln!(
            "first start (records {entries} custody entries) took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let started = Instant::now();
    let state = AppState::open(
        store,
        Config {
            admin: AdminToken::new("bench"),
            clock: Some(Arc::new(move || now)),
        },
    )
    .await?;
    let took = started.elapsed();
    let held = state.event("torch").map(|e| e.held());
    println!(
        "rebuilt the live state of {n} stored pings in {:.2} s ({:.2} µs a ping); the engine holds {held:?}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
