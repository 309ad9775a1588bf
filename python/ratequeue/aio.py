"""asyncio API: waiting never blocks the event loop.

    import ratequeue.aio as rq
    rq.define("openai", rpm=1000, tpm=200_000, concurrency=10)
    async with rq.acquire("openai", load=prompt_tokens):
        await call_the_api()

    permit = await rq.acquire("openai", load=n, timeout=5)   # or hold it yourself
    permit.release()

How it waits. An acquire first tries once on the event loop (no thread, no
system call when there is capacity). Otherwise it takes a ticket, a place in
the resource's line (rq_enqueue), and a helper thread waits on it (rq_wait).
Tickets are served in order, so one client needs one helper thread per
resource, however many tasks wait: the thread waits on the earliest ticket
while the later ones keep their places without a thread. Helper threads exit
after a few idle seconds.

Cancelling a waiting task (task.cancel(), asyncio.timeout, wait_for) calls
rq_cancel: the ticket leaves the line at once, whether it is at the head or in
the middle, and the tasks behind it move up. A timeout does the same and
raises ratequeue.Timeout. If a cancel loses the race with a grant, the permit
is released for you.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import functools
import os
import threading
import time
from typing import Any, Callable, Optional, TypeVar

from . import (  # noqa: F401  (re-exported for `import ratequeue.aio as rq`)
    Cancelled, Client, Concurrency, Conflict, Corrupt, Incompatible, InvalidArgument, LoadTooLarge, NoSpace,
    NotDefined, PermissionDenied, Permit, Rate, RateQueueError, Timeout, WouldBlock, _error, _load, _native,
    default_client, define, describe, observe_headers, penalize, predict_wait)
from ._native import lib

__all__ = ["acquire", "try_acquire", "limited", "define", "describe", "penalize", "observe_headers",
           "predict_wait", "Client", "Permit", "Rate", "Concurrency",
           "RateQueueError", "Timeout", "WouldBlock", "LoadTooLarge", "NotDefined", "Conflict", "Incompatible",
           "Corrupt", "PermissionDenied", "InvalidArgument", "NoSpace", "Cancelled"]

F = TypeVar("F", bound=Callable[..., Any])

_IDLE_EXIT_S = 5.0  # a helper thread with nothing to wait on exits after this long
_EAGAIN = -2
_byref = ctypes.byref


class _Waiter:
    """One task's ticket: created on the event loop, waited on by the lane thread."""

    __slots__ = ("lane", "loop", "future", "ticket", "load", "deadline", "timer", "gave_up")

    def __init__(self, lane, loop, load, deadline):
        self.lane = lane
        self.loop = loop
        self.future = loop.create_future()
        self.ticket = _native.TicketStruct()
        self.load = load
        self.deadline = deadline  # time.monotonic() seconds, or None
        self.timer = None
        self.gave_up = False      # set before rq_cancel

    # -- on the lane thread --
    def wait(self, handle):
        if self.gave_up:
            return  # rq_cancel already took the ticket out of the line
        if self.deadline is None:
            timeout_ns = -1
        else:
            timeout_ns = max(1, int((self.deadline - time.monotonic()) * 1e9))
        permit = _native.PermitStruct()
        rc = lib.rq_wait(handle, _byref(self.ticket), timeout_ns, _byref(permit))
        self.deliver(rc, permit, handle)

    def deliver(self, rc, permit, handle):
        try:
            self.loop.call_soon_threadsafe(self._deliver, rc, permit)
        except RuntimeError:  # the loop is closed: nobody will take the permit
            if rc == 0:
                lib.rq_release(handle, _byref(permit))

    # -- on the event loop --
    def _deliver(self, rc, permit):
        if self.timer is not None:
            self.timer.cancel()
        if self.future.done():  # the task gave up first; a grant that raced it goes back
            if rc == 0:
                lib.rq_release(self.lane.handle, _byref(permit))
            return
        if rc == 0:
            self.future.set_result(Permit(self.lane.client, permit, self.lane.name, self.load))
        else:
            self.future.set_exception(_error(rc, "acquire " + self.lane.name))

    def give_up(self):
        """Leaves the line (cancellation or timeout); idempotent; any thread."""
        if self.gave_up:
            return
        self.gave_up = True
        if self.timer is not None:
            self.timer.cancel()
        rc = lib.rq_cancel(self.lane.handle, _byref(self.ticket))
        if rc:
            raise _error(rc, "cancel " + self.lane.name)

    def expire(self):
        if self.future.done():
            return
        try:
            self.give_up()
        finally:
            self.future.set_exception(Timeout(-1, "acquire " + self.lane.name))


