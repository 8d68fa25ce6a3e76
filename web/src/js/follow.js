// Follow mode, as geometry: which part of the world the map shows for what the followed
// object is doing, and when that view has to move. No Leaflet and no DOM here, only Web
// Mercator arithmetic done as Leaflet does it (256 px tiles, 2^zoom), so the views the page
// will take can be checked in Node.
//
// - On the ground (a run, a bike, a skateboard, a motorcycle, a parachute …): the carrier
//   and the next part of the leg's route, at street level and never more than `SPAN_CAP_M`
//   across, however long the leg.
// - In the air (a flight): the whole flight, both ends and the aircraft.
// - At a place (a stage): the place.
// The view moves only when the leg changes, or when the marker nears the edge of the view
// (then it is fitted again, marker and route ahead): it never jumps with each ping.

import { cumulative, distanceM, pointAt, splitAt, unwrap } from './geo.js';

/** The widest a ground leg's view may be, corner to corner (under 20 km, with room). */
export const SPAN_CAP_M = 16000;
/** The closest the map follows (street level on the built-in map's scale). */
export const STREET_ZOOM = 16;
/** How close a place (a stage) is shown. */
export const PLACE_ZOOM = 15;
/** How much of the route ahead a ground view shows: a share of the leg, within bounds. */
const AHEAD_SHARE = 0.15;
const AHEAD_MIN_M = 1000;
const AHEAD_MAX_M = 5000;
/**
 * A ground view is fitted with this share of the map as padding on each side, and the view
 * moves when the marker comes within `EDGE` of an edge: after a move the marker sits inside
 * the margin, so the next move waits until it has crossed the view.
 */
export const PADDING = 0.2;
export const EDGE = 0.12;

const TILE = 256;
const MAX_LAT = 85.0511287798;
const rad = (d) => (d * Math.PI) / 180;
const deg = (r) => (r * 180) / Math.PI;

