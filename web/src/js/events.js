// The events list (`/`): every event on this server, with its live page and console.

import { getJSON, paths } from './api.js';
import { $, fill, h, problem } from './dom.js';
import { clock, viewerZone } from './time.js';

async function main() {
  let events;
  try {
    ({ events } = await getJSON(paths.events()));
  } catch (e) {
    problem(e.message);
    fill($('#events'));
    return;
  }
  if (events.length === 0) {
    fill($('#events'), h('li', {}, 'No events yet. An organiser uploads a plan with ', h('code', {}, 'handoff plan push'), '.'));
    return;
  }
  fill($('#events'), events.map((e) => {
    const live = `/e/${encodeURIComponent(e.id)}`;
    return h('li', { class: 'card' },
      h('h3', {}, h('a', { href: live }, e.name)),
      h('p', {}, `${e.relays} relay${e.relays === 1 ? '' : 's'} · starts ${clock(Date.parse(e.start), viewerZone)} (your time)`),
      h('p', { class: 'actions' },
        h('a', { class: 'button', href: live }, 'Live map'),
        h('a', { class: 'button secondary', href: `${live}/console` }, 'Operator console')));
  }));
}

main();
