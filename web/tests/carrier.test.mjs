// The carrier page against a real server, with the phone's position mocked by the browser
// context: the token from the console's link, sharing positions that a spectator's live page
// shows, buffering while offline and sending the backlog when back online, and the two-party
// handoff (the giver's one-time code entered on the receiver's phone). And the guidance: the
// map of the carrier, their route and the exchange point; the warnings when off the route and
// when holding the object with nothing shared; the notice when the exchange is near, naming
// the receiver; and no code asked for a change of mode by the same carrier (a stint).

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, centre, launch, layoutProblems, open, PHONE, SHOTS } from './support/browser.mjs';
import { at, LEG0, line, pingAt, putPlan, registerDevice, sendPings, startServer, testPlan } from './support/server.mjs';


// Tom rides a motorcycle (4.4 km), then runs (730 m): one stint; then Cat runs.
const MOTO = line([2.34, 48.85], [2.40, 48.85], 12);
const RUN = line([2.40, 48.85], [2.41, 48.85], 6);
const LAST = line([2.41, 48.85], [2.42, 48.85], 6);
const fmt = (pts) => `[${pts.map(([x, y]) => `[${x}, ${y}]`).join(', ')}]`;
const STINT = `
[event]
id = "stint"
name = "One stint, two modes"

[[places]]
id = "gare"
name = "Gare"
at = [2.40, 48.85]
timezone = "Europe/Paris"

[[places]]
id = "pont"
name = "Pont"
at = [2.41, 48.85]
timezone = "Europe/Paris"

[[relays]]
id = "flag"
name = "Flag"
object = "flag"

[[relays.legs]]
carriers = ["Tom"]
mode = "motorcycle"
route = { points = ${fmt(MOTO)} }
start = "${at(-3)}"
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
`;

let server;
let browser;
let tokens;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  // The guidance tests run on events of their own: the relay of 'e2e' is handed on below.
  await putPlan(server.url, 'guide', testPlan('guide'));
  // A carrier silent for 4 s is "not sharing".
  await putPlan(server.url, 'quiet', testPlan('quiet').replace('name = "Test relay across Paris"', '$&\nsilent_after = "4s"'));
  await putPlan(server.url, 'stint', STINT);
  tokens = {
    ann: await registerDevice(server.url, 'e2e', 'ann-phone', 'Ann'),
    ben: await registerDevice(server.url, 'e2e', 'ben-phone', 'Ben'),
    guide: await registerDevice(server.url, 'guide', 'ann-phone', 'Ann'),
    quiet: await registerDevice(server.url, 'quiet', 'ann-phone', 'Ann'),
    tom: await registerDevice(server.url, 'stint', 'tom-phone', 'Tom'),
  };
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Where Ann's phone is: `fraction` along her leg, 10 m accuracy. */
const fix = (fraction) => {
  const p = pingAt(LEG0, fraction);
  return { longitude: p.lon, latitude: p.lat, accuracy: 10 };
};

const phone = (token, fraction) => open(browser, `${server.url}/carrier?token=${token}`, {
  viewport: PHONE, permissions: ['geolocation'], geolocation: fix(fraction),
});

