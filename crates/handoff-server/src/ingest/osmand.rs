//! The OsmAnd protocol, as Traccar's `OsmAndProtocolDecoder` reads it: what Traccar Client,
//! OsmAnd, GPSLogger and many other apps speak, so any of them can carry the flag.
//!
//! Two shapes arrive. Parameters (`GET /osmand?id=…&lat=…`, or the same as a form body), where
//! Traccar reads `speed` as **knots**, a habit from NMEA, though some apps send m/s there (the
//! unit is chosen per device, see [`super::speed_unit`]); and the JSON body of Traccar Client
//! 9+, which is its location SDK's native format, with `speed` in **m/s**. In both, `-1` means
//! "unknown". Each is read in two steps: the device id (here the device token) first, so the
//! caller can authenticate, then the ping, whose failure is then the device's problem to be
//! counted rather than a reason to refuse the request. What Traccar keeps as free attributes
//! (`hdop`, `valid`, `cell`, `wifi`, `charge`, `is_moving`, `odometer`, …) has no place in a
//! ping and is ignored.

use handoff_core::ping::{Ping, SpeedUnit};
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{
    IngestError, RawPing, Reading, Result, from_unix_seconds_or_millis, json_number, json_object,
    json_str, parse_datetime_text, parse_json, parse_number, required, speed_unit,
    unknown_if_minus_one, validate,
};

/// Reads the device id (the device token): `id` or `deviceid`, the last non-empty one. It is
/// read on its own, before the rest, so that what a known device sends can be answered 2xx
/// even when it holds no usable position.
///
/// # Errors
/// `missing_field` (`id`) when there is none.
pub fn device_id(params: &[(String, String)]) -> Result<&str> {
    required(Params::read(params).id, "id")
}

/// One decoded OsmAnd report, its `speed` still a bare number: the field's unit depends on the
/// app (knots from Traccar Client, m/s from the OsmAnd app, GPSLogger and Colota), so the
/// caller says which unit to read it in ([`Report::ping`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    raw: RawPing,
    speed: Option<Reading>,
}

impl Report {
    /// The ping, its speed read in the unit `unit_of` gives for this fix (it is only asked when
    /// the report has a speed, and only once the rest of the report is valid).
    ///
    /// # Errors
    /// Whatever [`validate`] refuses.
    pub fn ping(
        &self,
        now: Timestamp,
        unit_of: impl FnOnce(speed_unit::Fix) -> SpeedUnit,
    ) -> Result<Ping> {
        let with_unit = |unit: SpeedUnit| {
            let mut raw = self.raw;
            raw.speed_mps = self.speed.map(|r| Reading {
                value: unit.to_mps(r.value),
                ..r
            });
            validate(&raw, now)
        };
        // Validity does not depend on the unit (a speed must be finite and non-negative in
        // any): check it once, then ask for the unit with a fix known to be good.
        let ping = with_unit(SpeedUnit::Knots)?;
        let Some(speed) = self.speed else {
            return Ok(ping);
        };
        let unit = unit_of(speed_unit::Fix {
            t: ping.t,
            lon: ping.lon,
            lat: ping.lat,
            acc_m: ping.acc_m,
            speed: speed.value,
        });
        with_unit(unit)
    }
}

