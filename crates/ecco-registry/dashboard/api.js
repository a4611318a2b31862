// The registry's read API and its live event stream, with the optional read
// token. Every request goes to this page's own origin.

const TOKEN_KEY = 'ecco-registry-read-token';

/** The registry refused a read: it needs a (different) read token. */
export class Unauthorized extends Error {}

/** A JSON error answer from the registry. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The read token for this tab, if the operator set one and it was given. */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Keeps the read token for this tab only (sessionStorage), or forgets it. */
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts until the page is closed.
  }
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** GET a `/v1` path with query parameters (empty ones left out); the JSON body. */
export async function get(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  const response = await fetch(url, {
    headers: { Accept: 'application/json', ...authHeaders() },
    cache: 'no-store',
  });
  if (response.status === 401) throw new Unauthorized('the registry needs a read token');
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: the status says enough.
    }
    throw new ApiError(
      response.status,
      body?.error?.code ?? 'http_error',
      body?.error?.message ?? `HTTP ${response.status}`,
    );
  }
  return response.json();
}

/**
 * Follows `/v1/events` (server-sent events) with fetch, so that the read token
 * can travel in a header, which EventSource cannot send. Reconnects with
 * backoff; reports its state ('connecting', 'connected', 'reconnecting',
 * 'lost', 'unauthorized') to `onState` and each event to `onEvent`.
 */
export function follow({ onEvent, onState }) {
  let controller = null;
  let retry = null;
  let failures = 0;
  let stopped = false;
  // Each (re)start bumps the generation; an older attempt then ends quietly.
  let generation = 0;
  // Keep-alive comments come every 15 s: a silent 45 s means a dead stream.
  const SILENCE_MS = 45_000;

  async function connect(gen) {
    retry = null;
    const mine = new AbortController();
    controller = mine;
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => mine.abort(), SILENCE_MS);
    };
    const current = () => !stopped && gen === generation;
    try {
      const response = await fetch('/v1/events', {
        headers: { Accept: 'text/event-stream', ...authHeaders() },
        cache: 'no-store',
        signal: mine.signal,
      });
      if (response.status === 401) {
        if (current()) onState('unauthorized');
        return; // Until a token is given: see restart().
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      if (!current()) return;
      failures = 0;
      onState('connected');
      arm();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !current()) break;
        arm();
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parse(block);
          if (event) onEvent(event);
        }
      }
    } catch {
      // Network failure or abort: handled below.
    } finally {
      clearTimeout(watchdog);
    }
    if (!current()) return;
    failures += 1;
    // Two quick retries are "reconnecting"; after that the stream is lost
    // (and still retried, backing off to every 10 s).
    const delay = Math.min(500 * 2 ** (failures - 1), 10_000);
    onState(failures > 2 ? 'lost' : 'reconnecting', delay);
    retry = setTimeout(() => connect(gen), delay);
  }

  function stop() {
    stopped = true;
    clearTimeout(retry);
    controller?.abort();
  }

  function restart() {
    generation += 1;
    clearTimeout(retry);
    controller?.abort();
    stopped = false;
    failures = 0;
    onState('connecting');
    connect(generation);
  }

  onState('connecting');
  connect(generation);
  return { stop, restart };
}

/** One SSE message block: its event name and JSON data, or null. */
function parse(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  try {
    return { name, data: JSON.parse(data.join('\n')) };
  } catch {
    return null;
  }
}
