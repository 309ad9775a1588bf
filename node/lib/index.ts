// ratequeue for Node.js: the same segment, resources and FIFO line as the C,
// C++ and Python users, with the same names, meanings and errors as Python's
// package. Waiting never blocks the event loop (see src/addon.cc).
//
//   import * as rq from 'ratequeue';
//   rq.define('openai', { rpm: 1000, tpm: 200_000, concurrency: 10 });
//   const reply = await rq.acquire('openai', { load: tokens }, async () => callTheApi());
import * as path from 'node:path';
import { parse as parseHeaders, HeadersLike, Reading } from './headers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const native = require(path.join(__dirname, '..', 'build', 'Release', 'ratequeue.node'));

export { parseDuration, parseResetTime, parseRetryAfter, Reading, HeadersLike } from './headers';

// ---- Errors: one class per code of the library's own table (rq_errname) --------------

/** A negative RQ_E* code from the library: `.code`, `.errname` ("RQ_ETIMEDOUT") and its text. */
export class RateQueueError extends Error {
  readonly code: number;
  readonly errname: string;
  /** TimeoutError only: at least how long the acquire would have waited, in
   *  seconds, when it failed at once because its deadline came first. */
  predictedWait: number | null = null;
  constructor(code: number, context = '', text?: string, options?: { cause?: unknown }) {
    const errname = native.errname(code) as string;
    super(`${context ? context + ': ' : ''}${text ?? native.strerror(code)} (${errname})`, options);
    this.code = code;
    this.errname = errname;
    this.name = new.target.name;
  }
}
export class TimeoutError extends RateQueueError {}
export class WouldBlockError extends RateQueueError {}
export class NotDefinedError extends RateQueueError {}
export class InvalidArgumentError extends RateQueueError {}
export class ConflictError extends RateQueueError {}
export class LoadTooLargeError extends RateQueueError {}
export class NoSpaceError extends RateQueueError {}
export class IncompatibleError extends RateQueueError {}
export class CorruptError extends RateQueueError {}
export class PermissionDeniedError extends RateQueueError {}
export class CancelledError extends RateQueueError {}
export class SystemError extends RateQueueError {}
export class InternalError extends RateQueueError {}
export class UnavailableError extends RateQueueError {}

const CLASS_OF: Record<string, typeof RateQueueError> = {
  RQ_ETIMEDOUT: TimeoutError, RQ_EAGAIN: WouldBlockError, RQ_ENOENT: NotDefinedError,
  RQ_EINVAL: InvalidArgumentError, RQ_ECONFLICT: ConflictError, RQ_E2BIG: LoadTooLargeError,
  RQ_ENOSPC: NoSpaceError, RQ_EINCOMPAT: IncompatibleError, RQ_ECORRUPT: CorruptError,
  RQ_EACCES: PermissionDeniedError, RQ_ECANCELED: CancelledError, RQ_ESYS: SystemError,
  RQ_EINTERNAL: InternalError, RQ_EUNAVAIL: UnavailableError,
};

/** The class for each code the library knows, built from its own table. */
export const errors: ReadonlyMap<number, typeof RateQueueError> = (() => {
  const m = new Map<number, typeof RateQueueError>();
  for (let code = -1; code >= -64; code--) {
    const name = native.errname(code) as string;
    const cls = CLASS_OF[name];
    if (cls) m.set(code, cls);
  }
  return m;
})();

function error(code: number, context = '', text?: string, options?: { cause?: unknown }): RateQueueError {
  const Cls = errors.get(code) ?? RateQueueError;
  return new Cls(code, context, text, options);
}

const EAGAIN = -2;
const EINVAL = -4;
const E2BIG = -6;
const MAX_AMOUNT = 2 ** 48;

// ---- Limits --------------------------------------------------------------------------

export type Cost = 'request' | 'load';

/** `amount` units per `per` seconds, with a bucket of `burst` units (default
 *  amount); each acquire costs 1 ('request') or its load ('load'). */
