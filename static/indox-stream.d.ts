// Types for indox-stream.js (ES module) and indox-stream.global.js (globalThis.IndoxStream).

/** A dispatched server-sent event. */
export interface SSEEvent {
  /** The `event:` field; `"message"` when the block had none. */
  event: string;
  /** The `data:` lines of the block, joined with `"\n"`. */
  data: string;
  /** The last event ID seen in the stream so far (`""` if none). */
  id: string;
  /** The valid `retry:` value given in this block, in milliseconds. */
  retry: number | undefined;
}

/** Callbacks of {@link createParser}. */
export interface ParserCallbacks {
  /** Called for each event, when its closing blank line arrives. */
  onEvent?(event: SSEEvent): void;
  /** Called for each comment line (`: ping` gives `"ping"`). */
  onComment?(comment: string): void;
  /** Called for each valid `retry:` field. */
  onRetry?(milliseconds: number): void;
}

/** An incremental event-stream parser. */
export interface Parser {
  /** Parse the next piece of decoded text; pieces may split lines anywhere, even a CRLF. */
  feed(text: string): void;
  /** Forget all state, as if the stream started anew. */
  reset(): void;
}

/**
 * Create a WHATWG `text/event-stream` parser (CR, LF and CRLF line ends, one leading BOM,
 * multi-line data, comments, `id`, `retry`). An event without its closing blank line is
 * never dispatched.
 *
 * @example
 * const parser = createParser({ onEvent: (e) => console.log(e.event, e.data) });
 * parser.feed('data: hello\n\n');
 */
export function createParser(callbacks?: ParserCallbacks): Parser;

/** Options of {@link readEvents}. */
export interface ReadEventsOptions {
  /** Aborting stops the iteration quietly and cancels the stream. */
  signal?: AbortSignal;
}

/**
 * Iterate the events of a `Response` or a byte stream, decoding UTF-8 across chunk
 * boundaries. Leaving the loop early cancels the stream.
 *
 * @example
 * for await (const event of readEvents(await fetch(url))) console.log(event.data);
 */
export function readEvents(
  source: Response | ReadableStream<Uint8Array>,
  options?: ReadEventsOptions,
): AsyncGenerator<SSEEvent, void, undefined>;

/** Token usage, from an `event: usage` block. */
export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  cost?: number;
  model?: string;
  provider?: string;
  finish_reason?: string | null;
  [key: string]: unknown;
}

/**
 * An in-band error: an `event: error` block (e.g. `upstream_error`, `producer_lost`,
 * `cancelled`), or one of the client's own:
 * - `timeout`: no byte for `timeout` ms (a resumable stream reconnects instead, while it can);
 * - `stream_not_found`: the resume URL answered 404 or 410 (unknown or expired stream);
 * - `resume_refused`: the resume URL answered another 4xx (`status` says which);
 * - `connection_lost`: a resumable stream dropped and `maxRetries` reconnects failed.
 */
export interface StreamError {
  type: string;
  message: string;
  /** The HTTP status, for `stream_not_found` and `resume_refused`. */
  status?: number;
  [key: string]: unknown;
}

/** Where a resumable stream can be continued: what a page keeps to resume after a reload. */
export interface ResumeInfo {
  /** The server's `Indox-Stream-Id` (else the resume URL's last segment). */
  streamId: string;
  /** The server's `Indox-Resume-Url`, made absolute against the request's URL. */
  resumeUrl: string;
  /** The id of the last event delivered to the callbacks (`""` before the first). */
  lastEventId: string;
}

/** What {@link StreamCompletionOptions.onReconnect} is told before each reconnect. */
export interface ReconnectInfo {
  /** 1 for the first reconnect since an event last arrived, then 2, 3, ... */
  attempt: number;
  /** Milliseconds it waits before the GET. */
  delay: number;
  /** The id the GET resumes after (its `Last-Event-ID`). */
  lastEventId: string;
  /** Why: the network error, the timeout, or the transient HTTP error. */
  error: Error | StreamError | { message: string };
}

