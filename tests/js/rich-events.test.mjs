// Reasoning, tool calls and finish reasons through streamCompletion, fed as bytes in every split.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { streamCompletion } from '../../static/indox-stream.js';
import { byteStream, oneByOne, randomSplit, utf8 } from './helpers.mjs';

const json = (value) => JSON.stringify(value);
const block = (event, data) => `event: ${event}\n${data.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`;
const text = (data) => `${data.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`;
const DONE = 'event: done\ndata: [DONE]\n\n';

const weather = { index: 0, id: 'call_1', name: 'get_weather', arguments: { city: 'Paris', unit: 'c' } };
const clock = { index: 1, id: 'call_2', name: 'get_time', arguments: { zone: 'Europe/Paris' } };

/** Each case: the bytes on the wire, the callback log, and what the result must hold. */
const corpus = [
  {
    name: 'reasoning, then the answer (demo/think)',
    input:
      ': stream open\n\n' +
      block('reasoning', 'The user wants a haiku.') +
      block('reasoning', 'Five syllables,\nthen seven.') +
      text('Autumn moonlight—') +
      text('\na worm digs silently 🌕') +
      DONE,
    log: [
      ['reasoning', 'The user wants a haiku.', 'The user wants a haiku.'],
      ['reasoning', 'Five syllables,\nthen seven.', 'The user wants a haiku.Five syllables,\nthen seven.'],
      ['text', 'Autumn moonlight—', 'Autumn moonlight—'],
      ['text', '\na worm digs silently 🌕', 'Autumn moonlight—\na worm digs silently 🌕'],
    ],
    result: {
      text: 'Autumn moonlight—\na worm digs silently 🌕',
      reasoning: 'The user wants a haiku.Five syllables,\nthen seven.',
      finishReason: 'stop',
      done: true,
    },
  },
  {
    name: 'a tool call streamed in pieces, then finish and usage (demo/tools)',
    input:
      block('tool_call_delta', json({ index: 0, id: 'call_1', name: 'get_weather', arguments: '' })) +
      block('tool_call_delta', json({ index: 0, id: null, name: null, arguments: '{"city": "Pa' })) +
      block('tool_call_delta', json({ index: 0, id: null, name: null, arguments: 'ris", "unit": "c"}' })) +
      block('tool_call', json(weather)) +
      block('finish', json({ reason: 'tool_calls' })) +
      block('usage', json({ prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 })) +
      DONE,
    log: [
      ['delta', { index: 0, id: 'call_1', name: 'get_weather', arguments: '' }, { index: 0, id: 'call_1', name: 'get_weather', arguments: '' }],
      ['delta', { index: 0, id: null, name: null, arguments: '{"city": "Pa' }, { index: 0, id: 'call_1', name: 'get_weather', arguments: '{"city": "Pa' }],
      [
        'delta',
        { index: 0, id: null, name: null, arguments: 'ris", "unit": "c"}' },
        { index: 0, id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris", "unit": "c"}' },
      ],
      ['call', weather],
      ['usage', { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 }],
    ],
    result: {
      toolCalls: [weather],
      finishReason: 'tool_calls',
      usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 },
      done: true,
    },
  },
  {
    name: 'two parallel tool calls, interleaved, completed in order',
    input:
      block('tool_call_delta', json({ index: 0, id: 'call_1', name: 'get_weather', arguments: '{"ci' })) +
      block('tool_call_delta', json({ index: 1, id: 'call_2', name: 'get_time', arguments: '{"zone": ' })) +
      block('tool_call_delta', json({ index: 0, id: null, name: null, arguments: 'ty": "Paris", "unit": "c"}' })) +
      block('tool_call_delta', json({ index: 1, id: null, name: null, arguments: '"Europe/Paris"}' })) +
      block('tool_call', json(weather)) +
      block('tool_call', json(clock)) +
      block('finish', json({ reason: 'tool_calls' })) +
      DONE,
    log: [
      ['delta', { index: 0, id: 'call_1', name: 'get_weather', arguments: '{"ci' }, { index: 0, id: 'call_1', name: 'get_weather', arguments: '{"ci' }],
      ['delta', { index: 1, id: 'call_2', name: 'get_time', arguments: '{"zone": ' }, { index: 1, id: 'call_2', name: 'get_time', arguments: '{"zone": ' }],
      [
        'delta',
        { index: 0, id: null, name: null, arguments: 'ty": "Paris", "unit": "c"}' },
        { index: 0, id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris", "unit": "c"}' },
      ],
      [
        'delta',
        { index: 1, id: null, name: null, arguments: '"Europe/Paris"}' },
        { index: 1, id: 'call_2', name: 'get_time', arguments: '{"zone": "Europe/Paris"}' },
      ],
      ['call', weather],
      ['call', clock],
    ],
    result: { toolCalls: [weather, clock], finishReason: 'tool_calls', done: true },
  },
  {
    name: 'arguments that are not JSON arrive raw and flagged',
    input:
      block('tool_call_delta', json({ index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ' })) +
      block('tool_call', json({ index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ', invalid_arguments: true })) +
      block('finish', json({ reason: 'tool_calls' })) +
      DONE,
    log: [
      ['delta', { index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ' }, { index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ' }],
      ['call', { index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ', invalid_arguments: true }],
    ],
    result: {
      toolCalls: [{ index: 0, id: 'call_9', name: 'lookup', arguments: '{"q": ', invalid_arguments: true }],
      finishReason: 'tool_calls',
      done: true,
    },
  },
  {
    name: 'reasoning and text interleaved, CRLF line ends, multi-byte characters',
    input: (
      'event: reasoning\r\ndata: 漢字を\r\n\r\n' +
      'data: 🦀 one\r\n\r\n' +
      'event: reasoning\r\ndata: 考える\r\ndata: ✓\r\n\r\n' +
      'data: two 👩‍💻\r\n\r\n' +
      'event: finish\r\ndata: {"reason": "length"}\r\n\r\n' +
      'event: done\r\ndata: [DONE]\r\n\r\n'
    ),
    log: [
      ['reasoning', '漢字を', '漢字を'],
      ['text', '🦀 one', '🦀 one'],
      ['reasoning', '考える\n✓', '漢字を考える\n✓'],
      ['text', 'two 👩‍💻', '🦀 onetwo 👩‍💻'],
    ],
    result: { text: '🦀 onetwo 👩‍💻', reasoning: '漢字を考える\n✓', finishReason: 'length', done: true },
  },
  {
    name: 'an event named like a field inside reasoning data is text',
    input: block('reasoning', 'event: tool_call\ndata: {}') + text('[DONE]') + DONE,
    log: [
      ['reasoning', 'event: tool_call\ndata: {}', 'event: tool_call\ndata: {}'],
      ['text', '[DONE]', '[DONE]'],
    ],
    result: { text: '[DONE]', reasoning: 'event: tool_call\ndata: {}', finishReason: 'stop', done: true },
  },
  {
    name: 'malformed tool and finish events are skipped; unknown events only reach onEvent',
    input:
      block('tool_call_delta', '{broken') +
      block('tool_call_delta', '"a string"') +
      block('tool_call', 'null') +
      block('finish', '{"reason": 7}') +
      block('finish', 'stop') +
      block('annotation', json({ url: 'https://example.com' })) +
      text('ok') +
      DONE,
    log: [['text', 'ok', 'ok']],
    events: ['tool_call_delta', 'tool_call_delta', 'tool_call', 'finish', 'finish', 'annotation', 'message', 'done'],
    result: { text: 'ok', finishReason: 'stop', done: true },
  },
  {
    name: 'an error without a finish event ends with finishReason "error"',
    input: text('partial ') + block('error', json({ type: 'upstream_error', message: 'boom' })) + DONE,
    log: [
      ['text', 'partial ', 'partial '],
      ['error', { type: 'upstream_error', message: 'boom' }],
    ],
    result: {
      text: 'partial ',
      error: { type: 'upstream_error', message: 'boom' },
      finishReason: 'error',
      done: true,
    },
  },
  {
    name: 'a finish event is kept even when the stream is cut off before done',
    input: text('abc') + block('finish', json({ reason: 'content_filter' })) + 'event: done\ndata: [DO',
    log: [['text', 'abc', 'abc']],
    result: { text: 'abc', finishReason: 'content_filter', done: false },
  },
  {
    name: 'a stream cut off without finish has no finish reason',
    input: block('reasoning', 'hmm') + block('tool_call_delta', json({ index: 0, id: 'c', name: 'f', arguments: '{' })),
    log: [
      ['reasoning', 'hmm', 'hmm'],
      ['delta', { index: 0, id: 'c', name: 'f', arguments: '{' }, { index: 0, id: 'c', name: 'f', arguments: '{' }],
    ],
    result: { reasoning: 'hmm', finishReason: undefined, done: false },
  },
  {
    name: 'the guide wire, text only, is read as before',
    input: ': stream open\n\n' + text('Once upon') + ': ping\n\n' + text(' a time') + DONE,
    log: [
      ['text', 'Once upon', 'Once upon'],
      ['text', ' a time', 'Once upon a time'],
    ],
    result: { text: 'Once upon a time', finishReason: 'stop', done: true },
  },
];

const EMPTY = {
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
};

async function run(chunks) {
  const log = [];
  const events = [];
  const { stream } = byteStream(chunks);
  const result = await streamCompletion('/llm/stream', { prompt: 'x' }, {
    fetch: async () => new Response(stream),
    onText: (delta, full) => log.push(['text', delta, full]),
    onReasoning: (delta, full) => log.push(['reasoning', delta, full]),
    onToolCallDelta: (delta, call) => log.push(['delta', delta, call]),
    onToolCall: (call) => log.push(['call', call]),
    onUsage: (usage) => log.push(['usage', usage]),
    onError: (error) => log.push(['error', error]),
    onEvent: (event) => events.push(event.event),
  });
  return { log, events, result };
}

function check(item, got, label) {
  assert.deepEqual(got.log, item.log, label);
  assert.deepEqual(got.result, { ...EMPTY, ...item.result }, label);
  if (item.events) assert.deepEqual(got.events, item.events, label);
}

describe('streamCompletion over the rich-event corpus', () => {
  for (const item of corpus) {
    const bytes = utf8(item.input);
    test(`${item.name}: whole`, async () => {
      check(item, await run([bytes]));
    });
    test(`${item.name}: byte by byte`, async () => {
      check(item, await run(oneByOne(bytes)));
    });
    test(`${item.name}: random splits`, async () => {
      for (let seed = 1; seed <= 20; seed++) check(item, await run(randomSplit(bytes, seed, 11)), `seed ${seed}`);
    });
    test(`${item.name}: split at every event boundary and inside every event`, async () => {
      // Each block in two reads, cut in its middle: no event is dispatched before its blank line.
      const blocks = item.input.split(/(?<=\r?\n\r?\n)/);
      const chunks = blocks.flatMap((piece) => {
        const middle = Math.floor(piece.length / 2);
        return [utf8(piece.slice(0, middle)), utf8(piece.slice(middle))];
      });
      check(item, await run(chunks));
    });
  }
});

describe('tool calls', () => {
  test('the partial call given to onToolCallDelta is a copy', async () => {
    const seen = [];
    const { stream } = byteStream([
      block('tool_call_delta', json({ index: 0, id: 'a', name: 'f', arguments: '{"x"' })),
      block('tool_call_delta', json({ index: 0, id: null, name: null, arguments: ': 1}' })),
      DONE,
    ]);
    await streamCompletion('/s', {}, {
      fetch: async () => new Response(stream),
      onToolCallDelta: (delta, call) => {
        seen.push(call.arguments);
        call.arguments = 'mutated';
        call.id = null;
      },
    });
    assert.deepEqual(seen, ['{"x"', '{"x": 1}']);
  });

  test('a call index seen again after its tool_call starts a new partial call', async () => {
    const partials = [];
    const { stream } = byteStream([
      block('tool_call_delta', json({ index: 0, id: 'a', name: 'f', arguments: '{}' })),
      block('tool_call', json({ index: 0, id: 'a', name: 'f', arguments: {} })),
      block('tool_call_delta', json({ index: 0, id: 'b', name: 'g', arguments: '[]' })),
      block('tool_call', json({ index: 0, id: 'b', name: 'g', arguments: [] })),
      DONE,
    ]);
    const result = await streamCompletion('/s', {}, {
      fetch: async () => new Response(stream),
      onToolCallDelta: (delta, call) => partials.push(call),
    });
    assert.deepEqual(partials, [
      { index: 0, id: 'a', name: 'f', arguments: '{}' },
      { index: 0, id: 'b', name: 'g', arguments: '[]' },
    ]);
    assert.deepEqual(
      result.toolCalls.map((call) => call.id),
      ['a', 'b'],
    );
  });
});
