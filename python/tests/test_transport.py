"""ratequeue.httpx: the transports, against the demo's mock provider (both
response shapes, streamed and not, sync and async), and an end-to-end run of
several worker processes: 0 429s with the transport, many without."""
import asyncio
import json
import multiprocessing as mp
import pathlib
import sys
import time

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is not installed (Debian: python3-httpx)")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "demo"))
import mock_provider  # noqa: E402

import ratequeue as rq  # noqa: E402
from ratequeue.httpx import AsyncTransport, Transport, estimate_load, usage_tokens  # noqa: E402

DAY = 24 * 3600.0
PROMPT = "word " * 80  # 400 characters: 100 tokens


def chat(max_tokens=60, stream=False, usage=True, **extra):
    body = {"model": "gpt-mock", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return "/v1/chat/completions", body


def messages(max_tokens=60, stream=False):
    body = {"model": "claude-mock", "system": "be brief", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]}
    if stream:
        body["stream"] = True
    return "/v1/messages", body


def req(path, body, method="POST"):
    return httpx.Request(method, "https://api.example.com" + path, json=body)


# ---- the estimate ----------------------------------------------------------------------

@pytest.mark.parametrize("path,body,want", [
    # prompt characters / 4 (rounded up) + the most output tokens the body allows
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a" * 400}],
                              "max_tokens": 50}, 150),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a" * 10}], "max_completion_tokens": 7,
                              "max_tokens": 99, "n": 3}, 3 + 21),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a" * 40}, {"type": "image_url", "image_url": {"url": "data:" + "x" * 9999}}]}],
        "max_tokens": 1}, 11),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "abcd"}]}, 1 + 1024),  # no max_tokens
    ("/v1/completions", {"prompt": ["a" * 8, "b" * 8], "max_tokens": 5}, 4 + 5),
    ("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 5}, 3 + 5),  # token ids count one each
    ("/v1/responses", {"input": "a" * 80, "instructions": "b" * 20, "max_output_tokens": 10}, 25 + 10),
    ("/v1/embeddings", {"input": ["a" * 40, "b" * 40], "model": "e"}, 20),  # no output
    ("/v1/embeddings", {"input": [[1, 2, 3], [4]]}, 4),
    ("/v1/messages", {"system": "s" * 40, "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a" * 400},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x" * 99999}}]}]}, 160),
])
def test_estimate_from_the_body(path, body, want):
    assert estimate_load(req(path, body)) == want


def test_requests_it_does_not_understand_count_one():
    assert estimate_load(req("/v1/models", None, "GET")) == 1
    assert estimate_load(req("/v1/files", {"purpose": "x" * 4000})) == 1
    assert estimate_load(httpx.Request("POST", "https://x/v1/chat/completions", content=b"{not json")) == 1
    assert estimate_load(httpx.Request("POST", "https://x/v1/messages", content=b"[1, 2]")) == 1


