// Following an event's live stream. EventSource reconnects by itself after a dropped
// connection; when the server answered with an error it gives up (readyState CLOSED), so we
// reconnect then ourselves, backing off. After any reconnect the page re-reads `/live`:
// what happened while we were away is in it (the stream's first message is a snapshot too).
// The messages of custody entries carry an id: a reconnection says the last one it saw
// (EventSource's own `Last-Event-ID`, or `last_event_id` on a new connection), and the server
// sends the handoffs recorded since, so none is missed.
//
// With a `token` (the console's admin token) the stream is read with `fetch` instead, since
// EventSource cannot send an Authorization header: operators get the undelayed stream of an
// event with a public delay. It reconnects the same way.

const KINDS = ['snapshot', 'position', 'eta', 'handoff', 'segment', 'custody', 'alert', 'plan'];

/**
 * Follows `url`. `onMessage(kind, data)` gets each message; `onStatus('live' |
 * 'reconnecting')` the connection's state; `resync()` is called after a reconnect.
 */
export function follow(url, { onMessage, onStatus, resync, token }) {
  if (token) return followWithToken(url, token, { onMessage, onStatus, resync });
  let es = null;
  let lost = false;
  let retryMs = 1000;
  let timer = null;
  let stopped = false;
  let lastId = '';

  const open = () => {
    clearTimeout(timer);
    if (stopped) return;
    es?.close();
    es = new EventSource(lastId ? withLastId(url, lastId) : url);
    es.addEventListener('open', () => {
      retryMs = 1000;
      onStatus('live');
      if (lost) {
        lost = false;
        resync();
      }
    });
    es.addEventListener('error', () => {
      lost = true;
      onStatus('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        timer = setTimeout(open, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    });
    for (const kind of KINDS) {
      es.addEventListener(kind, (ev) => {
        if (ev.lastEventId) lastId = ev.lastEventId;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return;
        }
        onMessage(kind, data);
      });
    }
  };

  // Back online, or back to the tab after the phone slept: do not wait for the backoff.
  const wake = () => {
    if (!stopped && (!es || es.readyState === EventSource.CLOSED)) open();
  };
  window.addEventListener('online', wake);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') wake();
  });
  window.addEventListener('pagehide', () => es?.close());
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) open();
  });

  open();
  return {
    close: () => {
      stopped = true;
      clearTimeout(timer);
      es?.close();
    },
  };
}

/** `url` asking for what was stored after the message `id`. */
function withLastId(url, id) {
  const u = new URL(url, location.href);
  u.searchParams.set('last_event_id', id);
  return u.toString();
}

/**
 * Calls `onMessage` for each message of an SSE body (the text/event-stream format), and
 * `onId` with each id.
 */
async function readEvents(body, onMessage, onId) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replaceAll('\r\n', '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let kind = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) kind = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        else if (line.startsWith('id:')) onId(line.slice(3).trim());
      }
      if (!data.length || !KINDS.includes(kind)) continue; // a keep-alive comment
      let parsed;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        continue;
      }
      onMessage(kind, parsed);
    }
  }
}

function followWithToken(url, token, { onMessage, onStatus, resync }) {
  let controller = null;
  let lost = false;
  let retryMs = 1000;
  let timer = null;
  let stopped = false;
  let open = false;
  let lastId = '';

  const connect = async () => {
    clearTimeout(timer);
    if (stopped) return;
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    try {
      const res = await fetch(url, {
        headers: {
          Authorization: `Bearer ${token}`,
          Accept: 'text/event-stream',
          ...(lastId ? { 'Last-Event-ID': lastId } : {}),
        },
        cache: 'no-store',
        signal: mine.signal,
      });
      if (!res.ok || !res.body) throw new Error(`${res.status}`);
      open = true;
      retryMs = 1000;
      onStatus('live');
      if (lost) {
        lost = false;
        resync();
      }
      await readEvents(res.body, onMessage, (id) => {
        lastId = id;
      });
    } catch {
      // A network error, an error answer, or our own abort: the same way back.
    }
    open = false;
    if (stopped || controller !== mine) return;
    // The stream ended (a new plan version, the server restarting) or failed: back off.
    lost = true;
    onStatus('reconnecting');
    timer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  };

  const wake = () => {
    if (!stopped && !open) connect();
  };
  window.addEventListener('online', wake);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') wake();
  });
  window.addEventListener('pagehide', () => controller?.abort());
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) connect();
  });

  connect();
  return {
    close: () => {
      stopped = true;
      clearTimeout(timer);
      controller?.abort();
    },
  };
}
