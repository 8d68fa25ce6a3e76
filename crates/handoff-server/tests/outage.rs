//! A node survives its database (PostgreSQL only; skipped with a line otherwise), twice: once
//! with the server's connections through a TCP proxy the test cuts (every connection dropped,
//! new ones refused for a while), and once on a PostgreSQL cluster of the test's own that it
//! really stops (`pg_ctl stop -m immediate`: a crash, so the restart replays the WAL) and
//! starts again, while a phone keeps sending. Every answer during the outage is a 503 with
//! `Retry-After`, never a 2xx for what was not stored; the server reconnects by itself when the
//! database is back; and every ping it acknowledged is stored and in the live state.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::{
    CARRIERS, DEVICES, EVENT, PLAN, RUN, Server, TestClock, TestDb, at, plan, planned_speed_mps,
    walk,
};

/// A TCP proxy to PostgreSQL that can be cut: [`Proxy::cut`] drops every connection and closes
/// its port (a connection is refused, as by a server that is not running) until
/// [`Proxy::restore`] opens it again.
struct Proxy {
    port: u16,
    target: (String, u16),
    links: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn to(target: (String, u16)) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut proxy = Proxy {
            port: listener.local_addr()?.port(),
            target,
            links: Arc::new(tokio::sync::Mutex::new(JoinSet::new())),
            accept: None,
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, links) = (self.target.clone(), Arc::clone(&self.links));
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                links.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// The database goes away: every connection is dropped mid-flight, new ones are refused.
    async fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await; // the listening socket is closed once the task is gone
        }
        self.links.lock().await.abort_all();
    }

    /// The database is back, on the same port.
    async fn restore(&mut self) -> Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        self.serve(listener);
        Ok(())
    }
}

/// One answer to a phone's batch: when it was sent, how long it took, the status, whether
/// `Retry-After` came, and which fix it was.
struct Answer {
    sent: Instant,
    took: Duration,
    status: Option<StatusCode>,
    retry_after: bool,
    index: usize,
}

#[tokio::test]
async fn a_node_rides_out_a_database_restart_without_a_false_acknowledgement() -> Result<()> {
    let db = TestDb::new().await?;
    let TestDb::Postgres(pg) = &*db else {
        eprintln!(
            "database outage: skipped (it cuts a PostgreSQL connection; set HANDOFF_TEST_PG)"
        );
        return Ok(());
    };
    let options = pg.options();
    let proxy = Proxy::to((options.get_host().to_owned(), options.get_port())).await?;
    let store = handoff_store::postgres::PostgresStore::connect_sized(
        options.clone().host("127.0.0.1").port(proxy.port),
        handoff_store::postgres::testing::TEST_POOL,
    )
    .await?;
    let direct = db.store().await?;
    phone_through(Outage::Proxy(proxy), db, store, direct).await
}

#[tokio::test]
async fn a_node_rides_out_a_real_postgresql_crash_and_restart() -> Result<()> {
    if std::env::var_os(handoff_store::postgres::testing::TEST_PG_VAR).is_none_or(|v| v.is_empty())
    {
        eprintln!("database crash: skipped (it runs a PostgreSQL cluster; set HANDOFF_TEST_PG)");
        return Ok(());
    }
    let cluster = tokio::task::spawn_blocking(Cluster::new).await??;
    let url = cluster.url();
    let store = handoff_store::postgres::PostgresStore::connect_sized(
        handoff_store::postgres::parse_url(&url)?,
        handoff_store::postgres::testing::TEST_POOL,
    )
    .await?;
    // Only to keep the server's `dir` alive; the cluster holds the data.
    let db = TestDb::new().await?;
    // Straight to the cluster (its pool reconnects after the crash by itself).
    let direct: Arc<dyn handoff_store::Store> = Arc::new(
        handoff_store::postgres::PostgresStore::connect_sized(
            handoff_store::postgres::parse_url(&url)?,
            handoff_store::postgres::testing::TEST_POOL,
        )
        .await?,
    );
    phone_through(Outage::Cluster(cluster), db, store, direct).await
}

/// How the test takes the database away and gives it back.
enum Outage {
    Proxy(Proxy),
    Cluster(Cluster),
}

