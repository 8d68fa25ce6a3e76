//! Helpers shared by the binary's integration tests: a tiny HTTP/1.1 client over std (so the
//! tests need no async runtime), talking to a `handoff` process on 127.0.0.1.

#![allow(dead_code)]

use serde_json::Value;

/// One request; returns the status and the body (chunked bodies decoded).
pub fn curl(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    // A tiny HTTP client over std: keeps this test free of an async runtime.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let ct = if serde_json::from_str::<Value>(body).is_ok() {
        "application/json"
    } else {
        "application/toml"
    };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let (head, raw) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(raw)
    } else {
        raw.to_string()
    };
    (status, text)
}

pub fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        raw = &rest[n + 2..];
    }
    out
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Kills a child process when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one line of what `handoff demo` prints into where it serves: its base URL (the line
/// "live page …/e/…") and its admin token (the line "admin token …").
pub fn demo_address(line: &str, base: &mut String, admin: &mut String) {
    let line = line.trim();
    if let Some(url) = line.strip_prefix("live page") {
        *base = url
            .trim()
            .split("/e/")
            .next()
            .unwrap_or_default()
            .to_string();
    }
    if let Some(t) = line.strip_prefix("admin token") {
        *admin = t.trim().to_string();
    }
}

/// The stored pings of an event (its admin export `pings.csv`): (device, time) of each.
pub fn stored_pings(base: &str, event: &str, admin: &str) -> Vec<(String, jiff::Timestamp)> {
    let (status, csv) = curl(
        "GET",
        &format!("{base}/api/v1/events/{event}/pings.csv"),
        Some(admin),
        None,
    );
    assert_eq!(status, 200, "{csv}");
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).expect(name);
    let (device, t) = (col("device"), col("t"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[device].to_owned(), f[t].parse().expect("a time"))
        })
        .collect()
}
