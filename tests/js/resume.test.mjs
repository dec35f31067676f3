// Resumable streams (issue 13) against a local server that drops connections mid-stream.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { cancelStream, resumeStream, streamCompletion } from '../../static/indox-stream.js';
import { RESUME_PATH, STREAM_ID, startServer, withIds } from './resumable-server.mjs';

const PIECES = ['Once', ' upon', ' a time,', ' a robot 🤖', '\nlearned', ' to paint', ' the sea', '.'];
const STORY = PIECES.join('');
const message = (text) => `${text.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`;
const usage = 'event: usage\ndata: {"total_tokens": 8}\n\n';
const storyEvents = () => withIds([...PIECES.map(message), usage]);
const idOf = (events, n) => events[n - 1].id; // the id of the n-th event
const LIMIT = { timeout: 20_000 };

let server;
afterEach(async () => {
  await server?.close();
  server = undefined;
  delete globalThis.document;
});

/** Callbacks that record what they get; onEvent tells the server which events arrived. */
function recorder(extra = {}) {
  const texts = [];
  const infos = [];
  const errors = [];
  const reconnects = [];
  const options = {
    resume: true,
    retryDelay: 1,
    onText: (delta) => texts.push(delta),
    onError: (error) => errors.push(error),
    onReconnect: (attempt) => reconnects.push(attempt),
    onEvent: (event) => server.ack(event.id),
    onResumeInfo: (info) => infos.push(info),
    ...extra,
  };
  return { texts, infos, errors, reconnects, options };
}

const post = (options) => streamCompletion(`${server.url}/llm/stream`, { prompt: 'story' }, options);

