//! Ingest: turning what phones and trackers send into [`Ping`]s, in SI units.
//!
//! Three wire formats arrive: our own batch API ([`batch`]), the OsmAnd protocol as Traccar
//! decodes it, with Traccar Client's JSON body ([`osmand`]), and OwnTracks HTTP ([`owntracks`]).
//! Each decoder only reads its format and converts units (knots, km/h, battery fractions); every
//! value then goes through the one [`validate`] here, so a ping means the same thing whichever
//! app sent it. The decoders are pure functions of already-extracted request pieces (pairs, body
//! bytes, header values) and of `now`, so that the HTTP layer stays a thin shell and every rule
//! is unit-tested without a server.

pub mod batch;
pub mod dropped;
pub mod error;
pub mod last_fix;
pub mod osmand;
pub mod owntracks;
pub mod speed_unit;

use std::str::FromStr;

use handoff_core::ping::Ping;
use jiff::{SignedDuration, Timestamp, civil::DateTime, tz::TimeZone};
use serde_json::{Map, Value};

pub use error::{IngestError, Result};

/// How far ahead of the server's clock a ping may be stamped. Phones sync their clocks over the
/// network, so a few seconds ahead is normal; ten minutes ahead is a broken clock, and accepting
/// it would pin the carrier's "last position" in the future.
pub const MAX_CLOCK_AHEAD: SignedDuration = SignedDuration::from_mins(10);

/// One value as a client sent it: already converted to SI units, and tagged with the name the
/// client used for it, so a validation error points at the client's own field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading<T = f64> {
    pub field: &'static str,
    pub value: T,
}

/// A ping as decoded from one wire format, before validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawPing {
    pub t: Reading<Timestamp>,
    pub lon: Reading,
    pub lat: Reading,
    pub acc_m: Option<Reading>,
    pub speed_mps: Option<Reading>,
    pub heading_deg: Option<Reading>,
    pub alt_m: Option<Reading>,
    pub batt_pct: Option<Reading>,
}

/// The rules every ping obeys, whatever format it came in: finite numbers, lon in [-180, 180],
/// lat in [-90, 90], a time at most [`MAX_CLOCK_AHEAD`] after `now`, non-negative accuracy and
/// speed, battery in [0, 100] %, and the heading normalized to [0, 360).
///
/// # Errors
/// `not_finite`, `out_of_range` or `future_timestamp`, naming the first offending field.
pub fn validate(raw: &RawPing, now: Timestamp) -> Result<Ping> {
    let t = not_in_future(raw.t, now)?;
    let lon = within(raw.lon, -180.0, 180.0, "a longitude", "degrees")?;
    let lat = within(raw.lat, -90.0, 90.0, "a latitude", "degrees")?;
    let acc_m = raw
        .acc_m
        .map(|r| non_negative(r, "an accuracy", "m"))
        .transpose()?;
    let speed_mps = raw
        .speed_mps
        .map(|r| non_negative(r, "a speed", "m/s"))
        .transpose()?;
    let heading_deg = raw.heading_deg.map(normalized_heading).transpose()?;
    let alt_m = raw.alt_m.map(finite).transpose()?;
    let batt_pct = raw
        .batt_pct
        .map(|r| within(r, 0.0, 100.0, "a battery level", "%"))
        .transpose()?;
    Ok(Ping {
        t,
        lon,
        lat,
        acc_m,
        speed_mps,
        heading_deg,
        alt_m,
        batt_pct,
    })
}

fn not_in_future(t: Reading<Timestamp>, now: Timestamp) -> Result<Timestamp> {
    let ahead = t.value.duration_since(now);
    if ahead > MAX_CLOCK_AHEAD {
        let field = t.field;
        return Err(IngestError::new(
            IngestError::FUTURE_TIMESTAMP,
            format!(
                "`{field}` is {}, {:#} ahead of the server clock ({now}); more than {:#} ahead \
                 means the device clock is wrong: set it to automatic network time",
                t.value, ahead, MAX_CLOCK_AHEAD
            ),
            Some(field),
        ));
    }
    Ok(t.value)
}

