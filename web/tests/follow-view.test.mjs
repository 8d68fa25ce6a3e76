// Follow mode's views, in Node (no browser): the arithmetic of web/src/js/follow.js. A ground
// leg is shown at street level, under the cap across however long the leg, with the marker
// inside and away from the edges (so the next ping does not move the view again); a flight
// whole, both ends and the aircraft; a stage at its place; and a new view only per leg.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  acrossM, fitView, followTarget, nearEdge, PLACE_ZOOM, project, SPAN_CAP_M, unproject, viewBounds, viewFor,
} from '../src/js/follow.js';
import { cumulative, distanceM, pointAt } from '../src/js/geo.js';

const PHONE_MAP = { width: 374, height: 388 };
const DESKTOP_MAP = { width: 784, height: 609 };

/** A line from `a` to `b` through `n` segments, with a zigzag so it is not straight. */
function route(a, b, n = 40) {
  return Array.from({ length: n + 1 }, (_, i) => [
    a[0] + ((b[0] - a[0]) * i) / n + (i % 2 ? 0.002 : 0),
    a[1] + ((b[1] - a[1]) * i) / n,
  ]);
}

const leg = (index, mode, points) => ({ index, mode, points, cum: cumulative(points) });
const PARIS_RIDE = route([2.36, 48.92], [2.25, 48.85]).concat(route([2.25, 48.85], [2.43, 48.95]).slice(1));
const LONG_DRIVE = route([2.35, 48.86], [4.83, 45.76], 200); // Paris to Lyon, about 400 km
const FLIGHT = route([2.434, 48.949], [-118.293, 34.145], 64);
const relay = {
  id: 'flag',
  legs: [
    leg(0, 'stage', [[2.36015, 48.92446]]),
    leg(1, 'motorcycle', PARIS_RIDE),
    leg(2, 'flight', FLIGHT),
    leg(3, 'car', LONG_DRIVE),
  ],
};
const running = (current, fraction) => ({ status: 'running', current_leg: current, progress: { fraction } });

/** Where `p` is drawn on a map of `size` showing `view`, px from its top left. */
function pixel(p, { center, zoom }, size) {
  const [x, y] = project(p);
  const [cx, cy] = project(center);
  const k = 256 * 2 ** zoom;
  return [(x - cx) * k + size.width / 2, (y - cy) * k + size.height / 2];
}

const inside = ([lon, lat], [w, s, e, n]) => lon >= w && lon <= e && lat >= s && lat <= n;

test('projection and view bounds agree with each other', () => {
  for (const p of [[2.35, 48.86], [-118.24, 34.05], [0, 0], [151.2, -33.9]]) {
    const [lon, lat] = unproject(project(p));
    assert.ok(Math.abs(lon - p[0]) < 1e-9 && Math.abs(lat - p[1]) < 1e-9, `${p} → ${lon},${lat}`);
  }
  // At zoom 0 a 256 px map shows the whole Mercator world.
  const [w, s, e, n] = viewBounds([0, 0], 0, { width: 256, height: 256 });
  assert.ok(Math.abs(w + 180) < 1e-9 && Math.abs(e - 180) < 1e-9 && Math.abs(n - 85.0511) < 1e-3 && Math.abs(s + 85.0511) < 1e-3);
  // A zoom level in halves the span.
  const a = acrossM(viewBounds([2.35, 48.86], 12, DESKTOP_MAP));
  const b = acrossM(viewBounds([2.35, 48.86], 13, DESKTOP_MAP));
  assert.ok(Math.abs(a / b - 2) < 0.01, `${a} / ${b}`);
});

