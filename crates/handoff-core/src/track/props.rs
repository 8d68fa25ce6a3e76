//! Property tests of the engine's one promise: the state is a function of the inputs, not of
//! the order or batching they arrived in, nor of how often time was looked at in between.

use std::sync::Arc;

use jiff::Timestamp;
use proptest::prelude::*;

use super::{PingOf, Shift, Tracker};
use crate::ping::Ping;
use crate::plan::{NoFiles, parse};

const T0: i64 = 1_723_410_000; // 2024-08-11T21:00:00Z

/// A stage of 4 minutes, then `runners` legs of ~1.1 km along a street, 6 minutes each.
fn plan(runners: usize, delay: bool) -> Arc<crate::plan::Plan> {
    let mut s = String::from("[event]\nid = \"p\"\nname = \"P\"\n");
    if delay {
        s.push_str("public_delay = \"30s\"\n");
    }
    s.push_str(
        "[[places]]\nid = \"a\"\nat = [2.35, 48.85]\ntimezone = \"Europe/Paris\"\n\
         [[relays]]\nid = \"r\"\n[[relays.legs]]\ncarriers = [\"Stage\"]\nmode = \"stage\"\n\
         place = \"a\"\nstart = \"2024-08-11T21:00:00Z\"\nduration = \"4m\"\n",
    );
    for i in 0..runners {
        #[allow(clippy::cast_precision_loss)]
        let (a, b) = (2.35 + 0.015 * i as f64, 2.35 + 0.015 * (i + 1) as f64);
        s.push_str(&format!(
            "[[relays.legs]]\ncarriers = [\"R{i}\"]\nmode = \"run\"\n\
             route = {{ points = [[{a}, 48.85], [{b}, 48.85]] }}\nduration = \"6m\"\n"
        ));
    }
    Arc::new(parse(&s, &NoFiles).expect("test plan parses"))
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).expect("valid")
}

/// A small deterministic generator, so one proptest seed gives one scenario.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x
    }
}

#[derive(Debug, Clone)]
enum Input {
    Ping(String, String, u64, Ping),
    Recorded(Vec<(usize, Timestamp)>),
    Shifts(Vec<Shift>),
    Tick(Timestamp),
}

