// ratequeue.fetch(name, options): a fetch for the official clients
// (new OpenAI({ fetch: ratequeue.fetch('openai') }), the same for
// @anthropic-ai/sdk), doing what Python's ratequeue.httpx transports do.
// For every request it
//   1. estimates the load from the body: for OpenAI chat completions,
//      completions, responses and embeddings and Anthropic messages, the
//      prompt's characters / 4 plus max_tokens (max_completion_tokens,
//      max_output_tokens; defaultMaxTokens when none), times n; or what the
//      caller's estimate(url, body) returns. Other requests count 1;
//   2. acquires that load (options.timeout: seconds to wait in line; the
//      request's AbortSignal takes it out of the line);
//   3. sends it with the inner fetch;
//   4. settles the usage the response reports: a JSON body at once, a
//      streamed (SSE) one when the stream ends, from its last usage event
//      (OpenAI's stream_options.include_usage, Anthropic's message_start +
//      message_delta); without usage the estimate stands;
//   5. follows the rate-limit headers;
//   6. on 429, 529, or a 503 that says "overloaded", settles 0, penalizes the
//      resource for the retry-after, and retries from the line, at most
//      maxRetries times; then returns the provider's last answer.
import { parseRetryAfter } from './headers';
import type { Client, Permit } from './index';

type FetchFn = (input: any, init?: any) => Promise<Response>;

export interface FetchOptions {
  /** The ratequeue Client (default: the module's default client). */
  client?: Client;
  /** The fetch that sends (default: globalThis.fetch). */
  fetch?: FetchFn;
  /** The load of a request, or undefined for the built-in estimate. */
  estimate?: (url: string, body: unknown) => number | undefined;
  /** Retries after a 429/529/overloaded answer (default 3). */
  maxRetries?: number;
  /** Seconds to wait in line per attempt (default: as long as it takes). */
  timeout?: number;
  /** The output assumed when a body names no max_tokens (default 1024). */
  defaultMaxTokens?: number;
}

const DEFAULT_MAX_TOKENS = 1024;
const BACKOFF_S = 1;
const BACKOFF_MAX_S = 30;
const MAX_BODY = 32 << 20;
const MAX_LINE = 1 << 20;

const NOT_TEXT = new Set(['role', 'type', 'id', 'name', 'model', 'image_url', 'source', 'data', 'file_data', 'url',
  'image', 'audio', 'input_audio', 'file_id', 'cache_control', 'signature', 'tool_call_id', 'tool_use_id',
  'media_type', 'detail', 'format']);

const ENDPOINTS: Array<[string, string[], string[], boolean]> = [
  ['/chat/completions', ['messages', 'tools', 'functions'], ['max_completion_tokens', 'max_tokens'], true],
  ['/completions', ['prompt', 'suffix'], ['max_tokens'], true],
  ['/responses', ['input', 'instructions', 'tools'], ['max_output_tokens'], true],
  ['/embeddings', ['input'], [], false],
  ['/messages', ['system', 'messages', 'tools'], ['max_tokens'], true],
];

function chars(value: unknown, key?: string): number {
  if (key !== undefined && NOT_TEXT.has(key)) return 0;
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) {
    let n = 0;
    for (const v of value) n += Number.isInteger(v) ? 4 : chars(v);
    return n;
  }
  if (value !== null && typeof value === 'object') {
    let n = 0;
    for (const [k, v] of Object.entries(value)) n += chars(v, k);
    return n;
  }
  return 0;
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** The tokens a request may use, as fetch() estimates them (at least 1); 1 for
 *  a request it does not understand. `body` is the request's JSON text. */
