//! Our own ingest format, `POST /api/v1/pings`: many pings per request, as a JSON array or as
//! NDJSON (one object per line), in SI units already.
//!
//! Phones buffer while offline and upload a backlog when the signal returns, so one bad reading
//! must not sink the rest: a problem with the request as a whole (wrong content type, not JSON,
//! too many pings) refuses it, while a problem with one ping is reported at that ping's index
//! and the others go through.

use handoff_core::ping::Ping;
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{
    IngestError, RawPing, Reading, Result, json_kind, json_number, json_str, parse_json,
    parse_rfc3339, required, validate,
};

/// Most pings accepted in one request; a larger backlog is sent in several.
pub const MAX_PINGS: usize = 10_000;

/// Decodes a batch body. The outer `Err` refuses the whole request (`unsupported_media_type`
/// 415, `malformed_json` 400, `too_many_pings` 413); otherwise there is one entry per ping, in
/// order, each the ping or why that ping was refused.
///
/// For NDJSON, blank lines are skipped and the index counts pings, not lines (as if the lines
/// were an array); a line that is not JSON is refused at its index, and its message names the
/// line number.
///
/// # Errors
/// See above: whole-request problems only.
pub fn decode_batch(
    body: &[u8],
    content_type: Option<&str>,
    now: Timestamp,
) -> Result<Vec<Result<Ping, IngestError>>, IngestError> {
    match Format::of(content_type)? {
        Format::Json => {
            let items = match parse_json(body)? {
                Value::Array(items) => items,
                single @ Value::Object(_) => vec![single],
                other => {
                    return Err(IngestError::malformed_json(format!(
                        "expected a JSON array of pings (or one ping object), not {}",
                        json_kind(&other)
                    )));
                }
            };
            at_most_max(items.len())?;
            Ok(items.iter().map(|item| decode_item(item, now)).collect())
        }
        Format::Ndjson => {
            let lines: Vec<(usize, &[u8])> = body
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .collect();
            at_most_max(lines.len())?;
            Ok(lines
                .into_iter()
                .map(|(line_index, line)| {
                    serde_json::from_slice::<Value>(line)
                        .map_err(|e| {
                            IngestError::malformed_json(format!(
                                "line {} is not valid JSON: {e}",
                                line_index + 1
                            ))
                        })
                        .and_then(|item| decode_item(&item, now))
                })
                .collect())
        }
    }
}

enum Format {
    Json,
    Ndjson,
}

impl Format {
    fn of(content_type: Option<&str>) -> Result<Format> {
        // Parameters such as `; charset=utf-8` do not change how we read it.
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/json") => Ok(Format::Json),
            Some("application/x-ndjson" | "application/ndjson") => Ok(Format::Ndjson),
            _ => Err(IngestError::new(
                IngestError::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type must be application/json (an array of pings) or \
                     application/x-ndjson (one ping per line); got {}",
                    content_type.map_or_else(|| "none".to_owned(), super::echo)
                ),
                None,
            )),
        }
    }
}

fn at_most_max(count: usize) -> Result<()> {
    if count > MAX_PINGS {
        return Err(IngestError::new(
            IngestError::TOO_MANY_PINGS,
            format!("{count} pings in one request; at most {MAX_PINGS} are accepted: split it"),
            None,
        ));
    }
    Ok(())
}

/// One ping object: `t` (RFC 3339), `lon`, `lat`, and optional `acc` (m), `speed` (m/s),
/// `heading` (degrees), `alt` (m), `batt` (%). Unknown fields are ignored, not refused, so that
/// clients written against a later version of this API keep working here.
fn decode_item(item: &Value, now: Timestamp) -> Result<Ping> {
    let Value::Object(obj) = item else {
        return Err(IngestError::malformed_json(format!(
            "each ping must be a JSON object, not {}",
            json_kind(item)
        )));
    };
    validate(&raw_ping(obj)?, now)
}

