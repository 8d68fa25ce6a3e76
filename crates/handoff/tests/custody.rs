//! The custody log end to end, through the real binary: `handoff serve` on 127.0.0.1 with a
//! SQLite file, handoffs recorded each way, every 409 reason, a correction, proximity with
//! noisy positions, and `handoff log verify` catching an edited, a removed and a reordered
//! entry in the database file.

mod common;

use common::{curl, json_of};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ADMIN: &str = "test-admin-token";

struct Server {
    child: Child,
    base: String,
    dir: Option<tempfile::TempDir>,
    db: PathBuf,
}

impl Server {
    /// Stops the server and hands back its folder (database included).
    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().expect("dir")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_on(dir: tempfile::TempDir) -> Server {
    let db = dir.path().join("h.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .env("HANDOFF_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start handoff serve");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address in the first line")
        .to_string();
    Server {
        child,
        base,
        dir: Some(dir),
        db,
    }
}

fn start() -> Server {
    start_on(tempfile::tempdir().expect("tempdir"))
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A stage that started a minute ago, then Ann (run), Bob (run), Cy (bike) along a Paris street.
fn plan() -> String {
    let start = now()
        .checked_sub(jiff::SignedDuration::from_mins(1))
        .expect("time");
    format!(
        r#"
[event]
id = "cust"
name = "Custody test"
[[places]]
id = "stage"
at = [2.3500, 48.8500]
timezone = "Europe/Paris"
[[relays]]
id = "flag"
object = "flag"
[[relays.legs]]
carriers = ["Host"]
mode = "stage"
place = "stage"
start = "{start}"
duration = "30m"
[[relays.legs]]
carriers = ["Ann"]
mode = "run"
route = {{ points = [[2.3500, 48.8500], [2.3650, 48.8500]] }}
duration = "6m"
[[relays.legs]]
carriers = ["Bob"]
mode = "run"
route = {{ points = [[2.3650, 48.8500], [2.3800, 48.8500]] }}
duration = "6m"
[[relays.legs]]
carriers = ["Cy"]
mode = "bike"
route = {{ points = [[2.3800, 48.8500], [2.4100, 48.8500]] }}
duration = "8m"
"#
    )
}

fn setup(s: &Server) -> String {
    let (st, body) = curl(
        "PUT",
        &format!("{}/api/v1/events/cust", s.base),
        Some(ADMIN),
        Some(&plan()),
    );
    assert_eq!(st, 200, "{body}");
    format!("{}/api/v1/events/cust", s.base)
}

fn device(ev: &str, id: &str, carrier: &str) -> String {
    let (st, body) = curl(
        "POST",
        &format!("{ev}/devices"),
        Some(ADMIN),
        Some(&json!({"device": id, "carrier": carrier}).to_string()),
    );
    assert_eq!(st, 201, "{body}");
    json_of(&body)["token"].as_str().expect("token").to_string()
}

fn handoff(ev: &str, token: &str, body: &Value) -> (u16, Value) {
    let (st, text) = curl(
        "POST",
        &format!("{ev}/relays/flag/handoffs"),
        Some(token),
        Some(&body.to_string()),
    );
    (st, json_of(&text))
}

fn custody(ev: &str) -> Vec<Value> {
    let (st, text) = curl("GET", &format!("{ev}/relays/flag/custody"), None, None);
    assert_eq!(st, 200);
    text.lines().map(json_of).collect()
}

fn verify_file(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["log", "verify"])
        .arg(path)
        .output()
        .expect("run log verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn operator_handoffs_and_every_409_reason() {
    let s = start();
    let ev = setup(&s);
    // The log opens with a genesis entry committing to the plan's hash.
    let log = custody(&ev);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["kind"], "genesis");
    assert_eq!(log[0]["prev_hash"], log[0]["plan_hash"]);

    // An operator's request names the step it records (a double click records nothing twice).
    let (st, e) = handoff(&ev, ADMIN, &json!({}));
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (400, Some("from_leg")),
        "{e}"
    );
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 0}));
    assert_eq!(st, 201, "{e}");
    assert_eq!(
        (
            e["from"]["leg"].as_u64(),
            e["to"]["leg"].as_u64(),
            e["evidence"]["method"].as_str()
        ),
        (Some(0), Some(1), Some("operator"))
    );
    // Not the next one: leg 0 was handed on already.
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 0}));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("not_next")),
        "{e}"
    );
    // Skipping ahead is refused too.
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 2}));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("not_next")),
        "{e}"
    );
    // Before the previous handoff.
    let earlier = now() - jiff::SignedDuration::from_mins(10);
    let (st, e) = handoff(
        &ev,
        ADMIN,
        &json!({"from_leg": 1, "at": earlier.to_string()}),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("before_previous")),
        "{e}"
    );
    // Nor long before the relay's planned start (a date from nowhere).
    let (st, e) = handoff(
        &ev,
        ADMIN,
        &json!({"from_leg": 1, "at": "0001-01-01T00:00:00Z"}),
    );
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("at")), "{e}");
    // Late marking is normal; the rest of the chain follows.
    assert_eq!(handoff(&ev, ADMIN, &json!({"from_leg": 1})).0, 201);
    assert_eq!(handoff(&ev, ADMIN, &json!({"from_leg": 2})).0, 201);
    // The last leg's entry records the arrival (no receiver); after it, nothing is next.
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 3}));
    assert_eq!(st, 201, "{e}");
    assert_eq!(e["to"], Value::Null);
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 4}));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("finished")),
        "{e}"
    );
    // Without a token: 401; the live view follows the log.
    assert_eq!(
        curl(
            "POST",
            &format!("{ev}/relays/flag/handoffs"),
            None,
            Some("{}")
        )
        .0,
        401
    );
    let (_, live) = curl("GET", &format!("{ev}/live"), None, None);
    let live = json_of(&live);
    assert_eq!(live["relays"][0]["status"], "finished", "{live}");
    assert!(
        live["relays"][0]["legs"]
            .as_array()
            .expect("legs")
            .iter()
            .all(|l| l["verified"] == true)
    );
    let (ok, out) = verify_file(&write_log(&s, &ev));
    assert!(ok, "{out}");
}

