//! How long `handoff serve` takes to rebuild an event's live state from its stored pings.
//!
//! A torch relay (10,000 legs of 500 m walked in 500 s each; the holder's phone and the next
//! bearer's, waiting at the exchange, at 1 Hz: 1,000 pings a leg, so 10,000,000 pings cover
//! the whole relay) with `PINGS` stored pings (default 1,000,000; `PINGS=10000000` for the
//! issue's target) in a fresh SQLite file, started once (which records the proximity handoffs
//! in the custody log, as a live server would have, and saves the engine's state as it does at
//! shutdown). Then two starts are timed: one with the saved state dropped (the full replay:
//! reading every ping a page at a time and folding it into the engine), and one restoring the
//! state that the full replay's engine saved (reading and decoding it, then the pings stored
//! after it, if any). Both must show the same live view.
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
                    created_at: now,
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
        handoff_server::checkpoint::save_all(&first).await;
        eprintln!(
            "first start (records {entries} custody entries) took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let config = || Config {
        admin: AdminToken::new("bench"),
        clock: Some(Arc::new(move || now)),
    };
    // The full replay: the saved state dropped.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    store.delete_engine_checkpoint("torch").await?;
    let started = Instant::now();
    let replayed = AppState::open(store, config()).await?;
    let replay_s = started.elapsed().as_secs_f64();
    let held = match replayed.event("torch") {
        Some(e) => Some(e.held().await),
        None => None,
    };
    println!(
        "full replay: rebuilt the live state of {n} stored pings in {replay_s:.2} s ({:.2} µs a ping); the engine holds {held:?}",
        replay_s * 1e6 / n as f64
    );
    // Its engine saves its state after the install, in the background, as the server does.
    let started = Instant::now();
    handoff_server::checkpoint::save_all(&replayed).await;
    let saved = replayed
        .store
        .engine_checkpoint("torch")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no saved state"))?;
    println!(
        "saved state: {:.1} MB, cursor {}, written {:.2} s after the start (encode and write, off the engine's lock)",
        saved.state.len() as f64 / 1e6,
        saved.cursor,
        started.elapsed().as_secs_f64()
    );
    let expected = match replayed.event("torch") {
        Some(e) => Some(e.snapshot(now, false).await),
        None => None,
    };
    drop(replayed);

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let started = Instant::now();
    let state = AppState::open(store, config()).await?;
    let took = started.elapsed();
    let live = state.event("torch");
    let held = match &live {
        Some(e) => Some(e.held().await),
        None => None,
    };
    println!(
        "restore: rebuilt the live state of {n} stored pings in {:.2} s from the saved state (cursor {:?}); the engine holds {held:?}",
        took.as_secs_f64(),
        live.as_ref().and_then(|e| e.restored_from()),
    );
    anyhow::ensure!(
        live.as_ref().is_some_and(|e| e.restored_from().is_some()),
        "the start did not restore the saved state"
    );
    let restored = match &live {
        Some(e) => Some(e.snapshot(now, false).await),
        None => None,
    };
    anyhow::ensure!(
        restored == expected,
        "the restored live view differs from the full replay's"
    );
    println!("the restored live view equals the full replay's");
    Ok(())
}
