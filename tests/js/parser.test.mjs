import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createParser } from '../../static/indox-stream.js';
import { bigCase, corpus } from './sse-corpus.mjs';
import { message, oneByOne, randomSplit } from './helpers.mjs';

function parse(pieces) {
  const events = [];
  const comments = [];
  const retries = [];
  const parser = createParser({
    onEvent: (event) => events.push(event),
    onComment: (comment) => comments.push(comment),
    onRetry: (ms) => retries.push(ms),
  });
  for (const piece of pieces) parser.feed(piece);
  return { events, comments, retries };
}

const asText = (input) =>
  typeof input === 'string' ? input : new TextDecoder('utf-8', { ignoreBOM: true }).decode(input);

function expected(item) {
  return { events: item.events, comments: item.comments ?? [], retries: item.retries ?? [] };
}

describe('createParser over the corpus', () => {
  for (const item of corpus) {
    const text = asText(item.input);
    test(`${item.name}: whole`, () => {
      assert.deepEqual(parse([text]), expected(item));
    });
    test(`${item.name}: one character at a time`, () => {
      assert.deepEqual(parse(oneByOne(text)), expected(item));
    });
    test(`${item.name}: random splits`, () => {
      for (let seed = 1; seed <= 20; seed++) {
        assert.deepEqual(parse(randomSplit(text, seed)), expected(item), `seed ${seed}`);
      }
    });
  }

  test(`${bigCase.name}: random splits`, () => {
    assert.deepEqual(parse(randomSplit(bigCase.input, 7, 65536)), expected(bigCase));
  });
});

describe('createParser', () => {
  test('a CR ending a feed dispatches at once; the LF opening the next feed is skipped', () => {
    const events = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    parser.feed('data: x\r\n\r');
    assert.deepEqual(events, [message('x')]);
    parser.feed('\n');
    parser.feed('data: y\r');
    parser.feed('');
    parser.feed('\ndata: z\n\n');
    assert.deepEqual(events, [message('x'), message('y\nz')]);
  });

  test('a CR split from the next line is not an extra line', () => {
    const events = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    parser.feed('data: a\r');
    parser.feed('\ndata: b\r\n\r\n');
    assert.deepEqual(events, [message('a\nb')]);
  });

  test('a CR followed by a non-LF chunk still ends the line', () => {
    const events = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    parser.feed('data: a\r');
    parser.feed('\r');
    assert.deepEqual(events, [message('a')]);
  });

  test('a BOM fed on its own is stripped, once', () => {
    const events = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    parser.feed('');
    parser.feed('\uFEFF');
    parser.feed('data: a\n\n\uFEFFdata: b\n\n');
    assert.deepEqual(events, [message('a')]);
  });

  test('reset() forgets the partial event, the id and the BOM state', () => {
    const events = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    parser.feed('\uFEFFid: 5\ndata: a\n\nevent: usage\ndata: partial\r');
    parser.reset();
    parser.feed('\uFEFF\ndata: b\n\n');
    assert.deepEqual(events, [message('a', { id: '5' }), message('b')]);
  });

  test('works without callbacks', () => {
    const parser = createParser();
    parser.feed(': c\nretry: 5\ndata: x\n\n');
    parser.feed('x');
  });
});
