// The pages' dictionary and formats, in Node (no browser): every message in both languages
// with the same placeholders, every key the pages use defined (and none left unused), the
// choice of language, plurals, French countdowns and delays, and dates, times and numbers
// formatted by the chosen locale with the zones still named by their abbreviations.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { formatDistance } from '../src/js/geo.js';
import { chooseLanguage, localeFor, msg, msgParts, setLanguage, word } from '../src/js/i18n.js';
import { MESSAGES } from '../src/js/messages.js';
import { ago, clock, countdown, dateOnly, delta, span, zoneName } from '../src/js/time.js';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '../src');

afterEach(() => setLanguage('en'));

const placeholders = (entry) => {
  const forms = typeof entry === 'string' ? [entry] : Object.values(entry);
  return forms.map((f) => [...f.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(','));
};

test('every message is in both languages, with the same placeholders and plural forms', () => {
  const { en, fr } = MESSAGES;
  assert.deepEqual(Object.keys(fr).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.equal(typeof fr[key], typeof en[key], `${key}: a plural in one language only`);
    if (typeof en[key] === 'object') {
      for (const lang of ['en', 'fr']) {
        assert.ok(MESSAGES[lang][key].one && MESSAGES[lang][key].other, `${key} (${lang}): one and other forms`);
      }
    }
    // Every form of both languages takes the same placeholders.
    const all = new Set([...placeholders(en[key]), ...placeholders(fr[key])]);
    assert.equal(all.size, 1, `${key}: placeholders differ: ${[...all].join(' | ')}`);
    assert.notEqual(fr[key], '', `${key}: empty in French`);
  }
});

/** The sources of the pages: their scripts (not the dictionary) and their HTML. */
function sources() {
  const js = readdirSync(join(SRC, 'js')).filter((f) => f.endsWith('.js') && f !== 'messages.js')
    .map((f) => readFileSync(join(SRC, 'js', f), 'utf8'));
  const html = readdirSync(SRC).filter((f) => f.endsWith('.html')).map((f) => readFileSync(join(SRC, f), 'utf8'));
  return { js: js.join('\n'), html: html.join('\n') };
}

// Keys looked up by a computed name: `word('mode', leg.mode)` and the time units.
const COMPUTED = /^(mode|status|legStatus)\.|^time\.(s|min|h|d)$/;

test('every key the pages use is defined, and every defined key is used', () => {
  const { js, html } = sources();
  const groups = new Set(Object.keys(MESSAGES.en).map((k) => k.split('.')[0]));
  const used = new Set();
  for (const [, key] of js.matchAll(/'([a-zA-Z]+\.[a-zA-Z]+)'/g)) {
    if (groups.has(key.split('.')[0])) used.add(key);
  }
  for (const [, key] of html.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) {
    if (!/^[a-z]+$/.test(key)) used.add(key); // not a slot's name
  }
  for (const key of used) assert.ok(key in MESSAGES.en, `${key} is used but not defined`);
  const unused = Object.keys(MESSAGES.en).filter((k) => !used.has(k) && !COMPUTED.test(k));
  assert.deepEqual(unused, [], 'defined but never used');
  // Each computed group covers every mode and status the server sends.
  for (const mode of ['stage', 'walk', 'run', 'bike', 'skateboard', 'motorcycle', 'car', 'flight', 'parachute', 'rappel', 'boat', 'other']) {
    assert.ok(`mode.${mode}` in MESSAGES.en, mode);
  }
});

test('the pages\' HTML says in English what the dictionary says (shown before the script runs)', () => {
  const { html } = sources();
  const decode = (v) => v.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"');
  let checked = 0;
  for (const [, tag, rest] of html.matchAll(/<([a-z0-9]+)(\s[^>]*)>/g)) {
    const attrs = Object.fromEntries([...rest.matchAll(/([a-z-]+)(?:="([^"]*)")?/g)].map(([, k, v]) => [k, decode(v ?? '')]));
    for (const [name, key] of Object.entries(attrs)) {
      const attr = name.match(/^data-i18n-(aria-label|placeholder|alt)$/)?.[1];
      if (!attr) continue;
      assert.equal(attrs[attr], MESSAGES.en[key], `${tag} ${attr}: ${key}`);
      checked += 1;
    }
  }
  // An element of only text says its message; one with a slot, the words around it.
  for (const [, key, inner] of html.matchAll(/\bdata-i18n="([^"]+)"[^>]*>(.*?)<\/[a-z0-9]+>\s*(?:<|$)/gm)) {
    const words = decode(inner.replace(/<([a-z]+)[^>]*data-i18n-slot="(\w+)"[^>]*>.*?<\/\1>/g, '{$2}'));
    if (/</.test(words)) continue; // Elements nested inside: each checked on its own.
    assert.equal(words, MESSAGES.en[key], key);
    checked += 1;
  }
  assert.ok(checked >= 80, `only ${checked} checked`);
});

test('the language: the address, else the saved choice, else the browser, else English', () => {
  assert.equal(chooseLanguage({ param: 'fr', saved: 'en', preferred: ['en-US'] }), 'fr');
  assert.equal(chooseLanguage({ param: 'de', saved: 'fr', preferred: ['en-US'] }), 'fr', 'an unknown ?lang= is ignored');
  assert.equal(chooseLanguage({ saved: 'en', preferred: ['fr-FR'] }), 'en');
  assert.equal(chooseLanguage({ preferred: ['de-DE', 'fr-CA', 'en'] }), 'fr', 'the first of ours in the browser’s list');
  assert.equal(chooseLanguage({ preferred: ['FR'] }), 'fr');
  assert.equal(chooseLanguage({ preferred: ['de-DE', 'es'] }), 'en');
  assert.equal(chooseLanguage({}), 'en');
  // Formats follow the browser's own variant of the chosen language, else its usual one.
  assert.equal(localeFor('fr', ['en-GB', 'fr-CA']), 'fr-CA');
  assert.equal(localeFor('en', ['en-GB', 'fr-FR']), 'en-GB');
  assert.equal(localeFor('fr', ['en-US']), 'fr-FR');
  assert.equal(localeFor('en', ['fr-FR']), 'en-US');
});

test('plurals follow each language’s rules', () => {
  assert.equal(msg('carrier.waiting', { count: 1 }), '1 position waiting to send.');
  assert.equal(msg('carrier.waiting', { count: 0 }), '0 positions waiting to send.');
  assert.equal(msg('carrier.waiting', { count: 1200 }), '1,200 positions waiting to send.');
  setLanguage('fr');
  // French counts 0 and 1 as singular.
  assert.equal(msg('carrier.waiting', { count: 0 }), '0 position en attente d’envoi.');
  assert.equal(msg('carrier.waiting', { count: 1 }), '1 position en attente d’envoi.');
  assert.equal(msg('carrier.waiting', { count: 2 }), '2 positions en attente d’envoi.');
  // A million is CLDR's "many" in French: the "other" form, with the locale's digit groups.
  assert.equal(msg('carrier.waiting', { count: 1000000 }), '1\u202f000\u202f000 positions en attente d’envoi.');
  assert.equal(msg('live.stopSegment', { count: 2, who: 'Ann & Ben', mode: word('mode', 'bike') }), 'Ann & Ben changent de mode\u00a0: vélo');
});

test('countdowns, ages and delays in French', () => {
  setLanguage('fr');
  const s = 1000;
  assert.equal(countdown(42 * s), '42 s');
  assert.equal(countdown((4 * 60 + 20) * s), '4 min 20 s');
  assert.equal(countdown((103 * 60 + 20) * s), '1 h 43 min');
  assert.equal(countdown((2 * 86400 + 3 * 3600 + 59) * s), '2 j 3 h');
  assert.equal(countdown(590 * 86400 * s + 5000), '590 jours');
  assert.equal(countdown(1234 * 86400 * s), '1\u202f234 jours');
  assert.equal(msg('time.in', { left: countdown((4 * 60 + 20) * s) }), 'dans 4 min 20 s');
  assert.equal(delta(-240), 'en avance de 4 min');
  assert.equal(delta(120), 'en retard de 2 min');
  assert.equal(delta(30), 'à l’heure');
  assert.equal(span(3 * 86400 * s), '3 j');
  assert.equal(ago(Date.now() - 180 * s), 'il y a 3 min');
  // And English as before.
  setLanguage('en');
  assert.equal(countdown(590 * 86400 * s + 5000), '590 days');
  assert.equal(countdown((2 * 86400 + 3 * 3600) * s), '2 d 3 h');
  assert.equal(delta(-240), '4 min early');
  assert.equal(ago(Date.now() - 180 * s), '3 min ago');
});

test('dates, times and numbers by the locale; zones by their abbreviation in either language', () => {
  const t = Date.parse('2028-07-14T20:09:00Z'); // not today: the date is shown
  setLanguage('fr');
  assert.equal(clock(t, 'Europe/Paris'), 'ven. 14 juil., 22:09 CEST');
  assert.equal(clock(t, 'America/Los_Angeles'), 'ven. 14 juil., 13:09 PDT');
  assert.equal(dateOnly('2028-07-14'), 'ven. 14 juil. 2028');
  assert.equal(zoneName(Date.parse('2028-01-14T20:00:00Z'), 'Europe/Paris'), 'CET');
  assert.equal(formatDistance(12440), '12,4 km');
  assert.equal(formatDistance(9098000), '9\u202f098 km');
  assert.equal(formatDistance(850), '850 m');
  setLanguage('en');
  assert.match(clock(t, 'Europe/Paris'), /^Fri, Jul 14, 10:09\s?PM CEST$/);
  assert.equal(formatDistance(12440), '12.4 km');
  assert.equal(formatDistance(9098000), '9,098 km');
});

test('French punctuation is non-breaking in the template, never in the names put into it', () => {
  setLanguage('fr');
  assert.equal(msg('map.finishTip', { place: 'Gare : quai 2' }), 'Arrivée\u00a0: Gare : quai 2');
  assert.equal(msg('live.followThe', { object: 'drapeau' }), 'Suivre «\u00a0drapeau\u00a0»');
  // Parts keep what is put in them (a DOM node in the page) as it is, in the language's order.
  const holder = { node: 'Ann' };
  assert.deepEqual(msgParts('live.heldBy', { holders: holder }), ['Porté par ', holder]);
  setLanguage('en');
  assert.deepEqual(msgParts('live.finishedAt', { finished: holder, time: '23:09' }), [holder, ' at ', '23:09']);
  assert.equal(msg('live.heldBy', {}), 'Held by {holders}', 'a missing value shows as its placeholder');
});
