// The carrier page (`/carrier`): a phone shares its position through the browser's
// Geolocation API while its carrier holds the object, and confirms handoffs with one-time
// codes. The device token is entered once (or arrives as `?token=` from the console's QR
// code) and kept in localStorage. Positions go into a queue in localStorage first and are
// sent from there in batches, so none is lost when the signal drops or the page reloads.
//
// The page guides: at the top, in words, what needs doing now (off the route, holding the
// object while nothing is shared, the exchange just ahead and who takes over), then the leg,
// the handoff (only where custody changes: a change of mode by the same carriers asks for
// nothing), and a map of the carrier, their route and the exchange point. A switch of
// language renders it again in place: sharing, the queue and a code on screen carry on (a
// reload would need the signal a carrier may not have).

import { ApiError, getJSON, paths, postJSON } from './api.js';
import { CarrierMap } from './carrier-map.js';
import { $, fill, h, names, problem } from './dom.js';
import { distanceM, formatDistance, locate } from './geo.js';
import { mountSwitch, msg, msgParts, onLanguageChange, word } from './i18n.js';
import { LiveModel } from './live-model.js';
import { localizeMap } from './map.js';
import { exchangeName, model, placeNear, stintEnd } from './plan.js';
import { follow } from './stream.js';
import { band, clock, ms, now, span, syncClock, tick, untilData, zoned } from './time.js';

const KEY = { token: 'handoff.device.token', sharing: 'handoff.device.sharing' };
/** One queue per token: a phone handed to another carrier never sends the last one's fixes as theirs. */
const queueKey = () => `handoff.device.queue.${(state.token ?? '').slice(0, 16)}`;
/** Fewer pings than the GPS offers: one per this interval is plenty for progress and ETAs. */
const MIN_INTERVAL_MS = 2000;
/** Most pings per request (the server takes up to 10,000). */
const BATCH = 1000;
/** Most pings kept while offline (a few MB of localStorage); the oldest go first. */
const MAX_QUEUE = 20000;
/** The next exchange is "near" within this distance along the route… */
const NEAR_M = 500;
/** …or this long before its ETA. */
const NEAR_MS = 3 * 60000;
/** How often the page asks the server for this device's newest fix (sent by any app). */
const ME_EVERY_MS = 20000;
/** Where the page keeps the time of the newest fix it queued itself (its `t`, ms). */
const ownSentKey = () => `handoff.device.ownfix.${(state.token ?? '').slice(0, 16)}`;

const state = {
  token: null, me: null, m: null, live: null, watch: null, fix: null, lastQueued: 0,
  flushing: false, retry: null, wakeLock: null, role: null, stream: null,
  map: null, sharingSince: NaN, ownFixAt: NaN, ownSentT: NaN, guideText: '',
  // What the page says, kept as what it means so a switch of language can say it again:
  // the sharing line ({ kind: 'off' | 'waiting' | 'fix' | 'error', code }), the queue's note
  // (a function giving its words), the handoff code shown and the handoff confirmed.
  share: { kind: 'off' }, queueNote: null, code: null, confirmed: null, conn: null,
};

const modeName = (mode) => word('mode', mode);

// ------------------------------------------------------------------ the queue

const readQueue = () => {
  try {
    return JSON.parse(localStorage.getItem(queueKey()) ?? '[]');
  } catch {
    return [];
  }
};
const writeQueue = (q) => localStorage.setItem(queueKey(), JSON.stringify(q.slice(-MAX_QUEUE)));

/**
 * The queue's length in words; `note` (a function giving words) says what the last send met.
 * An empty queue is "all sent" only once this phone has queued a position (kept across reloads):
 * before its first fix nothing has been sent at all.
 */
