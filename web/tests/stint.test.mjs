// One carrier across consecutive legs (a motorcycle, then on foot) is one stint, not a handoff;
// and every handoff says how it is known. Against a real server: the stage's planned time runs
// out (an assumed handoff, labelled so on the live page and its timeline), the carrier page
// offers the rider no code for the change of mode, the rider's phone moves the tracker on to
// the next segment by itself, an operator's record turns the assumption into a verified
// handoff, and the console's record button skips the segment change. No page ever shows a
// name handed to itself ("X → X"). A stationary stage nobody tracks is shown at its place.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { assertClean, launch, open, PHONE } from './support/browser.mjs';
import { ADMIN, at, line, pingAt, putPlan, registerDevice, sendPings, startServer } from './support/server.mjs';

const MOTO = line([2.34, 48.85], [2.40, 48.85], 12);
const RUN = line([2.40, 48.85], [2.41, 48.85], 6);
const LAST = line([2.41, 48.85], [2.42, 48.85], 6);
const fmt = (pts) => `[${pts.map(([x, y]) => `[${x}, ${y}]`).join(', ')}]`;

const PLAN = `
[event]
id = "stint"
name = "One stint, two modes"

[[places]]
id = "stade"
name = "Stade"
at = [2.34, 48.85]
timezone = "Europe/Paris"

[[places]]
id = "gare"
name = "Gare"
at = [2.40, 48.85]
timezone = "Europe/Paris"

[[places]]
id = "beach"
name = "Beach Stage"
at = [2.30, 48.86]
timezone = "Europe/Paris"

[[relays]]
id = "flag"
name = "Flag"
object = "flag"

[[relays.legs]]
carriers = ["Karen"]
mode = "stage"
place = "stade"
start = "${at(-6)}"
duration = "4m"

[[relays.legs]]
carriers = ["Tom"]
mode = "motorcycle"
route = { points = ${fmt(MOTO)} }
duration = "10m"

[[relays.legs]]
carriers = ["Tom"]
mode = "run"
route = { points = ${fmt(RUN)} }
duration = "6m"

[[relays.legs]]
carriers = ["Cat"]
mode = "run"
route = { points = ${fmt(LAST)} }
duration = "6m"

[[relays]]
id = "concert"
name = "Concert"
object = "stage"

[[relays.legs]]
carriers = ["Band"]
mode = "stage"
place = "beach"
start = "${at(-1)}"
duration = "30m"
`;

let server;
let browser;
let tom;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'stint', PLAN);
  tom = await registerDevice(server.url, 'stint', 'tom-phone', 'Tom');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Lines of the page's text in which a name is handed to itself ("Tom → Tom"). */
const selfHandoffs = (page) => page.evaluate(() => document.body.innerText.split('\n').filter((l) => /(\S.*) → \1/.test(l)));

const flag = (page) => page.locator('.relay[data-relay="flag"]');