/// Pings of each runner's phones along (and sometimes off) their leg, late phones, waiting
/// runners near the exchange; recorded handoffs (one of them first wrong, then corrected);
/// shifts announced on the way.
fn scenario(seed: u64, runners: usize) -> (Vec<Input>, Vec<(usize, Timestamp)>, Vec<Shift>) {
    let mut rng = Rng(seed | 1);
    let mut pings = Vec::new();
    let mut seq = 0u64;
    for i in 0..runners {
        let devices = 1 + rng.below(2);
        #[allow(clippy::cast_possible_wrap)]
        let start = 240 + 330 * i as i64;
        for d in 0..devices {
            let dev = format!("R{i}-{d}");
            let every = 5 + rng.below(10);
            let mut s = start - 60 + i64::try_from(rng.below(20)).unwrap_or(0);
            while s < start + 420 {
                #[allow(clippy::cast_precision_loss)]
                let f = ((s - start) as f64 / 330.0).clamp(-0.05, 1.05);
                #[allow(clippy::cast_precision_loss)]
                let lon = 2.35 + 0.015 * (i as f64 + f) + (rng.unit() - 0.5) * 0.0002;
                let lat = 48.85
                    + if rng.below(12) == 0 {
                        0.004
                    } else {
                        (rng.unit() - 0.5) * 0.0002
                    };
                seq += 1;
                pings.push(Input::Ping(
                    dev.clone(),
                    format!("R{i}"),
                    seq,
                    Ping {
                        t: ts(s),
                        lon,
                        lat,
                        acc_m: Some(5.0 + rng.unit() * 20.0),
                        speed_mps: None,
                        heading_deg: None,
                        alt_m: None,
                        batt_pct: None,
                    },
                ));
                s += i64::try_from(every).unwrap_or(5);
            }
        }
    }
    // Recorded handoffs: some legs, marked at their real-ish time.
    let mut recorded = Vec::new();
    for leg in 0..runners {
        if rng.below(3) == 0 {
            #[allow(clippy::cast_possible_wrap)]
            let at = 240 + 330 * leg as i64 + i64::try_from(rng.below(60)).unwrap_or(0);
            recorded.push((leg, ts(at)));
        }
    }
    let mut shifts = Vec::new();
    for _ in 0..rng.below(3) {
        shifts.push(Shift {
            at: ts(i64::try_from(rng.below(1200)).unwrap_or(0) - 200),
            from_leg: usize::try_from(rng.below(runners as u64 + 1)).unwrap_or(0),
            ms: (i64::try_from(rng.below(9)).unwrap_or(0) - 4) * 60_000,
        });
    }
    shifts.sort_by_key(|s| s.at);
    // The arrival order: shuffled in windows (network jitter), some pings held back as a
    // phone's late batch, the log and the shifts growing on the way, time looked at often.
    let mut arrival = pings;
    for k in (1..arrival.len()).rev() {
        let j = k.saturating_sub(usize::try_from(rng.below(8)).unwrap_or(0));
        arrival.swap(k, j);
    }
    if !arrival.is_empty() && rng.below(2) == 0 {
        let at = usize::try_from(rng.below(arrival.len() as u64)).unwrap_or(0);
        let n = (arrival.len() - at).min(40);
        let held: Vec<Input> = arrival.drain(at..at + n).collect();
        let back = usize::try_from(rng.below(arrival.len() as u64 + 1)).unwrap_or(0);
        let back = back.max(at).min(arrival.len());
        for (k, p) in held.into_iter().enumerate() {
            arrival.insert(back + k, p);
        }
    }
    let mut inputs = Vec::new();
    let mut shown_rec = 0;
    let mut shown_shift = 0;
    let mut wrong_shown = false;
    for p in arrival {
        inputs.push(p);
        match rng.below(40) {
            0 if shown_rec < recorded.len() => {
                shown_rec += 1;
                inputs.push(Input::Recorded(recorded[..shown_rec].to_vec()));
            }
            1 if !wrong_shown && shown_rec < recorded.len() => {
                // A wrong entry, voided by a correction later.
                wrong_shown = true;
                let mut wrong = recorded[..shown_rec].to_vec();
                let (leg, at) = recorded[shown_rec];
                wrong.push((leg, ts(at.as_second() - T0 + 90)));
                inputs.push(Input::Recorded(wrong));
                inputs.push(Input::Recorded(recorded[..shown_rec].to_vec()));
            }
            2 if shown_shift < shifts.len() => {
                shown_shift += 1;
                inputs.push(Input::Shifts(shifts[..shown_shift].to_vec()));
            }
            3..=6 => {
                let t = i64::try_from(rng.below(2000)).unwrap_or(0) - 100;
                inputs.push(Input::Tick(ts(t)));
            }
            _ => {}
        }
    }
    (inputs, recorded, shifts)
}

/// Feeds `inputs` in `batch`es, answering the tracker's history requests as the server does
/// from the store (every ping fed so far has been stored before it was applied).
fn feed(
    tr: &mut Tracker,
    inputs: &[Input],
    batch: usize,
    end: Timestamp,
) -> Vec<(String, String, u64, Ping)> {
    let mut stored = Vec::new();
    feed_into(tr, inputs, batch, end, &mut stored);
    stored
}

