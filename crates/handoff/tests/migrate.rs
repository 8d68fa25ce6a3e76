//! `handoff migrate`, end to end through the real binary. A source database is filled through a
//! real server on a SQLite file, with the server tests' relay through Paris and their clock
//! that only the test moves: two plan versions, four devices, pings from the runner and the
//! cyclist (and a late batch of the runner's), an operator handoff and a two-party one with the
//! giver's code, a shift, a time correction, and a webhook whose receiver fails once (so the
//! delivery log holds a retry). Then `handoff migrate` copies it, and a server on the copy, at
//! the same clock, must answer every read the same as the server on the source did: the live
//! view (public and operator, every leg), the plan, the custody log, the GPX and GeoJSON
//! tracks, the calendar, the pings CSV, the devices, webhooks and deliveries. `handoff log
//! verify` passes on the copy, a device token from before works on it, `handoff serve` on it
//! accepts the copied admin token, and a second migrate into it is refused. SQLite to SQLite
//! always; SQLite to PostgreSQL and back to a new SQLite file when `HANDOFF_TEST_PG` is set.

#[path = "../../handoff-server/tests/common/mod.rs"]
#[allow(dead_code)]
mod relay;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use handoff_server::auth::AdminToken;
use handoff_store::postgres::testing::TestSchema;
use jiff::Timestamp;
use relay::{
    ADMIN, BIKE, EVENT, PLAN, RUN, Server, TestClock, TestDb, as_admin, at, plan,
    planned_speed_mps, walk,
};
use serde_json::{Value, json};

/// Runs the binary off the async runtime (the servers of the test keep answering meanwhile).
async fn handoff(args: Vec<String>, env: Vec<(&'static str, String)>) -> Result<Output> {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
        cmd.args(&args).env_remove("HANDOFF_ADMIN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().context("run handoff")
    })
    .await?
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn migrate(from: &str, to: &str) -> Result<Output> {
    let args = ["migrate", "--from", from, "--to", to];
    handoff(args.iter().map(|a| (*a).to_owned()).collect(), Vec::new()).await
}

/// A webhook receiver on 127.0.0.1 that answers 500 to its first request and 200 after.
fn receiver() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 { "500 Oops" } else { "200 OK" };
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Ok(url)
}

/// The clock at which every server is compared: the cyclist has finished, the last leg is on.
fn compared_at() -> Timestamp {
    at(1_200)
}

/// Fills a database through a real server: everything an event is made of. Returns the device
/// tokens (one per leg).
async fn fill(db: Arc<TestDb>) -> Result<Vec<String>> {
    let mut s = Server::open(db, TestClock::new(at(-120))).await?;
    s.state.webhooks.allow_private_targets(true);
    s.state.webhooks.set_backoff(Duration::from_millis(20));
    s.upload(EVENT, PLAN).await?;
    s.set_clock(at(-60));
    s.upload(
        EVENT,
        &PLAN.replace("through Paris\"", "through Paris, version 2\""),
    )
    .await?;
    for (device, carrier) in relay::DEVICES.iter().zip(relay::CARRIERS) {
        let token = s.device(device, carrier).await?;
        s.tokens.push(token);
    }
    let hook = s
        .admin_post(
            &format!("/api/v1/events/{EVENT}/webhooks"),
            json!({ "url": receiver()?, "secret": "a-long-random-webhook-secret", "kinds": ["handoff"] }),
        )
        .await?;
    ensure!(hook["id"].is_string(), "{hook}");

    // The operator hands the stage on to the runner at its planned end.
    s.tick_at(at(120)).await;
    let first = s.handoff(EVENT, "flag").await?;
    let plan = plan();
    let mut noise = relay::Lcg::new(17);
    let run = walk(
        &plan,
        RUN,
        at(120),
        0.9 * planned_speed_mps(&plan, RUN),
        5,
        Some(&mut noise),
    );
    // Ten of the runner's fixes are held back by her phone: they arrive late, after the bike's.
    let (late, on_time): (Vec<_>, Vec<_>) = run
        .iter()
        .enumerate()
        .partition(|(i, _)| (20..30).contains(i));
    let on_time: Vec<_> = on_time.into_iter().map(|(_, f)| *f).collect();
    s.send_walk(RUN, &on_time).await?;
    // Two-party: the runner's phone shows a code, the cyclist's phone enters it.
    let code_path = format!("/api/v1/events/{EVENT}/relays/flag/handoffs/code");
    let (status, code) =
        relay::answer(s.http.post(s.url(&code_path)).bearer_auth(&s.tokens[RUN])).await?;
    ensure!(status.is_success(), "{status} {code}");
    let (status, second) = relay::answer(
        s.http
            .post(s.url(&format!("/api/v1/events/{EVENT}/relays/flag/handoffs")))
            .bearer_auth(&s.tokens[BIKE])
            .json(&json!({ "code": code["code"] })),
    )
    .await?;
    ensure!(
        status.as_u16() == 201 && second["evidence"]["method"] == "two_party",
        "{status} {second}"
    );
    let bike_start = run.last().context("a run")?.t;
    let bike = walk(
        &plan,
        BIKE,
        bike_start,
        planned_speed_mps(&plan, BIKE),
        5,
        Some(&mut noise),
    );
    s.send_walk(BIKE, &bike).await?;
    let late: Vec<Value> = late.iter().map(|(_, f)| f.json()).collect();
    s.send(&s.tokens[RUN].clone(), &late).await?;
    // The operator shifts what remains by two minutes, then corrects the first handoff's time.
    s.admin_post(
        &format!("/api/v1/events/{EVENT}/shift"),
        json!({ "minutes": 2 }),
    )
    .await?;
    s.admin_post(
        &format!("/api/v1/events/{EVENT}/relays/flag/handoffs"),
        json!({ "kind": "correction", "corrects": first["seq"], "at": at(118).to_string() }),
    )
    .await?;
    // Two handoffs and a correction, the first delivered at the second attempt: four attempts
    // in the log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = as_admin(
            s.http
                .get(s.url(&format!("/api/v1/events/{EVENT}/webhooks/deliveries"))),
        )
        .await?;
        if log["deliveries"].as_array().is_some_and(|d| d.len() >= 4) {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "deliveries: {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tokens = s.tokens.clone();
    s.stop().await?;
    Ok(tokens)
}

