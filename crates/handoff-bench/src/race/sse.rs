//! The spectator: one `GET …/stream` subscriber that reads every SSE message for the whole race
//! and measures, for each `position` message, how long after its ping was sent it arrived
//! (ping-to-SSE lag). The phones note when each holder's ping left (keyed by team and device
//! time, which is unique within a team); a message whose key is noted is matched once, and a
//! later message with the same key (a replay re-announcing the newest position) counts as a
//! repeat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::Client;
use tokio::sync::watch;

use super::Clock;

/// When each holder's ping was sent: (team index, device time in Unix ms) → instant.
#[derive(Default)]
pub struct Sent(Mutex<HashMap<(u32, i64), Instant>>);

impl Sent {
    pub fn note(&self, team: u32, t_ms: i64, at: Instant) {
        lock(&self.0).insert((team, t_ms), at);
    }

    fn take(&self, team: u32, t_ms: i64) -> Option<Instant> {
        lock(&self.0).remove(&(team, t_ms))
    }

    /// Forgets pings sent before `before` (no message will come for them now: a late ping
    /// older than its holder's newest is folded in without one); returns how many.
    pub fn forget_older(&self, before: Instant) -> u64 {
        let mut m = lock(&self.0);
        let n = m.len();
        m.retain(|_, at| *at >= before);
        (n - m.len()) as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Seen {
    /// Lag in microseconds, per clock bucket of arrival (see [`Clock::bucket`]).
    pub lag_us: Vec<Histogram<u64>>,
    pub positions: u64,
    pub matched: u64,
    /// Position messages for a ping already matched (or one not noted).
    pub repeats: u64,
    /// Messages by SSE event name.
    pub by_event: HashMap<String, u64>,
    /// Size of the `snapshot` that opened the stream.
    pub first_snapshot_bytes: usize,
    /// `snapshot`s after the first: the server found this subscriber lagging.
    pub later_snapshots: u64,
    pub bytes: u64,
    pub error: Option<String>,
}

impl Seen {
    /// Nothing seen yet (or no spectator at all).
    pub fn empty(clock: Clock) -> Self {
        Self {
            lag_us: (0..clock.buckets()).map(|_| histogram()).collect(),
            positions: 0,
            matched: 0,
            repeats: 0,
            by_event: HashMap::new(),
            first_snapshot_bytes: 0,
            later_snapshots: 0,
            bytes: 0,
            error: None,
        }
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Opens the stream (the answer's head; the body is read by [`read`]).
pub async fn connect(client: &Client, url: &str) -> anyhow::Result<reqwest::Response> {
    let r = client
        .get(url)
        .header("accept", "text/event-stream")
        .timeout(Duration::from_secs(24 * 3600))
        .send()
        .await?;
    if !r.status().is_success() {
        anyhow::bail!("GET {url}: {}", r.status());
    }
    Ok(r)
}

/// Reads the stream until `stop` turns true (or the server ends it).
pub async fn read(
    mut response: reqwest::Response,
    sent: std::sync::Arc<Sent>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::empty(clock);
    let mut buf: Vec<u8> = Vec::new();
    // Where to resume looking for the blank line that ends a message.
    let mut scanned = 0;
    loop {
        let chunk = tokio::select! {
            c = response.chunk() => c,
            _ = stop.wait_for(|s| *s) => break,
        };
        let chunk = match chunk {
            Ok(Some(c)) => c,
            Ok(None) => {
                seen.error = Some("the server ended the stream".into());
                break;
            }
            Err(e) => {
                seen.error = Some(format!("reading the stream: {e}"));
                break;
            }
        };
        let arrived = Instant::now();
        seen.bytes += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = find_blank_line(&buf[scanned.max(consumed)..]) {
            let end = scanned.max(consumed) + end;
            handle(&buf[consumed..end], arrived, &sent, clock, &mut seen);
            consumed = end + 2;
            scanned = consumed;
        }
        buf.drain(..consumed);
        scanned = buf.len().saturating_sub(1);
    }
    seen
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\n\n")
}

/// One SSE message (`event:` and `data:` lines; comments are keep-alives). Only a
/// `position` message's data is decoded: a `snapshot` can be megabytes.
fn handle(block: &[u8], arrived: Instant, sent: &Sent, clock: Clock, seen: &mut Seen) {
    let mut event: &[u8] = b"message";
    let mut data: Option<&[u8]> = None;
    let mut data_bytes = 0;
    for line in block.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"event:") {
            event = v.trim_ascii();
        } else if let Some(v) = line.strip_prefix(b"data:") {
            data_bytes += v.len();
            data.get_or_insert(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    if data.is_none() && event == b"message" {
        return; // a keep-alive comment
    }
    let name = String::from_utf8_lossy(event).into_owned();
    *seen.by_event.entry(name).or_default() += 1;
    match event {
        b"snapshot" if seen.first_snapshot_bytes == 0 => seen.first_snapshot_bytes = data_bytes,
        b"snapshot" => seen.later_snapshots += 1,
        b"position" => {
            seen.positions += 1;
            let Some((team, t_ms)) = data.and_then(position_key) else {
                seen.repeats += 1;
                return;
            };
            match sent.take(team, t_ms) {
                Some(at) => {
                    seen.matched += 1;
                    let us = u64::try_from(arrived.duration_since(at).as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    seen.lag_us[clock.bucket(arrived)].saturating_record(us);
                }
                None => seen.repeats += 1,
            }
        }
        _ => {}
    }
}

/// (team index, device time in ms) of a `position` message: `relay` is `team-NNNN`.
fn position_key(data: &[u8]) -> Option<(u32, i64)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let relay = v["relay"].as_str()?;
    let n: u32 = relay.strip_prefix("team-")?.parse().ok()?;
    let t: jiff::Timestamp = v["t"].as_str()?.parse().ok()?;
    Some((n.checked_sub(1)?, t.as_millisecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_message_names_its_team_and_ping() {
        let data = r#"{"type":"position","relay":"team-0417","leg":3,"t":"2026-12-01T16:00:05.250Z","lon":-121.9,"lat":45.3,"along_m":10.0,"fraction":0.1}"#;
        let (team, t) = position_key(data.as_bytes()).expect("a key");
        assert_eq!(team, 416);
        assert_eq!(t, 1_796_140_805_250);
    }

    #[test]
    fn messages_are_matched_once_and_keep_alives_ignored() {
        let sent = Sent::default();
        let start = Instant::now();
        let clock = Clock::for_tests(start);
        sent.note(416, 1_796_140_805_250, start);
        let mut seen = Seen::empty(clock);
        let msg =
            b"event: position\ndata: {\"relay\":\"team-0417\",\"t\":\"2026-12-01T16:00:05.250Z\"}";
        handle(msg, start, &sent, clock, &mut seen);
        handle(msg, start, &sent, clock, &mut seen);
        handle(b":", start, &sent, clock, &mut seen);
        assert_eq!((seen.positions, seen.matched, seen.repeats), (2, 1, 1));
        assert_eq!(seen.by_event.len(), 1);
    }

    #[test]
    fn blank_lines_end_messages() {
        assert_eq!(find_blank_line(b"event: a\ndata: 1\n\nevent"), Some(16));
        assert_eq!(find_blank_line(b"event: a\ndata: 1\n"), None);
    }
}
