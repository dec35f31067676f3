// Shared helpers for the JS tests: a seeded PRNG, chunking, and byte streams.

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cut `items` (a string or Uint8Array) into random pieces of 1..maxSize. */
export function randomSplit(items, seed, maxSize = 7) {
  const random = prng(seed);
  const pieces = [];
  for (let start = 0; start < items.length; ) {
    const size = 1 + Math.floor(random() * maxSize);
    pieces.push(items.slice(start, start + size));
    start += size;
  }
  return pieces;
}

/** Every single-element piece of `items`. */
export function oneByOne(items) {
  return Array.from({ length: items.length }, (_, i) => items.slice(i, i + 1));
}

export const utf8 = (text) => new TextEncoder().encode(text);

/**
 * A ReadableStream of `chunks`, one per pull. Records whether it was cancelled.
 * With `hang: true` it never closes after the chunks (like a silent server).
 */
export function byteStream(chunks, { hang = false, delay = 0 } = {}) {
  const state = { cancelled: false, pulls: 0 };
  let index = 0;
  const stream = new ReadableStream({
    async pull(controller) {
      state.pulls += 1;
      if (delay) await sleep(delay);
      if (index < chunks.length) {
        const chunk = chunks[index++];
        controller.enqueue(typeof chunk === 'string' ? utf8(chunk) : chunk);
      } else if (hang) {
        await new Promise(() => {});
      } else {
        controller.close();
      }
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { stream, state };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A message event as the parser reports it. */
export function message(data, extra = {}) {
  return { event: 'message', data, id: '', retry: undefined, ...extra };
}
