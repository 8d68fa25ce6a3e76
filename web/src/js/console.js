// The operator console (`/e/{event}/console`): every relay and leg with plan, ETA, delta and
// status; the alerts; recording, voiding and re-timing handoffs; shifting the plan; the list and
// map of every phone; and registering phones (token shown once, as text and QR codes). The admin token is asked for
// once and kept in sessionStorage (this tab only), and sent as a bearer token.

import { ApiError, deleteJSON, eventFromPath, getJSON, getText, paths, postJSON } from './api.js';
import { $, coalesce, fill, h, names, problem } from './dom.js';
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
    if (e instanceof ApiError && e.status === 401) signOut('The admin token was refused; sign in again.');
    else if (where) showError(where, e.message);
    else problem(e.message);
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
      b.record = h('button', { type: 'button', class: 'record', onclick: () => act(() => record(relay, b), b.recordError) }, 'Record handoff'),
      h('div', { class: 'field' },
        h('label', { for: `${id}-at` }, 'When (your time; empty = now)'),
        b.at = h('input', { id: `${id}-at`, type: 'datetime-local', step: 1 }))),
    b.recordError = errorLine(),
    h('div', { class: 'actions' },
      // Voiding asks first: one click only opens the confirmation below.
      b.void = h('button', { type: 'button', class: 'danger void', 'aria-expanded': 'false', onclick: () => confirmVoid(b, true) }, 'Void last recorded handoff'),
      h('div', { class: 'field' },
        h('label', { for: `${id}-fix` }, 'Correct its time to (your time)'),
        b.fixAt = h('input', { id: `${id}-fix`, type: 'datetime-local', step: 1 })),
      b.retime = h('button', { type: 'button', class: 'secondary retime', onclick: () => act(() => correct(relay, b, false), b.fixError) }, 'Change time'),
      h('div', { class: 'field' },
        h('label', { for: `${id}-note` }, 'Note for the log (optional)'),
        b.note = h('input', { id: `${id}-note`, maxlength: 1000, placeholder: 'e.g. the receiver dropped the flag' }))),
    b.confirm = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm the void', hidden: true },
      b.confirmText = h('p', {}),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger confirm-void', onclick: () => act(() => correct(relay, b, true), b.fixError) }, 'Yes, void it'),
        h('button', { type: 'button', class: 'secondary', onclick: () => confirmVoid(b, false) }, 'Keep it'))),
    b.fixError = errorLine(),
    h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': `Legs of ${relay.name}` },
      h('table', { class: 'legs' },
        h('thead', {}, h('tr', {}, ['Leg', 'Carriers', 'Mode', 'Planned start', 'Planned end', 'ETA / actual end', 'Δ', 'Status', 'Handoff']
          .map((c) => h('th', { scope: 'col' }, c)))),
        b.tbody = h('tbody'))));
  return b;
}

