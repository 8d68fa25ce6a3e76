//! The schedule as people read it: per leg, who carries, how, from where to where, how far, and
//! when (in the local zone at each end and in UTC); and countdowns to the milestones. "Now" is
//! an argument, never read from a clock.

use crate::geodesic::{Coord, distance_m};
use crate::plan::{Mode, Plan, zone};
use jiff::{SignedDuration, Timestamp};

/// A place counts as a leg's "from" or "to" when the leg starts or ends this close to it.
const PLACE_NAME_RADIUS_M: f64 = 2_000.0;

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub relay: String,
    /// 1-based, as people count legs.
    pub leg: usize,
    pub carriers: Vec<String>,
    pub mode: Mode,
    pub from: String,
    pub to: String,
    pub distance_m: f64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub start_zone: String,
    pub end_zone: String,
}

impl ScheduleRow {
    /// `2024-08-11 23:05 CEST`
    #[must_use]
    pub fn start_local(&self) -> String {
        local(self.start, &self.start_zone)
    }

    #[must_use]
    pub fn end_local(&self) -> String {
        local(self.end, &self.end_zone)
    }
}

/// An instant as `YYYY-MM-DD HH:MM ABBR` in the named zone.
#[must_use]
pub fn local(t: Timestamp, zone_name: &str) -> String {
    t.to_zoned_datetime(zone(zone_name))
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// An instant in three short lines, for narrow table cells: the date and time in the named
/// zone, then the time in UTC, marked `+1d` or `-1d` when UTC is on another day:
/// `2024-08-11\n23:05 CEST\n21:05 UTC`, `2024-08-11\n20:00 PDT\n03:00 UTC +1d`.
#[must_use]
pub fn local_and_utc_lines(t: Timestamp, zone_name: &str) -> String {
    let here = t.to_zoned_datetime(zone(zone_name));
    let utc_date = t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let day = match utc_date.cmp(&here.date()) {
        std::cmp::Ordering::Equal => "",
        std::cmp::Ordering::Greater => " +1d",
        std::cmp::Ordering::Less => " -1d",
    };
    format!(
        "{}\n{}{day}",
        here.strftime("%Y-%m-%d\n%H:%M %Z"),
        t.strftime("%H:%M UTC")
    )
}

/// An instant as `YYYY-MM-DD HH:MM UTC`.
#[must_use]
pub fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Every leg of every relay, in plan order.
#[must_use]
pub fn rows(plan: &Plan) -> Vec<ScheduleRow> {
    plan.relays
        .iter()
        .flat_map(|r| {
            r.legs.iter().map(move |l| ScheduleRow {
                relay: r.id.clone(),
                leg: l.index + 1,
                carriers: l.carriers.clone(),
                mode: l.mode,
                from: place_name(plan, l.geometry.start()),
                to: place_name(plan, l.geometry.end()),
                distance_m: l.length_m(),
                start: l.start,
                end: l.end,
                start_zone: l.start_zone.clone(),
                end_zone: l.end_zone.clone(),
            })
        })
        .collect()
}

/// The name of the place at `at` (nearest within 2 km), else the coordinate.
#[must_use]
pub fn place_name(plan: &Plan, at: Coord) -> String {
    plan.places
        .iter()
        .map(|p| (distance_m(p.at, at), p))
        .filter(|(d, _)| *d <= PLACE_NAME_RADIUS_M)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(
            || format!("{:.4}, {:.4}", at.lon, at.lat),
            |(_, p)| p.name.clone(),
        )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Countdown {
    pub name: String,
    pub at: Timestamp,
    /// Set when the plan gave only a date (`at` is the start of that day in `timezone`).
    pub date: Option<jiff::civil::Date>,
    pub timezone: String,
    /// Negative once the moment has passed.
    pub remaining: SignedDuration,
}

/// Countdowns from `now` to each milestone.
#[must_use]
pub fn countdowns(plan: &Plan, now: Timestamp) -> Vec<Countdown> {
    plan.milestones
        .iter()
        .map(|m| Countdown {
            name: m.name.clone(),
            at: m.at,
            date: m.date,
            timezone: m.timezone.clone(),
            remaining: m.at.duration_since(now),
        })
        .collect()
}

/// "592d 4h 10m", "3h 05m", "45s"; "passed" signs are the caller's.
#[must_use]
pub fn fmt_countdown(d: SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    let (days, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// "850 m", "2.4 km".
#[must_use]
pub fn fmt_distance(m: f64) -> String {
    if m < 1000.0 {
        format!("{m:.0} m")
    } else {
        format!("{:.1} km", m / 1000.0)
    }
}

/// "4m", "11h 30m", "45s"; negative durations get a minus sign.
#[must_use]
pub fn fmt_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().abs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let sign = if d.is_negative() { "-" } else { "" };
    match (h, m, s) {
        (0, 0, s) => format!("{sign}{s}s"),
        (0, m, 0) => format!("{sign}{m}m"),
        (0, m, s) => format!("{sign}{m}m {s}s"),
        (h, 0, _) => format!("{sign}{h}h"),
        (h, m, _) => format!("{sign}{h}h {m}m"),
    }
}

/// A signed duration with its sign always shown: "+5m 54s", "-27s", "+0s".
#[must_use]
pub fn fmt_signed(d: SignedDuration) -> String {
    if d.is_negative() {
        fmt_duration(d)
    } else {
        format!("+{}", fmt_duration(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_lines_marks_a_utc_time_on_another_day() {
        let t: Timestamp = "2024-08-11T21:05:00Z".parse().expect("time");
        assert_eq!(
            local_and_utc_lines(t, "Europe/Paris"),
            "2024-08-11\n23:05 CEST\n21:05 UTC"
        );
        let late: Timestamp = "2024-08-12T03:00:00Z".parse().expect("time");
        assert_eq!(
            local_and_utc_lines(late, "America/Los_Angeles"),
            "2024-08-11\n20:00 PDT\n03:00 UTC +1d"
        );
    }
}
