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

test('when a point passes: from where the holder was seen to the ETA, not from the leg start', async () => {
  const { stopTime } = await import('../src/js/plan.js');
  const m = new LiveModel(plan);
  // Ann started at 10:00, was seen 400 m along at 10:04 (a slow start: 1.67 m/s), and is now
  // expected at the end at 10:07 (600 m in 3 minutes, 3.33 m/s).
  const s = snapshot();
  s.relays[0].position = { t: '2026-12-02T10:04:00Z', lon: 0, lat: 0 };
  m.replace(s);
  const leg = m.relay('r').legs[0];
  assert.equal(leg.along_t, '2026-12-02T10:04:00Z');
  const at = (fraction) => stopTime({ fraction, kind: 'point' }, leg);
  // 700 m: half of the 600 m ahead, half of the 3 minutes: 10:05:30. From the start it read
  // 10:04:54 (0.7 of the 7 minutes), 36 s early.
  const ahead = at(0.7);
  assert.equal(ahead.passed, false);
  assert.equal(new Date(ahead.at).toISOString(), '2026-12-02T10:05:30.000Z');
  // Its band is the leg's (10:06:30–10:07:45) brought back the same way: 10:05:15–10:05:52.5.
  assert.equal(new Date(ahead.lo).toISOString(), '2026-12-02T10:05:15.000Z');
  assert.equal(new Date(ahead.hi).toISOString(), '2026-12-02T10:05:52.500Z');
  // 500 m, just ahead of her: 10:04:30, after she was seen there. From the start it read
  // 10:03:30, a time already past for a point still to come.
  assert.equal(new Date(at(0.5).at).toISOString(), '2026-12-02T10:04:30.000Z');
  // 200 m, behind her: passed, half way to where she was seen at 10:04, so 10:02; no band.
  const behind = at(0.2);
  assert.equal(behind.passed, true);
  assert.equal(new Date(behind.at).toISOString(), '2026-12-02T10:02:00.000Z');
  assert.ok(Number.isNaN(behind.lo));
  // The exchange is the ETA itself, and a position message moves the point she was seen at.
  assert.equal(new Date(at(1).at).toISOString(), '2026-12-02T10:07:00.000Z');
  m.apply('position', { relay: 'r', leg: 0, t: '2026-12-02T10:05:00Z', along_m: 700, fraction: 0.7, lon: 0, lat: 0 });
  assert.equal(new Date(at(0.85).at).toISOString(), '2026-12-02T10:06:00.000Z');
});