function showQueue(note = null) {
  state.queueNote = note;
  const n = readQueue().length;
  const empty = Number.isFinite(state.ownSentT) ? 'carrier.allSent' : 'carrier.noneSent';
  const text = n === 0 ? msg(empty) : msg(navigator.onLine ? 'carrier.waiting' : 'carrier.waitingOffline', { count: n });
  $('#queue-status').textContent = note ? `${text} ${note()}` : text;
  $('#queue-status').dataset.queued = String(n);
}

/** A GeolocationPosition as a ping of our batch API (SI units; unknown fields left out). */
function ping(pos) {
  const c = pos.coords;
  const p = { t: new Date(pos.timestamp).toISOString(), lon: c.longitude, lat: c.latitude };
  if (Number.isFinite(c.accuracy)) p.acc = c.accuracy;
  if (Number.isFinite(c.speed)) p.speed = c.speed;
  if (Number.isFinite(c.heading)) p.heading = c.heading;
  if (Number.isFinite(c.altitude)) p.alt = c.altitude;
  return p;
}

/** Sends the queue, oldest first, in batches; keeps it on a network or server error. */
async function flush() {
  if (state.flushing || !navigator.onLine || !state.token) return;
  state.flushing = true;
  clearTimeout(state.retry);
  let note = null;
  try {
    for (;;) {
      const batch = readQueue().slice(0, BATCH);
      if (batch.length === 0) break;
      try {
        const res = await postJSON(paths.pings(), batch, { token: state.token });
        // Refused pings (bad values) can never succeed: they leave the queue too.
        if (res.rejected?.length) {
          const [count, message] = [res.rejected.length, res.rejected[0].error?.message ?? ''];
          note = () => msg('carrier.refused', { count, message });
        }
        writeQueue(readQueue().slice(batch.length));
        $('#share-status').dataset.sent = String(Number($('#share-status').dataset.sent ?? 0) + res.accepted);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          forget(msg('carrier.tokenGone'));
          return;
        }
        if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          // The request as a whole can never succeed as it is: drop it, say so.
          writeQueue(readQueue().slice(batch.length));
          note = () => msg('carrier.positionsRefused', { message: e.message });
          continue;
        }
        // No signal or a server hiccup: keep them and try again shortly.
        state.retry = setTimeout(flush, 5000);
        break;
      }
    }
  } finally {
    state.flushing = false;
    showQueue(note);
  }
}

// ------------------------------------------------------------------ sharing

function onFix(pos) {
  state.fix = pos;
  // On the server's clock, as the device's newest fix (`/carrier/me`) is.
  state.ownFixAt = now();
  showShare({ kind: 'fix' });
  if (pos.timestamp - state.lastQueued >= MIN_INTERVAL_MS) {
    state.lastQueued = pos.timestamp;
    const q = readQueue();
    const p = ping(pos);
    q.push(p);
    writeQueue(q);
    state.ownSentT = Date.parse(p.t);
    localStorage.setItem(ownSentKey(), String(state.ownSentT));
    showQueue();
    flush();
  }
  renderLeg();
}

/** The sharing line: off, waiting for a first fix, the last fix, or why there is none. */
function showShare(share = state.share) {
  state.share = share;
  const el = $('#share-status');
  if (share.kind === 'fix' && state.fix) {
    const c = state.fix.coords;
    fill(el, msg('carrier.sharingFix', { time: clock(state.fix.timestamp, Intl.DateTimeFormat().resolvedOptions().timeZone) }),
      Number.isFinite(c.accuracy) ? ` ${msg('carrier.accuracy', { m: Math.round(c.accuracy) })}` : '');
  } else if (share.kind === 'error') {
    const key = { 1: 'carrier.geoDenied', 2: 'carrier.geoUnavailable', 3: 'carrier.geoTimeout' }[share.code];
    el.textContent = key ? msg(key) : share.message;
  } else {
    el.textContent = msg(share.kind === 'waiting' ? 'carrier.waitingFix' : 'carrier.notSharing');
  }
  const button = $('#share');
  button.textContent = msg(state.watch === null ? 'carrier.startSharing' : 'carrier.stopSharing');
  button.setAttribute('aria-pressed', String(state.watch !== null));
}

