// The live page (`/e/{event}`): at a glance, the followed object (who holds it, the next
// handoff, the next milestone) beside the map that follows it; then a panel per relay (holder,
// progress, countdowns), the milestones, the schedule ("when does it pass here") and the
// planned-versus-actual chart; in race mode a leaderboard. It loads the plan and `/live`,
// then follows the SSE stream; every part re-renders from the one live model, so they never
// disagree. A switch of language renders it all again in place: the map keeps its view, the
// followed relay and the team shown stay.

import { eventFromPath, getJSON, paths } from './api.js';
import { $, coalesce, escapeHtml, fill, h, names, problem } from './dom.js';
import { formatDistance } from './geo.js';
import { formatNumber, mountSwitch, msg, msgParts, onLanguageChange, word } from './i18n.js';
import { LiveModel } from './live-model.js';
import { OSM, RelayMap } from './map.js';
import { courseOffsets, endedBy, exchangeName, model, nameStops, objectTitle, stintEnd, stintStart, stopTime } from './plan.js';
import { follow } from './stream.js';
import { timeline } from './timeline.js';
import { band, bandBetween, clock, dateOnly, delta, hhmmss, ms, now, syncClock, tick, untilData, viewerZone, zoned } from './time.js';

const eventId = eventFromPath();
const state = {
  m: null,
  live: null,
  map: null,
  panels: new Map(),
  team: null,
  summary: new Map(),
  // Follow mode: on until the viewer moves the map; `pick` is the relay they asked to follow
  // ("Show on map"), else the page chooses (see `followed`).
  following: true,
  pick: null,
  conn: 'connecting', // the stream's state, as `#conn` says it
  updatedAt: null, // when the page last heard from the server (the viewer's clock, ms)
};

const modeName = (mode) => (mode ? word('mode', mode) : '');

/** A time in the place's zone, and the viewer's after it when it differs. */
function when(t, zone) {
  const z = zoned(t, zone);
  return h('span', { class: 'when' },
    h('time', { datetime: Number.isFinite(t) ? new Date(t).toISOString() : null }, z.place),
    z.viewer ? h('span', { class: 'viewer-time' }, ` (${msg('time.yourTime', { time: z.viewer })})`) : null);
}

/** A ticking "in 4 min 12 s" that becomes message `done` when the time comes. */
const until = (t, done = 'time.now', inWords = true) => h('span', untilData(t, done, inWords));

// ------------------------------------------------------------------ tiles

function tileConfig() {
  const params = new URLSearchParams(location.search);
  const chosen = params.get('tiles') ?? localStorage.getItem('handoff.tiles');
  if (!chosen || chosen === 'off') return null;
  if (chosen === 'osm') return OSM;
  if (/^https?:\/\/.+\{z\}/.test(chosen)) {
    const host = chosen.replace(/^https?:\/\/([^/]+).*/, '$1');
    // From the address: shown as text, never as markup.
    return { url: chosen, attribution: escapeHtml(params.get('attribution') ?? msg('live.tilesFrom', { host })) };
  }
  return null;
}

function buildMap() {
  state.map?.map.remove();
  state.map = new RelayMap($('#map'), { tiles: tileConfig(), onFollowChange: showFollow, onRouteTap: passesHere });
  state.map.setFollow(state.following);
  if (state.m) state.map.drawPlan(state.m);
}

// ------------------------------------------------------------------ when does it pass here

/**
 * A tap on a route: when the object passes that point (or passed it), with the band it is
 * likely in, and an add-to-calendar for it. Interpolated along the leg as the schedule's
 * stops are (its actual times where known, else its live ETA).
 */
