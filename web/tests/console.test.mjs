// The operator console against a real server: signing in, the legs table and alerts,
// registering a phone (token as text and QR codes, and the token really works), recording a
// handoff that a spectator's live page shows within a second, voiding and re-timing it, and
// shifting the plan.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, launch, layoutProblems, open, PHONE, SHOTS } from './support/browser.mjs';
import { ADMIN, LEG0, pingAt, putPlan, sendPings, startServer, testPlan } from './support/server.mjs';


let server;
let browser;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function signIn(page) {
  await page.getByLabel('Admin token').fill(ADMIN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('.relay-block[data-relay="flag"] tbody tr').first().waitFor();
}

const custody = async (relay) => (await (await fetch(`${server.url}/api/v1/events/e2e/relays/${relay}/custody`)).text())
  .trim().split('\n').map((l) => JSON.parse(l));

test('asks for the admin token, refuses a wrong one, remembers it for the tab', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e/console`);
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#problem', { hasText: 'not the admin token' }).waitFor();
  assert.equal(await page.locator('#app').isHidden(), true);

  await signIn(page);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('handoff.admin')), ADMIN);
  await page.reload();
  await page.locator('.relay-block[data-relay="flag"] tbody tr').first().waitFor();
  assert.equal(await page.locator('#login').isHidden(), true, 'signed in after a reload');

  // Every leg with its plan, ETA, delta and status; the late relay's alerts.
  assert.equal(await page.locator('.relay-block[data-relay="flag"] tbody tr').count(), 3);
  const row = await page.locator('.relay-block[data-relay="flag"] tbody tr').first().locator('td').allTextContents();
  assert.equal(row[1], 'Ann');
  assert.match(row[3], /CET|CEST/);
  assert.match(row[7], /current/);
  await page.locator('#alert-now li.overdue', { hasText: 'Late relay' }).waitFor();
  await page.locator('#alert-now li.silent', { hasText: 'Dee' }).waitFor();

  assertClean(seen, 'console');
  await context.close();
});

test('registers a phone: the token once, as text and QR codes, and it works', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e/console`);
  await signIn(page);
  await page.getByLabel('Device name').fill('ann-phone');
  await page.getByLabel('Carrier').selectOption('Ann');
  await page.getByRole('button', { name: 'Register' }).click();
  // The token arrives from the server after the click: wait for it, then read it.
  await page.locator('#new-token', { hasText: /^\s*[0-9a-f]{64}\s*$/ }).waitFor();
  const token = (await page.locator('#new-token').textContent()).trim();
  assert.match(token, /^[0-9a-f]{64}$/);
  for (const img of ['img.qr-osmand', 'img.qr-carrier']) {
    await page.waitForFunction((sel) => document.querySelector(sel)?.naturalWidth > 100, img);
  }
  const caption = await page.locator('.qr-pair figcaption').first().textContent();
  assert.ok(caption.includes(`${server.url}/osmand?id=${token}`), caption);

  // The token is a real device token: its pings are accepted for Ann.
  const res = await sendPings(server.url, token, [{ ...pingAt(LEG0, 0.3, 300), batt: 55 }]);
  assert.equal(res.accepted, 1);

  // The phone is listed; a report it sends that cannot be stored (a heartbeat with no
  // position) is answered 200 and counted where the operator sees it.
  const row = page.locator('#phones tr[data-device="ann-phone"]');
  // Listed as reporting, with the fix's age and the battery it sent.
  await page.getByRole('button', { name: 'Refresh the phones' }).click();
  await row.locator('td.online', { hasText: 'online' }).waitFor();
  assert.match(await row.locator('td.last-fix').textContent(), /^\d+ s ago$/);
  assert.equal(await row.locator('td.battery').textContent(), '55 %');
  await row.locator('td.dropped', { hasText: 'none' }).waitFor();
  // And on the map of phones, where its fix is, green (reporting), the view around it.
  const marker = page.locator('#phones-map .phone-marker[data-device="ann-phone"]');
  await marker.waitFor();
  assert.equal(await marker.getAttribute('data-online'), 'true');
  const fix = pingAt(LEG0, 0.3);
  const view = await page.evaluate(() => {
    const el = document.querySelector('#phones-map');
    const r = el.getBoundingClientRect();
    const m = document.querySelector('#phones-map .phone-marker[data-device="ann-phone"]').getBoundingClientRect();
    return { inside: m.left >= r.left && m.right <= r.right && m.top >= r.top && m.bottom <= r.bottom };
  });
  assert.ok(view.inside, `the marker at ${fix.lon},${fix.lat} is outside the map`);
  await marker.hover();
  await page.locator('.leaflet-tooltip', { hasText: /Ann \(ann-phone\) · reporting · fix \d+ s ago · battery 55 %/ }).waitFor();
  const beat = await fetch(`${server.url}/osmand?id=${token}&timestamp=${Math.floor(Date.now() / 1000)}&batt=50`);
  assert.equal(beat.status, 200);
  await page.getByRole('button', { name: 'Refresh the phones' }).click();
  await row.locator('td.dropped', { hasText: /^1 · last: no_position/ }).waitFor();

  // The same device again is refused: the error by the form, and the first token is gone from
  // the screen, so it cannot pass for a new one.
  await page.getByLabel('Device name').fill('ann-phone');
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('#device-error:not([hidden])').waitFor();
  assert.equal(await page.locator('#device-result').isHidden(), true);
  assert.equal(await page.locator('#new-token').count(), 0);

  // A new token for the phone (lost, or its token leaked): shown once; the old one is refused
  // from then on, the new one works.
  await row.getByRole('button', { name: 'New token' }).click();
  await page.locator('#device-result h3', { hasText: 'New token for ann-phone (Ann)' }).waitFor();
  const second = (await page.locator('#new-token').textContent()).trim();
  assert.match(second, /^[0-9a-f]{64}$/);
  assert.notEqual(second, token);
  const refused = await fetch(`${server.url}/api/v1/pings`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify([pingAt(LEG0, 0.31, 310)]),
  });
  assert.equal(refused.status, 401);
  assert.equal((await sendPings(server.url, second, [pingAt(LEG0, 0.32, 320)])).accepted, 1);

  // Revoking asks first; kept, nothing changes; confirmed, the row says so and the token is
  // refused.
  await page.getByRole('button', { name: 'Refresh the phones' }).click();
  await row.getByRole('button', { name: 'Revoke' }).click();
  await row.getByRole('group', { name: "Confirm revoking ann-phone's token" }).waitFor();
  await row.getByRole('button', { name: 'Keep it' }).click();
  assert.equal(await row.locator('.token-state').textContent().then((t) => t.startsWith('active')), true);
  await row.getByRole('button', { name: 'Revoke' }).click();
  await row.getByRole('button', { name: 'Yes, revoke it' }).click();
  await row.locator('.token-state.revoked').waitFor();
  await page.locator('#result', { hasText: 'Revoked the token of ann-phone (Ann).' }).waitFor();
  await row.getByRole('button', { name: 'Issue a token' }).waitFor();
  const gone = await fetch(`${server.url}/api/v1/pings`, {
    method: 'POST', headers: { Authorization: `Bearer ${second}`, 'Content-Type': 'application/json' },
    body: JSON.stringify([pingAt(LEG0, 0.33, 330)]),
  });
  assert.equal(gone.status, 401);

  // The QR route is admin-only.
  const anon = await fetch(`${server.url}/console/qr`, { method: 'POST', body: '{"text":"x"}' });
  assert.equal(anon.status, 401);

  await assertAccessible(page, 'console');
  assertClean(seen, 'console', [/409 \(Conflict\).*\/devices/]);
  await context.close();
});