/// Decodes the parameters of an OsmAnd request, from its query string or its form body (the
/// device id is read by [`device_id`]).
///
/// Parameters: `lat` and `lon`, or `location=lat,lon`; `timestamp` (Unix seconds, Unix
/// milliseconds from 2^31 on, ISO 8601 with offset, or `yyyy-MM-dd HH:mm:ss` in UTC); optional
/// `speed` (unit per device, see [`Report`]), `bearing` or `heading` (degrees), `altitude` (m),
/// `accuracy` (m), `batt` (%). A repeated parameter takes its last value, as in Traccar; an
/// empty optional one counts as absent (GPSLogger leaves placeholders empty); `-1` in `speed`,
/// `bearing`, `heading`, `accuracy` or `batt` means unknown (what Android's location API and
/// Traccar Client send for a value they do not have); unknown parameters are ignored.
///
/// # Errors
/// `missing_field` for no `lat` or `lon` (a heartbeat); `invalid_value` for text that is not a
/// number or a time.
pub fn decode_params(params: &[(String, String)], now: Timestamp) -> Result<Report> {
    let p = Params::read(params);
    let (lat, lon) = match (p.lat, p.lon, p.location) {
        (Some(lat), Some(lon), _) => (parse_number("lat", lat)?, parse_number("lon", lon)?),
        (_, _, Some(location)) => parse_location(location)?,
        (None, _, None) => return Err(IngestError::missing_field("lat")),
        (Some(_), None, None) => return Err(IngestError::missing_field("lon")),
    };
    let t = match p.timestamp {
        Some(text) => parse_timestamp(text)?,
        // Traccar stamps a position without a time with the server's clock; so do we.
        None => now,
    };
    let optional =
        |field: &'static str, v: Option<&str>| v.map(|v| parse_number(field, v)).transpose();
    let heading_deg = p
        .heading
        .map(|(field, v)| parse_number(field, v))
        .transpose()?;
    let raw = RawPing {
        t: Reading {
            field: "timestamp",
            value: t,
        },
        lon,
        lat,
        acc_m: unknown_if_minus_one(optional("accuracy", p.accuracy)?),
        speed_mps: None,
        heading_deg: unknown_if_minus_one(heading_deg),
        alt_m: optional("altitude", p.altitude)?,
        batt_pct: unknown_if_minus_one(optional("batt", p.batt)?),
    };
    Ok(Report {
        raw,
        speed: unknown_if_minus_one(optional("speed", p.speed)?),
    })
}

/// The parameters we read, each the last non-empty value sent.
#[derive(Default)]
struct Params<'a> {
    id: Option<&'a str>,
    lat: Option<&'a str>,
    lon: Option<&'a str>,
    location: Option<&'a str>,
    timestamp: Option<&'a str>,
    speed: Option<&'a str>,
    heading: Option<(&'static str, &'a str)>,
    altitude: Option<&'a str>,
    accuracy: Option<&'a str>,
    batt: Option<&'a str>,
}