function updateBlock(relay, b, r) {
  const ends = state.custody.get(relay.id) ?? new Map();
  const cur = r.current_leg;
  const n = relay.legs.length;
  const flags = [r.off_route && 'off route', r.overdue && 'overdue', r.silent && 'silent',
    r.custody_unverified && 'custody log failed verification: no new entry until the store is restored'].filter(Boolean);
  fill(b.summary, r.status === 'running'
    ? `· leg ${cur + 1}/${n}, ${names(r.holders)}${flags.length ? ` · ${flags.join(', ')}` : ''}`
    : `· ${r.status}`);

  // The next handoff per the custody log: the end of the stint after the last recorded one
  // (a change of mode by the same carriers is no handoff: nothing to record there).
  const lastLeg = ends.size ? Math.max(...ends.keys()) : -1;
  const from = stintEnd(relay, lastLeg + 1);
  if (from < n) {
    const to = relay.legs[from + 1];
    b.record.textContent = to
      ? `Record handoff: ${names(relay.legs[from].carriers)} → ${names(to.carriers)} (leg ${from + 1} → ${from + 2})`
      : `Record arrival: ${names(relay.legs[from].carriers)} finished leg ${from + 1}`;
    b.record.disabled = false;
  } else {
    b.record.textContent = 'All handoffs recorded';
    b.record.disabled = true;
  }
  const last = ends.get(lastLeg);
  b.void.disabled = !last;
  b.retime.disabled = !last;
  b.void.textContent = last ? `Void handoff after leg ${lastLeg + 1} (entry ${last.seq})` : 'Void last recorded handoff';

  fill(b.tbody, r.legs.map((l, i) => {
    const leg = relay.legs[i];
    const end = ms(l.actual_end ?? l.eta_end);
    const rec = ends.get(i);
    let status = l.status;
    if (l.status === 'current' && i === cur) status = `current${flags.length ? ` (${flags.join(', ')})` : ''}`;
    return h('tr', { class: l.status },
      h('td', {}, String(i + 1)),
      h('td', {}, names(leg.carriers)),
      h('td', {}, leg.mode),
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
  if (leg.segment) return 'segment change (same carriers: nothing to record)';
  if (rec) {
    const how = endedBy(rec.method ?? 'operator');
    return h('span', { class: 'how verified' }, `${how.icon} ${how.text} (entry ${rec.seq})`);
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
    ? `Recorded: ${names(entry.from.carriers)} → ${names(entry.to.carriers)} at ${clock(ms(entry.at), relay.legs[entry.from.leg].end_zone)} (custody entry ${entry.seq}).`
    : `Recorded the arrival of ${names(entry.from.carriers)} (custody entry ${entry.seq}).`);
  await refresh(relay.id);
}

/** Opens (or closes) the confirmation of a void, saying what it will do. */
function confirmVoid(b, open) {
  b.confirm.hidden = !open;
  b.void.setAttribute('aria-expanded', String(open));
  if (open) {
    fill(b.confirmText, `${b.void.textContent}? This appends a correction to the custody log; the relay goes back to the leg before, and you can undo it by recording the handoff again.`);
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
      throw new Error('Enter the corrected time first.');
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
        say(`Undone: the handoff after leg ${leg + 1} is recorded again at ${clock(ms(again.at), relay.legs[leg].end_zone)} (custody entry ${again.seq}).`);
        await refresh(relay.id);
      }, b.fixError),
    }, 'Undo');
    say(`Voided the handoff after leg ${leg + 1} (correction entry ${entry.seq}). `, undo);
  } else {
    say(`Corrected the handoff after leg ${leg + 1} to ${clock(ms(entry.at), relay.legs[leg].end_zone)} (correction entry ${entry.seq}).`);
  }
  await refresh(relay.id);
}

// ------------------------------------------------------------------ alerts

function alertsNow() {
  const items = [];
  for (const relay of state.m.relays) {
    const r = state.live.relay(relay.id);
    if (!r) continue;
    const who = `${relay.name}, leg ${(r.current_leg ?? 0) + 1} (${names(r.holders)})`;
    if (r.overdue) items.push(h('li', { class: 'alert overdue' }, h('strong', {}, 'Overdue: '), `${who} is running past its planned window.`));
    if (r.off_route) items.push(h('li', { class: 'alert off_route' }, h('strong', {}, 'Off route: '), `${who} is away from the route.`));
    if (r.silent) items.push(h('li', { class: 'alert silent' }, h('strong', {}, 'Silent: '), `${who} has not reported a position lately.`));
  }
  fill($('#alert-now'), items.length ? items : h('li', { class: 'none' }, 'No alerts.'));
}

const KIND = { overdue: 'Overdue', off_route: 'Off route', silent: 'Silent' };

function logAlert(a) {
  const relay = state.m.relays.find((x) => x.id === a.relay);
  const zone = relay?.legs[a.leg ?? 0]?.start_zone ?? 'UTC';
  $('#alert-log').prepend(h('li', { class: `alert ${a.kind}` },
    h('strong', {}, `${KIND[a.kind] ?? a.kind}: `),
    `${relay?.name ?? a.relay}, leg ${(a.leg ?? 0) + 1} (${names(a.holders)}) at ${clock(ms(a.at), zone)}`));
  while ($('#alert-log').children.length > 100) $('#alert-log').lastChild.remove();
}

// ------------------------------------------------------------------ shift, devices

