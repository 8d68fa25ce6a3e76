// Time as the pages show it. Instants are milliseconds since the epoch (UTC); they are
// zoned only when shown: in the zone of the place (the leg's start or end zone, the
// milestone's) and, when that differs, in the viewer's own, named by the zone's abbreviation
// (CEST, PDT) whatever the locale. Countdowns count from the server's clock, so a phone whose
// clock is off still counts right. Words and formats are those of the page's language
// (i18n.js): "in 4 min 20 s" or "dans 4 min 20 s", 3:09 PM or 15:09.

import { h } from './dom.js';
import { currentLocale, msg } from './i18n.js';

// The server's clock as last seen (its `now`, and our own clock then), and how fast it runs
// against ours: 1 for a real event; faster in `handoff demo`, where a day's relay is compressed
// into minutes. Estimated from successive readings, so no page needs to know which it is.
let anchorServer = NaN; // the latest reading: what `now()` counts on from
let anchorLocal = NaN;
let baseServer = NaN; // an older reading, at least a second back: what the rate is measured on
let baseLocal = NaN;
let rate = 1;

/** Aligns our clock with the server's `now` (from a snapshot or a live message). */
export function syncClock(serverNow) {
  const t = Date.parse(serverNow);
  if (!Number.isFinite(t)) return;
  const local = Date.now();
  if (!Number.isFinite(baseLocal) || t < baseServer) {
    [baseServer, baseLocal] = [t, local];
  } else if (local - baseLocal >= 1000) {
    const seen = (t - baseServer) / (local - baseLocal);
    // Follow a change of pace at once; otherwise smooth out network jitter.
    if (seen > 0.2 && seen < 100000) rate = Math.abs(seen - rate) / rate > 0.25 ? seen : rate * 0.6 + seen * 0.4;
    [baseServer, baseLocal] = [t, local];
  }
  [anchorServer, anchorLocal] = [t, local];
}

/** The server's "now", in milliseconds. */
export function now() {
  if (!Number.isFinite(anchorServer)) return Date.now();
  return anchorServer + (Date.now() - anchorLocal) * rate;
}

export const ms = (iso) => (iso ? Date.parse(iso) : NaN);

export const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

const formats = new Map();
function formatter(locale, zone, opts) {
  const key = `${locale}|${zone}|${JSON.stringify(opts)}`;
  if (!formats.has(key)) {
    let f;
    try {
      f = new Intl.DateTimeFormat(locale, { ...opts, timeZone: zone });
    } catch {
      // An unknown zone name: fall back to UTC rather than break the page.
      f = new Intl.DateTimeFormat(locale, { ...opts, timeZone: 'UTC' });
    }
    formats.set(key, f);
  }
  return formats.get(key);
}

function format(zone, withDate) {
  const opts = { hour: '2-digit', minute: '2-digit', timeZoneName: 'short' };
  if (withDate) Object.assign(opts, { weekday: 'short', day: 'numeric', month: 'short' });
  return formatter(currentLocale(), zone, opts);
}

// Locales whose short zone names are the places' abbreviations (CEST, PDT, AEST, IST): the
// page's own locale knows only some ("GMT+2" beside "PDT" in en-US; only "UTC+2" and "UTC−7"
// in French), so the name is taken from the first of these that has a letters-only one for
// the zone, at that instant: the same names in every language.
const NAMING = ['en-US', 'en-GB', 'en-AU', 'en-IN', 'en-CA', 'en-NZ'];
const OFFSET_NAME = /^(GMT|UTC)([+\-−]|$)/;

const zoneNames = new Map();

/** The zone's abbreviation at `t` ("CEST", "PDT"), or its offset ("GMT+9") if none is known. */
export function zoneName(t, zone) {
  // Looked up once per zone and hour (abbreviations change at offset changes, on the hour or
  // half hour): a page shows hundreds of times per render.
  const key = `${currentLocale()}|${zone}|${Math.floor(t / 1800000)}`;
  if (!zoneNames.has(key)) zoneNames.set(key, lookUpZoneName(t, zone));
  return zoneNames.get(key);
}

function lookUpZoneName(t, zone) {
  let first = null;
  for (const locale of [currentLocale(), ...NAMING]) {
    const part = formatter(locale, zone, { timeZoneName: 'short' }).formatToParts(t)
      .find((p) => p.type === 'timeZoneName')?.value;
    if (!part) continue;
    first ??= part;
    if (!OFFSET_NAME.test(part)) return part;
  }
  return first ?? zone;
}

/** The calendar day of `t` in `zone`, to tell whether a date needs showing. */
function day(t, zone) {
  try {
    return new Intl.DateTimeFormat('en-CA', { timeZone: zone, dateStyle: 'short' }).format(t);
  } catch {
    return '';
  }
}

/** "23:09 CEST", with the date when it is not today (in that zone). */
export function clock(t, zone = 'UTC') {
  if (!Number.isFinite(t)) return '—';
  const withDate = day(t, zone) !== day(now(), zone);
  const name = zoneName(t, zone);
  return format(zone, withDate).formatToParts(t)
    .map((p) => (p.type === 'timeZoneName' ? name : p.value)).join('');
}

/** "18:39" in `zone`, without its name (a band beside a time that has it). */
export function hhmm(t, zone = 'UTC') {
  if (!Number.isFinite(t)) return '—';
  return formatter(currentLocale(), zone, { hour: '2-digit', minute: '2-digit' }).format(t);
}