fn finite(r: Reading) -> Result<f64> {
    if r.value.is_finite() {
        Ok(r.value)
    } else {
        Err(IngestError::not_finite(r.field))
    }
}

fn within(r: Reading, min: f64, max: f64, what: &str, unit: &str) -> Result<f64> {
    let v = finite(r)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        let field = r.field;
        Err(IngestError::out_of_range(
            field,
            format!("`{field}` is {v} {unit}, but {what} must be within [{min}, {max}] {unit}"),
        ))
    }
}

fn non_negative(r: Reading, what: &str, unit: &str) -> Result<f64> {
    let v = finite(r)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        let field = r.field;
        Err(IngestError::out_of_range(
            field,
            format!("`{field}` is {v} {unit}, but {what} cannot be negative"),
        ))
    }
}

fn normalized_heading(r: Reading) -> Result<f64> {
    let h = finite(r)?.rem_euclid(360.0);
    // `rem_euclid` rounds a tiny negative heading up to exactly 360.0, and keeps -0.0.
    Ok(if h >= 360.0 { 0.0 } else { h + 0.0 })
}

/// Drops a `-1`: the "unknown" marker that Android and iOS location APIs (and so Traccar Client)
/// put in speed, heading, accuracy, altitude and battery level.
#[allow(clippy::float_cmp)] // -1 is sent as an exact marker, not a measured value
pub(crate) fn unknown_if_minus_one(r: Option<Reading>) -> Option<Reading> {
    r.filter(|r| r.value != -1.0)
}

/// At most this much of a client's value is echoed back in an error message.
const ECHO_MAX_CHARS: usize = 40;

/// A client's value quoted for an error message, cut short so a huge one is not echoed whole.
pub(crate) fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_MAX_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(ECHO_MAX_CHARS).collect();
        format!("{head:?}…")
    }
}

/// A number from text (query strings, form bodies). Rust's parser, like Java's, reads "NaN" and
/// "inf": they parse here and are refused by [`validate`] as `not_finite`.
pub(crate) fn parse_number(field: &'static str, s: &str) -> Result<Reading> {
    s.trim()
        .parse::<f64>()
        .map(|value| Reading { field, value })
        .map_err(|_| {
            IngestError::invalid_value(
                field,
                format!("`{field}` must be a number, got {}", echo(s)),
            )
        })
}

/// Values below this many are Unix seconds, from it on Unix milliseconds (2^31 seconds is the
/// year 2038, 2^31 milliseconds is January 1970): Traccar's rule for OsmAnd `timestamp`.
const MILLIS_FROM: i64 = 1 << 31;

pub(crate) fn from_unix_seconds_or_millis(field: &'static str, n: i64) -> Result<Timestamp> {
    let t = if n < MILLIS_FROM {
        Timestamp::from_second(n)
    } else {
        Timestamp::from_millisecond(n)
    };
    t.map_err(|e| {
        IngestError::invalid_value(field, format!("`{field}` {n} is not a usable time: {e}"))
    })
}

pub(crate) fn from_unix_seconds_f64(field: &'static str, secs: f64) -> Result<Timestamp> {
    SignedDuration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| Timestamp::UNIX_EPOCH.checked_add(d).ok())
        .ok_or_else(|| {
            IngestError::invalid_value(
                field,
                format!("`{field}` {secs} is not a usable Unix time in seconds"),
            )
        })
}

/// An RFC 3339 / ISO 8601 instant, which must carry its offset (`Z` or `+02:00`).
pub(crate) fn parse_rfc3339(field: &'static str, s: &str) -> Result<Timestamp> {
    Timestamp::from_str(s.trim()).map_err(|e| {
        IngestError::invalid_value(
            field,
            format!(
                "`{field}` must be an RFC 3339 time with an offset, such as \
                 2024-08-11T21:05:00Z; got {} ({e})",
                echo(s)
            ),
        )
    })
}

