"""The official OpenAI and Anthropic Python SDKs through ratequeue.httpx,
against the demo's mock provider. Run by test_sdk.py with the Python of a
venv that holds the pinned SDKs (python/requirements-sdk.txt).

    sdk_clients.py calls SEGMENT        every call form, sync and async,
                                        streamed and not; prints a JSON report
    sdk_clients.py e2e SEGMENT on|off   worker processes for a few seconds;
                                        prints a JSON report
"""
import asyncio
import json
import multiprocessing as mp
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "demo")]

import anthropic  # noqa: E402
import httpx  # noqa: E402
import openai  # noqa: E402

import mock_provider  # noqa: E402
import ratequeue as rq  # noqa: E402

PROMPT = "word " * 60


def clients(url, coordinated, client):
    """Sync and async OpenAI and Anthropic clients, SDK retries off."""
    def sync(name):
        return httpx.Client(transport=rq.httpx.Transport(name, client=client)) if coordinated else None

    def asyn(name):
        return httpx.AsyncClient(transport=rq.httpx.AsyncTransport(name, client=client)) if coordinated else None
    kw = dict(api_key="sk-mock", max_retries=0)
    return (openai.OpenAI(base_url=url + "/v1", http_client=sync("openai"), **kw),
            anthropic.Anthropic(base_url=url, http_client=sync("anthropic"), **kw),
            openai.AsyncOpenAI(base_url=url + "/v1", http_client=asyn("openai"), **kw),
            anthropic.AsyncAnthropic(base_url=url, http_client=asyn("anthropic"), **kw))


def chat_args(stream, max_tokens=40):
    args = dict(model="gpt-mock", messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens)
    if stream:
        args.update(stream=True, stream_options={"include_usage": True})
    return args


def msg_args(max_tokens=40):
    return dict(model="claude-mock", max_tokens=max_tokens, messages=[{"role": "user", "content": PROMPT}])


def left(c, name, most=10_000):
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if c.predict_wait(name, load=mid) == 0:
            lo = mid
        else:
            hi = mid - 1
    return lo


def calls(segment):
    """Each call form once; after each, the tokens charged must equal the
    usage the provider counted."""
    p = mock_provider.Provider(rpm=60_000, tpm=10_000_000, concurrency=8, latency=(0.005, 0.01), seed=2)
    report = []
    with mock_provider.Server(p) as server, rq.Client(segment) as c:
        url = "http://127.0.0.1:%d" % server.port
        day = [rq.Rate(10_000, per=86400, burst=10_000, cost="load"), rq.Concurrency(2)]
        oa, an, aoa, aan = clients(url, True, c)

        def check(what, usage):
            counted = sum(t for _, t in p.snapshot()["used"])
            charged = 20_000 - left(c, "openai") - left(c, "anthropic")
            report.append({"call": what, "usage": usage, "provider_counted": counted, "charged": charged})

        c.define("openai", limits=day)
        c.define("anthropic", limits=day)
        r = oa.chat.completions.create(**chat_args(False))
        check("openai chat", r.usage.total_tokens)
        usage = None
        for chunk in oa.chat.completions.create(**chat_args(True)):
            usage = chunk.usage or usage
        check("openai chat stream", usage.total_tokens)
        r = an.messages.create(**msg_args())
        check("anthropic messages", r.usage.input_tokens + r.usage.output_tokens)
        with an.messages.stream(**msg_args()) as s:
            for _ in s.text_stream:
                pass
            m = s.get_final_message()
        check("anthropic messages stream", m.usage.input_tokens + m.usage.output_tokens)
        r = an.messages.create(stream=True, **msg_args())
        for _ in r:
            pass
        check("anthropic messages stream=True", None)

        async def go():
            r = await aoa.chat.completions.create(**chat_args(False))
            check("async openai chat", r.usage.total_tokens)
            async for chunk in await aoa.chat.completions.create(**chat_args(True)):
                pass
            check("async openai chat stream", None)
            r = await aan.messages.create(**msg_args())
            check("async anthropic messages", r.usage.input_tokens + r.usage.output_tokens)
            async with aan.messages.stream(**msg_args()) as s:
                async for _ in s.text_stream:
                    pass
            check("async anthropic messages stream", None)
        asyncio.run(go())
        report.append({"rejected": sum(p.snapshot()["rejected"].values())})
    print(json.dumps(report))


def worker(url, segment, coordinated, seconds, seed, out):
    import random
    rng = random.Random(seed)
    c = rq.Client(segment)
    oa, an, aoa, aan = clients(url, coordinated, c)
    ok = refused = 0
    end = time.monotonic() + seconds

    def one_sync():
        if rng.random() < 0.5:
            r = oa.chat.completions.create(**chat_args(rng.random() < 0.5, rng.randint(10, 80)))
            if not isinstance(r, openai.types.chat.ChatCompletion):
                for _ in r:
                    pass
        else:
            r = an.messages.create(stream=rng.random() < 0.5, **msg_args(rng.randint(10, 80)))
            if not isinstance(r, anthropic.types.Message):
                for _ in r:
                    pass

    async def one_async():
        if rng.random() < 0.5:
            r = await aoa.chat.completions.create(**chat_args(rng.random() < 0.5, rng.randint(10, 80)))
            if not isinstance(r, openai.types.chat.ChatCompletion):
                async for _ in r:
                    pass
        else:
            r = await aan.messages.create(stream=rng.random() < 0.5, **msg_args(rng.randint(10, 80)))
            if not isinstance(r, anthropic.types.Message):
                async for _ in r:
                    pass

    refusals = (openai.RateLimitError, anthropic.RateLimitError, openai.InternalServerError,
                anthropic.InternalServerError)
    if seed % 2:
        while time.monotonic() < end:
            try:
                one_sync()
                ok += 1
            except refusals:
                refused += 1
    else:
        async def loop():
            nonlocal ok, refused
            while time.monotonic() < end:
                try:
                    await one_async()
                    ok += 1
                except refusals:
                    refused += 1

        async def both():
            await asyncio.gather(loop(), loop())
        asyncio.run(both())
    out.put((ok, refused))


def e2e(segment, coordinated, n=4, seconds=4.0):
    p = mock_provider.Provider(rpm=600, tpm=120_000, concurrency=4, latency=(0.02, 0.06), seed=13)
    with mock_provider.Server(p) as server:
        url = "http://127.0.0.1:%d" % server.port
        with rq.Client(segment) as c:
            for name in ("openai", "anthropic"):  # two API keys of the same provider: one quota each half
                c.define(name, rpm=300, tpm=60_000, concurrency=2)
        ctx = mp.get_context("fork")
        out = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(url, segment, coordinated, seconds, i, out)) for i in range(n)]
        for proc in procs:
            proc.start()
        got = [out.get(timeout=seconds + 60) for _ in procs]
        for proc in procs:
            proc.join(10)
        snap = p.snapshot()
    print(json.dumps({"ok": sum(g[0] for g in got), "sdk_errors": sum(g[1] for g in got),
                      "provider_rejected": snap["rejected"], "peak": snap["peak"]}))


if __name__ == "__main__":
    if sys.argv[1] == "calls":
        calls(sys.argv[2])
    else:
        e2e(sys.argv[2], sys.argv[3] == "on")
