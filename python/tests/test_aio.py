"""ratequeue.aio: waiting never blocks the loop, cancellation and timeouts leave
the line cleanly, and many waiting tasks need a bounded number of threads."""
import asyncio
import multiprocessing as mp
import os
import threading
import time

import pytest

import ratequeue
import ratequeue.aio as rq


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(pred, limit=5.0):
    end = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.002)


def test_every_form(segment):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=1)
            async with rq.acquire("c", client=c) as p:
                assert p.held and p.resource == "c" and p.load == 1
                assert await rq.try_acquire("c", client=c) is None
            assert not p.held
            p = await rq.acquire("c", timeout=1, client=c)
            p.release()
            p.release()  # idempotent

            @rq.limited("c", client=c)
            async def work(x):
                assert c.try_acquire("c") is None  # we hold the only one
                await asyncio.sleep(0)
                return x * 2

            assert await work(21) == 42
            q = await rq.try_acquire("c", client=c)
            assert q is not None
            q.release()
    run(main())


def test_module_level_exactly_as_documented(segment, monkeypatch):
    monkeypatch.setenv("RATEQUEUE_SEGMENT", segment)
    monkeypatch.setattr(ratequeue, "_default", None)

    async def main():
        rq.define("openai", rpm=1000, tpm=200_000, concurrency=10)
        n = 120
        async with rq.acquire("openai", load=n):
            pass
        got = rq.describe("openai")
        assert got[2].n == 10
    run(main())
    ratequeue.default_client().close()


def test_errors_for_bad_input(segment):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=2, tpm=100)
            with pytest.raises(rq.NotDefined):
                await rq.acquire("nope", client=c)
            with pytest.raises(rq.LoadTooLarge):
                await rq.acquire("c", load=101, client=c)
            with pytest.raises(rq.InvalidArgument):
                await rq.acquire("bad name", client=c)
            with pytest.raises(rq.InvalidArgument):
                rq.acquire("c", load=0, client=c)
            with pytest.raises(TypeError):
                rq.acquire("c", load=1.5, client=c)
            with pytest.raises(ValueError):
                rq.acquire("c", timeout=-1, client=c)
    run(main())


def test_waiting_does_not_block_the_loop(segment):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=1)
            held = c.acquire("c")
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.005)

            t = asyncio.ensure_future(ticker())
            w = asyncio.ensure_future(rq.acquire("c", client=c))
            await asyncio.sleep(0.3)
            assert not w.done()
            assert ticks >= 20  # the loop kept running while the task waited
            held.release()
            p = await asyncio.wait_for(w, 5)
            p.release()
            t.cancel()
    run(main())


async def _queue(c, names, order, timeout=None):
    """Starts one waiting task per name, in order; each records its turn."""
    tasks = {}
    for name in names:
        async def one(name=name):
            async with rq.acquire("c", timeout=timeout, client=c):
                order.append(name)
                await asyncio.sleep(0.01)
        tasks[name] = asyncio.ensure_future(one())
        await asyncio.sleep(0.02)  # so that each takes its ticket before the next
    return tasks


@pytest.mark.parametrize("victim", ["A", "B"], ids=["head", "middle"])
def test_cancelling_a_waiter_leaves_the_line_cleanly(segment, victim):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=1)
            held = c.acquire("c")
            order = []
            tasks = await _queue(c, "ABC", order)
            tasks[victim].cancel()
            with pytest.raises(asyncio.CancelledError):
                await tasks[victim]
            held.release()
            for name, t in tasks.items():
                if name != victim:
                    await asyncio.wait_for(t, 5)
            assert order == [x for x in "ABC" if x != victim]
            # No permit lost, no ticket left behind.
            p = c.try_acquire("c")
            assert p is not None
            p.release()
    run(main())


def test_timeouts_at_the_head_and_in_the_middle(segment):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=1)
            held = c.acquire("c")
            t0 = time.monotonic()
            with pytest.raises(rq.Timeout):
                await rq.acquire("c", timeout=0.1, client=c)  # alone, at the head
            assert 0.09 <= time.monotonic() - t0 < 2
            order = []
            tasks = {}

            async def one(name, timeout):
                async with rq.acquire("c", timeout=timeout, client=c):
                    order.append(name)

            for name, timeout in (("A", None), ("B", 0.1), ("C", None)):
                tasks[name] = asyncio.ensure_future(one(name, timeout))
                await asyncio.sleep(0.02)
            with pytest.raises(rq.Timeout):
                await tasks["B"]  # in the middle
            held.release()
            await asyncio.wait_for(tasks["A"], 5)
            await asyncio.wait_for(tasks["C"], 5)
            assert order == ["A", "C"]
            with pytest.raises(rq.WouldBlock):
                held = c.acquire("c")
                await rq.acquire("c", timeout=0, client=c)
            held.release()
    run(main())


def test_a_thousand_waiting_tasks_use_a_bounded_number_of_threads(segment):
    async def main():
        with ratequeue.Client(segment) as c:
            c.define("c", concurrency=4)
            c.define("d", concurrency=1)
            before = threading.active_count()
            held = [c.acquire("c") for _ in range(4)] + [c.acquire("d")]
            done = 0

            async def one(res):
                nonlocal done
                async with rq.acquire(res, client=c):
                    done += 1

            tasks = [asyncio.ensure_future(one("c" if i % 2 else "d")) for i in range(1000)]
            await asyncio.sleep(0.3)
            assert done == 0
            threads = threading.active_count() - before
            print("helper threads for 1,000 waiting tasks on 2 resources:", threads)
            assert threads <= 2  # one per resource with waiters, not one per task
            for p in held:
                p.release()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert done == 1000
            assert threading.active_count() - before <= 2
    run(main())


def _cap_worker(segment, start, inside, peak, lock, errors):
    async def main():
        c = ratequeue.Client(segment)

        async def one():
            for _ in range(2):
                async with rq.acquire("cap", client=c):
                    with lock:
                        inside.value += 1
                        peak.value = max(peak.value, inside.value)
                    await asyncio.sleep(0.001)
                    with lock:
                        inside.value -= 1

        start.wait(10)
        await asyncio.gather(*[one() for _ in range(50)])
        c.close()
    try:
        asyncio.run(main())
    except Exception as e:  # reported to the parent
        with lock:
            errors.value += 1
        raise e


def test_concurrency_cap_across_4_processes_of_50_tasks(segment):
    with ratequeue.Client(segment) as c:
        c.define("cap", concurrency=3)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    inside, peak, errors = ctx.Value("i", 0, lock=False), ctx.Value("i", 0, lock=False), ctx.Value("i", 0)
    lock = ctx.Lock()
    procs = [ctx.Process(target=_cap_worker, args=(segment, start, inside, peak, lock, errors)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert errors.value == 0
    assert peak.value == 3  # reached, never exceeded
    assert inside.value == 0


def test_a_forked_child_gets_its_own_helper_threads(segment):
    with ratequeue.Client(segment) as c:
        c.define("c", concurrency=1)

        async def hold_and_wait():
            held = c.acquire("c")
            w = asyncio.ensure_future(rq.acquire("c", client=c))
            await asyncio.sleep(0.05)  # a helper thread waits in the parent
            held.release()
            (await w).release()

        run(hold_and_wait())
        pid = os.fork()
        if pid == 0:  # the child: the parent's helper thread did not come along
            try:
                run(hold_and_wait())
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