function onGeoError(err) {
  // Refused permission stops sharing, and the line says why (not merely "Not sharing").
  if (err.code === 1) stopSharing();
  showShare({ kind: 'error', code: err.code, message: err.message });
}

async function keepAwake() {
  // Browsers stop geolocation when the screen locks: ask it to stay on while sharing.
  try {
    if (state.watch !== null && 'wakeLock' in navigator && document.visibilityState === 'visible') {
      state.wakeLock = await navigator.wakeLock.request('screen');
    }
  } catch {
    // Not granted (battery saver): sharing still works while the page is in front.
  }
}

function startSharing() {
  if (!('geolocation' in navigator)) {
    problem(msg('carrier.noGeolocation'));
    return;
  }
  state.watch = navigator.geolocation.watchPosition(onFix, onGeoError, {
    enableHighAccuracy: true, maximumAge: 5000, timeout: 30000,
  });
  localStorage.setItem(KEY.sharing, 'on');
  state.sharingSince = now();
  showShare({ kind: 'waiting' });
  keepAwake();
  renderLeg();
}

function stopSharing() {
  if (state.watch !== null) navigator.geolocation.clearWatch(state.watch);
  state.watch = null;
  localStorage.setItem(KEY.sharing, 'off');
  state.wakeLock?.release().catch(() => {});
  state.wakeLock = null;
  showShare({ kind: 'off' });
  if (state.live?.snapshot) renderLeg();
}

// ------------------------------------------------------------------ the carrier's leg

/** The leg this carrier holds now, or the next one they will: { relay, leg, r, holding }. */
function myLeg() {
  let next = null;
  for (const relay of state.m.relays) {
    const r = state.live.relay(relay.id);
    if (!r) continue;
    for (const leg of relay.legs) {
      if (!leg.carriers.includes(state.me.carrier)) continue;
      const lv = r.legs[leg.index];
      if (r.current_leg === leg.index && lv?.status === 'current') return { relay, leg, r, holding: true };
      if (lv?.status === 'upcoming' && (!next || ms(lv.eta_start) < ms(next.r.legs[next.leg.index].eta_start))) {
        next = { relay, leg, r, holding: false };
      }
    }
  }
  return next;
}

function when(t, zone) {
  const z = zoned(t, zone);
  return [h('time', { datetime: new Date(t).toISOString() }, z.place), z.viewer ? ` (${msg('time.yourTime', { time: z.viewer })})` : ''];
}

/** A ticking "in 4 min 12 s", "due now" once the time has come. */
const until = (t) => h('span', untilData(t, 'time.dueNow'));

/** Where the stint of leg `i` ends in a handoff, as "; then hand to … at …" (or nothing). */
function handAfter(relay, i) {
  const end = stintEnd(relay, i);
  const to = relay.legs[end + 1];
  return to ? msg('carrier.thenHandTo', { to: names(to.carriers), place: exchangeName(state.m, relay, end) }) : '';
}

