// The live page against a real server with pings flowing: the map, the panels, the ticking
// countdowns, the schedule and the chart; the marker moving as pings arrive; reconnecting
// after the server restarts; phone and desktop layouts (with screenshots, the README's when asked);
// accessibility; and no request leaving 127.0.0.1.

import assert from 'node:assert/strict';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import {
  assertAccessible, assertClean, centre, DESKTOP, launch, layoutProblems, open, PHONE, SHOTS,
} from './support/browser.mjs';
import {
  at, LEG0, LEG2, line, live, pingAt, putPlan, registerDevice, sendPings, startServer, testPlan,
} from './support/server.mjs';


let server;
let browser;
let ann;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  ann = await registerDevice(server.url, 'e2e', 'ann-phone', 'Ann');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const flag = (page) => page.locator('.relay[data-relay="flag"]');
const progress = async (page) => Number(await flag(page).locator('[role=progressbar]').getAttribute('aria-valuenow'));

test('shows the relays, the schedule, the chart and ticking countdowns', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await assert.doesNotReject(flag(page).locator('.holders', { hasText: 'Ann' }).waitFor());
  assert.equal(await page.locator('#event-name').textContent(), 'Test relay across Paris');
  await page.locator('#conn', { hasText: 'Live' }).waitFor();

  // The map: the built-in basemap (no tiles), every leg of the flag drawn, places, a marker.
  assert.equal(await page.locator('.leaflet-tile').count(), 0, 'no tiles by default');
  assert.ok(await page.locator('.leaflet-routes-pane path').count() > 3);
  // (The built-in basemap's file loads after the page: wait for it.)
  await page.locator('.leaflet-world-pane path').first().waitFor({ state: 'attached' });
  assert.equal(await page.locator('.place-point').count(), 4);
  assert.equal(await page.locator('.position-marker[data-relay="flag"]').count(), 1);

  // The late relay's alerts are shown as text.
  const late = page.locator('.relay[data-relay="late"]');
  await late.locator('.badge', { hasText: 'Overdue' }).waitFor();
  await late.locator('.badge', { hasText: 'No signal' }).waitFor();

  // Countdowns tick: the next handoff's (about 13 minutes) and the milestone's (a day).
  const next = flag(page).locator('.next-handoff .countdown');
  const UNIT = { d: 86400, h: 3600, min: 60, s: 1 };
  const seconds = (s) => [...s.matchAll(/(\d+) (d|h|min|s)\b/g)].reduce((acc, [, n, u]) => acc + Number(n) * UNIT[u], 0);
  const first = await next.textContent();
  await page.waitForTimeout(2100);
  const later = await next.textContent();
  assert.match(first, /^in (\d+ min( \d+ s)?|\d+ s)$/);
  const ticked = seconds(first) - seconds(later);
  assert.ok(ticked >= 1 && ticked <= 3, `countdown went ${first} → ${later}`);
  const milestone = page.locator('#countdown-list li', { hasText: 'Closing party' });
  assert.match(await milestone.locator('.cd-left').textContent(), /^(23 h 59 min|1 d)$/);

  // The schedule names the places and exchanges in order, with the next one marked.
  const stops = await page.locator('.stops[data-relay="flag"] .stop-name').allTextContents();
  assert.deepEqual(stops, ['Start Line', 'Exchange Square', 'Halfway Bridge', 'Exchange 2 → 3', 'Finish Park']);
  assert.equal(await page.locator('.stops[data-relay="flag"] .stop.next .stop-name').textContent(), 'Exchange Square');
  // Times in the place's zone (Paris) and the viewer's (Los Angeles).
  const time = await page.locator('.stops[data-relay="flag"] .stop.next .stop-time').textContent();
  assert.match(time, /(CET|CEST).*(PST|PDT), your time/);

  // The next handoff's ETA with the band it is likely in (four times in five).
  const bandText = (await flag(page).locator('.next-handoff .band').textContent()).trim();
  // (In the page's locale: en-US counts 12 hours.)
  const [lo, hi] = (bandText.match(/^\((\d\d:\d\d(?: [AP]M)?)–(\d\d:\d\d(?: [AP]M)?)\)$/) ?? assert.fail(bandText)).slice(1);
  assert.notEqual(lo, hi, bandText);
  assert.match(await flag(page).locator('.next-handoff .band').getAttribute('title'), /^Four times in five it is between /);

  // The chart: a planned and an actual/predicted bar per leg.
  const chart = page.locator('.chart[data-relay="flag"] svg');
  assert.equal(await chart.locator('.tl-planned').count(), 3);
  assert.ok(await chart.locator('.tl-current, .tl-predicted, .tl-done').count() >= 3);
  assert.equal(await chart.locator('.tl-now').count(), 1);
  // Every bar can be seen, however short its leg; the "now" label is inside the chart.
  const geometry = await chart.evaluate((el) => {
    const svg = el.getBoundingClientRect();
    const label = el.querySelector('.tl-now-label')?.getBoundingClientRect();
    const bars = [...el.querySelectorAll('.tl-planned, .tl-current, .tl-predicted, .tl-done')].map((r) => r.getBoundingClientRect().width);
    return { bars, inside: !label || (label.left >= svg.left && label.right <= svg.right) };
  });
  assert.ok(geometry.bars.every((w) => w >= 6), `bars ${geometry.bars}`);
  assert.ok(geometry.inside, 'the now label is cut off');

  assertClean(seen, 'live page');
  await context.close();
});

