//! `loadgen`: measures handoff under load and prints the result as Markdown for
//! `docs/benchmarks.md`. Two scenarios: `ingest` (the default) loads the two ingest paths — one
//! ping per OsmAnd request, as phones send them live, and 1,000-ping batches on
//! `POST /api/v1/pings`, as a phone uploads a backlog; `race` runs a relay race at full scale
//! (1,000 teams × 12 phones, out-of-order pings, an SSE spectator measuring the lag) and then
//! loads `/live` (see `race`).
//!
//! It only ever talks to a server on this machine: by default it starts `handoff serve` itself
//! on 127.0.0.1 with a fresh SQLite file and stops it at the end; `--server` must name a loopback
//! address. Every scenario is bounded by a request count and by a time limit, whichever comes
//! first, and the run ends by checking that the server stored exactly what it acknowledged.

mod fixture;
mod live;
mod pg;
mod race;
mod report;
mod scenario;
mod target;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

/// Load generator for handoff's ingest and live engine (loopback only).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// What to run: `ingest` (the OsmAnd and batch ingest paths) or `race` (a relay race at
    /// full scale, then `/live` under load).
    #[arg(long, value_enum, default_value_t = Scenario::Ingest)]
    scenario: Scenario,
    /// A running server to load, e.g. http://127.0.0.1:8080 (loopback addresses only). Without
    /// it, loadgen starts `handoff serve` on 127.0.0.1 with a temporary SQLite file.
    #[arg(long)]
    server: Option<String>,
    /// The admin token of `--server` (a server loadgen starts gets a fresh one).
    #[arg(long, env = "HANDOFF_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The database of the server loadgen starts: a PostgreSQL database on this machine
    /// (`postgres://USER:PASSWORD@127.0.0.1:5432/DB`), in which loadgen makes a scratch schema
    /// for the run (dropped after it) and measures PostgreSQL's own insert rate of the same rows
    /// beside the server's. Without it, a temporary SQLite file.
    #[arg(long, conflicts_with = "server")]
    db: Option<String>,
    /// The `handoff` binary to start when no `--server` is given.
    #[arg(long, default_value = "target/release/handoff")]
    handoff_bin: PathBuf,
    /// Event id of the generated plan.
    #[arg(long, default_value = "loadgen")]
    event: String,
    /// Ingest: devices to register, one per carrier (each carrier walks its own relay).
    #[arg(long, default_value_t = 50)]
    devices: u64,
    /// OsmAnd scenario: at most this many requests (one ping each).
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Batch scenario: at most this many requests.
    #[arg(long, default_value_t = 200)]
    batches: u64,
    /// Batch scenario: pings per request (the body must stay under the server's 1 MiB limit).
    #[arg(long, default_value_t = 1_000)]
    batch_size: u64,
    /// Requests in flight at once (race: for the setup and the `/live` clients).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Ingest: each scenario stops starting requests after this many seconds.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    #[command(flatten)]
    race: race::RaceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Ingest,
    Race,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 || self.concurrency > 1_024 {
            bail!("--concurrency must be within 1..=1024");
        }
        if self.scenario == Scenario::Race {
            return self.race.check();
        }
        if self.devices == 0 || self.devices > 10_000 {
            bail!("--devices must be within 1..=10000");
        }
        if self.batch_size == 0 || self.batch_size > 5_000 {
            bail!(
                "--batch-size must be within 1..=5000 (the server takes at most 1 MiB per request)"
            );
        }
        // Each device reports once a second inside a time window of its own per scenario.
        let window = fixture::WINDOW_S;
        if self.requests.div_ceil(self.devices) > window {
            bail!(
                "--requests is at most {} with {} devices (one ping per device-second in a {window} s window)",
                window * self.devices,
                self.devices
            );
        }
        if self.batches.div_ceil(self.devices) * self.batch_size > window {
            bail!(
                "--batches × --batch-size is at most {} with {} devices (one ping per device-second in a {window} s window)",
                window * self.devices,
                self.devices
            );
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` gives the chain of causes on one line, without a backtrace.
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.check()?;

    let scratch = match args.db.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(pg::Scratch::create(url).await?)
        }
        Some(other) => bail!("--db takes a postgres:// URL (without it: SQLite), not `{other}`"),
        None => None,
    };
    let outcome = load(&args, scratch.as_ref()).await;
    if let Some(s) = &scratch
        && let Err(e) = s.drop_schema().await
    {
        eprintln!("loadgen: could not drop the scratch schema: {e:#}");
    }
    outcome
}

async fn load(args: &Args, scratch: Option<&pg::Scratch>) -> anyhow::Result<ExitCode> {
    let max = Duration::from_secs(args.max_seconds);
    let mut target = match &args.server {
        Some(url) => {
            let token = args
                .admin_token
                .clone()
                .context("--server needs the admin token: --admin-token or HANDOFF_ADMIN_TOKEN")?;
            target::Target::existing(url, token)?
        }
        None => target::Target::spawn(&args.handoff_bin, scratch.map(pg::Scratch::url))?,
    };
    let client = target::client(args.concurrency)?;
    target
        .wait_healthy(&client, Duration::from_secs(30))
        .await?;
    if args.scenario == Scenario::Race {
        let run = race::run(&client, &target, &args.event, args.concurrency, &args.race).await?;
        println!("{}", run.markdown());
        drop(target); // stops a server loadgen started
        if let Some(s) = scratch {
            // Every race ping came in a request of its own: the same rows, one a commit.
            let (raw, _) = s.raw_inserts(usize::MAX, 1, args.concurrency).await?;
            println!(
                "{}",
                report::raw_markdown(&[("race (one ping a request)", raw, None)])
            );
        }
        return Ok(if run.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let fixture =
        Arc::new(fixture::Fixture::install(&client, &target, &args.event, args.devices).await?);
    let stored_before = report::accepted_total(&client, &target.base).await?;

    let osmand = scenario::osmand(
        &client,
        &target.base,
        &fixture,
        args.requests,
        args.concurrency,
        max,
    )
    .await;
    let batch = scenario::batch(
        &client,
        &target.base,
        &fixture,
        args.batches,
        args.batch_size,
        args.concurrency,
        max,
    )
    .await;

    let stored_after = report::accepted_total(&client, &target.base).await?;
    let stored = stored_after.saturating_sub(stored_before);
    let acknowledged = osmand.pings + batch.pings;

    let run = report::Run {
        server: target.describe(),
        devices: args.devices,
        concurrency: args.concurrency,
        max_seconds: args.max_seconds,
        scenarios: vec![osmand, batch],
        stored,
        acknowledged,
    };
    println!("{}", run.markdown());
    drop(target); // stops a server loadgen started
    if let Some(s) = scratch {
        let singles = usize::try_from(run.scenarios[0].pings).unwrap_or(usize::MAX);
        let size = usize::try_from(args.batch_size).unwrap_or(1);
        let (one, batched) = s.raw_inserts(singles, size, args.concurrency).await?;
        let rate = |o: &scenario::Outcome| o.pings as f64 / o.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{}",
            report::raw_markdown(&[
                (
                    "osmand (one ping a request)",
                    one,
                    Some(rate(&run.scenarios[0]))
                ),
                ("batch", batched, Some(rate(&run.scenarios[1]))),
            ])
        );
    }

    Ok(if run.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
