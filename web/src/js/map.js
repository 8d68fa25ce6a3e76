// The map: Leaflet over a built-in world basemap (Natural Earth countries from the
// world-atlas package, served by our own server), so it works with no internet. Street tiles
// are used only when a tile URL is configured (`?tiles=URL`, `?tiles=osm`, or the page's
// switch); nothing else leaves the server the page came from.
//
// Leg status colours: done, current (the travelled part drawn like done), to come. Each
// relay's object is a round marker; its tooltip gives the holder and, when stale, the age.

/* global L, topojson */

import { escapeHtml } from './dom.js';
import { pointAt, splitAt, unwrap } from './geo.js';

export const OSM = {
  url: 'https://tile.openstreetmap.org/{z}/{x}/{y}.png',
  attribution: '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
};

const STYLE = {
  done: { color: '#333333', weight: 4, opacity: 0.95 },
  current: { color: '#c8004f', weight: 6, opacity: 1 },
  upcoming: { color: '#0842a0', weight: 3, opacity: 0.9, dashArray: '7 6' },
  casing: { color: '#ffffff', weight: 9, opacity: 0.85 },
  course: { color: '#0842a0', weight: 3, opacity: 0.9 },
};

const FINE_ZOOM = 5;

/**
 * Natural Earth's rings cross the antimeridian as d3 expects (it clips on the sphere), but
 * Leaflet draws them flat, where a jump from 180° to −180° becomes a line across the world.
 * So: longitudes made continuous, the shape moved back to the main world copy, and a ring
 * that goes round a pole (Antarctica) closed through that pole.
 */
function flatRing(ring, closed) {
  let out = unwrap(ring);
  const mean = out.reduce((sum, p) => sum + p[0], 0) / out.length;
  const k = Math.round(mean / 360);
  if (k !== 0) out = out.map(([lon, lat]) => [lon - 360 * k, lat]);
  const first = out[0];
  const last = out[out.length - 1];
  if (closed && Math.abs(last[0] - first[0]) > 180) {
    const pole = out.reduce((sum, p) => sum + p[1], 0) < 0 ? -90 : 90;
    out.push([last[0], pole], [first[0], pole], first);
  }
  return out;
}

function flat(geometry) {
  const c = geometry.coordinates;
  switch (geometry.type) {
    case 'Polygon': return { ...geometry, coordinates: c.map((r) => flatRing(r, true)) };
    case 'MultiPolygon': return { ...geometry, coordinates: c.map((p) => p.map((r) => flatRing(r, true))) };
    case 'LineString': return { ...geometry, coordinates: flatRing(c, false) };
    case 'MultiLineString': return { ...geometry, coordinates: c.map((l) => flatRing(l, false)) };
    default: return geometry;
  }
}

const flatFeatures = (fc) => ({ ...fc, features: fc.features.map((f) => ({ ...f, geometry: flat(f.geometry) })) });
/** A fix older than this is stale (the server's rule, `STALE_MS` in the tracker). */
const STALE_MS = 60000;

export class RelayMap {
  /** `tiles`: null (built-in basemap) or { url, attribution }. */
  constructor(el, { tiles = null } = {}) {
    this.map = L.map(el, { worldCopyJump: false, minZoom: 1, maxZoom: tiles ? 19 : 16, zoomSnap: 0.5 });
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    this.legs = new Map(); // "relay/leg" → { casing, done, rest, leg }
    this.markers = new Map(); // relay id → circle marker
    this.bounds = null;
    this.map.createPane('routes').style.zIndex = 410;
    this.map.createPane('points').style.zIndex = 420;
    this.map.createPane('objects').style.zIndex = 630;
    if (tiles) {
      L.tileLayer(tiles.url, { attribution: tiles.attribution ?? '', maxZoom: 19 }).addTo(this.map);
    } else {
      this.basemap();
    }
    this.map.setView([20, 0], 2);
  }

