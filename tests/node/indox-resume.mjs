// The kit's own JS client (static/indox-stream.js) reading one resumable stream.
//
//   node indox-resume.mjs '<request JSON>'
//
// The request holds `url` and `body` (streamCompletion POSTs them), or `resumeUrl` and
// `lastEventId` (resumeStream continues there), and optionally `headers`. Prints one JSON
// object: the text pieces as onText got them, the result's fields, and each reconnect.

import { resumeStream, streamCompletion } from '../../static/indox-stream.js';

const request = JSON.parse(process.argv[2]);
const pieces = [];
const reconnects = [];
const options = {
  resume: true,
  retryDelay: 50,
  headers: request.headers,
  onText: (delta) => pieces.push(delta),
  onReconnect: ({ attempt, lastEventId }) => reconnects.push({ attempt, lastEventId }),
};
const result = request.resumeUrl
  ? await resumeStream(request.resumeUrl, { ...options, lastEventId: request.lastEventId })
  : await streamCompletion(request.url, request.body, options);
const { text, done, error, finishReason, resumeUrl, lastEventId } = result;
process.stdout.write(
  JSON.stringify({ pieces, reconnects, text, done, error, finishReason, resumeUrl, lastEventId }) + '\n',
);