async function shift() {
  const minutes = Number($('#shift-minutes').value);
  const relay = $('#shift-relay').value || undefined;
  const note = $('#shift-note').value.trim() || undefined;
  await postJSON(paths.shift(eventId), { minutes, relay, note }, auth());
  $('#shift-note').value = '';
  say(`Shifted the remaining plan of ${relay ? state.m.relays.find((x) => x.id === relay)?.name : 'every relay'} by ${minutes} min.`);
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
    h('h3', {}, `${reissued ? 'New token' : 'Token'} for ${device} (${carrier})`),
    h('p', {}, h('strong', {}, 'Shown only now: '), 'give it to the carrier before leaving this page.',
      reissued ? ' The old token no longer works: the phone must be set up again with this one.' : ''),
    h('p', { class: 'token', id: 'new-token' }, token),
    h('div', { class: 'qr-pair' },
      h('figure', {},
        h('img', { src: osmandQr, alt: 'QR code of the OsmAnd address with this token, for Traccar Client', class: 'qr-osmand' }),
        h('figcaption', {}, 'Traccar Client / OsmAnd: ', h('span', { class: 'token' }, osmand))),
      h('figure', {},
        h('img', { src: pageQr, alt: 'QR code of the carrier page with this token', class: 'qr-carrier' }),
        h('figcaption', {}, 'Carrier page in the phone\'s browser: ', h('span', { class: 'token' }, page))))));
  out.querySelector('h3').setAttribute('tabindex', '-1');
  out.querySelector('h3').focus();
  await loadPhones();
}

/** How long ago `t` (ms) was, in words with its unit: "12 s ago", "4 min ago", "2 h ago". */
function ago(t) {
  const s = Math.max(0, Math.round((now() - t) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
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
      h('td', { class: d.online ? 'online' : 'offline' }, d.online ? '● online' : (fix ? '○ offline' : '○ no fix yet')),
      h('td', { class: 'last-fix' }, fix ? ago(ms(fix.received_at)) : '—'),
      h('td', { class: batt !== undefined && batt < 20 ? 'battery warn' : 'battery' }, batt !== undefined ? `${Math.round(batt)} %` : '—'),
      h('td', {}, d.speed_unit?.used ?? '—'),
      h('td', { class: n ? 'dropped warn' : 'dropped' },
        n ? `${n} · last: ${last?.reason ?? '?'} (${last?.format ?? '?'}): ${last?.message ?? ''}` : 'none'));
  }));
}

/**
 * A phone's token: whether it works, and buttons to re-issue it (a lost phone, a leaked
 * token) or revoke it. Revoking asks first; an error shows in the cell.
 */
function tokenCell(d) {
  const revoked = d.token === 'revoked';
  const status = h('span', { class: revoked ? 'token-state revoked' : 'token-state' },
    `${revoked ? 'revoked' : 'active'} since ${ago(ms(d.token_at))}`);
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const reissue = h('button', { type: 'button', class: 'secondary reissue' }, revoked ? 'Issue a token' : 'New token');
  const revoke = h('button', { type: 'button', class: 'danger revoke', 'aria-expanded': 'false', hidden: revoked }, 'Revoke');
  const confirm = h('div', { class: 'confirm', role: 'group', 'aria-label': `Confirm revoking ${d.device}'s token`, hidden: true },
    h('p', {}, `Revoke ${d.device}'s token? Its reports are refused from now on, until you issue a new one.`),
    h('button', { type: 'button', class: 'danger confirm-revoke', onclick: () => act(async () => {
      await deleteJSON(paths.token(eventId, d.device), auth());
      say(`Revoked the token of ${d.device} (${d.carrier}).`);
      await loadPhones();
    }, error) }, 'Yes, revoke it'),
    h('button', { type: 'button', class: 'secondary', onclick: () => open(false) }, 'Keep it'));
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
  refreshTimer = setTimeout(() => act(() => refresh(relayId)), 300);
};

async function loadPlan() {
  const body = await getJSON(paths.plan(eventId), auth());
  state.m = model(body);
  state.live = new LiveModel(state.m);
  document.title = `${state.m.event.name} · console · handoff`;
  fill($('#event-name'), `Console: ${state.m.event.name}`);
  state.blocks.clear();
  fill($('#relay-list'), state.m.relays.map((relay) => {
    const b = buildBlock(relay);
    state.blocks.set(relay.id, b);
    return b.el;
  }));
  fill($('#shift-relay'), h('option', { value: '' }, 'All relays'),
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
      $('#conn').textContent = s === 'live' ? 'Live' : 'Reconnecting…';
    },
    resync: () => act(() => refresh()),
  });
}

async function main() {
  if (!eventId) return;
  $('#live-link').href = `/e/${encodeURIComponent(eventId)}`;
  $('#login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    act(async () => {
      const token = $('#token').value.trim();
      if (!(await checkToken(token))) {
        problem('That is not the admin token of this server.');
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
      else signOut('The saved admin token was refused; sign in again.');
    });
  } else {
    $('#login').hidden = false;
  }
}

main();