/// Every read the comparison covers: path → body.
async fn answers(s: &Server) -> Result<BTreeMap<String, String>> {
    s.tick_at(compared_at()).await;
    let e = format!("/api/v1/events/{EVENT}");
    let reads = [
        ("/api/v1/events".to_owned(), false),
        (e.clone(), false),
        (format!("{e}/live"), false),
        (format!("{e}/live?legs=full"), true),
        (format!("{e}/relays/flag/custody"), false),
        (format!("{e}/relays/flag/track.gpx"), false),
        (format!("{e}/relays/flag/track.geojson"), false),
        (format!("{e}/relays/flag/accuracy"), false),
        (format!("{e}/calendar.ics"), false),
        (format!("{e}/pings.csv"), true),
        (format!("{e}/devices"), true),
        (format!("{e}/webhooks"), true),
        (format!("{e}/webhooks/deliveries"), true),
    ];
    let mut out = BTreeMap::new();
    for (path, admin) in reads {
        let body = s.text(&path, admin).await?;
        let who = if admin { " (admin)" } else { "" };
        out.insert(format!("{path}{who}"), body);
    }
    Ok(out)
}

/// The same answers, path by path (a difference names its path).
fn assert_same_answers(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, body) in want {
        assert_eq!(Some(body), got.get(path), "{path} differs");
    }
}

/// What a migrated database must be, against the answers of the source at the same clock.
/// `ping_at`: when the device token's test ping was taken (a new instant for each target, so it
/// is never a duplicate of one copied).
async fn check_target(
    db: Arc<TestDb>,
    source: &BTreeMap<String, String>,
    tokens: &[String],
    ping_at: Timestamp,
) -> Result<()> {
    let target = Server::open(db, TestClock::new(compared_at())).await?;
    let got = answers(&target).await?;
    assert_same_answers(source, &got);
    // The custody log verifies on the copy, read over HTTP by `handoff log verify`.
    let verify = handoff(
        [
            "log",
            "verify",
            "--server",
            &target.base,
            "--event",
            EVENT,
            "--relay",
            "flag",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect(),
        Vec::new(),
    )
    .await?;
    ensure!(verify.status.success(), "{}", text(&verify));
    ensure!(text(&verify).contains("ok, "), "{}", text(&verify));
    // A device token from before the migrate still works on the copy.
    let fix = json!({ "t": ping_at.to_string(), "lon": 2.3175, "lat": 48.8667, "acc": 5.0 });
    let sent = target.send(&tokens[relay::LOOP], &[fix]).await?;
    ensure!(sent["accepted"] == 1, "{sent}");
    target.stop().await?;
    Ok(())
}

/// `handoff serve` on the copy, with no HANDOFF_ADMIN_TOKEN: it takes the source's admin
/// token (its hash came along) and a device token, over real HTTP.
fn serve_accepts_the_old_tokens(db: &str, device_token: &str) -> Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
        .env_remove("HANDOFF_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .context("serve")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let _guard = KillOnDrop(child);
    let serving = lines.next().context("a line")??;
    let base = serving
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("an address in {serving}"))?
        .to_owned();
    let said = lines.next().context("a line")??;
    ensure!(
        said.starts_with("admin token: the one printed on the first start"),
        "{said}"
    );
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let (status, _) = http("GET", &format!("{base}/api/v1/events"), ADMIN, "")?;
    ensure!(status == 200, "the admin token: {status}");
    let ping = json!([{ "t": Timestamp::now().to_string(), "lon": 2.3175, "lat": 48.8667 }]);
    let (status, body) = http(
        "POST",
        &format!("{base}/api/v1/pings"),
        device_token,
        &ping.to_string(),
    )?;
    ensure!(
        status == 200 && body.contains("\"accepted\":1"),
        "{status} {body}"
    );
    Ok(())
}