function renderLeg() {
  if (!state.live?.snapshot) return;
  const mine = myLeg();
  const here = herePoint(mine);
  const box = $('#leg-info');
  state.role = null;
  if (!mine) {
    fill(box, h('p', {}, msg('carrier.noLeg')));
  } else {
    const { relay, leg, r, holding } = mine;
    const n = relay.legs.length;
    const what = relay.object || relay.name;
    const last = leg.index === n - 1;
    // The next leg has the same carrier: a change of mode, with nothing to hand over or confirm.
    const nextLeg = relay.legs[leg.index + 1];
    const change = leg.segment && nextLeg;
    if (holding) {
      const lv = r.legs[leg.index];
      const t = ms(lv.eta_end);
      const remaining = r.progress ? Math.max(0, (r.progress.length_m || leg.lengthM) - r.progress.along_m) : leg.lengthM;
      fill(box,
        h('p', { class: 'status' }, h('strong', { class: 'holders' }, msg('carrier.youHold', { object: what })),
          ` · ${msg('live.legOf', { n: leg.index + 1, total: n })} · ${modeName(leg.mode)}`),
        h('dl', { class: 'next' },
          h('dt', {}, msg(last ? 'plan.finish' : change ? 'carrier.next' : 'carrier.nextExchange')),
          h('dd', { id: 'next-exchange' }, exchangeName(state.m, relay, leg.index),
            last ? '' : change
              ? ` · ${msg('carrier.carryOn', { mode: modeName(nextLeg.mode) })}${handAfter(relay, leg.index)}`
              : ` · ${msg('carrier.handTo', { to: names(nextLeg.carriers) })}`),
          h('dt', {}, msg('carrier.distance')),
          h('dd', { id: 'distance' }, msg('carrier.alongRoute', { distance: formatDistance(remaining) }),
            here && leg.end ? ` ${msg('carrier.straightLine', { distance: formatDistance(distanceM(here, leg.end)) })}` : ''),
          h('dt', {}, msg('carrier.expected')),
          h('dd', { id: 'eta' }, when(t, leg.end_zone), band(lv, leg.end_zone), ' · ', until(t))));
      // A code only where custody changes: at the end of the stint, never for a change of mode.
      state.role = last || change ? null : { kind: 'give', relay };
    } else {
      const lv = r.legs[leg.index];
      const t = ms(lv.eta_start);
      const prev = relay.legs[leg.index - 1];
      const at = leg.start && (placeNear(state.m, leg.start)?.name ?? (prev ? exchangeName(state.m, relay, prev.index) : msg('carrier.theStart')));
      fill(box,
        h('p', { class: 'status' }, h('strong', { class: 'holders' }, msg('carrier.nextLeg', { n: leg.index + 1, total: n })),
          ` · ${modeName(leg.mode)}`),
        h('dl', { class: 'next' },
          h('dt', {}, msg('carrier.youTakeOver')),
          h('dd', { id: 'next-exchange' }, prev
            ? msg('carrier.fromAt', { from: names(prev.carriers), place: at })
            : msg('carrier.atStart', { place: at })),
          h('dt', {}, msg('carrier.distance')),
          h('dd', { id: 'distance' }, here && leg.start
            ? msg('carrier.fromYou', { distance: formatDistance(distanceM(here, leg.start)) })
            : msg('carrier.shareToSee')),
          h('dt', {}, msg('carrier.expected')),
          h('dd', { id: 'eta' }, when(t, leg.start_zone), prev ? band(r.legs[prev.index], leg.start_zone) : null, ' · ', until(t))));
      if (prev && r.current_leg === prev.index && !prev.segment) state.role = { kind: 'receive', relay };
    }
  }
  $('#give').hidden = state.role?.kind !== 'give';
  $('#receive').hidden = state.role?.kind !== 'receive';
  // Only where custody changes: nothing to show for a change of mode, or before the time.
  $('#handoff').hidden = !state.role && $('#handoff-result').hidden;
  renderGuide(mine);
  renderMap(mine, here);
  tick();
}

// ------------------------------------------------------------------ guidance

const silentAfterMs = () => state.m?.event.silent_after_ms ?? 300000;
const ownFixFresh = () => state.fix && now() - state.ownFixAt <= silentAfterMs();

/** Where this phone is: its own fix while fresh, else (holding) the holder's last public one. */
function herePoint(mine) {
  if (ownFixFresh()) return [state.fix.coords.longitude, state.fix.coords.latitude];
  const p = mine?.holding ? mine.r.position : null;
  return p ? [p.lon, p.lat] : null;
}

/** How far along leg `leg` the carrier at `here` is, metres on the page's own route lengths. */
function alongOf(leg, r, here) {
  const total = leg.cum[leg.cum.length - 1] ?? 0;
  if (leg.points.length < 2) return 0;
  // Where the phone is, on the route (a public position is always near it), is fresher than
  // the server's progress, which waits for a plausible pace.
  if (here) return locate(leg.points, leg.cum, here).alongM;
  const length = r.progress?.length_m || leg.lengthM;
  return length > 0 ? ((r.progress?.along_m ?? 0) / length) * total : 0;
}