impl<'a> Params<'a> {
    fn read(params: &'a [(String, String)]) -> Params<'a> {
        let mut p = Params::default();
        for (key, value) in params {
            let value = Some(value.as_str()).filter(|v| !v.trim().is_empty());
            match key.as_str() {
                "id" | "deviceid" => p.id = value,
                "lat" => p.lat = value,
                "lon" => p.lon = value,
                "location" => p.location = value,
                "timestamp" => p.timestamp = value,
                "speed" => p.speed = value,
                "bearing" => p.heading = value.map(|v| ("bearing", v)),
                "heading" => p.heading = value.map(|v| ("heading", v)),
                "altitude" => p.altitude = value,
                "accuracy" => p.accuracy = value,
                "batt" => p.batt = value,
                // `hdop` is a dilution factor, not metres: turning it into an accuracy would
                // need the receiver's error model, so it is left out rather than guessed.
                _ => {}
            }
        }
        p
    }
}

/// `location=lat,lon` (latitude first, as Traccar reads it).
fn parse_location(text: &str) -> Result<(Reading, Reading)> {
    match text.split(',').collect::<Vec<_>>()[..] {
        [lat, lon] => Ok((
            parse_number("location", lat)?,
            parse_number("location", lon)?,
        )),
        _ => Err(IngestError::invalid_value(
            "location",
            format!(
                "`location` must be lat,lon such as 48.92446,2.36015; got {}",
                super::echo(text)
            ),
        )),
    }
}

/// An OsmAnd `timestamp`: an integer is Unix seconds or milliseconds, anything else a date.
fn parse_timestamp(text: &str) -> Result<Timestamp> {
    if let Ok(n) = text.trim().parse::<i64>() {
        return from_unix_seconds_or_millis("timestamp", n);
    }
    // An unencoded `+02:00` in a query string arrives decoded as ` 02:00`. An ISO time with a
    // `T` never holds a space otherwise, so put the plus sign back.
    let text = text.trim();
    if text.contains('T') && text.contains(' ') {
        return parse_datetime_text("timestamp", &text.replace(' ', "+"));
    }
    parse_datetime_text("timestamp", text)
}

/// Decodes the JSON body of Traccar Client 9+:
/// `{"location":{"timestamp","coords":{"latitude","longitude","accuracy","speed","heading",
/// "altitude"},"battery":{"level","is_charging"},…},"device_id"}`, into the device id (the
/// device token) and the rest. `timestamp` is ISO 8601 or a number (Unix milliseconds, or
/// seconds below 2^31); `speed` is m/s; `battery.level` is a fraction of 1; `-1` in `accuracy`,
/// `speed`, `heading`, `altitude` or `battery.level` means unknown.
///
/// # Errors
/// `malformed_json` when the body is not a JSON object; `missing_field` for no `device_id`;
/// `invalid_value` when it is not a string. The location is read by [`JsonReport::ping`].
pub fn decode_json(body: &[u8]) -> Result<(String, JsonReport)> {
    let root = parse_json(body)?;
    let Value::Object(root) = root else {
        return Err(IngestError::malformed_json(
            "expected a JSON object such as {\"location\":{…},\"device_id\":\"…\"}",
        ));
    };
    let id = required(
        json_str(&root, "device_id")?.filter(|s| !s.is_empty()),
        "device_id",
    )?
    .to_owned();
    Ok((id, JsonReport(root)))
}

/// A Traccar Client JSON body whose device id has been read; its location is decoded once the
/// device is known ([`JsonReport::ping`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonReport(Map<String, Value>);

impl JsonReport {
    /// The ping of the body's `location`.
    ///
    /// # Errors
    /// `missing_field` for no `location`, `location.timestamp`, `location.coords` or
    /// latitude/longitude (a heartbeat); `invalid_value` for a value of the wrong type; then
    /// whatever [`validate`] refuses.
    pub fn ping(&self, now: Timestamp) -> Result<Ping> {
        decode_location(&self.0, now)
    }
}

fn decode_location(root: &Map<String, Value>, now: Timestamp) -> Result<Ping> {
    let location = required(json_object(root, "location")?, "location")?;
    let t = match location.get("timestamp") {
        None | Some(Value::Null) => return Err(IngestError::missing_field("location.timestamp")),
        Some(Value::String(text)) => parse_datetime_text("location.timestamp", text)?,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => from_unix_seconds_or_millis("location.timestamp", n)?,
            None => {
                return Err(IngestError::invalid_value(
                    "location.timestamp",
                    format!("`location.timestamp` {n} must be whole Unix milliseconds"),
                ));
            }
        },
        Some(_) => {
            return Err(IngestError::invalid_value(
                "location.timestamp",
                "`location.timestamp` must be an ISO 8601 string or Unix milliseconds",
            ));
        }
    };
    let coords = required(json_object(location, "location.coords")?, "location.coords")?;
    let battery = json_object(location, "location.battery")?;
    let batt_pct = match battery {
        Some(battery) => unknown_if_minus_one(json_number(battery, "location.battery.level")?),
        None => None,
    }
    // A fraction of 1 to percent, kept to 0.01 % so that 0.29 gives 29, not 28.999999999999996.
    .map(|r| Reading {
        value: (r.value * 10_000.0).round() / 100.0,
        ..r
    });

