// The pages' time formatting, in Node (no browser): countdowns always with their units, early
// and late in words, zones by their abbreviations whatever the locale, date-only milestones as
// a day with its year.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { countdown, dateOnly, delta, zoneName } from '../src/js/time.js';

test('a countdown says its units', () => {
  const s = 1000;
  assert.equal(countdown(42 * s), '42 s');
  assert.equal(countdown((4 * 60 + 20) * s), '4 min 20 s');
  assert.equal(countdown(5 * 60 * s), '5 min');
  assert.equal(countdown((103 * 60 + 20) * s), '1 h 43 min');
  assert.equal(countdown((2 * 86400 + 3 * 3600 + 59) * s), '2 d 3 h');
  assert.equal(countdown(590 * 86400 * s + 5000), `${(590).toLocaleString()} days`);
  assert.equal(countdown(-5 * s), '0 s');
});

test('early and late in words', () => {
  assert.equal(delta(300), '5 min late');
  assert.equal(delta(-240), '4 min early');
  assert.equal(delta(30), 'on time');
  assert.equal(delta(Number.NaN), 'on time');
});

test('zones by their abbreviation in both cities, summer and winter', () => {
  const summer = Date.parse('2024-08-11T20:00:00Z');
  const winter = Date.parse('2028-01-14T20:00:00Z');
  assert.equal(zoneName(summer, 'Europe/Paris'), 'CEST');
  assert.equal(zoneName(winter, 'Europe/Paris'), 'CET');
  assert.equal(zoneName(summer, 'America/Los_Angeles'), 'PDT');
  assert.equal(zoneName(winter, 'America/Los_Angeles'), 'PST');
  // A zone without a letters-only name keeps its offset.
  assert.match(zoneName(summer, 'Asia/Kathmandu'), /^(GMT|UTC)\+5:45$|^NPT$/);
});

test('a date-only milestone is its day, with the year, and no time', () => {
  const day = dateOnly('2028-07-14');
  assert.match(day, /2028/);
  assert.match(day, /14/);
  assert.doesNotMatch(day, /\d\d:\d\d/);
});