test('the marker moves when pings arrive, without reloading', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await flag(page).locator('.holders', { hasText: 'Ann' }).waitFor();
  await page.locator('#conn', { hasText: 'Live' }).waitFor();
  const marker = page.locator('.position-marker[data-relay="flag"]');
  await page.evaluate(() => { window.notReloaded = true; });
  // The whole route, held still: follow mode (on by default) would move the map with Ann.
  await page.getByRole('button', { name: 'Whole route' }).click();
  assert.equal(await page.locator('#follow').getAttribute('aria-pressed'), 'false');
  // The map has got there (a zoom glides, and the view's bounds move at its end): every leg
  // of the flag in view, and still.
  await page.waitForFunction(([first, last]) => {
    const [w, s, e, n] = document.querySelector('#map').dataset.viewBounds.split(',').map(Number);
    const inside = ([lon, lat]) => lon >= w && lon <= e && lat >= s && lat <= n;
    return inside(first) && inside(last) && !/leaflet-(zoom|pan)-anim/.test(document.querySelector('.leaflet-map-pane').className);
  }, [LEG0[0], LEG2[LEG2.length - 1]]);

  // Ann has been running for ten minutes; her phone reports every few minutes (a faster
  // jump than a runner can make would be refused by the tracker as a mismatch).
  await sendPings(server.url, ann, [pingAt(LEG0, 0.25, 420)]);
  await page.waitForFunction(() => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= 20);
  const p1 = await progress(page);
  const at1 = await centre(marker);

  await sendPings(server.url, ann, [pingAt(LEG0, 0.5, 240), pingAt(LEG0, 0.75, 30)]);
  await page.waitForFunction((before) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) > before + 30, p1);
  const at2 = await centre(marker);
  // Leg 0 runs due east: the marker moved right by about half the leg, and not up or down.
  assert.ok(at2.x - at1.x > 10, `marker moved ${at2.x - at1.x}px east`);
  assert.ok(Math.abs(at2.y - at1.y) < 3, `marker moved ${at2.y - at1.y}px north/south`);
  // The page agrees with the server's snapshot, and it never reloaded.
  const snap = await live(server.url, 'e2e');
  const pct = Math.round(snap.relays.find((r) => r.id === 'flag').progress.fraction * 100);
  assert.equal(await progress(page), pct);
  assert.ok(await page.evaluate(() => window.notReloaded));
  assert.match(await flag(page).locator('.fix').textContent(), /^Last position: .*, \d+ s ago$/);

  assertClean(seen, 'live page');
  await context.close();
});

