"""A mock LLM provider: a standard-library HTTP server on 127.0.0.1 that
enforces requests per minute, tokens per minute and concurrency strictly, the
way the big providers document it, and answers in their shapes.

- Requests are quantized per second: "600 RPM" admits at most 10 in any
  second (a bucket of one second's worth, refilling continuously), as the
  providers say they may enforce it. Tokens are a per-minute budget: a bucket
  holding the whole minute (`token_burst_seconds`, 60 by default), so that
  any single request the quota allows is admitted.
- Requests count when they arrive; tokens count when the answer is done, at
  what it actually used. An arrival over the requests bucket, finding the
  token bucket in debt, or over the concurrency cap gets 429 with
  `retry-after` (whole seconds, rounded up) and `retry-after-ms`; a random
  `overload` fraction is refused as overloaded, as a loaded provider does.
- Three request shapes:
  * POST /v1/chat/completions with an OpenAI body (model, messages,
    max_tokens or max_completion_tokens, stream, stream_options): an OpenAI
    chat.completion, or with "stream": true an SSE stream of
    chat.completion.chunk events, ending with a usage chunk when
    stream_options.include_usage is set, then `data: [DONE]`. Overloaded: 503.
  * POST /v1/messages with an Anthropic body (model, system, messages,
    max_tokens, stream): an Anthropic message, or an SSE stream of
    message_start ... message_delta (usage) ... message_stop. Overloaded: 529.
  * POST with {"tokens": N} (the demo's batch workers): 200 with
    {"usage": {"total_tokens": ACTUAL}}, actual = N within +-`spread`.
    Overloaded: 429.
  The prompt counts characters / 4 tokens; the completion uses between a
  quarter of max_tokens and all of it.
- Every response carries rate-limit headers: OpenAI's x-ratelimit-* or
  Anthropic's anthropic-ratelimit-* (by the shape asked for).
- An accepted request takes `latency` seconds (uniform in a range).

Stats (accepted, rejected, tokens, peak concurrency, arrival times) are kept
for the demo's report and the tests. Run it alone with:
python3 demo/mock_provider.py
"""
import datetime
import json
import math
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Bucket:
    """A token bucket: `per_minute` units a minute, holding `burst` units."""

    def __init__(self, per_minute, burst):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.level = float(burst)
        self.stamp = time.monotonic()

    def refill(self, now):
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost):
        """Seconds until `cost` fits (0 when it fits now)."""
        return 0.0 if cost <= self.level else (cost - self.level) / self.rate


def _go_duration(seconds):
    """Seconds as OpenAI writes its reset headers: 6m0s, 1.5s, 12ms."""
    if seconds < 1:
        return "%dms" % max(0, round(seconds * 1000))
    m, s = divmod(seconds, 60)
    return "%dm%.3gs" % (m, s) if m else "%.3gs" % s