test('a point of a hilly leg is timed by its terrain: a climb takes more of the leg than its length', async () => {
  const { stopTime, timeShare } = await import('../src/js/plan.js');
  // 1 km: a climb for the first 500 m that takes as long as 600 m on the flat, then 500 m that
  // take as long as 400 (the plan's `flat_m` for the leg: one distance a route point).
  const leg = { cum: [0, 500, 1000], flatM: [0, 600, 1000] };
  assert.equal(timeShare(leg, 0.5), 0.6);
  assert.equal(timeShare(leg, 0.25), 0.3);
  assert.equal(timeShare(leg, 0.75), 0.8);
  // With no profile (a flat route, or a mode slopes do not slow) time goes with distance.
  assert.equal(timeShare({ cum: [0, 1000], flatM: null }, 0.5), 0.5);
  assert.equal(timeShare(null, 0.25), 0.25);
  const done = {
    status: 'done', actual_start: '2026-12-02T10:00:00Z', actual_end: '2026-12-02T10:10:00Z',
    planned_start: '2026-12-02T10:00:00Z', planned_end: '2026-12-02T10:10:00Z',
  };
  const top = stopTime({ fraction: 0.5, kind: 'pass' }, done, leg);
  assert.equal(new Date(top.at).toISOString(), '2026-12-02T10:06:00.000Z');
  assert.equal(new Date(top.planned).toISOString(), '2026-12-02T10:06:00.000Z');
  // By distance (no plan leg given) the top of the climb read half way, 10:05.
  assert.equal(new Date(stopTime({ fraction: 0.5, kind: 'pass' }, done).at).toISOString(), '2026-12-02T10:05:00.000Z');
  // On the leg under way: seen 250 m along (0.3 of its time) at 10:03, expected at the end at
  // 10:10: the top is 0.3 of the 0.7 still to go ahead of her, 3 of the 7 minutes: 10:06 (by
  // distance, 250 of the 750 m to go: 10:05:20).
  const current = {
    status: 'current', eta_start: '2026-12-02T10:00:00Z', actual_start: '2026-12-02T10:00:00Z',
    eta_end: '2026-12-02T10:10:00Z', planned_start: '2026-12-02T10:00:00Z',
    planned_end: '2026-12-02T10:10:00Z', along_m: 250, length_m: 1000, along_t: '2026-12-02T10:03:00Z',
  };
  const ahead = stopTime({ fraction: 0.5, kind: 'pass' }, current, leg);
  assert.equal(ahead.passed, false);
  assert.equal(new Date(ahead.at).toISOString(), '2026-12-02T10:06:00.000Z');
  assert.equal(new Date(stopTime({ fraction: 0.5, kind: 'pass' }, current).at).toISOString(), '2026-12-02T10:05:20.000Z');
  // Behind her, on the climb: 125 m is 0.15 of the leg's time, half of her 0.3: 10:01:30.
  const behind = stopTime({ fraction: 0.125, kind: 'pass' }, current, leg);
  assert.equal(behind.passed, true);
  assert.equal(new Date(behind.at).toISOString(), '2026-12-02T10:01:30.000Z');
});

test('a point of a leg still to come is as uncertain as the exchange before it', async () => {
  const { stopTime } = await import('../src/js/plan.js');
  const m = new LiveModel(plan);
  m.replace(snapshot());
  const [a, b] = m.relay('r').legs;
  // Ben's leg starts when Ann's ends: 10:07, band 10:06:30–10:07:45.
  assert.equal(a.eta_lo, '2026-12-02T10:06:30.000Z');
  assert.equal(a.eta_hi, '2026-12-02T10:07:45.000Z');
  const iso = (x) => new Date(x).toISOString();
  // Just after the exchange the band is the exchange's, not one instant (it was 10:07–10:07,
  // as it still is without the leg before).
  const start = stopTime({ fraction: 0, kind: 'point' }, b, null, a);
  assert.equal(iso(start.at), '2026-12-02T10:07:00.000Z');
  assert.equal(iso(start.lo), '2026-12-02T10:06:30.000Z');
  assert.equal(iso(start.hi), '2026-12-02T10:07:45.000Z');
  // Half way: 10:10, between the start's band and the end's (10:11:30–10:15): 10:09–10:11:22.5
  // (from the start's ETA alone it read 10:09:15–10:11).
  assert.equal(iso(stopTime({ fraction: 0, kind: 'point' }, b).hi), '2026-12-02T10:07:00.000Z');
  const half = stopTime({ fraction: 0.5, kind: 'point' }, b, null, a);
  assert.equal(iso(half.at), '2026-12-02T10:10:00.000Z');
  assert.equal(iso(half.lo), '2026-12-02T10:09:00.000Z');
  assert.equal(iso(half.hi), '2026-12-02T10:11:22.500Z');
  const alone = stopTime({ fraction: 0.5, kind: 'point' }, b);
  assert.deepEqual([iso(alone.lo), iso(alone.hi)], ['2026-12-02T10:09:15.000Z', '2026-12-02T10:11:00.000Z']);
  // Once Ann hands over, Ben's leg is under way and its start is known.
  m.apply('handoff', { relay: 'r', from_leg: 0, to_leg: 1, at: '2026-12-02T10:07:10Z', verified: true });
  assert.equal(b.status, 'current');
  assert.equal(iso(stopTime({ fraction: 0.5, kind: 'point' }, b, null, a).lo), '2026-12-02T10:09:20.000Z');
});
