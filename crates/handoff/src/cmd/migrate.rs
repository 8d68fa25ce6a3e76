//! `handoff migrate --from URL --to URL`: copies every row of one database into a new, empty
//! one (SQLite to PostgreSQL, or any pair), identities kept, so that `handoff serve` on the
//! target starts where the source stopped: the same plan versions, device tokens, pings,
//! custody logs (which still verify), webhooks, delivery log and change feed
//! ([`handoff_store::copy`] does the copying). The admin token's hash goes with them, from
//! wherever each end keeps it (beside a SQLite file, in PostgreSQL's `admin_token`).
//!
//! Atomic, not resumable: the target is written in one transaction, so a failure or a Ctrl-C
//! before the commit leaves it as it was (empty), and running the command again starts over.
//! After the commit every custody log is read back from the target and re-verified.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use handoff_core::custody::verify as verify_chain;
use handoff_store::copy::{self, Copied, CopyError, Export, Import, Progress, Table};
use handoff_store::postgres::copy::{PostgresExport, PostgresImport, same_database};
use handoff_store::sqlite::copy::{SqliteExport, SqliteImport};
use handoff_store::{PostgresStore, SqliteStore, Store};
use indicatif::{ProgressBar, ProgressStyle};

use super::serve::{Database, admin_token_file, check_folder, database};

/// Rows read and written per page (plans: fewer, see the store's copy module).
const PAGE_ROWS: usize = 5_000;

/// What `serve` would say to check when PostgreSQL cannot be reached.
const PG_ADVICE: &str = "check that the PostgreSQL server is running and that the URL's user, \
                         password and database are right (docs/operations.md)";

pub fn run(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let (source, target) = (database(from)?, database(to)?);
    if let (Database::Sqlite(a), Database::Sqlite(b)) = (&source, &target)
        && same_file(a, b)
    {
        bail!(
            "--from and --to are the same database ({}): migrate into a new one",
            a.display()
        );
    }
    if let Database::Sqlite(path) = &target {
        check_folder(path, "--to")?;
    }
    let new_file = NewFile::of(&target);
    let mut committed = false;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let migrated = rt.block_on(migrate(&source, &target, &mut committed));
    // Dropping the runtime waits for a page still being written off it; only then may a new
    // file be removed.
    drop(rt);
    if migrated.is_err()
        && !committed
        && let Some(new) = new_file
    {
        new.remove();
    }
    migrated
}

/// Whether two paths name one file (the second may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let folder = p.parent().filter(|f| !f.as_os_str().is_empty());
            let folder = folder.unwrap_or(Path::new(".")).canonicalize().ok()?;
            Some(folder.join(p.file_name()?))
        })
    };
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// The source: its snapshot, and where it keeps the admin token's hash.
enum Source {
    Sqlite(PathBuf, SqliteExport),
    Postgres(PostgresStore, PostgresExport),
}

/// The target: the transaction being filled, and where it keeps the admin token's hash.
enum Target {
    Sqlite(PathBuf, SqliteImport),
    Postgres(PostgresStore, PostgresImport),
}

async fn connect(url: &str) -> anyhow::Result<PostgresStore> {
    // The store's errors name host, port and database, never the password.
    PostgresStore::connect(url).await.context(PG_ADVICE)
}

impl Source {
    /// `sqlite://FILE` or `postgres://HOST:PORT/DATABASE` (no user, no password).
    fn label(&self) -> String {
        match self {
            Source::Sqlite(path, _) => format!("sqlite://{}", path.display()),
            Source::Postgres(store, _) => format!("postgres://{}", store.target()),
        }
    }
}

impl Target {
    /// As [`Source::label`].
    fn label(&self) -> String {
        match self {
            Target::Sqlite(path, _) => format!("sqlite://{}", path.display()),
            Target::Postgres(store, _) => format!("postgres://{}", store.target()),
        }
    }
}

async fn open_source(db: &Database) -> anyhow::Result<Source> {
    Ok(match db {
        Database::Sqlite(path) => {
            let at = path.clone();
            let export = tokio::task::spawn_blocking(move || SqliteExport::open(&at))
                .await?
                .with_context(|| format!("cannot read the source {}", path.display()))?;
            Source::Sqlite(path.clone(), export)
        }
        Database::Postgres(url) => {
            let store = connect(url).await?;
            let export = PostgresExport::begin(&store).await?;
            Source::Postgres(store, export)
        }
    })
}