impl Outage {
    fn name(&self) -> &'static str {
        match self {
            Outage::Proxy(_) => "connections cut",
            Outage::Cluster(_) => "PostgreSQL crashed and restarted",
        }
    }

    async fn begin(&mut self) -> Result<()> {
        match self {
            Outage::Proxy(p) => p.cut().await,
            Outage::Cluster(c) => {
                let c = c.handle();
                tokio::task::spawn_blocking(move || c.pg_ctl(&["stop", "-m", "immediate"]))
                    .await??;
            }
        }
        Ok(())
    }

    async fn end(&mut self) -> Result<()> {
        match self {
            Outage::Proxy(p) => p.restore().await?,
            Outage::Cluster(c) => {
                let c = c.handle();
                tokio::task::spawn_blocking(move || c.start()).await??;
            }
        }
        Ok(())
    }
}

/// A PostgreSQL cluster of the test's own in a temporary folder, on a free port of 127.0.0.1,
/// run as the `postgres` user when the test runs as root (PostgreSQL refuses root); stopped
/// and removed when dropped.
struct Cluster {
    /// Removed when the cluster is dropped (after it is stopped).
    _dir: tempfile::TempDir,
    handle: ClusterHandle,
}

/// What commands on the cluster need (cheap to move into a blocking task).
#[derive(Clone)]
struct ClusterHandle {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn new() -> Result<Cluster> {
        let bin = postgres_bin()?;
        let as_postgres = output(Command::new("id").arg("-u"))?.trim() == "0";
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        if as_postgres {
            std::fs::create_dir(&data)?;
            output(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres")
                    .arg(dir.path()),
            )?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let handle = ClusterHandle {
            bin,
            data,
            port,
            as_postgres,
        };
        handle.run(
            "initdb",
            &[
                "-D",
                &handle.data.to_string_lossy(),
                "-U",
                "handoff",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        handle.start()?;
        Ok(Cluster { _dir: dir, handle })
    }

    fn url(&self) -> String {
        format!("postgres://handoff@127.0.0.1:{}/postgres", self.handle.port)
    }

    fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.handle.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

impl ClusterHandle {
    fn start(&self) -> Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='' -c fsync=on",
            self.port
        );
        self.pg_ctl(&["start", "-w", "-t", "30", "-o", &options])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec!["-D", &data, "-s"];
        if args.first() == Some(&"start") {
            all.extend(["-l", "/dev/null"]);
        }
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// Runs one of PostgreSQL's programs (as `postgres` if need be); its output on failure.
    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir("/");
        output(&mut command).map(|_| ())
    }
}

/// The folder of PostgreSQL's server programs: `pg_config --bindir`, else Debian's.
fn postgres_bin() -> Result<PathBuf> {
    if let Ok(dir) = output(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(dir.trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server programs (pg_config, /usr/lib/postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().context("no initdb under /usr/lib/postgresql")
}

/// Runs `command`, its stdout if it succeeded.
fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A phone sends a fix every 100 ms through `outage` (which begins after 1 s and ends after
/// 8 s) to a server on `store`; then the checks. `direct` reads the database without the
/// outage's path.
async fn phone_through(
    mut outage: Outage,
    db: Arc<TestDb>,
    store: handoff_store::postgres::PostgresStore,
    direct: Arc<dyn handoff_store::Store>,
) -> Result<()> {
    let clock = TestClock::new(at(-60));
    let mut s = Server::open_store(
        Arc::clone(&db),
        Arc::new(store),
        clock.clone(),
        handoff_server::serve::Limits::default(),
    )
    .await?;
    s.upload(EVENT, PLAN).await?;
    for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
        let token = s.device(device, carrier).await?;
        s.tokens.push(token);
    }
    s.tick_at(at(130)).await;

    // The runner's phone sends a fix every 100 ms, whether or not the previous one has been
    // answered, before, during and after a 7-second outage: longer than the 5 s a request
    // waits for a connection, so some must be refused.
    let p = plan();
    let fixes = walk(&p, RUN, at(121), planned_speed_mps(&p, RUN), 1, None);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()?;
    let (token, url) = (s.tokens[RUN].clone(), s.url("/api/v1/pings"));
    let mut phone = JoinSet::new();
    let start = Instant::now();
    let (mut cut_at, mut restored_at) = (None, None);
    for (index, f) in fixes.iter().enumerate().take(150) {
        let elapsed = start.elapsed();
        if cut_at.is_none() && elapsed >= Duration::from_secs(1) {
            outage.begin().await?;
            cut_at = Some(Instant::now());
        }
        if restored_at.is_none() && elapsed >= Duration::from_secs(8) {
            outage.end().await?;
            restored_at = Some(Instant::now());
        }
        // The phone's clock and the server's agree: each fix is sent as it is taken.
        clock.set(f.t);
        let (http, token, url, body) = (http.clone(), token.clone(), url.clone(), vec![f.json()]);
        phone.spawn(async move {
            let sent = Instant::now();
            let resp = http.post(&url).bearer_auth(&token).json(&body).send().await;
            let (status, retry_after) = match resp {
                Ok(r) => (Some(r.status()), r.headers().contains_key("retry-after")),
                Err(_) => (None, false),
            };
            Answer {
                sent,
                took: sent.elapsed(),
                status,
                retry_after,
                index,
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (cut_at, restored_at) = (
        cut_at.context("the outage never began")?,
        restored_at.context("the outage never ended")?,
    );
    let mut answers = phone.join_all().await;
    answers.sort_by_key(|a| a.index);

    // Every answer is an acknowledgement or a refusal to retry later, and none kept the phone
    // waiting much longer than a connection is waited for.
    for a in &answers {
        ensure!(
            a.status == Some(StatusCode::OK)
                || (a.status == Some(StatusCode::SERVICE_UNAVAILABLE) && a.retry_after),
            "fix {}: {:?} (Retry-After: {})",
            a.index,
            a.status,
            a.retry_after
        );
        ensure!(
            a.took < Duration::from_secs(8),
            "fix {} took {:?}",
            a.index,
            a.took
        );
    }
    ensure!(
        answers
            .iter()
            .filter(|a| a.sent < cut_at)
            .all(|a| a.status == Some(StatusCode::OK)),
        "a fix before the outage was refused"
    );
    let refused = answers
        .iter()
        .filter(|a| a.status == Some(StatusCode::SERVICE_UNAVAILABLE))
        .count();
    ensure!(refused > 0, "nothing was refused during a 7-second outage");
    // Back by itself: acknowledged again within seconds of the database's return.
    let back = answers
        .iter()
        .find(|a| a.sent > restored_at && a.status == Some(StatusCode::OK))
        .context("never acknowledged again after the database came back")?;
    ensure!(
        back.sent.duration_since(restored_at) < Duration::from_secs(5),
        "acknowledged again only {:?} after the database came back",
        back.sent.duration_since(restored_at)
    );

    eprintln!(
        "outage ({}): {} fixes sent, {} acknowledged, {refused} refused (503); acknowledged again {:?} after the database came back",
        outage.name(),
        answers.len(),
        answers.len() - refused,
        back.sent.duration_since(restored_at)
    );
    // Nothing acknowledged is lost: every fix answered 200 is stored (read straight from the
    // database, not through the proxy) ...
    let stored: std::collections::HashSet<String> = direct
        .pings_for_device(EVENT, DEVICES[RUN], None, None, 10_000)
        .await?
        .into_iter()
        .map(|p| p.ping.t.to_string())
        .collect();
    let acked: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == Some(StatusCode::OK))
        .collect();
    for a in &acked {
        let t = fixes[a.index].t.to_string();
        ensure!(
            stored.contains(&t),
            "fix {} at {t} was acknowledged but not stored",
            a.index
        );
    }
    // ... and the live state has the newest of them.
    let newest = acked
        .iter()
        .map(|a| a.index)
        .max()
        .context("acknowledged")?;
    let live: Value = s.live(true).await?;
    ensure!(
        live["relays"][0]["position"]["t"] == serde_json::json!(fixes[newest].t.to_string()),
        "the live position is not the newest acknowledged fix {}: {}",
        fixes[newest].t,
        live["relays"][0]["position"]
    );
    s.stop().await?;
    Ok(())
}