/// [`feed`] onto what is stored already.
fn feed_into(
    tr: &mut Tracker,
    inputs: &[Input],
    batch: usize,
    end: Timestamp,
    stored: &mut Vec<(String, String, u64, Ping)>,
) {
    let mut buf: Vec<(String, String, u64, Ping)> = Vec::new();
    let flush = |tr: &mut Tracker,
                 buf: &mut Vec<(String, String, u64, Ping)>,
                 stored: &mut Vec<(String, String, u64, Ping)>| {
        stored.extend(buf.iter().cloned());
        tr.apply_batch(buf.iter().map(|(d, c, s, p)| PingOf {
            device: d,
            carrier: c,
            relay: None,
            seq: *s,
            ping: p,
        }));
        buf.clear();
        serve_history(tr, stored);
    };
    for input in inputs {
        match input {
            Input::Ping(d, c, s, p) => {
                buf.push((d.clone(), c.clone(), *s, *p));
                if buf.len() >= batch {
                    flush(tr, &mut buf, stored);
                }
            }
            Input::Recorded(r) => {
                flush(tr, &mut buf, stored);
                tr.set_recorded("r", r.clone(), end);
            }
            Input::Shifts(s) => {
                flush(tr, &mut buf, stored);
                tr.set_shifts("r", s.clone(), end);
            }
            Input::Tick(t) => {
                flush(tr, &mut buf, stored);
                tr.tick(*t);
            }
        }
        serve_history(tr, stored);
    }
    flush(tr, &mut buf, stored);
}

fn in_order(
    plan: &Arc<crate::plan::Plan>,
    inputs: &[Input],
    recorded: &[(usize, Timestamp)],
    shifts: &[Shift],
    end: Timestamp,
    keep_ms: i64,
) -> Tracker {
    let mut tr = Tracker::new(Arc::clone(plan)).keeping(keep_ms);
    let pings = pings_in_order(inputs);
    tr.set_recorded("r", recorded.to_vec(), ts(-3600));
    tr.set_shifts("r", shifts.to_vec(), ts(-3600));
    for (d, c, s, p) in &pings {
        tr.apply_batch(std::iter::once(PingOf {
            device: d,
            carrier: c,
            relay: None,
            seq: *s,
            ping: p,
        }));
    }
    tr.tick(end);
    tr
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_batching_gives_the_same_state(seed in any::<u64>(), runners in 2usize..5, batch in 1usize..20, delay in any::<bool>(), log_proximity in any::<bool>()) {
        let plan = plan(runners, delay);
        let (mut inputs, mut recorded, shifts) = scenario(seed, runners);
        if log_proximity {
            // The operator records the stage's end; the server records the proximity handoffs
            // the tracker finds after it, at their own time.
            if !recorded.iter().any(|(l, _)| *l == 0) {
                recorded.insert(0, (0, ts(240)));
            }
            let found = proximity_of(&plan, &inputs, &recorded);
            for &(leg, at) in &found {
                if !recorded.iter().any(|(l, _)| *l == leg) {
                    recorded.push((leg, at));
                }
            }
            recorded.sort_by_key(|(l, at)| (*at, *l));
            inputs.push(Input::Recorded(recorded.clone()));
        }
        let end = ts(2400);
        let expected = in_order(&plan, &inputs, &recorded, &shifts, end, super::KEEP_INPUTS_MS);
        let mut tr = Tracker::new(Arc::clone(&plan));
        let stored = feed(&mut tr, &inputs, batch, end);
        tr.set_recorded("r", recorded.clone(), end);
        tr.set_shifts("r", shifts.clone(), end);
        serve_history(&mut tr, &stored);
        tr.tick(end);
        for now in [end, ts(3000)] {
            prop_assert_eq!(expected.snapshot(now, false), tr.snapshot(now, false));
            prop_assert_eq!(expected.snapshot(now, true), tr.snapshot(now, true));
        }
        prop_assert_eq!(expected.accuracy("r"), tr.accuracy("r"));
    }

    /// With a short memory, late inputs ask for the store's history; served, the state is
    /// the same as if nothing had been let go.
    #[test]
    fn deep_replays_from_history_give_the_same_state(seed in any::<u64>(), runners in 2usize..4) {
        let plan = plan(runners, false);
        let (inputs, recorded, shifts) = scenario(seed, runners);
        let end = ts(2400);
        let expected = in_order(&plan, &inputs, &recorded, &shifts, end, super::KEEP_INPUTS_MS);
        let mut tr = Tracker::new(Arc::clone(&plan)).keeping(60_000);
        let stored = feed(&mut tr, &inputs, 1, end);
        tr.set_recorded("r", recorded.clone(), end);
        tr.set_shifts("r", shifts.clone(), end);
        serve_history(&mut tr, &stored);
        tr.tick(end);
        prop_assert_eq!(expected.snapshot(end, false), tr.snapshot(end, false));
        prop_assert_eq!(expected.accuracy("r"), tr.accuracy("r"));
    }

    /// The state after a restart equals the state before it: saved at any point (with a deep
    /// replay handed out and not answered yet), restored into a fresh tracker and fed the rest,
    /// it is the state of the tracker that never stopped; and saving it again gives the same
    /// bytes (the sharing of legs between checkpoints is rebuilt too).
    #[test]
    fn a_restored_tracker_goes_on_as_the_one_saved(seed in any::<u64>(), runners in 2usize..5, batch in 1usize..10, cut in 0.0f64..=1.0, short in any::<bool>(), delay in any::<bool>()) {
        let plan = plan(runners, delay);
        let (inputs, recorded, shifts) = scenario(seed, runners);
        let keep = if short { 60_000 } else { super::KEEP_INPUTS_MS };
        let end = ts(2400);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let k = ((inputs.len() as f64 * cut) as usize).min(inputs.len());
        let mut original = Tracker::new(Arc::clone(&plan)).keeping(keep);
        let mut stored = Vec::new();
        feed_into(&mut original, &inputs[..k], batch, end, &mut stored);
        // The whole log arrives as the state is saved: with a short memory it may ask for the
        // store's history, and the request is out when the state is saved.
        original.set_recorded("r", recorded.clone(), end);
        let asked = original.take_history_requests();
        let bytes = original.freeze().encode(&plan, "plan-hash");
        let mut restored = Tracker::restore(Arc::clone(&plan), &bytes, "plan-hash")
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .keeping(keep);
        prop_assert_eq!(restored.freeze().encode(&plan, "plan-hash"), bytes);
        answer(&mut original, &asked, &stored);
        let mut stored_too = stored.clone();
        for (tr, st) in [(&mut original, &mut stored), (&mut restored, &mut stored_too)] {
            serve_history(tr, st);
            feed_into(tr, &inputs[k..], batch, end, st);
            tr.set_recorded("r", recorded.clone(), end);
            tr.set_shifts("r", shifts.clone(), end);
            serve_history(tr, st);
            tr.tick(end);
        }
        for now in [end, ts(3000)] {
            prop_assert_eq!(original.snapshot(now, false), restored.snapshot(now, false));
            prop_assert_eq!(original.snapshot(now, true), restored.snapshot(now, true));
        }
        prop_assert_eq!(original.accuracy("r"), restored.accuracy("r"));
        prop_assert_eq!(original.held(), restored.held());
        prop_assert_eq!(
            original.freeze().encode(&plan, "plan-hash"),
            restored.freeze().encode(&plan, "plan-hash")
        );
    }
}

