//! A node survives its database (PostgreSQL only; skipped with a line otherwise): the server's
//! connections go through a TCP proxy the test cuts, as a PostgreSQL restart does (every
//! connection dropped, new ones refused for a while), while phones keep sending. Every answer
//! during the outage is a 503 with `Retry-After`, never a 2xx for what was not stored; the
//! server reconnects by itself when the database is back; and every ping it acknowledged is
//! stored and in the live state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
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
    let mut proxy = Proxy::to((options.get_host().to_owned(), options.get_port())).await?;
    let store = handoff_store::postgres::PostgresStore::connect_sized(
        options.clone().host("127.0.0.1").port(proxy.port),
        handoff_store::postgres::testing::TEST_POOL,
    )
    .await?;
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
            proxy.cut().await;
            cut_at = Some(Instant::now());
        }
        if restored_at.is_none() && elapsed >= Duration::from_secs(8) {
            proxy.restore().await?;
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
        "outage: {} fixes sent, {} acknowledged, {refused} refused (503); acknowledged again {:?} after the database came back",
        answers.len(),
        answers.len() - refused,
        back.sent.duration_since(restored_at)
    );
    // Nothing acknowledged is lost: every fix answered 200 is stored (read straight from the
    // database, not through the proxy) ...
    let direct = db.store().await?;
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