/**
 * Why the carrier's position is not being shared while they hold the object, or null. The
 * phone shares through this page (its geolocation) or through another app (Traccar Client,
 * OwnTracks), which the server's newest fix of this device shows: newer than the page's own.
 */
function notSharing({ relay, leg }) {
  // A stationary leg (a stage) is at its place: there is no route to follow.
  if (leg.points.length < 2) return null;
  const t = now();
  const silentMs = silentAfterMs();
  const what = relay.object || relay.name;
  const own = Number.isFinite(state.ownFixAt) ? state.ownFixAt : -Infinity;
  const server = Number.isFinite(ms(state.me?.last_fix?.t)) ? ms(state.me.last_fix.t) : -Infinity;
  if (state.watch !== null) {
    const since = Math.max(own, server, state.sharingSince);
    if (t - since <= silentMs) return null;
    return msg('carrier.silentPage', { span: span(t - since) });
  }
  // The server's newest fix of this device is one this page sent, or another app's.
  const sent = Number.isFinite(state.ownSentT) ? state.ownSentT : -Infinity;
  const otherApp = server > sent;
  if (otherApp && t - server <= silentMs) return null;
  const start = msg('carrier.startSharing');
  if (otherApp) return msg('carrier.silentApp', { object: what, span: span(t - server), start });
  return msg('carrier.notSharingHolding', { object: what, start });
}

/** What needs doing now, most urgent first: [{ kind, warn, text }]. */
function guidance(mine) {
  if (!mine?.holding) return [];
  const { relay, leg, r } = mine;
  const out = [];
  const here = herePoint(mine);
  const end = stintEnd(relay, leg.index);
  const at = exchangeName(state.m, relay, end);
  if (r.off_route) {
    // Only this phone's own fix tells how far: an off-route fix is never public.
    const off = ownFixFresh() && leg.points.length > 1 ? locate(leg.points, leg.cum, here).offM : NaN;
    out.push({
      kind: 'off-route', warn: true,
      text: Number.isFinite(off)
        ? msg('carrier.offRouteBy', { distance: formatDistance(off), place: at })
        : msg('carrier.offRoute', { place: at }),
    });
  }
  const quiet = notSharing(mine);
  if (quiet) out.push({ kind: 'not-sharing', warn: true, text: quiet });
  // The rest of this leg and of the stint's later segments, to where custody changes.
  let remainingM = Math.max(0, (leg.cum[leg.cum.length - 1] ?? 0) - alongOf(leg, r, here));
  for (let i = leg.index + 1; i <= end; i++) remainingM += relay.legs[i].lengthM;
  const etaIn = ms(r.legs[end]?.eta_end) - now();
  if (remainingM <= NEAR_M || (etaIn > 0 && etaIn <= NEAR_MS)) {
    const soon = etaIn > 0 ? msg('carrier.inAbout', { span: span(etaIn) }) : '';
    const to = relay.legs[end + 1];
    const distance = formatDistance(remainingM);
    out.push({
      kind: 'near', warn: false,
      text: to
        ? msg('carrier.exchangeNear', { place: at, distance, soon, object: relay.object || relay.name, to: names(to.carriers) })
        : msg('carrier.finishNear', { place: at, distance, soon }),
    });
  }
  return out;
}

/** The guidance at the top of the page, rewritten only when its words change. */
function renderGuide(mine) {
  const items = guidance(mine);
  const text = items.map((g) => `${g.kind}:${g.text}`).join('\n');
  if (text === state.guideText) return;
  state.guideText = text;
  fill($('#guide'), ...items.map((g) => h('p', { class: g.warn ? 'warning' : 'notice', dataset: { warning: g.kind } }, g.text)));
}

