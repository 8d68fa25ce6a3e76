//! `handoff plan check` run as the real binary against a corpus of plans.
//!
//! `tests/fixtures/broken/NN-name/plan.toml` are each broken in exactly one way (named on their
//! first line, `# broken: …`); most start from the same small flag-handover plan, the race-mode
//! ones (51–59, 63) from `fixtures/valid/race`. For each we pin the whole contract a user or an
//! editor relies on: exit code 1, one `FILE:LINE:COL: message` line per problem, the position of
//! the value to change (columns in characters, 1-based) and a distinctive part of the message.
//! The tables are checked in full before failing, so one run lists every mismatch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `(fixture dir, line, column, part of the message)`: one expected problem line. A fixture with
/// several problems has several rows, in source order.
type Case = (&'static str, usize, usize, &'static str);

/// `(line, column, part of the message)`: one expected line of one fixture's report.
type Row = (usize, usize, &'static str);

#[rustfmt::skip]
const BROKEN: &[Case] = &[
    // The TOML parser's own reports: where it notices the problem.
    ("01-toml-unclosed-string", 38, 23, "invalid basic string"),
    // Misleading (reported to the lead): the array on line 28 lacks its `]`; the parser only
    // notices on the next line and asks for a comma. Pinned as it is, not as it should be.
    ("02-toml-unclosed-array", 29, 1, "missing comma between array elements"),
    ("03-toml-unclosed-table-header", 36, 10, "unclosed array table"),
    ("04-unknown-key", 50, 1, "unknown field `colour`, expected one of `name`, `carriers`, `mode`"),
    // An unknown key does not hide the other problems: all are reported in one run.
    ("64-unknown-keys-and-other-problems", 5, 1, "unknown field `nmae`, expected one of `id`, `name`"),
    ("64-unknown-keys-and-other-problems", 29, 16, "latitude 91 is out of range"),
    ("64-unknown-keys-and-other-problems", 51, 1, "unknown field `colour`"),
    // Zones and times.
    ("05-bad-zone", 29, 12, "unknown time zone `Europe/Pariss`"),
    ("06-bad-timestamp", 44, 9, "month"),
    ("07-bad-zone-in-timestamp", 44, 9, "time zone `Europe/Pariss`"),
    ("08-offset-conflicts-with-zone", 44, 9, "has offset `+01`"),
    ("42-timestamp-without-offset", 44, 9, "is not a timestamp like 2024-08-11T23:05:00+02:00[Europe/Paris]"),
    ("43-milestone-date-does-not-exist", 33, 8, "`2028-02-30` is not a date like 2028-07-14"),
    // Coordinates.
    ("09-latitude-91", 28, 16, "latitude 91 is out of range"),
    ("10-longitude-181", 28, 7, "longitude 181 is out of range"),
    ("11-at-one-number", 28, 6, "expected [lon, lat] (2 numbers), found 1"),
    // References, modes and ids.
    ("12-unknown-place-in-leg", 43, 9, "unknown place `stade-de-france`; known places: lax, le-bourget, stade, trocadero"),
    ("13-unknown-place-in-milestone", 34, 9, "unknown place `la-coliseum`"),
    ("14-unknown-place-in-route", 56, 37, "unknown place `los-angeles`"),
    ("15-unknown-mode", 49, 8, "unknown mode `motorbike`; use one of stage|walk|run"),
    ("16-duplicate-place-id", 26, 6, "duplicate place id `stade`"),
    ("17-duplicate-relay-id", 60, 6, "duplicate relay id `flag`"),
    ("18-bad-event-id", 3, 6, "event id `Flag Mini` must be 1 to 64 characters of a-z, 0-9 and -"),
    ("49-empty-event-name", 4, 8, "event name is empty"),
    // Handoffs, durations and speeds.
    ("19-gap-beyond-exchange-radius", 56, 9, "leg 2 ends 732 m from where leg 3 starts; exchange radius is 150 m"),
    ("20-negative-duration", 51, 12, "duration `-25m` is negative"),
    ("21-bad-duration-text", 45, 12, "`four minutes` is not a duration"),
    ("22-duration-and-end", 45, 12, "give `duration` or `end`, not both"),
    ("23-end-before-start", 45, 7, "leg 1 ends 1h before it starts"),
    ("24-overlapping-start", 50, 9, "leg 2 starts 2m before leg 1 ends; legs of a relay cannot overlap"),
    ("25-impossible-speed", 51, 12, "466.2 km/h is implausible for motorcycle"),
    // The wording of this one is reported (`inf km/h`); see `zero_duration_is_not_an_infinite_speed`.
    ("26-zero-duration-moving-leg", 51, 12, "leg 2 covers 7.8 km in 0s"),
    ("41-stage-without-duration", 40, 1, "a leg at a place needs `duration` (or `end`)"),
    ("45-negative-exchange-radius", 52, 21, "exchange radius -5 m must be a non-negative number of metres"),
    ("48-flight-too-slow", 57, 12, "30.4 km/h is implausible for flight"),
    // Route files and routes.
    ("27-missing-route-file", 50, 18, "cannot read route file `routes/paris.gpx`"),
    ("28-route-file-outside-folder", 50, 18, "is outside the plan's folder"),
    ("29-absolute-route-path", 50, 18, "is an absolute path"),
    ("30-gpx-without-points", 50, 18, "GPX file has no track or route points"),
    ("31-geojson-polygon", 50, 18, "GeoJSON geometry is a Polygon"),
    ("32-malformed-gpx", 50, 18, "not valid GPX"),
    ("33-route-with-one-point", 50, 9, "a route needs at least 2 points, this one has 1"),
    ("46-route-in-two-forms", 50, 9, "give the route as exactly one of"),
    ("47-geodesic-route-without-to", 56, 9, "a geodesic route needs both `from` and `to`"),
    // Leg shape.
    ("34-empty-carriers", 48, 12, "carriers is empty"),
    ("35-missing-carriers", 48, 8, "this leg has no carriers"),
    ("36-route-and-place", 50, 9, "either a `route` (a line) or a `place` (a point), not both"),
    ("37-neither-route-nor-place", 49, 8, "this leg has neither a `route` nor a `place`"),
    ("38-stage-with-route", 42, 8, "a stage leg happens at one place"),
    ("39-first-leg-without-start", 42, 8, "the first leg needs a `start`"),
    ("40-milestone-date-and-at", 31, 1, "needs exactly one of `date` or `at`"),
    // Column 32 counts characters: the line holds "Zoé Élise Ñúñez" before the empty name.
    ("44-empty-carrier-name", 41, 32, "a carrier's name is empty"),
    // Two independent problems: both reported in one run, in source order.
    ("50-two-problems", 28, 16, "latitude 91 is out of range"),
    ("50-two-problems", 49, 8, "unknown mode `motorbike`"),
    // Race mode.
    ("51-race-unknown-course", 45, 10, "unknown course `coastal`; known courses: coast"),
    ("52-race-relay-without-carriers", 43, 6, "a race relay needs its team's `carriers`"),
    ("53-course-leg-with-end", 21, 7, "a course leg has no fixed time"),
    ("54-race-relay-without-start", 43, 6, "a race relay needs its team's `start`"),
    ("55-race-empty-carriers", 47, 12, "carriers is empty"),
    ("56-duplicate-course-id", 36, 6, "duplicate course id `coast`"),
    ("57-course-without-legs", 35, 1, "course `inland` has no legs"),
    ("58-relay-with-course-and-legs", 45, 10, "a relay runs either a `course` or its own `legs`, not both"),
    ("59-course-gap-beyond-exchange-radius", 27, 9, "leg 1 ends 1.1 km from where leg 2 starts; exchange radius is 30 m"),
    // Out-of-range durations (a huge public delay overflowed once and published at once).
    ("65-public-delay-too-long", 6, 16, "duration `1000000000h` is too long: at most 24h"),
    ("66-leg-duration-too-long", 51, 12, "duration `800h` is too long: at most 30 days (720h)"),
];

/// Fixtures with a test of their own below (they were validator bugs once: a cascade, a wrong
/// position, a misleading message).
const KNOWN_VALIDATOR_BUGS: &[&str] = &[
    "60-bad-place-cascades",
    "61-route-point-latitude-91",
    "62-negative-public-delay",
    "63-course-leg-with-start",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// `handoff plan check ARGS…` run from `dir`, so the printed FILE is exactly the argument.
fn plan_check(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
        .current_dir(dir)
        .args(["plan", "check"])
        .args(args)
        .output()
        .expect("run the handoff binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything wrong with one broken fixture's report, as readable lines (empty when it matches).
/// `forbidden` is a part no message may contain.
fn mismatches(dir: &str, expected: &[Row], forbidden: Option<&str>) -> Vec<String> {
    let file = format!("{dir}/plan.toml");
    if !fixtures().join("broken").join(&file).is_file() {
        return vec![format!("{dir}: fixture {file} is missing")];
    }
    let out = plan_check(&fixtures().join("broken"), &[&file]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let mut bad = Vec::new();
    if out.status.code() != Some(1) {
        bad.push(format!(
            "{dir}: exit status {:?}, expected 1 (stderr: {})",
            out.status.code(),
            text(&out.stderr).trim()
        ));
    }
    if lines.len() != expected.len() {
        bad.push(format!(
            "{dir}: {} problem lines, expected {}:\n      {}",
            lines.len(),
            expected.len(),
            if lines.is_empty() {
                "(none)".to_string()
            } else {
                lines.join("\n      ")
            }
        ));
    }
    for (i, (line, col, needle)) in expected.iter().enumerate() {
        let prefix = format!("{file}:{line}:{col}: ");
        match lines.get(i) {
            Some(got) if got.starts_with(&prefix) && got.contains(needle) => {}
            Some(got) => bad.push(format!(
                "{dir}: line {}: expected `{prefix}…{needle}…`\n      got `{got}`",
                i + 1
            )),
            None => bad.push(format!(
                "{dir}: no line {}: expected `{prefix}…{needle}…`",
                i + 1
            )),
        }
    }
    if let Some(f) = forbidden {
        for got in lines.iter().filter(|l| l.contains(f)) {
            bad.push(format!("{dir}: a message says `{f}`: `{got}`"));
        }
    }
    bad
}

fn assert_no_mismatches(bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{} mismatch(es):\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}

/// One case per fixture dir, keeping the rows' order (source order within a fixture).
fn grouped(cases: &[Case]) -> Vec<(&'static str, Vec<Row>)> {
    let mut out: Vec<(&'static str, Vec<Row>)> = Vec::new();
    for &(dir, line, col, needle) in cases {
        match out.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, rows)) => rows.push((line, col, needle)),
            None => out.push((dir, vec![(line, col, needle)])),
        }
    }
    out
}

#[test]
fn each_broken_plan_is_reported_at_the_value_to_change() {
    let bad: Vec<String> = grouped(BROKEN)
        .iter()
        .flat_map(|(dir, rows)| mismatches(dir, rows, None))
        .collect();
    assert_no_mismatches(&bad);
}

#[test]
fn every_broken_fixture_is_in_a_table_and_says_what_is_broken() {
    let tabled: Vec<&str> = BROKEN
        .iter()
        .map(|c| c.0)
        .chain(KNOWN_VALIDATOR_BUGS.iter().copied())
        .collect();
    let mut bad = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(fixtures().join("broken")).expect("read fixtures/broken") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        count += 1;
        if !tabled.contains(&name.as_str()) {
            bad.push(format!("{name}: not in BROKEN nor KNOWN_VALIDATOR_BUGS"));
        }
        let first = std::fs::read_to_string(path.join("plan.toml"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string));
        if !first.is_some_and(|l| l.starts_with("# broken: ")) {
            bad.push(format!(
                "{name}: plan.toml does not start with `# broken: <what>`"
            ));
        }
    }
    if count < 30 {
        bad.push(format!(
            "only {count} broken fixtures, the corpus needs at least 30"
        ));
    }
    assert_no_mismatches(&bad);
}

/// `(file, its one line on stdout)`: a valid plan gets an `ok` line with what it holds, and
/// nothing on stderr (every line of `plan check` is on stdout).
const VALID: &[(&str, &str)] = &[
    ("flag/plan.toml", "flag/plan.toml: ok (1 relay, 5 legs)"),
    ("race/plan.toml", "race/plan.toml: ok (2 relays, 6 legs)"),
    // Two teams with a "Runner 1": valid, with a note on how their devices tell them apart.
    (
        "race-shared-names/plan.toml",
        "race-shared-names/plan.toml: ok (2 relays, 6 legs)\n\
         race-shared-names/plan.toml: note: 2 carrier names appear in several relays (\"Runner 1\" \
         in 2); register each of their devices with its relay, POST …/devices {\"device\", \
         \"carrier\", \"relay\"}, so teams never see each other's pings, codes or handoffs",
    ),
];

#[test]
fn valid_plans_get_one_ok_line_on_stdout() {
    let mut bad = Vec::new();
    for (file, line) in VALID {
        let out = plan_check(&fixtures().join("valid"), &[file]);
        let stdout = text(&out.stdout);
        if out.status.code() != Some(0) || stdout != format!("{line}\n") || !out.stderr.is_empty() {
            bad.push(format!(
                "{file}: exit {:?}, expected `{line}`; stdout:\n{stdout}stderr:\n{}",
                out.status.code(),
                text(&out.stderr)
            ));
        }
    }
    assert_no_mismatches(&bad);
}

#[test]
fn several_files_report_only_the_broken_ones_and_fail() {
    let out = plan_check(
        &fixtures(),
        &[
            "valid/flag/plan.toml",
            "broken/09-latitude-91/plan.toml",
            "valid/race/plan.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("valid/flag/plan.toml: ok ("),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("broken/09-latitude-91/plan.toml:28:16: latitude 91"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("valid/race/plan.toml: ok ("),
        "{stdout}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = fixtures();
    let out = plan_check(&dir, &["no-such-dir/plan.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("no-such-dir/plan.toml") && all.contains("cannot read"),
        "unclear error: {all}"
    );
}

// Former validator bugs, each pinned by its own test.

#[test]
fn a_bad_place_is_reported_once_not_at_each_use() {
    assert_no_mismatches(&mismatches(
        "60-bad-place-cascades",
        &[(22, 19, "latitude 91 is out of range")],
        Some("unknown place"),
    ));
}

#[test]
fn an_inline_route_point_out_of_range_is_reported_at_the_point() {
    assert_no_mismatches(&mismatches(
        "61-route-point-latitude-91",
        &[(50, 42, "91")],
        None,
    ));
}

#[test]
fn a_negative_public_delay_is_not_explained_as_a_leg() {
    assert_no_mismatches(&mismatches(
        "62-negative-public-delay",
        &[(6, 16, "is negative")],
        Some("leg"),
    ));
}

#[test]
fn zero_duration_is_not_an_infinite_speed() {
    assert_no_mismatches(&mismatches(
        "26-zero-duration-moving-leg",
        &[(51, 12, "0s")],
        Some("inf km/h"),
    ));
}

#[test]
fn a_course_leg_with_start_is_rejected() {
    assert_no_mismatches(&mismatches(
        "63-course-leg-with-start",
        &[(22, 9, "course leg")],
        None,
    ));
}
