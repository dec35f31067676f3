// One chat turn through the real `ai` package, as useChat makes it: DefaultChatTransport
// POSTs the UI messages, readUIMessageStream assembles the answer from the UI message stream.
//
//   node ai-sdk-chat.mjs <package> '<request JSON>'
//
// <package> is an alias from package.json ("ai5", "ai-latest"). The request holds `api` (the
// URL), `messages` (UIMessage[]), and optionally `headers` and `body` (the transport's options)
// and `abortAfterDeltas` (stop the request after that many text-delta chunks, as useChat's
// stop() does). Prints one JSON object: the package version, every chunk the transport
// parsed (so validated by that version's schemas), the last message snapshot, the errors
// the reader reported and what sendMessages threw.

import { readFile } from "node:fs/promises";

const [pkg, spec] = process.argv.slice(2);
const request = JSON.parse(spec);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);
const manifest = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
const { version } = JSON.parse(await readFile(manifest, "utf8"));

const result = { version, chunks: [], message: null, snapshots: 0, errors: [], thrown: null };
const controller = new AbortController();
const transport = new DefaultChatTransport({
  api: request.api,
  headers: request.headers,
  body: request.body,
});

const describe = (error) => `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`;

try {
  const stream = await transport.sendMessages({
    chatId: "chat-1",
    messages: request.messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: controller.signal,
  });
  const [toRead, toLog] = stream.tee();
  let deltas = 0;
  const logging = (async () => {
    try {
      for await (const chunk of toLog) {
        result.chunks.push(chunk);
        if (chunk.type === "text-delta" && ++deltas === request.abortAfterDeltas) {
          controller.abort();
        }
      }
    } catch (error) {
      result.logError = describe(error);
    }
  })();
  for await (const message of readUIMessageStream({
    stream: toRead,
    onError: (error) => result.errors.push(describe(error)),
  })) {
    result.message = message;
    result.snapshots += 1;
  }
  await logging;
} catch (error) {
  result.thrown = describe(error);
}

process.stdout.write(JSON.stringify(result) + "\n");
