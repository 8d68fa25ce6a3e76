//! The event under load: one walker per device, each on a relay of its own with one 48-hour
//! leg along a straight 73 km line east of Paris (all legs active at once, as in race mode), and
//! the device tokens registered for them.
//!
//! Pings are made to be realistic for the tracker and never duplicates: device `d` reports once
//! a second at `window start + k s + d ms` (its k-th ping), from where the walker is then. Each
//! scenario has a window of its own, both inside the leg and before now.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use reqwest::Client;
use serde_json::json;

use crate::target::Target;

/// Length of each scenario's time window, in seconds: at most this many pings per device.
pub const WINDOW_S: u64 = 21 * 3600;
const LEG_DURATION_S: i64 = 48 * 3600;
/// The leg began this long before the run; both windows end before now.
const LEG_AGE_S: i64 = 45 * 3600;
// Both windows (1 h + 2 × WINDOW_S) end before now, and the leg is still running.
const _: () = assert!(3_600 + 2 * WINDOW_S as i64 <= LEG_AGE_S && LEG_AGE_S < LEG_DURATION_S);
const LON_START: f64 = 2.25;
const LON_SPAN: f64 = 1.0;
const LAT_FIRST: f64 = 48.80;
const LAT_STEP: f64 = 0.003;
/// About 73 km in 48 h.
const SPEED_MPS: f64 = 0.42;

/// Which scenario a ping belongs to: each has its own time window.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    OsmAnd,
    Batch,
}

pub struct Device {
    pub token: String,
}

pub struct Fixture {
    pub devices: Vec<Device>,
    leg_start_ms: i64,
}

/// One ping as the scenarios send it.
pub struct Fix {
    pub t_ms: i64,
    pub lon: f64,
    pub lat: f64,
    pub speed_mps: f64,
}

impl Fixture {
    /// Uploads the plan and registers one device per walker.
    pub async fn install(
        client: &Client,
        target: &Target,
        event: &str,
        devices: u64,
    ) -> anyhow::Result<Self> {
        let now = Timestamp::now();
        // Whole seconds, so the plan's start reads cleanly.
        let leg_start = Timestamp::from_second(now.as_second() - LEG_AGE_S)?;
        let plan = plan_toml(event, devices, leg_start);
        let url = target.base.join(&format!("api/v1/events/{event}"))?;
        let r = client
            .put(url)
            .bearer_auth(&target.admin_token)
            .header("content-type", "application/toml")
            .body(plan)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "uploading the plan failed: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        // Device ids are unique per run, so loadgen can run again against the same server.
        let run = now.as_second();
        let url = target
            .base
            .join(&format!("api/v1/events/{event}/devices"))?;
        let mut registered = Vec::new();
        for d in 0..devices {
            let body =
                json!({ "device": format!("walker-{:02}-{run}", d + 1), "carrier": carrier(d) });
            let r = client
                .post(url.clone())
                .bearer_auth(&target.admin_token)
                .json(&body)
                .send()
                .await?;
            let status = r.status();
            let answer: serde_json::Value = r
                .json()
                .await
                .with_context(|| format!("registering device {d}: {status}"))?;
            let token = answer["token"]
                .as_str()
                .with_context(|| format!("registering device {d}: {status} {answer}"))?;
            registered.push(Device {
                token: token.to_owned(),
            });
        }
        Ok(Self {
            devices: registered,
            leg_start_ms: leg_start.as_millisecond(),
        })
    }

    /// The `k`-th ping of device `d` in a scenario's window.
    pub fn fix(&self, window: Window, d: u64, k: u64) -> Fix {
        let window_start_ms = self.leg_start_ms
            + match window {
                Window::OsmAnd => 3_600 * 1_000,
                Window::Batch => (3_600 + i64::try_from(WINDOW_S).unwrap_or(0)) * 1_000,
            };
        let t_ms = window_start_ms + i64::try_from(k * 1_000 + d).unwrap_or(i64::MAX / 2);
        #[allow(clippy::cast_precision_loss)] // milliseconds within a day are exact in f64
        let fraction = (t_ms - self.leg_start_ms) as f64 / (LEG_DURATION_S * 1_000) as f64;
        #[allow(clippy::cast_precision_loss)]
        let lat = LAT_FIRST + LAT_STEP * d as f64;
        Fix {
            t_ms,
            lon: LON_START + LON_SPAN * fraction,
            lat,
            speed_mps: SPEED_MPS,
        }
    }

    pub fn device_count(&self) -> u64 {
        self.devices.len() as u64
    }
}

fn carrier(d: u64) -> String {
    format!("Walker {:02}", d + 1)
}

/// The plan: a relay per walker, each one leg with inline points.
fn plan_toml(event: &str, devices: u64, leg_start: Timestamp) -> String {
    let start = leg_start.to_zoned_datetime(TimeZone::UTC);
    let duration = SignedDuration::from_secs(LEG_DURATION_S);
    let mut s = format!("[event]\nid = \"{event}\"\nname = \"loadgen: {devices} walkers\"\n");
    for d in 0..devices {
        #[allow(clippy::cast_precision_loss)]
        let lat = LAT_FIRST + LAT_STEP * d as f64;
        let (a, b, c) = (LON_START, LON_START + LON_SPAN / 2.0, LON_START + LON_SPAN);
        let n = d + 1;
        let _ = write!(
            s,
            "\n[[relays]]\nid = \"walker-{n:02}\"\nname = \"Walker {n:02}\"\nobject = \"Baton {n:02}\"\n\n\
             [[relays.legs]]\ncarriers = [\"{carrier}\"]\nmode = \"walk\"\nstart = \"{start}\"\nduration = \"{secs}s\"\n\
             route = {{ points = [[{a:.4}, {lat:.4}], [{b:.4}, {lat:.4}], [{c:.4}, {lat:.4}]] }}\n",
            carrier = carrier(d),
            secs = duration.as_secs(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_of_a_device_never_share_a_time_and_windows_do_not_overlap() {
        let f = Fixture {
            devices: Vec::new(),
            leg_start_ms: 0,
        };
        let last_osmand = f.fix(Window::OsmAnd, 49, WINDOW_S - 1).t_ms;
        let first_batch = f.fix(Window::Batch, 0, 0).t_ms;
        assert!(last_osmand < first_batch);
        assert!(f.fix(Window::Batch, 49, WINDOW_S - 1).t_ms < LEG_AGE_S * 1_000);
        assert_ne!(
            f.fix(Window::OsmAnd, 3, 7).t_ms,
            f.fix(Window::OsmAnd, 3, 8).t_ms
        );
    }

    #[test]
    fn the_plan_names_every_walker() {
        let toml = plan_toml("bench", 3, Timestamp::UNIX_EPOCH);
        assert_eq!(toml.matches("[[relays.legs]]").count(), 3);
        assert!(toml.contains("carriers = [\"Walker 03\"]"));
        assert!(toml.contains("start = \"1970-01-01T00:00:00+00:00[UTC]\""));
    }
}
