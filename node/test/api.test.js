// Every API form, and bad input: clear errors, nothing left held.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const rq = require('..');
const { segment, python, sleep } = require('./helpers');

function client() {
  return new rq.Client({ segment: segment() });
}

test('define: rpm, tpm, concurrency, burstSeconds and limits mean what they mean in Python and rqctl', () => {
  const c = client();
  c.define('a', { rpm: 1000, tpm: 200_000, concurrency: 10 });
  const [r, t, k] = c.describe('a');
  assert.deepStrictEqual([r.amount, r.per, r.burst, r.cost], [1000, 60, 9, 'request']);
  assert.deepStrictEqual([t.amount, t.per, t.burst, t.cost], [200_000, 60, 200_000, 'load']);
  assert.deepStrictEqual([k.n, k.cost], [10, 'request']);
  c.define('a', { rpm: 1000, tpm: 200_000, concurrency: 10 }); // idempotent
  c.define('b', { rpm: 60, tpm: 90_000, burstSeconds: 1.5 });
  assert.deepStrictEqual(c.describe('b').map((l) => l.burst), [2, 2250]);  // burstSeconds: both
  c.define('c', { limits: [new rq.Rate(50, { per: 1, burst: 5 }), new rq.Concurrency(4, { cost: 'load' })] });
  const [cr, cc] = c.describe('c');
  assert.deepStrictEqual([cr.amount, cr.per, cr.burst, cc.n, cc.cost], [50, 1, 5, 4, 'load']);
  c.close();
});