/// The pings among `inputs`, in fold order (device time, then arrival).
fn pings_in_order(inputs: &[Input]) -> Vec<(String, String, u64, Ping)> {
    let mut pings: Vec<(String, String, u64, Ping)> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Ping(d, c, s, p) => Some((d.clone(), c.clone(), *s, *p)),
            _ => None,
        })
        .collect();
    pings.sort_by_key(|(_, _, s, p)| (p.t, *s));
    pings
}

/// The proximity handoffs a tracker finds from the pings alone, in order.
fn proximity_of(
    plan: &Arc<crate::plan::Plan>,
    inputs: &[Input],
    recorded: &[(usize, Timestamp)],
) -> Vec<(usize, Timestamp)> {
    let mut tr = Tracker::new(Arc::clone(plan));
    tr.set_recorded("r", recorded.to_vec(), ts(-3600));
    let pings = pings_in_order(inputs);
    let mut found = Vec::new();
    for (d, c, s, p) in &pings {
        for ch in tr.apply_batch(std::iter::once(PingOf {
            device: d,
            carrier: c,
            relay: None,
            seq: *s,
            ping: p,
        })) {
            if let super::Change::Proximity { from_leg, at, .. } = ch {
                found.push((from_leg, at));
            }
        }
    }
    found
}

