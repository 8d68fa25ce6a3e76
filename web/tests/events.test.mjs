// The events list and race mode: the list links every event's live page and console; on a
// race (teams on one course) the live page ranks the teams by distance along the course,
// with each team's next exchange, and re-ranks them as pings arrive.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, launch, layoutProblems, open, PHONE } from './support/browser.mjs';
import { at, line, pingAt, putPlan, registerDevice, sendPings, startServer, testPlan } from './support/server.mjs';

const C1 = line([-122.68, 45.52], [-122.68, 45.54], 10);
const C2 = line([-122.68, 45.54], [-122.70, 45.54], 10);
const fmt = (pts) => `[${pts.map(([x, y]) => `[${x}, ${y}]`).join(', ')}]`;

const race = `
[event]
id = "race"
name = "Test race in Portland"

[[places]]
id = "start"
name = "Waterfront"
at = [-122.68, 45.52]
timezone = "America/Los_Angeles"

[[courses]]
id = "loop"
[[courses.legs]]
mode = "run"
route = { points = ${fmt(C1)} }
duration = "15m"
[[courses.legs]]
mode = "run"
route = { points = ${fmt(C2)} }
duration = "12m"

[[relays]]
id = "team-a"
name = "Team A"
course = "loop"
start = "${at(-12, 'America/Los_Angeles')}"
carriers = ["A1", "A2"]

[[relays]]
id = "team-b"
name = "Team B"
course = "loop"
start = "${at(-11, 'America/Los_Angeles')}"
carriers = ["B1", "B2"]
`;

let server;
let browser;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  await putPlan(server.url, 'race', race);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the events list links each live page and console', async () => {
  const { page, seen, context } = await open(browser, server.url, { viewport: PHONE });
  await page.locator('.events li').first().waitFor();
  const names = await page.locator('.events h3').allTextContents();
  assert.deepEqual(names.sort(), ['Test race in Portland', 'Test relay across Paris']);
  assert.equal(await page.getByRole('link', { name: 'Test race in Portland' }).getAttribute('href'), '/e/race');
  assert.equal(await page.locator('a[href="/e/race/console"]').count(), 1);
  assert.deepEqual(await layoutProblems(page), []);
  await assertAccessible(page, 'events list');
  assertClean(seen, 'events list');
  await context.close();
});

test('race mode: a leaderboard by distance along the course, with the next exchange', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/race`);
  await page.locator('#race').waitFor();
  assert.equal(await page.locator('#leaderboard tr').count(), 2);

  // Team B's runner is further along than team A's: B leads, with more distance.
  const a1 = await registerDevice(server.url, 'race', 'a1', 'A1');
  const b1 = await registerDevice(server.url, 'race', 'b1', 'B1');
  await sendPings(server.url, a1, [pingAt(C1, 0.2, 600), pingAt(C1, 0.3, 240)]);
  await sendPings(server.url, b1, [pingAt(C1, 0.4, 600), pingAt(C1, 0.5, 240)]);
  await page.waitForFunction(() => document.querySelector('#leaderboard tr th')?.textContent === 'Team B');
  const rows = await page.locator('#leaderboard tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  assert.deepEqual(rows.map((r) => r[1]), ['Team B', 'Team A']);
  assert.deepEqual(rows.map((r) => r[2]), ['1/2', '1/2']);
  assert.deepEqual(rows.map((r) => r[3]), ['B1', 'A1']);
  const metres = rows.map((r) => Number.parseFloat(r[4].replace(/,/g, '')) * (r[4].endsWith(' km') ? 1000 : 1));
  assert.ok(metres[0] > metres[1], `distances ${rows.map((r) => r[4])}`);
  assert.match(rows[0][5], /Exchange 1 → 2.*in \d+ (min|s)\b/);

  // Then A overtakes (at a runner's speed: a faster jump would be refused as a mismatch).
  await sendPings(server.url, a1, [pingAt(C1, 0.7, 0)]);
  await page.waitForFunction(() => document.querySelector('#leaderboard tr th')?.textContent === 'Team A');

  // The schedule and chart follow the chosen team.
  await page.locator('#team').selectOption('team-b');
  await page.locator('.stops[data-relay="team-b"]').waitFor();
  assert.equal(await page.locator('.chart[data-relay="team-b"]').count(), 1);

  await assertAccessible(page, 'live page (race)');
  assertClean(seen, 'live page (race)');
  await context.close();
});
