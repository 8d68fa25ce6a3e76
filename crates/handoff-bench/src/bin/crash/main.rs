//! `crash`: the crash harness. Starts `handoff serve` on a fresh SQLite file on 127.0.0.1,
//! drives every ingest format and every kind of custody entry with concurrent clients, kills
//! the server with SIGKILL at random moments (seeded, a bounded number of times), starts it
//! again on the same file, and checks after each restart and at the end that every
//! acknowledged ping and entry is stored, nothing is half-stored, every custody log verifies,
//! and the live state equals a fresh replay of the store. Exits non-zero on any failure.
//!
//! The seed fixes the choices (kill moments, actions, positions); the interleaving of
//! concurrent requests is the machine's, so a failing seed reproduces the conditions, not the
//! exact schedule. On failure the temporary folder (database, server log) is kept and named.

mod check;
mod clients;
// The generator loadgen's race uses (SplitMix64), shared as one file by the two binaries.
#[path = "../../race/rng.rs"]
mod rng;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use reqwest::Client;
use tokio::sync::RwLock;

use clients::{Device, Format, Ledger, Shared};
use rng::Rng;
use server::{Replica, Server};

/// Crash harness for handoff: SIGKILL under concurrent load, restart, check (loopback only).
#[derive(Debug, Parser)]
#[command(name = "crash", version)]
struct Args {
    /// How many times to kill the server.
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// Seed of the random choices (kill moments, actions); printed when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// The `handoff` binary to run (default: the one beside this binary, e.g. target/debug).
    #[arg(long)]
    handoff_bin: Option<PathBuf>,
    /// The server runs up to this long between a restart and the next kill (milliseconds).
    #[arg(long, default_value_t = 1500)]
    max_uptime_ms: u64,
    /// Check the checks: also record one ping and one custody entry as acknowledged that were
    /// never sent. The run must then fail, naming both as lost.
    #[arg(long, hide = true)]
    phantom: bool,
}