async fn open_target(db: &Database, source: &Source) -> anyhow::Result<Target> {
    Ok(match db {
        Database::Sqlite(path) => {
            let at = path.clone();
            let import = tokio::task::spawn_blocking(move || SqliteImport::create(&at))
                .await?
                .with_context(|| format!("cannot open the target {}", path.display()))?;
            Target::Sqlite(path.clone(), import)
        }
        Database::Postgres(url) => {
            let store = connect(url).await?;
            if let Source::Postgres(from, _) = source
                && same_database(from, &store).await?
            {
                bail!(
                    "--from and --to are the same database (postgres://{}): migrate into a new \
                     one",
                    store.target()
                );
            }
            let import = PostgresImport::begin(&store).await?;
            Target::Postgres(store, import)
        }
    })
}

/// The admin token's hash a SQLite file keeps beside it, if any.
fn hash_beside(path: &Path) -> anyhow::Result<Option<String>> {
    let file = admin_token_file(path);
    match std::fs::read_to_string(&file) {
        Ok(hash) => Ok(Some(hash.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// What became of the admin token's hash, for the summary.
enum Token {
    Copied,
    AlreadyThere,
    /// The source keeps none: its servers take `HANDOFF_ADMIN_TOKEN`.
    None,
}

/// Carries the admin token's hash over: refused when the target keeps another one.
async fn carry_admin_token(source: &Source, target: &mut Target) -> anyhow::Result<Token> {
    let from = match source {
        Source::Sqlite(path, _) => hash_beside(path)?,
        Source::Postgres(store, _) => store.admin_token_hash().await?,
    };
    let (kept, remove) = match target {
        Target::Sqlite(path, _) => (
            hash_beside(path)?,
            format!("remove {}", admin_token_file(path).display()),
        ),
        Target::Postgres(store, _) => (
            store.admin_token_hash().await?,
            "run `DELETE FROM admin_token;` on it".to_owned(),
        ),
    };
    let Some(hash) = from else {
        return Ok(Token::None);
    };
    match kept {
        Some(kept) if kept == hash => return Ok(Token::AlreadyThere),
        Some(_) => bail!(
            "the target keeps another admin token's hash (a `handoff serve` generated one on \
             it); {remove} to take the source's, or set HANDOFF_ADMIN_TOKEN on the servers"
        ),
        None => {}
    }
    match target {
        Target::Sqlite(path, _) => {
            let file = admin_token_file(path);
            std::fs::write(&file, &hash)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        Target::Postgres(_, import) => {
            import
                .keep_admin_token_hash(&hash, jiff::Timestamp::now())
                .await?;
        }
    }
    Ok(Token::Copied)
}

/// A bar per table on a terminal (stderr), and a line per table on stdout when it is done.
fn progress() -> impl FnMut(Progress) + Send {
    let shown = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    move |p: Progress| {
        if p.done == 0 {
            let next = if shown {
                ProgressBar::new(p.total)
            } else {
                ProgressBar::hidden()
            };
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>18} [{bar:40.cyan/blue}] {pos}/{len} {per_sec}",
            ) {
                next.set_style(style.progress_chars("█▌ "));
            }
            next.set_prefix(p.table.name());
            bar = Some(next);
        }
        if let Some(b) = &bar {
            b.set_position(p.done);
            if p.done >= p.total {
                b.finish_and_clear();
                println!("{:>18}  {}", p.table.name(), p.table.noun(p.done));
            }
        }
    }
}

/// Reads every copied custody log back from the target and verifies it: the failures, as
/// lines to print.
async fn verify_logs(store: &dyn Store, copied: &Copied) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for (event, relay) in &copied.logs {
        let ndjson: String = store
            .custody(event, relay)
            .await?
            .iter()
            .map(|e| format!("{}\n", e.entry_json))
            .collect();
        if let Err(e) = verify_chain(&ndjson) {
            failures.push(format!("the custody log of {event}/{relay} fails: {e}"));
        }
    }
    let pings = store.ping_count().await?;
    if u64::try_from(pings).ok() != Some(copied.of(Table::Pings)) {
        failures.push(format!(
            "the target holds {pings} pings, not the {} copied",
            copied.of(Table::Pings)
        ));
    }
    Ok(failures)
}

/// A SQLite target that did not exist before: removed again (with what SQLite and `serve` keep
/// beside it) when the migration fails before its commit, so that nothing is left behind.
struct NewFile {
    files: Vec<PathBuf>,
}

impl NewFile {
    fn of(to: &Database) -> Option<NewFile> {
        let Database::Sqlite(path) = to else {
            return None;
        };
        let beside = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let files = [
            path.clone(),
            beside("-wal"),
            beside("-shm"),
            admin_token_file(path),
        ];
        (!path.exists()).then(|| NewFile {
            files: files.into_iter().filter(|f| !f.exists()).collect(),
        })
    }

    fn remove(&self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

async fn migrate(from: &Database, to: &Database, committed: &mut bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Ctrl-C while copying stops it with nothing committed; once the commit has begun it is
    // not interrupted (the handler stays installed, so a second Ctrl-C does not kill it).
    let copy = tokio::select! {
        copy = copy_all(from, to) => copy?,
        _ = tokio::signal::ctrl_c() => bail!(
            "interrupted (Ctrl-C) before the commit: nothing was written to the target"
        ),
    };
    let Copy {
        source,
        mut target,
        copied,
        token,
        from_label,
        to_label,
    } = copy;
    drop(source);
    match &mut target {
        Target::Sqlite(_, i) => i.commit().await,
        Target::Postgres(_, i) => i.commit().await,
    }
    .with_context(|| format!("cannot commit the copy to {to_label}; nothing was written"))?;
    *committed = true;

    let failures = match target {
        Target::Sqlite(path, import) => {
            drop(import);
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await??;
            let failures = verify_logs(&store, &copied).await;
            store.close().await?;
            failures?
        }
        Target::Postgres(store, _) => verify_logs(&store, &copied).await?,
    };
    for failure in &failures {
        println!("{to_label}: {failure}");
    }
    let verified = if failures.is_empty() {
        "every log verified"
    } else {
        "NOT every log verified"
    };
    let rows: Vec<String> = copied
        .rows
        .iter()
        .map(|(table, n)| match table {
            Table::Custody => format!(
                "{} in {} ({verified})",
                table.noun(*n),
                super::count(copied.logs.len(), "log")
            ),
            _ => table.noun(*n),
        })
        .collect();
    let token = match token {
        Token::Copied => "the admin token's hash copied",
        Token::AlreadyThere => "the admin token's hash already there",
        Token::None => "no admin token's hash in the source (HANDOFF_ADMIN_TOKEN)",
    };
    println!(
        "migrated {from_label} to {to_label} in {:.1} s: {}; {token}; engine checkpoints are \
         rebuilt at the first start",
        started.elapsed().as_secs_f64(),
        rows.join(", ")
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Everything copied into the target's open transaction, and what the summary says of it.
struct Copy {
    source: Source,
    target: Target,
    copied: Copied,
    token: Token,
    from_label: String,
    to_label: String,
}

/// Everything up to the commit: any error here (or dropping it) leaves the target as it was.
async fn copy_all(from: &Database, to: &Database) -> anyhow::Result<Copy> {
    let mut source = open_source(from).await?;
    let mut target = open_target(to, &source).await?;
    let (from_label, to_label) = (source.label(), target.label());
    println!("migrating {from_label} to {to_label}");
    let export: &mut dyn Export = match &mut source {
        Source::Sqlite(_, e) => e,
        Source::Postgres(_, e) => e,
    };
    let import: &mut dyn Import = match &mut target {
        Target::Sqlite(_, i) => i,
        Target::Postgres(_, i) => i,
    };
    let copied = match copy::copy(export, import, PAGE_ROWS, &mut progress()).await {
        Ok(copied) => copied,
        Err(e @ (CopyError::TargetNotEmpty(_) | CopyError::SourceMoved)) => {
            bail!("{to_label}: {e}")
        }
        Err(CopyError::Store(e)) => {
            return Err(anyhow::Error::new(e).context(format!(
                "the copy from {from_label} to {to_label} failed; nothing was committed to the \
                 target (run it again once the cause is fixed)"
            )));
        }
    };
    let token = carry_admin_token(&source, &mut target).await?;
    Ok(Copy {
        source,
        target,
        copied,
        token,
        from_label,
        to_label,
    })
}