function passesHere({ relayId, leg, alongM, at }) {
  const relay = state.m?.relays.find((x) => x.id === relayId);
  const legs = state.live?.relay(relayId)?.legs;
  const lv = legs?.[leg.index];
  if (!relay || !lv) return;
  const fraction = leg.lengthM > 0 ? Math.min(1, alongM / leg.lengthM) : 0;
  const { at: t, passed, lo, hi } = stopTime({ fraction, kind: 'point' }, lv, leg, legs[leg.index - 1]);
  if (!Number.isFinite(t)) return;
  const zone = fraction < 0.5 ? leg.start_zone : leg.end_zone;
  const what = objectTitle(relay);
  const content = h('div', { class: 'pass-here' },
    h('p', {}, h('strong', {}, what), ` · ${names(leg.carriers)} · ${modeName(leg.mode)}`),
    h('p', { class: 'pass-time' }, msg(passed ? 'live.passedHere' : 'live.passesHere'), ' ', when(t, zone),
      passed ? null : bandBetween(lo, hi, zone)),
    passed ? null : h('p', {}, until(t, 'time.now')),
    passed ? null : h('p', {}, h('a', {
      href: calendarUrl(icsOf(`${what} · ${state.m.event.name}`, t, at)),
      download: `${state.m.event.id}-${relay.id}-passes-here.ics`,
      class: 'add-calendar',
    }, msg('live.addPassCalendar'))));
  state.map.popup(at, content);
  tick();
}

/** A download address for `ics`; the previous one is let go (one popup is open at a time). */
let calendarBlob = null;
function calendarUrl(ics) {
  if (calendarBlob) URL.revokeObjectURL(calendarBlob);
  calendarBlob = URL.createObjectURL(new Blob([ics], { type: 'text/calendar' }));
  return calendarBlob;
}

/** One calendar event of 10 minutes from `t` at `at` ([lon, lat]), as iCalendar text. */
function icsOf(summary, t, at) {
  const stamp = (x) => new Date(x).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const text = (x) => x.replace(/[\\;,]/g, (c) => `\\${c}`).replace(/\n/g, '\\n');
  return ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//handoff//live page//EN', 'BEGIN:VEVENT',
    `UID:${stamp(t)}-${at[0].toFixed(5)}-${at[1].toFixed(5)}@handoff`, `DTSTAMP:${stamp(Date.now())}`,
    `DTSTART:${stamp(t)}`, `DTEND:${stamp(t + 10 * 60000)}`, `SUMMARY:${text(summary)}`,
    `GEO:${at[1].toFixed(6)};${at[0].toFixed(6)}`, 'END:VEVENT', 'END:VCALENDAR', ''].join('\r\n');
}

// ------------------------------------------------------------------ follow mode

/**
 * The relay the map follows: the one the viewer picked, else the first under way (in the
 * plan's order), else in a race the team shown in detail, else the first not finished, else
 * the first.
 */
function followed() {
  const relays = state.m?.relays ?? [];
  const standalone = relays.filter((x) => !x.course);
  const status = (relay) => state.live?.relay(relay.id)?.status;
  return relays.find((x) => x.id === state.pick)
    ?? standalone.find((x) => status(x) === 'running')
    ?? relays.find((x) => x.course && x.id === state.team)
    ?? standalone.find((x) => status(x) !== 'finished')
    ?? relays[0]
    ?? null;
}

/** "Follow the Olympic flag", "Follow the stage", "Follow Team 417": what the follow button says. */
function followLabel(relay) {
  if (relay.course || !relay.object) return msg('live.followNamed', { name: relay.name });
  return /^(the|a|an) /i.test(relay.object)
    ? msg('live.followNamed', { name: relay.object })
    : msg('live.followThe', { object: relay.object });
}

/** The follow button and its state, as the map reports it. */
function showFollow(on) {
  state.following = on;
  const button = $('#follow');
  button.setAttribute('aria-pressed', String(on));
  $('#follow-off').hidden = on;
  const relay = state.m && followed();
  const label = relay ? followLabel(relay) : msg('live.followIt');
  if ($('#follow-label').textContent !== label) $('#follow-label').textContent = label;
}

// ------------------------------------------------------------------ relay panels

