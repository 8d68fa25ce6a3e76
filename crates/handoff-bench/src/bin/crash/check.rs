//! The checks: every acknowledged ping and custody entry is stored (over HTTP after each
//! restart, and in the database file after the final clean stop), nothing is half-stored (a
//! ping row that does not parse, an entry that is not one, a batch or an event-wide shift
//! stored in part), every custody log verifies, and the live state equals a fresh replay.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use handoff_core::custody::{Entry, verify};
use reqwest::Client;
use serde_json::Value;

use crate::clients::Ledger;

/// What one check looked at, and what it found wrong.
#[derive(Debug, Default)]
pub struct Found {
    pub pings_checked: usize,
    pub entries_checked: usize,
    /// Acknowledged and not stored (or stored with other values).
    pub lost: Vec<String>,
    /// Stored in part, or stored and unreadable.
    pub half_stored: Vec<String>,
    /// Custody logs that fail verification, and other broken promises.
    pub broken: Vec<String>,
}

impl Found {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.half_stored.is_empty() && self.broken.is_empty()
    }

    pub fn problems(&self) -> impl Iterator<Item = String> + '_ {
        let tag = |what: &'static str| move |p: &String| format!("{what}: {p}");
        self.lost
            .iter()
            .map(tag("LOST"))
            .chain(self.half_stored.iter().map(tag("HALF-STORED")))
            .chain(self.broken.iter().map(tag("BROKEN")))
    }
}

type Pings = HashMap<(String, i64), (f64, f64)>;

fn check_pings(ledger: &Ledger, stored: &Pings, found: &mut Found) {
    for p in ledger.acked_pings() {
        found.pings_checked += 1;
        match stored.get(&(p.device.clone(), p.t_s)) {
            None => found.lost.push(format!(
                "ping {} at {} ({}, {})",
                p.device, p.t_s, p.lon, p.lat
            )),
            Some(&(lon, lat)) if (lon - p.lon).abs() > 1e-6 || (lat - p.lat).abs() > 1e-6 => {
                found.lost.push(format!(
                    "ping {} at {} stored at ({lon}, {lat}), sent at ({}, {})",
                    p.device, p.t_s, p.lon, p.lat
                ));
            }
            Some(_) => {}
        }
    }
}

/// Checks a relay's log (verification, parse) and returns its entries.
fn check_log(relay: &str, ndjson: &str, found: &mut Found) -> Vec<Entry> {
    if let Err(e) = verify(ndjson) {
        found.broken.push(format!("custody log of {relay}: {e}"));
    }
    let mut entries = Vec::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => found.half_stored.push(format!(
                "custody entry of {relay} is not an entry ({e}): {line}"
            )),
        }
    }
    entries
}

fn check_entries(ledger: &Ledger, logs: &HashMap<String, Vec<Entry>>, found: &mut Found) {
    let stored: HashSet<(&str, &str)> = logs
        .iter()
        .flat_map(|(r, es)| es.iter().map(move |e| (r.as_str(), e.hash.as_str())))
        .collect();
    for e in ledger.acked_entries() {
        found.entries_checked += 1;
        if !stored.contains(&(e.relay.as_str(), e.hash.as_str())) {
            found
                .lost
                .push(format!("custody entry {} of {}", e.hash, e.relay));
        }
    }
}

/// Over HTTP, on the running server: `pings.csv` (admin) and every relay's custody log.
/// Only what was acknowledged before the check began is required to be there.
pub async fn over_http(
    client: &Client,
    base: &str,
    admin: &str,
    event: &str,
    relays: &[String],
    ledger: &Ledger,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    // What the clients hold now; anything acknowledged later may or may not be in what follows.
    let snapshot = Ledger::default();
    *snapshot.pings.lock().expect("fresh") = ledger.acked_pings();
    *snapshot.entries.lock().expect("fresh") = ledger.acked_entries();

    // The whole history, on a debug build that may share the machine: allowed far longer than
    // the clients' requests (a check that times out says nothing about durability).
    let csv = client
        .get(format!("{base}/api/v1/events/{event}/pings.csv"))
        .bearer_auth(admin)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut stored = Pings::new();
    for row in csv.lines().skip(1) {
        // device,carrier,t,lon,lat,acc_m,speed_mps,heading_deg,alt_m,batt_pct,received_at
        let f: Vec<&str> = row.split(',').collect();
        let parsed = (f.len() == 11)
            .then(|| {
                Some((
                    f[0].to_owned(),
                    f[2].parse::<jiff::Timestamp>().ok()?.as_second(),
                    f[3].parse::<f64>().ok()?,
                    f[4].parse::<f64>().ok()?,
                ))
            })
            .flatten();
        match parsed {
            Some((device, t, lon, lat)) => {
                stored.insert((device, t), (lon, lat));
            }
            None => found.half_stored.push(format!("ping row `{row}`")),
        }
    }
    check_pings(&snapshot, &stored, &mut found);

    let mut logs = HashMap::new();
    for relay in relays {
        let ndjson = client
            .get(format!(
                "{base}/api/v1/events/{event}/relays/{relay}/custody"
            ))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        logs.insert(relay.clone(), check_log(relay, &ndjson, &mut found));
    }
    check_entries(&snapshot, &logs, &mut found);
    Ok(found)
}

