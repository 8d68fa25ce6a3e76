// The map: Leaflet over a built-in world basemap (Natural Earth countries from the
// world-atlas package, served by our own server), so it works with no internet. Above it, the
// organiser's street basemap when the server has one (`handoff serve --basemap FILE.pmtiles`:
// vector tiles drawn by protomaps-leaflet, read from `/basemap.pmtiles` with range requests).
// Third-party street tiles are used only when a tile URL is configured (`?tiles=URL`,
// `?tiles=osm`, or the page's switch); nothing else leaves the server the page came from. The
// world basemap stays beneath whatever is above it: where the street tiles have nothing, or
// fail to load, it shows through.
//
// Leg status colours: done, current (the travelled part drawn like done), to come. Each
// relay's object is a round marker; its tooltip gives the holder and, when stale, the age.
//
// Follow mode (on by default) keeps one relay's object in view, with the views follow.js
// computes; a drag, a zoom or a key that moves the map hands the view back to the viewer
// (`onFollowChange(false)`) until follow is asked for again. With prefers-reduced-motion the
// map jumps instead of gliding. For tests outside the repo, the map element carries its
// visible area as `data-view-bounds="west,south,east,north"` and each object's marker the
// names of who holds it as `data-holder` (see DESIGN.md), the same in every language.

/* global L, topojson */

import { escapeHtml, names } from './dom.js';
import { followTarget, nearEdge, viewFor } from './follow.js';
import { locate, pointAt, splitAt, unwrap } from './geo.js';
import { msg } from './i18n.js';
import { objectTitle } from './plan.js';

export const OSM = {
  url: 'https://tile.openstreetmap.org/{z}/{x}/{y}.png',
  attribution: '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
};

export const STYLE = {
  done: { color: '#333333', weight: 4, opacity: 0.95 },
  current: { color: '#c8004f', weight: 6, opacity: 1 },
  upcoming: { color: '#0842a0', weight: 3, opacity: 0.9, dashArray: '7 6' },
  casing: { color: '#ffffff', weight: 9, opacity: 0.85 },
  course: { color: '#0842a0', weight: 3, opacity: 0.9 },
};

const FINE_ZOOM = 5;
/**
 * How far beyond the view the lines and the land are drawn, as a share of its size: a follow
 * move glides over up to about two thirds of the view, and Leaflet redraws only at the end,
 * so with its default (0.1) the sea would show through the land for the length of the glide.
 */
export const RENDER_PADDING = 0.7;
/** How long a follow move is given before the next may start (Leaflet glides for 250 ms). */
const MOVE_MS = 400;

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
/** From this zoom on (a city), the plan's places are named on the map. */
const PLACE_LABEL_ZOOM = 9;
/** A fix older than this is stale (the server's rule, `STALE_MS` in the tracker). */
const STALE_MS = 60000;

/** The pane of the world basemap: beneath Leaflet's tile pane (200), so tiles draw over it. */
const WORLD_PANE = 'world';

const credits = new WeakMap();

/**
 * The words Leaflet shows on map `map` in the page's language: the basemap's credit and the
 * zoom buttons' names. Called again after a switch of language.
 */
export function localizeMap(map) {
  const credit = escapeHtml(msg('map.basemap', { source: 'Natural Earth' }));
  const was = credits.get(map);
  if (was !== credit) {
    if (was) map.attributionControl.removeAttribution(was);
    map.attributionControl.addAttribution(credit);
    credits.set(map, credit);
  }
  const zoom = map.zoomControl?.getContainer();
  for (const [button, key] of [['.leaflet-control-zoom-in', 'map.zoomIn'], ['.leaflet-control-zoom-out', 'map.zoomOut']]) {
    const el = zoom?.querySelector(button);
    if (!el) continue;
    el.title = msg(key);
    el.setAttribute('aria-label', msg(key));
  }
}

/**
 * Draws the built-in world basemap under Leaflet map `map`, in a pane beneath any tiles:
 * coarse at first, the finer one once zoomed in close. Then the server's street basemap
 * above it, if it has one. The carrier page's map uses it too.
 */