const progressOf = (page) => page.evaluate(() => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')));
const queued = (page) => page.evaluate(() => Number(document.querySelector('#queue-status').dataset.queued));

test('shares positions that the live page shows; buffers them while offline', async () => {
  const spectator = await open(browser, `${server.url}/e/e2e`);
  await spectator.page.locator('#conn', { hasText: 'Live' }).waitFor();
  const marker = spectator.page.locator('.position-marker[data-relay="flag"]');

  const { page, seen, context } = await phone(tokens.ann, 0.3);
  // The token leaves the address bar for localStorage.
  await page.locator('#leg-info .holders', { hasText: 'You hold the test flag' }).waitFor();
  assert.equal(new URL(page.url()).search, '');
  assert.equal(await page.evaluate(() => localStorage.getItem('handoff.device.token')), tokens.ann);
  assert.match(await page.locator('#next-exchange').textContent(), /Exchange Square · hand to Ben/);
  assert.match(await page.locator('#distance').textContent(), /km along the route/);

  // A phone that has sent nothing does not read "all sent".
  await page.locator('#queue-status', { hasText: 'No position sent yet.' }).waitFor();
  await page.getByRole('button', { name: 'Start sharing' }).click();
  await page.locator('#queue-status', { hasText: 'All positions sent.' }).waitFor();
  assert.equal(await queued(page), 0);
  await spectator.page.waitForFunction(() => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= 28);
  const p0 = await progressOf(spectator.page);
  const x0 = (await centre(marker)).x;

  // Ann runs on: a new fix every couple of seconds (the page sends at most one per 2 s), 55 m
  // apart: fast, but within what the tracker believes of a runner over the few seconds (the
  // speed is bounded over time, so a fix that jumps 5 % of the leg at once is not progress).
  for (const f of [0.325, 0.35, 0.375]) {
    await page.waitForTimeout(2100);
    await context.setGeolocation(fix(f));
  }
  await spectator.page.waitForFunction((p) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= p + 6, p0);
  const p1 = await progressOf(spectator.page);
  const x1 = (await centre(marker)).x;
  assert.ok(x1 > x0 + 5, `the marker moved east: ${x0} → ${x1}`);

  // No signal: the fixes wait in the queue, and nothing reaches the live page.
  await context.setOffline(true);
  for (const f of [0.4, 0.425]) {
    await page.waitForTimeout(2100);
    await context.setGeolocation(fix(f));
  }
  await page.waitForFunction(() => Number(document.querySelector('#queue-status').dataset.queued) >= 2);
  assert.match(await page.locator('#queue-status').textContent(), /waiting to send \(offline\)/);
  const stored = await page.evaluate((t) => JSON.parse(localStorage.getItem(`handoff.device.queue.${t.slice(0, 16)}`)), tokens.ann);
  assert.ok(stored.length >= 2 && stored.every((p) => p.t && p.lon && p.lat && p.acc === 10), JSON.stringify(stored));
  await spectator.page.waitForTimeout(500);
  assert.equal(await progressOf(spectator.page), p1);

  // Signal again: the backlog goes in one batch and the live page catches up.
  await context.setOffline(false);
  await page.locator('#queue-status', { hasText: 'All positions sent.' }).waitFor();
  assert.equal(await queued(page), 0);
  await spectator.page.waitForFunction((p) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= p + 2, p1);

  assert.deepEqual(await layoutProblems(page), []);
  await assertAccessible(page, 'carrier page (sharing)');
  // Going offline makes the page's stream and requests fail; those are expected.
  seen.errors = seen.errors.filter((e) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(e));
  assertClean(seen, 'carrier page');
  assertClean(spectator.seen, 'live page');
  await spectator.context.close();
  await context.close();
});

test('two-party handoff: the giver shows a code, the receiver enters it', async () => {
  const spectator = await open(browser, `${server.url}/e/e2e`);
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ann' }).waitFor();
  const giver = await phone(tokens.ann, 0.98);
  const receiver = await phone(tokens.ben, 1);

  await receiver.page.locator('#leg-info .holders', { hasText: 'Next: leg 2 of 3' }).waitFor();
  assert.match(await receiver.page.locator('#next-exchange').textContent(), /from Ann at Exchange Square/);
  // The next carrier sees when the giver is expected, with the band it is likely in too.
  assert.match(await receiver.page.locator('#eta .band').textContent(), /^ \(\d\d:\d\d( [AP]M)?–\d\d:\d\d( [AP]M)?\)$/);
  assert.match(await receiver.page.locator('#eta .band').getAttribute('title'), /^Four times in five it is between /);
  assert.equal(await receiver.page.locator('#give').isHidden(), true);
  await receiver.page.locator('#receive').waitFor();

  await giver.page.getByRole('button', { name: 'Show my handoff code' }).click();
  // The code arrives from the server after the click: wait for it, then read it.
  await giver.page.locator('#code', { hasText: /^\s*\d{6}\s*$/ }).waitFor();
  const code = (await giver.page.locator('#code').textContent()).trim();
  assert.match(code, /^\d{6}$/);
  assert.match(await giver.page.locator('#code-expiry').textContent(), /For the handoff to Ben; valid until/);
  await assertAccessible(giver.page, 'carrier page (giver)');

  // A wrong code is refused with the server's reason.
  const wrong = code === '000000' ? '111111' : '000000';
  await receiver.page.getByLabel("Giver's code").fill(wrong);
  await receiver.page.getByRole('button', { name: 'Confirm handoff' }).click();
  await receiver.page.locator('#problem', { hasText: 'wrong code' }).waitFor();

  await receiver.page.getByLabel("Giver's code").fill(code);
  await receiver.page.getByRole('button', { name: 'Confirm handoff' }).click();
  await receiver.page.locator('#handoff-result', { hasText: 'Handoff confirmed' }).waitFor();
  await receiver.page.locator('#leg-info .holders', { hasText: 'You hold the test flag' }).waitFor();
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ben' }).waitFor({ timeout: 2000 });
  await giver.page.locator('#leg-info', { hasText: 'no leg still to come' }).waitFor();

  const log = (await (await fetch(`${server.url}/api/v1/events/e2e/relays/flag/custody`)).text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.at(-1).evidence.method, 'two_party');

  await assertAccessible(receiver.page, 'carrier page (receiver)');
  // The refused code's 409 shows in the console as a failed load; nothing else may.
  receiver.seen.errors = receiver.seen.errors.filter((e) => !/status of 409/.test(e));
  for (const [who, p] of [['giver', giver], ['receiver', receiver], ['spectator', spectator]]) {
    assertClean(p.seen, who);
    await p.context.close();
  }
});

test('asks for a token when it has none, and refuses an unknown one', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/carrier`, { viewport: PHONE });
  await page.getByRole('textbox', { name: 'Device token' }).fill('not-a-token');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#problem', { hasText: 'not accepted' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('handoff.device.token')), null);
  await assertAccessible(page, 'carrier page (setup)');
  seen.errors = seen.errors.filter((e) => !/status of 401/.test(e));
  assertClean(seen, 'carrier page');
  await context.close();
});

/** Whether `inner`'s box lies inside `outer`'s (both locators). */
async function inside(inner, outer) {
  const [a, b] = [await inner.boundingBox(), await outer.boundingBox()];
  return !!a && !!b && a.x >= b.x - 1 && a.y >= b.y - 1 && a.x + a.width <= b.x + b.width + 1 && a.y + a.height <= b.y + b.height + 1;
}

/**
 * An app on the phone (Traccar Client, say) reporting: a ping `agoS` seconds ago at `f` of
 * `pts` for each [pts, f, agoS], at a pace the server finds plausible.
 */
const report = (token, points) => sendPings(server.url, token, points.map(([pts, f, agoS = 0]) => pingAt(pts, f, agoS)));

test('guides on a phone: the map, off the route and back, the exchange near with the receiver', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/carrier?token=${tokens.guide}`, { viewport: PHONE });
  await page.locator('#leg-info .holders', { hasText: 'You hold the test flag' }).waitFor();
  const map = page.locator('#map');
  // The route to go and the exchange point at its end, in view.
  await page.locator('#map path.carrier-route').waitFor({ state: 'attached' });
  assert.ok((await page.locator('#map path.carrier-route').getAttribute('d')).length > 10, 'the route is drawn');
  const exchange = page.locator('#map path.exchange-point');
  await exchange.waitFor({ state: 'attached' });
  assert.equal(await page.locator('#map path.me-marker').count(), 0, 'no fix yet: no marker');

  // When the exchange is expected, with the band it is likely in (four times in five).
  // (In the page's locale: en-US counts 12 hours.)
  assert.match(await page.locator('#eta .band').textContent(), /^ \(\d\d:\d\d( [AP]M)?–\d\d:\d\d( [AP]M)?\)$/);
  assert.match(await page.locator('#eta .band').getAttribute('title'), /^Four times in five it is between /);

  // The phone reports (through an app): the carrier's marker shows, the view around it.
  await report(tokens.guide, [[LEG0, 0.3, 300]]);
  const me = page.locator('#map path.me-marker');
  await me.waitFor();
  await page.waitForFunction(() => {
    const m = document.querySelector('#map path.me-marker')?.getBoundingClientRect();
    const b = document.querySelector('#map').getBoundingClientRect();
    return m && m.left >= b.left && m.right <= b.right && m.top >= b.top && m.bottom <= b.bottom;
  });
  assert.ok(await inside(me, map), 'the carrier is in view');
  await me.hover();
  await page.locator('.leaflet-tooltip', { hasText: 'You' }).waitFor();
  assert.equal(await page.locator('[data-warning="off-route"]').count(), 0);

  // 1.1 km north of the route, three fixes running: the server flags it, the page says so
  // (with no distance: such a fix is not public, and this page has none of its own).
  const north = LEG0.map(([lon, lat]) => [lon, lat + 0.01]);
  await report(tokens.guide, [[north, 0.35, 250], [north, 0.36, 245], [north, 0.37, 240]]);
  const offRoute = page.locator('[data-warning="off-route"]');
  await offRoute.waitFor();
  assert.match(await offRoute.textContent(), /You are off your route: get back to the line on the map, towards Exchange Square\./);
  assert.equal(await offRoute.getAttribute('class'), 'warning');
  // Back on the route: the warning goes.
  await report(tokens.guide, [[LEG0, 0.4, 230]]);
  await offRoute.waitFor({ state: 'detached' });

  // Just before the exchange: how far, and who takes over.
  await report(tokens.guide, [[LEG0, 0.96]]);
  const near = page.locator('[data-warning="near"]');
  await near.waitFor();
  assert.match(await near.textContent(), /^Exchange near: Exchange Square is \d{2,3} m ahead.*Hand the test flag to Ben/);
  await page.locator('#give').waitFor();
  // Phone first: the guidance and the next step on the first screen, without scrolling.
  // (Back at the top: hovering the marker above scrolled the map into view.)
  await page.evaluate(() => window.scrollTo(0, 0));
  for (const sel of ['#guide', '#next-exchange', '#get-code']) {
    const b = await page.locator(sel).boundingBox();
    assert.ok(b && b.y >= 0 && b.y + b.height <= PHONE.height, `${sel} is on the first screen: ${JSON.stringify(b)}`);
  }
  await page.waitForFunction(() => {
    const m = document.querySelector('#map path.me-marker')?.getBoundingClientRect();
    const b = document.querySelector('#map').getBoundingClientRect();
    return m && m.left >= b.left && m.right <= b.right && m.top >= b.top && m.bottom <= b.bottom;
  });
  assert.ok(await inside(exchange, map), 'the exchange point is in view');

  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}/carrier-phone-guide.png`, fullPage: true });
  assert.deepEqual(await layoutProblems(page), []);
  await assertAccessible(page, 'carrier page (guidance)');
  assertClean(seen, 'carrier page');
  await context.close();
});

test('holding the object while nothing is shared: a warning, gone while a fix is fresh', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/carrier?token=${tokens.quiet}`, {
    viewport: PHONE, permissions: ['geolocation'], geolocation: fix(0.3),
  });
  await page.locator('#leg-info .holders', { hasText: 'You hold the test flag' }).waitFor();
  const quiet = page.locator('[data-warning="not-sharing"]');
  // Nothing shares: neither this page nor any other app.
  await quiet.waitFor();
  assert.equal(await quiet.textContent(), 'You hold the test flag but this phone is not sharing its position: press “Start sharing”.');
  // The page shares: the warning goes with its first fix; the page stops: it is back at once.
  await page.getByRole('button', { name: 'Start sharing' }).click();
  await quiet.waitFor({ state: 'detached' });
  await page.locator('#queue-status', { hasText: 'All positions sent.' }).waitFor();
  await page.getByRole('button', { name: 'Stop sharing' }).click();
  await quiet.filter({ hasText: 'not sharing its position' }).waitFor();

  // Another app on the phone reports: nothing to warn of while its fix is fresh, then (after
  // the event's silent_after, 4 s) the warning says for how long nothing has come.
  await report(tokens.quiet, [[LEG0, 0.32]]);
  await quiet.waitFor({ state: 'detached' });
  await quiet.filter({ hasText: /^You hold the test flag but no position has come from this phone for \d+ s: check your tracking app/ }).waitFor();
  await assertAccessible(page, 'carrier page (not sharing)');
  assertClean(seen, 'carrier page');
  await context.close();
});

