//! The tracker as spectators meet it, over HTTP (`/live?legs=full`, every leg whole): carriers walk
//! their legs with realistic GPS noise, and `/live` must show progress that never runs backwards,
//! ETAs that home in on the real arrival, a loop followed through its turn, handoffs where the flag
//! changes hands, and the same picture however late or out of order the pings arrived.

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::common::{
    BIKE, CARRIERS, Fix, LOOP, Lcg, RUN, STAGE, Server, at, flag, plan, planned_speed_mps, route,
    secs_between, ts, walk,
};

fn later(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

fn jsons(fixes: &[Fix]) -> Vec<Value> {
    fixes.iter().map(Fix::json).collect()
}

fn along(live: &Value) -> f64 {
    flag(live)["progress"]["along_m"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn progress_never_runs_backwards_and_the_eta_converges() -> Result<()> {
    let s = Server::with_relay().await?;
    let plan = plan();
    s.tick_at(at(120)).await;
    // She runs 15 % slower than planned: the plan's pace alone would be 74 s early.
    let speed = 0.85 * planned_speed_mps(&plan, RUN);
    let length = route(&plan, RUN).length_m();
    let arrival = at(120).checked_add(SignedDuration::from_secs_f64(length / speed))?;
    let fixes = walk(&plan, RUN, at(120), speed, 5, Some(&mut Lcg::new(2024)));
    let token = s.tokens[RUN].clone();
    let (mut last_along, mut errors_s, mut plan_only_s, mut handed_at) =
        (0.0, Vec::new(), Vec::new(), None);
    for f in &fixes {
        s.set_clock(f.t);
        s.send(&token, &[f.json()]).await?;
        let live = s.live_full(true).await?;
        let r = flag(&live);
        if r["current_leg"] != 1 {
            handed_at.get_or_insert((f.t, f.true_along_m));
            continue;
        }
        let a = along(&live);
        assert!(
            a >= last_along,
            "progress ran backwards at {}: {a} m after {last_along} m",
            f.t
        );
        assert!(
            (a - f.true_along_m).abs() < 30.0,
            "at {} she is {} m along, /live says {a} m",
            f.t,
            f.true_along_m
        );
        assert_eq!(r["off_route"], false, "noise of 15 m is not off route: {r}");
        last_along = a;
        errors_s.push(secs_between(arrival, ts(&r["legs"][RUN]["eta_end"])).abs());
        // What the plan's pace alone would be off by from where she truly is.
        let left_m = length - f.true_along_m;
        plan_only_s.push(left_m / speed - left_m / planned_speed_mps(&plan, RUN));
    }
    // The flag changed hands at the Louvre, within the exchange radius (50 m) of the end.
    let (handoff_t, handoff_along) = handed_at.context("the runner never handed the flag on")?;
    assert!(
        handoff_along > length - 60.0,
        "handed on {handoff_along} m into {length} m"
    );
    let live = s.live_full(true).await?;
    let r = flag(&live);
    assert_eq!(
        (&r["current_leg"], &r["holders"]),
        (&json!(2), &json!([CARRIERS[BIKE]]))
    );
    assert_eq!(r["legs"][RUN]["status"], "done");
    // The leg ends at her closest approach to the Louvre (found by the fix that showed it),
    // not when she entered the radius: within a few seconds of her real arrival.
    let ended = ts(&r["legs"][RUN]["actual_end"]);
    assert!(
        ended <= handoff_t,
        "stamped {ended}, after the fix {handoff_t} that ended it"
    );
    assert_eq!(ts(&r["legs"][BIKE]["actual_start"]), ended);
    let off_s = secs_between(ended, arrival);
    assert!(
        off_s.abs() <= 10.0,
        "handoff {off_s} s before she reached the Louvre"
    );

    // The ETA homes in on the real arrival.
    let n = errors_s.len();
    assert!(n > 60, "{n} readings");
    assert!(
        errors_s[0] > 45.0,
        "at the start only the plan speaks: {} s off",
        errors_s[0]
    );
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (&errors_s[..n / 4], &errors_s[n - n / 4..]);
    assert!(
        mean(last) < mean(first) / 3.0,
        "errors: first quarter {:.0} s, last quarter {:.0} s",
        mean(first),
        mean(last)
    );
    assert!(
        last.iter().all(|e| *e <= 30.0),
        "last quarter errors {last:?}"
    );
    assert!(
        errors_s[n - 1] <= 15.0,
        "final ETA {} s off",
        errors_s[n - 1]
    );
    // Not only because less is left to run: the observed pace, not the plan's, drives it.
    let (mid, mid_plan) = (&errors_s[n / 4..n - n / 4], &plan_only_s[n / 4..n - n / 4]);
    assert!(
        mean(mid) < mean(mid_plan) / 2.0,
        "mid-leg errors {:.0} s, the plan's pace alone {:.0} s",
        mean(mid),
        mean(mid_plan)
    );
    Ok(())
}

#[tokio::test]
async fn progress_follows_a_route_that_loops_back_on_itself() -> Result<()> {
    let s = Server::with_relay().await?;
    let plan = plan();
    s.tick_at(at(120)).await;
    // The runner and the cyclist bring the flag to the Concorde on time.
    let mut start = at(120);
    for leg in [RUN, BIKE] {
        let fixes = walk(&plan, leg, start, planned_speed_mps(&plan, leg), 10, None);
        start = fixes.last().context("a walk")?.t;
        s.set_clock(start);
        s.send(&s.tokens[leg].clone(), &jsons(&fixes)).await?;
    }
    let live = s.live_full(true).await?;
    assert_eq!(
        (&flag(&live)["current_leg"], &flag(&live)["holders"]),
        (&json!(3), &json!([CARRIERS[LOOP]]))
    );

    // Out along the Champs-Élysées, around the block, and back along the same street.
    let route = route(&plan, LOOP);
    let (stem_m, loop_end_m) = (route.cumulative_m()[1], route.cumulative_m()[5]);
    let fixes = walk(
        &plan,
        LOOP,
        start,
        planned_speed_mps(&plan, LOOP),
        5,
        Some(&mut Lcg::new(75_008)),
    );
    let token = s.tokens[LOOP].clone();
    let (mut last_along, mut on_return) = (0.0, 0);
    for f in &fixes {
        s.set_clock(f.t);
        s.send(&token, &[f.json()]).await?;
        let live = s.live_full(true).await?;
        if flag(&live)["current_leg"] != 3 {
            assert!(
                f.true_along_m > route.length_m() - 60.0,
                "the leg ended {} m in",
                f.true_along_m
            );
            break;
        }
        let a = along(&live);
        assert!(
            a >= last_along,
            "progress ran backwards at {} m: {a} m after {last_along} m",
            f.true_along_m
        );
        // On the way back the stem's other branch is as near as this one; it must not win.
        assert!(
            (a - f.true_along_m).abs() < 40.0,
            "{} m along, /live says {a} m (stem {stem_m:.0} m, loop back at {loop_end_m:.0} m)",
            f.true_along_m
        );
        if f.true_along_m > loop_end_m + 40.0 {
            on_return += 1;
        }
        last_along = a;
    }
    assert!(on_return > 10, "{on_return} readings on the way back");
    let live = s.live_full(true).await?;
    let r = flag(&live);
    assert_eq!(r["status"], "finished", "{r}");
    assert_eq!(r["legs"][LOOP]["status"], "done");
    Ok(())
}

#[tokio::test]
async fn late_and_out_of_order_pings_give_the_same_live_view() -> Result<()> {
    let plan = plan();
    let mut rng = Lcg::new(417);
    let run = walk(
        &plan,
        RUN,
        at(120),
        0.95 * planned_speed_mps(&plan, RUN),
        5,
        Some(&mut rng),
    );
    let bike_start = later(run.last().context("a walk")?.t, 3);
    let bike = walk(
        &plan,
        BIKE,
        bike_start,
        1.05 * planned_speed_mps(&plan, BIKE),
        5,
        Some(&mut rng),
    );
    let loop_start = later(bike.last().context("a walk")?.t, 2);
    let mut looping = walk(
        &plan,
        LOOP,
        loop_start,
        planned_speed_mps(&plan, LOOP),
        5,
        Some(&mut rng),
    );
    looping.truncate(30);
    let end = later(looping.last().context("a walk")?.t, 1);

    // In order, as it happens: one request per ping, the clock following.
    let a = Server::with_relay().await?;
    let mut holders = vec![(0, json!([CARRIERS[STAGE]]))];
    for f in run.iter().chain(&bike).chain(&looping) {
        a.tick_at(f.t).await;
        a.send(&a.tokens[f.leg].clone(), &[f.json()]).await?;
        let live = a.live(true).await?;
        let r = flag(&live);
        let leg = r["current_leg"].as_u64().context("a leg holds the flag")?;
        if holders.last().is_none_or(|(l, _)| *l != leg) {
            holders.push((leg, r["holders"].clone()));
            // The flag changes hands at the exchange, not before: the giver is near its end.
            let given = usize::try_from(leg - 1)?;
            if given != STAGE {
                let giver = run
                    .iter()
                    .chain(&bike)
                    .filter(|g| g.leg == given && g.t <= f.t)
                    .map(|g| g.true_along_m)
                    .fold(0.0, f64::max);
                let length = route(&plan, given).length_m();
                assert!(
                    giver > length - 90.0,
                    "leg {given} handed on {giver:.0} m into {length:.0} m"
                );
            }
        }
    }
    let want: Vec<(u64, Value)> = (1..=3u64)
        .map(|l| (l, json!([CARRIERS[l as usize]])))
        .collect();
    assert_eq!(
        holders[1..],
        want[..],
        "the flag went from carrier to carrier"
    );

    // Out of order: the loop runner's phone first, the cyclist's in reversed chunks, and the
    // runner's with a stretch buffered while offline, sent last as one batch.
    let b = Server::with_relay().await?;
    b.set_clock(end);
    let (head, tail) = looping.split_at(12);
    for part in [tail, head] {
        b.send(&b.tokens[LOOP].clone(), &jsons(part)).await?;
    }
    for chunk in bike.chunks(7).rev() {
        b.send(&b.tokens[BIKE].clone(), &jsons(chunk)).await?;
    }
    let offline = 20..50;
    for (i, f) in run.iter().enumerate().filter(|(i, _)| !offline.contains(i)) {
        b.send(&b.tokens[RUN].clone(), &[f.json()]).await?;
        if i == 10 {
            // A tick in between, as the server's own ticker does.
            b.state.tick().await;
        }
    }
    b.send(&b.tokens[RUN].clone(), &jsons(&run[offline]))
        .await?;

    a.tick_at(end).await;
    b.tick_at(end).await;
    for admin in [true, false] {
        let (in_order, shuffled) = (a.live(admin).await?, b.live(admin).await?);
        assert_eq!(in_order, shuffled, "admin view: {admin}");
        assert_eq!(ts(&in_order["now"]), end);
    }
    let live = a.live(true).await?;
    assert_eq!(flag(&live)["current_leg"], 3);
    assert!(along(&live) > 100.0, "{live}");
    assert_eq!(a.ping_count().await?, b.ping_count().await?);
    Ok(())
}

#[tokio::test]
async fn a_stage_leg_ends_when_its_time_runs_out() -> Result<()> {
    let s = Server::with_relay().await?;
    let live = s.live_full(false).await?;
    let r = flag(&live);
    assert_eq!(r["status"], "planned");
    assert!(r["current_leg"].is_null() && r["position"].is_null(), "{r}");
    assert_eq!(r["holders"], json!([]));
    assert_eq!(ts(&r["legs"][STAGE]["eta_end"]), at(120));

    s.tick_at(at(30)).await;
    let live = s.live_full(false).await?;
    let r = flag(&live);
    assert_eq!(
        (&r["status"], &r["current_leg"], &r["holders"], &r["mode"]),
        (
            &json!("running"),
            &json!(0),
            &json!([CARRIERS[STAGE]]),
            &json!("stage")
        )
    );
    assert_eq!(ts(&r["legs"][STAGE]["actual_start"]), at(0));
    assert_eq!(ts(&r["legs"][STAGE]["eta_end"]), at(120));

    s.tick_at(at(119)).await;
    assert_eq!(
        flag(&s.live_full(false).await?)["current_leg"],
        0,
        "a second to go"
    );

    // The server's own ticker lets the time run out: the test does not tick.
    s.set_clock(at(121));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let live = loop {
        let live = s.live_full(false).await?;
        if flag(&live)["current_leg"] == 1 || tokio::time::Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = flag(&live);
    assert_eq!(
        (&r["current_leg"], &r["holders"]),
        (&json!(1), &json!([CARRIERS[RUN]])),
        "{r}"
    );
    assert_eq!(r["legs"][STAGE]["status"], "done");
    assert_eq!(
        ts(&r["legs"][STAGE]["actual_end"]),
        at(120),
        "it ends when planned, not when noticed"
    );
    assert_eq!(ts(&r["legs"][RUN]["actual_start"]), at(120));
    // Nobody has reported yet: the run is expected to take its planned 7 minutes.
    assert_eq!(ts(&r["legs"][RUN]["eta_end"]), at(120 + 7 * 60));
    assert_eq!(ts(&r["eta_finish"]), at(120 + (7 + 5 + 7) * 60));
    Ok(())
}
