// The live model, in Node (no browser): compact legs completed from the plan and the leg
// before, and each leg's band (`band_s`, seconds either side of its ETA) read as instants.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LiveModel } from '../src/js/live-model.js';

const plan = {
  relays: [{
    id: 'r',
    legs: [
      { carriers: ['Ann'], mode: 'run', lengthM: 1000, startAt: '2026-12-02T10:00:00Z', endAt: '2026-12-02T10:06:00Z' },
      { carriers: ['Ben'], mode: 'run', lengthM: 1000, startAt: '2026-12-02T10:06:00Z', endAt: '2026-12-02T10:12:00Z' },
    ],
  }],
};

const snapshot = () => ({
  relays: [{
    id: 'r', status: 'running', current_leg: 0, progress: { along_m: 400 },
    legs: [
      { index: 0, status: 'current', eta_start: '2026-12-02T10:00:00Z', eta_end: '2026-12-02T10:07:00Z', band_s: [-30, 45], delta_s: 60 },
      { index: 1, status: 'upcoming', eta_end: '2026-12-02T10:13:00Z', band_s: [-90, 120], delta_s: 60 },
    ],
  }],
});

test('a band in seconds either side of the ETA is read as two instants', () => {
  const m = new LiveModel(plan);
  m.replace(snapshot());
  const [a, b] = m.relay('r').legs;
  assert.equal(a.eta_lo, '2026-12-02T10:06:30.000Z');
  assert.equal(a.eta_hi, '2026-12-02T10:07:45.000Z');
  // The second leg's start, left out, is the first one's end.
  assert.equal(b.eta_start, '2026-12-02T10:07:00Z');
  assert.equal(b.eta_lo, '2026-12-02T10:11:30.000Z');
  assert.equal(b.eta_hi, '2026-12-02T10:15:00.000Z');
});

test('an eta message moves the band with the ETA; a leg done has none', () => {
  const m = new LiveModel(plan);
  m.replace(snapshot());
  m.apply('eta', {
    relay: 'r', status: 'running', current_leg: 0,
    legs: [
      { index: 0, status: 'current', eta_end: '2026-12-02T10:08:00Z', band_s: [-20, 40], delta_s: 120 },
      // No band in the message: none is kept from before.
      { index: 1, status: 'upcoming', eta_end: '2026-12-02T10:14:00Z', delta_s: 120 },
    ],
  });
  const [a, b] = m.relay('r').legs;
  assert.equal(a.eta_lo, '2026-12-02T10:07:40.000Z');
  assert.equal(a.eta_hi, '2026-12-02T10:08:40.000Z');
  assert.equal(b.eta_lo, undefined);
  assert.equal(b.eta_hi, undefined);
  m.apply('handoff', { relay: 'r', from_leg: 0, to_leg: 1, at: '2026-12-02T10:07:50Z', verified: true });
  assert.equal(a.status, 'done');
  assert.equal(a.eta_lo, undefined);
  assert.equal(a.eta_hi, undefined);
});
