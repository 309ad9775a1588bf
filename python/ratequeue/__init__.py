"""ratequeue: machine-wide API rate limits shared by every process on one box.

    import ratequeue as rq
    rq.define("openai", rpm=1000, tpm=200_000, concurrency=10)
    with rq.acquire("openai", load=prompt_tokens):
        call_the_api()

Module-level functions use a default Client on $RATEQUEUE_SEGMENT (else
"ratequeue"), opened on first use. Errors raise RateQueueError subclasses that
carry the RQ_E* code and the library's text.

This module is the synchronous API; ratequeue.aio is the asyncio one.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from . import _native
from . import headers as _headers
from ._native import lib

__all__ = [
    "Client", "Permit", "Rate", "Concurrency", "define", "describe", "acquire", "try_acquire", "limited",
    "penalize", "observe_headers", "predict_wait",
    "RateQueueError", "Timeout", "WouldBlock", "LoadTooLarge", "NotDefined", "Conflict", "Incompatible",
    "Corrupt", "PermissionDenied", "InvalidArgument", "NoSpace", "Cancelled", "VERSION",
]

VERSION = _native.VERSION

F = TypeVar("F", bound=Callable[..., Any])


# ---- Errors ------------------------------------------------------------------------

class RateQueueError(Exception):
    """A negative RQ_E* code from the library: .code, .name and the library's text."""

    def __init__(self, code, context="", predicted_wait=None, text=None):
        self.code = code
        # Timeout only: when the acquire failed at once because the buckets
        # (or a penalty pause) could not admit it before its deadline, the
        # least time it would have waited, in seconds; else None.
        self.predicted_wait = predicted_wait
        self.name = lib.rq_errname(code).decode()
        text = text or lib.rq_strerror(code).decode()
        super().__init__("%s: %s (%s)" % (context, text, self.name) if context else "%s (%s)" % (text, self.name))


class Timeout(RateQueueError, TimeoutError):
    """RQ_ETIMEDOUT: the timeout passed before every limit allowed the acquire,
    or (failing fast) could not be met: then .predicted_wait says how long the
    acquire would have waited at least, so the caller can go elsewhere now."""


class WouldBlock(RateQueueError):
    """RQ_EAGAIN: no capacity right now (a try), or waiters are queued ahead."""


class LoadTooLarge(RateQueueError):
    """RQ_E2BIG: the load is above a limit's burst or concurrency amount."""


class NotDefined(RateQueueError):
    """RQ_ENOENT: no such resource; define it first."""


class Conflict(RateQueueError):
    """RQ_ECONFLICT: already defined with other limits (pass replace=True)."""


class Incompatible(RateQueueError):
    """RQ_EINCOMPAT: the segment has another layout version."""


class Corrupt(RateQueueError):
    """RQ_ECORRUPT: the segment is damaged or not a ratequeue segment."""


class PermissionDenied(RateQueueError):
    """RQ_EACCES: another user's segment, or looser permissions than expected."""


class InvalidArgument(RateQueueError, ValueError):
    """RQ_EINVAL: a bad name, amount, period or load."""


class NoSpace(RateQueueError):
    """RQ_ENOSPC: the process table, resource table or queue is full."""


class Cancelled(RateQueueError):
    """RQ_ECANCELED: the wait was cancelled (asyncio raises CancelledError instead)."""


class Unavailable(RateQueueError):
    """RQ_EUNAVAIL: a global resource's quota cannot be had: Redis cannot be
    reached (or refused us) and this host's lease is spent. The message says
    what Redis answered, when it answered."""


# The exception for each code, built from the library's own table
# (rq_errname): a code this package has no class for gets RateQueueError.
_CLASSES = {"RQ_ETIMEDOUT": Timeout, "RQ_EAGAIN": WouldBlock, "RQ_ENOENT": NotDefined, "RQ_EINVAL": InvalidArgument,
            "RQ_ECONFLICT": Conflict, "RQ_E2BIG": LoadTooLarge, "RQ_ENOSPC": NoSpace, "RQ_EINCOMPAT": Incompatible,
            "RQ_ECORRUPT": Corrupt, "RQ_EACCES": PermissionDenied, "RQ_ECANCELED": Cancelled,
            "RQ_EUNAVAIL": Unavailable}


