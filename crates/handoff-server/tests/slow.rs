//! A server that survives slow and hostile clients: trickled headers and bodies and idle
//! connections are closed, one address cannot hold every connection (others are still served,
//! and the one over the limit gets a 503 with `Retry-After`), and wrong credentials and codes
//! are rate-limited (429 with `Retry-After`). Every client here is on loopback; the "attacker"
//! uses the source address 127.0.0.2 (Linux routes all of 127/8 to the loopback device).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use handoff_server::serve::Limits;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{ADMIN, EVENT, PLAN, Server, answer};

const ATTACKER: &str = "127.0.0.2";

fn limits() -> Limits {
    Limits {
        max_connections: 64,
        max_connections_per_ip: 8,
        header_timeout: Duration::from_secs(1),
        body_deadline: Duration::from_secs(1),
    }
}

/// A connection to the server from `source` (a loopback address).
async fn connect_from(s: &Server, source: &str) -> Result<TcpStream> {
    let server: SocketAddr = s.base.trim_start_matches("http://").parse()?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse()?, 0))?;
    Ok(socket.connect(server).await?)
}

/// Reads until the server closes the connection (or `within` passes): what it sent.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .context("the server kept the connection open")?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_slowloris_from_one_address_leaves_the_server_to_everyone_else() -> Result<()> {
    let s = Server::with_limits(limits()).await?;
    // The attacker fills its share with requests whose headers never end.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = connect_from(&s, ATTACKER).await?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await?;
        held.push(c);
    }
    // One more from the same address is shed at once, with a way to try again.
    let mut extra = connect_from(&s, ATTACKER).await?;
    let shed = until_closed(&mut extra, Duration::from_secs(2)).await?;
    ensure!(shed.starts_with("HTTP/1.1 503"), "{shed}");
    ensure!(
        shed.to_ascii_lowercase().contains("retry-after: 5"),
        "{shed}"
    );
    // Everyone else is served, promptly.
    let started = Instant::now();
    let (status, _) = answer(s.http.get(s.url("/healthz"))).await?;
    ensure!(status == StatusCode::OK, "{status}");
    ensure!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The trickling connections are closed once their header deadline passes, byte or not.
    for c in &mut held {
        c.write_all(b"a").await?;
    }
    let started = Instant::now();
    for c in &mut held {
        until_closed(c, Duration::from_secs(5)).await?;
    }
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // And the address may connect again.
    let mut again = connect_from(&s, ATTACKER).await?;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let reply = until_closed(&mut again, Duration::from_secs(2)).await?;
    ensure!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    Ok(())
}

#[tokio::test]
async fn idle_connections_and_trickled_bodies_are_closed() -> Result<()> {
    let s = Server::with_limits(limits()).await?;
    // A kept-alive connection that asks nothing more is closed after the header timeout.
    let mut idle = connect_from(&s, ATTACKER).await?;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let started = Instant::now();
    let got = until_closed(&mut idle, Duration::from_secs(5)).await?;
    ensure!(got.starts_with("HTTP/1.1 200"), "{got}");
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // A body that trickles in gets 408 when its deadline passes.
    let mut slow = connect_from(&s, ATTACKER).await?;
    slow.write_all(
        format!(
            "PUT /api/v1/events/{EVENT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/toml\r\nContent-Length: 100000\r\n\r\n#"
        )
        .as_bytes(),
    )
    .await?;
    let started = Instant::now();
    let mut reply = String::new();
    while started.elapsed() < Duration::from_secs(5) && reply.is_empty() {
        if slow.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await
        {
            reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    ensure!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_are_rate_limited_per_address() -> Result<()> {
    let s = Server::start().await?;
    s.upload(EVENT, PLAN).await?;
    let guess = |token: String| {
        answer(
            s.http
                .post(s.url(&format!("/api/v1/events/{EVENT}/devices")))
                .bearer_auth(token)
                .json(&json!({ "device": "d", "carrier": "Anne Hidalgo" })),
        )
    };
    let limit = handoff_server::limits::AUTH_FAILURES_PER_MINUTE;
    for i in 0..limit {
        let (status, body) = guess(format!("guess-{i}")).await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "{i}: {status} {body}");
    }
    // The next guess is refused before it is checked, with how long to wait.
    let resp = s
        .http
        .post(s.url(&format!("/api/v1/events/{EVENT}/devices")))
        .bearer_auth("guess-next")
        .json(&json!({ "device": "d", "carrier": "Anne Hidalgo" }))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::TOO_MANY_REQUESTS,
        "{}",
        resp.status()
    );
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=60).contains(&wait), "{wait}");
    // Even the right token from this address waits (it may be the attacker's next guess)…
    let (status, _) = guess(ADMIN.to_string()).await?;
    ensure!(status == StatusCode::TOO_MANY_REQUESTS, "{status}");
    // …but spectators, who send no credentials, are never refused.
    let (status, _) = answer(s.http.get(s.url(&format!("/api/v1/events/{EVENT}/live")))).await?;
    ensure!(status == StatusCode::OK, "{status}");
    Ok(())
}

#[tokio::test]
async fn every_answer_carries_a_request_id() -> Result<()> {
    let s = Server::start().await?;
    let resp = s.http.get(s.url("/healthz")).send().await?;
    let id = resp
        .headers()
        .get("x-request-id")
        .context("x-request-id")?
        .to_str()?;
    ensure!(id.len() >= 32, "{id}");
    // A client's own id is kept (so a phone's log and the server's can be matched).
    let resp = s
        .http
        .get(s.url("/nowhere"))
        .header("x-request-id", "phone-42")
        .send()
        .await?;
    ensure!(
        resp.headers()
            .get("x-request-id")
            .is_some_and(|v| v == "phone-42")
    );
    Ok(())
}

#[tokio::test]
async fn one_device_cannot_flood_the_ingest() -> Result<()> {
    let s = Server::with_relay().await?;
    let limit = handoff_server::limits::INGEST_PER_MINUTE;
    let token = s.tokens[crate::common::RUN].clone();
    // Heartbeats (no position): answered 200 and stored nothing, but they count.
    let query = format!("id={token}&timestamp={}&batt=80", crate::common::T0_S);
    let mut statuses = Vec::new();
    for chunk in (0..=limit).collect::<Vec<_>>().chunks(32) {
        let answers =
            futures_util::future::join_all(chunk.iter().map(|_| s.osmand_get(&query))).await;
        for a in answers {
            statuses.push(a?.0);
        }
    }
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    ensure!(
        ok == usize::try_from(limit)? && limited == 1,
        "{ok} answered, {limited} limited"
    );
    // Another device is not affected.
    let other = s.tokens[crate::common::BIKE].clone();
    let (status, body) = s
        .osmand_get(&format!(
            "id={other}&timestamp={}&batt=80",
            crate::common::T0_S
        ))
        .await?;
    ensure!(status.is_success(), "{status} {body}");
    Ok(())
}
