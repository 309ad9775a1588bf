"""Errors that teach: the exception classes come from the library's own
error table, Timeout is also the built-in TimeoutError, asyncio raises
Cancelled, LoadTooLarge names the limit and how to make room, Conflict shows
both definitions and says replace=True, and a RATEQUEUE_LIBRARY that names
no file is an error, not a silent fall back."""
import asyncio
import os
import subprocess
import sys
import pathlib

import pytest

import ratequeue as rq
import ratequeue.aio as rqa
from ratequeue._native import lib

PKG = str(pathlib.Path(__file__).resolve().parents[1])


def test_every_code_of_the_library_has_its_class():
    names = {}
    code = -1
    while lib.rq_errname(code).decode() != "RQ_EUNKNOWN":
        names[code] = lib.rq_errname(code).decode()
        code -= 1
    assert len(names) >= 14
    for code, name in names.items():
        err = rq._error(code, "x")
        assert err.code == code and err.name == name
        assert isinstance(err, rq.RateQueueError)
    assert isinstance(rq._error(-1), rq.Timeout) and isinstance(rq._error(-1), TimeoutError)
    assert isinstance(rq._error(-11), rq.Cancelled)
    assert isinstance(rq._error(-14), rq.Unavailable)
    assert type(rq._error(-13)) is rq.RateQueueError  # RQ_EINTERNAL: no class of its own


def test_timeout_is_a_builtin_timeout_error(segment):
    with rq.Client(segment) as c:
        c.define("t", limits=[rq.Concurrency(1)])
        held = c.acquire("t")
        with pytest.raises(TimeoutError):
            c.acquire("t", timeout=0.05)
        held.release()


def test_load_too_large_names_the_limit_and_the_fix(segment):
    with rq.Client(segment) as c:
        c.define("llm", rpm=60, tpm=200_000, burst_seconds=1)  # a bucket of 3,334 tokens (one second's worth)
        with pytest.raises(rq.LoadTooLarge) as e:
            c.acquire("llm", load=4000, timeout=1)
        text = str(e.value)
        assert "load 4000" in text and "burst=3334" in text and "burst_seconds=" in text
        c.define("deep", rpm=60, tpm=200_000)  # the default: the whole minute; 4,000 fits
        c.acquire("deep", load=4000, timeout=1).release()
        with pytest.raises(rq.LoadTooLarge, match="already holds the whole minute.*split the request") as e:
            c.acquire("deep", load=200_001)
        assert "burst_seconds" not in str(e.value)  # no advice that cannot help
        c.define("pool", limits=[rq.Concurrency(8, cost="load")])
        with pytest.raises(rq.LoadTooLarge, match="8 at once"):
            c.acquire("pool", load=9)


def test_conflict_shows_both_definitions_and_replace_true(segment):
    with rq.Client(segment) as c:
        c.define("x", rpm=600)
        with pytest.raises(rq.Conflict) as e:
            c.define("x", rpm=1200)
        text = str(e.value)
        assert "Rate(600" in text and "Rate(1200" in text and "replace=True" in text
        assert "RQ_DEFINE_REPLACE" not in text


def test_asyncio_raises_cancelled_when_the_client_closes(segment):
    async def main():
        c = rq.Client(segment)
        c.define("a", limits=[rq.Concurrency(1)])
        held = c.acquire("a")
        waiting = asyncio.ensure_future(rqa._acquire(c, "a", 1, None))  # (the client's own, not the default)
        await asyncio.sleep(0.2)
        c.close()
        with pytest.raises(rq.Cancelled):
            await asyncio.wait_for(waiting, 5)
        del held
    asyncio.run(main())



def test_a_missing_ratequeue_library_is_an_error(tmp_path):
    env = dict(os.environ, RATEQUEUE_LIBRARY=str(tmp_path / "no-such-lib.so"), PYTHONPATH=PKG)
    out = subprocess.run([sys.executable, "-c", "import ratequeue"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "no-such-lib.so: no such file" in out.stderr