def test_usage_of_both_shapes():
    assert usage_tokens({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}) == 7
    assert usage_tokens({"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 5,
                         "cache_read_input_tokens": 100}) == 12
    assert usage_tokens({}) is None and usage_tokens(None) is None and usage_tokens({"total_tokens": -1}) is None


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_retries"):
        Transport("x", max_retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        Transport("x", timeout=-1)
    with pytest.raises(ValueError, match="resource"):
        AsyncTransport("")
    with pytest.raises(TypeError, match="estimate"):
        Transport("x", estimate=5)


# ---- against the mock provider --------------------------------------------------------

@pytest.fixture
def provider():
    p = mock_provider.Provider(rpm=60_000, tpm=10_000_000, concurrency=8, latency=(0.005, 0.01), seed=7)
    with mock_provider.Server(p) as server:
        p.url = "http://127.0.0.1:%d" % server.port
        yield p


@pytest.fixture
def client(segment):
    with rq.Client(segment) as c:
        # A day-long token bucket of 10,000: what is left is exactly 10,000 - what was charged.
        c.define("llm", limits=[rq.Rate(10_000, per=DAY, burst=10_000, cost="load"), rq.Concurrency(1)])
        yield c


def left(c, name="llm"):
    """The load the day bucket admits now, found without spending it
    (predict_wait). It refills about 0.12 a second: for the few seconds of a
    test, exactly 10,000 - what was charged."""
    lo, hi = 0, 10_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if c.predict_wait(name, load=mid) == 0:
            lo = mid
        else:
            hi = mid - 1
    return lo


def used(p):
    return [t for _, t in p.snapshot()["used"]]


@pytest.mark.parametrize("shape", [chat, messages])
def test_sync_settles_what_the_answer_used(provider, client, shape):
    path, body = shape()
    with httpx.Client(transport=Transport("llm", client=client), base_url=provider.url) as h:
        r = h.post(path, json=body)
    assert r.status_code == 200 and r.json()["usage"]
    assert estimate_load(req(path, body)) > used(provider)[0]  # it acquired more than was used ...
    assert left(client) == 10_000 - used(provider)[0]          # ... and settled down to the usage


@pytest.mark.parametrize("shape", [chat, messages])
def test_sync_stream_holds_the_permit_until_closed_and_settles_the_final_usage(provider, client, shape):
    path, body = shape(stream=True)
    with httpx.Client(transport=Transport("llm", client=client), base_url=provider.url) as h:
        with h.stream("POST", path, json=body) as r:
            assert r.status_code == 200
            assert client.try_acquire("llm") is None  # the concurrency slot is held while the stream is open
            events = [line for line in r.iter_lines() if line.startswith("data:")]
        assert len(events) > 5
        p = client.try_acquire("llm")
        assert p is not None
        p.release()
    # The estimate went, the usage was settled: 1 more for the probe just above.
    assert left(client) == 10_000 - used(provider)[0] - 1


def test_a_stream_without_usage_keeps_the_estimate(provider, client):
    path, body = chat(stream=True, usage=False)
    with httpx.Client(transport=Transport("llm", client=client), base_url=provider.url) as h:
        with h.stream("POST", path, json=body) as r:
            r.read()
    assert left(client) == 10_000 - estimate_load(req(path, body))


@pytest.mark.parametrize("shape", [chat, messages])
@pytest.mark.parametrize("stream", [False, True])
def test_async_both_shapes_streamed_or_not(provider, client, shape, stream):
    path, body = shape(stream=stream)

    async def go():
        async with httpx.AsyncClient(transport=AsyncTransport("llm", client=client), base_url=provider.url) as h:
            if not stream:
                r = await h.post(path, json=body)
                return r.json()
            async with h.stream("POST", path, json=body) as r:
                assert client.try_acquire("llm") is None
                return [line async for line in r.aiter_lines()]

    out = asyncio.run(go())
    assert out
    assert left(client) == 10_000 - used(provider)[0]


def test_requests_it_does_not_understand_pass_through_with_load_one(provider, client):
    with httpx.Client(transport=Transport("llm", client=client), base_url=provider.url) as h:
        r = h.post("/v1/unknown", json={"a": 1})
    assert r.status_code == 404 and "unknown path" in r.json()["error"]["message"]
    assert left(client) == 10_000 - 1


def test_a_user_estimate_replaces_the_built_in_one(provider, client):
    calls = []

    def estimate(request):
        calls.append(request.url.path)
        return 777 if request.url.path.endswith("/messages") else None

    path, body = messages()
    with httpx.Client(transport=Transport("llm", client=client, estimate=estimate), base_url=provider.url) as h:
        h.post(path, json=body)
        with pytest.raises(ValueError, match="must return an int > 0"):
            Transport("llm", client=client, estimate=lambda r: -5).handle_request(req(path, body))
    assert calls == ["/v1/messages"]
    assert left(client) == 10_000 - used(provider)[0]


def test_headers_are_observed(segment):
    p = mock_provider.Provider(rpm=60_000, tpm=60_000, concurrency=8, latency=(0.001, 0.002), seed=7)
    with mock_provider.Server(p) as server, rq.Client(segment) as c:
        c.define("obs", rpm=60_000, tpm=60_000)  # a bucket of 60,000 tokens, 1,000 a second
        p.tokens.level, p.tokens.stamp = 500.0, time.monotonic()  # the provider has 500 tokens left
        path, body = chat()
        with httpx.Client(transport=Transport("obs", client=c), base_url="http://127.0.0.1:%d" % server.port) as h:
            assert h.post(path, json=body).status_code == 200
        assert c.try_acquire("obs", load=2000) is None  # clamped to what the provider reported


def test_waiting_times_out_as_an_httpx_pool_timeout(provider, client):
    client.penalize("llm", 30)
    path, body = chat()
    with httpx.Client(transport=Transport("llm", client=client), base_url=provider.url,
                      timeout=httpx.Timeout(5.0, pool=0.2)) as h:
        t0 = time.monotonic()
        with pytest.raises(httpx.PoolTimeout, match="ratequeue"):
            h.post(path, json=body)
        assert time.monotonic() - t0 < 1.0  # the predicted wait fails fast
    assert provider.snapshot()["ok"] == 0


@pytest.mark.parametrize("shape,status", [(chat, 503), (messages, 529)])
def test_overloaded_is_penalized_retried_and_finally_returned(segment, shape, status):
    p = mock_provider.Provider(rpm=60_000, tpm=10_000_000, concurrency=8, latency=(0.001, 0.002), seed=3,
                               overload=1.0, overload_ms=100)
    with mock_provider.Server(p) as server, rq.Client(segment) as c:
        c.define("busy", rpm=60_000)
        t = Transport("busy", client=c, max_retries=2)
        path, body = shape()
        with httpx.Client(transport=t, base_url="http://127.0.0.1:%d" % server.port) as h:
            t0 = time.monotonic()
            r = h.post(path, json=body)
            took = time.monotonic() - t0
        assert r.status_code == status and "verloaded" in r.text  # the provider's answer, readable
        assert t.retried == 2 and p.snapshot()["rejected"]["overload"] == 3
        assert took >= 0.2  # two penalties of retry-after-ms 100 waited out in line
        assert c.predict_wait("busy") > 0  # the last one is still in force for everyone


def test_a_429_storm_is_absorbed_by_retries_in_line(segment):
    # ratequeue is told 4x the provider's real limit: the provider refuses,
    # the transport penalizes for its retry-after and retries from the line.
    p = mock_provider.Provider(rpm=600, tpm=10_000_000, concurrency=16, latency=(0.001, 0.002), seed=5)
    with mock_provider.Server(p) as server, rq.Client(segment) as c:
        c.define("storm", rpm=2400)
        t = Transport("storm", client=c, max_retries=10)
        path, body = chat(max_tokens=5)

        async def burst(n):
            tr = AsyncTransport("storm", client=c, max_retries=10)
            async with httpx.AsyncClient(transport=tr, base_url="http://127.0.0.1:%d" % server.port) as h:
                rs = await asyncio.gather(*[h.post(path, json=body) for _ in range(n)])
            return [r.status_code for r in rs], tr.retried

        with httpx.Client(transport=t, base_url="http://127.0.0.1:%d" % server.port) as h:
            sync = [h.post(path, json=body).status_code for _ in range(30)]
        # n at once need at most n rounds (each round admits at least one): 8 with 10 retries.
        statuses, retried = asyncio.run(burst(8))
        assert sync == [200] * 30 and statuses == [200] * 8
        assert p.snapshot()["rejected"]["requests"] > 0 and t.retried + retried == p.snapshot()["rejected"]["requests"]


def test_no_retries_returns_the_429_and_settles_nothing(segment):
    p = mock_provider.Provider(rpm=60, tpm=10_000_000, concurrency=8, latency=(0.001, 0.002), seed=5)
    with mock_provider.Server(p) as server, rq.Client(segment) as c:
        c.define("one", limits=[rq.Rate(10_000, per=DAY, burst=10_000, cost="load")])
        path, body = chat(max_tokens=5)
        with httpx.Client(transport=Transport("one", client=c, max_retries=0),
                          base_url="http://127.0.0.1:%d" % server.port) as h:
            assert h.post(path, json=body).status_code == 200  # the provider's one request a second
            r = h.post(path, json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 0.5 <= c.predict_wait("one") <= 1.01  # penalized for retry-after-ms
        first = p.snapshot()["used"][0][1]
        time.sleep(c.predict_wait("one") + 0.02)
        assert left(c, "one") == 10_000 - first  # the refused request was settled to 0


# ---- end to end: worker processes --------------------------------------------------------

def _worker(url, segment, coordinated, seconds, seed, out):
    """Sends a mix of requests (both shapes, streamed or not, sync or async)
    for `seconds`; puts the statuses it saw."""
    import random
    rng = random.Random(seed)
    client = rq.Client(segment)
    statuses = []
    end = time.monotonic() + seconds

    def pick():
        shape = chat if rng.random() < 0.5 else messages
        return shape(max_tokens=rng.randint(20, 120), stream=rng.random() < 0.5)

    if seed % 2:
        transport = Transport("provider", client=client) if coordinated else httpx.HTTPTransport()
        with httpx.Client(transport=transport, base_url=url, timeout=30) as h:
            while time.monotonic() < end:
                path, body = pick()
                with h.stream("POST", path, json=body) as r:
                    r.read()
                    statuses.append(r.status_code)
    else:
        async def run():
            transport = AsyncTransport("provider", client=client) if coordinated else httpx.AsyncHTTPTransport()
            async with httpx.AsyncClient(transport=transport, base_url=url, timeout=30) as h:
                async def one():
                    while time.monotonic() < end:
                        path, body = pick()
                        async with h.stream("POST", path, json=body) as r:
                            await r.aread()
                            statuses.append(r.status_code)
                await asyncio.gather(one(), one())
        asyncio.run(run())
    out.put(statuses)


def _run_workers(provider, segment, coordinated, n=4, seconds=4.0):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(provider.url, segment, coordinated, seconds, i, out))
             for i in range(n)]
    for p in procs:
        p.start()
    statuses = []
    for _ in procs:
        statuses += out.get(timeout=seconds + 60)
    for p in procs:
        p.join(10)
    return statuses


def test_end_to_end_workers_get_no_429s_with_the_transport_and_many_without(segment):
    # rpm 600 (10 a second), tpm 120,000 (a minute's budget), 4 at once: the
    # resource defined with the same numbers and ratequeue's defaults.
    p = mock_provider.Provider(rpm=600, tpm=120_000, concurrency=4, latency=(0.02, 0.06), seed=11)
    with mock_provider.Server(p) as server:
        p.url = "http://127.0.0.1:%d" % server.port
        with rq.Client(segment) as c:
            c.define("provider", rpm=600, tpm=120_000, concurrency=4)
        with_rq = _run_workers(p, segment, True)
        snap = p.snapshot()
        assert sum(snap["rejected"].values()) == 0, snap["rejected"]
        assert with_rq and set(with_rq) == {200}
        assert snap["peak"] <= 4
        ok_with = snap["ok"]
        p.reset_stats()
        without = _run_workers(p, segment, False)
        refused = sum(p.snapshot()["rejected"].values())
        assert refused > len(without) // 4 and without.count(429) > 0, p.snapshot()["rejected"]
    print("\nend to end: with the transport %d requests, 0 refused; without %d, %d refused"
          % (ok_with, len(without), refused))