function buildPanel(relay) {
  const f = {};
  const id = `relay-${relay.id}`;
  const el = h('article', { class: 'relay', 'data-relay': relay.id, 'aria-labelledby': `${id}-h` },
    h('h3', { id: `${id}-h` }, relay.name),
    f.status = h('p', { class: 'status' }),
    f.how = h('p', { class: 'how' }),
    f.note = h('p', { class: 'leg-note' }),
    f.progress = h('div', {
      class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-labelledby': `${id}-pt`,
    }, f.bar = h('div', { class: 'bar' })),
    f.progressText = h('p', { class: 'progress-text', id: `${id}-pt` }),
    f.fix = h('p', { class: 'fix' }),
    f.flags = h('p', { class: 'flags' }),
    h('dl', { class: 'next' },
      h('dt', {}, msg('live.nextHandoff')), f.next = h('dd', { class: 'next-handoff' }),
      h('dt', {}, msg('live.finish')), f.finish = h('dd', { class: 'finish' })),
    h('button', {
      type: 'button',
      class: 'secondary',
      onclick: () => {
        state.pick = relay.id;
        state.map.setFollow(true);
        render();
        $('#map').scrollIntoView?.({ block: 'nearest' });
      },
    }, msg('live.showOnMap')));
  return { el, f };
}

/**
 * How custody reached the holder: the handoff into their stint (a change of mode within it
 * is no handoff), as `endedBy` words it, with the leg it ended; null before the first.
 */
function custodyInto(relay, r) {
  const cur = r.current_leg;
  const into = cur === undefined || !relay.legs[cur] ? -1 : stintStart(relay, cur) - 1;
  const how = into >= 0 ? endedBy(r.legs[into]?.ended_by) : null;
  return how ? { ...how, leg: into } : null;
}

/**
 * "Held by Tom Cruise · motorcycle", "Probably held by …" (an assumed handoff is never worded
 * as a fact), "Finished at …", "Not started · starts … · in …"; `more` follows a holder.
 */
function holderLine(relay, r, more = '') {
  const n = relay.legs.length;
  const how = custodyInto(relay, r);
  if (r.status === 'running' && relay.legs[r.current_leg]) {
    return [msgParts(how && !how.verified ? 'live.probablyHeldBy' : 'live.heldBy', { holders: h('strong', { class: 'holders' }, names(r.holders)) }),
      ` · ${modeName(r.mode)}${more}`];
  }
  if (r.status === 'finished') {
    return msgParts('live.finishedAt', {
      finished: h('strong', { class: 'holders' }, msg('live.finished')), time: when(ms(r.eta_finish), relay.legs[n - 1].end_zone),
    });
  }
  const start = ms(r.legs[0]?.eta_start);
  return [h('strong', { class: 'holders' }, msg('live.notStarted')), ' · ',
    msgParts('live.starts', { time: when(start, relay.legs[0].start_zone) }), ' · ', until(start)];
}