    let raw = RawPing {
        t: Reading {
            field: "location.timestamp",
            value: t,
        },
        lon: required(
            json_number(coords, "location.coords.longitude")?,
            "location.coords.longitude",
        )?,
        lat: required(
            json_number(coords, "location.coords.latitude")?,
            "location.coords.latitude",
        )?,
        acc_m: unknown_if_minus_one(json_number(coords, "location.coords.accuracy")?),
        speed_mps: unknown_if_minus_one(json_number(coords, "location.coords.speed")?),
        heading_deg: unknown_if_minus_one(json_number(coords, "location.coords.heading")?),
        alt_m: unknown_if_minus_one(json_number(coords, "location.coords.altitude")?),
        batt_pct,
    };
    validate(&raw, now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ingest::tests::ts;

    const NOW: &str = "2024-08-11T21:10:00Z";

    /// Pairs as the HTTP layer extracts them from a query string or form body.
    fn query(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    /// The device id and the ping, its speed read as knots (Traccar's unit).
    fn decode(q: &str) -> Result<(String, Ping)> {
        decode_in(q, SpeedUnit::Knots)
    }

    fn decode_in(q: &str, unit: SpeedUnit) -> Result<(String, Ping)> {
        let pairs = query(q);
        let id = device_id(&pairs)?.to_owned();
        let ping = decode_params(&pairs, ts(NOW))?.ping(ts(NOW), |_| unit)?;
        Ok((id, ping))
    }

    fn error(q: &str) -> (&'static str, u16, Option<String>) {
        let e = decode(q).unwrap_err();
        (e.code, e.status(), e.field)
    }

    #[test]
    fn traccar_client_query_decodes_in_si_units() {
        let (id, p) = decode(
            "id=cruise-moto-7f3a&timestamp=1723410300&lat=48.92446&lon=2.36015&speed=10\
             &bearing=271.5&altitude=41.2&accuracy=4.5&batt=87.0&charge=false",
        )
        .unwrap();
        assert_eq!(id, "cruise-moto-7f3a");
        assert_eq!(
            p,
            Ping {
                t: ts("2024-08-11T21:05:00Z"),
                lon: 2.36015,
                lat: 48.92446,
                acc_m: Some(4.5),
                speed_mps: Some(5.144_444_444_444_445),
                heading_deg: Some(271.5),
                alt_m: Some(41.2),
                batt_pct: Some(87.0),
            }
        );
    }

    #[test]
    fn speed_is_converted_from_knots() {
        let speed = |kn: &str| {
            decode(&format!("id=d&lat=48&lon=2&speed={kn}"))
                .unwrap()
                .1
                .speed_mps
                .unwrap()
        };
        assert_eq!(speed("10"), 5.144_444_444_444_445);
        assert!((speed("10") - 5.144_444).abs() < 1e-6);
        assert_eq!(speed("0"), 0.0);
        // 36 km/h = 10 m/s = 19.438444924406 kn
        assert!((speed("19.438444924406") - 10.0).abs() < 1e-12);
    }

    #[test]
    fn all_timestamp_forms_give_the_same_instant() {
        let want = ts("2024-08-11T21:05:00Z");
        let forms = [
            "timestamp=1723410300",
            "timestamp=1723410300000",
            "timestamp=2024-08-11T21%3A05%3A00Z",
            "timestamp=2024-08-11T21:05:00.000Z",
            "timestamp=2024-08-11T23%3A05%3A00%2B02%3A00",
            // `+` unencoded in a query string decodes to a space.
            "timestamp=2024-08-11T23:05:00+02:00",
            "timestamp=2024-08-11+21%3A05%3A00",
            "timestamp=2024-08-11%2021:05:00",
        ];
        for form in forms {
            let (_, p) = decode(&format!("id=d&lat=48&lon=2&{form}")).unwrap();
            assert_eq!(p.t, want, "{form}");
        }
    }

    #[test]
    fn a_missing_timestamp_is_the_server_clock() {
        let (_, p) = decode("id=d&lat=48&lon=2").unwrap();
        assert_eq!(p.t, ts(NOW));
    }

    #[test]
    fn minus_one_means_unknown_in_speed_bearing_heading_accuracy_and_battery() {
        let (_, p) =
            decode("id=d&lat=48&lon=2&speed=-1&bearing=-1&accuracy=-1&batt=-1&altitude=-1")
                .unwrap();
        assert_eq!(
            (p.speed_mps, p.heading_deg, p.acc_m, p.batt_pct),
            (None, None, None, None)
        );
        // An altitude of -1 m is a real altitude (below sea level), not a marker.
        assert_eq!(p.alt_m, Some(-1.0));
        let (_, p) = decode("id=d&lat=48&lon=2&heading=-1.0").unwrap();
        assert_eq!(p.heading_deg, None, "not 359°");
        // Other negative headings are still turned into [0, 360).
        assert_eq!(
            decode("id=d&lat=48&lon=2&heading=-2")
                .unwrap()
                .1
                .heading_deg,
            Some(358.0)
        );
    }

    #[test]
    fn a_heartbeat_without_position_is_missing_lat_but_its_id_is_read() {
        // Traccar Client's heartbeat: id, timestamp, battery; no fix.
        let pairs = query("id=cruise-moto-7f3a&timestamp=1723410300&batt=81.5&charge=true");
        assert_eq!(device_id(&pairs).unwrap(), "cruise-moto-7f3a");
        let e = decode_params(&pairs, ts(NOW)).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("lat")));
    }