export async function worldBasemap(map) {
  localizeMap(map);
  if (!map.getPane(WORLD_PANE)) map.createPane(WORLD_PANE).style.zIndex = 150;
  const renderer = L.svg({ pane: WORLD_PANE, padding: RENDER_PADDING });
  // The page may replace the map (the street-tiles switch) while a file is still loading.
  let removed = false;
  map.on('unload', () => { removed = true; });
  streetBasemap(map, () => removed);
  let fineLoaded = false;
  const draw = async (file) => {
    const res = await fetch(`/assets/vendor/world-atlas/${file}`);
    const topo = await res.json();
    if (removed) return null;
    const land = L.geoJSON(flatFeatures(topojson.feature(topo, topo.objects.countries)), {
      style: { color: '#8a8a7a', weight: 0, fillColor: '#f2efe6', fillOpacity: 1 },
      interactive: false, pane: WORLD_PANE, renderer,
    });
    const borders = L.geoJSON(flat(topojson.mesh(topo, topo.objects.countries, (a, b) => a !== b)), {
      style: { color: '#8a8577', weight: 1, opacity: 1 },
      interactive: false, pane: WORLD_PANE, renderer,
    });
    const group = L.layerGroup([land, borders]).addTo(map);
    group.eachLayer((l) => l.bringToBack());
    return group;
  };
  let coarse = await draw('countries-110m.json');
  map.on('zoomend', async () => {
    if (fineLoaded || map.getZoom() < FINE_ZOOM) return;
    fineLoaded = true;
    const fine = await draw('countries-50m.json');
    if (!fine) return;
    coarse?.remove();
    coarse = fine;
  });
}

/** Loads a classic script of this server once (protomaps-leaflet is not an ES module). */
const scripts = new Map();
function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const el = document.createElement('script');
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.append(el);
    }));
  }
  return scripts.get(src);
}

/**
 * The server's street basemap: `{ url, maxZoom }` (its PMTiles header read with one range
 * request), or null when the server has none (`GET /basemap` says so) or the file is not
 * PMTiles version 3.
 */
export async function basemapHeader() {
  let url;
  let res;
  try {
    url = (await (await fetch('/basemap')).json()).pmtiles;
    if (!url) return null;
    res = await fetch(url, { headers: { Range: 'bytes=0-126' } });
  } catch {
    return null;
  }
  if (!res.ok) return null;
  const head = new Uint8Array(await res.arrayBuffer());
  const magic = String.fromCharCode(...head.slice(0, 7));
  if (magic !== 'PMTiles' || head[7] !== 3 || head.length < 102) return null;
  return { url, maxZoom: head[101] };
}

/**
 * Adds the server's street basemap to `map` (above the world basemap, in the tile pane), if
 * the server has one and `removed()` is not yet true; marks the map element
 * `data-basemap="streets"` once it is added. The
 * light flavour of the Protomaps style, without its background fill: that is painted on
 * every tile, also where the extract has no data, and would hide the world map there.
 */
async function streetBasemap(map, removed) {
  const header = await basemapHeader();
  if (!header) return;
  await loadScript('/assets/vendor/protomaps-leaflet/protomaps-leaflet.js');
  if (removed()) return;
  // eslint-disable-next-line no-undef
  const layer = protomapsL.leafletLayer({
    url: header.url, flavor: 'light', lang: document.documentElement.lang || 'en', maxDataZoom: header.maxZoom,
  });
  layer.backgroundColor = undefined;
  layer.addTo(map);
  map.getContainer().dataset.basemap = 'streets';
}

