// The carrier page's map: where this phone is ("You"), the carrier's part of the route (the
// rest of their stint when they hold the object, the leg they will take over otherwise) and
// the exchange point (where they hand over, or take over), over the built-in world basemap of
// map.js. The view is the live page's follow view (follow.js): the carrier and the route
// ahead, at street level, moved only when the carrier nears its edge. A drag or a zoom hands
// the view to the carrier until they press "Centre on me".

/* global L */

import { escapeHtml } from './dom.js';
import { fitView, followTarget, nearEdge, viewFor } from './follow.js';
import { cumulative, splitAt, unwrap } from './geo.js';
import { msg } from './i18n.js';
import { RENDER_PADDING, STYLE, worldBasemap } from './map.js';

const ll = (points) => unwrap(points).map(([lon, lat]) => [lat, lon]);

export class CarrierMap {
  constructor(el, { onFollowChange = () => {} } = {}) {
    const animate = !window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    this.animate = animate;
    this.map = L.map(el, {
      minZoom: 1, maxZoom: 16, zoomSnap: 0.5, zoomAnimation: animate, fadeAnimation: animate,
      markerZoomAnimation: animate, inertia: animate, renderer: L.svg({ padding: RENDER_PADDING }),
    });
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    worldBasemap(this.map);
    this.map.setView([20, 0], 2);
    const line = (style, className) => L.polyline([], { ...style, interactive: false, className }).addTo(this.map);
    this.casing = line(STYLE.casing, 'carrier-casing');
    this.done = line(STYLE.done, 'carrier-done');
    this.ahead = line({ ...STYLE.current, dashArray: null }, 'carrier-route');
    this.exchange = null;
    this.me = null;
    this.following = true;
    this.key = null;
    this.onFollowChange = onFollowChange;
    const leave = () => this.setFollow(false);
    this.map.on('dragstart boxzoomstart', leave);
    el.addEventListener('wheel', leave, { passive: true });
    el.addEventListener('dblclick', leave);
    el.addEventListener('touchstart', (e) => {
      if (e.touches.length > 1) leave();
    }, { passive: true });
    this.map.zoomControl?.getContainer().addEventListener('click', leave);
    this.map.on('resize', () => {
      this.key = null;
      this.track();
    });
  }

  setFollow(on) {
    if (on === this.following) return;
    this.following = on;
    this.key = null;
    this.onFollowChange(on);
    if (on) this.track();
  }

  /**
   * What to show: `relay` and `r` (plan model and live relay), `legs` (the carrier's legs
   * drawn: their stint from the current leg, or the leg they take over), `holding`,
   * `alongM` (how far along the first of `legs`), `here` ([lon, lat] of this phone, or null),
   * `exchange` ({ at: [lon, lat], label }) and `key` (changes when the view must be fitted
   * afresh).
   */
  show({ relay, r, legs, holding, alongM, here, exchange, key }) {
    const points = legs.flatMap((leg, i) => (i === 0 ? leg.points : leg.points.slice(1)));
    if (points.length > 1) {
      const [done, rest] = splitAt(points, cumulative(points), holding ? alongM : 0);
      this.done.setLatLngs(ll(done));
      this.ahead.setLatLngs(ll(rest));
      this.casing.setLatLngs(ll(rest));
      this.ahead.setStyle(holding ? { ...STYLE.current, dashArray: null } : STYLE.upcoming);
    } else {
      for (const l of [this.done, this.ahead, this.casing]) l.setLatLngs([]);
    }
    this.exchange = this.point(this.exchange, exchange?.at, {
      radius: 8, color: '#111111', weight: 3, fillColor: '#ffffff', fillOpacity: 1, className: 'exchange-point',
    }, exchange?.label);
    this.me = this.point(this.me, here, {
      radius: 9, color: '#ffffff', weight: 3, fillColor: '#0842a0', fillOpacity: 1, className: 'me-marker',
    }, msg('carrier.mapYou'));
    this.target = { relay, r, legs, holding, here, exchange, key: `${key}/${here ? 'fix' : 'nofix'}` };
    this.track();
  }

  /** A circle marker at `at` ([lon, lat]) made, moved or removed; its tooltip `label`. */
  point(marker, at, style, label) {
    if (!at) {
      marker?.remove();
      return null;
    }
    const latlng = [at[1], at[0]];
    if (!marker) {
      marker = L.circleMarker(latlng, { ...style, interactive: true }).addTo(this.map);
      marker.bindTooltip(escapeHtml(label ?? ''));
    } else {
      marker.setLatLng(latlng);
      marker.setTooltipContent(escapeHtml(label ?? ''));
    }
    return marker;
  }

  /** Fits the view afresh when the target changes, else only when the carrier nears an edge. */
  track() {
    const t = this.target;
    if (!this.following || !t) return;
    const size = this.map.getSize();
    if (size.x < 1 || size.y < 1) return;
    const box = { width: size.x, height: size.y };
    if (t.key === this.key) {
      const at = this.me?.getLatLng();
      const px = at && this.map.latLngToContainerPoint(at);
      if (!px || !nearEdge([px.x, px.y], box)) return;
    }
    this.key = t.key;
    let view;
    const follow = t.holding ? followTarget(t.relay, t.r, t.here) : null;
    if (follow && (t.here || follow.kind !== 'ground')) {
      view = viewFor(follow, box);
    } else {
      // Before their leg (or with no fix yet): the carrier and where they take over or hand over.
      const pts = [t.exchange?.at, ...(t.here ? [t.here] : t.legs[0]?.points.slice(0, 1) ?? [])].filter(Boolean);
      if (pts.length === 0) return;
      view = fitView(pts, box, { padding: [40, 40], maxZoom: 16, focus: t.here });
    }
    this.map.setView([view.center[1], view.center[0]], view.zoom, { animate: this.animate });
  }
}
