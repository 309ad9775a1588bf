"""The ratequeue demo: a batch job of worker processes calling a rate-limited
LLM API, first without coordination, then sharing the quota through ratequeue.

    bash scripts/demo                       # installs, builds, runs this
    bash scripts/demo --hosts 3             # 3 hosts of 4 workers: alone, then through Redis
    python3 demo/llm_batch.py --help

A mock provider (demo/mock_provider.py) runs on 127.0.0.1 and enforces
requests/min (quantized per second), tokens/min (a per-minute budget) and
concurrency strictly, answering 429 with retry-after. Each phase starts N
worker processes that send requests with random token loads for a fixed
time:

  1. no coordination: each worker sends as fast as it can and, on a 429,
     waits what retry-after-ms says, as the official SDKs do, and retries;
  2. with ratequeue, by hand: each worker wraps its call in
     client.acquire(load=estimate), settles the actual usage the response
     reports, follows the x-ratelimit headers, and on a 429 (the provider
     also refuses a few requests as overloaded) penalizes the resource for
     the retry-after so that every worker backs off, keeping its place in
     line;
  3. with ratequeue, one line: OpenAI-shaped chat completions through
     httpx.Client(transport=ratequeue.httpx.Transport("mock-llm")), which
     does all of that itself (skipped without httpx).

The provider counts tokens when an answer is done, at what it actually used,
which differs from the client's estimate by up to +-50% (--spread). The
report compares the phases: 429s, requests and tokens used, waits, and the
utilisation of the quota: what the provider counted over what it allows in
the phase (its full bucket plus the rate from the first request to the last
answer).

ratequeue is defined with the provider's rates and buckets less a margin
(define_limits): half a second's worth of requests absorbs the time between
admission and arrival at the provider, and the largest request's tokens what
a request may use beyond its estimate before its settle arrives.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import os
import pathlib
import random
import signal
import sys
import threading
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import ratequeue as rq
except ImportError:  # a source checkout: the package sits in python/
    sys.path.insert(0, str(_HERE.parent / "python"))
    import ratequeue as rq

import mock_provider  # noqa: E402

RESOURCE = "mock-llm"


def _post(conn, tokens):
    """(status, headers, tokens actually used) for a request estimated at `tokens`."""
    body = json.dumps({"tokens": tokens})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    used = data.get("usage", {}).get("total_tokens", 0) if resp.status == 200 else 0
    return resp.status, resp.headers, used


def worker(port, coordinated, segment, seconds, seed, lo, hi, results, redis_url=""):
    """One worker process: sends requests until `seconds` pass, each one until
    it is accepted; puts (rate-limit 429s, overload 429s, [seconds from first
    try to acceptance]) on `results`.

    With ratequeue it acquires with the estimate, settles the actual usage the
    response reports, follows the provider's x-ratelimit headers, and on a
    429 settles 0 (nothing was used) and penalizes the resource for the
    retry-after, so that every worker backs off, then tries again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    client = rq.Client(segment, redis_url=redis_url) if coordinated else None
    end = time.monotonic() + seconds
    rate_429 = overload_429 = 0
    waits = []
    try:
        while time.monotonic() < end:
            tokens = rng.randint(lo, hi)  # the estimate (prompt + expected completion)
            asked = time.monotonic()
            while True:  # the same request until it goes through
                left = end - time.monotonic()
                if left <= 0:
                    break
                if coordinated:
                    try:
                        permit = client.acquire(RESOURCE, load=tokens, timeout=left)
                    except rq.Timeout:
                        break
                    with permit:
                        status, headers, used = _post(conn, tokens)
                        permit.settle(used)
                        client.observe_headers(RESOURCE, headers)
                else:
                    status, headers, used = _post(conn, tokens)
                if status != 429:
                    waits.append(time.monotonic() - asked)
                    break
                if headers.get("x-mock-reason") == "overload":
                    overload_429 += 1
                else:
                    rate_429 += 1
                retry = int(headers.get("retry-after-ms") or 1000) / 1000.0
                if coordinated:
                    client.penalize(RESOURCE, retry_after=retry)  # every worker backs off, in line
                else:
                    time.sleep(retry)
    finally:
        results.put((rate_429, overload_429, waits))
        conn.close()
        if client is not None:
            client.close()