  /** The world basemap: coarse at first, the finer one once zoomed in close. */
  async basemap() {
    this.map.attributionControl.addAttribution('Basemap: Natural Earth');
    let fineLoaded = false;
    const draw = async (file) => {
      const res = await fetch(`/assets/vendor/world-atlas/${file}`);
      const topo = await res.json();
      const land = L.geoJSON(flatFeatures(topojson.feature(topo, topo.objects.countries)), {
        style: { color: '#8a8a7a', weight: 0, fillColor: '#f2efe6', fillOpacity: 1 },
        interactive: false,
      });
      const borders = L.geoJSON(flat(topojson.mesh(topo, topo.objects.countries, (a, b) => a !== b)), {
        style: { color: '#8a8577', weight: 1, opacity: 1 },
        interactive: false,
      });
      const group = L.layerGroup([land, borders]).addTo(this.map);
      group.eachLayer((l) => l.bringToBack());
      return group;
    };
    let coarse = await draw('countries-110m.json');
    this.map.on('zoomend', async () => {
      if (fineLoaded || this.map.getZoom() < FINE_ZOOM) return;
      fineLoaded = true;
      const fine = await draw('countries-50m.json');
      coarse.remove();
      coarse = fine;
    });
  }

  /** Draws every relay of the plan model (once per plan version). */
  drawPlan(m) {
    for (const layer of this.drawn ?? []) layer.remove();
    this.drawn = [];
    this.legs.clear();
    const all = [];
    const add = (layer) => {
      layer.addTo(this.map);
      this.drawn.push(layer);
      return layer;
    };
    const courseDrawn = new Set();
    for (const relay of m.relays) {
      for (const leg of relay.legs) {
        const latlngs = unwrap(leg.points).map(([lon, lat]) => [lat, lon]);
        all.push(...latlngs);
        if (relay.course) {
          // One course for many teams: draw it once; the teams are markers on it.
          const key = `${relay.course}/${leg.course_leg}`;
          if (!courseDrawn.has(key) && latlngs.length > 1) {
            courseDrawn.add(key);
            add(L.polyline(latlngs, { ...STYLE.course, pane: 'routes', interactive: false, className: 'route-course' }));
          }
          continue;
        }
        if (latlngs.length > 1) {
          const casing = add(L.polyline([], { ...STYLE.casing, pane: 'routes', interactive: false }));
          const done = add(L.polyline([], { ...STYLE.done, pane: 'routes', interactive: false }));
          const rest = add(L.polyline(latlngs, { ...STYLE.upcoming, pane: 'routes', interactive: false }));
          this.legs.set(`${relay.id}/${leg.index}`, { casing, done, rest, leg, latlngs });
        }
      }
      // Exchange points (each leg's end); a course's once, however many teams run it.
      relay.legs.forEach((leg, i) => {
        if (!leg.end) return;
        if (relay.course) {
          const key = `${relay.course}/exchange/${i}`;
          if (courseDrawn.has(key)) return;
          courseDrawn.add(key);
        }
        const last = i === relay.legs.length - 1;
        const name = relay.stops.find((s) => s.leg === i && s.fraction === 1)?.name ?? '';
        add(L.circleMarker([leg.end[1], leg.end[0]], {
          pane: 'points', radius: last ? 7 : 5, color: '#111111', weight: 2,
          fillColor: last ? '#111111' : '#ffffff', fillOpacity: 1, className: 'exchange-point',
        }).bindTooltip(escapeHtml(last ? `Finish: ${name}` : `Exchange: ${name}`)));
      });
    }
    for (const place of m.places) {
      add(L.circleMarker([place.point[1], place.point[0]], {
        pane: 'points', radius: 4, color: '#0842a0', weight: 2, fillColor: '#ffd400', fillOpacity: 1,
        className: 'place-point',
      }).bindTooltip(escapeHtml(place.name)));
      all.push([place.point[1], place.point[0]]);
    }
    this.bounds = all.length ? L.latLngBounds(all) : null;
    // Fit once; a new plan version later keeps the viewer's own zoom.
    if (!this.fitted) this.fit();
    this.fitted = true;
  }

  fit() {
    if (this.bounds?.isValid()) this.map.fitBounds(this.bounds, { padding: [24, 24], maxZoom: 15 });
  }

  /** Colours legs by status and moves the markers, from the live model. */
  update(m, live, { now, labels }) {
    for (const relay of m.relays) {
      const r = live.relay(relay.id);
      if (!r) continue;
      if (!relay.course) this.colour(relay, r);
      this.marker(relay, r, { now, label: labels });
    }
  }

