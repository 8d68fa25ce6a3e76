//! The plan parser: any text gives a plan or located problems, never a panic; a valid plan's
//! legs follow each other in time and its routes have finite lengths.
#![no_main]

use handoff_core::plan::{NoFiles, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match parse(src, &NoFiles) {
        Ok(plan) => {
            for relay in &plan.relays {
                assert!(!relay.legs.is_empty());
                for pair in relay.legs.windows(2) {
                    assert!(pair[0].end <= pair[1].start, "legs overlap");
                }
                for leg in &relay.legs {
                    assert!(leg.start <= leg.end, "a leg ends before it starts");
                    assert!(leg.length_m().is_finite() && leg.length_m() >= 0.0);
                }
            }
        }
        Err(problems) => {
            // Every problem points into the source.
            for span in problems.0.iter().filter_map(|p| p.span.as_ref()) {
                assert!(span.end <= src.len(), "a problem outside the source");
            }
        }
    }
});