def _error_table():
    table = {}
    for code in range(-1, -256, -1):
        name = lib.rq_errname(code).decode()
        if name == "RQ_EUNKNOWN":
            break
        table[code] = _CLASSES.get(name, RateQueueError)
    return table


_ERRORS = _error_table()


def _error(rc, context="", text=None):
    return _ERRORS.get(rc, RateQueueError)(rc, context, text=text)


def _check(rc, context=""):
    if rc != 0:
        raise _error(rc, context)


# Hot-path helpers: bound C functions and encoded names (a bounded cache).
_rq_acquire = lib.rq_acquire
_rq_release = lib.rq_release
_byref = ctypes.byref
_names = {}


def _encode(name):
    b = _names.get(name)
    if b is None:
        b = name.encode()
        if len(_names) < 4096:
            _names[name] = b
    return b


# ---- Limits ------------------------------------------------------------------------

_COSTS = {"request": _native.COST_REQUEST, "load": _native.COST_LOAD}


def _cost(cost):
    if cost not in _COSTS:
        raise ValueError("cost must be 'request' or 'load', not %r" % (cost,))
    return _COSTS[cost]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("%s must be a positive integer, not %r" % (name, value))
    return value


class Rate:
    """`amount` units per `per` seconds, with a bucket of `burst` (None: amount).
    cost="request" charges 1 per acquire; cost="load" charges the acquire's load."""

    def __init__(self, amount: int, per: float = 60.0, burst: Optional[int] = None, cost: str = "request") -> None:
        self.amount = _positive_int("amount", amount)
        if not (isinstance(per, (int, float)) and per > 0):
            raise ValueError("per must be a positive number of seconds, not %r" % (per,))
        self.per = per
        self.burst = None if burst is None else _positive_int("burst", burst)
        self.cost = cost
        _cost(cost)

    def _struct(self):
        return _native.Limit(_native.LIMIT_RATE, _cost(self.cost), self.amount, int(round(self.per * 1e9)),
                             self.burst or 0)

    def __repr__(self):
        return "Rate(%d, per=%g, burst=%r, cost=%r)" % (self.amount, self.per, self.burst, self.cost)


class Concurrency:
    """At most `n` held at once: 1 per acquire (cost="request") or the load."""

    def __init__(self, n: int, cost: str = "request") -> None:
        self.n = _positive_int("n", n)
        self.cost = cost
        _cost(cost)

    def _struct(self):
        return _native.Limit(_native.LIMIT_CONCURRENCY, _cost(self.cost), self.n, 0, 0)

    def __repr__(self):
        return "Concurrency(%d, cost=%r)" % (self.n, self.cost)


Limit = Union[Rate, Concurrency]


# The per-minute shorthands, as the C header defines them (rq_rpm, rq_tpm):
# the bucket of rpm= holds half a second's worth, that of tpm= the whole minute.
RPM_BURST_MS, TPM_BURST_MS = 500, 60000