function updatePanel(relay, { f }, r) {
  const cur = r.current_leg;
  const leg = cur === undefined ? null : relay.legs[cur];
  const n = relay.legs.length;
  const how = custodyInto(relay, r);
  const into = how?.leg ?? -1;
  fill(f.status, holderLine(relay, r, ` · ${msg('live.legOf', { n: (cur ?? 0) + 1, total: n })}`));

  f.how.hidden = !(r.status === 'running' && how);
  if (!f.how.hidden) {
    f.how.className = `how ${how.verified ? 'verified' : 'assumed'}`;
    fill(f.how, h('span', { class: 'how-icon', 'aria-hidden': 'true' }, how.icon), ' ',
      msg('live.handoffFrom', { giver: names(relay.legs[into].carriers), how: how.text }));
  }

  // The plan's word on the leg under way ("Rides up the ramp of the cargo aircraft").
  f.note.hidden = !(r.status === 'running' && leg?.note);
  if (!f.note.hidden && f.note.textContent !== leg.note) f.note.textContent = leg.note;

  const p = r.progress;
  const pct = p && leg ? Math.round(Math.min(1, p.fraction ?? 0) * 100) : r.status === 'finished' ? 100 : 0;
  f.progress.hidden = !(leg && leg.points.length > 1);
  f.bar.style.width = `${pct}%`;
  f.progress.setAttribute('aria-valuenow', String(pct));
  f.progressText.hidden = f.progress.hidden;
  if (leg && p) {
    fill(f.progressText, msg('live.progress', {
      n: cur + 1, along: formatDistance(p.along_m), length: formatDistance(p.length_m || leg.lengthM),
      pct: formatNumber(pct / 100, { style: 'percent' }),
    }));
  }

  if (r.position) {
    const t = ms(r.position.t);
    const stale = r.position.stale || now() - t > 60000;
    f.fix.className = stale ? 'fix stale' : 'fix';
    fill(f.fix, msgParts(stale ? 'live.lastPositionStale' : 'live.lastPosition', {
      time: when(t, leg?.start_zone ?? 'UTC'), age: h('span', { dataset: { since: String(t) } }),
    }));
  } else {
    f.fix.className = 'fix';
    fill(f.fix, leg && leg.points.length > 1 ? msg('live.noPosition') : '');
  }

  const flags = [];
  if (r.off_route) flags.push(h('span', { class: 'badge warn' }, msg('live.offRoute')));
  if (r.custody_unverified) flags.push(h('span', { class: 'badge warn' }, msg('live.unverified')));
  if (r.overdue) flags.push(h('span', { class: 'badge warn' }, msg('live.overdue')));
  if (r.silent) flags.push(h('span', { class: 'badge' }, msg('live.noSignal')));
  fill(f.flags, flags);
  f.flags.hidden = flags.length === 0;

  // The next handoff is at the end of the holder's stint (past any change of mode).
  const end = leg ? stintEnd(relay, cur) : cur;
  if (leg && end < n - 1) {
    const lv = r.legs[end];
    const endLeg = relay.legs[end];
    const t = ms(lv.eta_end);
    const then = leg.segment
      ? h('span', { class: 'segment-note' }, ` ${msg('live.afterModes', {
        modes: relay.legs.slice(cur + 1, end + 1).map((l) => modeName(l.mode)).join(msg('live.thenJoin')),
      })}`)
      : null;
    fill(f.next, h('span', { class: 'who' }, `${names(endLeg.carriers)} → ${names(relay.legs[end + 1].carriers)}`),
      ` ${msg('live.atPlace', { place: exchangeName(state.m, relay, end) })}`, then, h('br'),
      until(t, 'time.dueNow'), ' · ', when(t, endLeg.end_zone), band(lv, endLeg.end_zone),
      h('span', { class: 'delta' }, ` · ${delta(lv.delta_s)}`));
  } else {
    fill(f.next, r.status === 'finished' ? msg('live.noneFinished') : leg ? msg('live.noneLastLeg') : '—');
  }
  const fin = ms(r.eta_finish);
  const finDelta = (fin - ms(r.planned_finish)) / 1000;
  if (r.status === 'finished') fill(f.finish, when(fin, relay.legs[n - 1].end_zone));
  else {
    fill(f.finish, until(fin, 'time.dueNow'), ' · ', when(fin, relay.legs[n - 1].end_zone),
      band(r.legs[n - 1], relay.legs[n - 1].end_zone), h('span', { class: 'delta' }, ` · ${delta(finDelta)}`));
  }
}

// ------------------------------------------------------------------ at a glance

/** The next milestone still to come, from the snapshot's countdowns. */
function nextMilestone() {
  const t = now();
  return (state.live.snapshot.countdowns ?? [])
    .filter((c) => ms(c.at) > t)
    .sort((a, b) => ms(a.at) - ms(b.at))[0] ?? null;
}

/**
 * The first screen's summary of the object the map follows: what it is, who holds it, the
 * next handoff (or the finish) with its countdown, the next milestone.
 */