fn write_log(s: &Server, ev: &str) -> PathBuf {
    let (_, text) = curl("GET", &format!("{ev}/relays/flag/custody"), None, None);
    let p = s.db.with_file_name("custody.ndjson");
    std::fs::write(&p, text).expect("write log");
    p
}

#[test]
fn two_party_handoff_with_the_givers_code() {
    let s = start();
    let ev = setup(&s);
    let ann = device(&ev, "ann-phone", "Ann");
    let bob = device(&ev, "bob-phone", "Bob");
    let cy = device(&ev, "cy-phone", "Cy");
    assert_eq!(handoff(&ev, ADMIN, &json!({"from_leg": 0})).0, 201); // stage → Ann
    // Only the holder gets a code.
    let (st, e) = curl(
        "POST",
        &format!("{ev}/relays/flag/handoffs/code"),
        Some(&bob),
        None,
    );
    assert_eq!(
        (st, json_of(&e)["error"]["code"].as_str()),
        (409, Some("wrong_party")),
        "{e}"
    );
    let (st, code) = curl(
        "POST",
        &format!("{ev}/relays/flag/handoffs/code"),
        Some(&ann),
        None,
    );
    assert_eq!(st, 200, "{code}");
    let code = json_of(&code)["code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 6);
    // The wrong receiver, a wrong code, then the right one.
    let (st, e) = handoff(&ev, &cy, &json!({"code": code}));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("wrong_party")),
        "{e}"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, e) = handoff(&ev, &bob, &json!({"code": wrong}));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("bad_code")),
        "{e}"
    );
    let (st, e) = handoff(&ev, &bob, &json!({"code": code}));
    assert_eq!(st, 201, "{e}");
    assert_eq!(
        e["evidence"],
        json!({"method": "two_party", "giver_device": "ann-phone", "receiver_device": "bob-phone"})
    );
    // The code is spent: once.
    let (st, e) = handoff(&ev, &cy, &json!({"code": code}));
    assert_eq!(st, 409, "{e}");
}

#[test]
fn a_correction_is_appended_never_edited() {
    let s = start();
    let ev = setup(&s);
    let (_, first) = handoff(&ev, ADMIN, &json!({"from_leg": 0}));
    let (_, wrong) = handoff(
        &ev,
        ADMIN,
        &json!({"from_leg": 1, "note": "marked by mistake"}),
    );
    let seq = wrong["seq"].as_u64().expect("seq");
    // Only the last handoff can be voided.
    let (st, e) = handoff(
        &ev,
        ADMIN,
        &json!({"kind": "correction", "corrects": first["seq"], "void": true}),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("bad_correction")),
        "{e}"
    );
    let (st, e) = handoff(
        &ev,
        ADMIN,
        &json!({"kind": "correction", "corrects": seq, "void": true, "note": "Ann still has it"}),
    );
    assert_eq!(st, 201, "{e}");
    let log = custody(&ev);
    assert_eq!(log.len(), 4, "genesis, two handoffs, a correction");
    assert_eq!(log[2], wrong, "the wrong entry is still there, unchanged");
    assert_eq!(log[3]["kind"], "correction");
    // Custody is back with Ann: the next handoff is from leg 1 again.
    let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 1}));
    assert_eq!(st, 201, "{e}");
    // A time correction of an earlier handoff.
    let at = now()
        .checked_sub(jiff::SignedDuration::from_secs(30))
        .expect("time")
        .to_string();
    let (st, e) = handoff(
        &ev,
        ADMIN,
        &json!({"kind": "correction", "corrects": first["seq"], "at": at}),
    );
    assert_eq!(st, 201, "{e}");
    let (_, live) = curl("GET", &format!("{ev}/live"), Some(ADMIN), None);
    let live = json_of(&live);
    assert_eq!(
        live["relays"][0]["legs"][0]["actual_end"]
            .as_str()
            .map(|s| s[..19].to_string()),
        Some(at[..19].to_string()),
        "{live}"
    );
    let (ok, out) = verify_file(&write_log(&s, &ev));
    assert!(ok, "{out}");
}