/// In the database file after the final clean stop, read-only: the WAL was checkpointed,
/// SQLite's integrity check, every log, every acknowledged ping and entry, and every batch
/// and event-wide shift that went unanswered is there whole or not at all.
pub fn in_file(
    db: &Path,
    event: &str,
    relays: &[String],
    ledger: &Ledger,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    if wal_len > 0 {
        found.broken.push(format!(
            "after a clean stop the WAL still holds {wal_len} bytes (not checkpointed)"
        ));
    }
    let contents = handoff_store::sqlite::backup::inspect(db)?;
    if !contents.is_sound() {
        found.broken.push(format!(
            "integrity_check: {}",
            contents.integrity.join("; ")
        ));
    }
    let mut logs = HashMap::new();
    for log in contents.logs.iter().filter(|l| l.event_id == event) {
        logs.insert(
            log.relay_id.clone(),
            check_log(&log.relay_id, &log.ndjson, &mut found),
        );
    }
    for relay in relays {
        if !logs.contains_key(relay) {
            found.broken.push(format!("no custody log for {relay}"));
        }
    }
    check_entries(ledger, &logs, &mut found);

    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", db.display()))?;
    let mut stored = Pings::new();
    let mut stmt =
        conn.prepare("SELECT device_id, t_us, lon, lat FROM pings WHERE event_id = ?1")?;
    let mut rows = stmt.query([event])?;
    while let Some(row) = rows.next()? {
        let t_us: i64 = row.get(1)?;
        stored.insert(
            (row.get(0)?, t_us.div_euclid(1_000_000)),
            (row.get(2)?, row.get(3)?),
        );
    }
    let odd: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pings WHERE NOT (lon BETWEEN -180 AND 180) OR NOT (lat BETWEEN -90 AND 90)
            OR device_id = '' OR received_us <= 0",
        [],
        |r| r.get(0),
    )?;
    if odd > 0 {
        found
            .half_stored
            .push(format!("{odd} ping rows with impossible fields"));
    }
    check_pings(ledger, &stored, &mut found);

    for batch in ledger.unanswered_batches.lock().expect("ledger").iter() {
        let present = batch
            .iter()
            .filter(|(d, t)| stored.contains_key(&(d.clone(), *t)))
            .count();
        if present != 0 && present != batch.len() {
            found.half_stored.push(format!(
                "an unanswered batch of {} pings of {} is stored in part ({present})",
                batch.len(),
                batch[0].0
            ));
        }
    }
    for note in ledger.unanswered_shifts.lock().expect("ledger").iter() {
        let is_it = |e: &Entry| e.note.as_deref() == Some(note.as_str());
        let with = logs.values().filter(|es| es.iter().any(is_it)).count();
        if with == 0 {
            continue;
        }
        // The server shifts every relay that has not finished, in one transaction: the relays
        // it had to shift are those not finished when it was recorded (all of its entries carry
        // the same recorded_at).
        let Some(when) = logs
            .values()
            .flatten()
            .find(|e| is_it(e))
            .map(|e| e.recorded_at)
        else {
            continue;
        };
        let running = logs
            .values()
            .filter(|es| {
                let before: Vec<Entry> = es
                    .iter()
                    .filter(|e| e.recorded_at < when)
                    .cloned()
                    .collect();
                handoff_core::custody::Custody::from_entries(crate::LEGS.len(), &before).current
                    < crate::LEGS.len()
            })
            .count();
        if with != running {
            found.half_stored.push(format!(
                "the unanswered event-wide shift `{note}` is in {with} of the {running} logs of relays still running (of {})",
                relays.len()
            ));
        }
    }
    for m in ledger.replay_mismatches.lock().expect("ledger").iter() {
        found
            .broken
            .push(format!("an Idempotency-Key replay got another entry: {m}"));
    }
    Ok(found)
}

/// The admin `/live` without what moves with the clock alone, and the `now` it was built at.
pub async fn live(
    client: &Client,
    base: &str,
    admin: &str,
    event: &str,
) -> anyhow::Result<(Value, jiff::Timestamp)> {
    let mut v: Value = client
        .get(format!("{base}/api/v1/events/{event}/live"))
        .bearer_auth(admin)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let now = v["now"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .context("/live has no `now`")?;
    strip_clock(&mut v);
    Ok((v, now))
}

fn strip_clock(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in ["now", "age_s", "remaining_s"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_clock);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_clock),
        _ => {}
    }
}

/// The first place where two JSON values differ, as a path and the two values. `clock_ns` is
/// how much later the first document was built than the second: an instant that differs by
/// exactly that much is the clock, not the state (an overdue leg's ETA is "now").
pub fn first_difference(a: &Value, b: &Value, path: &str, clock_ns: i128) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(l, r, &format!("{path}.{k}"), clock_ns)
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"), clock_ns)),
        _ if a == b => None,
        (Value::String(x), Value::String(y))
            if x.parse::<jiff::Timestamp>()
                .ok()
                .zip(y.parse::<jiff::Timestamp>().ok())
                .is_some_and(|(x, y)| x.as_nanosecond() - y.as_nanosecond() == clock_ns) =>
        {
            None
        }
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}
