//! `handoff replay` sends a recorded GPX track to a real server as live pings.

mod common;

use common::{KillOnDrop, curl, json_of};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_recorded_track_arrives_as_live_pings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", dir.path().join("h.db").display()))
        .env("HANDOFF_ADMIN_TOKEN", "adm")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = server.stdout.take().expect("stdout");
    let _server = KillOnDrop(server);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).expect("line");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    let start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(1))
        .expect("time");
    let plan = format!(
        r#"[event]
id = "rp"
name = "Replay"
[[relays]]
id = "r"
[[relays.legs]]
carriers = ["Ann"]
mode = "run"
start = "{start}"
route = {{ points = [[2.3500, 48.8500], [2.3650, 48.8500]] }}
duration = "6m"
"#
    );
    assert_eq!(
        curl(
            "PUT",
            &format!("{base}/api/v1/events/rp"),
            Some("adm"),
            Some(&plan)
        )
        .0,
        200
    );
    let (_, dev) = curl(
        "POST",
        &format!("{base}/api/v1/events/rp/devices"),
        Some("adm"),
        Some(r#"{"device":"ann-watch","carrier":"Ann"}"#),
    );
    let token = json_of(&dev)["token"].as_str().expect("token").to_string();
    // Five timed points, 10 s and about 29 m apart (a runner), along the street.
    let pts: String = (0..5)
        .map(|i| format!(r#"<trkpt lat="48.85" lon="{}"><ele>35</ele><time>2024-08-11T21:00:{:02}Z</time></trkpt>"#, 2.351 + 0.0004 * f64::from(i), i * 10))
        .collect();
    let gpx = dir.path().join("run.gpx");
    std::fs::write(&gpx, format!(r#"<?xml version="1.0"?><gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{pts}</trkseg></trk></gpx>"#)).expect("gpx");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "replay",
            "--server",
            &base,
            "--device",
            "ann-watch",
            "--token",
            &token,
            "--speed",
            "20",
        ])
        .arg(&gpx)
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("5 pings accepted, 0 duplicates"), "{text}");
    let (_, live) = curl("GET", &format!("{base}/api/v1/events/rp/live"), None, None);
    let live = json_of(&live);
    let r = &live["relays"][0];
    assert_eq!(r["holders"][0], "Ann", "{live}");
    assert!(
        (r["position"]["lon"].as_f64().unwrap_or(0.0) - 2.3526).abs() < 1e-6,
        "{live}"
    );
    assert!(
        r["progress"]["fraction"].as_f64().unwrap_or(0.0) > 0.15,
        "{live}"
    );
}
