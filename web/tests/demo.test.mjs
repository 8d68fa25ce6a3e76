// `handoff demo` in the browser: the flag handover runs at high speed to its end on the real
// server, and the live page shows both relays finished and the countdown to the LA28 Opening
// Ceremony ticking.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { assertClean, launch, open } from './support/browser.mjs';
import { BIN } from './support/server.mjs';

let demo;
let base;
let dir;
let browser;
let out = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'handoff-demo-'));
  demo = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--speed', '12', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  demo.stderr.on('data', (d) => { out += d; });
  // Wait (bounded) for the demo to say the relay is over; it keeps serving until stopped.
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the demo did not finish in 120 s:\n${out}`)), 120000);
    demo.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/live page\s+(http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) base = m[1];
      if (out.includes('The relay is over')) {
        clearTimeout(timer);
        ok();
      }
    });
    demo.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the demo exited (${code}) early:\n${out}`));
    });
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    const exited = new Promise((ok) => demo.on('exit', ok));
    demo.kill('SIGINT');
    const killer = setTimeout(() => demo.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  }
  await rm(dir, { recursive: true, force: true });
});

test('the live page shows the finished handover and the LA28 countdown', async () => {
  assert.match(out, /custody log: 8 entries, every hash and link verified/);
  assert.doesNotMatch(out, /not verified|BROKEN/);
  const { page, seen } = await open(browser, `${base}/e/flag-handover`);
  for (const relay of ['flag', 'stage']) {
    await page.locator(`article.relay[data-relay="${relay}"]`).getByText('Finished', { exact: true }).waitFor();
  }
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
