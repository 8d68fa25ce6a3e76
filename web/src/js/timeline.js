// The planned-versus-actual chart: one row per leg, the planned window as an outline and the
// actual (done), running-then-predicted (current) or predicted (to come) window as a filled
// bar, and a line at "now". Drawn as SVG at the container's pixel width so its text stays
// readable on a phone. The schedule beside it is its text alternative.

import { h } from './dom.js';
import { currentLocale, msg } from './i18n.js';
import { endedBy } from './plan.js';
import { viewerZone } from './time.js';

const ROW = 26;
const AXIS = 28;
/** The narrowest bar drawn, in pixels. */
const MIN_BAR = 6;

/** Nice tick steps, in minutes. */
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200, 525600];

const DAY_MS = 86400000;
const tickFormats = new Map();

/** A tick's label: the time of day, or the date for steps of a day or more (in the page's locale). */
function tickLabel(t, stepMs) {
  const kind = stepMs >= DAY_MS ? 'day' : 'time';
  const key = `${currentLocale()}|${kind}`;
  if (!tickFormats.has(key)) {
    tickFormats.set(key, new Intl.DateTimeFormat(currentLocale(), kind === 'day'
      ? { timeZone: viewerZone, day: 'numeric', month: 'short' }
      : { timeZone: viewerZone, hour: '2-digit', minute: '2-digit' }));
  }
  return tickFormats.get(key).format(t);
}

export function timeline(container, relay, liveRelay, now) {
  const width = Math.max(280, container.clientWidth || 600);
  const gutter = Math.min(150, Math.round(width * 0.32));
  const legs = liveRelay?.legs ?? [];
  const height = legs.length * ROW + AXIS + 6;
  const times = legs.flatMap((l) => [l.planned_start, l.planned_end, l.actual_start ?? l.eta_start, l.actual_end ?? l.eta_end])
    .map((t) => Date.parse(t))
    .filter(Number.isFinite);
  if (times.length === 0) {
    container.replaceChildren();
    return;
  }
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (now > t0 && now < t1 + (t1 - t0) * 0.1) t1 = Math.max(t1, now);
  if (t1 - t0 < 60000) t1 = t0 + 60000;
  const pad = (t1 - t0) * 0.02;
  t0 -= pad;
  t1 += pad;
  const x = (t) => gutter + ((t - t0) / (t1 - t0)) * (width - gutter - 8);
  // A leg of seconds in a relay of hours still gets a bar one can see (and point at).
  const w = (a, b) => Math.max(MIN_BAR, x(b) - x(a));

  const titleId = `tl-title-${relay.id}`;
  const svg = h('svg:svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': titleId, class: 'timeline-svg',
  });
  svg.append(h('svg:title', { id: titleId, text: msg('timeline.title', { relay: relay.name }) }));

  legs.forEach((l, i) => {
    const y = i * ROW + 4;
    const planLeg = relay.legs[i];
    const label = `${i + 1} ${planLeg?.carriers?.join(' & ') ?? ''}`;
    const maxChars = Math.floor((gutter - 8) / 7.5);
    svg.append(h('svg:text', { x: 4, y: y + 15, class: 'tl-label' },
      label.length > maxChars ? `${label.slice(0, maxChars - 1)}…` : label,
      h('svg:title', { text: label })));
    const ps = Date.parse(l.planned_start);
    const pe = Date.parse(l.planned_end);
    svg.append(h('svg:rect', { x: x(ps), y: y + 2, width: w(ps, pe), height: 8, class: 'tl-planned' }));
    const as = Date.parse(l.actual_start ?? l.eta_start);
    const ae = Date.parse(l.actual_end ?? l.eta_end);
    if (l.status === 'current' && now > as) {
      // Running: solid up to now, lighter for the predicted rest.
      const mid = Math.min(now, ae);
      svg.append(h('svg:rect', { x: x(as), y: y + 12, width: w(as, mid), height: 10, class: 'tl-current' }));
      if (ae > mid) svg.append(h('svg:rect', { x: x(mid), y: y + 12, width: w(mid, ae), height: 10, class: 'tl-predicted tl-current-rest' }));
    } else {
      svg.append(h('svg:rect', { x: x(as), y: y + 12, width: w(as, ae), height: 10, class: l.status === 'done' ? 'tl-done' : 'tl-predicted' }));
    }
    // How a done leg's handoff is known, at its end: ✓ verified, ≈ assumed. A change of mode
    // by the same carriers is no handoff and gets no mark.
    const how = l.status === 'done' && !planLeg?.segment ? endedBy(l.ended_by) : null;
    if (how) {
      svg.append(h('svg:text', {
        x: Math.min(width - 10, x(ae) + 3), y: y + 22, class: `tl-how ${how.verified ? 'verified' : 'assumed'}`,
        'data-leg': String(i),
      }, how.icon, h('svg:title', { text: msg('timeline.handoffAfter', { n: i + 1, how: how.text }) })));
    }
  });

  // The axis: ticks at a step that gives at most ~6 labels, in the viewer's zone.
  const spanMin = (t1 - t0) / 60000;
  const labels = Math.max(2, Math.floor((width - gutter) / 90));
  const step = (STEPS.find((s) => spanMin / s <= labels) ?? STEPS[STEPS.length - 1]) * 60000;
  const axisY = legs.length * ROW + 6;
  svg.append(h('svg:line', { x1: gutter, x2: width - 8, y1: axisY, y2: axisY, class: 'tl-axis' }));
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    svg.append(h('svg:line', { x1: x(t), x2: x(t), y1: 0, y2: axisY + 4, class: 'tl-grid' }));
    svg.append(h('svg:text', { x: x(t), y: axisY + 18, class: 'tl-tick', 'text-anchor': 'middle' },
      tickLabel(t, step)));
  }
  if (now >= t0 && now <= t1) {
    svg.append(h('svg:line', { x1: x(now), x2: x(now), y1: 0, y2: axisY, class: 'tl-now' }));
    // Right of the line, or left of it near the right edge (never cut off).
    const label = msg('time.now');
    const room = width - x(now) > label.length * 7.5 + 6;
    svg.append(h('svg:text', {
      x: room ? x(now) + 3 : x(now) - 3, y: 10, class: 'tl-now-label', 'text-anchor': room ? 'start' : 'end',
    }, label));
  }
  container.replaceChildren(svg);
}
