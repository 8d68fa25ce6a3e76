//! Online backup of a SQLite store, and the read-only look at a database file that checks a
//! copy before anyone relies on it.
//!
//! The copy is SQLite's backup API in ONE step: one read transaction covers every page, so the
//! copy is the database as it was at one commit, whatever a running server writes meanwhile
//! (WAL readers never block the writer, nor it them). A step-by-step backup would restart each
//! time another connection wrote, which under steady ingest is forever. The copy is written
//! beside `OUT`, made a single self-contained file (rollback journal, not WAL), synced, and only
//! then renamed to `OUT`: a backup cut short never leaves a half copy under the name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::open_error;
use crate::error::{Result, StoreError};

/// How often a busy step is retried (a lock held by a checkpoint, say) before giving up.
const BUSY_RETRIES: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Copies the database at `source` (which a server may be writing) to a new file `out`.
///
/// # Errors
/// [`StoreError::Invalid`] when `source` does not exist or `out` already does; SQLite's error
/// when either file cannot be opened, read or written.
pub fn backup(source: &Path, out: &Path) -> Result<()> {
    if !source.is_file() {
        return Err(StoreError::Invalid(format!(
            "there is no database at {}",
            source.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::Invalid(format!(
            "{} already exists: choose a new name for the backup (it never overwrites a file)",
            out.display()
        )));
    }
    let partial = partial_name(out);
    let result = copy(source, &partial).and_then(|()| {
        std::fs::rename(&partial, out).map_err(|e| io_error(out, &e))?;
        sync_folder(out)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `out` with `.partial` added to its name: where the copy is written until it is complete.
fn partial_name(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn copy(source: &Path, partial: &Path) -> Result<()> {
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(source))?;
    from.busy_timeout(Duration::from_secs(5))
        .map_err(open_error(source))?;
    // A leftover from an earlier attempt that was killed: it was never renamed, so it is no
    // backup of anything.
    let _ = std::fs::remove_file(partial);
    let mut to = Connection::open(partial).map_err(open_error(partial))?;
    {
        let backup = Backup::new(&from, &mut to)?;
        let mut busy = 0;
        loop {
            // -1: every page in one step, under one read transaction (see the module note).
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                StepResult::More => {}
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "{} stayed locked for {} s; try again",
                        source.display(),
                        (BUSY_PAUSE * BUSY_RETRIES).as_secs()
                    )));
                }
            }
        }
    }
    // One file, no -wal beside it; `handoff serve` turns WAL back on when it opens the copy.
    let _: String = to.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    to.close().map_err(|(_, e)| StoreError::from(e))?;
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(partial, &e))
}

/// Makes the rename of `out` durable.
fn sync_folder(out: &Path) -> Result<()> {
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Directories cannot be opened for syncing on every platform; a failure here is not an
    // error in the copy itself.
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Invalid(format!("{}: {e}", path.display()))
}

/// What a database file holds, read without writing to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// `PRAGMA integrity_check`'s answer: `["ok"]` when the file is sound, else its problems.
    pub integrity: Vec<String>,
    /// The schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Events with at least one plan.
    pub events: usize,
    pub pings: i64,
    /// Custody entries in all logs.
    pub entries: i64,
    /// Every relay's custody log, ordered by event and relay.
    pub logs: Vec<CustodyLog>,
}

impl Contents {
    /// Whether `PRAGMA integrity_check` found nothing wrong.
    #[must_use]
    pub fn is_sound(&self) -> bool {
        self.integrity == ["ok"]
    }
}

/// One relay's custody log as NDJSON, in chain order (as `GET …/custody` serves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyLog {
    pub event_id: String,
    pub relay_id: String,
    pub ndjson: String,
}

/// Opens `path` read-only and reports what it holds. A database in WAL mode is read with its
/// `-wal` file, as SQLite does.
///
/// # Errors
/// When the file is missing, is not a SQLite database, or holds no handoff schema.
pub fn inspect(path: &Path) -> Result<Contents> {
    if !path.is_file() {
        return Err(StoreError::Invalid(format!(
            "there is no database at {}",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(path))?;
    let integrity = {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        stmt.query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if schema_version == 0 {
        return Err(StoreError::Invalid(format!(
            "{} holds no handoff data (an empty or foreign SQLite file)",
            path.display()
        )));
    }
    let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |row| row.get(0))?) };
    let events =
        usize::try_from(count("SELECT COUNT(DISTINCT event_id) FROM plans")?).unwrap_or(usize::MAX);
    let pings = count("SELECT COUNT(*) FROM pings")?;
    let entries = count("SELECT COUNT(*) FROM custody")?;
    let mut logs: Vec<CustodyLog> = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT event_id, relay_id, entry_json FROM custody ORDER BY event_id, relay_id, seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (event_id, relay_id, entry): (String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?);
        match logs.last_mut() {
            Some(log) if log.event_id == event_id && log.relay_id == relay_id => {
                log.ndjson.push_str(&entry);
                log.ndjson.push('\n');
            }
            _ => logs.push(CustodyLog {
                event_id,
                relay_id,
                ndjson: format!("{entry}\n"),
            }),
        }
    }
    Ok(Contents {
        integrity,
        schema_version,
        events,
        pings,
        entries,
        logs,
    })
}
