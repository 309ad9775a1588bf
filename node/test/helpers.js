// Shared by the node --test suites: fresh segments (removed afterwards), the
// demo's mock provider as a child process, and Python as a peer.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(process.env.RATEQUEUE_BUILD || path.join(ROOT, 'build'));
const PYTHON = '/usr/bin/python3';

const made = new Set();
process.on('exit', () => {
  for (const s of made) {
    try { fs.unlinkSync('/dev/shm/' + s); } catch { /* gone */ }
  }
});

/** A fresh segment name for one test; its file is removed at exit. */
function segment() {
  const s = `rqnode-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  made.add(s);
  return s;
}

/** The environment a Python peer needs to use the library just built. */
function pythonEnv(extra = {}) {
  return { ...process.env, PYTHONPATH: path.join(ROOT, 'python'),
    RATEQUEUE_LIBRARY: path.join(BUILD, 'src', 'libratequeue.so'), ...extra };
}

/** Runs Python code to completion; returns its stdout (throws on failure). */
function python(code, args = []) {
  const r = spawnSync(PYTHON, ['-c', code, ...args], { env: pythonEnv(), encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** The demo's mock provider (demo/mock_provider.py) on a free port. */
async function mockProvider(args = []) {
  const proc = spawn(PYTHON, [path.join(ROOT, 'demo', 'mock_provider.py'), ...args],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: proc.stdout });
  const waiting = [];
  lines.on('line', (l) => { const w = waiting.shift(); if (w) w(l); });
  const next = () => new Promise((resolve) => waiting.push(resolve));
  const first = await next();
  const port = Number(/^port (\d+)$/.exec(first)[1]);
  return {
    url: `http://127.0.0.1:${port}`,
    async stats() { proc.stdin.write('stats\n'); return JSON.parse(await next()); },
    async reset() { proc.stdin.write('reset\n'); await next(); },
    stop() { proc.stdin.end(); proc.kill(); },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What a day-long bucket of `most` admits now, found without spending it
 *  (predictWait); it refills about 0.12 a second: exact for a test's few seconds. */
function left(c, name, most = 10_000) {
  let lo = 0;
  let hi = most;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    if (c.predictWait(name, { load: mid }) === 0) lo = mid; else hi = mid - 1;
  }
  return lo;
}

module.exports = { ROOT, BUILD, PYTHON, segment, python, pythonEnv, mockProvider, sleep, left };