export class Rate {
  readonly kind = 'rate' as const;
  readonly amount: number;
  readonly per: number;
  readonly burst: number | null;
  readonly cost: Cost;
  constructor(amount: number, opts: { per?: number; burst?: number | null; cost?: Cost } = {}) {
    this.amount = positiveInt('amount', amount);
    this.per = opts.per ?? 60;
    if (typeof this.per !== 'number' || !(this.per > 0)) throw new InvalidArgumentError(EINVAL, 'Rate', 'per must be seconds > 0');
    this.burst = opts.burst == null ? null : positiveInt('burst', opts.burst);
    this.cost = costOf(opts.cost ?? 'request');
  }
}

/** At most `n` held at once (1 per acquire, or the load with cost 'load'). */
export class Concurrency {
  readonly kind = 'concurrency' as const;
  readonly n: number;
  readonly cost: Cost;
  constructor(n: number, opts: { cost?: Cost } = {}) {
    this.n = positiveInt('concurrency', n);
    this.cost = costOf(opts.cost ?? 'request');
  }
}

export type Limit = Rate | Concurrency;

function positiveInt(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > MAX_AMOUNT) {
    throw new InvalidArgumentError(EINVAL, '', `${what} must be an integer in [1, 2^48], not ${String(v)}`);
  }
  return v;
}

function costOf(c: unknown): Cost {
  if (c !== 'request' && c !== 'load') throw new InvalidArgumentError(EINVAL, '', `cost must be 'request' or 'load', not ${String(c)}`);
  return c;
}

// The per-minute shorthands, as the C header defines them (rq_rpm, rq_tpm): the
// bucket of rpm holds half a second's worth, that of tpm the whole minute.
export const RPM_BURST_MS = 500;
export const TPM_BURST_MS = 60000;

function perMinuteBurst(amount: number, burstSeconds: number | undefined, defaultMs: number): number {
  let ms = defaultMs;
  if (burstSeconds !== undefined) {
    if (typeof burstSeconds !== 'number' || !(burstSeconds > 0 && burstSeconds <= 60)) {
      throw new InvalidArgumentError(EINVAL, '', `burstSeconds must be in (0, 60], not ${String(burstSeconds)}`);
    }
    ms = Math.max(1, Math.round(burstSeconds * 1000));
  }
  // ceil(amount * ms / 60000) without losing precision above 2^53
  const b = Number((BigInt(amount) * BigInt(ms) + 59999n) / 60000n);
  return Math.max(1, b);
}

export interface DefineOptions {
  /** Requests per minute, paced per second (a bucket of half a second's worth). */
  rpm?: number;
  /** Tokens per minute (a bucket of the whole minute). */
  tpm?: number;
  /** At most this many at once. */
  concurrency?: number;
  /** Both buckets in seconds' worth instead (up to 60). */
  burstSeconds?: number;
  /** The general form. */
  limits?: Limit[];
  /** Swap in a different definition (rate debt and permits in use carry over). */
  replace?: boolean;
  /** Many hosts: 'local' keeps it on this host; 'global' needs a Redis URL. */
  scope?: 'global' | 'local';
  /** Many hosts: 'closed' (default) or 'local-share'. */
  onRedisDown?: 'closed' | 'local-share';
}

function limitsOf(o: DefineOptions): Limit[] {
  const out: Limit[] = [...(o.limits ?? [])];
  if (o.rpm !== undefined) {
    const rpm = positiveInt('rpm', o.rpm);
    out.push(new Rate(rpm, { per: 60, burst: perMinuteBurst(rpm, o.burstSeconds, RPM_BURST_MS) }));
  }
  if (o.tpm !== undefined) {
    const tpm = positiveInt('tpm', o.tpm);
    out.push(new Rate(tpm, { per: 60, burst: perMinuteBurst(tpm, o.burstSeconds, TPM_BURST_MS), cost: 'load' }));
  }
  if (o.concurrency !== undefined) out.push(new Concurrency(o.concurrency));
  if (out.length === 0) throw new InvalidArgumentError(EINVAL, 'define', 'needs at least one limit: rpm, tpm, concurrency or limits');
  for (const l of out) {
    if (!(l instanceof Rate) && !(l instanceof Concurrency)) throw new TypeError(`limits must be Rate or Concurrency, not ${String(l)}`);
  }
  return out;
}

