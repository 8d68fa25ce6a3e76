//! `handoff serve` as a process: the OsmAnd protocol on its own port (as Traccar Client
//! expects), and clear refusals of what it cannot do.

mod common;

use common::{KillOnDrop, curl, json_of};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn osmand_on_its_own_port_reaches_the_same_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--osmand-listen",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(format!("sqlite://{}", dir.path().join("h.db").display()))
        .env("HANDOFF_ADMIN_TOKEN", "adm")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let _guard = KillOnDrop(child);
    let mut url_of = |prefix: &str| {
        let line = lines.next().expect("a line").expect("text");
        assert!(line.starts_with(prefix), "{line}");
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("address")
            .to_string()
    };
    let base = url_of("handoff serving on");
    let osmand = url_of("OsmAnd protocol on");
    let start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(1))
        .expect("time");
    let plan = format!(
        "[event]\nid = \"os\"\nname = \"OsmAnd\"\n[[relays]]\nid = \"r\"\n[[relays.legs]]\ncarriers = [\"Ann\"]\nmode = \"run\"\nstart = \"{start}\"\nroute = {{ points = [[2.35, 48.85], [2.365, 48.85]] }}\nduration = \"6m\"\n"
    );
    assert_eq!(
        curl(
            "PUT",
            &format!("{base}/api/v1/events/os"),
            Some("adm"),
            Some(&plan)
        )
        .0,
        200
    );
    let (_, dev) = curl(
        "POST",
        &format!("{base}/api/v1/events/os/devices"),
        Some("adm"),
        Some(r#"{"device":"phone","carrier":"Ann"}"#),
    );
    let token = json_of(&dev)["token"].as_str().expect("token").to_string();
    // Traccar Client posts to the server's root on port 5055 (here: whatever port we got).
    let now = jiff::Timestamp::now().as_second();
    let (st, _) = curl(
        "GET",
        &format!("{osmand}/?id={token}&lat=48.85&lon=2.352&timestamp={now}&speed=10"),
        None,
        None,
    );
    assert_eq!(st, 200);
    let (_, live) = curl("GET", &format!("{base}/api/v1/events/os/live"), None, None);
    let live = json_of(&live);
    assert_eq!(
        live["relays"][0]["position"]["lon"].as_f64(),
        Some(2.352),
        "{live}"
    );
    // The API is not served on the OsmAnd port.
    assert_eq!(
        curl("GET", &format!("{osmand}/api/v1/events"), None, None).0,
        404
    );
    // `serve` said what it received: the new event, then the ping (within its report period,
    // read on a thread so a server that never says it fails the test instead of hanging it).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("1 ping stored")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => said.push(line),
            Err(_) => panic!("serve did not report the ping: {said:?}"),
        }
    }
    let event = format!("event os: plan version 1, 1 relay, 1 leg; live page {base}/e/os");
    assert!(said.contains(&event), "{said:?}");
}

#[test]
fn postgres_is_refused_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "postgres://localhost/handoff",
        ])
        .env("HANDOFF_ADMIN_TOKEN", "adm")
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL is not supported yet") && err.contains("sqlite://"),
        "{err}"
    );
}

#[test]
fn a_database_in_a_missing_folder_names_the_folder_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-folder");
    let db = missing.join("h.db");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let folder = missing.display().to_string();
    assert_eq!(err.matches(&folder).count(), 1, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("--db"),
        "{err}"
    );
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn serve_help_names_the_admin_token_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("HANDOFF_ADMIN_TOKEN"), "{help}");
}

#[test]
fn a_server_url_without_a_scheme_says_to_add_http() {
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/valid/flag/plan.toml"
    );
    for args in [
        vec![
            "plan",
            "push",
            plan,
            "--token",
            "t",
            "--server",
            "127.0.0.1:8080",
        ],
        vec![
            "replay",
            "--device",
            "d",
            "--token",
            "t",
            "--server",
            "127.0.0.1:8080",
            "x.gpx",
        ],
        vec![
            "log",
            "verify",
            "--event",
            "e",
            "--relay",
            "r",
            "--server",
            "127.0.0.1:8080",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(&args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("write http://127.0.0.1:8080") && !err.contains("builder error"),
            "{args:?}: {err}"
        );
    }
}
