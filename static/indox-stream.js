// Browser client for indox_integrations' text/event-stream endpoints.
// No dependencies; runs in pages, workers and Node 18+. Types: indox-stream.d.ts.

const ABORTED = Symbol('aborted');

/**
 * Incremental `text/event-stream` parser following the WHATWG rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 * Feed it decoded text in chunks of any size; events are dispatched on blank lines.
 */
export function createParser({ onEvent, onComment, onRetry } = {}) {
  let partial, pendingCR, started, data, eventType, id, retry;

  function reset() {
    partial = '';
    pendingCR = false;
    started = false;
    data = '';
    eventType = '';
    id = '';
    retry = undefined;
  }

  function dispatch() {
    // The last event ID survives a blank line even when nothing is dispatched.
    const event = { event: eventType || 'message', data: data.slice(0, -1), id, retry };
    const hasData = data !== '';
    data = '';
    eventType = '';
    retry = undefined;
    if (hasData) onEvent?.(event);
  }

  function processLine(line) {
    if (line === '') return dispatch();
    if (line[0] === ':') return void onComment?.(withoutSpace(line.slice(1)));
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : withoutSpace(line.slice(colon + 1));
    if (field === 'data') data += value + '\n';
    else if (field === 'event') eventType = value;
    else if (field === 'id') {
      if (!value.includes('\0')) id = value;
    } else if (field === 'retry' && /^[0-9]+$/.test(value)) {
      retry = Number(value);
      onRetry?.(retry);
    }
  }

  function feed(chunk) {
    if (!chunk) return;
    if (!started) {
      started = true;
      if (chunk[0] === '\uFEFF') chunk = chunk.slice(1);
    }
    // A CR ends its line at once; an LF opening the next chunk belongs to that CR.
    if (pendingCR && chunk[0] === '\n') chunk = chunk.slice(1);
    const lineEnd = /\r\n?|\n/g;
    let start = 0;
    for (let match; (match = lineEnd.exec(chunk)); start = lineEnd.lastIndex) {
      const line = partial + chunk.slice(start, match.index);
      partial = '';
      processLine(line);
    }
    partial += chunk.slice(start);
    pendingCR = chunk.endsWith('\r');
  }

  reset();
  return { feed, reset };
}

function withoutSpace(value) {
  return value[0] === ' ' ? value.slice(1) : value;
}

/**
 * Parsed events of a `Response` (its `body`) or a `ReadableStream<Uint8Array>`, as an
 * async iterator. Stopping early (`break`, `return()`) or aborting `signal` cancels the stream.
 */
export function readEvents(source, { signal } = {}) {
  return events(source, signal);
}

