// The rate-limit headers of LLM providers, as Python's ratequeue.headers reads them
// (no I/O; table-tested in test/headers.test.js).
//
// OpenAI: x-ratelimit-{limit,remaining,reset}-{requests,tokens}; resets are
//   Go-style durations (1s, 6m0s, 12ms, 1h2m3.5s).
// Anthropic: anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset};
//   resets are RFC 3339 times.

export interface Reading {
  remaining: number;      // units left now
  reset: number | null;   // seconds until full again
  limit: number | null;   // the provider's limit
}

export type HeadersLike = { forEach(cb: (value: string, key: string) => void): void } |
  Record<string, string | string[] | number | undefined> | Iterable<[string, string]>;

const MAX_RESET = 366 * 24 * 3600; // a reset further away than about a year is not believed
const UNITS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, 'µs': 1e-6, ns: 1e-9 };
const PART = /([0-9]+(?:\.[0-9]+)?)(h|ms|m|s|us|µs|ns)/y;

function finite(seconds: number, text: string): number {
  if (!Number.isFinite(seconds) || seconds > MAX_RESET) throw new RangeError(`reset out of range: ${text}`);
  return seconds;
}

/** '6m0s' -> 360, '12ms' -> 0.012; throws on malformed input or beyond a year. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (!s) throw new RangeError('empty duration');
  if (/^[0-9]+(\.[0-9]+)?$/.test(s)) return finite(Number(s), text);
  let pos = 0;
  let total = 0;
  PART.lastIndex = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) throw new RangeError(`malformed duration ${JSON.stringify(text)}`);
    total += Number(m[1]) * UNITS[m[2]];
    pos = PART.lastIndex;
  }
  return finite(total, text);
}

/** Seconds from `now` until the RFC 3339 time `text` (0 when passed). */
export function parseResetTime(text: string, now: number = Date.now()): number {
  const s = text.trim();
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s)) {
    throw new RangeError(`not an RFC 3339 time with a UTC offset: ${JSON.stringify(text)}`);
  }
  const when = Date.parse(s);
  if (Number.isNaN(when)) throw new RangeError(`malformed time ${JSON.stringify(text)}`);
  return finite(Math.max(0, (when - now) / 1000), text);
}

function int(text: string): number {
  const s = text.trim();
  if (!/^[0-9]{1,15}$/.test(s)) throw new RangeError(`not a non-negative integer: ${JSON.stringify(text)}`);
  return Number(s);
}

/** Header names lower-cased, values as strings, from any headers object. */
export function lowerHeaders(headers: HeadersLike | null | undefined): Map<string, string> | null {
  const out = new Map<string, string>();
  if (headers == null || typeof headers !== 'object') return null;
  const h = headers as any;
  if (typeof h.forEach === 'function' && typeof h.get === 'function') {
    h.forEach((v: string, k: string) => out.set(String(k).toLowerCase(), String(v)));
  } else if (typeof h[Symbol.iterator] === 'function') {
    for (const pair of h as Iterable<[string, string]>) {
      if (Array.isArray(pair) && pair.length === 2) out.set(String(pair[0]).toLowerCase(), String(pair[1]));
    }
  } else {
    for (const [k, v] of Object.entries(h)) {
      if (v !== undefined) out.set(k.toLowerCase(), Array.isArray(v) ? v.join(', ') : String(v));
    }
  }
  return out;
}

const TABLES: Array<[Record<string, [string, string, string]>, (t: string, now?: number) => number]> = [
  [{
    requests: ['x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', 'x-ratelimit-limit-requests'],
    tokens: ['x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens', 'x-ratelimit-limit-tokens'],
  }, (t) => parseDuration(t)],
  [{
    requests: ['anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset',
      'anthropic-ratelimit-requests-limit'],
    tokens: ['anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset',
      'anthropic-ratelimit-tokens-limit'],
  }, (t, now) => parseResetTime(t, now)],
];

/** The readings ("requests", "tokens") in a response's headers, and the
 *  names of the headers that were malformed (ignored). */
export function parse(headers: HeadersLike, now?: number): { readings: Map<string, Reading>; malformed: string[] } {
  const readings = new Map<string, Reading>();
  const malformed: string[] = [];
  const lower = lowerHeaders(headers);
  if (lower === null) return { readings, malformed: ['<not a headers object>'] };
  for (const [table, resetParser] of TABLES) {
    for (const [kind, [remH, resetH, limitH]] of Object.entries(table)) {
      const rem = lower.get(remH);
      if (rem === undefined) continue;
      let remaining: number;
      try {
        remaining = int(rem);
      } catch {
        malformed.push(remH);
        continue;
      }
      let reset: number | null = null;
      let limit: number | null = null;
      const rs = lower.get(resetH);
      if (rs !== undefined) {
        try { reset = resetParser(rs, now); } catch { malformed.push(resetH); }
      }
      const ls = lower.get(limitH);
      if (ls !== undefined) {
        try { limit = int(ls); } catch { malformed.push(limitH); }
      }
      readings.set(kind, { remaining, reset, limit });
    }
  }
  return { readings, malformed };
}

/** Seconds the provider asks to wait (retry-after-ms, else retry-after in
 *  seconds or as an HTTP date), or null. */
export function parseRetryAfter(headers: HeadersLike, now: number = Date.now()): number | null {
  const lower = lowerHeaders(headers);
  if (lower === null) return null;
  const ms = lower.get('retry-after-ms')?.trim();
  if (ms !== undefined && /^[0-9]{1,15}(\.[0-9]+)?$/.test(ms)) return Math.min(Number(ms) / 1000, MAX_RESET);
  const ra = lower.get('retry-after')?.trim();
  if (ra === undefined) return null;
  if (/^[0-9]{1,15}(\.[0-9]+)?$/.test(ra)) return Math.min(Number(ra), MAX_RESET);
  const when = Date.parse(ra);
  if (Number.isNaN(when) || !/GMT|UTC|[+-]\d{4}$/.test(ra)) return null;
  return Math.min(Math.max(0, (when - now) / 1000), MAX_RESET);
}
