//! A ping: one position report from a carrier's device, in SI units whatever wire format it
//! arrived in (OsmAnd knots and OwnTracks km/h are converted at the edge).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One position report. Times are UTC instants; longitude before latitude.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    /// When the device measured the position (device clock).
    pub t: Timestamp,
    pub lon: f64,
    pub lat: f64,
    /// Horizontal accuracy (1 sigma-ish, as the phone reports it), metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees clockwise from true north, [0, 360).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_m: Option<f64>,
    /// Battery level, percent [0, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batt_pct: Option<f64>,
}
