//! `handoff backup --db sqlite://FILE OUT`: an online copy of the database (a server may be
//! running on it), then a check of the copy before anyone relies on it: SQLite's integrity
//! check, and every custody log re-verified by the code `handoff log verify` runs.

use anyhow::{Context, bail};
use handoff_core::custody::verify as verify_chain;
use handoff_store::sqlite::backup;
use std::path::Path;
use std::process::ExitCode;

pub fn run(db: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let source = super::serve::sqlite_path(db)?;
    if !source.is_file() {
        bail!(
            "there is no database at {}: give the file `handoff serve --db` uses",
            source.display()
        );
    }
    if out.exists() {
        bail!(
            "{} already exists: choose a new name for the backup (it never overwrites a file)",
            out.display()
        );
    }
    backup::backup(&source, out)
        .with_context(|| format!("cannot back up {} to {}", source.display(), out.display()))?;
    let contents =
        backup::inspect(out).with_context(|| format!("cannot read the copy {}", out.display()))?;
    if !contents.is_sound() {
        println!(
            "{}: the copy fails SQLite's integrity check: {}",
            out.display(),
            contents.integrity.join("; ")
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut bad = 0;
    for log in &contents.logs {
        if let Err(e) = verify_chain(&log.ndjson) {
            println!(
                "{}: the custody log of {}/{} fails: {e}",
                out.display(),
                log.event_id,
                log.relay_id
            );
            bad += 1;
        }
    }
    let size = std::fs::metadata(out).map_or(0, |m| m.len());
    println!(
        "{}: {} backed up ({} KiB); integrity ok; {}, {}, {} in {}{}",
        out.display(),
        source.display(),
        size.div_ceil(1024),
        super::count(contents.events, "event"),
        super::count(
            usize::try_from(contents.pings).unwrap_or(usize::MAX),
            "ping"
        ),
        if contents.entries == 1 {
            "1 custody entry".to_string()
        } else {
            format!("{} custody entries", contents.entries)
        },
        super::count(contents.logs.len(), "log"),
        if bad == 0 {
            ", every log verified".to_string()
        } else {
            format!(", {bad} failing verification")
        }
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
