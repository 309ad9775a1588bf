// The official clients (the real `openai` and `@anthropic-ai/sdk` npm
// packages, pinned in package-lock.json) through ratequeue.fetch, against the
// demo's mock provider: every call form settles what the provider counted,
// and 4 Node worker processes get 0 429s with it where the same workers
// without it get many.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const rq = require('..');
const { segment, mockProvider, left } = require('./helpers');

const OpenAI = require('openai');
const Anthropic = require('@anthropic-ai/sdk');

const PROMPT = 'word '.repeat(60);

test('every call form of both SDKs settles exactly what the provider counted', async () => {
  const mock = await mockProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8', '--latency', '0.005', '0.01']);
  try {
    const c = new rq.Client({ segment: segment() });
    for (const name of ['openai', 'anthropic']) {
      c.define(name, { limits: [new rq.Rate(10_000, { per: 86400, burst: 10_000, cost: 'load' }), new rq.Concurrency(2)] });
    }
    const openai = new OpenAI({ baseURL: mock.url + '/v1', apiKey: 'sk-mock', maxRetries: 0, fetch: rq.fetch('openai', { client: c }) });
    const anthropic = new Anthropic({ baseURL: mock.url, apiKey: 'sk-ant-mock', maxRetries: 0, fetch: rq.fetch('anthropic', { client: c }) });
    const calls = [];
    const check = async (what) => {
      const counted = (await mock.stats()).used.reduce((a, b) => a + b, 0);
      calls.push(what);
      assert.strictEqual(20_000 - left(c, 'openai') - left(c, 'anthropic'), counted, what);
    };
    const msgs = [{ role: 'user', content: PROMPT }];
    const r = await openai.chat.completions.create({ model: 'gpt-mock', messages: msgs, max_tokens: 40 });
    assert.ok(r.usage.total_tokens > 0);
    await check('openai chat');
    let last = null;
    const stream = await openai.chat.completions.create({ model: 'gpt-mock', messages: msgs, max_tokens: 40, stream: true,
      stream_options: { include_usage: true } });
    for await (const chunk of stream) last = chunk.usage ?? last;
    assert.ok(last.total_tokens > 0);
    await check('openai chat stream');
    const m = await anthropic.messages.create({ model: 'claude-mock', max_tokens: 40, messages: msgs });
    assert.ok(m.usage.output_tokens > 0);
    await check('anthropic messages');
    const s = anthropic.messages.stream({ model: 'claude-mock', max_tokens: 40, messages: msgs });
    const final = await s.finalMessage();
    assert.ok(final.usage.output_tokens > 0);
    await check('anthropic messages stream');
    const raw = await anthropic.messages.create({ model: 'claude-mock', max_tokens: 40, messages: msgs, stream: true });
    for await (const _ of raw) { /* drain */ }
    await check('anthropic messages stream: true');
    assert.strictEqual(calls.length, 5);
    assert.strictEqual(c.native.held(), 0);
    assert.strictEqual(Object.values((await mock.stats()).rejected).reduce((a, b) => a + b, 0), 0);
    c.close();
  } finally {
    mock.stop();
  }
});

const WORKER = `
const rq = require(${JSON.stringify(require.resolve('..'))});
const OpenAI = require(${JSON.stringify(require.resolve('openai'))});
const Anthropic = require(${JSON.stringify(require.resolve('@anthropic-ai/sdk'))});
const [url, seg, mode, seconds, seed] = process.argv.slice(1);
const on = mode === 'on';
const c = new rq.Client({ segment: seg });
const openai = new OpenAI({ baseURL: url + '/v1', apiKey: 'sk-mock', maxRetries: 0, ...(on ? { fetch: rq.fetch('openai', { client: c }) } : {}) });
const anthropic = new Anthropic({ baseURL: url, apiKey: 'sk-ant-mock', maxRetries: 0, ...(on ? { fetch: rq.fetch('anthropic', { client: c }) } : {}) });
let x = Number(seed) * 7919 + 1;
const rnd = () => ((x = (x * 48271) % 2147483647) / 2147483647);
const end = Date.now() + Number(seconds) * 1000;
let ok = 0, refused = 0;
async function one() {
  const max_tokens = 10 + Math.floor(rnd() * 70);
  const messages = [{ role: 'user', content: 'word '.repeat(60) }];
  const stream = rnd() < 0.5;
  if (rnd() < 0.5) {
    const r = await openai.chat.completions.create({ model: 'gpt-mock', messages, max_tokens, stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}) });
    if (stream) for await (const _ of r) {}
  } else {
    const r = await anthropic.messages.create({ model: 'claude-mock', max_tokens, messages, stream });
    if (stream) for await (const _ of r) {}
  }
}
async function loop() {
  while (Date.now() < end) {
    try { await one(); ok++; } catch (e) {
      if (e instanceof OpenAI.RateLimitError || e instanceof Anthropic.RateLimitError ||
          e instanceof OpenAI.InternalServerError || e instanceof Anthropic.InternalServerError) refused++;
      else throw e;
    }
  }
}
Promise.all([loop(), loop()]).then(() => { console.log(JSON.stringify({ ok, refused })); c.close(); });
`;

async function workers(url, seg, mode, n = 4, seconds = 4) {
  const kids = [...Array(n).keys()].map((i) => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', WORKER, url, seg, mode, String(seconds), String(i + 1)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(err))));
  }));
  const got = await Promise.all(kids);
  return { ok: got.reduce((a, g) => a + g.ok, 0), refused: got.reduce((a, g) => a + g.refused, 0) };
}

test('4 Node processes of SDK clients: 0 429s through ratequeue.fetch, many without', async () => {
  const mock = await mockProvider(['--rpm', '600', '--tpm', '120000', '--concurrency', '4', '--latency', '0.02', '0.06', '--seed', '13']);
  try {
    const seg = segment();
    const c = new rq.Client({ segment: seg });
    // Two keys of one provider: each half of the quota.
    c.define('openai', { rpm: 300, tpm: 60_000, concurrency: 2 });
    c.define('anthropic', { rpm: 300, tpm: 60_000, concurrency: 2 });
    const on = await workers(mock.url, seg, 'on');
    const sOn = await mock.stats();
    assert.ok(on.ok > 0);
    assert.strictEqual(on.refused, 0);
    assert.strictEqual(Object.values(sOn.rejected).reduce((a, b) => a + b, 0), 0, JSON.stringify(sOn.rejected));
    assert.ok(sOn.peak <= 4);
    await mock.reset();
    const off = await workers(mock.url, seg, 'off');
    assert.ok(off.refused > off.ok / 2, JSON.stringify(off));
    console.log(`# SDK workers, 4 processes x 4 s: with ratequeue.fetch ${on.ok} calls, 0 refused; without ${off.ok + off.refused} calls, ${off.refused} refused`);
    c.close();
  } finally {
    mock.stop();
  }
});