/** A tool call as it streams: one `event: tool_call_delta` block. */
export interface ToolCallDelta {
  /** Which call this piece belongs to; parallel calls have distinct indexes. */
  index: number;
  /** The call's id, in its first delta; `null` after. */
  id: string | null;
  /** The function's name, in its first delta; `null` after. */
  name: string | null;
  /** The next piece of the arguments' JSON text. */
  arguments: string;
  [key: string]: unknown;
}

/** A tool call so far: its deltas gathered, `arguments` the JSON text received until now. */
export interface PartialToolCall {
  index: number;
  id: string | null;
  name: string | null;
  arguments: string;
}

/** A completed tool call: one `event: tool_call` block. */
export interface ToolCall {
  index: number;
  id: string | null;
  name: string | null;
  /** The parsed JSON arguments; the raw text when `invalid_arguments` is true. */
  arguments: unknown;
  /** True when the arguments were not valid JSON and arrive as the raw text. */
  invalid_arguments?: boolean;
  [key: string]: unknown;
}

/**
 * Why the model stopped: `event: finish`, or `"stop"` (`"error"` after an error event) when
 * `event: done` came without one. Servers may add reasons; treat unknown ones as `"other"`.
 */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'error' | 'other' | (string & {});

/** Options of {@link streamCompletion}. */
export interface StreamCompletionOptions {
  /** Each text delta and the text so far. */
  onText?(delta: string, fullText: string): void;
  /** Each reasoning delta (`event: reasoning`) and the reasoning so far. */
  onReasoning?(delta: string, fullReasoning: string): void;
  /** Each piece of a streaming tool call, and that call so far (a copy). */
  onToolCallDelta?(delta: ToolCallDelta, call: PartialToolCall): void;
  /** Each completed tool call, arguments parsed. */
  onToolCall?(call: ToolCall): void;
  /** The usage, when the server attaches it. */
  onUsage?(usage: Usage): void;
  /** A stream error, or the idle timeout. */
  onError?(error: StreamError): void;
  /** Every event, before the callbacks above; also events this module does not know. */
  onEvent?(event: SSEEvent): void;
  /** Aborting stops the request; the promise then resolves with `aborted: true`. */
  signal?: AbortSignal;
  /** Milliseconds without any byte (heartbeats count) before giving up with a `timeout` error. */
  timeout?: number;
  /** Extra request headers; they override the defaults. */
  headers?: HeadersInit;
  /** The fetch to use; defaults to `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
  /** Passed to fetch. */
  credentials?: RequestCredentials;
  /**
   * Continue after a network drop. When the reply carries `Indox-Resume-Url`, a stream that
   * drops (or goes silent for `timeout` ms) before `event: done` is continued by GET to that
   * URL with `Last-Event-ID`; the POST is never sent again, and every event reaches the
   * callbacks exactly once. Without the header, a drop ends the call as without this option.
   */
  resume?: boolean;
  /** Reconnects in a row without a new event before giving up with `connection_lost`. Default 5. */
  maxRetries?: number;
  /**
   * Milliseconds before the first reconnect, doubled for each further one; a `retry:` field
   * from the server replaces it. Default 1000.
   */
  retryDelay?: number;
  /** The longest wait between reconnects, in milliseconds. Default 15000. */
  maxRetryDelay?: number;
  /**
   * A resumable stream's resume URL and last event id: called once the stream is known
   * (`lastEventId` `""` for a new one), then after each event with a new id, once that
   * event's callbacks have run. Keep it (e.g. in `sessionStorage`) to {@link resumeStream}
   * after a reload.
   */
  onResumeInfo?(info: ResumeInfo): void;
  /** Before each reconnect of a resumable stream. */
  onReconnect?(info: ReconnectInfo): void;
}

/** What {@link streamCompletion} resolves to. */
export interface StreamCompletionResult {
  /** All text deltas joined. */
  text: string;
  /** All reasoning deltas joined (`""` when the model streamed none). */
  reasoning: string;
  /** The completed tool calls, in the order they arrived. */
  toolCalls: ToolCall[];
  /**
   * From `event: finish`; `"stop"` when `event: done` came without one (`"error"` if an error
   * event came first); `undefined` for a stream cut off before either.
   */
  finishReason: FinishReason | undefined;
  usage: Usage | undefined;
  /** The last stream error (or the idle timeout), if any. */
  error: StreamError | undefined;
  /** True when `signal` aborted the request. */
  aborted: boolean;
  /** True when the server's `event: done` arrived; false for a cut-off stream. */
  done: boolean;
  /** The resume URL of a resumable stream, else `undefined`. */
  resumeUrl: string | undefined;
  /** The id of the last event delivered (`""` if none). */
  lastEventId: string;
  /** How many times the stream was reconnected. */
  reconnects: number;
}

