//! The race before the phones start: the plan uploaded (the course and one relay per team, all
//! inline), one device registered per runner, and every handoff that already happened (the
//! race has been on for hours) recorded by the operator with its real time, so the live state
//! starts where the race is and the exchanges during the run are verified by proximity.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;
use reqwest::Client;
use serde_json::json;

use super::course::{Course, Team};
use crate::target::Target;

/// One runner's phone.
pub struct Phone {
    pub team: u32,
    pub runner: u8,
    pub token: String,
}

/// How long each step of the setup took.
pub struct Setup {
    pub plan_bytes: usize,
    pub plan_s: f64,
    pub devices_s: f64,
    pub handoffs: u64,
    pub handoffs_s: f64,
}

pub fn plan_toml(event: &str, course: &Course, teams: &[Team], runners: usize) -> String {
    let mut s = format!(
        "[event]\nid = \"{event}\"\nname = \"loadgen race: {} teams × {runners} runners\"\n\n",
        teams.len()
    );
    s.push_str(&course.toml("coast"));
    for t in teams {
        s.push_str(&t.toml("coast", runners));
    }
    s
}

pub async fn upload(
    client: &Client,
    target: &Target,
    event: &str,
    plan: String,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let r = client
        .put(target.base.join(&format!("api/v1/events/{event}"))?)
        .bearer_auth(&target.admin_token)
        .header("content-type", "application/toml")
        .timeout(Duration::from_secs(300))
        .body(plan)
        .send()
        .await?;
    if !r.status().is_success() {
        let status = r.status();
        let mut text = r.text().await.unwrap_or_default();
        text.truncate(2_000);
        bail!("uploading the race plan failed: {status} {text}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Registers one device per runner (`relay` names the team, for servers that bind a device to
/// a carrier of one relay); device ids are unique per run.
pub async fn register(
    client: &Client,
    target: &Target,
    event: &str,
    teams: &Arc<Vec<Team>>,
    runners: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Phone>> {
    let url = target
        .base
        .join(&format!("api/v1/events/{event}/devices"))?;
    let run = Timestamp::now().as_second();
    let count = teams.len() * runners;
    let phones: Arc<Mutex<Vec<Option<Phone>>>> =
        Arc::new(Mutex::new((0..count).map(|_| None).collect()));
    let (client, admin) = (client.clone(), target.admin_token.clone());
    let (teams, out) = (Arc::clone(teams), Arc::clone(&phones));
    for_each(count, concurrency, move |i| {
        let (team, runner) = (i / runners, i % runners);
        let t = &teams[team];
        let body = json!({
            "device": format!("{}-runner-{:02}-{run}", t.id, runner + 1),
            "carrier": t.carrier(runner),
            "relay": t.id,
        });
        let request = client.post(url.clone()).bearer_auth(&admin).json(&body);
        let out = Arc::clone(&out);
        async move {
            let r = request.send().await?;
            let status = r.status();
            let answer: serde_json::Value = r
                .json()
                .await
                .with_context(|| format!("registering phone {i}: {status}"))?;
            let token = answer["token"]
                .as_str()
                .with_context(|| format!("registering phone {i}: {status} {answer}"))?;
            let phone = Phone {
                team: u32::try_from(team)?,
                runner: u8::try_from(runner)?,
                token: token.to_owned(),
            };
            out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(phone);
            Ok(())
        }
    })
    .await?;
    let phones = std::mem::take(
        &mut *phones
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(phones.into_iter().flatten().collect())
}

/// Records, as the operator, each team's handoffs that happened before `now_ms` (in order
/// within a team; teams in parallel). Returns how many.
pub async fn past_handoffs(
    client: &Client,
    target: &Target,
    event: &str,
    teams: &Arc<Vec<Team>>,
    now_ms: i64,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (client, admin, base) = (
        client.clone(),
        target.admin_token.clone(),
        target.base.clone(),
    );
    let (teams_, done_) = (Arc::clone(teams), Arc::clone(&done));
    let event = event.to_owned();
    for_each(teams.len(), concurrency, move |j| {
        let t = &teams_[j];
        let url = base.join(&format!("api/v1/events/{event}/relays/{}/handoffs", t.id));
        let ends: Vec<i64> = t.ends_ms.iter().copied().take_while(|&e| e <= now_ms).collect();
        let (client, admin, done) = (client.clone(), admin.clone(), Arc::clone(&done_));
        async move {
            let url = url?;
            for (leg, at) in ends.into_iter().enumerate() {
                let at = Timestamp::from_millisecond(at)?;
                let body = json!({ "from_leg": leg, "at": at.to_string(), "note": "loadgen: before the run" });
                let r = client.post(url.clone()).bearer_auth(&admin).json(&body).send().await?;
                if !r.status().is_success() {
                    let status = r.status();
                    bail!("recording leg {leg}'s handoff: {status} {}", r.text().await.unwrap_or_default());
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await?;
    Ok(done.load(Ordering::Relaxed))
}

/// Runs `job(i)` for i in `0..count` on `concurrency` workers; the first error stops it.
async fn for_each<F, Fut>(count: usize, concurrency: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (job, next) = (Arc::clone(&job), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    if let Err(e) = job(i).await {
                        next.store(count, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(())
}
