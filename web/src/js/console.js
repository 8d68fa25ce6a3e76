// The operator console (`/e/{event}/console`): every relay and leg with plan, ETA, delta and
// status; the alerts; recording, voiding and re-timing handoffs; shifting the plan; the list and
// map of every phone; and registering phones (token shown once, as text and QR codes). The admin token is asked for
// once and kept in sessionStorage (this tab only), and sent as a bearer token. Its words are
// in messages.js; a switch of language reloads it (the token survives in sessionStorage).

import { ApiError, deleteJSON, eventFromPath, getJSON, getText, paths, postJSON } from './api.js';
import { $, coalesce, fill, h, names, problem } from './dom.js';
import { mountSwitch, msg, word } from './i18n.js';
import { LiveModel } from './live-model.js';
import { endedBy, model, stintEnd } from './plan.js';
import { PhonesMap } from './phones-map.js';
import { follow } from './stream.js';
import { clock, delta, ms, now, syncClock, tick } from './time.js';

const TOKEN_KEY = 'handoff.admin';
const eventId = eventFromPath();
const state = { token: sessionStorage.getItem(TOKEN_KEY), m: null, live: null, custody: new Map(), blocks: new Map(), stream: null };

const auth = () => ({ token: state.token });

/** Says what an action did (with, say, a button to undo it); null clears it. */
function say(message, ...more) {
  const el = $('#result');
  el.hidden = !message;
  fill(el, message ?? '', ...more);
}

/** Shows an action's error in `where` (an error line next to its control). */
function showError(where, message) {
  where.hidden = false;
  where.textContent = message;
}

/**
 * Runs an action, showing its error next to the control that caused it (`where`, an error
 * line; the page's alert area without one), and asking to sign in again on a 401. What an
 * earlier action said is cleared first: a failure never sits under a stale success.
 */
async function act(fn, where) {
  problem(null);
  say(null);
  for (const el of document.querySelectorAll('.error')) el.hidden = true;
  try {
    await fn();
  } catch (e) {
    report(e, where);
  }
}

/**
 * Shows a failure: a refused token asks to sign in again; any other error goes next to its
 * control (`where`), or in the page's alert area without one. Returns whether it went to the
 * alert area.
 */
function report(e, where) {
  if (e instanceof ApiError && e.status === 401) signOut(msg('console.tokenRefused'));
  else if (where) showError(where, e.message);
  else {
    problem(e.message);
    return true;
  }
  return false;
}

/** Whether the alert area shows an error of a refresh the page made by itself. */
let quietProblem = false;

/**
 * Runs what the page does by itself (a refresh after a stream message): its error shows in the
 * alert area, and what the operator's last action said stays (a void's Undo must not vanish
 * because the log was read again).
 */
async function quietly(fn) {
  try {
    await fn();
    // A refresh that failed before and works now takes its own error away, nothing else.
    if (quietProblem) problem(null);
    quietProblem = false;
  } catch (e) {
    quietProblem = report(e);
  }
}

// ------------------------------------------------------------------ sign in

/** Whether `token` is the admin token (asked before any action, so a typo shows at once). */
async function checkToken(token) {
  return (await getJSON('/console/session', { token })).admin === true;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.stream?.close();
  $('#app').hidden = true;
  $('#login').hidden = false;
  problem(message ?? null);
  $('#token').focus();
}

// ------------------------------------------------------------------ custody

/** Recorded handoffs per leg, from the custody log (corrections applied): leg → {seq, at}. */
function recorded(entries) {
  const ends = new Map();
  const legOf = new Map();
  for (const e of entries) {
    if (e.kind === 'handoff' && e.from) {
      ends.set(e.from.leg, { seq: e.seq, at: e.at, method: e.evidence?.method });
      legOf.set(e.seq, e.from.leg);
    } else if (e.kind === 'correction' && legOf.has(e.corrects)) {
      const leg = legOf.get(e.corrects);
      if (e.void) ends.delete(leg);
      else if (ends.has(leg)) ends.get(leg).at = e.at;
    }
  }
  return ends;
}

// Reads can overlap (a refresh after an action, another after its stream message): only the
// newest read of each thing is kept, so a slow older answer never overwrites a newer one.
const reads = new Map();
async function newest(key, load) {
  const n = (reads.get(key) ?? 0) + 1;
  reads.set(key, n);
  const value = await load();
  return reads.get(key) === n ? value : undefined;
}