def _per_minute_burst(amount, burst_seconds, default_ms):
    """ceil(amount * burst_ms / 60000), at least 1: rq_rpm / rq_tpm's formula."""
    if burst_seconds is None:
        burst_ms = default_ms
    elif isinstance(burst_seconds, (int, float)) and not isinstance(burst_seconds, bool) and 0 < burst_seconds <= 60:
        burst_ms = max(1, int(burst_seconds * 1000 + 0.5))
    else:
        raise ValueError("burst_seconds must be in (0, 60] or None, not %r" % (burst_seconds,))
    return max(1, -(-amount * burst_ms // 60000))


def _limits(rpm, tpm, concurrency, limits, burst_seconds=None):
    out = list(limits or [])
    if rpm is not None:
        rpm = _positive_int("rpm", rpm)
        out.append(Rate(rpm, per=60, burst=_per_minute_burst(rpm, burst_seconds, RPM_BURST_MS)))
    if tpm is not None:
        tpm = _positive_int("tpm", tpm)
        out.append(Rate(tpm, per=60, burst=_per_minute_burst(tpm, burst_seconds, TPM_BURST_MS), cost="load"))
    if concurrency is not None:
        out.append(Concurrency(concurrency))
    if not out:
        raise ValueError("define needs at least one limit: rpm=, tpm=, concurrency= or limits=")
    for limit in out:
        if not isinstance(limit, (Rate, Concurrency)):
            raise TypeError("limits must be Rate or Concurrency, not %r" % (limit,))
    return out


def _timeout_ns(timeout):
    if timeout is None:
        return -1
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError("timeout must be None or a number of seconds >= 0, not %r" % (timeout,))
    return 0 if timeout == 0 else max(1, int(timeout * 1e9))


def _load(load):
    if isinstance(load, bool) or not isinstance(load, int):
        raise TypeError("load must be an int, not %r" % (load,))
    if load <= 0:
        raise InvalidArgument(-4, "load must be positive")
    return load


# ---- Client and permits --------------------------------------------------------------

class Permit:
    """A held permit: a context manager, or call .release() (idempotent)."""

    __slots__ = ("_client", "_permit", "resource", "load")

    def __init__(self, client, permit, resource, load):
        self._client = client
        self._permit = permit
        self.resource = resource
        self.load = load

    @property
    def held(self) -> bool:
        return self._client is not None

    def settle(self, actual: int) -> None:
        """Reports the load actually used (for example the tokens the response
        says it used) after acquiring with an estimate. Unused estimate goes
        back to the token buckets; usage above it becomes debt that later
        acquirers wait out; a load-cost concurrency limit then counts
        `actual`. Once per permit, before release (InvalidArgument otherwise)."""
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise InvalidArgument(-4, "settle %s: actual must be an int >= 0, not %r" % (self.resource, actual))
        if self._client is None:
            raise InvalidArgument(-4, "settle %s: the permit is released" % self.resource)
        _check(lib.rq_settle(self._client._handle(), _byref(self._permit), actual), "settle " + self.resource)
        self.load = actual

    def release(self) -> None:
        """Gives the permit back (concurrency returns at once; a rate limit
        keeps what it took). Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            rc = _rq_release(client._c or client._handle(), _byref(self._permit))
            if rc:
                raise _error(rc, "release " + self.resource)

    def __enter__(self) -> "Permit":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # release(), inline: this is half of every `with acquire()` block.
        client, self._client = self._client, None
        if client is not None:
            rc = _rq_release(client._c or client._handle(), _byref(self._permit))
            if rc:
                raise _error(rc, "release " + self.resource)
        return False

    def __repr__(self):
        return "<Permit %s load=%d %s>" % (self.resource, self.load, "held" if self.held else "released")


class Client:
    """One attachment to a segment (created if missing). Thread-safe."""

    def __init__(self, segment: Optional[str] = None, group: bool = False, redis_url: Optional[str] = None,
                 lease_ttl: Optional[float] = None) -> None:
        """redis_url: share global resources with every host on that Redis
        (redis://[[user]:password@]host[:port][/db] or unix:///path); None
        reads $RATEQUEUE_REDIS_URL, "" means this host only. lease_ttl:
        seconds Redis keeps this host's lease after its last call (10)."""
        self.segment = segment or os.environ.get("RATEQUEUE_SEGMENT") or "ratequeue"
        ttl_ms = 0 if lease_ttl is None else max(1, int(round(lease_ttl * 1000)))
        opts = _native.OpenOptions(ctypes.sizeof(_native.OpenOptions), _native.OPEN_GROUP if group else 0, 0, 0, 0,
                                   ttl_ms, None if redis_url is None else redis_url.encode())
        handle = ctypes.c_void_p()
        _check(lib.rq_open_ex(self.segment.encode(), ctypes.byref(opts), ctypes.byref(handle)),
               "open segment " + self.segment)
        self._c = handle
        self.redis_url = redis_url if redis_url is not None else os.environ.get("RATEQUEUE_REDIS_URL", "")
        self._lanes = {}  # ratequeue.aio: resource name -> its waiting lane
        self._lanes_lock = threading.Lock()
        self._observe_map = {}  # observe_headers: resource -> its limits
        self.malformed_headers = 0

    def _handle(self):
        if self._c is None:
            raise InvalidArgument(-4, "client is closed")
        return self._c

    def close(self) -> None:
        """Detaches. asyncio waits still in flight fail with RateQueueError
        and leave their lines first (rq_close may not overlap another call)."""
        if self._c is None:
            return
        for lane in list(self._lanes.values()):
            if lane.pid == os.getpid():
                lane.close()
        handle, self._c = self._c, None
        lib.rq_close(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def define(self, name: str, *, rpm: Optional[int] = None, tpm: Optional[int] = None,
               concurrency: Optional[int] = None, limits: Optional[Sequence[Limit]] = None, replace: bool = False,
               burst_seconds: Optional[float] = None, scope: Optional[str] = None,
               on_redis_down: str = "closed") -> None:
        """Define `name` (idempotent); Conflict if defined differently unless replace=True.

        rpm= and tpm= mean what they mean in rqctl (--rpm, --tpm) and the C
        and C++ APIs (rq_rpm, rq_tpm), shaped the way providers enforce them:
        requests are paced per second, so the bucket of rpm= holds half a
        second's worth (the other half absorbs differences in the time
        requests take to reach the provider; rpm=600: 5 at once, then 10 a
        second; at least 1); tokens are
        counted per minute, so the bucket of tpm= holds the whole minute and
        any single request the provider would admit fits (tpm=90_000: up to
        90,000 tokens at once, then 1,500 a second). burst_seconds= sets both
        buckets in seconds instead (up to 60). limits=[Rate(...)] is the
        general form."""
        items = _limits(rpm, tpm, concurrency, limits, burst_seconds)
        if scope not in (None, "global", "local"):
            raise InvalidArgument(-4, "scope must be 'global', 'local' or None")
        if scope == "global" and not self.redis_url:
            raise InvalidArgument(-4, "define %s: scope='global' needs a Redis URL (Client(redis_url=...) or "
                                      "$RATEQUEUE_REDIS_URL)" % name)
        if on_redis_down not in ("closed", "local-share"):
            raise InvalidArgument(-4, "on_redis_down must be 'closed' or 'local-share'")
        flags = _native.DEFINE_REPLACE if replace else 0
        if scope == "local":
            flags |= _native.DEFINE_LOCAL
        if on_redis_down == "local-share":
            flags |= _native.DEFINE_LOCAL_SHARE
        self._observe_map.pop(name, None)
        arr = (_native.Limit * len(items))(*[x._struct() for x in items])
        rc = lib.rq_define(self._handle(), name.encode(), arr, len(items), flags)
        if rc < 0:
            why = self._remote_why(rc)
            if rc == -5 and not why:
                try:
                    have = ", ".join(repr(x) for x in self.describe(name))
                except RateQueueError:
                    have = "other limits"
                raise _error(rc, "define " + name, text="already defined as [%s]; this define asks for [%s]: pass "
                             "replace=True to swap the new limits in (rate debt and permits in use carry over)"
                             % (have, ", ".join(repr(x) for x in items)))
            raise _error(rc, "define " + name + why)

    def _remote_why(self, rc):
        """For a global resource's error: what Redis said to this process, if
        it said anything (when another process is the host's refiller,
        `rqctl show NAME` has its last error)."""
        if rc not in (-5, -14):
            return ""
        buf = ctypes.create_string_buffer(512)
        n = lib.rq_remote_error(self._handle(), buf, len(buf))
        return " (%s)" % buf.value.decode(errors="replace") if n else ""

    def describe(self, name: str) -> List[Limit]:
        """The limits of `name`, as Rate and Concurrency objects."""
        arr = (_native.Limit * 8)()
        n = ctypes.c_size_t()
        _check(lib.rq_describe(self._handle(), name.encode(), arr, 8, ctypes.byref(n)), "describe " + name)
        out = []
        for lim in arr[:n.value]:
            cost = "load" if lim.cost == _native.COST_LOAD else "request"
            if lim.kind == _native.LIMIT_RATE:
                out.append(Rate(lim.amount, per=lim.period_ns / 1e9, burst=lim.burst, cost=cost))
            else:
                out.append(Concurrency(lim.amount, cost=cost))
        return out

    def acquire(self, name: str, load: int = 1, timeout: Optional[float] = None) -> Permit:
        """Wait in FIFO order until every limit of `name` allows `load`; returns a Permit.
        timeout=None waits as long as it takes; Timeout when it passes first."""
        permit = _native.PermitStruct()
        if type(load) is not int or load <= 0:
            load = _load(load)
        if timeout is None:
            rc = _rq_acquire(self._c or self._handle(), _encode(name), load, -1, _byref(permit))
        else:
            info = _native.WaitInfo(ctypes.sizeof(_native.WaitInfo), 0, -1)
            rc = lib.rq_acquire_ex(self._handle(), _encode(name), load, _timeout_ns(timeout), _byref(permit),
                                   _byref(info))
            if rc == -1 and info.predicted_wait_ns > 0:
                raise Timeout(rc, "acquire %s: predicted wait %.3fs exceeds the timeout" % (
                    name, info.predicted_wait_ns / 1e9), predicted_wait=info.predicted_wait_ns / 1e9)
        if rc:
            raise self._acquire_error(rc, name, load)
        return Permit(self, permit, name, load)

    def _acquire_error(self, rc, name, load):
        """The exception for a failed acquire, saying what it can: for
        LoadTooLarge the limit that refused and how to make room."""
        if rc == -6:
            try:
                limits = self.describe(name)
            except RateQueueError:
                limits = []
            refused = [x for x in limits if x.cost == "load" and
                       ((isinstance(x, Rate) and load > (x.burst or x.amount)) or
                        (isinstance(x, Concurrency) and load > x.n))]
            if refused:
                x = refused[0]
                room = ("a bucket of %d" % (x.burst or x.amount)) if isinstance(x, Rate) else ("%d at once" % x.n)
                if isinstance(x, Rate) and (x.burst or x.amount) >= x.amount:
                    fix = ("the bucket already holds the whole %s; a load above it is more than the limit "
                           "allows in a period: split the request, or raise the limit" % (
                               "minute" if x.per == 60 else "period"))
                elif isinstance(x, Rate):
                    fix = ("define it with a larger burst_seconds= (up to 60, or None for the whole minute) or "
                           "limits=[Rate(..., burst=...)]")
                else:
                    fix = "raise the concurrency amount"
                return _error(rc, "acquire %s" % name, text="load %d can never fit %r (%s): %s" % (
                    load, x, room, fix))
        return _error(rc, "acquire " + name + self._remote_why(rc))

    def predict_wait(self, name: str, load: int = 1) -> float:
        """The least time, in seconds, an acquire of `load` would wait if it
        queued now (0.0: the buckets would admit it at once)."""
        out = ctypes.c_int64()
        _check(lib.rq_predict_wait(self._handle(), _encode(name), _load(load), ctypes.byref(out)),
               "predict " + name)
        return out.value / 1e9

    def penalize(self, name: str, retry_after: float) -> None:
        """Shares a provider's 429 back-off: no process on this machine is
        admitted on `name` for `retry_after` seconds (waiters keep their
        places). A second penalty extends the pause, never shortens it."""
        if (not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool) or
                not 0 <= retry_after <= 366 * 24 * 3600):  # also refuses nan and inf
            raise ValueError("retry_after must be a number of seconds in [0, a year], not %r" % (retry_after,))
        _check(lib.rq_penalize(self._handle(), _encode(name), int(retry_after * 1e9)), "penalize " + name)

    def observe(self, name: str, limit_index: int, remaining: int, reset: float = 0.0) -> None:
        """Lowers rate limit `limit_index` of `name` so that it holds at most
        `remaining` units now and is not full again sooner than `reset`
        seconds; never raises it. (observe_headers does this from a response.)"""
        _check(lib.rq_observe(self._handle(), _encode(name), limit_index, remaining, int(max(0.0, reset) * 1e9)),
               "observe " + name)

    def observe_headers(self, name: str, headers: Any, _retry: bool = True) -> Tuple[dict, List[str]]:
        """Follows a provider's rate-limit headers (OpenAI x-ratelimit-*,
        Anthropic anthropic-ratelimit-*; see ratequeue.headers): the
        "requests" reading clamps the first request-cost rate limit of `name`,
        the "tokens" one the first load-cost rate limit. Malformed values are
        ignored and counted in self.malformed_headers. Returns (applied
        readings by kind, malformed header names)."""
        readings, malformed = _headers.parse(headers)
        if _retry:
            self.malformed_headers += len(malformed)
        if not readings:
            return {}, malformed
        limits = self._observe_map.get(name)
        if limits is None:
            limits = self._observe_map[name] = self.describe(name)
        applied = {}
        for kind, reading in readings.items():
            want = "request" if kind == "requests" else "load"
            for index, lim in enumerate(limits):
                if isinstance(lim, Rate) and lim.cost == want:
                    try:
                        self.observe(name, index, min(reading.remaining, 1 << 48), _time_to_burst(lim, reading))
                    except InvalidArgument:
                        if not _retry:
                            raise
                        # Redefined by another process since we cached its limits: once more, fresh.
                        self._observe_map.pop(name, None)
                        return self.observe_headers(name, headers, _retry=False)
                    applied[kind] = reading
                    break
        return applied, malformed

    def try_acquire(self, name: str, load: int = 1) -> Optional[Permit]:
        """A Permit if every limit allows `load` right now and nobody waits, else None."""
        try:
            return self.acquire(name, load, timeout=0)
        except WouldBlock:
            return None

    def limited(self, name: str, load: int = 1, timeout: Optional[float] = None) -> Callable[[F], F]:
        """Decorator: each call of the function holds a permit of `name`."""
        return _limited(lambda: self, name, load, timeout)


def _time_to_burst(lim, reading):
    """Seconds until the provider holds at least this limit's burst again,
    from its reading: with the provider's limit known and both refilling
    steadily, reset * (burst - remaining) / (limit - remaining); without it,
    0 (the remaining count alone is then trusted, at this limit's rate)."""
    burst = lim.burst or lim.amount
    if reading.reset is None or reading.remaining >= burst:
        return 0.0
    if reading.limit is None or reading.limit <= reading.remaining:
        return 0.0
    return reading.reset * min(1.0, (burst - reading.remaining) / float(reading.limit - reading.remaining))


def _limited(get_client, name, load, timeout):
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with get_client().acquire(name, load, timeout):
                return fn(*args, **kwargs)
        return call
    return wrap


# ---- Module-level functions on a default client ---------------------------------------

_default = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The module's Client on $RATEQUEUE_SEGMENT (else "ratequeue"), opened on
    first use. A forked child keeps using it: the library registers the child
    as a holder of its own on its first call."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def define(name: str, **kwargs: Any) -> None:
    """Client.define on the default client."""
    return default_client().define(name, **kwargs)


def describe(name: str) -> List[Limit]:
    """Client.describe on the default client."""
    return default_client().describe(name)


def acquire(name: str, load: int = 1, timeout: Optional[float] = None) -> Permit:
    """Waits in FIFO order until every limit of `name` allows `load` (on the
    default client); a Permit, to use in `with` or release(). timeout=None
    waits as long as it takes; Timeout when it passes first (at once when
    the buckets show it must)."""
    return default_client().acquire(name, load, timeout)


def try_acquire(name: str, load: int = 1) -> Optional[Permit]:
    """A Permit if every limit allows `load` now and nobody waits, else None."""
    return default_client().try_acquire(name, load)


def penalize(name: str, retry_after: float) -> None:
    """Client.penalize on the default client: every process pauses `name`."""
    return default_client().penalize(name, retry_after)


def observe_headers(name: str, headers: Any) -> Tuple[dict, List[str]]:
    """Client.observe_headers on the default client."""
    return default_client().observe_headers(name, headers)


def predict_wait(name: str, load: int = 1) -> float:
    """Client.predict_wait on the default client."""
    return default_client().predict_wait(name, load)


def limited(name: str, load: int = 1, timeout: Optional[float] = None) -> Callable[[F], F]:
    """Decorator on the default client (opened at the first call, not at import)."""
    return _limited(default_client, name, load, timeout)


def __getattr__(name):
    """`ratequeue.httpx` (the transports) and `ratequeue.aio` load on first
    use, so that `import ratequeue` needs no httpx."""
    if name in ("httpx", "aio"):
        import importlib
        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'ratequeue' has no attribute %r" % (name,))