/// Answers the tracker's history requests from `stored`, as the server does from the store.
fn serve_history(tr: &mut Tracker, stored: &[(String, String, u64, Ping)]) {
    for _ in 0..8 {
        let requests = tr.take_history_requests();
        if requests.is_empty() {
            return;
        }
        answer(tr, &requests, stored);
    }
}

/// Answers history requests taken from the tracker, from `stored`.
fn answer(
    tr: &mut Tracker,
    requests: &[super::HistoryRequest],
    stored: &[(String, String, u64, Ping)],
) {
    for r in requests {
        let pings: Vec<_> = stored
            .iter()
            .filter(|(_, c, _, p)| r.carriers.contains(c) && r.since.is_none_or(|s| p.t >= s))
            .cloned()
            .collect();
        tr.replay_history(r, pings);
    }
}

#[test]
fn a_late_ping_costs_the_pings_after_the_checkpoint_before_it_and_a_bystanders_nothing() {
    let plan = plan(2, false);
    let fix = |s: i64, lon: f64, lat: f64| Ping {
        t: ts(s),
        lon,
        lat,
        acc_m: Some(5.0),
        speed_mps: None,
        heading_deg: None,
        alt_m: None,
        batt_pct: None,
    };
    // R0 runs leg 1 (from 241 s, just after the stage ends), a fix every 2 s: 166 pings.
    let run: Vec<Ping> = (0..166)
        .map(|k| {
            #[allow(clippy::cast_precision_loss)]
            let f = f64::from(k) / 166.0;
            fix(241 + i64::from(k) * 2, 2.35 + 0.015 * f, 48.85)
        })
        .collect();
    let held = 145; // 40 s before the newest
    let mut tr = Tracker::new(Arc::clone(&plan));
    let mut in_order = Tracker::new(Arc::clone(&plan));
    tr.tick(ts(240));
    in_order.tick(ts(240));
    for (k, p) in run.iter().enumerate() {
        let ping = PingOf {
            device: "R0-0",
            carrier: "R0",
            relay: None,
            seq: k as u64 + 1,
            ping: p,
        };
        in_order.apply_batch(std::iter::once(ping));
        if k != held {
            tr.apply_batch(std::iter::once(ping));
        }
    }
    assert_eq!(tr.replayed(), 0, "pings in order are never replayed");
    let late = PingOf {
        device: "R0-0",
        carrier: "R0",
        relay: None,
        seq: held as u64 + 1,
        ping: &run[held],
    };
    tr.apply_batch(std::iter::once(late));
    let after = run.len() - held;
    let cost = tr.replayed();
    assert!(
        cost >= after as u64 && cost <= (after + super::CHECKPOINT_EVERY) as u64,
        "a ping {after} pings late replayed {cost} pings"
    );
    assert_eq!(
        tr.snapshot(ts(600), false),
        in_order.snapshot(ts(600), false)
    );
    // R1, the next runner, pings late from home, 5 km away: nothing to replay.
    let home = fix(300, 2.40, 48.89);
    tr.apply_batch(std::iter::once(PingOf {
        device: "R1-0",
        carrier: "R1",
        relay: None,
        seq: 10_000,
        ping: &home,
    }));
    assert_eq!(tr.replayed(), cost, "a bystander's late ping cost a replay");
}

#[test]
fn memory_is_let_go_behind_the_kept_window() {
    let plan = plan(3, false);
    let (inputs, _, _) = scenario(11, 3);
    let mut all = Tracker::new(Arc::clone(&plan));
    let mut short = Tracker::new(Arc::clone(&plan)).keeping(60_000);
    feed(&mut all, &inputs, 1, ts(0));
    feed(&mut short, &inputs, 1, ts(0));
    assert!(
        short.held().pings < all.held().pings / 2,
        "{:?} vs {:?}",
        short.held(),
        all.held()
    );
}

#[test]
fn the_scenarios_do_meet_at_the_exchanges() {
    // The property above records proximity handoffs: the scenarios must produce some.
    let plan = plan(3, false);
    let found: usize = (1..20)
        .map(|seed| proximity_of(&plan, &scenario(seed, 3).0, &[(0, ts(240))]).len())
        .sum();
    assert!(found > 10, "{found}");
}
