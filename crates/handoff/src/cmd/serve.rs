//! `handoff serve`: opens the store (a SQLite file, or a PostgreSQL database that several
//! nodes may share), rebuilds live state, serves until Ctrl-C or SIGTERM, then closes the
//! store (SQLite: which checkpoints the WAL into the database file).

use anyhow::{Context, bail};
use handoff_server::auth::{AdminToken, new_token};
use handoff_server::{AppState, Config};
use handoff_store::{PostgresStore, SqliteStore, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A line on stdout. A server outlives whoever reads its output: once stdout is closed (a log
/// reader that stopped, `| head`), lines are dropped rather than stopping the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Log lines (`tracing`) on stderr: `info` and up unless `HANDOFF_LOG` says otherwise (an
/// `EnvFilter` such as `debug` or `handoff_server=debug,tower_http=debug`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HANDOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// What `--db` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://FILE`, or a bare path.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, kept whole (it may hold a password: never print it).
    Postgres(String),
}

/// Reads a `--db` value.
pub fn database(db: &str) -> anyhow::Result<Database> {
    if let Some(rest) = db.strip_prefix("sqlite://") {
        Ok(Database::Sqlite(PathBuf::from(rest)))
    } else if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        Ok(Database::Postgres(db.to_owned()))
    } else if let Some((scheme, _)) = db.split_once("://") {
        // Only the scheme: the rest may hold a password.
        bail!(
            "unknown database URL scheme `{scheme}://`; use sqlite://FILE or \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    } else {
        Ok(Database::Sqlite(PathBuf::from(db)))
    }
}

/// The SQLite file named by `sqlite://FILE` (or a bare path), for what works on SQLite files
/// only (`handoff backup`).
pub fn sqlite_path(db: &str) -> anyhow::Result<PathBuf> {
    match database(db)? {
        Database::Sqlite(path) => Ok(path),
        Database::Postgres(_) => bail!(
            "handoff backup copies SQLite files; back up a PostgreSQL database with pg_dump \
             (docs/operations.md has the commands)"
        ),
    }
}

/// `HANDOFF_ADMIN_TOKEN`, when set (and not empty).
fn token_from_env() -> anyhow::Result<Option<AdminToken>> {
    match std::env::var("HANDOFF_ADMIN_TOKEN") {
        Ok(t) if t.trim().is_empty() => bail!("HANDOFF_ADMIN_TOKEN is set but empty"),
        Ok(t) => Ok(Some(AdminToken::new(t.trim()))),
        Err(_) => Ok(None),
    }
}

/// The admin token: `HANDOFF_ADMIN_TOKEN`, or one generated on first start, printed once, and
/// kept only as a hash beside the database.
pub fn admin_token(db_path: &Path) -> anyhow::Result<(AdminToken, Option<String>)> {
    match token_from_env()? {
        Some(admin) => Ok((admin, None)),
        None => stored_or_new_token(db_path),
    }
}

/// [`admin_token`] on PostgreSQL: the hash is kept in the database, so that every node
/// sharing it accepts the one token; when two nodes start at once, the first to store its
/// hash wins and only that node prints its token.
async fn postgres_admin_token(
    store: &PostgresStore,
) -> anyhow::Result<(AdminToken, Option<String>)> {
    if let Some(admin) = token_from_env()? {
        return Ok((admin, None));
    }
    if let Some(hash) = store.admin_token_hash().await? {
        return Ok((AdminToken::from_hash(&hash), None));
    }
    let token = new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = AdminToken::new(&token);
    let kept = store
        .keep_admin_token_hash(admin.hash(), jiff::Timestamp::now())
        .await?;
    if kept == admin.hash() {
        Ok((admin, Some(token)))
    } else {
        Ok((AdminToken::from_hash(&kept), None))
    }
}

/// Refuses a weak `HANDOFF_ADMIN_TOKEN` on an address others can reach, and says loudly that
/// it is weak on loopback (where the README's tour uses a short one).
fn check_token_strength(listen: &str) -> anyhow::Result<()> {
    let Ok(t) = std::env::var("HANDOFF_ADMIN_TOKEN") else {
        return Ok(()); // generated: 256 bits
    };
    let bits = handoff_server::auth::entropy_bits(t.trim());
    if bits >= handoff_server::auth::MIN_TOKEN_BITS {
        return Ok(());
    }
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| listen.starts_with("localhost:"));
    let advice = "use at least 128 bits, e.g. `openssl rand -base64 24`";
    if !loopback {
        bail!(
            "HANDOFF_ADMIN_TOKEN is weak (about {bits:.0} bits) for a server on {listen}: {advice}"
        );
    }
    eprintln!(
        "WARNING: HANDOFF_ADMIN_TOKEN is weak (about {bits:.0} bits): fine on loopback for a try-out, refused on any other address; {advice}"
    );
    Ok(())
}