/** The carrier, their part of the route and its exchange point on the map. */
function renderMap(mine, here) {
  if (!state.map) return;
  if (!mine) {
    state.map.show({ legs: [], here, key: 'none' });
    return;
  }
  const { relay, leg, r, holding } = mine;
  const end = holding ? stintEnd(relay, leg.index) : leg.index;
  const prev = relay.legs[leg.index - 1];
  const name = exchangeName(state.m, relay, end);
  const to = relay.legs[end + 1];
  const exchange = holding
    ? { at: relay.legs[end].end, label: to ? msg('carrier.mapExchange', { place: name, to: names(to.carriers) }) : msg('map.finishTip', { place: name }) }
    : { at: leg.start, label: prev ? msg('carrier.mapTakeOver', { from: names(prev.carriers) }) : msg('carrier.mapYourStart') };
  state.map.show({
    relay, r, holding, here, exchange,
    legs: relay.legs.slice(leg.index, end + 1),
    alongM: holding ? alongOf(leg, r, here) : 0,
    key: `${relay.id}/${leg.index}/${holding ? 'hold' : 'next'}`,
  });
}

/** This device's newest fix, as the server has it (from whichever app sent it). */
async function refreshMe() {
  if (!state.token || !state.me) return;
  const me = await getJSON('/carrier/me', { token: state.token });
  state.me = me;
  renderGuide(state.live?.snapshot ? myLeg() : null);
}

// ------------------------------------------------------------------ handoff codes

async function getCode() {
  const { relay } = state.role;
  const c = await postJSON(paths.code(state.me.event, relay.id), undefined, { token: state.token });
  state.code = { ...c, relay };
  $('#code-box').hidden = false;
  $('#code').textContent = c.code;
  showCode();
}

/** What the code shown is for, and until when. */
function showCode() {
  if (!state.code) return;
  const { relay, to_leg: toLeg, from_leg: fromLeg, expires_at: expires } = state.code;
  const t = ms(expires);
  fill($('#code-expiry'), msgParts('carrier.codeFor', {
    to: names(relay.legs[toLeg].carriers),
    time: clock(t, relay.legs[fromLeg].end_zone),
    left: h('span', untilData(t, 'time.expired', false)),
  }));
  tick();
}

async function receive(code) {
  const { relay } = state.role;
  const entry = await postJSON(paths.handoffs(state.me.event, relay.id), { code }, { token: state.token });
  $('#receive-code').value = '';
  state.confirmed = { object: relay.object || relay.name, seq: String(entry.seq) };
  showConfirmed();
  await refreshLive();
}

function showConfirmed() {
  if (!state.confirmed) return;
  const el = $('#handoff-result');
  el.hidden = false;
  el.textContent = msg('carrier.confirmed', state.confirmed);
}

// ------------------------------------------------------------------ wiring

async function refreshLive() {
  const snap = await getJSON(paths.live(state.me.event));
  syncClock(snap.now);
  state.live.replace(snap);
  renderLeg();
}

async function act(fn) {
  problem(null);
  try {
    await fn();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) forget(msg('carrier.tokenRefused'));
    else problem(e.message);
  }
}

let meQueued = false;
function meSoon() {
  if (meQueued) return;
  meQueued = true;
  setTimeout(() => {
    meQueued = false;
    refreshMe().catch(() => {});
  }, 1000);
}

function forget(message) {
  localStorage.removeItem(KEY.token);
  state.token = null;
  state.stream?.close();
  state.stream = null;
  stopSharing();
  $('#app').hidden = true;
  $('#setup').hidden = false;
  showWho();
  problem(message ?? null);
}

/** The top bar and the title: who carries, once a token says (none after "Forget"). */
function showWho() {
  const me = state.token ? state.me : null;
  fill($('#who'), me ? msg('carrier.titleCarrier', { carrier: me.carrier }) : msg('carrier.title'));
  document.title = me ? msg('carrier.docTitleCarrier', { carrier: me.carrier }) : msg('carrier.docTitle');
  if (state.m && me) $('#event').textContent = msg('carrier.event', { event: state.m.event.name, device: me.device });
}