def worker_transport(port, coordinated, segment, seconds, seed, lo, hi, results, redis_url=""):
    """The one-line version: OpenAI-shaped chat completions through an httpx
    client whose transport is ratequeue.httpx.Transport. The transport
    estimates each request from its body, acquires, settles the usage the
    answer reports, follows the headers, and retries 429s and overloads in
    line; this loop is a plain HTTP client. Puts what `worker` puts."""
    import httpx
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(seed)
    client = rq.Client(segment, redis_url=redis_url)
    transport = rq.httpx.Transport(RESOURCE, client=client)
    end = time.monotonic() + seconds
    rate_429 = 0
    waits = []
    try:
        with httpx.Client(transport=transport, base_url="http://127.0.0.1:%d" % port, timeout=30) as http:
            while time.monotonic() < end:
                load = rng.randint(lo, hi)  # prompt (chars / 4) + max_tokens, as the transport estimates it
                prompt_tokens = max(1, load // 2)
                body = {"model": "gpt-mock", "max_tokens": load - prompt_tokens,
                        "messages": [{"role": "user", "content": "x" * (4 * prompt_tokens)}]}
                asked = time.monotonic()
                try:
                    r = http.post("/v1/chat/completions", json=body,
                                  timeout=httpx.Timeout(30, pool=max(0.0, end - asked)))
                except httpx.PoolTimeout:  # the phase ended while in line
                    break
                if r.status_code == 429:
                    rate_429 += 1
                else:
                    waits.append(time.monotonic() - asked)
    finally:
        results.put((rate_429, transport.retried, waits))
        transport.close()
        client.close()


def utilisation(used, allowed):
    """What the provider counted over what it allows in the phase: its bucket
    (full at the start) plus the rate over the phase's length, the exact
    bound B + A*t/P."""
    return used / allowed if allowed > 0 else 0.0


def run_phase(title, provider, port, args, coordinated, segments, tty, redis_url="", target=None):
    """segments: one per host; worker i runs on host i % len(segments)."""
    provider.reset_stats()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=target or worker, args=(port, coordinated, segments[i % len(segments)], args.seconds,
                                              args.seed * 1000 + i, args.min_tokens, args.max_tokens, results,
                                              redis_url), daemon=True)
             for i in range(args.workers)]
    start = time.monotonic()
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.25)
            s = provider.snapshot()
            line = "  %-16s %5.1f s  ok %5d  429s %5d  tokens %9s  peak in flight %d" % (
                title, time.monotonic() - start, s["ok"], sum(s["rejected"].values()),
                "{:,}".format(sum(t for _, t in s["used"])), s["peak"])
            if tty:
                sys.stdout.write("\r" + line)
                sys.stdout.flush()
        elapsed = time.monotonic() - start
        worker_429 = worker_overload = 0
        waits = []
        for _ in procs:
            n, o, w = results.get(timeout=30)
            worker_429 += n
            worker_overload += o
            waits += w
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
    s = provider.snapshot()
    waits.sort()
    sys.stdout.write(("\r" if tty else "") + line + "\n")
    # The phase's length: from its first request reaching the provider to its
    # last answer (the workers' start-up, slower on a loaded machine, is not
    # the quota's to use).
    first = min((at for at, _ in s["accepted"]), default=start)
    last = max((at for at, _ in s["used"]), default=first)
    span = max(0.0, last - first)
    tpm_u = utilisation(sum(t for _, t in s["used"]), provider.tokens.burst + args.tpm / 60.0 * span)
    rpm_u = utilisation(s["ok"], provider.requests.burst + args.rpm / 60.0 * span)
    return {
        "ok": s["ok"],
        "rejected": s["rejected"],
        "http_429": sum(s["rejected"].values()),
        "rate_limit_429": sum(v for k, v in s["rejected"].items() if k != "overload"),
        "overload_429": s["rejected"]["overload"],
        "worker_429": worker_429,
        "worker_overload_429": worker_overload,
        "tokens_used": sum(t for _, t in s["used"]),
        "mean_tokens": sum(t for _, t in s["used"]) / max(1, len(s["used"])),
        "wait_p50": waits[len(waits) // 2] if waits else 0.0,
        "wait_max": waits[-1] if waits else 0.0,
        "peak_in_flight": s["peak"],
        "seconds": round(elapsed, 2),
        "tpm_utilisation": tpm_u,
        "rpm_utilisation": rpm_u,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each phase (default 12)")
    ap.add_argument("--rpm", type=int, default=1200)
    ap.add_argument("--tpm", type=int, default=40_000)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--min-tokens", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=700)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spread", type=float, default=0.5,
                    help="actual usage differs from the estimate by up to this fraction (default 0.5: +-50%%)")
    ap.add_argument("--overload", type=float, default=0.01,
                    help="fraction of requests the provider refuses as overloaded (default 0.01)")
    ap.add_argument("--hosts", type=int, default=1,
                    help="many hosts: N hosts (segments) of --workers each, first coordinating only on each host,"
                         " then sharing the quota through a Redis this demo starts (default 1)")
    ap.add_argument("--short", action="store_true", help="a quick run for tests: 8 workers, 5 s phases")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.short:
        args.workers, args.seconds = 8, 5.0
    if args.seconds < 2:
        ap.error("--seconds must be at least 2 (the first second is the burst)")
    if args.hosts > 1:
        return main_hosts(args)
    tty = sys.stdout.isatty()
    segment = "rq-demo-%d" % os.getpid()
    segment_1line = segment + "-1line"
    try:
        import httpx  # noqa: F401  (the one-line phase: ratequeue.httpx.Transport)
        have_httpx = True
    except ImportError:
        have_httpx = False
    provider = mock_provider.Provider(args.rpm, args.tpm, args.concurrency, seed=args.seed, spread=args.spread,
                                      overload=args.overload)
    print("mock provider: %s requests/min (per second), %s tokens/min (per minute), %d concurrent (429 +"
          " retry-after),"
          " %g%% overload 429s" % ("{:,}".format(args.rpm), "{:,}".format(args.tpm), args.concurrency,
                                   100 * args.overload))
    print("batch job: %d worker processes, requests estimated at %d-%d tokens (actual usage +-%d%%), %g s per phase\n"
          % (args.workers, args.min_tokens, args.max_tokens, round(100 * args.spread), args.seconds))
    results = {}
    try:
        with mock_provider.Server(provider) as server, rq.Client(segment) as client:
            define_limits(client, args)
            results["uncoordinated"] = run_phase("no coordination", provider, server.port, args, False,
                                                 [segment], tty)
            results["ratequeue"] = run_phase("with ratequeue", provider, server.port, args, True, [segment], tty)
            if have_httpx:
                # A segment of its own, so that this phase starts full, as the provider does.
                with rq.Client(segment_1line) as fresh:
                    define_limits(fresh, args)
                    results["transport"] = run_phase("one-line httpx", provider, server.port, args, True,
                                                     [segment_1line], tty, target=worker_transport)
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped, provider shut down, segment removed")
        return 130
    finally:
        for seg in (segment, segment_1line):
            try:
                os.unlink("/dev/shm/" + seg)
            except FileNotFoundError:
                pass
    phases = [results["uncoordinated"], results["ratequeue"]] + ([results["transport"]] if "transport" in results
                                                                  else [])
    rows = [
        ("requests accepted", lambda r: r["ok"]),
        ("429 responses", lambda r: r["http_429"]),
        ("  simulated overload (retried)", lambda r: r["overload_429"]),
        ("  over requests/min", lambda r: r["rejected"]["requests"]),
        ("  over tokens/min", lambda r: r["rejected"]["tokens"]),
        ("  over concurrency", lambda r: r["rejected"]["concurrency"]),
        ("tokens used (actual)", lambda r: "{:,}".format(r["tokens_used"])),
        ("mean tokens per request", lambda r: "%.0f" % r["mean_tokens"]),
        ("request wait, median", lambda r: "%.2f s" % r["wait_p50"]),
        ("request wait, longest", lambda r: "%.2f s" % r["wait_max"]),
        ("peak in flight (limit %d)" % args.concurrency, lambda r: r["peak_in_flight"]),
        ("tokens/min utilisation (actual)", lambda r: "%.1f%%" % (100 * r["tpm_utilisation"])),
        ("requests/min utilisation", lambda r: "%.1f%%" % (100 * r["rpm_utilisation"])),
    ]
    heads = ["no coordination", "with ratequeue", "one-line httpx"][:len(phases)]
    print("\n%-32s" % "" + "".join(" %16s" % h for h in heads))
    for name, cell in rows:
        print("%-32s" % name + "".join(" %16s" % cell(r) for r in phases))
    if len(phases) == 3:
        print("\n(with ratequeue: the hand-written acquire, settle, observe and penalize of demo/llm_batch.py's"
              " worker;\n one-line httpx: httpx.Client(transport=ratequeue.httpx.Transport(\"mock-llm\")) and"
              " nothing else)")
    else:
        print("\n(the one-line httpx phase needs httpx: apt install python3-httpx)")
    print("\n(utilisation: what the provider counted over what it allows in the phase, its full bucket plus"
          " the rate\n from the first request to the last answer)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


def define_limits(client, args, **kw):
    """The provider's limits, each bucket less a margin: requests half a
    second's worth (the time between admission and arrival at the provider),
    tokens the largest request (what a request in flight may use beyond its
    estimate, known to the provider before its settle reaches ratequeue)."""
    client.define(RESOURCE, limits=[
        rq.Rate(args.rpm, per=60, burst=max(1, args.rpm // 120)),
        rq.Rate(args.tpm, per=60, burst=max(args.max_tokens, args.tpm - args.max_tokens), cost="load"),
        rq.Concurrency(args.concurrency),
    ], **kw)


def start_redis():
    """A redis-server of our own on a free loopback port, no persistence."""
    import shutil
    import socket
    import subprocess
    import tempfile
    if shutil.which("redis-server") is None:
        raise SystemExit("--hosts needs redis-server (Debian: apt-get install redis-server; scripts/install-deps)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="rq-demo-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc, "redis://127.0.0.1:%d" % port, workdir
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def main_hosts(args):
    """--hosts N: N hosts, each its own segment (as on N machines), with
    --workers each. Phase 1: ratequeue on each host alone (each host thinks
    the quota is its own); phase 2: the same hosts sharing it through Redis."""
    import shutil
    tty = sys.stdout.isatty()
    hosts = args.hosts
    per_host = args.workers
    args.workers = hosts * per_host
    base = "rq-demo-%d" % os.getpid()
    local = ["%s-local-%d" % (base, k) for k in range(hosts)]
    shared = ["%s-host-%d" % (base, k) for k in range(hosts)]
    provider = mock_provider.Provider(args.rpm, args.tpm, args.concurrency, seed=args.seed, spread=args.spread,
                                      overload=args.overload)
    print("mock provider: %s requests/min, %s tokens/min, %d concurrent, %g%% overload 429s"
          % ("{:,}".format(args.rpm), "{:,}".format(args.tpm), args.concurrency, 100 * args.overload))
    print("%d hosts (a segment each) of %d worker processes, %g s per phase\n" % (hosts, per_host, args.seconds))
    redis_proc, url, workdir = start_redis()
    results = {}
    clients = []
    try:
        with mock_provider.Server(provider) as server:
            for seg in local:
                c = rq.Client(seg, redis_url="")
                define_limits(c, args)
                clients.append(c)
            results["local"] = run_phase("each host alone", provider, server.port, args, True, local, tty)
            for seg in shared:
                c = rq.Client(seg, redis_url=url)
                define_limits(c, args)
                clients.append(c)
            results["shared"] = run_phase("through Redis", provider, server.port, args, True, shared, tty, url)
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped, provider and Redis shut down, segments removed")
        return 130
    finally:
        for c in clients:
            c.close()
        redis_proc.kill()
        redis_proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        for seg in local + shared:
            try:
                os.unlink("/dev/shm/" + seg)
            except FileNotFoundError:
                pass
    a, b = results["local"], results["shared"]
    rows = [
        ("requests accepted", a["ok"], b["ok"]),
        ("429 over the limits", a["rate_limit_429"], b["rate_limit_429"]),
        ("  over requests/min", a["rejected"]["requests"], b["rejected"]["requests"]),
        ("  over tokens/min", a["rejected"]["tokens"], b["rejected"]["tokens"]),
        ("  over concurrency", a["rejected"]["concurrency"], b["rejected"]["concurrency"]),
        ("429 simulated overload (retried)", a["overload_429"], b["overload_429"]),
        ("peak in flight (limit %d)" % args.concurrency, a["peak_in_flight"], b["peak_in_flight"]),
        ("tokens/min utilisation (actual)", "%.1f%%" % (100 * a["tpm_utilisation"]),
         "%.1f%%" % (100 * b["tpm_utilisation"])),
        ("request wait, median", "%.2f s" % a["wait_p50"], "%.2f s" % b["wait_p50"]),
    ]
    print("\n%-34s %16s %16s" % ("", "each host alone", "through Redis"))
    for name, x, y in rows:
        print("%-34s %16s %16s" % (name, x, y))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
