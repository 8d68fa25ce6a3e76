//! The batch API (a JSON array or NDJSON): per-item results or a whole-request error, never a
//! panic; every accepted ping is a real position.
#![no_main]

use handoff_server::ingest::batch::decode_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::from_second(1_723_410_000).expect("a time");
    for ct in ["application/json", "application/x-ndjson"] {
        if let Ok(items) = decode_batch(data, Some(ct), now) {
            for p in items.into_iter().flatten() {
                assert!(
                    (-180.0..=180.0).contains(&p.lon) && (-90.0..=90.0).contains(&p.lat),
                    "{p:?}"
                );
            }
        }
    }
});
