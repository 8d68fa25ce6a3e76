//! One module per subcommand.

mod backup;
mod log;
mod migrate;
pub mod plan;
mod replay;
mod serve;

use crate::cli::{Cli, Command, LogCommand, PlanCommand};
use std::process::ExitCode;

/// `1 relay`, `2 relays`: a count and its noun.
pub fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan {
            command: PlanCommand::Check { files },
        } => Ok(plan::check(&files)),
        Command::Plan {
            command: PlanCommand::Show { file },
        } => plan::show(&file),
        Command::Plan {
            command:
                PlanCommand::Push {
                    file,
                    server,
                    token,
                    rebase_now,
                },
        } => plan::push(&file, &server, &token, rebase_now),
        Command::Demo {
            listen,
            data,
            speed,
            exit,
            basemap,
        } => crate::demo::run(crate::demo::Options {
            listen,
            data,
            speed,
            exit,
            basemap,
        }),
        Command::Log {
            command:
                LogCommand::Verify {
                    file,
                    server,
                    event,
                    relay,
                },
        } => log::verify(
            file.as_deref(),
            server.as_deref(),
            event.as_deref(),
            relay.as_deref(),
        ),
        Command::Backup { db, out } => backup::run(&db, &out),
        Command::Migrate { from, to } => migrate::run(&from, &to),
        Command::Replay {
            server,
            device,
            token,
            track,
            speed,
        } => replay::run(&server, &device, &token, &track, speed),
        Command::Serve {
            listen,
            db,
            osmand_listen,
            max_connections,
            max_connections_per_ip,
            allow_private_webhooks,
            max_failed_sign_ins,
            basemap,
        } => serve::run(
            &listen,
            &db,
            osmand_listen.as_deref(),
            handoff_server::serve::Limits {
                max_connections,
                max_connections_per_ip,
                ..handoff_server::serve::Limits::default()
            },
            serve::Options {
                allow_private_webhooks,
                max_failed_sign_ins,
            },
            basemap.as_deref(),
        ),
    }
}