/**
 * The band an ETA is likely in (four times in five), in the place's zone: " (18:39–18:47)";
 * nothing when the server gave none (a leg done, a stage).
 */
export function band(lv, zone) {
  return bandBetween(ms(lv?.eta_lo), ms(lv?.eta_hi), zone);
}

/** {@link band} from its two ends (ms since the epoch). */
export function bandBetween(lo, hi, zone) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return null;
  const [a, b] = [hhmm(lo, zone), hhmm(hi, zone)];
  if (a === b) return null;
  return h('span', { class: 'band', title: msg('time.bandTitle', { lo: a, hi: b }) }, ` ${msg('time.band', { lo: a, hi: b })}`);
}

/** "18:42:10" on the viewer's own clock (when the page last heard from the server). */
export function hhmmss(t) {
  return formatter(currentLocale(), viewerZone, { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(t);
}

/** "Fri, Jul 14, 2028", "ven. 14 juil. 2028": a date-only milestone's day (`YYYY-MM-DD`), no time. */
export function dateOnly(date) {
  const [y, m, d] = String(date).split('-').map(Number);
  const t = Date.UTC(y, m - 1, d, 12);
  if (!Number.isFinite(t)) return String(date);
  return formatter(currentLocale(), 'UTC', { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' }).format(t);
}

/**
 * A time in the place's zone, and in the viewer's when its wall clock differs:
 * { place: "23:09 GMT+2", viewer: "14:09 PDT" | null }.
 */
export function zoned(t, zone = 'UTC') {
  const place = clock(t, zone);
  const mine = clock(t, viewerZone);
  const sameWall = Number.isFinite(t) && format(zone, false).formatToParts(t)
    .filter((p) => p.type === 'hour' || p.type === 'minute').map((p) => p.value).join(':')
    === format(viewerZone, false).formatToParts(t)
      .filter((p) => p.type === 'hour' || p.type === 'minute').map((p) => p.value).join(':');
  return { place, viewer: sameWall ? null : mine };
}

// Amounts of time in the page's words: "4 min", "3 d" / "3 j".
const unit = (name, n) => msg(`time.${name}`, { n });
const both = (a, b) => `${a} ${b}`;

/**
 * The time left, always with its units: "42 s", "4 min 20 s", "1 h 43 min", "3 d 4 h",
 * "590 days" (in French "3 j 4 h", "590 jours").
 */
export function countdown(remainingMs) {
  const s = Math.max(0, Math.floor(remainingMs / 1000));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d >= 7) return msg('time.days', { count: d });
  if (d > 0) return hh ? both(unit('d', d), unit('h', hh)) : unit('d', d);
  if (hh > 0) return mm ? both(unit('h', hh), unit('min', mm)) : unit('h', hh);
  if (mm > 0) return ss ? both(unit('min', mm), unit('s', ss)) : unit('min', mm);
  return unit('s', ss);
}

/** "12 s", "3 min", "2 h 5 min", "4 d": an age or a delay. */
export function span(msAbs) {
  const s = Math.round(Math.abs(msAbs) / 1000);
  if (s < 60) return unit('s', s);
  const m = Math.round(s / 60);
  if (m < 60) return unit('min', m);
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? both(unit('h', h), unit('min', m % 60)) : unit('h', h);
  return unit('d', Math.round(h / 24));
}

/** "5 min late", "2 min early", "on time" (within a minute); "en retard de 5 min" in French. */
export function delta(seconds) {
  if (!Number.isFinite(seconds) || Math.abs(seconds) < 60) return msg('time.onTime');
  return msg(seconds > 0 ? 'time.late' : 'time.early', { span: span(seconds * 1000) });
}

/** "3 min ago", "il y a 3 min": how long ago `t` was (ms, on the server's clock). */
export const ago = (at) => msg('time.ago', { span: span(now() - at) });

/**
 * Updates every `[data-until]` (a countdown to that instant, ms) and `[data-since]` (an age)
 * under `root`. One timer per page calls this each second; the elements are rebuilt freely.
 * A countdown's `data-done` is the message key of what it says once the time has come
 * (`time.now` when absent); `data-phrase="in"` words it "in 4 min" rather than "4 min". Both
 * are looked up at each tick, so a switch of language reaches them at the next.
 */
export function tick(root = document) {
  const at = now();
  for (const el of root.querySelectorAll('[data-until]')) {
    const left = Number(el.dataset.until) - at;
    let text = msg(el.dataset.done ?? 'time.now');
    if (left > 0) text = el.dataset.phrase === 'in' ? msg('time.in', { left: countdown(left) }) : countdown(left);
    if (el.textContent !== text) el.textContent = text;
  }
  for (const el of root.querySelectorAll('[data-since]')) {
    const text = ago(Number(el.dataset.since));
    if (el.textContent !== text) el.textContent = text;
  }
}

/**
 * The attributes of a ticking countdown to `at` (ms) for `h`: `done` the key of what it says
 * once the time has come, `inWords` "in 4 min" rather than "4 min".
 */
export const untilData = (at, done = 'time.now', inWords = true) => ({
  class: 'countdown', dataset: { until: String(at), done, ...(inWords ? { phrase: 'in' } : {}) },
});
