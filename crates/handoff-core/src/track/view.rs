//! From a relay's derived state to what spectators and operators read (`crate::live`): leg
//! statuses, the public position (held back by the event's public delay, and progress and ETAs
//! with it), the silent flag.

use jiff::Timestamp;

use crate::plan::Plan;
use crate::snapshot::{EndedBy, LegStatus, LegView, Position, RelayView};

use super::step::{Ctx, OFF_ROUTE_PINGS, RelayState, shifted};
use super::{EndCause, STALE_MS};

pub(crate) fn relay_view(
    cx: Ctx<'_>,
    st: &RelayState,
    plan: &Plan,
    (now, as_of, public): (Timestamp, Timestamp, bool),
    band_prior: super::band::Quantiles,
) -> RelayView {
    let relay = cx.relay;
    let cur = st.current;
    let known = cx.shifts.len();
    // The last fix spectators may see (on the leg's course: a carrier off it, gone home say,
    // is not public); with a public delay, progress and ETAs are as of it too, or they would
    // give away where the carrier is now.
    let public_fix = st.legs.get(cur).and_then(|lt| {
        lt.recent
            .iter()
            .rev()
            .find(|f| f.t <= as_of && (!public || f.on_course))
            .copied()
    });
    let delayed = as_of < now;
    let times = super::predict::eta_times(
        cx,
        st,
        known,
        now,
        delayed.then_some(public_fix),
        relay.legs.len(),
    );
    // The holder's fix the bands stand on: with a delay, only one spectators may see (a newer
    // one would give away when the carrier last reported).
    let seen = if delayed {
        public_fix
    } else {
        public_fix.or_else(|| st.legs.get(cur).and_then(|lt| lt.last_fix))
    };
    let bands = super::predict::eta_bands(cx, st, known, now, &times, seen, band_prior);
    let legs = relay
        .legs
        .iter()
        .zip(st.legs.iter())
        .zip(times)
        .zip(bands)
        .enumerate()
        .map(|(i, (((leg, lt), (eta_start, eta_end)), band))| {
            let status = if i < cur {
                LegStatus::Done
            } else if i == cur && lt.actual_start.is_some() {
                LegStatus::Current
            } else {
                LegStatus::Upcoming
            };
            LegView::new(
                leg,
                cx.shift_ms(i, known),
                lt.actual_start,
                lt.actual_end,
                eta_start,
                eta_end,
                status,
                if delayed && i == cur {
                    public_fix.map_or(0.0, |f| f.along_m)
                } else {
                    lt.along_m
                },
                lt.off_route_run >= OFF_ROUTE_PINGS,
                i < st.verified,
            )
            .ended_by(lt.ended_by.map(|by| ended_by(cx, st, by)))
            .band(band)
        })
        .collect();
    let position = public_fix.map(|fix| Position::new(fix, now, STALE_MS));
    // Silent: a tracked leg whose holder has not reported for a while (or ever, since it began).
    let silent = st.legs.get(cur).is_some_and(|lt| {
        let leg = &relay.legs[cur];
        let tracked = leg.geometry.route().is_some() || lt.last_fix.is_some();
        let since = lt.last_fix.map(|f| f.t).or(lt.actual_start);
        tracked
            && since.is_some_and(|s| {
                now.as_millisecond() - s.as_millisecond() > plan.event.silent_after_ms
            })
    });
    RelayView::new(relay, cur, legs, position, silent, now)
}

/// How a leg's end is known, in the words of the wire: a verified end says its evidence (the
/// method of the custody entry that ended it, or proximity the server found and is recording).
fn ended_by(cx: Ctx<'_>, st: &RelayState, by: EndCause) -> EndedBy {
    match by {
        EndCause::PlannedTime => EndedBy::PlannedTime,
        EndCause::Positions => EndedBy::Positions,
        EndCause::Verified { leg } => {
            let at = st.legs.get(leg).and_then(|l| l.verified_at);
            let recorded = at.is_some_and(|at| cx.recorded.contains(&(leg, at)));
            match cx.methods.get(&leg) {
                Some(m) if recorded => EndedBy::from(*m),
                // Recorded by an older server that kept no method, or not recorded yet: the
                // log's entry is an operator's; a handoff the tracker found is proximity.
                _ if recorded => EndedBy::Operator,
                _ => EndedBy::Proximity,
            }
        }
    }
}

/// The alert flags of a relay at `now`, read off its state without building its view.
pub(crate) fn flags(cx: Ctx<'_>, st: &RelayState, plan: &Plan, now: Timestamp) -> super::Flags {
    let cur = st.current;
    let (Some(leg), Some(lt)) = (cx.relay.legs.get(cur), st.legs.get(cur)) else {
        return super::Flags {
            leg: None,
            ..super::Flags::default()
        };
    };
    let Some(start) = lt.actual_start else {
        return super::Flags::default();
    };
    let tracked = leg.geometry.route().is_some() || lt.last_fix.is_some();
    let since = lt.last_fix.map_or(start, |f| f.t);
    let shift = cx.shift_ms(cur, cx.shifts.len());
    let (planned_start, planned_end) = (shifted(leg.start, shift), shifted(leg.end, shift));
    let overdue = crate::snapshot::overdue(planned_start, planned_end, start, now);
    let off_route = lt.off_route_run >= OFF_ROUTE_PINGS;
    let silent =
        tracked && now.as_millisecond() - since.as_millisecond() > plan.event.silent_after_ms;
    super::Flags {
        leg: Some(cur),
        overdue,
        off_route,
        silent,
        overdue_since: overdue
            .then(|| crate::snapshot::overdue_after(planned_start, planned_end, start)),
        off_route_since: lt.off_route_since.filter(|_| off_route),
        silent_since: silent.then(|| shifted(since, plan.event.silent_after_ms)),
    }
}
