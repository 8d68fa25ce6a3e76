//! OwnTracks in HTTP mode: the app POSTs each message as JSON, authenticated with Basic auth
//! (user = our device id, password = the device token).
//!
//! The Android app keeps a message the server refused at the head of its queue and retries it,
//! blocking every location behind it; so the route answers a known device 200 `[]` whatever
//! the body holds, and what [`decode`] cannot turn into a ping is counted, not refused.
//! Message types we do not use (`transition`, `waypoint`, `lwt`, `card`, `cmd`, `status`, …) and
//! the empty body Android sends when a contact is cleared are simply ignored.

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use handoff_core::ping::Ping;
use jiff::Timestamp;
use serde_json::Value;

use super::{
    IngestError, RawPing, Reading, Result, from_unix_seconds_f64, json_number, json_str,
    parse_json, required, unknown_if_minus_one, validate,
};

/// Kilometres per hour to metres per second.
fn kmh_to_mps(kmh: f64) -> f64 {
    kmh * 1000.0 / 3600.0
}

/// Decodes one OwnTracks message. A `_type:"location"` gives `Some(ping)`: `lat`, `lon`, `tst`
/// (Unix seconds), and optional `acc` (m), `alt` (m), `vel` (**km/h**), `cog` (degrees), `batt`
/// (%). Every other `_type` (`transition`, `waypoint`, `lwt`, `card`, `cmd`, `status`, …), and an
/// empty body, gives `None`: accepted and ignored. `-1` in `vel`, `cog`, `acc` or `batt` is the
/// apps' "unknown" (iOS sends `batt` and `acc` of -1 when it has no reading), so that a good
/// position is not lost for a missing detail.
///
/// # Errors
/// `malformed_json` when the body is not a JSON object; `missing_field` for no `_type`, or for
/// a location without `lat`, `lon` or `tst`; `invalid_value` for a value of the wrong type;
/// `encrypted` for a payload encrypted with the app's secret key (which the server does not
/// have); then whatever [`validate`] refuses.
pub fn decode(body: &[u8], now: Timestamp) -> Result<Option<Ping>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Value::Object(msg) = parse_json(body)? else {
        return Err(IngestError::malformed_json(
            "expected an OwnTracks message: a JSON object with a `_type`",
        ));
    };
    match required(json_str(&msg, "_type")?, "_type")? {
        "location" => {}
        "encrypted" => {
            return Err(IngestError::new(
                IngestError::ENCRYPTED,
                "the message is encrypted with the app's secret key, which this server does \
                 not have: clear the key in the app (Preferences → Encryption key)",
                None,
            ));
        }
        _ => return Ok(None),
    }
    let tst = required(json_number(&msg, "tst")?, "tst")?;
    let raw = RawPing {
        t: Reading {
            field: "tst",
            value: from_unix_seconds_f64("tst", tst.value)?,
        },
        lon: required(json_number(&msg, "lon")?, "lon")?,
        lat: required(json_number(&msg, "lat")?, "lat")?,
        acc_m: unknown_if_minus_one(json_number(&msg, "acc")?),
        speed_mps: unknown_if_minus_one(json_number(&msg, "vel")?).map(|r| Reading {
            value: kmh_to_mps(r.value),
            ..r
        }),
        heading_deg: unknown_if_minus_one(json_number(&msg, "cog")?),
        alt_m: json_number(&msg, "alt")?,
        batt_pct: unknown_if_minus_one(json_number(&msg, "batt")?),
    };
    validate(&raw, now).map(Some)
}