function nativeLimit(l: Limit) {
  if (l instanceof Rate) {
    return { kind: 1, cost: l.cost === 'load' ? 1 : 0, amount: l.amount, periodNs: BigInt(Math.round(l.per * 1e9)), burst: l.burst ?? 0 };
  }
  return { kind: 2, cost: l.cost === 'load' ? 1 : 0, amount: l.n, periodNs: 0n, burst: 0 };
}

function describeLimit(l: Limit): string {
  if (l instanceof Rate) return `Rate(${l.amount}, per=${l.per}, burst=${l.burst ?? l.amount}, cost='${l.cost}')`;
  return `Concurrency(${l.n}, cost='${l.cost}')`;
}

// ---- Permits -------------------------------------------------------------------------

// A permit garbage-collected while held is released, with a warning. To keep
// the hot path free of FinalizationRegistry (about 0.5 us a permit), a permit
// is registered only once it has outlived the task that took it: permits
// are remembered in `recent`, and a sweep on the next turn of the loop (or
// when 1,024 are waiting) registers those still held. A permit taken and
// released in one go never touches the registry.
const lost = new FinalizationRegistry<{ client: Client; slot: number; resource: string }>((h) => {
  if (h.client.nativeRelease(h.slot) === 0) {
    process.emitWarning(`a permit of "${h.resource}" was garbage-collected without release(); it was released now`,
      { code: 'RATEQUEUE_PERMIT_LEAKED', type: 'ratequeue' } as any);
  }
});
let recent: Permit[] = [];
let sweepPending = false;

function sweep(): void {
  const list = recent;
  recent = [];
  sweepPending = false;
  for (const p of list) p._guard();
}

function remember(p: Permit): void {
  recent.push(p);
  if (recent.length >= 1024) sweep();
  else if (!sweepPending) {
    sweepPending = true;
    setImmediate(sweep).unref();
  }
}

/** A held permit: call release() (idempotent), or let acquire(name, opts, fn) do it. */
export class Permit {
  readonly resource: string;
  load: number;
  private client: Client | null;
  private readonly slot: number;
  private token: object | null = null;

  /** @internal */
  constructor(client: Client, slot: number, resource: string, load: number) {
    this.client = client;
    this.slot = slot;
    this.resource = resource;
    this.load = load;
    remember(this);
  }

  /** @internal Registers a permit still held for release on garbage collection. */
  _guard(): void {
    if (this.client === null || this.token !== null) return;
    this.token = { client: this.client, slot: this.slot, resource: this.resource };
    lost.register(this, this.token as any, this.token);
  }

  get held(): boolean {
    return this.client !== null;
  }

  /** Reports the load actually used (tokens the response says it used) after
   *  acquiring with an estimate: unused estimate goes back to the token
   *  buckets, usage above it becomes debt later acquirers wait out. Once per
   *  permit, before release. */
  settle(actual: number): void {
    if (typeof actual !== 'number' || !Number.isInteger(actual) || actual < 0 || actual > MAX_AMOUNT) {
      throw new InvalidArgumentError(EINVAL, `settle ${this.resource}`, `actual must be an integer >= 0, not ${String(actual)}`);
    }
    if (this.client === null) throw new InvalidArgumentError(EINVAL, `settle ${this.resource}`, 'the permit is released');
    const rc = this.client.native.settle(this.slot, actual);
    if (rc !== 0) throw error(rc, `settle ${this.resource}`);
    this.load = actual;
  }

