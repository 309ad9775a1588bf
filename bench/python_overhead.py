#!/usr/bin/env python3
"""Python overhead: `with rq.acquire()` against a `with` block that wraps two
bare ctypes calls (rq_acquire + rq_release), measured in the same run.
Budget (DESIGN section 5): at most 1.5x.

    PYTHONPATH=python RATEQUEUE_LIBRARY=build/src/libratequeue.so /usr/bin/python3 bench/python_overhead.py
"""
import ctypes
import os
import statistics
import time

import ratequeue as rq
from ratequeue import _native


class BareBlock:
    """The baseline: a context manager around the two raw C calls."""

    def __init__(self, handle, name):
        self.handle, self.name, self.permit = handle, name, _native.PermitStruct()

    def __enter__(self):
        _native.lib.rq_acquire(self.handle, self.name, 1, -1, ctypes.byref(self.permit))
        return self

    def __exit__(self, *exc):
        _native.lib.rq_release(self.handle, ctypes.byref(self.permit))
        return False


def per_call(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e9


def main():
    seg = "rqpybench-%d" % os.getpid()
    client = rq.Client(seg)
    try:
        client.define("bench", limits=[rq.Rate(10**9, per=1, burst=2**40)])
        bare = BareBlock(client._handle(), b"bench")

        def run_bare(n):
            for _ in range(n):
                with bare:
                    pass

        def run_rq(n):
            for _ in range(n):
                with client.acquire("bench"):
                    pass

        n = 20000
        run_bare(n), run_rq(n)  # warm up
        bare_ns, rq_ns = [], []
        for _ in range(7):  # interleaved, so both see the same machine
            bare_ns.append(per_call(run_bare, n))
            rq_ns.append(per_call(run_rq, n))
        b, r = statistics.median(bare_ns), statistics.median(rq_ns)
        print("bare ctypes with-block: %.0f ns" % b)
        print("with rq.acquire():      %.0f ns" % r)
        print("ratio %.2fx (budget 1.5x)%s" % (r / b, "" if r / b <= 1.5 else "  OVER BUDGET"))
    finally:
        client.close()
        try:
            os.unlink("/dev/shm/" + seg)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