async function loadCustody(relayId) {
  const text = await newest(`custody:${relayId}`, () => getText(paths.custody(eventId, relayId), auth()));
  if (text === undefined) return;
  const entries = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  state.custody.set(relayId, recorded(entries));
}

// ------------------------------------------------------------------ relays

/** A datetime-local value (viewer's zone) as RFC 3339, or undefined when empty. */
function instant(input) {
  if (!input.value) return undefined;
  const t = new Date(input.value);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

function buildBlock(relay) {
  const id = `r-${relay.id}`;
  const b = {};
  const errorLine = () => h('p', { class: 'error', role: 'alert', hidden: true });
  b.el = h('details', { class: 'card relay-block', 'data-relay': relay.id, open: state.m.relays.length <= 10 },
    h('summary', {}, h('strong', {}, relay.name), ' ', b.summary = h('span', { class: 'relay-status' })),
    h('div', { class: 'actions' },
      b.record = h('button', { type: 'button', class: 'record', onclick: () => act(() => record(relay, b), b.recordError) }, msg('console.recordHandoff')),
      h('div', { class: 'field' },
        h('label', { for: `${id}-at` }, msg('console.when')),
        b.at = h('input', { id: `${id}-at`, type: 'datetime-local', step: 1 }))),
    b.recordError = errorLine(),
    h('div', { class: 'actions' },
      // Voiding asks first: one click only opens the confirmation below.
      b.void = h('button', { type: 'button', class: 'danger void', 'aria-expanded': 'false', onclick: () => confirmVoid(b, true) }, msg('console.voidLast')),
      h('div', { class: 'field' },
        h('label', { for: `${id}-fix` }, msg('console.correctTo')),
        b.fixAt = h('input', { id: `${id}-fix`, type: 'datetime-local', step: 1 })),
      b.retime = h('button', { type: 'button', class: 'secondary retime', onclick: () => act(() => correct(relay, b, false), b.fixError) }, msg('console.changeTime')),
      h('div', { class: 'field' },
        h('label', { for: `${id}-note` }, msg('console.note')),
        b.note = h('input', { id: `${id}-note`, maxlength: 1000, placeholder: msg('console.voidPlaceholder') }))),
    b.confirm = h('div', { class: 'confirm', role: 'group', 'aria-label': msg('console.confirmVoid'), hidden: true },
      b.confirmText = h('p', {}),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger confirm-void', onclick: () => act(() => correct(relay, b, true), b.fixError) }, msg('console.yesVoid')),
        h('button', { type: 'button', class: 'secondary', onclick: () => confirmVoid(b, false) }, msg('console.keep')))),
    b.fixError = errorLine(),
    h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': msg('console.legsOf', { relay: relay.name }) },
      h('table', { class: 'legs' },
        h('thead', {}, h('tr', {}, [msg('console.thLeg'), msg('console.thCarriers'), msg('console.thMode'), msg('console.thPlannedStart'),
          msg('console.thPlannedEnd'), msg('console.thEnd'), 'Δ', msg('console.thStatus'), msg('console.thHandoff')]
          .map((c) => h('th', { scope: 'col' }, c)))),
        b.tbody = h('tbody'))));
  return b;
}