    #[test]
    fn the_speed_is_read_in_the_unit_asked_for_with_the_fix_it_belongs_to() {
        let q = "id=d&lat=48.5&lon=2.25&timestamp=1723410300&accuracy=5&speed=10";
        for (unit, want_mps) in [
            (SpeedUnit::Knots, 5.144_444_444_444_445),
            (SpeedUnit::Mps, 10.0),
            (SpeedUnit::Kmh, 2.777_777_777_777_777_7),
        ] {
            assert_eq!(decode_in(q, unit).unwrap().1.speed_mps, Some(want_mps));
        }
        let report = decode_params(&query(q), ts(NOW)).unwrap();
        let mut seen = None;
        report
            .ping(ts(NOW), |fix| {
                seen = Some(fix);
                SpeedUnit::Mps
            })
            .unwrap();
        assert_eq!(
            seen,
            Some(speed_unit::Fix {
                t: ts("2024-08-11T21:05:00Z"),
                lon: 2.25,
                lat: 48.5,
                acc_m: Some(5.0),
                speed: 10.0
            })
        );
        // Without a speed, or with an invalid fix, the unit is never asked for.
        let asked = |q: &str| {
            let mut asked = false;
            let report = decode_params(&query(q), ts(NOW)).unwrap();
            let _ = report.ping(ts(NOW), |_| {
                asked = true;
                SpeedUnit::Mps
            });
            asked
        };
        assert!(!asked("id=d&lat=48&lon=2"));
        assert!(!asked("id=d&lat=91&lon=2&speed=3"));
        assert!(!asked("id=d&lat=48&lon=2&speed=-1"));
    }

    #[test]
    fn deviceid_location_and_heading_aliases() {
        let (id, p) =
            decode("deviceid=token-1&location=34.01413%2C-118.28786&heading=-90").unwrap();
        assert_eq!(id, "token-1");
        assert_eq!(
            (p.lon, p.lat, p.heading_deg),
            (-118.28786, 34.01413, Some(270.0))
        );
    }

    #[test]
    fn empty_unknown_and_hdop_parameters_are_left_out() {
        let (_, p) =
            decode("id=d&lat=48&lon=2&speed=&batt=&hdop=0.9&valid=true&cell=208,1,2,3").unwrap();
        assert_eq!((p.speed_mps, p.batt_pct, p.acc_m), (None, None, None));
    }