/// Kills a child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One blocking HTTP/1.1 request: the status and the body.
fn http(method: &str, url: &str, token: &str, body: &str) -> Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http url")?;
    let (host, path) = rest.split_once('/').context("a path")?;
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a status")?;
    Ok((
        status,
        resp.split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned(),
    ))
}

/// The source's database, filled, with its admin token's hash beside it (as `handoff serve`
/// keeps a generated one), and the answers of a server on it at the comparison's clock.
async fn source() -> Result<(Arc<TestDb>, BTreeMap<String, String>, Vec<String>)> {
    let db = Arc::new(TestDb::Sqlite(tempfile::tempdir()?));
    let tokens = fill(Arc::clone(&db)).await?;
    let TestDb::Sqlite(dir) = &*db else {
        unreachable!("a SQLite source")
    };
    std::fs::write(
        dir.path().join("h.db.admin-token.sha256"),
        AdminToken::new(ADMIN).hash(),
    )?;
    let server = Server::open(Arc::clone(&db), TestClock::new(compared_at())).await?;
    let answers = answers(&server).await?;
    check_scenario(&answers)?;
    server.stop().await?;
    Ok((db, answers, tokens))
}

/// The source holds what the scenario made, so that the comparisons compare something.
fn check_scenario(answers: &BTreeMap<String, String>) -> Result<()> {
    let read = |path: &str| {
        answers
            .get(&format!("/api/v1/events/{EVENT}{path}"))
            .with_context(|| format!("{path} was read"))
    };
    let kinds: Vec<String> = read("/relays/flag/custody")?
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).map(|e| e["kind"].to_string()))
        .collect::<Result<_, _>>()?;
    ensure!(
        kinds
            == [
                "genesis",
                "plan",
                "handoff",
                "handoff",
                "shift",
                "correction"
            ]
            .map(|k| format!("\"{k}\"")),
        "{kinds:?}"
    );
    let live: Value = serde_json::from_str(read("/live?legs=full (admin)")?)?;
    ensure!(live["relays"][0]["current_leg"] == 3, "{live}");
    ensure!(live["relays"][0]["legs"][0]["actual_end"] == at(118).to_string().as_str());
    let pings = read("/pings.csv (admin)")?.lines().count() - 1;
    ensure!(pings > 100, "{pings} pings");
    let log: Value = serde_json::from_str(read("/webhooks/deliveries (admin)")?)?;
    let ok: Vec<&Value> = log["deliveries"]
        .as_array()
        .context("deliveries")?
        .iter()
        .map(|d| &d["ok"])
        .collect();
    ensure!(
        ok == [&json!(true), &json!(true), &json!(true), &json!(false)],
        "{log}"
    );
    Ok(())
}

fn sqlite_url(db: &TestDb) -> String {
    match db {
        TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("h.db").display()),
        TestDb::Postgres(pg) => pg.url(),
    }
}

/// A migrate that must succeed: its summary names what it copied.
async fn migrated(from: &str, to: &str) -> Result<String> {
    let out = migrate(from, to).await?;
    let said = text(&out);
    ensure!(out.status.success(), "{said}");
    let summary = said
        .lines()
        .find(|l| l.starts_with("migrated "))
        .with_context(|| format!("a summary in {said}"))?
        .to_owned();
    for part in [
        "2 plan versions",
        "4 devices",
        "1 webhook,",
        "4 webhook deliveries",
        "in 1 log (every log verified)",
        "the admin token's hash copied",
    ] {
        ensure!(summary.contains(part), "{part}: {summary}");
    }
    for table in ["plans", "pings", "custody", "changes"] {
        ensure!(
            said.lines().any(|l| l.trim_start().starts_with(table)),
            "a line for {table}: {said}"
        );
    }
    ensure!(!said.contains("handoff_test:"), "no password: {said}");
    Ok(summary)
}