fn raw_ping(obj: &Map<String, Value>) -> Result<RawPing> {
    let t = required(json_str(obj, "t")?, "t")?;
    Ok(RawPing {
        t: Reading {
            field: "t",
            value: parse_rfc3339("t", t)?,
        },
        lon: required(json_number(obj, "lon")?, "lon")?,
        lat: required(json_number(obj, "lat")?, "lat")?,
        acc_m: json_number(obj, "acc")?,
        speed_mps: json_number(obj, "speed")?,
        heading_deg: json_number(obj, "heading")?,
        alt_m: json_number(obj, "alt")?,
        batt_pct: json_number(obj, "batt")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use crate::ingest::tests::ts;

    const NOW: &str = "2024-08-11T21:10:00Z";
    const JSON: Option<&str> = Some("application/json");
    const NDJSON: Option<&str> = Some("application/x-ndjson");

    fn decode(body: &str, content_type: Option<&str>) -> Result<Vec<Result<Ping>>> {
        decode_batch(body.as_bytes(), content_type, ts(NOW))
    }

    fn item_error(results: &[Result<Ping>], index: usize) -> (&'static str, Option<&str>) {
        let e = results[index].as_ref().unwrap_err();
        (e.code, e.field.as_deref())
    }

    #[test]
    fn json_array_decodes_every_field_in_si_units() {
        let body = r#"[
            {"t":"2024-08-11T21:05:00Z","lon":2.36015,"lat":48.92446,"acc":4.5,"speed":12.5,
             "heading":271.5,"alt":41.2,"batt":87},
            {"t":"2024-08-11T23:06:00+02:00","lon":2.3601,"lat":48.9245}
        ]"#;
        let pings: Vec<Ping> = decode(body, JSON)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            pings[0],
            Ping {
                t: ts("2024-08-11T21:05:00Z"),
                lon: 2.36015,
                lat: 48.92446,
                acc_m: Some(4.5),
                speed_mps: Some(12.5),
                heading_deg: Some(271.5),
                alt_m: Some(41.2),
                batt_pct: Some(87.0),
            }
        );
        assert_eq!(pings[1].t, ts("2024-08-11T21:06:00Z"));
        assert_eq!((pings[1].acc_m, pings[1].batt_pct), (None, None));
    }

    #[test]
    fn a_single_object_is_a_batch_of_one() {
        let body = r#"{"t":"2024-08-11T21:05:00Z","lon":-118.28786,"lat":34.01413}"#;
        let results = decode(body, JSON).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap().lon, -118.28786);
    }

    #[test]
    fn an_empty_array_is_an_empty_batch() {
        assert!(decode("[]", JSON).unwrap().is_empty());
    }

    #[test]
    fn unknown_fields_and_null_optionals_are_ignored() {
        let body = r#"[{"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0,"acc":null,
                       "satellites":9,"provider":{"name":"gps"}}]"#;
        let p = decode(body, JSON).unwrap().remove(0).unwrap();
        assert_eq!(p.acc_m, None);
    }

    #[test]
    fn content_type_parameters_and_case_do_not_matter() {
        let body = r#"[{"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0}]"#;
        assert_eq!(
            decode(body, Some("Application/JSON; charset=utf-8"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn ndjson_skips_blank_lines_and_counts_pings_not_lines() {
        let body = "{\"t\":\"2024-08-11T21:05:00Z\",\"lon\":2.0,\"lat\":48.0}\r\n\
                    \r\n\
                    {\"t\":\"2024-08-11T21:05:05Z\",\"lon\":2.001,\"lat\":48.0}\n   \n\
                    {\"t\":\"2024-08-11T21:05:10Z\",\"lon\":2.002,\"lat\":91}\n";
        let results = decode(body, NDJSON).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].as_ref().unwrap().lon, 2.001);
        assert_eq!(item_error(&results, 2), ("out_of_range", Some("lat")));
        let body = body.replace("\r\n\r\n", "\n");
        assert_eq!(decode(&body, Some("application/ndjson")).unwrap().len(), 3);
    }

    #[test]
    fn a_malformed_ndjson_line_is_refused_at_its_index_alone() {
        let body = "{\"t\":\"2024-08-11T21:05:00Z\",\"lon\":2.0,\"lat\":48.0}\n\
                    \n\
                    {\"t\":\"2024-08-11T21:05:05Z\",\"lon\":2.0,\n\
                    {\"t\":\"2024-08-11T21:05:10Z\",\"lon\":2.0,\"lat\":48.0}";
        let results = decode(body, NDJSON).unwrap();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(item_error(&results, 1), ("malformed_json", None));
        let message = &results[1].as_ref().unwrap_err().message;
        assert!(message.starts_with("line 3 "), "{message}");
    }

    #[test]
    fn per_item_errors_name_the_field() {
        let body = r#"[
            {"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0},
            {"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":91},
            {"t":"2024-08-11T21:05:00Z","lon":181,"lat":48.0},
            {"t":"2024-08-11T21:05:00Z","lon":2.0},
            {"lon":2.0,"lat":48.0},
            {"t":1723410300,"lon":2.0,"lat":48.0},
            {"t":"yesterday","lon":2.0,"lat":48.0},
            {"t":"2024-08-11T21:05:00Z","lon":"2.0","lat":48.0},
            {"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0,"acc":-5},
            {"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0,"batt":101},
            [2.0, 48.0]
        ]"#;
        let results = decode(body, JSON).unwrap();
        let got: Vec<_> = (1..results.len())
            .map(|i| item_error(&results, i))
            .collect();
        assert!(results[0].is_ok());
        assert_eq!(
            got,
            [
                ("out_of_range", Some("lat")),
                ("out_of_range", Some("lon")),
                ("missing_field", Some("lat")),
                ("missing_field", Some("t")),
                ("invalid_value", Some("t")),
                ("invalid_value", Some("t")),
                ("invalid_value", Some("lon")),
                ("out_of_range", Some("acc")),
                ("out_of_range", Some("batt")),
                ("malformed_json", None),
            ]
        );
    }

    #[test]
    fn a_clock_11_minutes_ahead_is_refused_9_minutes_is_accepted() {
        // NOW is 21:10:00.
        let body = r#"[{"t":"2024-08-11T21:19:00Z","lon":2.0,"lat":48.0},
                       {"t":"2024-08-11T21:21:00Z","lon":2.0,"lat":48.0}]"#;
        let results = decode(body, JSON).unwrap();
        assert!(results[0].is_ok());
        assert_eq!(item_error(&results, 1), ("future_timestamp", Some("t")));
    }

    #[test]
    fn wrong_or_missing_content_type_is_415() {
        let body = r#"[{"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0}]"#;
        for ct in [
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
            None,
        ] {
            let e = decode(body, ct).unwrap_err();
            assert_eq!(
                (e.code, e.status(), e.field),
                ("unsupported_media_type", 415, None)
            );
        }
    }

    #[test]
    fn a_body_that_is_not_json_or_not_an_array_is_400() {
        for body in ["t=2024&lon=2", "[{\"t\":", "", "42", "\"pings\"", "null"] {
            let e = decode(body, JSON).unwrap_err();
            assert_eq!(
                (e.code, e.status(), e.field.as_deref()),
                ("malformed_json", 400, None)
            );
        }
    }

    fn many(n: usize, separator: &str) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push_str(separator);
            }
            write!(
                s,
                r#"{{"t":"2024-08-11T21:05:00Z","lon":2.0,"lat":48.0,"seq":{i}}}"#
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn ten_thousand_pings_pass_ten_thousand_and_one_is_413() {
        let ok = format!("[{}]", many(MAX_PINGS, ","));
        assert_eq!(decode(&ok, JSON).unwrap().len(), MAX_PINGS);
        let e = decode(&format!("[{}]", many(MAX_PINGS + 1, ",")), JSON).unwrap_err();
        assert_eq!((e.code, e.status(), e.field), ("too_many_pings", 413, None));
        let e = decode(&many(MAX_PINGS + 1, "\n"), NDJSON).unwrap_err();
        assert_eq!((e.code, e.status()), ("too_many_pings", 413));
    }
}
