// A local node:http server speaking the resumable wire (issue 13) that drops connections on cue.
//
// POST /llm/stream starts stream "s1" (Indox-Stream-Id, Indox-Resume-Url); GET /llm/streams/s1
// replays the events after Last-Event-ID; DELETE cancels. Each connection follows the next
// entry of `plans`: how many events to send, then how to end (see `serve`).

import { createServer } from 'node:http';

export const STREAM_ID = 's1';
export const RESUME_PATH = `/llm/streams/${STREAM_ID}`;

/** Event blocks (without `id:`) get the opaque ids "1000-0", "1001-0", ... The last one is done. */
export function withIds(blocks) {
  return [...blocks, 'event: done\ndata: [DONE]\n\n'].map((block, i) => ({ id: `${1000 + i}-0`, block }));
}

/**
 * Start the server. `plans[n]` rules the n-th connection (POST or GET):
 * - `count`: events to send before ending (default: all, then the stream is complete);
 * - `end`: after them, `'drop'` (destroy the socket, after `partial` bytes if given),
 *   `'hang'` (stay open and silent), or `'close'` (a clean end without `event: done`);
 * - `status`: answer with this status and a JSON error instead (404, 503, ...);
 * - `replayFrom: 'same'`: replay from the Last-Event-ID event itself (an off-by-one server);
 * - `retry`: a `retry:` field to send first.
 * Before a drop the server waits until the client acknowledged the last event sent
 * (`ack(id)`, called from onEvent), so the events before it have surely arrived.
 */
export async function startServer({ events, plans = [], resumeHeader = true }) {
  const requests = [];
  const acked = new Set();
  const waiters = [];
  const sockets = new Set();

  const ack = (id) => {
    acked.add(id);
    for (const waiter of waiters.splice(0)) waiter();
  };
  const acknowledged = async (id) => {
    while (!acked.has(id)) await new Promise((resolve) => waiters.push(resolve));
  };

  const server = createServer(async (request, response) => {
    const record = {
      method: request.method,
      url: request.url,
      lastEventId: request.headers['last-event-id'],
      headers: request.headers,
    };
    requests.push(record);
    const plan = plans[requests.length - 1] ?? {};
    if (request.method === 'DELETE') {
      response.writeHead(request.url === RESUME_PATH ? 204 : 404).end();
      return;
    }
    let start = 0;
    if (request.method === 'GET') {
      if (request.url !== RESUME_PATH) return json(response, 404, 'unknown or expired stream');
      const after = record.lastEventId;
      if (after) {
        const at = events.findIndex((event) => event.id === after);
        if (at === -1) return json(response, 404, 'unknown event id');
        start = plan.replayFrom === 'same' ? at : at + 1;
      }
    } else if (request.url !== '/llm/stream') {
      return json(response, 404, 'no such route');
    }
    if (plan.status) return json(response, plan.status, `simulated ${plan.status}`);
    await serve(request, response, events.slice(start), plan);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function json(response, status, message) {
    response.writeHead(status, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify({ error: { type: 'not_found', message } }));
  }

  async function serve(request, response, remaining, plan) {
    const headers = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' };
    if (resumeHeader) {
      headers['Indox-Stream-Id'] = STREAM_ID;
      headers['Indox-Resume-Url'] = RESUME_PATH;
    }
    response.writeHead(200, headers);
    const count = plan.count ?? remaining.length;
    const sent = remaining.slice(0, count);
    let text = plan.retry === undefined ? ': stream open\n\n' : `retry: ${plan.retry}\n\n`;
    for (const { id, block } of sent) text += `id: ${id}\n${block}`;
    response.write(text);
    if (count >= remaining.length) return void response.end();
    if (plan.end === 'hang') return;
    if (sent.length) await acknowledged(sent.at(-1).id);
    if (plan.end === 'close') return void response.end();
    if (plan.partial) await new Promise((resolve) => response.write(plan.partial, resolve));
    request.socket.destroy();
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    ack,
    methods: () => requests.map((record) => record.method),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