export function estimateLoad(url: string, method: string, body: unknown, defaultMaxTokens = DEFAULT_MAX_TOKENS): number {
  if (method.toUpperCase() !== 'POST' || typeof body !== 'string' || body.length > MAX_BODY) return 1;
  let path: string;
  try {
    path = new URL(url, 'http://x').pathname.replace(/\/+$/, '');
  } catch {
    return 1;
  }
  const endpoint = ENDPOINTS.find((e) => path.endsWith(e[0]));
  if (!endpoint) return 1;
  let parsed: any;
  try {
    parsed = JSON.parse(body);
  } catch {
    return 1;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return 1;
  const [, promptFields, maxFields, produces] = endpoint;
  let prompt = 0;
  for (const f of promptFields) prompt += chars(parsed[f]);
  let output = 0;
  if (produces) {
    output = defaultMaxTokens;
    for (const f of maxFields) {
      const c = count(parsed[f]);
      if (c !== undefined) { output = c; break; }
    }
    const n = count(parsed.n);
    if (n) output *= n;
  }
  return Math.max(1, Math.ceil(prompt / 4) + output);
}

/** The tokens a `usage` object reports, or null: total_tokens (OpenAI), else
 *  input + cache-creation + output tokens (Anthropic). */
export function usageTokens(usage: unknown): number | null {
  if (usage === null || typeof usage !== 'object') return null;
  const u = usage as Record<string, unknown>;
  const total = count(u.total_tokens);
  if (total !== undefined) return total;
  const parts = ['input_tokens', 'cache_creation_input_tokens', 'output_tokens', 'prompt_tokens', 'completion_tokens']
    .map((k) => count(u[k]));
  if (parts.every((p) => p === undefined)) return null;
  return parts.reduce<number>((a, p) => a + (p ?? 0), 0);
}

function usageOf(event: any): Record<string, unknown> | null {
  if (event === null || typeof event !== 'object') return null;
  for (const holder of [event, event.response, event.message]) {
    if (holder && typeof holder === 'object' && holder.usage && typeof holder.usage === 'object') return holder.usage;
  }
  return null;
}

/** Collects the usage of an SSE stream as its bytes pass (the latest value of
 *  each field: Anthropic sends input tokens first and output tokens last). */
class UsageParser {
  private buf = '';
  private data: string[] = [];
  private readonly decoder = new TextDecoder();
  readonly usage: Record<string, number> = {};
  seen = false;

  feed(chunk: Uint8Array): void {
    this.buf += this.decoder.decode(chunk, { stream: true });
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) {
        if (this.buf.length > MAX_LINE) { this.buf = ''; this.data = []; }
        return;
      }
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (line === '') this.event();
      else if (line.startsWith('data:')) this.data.push(line.slice(5).replace(/^ /, ''));
    }
  }

  private event(): void {
    const data = this.data.join('\n');
    this.data = [];
    if (!data.includes('"usage"')) return;  // parse only what can carry usage
    let usage: Record<string, unknown> | null;
    try { usage = usageOf(JSON.parse(data)); } catch { return; }
    if (!usage) return;
    for (const [k, v] of Object.entries(usage)) {
      const c = count(v);
      if (c !== undefined) { this.usage[k] = c; this.seen = true; }
    }
  }

  total(): number | null {
    if (this.data.length) this.event();
    return this.seen ? usageTokens(this.usage) : null;
  }
}

function isSSE(res: Response): boolean {
  return (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase() === 'text/event-stream';
}

function rebuilt(res: Response, body: ArrayBuffer | ReadableStream<Uint8Array> | null): Response {
  const out = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  for (const key of ['url', 'redirected', 'type'] as const) {
    try { Object.defineProperty(out, key, { value: res[key] }); } catch { /* read-only in some runtimes */ }
  }
  return out;
}

function finish(permit: Permit, total: number | null): void {
  try {
    if (total !== null && permit.held) permit.settle(total);
  } finally {
    permit.release();
  }
}

/** A stream passing the response's bytes through unchanged; at its end (or
 *  when the reader cancels it) the usage is settled and the permit released. */
function settlingStream(body: ReadableStream<Uint8Array>, permit: Permit): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const usage = new UsageParser();
  let done = false;
  const end = () => {
    if (!done) { done = true; finish(permit, usage.total()); }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let r: { done: boolean; value?: Uint8Array };
      try {
        r = await reader.read();
      } catch (e) {
        end();
        controller.error(e);
        return;
      }
      if (r.done) {
        end();
        controller.close();
        return;
      }
      usage.feed(r.value as Uint8Array);
      controller.enqueue(r.value as Uint8Array);
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason);
    },
  });
}

