// The real `ai` package resuming a chat's running stream, as useChat({resume: true}) does on
// mount: DefaultChatTransport.reconnectToStream GETs `${api}/${chatId}/stream`.
//
//   node ai-sdk-resume.mjs <package> '<request JSON>'
//
// The request holds `api`, `chatId` and optionally `headers`. Prints one JSON object: the
// package version, whether a stream came (a 204 gives none), its chunks and the last message.

import { readFile } from 'node:fs/promises';

const [pkg, spec] = process.argv.slice(2);
const request = JSON.parse(spec);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);
const manifest = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
const { version } = JSON.parse(await readFile(manifest, 'utf8'));

const result = { version, stream: false, chunks: [], message: null, errors: [], thrown: null };
const describe = (error) => `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`;
try {
  const transport = new DefaultChatTransport({ api: request.api, headers: request.headers });
  const stream = await transport.reconnectToStream({ chatId: request.chatId });
  if (stream) {
    result.stream = true;
    const [toRead, toLog] = stream.tee();
    const logging = (async () => {
      for await (const chunk of toLog) result.chunks.push(chunk);
    })();
    for await (const message of readUIMessageStream({
      stream: toRead,
      onError: (error) => result.errors.push(describe(error)),
    })) {
      result.message = message;
    }
    await logging;
  }
} catch (error) {
  result.thrown = describe(error);
}
process.stdout.write(JSON.stringify(result) + '\n');
