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

async function* events(source, signal, onData, onRetry) {
  const stream = typeof source?.getReader === 'function' ? source : source?.body;
  if (!stream && typeof source?.text !== 'function') {
    throw new TypeError(`expected a Response or a ReadableStream, got ${describe(source)}`);
  }
  const queue = [];
  const parser = createParser({ onEvent: (event) => queue.push(event), onRetry });
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
 * Resolves once the stream ends, with the whole text, reasoning and tool calls; aborting
 * `signal` resolves with `aborted: true`. Rejects on a non-2xx reply. Never re-sends the
 * request: with `resume: true` a dropped stream is continued by GET from its resume URL.
 */
export async function streamCompletion(url, body, options = {}) {
  const fetchImpl = fetchOf(options, 'streamCompletion');
  const post = (signal) => {
    const init = {
      method: 'POST',
      headers: requestHeaders(url, options.headers, { 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
      signal,
    };
    if (options.credentials !== undefined) init.credentials = options.credentials;
    return fetchImpl(url, init);
  };
  return follow(options, fetchImpl, { url, open: post });
}

/**
 * Continue a resumable stream from its resume URL (the `Indox-Resume-Url` of the POST that
 * started it), after `lastEventId`, e.g. on a reloaded page. Resolves like
 * `streamCompletion`, with what arrived after `lastEventId`.
 */
export async function resumeStream(resumeUrl, options = {}) {
  const fetchImpl = fetchOf(options, 'resumeStream');
  const url = String(resumeUrl);
  return follow(options, fetchImpl, { url, resume: { url, streamId: streamIdOf(url) } });
}

/**
 * Cancel a resumable stream: DELETE its resume URL. Resolves to true when the server
 * cancelled it, false when it did not know the stream (404); rejects on other replies.
 */
export async function cancelStream(resumeUrl, options = {}) {
  const fetchImpl = fetchOf(options, 'cancelStream');
  const init = { method: 'DELETE', headers: requestHeaders(resumeUrl, options.headers), signal: options.signal };
  if (options.credentials !== undefined) init.credentials = options.credentials;
  const response = await fetchImpl(String(resumeUrl), init);
  if (response.status === 404) return false;
  if (!response.ok) throw await httpError(response, options.signal);
  return true;
}

const DEFAULT_RETRIES = 5;
const DEFAULT_RETRY_DELAY = 1000;
const DEFAULT_MAX_RETRY_DELAY = 15000;

// Reads one stream over one or more connections: the first (POST, or GET for resumeStream),
// then GETs to the resume URL after each drop, until `event: done`, a final error or abort.
async function follow(options, fetchImpl, start) {
  const { signal, timeout } = options;
  const maxRetries = options.maxRetries ?? DEFAULT_RETRIES;
  const retryDelay = options.retryDelay ?? DEFAULT_RETRY_DELAY;
  const maxRetryDelay = options.maxRetryDelay ?? DEFAULT_MAX_RETRY_DELAY;
  const result = {
    text: '',
    reasoning: '',
    toolCalls: [],
    finishReason: undefined,
    usage: undefined,
    error: undefined,
    aborted: false,
    done: false,
    resumeUrl: start.resume?.url,
    lastEventId: start.resume ? String(options.lastEventId ?? '') : '',
    reconnects: 0,
  };
  if (signal?.aborted) return { ...result, aborted: true };

  const stop = new AbortController();
  const cancel = () => stop.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  const handle = eventHandler(options, result);
  let resume = start.resume;
  let serverDelay;
  let failures = 0; // reconnects since the last one that delivered an event
  let announced = false;
  // Event ids delivered, so that an event replayed again is never delivered twice.
  const seen = new Set(result.lastEventId ? [result.lastEventId] : []);
  const info = () => ({ streamId: resume.streamId, resumeUrl: resume.url, lastEventId: result.lastEventId });
  const fail = (error) => {
    result.error = error;
    options.onError?.(error);
  };

  // One connection: 'end' (done, or a final outcome), 'aborted', or {retry} after a drop.
  // Until the POST's reply names a resume URL (`resume` unset), failures end as they always have.
  async function connect(open) {
    const connection = new AbortController();
    const close = () => connection.abort();
    stop.signal.addEventListener('abort', close, { once: true });
    let idle = false;
    let timer;
    const touch = () => {
      if (!(timeout > 0)) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        idle = true;
        connection.abort();
      }, timeout);
    };
    const timeoutError = () => ({ type: 'timeout', message: `no data received for ${timeout} ms` });
    const end = (error) => {
      fail(error);
      return 'end';
    };
    try {
      touch();
      let response;
      try {
        response = await untilAbort(open(connection.signal), connection.signal);
      } catch (error) {
        if (!connection.signal.aborted && !resume) throw error;
        response = connection.signal.aborted ? ABORTED : { retry: error };
      }
      if (stop.signal.aborted) return 'aborted';
      if (response === ABORTED) return resume ? { retry: timeoutError() } : end(timeoutError());
      if (response.retry) return response;
      if (!response.ok) {
        const error = await httpError(response, connection.signal);
        if (stop.signal.aborted) return 'aborted';
        if (!resume) {
          if (idle) return end(timeoutError());
          throw error;
        }
        if (idle) return { retry: timeoutError() };
        if (isTransient(response.status)) return { retry: error };
        const type = response.status === 404 || response.status === 410 ? 'stream_not_found' : 'resume_refused';
        return end({ type, message: error.message, status: response.status });
      }
      if (!resume && options.resume) {
        const path = response.headers?.get?.('Indox-Resume-Url');
        if (path) {
          const where = resolveUrl(path, response.url, start.url);
          resume = { url: where, streamId: response.headers.get('Indox-Stream-Id') || streamIdOf(where) };
          result.resumeUrl = where;
        }
      }
      if (resume && !announced) {
        announced = true;
        options.onResumeInfo?.(info());
      }

      const iterator = events(response, connection.signal, touch, (ms) => (serverDelay = ms));
      let previousId = '';
      let readError;
      try {
        for (;;) {
          let step;
          try {
            step = await iterator.next();
          } catch (error) {
            readError = error;
            break;
          }
          if (step.done) break;
          const event = step.value;
          // An event inherits the last id; only one with an id field of its own can be a replay.
          const ownId = event.id !== previousId;
          previousId = event.id;
          if (resume && ownId && seen.has(event.id)) continue;
          failures = 0;
          handle(event);
          if (ownId && event.id !== '' && event.id !== result.lastEventId) {
            result.lastEventId = event.id;
            if (resume) {
              seen.add(event.id);
              options.onResumeInfo?.(info());
            }
          }
          if (result.done) return 'end';
        }
      } finally {
        await iterator.return();
      }
      if (stop.signal.aborted) return 'aborted';
      if (!resume) {
        if (idle) return end(timeoutError());
        if (readError) throw readError;
        return 'end';
      }
      return { retry: idle ? timeoutError() : readError ?? { message: 'the stream ended before event: done' } };
    } finally {
      clearTimeout(timer);
      stop.signal.removeEventListener('abort', close);
    }
  }

  try {
    let open = start.open ?? resumeOpener();
    for (;;) {
      const outcome = await connect(open);
      if (outcome === 'end' || outcome === 'aborted') break;
      failures += 1;
      if (failures > maxRetries) {
        const detail = outcome.retry?.message ?? String(outcome.retry);
        const tries = maxRetries === 1 ? '1 attempt' : `${maxRetries} attempts`;
        const message = maxRetries > 0 ? `the stream was lost and ${tries} to resume it failed` : 'the stream was lost';
        fail({ type: 'connection_lost', message: `${message}: ${detail}` });
        break;
      }
      const base = serverDelay ?? retryDelay;
      const delay = Math.min(base * 2 ** (failures - 1), Math.max(base, maxRetryDelay));
      options.onReconnect?.({ attempt: failures, delay, lastEventId: result.lastEventId, error: outcome.retry });
      await pause(delay, stop.signal);
      if (stop.signal.aborted) break;
      result.reconnects += 1;
      open = resumeOpener();
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
  result.aborted = stop.signal.aborted;
  return result;

  function resumeOpener() {
    return (connectionSignal) => {
      const headers = new Headers({ Accept: 'text/event-stream' });
      if (result.lastEventId) headers.set('Last-Event-ID', result.lastEventId);
      new Headers(options.headers).forEach((value, name) => headers.set(name, value));
      const init = { method: 'GET', headers, cache: 'no-store', signal: connectionSignal };
      if (options.credentials !== undefined) init.credentials = options.credentials;
      return fetchImpl(resume.url, init);
    };
  }
}

// Turns events into the callbacks and the result; tool call deltas are gathered per index.
function eventHandler(options, result) {
  const { onText, onReasoning, onToolCallDelta, onToolCall, onUsage, onError, onEvent } = options;
  const partial = new Map();
  return (event) => {
    onEvent?.(event);
    switch (event.event) {
      case 'message':
        result.text += event.data;
        onText?.(event.data, result.text);
        break;
      case 'reasoning':
        result.reasoning += event.data;
        onReasoning?.(event.data, result.reasoning);
        break;
      case 'tool_call_delta': {
        const delta = parseObject(event.data);
        if (!delta) break;
        const call = partial.get(delta.index) ?? { index: delta.index, id: null, name: null, arguments: '' };
        if (delta.id != null) call.id = delta.id;
        if (delta.name != null) call.name = delta.name;
        if (typeof delta.arguments === 'string') call.arguments += delta.arguments;
        partial.set(delta.index, call);
        onToolCallDelta?.(delta, { ...call });
        break;
      }
      case 'tool_call': {
        const call = parseObject(event.data);
        if (!call) break;
        partial.delete(call.index);
        result.toolCalls.push(call);
        onToolCall?.(call);
        break;
      }
      case 'finish': {
        const reason = parseObject(event.data)?.reason;
        if (typeof reason === 'string') result.finishReason = reason;
        break;
      }
      case 'usage': {
        const usage = parseJSON(event.data);
        if (usage === undefined) break;
        result.usage = usage;
        onUsage?.(usage);
        break;
      }
      case 'error':
        result.error = toStreamError(event.data);
        onError?.(result.error);
        break;
      case 'done':
        result.done = true;
        // Servers send `finish` only when the reason is not "stop" (unless usage is attached).
        result.finishReason ??= result.error ? 'error' : 'stop';
        break;
    }
  };
}

// 408, 425, 429 and 5xx: the resume URL may answer later (a restarting worker, Redis away).
function isTransient(status) {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

function fetchOf(options, name) {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new TypeError(`${name} needs fetch: pass options.fetch`);
  return fetchImpl;
}

function resolveUrl(path, ...bases) {
  for (const base of bases) {
    try {
      return new URL(path, new URL(String(base), globalThis.location?.href)).href;
    } catch {
      // a relative base without a page location: try the next one
    }
  }
  return path;
}

function streamIdOf(url) {
  const path = String(url).split(/[?#]/)[0];
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

function requestHeaders(url, extra, defaults = {}) {
  const headers = new Headers({ ...defaults, Accept: 'text/event-stream' });
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

function parseObject(text) {
  const value = parseJSON(text);
  return value && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
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