class Provider:
    """Requests are counted when they arrive; tokens when the answer is done,
    at what the request actually used (like output tokens): an arrival finds
    the token bucket in debt (below zero) gets 429, as does one over the
    requests bucket or the concurrency cap. `spread` makes actual usage differ
    from the client's estimate by up to that fraction either way; `overload`
    is the probability of a 429 for simulated overload (retry-after-ms
    `overload_ms`), whatever the limits say."""

    def __init__(self, rpm, tpm, concurrency, latency=(0.1, 0.3), seed=None, spread=0.0, overload=0.0,
                 overload_ms=250, token_burst_seconds=60.0):
        self.rpm, self.tpm, self.concurrency = rpm, tpm, concurrency
        self.latency = latency
        self.spread, self.overload, self.overload_ms = spread, overload, overload_ms
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = Bucket(rpm, rpm / 60.0)
        self.tokens = Bucket(tpm, tpm * token_burst_seconds / 60.0)
        self.reset_stats()

    def reset_stats(self):
        with self.lock:
            now = time.monotonic()
            self.requests.level, self.requests.stamp = self.requests.burst, now
            self.tokens.level, self.tokens.stamp = self.tokens.burst, now
            self.in_flight = 0
            self.peak = 0
            self.ok = 0
            self.rejected = {"requests": 0, "tokens": 0, "concurrency": 0, "overload": 0}
            self.accepted = []  # (arrival time, estimated tokens)
            self.used = []      # (completion time, actual tokens)

    def _headers(self, now, shape="openai"):
        self.tokens.refill(now)
        self.requests.refill(now)
        if shape == "anthropic":  # resets as RFC 3339 times
            wall = datetime.datetime.now(datetime.timezone.utc)

            def at(seconds):
                return (wall + datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
            return {
                "anthropic-ratelimit-requests-limit": str(self.rpm),
                "anthropic-ratelimit-requests-remaining": str(max(0, int(self.requests.level))),
                "anthropic-ratelimit-requests-reset": at((self.requests.burst - self.requests.level) /
                                                         self.requests.rate),
                "anthropic-ratelimit-tokens-limit": str(self.tpm),
                "anthropic-ratelimit-tokens-remaining": str(max(0, int(self.tokens.level))),
                "anthropic-ratelimit-tokens-reset": at(max(0.0, self.tokens.burst - self.tokens.level) /
                                                       self.tokens.rate),
            }
        headers = {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-remaining-requests": str(max(0, int(self.requests.level))),
            "x-ratelimit-remaining-tokens": str(max(0, int(self.tokens.level))),
            "x-ratelimit-reset-requests": _go_duration((self.requests.burst - self.requests.level) / self.requests.rate),
            "x-ratelimit-reset-tokens": _go_duration(max(0.0, self.tokens.burst - self.tokens.level) / self.tokens.rate),
        }
        return headers

    def admit(self, tokens, actual=None, shape="openai"):
        """(status, headers, delay, actual) for a request estimated at `tokens`
        (its actual usage: `actual`, else `tokens` within the spread)."""
        with self.lock:
            now = time.monotonic()
            self.requests.refill(now)
            self.tokens.refill(now)
            reason, wait = None, 0.0
            if self.in_flight >= self.concurrency:
                reason, wait = "concurrency", 0.05
            elif self.requests.level < 1:
                reason, wait = "requests", self.requests.wait_for(1)
            elif self.tokens.level < 0:
                reason, wait = "tokens", -self.tokens.level / self.tokens.rate
            elif self.overload and self.random.random() < self.overload:
                reason, wait = "overload", self.overload_ms / 1000.0
            if reason is None:
                self.requests.level -= 1
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.ok += 1
                self.accepted.append((now, tokens))
                status = 200
                if actual is None:
                    actual = max(1, round(tokens * self.random.uniform(1 - self.spread, 1 + self.spread)))
            else:
                self.rejected[reason] += 1
                status = 429
                actual = 0
            headers = self._headers(now, shape)
            if status == 429:
                headers["x-mock-reason"] = reason  # for the demo's report only
                headers["retry-after"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            delay = self.random.uniform(*self.latency) if status == 200 else 0.0
            return status, headers, delay, actual

    def done(self, actual, shape="openai"):
        """The answer is complete: count its tokens. Returns the headers to send."""
        with self.lock:
            now = time.monotonic()
            self.tokens.refill(now)
            self.tokens.level -= actual
            self.in_flight -= 1
            self.used.append((now, actual))
            return self._headers(now, shape)

    def snapshot(self):
        with self.lock:
            return {"ok": self.ok, "rejected": dict(self.rejected), "peak": self.peak,
                    "accepted": list(self.accepted), "used": list(self.used)}


def _text_chars(value):
    """Characters of text in a request's messages (strings under any key but
    the structural ones)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for k, v in value.items() if k not in ("role", "type", "cache_control"))
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


class _Shape:
    """What an OpenAI or Anthropic request asked for, and how to answer it."""

    def __init__(self, kind, body, rng):
        self.kind = kind  # "openai" or "anthropic"
        self.model = str(body.get("model") or "mock-model")
        self.stream = bool(body.get("stream"))
        opts = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        prompt_fields = ("messages",) if kind == "openai" else ("system", "messages")
        self.prompt = max(1, math.ceil(sum(_text_chars(body.get(f)) for f in prompt_fields) / 4))
        most = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        if isinstance(most, bool) or not isinstance(most, int) or most <= 0:
            raise ValueError("max_tokens must be a positive integer")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise ValueError("messages must be a non-empty list")
        self.max_tokens = most
        self.completion = rng.randint(max(1, most // 4), most)
        self.estimate = self.prompt + most
        self.actual = self.prompt + self.completion
        self.id = ("chatcmpl-" if kind == "openai" else "msg_") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def pieces(self, n):
        words = [_WORDS[i % len(_WORDS)] for i in range(self.completion)]
        step = max(1, math.ceil(len(words) / n))
        return [" ".join(words[i:i + step]) + " " for i in range(0, len(words), step)]

    def body(self):
        text = "".join(self.pieces(1))
        if self.kind == "openai":
            return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                              "total_tokens": self.actual}}
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": self.prompt, "output_tokens": self.completion}}

    def events(self, n):
        """The SSE events of a streamed answer in `n` pieces (bytes each)."""
        def data(obj, event=None):
            head = ("event: %s\n" % event) if event else ""
            return (head + "data: " + json.dumps(obj) + "\n\n").encode()
        out = []
        if self.kind == "openai":
            def chunk(delta, finish=None):
                obj = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                         "finish_reason": finish}]}
                if self.include_usage:
                    obj["usage"] = None
                return data(obj)
            out.append(chunk({"role": "assistant", "content": ""}))
            out += [chunk({"content": p}) for p in self.pieces(n)]
            out.append(chunk({}, "stop"))
            if self.include_usage:
                out.append(data({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "choices": [],
                                 "usage": {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                                           "total_tokens": self.actual}}))
            out.append(b"data: [DONE]\n\n")
            return out
        out.append(data({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.prompt, "output_tokens": 1}}}, "message_start"))
        out.append(data({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                        "content_block_start"))
        out += [data({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                     "content_block_delta") for p in self.pieces(n)]
        out.append(data({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        out.append(data({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                         "usage": {"output_tokens": self.completion}}, "message_delta"))
        out.append(data({"type": "message_stop"}, "message_stop"))
        return out

    def error(self, reason, message):
        """(status, body) of a refusal."""
        if self.kind == "openai":
            if reason == "overload":
                return 503, {"error": {"message": "The server is overloaded, please retry", "type": "server_error",
                                       "code": "overloaded"}}
            return 429, {"error": {"message": message, "type": reason, "code": "rate_limit_exceeded"}}
        if reason == "overload":
            return 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return 429, {"type": "error", "error": {"type": "rate_limit_error", "message": message}}


def _handler(provider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real API client session

        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as e:
                return self._reply(400, {}, {"error": {"message": "invalid JSON body: %s" % e,
                                                       "type": "invalid_request_error"}})
            path = self.path.split("?")[0].rstrip("/")
            if "tokens" in body:
                return self._tokens(body)
            kind = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}.get(path)
            if kind is None:
                return self._reply(404, {}, {"error": {"message": "unknown path %s" % path,
                                                       "type": "invalid_request_error"}})
            try:
                shape = _Shape(kind, body, provider.random)
            except ValueError as e:
                return self._reply(400, {}, {"error": {"message": str(e), "type": "invalid_request_error"}})
            status, headers, delay, actual = provider.admit(shape.estimate, shape.actual, kind)
            if status != 200:
                reason = headers["x-mock-reason"]
                code, err = shape.error(reason, "Rate limit reached for %s" % reason)
                return self._reply(code, headers, err)
            headers["request-id" if kind == "anthropic" else "x-request-id"] = shape.id
            if not shape.stream:
                time.sleep(delay)
                headers.update(provider.done(actual, kind))
                return self._reply(200, headers, shape.body())
            events = shape.events(8)
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for i, event in enumerate(events):
                    if i == len(events) - 1:
                        provider.done(actual, kind)  # counted before the last event leaves
                    else:
                        time.sleep(delay / len(events))
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except ConnectionError:
                self.close_connection = True

        def _tokens(self, body):
            try:
                tokens = int(body["tokens"])
                if tokens <= 0:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return self._reply(400, {}, {"error": "body must be {\"tokens\": N} with N > 0"})
            status, headers, delay, actual = provider.admit(tokens)
            if status != 200:
                kind = "overloaded_error" if headers["x-mock-reason"] == "overload" else "rate_limit_exceeded"
                return self._reply(status, headers, {"error": {"type": kind}})
            time.sleep(delay)  # "generating"
            headers = provider.done(actual)  # counted before the answer leaves, as a real server does
            self._reply(200, headers, {"usage": {"total_tokens": actual}})

        def _reply(self, status, headers, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away (a worker stopped mid-request) is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """The provider on a free port of 127.0.0.1, served by a background thread."""

    def __init__(self, provider):
        self.provider = provider
        self.httpd = _HTTPServer(("127.0.0.1", 0), _handler(provider))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mock-provider", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


def main(argv=None):
    """Serves until stdin closes or Ctrl-C; prints "port N" first (for tests
    in other languages that start it)."""
    import argparse
    ap = argparse.ArgumentParser(description="the demo's mock LLM provider")
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--tpm", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency", type=float, nargs=2, default=(0.1, 0.3), metavar=("MIN", "MAX"))
    ap.add_argument("--overload", type=float, default=0.0)
    ap.add_argument("--overload-ms", type=int, default=250)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--stats-on-exit", action="store_true", help="print the stats as JSON when stdin closes")
    args = ap.parse_args(argv)
    p = Provider(rpm=args.rpm, tpm=args.tpm, concurrency=args.concurrency, latency=tuple(args.latency),
                 seed=args.seed, overload=args.overload, overload_ms=args.overload_ms)
    with Server(p) as s:
        print("port %d" % s.port, flush=True)
        print("mock provider on http://127.0.0.1:%d (POST /v1/chat/completions, /v1/messages; Ctrl-C or closing "
              "stdin stops it)" % s.port, file=sys.stderr, flush=True)
        try:
            for line in sys.stdin:  # a line "stats" prints the stats; end of input stops
                if line.strip() == "stats":
                    snap = p.snapshot()
                    print(json.dumps({"ok": snap["ok"], "rejected": snap["rejected"], "peak": snap["peak"],
                                      "used": [t for _, t in snap["used"]]}), flush=True)
                elif line.strip() == "reset":
                    p.reset_stats()
                    print("reset", flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