describe('streamCompletion with resume: true', () => {
  test('a drop mid-stream is resumed by GET after the last id; each piece reaches onText once', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: [{ count: 4, end: 'drop', partial: 'id: 9999-0\ndata: half an ev' }] });
    const run = recorder();
    const result = await post(run.options);

    assert.deepEqual(run.texts, PIECES);
    assert.equal(result.text, STORY);
    assert.deepEqual(result.usage, { total_tokens: 8 });
    assert.equal(result.done, true);
    assert.equal(result.finishReason, 'stop');
    assert.equal(result.error, undefined);
    assert.equal(result.reconnects, 1);
    assert.equal(result.lastEventId, events.at(-1).id);
    assert.deepEqual(server.methods(), ['POST', 'GET'], 'never re-POSTs');
    const [, get] = server.requests;
    assert.equal(get.url, RESUME_PATH);
    assert.equal(get.lastEventId, idOf(events, 4));
    assert.equal(get.headers.accept, 'text/event-stream');
    assert.equal(get.headers['content-type'], undefined);

    const resumeUrl = `${server.url}${RESUME_PATH}`;
    assert.equal(result.resumeUrl, resumeUrl);
    assert.deepEqual(
      run.infos,
      ['', ...events.map((event) => event.id)].map((lastEventId) => ({ streamId: STREAM_ID, resumeUrl, lastEventId })),
    );
    assert.equal(run.reconnects.length, 1);
    assert.equal(run.reconnects[0].attempt, 1);
    assert.equal(run.reconnects[0].lastEventId, idOf(events, 4));
    assert.equal(run.reconnects[0].error.name, 'TypeError', 'the network error that caused it');
  });

  test('several drops: inside a character, before any event, and after a clean close', LIMIT, async () => {
    const events = storyEvents();
    const crab = new TextEncoder().encode(`id: x\ndata: 🦀`);
    server = await startServer({
      events,
      plans: [
        { count: 3, end: 'drop', partial: Buffer.from(crab.slice(0, -2)) },
        { count: 0, end: 'drop' },
        { count: 2, end: 'close' },
        { count: 1, end: 'drop', partial: 'data: x\n' },
        {},
      ],
    });
    const run = recorder();
    const result = await post(run.options);

    assert.deepEqual(run.texts, PIECES);
    assert.equal(result.done, true);
    assert.equal(result.reconnects, 4);
    assert.deepEqual(server.methods(), ['POST', 'GET', 'GET', 'GET', 'GET']);
    assert.deepEqual(
      server.requests.slice(1).map((request) => request.lastEventId),
      [idOf(events, 3), idOf(events, 3), idOf(events, 5), idOf(events, 6)],
    );
    // The connection that delivered nothing counts as a second attempt; progress resets the count.
    assert.deepEqual(
      run.reconnects.map((reconnect) => reconnect.attempt),
      [1, 2, 1, 1],
    );
    assert.deepEqual(run.errors, []);
  });

  test('reasoning and a tool call split by drops arrive whole and once', LIMIT, async () => {
    const call = { index: 0, id: 'call_1', name: 'get_weather', arguments: { city: 'Paris' } };
    const delta = (args, first) =>
      `event: tool_call_delta\ndata: ${JSON.stringify({ index: 0, id: first ? 'call_1' : null, name: first ? 'get_weather' : null, arguments: args })}\n\n`;
    const events = withIds([
      'event: reasoning\ndata: The user\n\n',
      'event: reasoning\ndata:  asks for weather.\n\n',
      delta('{"ci', true),
      delta('ty": "Par', false),
      delta('is"}', false),
      `event: tool_call\ndata: ${JSON.stringify(call)}\n\n`,
      'event: finish\ndata: {"reason": "tool_calls"}\n\n',
    ]);
    server = await startServer({
      events,
      plans: [{ count: 1, end: 'drop' }, { count: 3, end: 'drop', partial: 'event: tool_call_delta\ndata: {"ind' }, {}],
    });
    const partials = [];
    const reasoning = [];
    const run = recorder({
      onReasoning: (piece) => reasoning.push(piece),
      onToolCallDelta: (piece, partial) => partials.push(partial.arguments),
    });
    const result = await post(run.options);

    assert.deepEqual(reasoning, ['The user', ' asks for weather.']);
    assert.equal(result.reasoning, 'The user asks for weather.');
    assert.deepEqual(partials, ['{"ci', '{"city": "Par', '{"city": "Paris"}']);
    assert.deepEqual(result.toolCalls, [call]);
    assert.equal(result.finishReason, 'tool_calls');
    assert.equal(result.reconnects, 2);
  });

  test('an event replayed again by the server is not delivered twice', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: [{ count: 5, end: 'drop' }, { replayFrom: 'same' }] });
    const run = recorder();
    const result = await post(run.options);
    assert.deepEqual(run.texts, PIECES);
    assert.equal(result.text, STORY);
  });

  test('a 404 on resume reaches onError as stream_not_found and ends the stream', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: [{ count: 2, end: 'drop' }, { status: 404 }] });
    const run = recorder();
    const result = await post(run.options);

    const error = { type: 'stream_not_found', message: 'simulated 404', status: 404 };
    assert.deepEqual(run.errors, [error]);
    assert.deepEqual(result.error, error);
    assert.equal(result.done, false);
    assert.equal(result.text, PIECES.slice(0, 2).join(''));
    assert.deepEqual(server.methods(), ['POST', 'GET']);
  });

  test('a refusal other than 404 is resume_refused and not retried', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 2, end: 'drop' }, { status: 403 }] });
    const run = recorder();
    const result = await post(run.options);
    assert.deepEqual(result.error, { type: 'resume_refused', message: 'simulated 403', status: 403 });
    assert.deepEqual(server.methods(), ['POST', 'GET']);
  });

  test('a 503 on resume is retried', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 2, end: 'drop' }, { status: 503 }, {}] });
    const run = recorder();
    const result = await post(run.options);
    assert.deepEqual(run.texts, PIECES);
    assert.equal(run.reconnects[1].error.status, 503);
    assert.deepEqual(server.methods(), ['POST', 'GET', 'GET']);
  });

  test('retries are bounded, back off, and the failure reaches onError', LIMIT, async () => {
    const drop = { count: 0, end: 'drop' };
    server = await startServer({ events: storyEvents(), plans: [{ count: 1, end: 'drop' }, drop, drop, drop, {}] });
    const run = recorder({ maxRetries: 3, retryDelay: 4, maxRetryDelay: 10 });
    const result = await post(run.options);

    assert.deepEqual(server.methods(), ['POST', 'GET', 'GET', 'GET']);
    assert.deepEqual(
      run.reconnects.map(({ attempt, delay }) => [attempt, delay]),
      [
        [1, 4],
        [2, 8],
        [3, 10],
      ],
    );
    assert.equal(result.error.type, 'connection_lost');
    assert.match(result.error.message, /^the stream was lost and 3 attempts to resume it failed: /);
    assert.deepEqual(run.errors, [result.error]);
    assert.equal(result.text, 'Once');
    assert.equal(result.done, false);
    assert.equal(result.reconnects, 3);
  });

  test('progress resets the retry count, so a stream that keeps dropping still finishes', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: events.map(() => ({ count: 1, end: 'drop' })) });
    const run = recorder({ maxRetries: 1 });
    const result = await post(run.options);
    assert.deepEqual(run.texts, PIECES);
    assert.equal(result.done, true);
    assert.equal(result.reconnects, events.length - 1);
  });

  test("the server's retry: field sets the backoff base", LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 1, end: 'drop', retry: 3 }, {}] });
    const run = recorder({ retryDelay: 5000 });
    await post(run.options);
    assert.deepEqual(
      run.reconnects.map(({ delay }) => delay),
      [3],
    );
  });

  test('a connection gone silent is replaced after the idle timeout', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 3, end: 'hang' }, {}] });
    const run = recorder({ timeout: 100 });
    const result = await post(run.options);
    assert.deepEqual(run.texts, PIECES);
    assert.equal(run.reconnects[0].error.type, 'timeout');
    assert.equal(result.error, undefined);
    assert.deepEqual(server.methods(), ['POST', 'GET']);
  });

  test('aborting while waiting to reconnect resolves at once and sends nothing more', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 2, end: 'drop' }] });
    const controller = new AbortController();
    const run = recorder({ retryDelay: 60_000, signal: controller.signal, onReconnect: () => controller.abort() });
    const result = await post(run.options);
    assert.equal(result.aborted, true);
    assert.equal(result.text, 'Once upon');
    assert.deepEqual(server.methods(), ['POST']);
  });

  test('without resume: true a drop ends the call as before, with no GET', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 2, end: 'drop' }] });
    const run = recorder({ resume: undefined });
    await assert.rejects(post(run.options), { name: 'TypeError' });
    assert.deepEqual(run.infos, []);
    assert.deepEqual(server.methods(), ['POST']);
  });

  test('a server without Indox-Resume-Url is read as before', LIMIT, async () => {
    server = await startServer({ events: storyEvents(), plans: [{ count: 2, end: 'close' }], resumeHeader: false });
    const run = recorder();
    const result = await post(run.options);
    assert.equal(result.done, false);
    assert.equal(result.resumeUrl, undefined);
    assert.equal(result.lastEventId, idOf(storyEvents(), 2));
    assert.deepEqual(run.infos, []);
    assert.deepEqual(server.methods(), ['POST']);
  });
});

