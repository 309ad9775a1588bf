"""The synchronous Python API over the C ABI."""
import multiprocessing as mp
import os
import signal
import time

import pytest

import ratequeue as rq


def test_version_is_checked_at_import():
    assert rq.VERSION.count(".") == 2


def test_define_shorthands_describe_and_conflict(segment):
    with rq.Client(segment) as c:
        c.define("openai", rpm=1000, tpm=200_000, concurrency=10)
        c.define("openai", rpm=1000, tpm=200_000, concurrency=10)  # idempotent
        got = c.describe("openai")
        assert [type(x).__name__ for x in got] == ["Rate", "Rate", "Concurrency"]
        assert got[0].amount == 1000 and got[0].per == 60 and got[0].cost == "request"
        assert got[1].amount == 200_000 and got[1].cost == "load"
        assert got[2].n == 10
        with pytest.raises(rq.Conflict) as e:
            c.define("openai", rpm=5)
        assert e.value.code == -5 and e.value.name == "RQ_ECONFLICT"
        c.define("openai", rpm=5, replace=True)
        assert len(c.describe("openai")) == 1


def test_general_limits(segment):
    with rq.Client(segment) as c:
        c.define("x", limits=[rq.Rate(10, per=1, burst=3), rq.Concurrency(100, cost="load")])
        got = c.describe("x")
        assert got[0].burst == 3 and got[0].per == 1
        assert got[1].cost == "load"


def test_acquire_forms_and_release(segment):
    with rq.Client(segment) as c:
        c.define("c", concurrency=1)
        with c.acquire("c") as p:
            assert p.held
            assert c.try_acquire("c") is None
        assert not p.held
        p = c.acquire("c", timeout=1)
        p.release()
        p.release()  # idempotent
        q = c.try_acquire("c")
        assert q is not None
        q.release()

        @c.limited("c")
        def work(x):
            assert c.try_acquire("c") is None  # we hold the only one
            return x * 2

        assert work(21) == 42


def test_timeout_and_would_block(segment):
    with rq.Client(segment) as c:
        c.define("r", limits=[rq.Rate(1, per=3600)])
        c.acquire("r", timeout=0).release()
        with pytest.raises(rq.WouldBlock):
            c.acquire("r", timeout=0)
        # The next token is an hour away: a 50 ms deadline fails at once,
        # saying how long the wait would have been.
        t0 = time.monotonic()
        with pytest.raises(rq.Timeout) as e:
            c.acquire("r", timeout=0.05)
        assert time.monotonic() - t0 < 0.04
        assert 3500 < e.value.predicted_wait <= 3600
        assert "timed out" in str(e.value) and "predicted wait" in str(e.value)
        assert 3500 < c.predict_wait("r") <= 3600
        # A wait that only concurrency blocks cannot be predicted: it times out.
        c.define("c", concurrency=1)
        with c.acquire("c"):
            t0 = time.monotonic()
            with pytest.raises(rq.Timeout) as e:
                c.acquire("c", timeout=0.05)
            assert time.monotonic() - t0 >= 0.05
            assert e.value.predicted_wait is None


def test_errors_for_bad_input(segment):
    with rq.Client(segment) as c:
        c.define("t", limits=[rq.Rate(100, per=60, burst=10, cost="load")])
        with pytest.raises(rq.LoadTooLarge):
            c.acquire("t", load=11)
        with pytest.raises(rq.NotDefined):
            c.acquire("missing")
        with pytest.raises(rq.InvalidArgument):
            c.acquire("t", load=0)
        with pytest.raises(rq.InvalidArgument):
            c.acquire("bad name")
        with pytest.raises(rq.InvalidArgument):
            c.define("x" * 64, rpm=1)
        with pytest.raises(ValueError):
            rq.Rate(0)
        with pytest.raises(ValueError):
            rq.Concurrency(2, cost="tokens")
        with pytest.raises(ValueError):
            c.define("empty")
        with pytest.raises(ValueError):
            c.acquire("t", timeout=-1)
        with pytest.raises(TypeError):
            c.acquire("t", load=1.5)
    with pytest.raises(rq.InvalidArgument):
        rq.Client("bad/name")


def test_module_level_functions_use_the_default_segment(segment, monkeypatch):
    monkeypatch.setenv("RATEQUEUE_SEGMENT", segment)
    monkeypatch.setattr(rq, "_default", None)
    rq.define("m", concurrency=2)
    with rq.acquire("m"):
        assert rq.try_acquire("m") is not None

    @rq.limited("m")
    def f():
        return "ok"

    assert f() == "ok"
    assert rq.default_client().segment == segment


def _hold_and_count(segment, counter, peak, lock, start, rounds):
    with rq.Client(segment) as c:
        start.wait(30)  # all processes compete from the same moment
        for _ in range(rounds):
            with c.acquire("cap", timeout=10):
                with lock:
                    counter.value += 1
                    peak.value = max(peak.value, counter.value)
                time.sleep(0.005)
                with lock:
                    counter.value -= 1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_concurrency_cap_across_processes(segment, method):
    ctx = mp.get_context(method)
    with rq.Client(segment) as c:
        c.define("cap", concurrency=2)
    counter, peak, lock, start = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Lock(), ctx.Barrier(4)
    procs = [ctx.Process(target=_hold_and_count, args=(segment, counter, peak, lock, start, 20)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert peak.value == 2


def _hold_forever(segment, ready):
    c = rq.Client(segment)
    c.acquire("k")
    ready.set()
    time.sleep(60)


def test_a_sigkilled_python_holder_gives_its_permit_back(segment):
    ctx = mp.get_context("fork")
    with rq.Client(segment) as c:
        c.define("k", concurrency=1)
        ready = ctx.Event()
        p = ctx.Process(target=_hold_forever, args=(segment, ready))
        p.start()
        assert ready.wait(10)
        assert c.try_acquire("k") is None
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        t0 = time.monotonic()
        with c.acquire("k", timeout=5):
            pass
        assert time.monotonic() - t0 < 5


def test_a_forked_child_is_a_distinct_holder(segment):
    ctx = mp.get_context("fork")
    with rq.Client(segment) as c:
        c.define("f", concurrency=2)
        held = c.acquire("f")
        q = ctx.Queue()

        def child():
            mine = c.try_acquire("f")        # the inherited client, registered anew
            third = c.try_acquire("f")       # 2 held now: parent's and ours
            q.put((mine is not None, third is None))
            mine.release()

        p = ctx.Process(target=child)
        p.start()
        assert q.get(timeout=10) == (True, True)
        p.join(10)
        assert p.exitcode == 0
        held.release()


def test_a_closed_client_refuses_calls(segment):
    c = rq.Client(segment)
    c.define("z", concurrency=1)
    c.close()
    c.close()  # harmless twice
    with pytest.raises(rq.InvalidArgument):
        c.acquire("z")
