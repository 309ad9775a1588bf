"""httpx transports that coordinate every request of an HTTP client, such as
the official OpenAI and Anthropic SDKs, with no other code:

    import httpx, openai, anthropic
    import ratequeue as rq

    rq.define("openai", rpm=500, tpm=200_000)
    client = openai.OpenAI(max_retries=0,
                           http_client=httpx.Client(transport=rq.httpx.Transport("openai")))
    aclient = anthropic.AsyncAnthropic(max_retries=0,
                                       http_client=httpx.AsyncClient(transport=rq.httpx.AsyncTransport("anthropic")))

For each request the transport
  1. estimates its load (tokens) from the body: for OpenAI chat completions,
     completions, responses and embeddings and for Anthropic messages, the
     prompt's characters / 4 plus max_tokens (max_completion_tokens,
     max_output_tokens; `default_max_tokens` when the body gives none), times
     `n` choices; or what the caller's `estimate(request)` returns. Any other
     request is passed through unchanged with a load of 1 (it counts as one
     request);
  2. acquires that load on the resource, waiting in line for at most the
     request's httpx pool timeout (or `timeout=`); when that passes first it
     raises httpx.PoolTimeout, which the SDKs report as a timeout;
  3. sends the request through the wrapped transport;
  4. settles the usage the response reports (`usage`: total_tokens, or
     input + cache-creation + output tokens for Anthropic). A streamed (SSE)
     response is settled when its stream is closed, from its last usage event
     (OpenAI's `stream_options={"include_usage": True}`, Anthropic's
     message_start + message_delta); without usage the estimate stands;
  5. follows the rate-limit headers (Client.observe_headers);
  6. on 429, 529, or a 503 whose body says "overloaded", settles 0,
     penalizes the resource for the response's retry-after-ms / retry-after
     (every process on the machine then waits it out, in line) and retries
     from the line, at most `max_retries` times; then it returns the last
     such response. Turn the SDK's own retries off (max_retries=0) so that
     retries wait in line instead of sleeping outside it.
"""
from __future__ import annotations

import json
import math
import time
import zlib
from typing import Any, Callable, Optional

import httpx

from . import Client, Timeout, WouldBlock, default_client
from . import aio as _aio
from .headers import parse_retry_after

__all__ = ["Transport", "AsyncTransport", "estimate_load", "usage_tokens"]

DEFAULT_MAX_TOKENS = 1024  # the output a body that names no max_tokens is assumed to produce
_BACKOFF_S, _BACKOFF_MAX_S = 1.0, 30.0  # a retryable answer without retry-after: 1, 2, 4 ... 30 s
_MAX_BODY = 32 << 20  # a request body larger than this is not parsed for an estimate
_MAX_LINE = 1 << 20   # an SSE line longer than this is passed through unparsed

# Keys whose strings are not prompt text (ids, roles, media and their URLs).
_NOT_TEXT = frozenset(("role", "type", "id", "name", "model", "image_url", "source", "data", "file_data", "url",
                       "image", "audio", "input_audio", "file_id", "cache_control", "signature", "tool_call_id",
                       "tool_use_id", "media_type", "detail", "format"))
# Per endpoint (by the path's ending): the fields holding prompt text, the
# fields naming the most output tokens (the first present wins), and whether
# it produces output at all.
_ENDPOINTS = (
    ("/chat/completions", ("messages", "tools", "functions"), ("max_completion_tokens", "max_tokens"), True),
    ("/completions", ("prompt", "suffix"), ("max_tokens",), True),
    ("/responses", ("input", "instructions", "tools"), ("max_output_tokens",), True),
    ("/embeddings", ("input",), (), False),
    ("/messages", ("system", "messages", "tools"), ("max_tokens",), True),
)


