// The carrier page against a real server, with the phone's position mocked by the browser
// context: the token from the console's link, sharing positions that a spectator's live page
// shows, buffering while offline and sending the backlog when back online, and the two-party
// handoff (the giver's one-time code entered on the receiver's phone).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, centre, launch, layoutProblems, open, PHONE } from './support/browser.mjs';
import { LEG0, pingAt, putPlan, registerDevice, startServer, testPlan } from './support/server.mjs';

let server;
let browser;
let tokens;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  tokens = {
    ann: await registerDevice(server.url, 'e2e', 'ann-phone', 'Ann'),
    ben: await registerDevice(server.url, 'e2e', 'ben-phone', 'Ben'),
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

  await page.getByRole('button', { name: 'Start sharing' }).click();
  await page.locator('#queue-status', { hasText: 'All positions sent.' }).waitFor();
  await spectator.page.waitForFunction(() => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= 28);
  const p0 = await progressOf(spectator.page);
  const x0 = (await centre(marker)).x;

  // Ann runs on: a new fix every couple of seconds (the page sends at most one per 2 s).
  for (const f of [0.35, 0.4]) {
    await page.waitForTimeout(2100);
    await context.setGeolocation(fix(f));
  }
  await spectator.page.waitForFunction((p) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= p + 8, p0);
  const p1 = await progressOf(spectator.page);
  const x1 = (await centre(marker)).x;
  assert.ok(x1 > x0 + 5, `the marker moved east: ${x0} → ${x1}`);

  // No signal: the fixes wait in the queue, and nothing reaches the live page.
  await context.setOffline(true);
  for (const f of [0.45, 0.5]) {
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
  await spectator.page.waitForFunction((p) => Number(document.querySelector('.relay[data-relay="flag"] [role=progressbar]')?.getAttribute('aria-valuenow')) >= p + 8, p1);

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
