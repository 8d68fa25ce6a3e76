//! `handoff demo` end to end: the flag handover runs at high speed to its end on the real
//! server; every leg is done, every handoff is in a custody log whose hashes hold, ETA errors
//! were recorded, and Ctrl-C stops it cleanly.

mod common;

use common::{curl, demo_address, json_of};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_the_flag_handover_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["demo", "--listen", "127.0.0.1:0", "--speed", "12", "--data"])
        .arg(dir.path())
        .env_remove("COLUMNS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut base, mut admin, mut lines) = (String::new(), String::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in out.lines() {
        let line = line.expect("line");
        demo_address(&line, &mut base, &mut admin);
        let over = line.contains("The relay is over");
        lines.push(line);
        if over || Instant::now() > deadline {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains("The relay is over"),
        "the demo did not finish:\n{text}"
    );
    assert!(
        !text.contains("not verified") && !text.contains("BROKEN"),
        "{text}"
    );
    assert!(
        !text.contains("Tom Cruise → Tom Cruise")
            && text.contains("Tom Cruise, motorcycle → flight"),
        "{text}"
    );
    assert!(
        base.starts_with("http://127.0.0.1:") && !admin.is_empty(),
        "{text}"
    );
    // The summary's tables fit 100 columns when no terminal says otherwise.
    assert!(text.contains("ETA error"), "{text}");
    for l in &lines {
        let width = l.chars().count();
        assert!(width <= 100, "a line of {width} columns:\n{l}");
    }

    // The server is still up: check what it says, not only what was printed.
    let ev = format!("{base}/api/v1/events/flag-handover");
    let (st, live) = curl("GET", &format!("{ev}/live"), Some(&admin), None);
    assert_eq!(st, 200);
    let live = json_of(&live);
    for r in live["relays"].as_array().expect("relays") {
        assert_eq!(r["status"], "finished", "{r}");
        assert!(
            r["legs"]
                .as_array()
                .expect("legs")
                .iter()
                .all(|l| l["status"] == "done" && l["verified"] == true),
            "{r}"
        );
    }
    assert!(
        live["countdowns"]
            .as_array()
            .expect("countdowns")
            .iter()
            .any(|c| c["name"] == "LA28 Opening Ceremony"
                && c["remaining_s"].as_i64().is_some_and(|s| s > 0))
    );
    let mut methods = Vec::new();
    for relay in ["flag", "stage"] {
        let (_, log) = curl("GET", &format!("{ev}/relays/{relay}/custody"), None, None);
        let n = handoff_core_verify(&log);
        // The flag: the genesis, then a handoff after the stage, after Tom Cruise's stint
        // (motorcycle, flight, parachute: one carrier, no handoff between), after the skater,
        // the cyclist and the arrival.
        let expected = if relay == "flag" { 6 } else { 4 };
        assert_eq!(n, expected, "{relay}: {log}");
        for l in log.lines() {
            let e = json_of(l);
            assert!(
                e["from"].is_null()
                    || e["to"].is_null()
                    || e["from"]["carriers"] != e["to"]["carriers"],
                "a handoff from a carrier to themself: {e}"
            );
            if let Some(m) = e["evidence"]["method"].as_str() {
                methods.push(m.to_string());
            }
        }
    }
    for m in ["operator", "proximity", "two_party"] {
        assert!(
            methods.iter().any(|x| x == m),
            "no {m} handoff in {methods:?}"
        );
    }
    // ETA errors were measured at the real handoffs of the moving legs.
    let (_, acc) = curl("GET", &format!("{ev}/relays/flag/accuracy"), None, None);
    let acc = json_of(&acc);
    let legs = acc["legs"].as_array().expect("legs");
    assert!(
        legs.len() >= 6
            && legs
                .iter()
                .filter(|l| l["predictions"].as_u64().unwrap_or(0) > 3)
                .count()
                >= 6,
        "{acc}"
    );
    // By lead time, per leg and pooled: every prediction is in exactly one group, and each
    // leg's errors are also given as a share of its real duration.
    let count = |groups: &serde_json::Value| -> u64 {
        groups
            .as_array()
            .map(|g| g.iter().filter_map(|x| x["predictions"].as_u64()).sum())
            .unwrap_or(0)
    };
    let total: u64 = legs.iter().filter_map(|l| l["predictions"].as_u64()).sum();
    assert_eq!(count(&acc["by_lead"]), total, "{acc}");
    for l in legs {
        assert_eq!(
            count(&l["by_lead"]),
            l["predictions"].as_u64().unwrap_or(0),
            "{l}"
        );
    }
    assert!(
        legs.iter()
            .any(|l| l["by_lead"][0]["median_abs_error_pct"].as_f64().is_some()),
        "{acc}"
    );

    // Ctrl-C stops it cleanly.
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

/// `handoff log verify` on the text, through the binary; returns the number of entries.
fn handoff_core_verify(log: &str) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("log.ndjson");
    std::fs::write(&p, log).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["log", "verify"])
        .arg(&p)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text.split_whitespace()
        .skip_while(|w| *w != "ok,")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
