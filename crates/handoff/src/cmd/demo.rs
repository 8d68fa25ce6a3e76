//! `handoff demo`: live tracking is not built yet, so for now this says so plainly and shows
//! the flag handover's schedule from the example plan.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/flag-handover/plan.toml");
    println!(
        "handoff demo: live tracking (the server, the simulator and the live page) is not built yet."
    );
    println!("What works today is the plan: here is the flag handover's schedule.\n");
    super::plan::show(&example)
}