test('on the ground: street level, under the cap, the marker inside and off the edges', () => {
  for (const size of [PHONE_MAP, DESKTOP_MAP]) {
    for (const [index, points] of [[1, PARIS_RIDE], [3, LONG_DRIVE]]) {
      const l = relay.legs[index];
      for (let f = 0; f <= 1.0001; f += 0.05) {
        const at = pointAt(points, l.cum, f * l.cum[l.cum.length - 1]);
        const target = followTarget(relay, running(index, f), at);
        assert.equal(target.kind, 'ground');
        const view = viewFor(target, size);
        const bounds = viewBounds(view.center, view.zoom, size);
        const what = `leg ${index} at ${f.toFixed(2)} on ${size.width}×${size.height}`;
        assert.ok(acrossM(bounds) <= SPAN_CAP_M, `${what}: ${Math.round(acrossM(bounds))} m across`);
        assert.ok(acrossM(bounds) >= 500, `${what}: closer than a street (${Math.round(acrossM(bounds))} m)`);
        assert.ok(inside(at, bounds), `${what}: the marker is in view`);
        assert.ok(!nearEdge(pixel(at, view, size), size), `${what}: the marker is off the edges, at ${pixel(at, view, size)}`);
        // The next part of the route is in view: 300 m ahead, where there is that much left.
        const ahead = pointAt(points, l.cum, Math.min(l.cum[l.cum.length - 1], f * l.cum[l.cum.length - 1] + 300));
        assert.ok(inside(ahead, bounds), `${what}: the route ahead is in view`);
      }
    }
  }
});

test('a flight is shown whole: both ends and the aircraft', () => {
  for (const size of [PHONE_MAP, DESKTOP_MAP]) {
    for (const f of [0, 0.3, 0.7, 1]) {
      const l = relay.legs[2];
      const at = pointAt(FLIGHT, l.cum, f * l.cum[l.cum.length - 1]);
      const target = followTarget(relay, running(2, f), at);
      assert.equal(target.kind, 'flight');
      const view = viewFor(target, size);
      const bounds = viewBounds(view.center, view.zoom, size);
      for (const p of [FLIGHT[0], FLIGHT[FLIGHT.length - 1], at]) assert.ok(inside(p, bounds), `${p} in ${bounds}`);
      assert.ok(view.zoom <= 4, `zoom ${view.zoom}`);
    }
  }
});

test('a stage is shown at its place; a new view is asked for only when the leg changes', () => {
  const stage = followTarget(relay, running(0, 0), [2.36015, 48.92446]);
  assert.equal(stage.kind, 'place');
  assert.deepEqual(viewFor(stage, PHONE_MAP), { center: [2.36015, 48.92446], zoom: PLACE_ZOOM });
  assert.ok(acrossM(viewBounds([2.36015, 48.92446], PLACE_ZOOM, DESKTOP_MAP)) < 5000);

  const keys = [running(1, 0.1), running(1, 0.9), running(2, 0.5), running(3, 0.5)].map((r) => followTarget(relay, r, null).key);
  assert.deepEqual(keys, ['flag/1', 'flag/1', 'flag/2', 'flag/3']);
  // Before the start, where it starts; after the finish, where it ended (no marker either way).
  const before = followTarget(relay, { status: 'planned', legs: [] }, [9, 9]);
  assert.deepEqual([before.key, before.kind, before.focus], ['flag/start', 'place', null]);
  const after = followTarget(relay, { status: 'finished', legs: [] }, null);
  assert.equal(after.key, 'flag/end');
  assert.deepEqual(after.points, [LONG_DRIVE[LONG_DRIVE.length - 1]]);
});

test('the edge of the view, and a fit that cannot hold everything keeps the focus', () => {
  assert.equal(nearEdge([187, 194], PHONE_MAP), false);
  assert.equal(nearEdge([10, 194], PHONE_MAP), true);
  assert.equal(nearEdge([187, 380], PHONE_MAP), true);
  assert.equal(nearEdge([-50, 194], PHONE_MAP), true);
  // 40 km of points cannot be shown within a 16 km cap: the view keeps the focus in it.
  const far = [[2.0, 48.86], [2.55, 48.86]];
  const view = fitView(far, DESKTOP_MAP, { capM: SPAN_CAP_M, focus: [2.54, 48.86], padding: [100, 100] });
  const bounds = viewBounds(view.center, view.zoom, DESKTOP_MAP);
  assert.ok(acrossM(bounds) <= SPAN_CAP_M);
  assert.ok(inside([2.54, 48.86], bounds));
  assert.ok(distanceM(view.center, [2.54, 48.86]) < 8000);
});
