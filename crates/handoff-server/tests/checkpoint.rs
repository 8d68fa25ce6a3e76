//! The saved engine state is a cache of the fold, never a source: a server restarted from it,
//! then fed more, shows exactly what a server that replays every stored ping shows; and a saved
//! state that is damaged, of another plan or of another format is ignored for the full replay.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use handoff_core::ping::Ping;
use handoff_store::{NewPing, Store};
use serde_json::Value;

use crate::common::{
    BIKE, CARRIERS, DEVICES, EVENT, Fix, PLAN, RUN, Server, TestClock, TestDb, at, run_then_bike,
};

/// The store of a stopped server, opened on its own to look at or change the saved state.
async fn with_store<T>(dir: &TestDb, f: impl AsyncFnOnce(&dyn Store) -> Result<T>) -> Result<T> {
    let store = dir.store().await?;
    let out = f(&*store).await?;
    // SQLite: the last handle closes the file (and checkpoints its WAL), which blocks.
    tokio::task::spawn_blocking(move || drop(store)).await?;
    Ok(out)
}

async fn views(s: &Server) -> Result<(Value, Value)> {
    Ok((s.live(true).await?, s.live(false).await?))
}

async fn reopen(dir: &Arc<TestDb>, clock: &TestClock, tokens: &[String]) -> Result<Server> {
    let mut s = Server::open(Arc::clone(dir), clock.clone()).await?;
    s.tokens = tokens.to_vec();
    Ok(s)
}

fn restored_from(s: &Server) -> Option<i64> {
    s.state.event(EVENT).and_then(|e| e.restored_from())
}

