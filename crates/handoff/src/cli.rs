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
    /// Send recorded GPX tracks to a server as live pings, in the server's time: shifted so the
    /// earliest point is the server's now, each sent when the server's clock reaches it.
    #[command(
        after_help = "Several devices of a relay from one command: one --device and one --token \
        per track, in the same order (--device a --token ta --device b --token tb A.gpx B.gpx); \
        the tracks keep their recorded times relative to one another.\n\n\
        The pings follow the server's clock (read from /healthz): real time against a real \
        server, faster against a server whose clock runs faster (handoff demo), so the \
        predictions the server makes from them stay meaningful."
    )]
    Replay {
        /// The server's base URL, e.g. http://127.0.0.1:8080
        #[arg(long, value_parser = server_url)]
        server: String,
        /// The device's id (as registered); once per track.
        #[arg(long, required = true)]
        device: Vec<String>,
        /// The device's token (as shown once at registration; or set HANDOFF_DEVICE_TOKEN);
        /// once per track.
        #[arg(
            long,
            env = "HANDOFF_DEVICE_TOKEN",
            hide_env_values = true,
            required = true
        )]
        token: Vec<String>,
        /// The tracks: GPX files with timed track points (untimed points are sent 5 s apart).
        #[arg(required = true)]
        track: Vec<PathBuf>,
        /// How many times faster than real time the server's clock runs (as `handoff demo`'s
        /// does); refused when the server's measured rate is another. Leave it out to follow
        /// the server's clock whatever its rate.
        #[arg(long)]
        speed: Option<f64>,
    },
    /// The server: ingest, API, live stream, pages.
    #[command(
        after_help = "Environment:\n  HANDOFF_ADMIN_TOKEN  the admin token (plan upload, \
        devices, console). When unset, one is generated on the first start, printed once, and \
        kept as a hash beside the database (FILE.admin-token.sha256), or on PostgreSQL in the \
        database (shared by every node on it)."
    )]
    Serve {
        /// Address for the API, the pages and the phone protocols.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Database: sqlite://FILE, or postgres://USER:PASSWORD@HOST:PORT/DATABASE (an
        /// existing database; the schema is created on the first start).
        #[arg(long, default_value = "sqlite://handoff.db")]
        db: String,
        /// Also serve the OsmAnd protocol alone on this address (Traccar's default is port 5055).
        #[arg(long)]
        osmand_listen: Option<String>,
        /// Open connections at most (live streams included); more get 503 with Retry-After.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Open connections from one client address at most (0: no limit; use 0 behind a
        /// proxy, where every client has the proxy's address).
        #[arg(long, default_value_t = 256)]
        max_connections_per_ip: usize,
        /// Let webhooks call loopback, link-local and private addresses (refused by default:
        /// a webhook must not reach into the server's own network).
        #[arg(long)]
        allow_private_webhooks: bool,
        /// Failed sign-ins allowed per client address (and per OwnTracks user) each minute
        /// before its requests with credentials get 429 (0: no limit; for a fuzzer on loopback).
        #[arg(long, default_value_t = handoff_server::limits::AUTH_FAILURES_PER_MINUTE)]
        max_failed_sign_ins: u32,
        /// A street basemap for the pages: a PMTiles file of vector tiles in the Protomaps
        /// basemap schema (e.g. your region cut from a Protomaps build with `pmtiles extract`),
        /// served at /basemap.pmtiles and drawn above the built-in world map.
        #[arg(long, value_name = "FILE.pmtiles")]
        basemap: Option<PathBuf>,
    },
    /// Copy a database while a server may be using it (SQLite's online backup), then check the
    /// copy: integrity, and every custody log's hash chain.
    #[command(
        after_help = "Restore by starting `handoff serve --db sqlite://OUT` on the copy (see \
        docs/operations.md). The admin token's hash is not in the database: keep \
        FILE.admin-token.sha256, or HANDOFF_ADMIN_TOKEN, with the backup."
    )]
    Backup {
        /// The database to copy: sqlite://FILE (for PostgreSQL, use pg_dump: see
        /// docs/operations.md).
        #[arg(long, default_value = "sqlite://handoff.db")]
        db: String,
        /// The copy: a new file (an existing one is never overwritten).
        out: PathBuf,
    },
    /// Copy every row of one database into a new, empty one (SQLite to PostgreSQL, or any
    /// pair), identities kept: the custody logs still verify, device tokens still work, and a
    /// server on the copy shows the same live state.
    #[command(
        after_help = "Stop every server on the source first (a write during the copy \
        makes it fail, committing nothing). The target is written in one transaction: on any \
        failure it is left as it was, and the command can simply be run again. Then start \
        `handoff serve --db` on the target (see docs/operations.md)."
    )]
    Migrate {
        /// The database to copy: sqlite://FILE (or a bare path), or
        /// postgres://USER:PASSWORD@HOST:PORT/DATABASE.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The database to fill: sqlite://FILE (created when missing) or postgres://… (an
        /// existing database; the schema is created). Refused when it holds any data.
        #[arg(long, value_name = "URL")]
        to: String,
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
        /// A street basemap (a PMTiles file of Paris and Los Angeles, say), as for `serve`.
        #[arg(long, value_name = "FILE.pmtiles")]
        basemap: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check plan files: exit 0 when valid, else one `FILE:LINE:COL: message` line per problem.
    Check {
        /// Plan files (TOML; route files are read beside each).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the schedule: each leg's start and end in its local zone and in UTC, and the
    /// countdowns to the milestones.
    Show {
        /// The plan: a TOML file (route files are read beside it).
        file: PathBuf,
    },
    /// Upload a plan to a server, with its route files inlined (admin token from
    /// HANDOFF_ADMIN_TOKEN).
    Push {
        /// The plan: a TOML file (route files are read beside it and sent inline).
        file: PathBuf,
        /// The server's base URL, e.g. http://127.0.0.1:8080
        #[arg(long, value_parser = server_url)]
        server: String,
        /// The server's admin token.
        #[arg(long, env = "HANDOFF_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Move every relay's times by one amount so that the plan starts now (milestones stay):
        /// to try a past or future plan live.
        #[arg(long)]
        rebase_now: bool,
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
        /// Fetch the log from this server (base URL, e.g. http://127.0.0.1:8080).
        #[arg(long, requires_all = ["event", "relay"], value_parser = server_url)]
        server: Option<String>,
        /// The event's id (with --server).
        #[arg(long)]
        event: Option<String>,
        /// The relay's id (with --server).
        #[arg(long)]
        relay: Option<String>,
    },
}

/// A server's base URL: `http://` or `https://` and a host, checked here so a missing scheme
/// is named at once (not as an HTTP client's "relative URL without a base").
fn server_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| {
            if s.contains("://") {
                format!("`{s}` is not an http:// or https:// URL")
            } else {
                format!("`{s}` has no scheme; write http://{s}")
            }
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!(
            "`{s}` names no host; write e.g. http://127.0.0.1:8080"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand, as `handoff plan push --server`, that `--help`
    /// shows without a description.
    fn undescribed(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undescribed(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_a_description() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        undescribed(&cmd, "handoff", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn a_server_url_needs_its_scheme() {
        assert_eq!(
            server_url("http://127.0.0.1:8080/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert!(server_url("https://relay.example.org").is_ok());
        assert_eq!(
            server_url("127.0.0.1:8080"),
            Err("`127.0.0.1:8080` has no scheme; write http://127.0.0.1:8080".into())
        );
        assert!(server_url("ftp://x").is_err());
        assert!(server_url("http://").is_err());
    }
}