function glance(relay) {
  const r = relay && state.live.relay(relay.id);
  $('#glance').hidden = !r;
  if (!r) return;
  $('#glance').dataset.relay = relay.id;
  const title = objectTitle(relay);
  if ($('#glance-object').textContent !== title) $('#glance-object').textContent = title;
  fill($('#glance-holder'), holderLine(relay, r));

  const n = relay.legs.length;
  const cur = r.current_leg;
  const from = cur ?? (r.status === 'finished' ? null : 0);
  $('#glance-next-row').hidden = from === null;
  if (from !== null) {
    const end = stintEnd(relay, from);
    const lv = r.legs[end];
    if (end < n - 1) {
      const t = ms(lv.eta_end);
      // The giver is named only when the line above does not (before the start).
      $('#glance-next-label').textContent = msg('live.nextHandoff');
      fill($('#glance-next'), msgParts(cur === undefined ? 'live.giverToReceiver' : 'live.toReceiver', {
        giver: names(relay.legs[end].carriers),
        receiver: h('strong', {}, names(relay.legs[end + 1].carriers)),
        place: exchangeName(state.m, relay, end),
      }), ' · ', until(t, 'time.dueNow'), band(lv, relay.legs[end].end_zone),
      h('span', { class: 'delta' }, ` · ${delta(lv.delta_s)}`));
    } else {
      const t = ms(r.eta_finish);
      $('#glance-next-label').textContent = msg('live.finish');
      fill($('#glance-next'), `${msg('live.atPlace', { place: exchangeName(state.m, relay, end) })} · `, until(t, 'time.dueNow'),
        h('span', { class: 'delta' }, ` · ${delta((t - ms(r.planned_finish)) / 1000)}`));
    }
  }

  const c = nextMilestone();
  $('#glance-milestone-row').hidden = !c;
  if (c) {
    // Its date is in the countdowns below; here, how long to go.
    fill($('#glance-milestone'), h('strong', {}, c.name), ' · ', until(ms(c.at)));
  }
}

// ------------------------------------------------------------------ race mode

function leaderboard() {
  const rows = state.m.relays.filter((x) => x.course).map((relay) => {
    const r = state.live.relay(relay.id);
    const offsets = courseOffsets(relay);
    const total = offsets[offsets.length - 1];
    let dist = 0;
    if (r?.status === 'finished') dist = total;
    else if (r?.current_leg !== undefined) dist = offsets[r.current_leg] + (r.progress?.along_m ?? 0);
    return { relay, r, dist };
  });
  rows.sort((a, b) => {
    const fa = a.r?.status === 'finished';
    const fb = b.r?.status === 'finished';
    if (fa !== fb) return fa ? -1 : 1;
    if (fa) return ms(a.r.eta_finish) - ms(b.r.eta_finish);
    return b.dist - a.dist;
  });
  fill($('#leaderboard'), rows.map(({ relay, r, dist }, i) => {
    const cur = r?.current_leg;
    let next = '—';
    if (r?.status === 'finished') next = msg('live.finished');
    else if (cur !== undefined) {
      const t = ms(r.legs[cur].eta_end);
      next = [exchangeName(state.m, relay, cur), h('br'), until(t, 'time.dueNow'), ' · ', when(t, relay.legs[cur].end_zone)];
    } else if (r) {
      const t = ms(r.legs[0].eta_start);
      next = [msgParts('live.startsIn', { countdown: until(t) }), h('br'), when(t, relay.legs[0].start_zone)];
    }
    return h('tr', { 'data-relay': relay.id },
      h('td', {}, String(i + 1)),
      h('th', { scope: 'row' }, relay.name),
      h('td', { class: 'num' }, cur === undefined ? (r?.status === 'finished' ? msg('live.legDone') : '—') : `${cur + 1}/${relay.legs.length}`),
      h('td', {}, names(r?.holders ?? [])),
      h('td', { class: 'num' }, formatDistance(dist)),
      h('td', {}, next));
  }));
  if (!state.team && rows.length) state.team = rows[0].relay.id;
}

// ------------------------------------------------------------------ schedule, chart

