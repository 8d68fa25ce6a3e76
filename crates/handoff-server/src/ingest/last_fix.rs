//! Each device's newest fix, for the operators' list and map of phones: where and when it was
//! taken, when it arrived, its battery and accuracy, so an operator sees at a glance which phones
//! are reporting and where they are (admin only: `GET …/devices`). Kept in
//! memory (this node's view, from its own ingest and from the other nodes' pings it follows),
//! since the server started: a phone that has not reported since a restart shows no fix yet.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use serde::Serialize;

use crate::engine::Committed;

/// A device's newest fix (by the time it was taken).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LastFix {
    /// When the phone took it.
    pub t: Timestamp,
    /// When this server applied it.
    pub received_at: Timestamp,
    pub lon: f64,
    pub lat: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batt_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_m: Option<f64>,
}

/// The newest fix of every device, by event, then device (looked up by `&str` on the ingest
/// path: no key is allocated for a device already known).
#[derive(Debug, Default)]
pub struct LastFixes(Mutex<HashMap<String, HashMap<String, LastFix>>>);

impl LastFixes {
    /// Notes the pings of `event` just committed, applied at `now`; a late ping older than the
    /// device's newest changes nothing.
    pub fn note(&self, event: &str, pings: &[Committed], now: Timestamp) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !all.contains_key(event) {
            all.insert(event.to_owned(), HashMap::new());
        }
        let Some(devices) = all.get_mut(event) else {
            return;
        };
        for c in pings {
            let fix = LastFix {
                t: c.ping.t,
                received_at: now,
                lon: c.ping.lon,
                lat: c.ping.lat,
                batt_pct: c.ping.batt_pct,
                acc_m: c.ping.acc_m,
            };
            match devices.get_mut(c.device.as_str()) {
                Some(known) if known.t >= fix.t => {}
                Some(known) => *known = fix,
                None => {
                    devices.insert(c.device.clone(), fix);
                }
            }
        }
    }

    /// The newest fix of a device, if it sent one since the server started.
    #[must_use]
    pub fn of(&self, event: &str, device: &str) -> Option<LastFix> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(event)
            .and_then(|devices| devices.get(device))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_core::ping::Ping;

    fn committed(device: &str, t: i64, batt: Option<f64>) -> Committed {
        Committed {
            device: device.into(),
            carrier: "Ann".into(),
            relay: None,
            seq: t,
            ping: Ping {
                t: Timestamp::from_second(t).unwrap(),
                lon: 2.35,
                lat: 48.85,
                acc_m: Some(8.0),
                speed_mps: None,
                heading_deg: None,
                alt_m: None,
                batt_pct: batt,
            },
        }
    }

    #[test]
    fn the_newest_fix_by_its_time_is_kept_whatever_the_order_of_arrival() {
        let fixes = LastFixes::default();
        let now = Timestamp::from_second(1_000).unwrap();
        fixes.note("e", &[committed("a", 100, Some(80.0))], now);
        fixes.note("e", &[committed("a", 90, Some(81.0))], now); // late: older
        fixes.note("e", &[committed("b", 95, None)], now);
        let a = fixes.of("e", "a").unwrap();
        assert_eq!((a.t.as_second(), a.batt_pct), (100, Some(80.0)));
        assert_eq!(fixes.of("e", "b").unwrap().t.as_second(), 95);
        assert!(fixes.of("e", "c").is_none());
        assert!(fixes.of("other", "a").is_none());
    }
}
