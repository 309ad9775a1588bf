"""A mock LLM provider: a standard-library HTTP server on 127.0.0.1 that
enforces requests per minute, tokens per minute and concurrency strictly, the
way the big providers do.

- POST /v1/chat/completions with a JSON body {"tokens": N} asks for N tokens.
- Rate limits are token buckets that refill continuously and hold one
  second's worth ("600 RPM" is enforced as 10 per second, as providers say
  they may). A request that does not fit every limit, or that would exceed
  the concurrency cap, gets 429 with `retry-after` (whole seconds, rounded
  up) and `retry-after-ms`.
- Every response carries `x-ratelimit-limit-*` and `x-ratelimit-remaining-*`
  headers for requests and tokens, as OpenAI's API does.
- An accepted request takes `latency` seconds (uniform in a range) and
  answers 200 with {"usage": {"total_tokens": N}}.

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


class Provider:
    def __init__(self, rpm, tpm, concurrency, latency=(0.1, 0.3), seed=None):
        self.rpm, self.tpm, self.concurrency = rpm, tpm, concurrency
        self.latency = latency
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
            self.rejected = {"requests": 0, "tokens": 0, "concurrency": 0}
            self.accepted = []  # (arrival time, tokens)

    def admit(self, tokens):
        """(status, headers) for a request of `tokens`, taking from every limit or none."""
        with self.lock:
            now = time.monotonic()
            self.requests.refill(now)
            self.tokens.refill(now)
            reason, wait = None, 0.0
            if self.in_flight >= self.concurrency:
                reason, wait = "concurrency", 0.05
            else:
                for name, bucket, cost in (("requests", self.requests, 1), ("tokens", self.tokens, tokens)):
                    w = bucket.wait_for(cost)
                    if w > wait:
                        reason, wait = name, w
            if reason is None:
                self.requests.level -= 1
                self.tokens.level -= tokens
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.ok += 1
                self.accepted.append((now, tokens))
                status = 200
            else:
                self.rejected[reason] += 1
                status = 429
            headers = {
                "x-ratelimit-limit-requests": str(self.rpm),
                "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-requests": str(int(self.requests.level)),
                "x-ratelimit-remaining-tokens": str(int(self.tokens.level)),
            }
            if status == 429:
                headers["retry-after"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            delay = self.random.uniform(*self.latency) if status == 200 else 0.0
            return status, headers, delay

    def done(self):
        with self.lock:
            self.in_flight -= 1

    def snapshot(self):
        with self.lock:
            return {"ok": self.ok, "rejected": dict(self.rejected), "peak": self.peak,
                    "accepted": list(self.accepted)}


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
            status, headers, delay = provider.admit(tokens)
            if status != 200:
                return self._reply(status, headers, {"error": {"type": "rate_limit_exceeded"}})
            time.sleep(delay)  # "generating"
            provider.done()  # counted out before the answer leaves, as a real server does
            self._reply(200, headers, {"usage": {"total_tokens": tokens}})

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