export class RelayMap {
  /**
   * `tiles`: null (built-in basemap) or { url, attribution }. `onRouteTap({ relayId, leg,
   * alongM, at })`: a tap (or click) on or near a route, with the route's nearest point.
   */
  constructor(el, { tiles = null, onFollowChange = () => {}, onRouteTap = () => {} } = {}) {
    // Motion only for those who have not asked for less: no glide, no zoom animation, no fade.
    this.animate = !window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    this.map = L.map(el, {
      worldCopyJump: false, minZoom: 1, maxZoom: tiles ? 19 : 16, zoomSnap: 0.5,
      zoomAnimation: this.animate, fadeAnimation: this.animate, markerZoomAnimation: this.animate, inertia: this.animate,
      renderer: L.svg({ padding: RENDER_PADDING }),
    });
    this.following = true;
    this.followed = null; // { relay, r }: what the last update followed
    this.followKey = null; // the target's key when the view was last fitted to it
    this.movedAt = -Infinity; // when follow mode last moved the view (performance.now())
    this.held = false; // a pointer is pressed on the map
    this.onFollowChange = onFollowChange;
    this.viewerGestures(el);
    this.map.on('click', (e) => {
      const hit = this.routeAt(e.latlng);
      if (hit) onRouteTap(hit);
    });
    this.map.on('move moveend zoomend resize viewreset', () => this.publishView());
    this.map.on('zoomend viewreset', () => el.classList.toggle('labels-on', this.map.getZoom() >= PLACE_LABEL_ZOOM));
    this.map.on('resize', () => {
      this.followKey = null;
      this.track();
    });
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    this.legs = new Map(); // "relay/leg" → { casing, done, rest, leg }
    this.markers = new Map(); // relay id → circle marker
    this.bounds = null;
    this.renderers = {};
    for (const [name, z] of [['routes', 410], ['points', 420], ['objects', 630]]) {
      this.map.createPane(name).style.zIndex = z;
      this.renderers[name] = L.svg({ pane: name, padding: RENDER_PADDING });
    }
    // The world basemap always, beneath; configured tiles over it.
    worldBasemap(this.map);
    this.tileLayer = tiles
      ? L.tileLayer(tiles.url, { attribution: tiles.attribution ?? '', maxZoom: 19 }).addTo(this.map)
      : null;
    this.map.setView([20, 0], 2);
    this.publishView();
  }

  /**
   * Leaflet's words again in the page's language, after a switch: the credits (the tiles'
   * from `tiles`, as the page configures them) and the zoom buttons. The exchange points'
   * tooltips follow with the next `drawPlan`.
   */
  localize(tiles) {
    localizeMap(this.map);
    const credit = tiles?.attribution ?? '';
    if (!this.tileLayer || this.tileLayer.getAttribution() === credit) return;
    this.map.attributionControl.removeAttribution(this.tileLayer.getAttribution());
    this.tileLayer.options.attribution = credit;
    this.map.attributionControl.addAttribution(credit);
  }

  /**
   * The viewer's own moves leave follow mode: a drag (Leaflet reports only those a person
   * makes), the wheel, a double click or tap, a pinch, the zoom buttons, the keys that pan
   * or zoom, a shift-drag box. The page's own moves (setView) never come through these.
   */
  viewerGestures(el) {
    const leave = () => this.setFollow(false);
    this.map.on('dragstart boxzoomstart', leave);
    // Nothing moves under a finger or a pointer pressed on the map.
    el.addEventListener('pointerdown', () => { this.held = true; });
    for (const type of ['pointerup', 'pointercancel']) window.addEventListener(type, () => { this.held = false; });
    el.addEventListener('wheel', leave, { passive: true });
    el.addEventListener('dblclick', leave);
    el.addEventListener('touchstart', (e) => {
      if (e.touches.length > 1) leave();
    }, { passive: true });
    el.addEventListener('keydown', (e) => {
      if (/^(Arrow(Up|Down|Left|Right)|[+=_-])$/.test(e.key)) leave();
    });
    this.map.zoomControl?.getContainer().addEventListener('click', leave);
  }

  /** Turns follow mode on (the view is fitted at the next update) or off. */
  setFollow(on) {
    if (on === this.following) return;
    this.following = on;
    this.followKey = null;
    this.onFollowChange(on);
    if (on) this.track();
  }

  /**
   * The visible area as `data-view-bounds="west,south,east,north"`, in degrees: longitudes
   * in [-180, 180] (west > east where the view crosses the antimeridian; the whole range
   * when it shows more than the world), latitudes in [-90, 90].
   */
  publishView() {
    const b = this.map.getBounds();
    let w = b.getWest();
    let e = b.getEast();
    if (e - w >= 360) [w, e] = [-180, 180];
    else {
      const wrapped = ((((w + 180) % 360) + 360) % 360) - 180;
      e = wrapped + (e - w);
      w = wrapped;
      if (e > 180) e -= 360;
    }
    const clampLat = (lat) => Math.max(-90, Math.min(90, lat));
    const text = [w, clampLat(b.getSouth()), e, clampLat(b.getNorth())].map((v) => v.toFixed(5)).join(',');
    const el = this.map.getContainer();
    if (el.dataset.viewBounds !== text) el.dataset.viewBounds = text;
  }

