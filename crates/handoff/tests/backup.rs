//! Backups, against the real binary: after a clean stop the `.db` file alone holds everything
//! (the WAL was checkpointed), and `handoff backup` taken while pings and custody entries keep
//! arriving restores, on a fresh `handoff serve`, everything that was acknowledged before it.

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

#[test]
fn a_backup_during_ingest_restores_everything_acknowledged_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let (server, base) = serve(&db);

    // A quiet event: pings, two handoffs, a correction and a shift, then nothing more.
    let quiet = set_up(&base, "quiet");
    send_pings(
        &base,
        &quiet,
        jiff::Timestamp::now().as_second() - 60,
        0,
        30,
    );
    hand_off(&base, "quiet", 0);
    let late = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(20);
    let (st, body) = curl(
        "POST",
        &format!("{base}/api/v1/events/quiet/relays/r/handoffs"),
        Some(ADMIN),
        Some(&format!(
            r#"{{"kind":"correction","corrects":1,"at":"{late}","note":"marked late"}}"#
        )),
    );
    assert_eq!(st, 201, "{body}");
    let (st, body) = curl(
        "POST",
        &format!("{base}/api/v1/events/quiet/shift"),
        Some(ADMIN),
        Some(r#"{"minutes":5}"#),
    );
    assert_eq!(st, 200, "{body}");
    let quiet_live = live(&base, "quiet");
    let quiet_log = custody(&base, "quiet");

    // A busy event: pings and shifts keep arriving while the backup runs.
    let busy = set_up(&base, "busy");
    let acked_pings = Arc::new(AtomicUsize::new(0));
    let acked_shifts = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (base, acked_pings, acked_shifts, done) = (
            base.clone(),
            Arc::clone(&acked_pings),
            Arc::clone(&acked_shifts),
            Arc::clone(&done),
        );
        std::thread::spawn(move || {
            // An hour back, so that however long this runs no ping is in the future.
            let t0 = jiff::Timestamp::now().as_second() - 3600;
            let mut n = 0;
            while !done.load(Ordering::SeqCst) || n < 50 {
                send_pings(&base, &busy, t0, n, n + 5);
                n += 5;
                acked_pings.store(n, Ordering::SeqCst);
                if n % 25 == 0 {
                    let (st, body) = curl(
                        "POST",
                        &format!("{base}/api/v1/events/busy/shift"),
                        Some(ADMIN),
                        Some(r#"{"minutes":1}"#),
                    );
                    assert_eq!(st, 200, "{body}");
                    let hash = json_of(&body)["entries"][0]["hash"]
                        .as_str()
                        .expect("hash")
                        .to_string();
                    acked_shifts.lock().expect("lock").push(hash);
                }
                // Under the per-device ingest limit (20 requests a second).
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        })
    };
    // Wait until ingest is under way.
    while acked_pings.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let out = dir.path().join("backup.db");
    let pings_before = acked_pings.load(Ordering::SeqCst);
    let shifts_before = acked_shifts.lock().expect("lock").clone();
    let backup = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["backup", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .arg(&out)
        .output()
        .expect("backup");
    let said = String::from_utf8_lossy(&backup.stdout);
    assert!(
        backup.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(said.contains("integrity ok; 2 events,"), "{said}");
    assert!(said.contains("in 2 logs, every log verified"), "{said}");
    done.store(true, Ordering::SeqCst);
    ingest.join().expect("ingest");
    let pings_sent = acked_pings.load(Ordering::SeqCst);
    stop(server);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("backup.db"))
            .count(),
        1,
        "the backup is one file"
    );

    // Restore: a server on the copy.
    let (restored, base) = serve(&out);
    assert_eq!(live(&base, "quiet"), quiet_live);
    assert_eq!(custody(&base, "quiet"), quiet_log);
    let (st, csv) = curl(
        "GET",
        &format!("{base}/api/v1/events/busy/pings.csv"),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 200, "{csv}");
    let restored_pings = csv.lines().count() - 1;
    assert!(
        (pings_before..=pings_sent + 5).contains(&restored_pings),
        "{restored_pings} pings restored; {pings_before} were acknowledged before the backup, {pings_sent} by the end"
    );
    let busy_log = custody(&base, "busy");
    for hash in &shifts_before {
        assert!(busy_log.contains(hash.as_str()), "shift {hash} was lost");
    }
    assert!(
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args([
                "log", "verify", "--server", &base, "--event", "busy", "--relay", "r"
            ])
            .stdout(Stdio::null())
            .status()
            .expect("verify")
            .success()
    );
    stop(restored);
}

#[test]
fn a_backup_never_overwrites_and_names_a_missing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("backup")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("backup");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--db", "sqlite://nope.db", "out.db"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "error: there is no database at nope.db: give the file `handoff serve --db` uses\n"
    );
    std::fs::write(dir.path().join("taken.db"), "precious").expect("write");
    let (server, _) = serve(&dir.path().join("h.db"));
    stop(server);
    let (code, err) = run(&["--db", "sqlite://h.db", "taken.db"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("taken.db already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken.db")).expect("read"),
        "precious"
    );
}

#[test]
fn a_postgres_database_is_pointed_to_pg_dump() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "backup",
            "--db",
            "postgres://handoff:s3cret-pw@127.0.0.1/handoff",
        ])
        .arg(out_dir.path().join("copy.db"))
        .output()
        .expect("backup");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg_dump") && err.contains("docs/operations.md"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(!out_dir.path().join("copy.db").exists());
}