/// Where a generated admin token's hash is kept beside a SQLite database:
/// `FILE.admin-token.sha256`.
pub fn admin_token_file(db_path: &Path) -> PathBuf {
    let mut hash_file = db_path.as_os_str().to_owned();
    hash_file.push(".admin-token.sha256");
    PathBuf::from(hash_file)
}

fn stored_or_new_token(db_path: &Path) -> anyhow::Result<(AdminToken, Option<String>)> {
    let hash_file = admin_token_file(db_path);
    if let Ok(h) = std::fs::read_to_string(&hash_file) {
        return Ok((AdminToken::from_hash(&h), None));
    }
    let token = new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = AdminToken::new(&token);
    std::fs::write(&hash_file, admin.hash())
        .with_context(|| format!("cannot write {}", hash_file.display()))?;
    Ok((admin, Some(token)))
}

/// Refuses a database whose folder does not exist (SQLite's own error says only "unable to
/// open database file").
pub fn check_folder(path: &Path, flag: &str) -> anyhow::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder
        && !folder.is_dir()
    {
        bail!(
            "the folder {} for the database does not exist: create it, or choose another {flag}",
            folder.display()
        );
    }
    Ok(())
}

/// What `serve` takes besides its addresses and connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub allow_private_webhooks: bool,
    pub max_failed_sign_ins: u32,
}

pub fn run(
    listen: &str,
    db: &str,
    osmand_listen: Option<&str>,
    limits: handoff_server::serve::Limits,
    options: Options,
    basemap: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let database = database(db)?;
    if let Some(b) = basemap {
        handoff_server::pages::check_basemap(b).map_err(|e| anyhow::anyhow!("--basemap {e}"))?;
    }
    if let Database::Sqlite(path) = &database {
        check_folder(path, "--db")?;
    }
    check_token_strength(listen)?;
    if let Some(o) = osmand_listen {
        check_token_strength(o)?;
    }
    init_logging();
    let addresses = Addresses {
        listen,
        osmand_listen,
        limits,
        options,
        basemap,
    };
    match database {
        Database::Sqlite(path) => run_sqlite(&path, &addresses),
        Database::Postgres(url) => run_postgres(&url, &addresses),
    }
}

