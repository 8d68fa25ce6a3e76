//! `handoff serve`: opens the store, rebuilds live state, serves until Ctrl-C.

use anyhow::{Context, bail};
use handoff_server::auth::{AdminToken, new_token};
use handoff_server::{AppState, Config};
use handoff_store::SqliteStore;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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

pub fn run(listen: &str, db: &str, osmand_listen: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = sqlite_path(db)?;
    let (admin, fresh) = admin_token(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store =
            SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let state = AppState::open(Arc::new(store), Config { admin, clock: None })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
        println!(
            "handoff serving on http://{} (database {})",
            listener.local_addr()?,
            path.display()
        );
        if let Some(o) = &osmand {
            println!("OsmAnd protocol on http://{}", o.local_addr()?);
        }
        if let Some(t) = fresh {
            println!("admin token (shown once, keep it): {t}");
        }
        handoff_server::launch(state, listener, osmand, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
