//! `handoff serve` as a process: the OsmAnd protocol on its own port (as Traccar Client
//! expects), a server on PostgreSQL (when `HANDOFF_TEST_PG` is set), and clear refusals of
//! what it cannot do.

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
fn a_database_it_cannot_use_is_a_clear_error_without_the_password() {
    for (url, says) in [
        // Port 1 on loopback: nothing listens there.
        (
            "postgres://handoff:s3cret-pw@127.0.0.1:1/handoff",
            &[
                "cannot open the PostgreSQL database 127.0.0.1:1/handoff",
                "check that the PostgreSQL server is running",
                "refused",
            ][..],
        ),
        (
            "mysql://handoff:s3cret-pw@db/handoff",
            &["unknown database URL scheme `mysql://`", "postgres://"][..],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", url])
            .env("HANDOFF_ADMIN_TOKEN", "adm")
            .output()
            .expect("serve");
        assert!(!out.status.success(), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(says.iter().all(|s| err.contains(s)), "{url}: {err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
    }
}

/// Starts `handoff serve --db URL` with no HANDOFF_ADMIN_TOKEN and reads its first lines up to
/// the one about the admin token: (the server, the API's base URL, that line).
fn serve_on(url: &str) -> (KillOnDrop, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db", url])
        .env_remove("HANDOFF_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let guard = KillOnDrop(child);
    let serving = lines.next().expect("a line").expect("text");
    assert!(
        serving.starts_with("handoff serving on") && serving.contains("(database postgres://"),
        "{serving}"
    );
    assert!(!serving.contains('@'), "no user or password: {serving}");
    let base = serving
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    let token_line = lines.next().expect("a line").expect("text");
    // Keep reading (and dropping) what it says, so that a full pipe never blocks it.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    (guard, base, token_line)
}

#[test]
fn serve_on_postgres_keeps_acknowledged_pings_and_the_generated_admin_token_across_a_kill() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(db) = rt
        .block_on(handoff_store::postgres::testing::TestSchema::create(
            "serve_on_postgres_keeps_acknowledged_pings_and_the_generated_admin_token_across_a_kill",
        ))
        .expect("a test database")
    else {
        return;
    };
    let (first, base, said) = serve_on(&db.url());
    let token = said
        .strip_prefix("admin token (shown once, keep it): ")
        .unwrap_or_else(|| panic!("a generated token: {said}"))
        .to_string();
    let start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(1))
        .expect("time");
    let plan = format!(
        "[event]\nid = \"pg\"\nname = \"On PostgreSQL\"\n[[relays]]\nid = \"r\"\n[[relays.legs]]\ncarriers = [\"Ann\"]\nmode = \"run\"\nstart = \"{start}\"\nroute = {{ points = [[2.35, 48.85], [2.365, 48.85]] }}\nduration = \"6m\"\n"
    );
    let put = curl(
        "PUT",
        &format!("{base}/api/v1/events/pg"),
        Some(&token),
        Some(&plan),
    );
    assert_eq!(put.0, 200, "{put:?}");
    let (_, dev) = curl(
        "POST",
        &format!("{base}/api/v1/events/pg/devices"),
        Some(&token),
        Some(r#"{"device":"phone","carrier":"Ann"}"#),
    );
    let device = json_of(&dev)["token"].as_str().expect("token").to_string();
    let now = jiff::Timestamp::now().as_second();
    let sent = curl(
        "GET",
        &format!("{base}/osmand?id={device}&lat=48.85&lon=2.352&timestamp={now}"),
        None,
        None,
    );
    assert_eq!(sent.0, 200, "{sent:?}");
    // SIGKILL: nothing gets a chance to flush; what was answered must already be stored.
    drop(first);

    let (_second, base, said) = serve_on(&db.url());
    assert_eq!(
        said,
        "admin token: the one printed on the first start (its hash is in the database)"
    );
    let (status, live) = curl("GET", &format!("{base}/api/v1/events/pg/live"), None, None);
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        json_of(&live)["relays"][0]["position"]["lon"].as_f64(),
        Some(2.352),
        "{live}"
    );
    let again = curl("GET", &format!("{base}/api/v1/events"), Some(&token), None);
    assert_eq!(
        again.0, 200,
        "the first start's token still works: {again:?}"
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