/** [lon, lat] → Web Mercator world units (0..1 across the world at zoom 0). */
export function project([lon, lat]) {
  const s = Math.sin(rad(Math.max(-MAX_LAT, Math.min(MAX_LAT, lat))));
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

/** World units → [lon, lat]. */
export function unproject([x, y]) {
  return [x * 360 - 180, deg(2 * Math.atan(Math.exp((0.5 - y) * 2 * Math.PI)) - Math.PI / 2)];
}

const scale = (zoom) => TILE * 2 ** zoom;

/** The area a map of `size` {width, height} px shows at `center` and `zoom`: [w, s, e, n]. */
export function viewBounds(center, zoom, { width, height }) {
  const [x, y] = project(center);
  const hw = width / 2 / scale(zoom);
  const hh = height / 2 / scale(zoom);
  const [w, n] = unproject([x - hw, y - hh]);
  const [e, s] = unproject([x + hw, y + hh]);
  return [w, s, e, n];
}

/** How far across a view is: corner to corner, metres. */
export const acrossM = ([w, s, e, n]) => distanceM([w, s], [e, n]);

/**
 * The view that shows every point, `focus` (the marker) always: { center, zoom }.
 * `padding` [x, y] px on each side; the zoom is within [minZoom, maxZoom], in steps of `snap`,
 * and close enough that the view is at most `capM` across (then the points may not all fit:
 * the centre moves towards the focus to keep it inside the padding).
 */
export function fitView(points, size, { padding = [24, 24], minZoom = 1, maxZoom = STREET_ZOOM, capM = Infinity, snap = 0.5, focus = null } = {}) {
  const all = unwrap(focus ? [...points, focus] : points).map(project);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const innerW = Math.max(1, size.width - 2 * padding[0]);
  const innerH = Math.max(1, size.height - 2 * padding[1]);
  const fit = Math.log2(Math.min(innerW / ((x1 - x0) * TILE || 1e-12), innerH / ((y1 - y0) * TILE || 1e-12)));
  const floor = (z) => Math.floor(z / snap + 1e-9) * snap;
  const ceil = (z) => Math.ceil(z / snap - 1e-9) * snap;
  let zoom = Math.max(minZoom, Math.min(maxZoom, floor(fit)));
  let centre = [(x0 + x1) / 2, (y0 + y1) / 2];
  if (Number.isFinite(capM)) {
    // The span halves with each zoom level: step in until it is under the cap.
    for (let i = 0; i < 40 && zoom < maxZoom && acrossM(viewBounds(unproject(centre), zoom, size)) > capM; i++) {
      const over = acrossM(viewBounds(unproject(centre), zoom, size)) / capM;
      zoom = Math.min(maxZoom, Math.max(zoom + snap, ceil(zoom + Math.log2(over))));
    }
  }
  if (focus) {
    // Keep the focus inside the padding, whatever did not fit.
    const [fx, fy] = all[all.length - 1];
    const hw = Math.max(0, size.width / 2 - padding[0]) / scale(zoom);
    const hh = Math.max(0, size.height / 2 - padding[1]) / scale(zoom);
    centre = [Math.max(fx - hw, Math.min(fx + hw, centre[0])), Math.max(fy - hh, Math.min(fy + hh, centre[1]))];
  }
  return { center: unproject(centre), zoom };
}

/** Whether a point at `px` [x, y] (from the map's top left) is near the edge of a map of `size`. */
export function nearEdge([x, y], { width, height }, edge = EDGE) {
  const mx = Math.max(16, width * edge);
  const my = Math.max(16, height * edge);
  return x < mx || x > width - mx || y < my || y > height - my;
}

/**
 * What to show for relay `relay` (the plan model's) in live state `r`, with the marker at
 * `focus` ([lon, lat] or null): { key, kind, points, focus } where `kind` is 'ground',
 * 'flight' or 'place', and `key` changes when the view must be fitted afresh (a new leg).
 * A relay not started yet shows where it starts; a finished one where it ended.
 */
export function followTarget(relay, r, focus) {
  const n = relay.legs.length;
  if (n === 0) return null;
  let index = r?.current_leg;
  let fraction = r?.progress?.fraction ?? 0;
  let key;
  if (index === undefined || index === null) {
    const finished = r?.status === 'finished';
    index = finished ? n - 1 : 0;
    fraction = finished ? 1 : 0;
    key = `${relay.id}/${finished ? 'end' : 'start'}`;
    focus = null;
  } else {
    key = `${relay.id}/${index}`;
  }
  const leg = relay.legs[index];
  if (!leg?.points.length) return null;
  if (leg.points.length === 1) return { key, kind: 'place', points: leg.points, focus };
  if (leg.mode === 'flight') return { key, kind: 'flight', points: leg.points, focus };
  const total = leg.cum[leg.cum.length - 1];
  const along = Math.max(0, Math.min(1, fraction)) * total;
  const ahead = Math.max(AHEAD_MIN_M, Math.min(AHEAD_MAX_M, AHEAD_SHARE * total));
  const [, rest] = splitAt(leg.points, leg.cum, along);
  const here = pointAt(leg.points, leg.cum, along);
  const next = rest.length > 1 ? splitAt(rest, cumulative(rest), ahead)[0] : [];
  return { key, kind: 'ground', points: next.length ? next : [here], focus };
}

/** The view for a target on a map of `size`: { center, zoom }. */
export function viewFor(target, size) {
  if (target.kind === 'place') {
    return { center: target.points[0], zoom: PLACE_ZOOM };
  }
  if (target.kind === 'flight') {
    return fitView(target.points, size, { padding: [24, 24], maxZoom: 12, focus: target.focus });
  }
  return fitView(target.points, size, {
    padding: [size.width * PADDING, size.height * PADDING],
    maxZoom: STREET_ZOOM,
    capM: SPAN_CAP_M,
    focus: target.focus,
  });
}