const EVENT: &str = "crash";
const RELAYS: [&str; 3] = ["r1", "r2", "r3"];
const LEGS: [&str; 4] = ["a", "b", "c", "d"];

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The plan: three relays of four legs each (a stage at the start, a run, a bike leg, a stage
/// at the finish), started a few minutes ago.
fn plan() -> String {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let mut toml = format!(
        "[event]\nid = \"{EVENT}\"\nname = \"Crash harness\"\n\n\
         [[places]]\nid = \"start\"\nname = \"Start\"\nat = [2.35, 48.85]\ntimezone = \"Europe/Paris\"\n\n\
         [[places]]\nid = \"finish\"\nname = \"Finish\"\nat = [2.38, 48.85]\ntimezone = \"Europe/Paris\"\n"
    );
    for relay in RELAYS {
        toml.push_str(&format!(
            "\n[[relays]]\nid = \"{relay}\"\nobject = \"baton\"\n\n\
             [[relays.legs]]\ncarriers = [\"{relay} a\"]\nmode = \"stage\"\nplace = \"start\"\nstart = \"{start}\"\nduration = \"5m\"\n\n\
             [[relays.legs]]\ncarriers = [\"{relay} b\"]\nmode = \"run\"\nduration = \"10m\"\n\
             route = {{ points = [[2.35, 48.85], [2.36, 48.85]] }}\n\n\
             [[relays.legs]]\ncarriers = [\"{relay} c\"]\nmode = \"bike\"\nduration = \"10m\"\n\
             route = {{ points = [[2.36, 48.85], [2.38, 48.85]] }}\n\n\
             [[relays.legs]]\ncarriers = [\"{relay} d\"]\nmode = \"stage\"\nplace = \"finish\"\nduration = \"5m\"\n"
        ));
    }
    toml
}

/// A strong admin token (256 bits from the OS).
fn admin_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn handoff_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no folder for this binary")?
            .join("handoff"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it (`cargo build -p handoff`) or pass --handoff-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// Uploads the plan and registers one device per carrier; the devices by relay, leg order.
async fn set_up(client: &Client, srv: &Server) -> anyhow::Result<Vec<Vec<Device>>> {
    client
        .put(format!("{}/api/v1/events/{EVENT}", srv.base))
        .bearer_auth(&srv.admin)
        .header("content-type", "application/toml")
        .body(plan())
        .send()
        .await?
        .error_for_status()
        .context("the plan upload")?;
    let mut devices = Vec::new();
    for relay in RELAYS {
        let mut legs = Vec::new();
        for leg in LEGS {
            let id = format!("{relay}-{leg}");
            let v: serde_json::Value = client
                .post(format!("{}/api/v1/events/{EVENT}/devices", srv.base))
                .bearer_auth(&srv.admin)
                .json(&serde_json::json!({"device": id, "carrier": format!("{relay} {leg}")}))
                .send()
                .await?
                .error_for_status()
                .context("a device registration")?
                .json()
                .await?;
            let token = v["token"].as_str().context("no token")?.to_owned();
            legs.push(Device { id, token });
        }
        devices.push(legs);
    }
    Ok(devices)
}

/// Totals over the run.
#[derive(Default)]
struct Totals {
    restarts_checked: usize,
    replays_equal: usize,
    problems: Vec<String>,
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(now.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
    });
    let bin = handoff_bin(args.handoff_bin)?;
    let dir = tempfile::Builder::new()
        .prefix("handoff-crash-")
        .tempdir()?;
    let db = dir.path().join("crash.db");
    let log = dir.path().join("server.log");
    println!(
        "crash harness: seed {seed}, {} kills, {} on {}",
        args.kills,
        bin.display(),
        db.display()
    );
    let client = Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let admin = admin_token()?;
    let mut srv = Server::new(&bin, &db, server::free_port()?, &admin, &log);
    srv.start(&client).await?;
    let devices = set_up(&client, &srv).await?;

    let ledger = Arc::new(Ledger::default());
    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        client: client.clone(),
        base: srv.base.clone(),
        admin: admin.clone(),
        event: EVENT.to_owned(),
        ledger: Arc::clone(&ledger),
        gate: Arc::clone(&gate),
        stop: Arc::clone(&stop),
    };
    let mut rng = Rng::new(seed);
    let mut tasks = Vec::new();
    // Two devices per format, taken leg by leg across the relays.
    let all: Vec<Device> = devices.iter().flatten().cloned().collect();
    for (i, format) in Format::ALL.into_iter().enumerate() {
        let mine = vec![all[2 * i].clone(), all[2 * i + 1].clone()];
        tasks.push(tokio::spawn(clients::pings(
            shared.clone(),
            format,
            mine,
            Rng::new(rng.next_u64()),
        )));
    }
    for (relay, legs) in RELAYS.iter().zip(&devices) {
        tasks.push(tokio::spawn(clients::relay(
            shared.clone(),
            (*relay).to_owned(),
            legs.clone(),
            Rng::new(rng.next_u64()),
        )));
    }
    tasks.push(tokio::spawn(clients::event_shifts(
        shared.clone(),
        Rng::new(rng.next_u64()),
    )));
    if args.phantom {
        ledger.phantom();
    }

    let relays: Vec<String> = RELAYS.iter().map(|r| (*r).to_owned()).collect();
    let mut totals = Totals::default();
    for kill in 1..=args.kills {
        // Run a while, then compare the live state with a fresh replay of a copy of the store.
        tokio::time::sleep(Duration::from_millis(rng.below(args.max_uptime_ms))).await;
        if kill > 1 || rng.below(2) == 0 {
            let paused = gate.write().await;
            match replay_differs(&client, &srv, &dir.path().join("replica.db"), &log).await {
                Ok(None) => totals.replays_equal += 1,
                Ok(Some(diff)) => totals.problems.push(format!(
                    "before kill {kill}: live state differs from a fresh replay: {diff}"
                )),
                Err(e) => totals
                    .problems
                    .push(format!("before kill {kill}: replay: {e:#}")),
            }
            drop(paused);
        }
        tokio::time::sleep(Duration::from_millis(rng.below(args.max_uptime_ms))).await;
        srv.kill()?;
        let health = srv.start(&client).await?;
        if health["status"] != "ok" {
            totals
                .problems
                .push(format!("after kill {kill}: /healthz says {health}"));
        }
        let found = check::over_http(&client, &srv.base, &admin, EVENT, &relays, &ledger).await?;
        totals.restarts_checked += 1;
        totals
            .problems
            .extend(found.problems().map(|p| format!("after kill {kill}: {p}")));
        println!(
            "kill {kill:>3}/{}: restarted; {} pings and {} entries acknowledged so far: {}",
            args.kills,
            found.pings_checked,
            found.entries_checked,
            if found.is_clean() {
                "all there".to_owned()
            } else {
                format!(
                    "{} lost, {} half-stored, {} broken",
                    found.lost.len(),
                    found.half_stored.len(),
                    found.broken.len()
                )
            }
        );
    }
    // Let the clients run once more on the last restart, then stop them and the server.
    tokio::time::sleep(Duration::from_millis(args.max_uptime_ms / 2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }
    match replay_differs(&client, &srv, &dir.path().join("replica.db"), &log).await {
        Ok(None) => totals.replays_equal += 1,
        Ok(Some(diff)) => totals.problems.push(format!(
            "at the end: live state differs from a fresh replay: {diff}"
        )),
        Err(e) => totals.problems.push(format!("at the end: replay: {e:#}")),
    }
    let http = check::over_http(&client, &srv.base, &admin, EVENT, &relays, &ledger).await?;
    totals
        .problems
        .extend(http.problems().map(|p| format!("at the end: {p}")));
    srv.stop()?;
    let file = check::in_file(&db, EVENT, &relays, &ledger)?;
    totals
        .problems
        .extend(file.problems().map(|p| format!("in the file: {p}")));

    let lost = http.lost.len().max(file.lost.len());
    let half = http.half_stored.len().max(file.half_stored.len());
    println!();
    println!("kills                   {}", args.kills);
    println!(
        "pings acknowledged      {} (checked after each restart over HTTP and at the end in the file: {})",
        ledger.acked_pings().len(),
        file.pings_checked
    );
    println!(
        "entries acknowledged    {} (checked: {}; every custody log verified)",
        ledger.acked_entries().len(),
        file.entries_checked
    );
    for (what, counts) in [
        (
            "pings by format",
            tally(ledger.acked_pings().iter().map(|p| p.format)),
        ),
        (
            "entries by kind",
            tally(ledger.acked_entries().iter().map(|e| e.kind)),
        ),
    ] {
        println!("{what:<24}{counts}");
    }
    println!(
        "unanswered batches      {} and event-wide shifts {}: each stored whole or not at all",
        ledger.unanswered_batches.lock().map_or(0, |b| b.len()),
        ledger.unanswered_shifts.lock().map_or(0, |b| b.len())
    );
    println!(
        "requests                {} ({} refused with a 4xx, {} unanswered)",
        ledger.requests.load(Ordering::Relaxed),
        ledger.refused.load(Ordering::Relaxed),
        ledger.unanswered.load(Ordering::Relaxed)
    );
    println!(
        "restarts checked        {}; live state equal to a fresh replay {} times",
        totals.restarts_checked, totals.replays_equal
    );
    println!("lost                    {lost}");
    println!("half-stored             {half}");
    println!(
        "time                    {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if totals.problems.is_empty() {
        println!("ok: nothing acknowledged was lost");
        Ok(true)
    } else {
        for p in totals.problems.iter().take(50) {
            println!("{p}");
        }
        let kept = dir.keep();
        println!(
            "FAILED ({} problems, seed {seed}); the database and server log are kept in {}",
            totals.problems.len(),
            kept.display()
        );
        Ok(false)
    }
}

/// `a 3, b 1`: how many of each, in first-seen order.
fn tally<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(k, _)| *k == item) {
            Some((_, n)) => *n += 1,
            None => counts.push((item, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the store with `handoff backup` (online, consistent), removes any saved engine
/// checkpoint from the copy (so the replica replays from the inputs alone), serves the copy,
/// and compares its admin `/live` with the running server's. `None` when equal.
async fn replay_differs(
    client: &Client,
    srv: &Server,
    copy: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    for suffix in ["", "-wal", "-shm", ".partial"] {
        let mut p = copy.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let out = tokio::process::Command::new(&srv.bin)
        .args(["backup", "--db"])
        .arg(format!("sqlite://{}", srv.db.display()))
        .arg(copy)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "handoff backup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop_engine_checkpoints(copy)?;
    let replica = Replica::start(&srv.bin, copy, &srv.admin, log, client).await?;
    let mut diff = None;
    // Both read within moments of each other. An instant that differs by exactly the time
    // between the two documents is the clock (see `first_difference`); a flag that flips at a
    // threshold of the clock (stale, silent) between the two reads is time, not state too, so
    // read again before judging.
    for _ in 0..3 {
        let (a, now_a) = check::live(client, &srv.base, &srv.admin, EVENT).await?;
        let (b, now_b) = check::live(client, &replica.base, &srv.admin, EVENT).await?;
        let clock_ns = now_a.as_nanosecond() - now_b.as_nanosecond();
        diff = check::first_difference(&a, &b, "live", clock_ns);
        if diff.is_none() {
            break;
        }
    }
    replica.stop()?;
    Ok(diff)
}

/// Empties any table of saved engine state (a checkpoint the live engine starts from), so
/// that the replica rebuilds from pings and custody entries only. None exists yet on this
/// branch; another branch adds one.
fn drop_engine_checkpoints(db: &std::path::Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%checkpoint%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in tables {
        conn.execute(&format!("DELETE FROM \"{t}\""), [])
            .with_context(|| format!("cannot empty {t} in the copy"))?;
    }
    Ok(())
}
