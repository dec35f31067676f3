import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { renderInto } from '../../static/indox-stream.js';
import { sleep } from './helpers.mjs';

/** An element that records textContent writes and refuses HTML. */
function fakeElement() {
  const element = {
    writes: [],
    get textContent() {
      return this.writes.at(-1) ?? '';
    },
    set textContent(value) {
      this.writes.push(value);
    },
    set innerHTML(value) {
      throw new Error(`innerHTML written: ${value}`);
    },
  };
  return element;
}

function manualFrames() {
  const queue = [];
  const schedule = (callback) => queue.push(callback);
  const run = () => queue.splice(0).forEach((callback) => callback(performance.now()));
  return { queue, schedule, run };
}

describe('renderInto', () => {
  afterEach(() => {
    delete globalThis.requestAnimationFrame;
  });

  test('writes the full text at most once per frame', () => {
    const element = fakeElement();
    const frames = manualFrames();
    const render = renderInto(element, { schedule: frames.schedule });
    render('Hel', 'Hel');
    render('lo', 'Hello');
    render(' <b>world</b>', 'Hello <b>world</b>');
    assert.deepEqual(element.writes, []);
    assert.equal(frames.queue.length, 1);
    frames.run();
    assert.deepEqual(element.writes, ['Hello <b>world</b>']);
    frames.run();
    assert.deepEqual(element.writes, ['Hello <b>world</b>'], 'nothing new, nothing written');
    render('!', 'Hello <b>world</b>!');
    frames.run();
    assert.deepEqual(element.writes, ['Hello <b>world</b>', 'Hello <b>world</b>!']);
  });

  test('flush() writes at once and the pending frame then does nothing', () => {
    const element = fakeElement();
    const frames = manualFrames();
    const render = renderInto(element, { schedule: frames.schedule });
    render('a', 'a');
    render.flush();
    assert.deepEqual(element.writes, ['a']);
    render('b', 'ab');
    assert.equal(frames.queue.length, 1, 'the frame already queued serves the new text');
    frames.run();
    assert.deepEqual(element.writes, ['a', 'ab']);
    render.flush();
    assert.deepEqual(element.writes, ['a', 'ab']);
  });

  test('without fullText the deltas are appended', () => {
    const element = fakeElement();
    const frames = manualFrames();
    const render = renderInto(element, { schedule: frames.schedule });
    render('a');
    render('b');
    render.flush();
    assert.equal(element.textContent, 'ab');
  });

  test('uses requestAnimationFrame when there is one', () => {
    const frames = manualFrames();
    globalThis.requestAnimationFrame = frames.schedule;
    const element = fakeElement();
    const render = renderInto(element);
    render('x', 'x');
    assert.equal(frames.queue.length, 1);
    frames.run();
    assert.deepEqual(element.writes, ['x']);
  });

  test('falls back to setTimeout without requestAnimationFrame', async () => {
    const element = fakeElement();
    const render = renderInto(element);
    render('x', 'x');
    render('y', 'xy');
    assert.deepEqual(element.writes, []);
    await sleep(50);
    assert.deepEqual(element.writes, ['xy']);
  });
});
