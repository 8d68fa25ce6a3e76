// The pages' language: English (the source) or French, with the words in messages.js. The
// language is chosen when this module loads, from `?lang=en|fr` in the address, else the
// viewer's saved choice, else the first of the browser's languages that is one of ours, else
// English; `<html lang>` says which. Each page has a switch in its top bar (`mountSwitch`):
// it saves the choice and lets the page render itself again in place, or reloads it.
//
// Dates, times and numbers are formatted by Intl in the chosen locale: the browser's own
// variant of the chosen language where it has one (en-GB keeps its 24-hour clock, fr-CA its
// dates), else the language's usual one (en-US, fr-FR). Names from the plan and messages
// from the server are shown as they come; only the pages' own wording is translated.

import { MESSAGES } from './messages.js';

export const LANGUAGES = Object.keys(MESSAGES);
const DEFAULT = 'en';
const STORAGE_KEY = 'handoff.lang';
/** Each language's name in itself, for the switch. */
const NATIVE = { en: 'English', fr: 'Français' };
/** The locale of a language whose speaker's browser has no regional variant of it. */
const USUAL_LOCALE = { en: 'en-US', fr: 'fr-FR' };

const primary = (tag) => String(tag ?? '').toLowerCase().split(/[-_]/)[0];

/**
 * The language to show: `param` (the address's `?lang=`), else `saved`, else the first of
 * `preferred` (the browser's languages, in order) that is ours, else English.
 */
export function chooseLanguage({ param = null, saved = null, preferred = [] } = {}) {
  for (const wanted of [param, saved]) {
    if (LANGUAGES.includes(wanted)) return wanted;
  }
  for (const tag of preferred) {
    if (LANGUAGES.includes(primary(tag))) return primary(tag);
  }
  return DEFAULT;
}

/** The locale that formats `lang`: the first of `preferred` in that language, else its usual one. */
export function localeFor(lang, preferred = []) {
  const own = preferred.find((tag) => primary(tag) === lang);
  if (own) {
    try {
      return Intl.getCanonicalLocales(own)[0];
    } catch {
      // Not a well-formed tag: the usual locale will do.
    }
  }
  return USUAL_LOCALE[lang] ?? lang;
}

const browser = typeof window !== 'undefined' && typeof document !== 'undefined';
const preferredLanguages = () => (typeof navigator === 'undefined' ? [] : navigator.languages ?? [navigator.language]);

function savedLanguage() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // Storage refused (a private mode): the browser's languages decide.
  }
}

let lang = DEFAULT;
let locale = USUAL_LOCALE[DEFAULT];
const listeners = [];
const numberFormats = new Map(); // Intl.NumberFormat by options, for the current locale
const plurals = new Map(); // Intl.PluralRules by language

/** Sets the language (and its locale) the pages are shown in; `<html lang>` follows. */
export function setLanguage(next) {
  if (!LANGUAGES.includes(next)) throw new Error(`no such language: ${next}`);
  lang = next;
  locale = localeFor(next, preferredLanguages());
  numberFormats.clear();
  plurals.clear();
  if (browser) document.documentElement.lang = next;
}

export const language = () => lang;
/** The BCP 47 locale for Intl ("fr-FR", "en-GB"). */
export const currentLocale = () => locale;

if (browser) {
  setLanguage(chooseLanguage({
    param: new URLSearchParams(location.search).get('lang'),
    saved: savedLanguage(),
    preferred: preferredLanguages(),
  }));
}

// ------------------------------------------------------------------ messages

/** `n` formatted in the current locale ("9,098" / "9 098"); `opts` as Intl.NumberFormat's. */
export function formatNumber(n, opts = {}) {
  const key = JSON.stringify(opts);
  if (!numberFormats.has(key)) numberFormats.set(key, new Intl.NumberFormat(locale, opts));
  return numberFormats.get(key).format(n);
}

function pluralRules() {
  if (!plurals.has(lang)) plurals.set(lang, new Intl.PluralRules(locale));
  return plurals.get(lang);
}

/**
 * French punctuation: the space before ":", ";", "?", "!", "%" and "»" (and after "«") does
 * not break the line. Applied to the template only, never to the names put into it.
 */