  colour(relay, r) {
    for (const leg of relay.legs) {
      const drawn = this.legs.get(`${relay.id}/${leg.index}`);
      const lv = r.legs[leg.index];
      if (!drawn || !lv) continue;
      const { casing, done, rest, latlngs } = drawn;
      if (lv.status === 'done') {
        done.setLatLngs(latlngs);
        rest.setLatLngs([]);
        casing.setLatLngs([]);
      } else if (lv.status === 'current') {
        const fraction = lv.length_m > 0 ? Math.min(1, (lv.along_m ?? 0) / lv.length_m) : 0;
        const pts = unwrap(leg.points);
        const [a, b] = splitAt(pts, leg.cum, fraction * leg.cum[leg.cum.length - 1]);
        const ll = (ps) => ps.map(([lon, lat]) => [lat, lon]);
        done.setLatLngs(ll(a));
        rest.setLatLngs(ll(b));
        rest.setStyle({ ...STYLE.current, dashArray: null });
        casing.setLatLngs(ll(b));
      } else {
        done.setLatLngs([]);
        casing.setLatLngs([]);
        rest.setLatLngs(latlngs);
        rest.setStyle(STYLE.upcoming);
      }
    }
  }

  /** Where the object is: the last fix, or (none yet) the start of the current leg. */
  marker(relay, r, { now, label }) {
    let at = null;
    let estimated = false;
    // A stationary leg nobody tracks (performers on a fixed stage) is at its place: that is
    // where the object is, not a lost signal.
    let place = null;
    if (r.position) at = [r.position.lon, r.position.lat];
    else if (r.current_leg !== undefined) {
      const leg = relay.legs[r.current_leg];
      if (leg?.points.length === 1) {
        at = leg.points[0];
        place = leg.placeName ?? 'its place';
      } else if (leg?.points.length) {
        at = pointAt(leg.points, leg.cum, leg.cum[leg.cum.length - 1] * (r.progress?.fraction ?? 0));
        estimated = true;
      }
    }
    let mk = this.markers.get(relay.id);
    if (!at) {
      mk?.remove();
      this.markers.delete(relay.id);
      return;
    }
    const latlng = [at[1], at[0]];
    if (!mk) {
      mk = L.circleMarker(latlng, {
        pane: 'objects', radius: 9, color: '#ffffff', weight: 3, fillColor: '#c8004f', fillOpacity: 1,
        className: 'position-marker',
      }).addTo(this.map);
      mk.getElement()?.setAttribute('data-relay', relay.id);
      this.markers.set(relay.id, mk);
    } else {
      mk.setLatLng(latlng);
    }
    const stale = r.position && (r.position.stale || now - Date.parse(r.position.t) > STALE_MS);
    mk.setStyle({ fillColor: stale || estimated ? '#6b6b6b' : '#c8004f' });
    const who = r.holders?.join(' & ') || relay.name;
    let text = relay.course ? `${relay.name}: ${who}` : who;
    if (place) text += ` · at ${place}`;
    else if (estimated) text += ' (no fix yet)';
    else if (stale) text += ` · fix ${Math.round((now - Date.parse(r.position.t)) / 60000)} min old`;
    // Leaflet takes tooltip content as HTML; names come from the plan.
    const html = escapeHtml(text);
    if (mk.getTooltip()) mk.setTooltipContent(html);
    else if (label) mk.bindTooltip(html, { permanent: true, direction: 'auto', offset: [10, 0], className: 'object-label' });
    else mk.bindTooltip(html);
  }

  /** Zooms to a relay's object, or its current leg. */
  focus(relayId, m, live) {
    const mk = this.markers.get(relayId);
    if (mk) {
      this.map.setView(mk.getLatLng(), Math.max(this.map.getZoom(), 12));
      return;
    }
    const relay = m.relays.find((x) => x.id === relayId);
    const r = live.relay(relayId);
    const leg = relay?.legs[r?.current_leg ?? 0];
    if (leg?.points.length) this.map.fitBounds(L.latLngBounds(leg.points.map(([lon, lat]) => [lat, lon])), { padding: [24, 24], maxZoom: 14 });
  }
}
