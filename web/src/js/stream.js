// Following an event's live stream. EventSource reconnects by itself after a dropped
// connection; when the server answered with an error it gives up (readyState CLOSED), so we
// reconnect then ourselves, backing off. After any reconnect the page re-reads `/live`:
// what happened while we were away is in it (the stream's first message is a snapshot too).

const KINDS = ['snapshot', 'position', 'eta', 'handoff', 'custody', 'alert', 'plan'];

/**
 * Follows `url`. `onMessage(kind, data)` gets each message; `onStatus('live' |
 * 'reconnecting')` the connection's state; `resync()` is called after a reconnect.
 */
export function follow(url, { onMessage, onStatus, resync }) {
  let es = null;
  let lost = false;
  let retryMs = 1000;
  let timer = null;
  let stopped = false;

  const open = () => {
    clearTimeout(timer);
    if (stopped) return;
    es?.close();
    es = new EventSource(url);
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