test('follow mode: on by default; "Show on map" follows another relay', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await flag(page).locator('.holders', { hasText: 'Ann' }).waitFor();
  // The first relay under way is followed: its marker names Ann, and the view is street level.
  const follow = page.locator('#follow');
  assert.equal(await follow.getAttribute('aria-pressed'), 'true');
  assert.equal(await follow.textContent(), 'Follow the test flag');
  assert.equal(await page.locator('#glance-object').textContent(), 'Test flag');
  await page.locator('.position-marker[data-relay="flag"][data-holder="Ann"]').waitFor();
  // Street level (the view's corners under 20 km apart), Ann's marker in it.
  const inView = (relay, holder) => page.waitForFunction(([relay, holder]) => {
    const el = document.querySelector('#map');
    const [w, s, e, n] = el.dataset.viewBounds.split(',').map(Number);
    const rad = (d) => (d * Math.PI) / 180;
    const h = Math.sin(rad(n - s) / 2) ** 2 + Math.cos(rad(s)) * Math.cos(rad(n)) * Math.sin(rad(e - w) / 2) ** 2;
    const km = 2 * 6371 * Math.asin(Math.sqrt(h));
    const map = el.getBoundingClientRect();
    const r = document.querySelector(`.position-marker[data-relay="${relay}"][data-holder="${holder}"]`)?.getBoundingClientRect();
    return km < 20 && r && r.width > 0 && r.x >= map.left && r.right <= map.right && r.y >= map.top && r.bottom <= map.bottom;
  }, [relay, holder]);
  await inView('flag', 'Ann');

  // The late relay's panel asks for it: the glance and the button follow the baton, whose
  // (estimated) marker is in view.
  await page.locator('.relay[data-relay="late"]').getByRole('button', { name: 'Show on map' }).click();
  await page.locator('#glance-object', { hasText: 'Baton' }).waitFor();
  assert.equal(await follow.textContent(), 'Follow the baton');
  assert.match(await page.locator('#glance-holder').textContent(), /held by Dee · run$/i);
  await inView('late', 'Dee');
  // "Whole route" hands the map back to the viewer; the button follows again.
  await page.getByRole('button', { name: 'Whole route' }).click();
  assert.equal(await follow.getAttribute('aria-pressed'), 'false');
  assert.equal(await page.locator('#follow-off').isVisible(), true);
  await follow.click();
  assert.equal(await follow.getAttribute('aria-pressed'), 'true');
  assertClean(seen, 'live page');
  await context.close();
});

// A rider whose phone reports every 200 m, for the follow mode's moves.
const RIDE = line([2.30, 48.83], [2.36, 48.83], 30);
const ridePlan = `
[event]
id = "ride"
name = "A ride across Paris"

[[relays]]
id = "ride"
object = "baton"

[[relays.legs]]
carriers = ["Rae"]
mode = "bike"
route = { points = [${RIDE.map(([x, y]) => `[${x}, ${y}]`).join(', ')}] }
start = "${at(-10)}"
duration = "20m"
`;