test('a resource defined from Node, then from Python and rqctl-style C, is one definition (no conflict)', () => {
  const seg = segment();
  const c = new rq.Client({ segment: seg });
  c.define('shared', { rpm: 500, tpm: 90_000, concurrency: 3 });
  const out = python(`
import sys, ratequeue as rq
c = rq.Client(sys.argv[1])
c.define("shared", rpm=500, tpm=90_000, concurrency=3)   # the same: no Conflict
c.define("from-python", rpm=60, tpm=1000, burst_seconds=2)
print("ok")`, [seg]);
  assert.strictEqual(out.trim(), 'ok');
  c.define('from-python', { rpm: 60, tpm: 1000, burstSeconds: 2 });
  assert.throws(() => c.define('shared', { rpm: 501 }), (e) => e instanceof rq.ConflictError &&
    /already defined as \[Rate\(500.*replace: true/.test(e.message) && e.code === -5 && e.errname === 'RQ_ECONFLICT');
  c.define('shared', { rpm: 501 , replace: true });
  c.close();
});

test('acquire: a Permit, or fn run holding it (released after, also when it throws)', async () => {
  const c = client();
  c.define('one', { concurrency: 1 });
  const p = await c.acquire('one');
  assert.ok(p instanceof rq.Permit && p.held && p.resource === 'one' && p.load === 1);
  assert.strictEqual(c.tryAcquire('one'), null);
  p.release();
  p.release(); // idempotent
  assert.strictEqual(p.held, false);
  assert.strictEqual(await c.acquire('one', {}, async (permit) => {
    assert.ok(permit.held);
    assert.strictEqual(c.tryAcquire('one'), null);
    return 42;
  }), 42);
  assert.strictEqual(await c.acquire('one', undefined, () => 'sync fn'), 'sync fn');
  await assert.rejects(c.acquire('one', {}, async () => { throw new Error('boom'); }), /boom/);
  const q = c.tryAcquire('one');
  assert.ok(q, 'released after fn threw');
  q.release();
  assert.strictEqual(c.native.held(), 0);
  c.close();
});

test('settle gives back unused estimate; twice or after release is InvalidArgumentError', async () => {
  const c = client();
  c.define('t', { limits: [new rq.Rate(100, { per: 86400, burst: 100, cost: 'load' })] });
  const p = await c.acquire('t', { load: 80 });
  p.settle(30);
  assert.strictEqual(p.load, 30);
  assert.ok(c.tryAcquire('t', { load: 70 }), 'the 50 not used came back');
  assert.strictEqual(c.tryAcquire('t', { load: 1 }), null);
  p.release();
  assert.throws(() => p.settle(1), rq.InvalidArgumentError);
  assert.throws(() => p.settle(-1), rq.InvalidArgumentError);
  c.close();
});

test('bad input gets clear, typed errors and leaves nothing held', async () => {
  const c = client();
  c.define('r', { rpm: 600, concurrency: 2 });
  for (const load of [0, -1, 1.5, 'x', 2 ** 49, NaN]) {
    assert.throws(() => c.tryAcquire('r', { load }), rq.InvalidArgumentError, String(load));
    await assert.rejects(c.acquire('r', { load }), rq.InvalidArgumentError, String(load));
  }
  await assert.rejects(c.acquire('r', { timeout: -1 }), rq.InvalidArgumentError);
  await assert.rejects(c.acquire(''), rq.InvalidArgumentError);
  await assert.rejects(c.acquire('nope'), (e) => e instanceof rq.NotDefinedError && e.code === -3);
  assert.throws(() => c.tryAcquire('nope'), rq.NotDefinedError);
  assert.throws(() => c.define('x', {}), /at least one limit/);
  assert.throws(() => c.define('x', { rpm: 0 }), rq.InvalidArgumentError);
  assert.throws(() => c.define('x', { tpm: 10, burstSeconds: 61 }), /burstSeconds/);
  assert.throws(() => c.define('x', { limits: [new rq.Rate(1e6, { per: 1e-9 })] }), rq.InvalidArgumentError);
  assert.throws(() => c.define('bad name with spaces', { rpm: 1 }), rq.InvalidArgumentError);
  assert.throws(() => c.penalize('r', { retryAfter: -1 }), rq.InvalidArgumentError);
  c.define('tok', { tpm: 1000 });
  await assert.rejects(c.acquire('tok', { load: 1001 }), (e) => e instanceof rq.LoadTooLargeError &&
    /load 1001 can never fit Rate\(1000.*split the request/.test(e.message));
  c.define('small', { tpm: 1000, burstSeconds: 1 });
  assert.throws(() => c.tryAcquire('small', { load: 100 }), /burstSeconds/);
  assert.throws(() => new rq.Client({ segment: '../etc' }), rq.InvalidArgumentError);
  assert.strictEqual(c.native.held(), 0);
  c.close();
  await assert.rejects(c.acquire('r'), rq.InvalidArgumentError);  // closed
});

test('errors: one class per code of the library table, all RateQueueError with .code', () => {
  assert.ok(rq.errors.size >= 14);
  for (const [code, Cls] of rq.errors) {
    const e = new Cls(code, 'ctx');
    assert.ok(e instanceof rq.RateQueueError && e instanceof Error);
    assert.strictEqual(e.code, code);
    assert.match(e.errname, /^RQ_E/);
    assert.strictEqual(e.name, Cls.name);
  }
  assert.strictEqual(rq.errors.get(-1), rq.TimeoutError);
  assert.strictEqual(rq.errors.get(-6), rq.LoadTooLargeError);
  assert.strictEqual(rq.errors.get(-14), rq.UnavailableError);
});

test('timeout 0 tries once; a timeout the buckets cannot meet fails at once with predictedWait', async () => {
  const c = client();
  c.define('slow', { limits: [new rq.Rate(1, { per: 3600 })] });
  (await c.acquire('slow')).release();
  await assert.rejects(c.acquire('slow', { timeout: 0 }), rq.WouldBlockError);
  const t0 = Date.now();
  await assert.rejects(c.acquire('slow', { timeout: 5 }), (e) => e instanceof rq.TimeoutError &&
    e.predictedWait > 3590 && e.predictedWait <= 3600);
  assert.ok(Date.now() - t0 < 500);
  assert.ok(c.predictWait('slow') > 3590);
  c.close();
});

test('penalize pauses the resource; observeHeaders clamps from a Headers object or a plain object', async () => {
  const c = client();
  c.define('oa', { rpm: 600, tpm: 60_000 });
  c.penalize('oa', { retryAfter: 0.2 });
  assert.ok(c.predictWait('oa') > 0.1);
  assert.strictEqual(c.tryAcquire('oa'), null);
  await sleep(250);
  const h = new Headers({ 'x-ratelimit-remaining-tokens': '300', 'x-ratelimit-reset-tokens': '6m0s',
    'x-ratelimit-limit-tokens': '60000', 'x-ratelimit-remaining-requests': '5', 'x-ratelimit-reset-requests': 'junk' });
  const { applied, malformed } = c.observeHeaders('oa', h);
  assert.deepStrictEqual([...applied.keys()].sort(), ['requests', 'tokens']);
  assert.deepStrictEqual(malformed, ['x-ratelimit-reset-requests']);
  assert.strictEqual(c.malformedHeaders, 1);
  assert.strictEqual(c.tryAcquire('oa', { load: 301 }), null);
  c.define('an', { tpm: 60_000 });
  const r = c.observeHeaders('an', { 'Anthropic-Ratelimit-Tokens-Remaining': '10',
    'anthropic-ratelimit-tokens-reset': new Date(Date.now() + 5000).toISOString() });
  assert.ok(r.applied.has('tokens'));
  assert.strictEqual(c.tryAcquire('an', { load: 100 }), null);
  c.close();
});

test('module-level functions use a default client on $RATEQUEUE_SEGMENT', async () => {
  const seg = segment();
  const { spawnSync } = require('node:child_process');
  const r = spawnSync(process.execPath, ['-e', `
    const rq = require(${JSON.stringify(require.resolve('..'))});
    rq.define('m', { rpm: 60, concurrency: 1 });
    rq.acquire('m', { load: 1 }, async () => {
      if (rq.tryAcquire('m') !== null) throw new Error('concurrency 1 let two in');
      console.log(rq.getDefaultClient().segment, rq.predictWait('m'));
    }).then(() => process.exit(0));`], { env: { ...process.env, RATEQUEUE_SEGMENT: seg }, encoding: 'utf8' });
  assert.strictEqual(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${seg} `));
});

test('the library version is the package version (both from meson project())', () => {
  const pkg = require('../package.json');
  const [a, b, c] = pkg.version.split('.').map(Number);
  assert.strictEqual(rq.libraryVersion, a * 10000 + b * 100 + c);
  const meson = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', '..', 'meson.build'), 'utf8');
  assert.strictEqual(/version:\s*'([^']+)'/.exec(meson)[1], pkg.version);
});