function typeset(template) {
  if (lang !== 'fr') return template;
  return template
    .replace(/ ([:»])/g, '\u00a0$1')
    .replace(/ ([;?!%])/g, '\u202f$1')
    .replace(/« /g, '«\u00a0');
}

/**
 * The template of `key` in the current language: a string, or for a message with plural
 * forms ({ one, other, … }) the form Intl.PluralRules picks for `params.count`.
 */
function template(key, params) {
  const entry = MESSAGES[lang][key] ?? MESSAGES[DEFAULT][key];
  if (entry === undefined) throw new Error(`no message ${key}`);
  if (typeof entry === 'string') return entry;
  const form = pluralRules().select(Number(params.count));
  return entry[form] ?? entry.other;
}

const PLACEHOLDER = /\{(\w+)\}/g;
const shown = (value) => (typeof value === 'number' ? formatNumber(value) : value);

/**
 * The message `key` with its `{placeholders}` filled from `params` (numbers formatted in the
 * locale; a missing one is left as it is, so a slip shows instead of vanishing).
 */
export function msg(key, params = {}) {
  return typeset(template(key, params)).replace(PLACEHOLDER, (whole, name) => (
    name in params ? String(shown(params[name])) : whole));
}

/**
 * The message `key` as parts for `h`/`fill`: text, and the values of its placeholders as
 * they are (DOM nodes stay nodes: "Held by <strong>Ann</strong>" in either word order).
 */
export function msgParts(key, params = {}) {
  const out = [];
  const text = typeset(template(key, params));
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    out.push(text.slice(last, m.index));
    out.push(m[1] in params ? shown(params[m[1]]) : m[0]);
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out.filter((p) => p !== '' && p !== null && p !== undefined);
}

/** The word for one value of a fixed set (`mode.run`, `status.running`), or the value itself. */
export function word(group, value) {
  const key = `${group}.${value}`;
  return key in MESSAGES[lang] ? msg(key) : String(value ?? '').replace(/_/g, ' ');
}

// ------------------------------------------------------------------ the page

/**
 * Translates the page's own markup under `root`: `data-i18n="key"` sets an element's text
 * (its `data-i18n-slot="name"` children are kept, in the message's `{name}`), and
 * `data-i18n-aria-label`, `data-i18n-placeholder`, `data-i18n-alt` set those attributes.
 */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    const slots = Object.fromEntries([...el.querySelectorAll(':scope > [data-i18n-slot]')]
      .map((child) => [child.dataset.i18nSlot, child]));
    el.replaceChildren(...msgParts(el.dataset.i18n, slots));
  }
  for (const attr of ['aria-label', 'placeholder', 'alt']) {
    const data = `data-i18n-${attr}`;
    for (const el of root.querySelectorAll(`[${data}]`)) el.setAttribute(attr, msg(el.getAttribute(data)));
  }
}

/** Asks for `fn` to run after a switch of language (the page renders itself again). */
export function onLanguageChange(fn) {
  listeners.push(fn);
}

/** What the switch does: saves the choice, drops `?lang=`, re-renders (or reloads). */
function switchTo(next) {
  if (next === lang) return;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // Not saved: this page still switches.
  }
  const url = new URL(location.href);
  if (url.searchParams.has('lang')) {
    url.searchParams.delete('lang');
    history.replaceState(history.state, '', url);
  }
  if (listeners.length === 0) {
    location.reload();
    return;
  }
  setLanguage(next);
  translatePage();
  for (const fn of listeners) fn(next);
}

/**
 * Translates the page and puts the language switch at the end of its top bar: a labelled
 * `<select id="lang">` whose options name each language in itself.
 */
export function mountSwitch() {
  translatePage();
  const bar = document.querySelector('.topbar');
  if (!bar || document.getElementById('lang')) return;
  const label = document.createElement('label');
  label.htmlFor = 'lang';
  label.className = 'sr-only';
  label.dataset.i18n = 'lang.label';
  label.textContent = msg('lang.label');
  const select = document.createElement('select');
  select.id = 'lang';
  for (const code of LANGUAGES) {
    const option = document.createElement('option');
    option.value = code;
    option.lang = code;
    option.textContent = NATIVE[code] ?? code;
    select.append(option);
  }
  select.value = lang;
  select.addEventListener('change', () => switchTo(select.value));
  const box = document.createElement('p');
  box.className = 'lang-switch';
  box.append(label, select);
  bar.append(box);
}