/// Where and how `serve` listens, whatever the database.
struct Addresses<'a> {
    listen: &'a str,
    osmand_listen: Option<&'a str>,
    limits: handoff_server::serve::Limits,
    options: Options,
    basemap: Option<&'a Path>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_sqlite(path: &Path, addresses: &Addresses<'_>) -> anyhow::Result<ExitCode> {
    let (admin, fresh) = admin_token(path)?;
    let rt = runtime()?;
    let store = Arc::new(SqliteStore::open(path)?);
    let shared: Arc<dyn Store> = Arc::clone(&store) as _;
    let token = match fresh {
        Some(t) => Shown::Fresh(t),
        None => Shown::Kept("its hash is beside the database"),
    };
    let served = rt.block_on(serve(
        shared,
        admin,
        token,
        &path.display().to_string(),
        addresses,
    ));
    // Every task (and with it every handle on the store) ends with the runtime; then the store
    // commits what is queued and checkpoints the WAL, so the .db file alone holds everything.
    rt.shutdown_timeout(Duration::from_secs(10));
    served?;
    let store = Arc::try_unwrap(store).map_err(|_| {
        anyhow::anyhow!(
            "the database is still in use after the server stopped; its WAL was not checkpointed \
             (the data is safe in {}-wal)",
            path.display()
        )
    })?;
    store
        .close_blocking()
        .with_context(|| format!("cannot checkpoint {} on shutdown", path.display()))?;
    say!(
        "stopped; {} holds everything (WAL checkpointed)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_postgres(url: &str, addresses: &Addresses<'_>) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let served = rt.block_on(async {
        // The store's errors name host, port and database, never the password.
        let store = PostgresStore::connect(url).await.context(
            "check that the PostgreSQL server is running and that the URL's user, password \
             and database are right (docs/operations.md)",
        )?;
        let (admin, fresh) = postgres_admin_token(&store).await?;
        let token = match fresh {
            Some(t) => Shown::Fresh(t),
            None => Shown::Kept("its hash is in the database"),
        };
        let label = format!("postgres://{}", store.target());
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let served = serve(shared, admin, token, &label, addresses).await;
        // Every write was committed when it was answered: closing only ends the connections.
        store.close().await;
        served.map(|()| label)
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    let label = served?;
    say!("stopped; {label} holds everything (every answered write was committed)");
    Ok(ExitCode::SUCCESS)
}

/// What `serve` says about the admin token.
enum Shown {
    /// Generated now: printed once.
    Fresh(String),
    /// The one printed on the first start, kept where this says.
    Kept(&'static str),
}

/// Serves until a stop signal: the part of `serve` that is the same on every database.
async fn serve(
    store: Arc<dyn Store>,
    admin: AdminToken,
    token: Shown,
    db_label: &str,
    addresses: &Addresses<'_>,
) -> anyhow::Result<()> {
    let Addresses {
        listen,
        osmand_listen,
        limits,
        options,
        basemap,
    } = *addresses;
    let state = AppState::open(store, Config { admin, clock: None })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state
        .webhooks
        .allow_private_targets(options.allow_private_webhooks);
    if let Some(b) = basemap {
        state
            .basemap
            .serve(b)
            .map_err(|e| anyhow::anyhow!("--basemap {e}"))?;
    }
    state.limits.auth_by_ip.set_max(options.max_failed_sign_ins);
    state
        .limits
        .auth_by_user
        .set_max(options.max_failed_sign_ins);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let osmand = match osmand_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
        None => None,
    };
    let stop = stop_signal()?;
    let base = format!("http://{}", listener.local_addr()?);
    say!("handoff serving on {base} (database {db_label})");
    if let Some(o) = &osmand {
        say!("OsmAnd protocol on http://{}", o.local_addr()?);
    }
    match token {
        Shown::Fresh(t) => say!("admin token (shown once, keep it): {t}"),
        Shown::Kept(_) if std::env::var_os("HANDOFF_ADMIN_TOKEN").is_some() => {
            say!("admin token from HANDOFF_ADMIN_TOKEN");
        }
        Shown::Kept(place) => say!("admin token: the one printed on the first start ({place})"),
    }
    if state.events().is_empty() {
        say!("no events yet: upload a plan with `handoff plan push PLAN --server {base}`");
    }
    let mut shown = HashMap::new();
    announce_events(&state, &base, &mut shown);
    say!("Ctrl-C (or SIGTERM) stops.");
    let progress = tokio::spawn(report_progress(Arc::clone(&state), base, shown));
    handoff_server::app::launch_with(state, listener, osmand, limits, stop).await?;
    progress.abort();
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what systemd, Docker and Kubernetes send
/// to stop a service). The handlers are installed here, before the server says it is serving:
/// a signal sent as soon as that line appears is never missed (nor kills the process outright).
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// How often `serve` says what it has received.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A line per event that is new or has a new plan version since `shown` (event → version).
fn announce_events(state: &AppState, base: &str, shown: &mut HashMap<String, i64>) {
    for ev in state.events() {
        let id = &ev.plan.event.id;
        if shown.get(id) == Some(&ev.version) {
            continue;
        }
        let legs: usize = ev.plan.relays.iter().map(|r| r.legs.len()).sum();
        say!(
            "event {id}: plan version {}, {}, {}; live page {base}/e/{id}",
            ev.version,
            super::count(ev.plan.relays.len(), "relay"),
            super::count(legs, "leg")
        );
        shown.insert(id.clone(), ev.version);
    }
}

/// While serving: new events and plan versions as they arrive, and every few seconds in which
/// pings came, how many.
async fn report_progress(state: Arc<AppState>, base: String, mut shown: HashMap<String, i64>) {
    let mut pings = state.metrics.accepted_total();
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        announce_events(&state, &base, &mut shown);
        let now = state.metrics.accepted_total();
        if now != pings {
            say!(
                "{}  {} stored in the last {} s ({now} since start)",
                jiff::ZonedDateTime::now().strftime("%H:%M:%S"),
                super::count(usize::try_from(now - pings).unwrap_or(usize::MAX), "ping"),
                PROGRESS_EVERY.as_secs()
            );
            pings = now;
        }
    }
}
