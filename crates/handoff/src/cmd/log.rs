//! `handoff log verify`: re-checks a custody log's hash chain, from a file or a server.

use anyhow::{Context, bail};
use handoff_core::custody::verify as verify_chain;
use std::path::Path;
use std::process::ExitCode;

pub fn verify(
    file: Option<&Path>,
    server: Option<&str>,
    event: Option<&str>,
    relay: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (text, name) = match (file, server, event, relay) {
        (Some(f), _, _, _) => (
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
            f.display().to_string(),
        ),
        (None, Some(s), Some(e), Some(r)) => {
            let url = format!(
                "{}/api/v1/events/{e}/relays/{r}/custody",
                s.trim_end_matches('/')
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let text = rt.block_on(async {
                let resp = reqwest::get(&url)
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                let status = resp.status();
                let body = resp.text().await?;
                if !status.is_success() {
                    bail!("{url} answered {status}: {body}");
                }
                anyhow::Ok(body)
            })?;
            (text, url)
        }
        _ => bail!("give a custody log file, or --server URL --event E --relay R"),
    };
    match verify_chain(&text) {
        Ok(n) => {
            println!("{name}: ok, {n} entries, every hash and link holds");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{name}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
