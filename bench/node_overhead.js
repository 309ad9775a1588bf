#!/usr/bin/env node
// Node acquire + release against two bare Node-API calls, measured in the same
// run (budget: at most 1.5x). Rounds alternate the two loops, and the median
// of the rounds' ratios is reported, because these machines are shared and
// noisy. Two forms:
//   sync:  p = client.tryAcquire(name); p.release()   vs  noop(); noop()
//   async: p = await client.acquire(name); p.release() vs  await noop(); noop()
//          (both sides await once: what the promise costs is the same)
// Usage: node bench/node_overhead.js [--rounds N] [--iterations N] [--json]
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const rq = require(path.join(__dirname, '..', 'node'));

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const rounds = opt('--rounds', 15);
const iterations = opt('--iterations', 200_000);

const segment = `rqbench-node-${process.pid}`;
const client = new rq.Client({ segment });
client.define('bench', { limits: [new rq.Rate(1e8, { per: 1, burst: 1e8 })] });  // 100M/s: never runs dry
const noop = rq._noop;

function syncRq(n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) client.tryAcquire('bench').release();
  return Number(process.hrtime.bigint() - t0) / n;
}
function syncBare(n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) { noop(); noop(); }
  return Number(process.hrtime.bigint() - t0) / n;
}
async function asyncRq(n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) (await client.acquire('bench')).release();
  return Number(process.hrtime.bigint() - t0) / n;
}
async function asyncBare(n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) { await Promise.resolve(noop()); noop(); }
  return Number(process.hrtime.bigint() - t0) / n;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

(async () => {
  // Warm up both (JIT).
  syncRq(iterations); syncBare(iterations); await asyncRq(iterations / 4); await asyncBare(iterations / 4);
  const out = {};
  for (const [form, a, b] of [['sync', syncRq, syncBare], ['async', asyncRq, asyncBare]]) {
    const ratios = [];
    const rqNs = [];
    const bareNs = [];
    for (let r = 0; r < rounds; r++) {
      const [x, y] = r % 2 ? [await b(iterations), await a(iterations)].reverse() : [await a(iterations), await b(iterations)];
      rqNs.push(x);
      bareNs.push(y);
      ratios.push(x / y);
    }
    out[form] = { ratequeue_ns: median(rqNs), bare_ns: median(bareNs), ratio: median(ratios) };
  }
  client.close();
  try { fs.unlinkSync('/dev/shm/' + segment); } catch { /* gone */ }
  if (args.includes('--json')) {
    console.log(JSON.stringify(out));
    return;
  }
  console.log(`Node ${process.version}, ${rounds} alternating rounds of ${iterations} (medians)`);
  console.log(`sync:  tryAcquire + release ${out.sync.ratequeue_ns.toFixed(1)} ns / two bare Node-API calls ${out.sync.bare_ns.toFixed(1)} ns = ${out.sync.ratio.toFixed(2)}x (budget 1.5x)`);
  console.log(`async: await acquire + release ${out.async.ratequeue_ns.toFixed(1)} ns / await + two bare calls ${out.async.bare_ns.toFixed(1)} ns = ${out.async.ratio.toFixed(2)}x (budget 1.5x)`);
})();
