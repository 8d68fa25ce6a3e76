// The console's map of every registered phone: each one's newest fix (from `GET …/devices`,
// admin only), green while it reports and grey once silent, over the built-in world basemap
// (and the street basemap, when the server has one). The view fits every fix at each refresh
// until the operator moves the map; each marker carries `data-device` and says in its tooltip
// who it is, how old the fix is and the battery.

/* global L */

import { escapeHtml } from './dom.js';
import { msg } from './i18n.js';
import { RENDER_PADDING, worldBasemap } from './map.js';

export class PhonesMap {
  constructor(el) {
    const animate = !window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    this.map = L.map(el, {
      minZoom: 1, maxZoom: 17, zoomSnap: 0.5, zoomAnimation: animate, fadeAnimation: animate,
      markerZoomAnimation: animate, renderer: L.svg({ padding: RENDER_PADDING }),
    });
    this.map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    worldBasemap(this.map);
    this.map.setView([20, 0], 1.5);
    this.markers = new Map();
    this.moved = false; // the operator moved the map: refreshes leave the view alone
    this.map.on('dragstart zoomstart', (e) => {
      if (!this.fitting) this.moved = true;
      return e;
    });
  }

  /** `devices`: the `GET …/devices` list; `age(ms)` says how old a fix is in words. */
  update(devices, age) {
    const seen = new Set();
    for (const d of devices) {
      const fix = d.last_fix;
      if (!fix) continue;
      seen.add(d.device);
      let m = this.markers.get(d.device);
      if (!m) {
        m = L.circleMarker([fix.lat, fix.lon], { radius: 8, weight: 2, className: 'phone-marker' }).addTo(this.map);
        this.markers.set(d.device, m);
      }
      m.setLatLng([fix.lat, fix.lon]);
      m.setStyle(d.online
        ? { color: '#0b6b2f', fillColor: '#1f9d4c', fillOpacity: 0.9 }
        : { color: '#555555', fillColor: '#9a9a9a', fillOpacity: 0.9 });
      const batt = fix.batt_pct === undefined ? '' : msg('phones.battery', { pct: Math.round(fix.batt_pct) });
      // Leaflet takes tooltip content as HTML: the whole line is escaped (names come from the plan).
      m.bindTooltip(escapeHtml(`${msg('phones.tip', {
        carrier: d.carrier, device: d.device, state: msg(d.online ? 'phones.reporting' : 'phones.silent'), age: age(Date.parse(fix.received_at)),
      })}${batt}`));
      const el = m.getElement();
      if (el) {
        el.dataset.device = d.device;
        el.dataset.online = String(Boolean(d.online));
      }
    }
    for (const [device, m] of this.markers) {
      if (!seen.has(device)) {
        m.remove();
        this.markers.delete(device);
      }
    }
    if (!this.moved && this.markers.size) {
      const bounds = L.latLngBounds([...this.markers.values()].map((m) => m.getLatLng()));
      this.fitting = true;
      this.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 15, animate: false });
      this.fitting = false;
    }
  }
}
