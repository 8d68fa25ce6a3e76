// The live page's map follows the flag through `handoff demo`, on a phone (390×844) and a
// desktop (1280×800) side by side: at street level while Tom Cruise rides through Paris, the
// whole flight (the aircraft and both coasts) over the ocean, street level again in Los
// Angeles, and the stage at the concert. All of it read from the page's contract for tests
// outside the repo: the map's `data-view-bounds` and the holder's marker's `data-holder`.
// Dragging the map leaves follow mode (the carrier then rides out of view) and the button
// brings it back. On the phone, the holder, the next handoff's countdown and the map are on
// the first screen. Screenshots of each moment go to tests/screenshots/.

import assert from 'node:assert/strict';
import { mkdir, stat } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, DESKTOP, launch, layoutProblems, open, PHONE, SHOTS } from './support/browser.mjs';
import { startDemo } from './support/demo.mjs';


// Fast enough to run the whole relay in about 80 s, slow enough that every moment lasts
// several seconds (the ride through Paris 12 s, the flight 15 s, the concert 14 s).
const SPEED = 2;
const PARIS = [2.3522, 48.8566];
const LOS_ANGELES = [-118.2437, 34.0522];
const SANTA_MONICA_BEACH = [-118.4968, 34.0086];

let demo;
let browser;
/** The two pages, opened as the demo starts and kept for the whole relay. */
const views = {};

before(async () => {
  demo = await startDemo({ speed: SPEED });
  browser = await launch();
  await mkdir(SHOTS, { recursive: true });
  for (const [name, viewport] of [['phone', PHONE], ['desktop', DESKTOP]]) {
    views[name] = await open(browser, `${demo.base}/e/flag-handover`, { viewport });
    await views[name].page.locator('#glance-holder .holders').waitFor();
    await views[name].page.evaluate(installProbe);
  }
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/**
 * Installs `window.followProbe(want)` in the page: what the map shows, read only from the
 * contract (`data-view-bounds`, `data-holder`) and the screen, and whether it is what `want`
 * asks for: { relay, holder?, mode?, object? (the glance's), button? (the follow button's text),
 * maxAcrossKm?, near?: {at, km}, contains?: [[lon, lat]] }.
 * It also checks the bounds against the drawn places (`data-place`): a place drawn inside
 * the map is inside the bounds, and one inside the bounds is drawn inside the map.
 */
function installProbe() {
  const rad = (d) => (d * Math.PI) / 180;
  const km = (a, b) => {
    const s = Math.sin(rad(b[1] - a[1]) / 2) ** 2 + Math.cos(rad(a[1])) * Math.cos(rad(b[1])) * Math.sin(rad(b[0] - a[0]) / 2) ** 2;
    return 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(s)));
  };
  const centreOf = (el) => {
    const r = el?.getBoundingClientRect();
    return r && r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null;
  };
  window.followProbe = (want) => {
    const map = document.querySelector('#map');
    const bounds = (map.dataset.viewBounds ?? '').split(',').map(Number);
    if (bounds.length !== 4 || bounds.some((v) => !Number.isFinite(v))) return { ok: false, why: 'no data-view-bounds' };
    const [w, s, e, n] = bounds;
    const inside = ([lon, lat], slack = 0) => lat >= s - slack && lat <= n + slack
      && (w <= e ? lon >= w - slack && lon <= e + slack : lon >= w - slack || lon <= e + slack);
    const box = map.getBoundingClientRect();
    const onScreen = (c, margin) => c && c[0] >= box.left + margin && c[0] <= box.right - margin
      && c[1] >= box.top + margin && c[1] <= box.bottom - margin;
    const marker = document.querySelector(`.position-marker[data-relay="${want.relay}"][data-holder]`);
    const holder = marker?.dataset.holder ?? null;
    const status = document.querySelector('#glance-holder')?.textContent ?? '';
    const centre = [(w + e) / 2, (s + n) / 2];
    const acrossKm = km([w, s], [e, n]);
    // Places clearly inside (or outside) the map on screen must be inside (or outside) the bounds.
    const disagree = [...document.querySelectorAll('.place-point[data-place]')].flatMap((el) => {
      const place = want.places?.find((p) => p.id === el.dataset.place);
      if (!place) return [];
      const c = centreOf(el);
      const shown = onScreen(c, 6);
      const hidden = !c || !onScreen(c, -6);
      if (shown && !inside(place.at, 1e-4)) return [`${place.id} drawn inside but out of bounds`];
      if (hidden && inside(place.at, -1e-3 * (n - s))) return [`${place.id} in bounds but not drawn inside`];
      return [];
    });
    const checks = {
      marker: onScreen(centreOf(marker), 0),
      holder: want.holder === undefined || holder === want.holder,
      mode: want.mode === undefined || status.includes(`· ${want.mode}`),
      object: want.object === undefined || document.querySelector('#glance-object')?.textContent === want.object,
      button: want.button === undefined || document.querySelector('#follow')?.textContent === want.button,
      across: want.maxAcrossKm === undefined || acrossKm < want.maxAcrossKm,
      near: want.near === undefined || km(centre, want.near.at) <= want.near.km,
      contains: (want.contains ?? []).every((p) => inside(p)),
      places: disagree.length === 0,
    };
    return {
      ok: Object.values(checks).every(Boolean),
      failing: Object.keys(checks).filter((k) => !checks[k]),
      bounds, acrossKm: Math.round(acrossKm * 10) / 10, holder, status, disagree,
      following: document.querySelector('#follow').getAttribute('aria-pressed') === 'true',
    };
  };
}