/// Standard base64, with or without the trailing `=` padding (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads an `Authorization: Basic base64(user:password)` header value into (user, password):
/// for OwnTracks, the device id and the device token. The password may hold `:`, the user may
/// not (RFC 7617). Messages never repeat the credentials.
///
/// # Errors
/// `unauthorized` (401) when the header is not Basic auth, is not valid base64 or UTF-8, has no
/// `:`, or has an empty user or password.
pub fn basic_auth(header: &str) -> Result<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(IngestError::unauthorized(
            "expected `Authorization: Basic …` with the device id as user and its token as password",
        ));
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            IngestError::unauthorized("the Basic credentials are not valid base64 UTF-8")
        })?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_owned(), password.to_owned()))
        }
        _ => Err(IngestError::unauthorized(
            "the Basic credentials must be device-id:token, both non-empty",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::ingest::tests::ts;

    const NOW: &str = "2024-08-11T21:10:00Z";

    /// A location as the OwnTracks Android app posts it.
    const LOCATION: &str = r#"{
        "_type": "location", "acc": 12, "alt": 41, "batt": 87, "bs": 1, "cog": 271,
        "conn": "m", "created_at": 1723410302, "lat": 48.92446, "lon": 2.36015, "m": 1,
        "t": "u", "tid": "TC", "tst": 1723410300, "vac": 3, "vel": 36,
        "topic": "owntracks/cruise/moto"
    }"#;

    fn decode_s(body: &str) -> Result<Option<Ping>> {
        decode(body.as_bytes(), ts(NOW))
    }

    #[test]
    fn location_decodes_in_si_units() {
        let p = decode_s(LOCATION).unwrap().unwrap();
        assert_eq!(
            p,
            Ping {
                t: ts("2024-08-11T21:05:00Z"),
                lon: 2.36015,
                lat: 48.92446,
                acc_m: Some(12.0),
                speed_mps: Some(10.0),
                heading_deg: Some(271.0),
                alt_m: Some(41.0),
                batt_pct: Some(87.0),
            }
        );
    }

    #[test]
    fn minimal_location_has_no_optionals() {
        let p =
            decode_s(r#"{"_type":"location","lat":34.01413,"lon":-118.28786,"tst":1723410300}"#)
                .unwrap()
                .unwrap();
        assert_eq!((p.lon, p.lat), (-118.28786, 34.01413));
        assert_eq!(
            (p.acc_m, p.speed_mps, p.heading_deg, p.alt_m, p.batt_pct),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn vel_and_cog_minus_one_mean_unknown() {
        let body = LOCATION
            .replace(r#""vel": 36"#, r#""vel": -1"#)
            .replace(r#""cog": 271"#, r#""cog": -1"#);
        let p = decode_s(&body).unwrap().unwrap();
        assert_eq!((p.speed_mps, p.heading_deg), (None, None));
    }

    #[test]
    fn ios_batt_and_acc_minus_one_mean_unknown() {
        // OwnTracks iOS with no battery reading and no horizontal accuracy.
        let body = r#"{"_type":"location","acc":-1,"alt":0,"batt":-1,"bs":0,"conn":"w",
            "lat":48.92446,"lon":2.36015,"tid":"TC","tst":1723410300,"vac":-1,"vel":-1,
            "cog":-1,"t":"p","topic":"owntracks/cruise/iphone","created_at":1723410301}"#;
        let p = decode_s(body).unwrap().unwrap();
        assert_eq!((p.lon, p.lat), (2.36015, 48.92446));
        assert_eq!(
            (p.acc_m, p.batt_pct, p.speed_mps, p.heading_deg),
            (None, None, None, None)
        );
        assert_eq!(p.alt_m, Some(0.0));
    }

    #[test]
    fn an_empty_body_is_ignored() {
        for body in ["", " ", "\n", "\r\n"] {
            assert_eq!(decode_s(body).unwrap(), None, "{body:?}");
        }
    }

    #[test]
    fn an_encrypted_message_says_how_to_turn_encryption_off() {
        let e = decode_s(r#"{"_type":"encrypted","data":"c2VjcmV0"}"#).unwrap_err();
        assert_eq!(e.code, IngestError::ENCRYPTED);
        assert!(e.message.contains("Encryption key"), "{}", e.message);
    }

    #[test]
    fn other_message_types_are_accepted_and_ignored() {
        let others = [
            r#"{"_type":"transition","wtst":1723400000,"lat":48.9,"lon":2.3,"tst":1723410300,
                "acc":10,"tid":"TC","event":"enter","desc":"Stade de France","t":"c"}"#,
            r#"{"_type":"waypoint","desc":"Stade de France","lat":48.92446,"lon":2.36015,
                "rad":150,"tst":1723400000}"#,
            r#"{"_type":"lwt","tst":1723410300}"#,
            r#"{"_type":"status","android":{"hib":1,"bo":1,"loc":0}}"#,
            r#"{"_type":"card","name":"Tom Cruise","tid":"TC"}"#,
            r#"{"_type":"cmd","action":"reportLocation"}"#,
        ];
        for body in others {
            assert_eq!(decode_s(body).unwrap(), None, "{body}");
        }
    }

    #[test]
    fn input_that_can_never_be_stored_is_an_error_naming_the_field() {
        let some = |s: &str| Some(s.to_owned());
        let cases = [
            (
                LOCATION.replace(r#""lat": 48.92446"#, r#""lat": 91"#),
                ("out_of_range", some("lat")),
            ),
            (
                LOCATION.replace(r#""lon": 2.36015"#, r#""lon": 181"#),
                ("out_of_range", some("lon")),
            ),
            (
                LOCATION.replace(r#""lat": 48.92446, "#, ""),
                ("missing_field", some("lat")),
            ),
            (
                LOCATION.replace(r#""tst": 1723410300, "#, ""),
                ("missing_field", some("tst")),
            ),
            (
                LOCATION.replace(r#""lon": 2.36015"#, r#""lon": "2.36""#),
                ("invalid_value", some("lon")),
            ),
            (
                LOCATION.replace(r#""batt": 87"#, r#""batt": 187"#),
                ("out_of_range", some("batt")),
            ),
            // NOW is 21:10:00 = 1723410600; 11 minutes ahead.
            (
                LOCATION.replace("1723410300", "1723411260"),
                ("future_timestamp", some("tst")),
            ),
            (
                r#"{"lat":48.9,"lon":2.3,"tst":1723410300}"#.to_owned(),
                ("missing_field", some("_type")),
            ),
            (
                "{\"_type\":\"location\",".to_owned(),
                ("malformed_json", None),
            ),
            ("[]".to_owned(), ("malformed_json", None)),
        ];
        for (body, (code, field)) in cases {
            let e = decode_s(&body).unwrap_err();
            assert_eq!((e.code, e.status(), e.field), (code, 400, field), "{body}");
        }
    }

    #[test]
    fn a_clock_9_minutes_ahead_is_accepted() {
        assert!(
            decode_s(&LOCATION.replace("1723410300", "1723411140"))
                .unwrap()
                .is_some()
        );
    }

    fn header(credentials: &str) -> String {
        format!("Basic {}", STANDARD.encode(credentials))
    }

    #[test]
    fn basic_auth_gives_device_id_and_token() {
        assert_eq!(
            basic_auth("Basic Y3J1aXNlLW1vdG86czNjcmV0").unwrap(),
            ("cruise-moto".to_owned(), "s3cret".to_owned())
        );
        // The token may hold colons; the scheme is case-insensitive; padding is optional.
        assert_eq!(basic_auth(&header("d:a:b:c")).unwrap().1, "a:b:c");
        assert_eq!(
            basic_auth(&header("d:t").replace("Basic", "basic"))
                .unwrap()
                .0,
            "d"
        );
        let unpadded = header("dev:tok").trim_end_matches('=').to_owned();
        assert_eq!(
            basic_auth(&unpadded).unwrap(),
            ("dev".to_owned(), "tok".to_owned())
        );
    }

    #[test]
    fn malformed_basic_auth_is_401_and_does_not_echo_secrets() {
        let cases = [
            "Bearer s3cret".to_owned(),
            "Basic".to_owned(),
            "Basic !!!not-base64!!!".to_owned(),
            header("no-colon-s3cret"),
            header(":s3cret"),
            header("cruise-moto:"),
            format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x'])),
        ];
        for h in cases {
            let e = basic_auth(&h).unwrap_err();
            assert_eq!(
                (e.code, e.status(), e.field.as_deref()),
                ("unauthorized", 401, None),
                "{h}"
            );
            assert!(!e.message.contains("s3cret"));
        }
    }
}