    #[test]
    fn a_form_body_decodes_like_a_query_string() {
        let body = "id=d&lat=48.5&lon=2.25&timestamp=2024-08-11+21%3A05%3A00&speed=1.5";
        let (_, p) = decode(body).unwrap();
        assert_eq!(
            (p.lat, p.lon, p.t),
            (48.5, 2.25, ts("2024-08-11T21:05:00Z"))
        );
        assert_eq!(p.speed_mps, Some(1.5 * 1852.0 / 3600.0));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let some = |s: &str| Some(s.to_owned());
        let cases = [
            ("lat=48&lon=2", ("missing_field", 400, some("id"))),
            ("id=&lat=48&lon=2", ("missing_field", 400, some("id"))),
            ("id=d&lon=2", ("missing_field", 400, some("lat"))),
            ("id=d&lat=48", ("missing_field", 400, some("lon"))),
            ("id=d&lat=91&lon=2", ("out_of_range", 400, some("lat"))),
            ("id=d&lat=48&lon=181", ("out_of_range", 400, some("lon"))),
            ("id=d&lat=NaN&lon=2", ("not_finite", 400, some("lat"))),
            ("id=d&lat=48&lon=inf", ("not_finite", 400, some("lon"))),
            (
                "id=d&lat=48&lon=2&speed=-inf",
                ("not_finite", 400, some("speed")),
            ),
            (
                "id=d&lat=48&lon=2&speed=-3",
                ("out_of_range", 400, some("speed")),
            ),
            ("id=d&lat=abc&lon=2", ("invalid_value", 400, some("lat"))),
            ("id=d&location=48", ("invalid_value", 400, some("location"))),
            (
                "id=d&location=91,2",
                ("out_of_range", 400, some("location")),
            ),
            (
                "id=d&lat=48&lon=2&bearing=east",
                ("invalid_value", 400, some("bearing")),
            ),
            (
                "id=d&lat=48&lon=2&batt=120",
                ("out_of_range", 400, some("batt")),
            ),
            (
                "id=d&lat=48&lon=2&timestamp=yesterday",
                ("invalid_value", 400, some("timestamp")),
            ),
            (
                "id=d&lat=48&lon=2&timestamp=2024-08-11",
                ("invalid_value", 400, some("timestamp")),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(error(q), want, "{q}");
        }
    }

    #[test]
    fn a_timestamp_11_minutes_ahead_is_refused_9_minutes_is_accepted() {
        // NOW is 21:10:00 = 1723410600.
        assert!(decode("id=d&lat=48&lon=2&timestamp=1723411140").is_ok());
        assert_eq!(
            error("id=d&lat=48&lon=2&timestamp=1723411260"),
            ("future_timestamp", 400, Some("timestamp".to_owned()))
        );
    }

    /// What Traccar Client 9 posts (the shape documented on traccar.org/osmand).
    const TRACCAR_CLIENT_9: &str = r#"{
        "location": {
            "timestamp": "2024-08-11T21:05:00.000Z",
            "coords": {
                "latitude": 48.92446, "longitude": 2.36015, "accuracy": 4.5,
                "speed": 12.5, "heading": 271.5, "altitude": 41.2
            },
            "is_moving": true, "odometer": 1520, "event": "motionchange",
            "battery": { "level": 0.85, "is_charging": false },
            "activity": { "type": "on_foot" }, "extras": {}
        },
        "device_id": "cruise-moto-7f3a"
    }"#;

    fn decode_j(body: &str) -> Result<(String, Ping)> {
        let (id, report) = decode_json(body.as_bytes())?;
        Ok((id, report.ping(ts(NOW))?))
    }

    #[test]
    fn traccar_client_json_decodes_in_si_units() {
        let (id, p) = decode_j(TRACCAR_CLIENT_9).unwrap();
        assert_eq!(id, "cruise-moto-7f3a");
        assert_eq!(
            p,
            Ping {
                t: ts("2024-08-11T21:05:00Z"),
                lon: 2.36015,
                lat: 48.92446,
                acc_m: Some(4.5),
                // m/s as sent: the JSON form is not in knots.
                speed_mps: Some(12.5),
                heading_deg: Some(271.5),
                alt_m: Some(41.2),
                batt_pct: Some(85.0),
            }
        );
    }

