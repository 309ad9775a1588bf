"""LLM quota semantics from Python: settle, penalize, provider headers
(table tests with real header samples), fail-fast timeouts, per-second bursts."""
import asyncio
import datetime
import multiprocessing as mp
import time

import pytest

import ratequeue as rq
import ratequeue.aio as rqa
from ratequeue import headers as H

ctx = mp.get_context("fork")


def drain(c, name, load=1):
    n = 0
    while c.try_acquire(name, load) is not None:
        n += 1
    return n


# ---- settle ------------------------------------------------------------------------------

def test_settle_refunds_and_charges(segment):
    with rq.Client(segment) as c:
        c.define("t", limits=[rq.Rate(3600, per=3600, burst=100, cost="load")])  # 1 token/s
        p = c.acquire("t", load=60)
        p.settle(20)  # 40 back
        assert p.load == 20
        with pytest.raises(rq.InvalidArgument):
            p.settle(20)  # twice
        assert drain(c, "t") == 80
        c.define("u", limits=[rq.Rate(3600, per=3600, burst=100, cost="load")])
        with c.acquire("u", load=50) as p:
            p.settle(90)  # 40 more
        with pytest.raises(rq.InvalidArgument):
            p.settle(1)  # released
        assert drain(c, "u") == 10
        with pytest.raises(rq.InvalidArgument):
            c.acquire("u", load=0)
        q = rq.Permit(c, rq._native.PermitStruct(), "u", 1)
        with pytest.raises(rq.InvalidArgument):
            q.settle(-1)


# ---- penalize ----------------------------------------------------------------------------

def _admit_loop(segment, name, starts, stamps, n, stop):
    c = rq.Client(segment)
    while not stop.is_set():
        t = time.monotonic()
        try:
            with c.acquire(name, timeout=2):
                i = n.value
                if i < len(stamps):
                    starts[i], stamps[i] = t, time.monotonic()
                    n.value = i + 1
        except rq.Timeout:
            pass
        time.sleep(0.0005)