def _chars(value, key=None):
    """Characters of prompt text in a JSON value (a token id in a list counts as 4)."""
    if key in _NOT_TEXT:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v, k) for k, v in value.items())
    if isinstance(value, list):
        return sum(4 if isinstance(v, int) and not isinstance(v, bool) else _chars(v) for v in value)
    return 0


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def estimate_load(request: httpx.Request, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> int:
    """The tokens a request may use, as the transport estimates them (at least
    1); 1 for a request it does not understand."""
    if request.method != "POST":
        return 1
    path = request.url.path.rstrip("/")
    endpoint = next((e for e in _ENDPOINTS if path.endswith(e[0])), None)
    if endpoint is None:
        return 1
    try:
        content = request.content
    except httpx.RequestNotRead:
        return 1
    if not content or len(content) > _MAX_BODY:
        return 1
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return 1
    if not isinstance(body, dict):
        return 1
    _, prompt_fields, max_fields, produces = endpoint
    prompt = sum(_chars(body.get(f)) for f in prompt_fields)
    output = 0
    if produces:
        output = next((c for c in (_count(body.get(f)) for f in max_fields) if c is not None), default_max_tokens)
        n = _count(body.get("n"))
        output *= n if n else 1
    return max(1, math.ceil(prompt / 4) + output)


def usage_tokens(usage: Any) -> Optional[int]:
    """The tokens a response's `usage` object reports, or None: total_tokens
    (OpenAI), else input + cache-creation + output tokens (Anthropic; reads
    from the cache are not counted, as Anthropic's input limit does not)."""
    if not isinstance(usage, dict):
        return None
    total = _count(usage.get("total_tokens"))
    if total is not None:
        return total
    parts = [_count(usage.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "output_tokens",
                                            "prompt_tokens", "completion_tokens")]
    if all(p is None for p in parts):
        return None
    return sum(p for p in parts if p is not None)


def _usage_of(event):
    """The usage object an SSE event or a JSON body carries, or None."""
    if not isinstance(event, dict):
        return None
    for holder in (event, event.get("response"), event.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return holder["usage"]
    return None


class _Decoder:
    """Content-Encoding undone incrementally (identity, gzip, deflate); None
    output for an encoding it cannot undo."""

    def __init__(self, encoding):
        encoding = (encoding or "identity").strip().lower()
        self.ok = encoding in ("identity", "", "gzip", "x-gzip", "deflate")
        self.z = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "x-gzip", "deflate") else None

    def feed(self, chunk):
        if not self.ok:
            return b""
        if self.z is None:
            return chunk
        try:
            return self.z.decompress(chunk)
        except zlib.error:
            self.ok = False
            return b""


class _Usage:
    """Collects the usage of a streamed (SSE) response as its bytes pass by:
    the fields of every usage object seen, the latest value of each kept
    (Anthropic sends input tokens at the start and output tokens at the end)."""

    def __init__(self, encoding):
        self.decoder = _Decoder(encoding)
        self.buf = b""
        self.data = []
        self.usage = {}

    def feed(self, chunk):
        self.buf += self.decoder.feed(chunk)
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > _MAX_LINE:
                    self.buf = b""  # an absurd line: skip it
                    self.data = []
                return
            line, self.buf = self.buf[:nl].rstrip(b"\r"), self.buf[nl + 1:]
            if not line:
                self._event()
            elif line.startswith(b"data:"):
                self.data.append(line[5:].lstrip(b" "))

    def _event(self):
        data, self.data = b"\n".join(self.data), []
        if b'"usage"' not in data:  # parse only what can carry usage
            return
        try:
            usage = _usage_of(json.loads(data))
        except (ValueError, UnicodeDecodeError):
            return
        if usage:
            self.usage.update({k: v for k, v in usage.items() if _count(v) is not None})

    def total(self):
        if self.data:
            self._event()  # a last event not followed by a blank line
        return usage_tokens(self.usage) if self.usage else None


def _is_sse(response):
    return response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def _retryable(status, content):
    """429 and 529 always; 503 only when its body says overloaded."""
    return status in (429, 529) or (status == 503 and b"overloaded" in content.lower())


class _Policy:
    """What both transports share: the options, the estimate and the settling."""

    def __init__(self, resource, client, estimate, max_retries, timeout, default_max_tokens):
        if not isinstance(resource, str) or not resource:
            raise ValueError("resource must be a non-empty str, not %r" % (resource,))
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be an int >= 0, not %r" % (max_retries,))
        if timeout is not _FROM_REQUEST and timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError("timeout must be None or a number of seconds >= 0, not %r" % (timeout,))
        if estimate is not None and not callable(estimate):
            raise TypeError("estimate must be a callable(request) -> int, not %r" % (estimate,))
        self.resource = resource
        self._client = client
        self.estimate = estimate
        self.max_retries = max_retries
        self.timeout = timeout
        self.default_max_tokens = default_max_tokens
        self.retried = 0  # retries taken after a 429/529/overloaded, over the transport's life

    @property
    def client(self):
        return self._client or default_client()

    def load(self, request):
        if self.estimate is not None:
            n = self.estimate(request)
            if n is not None:
                if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
                    raise ValueError("estimate returned %r; it must return an int > 0 or None" % (n,))
                return n
        return estimate_load(request, self.default_max_tokens)

    def deadline(self, request):
        timeout = self.timeout
        if timeout is _FROM_REQUEST:
            timeout = (request.extensions.get("timeout") or {}).get("pool")
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def left(deadline):
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def timed_out(self, request, error):
        return httpx.PoolTimeout("ratequeue: %s (resource %r)" % (error, self.resource), request=request)

    def observe(self, response):
        self.client.observe_headers(self.resource, response.headers)

    def pause(self, response, attempt):
        """Penalizes the resource for what a retryable response asks."""
        wait = parse_retry_after(response.headers)
        if wait is None:
            wait = min(_BACKOFF_MAX_S, _BACKOFF_S * (1 << min(attempt, 16)))
        self.client.penalize(self.resource, wait)

    @staticmethod
    def streamed(response, permit, request, stream_class):
        """A streamed (SSE) answer handed up at once, settled when closed."""
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=stream_class(response.stream, permit, response.headers.get("content-encoding")),
                              extensions=response.extensions, request=request)

    def answered(self, permit, response, raw, request, attempt):
        """A read answer: (the response to hand up, whether to retry in line).
        A retryable refusal is settled at 0 and penalized."""
        out = self.rebuild(response, raw, request)
        if not _retryable(out.status_code, out.content):
            self.settle_body(permit, out)
            return out, False
        permit.settle(0)  # refused: it used nothing
        self.pause(out, attempt)
        if attempt < self.max_retries:
            self.retried += 1
        return out, True

    @staticmethod
    def rebuild(response, raw, request):
        """A response whose body was read here, for the caller to read again."""
        return httpx.Response(response.status_code, headers=response.headers, content=raw,
                              extensions=response.extensions, request=request)

    @staticmethod
    def settle_body(permit, response):
        try:
            total = usage_tokens(_usage_of(json.loads(response.content)))
        except (ValueError, UnicodeDecodeError, httpx.DecodingError):
            total = None
        if total is not None:
            permit.settle(total)


