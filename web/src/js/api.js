// The JSON API as the pages use it. Errors come back as {"error":{"code","message"}}: we
// surface the server's message, which is written for people (and shown as it comes, in the
// server's language).

import { msg } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { token, body, accept } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accept) headers.Accept = accept;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // `/live` is cacheable for a second; the pages always want the current view.
      cache: 'no-cache',
    });
  } catch (e) {
    throw new ApiError(0, 'network', msg('api.unreachable', { reason: e.message }));
  }
  if (!res.ok) {
    let code = 'http';
    let message = `${res.status} ${res.statusText}`;
    try {
      const err = (await res.json()).error;
      code = err.code ?? code;
      message = err.message ?? message;
    } catch {
      // Not our JSON error (a proxy's page): keep the status line.
    }
    throw new ApiError(res.status, code, message);
  }
  return res;
}

export async function getJSON(path, opts) {
  return (await request('GET', path, opts)).json();
}

export async function getText(path, opts) {
  return (await request('GET', path, opts)).text();
}

export async function postJSON(path, body, opts = {}) {
  const res = await request('POST', path, { ...opts, body });
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') ?? '';
  return type.includes('json') ? res.json() : res.text();
}

export async function deleteJSON(path, opts = {}) {
  return (await request('DELETE', path, opts)).json();
}

const enc = encodeURIComponent;
export const paths = {
  events: () => '/api/v1/events',
  plan: (e) => `/api/v1/events/${enc(e)}`,
  live: (e) => `/api/v1/events/${enc(e)}/live`,
  stream: (e) => `/api/v1/events/${enc(e)}/stream`,
  devices: (e) => `/api/v1/events/${enc(e)}/devices`,
  token: (e, d) => `/api/v1/events/${enc(e)}/devices/${enc(d)}/token`,
  shift: (e) => `/api/v1/events/${enc(e)}/shift`,
  handoffs: (e, r) => `/api/v1/events/${enc(e)}/relays/${enc(r)}/handoffs`,
  code: (e, r) => `/api/v1/events/${enc(e)}/relays/${enc(r)}/handoffs/code`,
  custody: (e, r) => `/api/v1/events/${enc(e)}/relays/${enc(r)}/custody`,
  pings: () => '/api/v1/pings',
};

/** The event id in `/e/{event}` or `/e/{event}/console`. */
export function eventFromPath() {
  const m = location.pathname.match(/^\/e\/([^/]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}
