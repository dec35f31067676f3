// The openai npm package against a server of the kit's `protocol="openai"`.
// Usage: node tests/node/openai-client.mjs <server url> <api key> <prompt>
// Prints one JSON object: what each scenario saw. The server serves /v1 and /_tracker.
import OpenAI from "openai";

const [server, apiKey, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${server}/v1`, apiKey, maxRetries: 0 });
const user = (content) => [{ role: "user", content }];
const results = {};

async function attempt(name, run) {
  try {
    results[name] = await run();
  } catch (error) {
    results[name] = { thrown: describe(error) };
  }
}

function describe(error) {
  return {
    name: error.constructor.name,
    isAPIError: error instanceof OpenAI.APIError,
    status: error.status ?? null,
    message: error.message,
    error: error.error ?? null,
  };
}

async function readStream(stream) {
  const seen = { text: "", reasoning: "", ids: [], finish: null, usage: null, roles: [] };
  try {
    for await (const chunk of stream) {
      if (!seen.ids.includes(chunk.id)) seen.ids.push(chunk.id);
      if (chunk.usage) seen.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      if (choice.delta.role) seen.roles.push(choice.delta.role);
      seen.text += choice.delta.content ?? "";
      seen.reasoning += choice.delta.reasoning_content ?? "";
      seen.finish = choice.finish_reason ?? seen.finish;
    }
  } catch (error) {
    seen.thrown = describe(error);
  }
  return seen;
}

async function waitClosed(count) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const snapshot = await (await fetch(`${server}/_tracker`)).json();
    if (snapshot.closed >= count || Date.now() > deadline) return snapshot;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

await attempt("models", async () => (await client.models.list()).data.map((model) => model.id));

await attempt("text", async () =>
  readStream(
    await client.chat.completions.create({
      model: "demo/echo",
      messages: user(prompt),
      stream: true,
      stream_options: { include_usage: true },
    }),
  ),
);

await attempt("complete", async () => {
  const completion = await client.chat.completions.create({
    model: "demo/think",
    messages: user(prompt),
  });
  return { object: completion.object, choice: completion.choices[0], usage: completion.usage };
});

await attempt("reasoning", async () =>
  readStream(
    await client.chat.completions.create({
      model: "demo/think",
      messages: user(prompt),
      stream: true,
    }),
  ),
);

await attempt("tools", async () => {
  const tools = [
    {
      type: "function",
      function: {
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string" } } },
      },
    },
  ];
  const stream = client.chat.completions.stream({
    model: "demo/tools",
    messages: user("What is the weather in Oslo?"),
    tools,
    stream_options: { include_usage: true },
  });
  const done = [];
  stream.on("tool_calls.function.arguments.done", (event) =>
    done.push({ name: event.name, arguments: event.arguments }),
  );
  const completion = await stream.finalChatCompletion();
  return { choice: completion.choices[0], usage: completion.usage, done };
});

await attempt("error", async () =>
  readStream(
    await client.chat.completions.create({
      model: "demo/fail",
      messages: user(prompt),
      stream: true,
    }),
  ),
);

await attempt("errorNotStreamed", async () =>
  client.chat.completions.create({ model: "demo/fail", messages: user(prompt) }),
);

await attempt("abort", async () => {
  await fetch(`${server}/_reset`, { method: "POST" });
  // Leaving a for-await loop early aborts the request.
  const first = await client.chat.completions.create({
    model: "test/slow",
    messages: user("go"),
    stream: true,
  });
  let breakText = "";
  for await (const chunk of first) {
    breakText += chunk.choices[0]?.delta?.content ?? "";
    if (breakText.split(" ").length > 3) break;
  }
  // So does an AbortSignal.
  const controller = new AbortController();
  const second = await client.chat.completions.create(
    { model: "test/slow", messages: user("go"), stream: true },
    { signal: controller.signal },
  );
  let signalText = "";
  let signalError = null;
  try {
    for await (const chunk of second) {
      signalText += chunk.choices[0]?.delta?.content ?? "";
      if (signalText.split(" ").length > 3) controller.abort();
    }
  } catch (error) {
    signalError = error.constructor.name;
  }
  return { breakText, signalText, signalError, tracker: await waitClosed(2) };
});

await attempt("badKey", async () =>
  new OpenAI({ baseURL: `${server}/v1`, apiKey: "sk-wrong", maxRetries: 0 }).models.list(),
);

await attempt("badRequest", async () =>
  client.chat.completions.create({ model: "demo/echo", messages: user(prompt), n: 2 }),
);

console.log(JSON.stringify(results));
