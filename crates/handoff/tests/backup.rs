//! Backups, against the real binary: after a clean stop the `.db` file alone holds everything
//! (the WAL was checkpointed).

mod common;

use common::{KillOnDrop, curl, json_of};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const ADMIN: &str = "test-admin-token-for-backups-1";

/// A `handoff serve` on 127.0.0.1:0 over `db`, and its base URL.
fn serve(db: &Path) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .env("HANDOFF_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next().expect("a line").expect("text");
    assert!(line.starts_with("handoff serving on"), "{line}");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    // The rest of its output goes nowhere, but must be read so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), base)
}

/// Stops a server as systemd does (SIGTERM) and waits for it: it must exit 0.
fn stop(mut server: KillOnDrop) {
    let pid = server.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let status = server.0.wait().expect("wait");
    assert!(status.success(), "serve exited with {status}");
}

/// A plan with one relay of three legs that started a minute ago.
fn plan(event: &str) -> String {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1);
    format!(
        "[event]\nid = \"{event}\"\nname = \"{event}\"\n\
         [[relays]]\nid = \"r\"\nobject = \"baton\"\n\
         [[relays.legs]]\ncarriers = [\"Ann\"]\nmode = \"run\"\nstart = \"{start}\"\nduration = \"10m\"\n\
         route = {{ points = [[2.35, 48.85], [2.36, 48.85]] }}\n\
         [[relays.legs]]\ncarriers = [\"Bea\"]\nmode = \"run\"\nduration = \"10m\"\n\
         route = {{ points = [[2.36, 48.85], [2.37, 48.85]] }}\n\
         [[relays.legs]]\ncarriers = [\"Cy\"]\nmode = \"run\"\nduration = \"10m\"\n\
         route = {{ points = [[2.37, 48.85], [2.38, 48.85]] }}\n"
    )
}

/// Uploads the plan of `event` and registers Ann's phone; returns its token.
fn set_up(base: &str, event: &str) -> String {
    let (st, body) = curl(
        "PUT",
        &format!("{base}/api/v1/events/{event}"),
        Some(ADMIN),
        Some(&plan(event)),
    );
    assert_eq!(st, 200, "{body}");
    let (st, body) = curl(
        "POST",
        &format!("{base}/api/v1/events/{event}/devices"),
        Some(ADMIN),
        Some(r#"{"device":"ann-phone","carrier":"Ann"}"#),
    );
    assert_eq!(st, 201, "{body}");
    json_of(&body)["token"].as_str().expect("token").to_string()
}

/// Sends pings `from..to` of Ann's phone in one batch (ping i at `t0 + i` seconds, along the
/// first leg); asserts they were all accepted.
fn send_pings(base: &str, token: &str, t0: i64, from: usize, to: usize) {
    let pings: Vec<Value> = (from..to)
        .map(|i| {
            let t =
                jiff::Timestamp::from_second(t0 + i64::try_from(i).expect("small")).expect("time");
            serde_json::json!({"t": t.to_string(), "lon": 2.35 + 0.000_01 * i as f64, "lat": 48.85})
        })
        .collect();
    let (st, body) = curl(
        "POST",
        &format!("{base}/api/v1/pings"),
        Some(token),
        Some(&Value::Array(pings).to_string()),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(json_of(&body)["accepted"], to - from, "{body}");
}

/// Records an operator handoff from `from_leg`; returns the entry's hash.
fn hand_off(base: &str, event: &str, from_leg: usize) -> String {
    let (st, body) = curl(
        "POST",
        &format!("{base}/api/v1/events/{event}/relays/r/handoffs"),
        Some(ADMIN),
        Some(&format!(r#"{{"from_leg":{from_leg}}}"#)),
    );
    assert_eq!(st, 201, "{body}");
    json_of(&body)["hash"].as_str().expect("hash").to_string()
}

fn custody(base: &str, event: &str) -> String {
    let (st, body) = curl(
        "GET",
        &format!("{base}/api/v1/events/{event}/relays/r/custody"),
        None,
        None,
    );
    assert_eq!(st, 200, "{body}");
    body
}

/// The admin `/live` of an event without what moves with the clock alone (the time of the
/// answer, ages, countdowns).
fn live(base: &str, event: &str) -> Value {
    let (st, body) = curl(
        "GET",
        &format!("{base}/api/v1/events/{event}/live"),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 200, "{body}");
    let mut v = json_of(&body);
    strip_clock(&mut v);
    v
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

#[test]
fn after_a_clean_stop_the_db_file_alone_holds_every_ping_and_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let (server, base) = serve(&db);
    let token = set_up(&base, "clean");
    let t0 = jiff::Timestamp::now().as_second() - 60;
    for batch in 0..5 {
        send_pings(&base, &token, t0, batch * 10, batch * 10 + 10);
    }
    let handoffs = [hand_off(&base, "clean", 0), hand_off(&base, "clean", 1)];
    stop(server);

    // The .db file alone, as a careless backup would copy it: no -wal, no -shm beside it.
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(&db, &copy).expect("copy");
    let conn =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the copy");
    let pings: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pings WHERE event_id = 'clean'",
            [],
            |r| r.get(0),
        )
        .expect("pings");
    assert_eq!(pings, 50);
    let hashes: Vec<String> = conn
        .prepare("SELECT hash FROM custody WHERE event_id = 'clean' ORDER BY seq")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("hashes");
    assert_eq!(hashes.len(), 3, "genesis and two handoffs: {hashes:?}");
    assert_eq!(hashes[1..], handoffs);
}