function updateBlock(relay, b, r) {
  const ends = state.custody.get(relay.id) ?? new Map();
  const cur = r.current_leg;
  const n = relay.legs.length;
  const flags = [r.off_route && msg('console.flagOffRoute'), r.overdue && msg('console.flagOverdue'), r.silent && msg('console.flagSilent'),
    r.custody_unverified && msg('console.flagUnverified')].filter(Boolean);
  fill(b.summary, r.status === 'running'
    ? `· ${msg('console.legShort', { n: cur + 1, total: n })}, ${names(r.holders)}${flags.length ? ` · ${flags.join(', ')}` : ''}`
    : `· ${word('status', r.status)}`);

  // The next handoff per the custody log: the end of the stint after the last recorded one
  // (a change of mode by the same carriers is no handoff: nothing to record there).
  const lastLeg = ends.size ? Math.max(...ends.keys()) : -1;
  const from = stintEnd(relay, lastLeg + 1);
  if (from < n) {
    const to = relay.legs[from + 1];
    b.record.textContent = to
      ? msg('console.recordStep', { from: names(relay.legs[from].carriers), to: names(to.carriers), a: from + 1, b: from + 2 })
      : msg('console.recordArrival', { who: names(relay.legs[from].carriers), n: from + 1 });
    b.record.disabled = false;
  } else {
    b.record.textContent = msg('console.allRecorded');
    b.record.disabled = true;
  }
  const last = ends.get(lastLeg);
  b.void.disabled = !last;
  b.retime.disabled = !last;
  b.void.textContent = last ? msg('console.voidAfter', { n: lastLeg + 1, seq: String(last.seq) }) : msg('console.voidLast');

  fill(b.tbody, r.legs.map((l, i) => {
    const leg = relay.legs[i];
    const end = ms(l.actual_end ?? l.eta_end);
    const rec = ends.get(i);
    let status = word('legStatus', l.status);
    if (l.status === 'current' && i === cur) status = `${word('legStatus', 'current')}${flags.length ? ` (${flags.join(', ')})` : ''}`;
    return h('tr', { class: l.status },
      h('td', {}, String(i + 1)),
      h('td', {}, names(leg.carriers)),
      h('td', {}, word('mode', leg.mode)),
      h('td', {}, clock(ms(l.planned_start), leg.start_zone)),
      h('td', {}, clock(ms(l.planned_end), leg.end_zone)),
      h('td', {}, `${l.status === 'done' ? '' : '≈ '}${clock(end, leg.end_zone)}`),
      h('td', {}, delta(l.delta_s)),
      h('td', {}, status),
      h('td', { class: 'how-known' }, handoffCell(leg, l, rec)));
  }));
}

/** What the legs table says of a leg's end: a segment change, or how its handoff is known. */
function handoffCell(leg, l, rec) {
  if (leg.segment) return msg('console.segmentChange');
  if (rec) {
    const how = endedBy(rec.method ?? 'operator');
    return h('span', { class: 'how verified' }, `${how.icon} ${how.text} ${msg('console.entry', { seq: String(rec.seq) })}`);
  }
  if (l.status !== 'done') return '';
  const how = endedBy(l.ended_by);
  if (!how) return '';
  // Proximity the server found is verified, and its entry is on its way.
  return h('span', { class: `how ${how.verified ? 'verified' : 'assumed'}` }, `${how.icon} ${how.text}`);
}

async function record(relay, b) {
  const at = instant(b.at);
  // The step this button shows (the end of the stint after the last recorded handoff): a
  // second click, or another operator's click at the same moment, gets a clear conflict
  // instead of recording the next.
  const ends = state.custody.get(relay.id) ?? new Map();
  const fromLeg = stintEnd(relay, ends.size ? Math.max(...ends.keys()) + 1 : 0);
  const body = at ? { from_leg: fromLeg, at } : { from_leg: fromLeg };
  const entry = await postJSON(paths.handoffs(eventId, relay.id), body, auth());
  b.at.value = '';
  say(entry.to
    ? msg('console.recorded', {
      from: names(entry.from.carriers), to: names(entry.to.carriers), time: clock(ms(entry.at), relay.legs[entry.from.leg].end_zone), seq: String(entry.seq),
    })
    : msg('console.recordedArrival', { who: names(entry.from.carriers), seq: String(entry.seq) }));
  await refresh(relay.id);
}

/** Opens (or closes) the confirmation of a void, saying what it will do. */
function confirmVoid(b, open) {
  b.confirm.hidden = !open;
  b.void.setAttribute('aria-expanded', String(open));
  if (open) {
    fill(b.confirmText, msg('console.voidQuestion', { action: b.void.textContent }));
    b.confirm.querySelector('.confirm-void').focus();
  }
}

