// The events list (`/`): every event on this server, with its live page and console. A
// switch of language lists them again in the new words.

import { getJSON, paths } from './api.js';
import { $, fill, h, problem } from './dom.js';
import { mountSwitch, msg, msgParts, onLanguageChange } from './i18n.js';
import { clock, viewerZone } from './time.js';

function list(events) {
  if (events.length === 0) {
    fill($('#events'), h('li', {}, msgParts('index.none', { command: h('code', {}, 'handoff plan push') })));
    return;
  }
  fill($('#events'), events.map((e) => {
    const live = `/e/${encodeURIComponent(e.id)}`;
    return h('li', { class: 'card' },
      h('h3', {}, h('a', { href: live }, e.name)),
      h('p', {}, msg('index.relays', { count: e.relays, time: clock(Date.parse(e.start), viewerZone) })),
      h('p', { class: 'actions' },
        h('a', { class: 'button', href: live }, msg('index.liveMap')),
        h('a', { class: 'button secondary', href: `${live}/console` }, msg('index.console'))));
  }));
}

async function main() {
  mountSwitch();
  let events;
  try {
    ({ events } = await getJSON(paths.events()));
  } catch (e) {
    problem(e.message);
    fill($('#events'));
    return;
  }
  list(events);
  onLanguageChange(() => list(events));
}

main();