test('an assumed handoff is labelled as assumed; a stage nobody tracks is at its place', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/stint`);
  // The stage's planned time ran out two minutes ago; nothing was recorded or reported.
  await flag(page).locator('.status', { hasText: 'Probably held by Tom' }).waitFor();
  const how = flag(page).locator('p.how');
  assert.match(await how.getAttribute('class'), /assumed/);
  assert.match(await how.textContent(), /≈ Handoff from Karen assumed: the planned time ran out/);
  // The next handoff is the end of Tom's stint, to Cat: the change of mode is not one.
  assert.equal(await flag(page).locator('.next-handoff .who').textContent(), 'Tom → Cat');
  assert.match(await flag(page).locator('.next-handoff').textContent(), /after run: the same carrier/);
  // The timeline marks the stage's end as assumed.
  await page.locator('#timeline-charts figure[data-relay="flag"] .tl-how.assumed[data-leg="0"]').waitFor();
  // The schedule names the change of mode, not a handoff.
  assert.ok((await page.locator('ol.stops[data-relay="flag"] .stop-what').allTextContents()).includes('Tom changes to run'));

  // The concert's performers carry no phone: the stage is shown at its place, not as a lost fix.
  const label = page.locator('.leaflet-tooltip', { hasText: 'Band' });
  await label.waitFor();
  assert.equal(await label.textContent(), 'Stage: Band · at Beach Stage');
  // (Tom's leg is tracked: his marker, at the start of his route, honestly has no fix yet.)
  assert.equal(await page.locator('.leaflet-tooltip', { hasText: 'Tom' }).textContent(), 'Flag: Tom (no fix yet)');
  const concert = page.locator('.relay[data-relay="concert"]');
  assert.equal(await concert.locator('.fix').textContent(), '');

  assert.deepEqual(await selfHandoffs(page), []);
  assertClean(seen, 'live page');
  await context.close();
});

test('the carrier page offers no code for a change of mode; the tracker moves on by itself', async () => {
  const spectator = await open(browser, `${server.url}/e/stint`);
  const { page, seen, context } = await open(browser, `${server.url}/carrier?token=${tom}`, { viewport: PHONE });
  await page.locator('#leg-info .holders', { hasText: 'You hold the flag' }).waitFor();
  // On the motorcycle: the next is a change of mode by Tom himself, with nothing to confirm.
  const next = await page.locator('#next-exchange').textContent();
  assert.match(next, /you carry on by run \(no handoff: nothing to confirm\); then hand to Cat/);
  assert.equal(await page.locator('#give').isHidden(), true, 'no code for the change of mode');
  assert.deepEqual(await selfHandoffs(page), []);

  // Tom rides to the end of the motorcycle leg and runs on: the tracker moves on by itself.
  const pings = [0.2, 0.4, 0.6, 0.8, 0.95, 1].map((f, i) => pingAt(MOTO, f, 60 - i * 8));
  pings.push(pingAt(RUN, 0.3, 5));
  await sendPings(server.url, tom, pings);
  await flag(spectator.page).locator('.status', { hasText: '· run ·' }).waitFor();
  // Still the same custody: the handoff into the stint is still an assumption.
  assert.match(await flag(spectator.page).locator('.status').textContent(), /^Probably held by Tom/);
  assert.equal(await spectator.page.locator('.tl-how[data-leg="1"]').count(), 0, 'no handoff mark on the change of mode');
  assert.deepEqual(await selfHandoffs(spectator.page), []);

  // On foot, the end of the stint: the real handoff to Cat is offered (its code is asked for
  // below, once custody is recorded with Tom).
  await page.locator('#next-exchange', { hasText: 'hand to Cat' }).waitFor();
  await page.locator('#give').waitFor();
  assert.deepEqual(await selfHandoffs(page), []);

  assertClean(seen, 'carrier page');
  assertClean(spectator.seen, 'live page');
  await spectator.context.close();
  await context.close();
});

test('a recorded handoff is labelled verified; the console and the code skip the segment change', async () => {
  const spectator = await open(browser, `${server.url}/e/stint`);
  await flag(spectator.page).locator('.status', { hasText: 'Probably held by Tom' }).waitFor();

  const { page, seen, context } = await open(browser, `${server.url}/e/stint/console`);
  await page.getByLabel('Admin token').fill(ADMIN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const block = page.locator('.relay-block[data-relay="flag"]');
  await block.locator('tbody tr').first().waitFor();
  // Nothing recorded yet: the stage's end is next, and the table says it is assumed.
  const record = block.locator('button.record');
  await record.filter({ hasText: 'Record handoff: Karen → Tom (leg 1 → 2)' }).waitFor();
  const cells = () => block.locator('tbody tr td.how-known').allTextContents();
  assert.match((await cells())[0], /≈ assumed: the planned time ran out/);
  assert.equal((await cells())[1], 'segment change (same carriers: nothing to record)');

  await record.click();
  await page.locator('#result', { hasText: 'Recorded: Karen → Tom' }).waitFor();
  // The next one skips the change of mode: Tom's stint ends at leg 3.
  await record.filter({ hasText: 'Record handoff: Tom → Cat (leg 3 → 4)' }).waitFor();
  await block.locator('tbody tr td.how-known .how.verified', { hasText: 'recorded by an operator' }).first().waitFor();
  assert.deepEqual(await selfHandoffs(page), []);

  // The spectators see it verified, in words and an icon, and on the timeline.
  await flag(spectator.page).locator('.status', { hasText: /^Held by Tom/ }).waitFor();
  const how = flag(spectator.page).locator('p.how');
  assert.match(await how.getAttribute('class'), /verified/);
  assert.match(await how.textContent(), /✓ Handoff from Karen verified: recorded by an operator/);
  await spectator.page.locator('.tl-how.verified[data-leg="0"]').waitFor();

  // Tom's code is for the handoff to Cat, not for the change of mode.
  const carrier = await open(browser, `${server.url}/carrier?token=${tom}`, { viewport: PHONE });
  await carrier.page.locator('#give').waitFor();
  await carrier.page.getByRole('button', { name: 'Show my handoff code' }).click();
  await carrier.page.locator('#code', { hasText: /^\s*\d{6}\s*$/ }).waitFor();
  assert.match(await carrier.page.locator('#code-expiry').textContent(), /^For the handoff to Cat; valid until/);
  assert.deepEqual(await selfHandoffs(carrier.page), []);
  assertClean(carrier.seen, 'carrier page');
  await carrier.context.close();

  // The real handoff from the end of the stint.
  await record.click();
  await page.locator('#result', { hasText: 'Recorded: Tom → Cat' }).waitFor();
  const log = (await (await fetch(`${server.url}/api/v1/events/stint/relays/flag/custody`)).text())
    .trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.kind === 'handoff');
  assert.deepEqual(log.map((e) => [e.from.leg, e.to.leg]), [[0, 1], [2, 3]]);
  await flag(spectator.page).locator('.status', { hasText: /^Held by Cat/ }).waitFor();
  assert.deepEqual(await selfHandoffs(spectator.page), []);
  assert.deepEqual(await selfHandoffs(page), []);

  assertClean(seen, 'console');
  assertClean(spectator.seen, 'live page');
  await spectator.context.close();
  await context.close();
});