describe('resumeStream', () => {
  test('a reloaded page continues after the id it kept', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: [{ count: 3, end: 'hang' }, {}] });

    // The first page keeps what onResumeInfo gave it, then goes away mid-answer.
    const page = new AbortController();
    let kept;
    const first = recorder({
      signal: page.signal,
      onResumeInfo: (info) => {
        kept = info;
        if (info.lastEventId === idOf(events, 3)) page.abort();
      },
    });
    const before = await post(first.options);
    assert.equal(before.aborted, true);

    const second = recorder();
    const after = await resumeStream(kept.resumeUrl, { ...second.options, lastEventId: kept.lastEventId });
    assert.equal(before.text + after.text, STORY);
    assert.deepEqual([...first.texts, ...second.texts], PIECES);
    assert.equal(after.done, true);
    assert.equal(after.resumeUrl, kept.resumeUrl);
    assert.deepEqual(server.methods(), ['POST', 'GET']);
    assert.equal(server.requests[1].lastEventId, idOf(events, 3));
    assert.deepEqual(second.infos[0], { streamId: STREAM_ID, resumeUrl: kept.resumeUrl, lastEventId: idOf(events, 3) });
  });

  test('without lastEventId it replays the stream from the start', LIMIT, async () => {
    server = await startServer({ events: storyEvents() });
    const run = recorder();
    const result = await resumeStream(`${server.url}${RESUME_PATH}`, run.options);
    assert.equal(result.text, STORY);
    assert.equal(server.requests[0].lastEventId, undefined);
  });

  test('it reconnects after drops too', LIMIT, async () => {
    const events = storyEvents();
    server = await startServer({ events, plans: [{ count: 2, end: 'drop' }, { count: 2, end: 'drop' }, {}] });
    const run = recorder();
    const result = await resumeStream(`${server.url}${RESUME_PATH}`, { ...run.options, lastEventId: idOf(events, 1) });
    assert.deepEqual(run.texts, PIECES.slice(1));
    assert.equal(result.reconnects, 2);
    assert.deepEqual(
      server.requests.map((request) => request.lastEventId),
      [idOf(events, 1), idOf(events, 3), idOf(events, 5)],
    );
  });

  test('an unknown stream reaches onError as stream_not_found, without a hang', LIMIT, async () => {
    server = await startServer({ events: storyEvents() });
    const run = recorder();
    const result = await resumeStream(`${server.url}/llm/streams/gone`, { ...run.options, lastEventId: '5-0' });
    const error = { type: 'stream_not_found', message: 'unknown or expired stream', status: 404 };
    assert.deepEqual(run.errors, [error]);
    assert.deepEqual(result.error, error);
    assert.equal(result.done, false);
    assert.deepEqual(server.methods(), ['GET']);
  });

  test('a server that cannot be reached is retried, then reported', LIMIT, async () => {
    server = await startServer({ events: storyEvents() });
    const url = `${server.url}${RESUME_PATH}`;
    await server.close();
    server = undefined;
    const errors = [];
    const result = await resumeStream(url, { retryDelay: 1, maxRetries: 2, onError: (error) => errors.push(error) });
    assert.equal(result.error.type, 'connection_lost');
    assert.deepEqual(errors, [result.error]);
    assert.equal(result.reconnects, 2);
  });
});

describe('cancelStream', () => {
  test('DELETEs the resume URL with the CSRF token; false for an unknown stream', LIMIT, async () => {
    server = await startServer({ events: storyEvents() });
    globalThis.document = { cookie: 'csrftoken=tok' };
    assert.equal(await cancelStream(`${server.url}${RESUME_PATH}`), true);
    assert.equal(await cancelStream(`${server.url}/llm/streams/gone`), false);
    assert.deepEqual(server.methods(), ['DELETE', 'DELETE']);
    assert.equal(server.requests[0].url, RESUME_PATH);
    assert.equal(server.requests[0].headers['x-csrftoken'], 'tok');
  });
});
