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

use handoff_core::ping::Ping;
use handoff_server::auth::AdminToken;
use handoff_server::{AppState, Config};
use handoff_store::{NewDevice, NewPing, SqliteStore, Store};
use jiff::Timestamp;

const LEGS: usize = 10_000;
/// Seconds per leg, and pings per leg (two phones at 1 Hz).
const LEG_S: usize = 500;
const PER_LEG: usize = 2 * LEG_S;
const LEG_M: f64 = 500.0;
const DEG_PER_M: f64 = 1.0 / 109_500.0;
const T0: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

fn plan_text() -> String {
    let mut s =
        String::from("[event]\nid = \"torch\"\nname = \"Torch\"\n[[relays]]\nid = \"torch\"\n");
    for i in 0..LEGS {
        #[allow(clippy::cast_precision_loss)]
        let (a, b) = (
            i as f64 * LEG_M * DEG_PER_M,
            (i + 1) as f64 * LEG_M * DEG_PER_M,
        );
        let start = if i == 0 {
            "start = \"2027-01-15T08:00:00Z\"\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "[[relays.legs]]\ncarriers = [\"B{i}\"]\nmode = \"walk\"\n{start}\
             route = {{ points = [[{a:.7}, 10.0], [{b:.7}, 10.0]] }}\nduration = \"500s\"\n"
        ));
    }
    s
}

/// The `k`-th ping: even ones the holder's, odd ones the next bearer's, waiting.
fn ping(k: usize) -> (usize, Ping) {
    let leg = (k / PER_LEG).min(LEGS - 1);
    let s = (k % PER_LEG) / 2;
    let holder = k.is_multiple_of(2);
    #[allow(clippy::cast_precision_loss)]
    let along = if holder {
        leg as f64 * LEG_M + LEG_M * s as f64 / LEG_S as f64
    } else {
        (leg + 1) as f64 * LEG_M + 20.0
    };
    let carrier = if holder { leg } else { (leg + 1).min(LEGS - 1) };
    #[allow(clippy::cast_possible_wrap)]
    let t = T0 + (k / PER_LEG * LEG_S + s) as i64;
    (
        carrier,
        Ping {
            t: Timestamp::from_second(t).expect("valid"),
            lon: along * DEG_PER_M,
            lat: 10.0,
            acc_m: Some(6.0),
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        },
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("PINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("startup.db");
    let now = Timestamp::from_second(T0 + i64::try_from(n / 2).unwrap_or(0) + 600)?;
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
        state.put_plan("torch", plan_text()).await?;
        for i in 0..LEGS {
            store
                .add_device(NewDevice {
                    event_id: "torch".into(),
                    device_id: format!("d{i}"),
                    carrier: format!("B{i}"),
                    relay_id: None,
                    token_hash: format!("{i:064}"),
                })
                .await?;
        }
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
            let batch = chunk
                .iter()
                .map(|&k| {
                    let (c, p) = ping(k);
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
