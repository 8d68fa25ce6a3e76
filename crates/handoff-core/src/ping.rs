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

/// The unit a device's OsmAnd-form `speed` is in. Traccar reads that field as knots (Traccar
/// Client sends knots), but the OsmAnd app, GPSLogger's `%SPD` and Colota send metres per
/// second; a few apps send km/h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeedUnit {
    Knots,
    Mps,
    Kmh,
}

impl SpeedUnit {
    /// Every unit, in the order they are tried.
    pub const ALL: [SpeedUnit; 3] = [SpeedUnit::Knots, SpeedUnit::Mps, SpeedUnit::Kmh];

    /// How many of this unit make one metre per second.
    #[must_use]
    pub const fn per_mps(self) -> f64 {
        match self {
            // One knot is one nautical mile (1852 m) per hour.
            SpeedUnit::Knots => 3600.0 / 1852.0,
            SpeedUnit::Mps => 1.0,
            SpeedUnit::Kmh => 3.6,
        }
    }

    /// A speed in this unit, in metres per second.
    #[must_use]
    pub fn to_mps(self, value: f64) -> f64 {
        match self {
            SpeedUnit::Knots => value * 1852.0 / 3600.0,
            SpeedUnit::Mps => value,
            SpeedUnit::Kmh => value * 1000.0 / 3600.0,
        }
    }

    /// The name used in the API and the store: `knots`, `mps`, `kmh`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SpeedUnit::Knots => "knots",
            SpeedUnit::Mps => "mps",
            SpeedUnit::Kmh => "kmh",
        }
    }
}

impl std::str::FromStr for SpeedUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpeedUnit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| format!("a speed unit is one of knots, mps, kmh; got {s:?}"))
    }
}

impl std::fmt::Display for SpeedUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SpeedUnit;

    #[test]
    fn speed_units_convert_to_mps_and_round_trip_their_names() {
        assert!((SpeedUnit::Knots.to_mps(10.0) - 5.144_444).abs() < 1e-6);
        assert!((SpeedUnit::Kmh.to_mps(36.0) - 10.0).abs() < 1e-12);
        assert_eq!(SpeedUnit::Mps.to_mps(3.5), 3.5);
        for u in SpeedUnit::ALL {
            assert_eq!(u.as_str().parse::<SpeedUnit>(), Ok(u));
            assert!((u.to_mps(u.per_mps()) - 1.0).abs() < 1e-12, "{u}");
        }
        assert!("m/s".parse::<SpeedUnit>().is_err());
    }
}
