//! `handoff demo`: the Olympic flag handover, live, in one command. It starts the real server
//! on an embedded SQLite database, uploads the example plan rebased to start now, registers a
//! phone per carrier, and lets the simulator drive every leg through the real ingest path,
//! while the terminal shows a progress bar per relay, each handoff as it happens, and at the
//! end the planned-versus-actual summary with the ETA error at each handoff and the custody
//! logs verified.

pub(crate) mod clock;
mod scenario;
mod sim;

use anyhow::Context;
use clock::DemoClock;
use handoff_core::plan::{NoFiles, Plan};
use handoff_core::schedule::{fmt_signed, local_and_utc_lines};
use handoff_server::auth::{AdminToken, new_token};
use handoff_server::{AppState, Config};
use handoff_store::SqliteStore;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::SignedDuration;
use serde_json::{Value, json};
use sim::{Phone, Sim, Wire};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub struct Options {
    pub listen: String,
    pub data: Option<PathBuf>,
    pub speed: f64,
    /// Stop once everything has finished (instead of serving until Ctrl-C).
    pub exit: bool,
    /// A street basemap to serve (`--basemap`).
    pub basemap: Option<PathBuf>,
}

/// Where the demo keeps its database unless told: the user's data folder, else a temp folder.
fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("handoff").join("demo")
}

/// Every run starts clean: the demo's own files are removed, nothing else in the folder.
fn reset(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    let db = dir.join("demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot reset the demo database"),
        }
    }
    Ok(db)
}

/// Which phone app each carrier "uses" (the stage performers carry none).
const PHONES: &[(&str, &str, Wire)] = &[
    ("cruise-moto", "Tom Cruise", Wire::OsmandQuery),
    ("jagger-phone", "Jagger Eaton", Wire::OwnTracks),
    ("kate-phone", "Kate Courtney", Wire::Ndjson),
    ("mj-phone", "Michael Johnson", Wire::OsmandForm),
];

pub fn run(opts: Options) -> anyhow::Result<ExitCode> {
    if !(opts.speed.is_finite() && opts.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number (2 runs twice as fast)");
    }
    if let Some(b) = &opts.basemap {
        handoff_server::pages::check_basemap(b).map_err(|e| anyhow::anyhow!("--basemap {e}"))?;
    }
    let dir = opts.data.clone().unwrap_or_else(default_data_dir);
    let db = reset(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(opts, db))
}

