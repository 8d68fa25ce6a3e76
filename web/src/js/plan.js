// The plan as the pages draw it: every relay's legs with their line (a route, or a place as
// a single point; in race mode the course's leg), the exchange points named after the
// nearest place, and the stops of the schedule ("when does it pass here").

import { cumulative, distanceM, locate } from './geo.js';
import { msg } from './i18n.js';

/** A place closer than this to an exchange point names it. */
const NAME_RADIUS_M = 500;
/** A place closer than this to a route is "passed" by that leg. */
const PASS_RADIUS_M = 250;

const point = (at) => [at.lon, at.lat];

/** Builds the model from `GET /api/v1/events/{e}`'s body. */
export function model(body) {
  const plan = body.plan;
  const places = (plan.places ?? []).map((p) => ({ ...p, point: point(p.at) }));
  const courses = new Map((plan.courses ?? []).map((c) => [c.id, c]));
  const relays = plan.relays.map((r) => {
    const course = r.course ? courses.get(r.course) : null;
    const legs = r.legs.map((leg) => {
      const geometry = leg.geometry ?? course?.legs?.[leg.course_leg]?.geometry;
      const points = geometry?.kind === 'route'
        ? geometry.route.points
        : geometry?.at ? [point(geometry.at)] : [];
      const cum = cumulative(points);
      return {
        ...leg,
        // The plan's times (as the shifts left them is in `/live`: see live-model.js).
        startAt: leg.start,
        endAt: leg.end,
        points,
        cum,
        // The flat-equivalent distance to each route point, where the terrain changes the
        // pace (see `timeShare`); a race leg's is its course leg's.
        flatM: leg.flat_m ?? course?.legs?.[leg.course_leg]?.flat_m ?? null,
        lengthM: geometry?.route?.length_m ?? cum[cum.length - 1] ?? 0,
        start: points[0],
        end: points[points.length - 1],
        placeId: geometry?.place ?? null,
        placeName: places.find((p) => p.id === geometry?.place)?.name ?? null,
        // The next leg has the same carriers: this leg's end is a change of mode (a segment
        // change within one stint), not a handoff. The server says so in the plan.
        segment: leg.segment === true,
      };
    });
    return { id: r.id, name: r.name || r.id, object: r.object || '', course: r.course ?? null, legs };
  });
  const m = {
    event: plan.event,
    places,
    milestones: plan.milestones ?? [],
    courses: [...courses.values()],
    relays,
    race: relays.some((r) => r.course),
  };
  nameStops(m);
  return m;
}

/** (Re)names every relay's stops, in the page's language: after a switch of language too. */
export function nameStops(m) {
  for (const r of m.relays) r.stops = stops(m, r);
}

/**
 * The last leg of the stint leg `i` is in: consecutive legs with the same carriers (Tom
 * Cruise's motorcycle, flight and parachute) are one stint, and only its end is a handoff.
 */
export function stintEnd(relay, i) {
  let k = i;
  while (relay.legs[k]?.segment) k += 1;
  return k;
}

/** The first leg of the stint leg `i` is in. */
export function stintStart(relay, i) {
  let k = i;
  while (k > 0 && relay.legs[k - 1]?.segment) k -= 1;
  return k;
}

/** How a done leg's end is known (`ended_by` on the live leg), in words and an icon. */
export function endedBy(by) {
  switch (by) {
    case 'operator': return { verified: true, icon: '✓', text: msg('ended.operator') };
    case 'two_party': return { verified: true, icon: '✓', text: msg('ended.twoParty') };
    case 'proximity': return { verified: true, icon: '✓', text: msg('ended.proximity') };
    case 'planned_time': return { verified: false, icon: '≈', text: msg('ended.plannedTime') };
    case 'positions': return { verified: false, icon: '≈', text: msg('ended.positions') };
    default: return null;
  }
}

/** The place at or near `p`, if any. */
export function placeNear(m, p, radiusM = NAME_RADIUS_M) {
  let best = null;
  let bestD = Infinity;
  for (const place of m.places) {
    const d = distanceM(place.point, p);
    if (d < bestD) [best, bestD] = [place, d];
  }
  return bestD <= radiusM ? best : null;
}

/** The name of where leg `i` of `relay` ends (its exchange point). */
export function exchangeName(m, relay, i) {
  const leg = relay.legs[i];
  if (!leg?.end) return msg('plan.exchange', { n: i + 1 });
  const place = m.places.find((p) => p.id === leg.placeId)
    ?? placeNear(m, leg.end, Math.max(NAME_RADIUS_M, leg.exchange_radius_m ?? 0));
  if (place) return place.name;
  return i === relay.legs.length - 1 ? msg('plan.finish') : msg('plan.exchangeBetween', { from: i + 1, to: i + 2 });
}

function startName(m, relay) {
  const leg = relay.legs[0];
  const place = m.places.find((p) => p.id === leg?.placeId)
    ?? (leg?.start && placeNear(m, leg.start, Math.max(NAME_RADIUS_M, leg.exchange_radius_m ?? 0)));
  return place ? place.name : msg('plan.start');
}

/**
 * The stops of a relay in order: its start, the places its routes pass, each exchange and
 * its finish. A stop is at `fraction` of leg `leg`; its time is read from the live leg (see
 * `stopTime`), so the schedule moves with the ETAs.
 */
