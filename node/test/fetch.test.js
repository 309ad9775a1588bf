// ratequeue.fetch against the demo's mock provider: the estimate, settling
// (both shapes, streamed or not), pass-through, headers, overload and 429
// retries in line, and abort. Plus the header parser's table.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const rq = require('..');
const { segment, mockProvider, sleep, left: leftOf } = require('./helpers');
const left = (c, name = 'llm') => leftOf(c, name);

const DAY = 86400;
const PROMPT = 'word '.repeat(80); // 400 characters: 100 tokens

function chat(maxTokens = 60, stream = false, usage = true) {
  const body = { model: 'gpt-mock', messages: [{ role: 'user', content: PROMPT }], max_tokens: maxTokens };
  if (stream) { body.stream = true; if (usage) body.stream_options = { include_usage: true }; }
  return ['/v1/chat/completions', body];
}
function messages(maxTokens = 60, stream = false) {
  const body = { model: 'claude-mock', system: 'be brief', max_tokens: maxTokens,
    messages: [{ role: 'user', content: [{ type: 'text', text: PROMPT }] }] };
  if (stream) body.stream = true;
  return ['/v1/messages', body];
}

test('the estimate, per endpoint, as Python computes it', () => {
  const est = (p, b) => rq.estimateLoad('https://api.example.com' + p, 'POST', JSON.stringify(b));
  assert.strictEqual(est('/v1/chat/completions', { messages: [{ role: 'user', content: 'a'.repeat(400) }], max_tokens: 50 }), 150);
  assert.strictEqual(est('/v1/chat/completions', { messages: [{ role: 'user', content: 'a'.repeat(10) }], max_completion_tokens: 7, max_tokens: 99, n: 3 }), 24);
  assert.strictEqual(est('/v1/chat/completions', { messages: [{ role: 'user', content: 'abcd' }] }), 1025);
  assert.strictEqual(est('/v1/completions', { prompt: [1, 2, 3], max_tokens: 5 }), 8);
  assert.strictEqual(est('/v1/responses', { input: 'a'.repeat(80), instructions: 'b'.repeat(20), max_output_tokens: 10 }), 35);
  assert.strictEqual(est('/v1/embeddings', { input: ['a'.repeat(40), 'b'.repeat(40)] }), 20);
  assert.strictEqual(est('/v1/messages', { system: 's'.repeat(40), max_tokens: 50, messages: [{ role: 'user', content: [
    { type: 'text', text: 'a'.repeat(400) }, { type: 'image', source: { type: 'base64', data: 'x'.repeat(99999) } }] }] }), 160);
  assert.strictEqual(rq.estimateLoad('https://x/v1/models', 'GET', undefined), 1);
  assert.strictEqual(rq.estimateLoad('https://x/v1/chat/completions', 'POST', '{not json'), 1);
  assert.strictEqual(rq.usageTokens({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }), 7);
  assert.strictEqual(rq.usageTokens({ input_tokens: 3, output_tokens: 4, cache_creation_input_tokens: 5, cache_read_input_tokens: 100 }), 12);
  assert.strictEqual(rq.usageTokens({}), null);
});

test('the header parser: durations, RFC 3339 resets, retry-after', () => {
  assert.strictEqual(rq.parseDuration('6m0s'), 360);
  assert.strictEqual(rq.parseDuration('1h2m3.5s'), 3723.5);
  assert.ok(Math.abs(rq.parseDuration('12ms') - 0.012) < 1e-12);
  for (const bad of ['', '5x', '1h2', 'm1', '999999999h']) assert.throws(() => rq.parseDuration(bad), RangeError, bad);
  assert.strictEqual(rq.parseResetTime('2030-01-01T00:00:10Z', Date.parse('2030-01-01T00:00:00Z')), 10);
  assert.throws(() => rq.parseResetTime('2030-01-01T00:00:10', 0), RangeError);
  assert.strictEqual(rq.parseRetryAfter({ 'retry-after-ms': '1500' }), 1.5);
  assert.strictEqual(rq.parseRetryAfter(new Headers({ 'Retry-After': '2' })), 2);
  assert.ok(rq.parseRetryAfter({ 'retry-after': 'Wed, 21 Oct 2099 07:28:00 GMT' }) > 1e6);
  assert.strictEqual(rq.parseRetryAfter({ 'retry-after': 'soon' }), null);
});

async function withProvider(args, fn) {
  const mock = await mockProvider(args);
  try { return await fn(mock); } finally { mock.stop(); }
}

function dayClient() {
  const c = new rq.Client({ segment: segment() });
  c.define('llm', { limits: [new rq.Rate(10_000, { per: DAY, burst: 10_000, cost: 'load' }), new rq.Concurrency(1)] });
  return c;
}