test('with prefers-reduced-motion the map follows without gliding', async () => {
  await putPlan(server.url, 'ride', ridePlan);
  const rae = await registerDevice(server.url, 'ride', 'rae-phone', 'Rae');
  // Two viewers, one who asked for less motion; each page notes every glide (Leaflet's pan
  // and zoom animations mark the map pane) and every change of the view.
  const pages = [];
  for (const reducedMotion of ['reduce', 'no-preference']) {
    const p = await open(browser, `${server.url}/e/ride`, { reducedMotion });
    await p.page.locator('.position-marker[data-holder="Rae"]').waitFor();
    await p.page.evaluate(() => {
      window.glides = 0;
      window.views = new Set([document.querySelector('#map').dataset.viewBounds]);
      const pane = document.querySelector('.leaflet-map-pane');
      new MutationObserver(() => {
        if (/leaflet-(pan|zoom)-anim/.test(pane.className)) window.glides += 1;
      }).observe(pane, { attributes: true, attributeFilter: ['class'] });
      new MutationObserver(() => window.views.add(document.querySelector('#map').dataset.viewBounds))
        .observe(document.querySelector('#map'), { attributes: true, attributeFilter: ['data-view-bounds'] });
    });
    pages.push({ reducedMotion, ...p });
  }
  // Rae rides half her 6 km leg (3 km in 10 min), one ping each 300 m: the view has to move.
  for (let i = 1; i <= 10; i++) {
    const f = i / 20;
    await sendPings(server.url, rae, [pingAt(RIDE, f, (10 - f * 20) * 60)]);
    for (const { page } of pages) {
      await page.waitForFunction((pct) => Number(document.querySelector('.relay[data-relay="ride"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= pct, Math.floor(f * 100));
    }
  }
  for (const { page, reducedMotion } of pages) {
    // The marker is still in view, however the map got there.
    await page.waitForFunction(() => {
      const map = document.querySelector('#map').getBoundingClientRect();
      const r = document.querySelector('.position-marker[data-holder="Rae"]').getBoundingClientRect();
      return r.x >= map.left && r.right <= map.right && r.y >= map.top && r.bottom <= map.bottom;
    });
    const { glides, views } = await page.evaluate(() => ({ glides: window.glides, views: window.views.size }));
    assert.ok(views >= 2, `${reducedMotion}: the view followed Rae (${views} views)`);
    if (reducedMotion === 'reduce') assert.equal(glides, 0, 'no animated pan or zoom');
    else assert.ok(glides > 0, 'without the preference, the map glides');
  }
  for (const { seen, context, reducedMotion } of pages) {
    assertClean(seen, `live page (${reducedMotion})`);
    await context.close();
  }
});

test('reconnects by itself after the server restarts', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await page.locator('#conn', { hasText: 'Live' }).waitFor();
  const before = await progress(page);

  await server.stop({ keep: true });
  // Cut off, it says how old what it shows is.
  await page.locator('#conn', { hasText: /^Reconnecting… · last update \d\d:\d\d:\d\d/ }).waitFor({ timeout: 5000 });
  server = await startServer({ dir: server.dir, port: server.port });
  await page.locator('#conn', { hasText: 'Live' }).waitFor({ timeout: 15000 });

  await sendPings(server.url, ann, [pingAt(LEG0, 0.85, 0)]);
  await page.waitForFunction((b) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) > b, before, { timeout: 5000 });

  // Failed requests while the server was down are expected; nothing else.
  seen.errors = seen.errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e));
  assertClean(seen, 'live page');
  await context.close();
});