function stops(m, relay) {
  const out = [];
  const last = relay.legs.length - 1;
  relay.legs.forEach((leg, i) => {
    if (i === 0) {
      out.push({ kind: 'start', leg: 0, fraction: 0, name: startName(m, relay), zone: leg.start_zone, who: leg.carriers });
    }
    if (leg.points.length > 1) {
      const passed = [];
      for (const place of m.places) {
        const { alongM, offM } = locate(leg.points, leg.cum, place.point);
        const total = leg.cum[leg.cum.length - 1] || 1;
        const f = alongM / total;
        // Places at the leg's ends are its exchange stops already.
        if (offM <= PASS_RADIUS_M && distanceM(place.point, leg.start) > NAME_RADIUS_M
          && distanceM(place.point, leg.end) > NAME_RADIUS_M) {
          passed.push({ kind: 'pass', leg: i, fraction: f, name: place.name, zone: place.timezone, who: leg.carriers });
        }
      }
      out.push(...passed.sort((a, b) => a.fraction - b.fraction));
    }
    out.push({
      kind: i === last ? 'finish' : leg.segment ? 'segment' : 'exchange',
      leg: i,
      fraction: 1,
      name: exchangeName(m, relay, i),
      zone: leg.end_zone,
      who: leg.carriers,
      to: relay.legs[i + 1]?.carriers ?? null,
      toMode: relay.legs[i + 1]?.mode ?? null,
    });
  });
  return out;
}

/**
 * The share (0–1) of a leg's time spent by `fraction` of its length, as the engine reckons it
 * (`Leg::time_share` on the server): by the leg's terrain where the plan gives it (`flatM`, the
 * flat-equivalent distance to each route point: a climb takes longer than its length, a gentle
 * descent less), else evenly by distance.
 */
export function timeShare(leg, fraction) {
  const f = Math.max(0, Math.min(1, fraction));
  const flat = leg?.flatM;
  const cum = leg?.cum;
  if (!flat || !cum || flat.length !== cum.length || cum.length < 2) return f;
  const total = flat[flat.length - 1];
  if (!(total > 0)) return f;
  const a = f * cum[cum.length - 1];
  let i = 1;
  while (i < cum.length - 1 && cum[i] < a) i++;
  const x = Math.max(0, Math.min(1, (a - cum[i - 1]) / (cum[i] - cum[i - 1] || 1)));
  return Math.max(0, Math.min(1, (flat[i - 1] + (flat[i] - flat[i - 1]) * x) / total));
}

/**
 * When the object is (or was) at a stop: { at, planned, passed, lo, hi } (`lo`–`hi`: the band it
 * is likely in, while it is still to come and the leg's ETA has one; on a leg not yet started,
 * from the band of its start, the end of `before`, the live leg before it). Within a leg the time is
 * interpolated between its start and end (actual where known, else the ETA) by the share of the
 * leg's time up to the stop (`timeShare`: by the terrain of `leg`, the plan's leg, where it has
 * one, else by distance); on the leg under way, between the start and where the holder was last
 * seen (`along_m` at `along_t`) for a point behind them, and from there to the leg's ETA for a
 * point ahead: a carrier who started slowly and is now on time passes the rest of the leg at the
 * time now expected, not early by the slow start.
 */
export function stopTime(stop, liveLeg, leg = null, before = null) {
  if (!liveLeg) return { at: NaN, planned: NaN, passed: false, lo: NaN, hi: NaN };
  const t0 = Date.parse(liveLeg.actual_start ?? liveLeg.eta_start);
  const t1 = Date.parse(liveLeg.actual_end ?? liveLeg.eta_end);
  const p0 = Date.parse(liveLeg.planned_start);
  const p1 = Date.parse(liveLeg.planned_end);
  const f = timeShare(leg, stop.fraction);
  let passed = liveLeg.status === 'done';
  // By default the leg's start and end; on the leg under way, the holder's last seen point.
  let at = (end, start = t0) => start + (end - start) * f;
  if (liveLeg.status === 'current') {
    const progress = liveLeg.length_m > 0 ? liveLeg.along_m / liveLeg.length_m : 0;
    passed = stop.kind === 'start' || (stop.fraction < 1 && progress >= stop.fraction);
    const seen = Date.parse(liveLeg.along_t);
    const p = timeShare(leg, progress);
    if (p > 0 && p < 1 && seen >= t0 && seen <= t1) {
      at = f < p
        ? () => t0 + (seen - t0) * (f / p)
        : (end) => seen + (end - seen) * ((f - p) / (1 - p));
    }
  }
  // The band's edges are brought back the same way; on a leg still to come, from the band of
  // its start (the end of the leg before), not from one instant: a point just after an exchange
  // is as uncertain as the exchange.
  const edge = (x, from) => {
    if (!Number.isFinite(Date.parse(x)) || passed) return NaN;
    const start = liveLeg.status === 'upcoming' ? Date.parse(from) : NaN;
    return at(Date.parse(x), Number.isFinite(start) ? start : t0);
  };
  return {
    at: at(t1),
    planned: p0 + (p1 - p0) * f,
    passed,
    lo: edge(liveLeg.eta_lo, before?.eta_lo),
    hi: edge(liveLeg.eta_hi, before?.eta_hi),
  };
}

/**
 * What a relay carries, as a title: "Olympic flag", "The stage" (its object, capitalised), or
 * in a race (or with no object) the relay's name, "Team 417".
 */
export function objectTitle(relay) {
  const text = relay.course || !relay.object ? relay.name : relay.object;
  return text.charAt(0).toLocaleUpperCase() + text.slice(1);
}

/** Distance along a race course at the start of each of its legs, metres. */
export function courseOffsets(relay) {
  const out = [0];
  for (const leg of relay.legs) out.push(out[out.length - 1] + leg.lengthM);
  return out;
}
