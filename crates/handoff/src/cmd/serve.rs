//! `handoff serve`: opens the store, rebuilds live state, serves until Ctrl-C or SIGTERM, then
//! closes the store (which checkpoints the WAL into the database file).

use anyhow::{Context, bail};
use handoff_server::auth::{AdminToken, new_token};
use handoff_server::{AppState, Config};
use handoff_store::SqliteStore;
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

/// The SQLite file named by `sqlite://FILE` (or a bare path).
pub fn sqlite_path(db: &str) -> anyhow::Result<PathBuf> {
    if let Some(rest) = db.strip_prefix("sqlite://") {
        Ok(PathBuf::from(rest))
    } else if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        bail!("PostgreSQL is not supported yet; use --db sqlite://FILE")
    } else if db.contains("://") {
        bail!("unknown database URL `{db}`; use sqlite://FILE")
    } else {
        Ok(PathBuf::from(db))
    }
}

/// The admin token: `HANDOFF_ADMIN_TOKEN`, or one generated on first start, printed once, and
/// kept only as a hash beside the database.
pub fn admin_token(db_path: &Path) -> anyhow::Result<(AdminToken, Option<String>)> {
    if let Ok(t) = std::env::var("HANDOFF_ADMIN_TOKEN") {
        if t.trim().is_empty() {
            bail!("HANDOFF_ADMIN_TOKEN is set but empty");
        }
        return Ok((AdminToken::new(t.trim()), None));
    }
    stored_or_new_token(db_path)
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

fn stored_or_new_token(db_path: &Path) -> anyhow::Result<(AdminToken, Option<String>)> {
    let mut hash_file = db_path.as_os_str().to_owned();
    hash_file.push(".admin-token.sha256");
    let hash_file = PathBuf::from(hash_file);
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
fn check_folder(path: &Path) -> anyhow::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder
        && !folder.is_dir()
    {
        bail!(
            "the folder {} for the database does not exist: create it, or choose another --db",
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
) -> anyhow::Result<ExitCode> {
    let path = sqlite_path(db)?;
    check_folder(&path)?;
    check_token_strength(listen)?;
    if let Some(o) = osmand_listen {
        check_token_strength(o)?;
    }
    init_logging();
    let (admin, fresh) = admin_token(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = Arc::new(SqliteStore::open(&path)?);
    let shared: Arc<dyn handoff_store::Store> = Arc::clone(&store) as _;
    let db_path = path.clone();
    let served = rt.block_on(async move {
        let state = AppState::open(shared, Config { admin, clock: None })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        state
            .webhooks
            .allow_private_targets(options.allow_private_webhooks);
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
        say!("handoff serving on {base} (database {})", db_path.display());
        if let Some(o) = &osmand {
            say!("OsmAnd protocol on http://{}", o.local_addr()?);
        }
        match fresh {
            Some(t) => say!("admin token (shown once, keep it): {t}"),
            None if std::env::var_os("HANDOFF_ADMIN_TOKEN").is_some() => {
                say!("admin token from HANDOFF_ADMIN_TOKEN");
            }
            None => say!(
                "admin token: the one printed on the first start (its hash is beside the database)"
            ),
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
        anyhow::Ok(())
    });
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
