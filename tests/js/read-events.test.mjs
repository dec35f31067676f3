import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { readEvents } from '../../static/indox-stream.js';
import { bigCase, corpus } from './sse-corpus.mjs';
import { byteStream, message, oneByOne, randomSplit, utf8 } from './helpers.mjs';

async function collect(source, options) {
  const events = [];
  for await (const event of readEvents(source, options)) events.push(event);
  return events;
}

const bytesOf = (input) => (typeof input === 'string' ? utf8(input) : input);

describe('readEvents over the corpus', () => {
  for (const item of corpus) {
    const bytes = bytesOf(item.input);
    test(`${item.name}: whole`, async () => {
      assert.deepEqual(await collect(byteStream([bytes]).stream), item.events);
    });
    test(`${item.name}: byte by byte`, async () => {
      assert.deepEqual(await collect(byteStream(oneByOne(bytes)).stream), item.events);
    });
    test(`${item.name}: random splits`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        const events = await collect(byteStream(randomSplit(bytes, seed)).stream);
        assert.deepEqual(events, item.events, `seed ${seed}`);
      }
    });
  }

  test(`${bigCase.name}: random splits`, async () => {
    const chunks = randomSplit(utf8(bigCase.input), 3, 65536);
    assert.deepEqual(await collect(byteStream(chunks).stream), bigCase.events);
  });
});

describe('readEvents', () => {
  test('every split point of a 4-byte emoji decodes', async () => {
    const bytes = utf8('data: 🌍\n\n');
    for (let cut = 1; cut < bytes.length; cut++) {
      const events = await collect(byteStream([bytes.slice(0, cut), bytes.slice(cut)]).stream);
      assert.deepEqual(events, [message('🌍')], `cut at ${cut}`);
    }
  });

  test('a BOM split across chunks is stripped, a second one kept', async () => {
    const chunks = [
      new Uint8Array([0xef]),
      new Uint8Array([0xbb, 0xbf, 0xef, 0xbb]),
      new Uint8Array([0xbf, ...utf8('data: x\n\ndata: y\n\n')]),
    ];
    // "\uFEFF" + "data: x" is an unknown field; "y" arrives.
    assert.deepEqual(await collect(byteStream(chunks).stream), [message('y')]);
  });

  test('reads a Response', async () => {
    const { stream } = byteStream(['data: a\n', '\ndata: b\n\n']);
    assert.deepEqual(await collect(new Response(stream)), [message('a'), message('b')]);
  });

  test('a Response without a body gives no events', async () => {
    assert.deepEqual(await collect(new Response(null)), []);
  });

  test('a response without a stream is parsed from text()', async () => {
    const response = { body: null, text: async () => 'data: a\n\ndata: b\n\ndata: c' };
    assert.deepEqual(await collect(response), [message('a'), message('b')]);
  });

  test('stopping early cancels the stream and releases it', async () => {
    const { stream, state } = byteStream(['data: a\n\ndata: b\n\n', 'data: c\n\n'], { hang: true });
    const seen = [];
    for await (const event of readEvents(stream)) {
      seen.push(event.data);
      break;
    }
    assert.deepEqual(seen, ['a']);
    assert.equal(state.cancelled, true);
    assert.equal(stream.locked, false);
  });

  test('return() on the iterator cancels the stream', async () => {
    const { stream, state } = byteStream(['data: a\n\n'], { hang: true });
    const events = readEvents(stream);
    assert.deepEqual((await events.next()).value, message('a'));
    await events.return();
    assert.equal(state.cancelled, true);
    assert.equal(stream.locked, false);
  });

  test('a finished stream is released, not cancelled', async () => {
    const { stream, state } = byteStream(['data: a\n\n']);
    assert.deepEqual(await collect(stream), [message('a')]);
    assert.equal(state.cancelled, false);
    assert.equal(stream.locked, false);
  });

  test('aborting the signal ends a waiting iteration and cancels the stream', async () => {
    const { stream, state } = byteStream(['data: a\n\n'], { hang: true });
    const controller = new AbortController();
    const seen = [];
    for await (const event of readEvents(stream, { signal: controller.signal })) {
      seen.push(event.data);
      setTimeout(() => controller.abort(), 10);
    }
    assert.deepEqual(seen, ['a']);
    assert.equal(state.cancelled, true);
  });

  test('rejects what is not a stream', async () => {
    await assert.rejects(collect('data: x\n\n'), {
      name: 'TypeError',
      message: 'expected a Response or a ReadableStream, got string',
    });
  });
});