test('street tiles only when configured, and then only from the configured server', async () => {
  const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  const tiles = 'https://tiles.example.test/{z}/{x}/{y}.png';
  // The tile server is stood in for by the test (the tests run with no internet).
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e?tiles=${encodeURIComponent(tiles)}`, {
    setup: (ctx) => ctx.route('https://tiles.example.test/**', (route) => route.fulfill({ contentType: 'image/png', body: PNG })),
  });
  await page.locator('.leaflet-tile-loaded').first().waitFor();
  assert.ok(await page.locator('#street-tiles').isChecked());
  assert.match(await page.locator('.leaflet-control-attribution').textContent(), /Tiles: tiles\.example\.test/);
  assert.ok(seen.foreign.length > 0);
  assert.deepEqual(seen.foreign.filter((u) => !u.startsWith('https://tiles.example.test/')), []);
  // The built-in basemap stays beneath the tiles (it shows wherever a tile fails).
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);

  // Switched off: the built-in basemap alone, and no more tile requests.
  await page.locator('#street-tiles').uncheck();
  assert.equal(await page.locator('.leaflet-tile').count(), 0);
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);
  const before = seen.foreign.length;
  await page.reload();
  await flag(page).locator('.holders').waitFor();
  assert.equal(new URL(page.url()).search, '', 'the switch replaced ?tiles=');
  assert.equal(await page.locator('.leaflet-tile').count(), 0);
  assert.equal(seen.foreign.length, before);
  seen.foreign = [];
  assertClean(seen, 'live page');
  await context.close();
});

test('the street-tiles switch while the world map still loads leaves no error', async () => {
  // The world map's file is held back until the switch has replaced the map; the old map's
  // late drawing must not touch the map that is gone.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  let asked = 0;
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`, {
    setup: async (ctx) => {
      await ctx.route('**/assets/vendor/world-atlas/countries-110m.json', async (route) => {
        asked += 1;
        if (asked === 1) await held;
        await route.continue();
      });
      // The switch's street tiles, stood in for (the tests run with no internet).
      await ctx.route('https://*.openstreetmap.org/**', (route) => route.fulfill({ status: 204 }));
    },
  });
  await flag(page).locator('.holders').waitFor();
  await page.locator('#street-tiles').check();
  await page.locator('#street-tiles').uncheck();
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);
  release();
  // The held file reaches the page and is dropped; the map that is shown keeps one basemap.
  await page.waitForResponse('**/countries-110m.json');
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  assert.ok(asked >= 2);
  assert.deepEqual(seen.foreign.filter((u) => !/^https:\/\/[a-z.]*openstreetmap\.org\//.test(u)), []);
  seen.foreign = [];
  assertClean(seen, 'live page');
  await context.close();
});

for (const [name, viewport] of [['phone', PHONE], ['desktop', DESKTOP]]) {
  test(`${name} layout: no horizontal scroll, no overlapping controls, accessible`, async () => {
    const { page, seen, context } = await open(browser, `${server.url}/e/e2e`, { viewport });
    await flag(page).locator('.holders').waitFor();
    await page.locator('#conn', { hasText: 'Live' }).waitFor();
    await page.locator('.chart[data-relay="flag"] svg').waitFor();
    // The basemap is drawn before the picture is taken.
    await page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);
    assert.deepEqual(await layoutProblems(page), []);
    // An object's label on the map is wholly on it (one out of view is simply not shown).
    const labels = await page.evaluate(() => {
      const map = document.querySelector('#map').getBoundingClientRect();
      const shown = [...document.querySelectorAll('.object-label')].map((el) => el.getBoundingClientRect())
        .filter((r) => r.right > map.left && r.left < map.right && r.bottom > map.top && r.top < map.bottom);
      return { shown: shown.length, spill: shown.filter((r) => r.left < map.left - 1 || r.right > map.right + 1).map((r) => [r.left, r.right, map.left, map.right]) };
    });
    assert.ok(labels.shown > 0, 'no label on the map');
    assert.deepEqual(labels.spill, [], 'a label runs past the map');

    await mkdir(SHOTS, { recursive: true });
    const file = `${SHOTS}/live-${name}.png`;
    await page.screenshot({ path: file });
    const { size } = await stat(file);
    assert.ok(size < 300 * 1024, `${file} is ${size} bytes`);

    // Scrolled to the bottom (the schedule, the chart), still no overlap.
    await page.evaluate(() => {
      document.scrollingElement.scrollTo(0, 1e6);
      document.querySelector('.panels').scrollTo(0, 1e6);
    });
    assert.deepEqual(await layoutProblems(page), []);

    await assertAccessible(page, `live page (${name})`);
    // Keyboard: the skip link is first, and takes focus past the map to the panels.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'panels');
    assertClean(seen, `live page (${name})`);
    await context.close();
  });
}