/// A second migrate into a database that holds the copy: refused, and nothing written.
async fn refused_again(from: &str, to: &str) -> Result<()> {
    let out = migrate(from, to).await?;
    let said = text(&out);
    ensure!(!out.status.success(), "{said}");
    ensure!(
        said.contains("already holds data") && said.contains("pings: "),
        "{said}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_is_the_same_database() -> Result<()> {
    let (source_db, source, tokens) = source().await?;
    let target_db = Arc::new(TestDb::Sqlite(tempfile::tempdir()?));
    let (from, to) = (sqlite_url(&source_db), sqlite_url(&target_db));
    let summary = migrated(&from, &to).await?;
    ensure!(summary.contains(&format!("to {to}")), "{summary}");
    check_target(Arc::clone(&target_db), &source, &tokens, at(1_190)).await?;
    refused_again(&from, &to).await?;
    let to_serve = to.clone();
    let token = tokens[RUN].clone();
    tokio::task::spawn_blocking(move || serve_accepts_the_old_tokens(&to_serve, &token)).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back_is_the_same_database() -> Result<()> {
    let Some(pg) = TestSchema::create("sqlite_to_postgres_and_back_is_the_same_database").await?
    else {
        return Ok(());
    };
    let (source_db, source, tokens) = source().await?;
    let pg_db = Arc::new(TestDb::Postgres(Box::new(pg)));
    let (from, to) = (sqlite_url(&source_db), sqlite_url(&pg_db));
    let summary = migrated(&from, &to).await?;
    ensure!(
        summary.contains("to postgres://127.0.0.1:5432/"),
        "{summary}"
    );
    check_target(Arc::clone(&pg_db), &source, &tokens, at(1_190)).await?;
    refused_again(&from, &to).await?;
    // And from PostgreSQL into a new SQLite file: the same again (the device token's ping that
    // `check_target` sent is in both now, so compare these two with each other).
    let back_db = Arc::new(TestDb::Sqlite(tempfile::tempdir()?));
    let back = sqlite_url(&back_db);
    migrated(&to, &back).await?;
    let on_pg = Server::open(Arc::clone(&pg_db), TestClock::new(compared_at())).await?;
    let pg_answers = answers(&on_pg).await?;
    on_pg.stop().await?;
    check_target(back_db, &pg_answers, &tokens, at(1_191)).await?;
    let token = tokens[RUN].clone();
    tokio::task::spawn_blocking(move || serve_accepts_the_old_tokens(&to, &token)).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_migrated_is_refused_with_a_reason_and_nothing_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let at_dir = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let db = dir.path().join("h.db");
    handoff_store::SqliteStore::open(&db)?.close().await?;
    let same = format!("{}/./h.db", dir.path().display());
    for (from, to, says) in [
        (at_dir("h.db"), same, "the same database"),
        (
            at_dir("none.db"),
            at_dir("new.db"),
            "there is no database at",
        ),
        (
            at_dir("h.db"),
            at_dir("no-such-folder/new.db"),
            "choose another --to",
        ),
        (
            "mysql://u:s3cret@db/h".to_owned(),
            at_dir("new.db"),
            "unknown database URL scheme `mysql://`",
        ),
        (
            at_dir("h.db"),
            "postgres://u:s3cret@127.0.0.1:1/h".to_owned(),
            "cannot open the PostgreSQL database 127.0.0.1:1/h",
        ),
    ] {
        let out = migrate(&from, &to).await?;
        let said = text(&out);
        ensure!(!out.status.success(), "{from} → {to}: {said}");
        ensure!(said.contains(says), "{from} → {to}: {said}");
        ensure!(!said.contains("s3cret"), "{said}");
    }
    ensure!(!dir.path().join("new.db").exists(), "nothing created");
    ensure!(!Path::new(&dir.path().join("no-such-folder")).exists());

    // A new file's folder keeps another admin token's hash: refused after the copy, before
    // the commit, and the new file is removed again (the other hash is left alone).
    std::fs::write(dir.path().join("h.db.admin-token.sha256"), "source-hash")?;
    let other = dir.path().join("new.db.admin-token.sha256");
    std::fs::write(&other, "another-hash")?;
    let out = migrate(&at_dir("h.db"), &at_dir("new.db")).await?;
    let said = text(&out);
    ensure!(!out.status.success(), "{said}");
    ensure!(
        said.contains("keeps another admin token's hash") && said.contains("remove "),
        "{said}"
    );
    ensure!(
        !dir.path().join("new.db").exists(),
        "the new file was removed"
    );
    ensure!(std::fs::read_to_string(&other)? == "another-hash");
    Ok(())
}