/** The rejection of {@link streamCompletion} for a non-2xx reply. */
export interface HTTPError extends Error {
  name: 'HTTPError';
  /** The HTTP status. */
  status: number;
  /** The reply body: parsed JSON, else the text. */
  body: unknown;
}

/**
 * POST `body` as JSON (with `X-CSRFToken` from Django's `csrftoken` cookie on same-origin
 * requests) and stream the reply. Never re-sends the request; with `resume: true` a
 * resumable stream that drops is continued by GET from its resume URL. Rejects with an
 * {@link HTTPError} on a non-2xx reply, whose message is the server's.
 *
 * @example
 * const { text, usage } = await streamCompletion('/llm/stream', { prompt: 'Hi' }, {
 *   onText: renderInto(document.querySelector('#out')),
 * });
 */
export function streamCompletion(
  url: string | URL,
  body: unknown,
  options?: StreamCompletionOptions,
): Promise<StreamCompletionResult>;

/** Options of {@link resumeStream}: those of {@link streamCompletion}, and where to resume. */
export interface ResumeStreamOptions extends Omit<StreamCompletionOptions, 'resume'> {
  /** Resume after this event id (a kept {@link ResumeInfo.lastEventId}); omit to replay all. */
  lastEventId?: string;
}

/**
 * Continue a resumable stream from its resume URL, e.g. on a reloaded page: GET with
 * `Last-Event-ID`, reconnecting after drops like `streamCompletion` with `resume: true`.
 * Resolves with what came after `lastEventId` (`text` holds only that part). An unknown or
 * expired stream ends with a `stream_not_found` error (onError), never a hang or a rejection.
 *
 * @example
 * const kept = JSON.parse(sessionStorage.getItem('answer'));
 * await resumeStream(kept.resumeUrl, {
 *   lastEventId: kept.lastEventId,
 *   onText: (delta) => (output.textContent += delta),
 *   onResumeInfo: (info) => sessionStorage.setItem('answer', JSON.stringify(info)),
 * });
 */
export function resumeStream(resumeUrl: string | URL, options?: ResumeStreamOptions): Promise<StreamCompletionResult>;

/** Options of {@link cancelStream}. */
export interface CancelStreamOptions {
  headers?: HeadersInit;
  fetch?: typeof globalThis.fetch;
  credentials?: RequestCredentials;
  signal?: AbortSignal;
}

/**
 * Stop a resumable stream's generation: DELETE its resume URL (with `X-CSRFToken` like the
 * POST). Resolves to true when the server cancelled it, false when it did not know it (404);
 * rejects with an {@link HTTPError} on other replies. Aborting `streamCompletion` only stops
 * reading; a resumable stream's generation goes on until cancelled or nobody reads for a while.
 */
export function cancelStream(resumeUrl: string | URL, options?: CancelStreamOptions): Promise<boolean>;

/** Options of {@link renderInto}. */
export interface RenderOptions {
  /** Schedules a write; defaults to `requestAnimationFrame`, else a 16 ms `setTimeout`. */
  schedule?(callback: () => void): void;
}

/** An `onText` callback returned by {@link renderInto}. */
export interface TextRenderer {
  /** Record the text; without `fullText`, `delta` is appended to what came before. */
  (delta: string, fullText?: string): void;
  /** Write pending text now. */
  flush(): void;
}

/**
 * An `onText` callback that sets `element.textContent` (never HTML), at most once per frame.
 *
 * @example
 * const render = renderInto(output);
 * await streamCompletion(url, body, { onText: render });
 * render.flush();
 */
export function renderInto(element: { textContent: string | null }, options?: RenderOptions): TextRenderer;

/** The classic script `indox-stream.global.js` sets `globalThis.IndoxStream` to this module. */
export as namespace IndoxStream;
