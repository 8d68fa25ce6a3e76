//! The accept loop: HTTP/1.1 connections with a header deadline (which is also the idle
//! timeout between requests of a kept-alive connection), a limit on open connections in all and
//! per client address, and load shedding: a connection over a limit gets a `503` with
//! `Retry-After` and is closed, before it can hold memory. A request body must arrive in whole
//! within [`Limits::body_deadline`] (checked where bodies are read: `api::events::read_body`).
//!
//! Phones and browsers speak HTTP/1.1 to handoff (there is no TLS here: a proxy in front
//! terminates it), so HTTP/2 is not served.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

tokio::task_local! {
    /// The body deadline of the connection whose task reads a body.
    static BODY_DEADLINE: Duration;
}

/// How long a whole request body may take to arrive, on the current connection.
#[must_use]
pub fn body_deadline() -> Duration {
    BODY_DEADLINE
        .try_with(|d| *d)
        .unwrap_or(Limits::default().body_deadline)
}

/// What one server accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections in all (streams included).
    pub max_connections: usize,
    /// Open connections from one client address (0: no limit; behind a proxy every client
    /// has the proxy's address).
    pub max_connections_per_ip: usize,
    /// A request's headers must arrive within this; a kept-alive connection with no new
    /// request for this long is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive in whole within this (else 408).
    pub body_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_deadline: Duration::from_secs(30),
        }
    }
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A counted connection; uncounted when dropped.
struct Counted {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut o = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts a new connection from `ip`, or says which limit it is over.
fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &Limits) -> Result<Counted, &'static str> {
    let mut o = open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if o.total >= limits.max_connections {
        return Err("the server is at its connection limit");
    }
    let from_ip = o.by_ip.get(&ip).copied().unwrap_or(0);
    if limits.max_connections_per_ip > 0 && from_ip >= limits.max_connections_per_ip {
        return Err("too many connections from your address");
    }
    o.total += 1;
    *o.by_ip.entry(ip).or_default() += 1;
    Ok(Counted {
        open: Arc::clone(open),
        ip,
    })
}

/// Answers a connection over a limit and closes it (within a second, whatever the client
/// does).
async fn shed(mut stream: TcpStream, why: &'static str) {
    let body = format!(
        "{{\"error\":{{\"code\":\"overloaded\",\"message\":\"{why}; try again in a few seconds\"}}}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish (at
/// most `grace`; streams end by themselves when the server's `closing` flag is raised).
///
/// # Errors
/// None so far: accept errors (out of file descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Headers only: bodies stream through (at most 1 MiB, read by the handlers).
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let counted = match admit(&open, peer.ip(), &limits) {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(peer = %peer.ip(), why, "connection shed");
                tokio::spawn(shed(stream, why));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        let deadline = limits.body_deadline;
        tokio::spawn(async move {
            let _counted = counted;
            if let Err(e) = BODY_DEADLINE.scope(deadline, conn).await {
                tracing::debug!(peer = %peer.ip(), error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still open after {grace:?}, closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_in_all_and_per_address() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            header_timeout: Duration::from_secs(1),
            body_deadline: Duration::from_secs(1),
        };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(&open, a, &limits).unwrap();
        let _a2 = admit(&open, a, &limits).unwrap();
        assert!(
            admit(&open, a, &limits).is_err(),
            "a third from one address"
        );
        let _b1 = admit(&open, b, &limits).unwrap();
        assert!(admit(&open, b, &limits).is_err(), "a fourth in all");
        drop(a1);
        assert!(
            admit(&open, a, &limits).is_ok(),
            "room again once one closed"
        );
    }
}