function showConn() {
  $('#conn').className = state.conn ? `conn ${state.conn}` : 'conn';
  $('#conn').textContent = state.conn ? msg(state.conn === 'live' ? 'common.live' : 'common.reconnecting') : '';
}

/** After a switch of language: everything the page says, in the new words. */
function relabel() {
  showWho();
  showConn();
  showShare();
  showQueue(state.queueNote);
  showCode();
  showConfirmed();
  if (state.map) localizeMap(state.map.map);
  if (state.live?.snapshot) renderLeg();
}

/** The event's plan and live view (again when a new plan version arrives). */
async function loadEvent() {
  const body = await getJSON(paths.plan(state.me.event));
  state.m = model(body);
  state.live = new LiveModel(state.m);
  showWho();
  await refreshLive();
}

async function start() {
  state.me = await getJSON('/carrier/me', { token: state.token });
  state.ownSentT = Number(localStorage.getItem(ownSentKey()) ?? NaN);
  $('#setup').hidden = true;
  $('#app').hidden = false;
  state.map ??= new CarrierMap($('#map'), { onFollowChange: (on) => { $('#recentre').hidden = on; } });
  state.map.map.invalidateSize();
  showWho();
  await loadEvent();
  state.stream?.close();
  state.stream = follow(paths.stream(state.me.event), {
    onMessage: (kind, data) => {
      if (kind === 'snapshot') {
        syncClock(data.now);
        state.live.replace(data);
      } else if (kind === 'plan') {
        act(data.kind === 'shift' ? refreshLive : loadEvent);
        return;
      } else {
        const changed = state.live.apply(kind, data);
        if (kind === 'handoff') act(refreshLive);
        // A fix of this relay may be this device's: ask when its newest is, once a second at most.
        if (kind === 'position' && changed && myLeg()?.relay.id === changed) meSoon();
      }
      renderLeg();
    },
    onStatus: (s) => {
      state.conn = s;
      showConn();
    },
    resync: () => act(refreshLive),
  });
  if (localStorage.getItem(KEY.sharing) === 'on') startSharing();
  showQueue();
  flush();
}

function main() {
  mountSwitch();
  onLanguageChange(relabel);
  showWho();
  showShare();
  const url = new URL(location.href);
  const given = url.searchParams.get('token');
  if (given) {
    localStorage.setItem(KEY.token, given.trim());
    // Out of the address bar and history: a shared screenshot must not leak it.
    url.searchParams.delete('token');
    history.replaceState(null, '', url);
  }
  state.token = localStorage.getItem(KEY.token);

  $('#setup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('#device-token').value.trim();
    localStorage.setItem(KEY.token, state.token);
    $('#device-token').value = '';
    act(start);
  });
  $('#share').addEventListener('click', () => (state.watch === null ? startSharing() : stopSharing()));
  $('#get-code').addEventListener('click', () => act(getCode));
  $('#receive').addEventListener('submit', (e) => {
    e.preventDefault();
    act(() => receive($('#receive-code').value.trim()));
  });
  $('#forget').addEventListener('click', () => forget());
  $('#recentre').addEventListener('click', () => state.map?.setFollow(true));
  window.addEventListener('online', () => {
    showQueue();
    flush();
  });
  window.addEventListener('offline', () => showQueue());
  document.addEventListener('visibilitychange', keepAwake);
  setInterval(() => {
    tick();
    if (state.live?.snapshot) renderGuide(myLeg());
  }, 1000);
  setInterval(flush, 10000);
  // Quietly: a missed look is taken again at the next (and must not clear a problem shown).
  setInterval(() => refreshMe().catch(() => {}), ME_EVERY_MS);

  if (state.token) act(start);
  else $('#setup').hidden = false;
}

main();
