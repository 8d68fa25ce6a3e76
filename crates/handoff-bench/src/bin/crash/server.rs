//! The server under test: `handoff serve` on a fixed 127.0.0.1 port (so clients keep one URL
//! across restarts) over one SQLite file, killed with SIGKILL and started again on the same
//! file. Readiness is `GET /healthz` answering, polled; never a fixed sleep.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Client;

/// How long a start may take before the harness gives up (a debug build rebuilding live state
/// from tens of thousands of pings on a busy machine).
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct Server {
    pub bin: PathBuf,
    pub db: PathBuf,
    pub base: String,
    pub admin: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn new(bin: &Path, db: &Path, port: u16, admin: &str, log: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            db: db.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            admin: admin.to_owned(),
            log: log.to_owned(),
            child: None,
        }
    }

    /// Starts `handoff serve` on the database and waits until `/healthz` answers.
    pub async fn start(&mut self, client: &Client) -> anyhow::Result<serde_json::Value> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let listen = self.base.trim_start_matches("http://").to_owned();
        let child = Command::new(&self.bin)
            .args(["serve", "--listen", &listen, "--db"])
            .arg(format!("sqlite://{}", self.db.display()))
            // Every simulated phone comes from 127.0.0.1.
            .args(["--max-connections-per-ip", "0"])
            .env("HANDOFF_ADMIN_TOKEN", &self.admin)
            .env("HANDOFF_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        wait_healthy(client, &self.base, self.child.as_mut(), &self.log).await
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM (a clean stop: the WAL is checkpointed), and its exit status must be 0.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child)?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
    if !sent.success() {
        bail!("kill -TERM {pid} failed");
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("handoff serve exited with {status} after SIGTERM (a clean stop must exit 0)");
    }
    Ok(())
}

/// Polls `GET /healthz` until it answers 200; returns its body. Fails if the process exits.
pub async fn wait_healthy(
    client: &Client,
    base: &str,
    mut child: Option<&mut Child>,
    log: &Path,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let url = format!("{base}/healthz");
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(r.json().await?);
        }
        if let Some(c) = child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the server exited ({status}) before answering {url}; its log:\n{tail}");
        }
        if started.elapsed() > START_LIMIT {
            bail!("{url} did not answer within {START_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second server on a copy of the database, on a port of its own, for the fresh replay.
pub struct Replica {
    pub base: String,
    child: Child,
}

impl Replica {
    pub async fn start(
        bin: &Path,
        db: &Path,
        admin: &str,
        log: &Path,
        client: &Client,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(format!("sqlite://{}", db.display()))
            .env("HANDOFF_ADMIN_TOKEN", admin)
            .env("HANDOFF_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut replica = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        wait_healthy(client, &replica.base, Some(&mut replica.child), log).await?;
        Ok(replica)
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on now (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(probe.local_addr()?.port())
}
