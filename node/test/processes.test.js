// Across processes: Node processes sharing a concurrency cap, FIFO across a
// Node and a Python process, and a SIGKILLed Node holder's permit coming back.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const rq = require('..');
const { segment, pythonEnv, PYTHON, sleep } = require('./helpers');

const RQ = JSON.stringify(require.resolve('..'));

function node(code, args = []) {
  const child = spawn(process.execPath, ['-e', code, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.out = '';
  child.err = '';
  child.stdout.on('data', (d) => { child.out += d; });
  child.stderr.on('data', (d) => { child.err += d; });
  child.done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

async function until(cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + cond);
    await sleep(5);
  }
}

test('4 Node processes share a concurrency cap of 2, never exceeded', async () => {
  const seg = segment();
  const c = new rq.Client({ segment: seg });
  c.define('cap', { concurrency: 2 });
  const log = path.join(os.tmpdir(), `${seg}.log`);
  const kids = [];
  for (let k = 0; k < 4; k++) {
    kids.push(node(`
      const fs = require('node:fs');
      const rq = require(${RQ});
      const c = new rq.Client({ segment: process.argv[1] });
      (async () => {
        for (let i = 0; i < 25; i++) {
          await c.acquire('cap', {}, async () => {
            const start = process.hrtime.bigint();
            await new Promise((r) => setTimeout(r, 2));
            fs.appendFileSync(process.argv[2], start + ' ' + process.hrtime.bigint() + '\\n');
          });
        }
        c.close();
      })();`, [seg, log]));
  }
  for (const k of kids) assert.deepStrictEqual(await k.done, { code: 0, signal: null }, k.err);
  const spans = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ').map(BigInt));
  fs.unlinkSync(log);
  assert.strictEqual(spans.length, 100);
  const events = spans.flatMap(([a, b]) => [[a, 1], [b, -1]]).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
  let now = 0;
  let peak = 0;
  for (const [, d] of events) { now += d; peak = Math.max(peak, now); }
  assert.ok(peak <= 2, `${peak} held at once`);
  assert.strictEqual(peak, 2, 'the cap was used');
  c.close();
});

test('FIFO across a Node process and a Python process waiting on one resource', async () => {
  for (const first of ['node', 'python']) {
    const seg = segment();
    const c = new rq.Client({ segment: seg });
    c.define('line', { concurrency: 1 });
    const held = await c.acquire('line');
    const log = path.join(os.tmpdir(), `${seg}.order`);
    const start = {
      node: () => node(`
        const fs = require('node:fs');
        const rq = require(${RQ});
        const c = new rq.Client({ segment: process.argv[1] });
        c.acquire('line', {}, () => fs.appendFileSync(process.argv[2], 'node\\n')).then(() => c.close());
        console.log('queued');`, [seg, log]),
      python: () => {
        const p = spawn(PYTHON, ['-c', `
import sys, threading, ratequeue as rq
c = rq.Client(sys.argv[1])
print("queued", flush=True)
with c.acquire("line", timeout=30):
    open(sys.argv[2], "a").write("python\\n")`, seg, log], { env: pythonEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        p.out = '';
        p.err = '';
        p.stdout.on('data', (d) => { p.out += d; });
        p.stderr.on('data', (d) => { p.err += d; });
        p.done = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
        return p;
      },
    };
    const second = first === 'node' ? 'python' : 'node';
    const a = start[first]();
    await until(() => a.out.includes('queued'));
    await until(() => waiting(seg) >= 1);
    const b = start[second]();
    await until(() => waiting(seg) >= 2);
    held.release();
    for (const p of [a, b]) assert.deepStrictEqual(await p.done, { code: 0, signal: null }, p.err);
    assert.deepStrictEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), [first, second]);
    fs.unlinkSync(log);
    c.close();
  }
});

/** Waiters in line on resource "line", as rqctl sees them. */
function waiting(seg) {
  const { spawnSync } = require('node:child_process');
  const { BUILD } = require('./helpers');
  const r = spawnSync(path.join(BUILD, 'tools', 'rqctl'), ['--segment', seg, '--json', 'ls'], { encoding: 'utf8' });
  if (r.status !== 0) return 0;
  const line = JSON.parse(r.stdout).resources.find((x) => x.name === 'line');
  return line ? line.waiting : 0;
}

test("a SIGKILLed Node holder's permit comes back", async () => {
  const seg = segment();
  const c = new rq.Client({ segment: seg });
  c.define('one', { concurrency: 1 });
  const holder = node(`
    const rq = require(${RQ});
    const c = new rq.Client({ segment: process.argv[1] });
    c.acquire('one').then(() => { console.log('holding'); setInterval(() => {}, 1000); });`, [seg]);
  await until(() => holder.out.includes('holding'));
  assert.strictEqual(c.tryAcquire('one'), null);
  const t0 = Date.now();
  const mine = c.acquire('one', { timeout: 10 });  // waiting when the holder dies
  await sleep(50);
  holder.kill('SIGKILL');
  const p = await mine;
  const ms = Date.now() - t0 - 50;
  assert.ok(ms < 2000, `reclaimed after ${ms} ms`);
  p.release();
  assert.deepStrictEqual(await holder.done, { code: null, signal: 'SIGKILL' });
  c.close();
});