/** A fetch that coordinates every request on the resource `name`. */
export function fetch(name: string, options: FetchOptions = {}): FetchFn {
  if (typeof name !== 'string' || !name) throw new TypeError('fetch(name): name must be a non-empty string');
  const maxRetries = options.maxRetries ?? 3;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new RangeError(`maxRetries must be an integer >= 0, not ${maxRetries}`);
  const timeout = options.timeout;
  if (timeout !== undefined && !(typeof timeout === 'number' && timeout >= 0)) throw new RangeError(`timeout must be seconds >= 0`);
  const defaultMaxTokens = options.defaultMaxTokens ?? DEFAULT_MAX_TOKENS;
  // Loaded here, not at import: index.ts imports this file.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const rq = require('./index') as typeof import('./index');

  const ratequeueFetch = async (input: any, init?: any): Promise<Response> => {
    const client = options.client ?? rq.getDefaultClient();
    const inner: FetchFn = options.fetch ?? globalThis.fetch;
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : String(input?.url ?? input);
    const method = String(init?.method ?? input?.method ?? 'GET');
    const body = init?.body;
    let load: number | undefined;
    if (options.estimate) {
      load = options.estimate(url, body);
      if (load !== undefined && !(Number.isInteger(load) && load > 0)) {
        throw new RangeError(`estimate returned ${String(load)}; it must return an integer > 0 or undefined`);
      }
    }
    if (load === undefined) load = estimateLoad(url, method, body, defaultMaxTokens);
    // A body that can be sent again (text, bytes, none) can be retried.
    const replayable = body == null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer;
    const signal: AbortSignal | undefined = init?.signal ?? undefined;
    let last: Response | null = null;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      let permit: Permit;
      try {
        permit = await client.acquire(name, { load, timeout, signal });
      } catch (e) {
        if (last !== null && e instanceof rq.TimeoutError) return last;  // out of time to retry: the answer stands
        throw e;
      }
      let res: Response;
      try {
        res = await inner(input, init);
      } catch (e) {
        permit.release();
        throw e;
      }
      try {
        client.observeHeaders(name, res.headers);
      } catch (e) {
        permit.release();
        throw e;
      }
      if (isSSE(res) && res.ok && res.body) return rebuilt(res, settlingStream(res.body, permit));
      let raw: ArrayBuffer;
      try {
        raw = await res.arrayBuffer();
      } catch (e) {
        permit.release();
        throw e;
      }
      const out = rebuilt(res, raw);
      const text = res.status >= 400 ? new TextDecoder().decode(raw) : '';
      if (res.status === 429 || res.status === 529 || (res.status === 503 && /overloaded/i.test(text))) {
        permit.settle(0);  // refused: it used nothing
        const wait = parseRetryAfter(res.headers) ?? Math.min(BACKOFF_MAX_S, BACKOFF_S * 2 ** Math.min(attempt, 16));
        try {
          client.penalize(name, { retryAfter: wait });
        } finally {
          permit.release();
        }
        last = out;
        if (!replayable) return out;
        if (attempt < maxRetries) ratequeueFetch.retried++;
        continue;
      }
      let total: number | null = null;
      try {
        total = usageTokens(usageOf(JSON.parse(new TextDecoder().decode(raw))));
      } catch { /* not JSON: the estimate stands */ }
      finish(permit, total);
      return out;
    }
    return last as Response;
  };
  ratequeueFetch.retried = 0;
  return ratequeueFetch;
}