/// A deterministic ±`amp` metre jitter (a linear congruential generator).
fn jitter(seed: &mut u64, amp_m: f64) -> (f64, f64) {
    let mut next = || {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        #[allow(clippy::cast_precision_loss)]
        let u = (*seed >> 11) as f64 / (1u64 << 53) as f64;
        (u * 2.0 - 1.0) * amp_m
    };
    let (dx, dy) = (next(), next());
    (
        dx / (111_320.0 * 48.85_f64.to_radians().cos()),
        dy / 110_540.0,
    )
}

#[test]
fn proximity_handoff_from_noisy_positions() {
    let s = start();
    let ev = setup(&s);
    let ann = device(&ev, "ann-phone", "Ann");
    let bob = device(&ev, "bob-phone", "Bob");
    let mut seed = 7;
    let t0 = now()
        .checked_sub(jiff::SignedDuration::from_mins(5))
        .expect("time");
    // The operator marked the stage handoff when it happened, just before Ann set off.
    let stage_end = t0
        .checked_sub(jiff::SignedDuration::from_secs(5))
        .expect("time")
        .to_string();
    assert_eq!(
        handoff(&ev, ADMIN, &json!({"from_leg": 0, "at": stage_end})).0,
        201
    );
    // Ann runs her leg with noise; Bob waits at the exchange point (2.3650, 48.85), also noisy.
    let mut ann_pings = Vec::new();
    for k in 0..=30 {
        let (dx, dy) = jitter(&mut seed, 12.0);
        let t = t0
            .checked_add(jiff::SignedDuration::from_secs(k * 8))
            .expect("time");
        ann_pings.push(json!({"t": t.to_string(), "lon": 2.35 + 0.015 * f64::from(i32::try_from(k).unwrap_or(0)) / 30.0 + dx, "lat": 48.85 + dy, "acc": 10}));
    }
    let mut bob_pings = Vec::new();
    for k in 0..6 {
        let (dx, dy) = jitter(&mut seed, 12.0);
        let t = t0
            .checked_add(jiff::SignedDuration::from_secs(200 + k * 10))
            .expect("time");
        bob_pings
            .push(json!({"t": t.to_string(), "lon": 2.365 + dx, "lat": 48.85 + dy, "acc": 10}));
    }
    let (st, r) = curl(
        "POST",
        &format!("{}/api/v1/pings", s.base),
        Some(&bob),
        Some(&Value::Array(bob_pings.clone()).to_string()),
    );
    assert_eq!(st, 200, "{r}");
    let (st, r) = curl(
        "POST",
        &format!("{}/api/v1/pings", s.base),
        Some(&ann),
        Some(&Value::Array(ann_pings.clone()).to_string()),
    );
    assert_eq!(st, 200, "{r}");
    let log = custody(&ev);
    let last = log.last().expect("entries");
    assert_eq!(last["kind"], "handoff", "{log:?}");
    assert_eq!(last["evidence"]["method"], "proximity");
    assert_eq!(
        (
            last["evidence"]["giver_device"].as_str(),
            last["evidence"]["receiver_device"].as_str()
        ),
        (Some("ann-phone"), Some("bob-phone"))
    );
    assert!(
        last["evidence"]["distance_m"]
            .as_i64()
            .is_some_and(|d| d <= 50),
        "{last}"
    );
    assert_eq!(
        (last["from"]["leg"].as_u64(), last["to"]["leg"].as_u64()),
        (Some(1), Some(2))
    );
    // The same pings again (phones resend) change nothing: duplicates, and no second entry.
    let before = log.len();
    for (token, pings) in [(&bob, &bob_pings), (&ann, &ann_pings)] {
        let (st, r) = curl(
            "POST",
            &format!("{}/api/v1/pings", s.base),
            Some(token),
            Some(&Value::Array(pings.clone()).to_string()),
        );
        let r = json_of(&r);
        assert_eq!((st, r["accepted"].as_u64()), (200, Some(0)), "{r}");
        assert_eq!(r["duplicates"].as_u64(), Some(pings.len() as u64), "{r}");
    }
    assert_eq!(custody(&ev).len(), before);
}