_FROM_REQUEST = object()


class _SettlingStream:
    """A response stream passed through unchanged; its usage is settled and
    the permit released when it is closed (or garbage-collected)."""

    def __init__(self, stream, permit, encoding):
        self._stream = stream
        self._permit = permit
        self._usage = _Usage(encoding)

    def _finish(self):
        permit, self._permit = self._permit, None
        if permit is not None and permit.held:
            try:
                total = self._usage.total()
                if total is not None:
                    permit.settle(total)
            finally:
                permit.release()

    def __del__(self):
        try:
            self._finish()
        except Exception:  # at interpreter exit the library may be gone; the process's exit frees the permit
            pass


class _SyncSettlingStream(_SettlingStream, httpx.SyncByteStream):
    def __iter__(self):
        for chunk in self._stream:
            self._usage.feed(chunk)
            yield chunk

    def close(self):
        try:
            if hasattr(self._stream, "close"):
                self._stream.close()
        finally:
            self._finish()


class _AsyncSettlingStream(_SettlingStream, httpx.AsyncByteStream):
    async def __aiter__(self):
        async for chunk in self._stream:
            self._usage.feed(chunk)
            yield chunk

    async def aclose(self):
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            self._finish()


class Transport(httpx.BaseTransport):
    """An httpx transport that acquires `resource` around every request it
    passes to `transport` (default: httpx.HTTPTransport()). Options:
    `client` (a ratequeue.Client; default: the module's default client),
    `estimate(request) -> int | None` (None: the built-in estimate),
    `max_retries` after a 429/529/overloaded (default 3), `timeout` (seconds
    to wait in line; default: the request's pool timeout),
    `default_max_tokens` (the output assumed when a body names none)."""

    def __init__(self, resource: str, transport: Optional[httpx.BaseTransport] = None, *,
                 client: Optional[Client] = None,
                 estimate: Optional[Callable[[httpx.Request], Optional[int]]] = None, max_retries: int = 3,
                 timeout: Any = _FROM_REQUEST, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self._policy = _Policy(resource, client, estimate, max_retries, timeout, default_max_tokens)
        self._inner = transport if transport is not None else httpx.HTTPTransport()

    @property
    def retried(self) -> int:
        """Retries taken after a 429/529/overloaded answer, over this transport's life."""
        return self._policy.retried

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy
        load = policy.load(request)
        deadline = policy.deadline(request)
        last = None
        for attempt in range(policy.max_retries + 1):
            try:
                permit = policy.client.acquire(policy.resource, load, timeout=policy.left(deadline))
            except (Timeout, WouldBlock) as e:
                if last is not None:
                    return last  # out of time to retry: the provider's answer stands
                raise policy.timed_out(request, e) from e
            try:
                response = self._inner.handle_request(request)
                policy.observe(response)
                if _is_sse(response) and response.status_code < 400:
                    permit_out, permit = permit, None
                    return policy.streamed(response, permit_out, request, _SyncSettlingStream)
                try:
                    raw = b"".join(response.stream)
                finally:
                    if hasattr(response.stream, "close"):
                        response.stream.close()
                last, retry = policy.answered(permit, response, raw, request, attempt)
                if not retry:
                    return last
            finally:
                if permit is not None:
                    permit.release()
            # (a retry goes round: the permit was released, the penalty is in place)
        return last

    def close(self):
        self._inner.close()


class AsyncTransport(httpx.AsyncBaseTransport):
    """Transport's asyncio twin, for httpx.AsyncClient (default inner
    transport: httpx.AsyncHTTPTransport()). Waiting in line never blocks the
    event loop (ratequeue.aio), and cancelling the request leaves the line."""

    def __init__(self, resource: str, transport: Optional[httpx.AsyncBaseTransport] = None, *,
                 client: Optional[Client] = None,
                 estimate: Optional[Callable[[httpx.Request], Optional[int]]] = None, max_retries: int = 3,
                 timeout: Any = _FROM_REQUEST, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self._policy = _Policy(resource, client, estimate, max_retries, timeout, default_max_tokens)
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()

    @property
    def retried(self) -> int:
        """Retries taken after a 429/529/overloaded answer, over this transport's life."""
        return self._policy.retried

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy
        load = policy.load(request)
        deadline = policy.deadline(request)
        last = None
        for attempt in range(policy.max_retries + 1):
            try:
                permit = await _aio.acquire(policy.resource, load, policy.left(deadline), client=policy.client)
            except (Timeout, WouldBlock) as e:
                if last is not None:
                    return last
                raise policy.timed_out(request, e) from e
            try:
                response = await self._inner.handle_async_request(request)
                policy.observe(response)
                if _is_sse(response) and response.status_code < 400:
                    permit_out, permit = permit, None
                    return policy.streamed(response, permit_out, request, _AsyncSettlingStream)
                try:
                    raw = b"".join([chunk async for chunk in response.stream])
                finally:
                    if hasattr(response.stream, "aclose"):
                        await response.stream.aclose()
                last, retry = policy.answered(permit, response, raw, request, attempt)
                if not retry:
                    return last
            finally:
                if permit is not None:
                    permit.release()
        return last

    async def aclose(self):
        await self._inner.aclose()
