// Just enough geometry for drawing: distances on the sphere, positions along a route, and
// the nearest point of a route to a place. Points are [lon, lat] (as GeoJSON). The server
// measures progress on the WGS 84 ellipsoid; here we only split lines and place labels, so
// a sphere is accurate enough, and we scale by the server's length where it gives one.

import { formatNumber } from './i18n.js';

const R = 6371008.8;
const rad = (d) => (d * Math.PI) / 180;

/** Great-circle distance in metres between two [lon, lat] points. */
export function distanceM(a, b) {
  const dLat = rad(b[1] - a[1]);
  const dLon = rad(b[0] - a[0]);
  const s = Math.sin(dLat / 2) ** 2
    + Math.cos(rad(a[1])) * Math.cos(rad(b[1])) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(s)));
}

/** Cumulative distance at each vertex, metres (first is 0). */
export function cumulative(points) {
  const cum = [0];
  for (let i = 1; i < points.length; i++) cum.push(cum[i - 1] + distanceM(points[i - 1], points[i]));
  return cum;
}

/**
 * Longitudes made continuous (a route crossing the antimeridian goes 179 → 181, not
 * 179 → −179), so Leaflet draws it the short way round.
 */
export function unwrap(points) {
  const out = [];
  let shift = 0;
  for (let i = 0; i < points.length; i++) {
    const [lon, lat] = points[i];
    if (i > 0) {
      const prev = points[i - 1][0];
      if (lon - prev > 180) shift -= 360;
      else if (prev - lon > 180) shift += 360;
    }
    out.push([lon + shift, lat]);
  }
  return out;
}

/** The point `along` metres from the start (clamped to the route). */
export function pointAt(points, cum, along) {
  if (points.length === 1 || along <= 0) return points[0];
  const total = cum[cum.length - 1];
  if (along >= total) return points[points.length - 1];
  let i = 1;
  while (cum[i] < along) i++;
  const f = (along - cum[i - 1]) / (cum[i] - cum[i - 1] || 1);
  const [a, b] = [points[i - 1], points[i]];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f];
}

/** The route cut at `along` metres: [travelled, remaining], sharing the cut point. */
export function splitAt(points, cum, along) {
  const total = cum[cum.length - 1];
  if (along <= 0) return [[], points];
  if (along >= total) return [points, []];
  const cut = pointAt(points, cum, along);
  const i = cum.findIndex((c) => c >= along);
  return [[...points.slice(0, i), cut], [cut, ...points.slice(i)]];
}

/**
 * The nearest point of the route to `p`: { alongM, offM }. Each segment is measured in a
 * local equirectangular frame around `p` (fine at the few hundred metres this is used for).
 */
export function locate(points, cum, p) {
  const kx = Math.cos(rad(p[1])) * (Math.PI / 180) * R;
  const ky = (Math.PI / 180) * R;
  let best = { alongM: 0, offM: Infinity };
  for (let i = 0; i < points.length; i++) {
    const a = [(points[i][0] - p[0]) * kx, (points[i][1] - p[1]) * ky];
    if (i === points.length - 1 || points.length === 1) {
      const d = Math.hypot(a[0], a[1]);
      if (d < best.offM) best = { alongM: cum[i], offM: d };
      continue;
    }
    const b = [(points[i + 1][0] - p[0]) * kx, (points[i + 1][1] - p[1]) * ky];
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len2 = dx * dx + dy * dy;
    const f = len2 > 0 ? Math.max(0, Math.min(1, -(a[0] * dx + a[1] * dy) / len2)) : 0;
    const d = Math.hypot(a[0] + dx * f, a[1] + dy * f);
    if (d < best.offM) best = { alongM: cum[i] + (cum[i + 1] - cum[i]) * f, offM: d };
  }
  return best;
}

/** "850 m", "12.4 km", "9,098 km" (in French "12,4 km", "9 098 km"). */
export function formatDistance(m) {
  if (!Number.isFinite(m)) return '—';
  if (m < 1000) return `${formatNumber(Math.round(m))} m`;
  if (m < 100000) return `${formatNumber(m / 1000, { minimumFractionDigits: 1, maximumFractionDigits: 1 })} km`;
  return `${formatNumber(Math.round(m / 1000))} km`;
}
