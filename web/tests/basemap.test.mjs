// The organiser's street basemap: a small PMTiles file the test makes from GeoJSON streets
// (`pmtiles-fixture`, a tool of the repo's bench crate, built by scripts/test), served by
// `handoff serve --basemap` with range requests. With every request to anything but
// 127.0.0.1 refused, the live page draws the streets from it above the built-in world map;
// when the tiles fail, the world map stays (it is never replaced, only drawn over).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { assertClean, launch, open, PHONE, SHOTS } from './support/browser.mjs';
import { pingAt, LEG0, putPlan, registerDevice, sendPings, startServer, testPlan } from './support/server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// As in live.test.mjs: an ignored folder, or the README's with scripts/screenshots.
const FIXTURE_BIN = process.env.HANDOFF_PMTILES_FIXTURE ?? resolve(here, '../../target/debug/pmtiles-fixture');

// Two streets across the test relay's first leg (Paris, 2.34–2.37 E on 48.85 N).
const STREETS = {
  type: 'FeatureCollection',
  features: [
    { type: 'Feature', properties: { kind: 'major_road', name: 'Rue du Test' }, geometry: { type: 'LineString', coordinates: [[2.33, 48.848], [2.36, 48.851], [2.40, 48.853]] } },
    { type: 'Feature', properties: { kind: 'major_road', name: 'Boulevard Fixture' }, geometry: { type: 'LineString', coordinates: [[2.352, 48.835], [2.354, 48.86], [2.356, 48.875]] } },
  ],
};

let dir;
let server;
let browser;

before(async () => {
  if (!existsSync(FIXTURE_BIN)) {
    throw new Error(`no ${FIXTURE_BIN}: run \`cargo build -p handoff-bench --bin pmtiles-fixture\` first`);
  }
  dir = await mkdtemp(join(tmpdir(), 'handoff-basemap-'));
  await writeFile(join(dir, 'streets.geojson'), JSON.stringify(STREETS));
  execFileSync(FIXTURE_BIN, [join(dir, 'streets.geojson'), join(dir, 'streets.pmtiles'), '15']);
  server = await startServer({ args: ['--basemap', join(dir, 'streets.pmtiles')] });
  await putPlan(server.url, 'e2e', testPlan());
  const ann = await registerDevice(server.url, 'e2e', 'ann-phone', 'Ann');
  await sendPings(server.url, ann, [pingAt(LEG0, 0.5)]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Only 127.0.0.1 answers; `fail(url)` picks requests of ours to refuse as well. */
const offline = (fail = () => false) => async (context) => {
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1' || fail(url, route.request())) return route.abort();
    return route.continue();
  });
};

/** Pixels painted on the street basemap's canvas tiles (the tiles are clear elsewhere); run in
 * the page. */
function countPainted() {
  let n = 0;
  for (const c of document.querySelectorAll('.leaflet-tile-pane canvas')) {
    if (!c.width || !c.height) continue;
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
  }
  return n;
}
const painted = (page) => page.evaluate(countPainted);

const worldPaths = (page) => page.locator('.leaflet-world-pane path').count();

test('the street basemap is drawn from the server\'s PMTiles, offline, above the world map', async () => {
  const ranges = [];
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`, {
    viewport: PHONE,
    setup: async (ctx) => {
      await offline()(ctx);
      ctx.on('response', (r) => {
        if (new URL(r.url()).pathname === '/basemap.pmtiles') ranges.push({ status: r.status(), range: r.request().headers().range });
      });
    },
  });
  await page.locator('#map[data-basemap="streets"]').waitFor();
  // Follow mode shows Ann's leg at street level, where the streets are.
  await page.waitForFunction(() => {
    const [w, s, e, n] = document.querySelector('#map').dataset.viewBounds.split(',').map(Number);
    return e - w < 0.3 && n - s < 0.3;
  });
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-tile-pane canvas').length > 0);
  await assert.doesNotReject(page.waitForFunction(countPainted), 'no street was drawn');
  const pixels = await painted(page);
  assert.ok(pixels > 200, `${pixels} pixels of streets`);
  // Read as PMTiles is meant to be read: byte ranges, answered 206.
  assert.ok(ranges.length >= 2, JSON.stringify(ranges));
  assert.ok(ranges.every((r) => r.status === 206 && /^bytes=\d+-\d+$/.test(r.range ?? '')), JSON.stringify(ranges));
  // The world map is still there beneath, and the streets' attribution is shown.
  assert.ok(await worldPaths(page) > 0, 'the world basemap is gone');
  assert.match(await page.locator('.leaflet-control-attribution').textContent(), /OpenStreetMap/);
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, 'live-streets-phone.png') });
  assertClean(seen, 'live page with a street basemap');
  await context.close();
});

test('when the street tiles fail, the world map stays', async () => {
  // The archive's header loads, every later read of it is refused: the street layer is
  // added and can draw nothing.
  let reads = 0;
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e`, {
    setup: offline((url) => url.pathname === '/basemap.pmtiles' && reads++ > 0),
  });
  await page.locator('#map[data-basemap="streets"]').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-tile-pane canvas').length > 0);
  await page.locator('.position-marker[data-relay="flag"]').waitFor();
  assert.ok(reads > 1, `the tiles were never asked for (${reads} reads)`);
  assert.equal(await painted(page), 0, 'streets drawn from refused reads');
  assert.ok(await worldPaths(page) > 0, 'the world basemap is gone');
  const filled = await page.locator('.leaflet-world-pane path').evaluateAll((ps) => ps.filter((p) => getComputedStyle(p).fill !== 'none').length);
  assert.ok(filled > 0, 'no land drawn');
  assertClean(seen, 'live page whose street tiles fail', [/ERR_FAILED|basemap|Failed to fetch|pmtiles/i]);
  await context.close();

  // A server without a basemap says so (`GET /basemap`): the world map only, no failed request.
  const plain = await startServer();
  try {
    await putPlan(plain.url, 'e2e', testPlan());
    const other = await open(browser, `${plain.url}/e/e2e`, { setup: offline() });
    await other.page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);
    assert.equal(await other.page.locator('#map').getAttribute('data-basemap'), null);
    assertClean(other.seen, 'live page without a basemap');
    await other.context.close();
  } finally {
    await plain.stop();
  }
});
