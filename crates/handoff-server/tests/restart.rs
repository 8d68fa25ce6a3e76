//! Live state is derived from the plan and the pings (a saved engine state is only a cache of
//! it, `checkpoint.rs`). So a server stopped mid-relay and started again on the same SQLite file
//! must show exactly what it showed before.

use anyhow::{Context, Result};
use serde_json::json;

use crate::common::{BIKE, CARRIERS, RUN, Server, at, flag, run_then_bike};

#[tokio::test]
async fn a_restarted_server_rebuilds_the_same_live_view() -> Result<()> {
    let s = Server::with_relay().await?;
    let (run, bike) = run_then_bike(1896);
    // Half way along the Seine when the server goes down.
    let (ridden, to_come) = bike.split_at(bike.len() / 2);
    s.tick_at(at(120)).await;
    s.send_walk(RUN, &run).await?;
    s.send_walk(BIKE, ridden).await?;
    s.set_clock(
        ridden
            .last()
            .context("a walk")?
            .t
            .checked_add(jiff::SignedDuration::from_secs(2))?,
    );
    let (admin, public) = (s.live(true).await?, s.live(false).await?);
    let r = flag(&admin);
    assert_eq!(
        (&r["current_leg"], &r["holders"]),
        (&json!(2), &json!([CARRIERS[BIKE]]))
    );
    let fraction = r["progress"]["fraction"].as_f64().unwrap_or(0.0);
    assert!((0.3..0.7).contains(&fraction), "{fraction}");
    let count = s.ping_count().await?;

    let (dir, clock, tokens) = s.stop().await?;
    let mut s = Server::open(dir, clock).await?;
    s.tokens = tokens;
    assert_eq!(s.ping_count().await?, count);
    assert_eq!(
        s.live(true).await?,
        admin,
        "the operators' view after the restart"
    );
    assert_eq!(
        s.live(false).await?,
        public,
        "the public view after the restart"
    );

    // The devices are still registered: the cyclist rides on with the token she was given.
    let next = to_come.first().context("more to ride")?;
    s.set_clock(next.t);
    s.send(&s.tokens[BIKE].clone(), &[next.json()]).await?;
    let after = s.live(true).await?;
    let moved = flag(&after)["progress"]["along_m"].as_f64().unwrap_or(0.0);
    assert!(
        moved > r["progress"]["along_m"].as_f64().unwrap_or(f64::MAX),
        "{after}"
    );
    Ok(())
}