async function* events(source, signal, onData) {
  const stream = typeof source?.getReader === 'function' ? source : source?.body;
  if (!stream && typeof source?.text !== 'function') {
    throw new TypeError(`expected a Response or a ReadableStream, got ${describe(source)}`);
  }
  const queue = [];
  const parser = createParser({ onEvent: (event) => queue.push(event) });
  if (!stream) {
    // No streamable body (old browsers, some fetch polyfills): parse the whole text.
    const text = await untilAbort(source.text(), signal);
    if (text === ABORTED) return;
    onData?.();
    parser.feed(text);
    yield* queue;
    return;
  }
  const reader = stream.getReader();
  // ignoreBOM: the parser strips the one leading BOM itself, so it is stripped exactly once.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  let finished = false;
  try {
    while (!finished) {
      const result = await untilAbort(reader.read(), signal);
      if (result === ABORTED) return;
      onData?.();
      finished = result.done;
      parser.feed(finished ? decoder.decode() : decoder.decode(result.value, { stream: true }));
      yield* queue.splice(0);
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * POST `body` as JSON to an indox_integrations stream endpoint and read the reply.
 * Resolves once the stream ends, with the whole text; aborting `signal` resolves with
 * `aborted: true`. Rejects on a non-2xx reply. Never re-sends the request.
 */
export async function streamCompletion(url, body, options = {}) {
  const { onText, onUsage, onError, onEvent, signal, timeout, credentials } = options;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') {
    throw new TypeError('streamCompletion needs fetch: pass options.fetch');
  }
  const result = { text: '', usage: undefined, error: undefined, aborted: false, done: false };
  if (signal?.aborted) return { ...result, aborted: true };

  const controller = new AbortController();
  const cancel = () => controller.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  let timer;
  let timedOut = false;
  const touch = () => {
    if (!(timeout > 0)) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
  };

  const handle = (event) => {
    onEvent?.(event);
    if (event.event === 'message') {
      result.text += event.data;
      onText?.(event.data, result.text);
    } else if (event.event === 'usage') {
      const usage = parseJSON(event.data);
      if (usage === undefined) return;
      result.usage = usage;
      onUsage?.(usage);
    } else if (event.event === 'error') {
      result.error = toStreamError(event.data);
      onError?.(result.error);
    } else if (event.event === 'done') {
      result.done = true;
    }
  };

  try {
    touch();
    const init = {
      method: 'POST',
      headers: requestHeaders(url, options.headers),
      body: JSON.stringify(body),
      signal: controller.signal,
    };
    if (credentials !== undefined) init.credentials = credentials;
    const response = await untilAbort(fetchImpl(url, init), controller.signal);
    if (response !== ABORTED) {
      if (!response.ok) throw await httpError(response, controller.signal);
      for await (const event of events(response, controller.signal, touch)) {
        handle(event);
        if (result.done) break;
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }

  if (timedOut) {
    result.error = { type: 'timeout', message: `no data received for ${timeout} ms` };
    onError?.(result.error);
  } else {
    result.aborted = controller.signal.aborted;
  }
  return result;
}

function requestHeaders(url, extra) {
  const headers = new Headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' });
  const token = csrfToken(url);
  if (token) headers.set('X-CSRFToken', token);
  new Headers(extra).forEach((value, name) => headers.set(name, value));
  return headers;
}

// Django's CSRF cookie, sent back only to our own origin so the token never leaks elsewhere.
function csrfToken(url) {
  try {
    const match = /(?:^|;\s*)csrftoken=([^;]*)/.exec(globalThis.document?.cookie ?? '');
    const here = globalThis.location;
    if (!match) return undefined;
    if (here?.origin && new URL(String(url), here.href).origin !== here.origin) return undefined;
    return decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
}

async function httpError(response, signal) {
  let text = '';
  try {
    const read = await untilAbort(response.text(), signal);
    if (read !== ABORTED) text = read;
  } catch {
    // an unreadable error body still yields an error with the status
  }
  const body = parseJSON(text) ?? text;
  const status = `HTTP ${response.status} ${response.statusText ?? ''}`.trim();
  const error = new Error(errorMessage(body) || status);
  error.name = 'HTTPError';
  error.status = response.status;
  error.body = body;
  return error;
}

// {"error": {"message"}} (indox_integrations), {"detail": "..."} or {"detail": [...]} (FastAPI).
function errorMessage(body) {
  const { error, detail } = body && typeof body === 'object' ? body : {};
  if (typeof error === 'string') return error;
  if (typeof error?.message === 'string') return error.message;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = Array.isArray(item?.loc) ? item.loc.join('.') : '';
        const message = item?.msg ?? JSON.stringify(item);
        return where ? `${where}: ${message}` : message;
      })
      .join('; ');
  }
  return '';
}

function toStreamError(data) {
  const value = parseJSON(data);
  if (value && typeof value === 'object' && typeof value.message === 'string') {
    return { type: 'error', ...value };
  }
  return { type: 'error', message: data };
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function untilAbort(promise, signal) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function describe(value) {
  return value === null ? 'null' : typeof value === 'object' ? value.constructor?.name ?? 'object' : typeof value;
}

/**
 * An `onText` callback that shows the text in `element` via `textContent` (never as HTML),
 * writing at most once per animation frame. Call `.flush()` after the stream ends.
 */
export function renderInto(element, { schedule = nextFrame } = {}) {
  let text = '';
  let dirty = false;
  let queued = false;
  const flush = () => {
    if (!dirty) return;
    dirty = false;
    element.textContent = text;
  };
  const render = (delta, fullText) => {
    text = typeof fullText === 'string' ? fullText : text + delta;
    dirty = true;
    if (queued) return;
    queued = true;
    schedule(() => {
      queued = false;
      flush();
    });
  };
  render.flush = flush;
  return render;
}

function nextFrame(callback) {
  if (typeof globalThis.requestAnimationFrame === 'function') globalThis.requestAnimationFrame(callback);
  else setTimeout(callback, 16);
}
