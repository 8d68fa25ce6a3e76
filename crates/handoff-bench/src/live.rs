//! The `/live` scenario: many clients loading `GET /api/v1/events/{event}/live` as fast as they
//! can, as spectators' pages do on a busy day, once asking for gzip and once not. The server
//! serves a precomputed document (rebuilt at most once per change and second), so this
//! measures how fast it hands out shared bytes; the size of the document is measured once, on
//! the wire (loadgen asks for no decompression, so a gzip body is counted compressed).

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Client, Url};

use crate::scenario::{Outcome, drive};
use crate::usage::{Between, Sample};

pub struct Live {
    pub gzip: bool,
    /// Bytes of one answer on the wire.
    pub body_bytes: usize,
    pub outcome: Outcome,
    pub usage: Between,
}

/// `clients` clients load `/live` for `seconds`; `gzip` sends `Accept-Encoding: gzip`.
pub async fn hammer(
    client: &Client,
    base: &Url,
    event: &str,
    clients: usize,
    seconds: u64,
    gzip: bool,
    server_pid: Option<u32>,
) -> anyhow::Result<Live> {
    let url = base.join(&format!("api/v1/events/{event}/live"))?;
    let encoding = if gzip { "gzip" } else { "identity" };
    let body_bytes = load(client, &url, encoding)
        .await
        .with_context(|| format!("GET {url} ({encoding})"))?;
    let name = format!("`GET /live`, `Accept-Encoding: {encoding}`, {clients} clients");
    let before = Sample::take(server_pid);
    let (client, url) = (client.clone(), url.to_string());
    let outcome = drive(
        &name,
        u64::MAX,
        clients,
        Duration::from_secs(seconds),
        move |_| {
            let request = client.get(&url).header("accept-encoding", encoding);
            async move {
                let r = request.send().await.map_err(|e| e.to_string())?;
                check(&r, gzip).map_err(|e| e.to_string())?;
                r.bytes().await.map_err(|e| e.to_string())?;
                Ok(0)
            }
        },
    )
    .await;
    let after = Sample::take(server_pid);
    Ok(Live {
        gzip,
        body_bytes,
        outcome,
        usage: Between::of(&before, &after),
    })
}

/// One load, for the size of the answer.
async fn load(client: &Client, url: &Url, encoding: &str) -> anyhow::Result<usize> {
    let r = client
        .get(url.clone())
        .header("accept-encoding", encoding)
        .send()
        .await?;
    check(&r, encoding == "gzip")?;
    Ok(r.bytes().await?.len())
}

fn check(r: &reqwest::Response, gzip: bool) -> anyhow::Result<()> {
    if !r.status().is_success() {
        bail!("{}", r.status());
    }
    let encoded = r
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if encoded != gzip {
        bail!(
            "asked for {}, got content-encoding {:?}",
            if gzip { "gzip" } else { "no encoding" },
            r.headers().get("content-encoding")
        );
    }
    Ok(())
}
