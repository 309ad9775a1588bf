"""A mock LLM provider: a standard-library HTTP server on 127.0.0.1 that
enforces requests per minute, tokens per minute and concurrency strictly, the
way the big providers do.

- POST /v1/chat/completions with a JSON body {"tokens": N} asks for N tokens.
- Rate limits are token buckets that refill continuously and hold one
  second's worth ("600 RPM" is enforced as 10 per second, as providers say
  they may). Requests count when they arrive; tokens count when the answer
  is done, at what it actually used (which differs from the client's
  estimate by up to `spread`). An arrival over the requests bucket, finding
  the token bucket in debt, or over the concurrency cap gets 429 with
  `retry-after` (whole seconds, rounded up) and `retry-after-ms`; so does a
  random `overload` fraction, as a loaded provider does.
- Every response carries `x-ratelimit-limit-*`, `x-ratelimit-remaining-*`
  and `x-ratelimit-reset-*` headers for requests and tokens, as OpenAI's API
  does.
- An accepted request takes `latency` seconds (uniform in a range) and
  answers 200 with {"usage": {"total_tokens": ACTUAL}}.

Stats (accepted, rejected, tokens, peak concurrency, arrival times) are kept
for the demo's report. Run it alone with: python3 demo/mock_provider.py
"""
import json
import math
import random
import sys
import threading
import time
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
                 overload_ms=250):
        self.rpm, self.tpm, self.concurrency = rpm, tpm, concurrency
        self.latency = latency
        self.spread, self.overload, self.overload_ms = spread, overload, overload_ms
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = Bucket(rpm, rpm / 60.0)
        self.tokens = Bucket(tpm, tpm / 60.0)
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

    def _headers(self, now):
        self.tokens.refill(now)
        self.requests.refill(now)
        headers = {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-remaining-requests": str(max(0, int(self.requests.level))),
            "x-ratelimit-remaining-tokens": str(max(0, int(self.tokens.level))),
            "x-ratelimit-reset-requests": _go_duration((self.requests.burst - self.requests.level) / self.requests.rate),
            "x-ratelimit-reset-tokens": _go_duration(max(0.0, self.tokens.burst - self.tokens.level) / self.tokens.rate),
        }
        return headers

    def admit(self, tokens):
        """(status, headers, delay, actual) for a request estimated at `tokens`."""
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
            actual = 0
            if reason is None:
                self.requests.level -= 1
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.ok += 1
                self.accepted.append((now, tokens))
                status = 200
                actual = max(1, round(tokens * self.random.uniform(1 - self.spread, 1 + self.spread)))
            else:
                self.rejected[reason] += 1
                status = 429
            headers = self._headers(now)
            if status == 429:
                headers["x-mock-reason"] = reason  # for the demo's report only
                headers["retry-after"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            delay = self.random.uniform(*self.latency) if status == 200 else 0.0
            return status, headers, delay, actual

    def done(self, actual):
        """The answer is complete: count its tokens. Returns the headers to send."""
        with self.lock:
            now = time.monotonic()
            self.tokens.refill(now)
            self.tokens.level -= actual
            self.in_flight -= 1
            self.used.append((now, actual))
            return self._headers(now)

    def snapshot(self):
        with self.lock:
            return {"ok": self.ok, "rejected": dict(self.rejected), "peak": self.peak,
                    "accepted": list(self.accepted), "used": list(self.used)}


def _handler(provider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real API client session

        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            try:
                tokens = int(json.loads(self.rfile.read(length))["tokens"])
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


if __name__ == "__main__":
    p = Provider(rpm=600, tpm=100_000, concurrency=4)
    with Server(p) as s:
        print("mock provider on http://127.0.0.1:%d/v1/chat/completions (Ctrl-C stops it)" % s.port)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
