// Headless Debian Chromium driven by playwright-core, and the checks every page gets: no
// console errors, no request leaving 127.0.0.1, no serious accessibility violation (axe-core
// run inside the page), no horizontal scroll and no overlapping controls.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Where the tests save their screenshots: an ignored folder, so a test run leaves the tree
 * clean, unless HANDOFF_SCREENSHOTS names another (`scripts/screenshots` updates the README's
 * pictures with HANDOFF_SCREENSHOTS=docs/screenshots).
 */
export const SHOTS = process.env.HANDOFF_SCREENSHOTS
  ? resolve(process.env.HANDOFF_SCREENSHOTS)
  : resolve(dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
}

/**
 * A page in its own browser context (own storage, own connections), watched: `seen.errors`
 * collects console errors and uncaught exceptions, `seen.foreign` every request not to
 * 127.0.0.1. `setup(context)` runs before the page loads (to route requests, say).
 */
export async function open(browser, url, { viewport = DESKTOP, setup, ...options } = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'America/Los_Angeles', ...options });
  // Bounded: a page that never shows what a test waits for fails in seconds, not minutes.
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const seen = { errors: [], foreign: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') seen.errors.push(`console: ${msg.text()} (${msg.location().url})`);
  });
  page.on('pageerror', (e) => seen.errors.push(`exception: ${e.message}`));
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (u.hostname !== '127.0.0.1') seen.foreign.push(req.url());
  });
  await setup?.(context);
  await page.goto(url);
  return { context, page, seen };
}

/**
 * The checks every opened page must pass at the end of a test. `provoked`: patterns of the
 * console errors the test caused on purpose (the browser logs a refused request), each of
 * which must have occurred.
 */
export function assertClean(seen, what, provoked = []) {
  for (const p of provoked) assert.ok(seen.errors.some((e) => p.test(e)), `${what}: no error ${p}`);
  const errors = seen.errors.filter((e) => !provoked.some((p) => p.test(e)));
  assert.deepEqual(errors, [], `${what}: console errors`);
  assert.deepEqual(seen.foreign, [], `${what}: requests that left 127.0.0.1`);
}

/** axe-core in the page; fails on serious or critical violations. */
export async function assertAccessible(page, what) {
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') does not
  // apply, and the page itself never loads axe.
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: accessibility violations`);
}

/**
 * Layout problems: a horizontal scroll, a control sticking out of the viewport, or two
 * visible controls overlapping (one inside the other is fine).
 */
export async function layoutProblems(page) {
  return page.evaluate(() => {
    const out = [];
    const root = document.scrollingElement;
    if (root.scrollWidth > root.clientWidth + 1) out.push(`horizontal scroll: ${root.scrollWidth} > ${root.clientWidth}`);
    const vw = root.clientWidth;
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) return false;
      for (let e = el; e; e = e.parentElement) {
        const s = getComputedStyle(e);
        if (s.display === 'none' || s.visibility === 'hidden' || s.clip === 'rect(0px, 0px, 0px, 0px)') return false;
      }
      return r.bottom + root.scrollTop > 0;
    };
    const describe = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''} "${(el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30)}"`;
    const controls = [...document.querySelectorAll('button, a[href], input, select, textarea, summary, [role=button]')]
      .filter(visible)
      .map((el) => ({ el, r: el.getBoundingClientRect() }));
    for (const { el, r } of controls) {
      if (r.left < -1 || r.right > vw + 1) out.push(`outside the viewport: ${describe(el)} (${Math.round(r.left)}..${Math.round(r.right)})`);
    }
    for (let i = 0; i < controls.length; i++) {
      for (let j = i + 1; j < controls.length; j++) {
        const a = controls[i];
        const b = controls[j];
        if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
        // A label's checkbox, or a link inside a button-like element, is one control.
        if (a.el.closest('label') && a.el.closest('label') === b.el.closest('label')) continue;
        const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
        const hgt = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
        if (w > 1 && hgt > 1) out.push(`overlap: ${describe(a.el)} and ${describe(b.el)}`);
      }
    }
    return out;
  });
}

/** The centre of an element on the screen. */
export async function centre(locator) {
  const b = await locator.boundingBox();
  assert.ok(b, 'element has no box');
  return { x: b.x + b.width / 2, y: b.y + b.height / 2 };
}