/** Waits (bounded) until the map shows `want` on page `name`; fails with what it last saw. */
async function waitForView(name, want, timeout = 45000) {
  const { page } = views[name];
  const arg = { ...want, places: PLACES };
  try {
    return (await page.waitForFunction((a) => {
      const seen = window.followProbe(a);
      return seen.ok && seen;
    }, arg, { timeout })).jsonValue();
  } catch (e) {
    const last = await page.evaluate((a) => window.followProbe(a), arg);
    throw new Error(`${name}: the map never showed ${JSON.stringify(want)}; last seen ${JSON.stringify(last)}\n(${e.message.split('\n')[0]})`);
  }
}

const both = (fn) => Promise.all(Object.keys(views).map(fn));

/** A picture of page `name` showing `want`, the map still (not halfway through a glide). */
async function screenshot(name, moment, want) {
  const file = `${SHOTS}/follow-${name}-${moment}.png`;
  await views[name].page.waitForFunction((a) => window.followProbe(a).ok
    && !/leaflet-(zoom|pan)-anim/.test(document.querySelector('.leaflet-map-pane').className), { ...want, places: PLACES });
  await views[name].page.screenshot({ path: file });
  const { size } = await stat(file);
  assert.ok(size < 300 * 1024, `${file} is ${size} bytes`);
}

// The demo plan's places, as the probe checks them against the drawn ones.
const PLACES = [
  { id: 'stade-de-france', at: [2.36015, 48.92446] },
  { id: 'le-bourget', at: [2.434, 48.949] },
  { id: 'hollywood-drop', at: [-118.293, 34.145] },
  { id: 'hollywood-sign', at: [-118.32155, 34.13412] },
  { id: 'hollywood-highland', at: [-118.3387, 34.1016] },
  { id: 'santa-monica-14th', at: [-118.4833, 34.0246] },
  { id: 'santa-monica-beach', at: [-118.4968, 34.0086] },
  { id: 'la-coliseum', at: [-118.28786, 34.01406] },
  { id: 'sofi-stadium', at: [-118.33918, 33.9535] },
];

test('in Paris the map follows Tom Cruise at street level; the phone says what matters first', async () => {
  const want = {
    relay: 'flag', holder: 'Tom Cruise', mode: 'motorcycle', object: 'Olympic flag', button: 'Follow the Olympic flag', maxAcrossKm: 20, near: { at: PARIS, km: 25 },
  };
  await both(async (name) => {
    const seen = await waitForView(name, want);
    assert.ok(seen.following, `${name}: follow mode is on by default`);
    await screenshot(name, 'paris', want);
  });

  // The phone's first screen, unscrolled: what the object is, who holds it, the next handoff
  // with its countdown, the next milestone, the map.
  const { page } = views.phone;
  assert.equal(await page.evaluate(() => document.scrollingElement.scrollTop), 0);
  const firstScreen = {
    object: '#glance-object',
    holder: '#glance-holder .holders',
    'next handoff': '#glance-next',
    'its countdown': '#glance-next .countdown',
    'next milestone': '#glance-milestone .countdown',
    'follow button': '#follow',
    map: '#map',
  };
  // Read at one moment: the page redraws these as the positions arrive.
  const boxes = await page.evaluate((sel) => Object.fromEntries(Object.entries(sel).map(([what, s]) => {
    const r = document.querySelector(s)?.getBoundingClientRect();
    return [what, r && r.width > 0 ? { x: r.x, y: r.y, right: r.right, bottom: r.bottom } : null];
  })), firstScreen);
  for (const [what, b] of Object.entries(boxes)) {
    assert.ok(b, `${what} is shown`);
    assert.ok(b.x >= 0 && b.y >= 0 && b.right <= PHONE.width && b.bottom <= PHONE.height,
      `${what} (${firstScreen[what]}) is on the first screen: ${JSON.stringify(b)}`);
  }
  assert.equal(await page.locator('#glance-object').textContent(), 'Olympic flag');
  assert.match(await page.locator('#glance-holder').textContent(), /^(Probably h|H)eld by Tom Cruise · motorcycle$/);
  assert.match(await page.locator('#glance-next').textContent(), /^to Jagger Eaton at Hollywood Sign, Mount Lee · in \d/);
  assert.match(await page.locator('#glance-milestone').textContent(), /^LA28 Opening Ceremony · in [\d,]+ days$/);
  for (const name of Object.keys(views)) assert.deepEqual(await layoutProblems(views[name].page), [], name);
});