test('a handoff recorded in the console shows on the live page within a second', async () => {
  const spectator = await open(browser, `${server.url}/e/e2e`);
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ann' }).waitFor();
  await spectator.page.locator('#conn', { hasText: 'Live' }).waitFor();
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e/console`);
  await signIn(page);

  const block = page.locator('.relay-block[data-relay="flag"]');
  const record = block.locator('button.record');
  assert.equal(await record.textContent(), 'Record handoff: Ann → Ben (leg 1 → 2)');
  const started = Date.now();
  await record.click();
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ben' }).waitFor({ timeout: 1000 });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 1000, `${elapsed} ms`);
  // The rest of the live page followed: the map's leg colours, the schedule, the summary.
  await spectator.page.locator('.stops[data-relay="flag"] .stop.next .stop-name', { hasText: 'Halfway Bridge' }).waitFor();
  await spectator.page.locator('#map-summary', { hasText: /held by Ben/ }).waitFor();

  await page.locator('#result', { hasText: 'Recorded: Ann → Ben' }).waitFor();
  const entries = await custody('flag');
  const handoff = entries.at(-1);
  assert.equal(handoff.kind, 'handoff');
  assert.equal(handoff.evidence.method, 'operator');
  await block.locator('tbody tr').first().locator('td', { hasText: '✓ verified: recorded by an operator' }).waitFor();

  // Correct its time, then void it: appended corrections; the live page goes back to Ann.
  const at = new Date(Date.now() - 60000);
  // A datetime-local value is wall-clock time in the browser's zone (Los Angeles here).
  const local = new Intl.DateTimeFormat('sv-SE', {
    timeZone: 'America/Los_Angeles', dateStyle: 'short', timeStyle: 'medium',
  }).format(at).replace(' ', 'T');
  await block.getByLabel('Correct its time to (your time)').fill(local);
  await block.getByRole('button', { name: 'Change time' }).click();
  await page.locator('#result', { hasText: 'Corrected the handoff after leg 1' }).waitFor();
  let last = (await custody('flag')).at(-1);
  assert.equal(last.kind, 'correction');
  assert.equal(last.corrects, handoff.seq);
  assert.ok(Math.abs(Date.parse(last.at) - at.getTime()) < 1500, `${last.at} vs ${at.toISOString()}`);
  const corrected = last.at;

  // A void asks first: one click appends nothing; "Keep it" leaves the handoff as it was.
  const before = (await custody('flag')).length;
  await block.locator('button.void').click();
  await block.locator('.confirm', { hasText: 'appends a correction' }).waitFor();
  await block.getByRole('button', { name: 'Keep it' }).click();
  assert.equal(await block.locator('.confirm').isHidden(), true);
  assert.equal((await custody('flag')).length, before, 'nothing appended without the confirmation');
  // Confirmed, with a note: appended, and the live page goes back to Ann.
  await block.getByLabel('Note for the log (optional)').fill('recorded on the wrong relay');
  await block.locator('button.void').click();
  await block.getByRole('button', { name: 'Yes, void it' }).click();
  await page.locator('#result', { hasText: 'Voided the handoff after leg 1' }).waitFor();
  last = (await custody('flag')).at(-1);
  assert.equal(last.void, true);
  assert.equal(last.note, 'recorded on the wrong relay');
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ann' }).waitFor({ timeout: 3000 });
  // The console reads the log again after the void; wait for that read, not for time.
  await block.locator('button.record', { hasText: 'Record handoff: Ann → Ben (leg 1 → 2)' }).waitFor({ timeout: 3000 });

  // Undo: the handoff is recorded again, at the time it had.
  await page.locator('#result').getByRole('button', { name: 'Undo' }).click();
  await page.locator('#result', { hasText: 'Undone: the handoff after leg 1 is recorded again' }).waitFor();
  const again = (await custody('flag')).at(-1);
  assert.equal(again.kind, 'handoff');
  assert.equal(again.from.leg, 0);
  assert.equal(Date.parse(again.at), Date.parse(corrected), `${again.at} vs ${corrected}`);
  await spectator.page.locator('.relay[data-relay="flag"] .holders', { hasText: 'Ben' }).waitFor({ timeout: 3000 });
  // Void it again so the tests after this one find Ann holding the flag.
  await block.locator('button.void').click();
  await block.getByRole('button', { name: 'Yes, void it' }).click();
  await page.locator('#result', { hasText: 'Voided the handoff after leg 1' }).waitFor();
  await block.locator('button.record', { hasText: 'Record handoff: Ann → Ben (leg 1 → 2)' }).waitFor({ timeout: 3000 });

  assertClean(seen, 'console');
  assertClean(spectator.seen, 'live page');
  await spectator.context.close();
  await context.close();
});

test('shifts the remaining plan by N minutes', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e/console`);
  await signIn(page);
  const plannedEnd = () => page.locator('.relay-block[data-relay="flag"] tbody tr').nth(2).locator('td').nth(4).textContent();
  const before = await plannedEnd();
  await page.getByLabel('Minutes').fill('7');
  await page.locator('#shift-relay').selectOption('flag');
  await page.getByRole('button', { name: 'Shift' }).click();
  await page.locator('#result', { hasText: 'by 7 min' }).waitFor();
  // The table is re-rendered as updates arrive: the cell may be absent for a moment.
  await page.waitForFunction((b) => {
    const cell = document.querySelector('.relay-block[data-relay="flag"] tbody tr:nth-child(3) td:nth-child(5)');
    return cell !== null && cell.textContent !== b;
  }, before);
  const toMin = (s) => { const m = s.match(/(\d\d):(\d\d)/); return Number(m[1]) * 60 + Number(m[2]); };
  assert.equal((toMin(await plannedEnd()) - toMin(before) + 1440) % 1440, 7);
  const entries = await (await fetch(`${server.url}/api/v1/events/e2e/relays/flag/custody`)).text();
  assert.match(entries.trim().split('\n').at(-1), /"kind":"shift"/);

  // With a note: kept in the log's entry.
  await page.getByLabel('Minutes').fill('-2');
  await page.locator('#shift-note').fill('the bridge reopened');
  await page.getByRole('button', { name: 'Shift' }).click();
  await page.locator('#result', { hasText: 'by -2 min' }).waitFor();
  assert.equal((await custody('flag')).at(-1).note, 'the bridge reopened');
  // A refused shift: the error next to the form, and the earlier success gone.
  await page.getByLabel('Minutes').fill('20000');
  await page.getByRole('button', { name: 'Shift' }).click();
  await page.locator('#shift-error', { hasText: 'at most a week' }).waitFor();
  assert.equal(await page.locator('#result').isHidden(), true, 'a stale success under an error');
  assert.equal(await page.locator('#problem').isHidden(), true, 'the error is next to the form, not at the top');

  // The legs table fits a 1280 px screen.
  await page.setViewportSize({ width: 1280, height: 800 });
  const overflow = await page.evaluate(() => [...document.querySelectorAll('.relay-block[open] .table-scroll')]
    .map((el) => el.scrollWidth - el.clientWidth));
  assert.ok(overflow.length > 0 && overflow.every((d) => d <= 0), `the legs tables overflow by ${overflow} px`);
  await mkdir(SHOTS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${SHOTS}/console-desktop.png` });

  await page.setViewportSize(PHONE);
  assert.deepEqual(await layoutProblems(page), []);
  assertClean(seen, 'console', [/400 \(Bad Request\).*\/shift/]);
  await context.close();
});

test('with a public delay the console follows the undelayed stream: a handoff recorded elsewhere shows at once', async () => {
  const toml = testPlan('e2e-delayed').replace(
    'name = "Test relay across Paris"\n',
    'name = "Test relay across Paris"\npublic_delay = "5m"\n',
  );
  assert.ok(toml.includes('public_delay'));
  await putPlan(server.url, 'e2e-delayed', toml);
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e-delayed/console`);
  const streamed = page.waitForRequest((req) => req.url().endsWith('/api/v1/events/e2e-delayed/stream')
    && req.headers().authorization === `Bearer ${ADMIN}`);
  await signIn(page);
  await streamed;
  await page.locator('#conn', { hasText: 'Live' }).waitFor();
  const record = page.locator('.relay-block[data-relay="flag"] button.record');
  assert.equal(await record.textContent(), 'Record handoff: Ann → Ben (leg 1 → 2)');

  // Another operator records the handoff; spectators learn of it in five minutes, this console
  // from its stream at once (nothing else makes it read the log again).
  const res = await fetch(`${server.url}/api/v1/events/e2e-delayed/relays/flag/handoffs`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ from_leg: 0 }),
  });
  assert.equal(res.status, 201, await res.text());
  await page.locator('.relay-block[data-relay="flag"] button.record', { hasText: 'Ben →' }).waitFor({ timeout: 3000 });

  assertClean(seen, 'console');
  await context.close();
});