/// A timestamp written as text in one of the forms Traccar reads: an ISO 8601 instant with an
/// offset, or a wall time without one (`2024-08-11 21:05:00`), which is taken as UTC.
pub(crate) fn parse_datetime_text(field: &'static str, s: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = Timestamp::from_str(s) {
        return Ok(t);
    }
    // A wall time needs its time of day: a bare date would silently become midnight.
    if s.contains(':')
        && let Ok(dt) = DateTime::from_str(s)
        && let Ok(t) = TimeZone::UTC.to_timestamp(dt)
    {
        return Ok(t);
    }
    Err(IngestError::invalid_value(
        field,
        format!(
            "`{field}` must be Unix seconds, Unix milliseconds, an ISO 8601 time such as \
             2024-08-11T21:05:00Z, or 2024-08-11 21:05:00 (UTC); got {}",
            echo(s)
        ),
    ))
}

/// Parses a whole JSON body; failure is a whole-request `malformed_json`.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| IngestError::malformed_json(format!("the body is not valid JSON: {e}")))
}

/// The key of a dotted field path: `location.coords.latitude` → `latitude`.
fn key_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value at the last segment of `path` in `obj`; `null` counts as absent.
fn json_get<'v>(obj: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    obj.get(key_of(path)).filter(|v| !v.is_null())
}

/// An optional JSON number; a value of another type is `invalid_value`.
pub(crate) fn json_number(obj: &Map<String, Value>, path: &'static str) -> Result<Option<Reading>> {
    match json_get(obj, path) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|value| Some(Reading { field: path, value }))
            .ok_or_else(|| IngestError::not_finite(path)),
        Some(other) => Err(IngestError::invalid_value(
            path,
            format!("`{path}` must be a number, not {}", json_kind(other)),
        )),
    }
}

/// An optional JSON string.
pub(crate) fn json_str<'v>(
    obj: &'v Map<String, Value>,
    path: &'static str,
) -> Result<Option<&'v str>> {
    match json_get(obj, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(IngestError::invalid_value(
            path,
            format!("`{path}` must be a string, not {}", json_kind(other)),
        )),
    }
}

/// An optional JSON object.
pub(crate) fn json_object<'v>(
    obj: &'v Map<String, Value>,
    path: &'static str,
) -> Result<Option<&'v Map<String, Value>>> {
    match json_get(obj, path) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(IngestError::invalid_value(
            path,
            format!("`{path}` must be an object, not {}", json_kind(other)),
        )),
    }
}