  /** Where a layer of ours is drawn: its pane, and that pane's renderer. */
  pane(name) {
    return { pane: name, renderer: this.renderers[name] };
  }

  /**
   * The route point nearest to `latlng`, within a finger's width (24 px) of it:
   * { relayId, leg (the plan model's), alongM, at: [lon, lat] }, or null.
   */
  routeAt(latlng) {
    const p = [latlng.lng, latlng.lat];
    // Metres per pixel here, at this zoom (Web Mercator, 256 px tiles).
    const mPerPx = (40075016.686 * Math.cos((latlng.lat * Math.PI) / 180)) / 2 ** (this.map.getZoom() + 8);
    let best = null;
    for (const [key, { leg }] of this.legs) {
      if (leg.points.length < 2) continue;
      const found = locate(leg.points, leg.cum, p);
      if (found.offM <= 24 * mPerPx && (!best || found.offM < best.offM)) {
        best = { relayId: key.slice(0, key.lastIndexOf('/')), leg, alongM: found.alongM, offM: found.offM };
      }
    }
    if (!best) return null;
    return { ...best, at: pointAt(best.leg.points, best.leg.cum, best.alongM) };
  }

  /** Shows `content` (an element) in a popup at `at` ([lon, lat]). */
  popup(at, content) {
    L.popup({ className: 'pass-popup', maxWidth: 260 }).setLatLng([at[1], at[0]]).setContent(content).openOn(this.map);
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
            add(L.polyline(latlngs, { ...STYLE.course, ...this.pane('routes'), interactive: false, className: 'route-course' }));
          }
          continue;
        }
        if (latlngs.length > 1) {
          const casing = add(L.polyline([], { ...STYLE.casing, ...this.pane('routes'), interactive: false }));
          const done = add(L.polyline([], { ...STYLE.done, ...this.pane('routes'), interactive: false }));
          const rest = add(L.polyline(latlngs, { ...STYLE.upcoming, ...this.pane('routes'), interactive: false }));
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
          ...this.pane('points'), radius: last ? 7 : 5, color: '#111111', weight: 2,
          fillColor: last ? '#111111' : '#ffffff', fillOpacity: 1, className: 'exchange-point',
        }).bindTooltip(escapeHtml(msg(last ? 'map.finishTip' : 'map.exchangeTip', { place: name }))));
      });
    }
    for (const place of m.places) {
      add(L.circleMarker([place.point[1], place.point[0]], {
        ...this.pane('points'), radius: 4, color: '#0842a0', weight: 2, fillColor: '#ffd400', fillOpacity: 1,
        className: 'place-point',
      // Named on the map once zoomed in to a city (the offline basemap has no names of its
      // own): `labels-on` on the map's element shows them.
      }).bindTooltip(escapeHtml(place.name), { permanent: true, direction: 'right', offset: [6, 0], className: 'place-label' }))
        .getElement()?.setAttribute('data-place', place.id);
      all.push([place.point[1], place.point[0]]);
    }
    this.bounds = all.length ? L.latLngBounds(all) : null;
    // Fit once (unless following, which chooses its own view); a new plan version later
    // keeps the viewer's own zoom.
    if (!this.fitted && !this.following) this.fit();
    this.fitted = true;
    this.followKey = null;
  }

  fit() {
    if (this.bounds?.isValid()) this.map.fitBounds(this.bounds, { padding: [24, 24], maxZoom: 15 });
  }

  /**
   * Colours legs by status and moves the markers, from the live model; then, in follow mode,
   * keeps relay `follow` (an id) in view.
   */
  update(m, live, { now, labels, follow = null }) {
    for (const relay of m.relays) {
      const r = live.relay(relay.id);
      if (!r) continue;
      if (!relay.course) this.colour(relay, r);
      this.marker(relay, r, { now, label: labels });
    }
    const relay = m.relays.find((x) => x.id === follow);
    this.followed = relay ? { relay, r: live.relay(relay.id) } : null;
    this.track();
  }

  /**
   * Follow mode's step: fits the view afresh when the target changes (a new leg, another
   * relay, a resize), and otherwise only when the marker nears the edge of the view.
   */
  track() {
    if (!this.following || this.held) return;
    const size = this.map.getSize();
    if (size.x < 1 || size.y < 1) return;
    if (!this.followed?.r) {
      if (this.followKey !== 'all') this.fit();
      this.followKey = 'all';
      return;
    }
    const { relay, r } = this.followed;
    const mk = this.markers.get(relay.id);
    const at = mk?.getLatLng();
    const target = followTarget(relay, r, at ? [at.lng, at.lat] : null);
    if (!target) return;
    const fresh = target.key !== this.followKey;
    const px = at && this.map.latLngToContainerPoint(at);
    const edge = px && nearEdge([px.x, px.y], { width: size.x, height: size.y });
    // A flight and a place are fitted once per leg; only a ground leg moves with its carrier
    // (and any view whose marker leaves it is fitted again).
    if (!fresh && !(edge && (target.kind === 'ground' || !this.map.getBounds().contains(at)))) return;
    // A move under way is not chased: the marker is near the edge until the glide ends.
    if (!fresh && performance.now() - this.movedAt < MOVE_MS) return;
    this.followKey = target.key;
    this.movedAt = performance.now();
    const { center, zoom } = viewFor(target, { width: size.x, height: size.y });
    this.map.setView([center[1], center[0]], zoom, { animate: this.animate });
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
    let finished = false;
    if (r.position) at = [r.position.lon, r.position.lat];
    else if (r.status === 'finished' && relay.legs.length) {
      // Over: the object is where the relay ended (a place of the plan, nobody's position).
      const i = relay.legs.length - 1;
      const leg = relay.legs[i];
      at = leg.points.length === 1 ? leg.points[0] : (leg.end ?? leg.points[leg.points.length - 1]);
      const name = leg.points.length === 1 ? leg.placeName : relay.stops.find((s) => s.leg === i && s.fraction === 1)?.name;
      place = name ? msg('map.finishedAt', { place: name }) : msg('map.finished');
      finished = true;
    } else if (r.current_leg !== undefined) {
      const leg = relay.legs[r.current_leg];
      if (leg?.points.length === 1) {
        at = leg.points[0];
        place = leg.placeName ? msg('map.atPlace', { place: leg.placeName }) : msg('map.atItsPlace');
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
        ...this.pane('objects'), radius: 9, color: '#ffffff', weight: 3, fillColor: '#c8004f', fillOpacity: 1,
        className: 'position-marker',
      }).addTo(this.map);
      mk.getElement()?.setAttribute('data-relay', relay.id);
      this.markers.set(relay.id, mk);
    } else {
      mk.setLatLng(latlng);
    }
    // Who holds it, as the page names them, while someone does.
    const holder = r.current_leg !== undefined && r.holders?.length ? names(r.holders) : null;
    const el = mk.getElement();
    if (holder) el?.setAttribute('data-holder', holder);
    else el?.removeAttribute('data-holder');
    const stale = r.position && (r.position.stale || now - Date.parse(r.position.t) > STALE_MS);
    mk.setStyle({ fillColor: stale || estimated ? '#6b6b6b' : '#c8004f' });
    // The label names the object (or the team, in a race) and who holds it.
    const what = objectTitle(relay);
    const who = !finished && r.holders?.length ? names(r.holders) : '';
    let text = who && who !== what ? `${what}: ${who}` : what;
    if (place) text += ` · ${place}`;
    else if (estimated) text += ` (${msg('map.noFixYet')})`;
    else if (stale) text += ` · ${msg('map.fixAge', { span: msg('time.min', { n: Math.max(1, Math.round((now - Date.parse(r.position.t)) / 60000)) }) })}`;
    // Leaflet takes tooltip content as HTML; names come from the plan.
    const html = escapeHtml(text);
    if (mk.getTooltip()) mk.setTooltipContent(html);
    else if (label) mk.bindTooltip(html, { permanent: true, direction: 'auto', offset: [10, 0], className: 'object-label' });
    else mk.bindTooltip(html);
  }
}