test('an unknown event is said plainly, with no empty map under it', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/no-such-event`);
  await page.locator('#problem', { hasText: 'no-such-event' }).waitFor();
  assert.equal(await page.locator('#map').isVisible(), false);
  assert.equal(await page.locator('.live-layout').isVisible(), false);
  assertClean(seen, 'live page', [/404 \(Not Found\)/]);
  await context.close();
});

test("the plan's places are named on the map at city zoom, not over the world", async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await flag(page).locator('.holders').waitFor();
  // Following the flag: street level in Paris, where the places are.
  await page.locator('#map.labels-on').waitFor();
  await page.locator('.place-label', { hasText: 'Exchange Square' }).waitFor({ state: 'visible' });
  // Zoomed out to the world (each click one level), the names go.
  for (let i = 0; i < 12 && await page.locator('#map.labels-on').count(); i++) {
    const before = await page.locator('#map').getAttribute('data-view-bounds');
    await page.locator('.leaflet-control-zoom-out').click();
    // One level at a time: the next click once this zoom has happened.
    await page.waitForFunction((b) => document.querySelector('#map').dataset.viewBounds !== b, before);
  }
  await page.locator('#map:not(.labels-on)').waitFor();
  assert.equal(await page.locator('.place-label', { hasText: 'Exchange Square' }).isVisible(), false);
  assertClean(seen, 'live page');
  await context.close();
});

test('the story, the leg under way in the plan\'s words, and what can be taken away', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`);
  await flag(page).locator('.holders').waitFor();
  await page.locator('#event-story', { hasText: 'A test flag carried across Paris by Ann, Ben and Cleo.' }).waitFor();
  assert.equal(await flag(page).locator('.leg-note').textContent(), 'Along the river, east.');
  const links = await page.locator('#downloads a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links.slice(0, 3), [
    '/api/v1/events/e2e/calendar.ics',
    '/api/v1/events/e2e/relays/flag/track.gpx',
    '/api/v1/events/e2e/relays/flag/track.geojson',
  ]);
  // Each is served, as what it says it is.
  for (const [href, type] of [[links[0], /text\/calendar/], [links[1], /gpx/], [links[2], /geo\+json|json/]]) {
    const res = await fetch(`${server.url}${href}`);
    assert.equal(res.status, 200, href);
    assert.match(res.headers.get('content-type'), type, href);
  }
  assertClean(seen, 'live page');
  await context.close();
});

test('a tap on the route says when the object passes there, with its band and a calendar entry', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`, { acceptDownloads: true });
  await flag(page).locator('.holders').waitFor();
  await page.getByRole('button', { name: 'Whole route' }).click();
  // Halfway along Ben's leg, still to come: the place marked there is on the route.
  const bridge = page.locator('path[data-place="bridge"]');
  await bridge.waitFor();
  await bridge.click();
  const popup = page.locator('.pass-here');
  await popup.waitFor();
  assert.match(await popup.locator('.pass-time').textContent(), /^Passes here \d\d:\d\d [AP]M (CET|CEST).*\(\d\d:\d\d [AP]M–\d\d:\d\d [AP]M\)/);
  assert.match(await popup.textContent(), /Test flag · Ben · bike/);
  assert.match(await popup.textContent(), /in \d+ min/);
  const [download] = await Promise.all([page.waitForEvent('download'), popup.locator('a.add-calendar').click()]);
  const ics = await readFile(await download.path(), 'utf8');
  assert.match(ics, /^BEGIN:VCALENDAR\r\n/);
  assert.match(ics, /\r\nSUMMARY:Test flag · Test relay across Paris\r\n/);
  const [, lat, lon] = ics.match(/\r\nGEO:([\d.]+);([\d.]+)\r\n/);
  assert.ok(Math.abs(Number(lat) - 48.865) < 0.002 && Math.abs(Number(lon) - 2.37) < 0.002, `${lat},${lon}`);
  // The entry is at the time the popup says (the minute), in UTC.
  const start = ics.match(/\r\nDTSTART:(\d{8}T\d{6}Z)\r\n/)[1];
  const shown = await popup.locator('.pass-time time').getAttribute('datetime');
  assert.equal(start.slice(0, 13), shown.replace(/[-:]/g, '').slice(0, 13));
  assertClean(seen, 'live page');
  await context.close();
});