const post = (f, url, [p, body]) => f(url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('settles what each answer used: both shapes, streamed or not', async () => {
  await withProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8', '--latency', '0.005', '0.01'], async (mock) => {
    for (const shape of [chat, messages]) {
      for (const stream of [false, true]) {
        await mock.reset();
        const c = dayClient();
        const f = rq.fetch('llm', { client: c });
        const res = await post(f, mock.url, shape(60, stream));
        assert.strictEqual(res.status, 200);
        if (stream) {
          assert.strictEqual(c.tryAcquire('llm'), null, 'held while the stream is open');
          const text = await res.text();
          assert.ok(text.split('\n').filter((l) => l.startsWith('data:')).length > 5);
        } else {
          assert.ok((await res.json()).usage);
        }
        const used = (await mock.stats()).used;
        assert.strictEqual(used.length, 1);
        assert.strictEqual(left(c), 10_000 - used[0], `${shape.name} stream=${stream}`);
        assert.strictEqual(c.native.held(), 0);
        c.close();
      }
    }
  });
});

test('a stream without usage keeps the estimate; a cancelled stream releases', async () => {
  await withProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8', '--latency', '0.005', '0.01'], async (mock) => {
    const c = dayClient();
    const f = rq.fetch('llm', { client: c });
    const req = chat(60, true, false);
    await (await post(f, mock.url, req)).text();
    const estimate = rq.estimateLoad(mock.url + req[0], 'POST', JSON.stringify(req[1]));
    assert.strictEqual(left(c), 10_000 - estimate);
    const res = await post(f, mock.url, chat(60, true));
    await res.body.cancel();
    assert.strictEqual(c.native.held(), 0);
    c.close();
  });
});

test('other requests pass through unchanged with a load of 1; a user estimate replaces the built-in one', async () => {
  await withProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8', '--latency', '0.005', '0.01'], async (mock) => {
    const c = dayClient();
    const res = await rq.fetch('llm', { client: c })(mock.url + '/v1/unknown', { method: 'POST', body: '{"a":1}' });
    assert.strictEqual(res.status, 404);
    assert.match((await res.json()).error.message, /unknown path/);
    assert.strictEqual(left(c), 10_000 - 1);
    const seen = [];
    const f = rq.fetch('llm', { client: c, estimate: (url) => { seen.push(url); return 777; } });
    const r = await post(f, mock.url, messages());
    await r.json();
    assert.strictEqual(seen.length, 1);
    const used = (await mock.stats()).used;
    assert.strictEqual(left(c), 10_000 - 1 - used[0]);
    await assert.rejects(post(rq.fetch('llm', { client: c, estimate: () => -5 }), mock.url, chat()), /estimate returned -5/);
    c.close();
  });
});

test('overloaded answers (503, 529) are penalized, retried in line, then returned', async () => {
  await withProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8', '--latency', '0.001', '0.002',
    '--overload', '1', '--overload-ms', '100'], async (mock) => {
    for (const [shape, status] of [[chat, 503], [messages, 529]]) {
      await mock.reset();
      const c = new rq.Client({ segment: segment() });
      c.define('busy', { rpm: 60_000 });
      const f = rq.fetch('busy', { client: c, maxRetries: 2 });
      const t0 = Date.now();
      const res = await post(f, mock.url, shape());
      assert.strictEqual(res.status, status);
      assert.match(await res.text(), /verloaded/);
      assert.strictEqual(f.retried, 2);
      assert.strictEqual((await mock.stats()).rejected.overload, 3);
      assert.ok(Date.now() - t0 >= 190, 'two penalties of 100 ms waited out in line');
      assert.ok(c.predictWait('busy') > 0, 'the last penalty holds for everyone');
      c.close();
    }
  });
});

test('a 429 storm is absorbed by retries in line', async () => {
  // ratequeue is told 4x the provider's limit: the provider refuses, fetch retries from the line.
  await withProvider(['--rpm', '600', '--tpm', '10000000', '--concurrency', '16', '--latency', '0.001', '0.002'], async (mock) => {
    const c = new rq.Client({ segment: segment() });
    c.define('storm', { rpm: 2400 });
    const f = rq.fetch('storm', { client: c, maxRetries: 10 });
    const seq = [];
    for (let i = 0; i < 30; i++) seq.push((await post(f, mock.url, chat(5))).status);
    const burst = await Promise.all([...Array(8)].map(() => post(f, mock.url, chat(5)).then((r) => r.status)));
    assert.deepStrictEqual(seq, Array(30).fill(200));
    assert.deepStrictEqual(burst, Array(8).fill(200));
    const s = await mock.stats();
    assert.ok(s.rejected.requests > 0);
    assert.strictEqual(f.retried, s.rejected.requests);
    c.close();
  });
});

test("the request's AbortSignal takes it out of the line", async () => {
  await withProvider(['--rpm', '60000', '--tpm', '10000000', '--concurrency', '8'], async (mock) => {
    const c = new rq.Client({ segment: segment() });
    c.define('one', { concurrency: 1 });
    const held = await c.acquire('one');
    const ac = new AbortController();
    const [p, body] = chat();
    const pending = rq.fetch('one', { client: c })(mock.url + p, { method: 'POST', body: JSON.stringify(body), signal: ac.signal });
    await sleep(30);
    ac.abort();
    await assert.rejects(pending, rq.CancelledError);
    held.release();
    assert.strictEqual((await mock.stats()).ok, 0);
    c.close();
  });
});