function describe(stop, liveLeg, passed) {
  if (stop.kind === 'start') return msg('live.stopStart', { who: names(stop.who) });
  if (stop.kind === 'finish') return msg('live.stopFinish', { who: names(stop.who) });
  if (stop.kind === 'segment') {
    return msg('live.stopSegment', { count: stop.who.length, who: names(stop.who), mode: modeName(stop.toMode) });
  }
  if (stop.kind === 'exchange') {
    const how = passed ? endedBy(liveLeg?.ended_by) : null;
    return [`${names(stop.who)} → ${names(stop.to)}`,
      how ? h('span', { class: `how ${how.verified ? 'verified' : 'assumed'}` }, ` · ${how.icon} ${how.text}`) : null];
  }
  return msg('live.stopPass', { who: names(stop.who) });
}

function scheduleOf(relay, r) {
  let nextFound = false;
  return h('ol', { class: 'stops', 'data-relay': relay.id }, relay.stops.map((stop) => {
    const { at, planned, passed } = stopTime(stop, r?.legs[stop.leg], relay.legs[stop.leg], r?.legs[stop.leg - 1]);
    const isNext = !passed && !nextFound && r?.status !== 'finished';
    if (isNext) nextFound = true;
    const late = (at - planned) / 1000;
    return h('li', { class: `stop ${passed ? 'passed' : isNext ? 'next' : 'upcoming'}` },
      h('span', { class: 'stop-name' }, stop.name),
      h('span', { class: 'stop-what' }, describe(stop, r?.legs[stop.leg], passed)),
      h('span', { class: 'stop-time' }, passed || isNext
        ? msgParts(passed ? 'live.passed' : 'live.nextStop', { time: when(at, stop.zone) })
        : when(at, stop.zone)),
      h('span', { class: 'stop-delta' }, Math.abs(late) >= 60
        ? msg('live.deltaPlanned', { delta: delta(late), time: clock(planned, stop.zone) })
        : msg('live.asPlanned')),
      isNext ? h('span', { class: 'stop-countdown' }, until(at, 'time.dueNow')) : null);
  }));
}

function shownInDetail() {
  const standalone = state.m.relays.filter((x) => !x.course);
  const team = state.m.relays.find((x) => x.id === state.team && x.course);
  return team ? [...standalone, team] : standalone;
}

function schedule() {
  const relays = shownInDetail();
  fill($('#schedule-list'), relays.map((relay) => [
    relays.length > 1 ? h('h3', {}, relay.name) : null,
    scheduleOf(relay, state.live.relay(relay.id)),
  ]));
}

function charts() {
  const box = $('#timeline-charts');
  const relays = shownInDetail();
  if (box.children.length !== relays.length || [...box.children].some((c, i) => c.dataset.relay !== relays[i].id)) {
    fill(box, relays.map((relay) => h('figure', { class: 'chart', 'data-relay': relay.id },
      h('figcaption', {}, relay.name), h('div', { class: 'chart-box' }))));
  }
  [...box.children].forEach((fig, i) => {
    timeline(fig.querySelector('.chart-box'), relays[i], state.live.relay(relays[i].id), now());
  });
}

function countdowns() {
  const list = state.live.snapshot.countdowns ?? [];
  $('#countdowns').hidden = list.length === 0;
  fill($('#countdown-list'), list.map((c) => {
    const t = ms(c.at);
    // A date-only milestone (the LA28 opening) is a day, not 00:00 of it.
    const day = c.date
      ? h('span', { class: 'when' }, h('time', { datetime: c.date }, dateOnly(c.date)))
      : when(t, c.timezone);
    return h('li', {},
      h('span', { class: 'cd-name' }, c.name),
      h('span', { class: 'cd-left' }, until(t, 'time.now', false)),
      day);
  }));
  // Filled at once: the list is redrawn on every snapshot, and `render` (which ticks) runs
  // later, so without this the time left would be blank for a moment.
  tick($('#countdown-list'));
}