/// Runs SQL on the stopped server's database, with the append-only triggers out of the way
/// (as an attacker with the file would).
fn tamper(db: &Path, sql: &str) {
    let c = rusqlite::Connection::open(db).expect("open db");
    let triggers: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'custody'")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("names");
    for t in triggers {
        c.execute_batch(&format!("DROP TRIGGER \"{t}\""))
            .expect("drop trigger");
    }
    c.execute_batch(sql).expect("tamper");
}

fn tampered_log_after(sql: &str) -> (bool, String) {
    let s = start();
    let ev = setup(&s);
    for leg in 0..3 {
        assert_eq!(handoff(&ev, ADMIN, &json!({"from_leg": leg})).0, 201);
    }
    let db = s.db.clone();
    let dir = s.stop();
    tamper(&db, sql);
    let s = start_on(dir);
    let ev = format!("{}/api/v1/events/cust", s.base);
    let path = write_log(&s, &ev);
    verify_file(&path)
}

#[test]
fn log_verify_catches_one_edited_byte() {
    // One byte of entry 2's carriers: "Bob" → "Bop".
    let (ok, out) = tampered_log_after(
        "UPDATE custody SET entry_json = replace(entry_json, '\"Bob\"', '\"Bop\"') WHERE seq = (SELECT seq FROM custody ORDER BY seq LIMIT 1 OFFSET 2)",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("entry 2 ") && out.contains("hash mismatch"),
        "{out}"
    );
}

#[test]
fn log_verify_catches_a_removed_entry() {
    let (ok, out) = tampered_log_after(
        "DELETE FROM custody WHERE seq = (SELECT seq FROM custody ORDER BY seq LIMIT 1 OFFSET 1)",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("entry 1 ") && out.contains("prev_hash"),
        "{out}"
    );
}

#[test]
fn log_verify_catches_two_reordered_entries() {
    let (ok, out) = tampered_log_after(
        "CREATE TEMP TABLE c AS SELECT seq, entry_json FROM custody ORDER BY seq;
         UPDATE custody SET entry_json = (SELECT entry_json FROM c WHERE c.seq = (SELECT seq FROM c LIMIT 1 OFFSET 2)) WHERE seq = (SELECT seq FROM c LIMIT 1 OFFSET 1);
         UPDATE custody SET entry_json = (SELECT entry_json FROM c LIMIT 1 OFFSET 1) WHERE seq = (SELECT seq FROM c LIMIT 1 OFFSET 2);",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("entry 1 "), "{out}");
}

/// A server started on a database whose log was edited, or holds an unreadable row, says so
/// and refuses to extend that log, instead of serving and extending it (or not starting).
#[test]
fn a_tampered_or_unreadable_log_is_marked_at_start_up_and_not_extended() {
    for sql in [
        "UPDATE custody SET entry_json = replace(entry_json, '\"Bob\"', '\"Bop\"') WHERE seq = (SELECT seq FROM custody ORDER BY seq LIMIT 1 OFFSET 2)",
        "UPDATE custody SET entry_json = 'not json at all' WHERE seq = (SELECT seq FROM custody ORDER BY seq LIMIT 1 OFFSET 1)",
    ] {
        let s = start();
        let ev = setup(&s);
        for leg in 0..2 {
            assert_eq!(handoff(&ev, ADMIN, &json!({"from_leg": leg})).0, 201);
        }
        let db = s.db.clone();
        let dir = s.stop();
        tamper(&db, sql);
        let s = start_on(dir);
        let ev = format!("{}/api/v1/events/cust", s.base);
        let (st, health) = curl("GET", &format!("{}/healthz", s.base), None, None);
        let health = json_of(&health);
        assert_eq!(st, 200);
        assert_eq!(health["status"], "degraded", "{sql}: {health}");
        assert_eq!(health["unverified_custody"][0]["relay"], "flag", "{health}");
        let (st, e) = handoff(&ev, ADMIN, &json!({"from_leg": 2}));
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (409, Some("custody_unverified")),
            "{sql}: {e}"
        );
        // The rest of the server runs: the live view is served, and marks the relay.
        let (st, live) = curl("GET", &format!("{ev}/live"), None, None);
        assert_eq!(st, 200);
        assert_eq!(
            json_of(&live)["relays"][0]["custody_unverified"],
            true,
            "{live}"
        );
    }
}