def test_penalize_pauses_every_process_and_only_extends(segment):
    with rq.Client(segment) as c:
        c.define("api", limits=[rq.Rate(100_000, per=1, burst=100)])
        starts, stamps = ctx.Array("d", 20000, lock=False), ctx.Array("d", 20000, lock=False)
        n, stop = ctx.Value("i", 0, lock=False), ctx.Event()
        p = ctx.Process(target=_admit_loop, args=(segment, "api", starts, stamps, n, stop))
        p.start()
        end = time.monotonic() + 10
        while n.value < 50:
            assert time.monotonic() < end
            time.sleep(0.01)
        called = time.monotonic()
        c.penalize("api", retry_after=0.3)
        c.penalize("api", retry_after=0.1)  # does not shorten it
        time.sleep(0.45)
        stop.set()
        p.join(10)
        ts = list(zip(starts[:n.value], stamps[:n.value]))
        # No acquire that started 1 ms after the call was admitted in the pause.
        assert [s for s, t in ts if s >= called + 0.001 and t < called + 0.3] == []
        after = [t for s, t in ts if t >= called + 0.3]
        assert after and min(after) >= called + 0.3
        for bad in (-1, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                c.penalize("api", retry_after=bad)
        with pytest.raises(rq.NotDefined):
            c.penalize("nope", retry_after=1)


# ---- fail fast ------------------------------------------------------------------------------

def test_timeouts_fail_fast_with_the_predicted_wait(segment):
    with rq.Client(segment) as c:
        c.define("slow", limits=[rq.Rate(1, per=3600)])
        c.acquire("slow").release()
        assert 3590 < c.predict_wait("slow") <= 3600

        async def main():
            t0 = time.monotonic()
            with pytest.raises(rqa.Timeout) as e:
                await rqa.acquire("slow", timeout=2, client=c)
            assert time.monotonic() - t0 < 0.5
            assert 3590 < e.value.predicted_wait <= 3600
        asyncio.run(main())
        c.penalize("slow", retry_after=0)  # harmless
        c.define("p", rpm=600)
        c.penalize("p", retry_after=5)
        with pytest.raises(rq.Timeout) as e:
            c.acquire("p", timeout=1)
        assert 4 < e.value.predicted_wait <= 5


# ---- per-second bursts ------------------------------------------------------------------------

def test_rpm_paces_per_second_and_tpm_holds_the_minute(segment):
    with rq.Client(segment) as c:
        c.define("a", rpm=60, tpm=90_000)
        r, t = c.describe("a")
        assert (r.amount, r.burst) == (60, 1) and (t.amount, t.burst) == (90_000, 90_000)
        c.define("r600", rpm=600)  # half a second's worth of requests
        assert c.describe("r600")[0].burst == 5
        # Any single request the provider would admit fits: up to the minute's tokens.
        assert c.try_acquire("a", load=90_000) is not None
        with pytest.raises(rq.LoadTooLarge):
            c.acquire("a", load=90_001)
        c.define("b", rpm=1000, burst_seconds=6)  # both buckets in seconds
        assert c.describe("b")[0].burst == 100
        c.define("e", tpm=90_000, burst_seconds=1)  # a per-second token pacer, on request
        assert c.describe("e")[0].burst == 1500
        c.define("g", limits=[rq.Rate(60, per=60)])  # the general form stays exact
        assert c.describe("g")[0].burst == 60
        with pytest.raises(ValueError):
            c.define("h", rpm=60, burst_seconds=0)


# ---- provider headers -----------------------------------------------------------------------

NOW = datetime.datetime(2025, 3, 14, 12, 0, 0, tzinfo=datetime.timezone.utc)

# Header sets as the providers send them (values from their documentation
# and real responses), with what parse() must read from them.
SAMPLES = [
    ("openai", {
        "x-ratelimit-limit-requests": "10000", "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-requests": "9999", "x-ratelimit-remaining-tokens": "1999686",
        "x-ratelimit-reset-requests": "6ms", "x-ratelimit-reset-tokens": "9ms",
        "openai-processing-ms": "412", "content-type": "application/json"},
     {"requests": H.Reading(9999, 0.006, 10000), "tokens": H.Reading(1999686, 0.009, 2000000)}, []),
    ("openai, minutes and fractions", {
        "X-RateLimit-Limit-Requests": "60", "X-RateLimit-Remaining-Requests": "59",
        "X-RateLimit-Reset-Requests": "1s", "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s"},
     {"requests": H.Reading(59, 1.0, 60), "tokens": H.Reading(149984, 360.0, 150000)}, []),
    ("openai, hours", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h2m3.5s"},
     {"tokens": H.Reading(0, 3723.5, None)}, []),
    ("anthropic", {
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-03-14T12:00:01Z",
        "anthropic-ratelimit-tokens-limit": "80000", "anthropic-ratelimit-tokens-remaining": "79000",
        "anthropic-ratelimit-tokens-reset": "2025-03-14T12:00:00.750000+00:00",
        "anthropic-ratelimit-input-tokens-remaining": "40000", "request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"},
     {"requests": H.Reading(49, 1.0, 50), "tokens": H.Reading(79000, 0.75, 80000)}, []),
    ("anthropic, reset in the past", {"anthropic-ratelimit-tokens-remaining": "5",
                                      "anthropic-ratelimit-tokens-reset": "2025-03-14T11:59:00Z"},
     {"tokens": H.Reading(5, 0.0, None)}, []),
    ("malformed values are ignored and reported", {
        "x-ratelimit-remaining-requests": "lots", "x-ratelimit-remaining-tokens": "-5",
        "anthropic-ratelimit-requests-remaining": "12", "anthropic-ratelimit-requests-reset": "tomorrow",
        "anthropic-ratelimit-tokens-remaining": "7", "anthropic-ratelimit-tokens-reset": "2025-03-14T12:00:10",
        "anthropic-ratelimit-tokens-limit": "1e5"},
     {"requests": H.Reading(12, None, None), "tokens": H.Reading(7, None, None)},
     ["x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "anthropic-ratelimit-requests-reset",
      "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-limit"]),
    ("bad durations", {"x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "5 minutes",
                       "x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1m-3s"},
     {"tokens": H.Reading(10, None, None), "requests": H.Reading(3, None, None)},
     ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]),
    ("no rate-limit headers", {"content-type": "application/json", "date": "Fri, 14 Mar 2025 12:00:00 GMT"}, {}, []),
    ("absurd values", {"x-ratelimit-remaining-tokens": "9" * 40, "x-ratelimit-remaining-requests": "4",
                       "x-ratelimit-reset-requests": "9" * 400 + "s",
                       "anthropic-ratelimit-tokens-remaining": "1", "anthropic-ratelimit-tokens-reset": "9999-12-31T23:59:59Z"},
     {"requests": H.Reading(4, None, None), "tokens": H.Reading(1, None, None)},
     ["x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "anthropic-ratelimit-tokens-reset"]),
    ("bytes keys and values", [(b"x-ratelimit-remaining-requests", b"7")], {"requests": H.Reading(7, None, None)}, []),
]


@pytest.mark.parametrize("what,headers,want,bad", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_header_table(what, headers, want, bad):
    got, malformed = H.parse(headers, now=NOW)
    assert got == want
    assert sorted(malformed) == sorted(bad)


@pytest.mark.parametrize("text,seconds", [("6m0s", 360), ("12ms", 0.012), ("1s", 1), ("0.5s", 0.5),
                                          ("1h2m3.5s", 3723.5), ("20us", 2e-5), ("7ns", 7e-9), ("3", 3)])
def test_durations(text, seconds):
    assert H.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 m", "1m-3s", "abc", "5x", "1.2.3s", "9" * 400 + "s", "9000h",
                                  "\u0665s", "nan", "inf"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        H.parse_duration(text)


def test_observe_headers_clamps_the_buckets_and_counts_malformed(segment):
    with rq.Client(segment) as c:
        c.define("oa", limits=[rq.Rate(100, per=3600), rq.Rate(10_000, per=3600, cost="load")])
        applied, bad = c.observe_headers("oa", {
            "x-ratelimit-remaining-requests": "5", "x-ratelimit-remaining-tokens": "300",
            "x-ratelimit-reset-requests": "oops"})
        assert set(applied) == {"requests", "tokens"} and bad == ["x-ratelimit-reset-requests"]
        assert c.malformed_headers == 1
        assert c.try_acquire("oa", load=301) is None  # the token bucket holds 300 now
        assert drain(c, "oa", 1) == 5                 # and the request bucket 5
        c.observe_headers("oa", {"x-ratelimit-remaining-requests": "90"})  # never raised
        assert c.try_acquire("oa") is None
        applied, bad = c.observe_headers("oa", {"x-ratelimit-remaining-requests": "x"})
        assert applied == {} and c.malformed_headers == 2
        # Redefined elsewhere (the token limit moves to index 0): the cached mapping is refreshed.
        with rq.Client(segment) as other:
            other.define("oa", limits=[rq.Rate(10_000, per=3600, cost="load")], replace=True)
        applied, _ = c.observe_headers("oa", {"x-ratelimit-remaining-tokens": "50"})
        assert set(applied) == {"tokens"}