/** The visually hidden summary of what the map shows, spoken when a holder changes. */
function summarize() {
  const lines = [];
  let changed = false;
  for (const relay of state.m.relays.filter((x) => !x.course)) {
    const r = state.live.relay(relay.id);
    if (!r) continue;
    const key = `${r.status}/${r.current_leg}`;
    if (state.summary.get(relay.id) !== key) changed = true;
    state.summary.set(relay.id, key);
    const what = relay.object || relay.name;
    const into = r.status === 'running' ? stintStart(relay, r.current_leg) - 1 : -1;
    const assumed = into >= 0 && endedBy(r.legs[into]?.ended_by)?.verified === false;
    if (r.status === 'running') {
      lines.push(msg(assumed ? 'live.summaryProbably' : 'live.summaryHeld', {
        object: what, holders: names(r.holders), mode: modeName(r.mode), n: r.current_leg + 1, total: relay.legs.length,
      }));
    } else lines.push(msg(r.status === 'finished' ? 'live.summaryFinished' : 'live.summaryNotStarted', { object: what }));
  }
  if (changed) $('#map-summary').textContent = lines.join(' ');
}

// ------------------------------------------------------------------ wiring

function setup() {
  document.title = msg('live.docTitleEvent', { event: state.m.event.name });
  fill($('#event-name'), state.m.event.name);
  $('#tz').textContent = viewerZone;
  state.panels.clear();
  const standalone = state.m.relays.filter((x) => !x.course);
  $('#now').hidden = standalone.length === 0;
  fill($('#relays'), standalone.map((relay) => {
    const p = buildPanel(relay);
    state.panels.set(relay.id, p);
    return p.el;
  }));
  const race = state.m.relays.filter((x) => x.course);
  $('#race').hidden = race.length === 0;
  $('#team-pick').hidden = race.length === 0;
  fill($('#team'), race.map((relay) => h('option', { value: relay.id }, relay.name)));
  // The team shown stays while the plan still has it (a new version, a switch of language).
  if (!race.some((x) => x.id === state.team)) state.team = null;
  state.map.drawPlan(state.m);
  about();
}

/**
 * The event's story, and what the server offers to take away: the schedule for a calendar,
 * and each relay's track (public positions only) as GPX and GeoJSON.
 */
function about() {
  const story = state.m.event.description ?? '';
  $('#event-story').hidden = !story;
  $('#event-story').textContent = story;
  const e = encodeURIComponent(state.m.event.id);
  const links = [h('li', {}, h('a', { href: `/api/v1/events/${e}/calendar.ics`, download: '' }, msg('live.addCalendar')))];
  for (const relay of state.m.relays.filter((x) => !x.course)) {
    const r = `/api/v1/events/${e}/relays/${encodeURIComponent(relay.id)}`;
    links.push(h('li', {}, msg('live.trackOf', { relay: relay.name }), ' ',
      h('a', { href: `${r}/track.gpx`, download: '' }, 'GPX'), ' · ',
      h('a', { href: `${r}/track.geojson`, download: '' }, 'GeoJSON')));
  }
  fill($('#downloads'), links);
  $('#about').hidden = false;
}

const render = coalesce(() => {
  if (!state.live?.snapshot) return;
  const t = now();
  const target = followed();
  // Name every object on the map, except in a race (many teams on one line).
  state.map.update(state.m, state.live, { now: t, labels: !state.m.race && state.m.relays.length <= 8, follow: target?.id });
  showFollow(state.following);
  glance(target);
  for (const relay of state.m.relays) {
    const panel = state.panels.get(relay.id);
    const r = state.live.relay(relay.id);
    if (panel && r) updatePanel(relay, panel, r);
  }
  if (state.m.race) {
    leaderboard();
    if ($('#team').value !== state.team) $('#team').value = state.team;
  }
  schedule();
  charts();
  summarize();
  tick();
});

async function refreshLive() {
  try {
    const snap = await getJSON(paths.live(eventId));
    syncClock(snap.now);
    state.live.replace(snap);
    state.updatedAt = Date.now();
    countdowns();
    render();
  } catch (e) {
    problem(e.message);
  }
}