async function correct(relay, b, voidIt) {
  const ends = state.custody.get(relay.id) ?? new Map();
  if (!ends.size) return;
  const leg = Math.max(...ends.keys());
  const { seq, at: was } = ends.get(leg);
  const note = b.note.value.trim() || undefined;
  let body;
  if (voidIt) body = { kind: 'correction', corrects: seq, void: true, note };
  else {
    const at = instant(b.fixAt);
    if (!at) {
      b.fixAt.focus();
      throw new Error(msg('console.enterTime'));
    }
    body = { kind: 'correction', corrects: seq, at, note };
  }
  const entry = await postJSON(paths.handoffs(eventId, relay.id), body, auth());
  b.fixAt.value = '';
  b.note.value = '';
  confirmVoid(b, false);
  if (voidIt) {
    // Undo: the same handoff recorded again at the time it had (an appended entry too).
    const undo = h('button', {
      type: 'button',
      class: 'secondary undo',
      onclick: () => act(async () => {
        const again = await postJSON(paths.handoffs(eventId, relay.id),
          { from_leg: leg, at: was, note: `recorded again: undoes the void (entry ${entry.seq}) of entry ${seq}` }, auth());
        say(msg('console.undone', { n: leg + 1, time: clock(ms(again.at), relay.legs[leg].end_zone), seq: String(again.seq) }));
        await refresh(relay.id);
      }, b.fixError),
    }, msg('console.undo'));
    say(msg('console.voided', { n: leg + 1, seq: String(entry.seq) }), undo);
  } else {
    say(msg('console.corrected', { n: leg + 1, time: clock(ms(entry.at), relay.legs[leg].end_zone), seq: String(entry.seq) }));
  }
  await refresh(relay.id);
}

// ------------------------------------------------------------------ alerts

function alertsNow() {
  const items = [];
  for (const relay of state.m.relays) {
    const r = state.live.relay(relay.id);
    if (!r) continue;
    const who = msg('console.alertWho', { relay: relay.name, n: (r.current_leg ?? 0) + 1, holders: names(r.holders) });
    if (r.overdue) items.push(h('li', { class: 'alert overdue' }, h('strong', {}, msg('console.alertOverdue')), msg('console.overdueText', { who })));
    if (r.off_route) items.push(h('li', { class: 'alert off_route' }, h('strong', {}, msg('console.alertOffRoute')), msg('console.offRouteText', { who })));
    if (r.silent) items.push(h('li', { class: 'alert silent' }, h('strong', {}, msg('console.alertSilent')), msg('console.silentText', { who })));
  }
  fill($('#alert-now'), items.length ? items : h('li', { class: 'none' }, msg('console.noAlerts')));
}

const KIND = { overdue: msg('console.kindOverdue'), off_route: msg('console.kindOffRoute'), silent: msg('console.kindSilent') };

function logAlert(a) {
  const relay = state.m.relays.find((x) => x.id === a.relay);
  const zone = relay?.legs[a.leg ?? 0]?.start_zone ?? 'UTC';
  $('#alert-log').prepend(h('li', { class: `alert ${a.kind}` },
    h('strong', {}, `${KIND[a.kind] ?? a.kind}: `),
    msg('console.alertLogged', { relay: relay?.name ?? a.relay, n: (a.leg ?? 0) + 1, holders: names(a.holders), time: clock(ms(a.at), zone) })));
  while ($('#alert-log').children.length > 100) $('#alert-log').lastChild.remove();
}

// ------------------------------------------------------------------ shift, devices

async function shift() {
  const minutes = Number($('#shift-minutes').value);
  const relay = $('#shift-relay').value || undefined;
  const note = $('#shift-note').value.trim() || undefined;
  await postJSON(paths.shift(eventId), { minutes, relay, note }, auth());
  $('#shift-note').value = '';
  say(msg('console.shifted', { relay: relay ? state.m.relays.find((x) => x.id === relay)?.name : msg('console.everyRelay'), minutes }));
  await refresh();
}

async function qr(text) {
  const svg = await postJSON('/console/qr', { text }, auth());
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}

async function register() {
  const device = $('#device-id').value.trim();
  const carrier = $('#device-carrier').value;
  // An earlier token off the screen first: a refused registration must not look like a success.
  $('#device-result').hidden = true;
  fill($('#device-result'));
  const { token } = await postJSON(paths.devices(eventId), { device, carrier }, auth());
  $('#device-id').value = '';
  await showToken(device, carrier, token);
}

/**
 * Shows a device's token (new or re-issued) once, as text and as QR codes of the two ways to
 * use it, under the registration form, and focuses it.
 */