async fn demo(opts: Options, db: PathBuf) -> anyhow::Result<ExitCode> {
    // Virtual time: the relay starts a few seconds from now and runs compressed.
    let start = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(3))?;
    let source = scenario::rebased_plan(start)?;
    let plan: Arc<Plan> = Arc::new(
        handoff_core::plan::parse(&source, &NoFiles)
            .map_err(|p| anyhow::anyhow!("the demo plan does not parse: {p}"))?,
    );
    let clock = Arc::new(DemoClock::new(
        start,
        3.0 / opts.speed,
        &scenario::spans(&plan, opts.speed),
    ));

    let admin = new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let c = Arc::clone(&clock);
    let state = AppState::open(
        Arc::new(store),
        Config {
            admin: AdminToken::new(&admin),
            clock: Some(Arc::new(move || c.now())),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = &opts.basemap {
        state
            .basemap
            .serve(b)
            .map_err(|e| anyhow::anyhow!("--basemap {e}"))?;
    }
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (try --listen 127.0.0.1:0)",
                opts.listen
            )
        })?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(handoff_server::launch(
        Arc::clone(&state),
        listener,
        None,
        async move {
            let _ = stop_rx.await;
        },
    ));

    let http = reqwest::Client::new();
    let ev = format!("{base}/api/v1/events/{}", plan.event.id);
    let r = http
        .put(&ev)
        .bearer_auth(&admin)
        .header("content-type", "application/toml")
        .body(source.clone())
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "uploading the plan failed: {}",
        r.text().await.unwrap_or_default()
    );
    let mut phones = HashMap::new();
    for (device, carrier, wire) in PHONES {
        let r = http
            .post(format!("{ev}/devices"))
            .bearer_auth(&admin)
            .json(&json!({ "device": device, "carrier": carrier }))
            .send()
            .await?;
        let body: Value = r.json().await?;
        let token = body["token"].as_str().context("device token")?.to_string();
        phones.insert((*carrier).to_string(), Phone::new(device, token, *wire));
    }

    println!("handoff demo: {}", plan.event.name);
    println!("  live page      {base}/e/{}", plan.event.id);
    println!("  console        {base}/e/{}/console", plan.event.id);
    println!("  admin token    {admin}");
    println!("  data           {}", db.display());
    match &opts.basemap {
        Some(b) => println!("  street map     {}", b.display()),
        None => println!(
            "  street map     none (add a city: --basemap FILE.pmtiles, docs/operations.md)"
        ),
    }
    println!(
        "  demo time      the {:.0}-hour relay runs in about {:.0} s; each leg is compressed on its own (speed {})",
        plan.relay("flag")
            .and_then(|r| Some(r.end()?.duration_since(r.start()?).as_secs_f64() / 3600.0))
            .unwrap_or(0.0),
        clock.show_s(),
        opts.speed
    );
    println!();

    let mut sim = Sim::new(
        base.clone(),
        admin.clone(),
        Arc::clone(&clock),
        Arc::clone(&plan),
        phones,
    );
    let tick_ms = (250.0 / opts.speed.sqrt()).clamp(60.0, 250.0) as u64;
    let mut sim_task = tokio::spawn(async move { sim.run(tick_ms).await });
    let watch = watch(&http, &base, &admin, &plan);
    tokio::pin!(watch);
    let outcome = tokio::select! {
        r = &mut watch => Some(r),
        r = &mut sim_task => match r {
            // The phones are done; the server may still be settling the last handoff.
            Ok(Ok(())) => Some(watch.await),
            Ok(Err(e)) => Some(Err(e.context("the simulated phones stopped"))),
            Err(e) => Some(Err(anyhow::anyhow!("the simulator failed: {e}"))),
        },
        _ = tokio::signal::ctrl_c() => None,
    };
    // Every relay shows finished; let the phones and the operator finish their last steps
    // (the arrival entries) before the summary reads the custody logs.
    let outcome = match outcome {
        Some(Ok(())) if !sim_task.is_finished() => {
            match tokio::time::timeout(std::time::Duration::from_secs(20), &mut sim_task).await {
                Ok(Ok(Ok(()))) => Some(Ok(())),
                Ok(Ok(Err(e))) => Some(Err(e.context("the simulated phones stopped"))),
                Ok(Err(e)) => Some(Err(anyhow::anyhow!("the simulator failed: {e}"))),
                Err(_) => Some(Err(anyhow::anyhow!("the simulated phones did not finish"))),
            }
        }
        other => other,
    };
    sim_task.abort();
    let code = match outcome {
        None => {
            println!("\nstopped before the end (Ctrl-C)");
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("\ndemo failed: {e:#}");
            ExitCode::FAILURE
        }
        Some(Ok(())) => {
            let ok = summary(&http, &base, &admin, &plan).await?;
            if opts.exit {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            } else {
                println!(
                    "\nThe relay is over; the live page stays up at {base}/e/{}. Ctrl-C stops.",
                    plan.event.id
                );
                let _ = tokio::signal::ctrl_c().await;
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(code)
}

/// Follows `/live` until every relay has finished: a progress bar per relay, a line per handoff.
async fn watch(http: &reqwest::Client, base: &str, admin: &str, plan: &Plan) -> anyhow::Result<()> {
    // Bars only when someone watches: on a terminal, not in a pipe, a log or `cargo test`.
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let mp = if tty {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:32.cyan/blue}] {msg}")?
        .progress_chars("█▌ ");
    let bars: Vec<ProgressBar> = plan
        .relays
        .iter()
        .map(|r| {
            let pb = mp.add(ProgressBar::new(1000));
            pb.set_style(style.clone());
            pb.set_prefix(r.id.clone());
            pb
        })
        .collect();
    let say = |line: String| {
        if tty {
            let _ = mp.println(line);
        } else {
            println!("{line}");
        }
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let ev = format!("{base}/api/v1/events/{}", plan.event.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30 * 60);
    loop {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the demo did not finish in 30 minutes"
        );
        let live: Value = http
            .get(format!("{ev}/live"))
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        let mut finished = 0;
        for (i, r) in live["relays"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let legs = r["legs"].as_array().map(Vec::as_slice).unwrap_or_default();
            let done = legs.iter().filter(|l| l["status"] == "done").count();
            let frac = r["progress"]["fraction"].as_f64().unwrap_or(0.0);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let pos = (((done as f64) + frac) / legs.len().max(1) as f64 * 1000.0) as u64;
            if let Some(pb) = bars.get(i) {
                pb.set_position(pos);
                let holders = r["holders"]
                    .as_array()
                    .map(|h| {
                        h.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" & ")
                    })
                    .unwrap_or_default();
                let msg = match r["status"].as_str() {
                    Some("finished") => "finished".to_string(),
                    Some("running") => format!("{holders} ({})", r["mode"].as_str().unwrap_or("")),
                    _ => "waiting to start".to_string(),
                };
                pb.set_message(msg);
            }
            let before = seen.get(&id).copied().unwrap_or(0);
            let plan_legs = plan.relay(&id).map_or(&[][..], |r| r.legs.as_slice());
            for l in legs.iter().take(done).skip(before) {
                let i = l["index"].as_u64().and_then(|i| usize::try_from(i).ok());
                let Some(leg) = i.and_then(|i| plan_legs.get(i)) else {
                    continue;
                };
                let who = leg.carriers.join(" & ");
                let next = plan_legs.get(leg.index + 1);
                match next {
                    // One stint: a change of mode, not a handoff.
                    Some(n) if leg.segment => {
                        say(format!("  segment  {id}: {who}, {} → {}", leg.mode, n.mode));
                    }
                    Some(n) => say(format!(
                        "  handoff  {id}: {who} → {}",
                        n.carriers.join(" & ")
                    )),
                    None => say(format!("  handoff  {id}: {who} → the finish")),
                }
            }
            seen.insert(id, done);
            if r["status"] == "finished" {
                finished += 1;
            }
        }
        if finished == plan.relays.len() {
            for pb in &bars {
                pb.finish();
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Planned versus actual per leg, the ETA error at each handoff, how each was verified, and
/// the custody logs re-checked. Returns whether every check held.
async fn summary(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    plan: &Plan,
) -> anyhow::Result<bool> {
    let ev = format!("{base}/api/v1/events/{}", plan.event.id);
    let live: Value = http
        .get(format!("{ev}/live"))
        .bearer_auth(admin)
        .send()
        .await?
        .json()
        .await?;
    let mut ok = true;
    for relay in &plan.relays {
        let log = http
            .get(format!("{ev}/relays/{}/custody", relay.id))
            .send()
            .await?
            .text()
            .await?;
        let acc: Value = http
            .get(format!("{ev}/relays/{}/accuracy", relay.id))
            .send()
            .await?
            .json()
            .await?;
        let entries: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let view = live["relays"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == relay.id.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let mut t = crate::table::new();
        t.set_header([
            "leg",
            "carriers",
            "planned end",
            "actual end",
            "late by",
            "ETA error\nfirst → last",
            "verified",
        ]);
        for leg in &relay.legs {
            let lv = &view["legs"][leg.index];
            let actual: Option<jiff::Timestamp> =
                lv["actual_end"].as_str().and_then(|s| s.parse().ok());
            let late = actual.map(|a| fmt_signed(a.duration_since(leg.end)));
            let a = acc["legs"].as_array().and_then(|ls| {
                ls.iter()
                    .find(|x| x["leg"].as_u64() == Some(leg.index as u64))
            });
            let eta = a.map_or_else(
                || "—".to_string(),
                |a| {
                    format!(
                        "{} → {}\n{} predictions",
                        fmt_signed(SignedDuration::from_secs(
                            a["first_error_s"].as_i64().unwrap_or(0)
                        )),
                        fmt_signed(SignedDuration::from_secs(
                            a["last_error_s"].as_i64().unwrap_or(0)
                        )),
                        a["predictions"]
                    )
                },
            );
            let how = entries
                .iter()
                .rev()
                .find(|e| {
                    e["kind"] == "handoff" && e["from"]["leg"].as_u64() == Some(leg.index as u64)
                })
                .and_then(|e| e["evidence"]["method"].as_str())
                .map(str::to_string);
            // A change of mode by the same carriers is no handoff: nothing to verify.
            let how = match how {
                Some(m) => m,
                None if leg.segment => "— (segment change)".to_string(),
                None => {
                    ok = false;
                    "— (not verified)".to_string()
                }
            };
            t.add_row([
                (leg.index + 1).to_string(),
                format!("{}\n({})", leg.carriers.join(", "), leg.mode),
                local_and_utc_lines(leg.end, &leg.end_zone),
                actual.map_or_else(|| "—".into(), |a| local_and_utc_lines(a, &leg.end_zone)),
                late.unwrap_or_else(|| "—".into()),
                eta,
                how,
            ]);
        }
        crate::table::keep_whole(&mut t, &[0, 2, 3, 4, 5, 6]);
        println!("\n{} — {}", relay.name, relay.object);
        println!("{t}");
        match handoff_core::custody::verify(&log) {
            Ok(n) => println!("custody log: {n} entries, every hash and link verified"),
            Err(e) => {
                ok = false;
                println!("custody log: BROKEN: {e}");
            }
        }
    }
    Ok(ok)
}
