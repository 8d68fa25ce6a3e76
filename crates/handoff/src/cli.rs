//! The command line, defined once: clap derives parsing and `--help` from these types.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "handoff",
    version,
    about = "Plan, live-track and verify relays."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with plan files: check them, show the schedule.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Custody logs: verify a hash chain.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Send a recorded GPX track to a server as live pings, shifted to start now.
    Replay {
        /// The server, e.g. http://127.0.0.1:8080
        #[arg(long)]
        server: String,
        /// The device's id (as registered).
        #[arg(long)]
        device: String,
        /// The device's token (as shown once at registration).
        #[arg(long, env = "HANDOFF_DEVICE_TOKEN", hide_env_values = true)]
        token: String,
        /// The track: a GPX file with timed track points (untimed points are sent 5 s apart).
        track: PathBuf,
        /// Replay this many times faster than recorded.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// The server: ingest, API, live stream.
    Serve {
        /// Address for the API, the pages and the phone protocols.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Database: sqlite://FILE (PostgreSQL is planned).
        #[arg(long, default_value = "sqlite://handoff.db")]
        db: String,
        /// Also serve the OsmAnd protocol alone on this address (Traccar's default is port 5055).
        #[arg(long)]
        osmand_listen: Option<String>,
    },
    /// Run the built-in Olympic flag handover.
    Demo {
        /// Address to serve the live page on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data folder for the embedded database.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run this many times faster than the default (about 3 minutes).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Stop when the relay has finished instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check plan files: exit 0 when valid, else one `FILE:LINE:COL: message` line per problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the schedule: each leg's start and end in its local zone and in UTC, and the
    /// countdowns to the milestones.
    Show { file: PathBuf },
    /// Upload a plan to a server, with its route files inlined (admin token from
    /// HANDOFF_ADMIN_TOKEN).
    Push {
        file: PathBuf,
        /// The server, e.g. http://127.0.0.1:8080
        #[arg(long)]
        server: String,
        #[arg(long, env = "HANDOFF_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Re-check a custody log's hash chain: exit 0 when it holds, else exit 1 naming the first
    /// bad entry. Give an NDJSON file, or --server, --event and --relay.
    Verify {
        /// A custody log as NDJSON (as `GET …/custody` returns it).
        #[arg(required_unless_present = "server", conflicts_with = "server")]
        file: Option<PathBuf>,
        #[arg(long, requires_all = ["event", "relay"])]
        server: Option<String>,
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        relay: Option<String>,
    },
}