async function showToken(device, carrier, token, reissued = false) {
  const osmand = `${location.origin}/osmand?id=${encodeURIComponent(token)}`;
  const page = `${location.origin}/carrier?token=${encodeURIComponent(token)}`;
  const [osmandQr, pageQr] = await Promise.all([qr(osmand), qr(page)]);
  const out = $('#device-result');
  out.hidden = false;
  fill(out, h('div', { class: 'card', id: 'device-token' },
    h('h3', {}, msg(reissued ? 'console.newTokenFor' : 'console.tokenFor', { device, carrier })),
    h('p', {}, h('strong', {}, msg('console.shownOnce')), msg('console.giveNow'),
      reissued ? msg('console.oldTokenGone') : ''),
    h('p', { class: 'token', id: 'new-token' }, token),
    h('div', { class: 'qr-pair' },
      h('figure', {},
        h('img', { src: osmandQr, alt: msg('console.qrOsmand'), class: 'qr-osmand' }),
        h('figcaption', {}, msg('console.captionOsmand'), h('span', { class: 'token' }, osmand))),
      h('figure', {},
        h('img', { src: pageQr, alt: msg('console.qrCarrier'), class: 'qr-carrier' }),
        h('figcaption', {}, msg('console.captionCarrier'), h('span', { class: 'token' }, page))))));
  out.querySelector('h3').setAttribute('tabindex', '-1');
  out.querySelector('h3').focus();
  await loadPhones();
}

/** How long ago `t` (ms) was, in words with its unit: "12 s ago", "4 min ago", "2 h ago". */
function ago(t) {
  const s = Math.max(0, Math.round((now() - t) / 1000));
  if (s < 90) return msg('time.ago', { span: msg('time.s', { n: s }) });
  if (s < 90 * 60) return msg('time.ago', { span: msg('time.min', { n: Math.round(s / 60) }) });
  return msg('time.ago', { span: msg('time.h', { n: Math.round(s / 3600) }) });
}

/** The registered phones: reporting or not, their last fix and battery, and the reports each
 * sent that could not be stored. */
async function loadPhones() {
  const body = await getJSON(paths.devices(eventId), auth());
  // Leaflet is a deferred classic script: there by the time a signed-in console asks.
  state.phonesMap ??= new PhonesMap($('#phones-map'));
  state.phonesMap.update(body.devices, ago);
  fill($('#phones tbody'), body.devices.map((d) => {
    const n = d.dropped?.total ?? 0;
    const last = d.dropped?.last;
    const fix = d.last_fix;
    const batt = fix?.batt_pct;
    return h('tr', { 'data-device': d.device },
      h('td', {}, d.device),
      tokenCell(d),
      h('td', {}, d.carrier),
      h('td', {}, d.relay ?? '—'),
      h('td', { class: d.online ? 'online' : 'offline' }, d.online ? msg('console.online') : (fix ? msg('console.offline') : msg('console.noFixYet'))),
      h('td', { class: 'last-fix' }, fix ? ago(ms(fix.received_at)) : '—'),
      h('td', { class: batt !== undefined && batt < 20 ? 'battery warn' : 'battery' }, batt !== undefined ? msg('console.battery', { pct: Math.round(batt) }) : '—'),
      h('td', {}, d.speed_unit?.used ?? '—'),
      h('td', { class: n ? 'dropped warn' : 'dropped' },
        n ? msg('console.dropped', { count: n, reason: last?.reason ?? '?', format: last?.format ?? '?', message: last?.message ?? '' }) : msg('console.droppedNone')));
  }));
}

/**
 * A phone's token: whether it works, and buttons to re-issue it (a lost phone, a leaked
 * token) or revoke it. Revoking asks first; an error shows in the cell.
 */
function tokenCell(d) {
  const revoked = d.token === 'revoked';
  const status = h('span', { class: revoked ? 'token-state revoked' : 'token-state' },
    msg(revoked ? 'console.tokenRevokedSince' : 'console.tokenActiveSince', { ago: ago(ms(d.token_at)) }));
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const reissue = h('button', { type: 'button', class: 'secondary reissue' }, msg(revoked ? 'console.issueToken' : 'console.newToken'));
  const revoke = h('button', { type: 'button', class: 'danger revoke', 'aria-expanded': 'false', hidden: revoked }, msg('console.revoke'));
  const confirm = h('div', { class: 'confirm', role: 'group', 'aria-label': msg('console.confirmRevokeLabel', { device: d.device }), hidden: true },
    h('p', {}, msg('console.confirmRevoke', { device: d.device })),
    h('button', { type: 'button', class: 'danger confirm-revoke', onclick: () => act(async () => {
      await deleteJSON(paths.token(eventId, d.device), auth());
      say(msg('console.revoked', { device: d.device, carrier: d.carrier }));
      await loadPhones();
    }, error) }, msg('console.yesRevoke')),
    h('button', { type: 'button', class: 'secondary', onclick: () => open(false) }, msg('console.keep')));
  const open = (yes) => {
    confirm.hidden = !yes;
    revoke.setAttribute('aria-expanded', String(yes));
    if (yes) confirm.querySelector('.confirm-revoke').focus();
  };
  revoke.addEventListener('click', () => open(true));
  reissue.addEventListener('click', () => act(async () => {
    const { token } = await postJSON(paths.token(eventId, d.device), undefined, auth());
    await showToken(d.device, d.carrier, token, true);
  }, error));
  return h('td', { class: 'token-cell' }, status, h('div', { class: 'row' }, reissue, revoke), confirm, error);
}