test('over the ocean the map shows the whole flight: the aircraft and both coasts', async () => {
  const want = { relay: 'flag', holder: 'Tom Cruise', mode: 'flight', contains: [PARIS, LOS_ANGELES] };
  await both(async (name) => {
    await waitForView(name, want);
    await screenshot(name, 'ocean', want);
  });
});

/**
 * Drags the map with the mouse. Leaflet ignores a press while it animates a zoom, and follow
 * mode may start one at any ping: so the press waits for the map to be still, and a drag that
 * did not take (the map still following) is made again.
 */
async function drag(page) {
  const box = await page.locator('#map').boundingBox();
  const from = { x: box.x + box.width * 0.3, y: box.y + box.height * 0.7 };
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.waitForFunction(() => !/leaflet-(zoom|pan)-anim/.test(document.querySelector('.leaflet-map-pane').className));
    await page.mouse.move(from.x, from.y);
    await page.mouse.down();
    await page.mouse.move(from.x + 90, from.y - 60, { steps: 8 });
    await page.mouse.up();
    if (await page.locator('#follow').getAttribute('aria-pressed') === 'false') return;
  }
  assert.fail('three drags never left follow mode');
}

test('in Los Angeles, street level again; a drag leaves follow mode and the button comes back', async () => {
  const want = { relay: 'flag', maxAcrossKm: 20, near: { at: LOS_ANGELES, km: 40 } };
  await both(async (name) => {
    await waitForView(name, want);
    // The picture on the skateboard, down from the Hollywood Sign.
    await screenshot(name, 'los-angeles', { ...want, holder: 'Jagger Eaton' });
  });

  await both(async (name) => {
    const { page } = views[name];
    const before = await page.locator('#map').getAttribute('data-view-bounds');
    await drag(page);
    await page.locator('#follow-off', { hasText: 'You moved the map' }).waitFor();
    assert.notEqual(await page.locator('#map').getAttribute('data-view-bounds'), before, `${name}: the drag moved the view`);

    // The carrier rides on and the view stays: positions keep arriving (the progress moves)
    // while the marker is at the edge of the map or out of it and the view does not change,
    // which follow mode never allows.
    await page.waitForFunction(() => {
      const map = document.querySelector('#map');
      const box = map.getBoundingClientRect();
      const r = document.querySelector('.position-marker[data-relay="flag"][data-holder]')?.getBoundingClientRect();
      const off = !r || r.width === 0;
      const edge = off || r.x < box.left + box.width * 0.12 || r.right > box.right - box.width * 0.12
        || r.y < box.top + box.height * 0.12 || r.bottom > box.bottom - box.height * 0.12;
      const progress = document.querySelector('.relay[data-relay="flag"] .progress-text')?.textContent;
      const w = (window.dragWatch ??= { view: null, seen: new Set() });
      if (w.view !== map.dataset.viewBounds) {
        w.view = map.dataset.viewBounds;
        w.seen.clear();
      }
      if (edge) w.seen.add(`${progress}|${off ? 'off' : `${Math.round(r.x)},${Math.round(r.y)}`}`);
      return w.seen.size >= 4;
    }, null, { timeout: 30000 });

    await page.locator('#follow').click();
    assert.equal(await page.locator('#follow').getAttribute('aria-pressed'), 'true');
    assert.equal(await page.locator('#follow-off').isHidden(), true);
    await waitForView(name, want, 15000);
  });
});

test('at the concert the map shows the stage', async () => {
  // Once the flag has arrived, the stage is what is under way: the page follows it by itself.
  const want = {
    relay: 'stage', object: 'The stage', button: 'Follow the stage', maxAcrossKm: 20, near: { at: SANTA_MONICA_BEACH, km: 3 }, contains: [SANTA_MONICA_BEACH],
  };
  await both(async (name) => {
    const { page, seen } = views[name];
    await waitForView(name, want, 60000);
    await screenshot(name, 'concert', want);
    await assertAccessible(page, `live page at the concert (${name})`);
    assertClean(seen, `live page during the demo (${name})`);
  });
});
