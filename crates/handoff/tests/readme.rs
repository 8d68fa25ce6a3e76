//! The README's five-minute tour, run as it is written, so it cannot rot unnoticed: each
//! `$ cargo run -q -- …` of its console block prints what the README shows under it (and
//! `plan show` fits 100 columns), and its server part (`serve`, `plan push --rebase-now`, the
//! `curl`s) works against a real server, through `sh` and `curl` as a reader would run it.
//!
//! Only what a test must change is changed: `cargo run [--release] --` becomes this build's
//! binary, the server listens on a free port instead of 8080, and its database goes in a
//! temporary folder.

mod common;

use common::{KillOnDrop, curl, json_of};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's tour: from its heading to the next one.
fn tour() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let start = readme
        .find("## A five-minute tour")
        .expect("the README has its tour");
    let rest = &readme[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The fenced blocks of `text` in language `lang`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("a closed block");
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

/// A command line without its trailing `# comment`.
fn uncommented(line: &str) -> &str {
    line.find("  #").map_or(line, |i| &line[..i]).trim_end()
}

/// The shell commands of a block: continued lines (`\`) joined, comments dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = uncommented(line);
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        current.clear();
    }
    out
}

fn handoff() -> String {
    env!("CARGO_BIN_EXE_handoff").to_string()
}

/// `cargo run [-q] [--release] --` replaced by this build's binary.
fn with_binary(command: &str) -> String {
    let mut c = command.to_string();
    for run in [
        "cargo run -q --release --",
        "cargo run --release --",
        "cargo run -q --",
        "cargo run --",
    ] {
        c = c.replace(run, &handoff());
    }
    c
}

#[test]
fn the_tour_plan_commands_print_what_the_readme_shows() {
    let tour = tour();
    let console = blocks(&tour, "console");
    assert_eq!(console.len(), 1, "one console block in the tour");
    let mut ran = 0;
    let mut lines = console[0].lines().peekable();
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("$ ") else {
            continue;
        };
        let mut expected = Vec::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("$ ") || next.trim().is_empty() {
                break;
            }
            expected.push(lines.next().unwrap_or_default().to_string());
        }
        let args = uncommented(command)
            .strip_prefix("cargo run -q -- ")
            .unwrap_or_else(|| panic!("not a `cargo run -q --` command: {command}"));
        let out = Command::new(handoff())
            .args(args.split_whitespace())
            .current_dir(root())
            .env_remove("COLUMNS")
            .output()
            .expect("run handoff");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if expected.is_empty() {
            // `plan show`: its tables fit 100 columns when no terminal says otherwise.
            assert!(out.status.success(), "{command}: {stdout}{stderr}");
            assert!(
                stdout.contains('┌'),
                "{command} printed no table:\n{stdout}"
            );
            for l in stdout.lines() {
                let width = l.chars().count();
                assert!(width <= 100, "{command}: a line of {width} columns:\n{l}");
            }
        } else {
            let got: Vec<&str> = stdout.lines().collect();
            assert_eq!(got, expected, "{command} (stderr: {stderr})");
        }
        ran += 1;
    }
    assert!(ran >= 3, "the tour's console block has {ran} commands");
}

#[test]
fn the_tour_server_commands_work_as_written() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "this test runs the README's curl commands: install curl"
    );
    let tour = tour();
    let sh = blocks(&tour, "sh");
    assert_eq!(sh.len(), 2, "the tour has the server's block and the rest");
    let serve = commands(&sh[0]);
    assert_eq!(serve.len(), 1, "{serve:?}");
    assert!(serve[0].contains(" serve "), "{}", serve[0]);

    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("tour.db").display());
    let serve = with_binary(&serve[0])
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("sqlite://target/tour.db", &db);
    let mut child = Command::new("sh")
        // `exec env`: the server replaces the shell (so dropping the child stops it), with the
        // README's `VAR=value` prefix intact.
        .args(["-c", &format!("exec env {serve}")])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let _server = KillOnDrop(child);
    let first = out
        .next()
        .expect("serve says where it listens")
        .expect("text");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{first}`"))
        .to_string();
    let addr = base.trim_start_matches("http://").to_string();

    let mut token = String::new();
    for command in commands(&sh[1]) {
        let command = with_binary(&command)
            .replace("127.0.0.1:8080", &addr)
            .replace("id=TOKEN", &format!("id={token}"));
        let run = Command::new("sh")
            .args(["-c", &command])
            .current_dir(root())
            .output()
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{command}:\n{stdout}{stderr}");
        assert!(!stdout.contains("\"error\""), "{command}:\n{stdout}");
        if command.contains("/handoffs") {
            // The next command pings with `timestamp=$(date +%s)`, whole seconds: a reader
            // types it well after the handoff, this test at once. Wait (at most a second) for
            // the clock's second to pass the handoff, as the reader's would have.
            let at: jiff::Timestamp = json_of(&stdout)["at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("the handoff's time");
            while jiff::Timestamp::now().as_second() <= at.as_second() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        if command.contains("/devices") {
            token = json_of(&stdout)["token"]
                .as_str()
                .expect("a device token")
                .to_string();
        }
    }
    assert!(!token.is_empty(), "the tour registers a phone");

    // The plan starts now, the stage was handed on, and Tom Cruise's ping is his position.
    let (status, live) = curl(
        "GET",
        &format!("{base}/api/v1/events/flag-handover/live"),
        None,
        None,
    );
    assert_eq!(status, 200, "{live}");
    let live = json_of(&live);
    let flag = &live["relays"][0];
    assert_eq!(flag["status"], "running", "{flag}");
    assert_eq!(flag["holders"][0], "Tom Cruise", "{flag}");
    assert_eq!(flag["overdue"], false, "{flag}");
    // On the motorcycle route, a few metres south of the stadium: a position spectators see.
    assert_eq!(flag["position"]["lon"].as_f64(), Some(2.3599), "{flag}");

    // The pages the tour opens.
    for page in ["/e/flag-handover", "/e/flag-handover/console"] {
        let url = format!("<http://127.0.0.1:8080{page}>");
        assert!(tour.contains(&url), "the tour links {url}");
        assert_eq!(curl("GET", &format!("{base}{page}"), None, None).0, 200);
    }
}