// ------------------------------------------------------------------ wiring

const render = coalesce(() => {
  if (!state.live?.snapshot) return;
  for (const relay of state.m.relays) {
    const b = state.blocks.get(relay.id);
    const r = state.live.relay(relay.id);
    if (b && r) updateBlock(relay, b, r);
  }
  alertsNow();
  tick();
});

async function refresh(relayId) {
  const relays = relayId ? [relayId] : state.m.relays.map((r) => r.id);
  const [snap] = await Promise.all([newest('live', () => getJSON(paths.live(eventId), auth())), ...relays.map(loadCustody)]);
  if (snap) {
    syncClock(snap.now);
    state.live.replace(snap);
  }
  render();
}

let refreshTimer = null;
const refreshSoon = (relayId) => {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => quietly(() => refresh(relayId)), 300);
};

async function loadPlan() {
  const body = await getJSON(paths.plan(eventId), auth());
  state.m = model(body);
  state.live = new LiveModel(state.m);
  document.title = msg('console.docTitleEvent', { event: state.m.event.name });
  fill($('#event-name'), msg('console.titleEvent', { event: state.m.event.name }));
  state.blocks.clear();
  fill($('#relay-list'), state.m.relays.map((relay) => {
    const b = buildBlock(relay);
    state.blocks.set(relay.id, b);
    return b.el;
  }));
  fill($('#shift-relay'), h('option', { value: '' }, msg('console.allRelays')),
    state.m.relays.map((r) => h('option', { value: r.id }, r.name)));
  const carriers = [...new Set(state.m.relays.flatMap((r) => r.legs.flatMap((l) => l.carriers)))].sort();
  fill($('#device-carrier'), carriers.map((c) => h('option', { value: c }, c)));
  await refresh();
}

async function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  await loadPlan();
  await loadPhones();
  state.stream = follow(paths.stream(eventId), {
    // The operators' stream: undelayed, when the event has a public delay.
    token: state.token,
    onMessage: (kind, data) => {
      if (kind === 'alert') {
        logAlert(data);
        refreshSoon();
      } else if (kind === 'plan') {
        // A shift is in `/live`; a new plan version rebuilds the console.
        if (data.kind === 'shift') refreshSoon();
        else act(loadPlan);
      } else if (kind === 'position' || kind === 'eta') {
        state.live.apply(kind, data);
        render();
      } else if (kind !== 'snapshot') {
        // Handoffs and custody entries: re-read the log and the operator's (undelayed) view.
        state.live.apply(kind, data);
        render();
        refreshSoon(data.relay);
      }
    },
    onStatus: (s) => {
      $('#conn').className = `conn ${s}`;
      $('#conn').textContent = s === 'live' ? msg('common.live') : msg('common.reconnecting');
    },
    resync: () => quietly(() => refresh()),
  });
}

async function main() {
  mountSwitch();
  if (!eventId) return;
  $('#live-link').href = `/e/${encodeURIComponent(eventId)}`;
  $('#login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    act(async () => {
      const token = $('#token').value.trim();
      if (!(await checkToken(token))) {
        problem(msg('console.notAdmin'));
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      state.token = token;
      $('#token').value = '';
      await start();
    });
  });
  $('#sign-out').addEventListener('click', () => signOut());
  $('#phones-refresh').addEventListener('click', () => act(loadPhones));
  for (const [form, fn, where] of [['#shift-form', shift, '#shift-error'], ['#device-form', register, '#device-error']]) {
    $(form).addEventListener('submit', (e) => {
      e.preventDefault();
      act(fn, $(where));
    });
  }
  setInterval(tick, 1000);
  if (state.token) {
    await act(async () => {
      if (await checkToken(state.token)) await start();
      else signOut(msg('console.savedTokenRefused'));
    });
  } else {
    $('#login').hidden = false;
  }
}

main();
