import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { streamCompletion } from '../../static/indox-stream.js';
import { byteStream, sleep } from './helpers.mjs';

/** A fetch that records its calls and answers with `reply(init)`. */
function fakeFetch(reply) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init, body: JSON.parse(init.body) });
    return reply(init);
  };
  return { fetch, calls };
}

const streaming = (chunks, options) => {
  const source = byteStream(chunks, options);
  return { ...source, fetch: fakeFetch(() => new Response(source.stream)) };
};

/** A whole result: `fields` over the defaults of a plain stream. */
const outcome = (fields) => ({
  text: '',
  reasoning: '',
  toolCalls: [],
  finishReason: undefined,
  usage: undefined,
  error: undefined,
  aborted: false,
  done: false,
  resumeUrl: undefined,
  lastEventId: '',
  reconnects: 0,
  ...fields,
});

const WIRE = [
  ': stream open\n\n',
  'data: Hel\n\n',
  'data: lo\ndata: wor',
  'ld\n\n: ping\n\n',
  'event: usage\ndata: {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}\n\n',
  'event: error\ndata: {"type": "upstream_error", "message": "boom"}\n\n',
  'event: done\ndata: [DONE]\n\n',
  'data: after done\n\n',
];

describe('streamCompletion', () => {
  afterEach(() => {
    delete globalThis.document;
    delete globalThis.location;
  });

  test('calls onText, onUsage, onError and onEvent in stream order and stops at done', async () => {
    const { state, fetch } = streaming(WIRE);
    const log = [];
    const result = await streamCompletion('/llm/stream', { prompt: 'hi' }, {
      fetch: fetch.fetch,
      onText: (delta, full) => log.push(['text', delta, full]),
      onUsage: (usage) => log.push(['usage', usage]),
      onError: (error) => log.push(['error', error]),
      onEvent: (event) => log.push(['event', event.event]),
    });
    const usage = { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 };
    const error = { type: 'upstream_error', message: 'boom' };
    assert.deepEqual(log, [
      ['event', 'message'],
      ['text', 'Hel', 'Hel'],
      ['event', 'message'],
      ['text', 'lo\nworld', 'Hello\nworld'],
      ['event', 'usage'],
      ['usage', usage],
      ['event', 'error'],
      ['error', error],
      ['event', 'done'],
    ]);
    assert.deepEqual(result, outcome({ text: 'Hello\nworld', usage, error, done: true, finishReason: 'error' }));
    assert.equal(state.cancelled, true, 'the rest of the stream is cancelled after done');
  });

  test('sends a JSON POST asking for an event stream', async () => {
    const { fetch } = streaming(['event: done\ndata: [DONE]\n\n']);
    await streamCompletion('/llm/stream', { prompt: 'hi', max_tokens: 5 }, {
      fetch: fetch.fetch,
      headers: { 'X-Extra': '1', Accept: 'text/event-stream, */*' },
      credentials: 'include',
    });
    assert.equal(fetch.calls.length, 1);
    const [{ url, init, body }] = fetch.calls;
    assert.equal(url, '/llm/stream');
    assert.equal(init.method, 'POST');
    assert.deepEqual(body, { prompt: 'hi', max_tokens: 5 });
    assert.equal(init.headers.get('content-type'), 'application/json');
    assert.equal(init.headers.get('accept'), 'text/event-stream, */*');
    assert.equal(init.headers.get('x-extra'), '1');
    assert.equal(init.headers.has('x-csrftoken'), false);
    assert.equal(init.credentials, 'include');
    assert.ok(init.signal instanceof AbortSignal);
  });

  test('a stream cut off before done resolves with done: false', async () => {
    const { fetch } = streaming(['data: par', 'tial\n\ndata: lost']);
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch });
    assert.deepEqual(result, outcome({ text: 'partial' }));
  });

  test('aborting the signal resolves with aborted: true and cancels the stream', async () => {
    const { state, fetch } = streaming(['data: a\n\n'], { hang: true });
    const controller = new AbortController();
    const result = await streamCompletion('/s', {}, {
      fetch: fetch.fetch,
      signal: controller.signal,
      onText: () => setTimeout(() => controller.abort(), 5),
    });
    assert.deepEqual(result, outcome({ text: 'a', aborted: true }));
    assert.equal(state.cancelled, true);
    assert.equal(fetch.calls[0].init.signal.aborted, true, 'the fetch is aborted too');
  });

  test('aborting while fetch is pending resolves, even if fetch ignores the signal', async () => {
    const controller = new AbortController();
    const fetch = fakeFetch(() => new Promise(() => {}));
    setTimeout(() => controller.abort(), 5);
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, signal: controller.signal });
    assert.equal(result.aborted, true);
  });

  test('an already aborted signal sends nothing', async () => {
    const { fetch } = streaming(['data: a\n\n']);
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, signal: AbortSignal.abort() });
    assert.equal(result.aborted, true);
    assert.equal(fetch.calls.length, 0);
  });

  test('the idle timeout aborts with a timeout error', async () => {
    const { state, fetch } = streaming(['data: a\n\n'], { hang: true });
    const errors = [];
    const result = await streamCompletion('/s', {}, {
      fetch: fetch.fetch,
      timeout: 40,
      onError: (error) => errors.push(error),
    });
    assert.equal(result.text, 'a');
    assert.equal(result.aborted, false);
    assert.equal(result.error.type, 'timeout');
    assert.deepEqual(errors, [result.error]);
    assert.equal(state.cancelled, true);
  });

  test('the idle timeout also covers waiting for the response', async () => {
    const fetch = fakeFetch(() => new Promise(() => {}));
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, timeout: 20 });
    assert.equal(result.error?.type, 'timeout');
  });

  test('heartbeat comments keep the idle timeout from firing', async () => {
    const chunks = [...Array(6).fill(': ping\n'), 'data: ok\n\nevent: done\ndata: [DONE]\n\n'];
    const { fetch } = streaming(chunks, { delay: 25 });
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, timeout: 80 });
    assert.deepEqual(result, outcome({ text: 'ok', done: true, finishReason: 'stop' }));
  });

  const errorReplies = [
    [
      'indox_integrations error',
      { error: { type: 'invalid_request', message: 'prompt must not be empty', field: 'prompt' } },
      'prompt must not be empty',
    ],
    [
      'FastAPI validation detail',
      { detail: [{ type: 'missing', loc: ['body', 'prompt'], msg: 'Field required', input: {} }] },
      'body.prompt: Field required',
    ],
    ['FastAPI string detail', { detail: 'Not authenticated' }, 'Not authenticated'],
    ['unknown JSON', { oops: true }, 'HTTP 422 Unprocessable Entity'],
  ];
  for (const [name, body, expected] of errorReplies) {
    test(`a non-2xx reply rejects with the server message: ${name}`, async () => {
      const fetch = fakeFetch(
        () => new Response(JSON.stringify(body), { status: 422, statusText: 'Unprocessable Entity' }),
      );
      await assert.rejects(streamCompletion('/s', {}, { fetch: fetch.fetch }), (error) => {
        assert.ok(error instanceof Error);
        assert.equal(error.name, 'HTTPError');
        assert.equal(error.message, expected);
        assert.equal(error.status, 422);
        assert.deepEqual(error.body, body);
        return true;
      });
    });
  }

  test('a non-JSON error reply falls back to the status', async () => {
    const fetch = fakeFetch(() => new Response('<h1>Bad gateway</h1>', { status: 502, statusText: 'Bad Gateway' }));
    await assert.rejects(streamCompletion('/s', {}, { fetch: fetch.fetch }), {
      message: 'HTTP 502 Bad Gateway',
      status: 502,
      body: '<h1>Bad gateway</h1>',
    });
  });

  test('an error reply whose body stalls ends with the idle timeout', async () => {
    const { stream } = byteStream([], { hang: true });
    const fetch = fakeFetch(() => new Response(stream, { status: 500 }));
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, timeout: 20 });
    assert.equal(result.error?.type, 'timeout');
  });

  test('an exception from a callback rejects and cancels the stream', async () => {
    const { state, fetch } = streaming(['data: a\n\n'], { hang: true });
    const failing = () => {
      throw new Error('render failed');
    };
    await assert.rejects(streamCompletion('/s', {}, { fetch: fetch.fetch, onText: failing }), {
      message: 'render failed',
    });
    assert.equal(state.cancelled, true);
  });

  test('a body that cannot stream is read whole', async () => {
    const text = 'data: a\n\ndata: b\n\nevent: usage\ndata: {"total_tokens": 1}\n\nevent: done\ndata: [DONE]\n\n';
    const fetch = fakeFetch(() => ({ ok: true, status: 200, body: null, text: async () => text }));
    const deltas = [];
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, onText: (delta) => deltas.push(delta) });
    assert.deepEqual(deltas, ['a', 'b']);
    assert.deepEqual(result, outcome({ text: 'ab', usage: { total_tokens: 1 }, done: true, finishReason: 'stop' }));
  });

  test('an error event that is not JSON keeps its text', async () => {
    const { fetch } = streaming(['event: error\ndata: plain failure\n\n']);
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch });
    assert.deepEqual(result.error, { type: 'error', message: 'plain failure' });
  });

  test('a usage event that is not JSON is ignored', async () => {
    const { fetch } = streaming(['event: usage\ndata: {broken\n\ndata: a\n\n']);
    const usages = [];
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch, onUsage: (u) => usages.push(u) });
    assert.deepEqual([result.text, result.usage, usages], ['a', undefined, []]);
  });

  test('sends X-CSRFToken from the csrftoken cookie', async () => {
    globalThis.document = { cookie: 'theme=dark; csrftoken=abc%3D1; other=2' };
    const { fetch } = streaming(['event: done\ndata: [DONE]\n\n']);
    await streamCompletion('/llm/stream', {}, { fetch: fetch.fetch });
    assert.equal(fetch.calls[0].init.headers.get('x-csrftoken'), 'abc=1');
  });

  test('sends X-CSRFToken to the same origin only', async () => {
    globalThis.document = { cookie: 'csrftoken=abc' };
    globalThis.location = { origin: 'https://app.example', href: 'https://app.example/chat' };
    const fetch = fakeFetch(() => new Response('event: done\ndata: [DONE]\n\n'));
    await streamCompletion('/llm', {}, { fetch: fetch.fetch });
    await streamCompletion('https://app.example/llm', {}, { fetch: fetch.fetch });
    await streamCompletion('https://elsewhere.example/llm', {}, { fetch: fetch.fetch });
    const tokens = fetch.calls.map((call) => call.init.headers.get('x-csrftoken'));
    assert.deepEqual(tokens, ['abc', 'abc', null]);
  });

  test('an unreadable cookie is no error', async () => {
    globalThis.document = {
      get cookie() {
        throw new Error('SecurityError');
      },
    };
    const { fetch } = streaming(['event: done\ndata: [DONE]\n\n']);
    const result = await streamCompletion('/s', {}, { fetch: fetch.fetch });
    assert.equal(result.done, true);
    assert.equal(fetch.calls[0].init.headers.has('x-csrftoken'), false);
  });

  test('a failed request is never sent again', async () => {
    const network = fakeFetch(() => Promise.reject(new TypeError('Failed to fetch')));
    await assert.rejects(streamCompletion('/s', {}, { fetch: network.fetch, timeout: 50 }), {
      message: 'Failed to fetch',
    });
    const unavailable = fakeFetch(() => new Response('{"detail": "busy"}', { status: 503 }));
    await assert.rejects(streamCompletion('/s', {}, { fetch: unavailable.fetch }), { message: 'busy' });
    const { fetch: inBand } = streaming(['event: error\ndata: {"type": "upstream_error", "message": "x"}\n\n']);
    await streamCompletion('/s', {}, { fetch: inBand.fetch });
    const stalled = streaming([], { hang: true });
    await streamCompletion('/s', {}, { fetch: stalled.fetch.fetch, timeout: 20 });
    await sleep(60);
    assert.equal(network.calls.length, 1);
    assert.equal(unavailable.calls.length, 1);
    assert.equal(inBand.calls.length, 1);
    assert.equal(stalled.fetch.calls.length, 1);
  });

  test('without any fetch it says so', async () => {
    const saved = globalThis.fetch;
    globalThis.fetch = undefined;
    try {
      await assert.rejects(streamCompletion('/s', {}), {
        name: 'TypeError',
        message: 'streamCompletion needs fetch: pass options.fetch',
      });
    } finally {
      globalThis.fetch = saved;
    }
  });
});