    #[test]
    fn traccar_client_json_minus_one_means_unknown() {
        let body = TRACCAR_CLIENT_9
            .replace(r#""accuracy": 4.5"#, r#""accuracy": -1"#)
            .replace(r#""speed": 12.5"#, r#""speed": -1"#)
            .replace(r#""heading": 271.5"#, r#""heading": -1"#)
            .replace(r#""altitude": 41.2"#, r#""altitude": -1"#)
            .replace(r#""level": 0.85"#, r#""level": -1"#);
        let (_, p) = decode_j(&body).unwrap();
        assert_eq!(
            (p.acc_m, p.speed_mps, p.heading_deg, p.alt_m, p.batt_pct),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn traccar_client_json_battery_levels_become_whole_percents() {
        let body = TRACCAR_CLIENT_9.replace(r#""level": 0.85"#, r#""level": 0.29"#);
        assert_eq!(decode_j(&body).unwrap().1.batt_pct, Some(29.0));
        let body =
            TRACCAR_CLIENT_9.replace(r#""battery": { "level": 0.85, "is_charging": false },"#, "");
        assert_eq!(decode_j(&body).unwrap().1.batt_pct, None);
    }

    #[test]
    fn traccar_client_json_timestamp_may_be_milliseconds() {
        let body = TRACCAR_CLIENT_9.replace(r#""2024-08-11T21:05:00.000Z""#, "1723410300000");
        assert_eq!(decode_j(&body).unwrap().1.t, ts("2024-08-11T21:05:00Z"));
    }

    #[test]
    fn traccar_client_json_errors_name_the_field_path() {
        let cases = [
            (
                TRACCAR_CLIENT_9.replace(r#""latitude": 48.92446"#, r#""latitude": 91"#),
                ("out_of_range", "location.coords.latitude"),
            ),
            (
                TRACCAR_CLIENT_9.replace(r#""latitude": 48.92446,"#, ""),
                ("missing_field", "location.coords.latitude"),
            ),
            (
                TRACCAR_CLIENT_9.replace(r#""longitude": 2.36015"#, r#""longitude": "2.36""#),
                ("invalid_value", "location.coords.longitude"),
            ),
            (
                TRACCAR_CLIENT_9.replace(r#""level": 0.85"#, r#""level": 1.5"#),
                ("out_of_range", "location.battery.level"),
            ),
            (
                TRACCAR_CLIENT_9.replace(r#""speed": 12.5"#, r#""speed": -4"#),
                ("out_of_range", "location.coords.speed"),
            ),
            (
                TRACCAR_CLIENT_9
                    .replace(r#""2024-08-11T21:05:00.000Z""#, r#""2024-08-11T21:21:00Z""#),
                ("future_timestamp", "location.timestamp"),
            ),
            (
                TRACCAR_CLIENT_9.replace(r#""timestamp": "2024-08-11T21:05:00.000Z","#, ""),
                ("missing_field", "location.timestamp"),
            ),
            (
                TRACCAR_CLIENT_9
                    .replace(r#""device_id": "cruise-moto-7f3a""#, r#""device_id": """#),
                ("missing_field", "device_id"),
            ),
        ];
        for (body, (code, field)) in cases {
            let e = decode_j(&body).unwrap_err();
            assert_eq!(
                (e.code, e.status(), e.field.as_deref()),
                (code, 400, Some(field)),
                "{body}"
            );
        }
    }

    #[test]
    fn traccar_client_json_that_is_not_an_object_is_malformed() {
        for body in ["{\"location\":", "id=d&lat=48", "[]", "null"] {
            let e = decode_j(body).unwrap_err();
            assert_eq!(
                (e.code, e.status(), e.field),
                ("malformed_json", 400, None),
                "{body}"
            );
        }
    }
}
