// `handoff demo` in the browser: the flag handover runs at high speed to its end on the real
// server. While it runs, the live page and the console never show a name handed to itself
// (Tom Cruise's motorcycle, flight and parachute are one stint: no "Tom Cruise → Tom Cruise"),
// and the console's record button skips his changes of mode; at the end, the live page shows
// both relays finished and the countdown to the LA28 Opening Ceremony ticking.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertClean, launch, open } from './support/browser.mjs';
import { startDemo } from './support/demo.mjs';

let demo;
let base;
let admin;
let browser;
/** Resolves when the demo says the relay is over. */
let over;

before(async () => {
  demo = await startDemo({ speed: 12 });
  ({ base, admin, over } = demo);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/**
 * Samples the page's text every 100 ms: lines in which a name is handed to itself, and the
 * labels the flag's record button had (in the console).
 */
const watchSelfHandoffs = (page) => page.evaluate(() => {
  window.selfHandoffs = [];
  window.recordButtons = new Set();
  setInterval(() => {
    for (const l of document.body.innerText.split('\n')) {
      if (/(\S.*) → \1/.test(l)) window.selfHandoffs.push(l);
    }
    for (const b of document.querySelectorAll('.relay-block[data-relay="flag"] button.record')) window.recordButtons.add(b.textContent);
  }, 100);
});

test('while the demo runs, no page hands a carrier to themself', async () => {
  const live = await open(browser, `${base}/e/flag-handover`);
  await live.page.locator('article.relay[data-relay="flag"]').waitFor();
  await watchSelfHandoffs(live.page);
  const konsole = await open(browser, `${base}/e/flag-handover/console`);
  await konsole.page.getByLabel('Admin token').fill(admin);
  await konsole.page.getByRole('button', { name: 'Sign in' }).click();
  await konsole.page.locator('.relay-block[data-relay="flag"] tbody tr').first().waitFor();
  await watchSelfHandoffs(konsole.page);
  await over;
  // The last samples, after the finish.
  await live.page.waitForFunction(() => document.querySelector('article.relay[data-relay="flag"] .holders')?.textContent === 'Finished');
  assert.deepEqual(await live.page.evaluate(() => window.selfHandoffs), [], 'live page');
  assert.deepEqual(await konsole.page.evaluate(() => window.selfHandoffs), [], 'console');
  // The record button went from the stage straight to the end of Tom Cruise's stint.
  const buttons = await konsole.page.evaluate(() => [...window.recordButtons]);
  assert.ok(!buttons.some((b) => /Tom Cruise → Tom Cruise|leg [23] → /.test(b)), buttons.join('\n'));
  assert.ok(buttons.some((b) => b.startsWith('Record handoff: Tom Cruise → Jagger Eaton (leg 4 → 5)')), buttons.join('\n'));
  // The flag's legs table (long names, every handoff labelled) fits a 1280 px screen.
  await konsole.page.setViewportSize({ width: 1280, height: 800 });
  const overflow = await konsole.page.evaluate(() => [...document.querySelectorAll('.relay-block[open] .table-scroll')]
    .map((el) => el.scrollWidth - el.clientWidth));
  assert.ok(overflow.length > 0 && overflow.every((d) => d <= 0), `the legs tables overflow by ${overflow} px at 1280 px`);
  assertClean(live.seen, 'live page during the demo');
  assertClean(konsole.seen, 'console during the demo');
  await live.context.close();
  await konsole.context.close();
});

test('the live page shows the finished handover and the LA28 countdown', async () => {
  await over;
  // The flag's log: the stage's end, Tom Cruise's stint's end (no entry between his modes),
  // the skater's, the cyclist's and the arrival, after the genesis.
  assert.match(demo.out(), /custody log: 6 entries, every hash and link verified/);
  assert.doesNotMatch(demo.out(), /not verified|BROKEN/);
  const { page, seen } = await open(browser, `${base}/e/flag-handover`);
  for (const relay of ['flag', 'stage']) {
    await page.locator(`article.relay[data-relay="${relay}"]`).getByText('Finished', { exact: true }).waitFor();
  }
  // Over, the flag is still on the map: at the end of its relay, named, with nobody's name.
  const flagMarker = page.locator('.position-marker[data-relay="flag"]');
  await flagMarker.waitFor();
  assert.equal(await flagMarker.getAttribute('data-holder'), null);
  // (The stage's marker is at the same place, on top: the flag's tooltip is opened directly.)
  await flagMarker.dispatchEvent('mouseover');
  await page.locator('.leaflet-tooltip', { hasText: /^Olympic flag · finished at / }).waitFor();
  // The list is drawn first and the time left filled in by the page's ticker, and the list is
  // redrawn on every snapshot: so each wait reads the DOM afresh until the text it needs is
  // there, rather than holding an element or waiting for a fixed time.
  const name = 'LA28 Opening Ceremony';
  const shown = await page.waitForFunction((milestone) => {
    const li = [...document.querySelectorAll('#countdown-list li')].find((x) => x.textContent.includes(milestone));
    const text = li?.querySelector('.cd-left')?.textContent ?? '';
    return /\d/.test(text) && text;
  }, name);
  const first = await shown.jsonValue();
  // Years away, it counts in days, with its unit; the day itself is a date with its year
  // (the plan gives only a date), not a made-up midnight.
  assert.match(first, /^\d[\d,.\s\u202f]* days$/, `the countdown: ${first}`);
  const li = page.locator('#countdown-list li', { hasText: name });
  assert.match(await li.locator('.when').textContent(), /^\w{3},? 14 Jul 2028$|^\w{3},? Jul 14, 2028$/);
  assert.doesNotMatch(await li.textContent(), /\d\d:\d\d/);
  assertClean(seen, 'live page after the demo');
});