let refreshTimer = null;
/** Re-reads `/live` shortly after a burst of handoff or custody messages. */
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshLive, 250);
}

async function loadPlan() {
  const [body, snap] = await Promise.all([getJSON(paths.plan(eventId)), getJSON(paths.live(eventId))]);
  state.m = model(body);
  state.live = new LiveModel(state.m);
  syncClock(snap.now);
  state.live.replace(snap);
  setup();
  countdowns();
  render();
}

function onMessage(kind, data) {
  if (!state.live) return;
  state.updatedAt = Date.now();
  if (kind === 'plan') {
    // A shift moves the schedule (in `/live`); a new plan version changes the plan itself.
    if (data.kind === 'shift') refreshSoon();
    else loadPlan().catch((e) => problem(e.message));
    return;
  }
  if (kind === 'snapshot') {
    syncClock(data.now);
    state.live.replace(data);
    countdowns();
  } else if (kind === 'custody') {
    refreshSoon();
    return;
  } else {
    if (data.now) syncClock(data.now);
    if (state.live.apply(kind, data) === null) return;
  }
  if (kind === 'handoff') refreshSoon();
  render();
}

/** The stream's state in `#conn`: connecting, live, reconnecting, or nothing (no event). */
function showConn() {
  const el = $('#conn');
  el.className = state.conn ? `conn ${state.conn}` : 'conn';
  let text = state.conn ? msg({ connecting: 'common.connecting', live: 'common.live' }[state.conn] ?? 'common.reconnecting') : '';
  // Cut off: say how old what the page shows is (on the viewer's clock).
  if (state.conn && state.conn !== 'live' && state.conn !== 'connecting' && state.updatedAt) {
    text += ` · ${msg('live.lastUpdate', { time: hhmmss(state.updatedAt) })}`;
  }
  el.textContent = text;
}

/** After a switch of language: every part again in the new words (the map keeps its view). */
function relabel() {
  showConn();
  state.map.localize(tileConfig());
  if (!state.m) {
    document.title = msg('live.docTitle');
    $('#event-name').textContent = msg('live.title');
    return;
  }
  nameStops(state.m);
  setup();
  state.summary.clear();
  if (state.live?.snapshot) {
    countdowns();
    render();
  }
}

async function main() {
  mountSwitch();
  document.title = msg('live.docTitle');
  $('#event-name').textContent = msg('live.title');
  showConn();
  if (!eventId) {
    problem(msg('live.noEventInAddress'));
    document.querySelector('main.live-layout').hidden = true;
    return;
  }
  const street = $('#street-tiles');
  street.checked = tileConfig() !== null;
  street.addEventListener('change', () => {
    localStorage.setItem('handoff.tiles', street.checked ? 'osm' : 'off');
    const url = new URL(location.href);
    url.searchParams.delete('tiles');
    history.replaceState(null, '', url);
    buildMap();
    render();
  });
  buildMap();
  $('#fit').addEventListener('click', () => {
    state.map.setFollow(false);
    state.map.fit();
  });
  $('#follow').addEventListener('click', () => state.map.setFollow(!state.following));
  $('#team').addEventListener('change', (e) => {
    state.team = e.target.value;
    render();
  });
  onLanguageChange(relabel);
  try {
    await loadPlan();
  } catch (e) {
    problem(e.status === 404 ? msg('live.noSuchEvent', { event: eventId }) : e.message);
    // Nothing to show: no empty map under the error.
    document.querySelector('main.live-layout').hidden = true;
    state.conn = null;
    showConn();
    return;
  }
  follow(paths.stream(eventId), {
    onMessage,
    onStatus: (s) => {
      state.conn = s;
      showConn();
    },
    resync: refreshLive,
  });
  setInterval(tick, 1000);
  // Ages, staleness and the chart's "now" line move with time, not only with messages.
  setInterval(render, 15000);
  new ResizeObserver(coalesce(() => state.live && charts())).observe($('#timeline-charts'));
}

main();
