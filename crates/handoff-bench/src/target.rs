//! Where the load goes: a server on this machine, never anywhere else. Either one the user
//! names (its URL must be a loopback address) or one loadgen starts on 127.0.0.1 with a fresh
//! SQLite file in a temporary folder, or a fresh schema of a PostgreSQL database on this
//! machine ([`crate::pg::Scratch`]), and kills when the [`Target`] is dropped.

use std::fs::File;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, Url};

pub struct Target {
    /// The server's root URL, ending with `/`.
    pub base: Url,
    pub admin_token: String,
    spawned: Option<Spawned>,
}

/// A `handoff serve` child process and its temporary folder (database and log).
struct Spawned {
    child: Child,
    /// Removed when dropped, after `drop` has stopped the child.
    _dir: tempfile::TempDir,
    log: PathBuf,
    on_postgres: bool,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    /// A server that is already running; refused unless its host is a loopback address.
    pub fn existing(url: &str, admin_token: String) -> anyhow::Result<Self> {
        Ok(Self {
            base: loopback_url(url)?,
            admin_token,
            spawned: None,
        })
    }

    /// Starts `handoff serve` on a free 127.0.0.1 port with a fresh SQLite file, or on `db` (a
    /// `postgres://` URL, for a scratch schema loadgen made).
    pub fn spawn(bin: &Path, db: Option<&str>) -> anyhow::Result<Self> {
        if !bin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p handoff`, pass --handoff-bin, or give --server",
                bin.display()
            );
        }
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
            probe.local_addr()?.port()
        };
        let dir = tempfile::Builder::new()
            .prefix("handoff-loadgen-")
            .tempdir()?;
        let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
        let on_postgres = db.is_some();
        let db = db.map_or(sqlite, str::to_owned);
        let log = dir.path().join("server.log");
        let out = File::create(&log)?;
        let admin_token = random_token();
        let child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                &db,
                // Every simulated phone and spectator comes from 127.0.0.1.
                "--max-connections-per-ip",
                "0",
            ])
            .env("HANDOFF_ADMIN_TOKEN", &admin_token)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self {
            base: loopback_url(&format!("http://127.0.0.1:{port}/"))?,
            admin_token,
            spawned: Some(Spawned {
                child,
                _dir: dir,
                log,
                on_postgres,
            }),
        })
    }

    /// The pid of a server loadgen started.
    pub fn pid(&self) -> Option<u32> {
        self.spawned.as_ref().map(|s| s.child.id())
    }

    /// One line for the report: which server was loaded.
    pub fn describe(&self) -> String {
        match &self.spawned {
            Some(s) => format!(
                "`handoff serve` started by loadgen at {} on a fresh {}",
                self.base,
                if s.on_postgres {
                    "PostgreSQL schema"
                } else {
                    "SQLite file"
                }
            ),
            None => format!("the server at {}", self.base),
        }
    }

    /// Waits until `GET /healthz` answers 200, or fails (with the log of a server loadgen
    /// started, when it exited or never answered).
    pub async fn wait_healthy(&mut self, client: &Client, limit: Duration) -> anyhow::Result<()> {
        let url = self.base.join("healthz")?;
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(url.clone()).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(s) = &mut self.spawned {
                let exited = s.child.try_wait()?;
                if exited.is_some() || started.elapsed() > limit {
                    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                    match exited {
                        Some(status) => bail!(
                            "the server exited ({status}) before answering {url}; its log:\n{log}"
                        ),
                        None => bail!(
                            "the server did not answer {url} within {limit:?}; its log:\n{log}"
                        ),
                    }
                }
            } else if started.elapsed() > limit {
                bail!("{url} did not answer 200 within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An HTTP client that cannot be steered off this machine: no proxy (not even from the
/// environment), no redirects. It drops a kept-alive connection after 5 s idle, before the
/// server's own idle timeout (10 s) closes it: a request sent on a connection at the moment
/// the server closes it fails on the client ("error sending request"), which measures the
/// race between the two timers, not the server.
pub fn client(concurrency: usize) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Parses `url` and refuses any host that is not loopback (127.0.0.0/8, ::1, localhost).
pub fn loopback_url(url: &str) -> anyhow::Result<Url> {
    let mut parsed = Url::parse(url)
        .with_context(|| format!("`{url}` is not a URL such as http://127.0.0.1:8080"))?;
    if parsed.scheme() != "http" {
        bail!("`{url}`: only http:// on a loopback address is supported");
    }
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "`{url}`: loadgen only loads a server on this machine (127.0.0.1, ::1 or localhost), not `{host}`"
        );
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

/// A fresh admin token for a server loadgen starts: not secret beyond this run, but unique.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("loadgen-{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::loopback_url;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:1/",
            "http://[::1]:8080",
            "http://localhost:9",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2",
            "http://example.com",
            "https://127.0.0.1",
            "http://0.0.0.0:8080",
            "ftp://127.0.0.1",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_base_url_ends_with_a_slash() {
        assert_eq!(
            loopback_url("http://127.0.0.1:8080/x")
                .map(|u| u.to_string())
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8080/x/")
        );
    }
}
