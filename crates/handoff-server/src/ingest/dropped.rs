//! Reports that an authenticated device sent and that can never be stored, counted per device.
//!
//! OwnTracks on Android, Traccar Client and GPSLogger keep a refused message at the head of
//! their queue and retry it for hours or weeks, blocking every fix behind it. So the phone
//! routes answer such a report with a 2xx and store nothing from it; the operator sees it here
//! instead (the device listing and `/metrics`), with the reason, and can fix the phone. Only
//! bad credentials still get a 4xx.
//!
//! The counts live in memory since the server started (one node; PostgreSQL and several nodes
//! come later, and would keep them in the store).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use super::IngestError;

/// Why a report was not stored. The names are the `reason` label in `/metrics` and the keys of
/// a device's `dropped` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A heartbeat or status report without coordinates (Traccar Client's heartbeat).
    NoPosition,
    /// A coordinate, accuracy, speed or battery level outside its range.
    OutOfRange,
    /// NaN or infinity.
    NotFinite,
    /// A time more than ten minutes ahead of the server's clock (a broken phone clock).
    FutureTimestamp,
    /// An OwnTracks payload encrypted with a key the server does not have.
    Encrypted,
    /// Not the format at all: unreadable JSON, a value of the wrong type, a required field
    /// other than the position missing.
    Malformed,
}

impl DropReason {
    /// Every reason, in the order they are listed.
    pub const ALL: [DropReason; 6] = [
        DropReason::NoPosition,
        DropReason::OutOfRange,
        DropReason::NotFinite,
        DropReason::FutureTimestamp,
        DropReason::Encrypted,
        DropReason::Malformed,
    ];

    /// Fields whose absence means the report carries no position at all.
    const POSITION_FIELDS: [&'static str; 6] = [
        "lat",
        "lon",
        "location",
        "location.coords",
        "location.coords.latitude",
        "location.coords.longitude",
    ];

    /// The reason a decoding error stands for.
    #[must_use]
    pub fn of(e: &IngestError) -> DropReason {
        match e.code {
            IngestError::MISSING_FIELD
                if e.field
                    .as_deref()
                    .is_some_and(|f| Self::POSITION_FIELDS.contains(&f)) =>
            {
                DropReason::NoPosition
            }
            IngestError::OUT_OF_RANGE => DropReason::OutOfRange,
            IngestError::NOT_FINITE => DropReason::NotFinite,
            IngestError::FUTURE_TIMESTAMP => DropReason::FutureTimestamp,
            IngestError::ENCRYPTED => DropReason::Encrypted,
            _ => DropReason::Malformed,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::NoPosition => "no_position",
            DropReason::OutOfRange => "out_of_range",
            DropReason::NotFinite => "not_finite",
            DropReason::FutureTimestamp => "future_timestamp",
            DropReason::Encrypted => "encrypted",
            DropReason::Malformed => "malformed",
        }
    }
}

/// What the operator sees of one device's dropped reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceDrops {
    /// Count per reason; reasons never seen are left out.
    pub by_reason: BTreeMap<DropReason, u64>,
    /// The last one: its reason and the decoder's message (what to change on the phone).
    pub last: Option<LastDrop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastDrop {
    pub reason: DropReason,
    pub format: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl DeviceDrops {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }
}

/// The dropped reports of every device since start-up, by (event, device).
#[derive(Debug, Default)]
pub struct Dropped {
    devices: Mutex<HashMap<(String, String), DeviceDrops>>,
}

impl Dropped {
    /// Counts one report of `device` of `event` that `e` kept from being stored.
    pub fn count(
        &self,
        event: &str,
        device: &str,
        format: &'static str,
        e: &IngestError,
    ) -> DropReason {
        let reason = DropReason::of(e);
        let mut devices = self
            .devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let d = devices
            .entry((event.to_owned(), device.to_owned()))
            .or_default();
        *d.by_reason.entry(reason).or_default() += 1;
        d.last = Some(LastDrop {
            reason,
            format,
            message: e.message.clone(),
            field: e.field.clone(),
        });
        reason
    }

    /// One device's dropped reports (none counted: empty).
    #[must_use]
    pub fn of(&self, event: &str, device: &str) -> DeviceDrops {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(event.to_owned(), device.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_position_is_no_position_any_other_missing_field_is_malformed() {
        for field in ["lat", "lon", "location.coords", "location.coords.latitude"] {
            let e = IngestError::missing_field(field);
            assert_eq!(DropReason::of(&e), DropReason::NoPosition, "{field}");
        }
        for field in ["tst", "_type", "location.timestamp"] {
            let e = IngestError::missing_field(field);
            assert_eq!(DropReason::of(&e), DropReason::Malformed, "{field}");
        }
        let cases = [
            (
                IngestError::out_of_range("lat", "x"),
                DropReason::OutOfRange,
            ),
            (IngestError::not_finite("speed"), DropReason::NotFinite),
            (
                IngestError::new(IngestError::FUTURE_TIMESTAMP, "x", Some("tst")),
                DropReason::FutureTimestamp,
            ),
            (IngestError::malformed_json("x"), DropReason::Malformed),
            (
                IngestError::invalid_value("timestamp", "x"),
                DropReason::Malformed,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(DropReason::of(&e), want, "{e:?}");
        }
    }

    #[test]
    fn counts_are_per_device_and_keep_the_last_message() {
        let dropped = Dropped::default();
        dropped.count("paris", "a", "osmand", &IngestError::missing_field("lat"));
        dropped.count("paris", "a", "osmand", &IngestError::missing_field("lat"));
        dropped.count(
            "paris",
            "a",
            "owntracks",
            &IngestError::out_of_range("lat", "`lat` is 91"),
        );
        dropped.count("berlin", "a", "osmand", &IngestError::missing_field("lat"));
        let a = dropped.of("paris", "a");
        assert_eq!(a.total(), 3);
        assert_eq!(
            a.by_reason.into_iter().collect::<Vec<_>>(),
            [(DropReason::NoPosition, 2), (DropReason::OutOfRange, 1)]
        );
        let last = a.last.unwrap();
        assert_eq!(
            (last.reason, last.format, last.message.as_str()),
            (DropReason::OutOfRange, "owntracks", "`lat` is 91")
        );
        assert_eq!(dropped.of("paris", "b"), DeviceDrops::default());
        assert_eq!(dropped.of("berlin", "a").total(), 1);
    }
}