  /** Gives the permit back (concurrency returns at once). Idempotent. */
  release(): void {
    const client = this.client;
    if (client === null) return;
    this.client = null;
    if (this.token !== null) lost.unregister(this.token);
    const rc = native.releaseNow(client.id, this.slot);
    if (rc !== 0) throw error(rc, `release ${this.resource}`);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

// ---- The client ----------------------------------------------------------------------

export interface AcquireOptions {
  /** Units to take: 1 for a request, the estimated tokens for a token limit. */
  load?: number;
  /** Seconds to wait in line; undefined: as long as it takes; 0: try once. */
  timeout?: number;
  /** Aborting it takes the acquire out of the line at once. */
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** The segment (/dev/shm/NAME); default $RATEQUEUE_SEGMENT, else "ratequeue". */
  segment?: string;
  /** Many hosts: share global resources through this Redis; default $RATEQUEUE_REDIS_URL. */
  redisUrl?: string;
  /** Many hosts: seconds Redis keeps this host's lease after its last call (10). */
  leaseTtl?: number;
  /** Create the segment 0660 and accept group-owned segments. */
  group?: boolean;
}

interface Pending {
  resolve: (p: Permit) => void;
  reject: (e: unknown) => void;
  name: string;
  load: number;
  timer: NodeJS.Timeout | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

let nextId = 1;

/** One attachment to a segment (created if missing). */
export class Client {
  /** @internal */
  native: any;
  /** @internal */
  id = -1;
  readonly segment: string;
  /** Malformed provider headers seen by observeHeaders (ignored). */
  malformedHeaders = 0;
  private readonly handles = new Map<string, number>();
  private readonly pending = new Map<number, Pending>();
  private readonly limitsCache = new Map<string, Limit[]>();

  constructor(opts: ClientOptions = {}) {
    this.segment = opts.segment || process.env.RATEQUEUE_SEGMENT || 'ratequeue';
    let ttlMs = 0;
    if (opts.leaseTtl !== undefined) {
      if (typeof opts.leaseTtl !== 'number' || !(opts.leaseTtl > 0)) throw new InvalidArgumentError(EINVAL, 'Client', 'leaseTtl must be seconds > 0');
      ttlMs = Math.max(1, Math.round(opts.leaseTtl * 1000));
    }
    try {
      this.native = new native.NativeClient(this.segment, opts.redisUrl ?? null, ttlMs, !!opts.group,
        (id: number, rc: number, slot: number) => this.delivered(id, rc, slot));
      this.id = this.native.id();
    } catch (e: any) {
      if (typeof e?.rqCode === 'number') throw error(e.rqCode, `open segment ${this.segment}`);
      throw e;
    }
  }

  /** Detaches: pending acquires fail with CancelledError and leave their lines. */
  close(): void {
    for (const [id, p] of this.pending) {
      this.settlePending(id, p);
      p.reject(new CancelledError(-11, `acquire ${p.name}`, 'the client was closed'));
    }
    this.native.close();
  }

  /** @internal */
  nativeRelease(slot: number): number {
    return this.native.release(slot);
  }

  /** Defines `name` (idempotent); ConflictError if it is defined differently, unless replace. */
  define(name: string, opts: DefineOptions): void {
    checkName(name);
    const items = limitsOf(opts);
    if (opts.scope !== undefined && opts.scope !== 'global' && opts.scope !== 'local') {
      throw new InvalidArgumentError(EINVAL, `define ${name}`, "scope must be 'global' or 'local'");
    }
    if (opts.onRedisDown !== undefined && opts.onRedisDown !== 'closed' && opts.onRedisDown !== 'local-share') {
      throw new InvalidArgumentError(EINVAL, `define ${name}`, "onRedisDown must be 'closed' or 'local-share'");
    }
    let flags = opts.replace ? 1 : 0;
    if (opts.scope === 'local') flags |= 2;
    if (opts.onRedisDown === 'local-share') flags |= 4;
    this.limitsCache.delete(name);
    const rc = this.native.define(name, items.map(nativeLimit), flags);
    if (rc === -5) {
      let have = 'other limits';
      try { have = this.describe(name).map(describeLimit).join(', '); } catch { /* keep the generic text */ }
      throw error(rc, `define ${name}`, `already defined as [${have}]; this define asks for [${items.map(describeLimit).join(', ')}]: ` +
        'pass replace: true to swap the new limits in (rate debt and permits in use carry over)');
    }
    if (rc !== 0) throw error(rc, `define ${name}${this.remoteWhy(rc)}`);
  }

  /** The limits of `name`. */
  describe(name: string): Limit[] {
    checkName(name);
    const r = this.native.describe(name);
    if (typeof r === 'number') throw error(r, `describe ${name}`);
    return r.map((l: any) => {
      const cost: Cost = l.cost === 1 ? 'load' : 'request';
      return l.kind === 1 ? new Rate(l.amount, { per: Number(l.periodNs) / 1e9, burst: l.burst, cost }) : new Concurrency(l.amount, { cost });
    });
  }

  private handle(name: string): number {
    let h = this.handles.get(name);
    if (h === undefined) {
      checkName(name);
      h = this.native.resolve(name) as number;
      if (h < 0) throw error(h, `acquire ${name}`);
      this.handles.set(name, h);
    }
    return h;
  }

  /** A Permit if every limit allows `load` right now and nobody waits, else null. */
  tryAcquire(name: string, opts?: { load?: number }): Permit | null {
    const load = opts === undefined || opts.load === undefined ? 1 : checkLoad(opts.load);
    let h = this.handles.get(name);
    if (h === undefined) h = this.handle(name);
    const slot = native.acquireNow(this.id, h, load);
    if (slot >= 0) return new Permit(this, slot, name, load);
    if (slot === EAGAIN) return null;
    throw this.acquireError(slot, name, load);
  }

  /** Waits in FIFO order, without blocking the event loop, until every limit
   *  of `name` allows `load`. Without `fn`, resolves to a Permit; with `fn`,
   *  runs it holding the permit, releases afterwards (also when it throws)
   *  and resolves to what it returned. */
  acquire(name: string, opts?: AcquireOptions): Promise<Permit>;
  acquire<T>(name: string, opts: AcquireOptions | undefined, fn: (permit: Permit) => T | Promise<T>): Promise<T>;
  acquire<T>(name: string, opts: AcquireOptions = {}, fn?: (permit: Permit) => T | Promise<T>): Promise<Permit | T> {
    let got: Promise<Permit>;
    try {
      got = this.acquirePermit(name, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    if (fn === undefined) return got;
    return got.then(async (permit) => {
      try {
        return await fn(permit);
      } finally {
        permit.release();
      }
    });
  }

  private acquirePermit(name: string, opts: AcquireOptions): Promise<Permit> {
    const load = opts.load === undefined ? 1 : checkLoad(opts.load);
    const timeout = opts.timeout;
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw new InvalidArgumentError(EINVAL, `acquire ${name}`, `timeout must be undefined or seconds >= 0, not ${String(timeout)}`);
    }
    const signal = opts.signal;
    if (signal?.aborted) throw new CancelledError(-11, `acquire ${name}`, 'aborted', { cause: signal.reason });
    // Try once on the loop: the uncontended case costs no thread hop.
    let h = this.handles.get(name);
    if (h === undefined) h = this.handle(name);
    const slot = native.acquireNow(this.id, h, load);
    if (slot >= 0) return Promise.resolve(new Permit(this, slot, name, load));
    if (slot !== EAGAIN) throw this.acquireError(slot, name, load);
    if (timeout === 0) throw new WouldBlockError(EAGAIN, `acquire ${name}`);
    if (timeout !== undefined) {
      const predicted = this.predictWait(name, { load });
      if (predicted > timeout) {
        const e = new TimeoutError(-1, `acquire ${name}`, `predicted wait ${predicted.toFixed(3)}s exceeds the timeout`);
        e.predictedWait = predicted;
        throw e;
      }
    }
    const id = nextId++;
    const rc = this.native.enqueue(name, load, id);
    if (rc !== 0) throw this.acquireError(rc, name, load);
    return new Promise<Permit>((resolve, reject) => {
      const p: Pending = { resolve, reject, name, load, timer: null, signal, onAbort: null };
      this.pending.set(id, p);
      if (timeout !== undefined) {
        p.timer = setTimeout(() => this.giveUp(id, new TimeoutError(-1, `acquire ${name}`)), Math.max(1, timeout * 1000));
        p.timer.unref();  // a pending acquire does not keep the process alive by itself
      }
      if (signal) {
        p.onAbort = () => this.giveUp(id, new CancelledError(-11, `acquire ${name}`, 'aborted', { cause: signal.reason }));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
    });
  }

  private settlePending(id: number, p: Pending): void {
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
  }

  /** A timeout or an abort: the ticket leaves the line at once. */
  private giveUp(id: number, err: RateQueueError): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.settlePending(id, p);
    this.native.cancel(id);
    p.reject(err);
  }

  private delivered(id: number, rc: number, slot: number): void {
    const p = this.pending.get(id);
    if (!p) {  // it gave up first; a grant that raced it goes back
      if (slot >= 0) this.native.release(slot);
      return;
    }
    this.settlePending(id, p);
    if (rc === 0) p.resolve(new Permit(this, slot, p.name, p.load));
    else p.reject(this.acquireError(rc, p.name, p.load));
  }

  /** @internal */
  acquireError(rc: number, name: string, load: number): RateQueueError {
    if (rc === E2BIG) {
      let limits: Limit[] = [];
      try { limits = this.describe(name); } catch { /* keep the generic text */ }
      const refused = limits.find((l) => l.cost === 'load' && (l instanceof Rate ? load > (l.burst ?? l.amount) : load > l.n));
      if (refused) {
        let fix: string;
        if (refused instanceof Rate && (refused.burst ?? refused.amount) >= refused.amount) {
          fix = `the bucket already holds the whole ${refused.per === 60 ? 'minute' : 'period'}; a load above it is more than the limit allows in a period: split the request, or raise the limit`;
        } else if (refused instanceof Rate) {
          fix = 'define it with a larger burstSeconds (up to 60) or limits: [new Rate(..., { burst })]';
        } else {
          fix = 'raise the concurrency amount';
        }
        const room = refused instanceof Rate ? `a bucket of ${refused.burst ?? refused.amount}` : `${refused.n} at once`;
        return error(rc, `acquire ${name}`, `load ${load} can never fit ${describeLimit(refused)} (${room}): ${fix}`);
      }
    }
    return error(rc, `acquire ${name}${this.remoteWhy(rc)}`);
  }

  private remoteWhy(rc: number): string {
    if (rc !== -5 && rc !== -14) return '';
    const why = this.native.remoteError() as string;
    return why ? ` (${why})` : '';
  }

  /** Seconds an acquire of `load` would wait at least if it queued now (0: at once). */
  predictWait(name: string, opts: { load?: number } = {}): number {
    checkName(name);
    const r = this.native.predictWait(name, checkLoad(opts.load));
    if (r < 0) throw error(r, `predict ${name}`);
    return r / 1e9;
  }

  /** Shares a provider's 429 back-off: no process on this machine is admitted
   *  on `name` for `retryAfter` seconds; waiters keep their places. */
  penalize(name: string, opts: { retryAfter: number }): void {
    checkName(name);
    const s = opts?.retryAfter;
    if (typeof s !== 'number' || !(s >= 0 && s <= 366 * 24 * 3600)) {
      throw new InvalidArgumentError(EINVAL, `penalize ${name}`, `retryAfter must be seconds in [0, a year], not ${String(s)}`);
    }
    const rc = this.native.penalize(name, Math.round(s * 1e9));
    if (rc !== 0) throw error(rc, `penalize ${name}`);
  }

  /** Lowers rate limit `index` of `name` to hold at most `remaining` now and
   *  not be full again sooner than `reset` seconds; never raises it. */
  observe(name: string, index: number, remaining: number, reset = 0): void {
    checkName(name);
    const rc = this.native.observe(name, index, remaining, Math.max(0, reset) * 1e9);
    if (rc !== 0) throw error(rc, `observe ${name}`);
  }

  /** Follows a provider's rate-limit headers (a Headers object or a plain
   *  object): the "requests" reading clamps the first request-cost rate limit
   *  of `name`, the "tokens" one the first load-cost rate limit. Malformed
   *  values are ignored and counted in malformedHeaders. */
  observeHeaders(name: string, headers: HeadersLike, retry = true): { applied: Map<string, Reading>; malformed: string[] } {
    const { readings, malformed } = parseHeaders(headers);
    if (retry) this.malformedHeaders += malformed.length;
    const applied = new Map<string, Reading>();
    if (readings.size === 0) return { applied, malformed };
    let limits = this.limitsCache.get(name);
    if (!limits) {
      limits = this.describe(name);
      this.limitsCache.set(name, limits);
    }
    for (const [kind, reading] of readings) {
      const want: Cost = kind === 'requests' ? 'request' : 'load';
      const index = limits.findIndex((l) => l instanceof Rate && l.cost === want);
      if (index < 0) continue;
      try {
        this.observe(name, index, Math.min(reading.remaining, MAX_AMOUNT), timeToBurst(limits[index] as Rate, reading));
      } catch (e) {
        if (!(e instanceof InvalidArgumentError) || !retry) throw e;
        this.limitsCache.delete(name);  // redefined since we cached its limits: once more, fresh
        return this.observeHeaders(name, headers, false);
      }
      applied.set(kind, reading);
    }
    return { applied, malformed };
  }
}

/** Seconds until the provider holds at least this limit's burst again, from its
 *  reading (Python's _time_to_burst). */
function timeToBurst(lim: Rate, r: Reading): number {
  const burst = lim.burst ?? lim.amount;
  if (r.reset === null || r.remaining >= burst) return 0;
  if (r.limit === null || r.limit <= r.remaining) return 0;
  return r.reset * Math.min(1, (burst - r.remaining) / (r.limit - r.remaining));
}

function checkName(name: unknown): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(EINVAL, '', `a resource name must be a non-empty string, not ${String(name)}`);
  }
}

function checkLoad(load: unknown): number {
  if (load === undefined) return 1;
  if (typeof load !== 'number' || !Number.isInteger(load) || load <= 0 || load > MAX_AMOUNT) {
    throw new InvalidArgumentError(EINVAL, '', `load must be an integer in [1, 2^48], not ${String(load)}`);
  }
  return load;
}

// ---- Module-level functions on a default client ---------------------------------------

let defaultClient: Client | null = null;

/** The module's Client on $RATEQUEUE_SEGMENT (else "ratequeue"), opened on first use. */
export function getDefaultClient(): Client {
  if (defaultClient === null) defaultClient = new Client();
  return defaultClient;
}

export function define(name: string, opts: DefineOptions): void {
  getDefaultClient().define(name, opts);
}
export function describe(name: string): Limit[] {
  return getDefaultClient().describe(name);
}
export function acquire(name: string, opts?: AcquireOptions): Promise<Permit>;
export function acquire<T>(name: string, opts: AcquireOptions | undefined, fn: (permit: Permit) => T | Promise<T>): Promise<T>;
export function acquire<T>(name: string, opts?: AcquireOptions, fn?: (permit: Permit) => T | Promise<T>): Promise<Permit | T> {
  return fn === undefined ? getDefaultClient().acquire(name, opts) : getDefaultClient().acquire(name, opts, fn);
}
export function tryAcquire(name: string, opts?: { load?: number }): Permit | null {
  return getDefaultClient().tryAcquire(name, opts);
}
export function penalize(name: string, opts: { retryAfter: number }): void {
  getDefaultClient().penalize(name, opts);
}
export function observeHeaders(name: string, headers: HeadersLike) {
  return getDefaultClient().observeHeaders(name, headers);
}
export function predictWait(name: string, opts?: { load?: number }): number {
  return getDefaultClient().predictWait(name, opts);
}

/** The library's version (rq_version(): major * 10000 + minor * 100 + patch). */
export const libraryVersion: number = native.version();
/** The bare Node-API call the benchmark measures against. @internal */
export const _noop: (...args: unknown[]) => number = native.noopRaw;

export { fetch, FetchOptions, estimateLoad, usageTokens } from './fetch';