test('a stint: no code for the change of mode; the exchange that follows it is the one offered', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/carrier?token=${tokens.tom}`, { viewport: PHONE });
  await page.locator('#leg-info .holders', { hasText: 'You hold the flag' }).waitFor();
  // Near the end of the motorcycle leg: the next is Tom on foot, nothing to hand over.
  await report(tokens.tom, [[MOTO, 0.9, 3], [MOTO, 0.97, 2]]);
  await page.locator('#map path.me-marker').waitFor({ state: 'attached' });
  assert.match(await page.locator('#next-exchange').textContent(), /you carry on by run \(no handoff: nothing to confirm\); then hand to Cat at Pont/);
  assert.equal(await page.locator('#handoff').isHidden(), true, 'no handoff section for the change of mode');
  assert.equal(await page.getByRole('button', { name: 'Show my handoff code' }).count(), 0);
  assert.doesNotMatch(await page.locator('#guide').textContent(), /Tom/);
  // Tom runs on: the tracker moves to the run by itself, and the end of the stint is near.
  await report(tokens.tom, [[MOTO, 1, 1], [RUN, 0.3, 0.5], [RUN, 0.6, 0]]);
  const near = page.locator('[data-warning="near"]');
  await near.filter({ hasText: /Exchange near: Pont is \d{2,3} m ahead.*Hand the flag to Cat/ }).waitFor();
  await page.getByRole('button', { name: 'Show my handoff code' }).waitFor();
  assert.deepEqual(await page.evaluate(() => document.body.innerText.split('\n').filter((l) => /(\S.*) → \1/.test(l))), []);
  assertClean(seen, 'carrier page');
  await context.close();
});