/// A JSON value that must be there: absent (or `null`) is `missing_field`.
pub(crate) fn required<T>(value: Option<T>, path: &'static str) -> Result<T> {
    value.ok_or_else(|| IngestError::missing_field(path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn raw(lon: f64, lat: f64) -> RawPing {
        RawPing {
            t: Reading {
                field: "t",
                value: ts("2024-08-11T21:05:00Z"),
            },
            lon: Reading {
                field: "lon",
                value: lon,
            },
            lat: Reading {
                field: "lat",
                value: lat,
            },
            acc_m: None,
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        }
    }

    const NOW: &str = "2024-08-11T21:05:00Z";

    #[test]
    fn a_valid_ping_keeps_its_values() {
        let mut r = raw(2.36015, 48.92446);
        r.acc_m = Some(Reading {
            field: "acc",
            value: 4.5,
        });
        r.alt_m = Some(Reading {
            field: "alt",
            value: -12.0,
        });
        r.batt_pct = Some(Reading {
            field: "batt",
            value: 100.0,
        });
        let p = validate(&r, ts(NOW)).unwrap();
        assert_eq!(p.lon, 2.36015);
        assert_eq!(p.lat, 48.92446);
        assert_eq!(p.acc_m, Some(4.5));
        assert_eq!(p.alt_m, Some(-12.0));
        assert_eq!(p.batt_pct, Some(100.0));
    }

    #[test]
    fn the_range_edges_are_accepted() {
        for (lon, lat) in [(-180.0, -90.0), (180.0, 90.0)] {
            assert!(validate(&raw(lon, lat), ts(NOW)).is_ok());
        }
    }

    #[test]
    fn out_of_range_coordinates_name_their_field() {
        let e = validate(&raw(0.0, 91.0), ts(NOW)).unwrap_err();
        assert_eq!(
            (e.code, e.status(), e.field.as_deref()),
            ("out_of_range", 400, Some("lat"))
        );
        let e = validate(&raw(181.0, 0.0), ts(NOW)).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("out_of_range", Some("lon")));
    }

    #[test]
    fn nan_and_infinity_are_not_finite() {
        let e = validate(&raw(f64::NAN, 0.0), ts(NOW)).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("not_finite", Some("lon")));
        let mut r = raw(0.0, 0.0);
        r.alt_m = Some(Reading {
            field: "alt",
            value: f64::INFINITY,
        });
        let e = validate(&r, ts(NOW)).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("not_finite", Some("alt")));
    }

    #[test]
    fn a_clock_up_to_ten_minutes_ahead_is_accepted_beyond_is_refused() {
        let now = ts(NOW);
        let mut r = raw(0.0, 0.0);
        r.t.value = now.checked_add(SignedDuration::from_mins(9)).unwrap();
        assert!(validate(&r, now).is_ok());
        r.t.value = now.checked_add(SignedDuration::from_mins(10)).unwrap();
        assert!(validate(&r, now).is_ok());
        r.t.value = now.checked_add(SignedDuration::from_mins(11)).unwrap();
        let e = validate(&r, now).unwrap_err();
        assert_eq!(
            (e.code, e.status(), e.field.as_deref()),
            ("future_timestamp", 400, Some("t"))
        );
        assert!(e.message.contains("11m"), "{}", e.message);
        // Late pings are normal (phones buffer while offline).
        r.t.value = now.checked_sub(SignedDuration::from_hours(30)).unwrap();
        assert!(validate(&r, now).is_ok());
    }

    #[test]
    fn negative_accuracy_speed_and_battery_out_of_range_are_refused() {
        let cases = [
            ("acc", -1.0, 0),
            ("speed", -0.5, 1),
            ("batt", 100.5, 2),
            ("batt", -3.0, 2),
        ];
        for (field, value, slot) in cases {
            let mut r = raw(0.0, 0.0);
            let reading = Some(Reading { field, value });
            match slot {
                0 => r.acc_m = reading,
                1 => r.speed_mps = reading,
                _ => r.batt_pct = reading,
            }
            let e = validate(&r, ts(NOW)).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("out_of_range", Some(field)),
                "{value}"
            );
        }
    }

    #[test]
    fn headings_are_normalized_to_0_360() {
        let cases = [
            (0.0, 0.0),
            (-0.0, 0.0),
            (359.5, 359.5),
            (360.0, 0.0),
            (-90.0, 270.0),
            (725.0, 5.0),
            (-1e-20, 0.0),
        ];
        for (sent, want) in cases {
            let mut r = raw(0.0, 0.0);
            r.heading_deg = Some(Reading {
                field: "heading",
                value: sent,
            });
            let h = validate(&r, ts(NOW)).unwrap().heading_deg.unwrap();
            assert_eq!(h, want, "{sent}");
            assert!(h.is_sign_positive());
        }
    }

    #[test]
    fn unix_seconds_and_milliseconds_are_told_apart_at_2_pow_31() {
        let want = ts("2024-08-11T21:05:00Z");
        assert_eq!(
            from_unix_seconds_or_millis("timestamp", 1_723_410_300).unwrap(),
            want
        );
        assert_eq!(
            from_unix_seconds_or_millis("timestamp", 1_723_410_300_000).unwrap(),
            want
        );
        assert_eq!(
            from_unix_seconds_or_millis("timestamp", (1 << 31) - 1).unwrap(),
            ts("2038-01-19T03:14:07Z")
        );
        assert_eq!(
            from_unix_seconds_or_millis("timestamp", 1 << 31).unwrap(),
            ts("1970-01-25T20:31:23.648Z")
        );
    }

    #[test]
    fn echo_cuts_long_values() {
        assert_eq!(echo("abc"), "\"abc\"");
        let long = "x".repeat(1000);
        assert!(echo(&long).chars().count() < 50);
    }
}
