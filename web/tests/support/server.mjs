// A real `handoff serve` for one test file: on 127.0.0.1, port 0, a fresh SQLite file in a
// temporary directory, the admin token from the environment. Plus the API calls the tests
// make directly (upload a plan, register a device, send pings).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.HANDOFF_BIN ?? resolve(here, '../../../target/debug/handoff');
export const ADMIN = 'e2e-admin-token';

/**
 * Starts the server; `port` reuses a port (to restart "the same" server); `args` are more of
 * `handoff serve`'s options.
 */
export async function startServer({ dir, port = 0, args = [] } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`no server binary at ${BIN}: run \`cargo build -p handoff\` first (or set HANDOFF_BIN)`);
  }
  const dataDir = dir ?? await mkdtemp(join(tmpdir(), 'handoff-web-'));
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--db', `sqlite://${join(dataDir, 'handoff.db')}`, ...args], {
    env: { ...process.env, HANDOFF_ADMIN_TOKEN: ADMIN, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const url = await new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`the server did not start in 20 s:\n${out}${log}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/handoff serving on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the server exited (${code}) before serving:\n${out}${log}`));
    });
  });
  child.stdout.resume();
  const exited = new Promise((ok) => child.on('exit', ok));
  return {
    url,
    port: Number(new URL(url).port),
    dir: dataDir,
    log: () => log,
    /** Stops the server (SIGTERM, then SIGKILL after 5 s); `keep` keeps its data directory. */
    async stop({ keep = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      if (!keep) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function call(method, url, { token = ADMIN, body, type = 'application/json' } = {}) {
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': type }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export const putPlan = (base, event, toml) => call('PUT', `${base}/api/v1/events/${event}`, { body: toml, type: 'application/toml' });
export const live = (base, event) => call('GET', `${base}/api/v1/events/${event}/live`);
export async function registerDevice(base, event, device, carrier) {
  return (await call('POST', `${base}/api/v1/events/${event}/devices`, { body: { device, carrier } })).token;
}
export const sendPings = (base, token, pings) => call('POST', `${base}/api/v1/pings`, { token, body: pings });

/** An RFC 9557 timestamp `minutes` from now, in Paris time (as a plan would say it). */
export function at(minutes, zone = 'Europe/Paris') {
  const t = new Date(Date.now() + minutes * 60000);
  t.setMilliseconds(0);
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'longOffset',
  }).formatToParts(t).map((p) => [p.type, p.value]));
  const offset = parts.timeZoneName === 'GMT' ? '+00:00' : parts.timeZoneName.slice(3);
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}${offset}[${zone}]`;
}

/** Points from `a` to `b` ([lon, lat]) every `step` degrees or so. */
export function line(a, b, n = 10) {
  return Array.from({ length: n + 1 }, (_, i) => [
    +(a[0] + ((b[0] - a[0]) * i) / n).toFixed(6),
    +(a[1] + ((b[1] - a[1]) * i) / n).toFixed(6),
  ]);
}

const fmt = (pts) => `[${pts.map(([x, y]) => `[${x}, ${y}]`).join(', ')}]`;

// The test relay: three legs in Paris, the first started ten minutes ago (Ann runs, Ben cycles, Cat
// runs), a place passed halfway along Ben's leg, a milestone tomorrow; and a second relay
// whose only runner started 40 minutes ago on a 10-minute leg and never reported (overdue,
// silent).
export const LEG0 = line([2.34, 48.85], [2.37, 48.85], 12);
export const LEG1 = line([2.37, 48.85], [2.37, 48.88], 12);
export const LEG2 = line([2.37, 48.88], [2.39, 48.88], 8);
const LATE = line([2.30, 48.87], [2.32, 48.87], 8);

export function testPlan(event = 'e2e') {
  return `
[event]
id = "${event}"
name = "Test relay across Paris"
description = "A test flag carried across Paris by Ann, Ben and Cleo."

[[places]]
id = "start"
name = "Start Line"
at = [2.34, 48.85]
timezone = "Europe/Paris"

[[places]]
id = "square"
name = "Exchange Square"
at = [2.37, 48.85]
timezone = "Europe/Paris"

[[places]]
id = "bridge"
name = "Halfway Bridge"
at = [2.37, 48.865]
timezone = "Europe/Paris"

[[places]]
id = "park"
name = "Finish Park"
at = [2.39, 48.88]
timezone = "Europe/Paris"

[[milestones]]
name = "Closing party"
at = "${at(24 * 60)}"
place = "park"

[[relays]]
id = "flag"
name = "Test flag"
object = "test flag"

[[relays.legs]]
carriers = ["Ann"]
mode = "run"
route = { points = ${fmt(LEG0)} }
start = "${at(-10)}"
duration = "15m"
note = "Along the river, east."

[[relays.legs]]
carriers = ["Ben"]
mode = "bike"
route = { points = ${fmt(LEG1)} }
duration = "12m"

[[relays.legs]]
carriers = ["Cat"]
mode = "run"
route = { points = ${fmt(LEG2)} }
duration = "10m"

[[relays]]
id = "late"
name = "Late relay"
object = "baton"

[[relays.legs]]
carriers = ["Dee"]
mode = "run"
route = { points = ${fmt(LATE)} }
start = "${at(-40)}"
duration = "10m"

[[relays.legs]]
carriers = ["Eve"]
mode = "run"
route = { points = ${fmt(line(LATE[LATE.length - 1], [2.34, 48.87], 6))} }
duration = "10m"
`;
}

/** A ping at `fraction` of a polyline, `agoS` seconds ago. */
export function pingAt(points, fraction, agoS = 0) {
  const i = Math.min(points.length - 2, Math.floor(fraction * (points.length - 1)));
  const f = fraction * (points.length - 1) - i;
  const [a, b] = [points[i], points[i + 1]];
  return {
    t: new Date(Date.now() - agoS * 1000).toISOString(),
    lon: a[0] + (b[0] - a[0]) * f,
    lat: a[1] + (b[1] - a[1]) * f,
    acc: 5,
  };
}
