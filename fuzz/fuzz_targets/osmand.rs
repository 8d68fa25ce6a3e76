//! The OsmAnd protocol (query string, form body, Traccar Client's JSON): a valid ping or an
//! error, never a panic; an accepted ping is a real position.
#![no_main]

use handoff_core::ping::SpeedUnit;
use handoff_server::ingest::osmand::{decode_json, decode_params, device_id};
use libfuzzer_sys::fuzz_target;

fn check(p: &handoff_core::ping::Ping) {
    assert!(
        (-180.0..=180.0).contains(&p.lon) && (-90.0..=90.0).contains(&p.lat),
        "{p:?}"
    );
    assert!(p.acc_m.is_none_or(|a| a.is_finite() && a >= 0.0), "{p:?}");
    assert!(
        p.speed_mps.is_none_or(|s| s.is_finite() && s >= 0.0),
        "{p:?}"
    );
    assert!(
        p.heading_deg.is_none_or(|h| (0.0..360.0).contains(&h)),
        "{p:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::from_second(1_723_410_000).expect("a time");
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) {
        let _ = device_id(&pairs);
        if let Ok(report) = decode_params(&pairs, now) {
            for unit in [SpeedUnit::Knots, SpeedUnit::Mps, SpeedUnit::Kmh] {
                if let Ok(p) = report.ping(now, |_| unit) {
                    check(&p);
                }
            }
        }
    }
    if let Ok((_, report)) = decode_json(data)
        && let Ok(p) = report.ping(now)
    {
        check(&p);
    }
});