class _Lane:
    """A client's tickets in one resource's line, in ticket order, and the one
    thread that waits on the earliest of them."""

    def __init__(self, client, name):
        self.client = client
        self.handle = client._handle()
        self.name = name
        self.encoded = name.encode()
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.pending = collections.deque()
        self.current = None
        self.thread = None
        self.closed = False

    def enqueue(self, waiter):
        # Under the lane lock, so the deque stays in ticket order.
        with self.cond:
            if self.closed:
                raise _error(-4, "acquire %s: the client is closed" % self.name)
            rc = lib.rq_enqueue(self.handle, self.encoded, waiter.load, _byref(waiter.ticket))
            if rc:
                raise self.client._acquire_error(rc, self.name, waiter.load)
            self.pending.append(waiter)
            if self.thread is None:
                thread = threading.Thread(target=self._run, name="ratequeue-aio:" + self.name, daemon=True)
                try:
                    thread.start()
                except BaseException:
                    self.pending.pop()
                    waiter.give_up()  # never leave a place in line nobody serves
                    raise
                self.thread = thread
            else:
                self.cond.notify()

    def _run(self):
        try:
            while True:
                with self.cond:
                    while not self.pending and not self.closed:
                        if not self.cond.wait(_IDLE_EXIT_S) and not self.pending:
                            return
                    if not self.pending:
                        return  # closed and drained
                    waiter = self.current = self.pending.popleft()
                try:
                    waiter.wait(self.handle)
                except BaseException as e:  # never leave the ticket holding the line
                    try:
                        waiter.give_up()
                    finally:
                        err = e if isinstance(e, Exception) else RateQueueError(-13, "acquire " + self.name)
                        waiter.loop.call_soon_threadsafe(
                            lambda w=waiter, err=err: w.future.done() or w.future.set_exception(err))
                finally:
                    self.current = None
        finally:
            with self.cond:
                self.thread = None

    def close(self):
        """Cancels every ticket and joins the thread (Client.close calls this
        before rq_close, which no other call may overlap)."""
        with self.cond:
            self.closed = True
            waiters = list(self.pending) + ([self.current] if self.current else [])
            self.cond.notify_all()
            thread = self.thread
        for w in waiters:
            try:
                w.give_up()
            except RateQueueError:
                pass
            err = Cancelled(-11, "acquire %s: the client was closed" % self.name)
            try:
                w.loop.call_soon_threadsafe(lambda w=w, err=err: w.future.done() or w.future.set_exception(err))
            except RuntimeError:
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)


def _lane(client, name):
    lanes = client._lanes
    lane = lanes.get(name)
    if lane is None or lane.pid != os.getpid():  # a forked child gets fresh lanes (no threads came along)
        with client._lanes_lock:
            lane = lanes.get(name)
            if lane is None or lane.pid != os.getpid():
                lane = lanes[name] = _Lane(client, name)
    return lane


async def _acquire(client, name, load, timeout):
    # Try once on the loop: the common, uncontended case costs no thread hop.
    permit = _native.PermitStruct()
    rc = lib.rq_acquire(client._handle(), _lane(client, name).encoded, load, 0, _byref(permit))
    if rc == 0:
        return Permit(client, permit, name, load)
    if rc != _EAGAIN:
        raise client._acquire_error(rc, name, load)
    if timeout == 0:
        raise _error(rc, "acquire " + name)
    if timeout is not None:
        # Fail fast when the buckets alone cannot admit us in time.
        predicted = client.predict_wait(name, load)
        if predicted > timeout:
            raise Timeout(-1, "acquire %s: predicted wait %.3fs exceeds the timeout" % (name, predicted),
                          predicted_wait=predicted)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else time.monotonic() + timeout
    lane = _lane(client, name)
    waiter = _Waiter(lane, loop, load, deadline)
    lane.enqueue(waiter)
    if deadline is not None:
        waiter.timer = loop.call_later(timeout, waiter.expire)
    try:
        return await waiter.future
    except asyncio.CancelledError:
        fut = waiter.future
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            fut.result().release()  # granted, but the task was cancelled before it resumed
        else:
            waiter.give_up()
        raise


class _Acquire:
    """`await acquire(...)` gives a Permit; `async with acquire(...)` releases it on exit."""

    __slots__ = ("_client", "_name", "_load", "_timeout", "_permit")

    def __init__(self, client, name, load, timeout):
        if type(load) is not int or load <= 0:
            load = _load(load)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError("timeout must be None or a number of seconds >= 0, not %r" % (timeout,))
        self._client = client
        self._name = name
        self._load = load
        self._timeout = timeout
        self._permit = None

    def __await__(self):
        return _acquire(self._client, self._name, self._load, self._timeout).__await__()

    async def __aenter__(self):
        self._permit = await _acquire(self._client, self._name, self._load, self._timeout)
        return self._permit

    async def __aexit__(self, *exc):
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.release()
        return False


def acquire(name: str, load: int = 1, timeout: Optional[float] = None, *,
            client: Optional[Client] = None) -> "_Acquire":
    """Waits (without blocking the loop) in FIFO order until every limit of
    `name` allows `load`. Use `async with`, or `await` it for a Permit.
    timeout=None waits as long as it takes; Timeout when it passes first."""
    return _Acquire(client or default_client(), name, load, timeout)


async def try_acquire(name: str, load: int = 1, *, client: Optional[Client] = None) -> Optional[Permit]:
    """A Permit if every limit allows `load` right now and nobody waits, else None."""
    return (client or default_client()).try_acquire(name, load)


def limited(name: str, load: int = 1, timeout: Optional[float] = None, *,
            client: Optional[Client] = None) -> Callable[[F], F]:
    """Decorator for coroutine functions: each call holds a permit of `name`."""
    def wrap(fn):
        @functools.wraps(fn)
        async def call(*args, **kwargs):
            async with acquire(name, load, timeout, client=client):
                return await fn(*args, **kwargs)
        return call
    return wrap
