//! `handoff replay` sends recorded GPX tracks to a real server as live pings, in the server's
//! time: real time here (a real server's clock), several devices of a relay from one command
//! with their recorded times kept relative to one another, and a `--speed` the server's clock
//! does not run at refused before anything is sent.

mod common;

use common::{KillOnDrop, curl, demo_address, json_of, stored_pings};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A real `handoff serve` on 127.0.0.1:0 with a one-relay plan (Ann runs, then Bob), and the
/// two devices' tokens.
struct Served {
    _server: KillOnDrop,
    dir: tempfile::TempDir,
    base: String,
    tokens: [String; 2],
}

fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", dir.path().join("h.db").display()))
        .env("HANDOFF_ADMIN_TOKEN", "adm")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = server.stdout.take().expect("stdout");
    let server = KillOnDrop(server);
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
[[relays.legs]]
carriers = ["Bob"]
mode = "run"
route = {{ points = [[2.3650, 48.8500], [2.3800, 48.8500]] }}
duration = "6m"
"#
    );
    let put = curl(
        "PUT",
        &format!("{base}/api/v1/events/rp"),
        Some("adm"),
        Some(&plan),
    );
    assert_eq!(put.0, 200, "{}", put.1);
    let tokens = ["ann-watch", "bob-phone"].map(|device| {
        let carrier = if device == "ann-watch" { "Ann" } else { "Bob" };
        let (_, dev) = curl(
            "POST",
            &format!("{base}/api/v1/events/rp/devices"),
            Some("adm"),
            Some(&format!(r#"{{"device":"{device}","carrier":"{carrier}"}}"#)),
        );
        json_of(&dev)["token"].as_str().expect("token").to_string()
    });
    Served {
        _server: server,
        dir,
        base,
        tokens,
    }
}

/// A GPX file of `n` timed points one second apart from `second` past 21:00, about 3 m apart
/// (a runner), eastwards from `lon`.
fn track(dir: &Path, name: &str, lon: f64, second: u32, n: u32) -> PathBuf {
    let pts: String = (0..n)
        .map(|i| {
            format!(
                r#"<trkpt lat="48.85" lon="{}"><ele>35</ele><time>2024-08-11T21:00:{:02}Z</time></trkpt>"#,
                lon + 0.00004 * f64::from(i),
                second + i
            )
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"<?xml version="1.0"?><gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{pts}</trkseg></trk></gpx>"#
        ),
    )
    .expect("gpx");
    path
}

/// Runs `handoff replay` against `base`: its standard output if it succeeded, else its
/// standard error.
fn replay(base: &str, args: &[&str], tracks: &[&Path]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--server", base])
        .args(args)
        .args(tracks)
        .output()
        .expect("replay");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The stored pings of the test's event: (device, time) of each.
fn stored(base: &str) -> Vec<(String, jiff::Timestamp)> {
    stored_pings(base, "rp", "adm")
}

#[test]
fn a_recorded_track_arrives_as_live_pings_in_the_servers_time() {
    let s = serve();
    let gpx = track(s.dir.path(), "run.gpx", 2.351, 0, 5);
    let before = jiff::Timestamp::now();
    let text = replay(
        &s.base,
        &["--device", "ann-watch", "--token", &s.tokens[0]],
        &[&gpx],
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert!(text.contains("runs at 1.0× real time"), "{text}");
    assert!(
        text.contains("(ann-watch): 5 pings accepted, 0 duplicates"),
        "{text}"
    );
    // Real time: the 4 s of the recording took at least 4 s, and the stamps are the server's
    // time when each was sent (not the recording's 2024, nor compressed).
    assert!(before.duration_until(jiff::Timestamp::now()).as_secs_f64() >= 4.0);
    let pings = stored(&s.base);
    assert_eq!(pings.len(), 5, "{pings:?}");
    let span = pings[0].1.duration_until(pings[4].1).as_secs_f64();
    assert!((span - 4.0).abs() < 1e-3, "{span}");
    assert!(pings[0].1 >= before, "{pings:?}");
    let (_, live) = curl(
        "GET",
        &format!("{}/api/v1/events/rp/live", s.base),
        None,
        None,
    );
    let live = json_of(&live);
    let r = &live["relays"][0];
    assert_eq!(r["holders"][0], "Ann", "{live}");
    assert!(
        (r["position"]["lon"].as_f64().unwrap_or(0.0) - 2.35116).abs() < 1e-6,
        "{live}"
    );
}

#[test]
fn several_devices_of_a_relay_keep_their_recorded_times_relative_to_one_another() {
    let s = serve();
    // Ann's watch from 21:00:00, Bob's phone from 21:00:02 (the exchange), 3 points each.
    let ann = track(s.dir.path(), "ann.gpx", 2.3646, 0, 3);
    let bob = track(s.dir.path(), "bob.gpx", 2.3650, 2, 3);
    let text = replay(
        &s.base,
        &[
            "--device",
            "ann-watch",
            "--token",
            &s.tokens[0],
            "--device",
            "bob-phone",
            "--token",
            &s.tokens[1],
        ],
        &[&ann, &bob],
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert!(text.contains("(ann-watch): 3 pings accepted"), "{text}");
    assert!(text.contains("(bob-phone): 3 pings accepted"), "{text}");
    let pings = stored(&s.base);
    let first = |device: &str| {
        pings
            .iter()
            .filter(|p| p.0 == device)
            .map(|p| p.1)
            .min()
            .expect(device)
    };
    let gap = first("ann-watch")
        .duration_until(first("bob-phone"))
        .as_secs_f64();
    assert!((gap - 2.0).abs() < 1e-3, "{gap} {pings:?}");
}

#[test]
fn a_speed_the_servers_clock_does_not_run_at_is_refused_before_anything_is_sent() {
    let s = serve();
    let gpx = track(s.dir.path(), "run.gpx", 2.351, 0, 5);
    let err = replay(
        &s.base,
        &[
            "--device",
            "ann-watch",
            "--token",
            &s.tokens[0],
            "--speed",
            "20",
        ],
        &[&gpx],
    )
    .expect_err("refused");
    assert!(
        err.contains("--speed 20: the server's clock runs at 1.0× real time"),
        "{err}"
    );
    assert!(stored(&s.base).is_empty());

    // One device and token per track, or nothing.
    let err = replay(
        &s.base,
        &["--device", "ann-watch", "--token", &s.tokens[0]],
        &[&gpx, &gpx],
    )
    .expect_err("refused");
    assert!(
        err.contains("got 1 device(s), 1 token(s) and 2 track(s)"),
        "{err}"
    );
    assert!(stored(&s.base).is_empty());
}

/// `handoff demo` on 127.0.0.1:0 (its clock faster than real time): its base URL and admin
/// token.
fn demo(dir: &Path) -> (KillOnDrop, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo");
    let stdout = child.stdout.take().expect("stdout");
    let child = KillOnDrop(child);
    let (mut base, mut admin) = (String::new(), String::new());
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        demo_address(&line.expect("line"), &mut base, &mut admin);
        if !admin.is_empty() {
            break;
        }
    }
    assert!(base.starts_with("http://127.0.0.1:") && !admin.is_empty());
    // The demo goes on printing its progress: keep reading it (a closed pipe would stop it).
    std::thread::spawn(move || lines.for_each(drop));
    (child, base, admin)
}

#[test]
fn against_the_demos_fast_clock_a_track_is_sent_in_its_time_not_in_real_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_demo, base, admin) = demo(dir.path());
    let (_, dev) = curl(
        "POST",
        &format!("{base}/api/v1/events/flag-handover/devices"),
        Some(&admin),
        Some(r#"{"device":"biles-replay","carrier":"Simone Biles"}"#),
    );
    let token = json_of(&dev)["token"].as_str().expect("token").to_string();
    // The demo's clock runs at real time for its first seconds, then compresses each leg: wait
    // for the compressed part (its clock moving ten times as fast as real time, or more).
    let clock = || -> jiff::Timestamp {
        let (_, health) = curl("GET", &format!("{base}/healthz"), None, None);
        json_of(&health)["now"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("the server's clock")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let before = loop {
        let (a, real) = (clock(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let b = clock();
        if a.duration_until(b).as_secs_f64() > 10.0 * real.elapsed().as_secs_f64() {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo's clock stays slow"
        );
    };
    // 58 s of recording near Paris, a point a second.
    let gpx = track(dir.path(), "stade.gpx", 2.3601, 0, 59);
    let sent = std::time::Instant::now();
    let text = replay(
        &base,
        &["--device", "biles-replay", "--token", &token],
        &[&gpx],
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let took = sent.elapsed().as_secs_f64();
    let rate: f64 = text
        .split("runs at ")
        .nth(1)
        .and_then(|r| r.split('×').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text}"));
    assert!(rate > 10.0, "{text}");
    assert!(
        text.contains("(biles-replay): 59 pings accepted, 0 duplicates"),
        "{text}"
    );
    // 58 s of recording sent in a few seconds of real time (1.5 s of them measuring the clock).
    assert!(took < 20.0, "{took} s");
    let mine: Vec<jiff::Timestamp> = stored_pings(&base, "flag-handover", &admin)
        .into_iter()
        .filter(|(device, _)| device == "biles-replay")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(mine.len(), 59, "{mine:?}");
    // In the demo's time (not the recording's 2024), 58 s apart end to end as recorded.
    assert!(mine[0] > before, "{before} {mine:?}");
    let span = mine[0].duration_until(mine[58]).as_secs_f64();
    assert!((span - 58.0).abs() < 1e-3, "{span}");
}