#[tokio::test]
async fn a_server_restarted_from_its_saved_state_goes_on_as_a_full_replay() -> Result<()> {
    let s = Server::with_relay().await?;
    let (run, bike) = run_then_bike(2024);
    let (ridden, to_come) = bike.split_at(bike.len() / 2);
    // Two of the runner's reports come in late, after the restart, and out of order.
    let (late, run_early) = (
        vec![run[run.len() / 2], run[run.len() / 3]],
        run.iter()
            .enumerate()
            .filter(|(i, _)| *i != run.len() / 2 && *i != run.len() / 3)
            .map(|(_, f)| *f)
            .collect::<Vec<_>>(),
    );
    s.tick_at(at(120)).await;
    s.send_walk(RUN, &run_early).await?;
    s.send_walk(BIKE, ridden).await?;
    let before = views(&s).await?;
    let pings = s.ping_count().await?;
    let (dir, clock, tokens) = s.stop().await?;

    // A clean stop saved the state, with every stored ping in it.
    let saved = with_store(&dir, async |st| Ok(st.engine_checkpoint(EVENT).await?)).await?;
    let saved = saved.context("a saved engine state after a clean stop")?;
    let last_seq = with_store(&dir, async |st| {
        Ok(st
            .pings_after(EVENT, 0, 10_000)
            .await?
            .last()
            .map(|p| p.seq))
    })
    .await?;
    ensure!(
        Some(saved.cursor) == last_seq,
        "cursor {} of {last_seq:?}",
        saved.cursor
    );

    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(
        restored_from(&s) == Some(saved.cursor),
        "restored from the saved state"
    );
    ensure!(s.ping_count().await? == pings);
    ensure!(
        views(&s).await? == before,
        "the same views after the restart"
    );
    let (dir, clock, tokens) = s.stop().await?;

    // Pings stored after the last save, as if the server had then died: the next start
    // catches up with them from the saved state's cursor.
    let (stored_late, to_come) = to_come.split_at(to_come.len() / 3);
    with_store(&dir, async |st| {
        let batch = stored_late
            .iter()
            .map(|f| NewPing {
                event_id: EVENT.into(),
                device_id: DEVICES[BIKE].into(),
                ping: Ping {
                    t: f.t,
                    lon: f.lon,
                    lat: f.lat,
                    acc_m: Some(f.acc_m),
                    speed_mps: None,
                    heading_deg: None,
                    alt_m: None,
                    batt_pct: None,
                },
                received_at: f.t,
            })
            .collect();
        st.insert_pings(batch).await?;
        // The saved state is still the one of before they came.
        let cursor = st.engine_checkpoint(EVENT).await?.map(|c| c.cursor);
        ensure!(cursor == Some(saved.cursor), "{cursor:?}");
        Ok(())
    })
    .await?;
    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(restored_from(&s) == Some(saved.cursor), "restored again");
    s.send(
        &s.tokens[RUN].clone(),
        &late.iter().map(Fix::json).collect::<Vec<_>>(),
    )
    .await?;
    s.send_walk(BIKE, to_come).await?;
    s.tick_at(to_come.last().context("more to ride")?.t).await;
    let after = views(&s).await?;
    ensure!(after != before, "the later pings moved the relay on");
    let (dir, clock, tokens) = s.stop().await?;

    // The same store without its saved state: every ping replayed.
    with_store(&dir, async |st| {
        Ok(st.delete_engine_checkpoint(EVENT).await?)
    })
    .await?;
    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(restored_from(&s).is_none(), "a full replay");
    let replayed = views(&s).await?;
    ensure!(
        replayed.0 == after.0,
        "operators' view: restored {} vs replayed {}",
        after.0,
        replayed.0
    );
    ensure!(replayed.1 == after.1, "public view");
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_damaged_or_foreign_saved_state_is_ignored_for_a_full_replay() -> Result<()> {
    let s = Server::with_relay().await?;
    let (run, _) = run_then_bike(2024);
    s.tick_at(at(120)).await;
    s.send_walk(RUN, &run[..run.len() / 2]).await?;
    let expected = views(&s).await?;
    let (dir, clock, tokens) = s.stop().await?;
    let good = with_store(&dir, async |st| Ok(st.engine_checkpoint(EVENT).await?))
        .await?
        .context("a saved state")?;

    let mut damaged = good.clone();
    let middle = damaged.state.len() / 2;
    damaged.state[middle] ^= 0x10;
    let mut other_plan = good.clone();
    other_plan.plan_hash = "0".repeat(64);
    let mut other_format = good.clone();
    other_format.format += 1;
    let mut not_state = good.clone();
    not_state.state = b"{\"not\":\"a saved state\"}".to_vec();
    for (what, bad) in [
        ("damaged", damaged),
        ("of another plan", other_plan),
        ("of another format", other_format),
        ("not a saved state", not_state),
    ] {
        with_store(&dir, async |st| Ok(st.put_engine_checkpoint(bad).await?)).await?;
        let s = reopen(&dir, &clock, &tokens).await?;
        ensure!(restored_from(&s).is_none(), "{what}: ignored");
        ensure!(
            views(&s).await? == expected,
            "{what}: the full replay's views"
        );
        s.stop().await?;
    }
    // And the good one is used (the stops above saved it again).
    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(restored_from(&s).is_some(), "restored");
    ensure!(views(&s).await? == expected);
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_event_with_a_public_delay_restarts_from_both_its_saved_engines() -> Result<()> {
    let plan = PLAN.replace(
        "name = \"Olympic flag: through Paris\"\n",
        "name = \"Olympic flag: through Paris\"\npublic_delay = \"2m\"\n",
    );
    ensure!(plan != PLAN, "the plan has a delay");
    let mut s = Server::with_plan(EVENT, &plan, at(-60)).await?;
    for (device, carrier) in DEVICES.iter().zip(CARRIERS) {
        let token = s.device(device, carrier).await?;
        s.tokens.push(token);
    }
    let (run, bike) = run_then_bike(7);
    s.tick_at(at(120)).await;
    s.send_walk(RUN, &run).await?;
    s.send_walk(BIKE, &bike[..bike.len() / 2]).await?;
    // The clock where part of what was sent is public and the rest still held back.
    let now = bike[bike.len() / 4].t;
    s.tick_at(now).await;
    let before = views(&s).await?;
    ensure!(before.0 != before.1, "spectators see less than operators");
    let (dir, clock, tokens) = s.stop().await?;

    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(restored_from(&s).is_some(), "restored from the saved state");
    ensure!(
        views(&s).await? == before,
        "the same views after the restart"
    );
    // The pings held back become public on time after the restart too.
    let later = bike[bike.len() / 2 - 1]
        .t
        .checked_add(jiff::SignedDuration::from_mins(3))?;
    s.tick_at(later).await;
    let after = views(&s).await?;
    ensure!(after.1 != before.1, "the public view moved on");
    let (dir, clock, tokens) = s.stop().await?;

    with_store(&dir, async |st| {
        Ok(st.delete_engine_checkpoint(EVENT).await?)
    })
    .await?;
    let s = reopen(&dir, &clock, &tokens).await?;
    ensure!(restored_from(&s).is_none(), "a full replay");
    s.tick_at(later).await;
    let replayed = views(&s).await?;
    ensure!(
        replayed.0 == after.0,
        "operators' view: restored {} vs replayed {}",
        after.0,
        replayed.0
    );
    ensure!(
        replayed.1 == after.1,
        "public view: restored {} vs replayed {}",
        after.1,
        replayed.1
    );
    s.stop().await?;
    Ok(())
}
