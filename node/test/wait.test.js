// Waiting without blocking the event loop: order, abort and timeout at the
// head and in the middle, 1,000 waiters on a bounded number of threads, a
// process that exits with acquires pending, and a permit lost to the GC.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const rq = require('..');
const { segment, sleep } = require('./helpers');

test('waiters are served in order; abort and timeout leave the line at the head and in the middle', async () => {
  const c = new rq.Client({ segment: segment() });
  c.define('one', { concurrency: 1 });
  const held = await c.acquire('one');
  const order = [];
  const ac = [new AbortController(), new AbortController(), new AbortController()];
  const wait = (i, opts = {}) => c.acquire('one', { signal: ac[i]?.signal, ...opts }).then(
    (p) => { order.push(i); p.release(); return 'granted'; },
    (e) => e.constructor.name);
  const w0 = wait(0);                       // the head
  const w1 = wait(1);                       // the middle
  const w2 = wait(2, { timeout: 0.15 });    // times out in the middle
  const w3 = wait(3);
  const w4 = wait(4);
  await sleep(20);
  ac[1].abort(new Error('user gave up'));   // the middle leaves at once
  assert.strictEqual(await w1, 'CancelledError');
  ac[0].abort();                            // the head leaves at once
  assert.strictEqual(await w0, 'CancelledError');
  assert.strictEqual(await w2, 'TimeoutError');
  held.release();                           // 3 then 4, in order
  assert.deepStrictEqual(await Promise.all([w3, w4]), ['granted', 'granted']);
  assert.deepStrictEqual(order, [3, 4]);
  // An abort that comes after the grant changes nothing; an aborted signal fails at once.
  const done = new AbortController();
  const p = await c.acquire('one', { signal: done.signal });
  done.abort();
  assert.ok(p.held);
  p.release();
  await assert.rejects(c.acquire('one', { signal: done.signal }), (e) => e instanceof rq.CancelledError);
  assert.strictEqual(c.native.held(), 0);
  c.close();
});

test('the abort reason is kept as the cause; close() fails the waiters with CancelledError', async () => {
  const c = new rq.Client({ segment: segment() });
  c.define('one', { concurrency: 1 });
  const held = await c.acquire('one');
  const ac = new AbortController();
  const reason = new Error('shutdown');
  const w = c.acquire('one', { signal: ac.signal });
  setTimeout(() => ac.abort(reason), 10);
  await assert.rejects(w, (e) => e instanceof rq.CancelledError && e.cause === reason);
  const w2 = c.acquire('one');
  await sleep(10);
  c.close();
  await assert.rejects(w2, (e) => e instanceof rq.CancelledError && /closed/.test(e.message));
  held.release();  // after close: harmless
});

test('1,000 waiting acquires keep the event loop responsive and use one thread per resource', async () => {
  const c = new rq.Client({ segment: segment() });
  c.define('a', { concurrency: 1 });
  c.define('b', { concurrency: 1 });
  const ha = await c.acquire('a');
  const hb = await c.acquire('b');
  const waits = [];
  for (let i = 0; i < 1000; i++) waits.push(c.acquire(i % 2 ? 'a' : 'b', {}, () => i));
  // The loop goes on: timers fire on time while they all wait.
  let worst = 0;
  let last = Date.now();
  const timer = setInterval(() => { const now = Date.now(); worst = Math.max(worst, now - last); last = now; }, 5);
  await sleep(300);
  clearInterval(timer);
  assert.ok(worst < 100, `a 5 ms timer was late by ${worst} ms`);
  assert.ok(c.native.threads() <= 2, `${c.native.threads()} waiting threads for 2 resources`);
  ha.release();
  hb.release();
  const got = await Promise.all(waits);
  assert.deepStrictEqual(got, [...Array(1000).keys()]);
  assert.strictEqual(c.native.held(), 0);
  c.close();
});

function runChild(code, env = {}, args = []) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...args, '-e', code], { env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const t0 = Date.now();
    child.on('exit', (code, signal) => resolve({ code, signal, out, err, ms: Date.now() - t0 }));
  });
}

test('a process with acquires pending exits cleanly, and its places in line go to the next', async () => {
  const seg = segment();
  const c = new rq.Client({ segment: seg });
  c.define('one', { concurrency: 1 });
  const held = await c.acquire('one');
  const r = await runChild(`
    const rq = require(${JSON.stringify(require.resolve('..'))});
    const c = new rq.Client({ segment: ${JSON.stringify(seg)} });
    for (let i = 0; i < 50; i++) c.acquire('one').catch(() => {});
    c.acquire('one', { timeout: 3600 }).catch(() => {});
    setTimeout(() => { console.log('exiting with', c.native.threads(), 'thread'); process.exit(0); }, 200);`);
  assert.strictEqual(r.code, 0, r.err);
  assert.match(r.out, /exiting with 1 thread/);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  // Our own waiter behind the child's 51 tickets is served as soon as the holder releases.
  const mine = c.acquire('one', { timeout: 5 });
  held.release();
  (await mine).release();
  c.close();
});

test('an idle client does not keep the process alive', async () => {
  const seg = segment();
  const r = await runChild(`
    const rq = require(${JSON.stringify(require.resolve('..'))});
    const c = new rq.Client({ segment: ${JSON.stringify(seg)} });
    c.define('x', { concurrency: 1 });
    c.acquire('x', {}, () => console.log('done'));`);
  assert.strictEqual(r.code, 0, r.err);
  assert.strictEqual(r.out.trim(), 'done');
});

test('a permit garbage-collected unreleased is released, with a warning', async () => {
  const seg = segment();
  const r = await runChild(`
    const rq = require(${JSON.stringify(require.resolve('..'))});
    const c = new rq.Client({ segment: ${JSON.stringify(seg)} });
    c.define('x', { concurrency: 1 });
    process.on('warning', (w) => console.log('warning:', w.code, w.message));
    (async () => {
      (function leak() { c.tryAcquire('x'); })();   // dropped without release()
      for (let i = 0; i < 20 && c.native.held() > 0; i++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); }
      console.log('held', c.native.held(), 'free', c.tryAcquire('x') !== null);
    })();`, {}, ['--expose-gc']);
  assert.strictEqual(r.code, 0, r.err);
  assert.match(r.out, /warning: RATEQUEUE_PERMIT_LEAKED a permit of "x" was garbage-collected/);
  assert.match(r.out, /held 0 free true/);
});
