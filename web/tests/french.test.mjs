// The pages in French, against a real server: a browser whose language is French gets the
// live page, the carrier page, the events list and the console in French (`<html lang="fr">`,
// real words, times on a 24-hour clock, dates as "lun. 14 juil.", decimal commas), zones
// still named CET/PDT; the switch goes back to English in place (the page keeps its state)
// and the choice is remembered across a reload; `?lang=` in the address wins. And in French,
// whose words are longer, nothing overflows or overlaps on a phone or a desktop, and axe
// finds nothing serious.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { assertAccessible, assertClean, DESKTOP, launch, layoutProblems, open, PHONE, SHOTS } from './support/browser.mjs';
import { ADMIN, LEG0, LEG2, pingAt, putPlan, registerDevice, sendPings, startServer, testPlan } from './support/server.mjs';


let server;
let browser;
let ann;

before(async () => {
  server = await startServer();
  await putPlan(server.url, 'e2e', testPlan());
  ann = await registerDevice(server.url, 'e2e', 'ann-phone', 'Ann');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page in a browser whose language is French (its viewer in Los Angeles, as open() sets). */
const french = (url, options = {}) => open(browser, url, { locale: 'fr-FR', ...options });
/** Text with French non-breaking spaces (before ":", inside « ») as plain ones, to compare. */
const plain = (s) => s.replace(/[\u00a0\u202f]/g, ' ').trim();
const text = async (locator) => plain(await locator.textContent());
const lang = (page) => page.evaluate(() => document.documentElement.lang);
const flag = (page) => page.locator('.relay[data-relay="flag"]');
const HOUR = '([01]\\d|2[0-3]):[0-5]\\d';
// A short French date: "mer. 2 déc." (weekday and month abbreviated, with their dots).
const DAY = '[a-zéû]+\\. \\d{1,2} [a-zéû]+\\.?';

test('the live page in French from the browser; the switch goes back to English in place and is remembered', async () => {
  const { page, seen, context } = await french(`${server.url}/e/e2e`);
  await flag(page).locator('.holders', { hasText: 'Ann' }).waitFor();
  await page.locator('#conn', { hasText: 'En direct' }).waitFor();
  assert.equal(await lang(page), 'fr');
  assert.equal(await page.title(), 'Test relay across Paris · en direct · handoff');

  // The page's own words in French; the plan's names as they are.
  assert.equal(await text(page.locator('#glance-holder')), 'Porté par Ann · course à pied');
  assert.equal(await text(page.locator('#glance-next-label')), 'Prochain relais');
  // With the band the handoff is likely in, on a 24-hour clock.
  assert.match(await text(page.locator('#glance-next')), /^pour Ben, à Exchange Square · dans (\d+ min( \d+ s)?|\d+ s) \(([01]\d|2[0-3]):[0-5]\d–([01]\d|2[0-3]):[0-5]\d\) · (à l’heure|en (retard|avance) de \d+ min)$/);
  assert.equal(await text(page.locator('#follow')), 'Suivre « test flag »');
  assert.equal(await text(page.locator('#sched-h')), 'Horaires de passage');
  assert.equal(await text(page.locator('#fit')), 'Tout le parcours');
  assert.equal(await text(flag(page).locator('.status')), 'Porté par Ann · course à pied · étape 1 sur 3');
  await page.locator('.relay[data-relay="late"] .badge', { hasText: 'Hors délai' }).waitFor();
  // Distances with a decimal comma; the percentage as French writes it.
  assert.match(await text(flag(page).locator('.progress-text')), /^Étape 1 : \d+ m sur 2,\d km \(\d+ %\)$/);
  // Times on a 24-hour clock, each zone by its abbreviation, the viewer's "chez vous".
  const next = await text(page.locator('.stops[data-relay="flag"] .stop.next .stop-time'));
  // (The viewer's time carries its date when that is not the viewer's today: late in the
  // evening in Los Angeles, the next morning in Paris.)
  assert.match(next, new RegExp(`^Prochain : ${HOUR} (CET|CEST) \\((${DAY}, )?${HOUR} (PST|PDT) chez vous\\)$`));
  assert.deepEqual(await page.locator('.stops[data-relay="flag"] .stop-name').allTextContents(),
    ['Start Line', 'Exchange Square', 'Halfway Bridge', 'Relais 2 → 3', 'Finish Park']);
  // A date as "jeu. 3 déc.": the milestone's, a day from now.
  const day = await text(page.locator('#countdown-list li', { hasText: 'Closing party' }).locator('time'));
  assert.match(day, new RegExp(`^(lun|mar|mer|jeu|ven|sam|dim)\\. \\d{1,2} [a-zéû]{3,5}\\.?, ${HOUR} (CET|CEST)$`));
  assert.match(await text(page.locator('#countdown-list .cd-left')), /^(23 h 59 min|1 j)$/);
  // The map's words: the legend, the basemap's credit, the zoom buttons' names.
  assert.match(await text(page.locator('.legend')), /Étape en cours/);
  assert.match(await text(page.locator('.leaflet-control-attribution')), /Fond de carte : Natural Earth/);
  assert.equal(await page.locator('.leaflet-control-zoom-in').getAttribute('aria-label'), 'Zoom avant');

  // The viewer takes the map and switches to English: the page is not reloaded, the map
  // stays where they put it and out of follow mode, and the words are English again.
  await page.getByRole('button', { name: 'Tout le parcours' }).click();
  await page.locator('#follow-off').waitFor();
  // The map has got there: the whole flag in view, and still.
  await page.waitForFunction(([first, last]) => {
    const [w, s, e, n] = document.querySelector('#map').dataset.viewBounds.split(',').map(Number);
    const inside = ([lon, lat]) => lon >= w && lon <= e && lat >= s && lat <= n;
    return inside(first) && inside(last) && !/leaflet-(zoom|pan)-anim/.test(document.querySelector('.leaflet-map-pane').className);
  }, [LEG0[0], LEG2[LEG2.length - 1]]);
  const bounds = await page.locator('#map').getAttribute('data-view-bounds');
  await page.evaluate(() => { window.notReloaded = true; });
  await page.getByLabel('Langue').selectOption('en');
  await page.locator('#glance-holder', { hasText: 'Held by Ann · run' }).waitFor();
  assert.equal(await lang(page), 'en');
  assert.ok(await page.evaluate(() => window.notReloaded), 'switched in place');
  assert.equal(await page.locator('#follow').getAttribute('aria-pressed'), 'false');
  assert.equal(await page.locator('#follow-off').textContent(), 'You moved the map');
  assert.equal(await page.locator('#map').getAttribute('data-view-bounds'), bounds);
  assert.equal(await page.locator('#follow-label').textContent(), 'Follow the test flag');
  assert.equal(await page.locator('#sched-h').textContent(), 'When does it pass here');
  assert.equal(await page.locator('#conn').textContent(), 'Live');
  assert.equal(await page.title(), 'Test relay across Paris · live · handoff');
  assert.match(await flag(page).locator('.next-handoff .countdown').textContent(), /^in \d+ (min|s)/);
  assert.match(await page.locator('.stops[data-relay="flag"] .stop.next .stop-time').textContent(), /(CET|CEST).*(PST|PDT), your time/);
  assert.match(await page.locator('.leaflet-control-attribution').textContent(), /Basemap: Natural Earth/);
  assert.doesNotMatch(await page.locator('.leaflet-control-attribution').textContent(), /Fond de carte/);
  assert.equal(await page.getByLabel('Language').inputValue(), 'en');

  // Remembered: English again after a reload, though the browser still prefers French.
  await page.reload();
  await flag(page).locator('.holders', { hasText: 'Ann' }).waitFor();
  assert.equal(await lang(page), 'en');
  assert.equal(await page.locator('#glance-next-label').textContent(), 'Next handoff');
  assert.equal(await page.evaluate(() => localStorage.getItem('handoff.lang')), 'en');
  assertClean(seen, 'live page (French, then English)');
  await context.close();
});

test('?lang= in the address wins over the saved choice and the browser; the switch drops it', async () => {
  const { page, seen, context } = await open(browser, `${server.url}/e/e2e?lang=fr`);
  await flag(page).locator('.holders', { hasText: 'Ann' }).waitFor();
  assert.equal(await lang(page), 'fr', 'an English browser, but the address asks for French');
  assert.equal(await text(page.locator('#now-h')), 'En ce moment');
  await page.getByLabel('Langue').selectOption('en');
  await page.locator('#now-h', { hasText: 'Now' }).waitFor();
  assert.equal(new URL(page.url()).search, '', 'the switch replaced ?lang=');
  // A saved English is overruled by an address asking for French, and only for that address.
  await page.goto(`${server.url}/e/e2e?lang=fr`);
  await page.locator('#now-h', { hasText: 'En ce moment' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('handoff.lang')), 'en');
  await page.goto(`${server.url}/e/e2e`);
  await page.locator('#now-h', { hasText: 'Now' }).waitFor();
  assertClean(seen, 'live page (?lang=)');
  await context.close();
});

test('the events list in French', async () => {
  const { page, seen, context } = await french(`${server.url}/`);
  await page.locator('#events .card').first().waitFor();
  assert.equal(await lang(page), 'fr');
  assert.equal(await page.title(), 'Événements · handoff');
  assert.equal(await text(page.locator('h1')), 'Relais sur ce serveur');
  assert.match(await text(page.locator('#events .card p').first()), new RegExp(`^2 relais · départ .*${HOUR} (PST|PDT) \\(chez vous\\)$`));
  assert.equal(await text(page.locator('#events .card .button').first()), 'Carte en direct');
  // The carrier page's link is kept inside the translated sentence.
  assert.equal(await page.locator('#carrier-h + p a[href="/carrier"]').textContent(), 'page du porteur');
  assert.match(await text(page.locator('#carrier-h + p')), /^Ouvrez la page du porteur sur votre téléphone/);
  assertClean(seen, 'events list (French)');
  await context.close();
});

/** Ann's phone, `fraction` along her leg, in a French browser. */
const phone = (fraction, options = {}) => {
  const p = pingAt(LEG0, fraction);
  return french(`${server.url}/carrier?token=${ann}`, {
    viewport: PHONE, permissions: ['geolocation'], geolocation: { longitude: p.lon, latitude: p.lat, accuracy: 10 }, ...options,
  });
};

test('the carrier page in French; switched to English while sharing, it carries on sharing', async () => {
  const { page, seen, context } = await phone(0.3);
  await page.locator('#leg-info .holders').waitFor();
  assert.equal(await lang(page), 'fr');
  assert.equal(await text(page.locator('#leg-info .holders')), 'Vous portez « test flag »');
  assert.equal(await text(page.locator('#who')), 'Ann · porteur');
  assert.match(await text(page.locator('#next-exchange')), /^Exchange Square · passez le relais à Ben$/);
  assert.match(await text(page.locator('#distance')), /^\d,\d km par le parcours$/);
  // The time, the viewer's, the band it is likely in (four times in five), and the countdown.
  assert.match(await text(page.locator('#eta')), new RegExp(`^${HOUR} (CET|CEST) \\((${DAY}, )?${HOUR} (PST|PDT) chez vous\\) \\(${HOUR}–${HOUR}\\) · dans \\d+ min`));
  // Holding the flag and sharing nothing: the guidance says so, naming the French button.
  assert.equal(await text(page.locator('[data-warning="not-sharing"]')),
    'Vous portez « test flag » mais ce téléphone ne partage pas sa position : appuyez sur « Partager ma position ».');

  // Nothing sent yet: the empty queue does not read "all sent" before the phone's first fix.
  await page.locator('#queue-status', { hasText: 'Aucune position envoyée pour l’instant.' }).waitFor();
  await page.getByRole('button', { name: 'Partager ma position' }).click();
  await page.locator('#queue-status', { hasText: 'Toutes les positions sont envoyées.' }).waitFor();
  await page.locator('#share-status', { hasText: 'dernière position' }).waitFor();
  assert.match(await text(page.locator('#share-status')), new RegExp(`^Partage en cours · dernière position à ${HOUR} (PST|PDT) \\(±10 m\\)$`));
  await page.locator('[data-warning="not-sharing"]').waitFor({ state: 'detached' });

  // English, in place: still sharing, the same queue, the words English.
  await page.evaluate(() => { window.notReloaded = true; });
  await page.getByLabel('Langue').selectOption('en');
  await page.locator('#leg-info .holders', { hasText: 'You hold the test flag' }).waitFor();
  assert.equal(await lang(page), 'en');
  assert.ok(await page.evaluate(() => window.notReloaded));
  assert.equal(await page.locator('#share').textContent(), 'Stop sharing');
  assert.equal(await page.locator('#share').getAttribute('aria-pressed'), 'true');
  assert.match(await page.locator('#share-status').textContent(), /^Sharing · last fix /);
  assert.equal(await page.locator('#queue-status').textContent(), 'All positions sent.');
  assert.match(await page.locator('#next-exchange').textContent(), /Exchange Square · hand to Ben/);
  assert.equal(await page.locator('#who').textContent(), 'Ann · carrier');
  // And French again: the sharing line says the last fix in French at once.
  await page.getByLabel('Language').selectOption('fr');
  await page.locator('#share', { hasText: 'Arrêter le partage' }).waitFor();
  assert.match(await text(page.locator('#share-status')), /^Partage en cours · dernière position à /);
  assertClean(seen, 'carrier page (French)');
  await context.close();
});

/** Signs in to the console, in French. */
async function signIn(page) {
  await page.getByLabel('Jeton d’administration').fill(ADMIN);
  await page.getByRole('button', { name: 'Se connecter' }).click();
  await page.locator('.relay-block[data-relay="flag"] tbody tr').first().waitFor();
}

test('the console in French; the switch reloads it in English, still signed in', async () => {
  // Ann's phone reports (with its battery) so the list and the map of phones have a fix.
  await sendPings(server.url, ann, [{ ...pingAt(LEG0, 0.3, 0), batt: 55 }]);
  const { page, seen, context } = await french(`${server.url}/e/e2e/console`);
  assert.equal(await lang(page), 'fr');
  assert.equal(await text(page.locator('#login-h')), 'Connexion');
  await signIn(page);
  assert.equal(await text(page.locator('#event-name')), 'Console : Test relay across Paris');
  assert.equal(await page.title(), 'Test relay across Paris · console · handoff');
  const block = page.locator('.relay-block[data-relay="flag"]');
  assert.deepEqual(await block.locator('thead th').allTextContents(),
    ['Étape', 'Porteurs', 'Mode', 'Départ prévu', 'Fin prévue', 'Fin estimée / réelle', 'Δ', 'État', 'Relais']);
  const row = (await block.locator('tbody tr').first().locator('td').allTextContents()).map(plain);
  assert.equal(row[1], 'Ann');
  assert.equal(row[2], 'course à pied');
  assert.match(row[3], new RegExp(`^${HOUR} (CET|CEST)$`), 'a planned start on a 24-hour clock');
  assert.match(row[6], /^(à l’heure|en (retard|avance) de \d+ min)$/);
  assert.match(row[7], /^en cours/);
  assert.equal(await text(block.locator('button.record')), 'Enregistrer le relais : Ann → Ben (étape 1 → 2)');
  await page.locator('#alert-now li.overdue', { hasText: 'Late relay, étape 1 (Dee) dépasse sa plage prévue.' }).waitFor();
  // The phones: reporting, the fix's age and the battery in French, and the map's tooltip.
  const phoneRow = page.locator('#phones tr[data-device="ann-phone"]');
  await phoneRow.locator('td.online', { hasText: 'en ligne' }).waitFor();
  assert.match(await text(phoneRow.locator('td.last-fix')), /^il y a \d+ (s|min)$/);
  assert.equal(await text(phoneRow.locator('td.battery')), '55 %');
  assert.equal(await text(phoneRow.locator('td.dropped')), 'aucun');
  await page.locator('#phones-map .phone-marker[data-device="ann-phone"]').hover();
  await page.locator('.leaflet-tooltip', { hasText: /Ann \(ann-phone\) · émet · position il y a \d+ (s|min) · batterie 55/ }).waitFor();

  // English: the console reloads, the admin token kept for the tab.
  await page.getByLabel('Langue').selectOption('en');
  await block.locator('button.record', { hasText: 'Record handoff: Ann → Ben (leg 1 → 2)' }).waitFor();
  assert.equal(await lang(page), 'en');
  assert.equal(await page.locator('#event-name').textContent(), 'Console: Test relay across Paris');
  assert.equal(await page.locator('#login').isHidden(), true);
  assertClean(seen, 'console (French, then English)');
  await context.close();
});

// Longer words, same layout: every page on a phone and a desktop, in French.
const PAGES = [
  ['live', (base) => `${base}/e/e2e`, async (page) => {
    await flag(page).locator('.holders').waitFor();
    await page.locator('.chart[data-relay="flag"] svg').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('.leaflet-world-pane path').length > 20);
  }],
  ['carrier', (base) => `${base}/carrier?token=${ann}`, async (page) => {
    await page.locator('#leg-info .holders').waitFor();
  }],
  ['events', (base) => `${base}/`, async (page) => {
    await page.locator('#events .card').first().waitFor();
  }],
  ['console', (base) => `${base}/e/e2e/console`, async (page) => {
    await signIn(page);
    await page.locator('#phones tr[data-device="ann-phone"]').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#phones-map .leaflet-world-pane path').length > 20);
  }],
];

for (const [name, viewport] of [['phone', PHONE], ['desktop', DESKTOP]]) {
  for (const [what, url, ready] of PAGES) {
    test(`${what} page in French on a ${name}: no overflow, no overlap, accessible`, async () => {
      const { page, seen, context } = await french(url(server.url), { viewport });
      await ready(page);
      assert.equal(await lang(page), 'fr');
      assert.deepEqual(await layoutProblems(page), [], 'first screen');
      await mkdir(SHOTS, { recursive: true });
      await page.screenshot({ path: `${SHOTS}/${what}-fr-${name}.png` });
      await page.evaluate(() => {
        document.scrollingElement.scrollTo(0, 1e6);
        document.querySelector('.panels')?.scrollTo(0, 1e6);
      });
      assert.deepEqual(await layoutProblems(page), [], 'scrolled to the bottom');
      await assertAccessible(page, `${what} page in French (${name})`);
      assertClean(seen, `${what} page in French (${name})`);
      await context.close();
    });
  }
}
