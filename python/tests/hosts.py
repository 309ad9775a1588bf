"""Many-hosts test harness: Redis servers started and stopped by PID, and
"hosts" (each its own segment) whose worker processes log every admission.

A worker is this file run as a program (python hosts.py JSON): it opens the
host's segment with the Redis URL, defines the resource, and acquires in a
loop until its deadline, writing one line per admission to its log:
"t_before t_after load" (CLOCK_MONOTONIC seconds before the acquire call and
after it returned) or, for concurrency, "t_after_acquire t_before_release".
"""
import json
import os
import shutil
import pathlib
import socket
import subprocess
import sys
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent


def free_port(below=65536):
    """A free loopback port (below `below`: a cluster node's bus is port + 10000)."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < below:
            return port
    raise RuntimeError("no free port below %d" % below)


class Redis:
    """A redis-server on a free loopback port, no persistence; stop() by PID."""

    def __init__(self, *extra, port=None, password=None, bind=("127.0.0.1",)):
        self.port = port or free_port()
        self.password = password
        self.dir = pathlib.Path("/tmp/rq-redis-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6]))
        self.dir.mkdir()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", *bind, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), *extra, *(["--requirepass", password] if password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = "redis://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.cli("PING") == "PONG":
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server on port %d did not start" % self.port)
            time.sleep(0.02)

    def cli(self, *args, password=None):
        cmd = ["redis-cli", "-p", str(self.port)]
        password = password or self.password
        if password:
            cmd += ["--no-auth-warning", "-a", password]
        out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(self.dir)])


class Host:
    """One host: a segment name, and the worker processes it runs."""

    def __init__(self, tmp, url, name=None, ttl=None):
        self.segment = name or "rqhost-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.url = url
        self.ttl = ttl
        self.tmp = pathlib.Path(tmp)
        self.workers = []

    def start(self, resource, define, mode="rate", seconds=3.0, load=1, timeout=5.0, delay=0.0, prefix=()):
        log = self.tmp / ("%s-%d.log" % (self.segment, len(self.workers)))
        spec = dict(segment=self.segment, url=self.url, ttl=self.ttl, resource=resource, define=define, mode=mode,
                    seconds=seconds, load=load, timeout=timeout, delay=delay, log=str(log))
        env = dict(os.environ)
        p = subprocess.Popen([*prefix, sys.executable, str(HERE / "hosts.py"), json.dumps(spec)], env=env,
                             stderr=subprocess.PIPE, text=True)
        self.workers.append((p, log))
        return p

    def wait(self, timeout=120):
        errors = []
        for p, _ in self.workers:
            try:
                _, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                errors.append("worker timed out: " + err[-2000:])
                continue
            if p.returncode not in (0, -9):
                errors.append("worker exit %s: %s" % (p.returncode, err[-2000:]))
        return errors

    def kill_all(self):
        for p, _ in self.workers:
            if p.poll() is None:
                p.kill()

    def logs(self, *which):
        """The entries of every worker's log, or of the workers numbered `which`."""
        out = []
        for k, (_, log) in enumerate(self.workers):
            if which and k not in which:
                continue
            if log.exists():
                for line in log.read_text().splitlines():
                    parts = line.split()
                    if parts and parts[0] != "#":
                        out.append(tuple(float(x) for x in parts))
        return out

    def cleanup(self):
        self.kill_all()
        try:
            os.unlink("/dev/shm/" + self.segment)
        except FileNotFoundError:
            pass


def refiller_pid(segment):
    """The pid of the host's refiller, from the segment header (layout.hpp: 264 refiller, 272 pid)."""
    import struct
    with open("/dev/shm/" + segment, "rb") as f:
        f.seek(264)
        word, _wake, pid = struct.unpack("<III", f.read(12))
    return pid if word else 0


def check_rate_bound(events, amount, period, burst, slack=0):
    """events: (t_before, t_after, load). For every run of admissions (in
    order of t_after) the load must fit B + A*t/P over the shortest window
    that surely holds all of them: from the earliest t_before to the last
    t_after. Returns the worst excess (<= 0: the bound holds)."""
    ev = sorted(events, key=lambda e: e[1])
    worst = float("-inf")
    n = len(ev)
    for i in range(n):
        total = 0.0
        lo = float("inf")
        for j in range(i, n):
            total += ev[j][2]
            lo = min(lo, ev[j][0])
            allowed = burst + amount * max(0.0, ev[j][1] - lo) / period + slack
            worst = max(worst, total - allowed)
    return worst


def max_overlap(intervals):
    """The most intervals (start, end) open at one instant."""
    points = []
    for a, b in intervals:
        points.append((a, 1))
        points.append((b, -1))
    points.sort(key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def _worker(spec):
    sys.path.insert(0, str(HERE.parent))
    import ratequeue as rq
    if spec["delay"]:
        time.sleep(spec["delay"])
    c = rq.Client(spec["segment"], redis_url=spec["url"], lease_ttl=spec["ttl"])
    d = dict(spec["define"])
    c.define(spec["resource"], **d)
    end = time.monotonic() + spec["seconds"]
    with open(spec["log"], "w", buffering=1) as log:
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                p = c.acquire(spec["resource"], spec["load"], timeout=spec["timeout"])
            except rq.Unavailable as e:
                log.write("# unavailable %s\n" % e)
                continue
            except rq.Timeout:
                continue
            t1 = time.monotonic()
            if spec["mode"] == "hold":
                time.sleep(0.01)
                t2 = time.monotonic()
                p.release()
                log.write("%.6f %.6f\n" % (t1, t2))
            else:
                p.release()
                log.write("%.6f %.6f %d\n" % (t0, t1, spec["load"]))
    c.close()


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))


class NetNs:
    """A network namespace joined to this one by a veth pair, with `tc netem`
    delay on both ends: the host inside reaches Redis at self.gateway. Needs
    root (CAP_NET_ADMIN); NetNs.unavailable() says why not, else None."""

    def __init__(self, k, delay_ms):
        self.name = "rqns%d-%d" % (os.getpid() % 100000, k)
        self.outer = "rqv%d-%da" % (os.getpid() % 10000, k)
        self.inner = "rqv%d-%db" % (os.getpid() % 10000, k)
        self.gateway = "10.201.%d.1" % k
        self.address = "10.201.%d.2" % k
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, text=True)
        run("ip", "netns", "add", self.name)
        try:
            run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            run("ip", "link", "set", self.inner, "netns", self.name)
            run("ip", "addr", "add", self.gateway + "/24", "dev", self.outer)
            run("ip", "link", "set", self.outer, "up")
            run("ip", "netns", "exec", self.name, "ip", "addr", "add", self.address + "/24", "dev", self.inner)
            run("ip", "netns", "exec", self.name, "ip", "link", "set", self.inner, "up")
            run("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")
            if delay_ms:
                half = "%.1fms" % (delay_ms / 2.0)
                run("tc", "qdisc", "add", "dev", self.outer, "root", "netem", "delay", half)
                run("ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", self.inner, "root", "netem",
                    "delay", half)
        except Exception:
            self.close()
            raise

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def close(self):
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    @staticmethod
    def unavailable():
        if shutil.which("ip") is None or shutil.which("tc") is None:
            return "iproute2 (ip, tc) is not installed"
        probe = "rqprobe%d" % os.getpid()
        out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if out.returncode != 0:
            return "cannot create a network namespace here (needs root / CAP_NET_ADMIN): " + out.stderr.strip()
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None


def time_namespace_unavailable():
    """Why `unshare --time` cannot run here, or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    out = subprocess.run(["unshare", "--time", "--monotonic", "1", "--fork", "true"], capture_output=True, text=True)
    if out.returncode != 0:
        return "no time namespaces here (needs root and Linux 5.6): " + out.stderr.strip()
    return None


class DelayProxy:
    """A TCP proxy on loopback that delays every byte by `delay_ms` / 2 each
    way (so a round trip takes delay_ms longer): latency to Redis where tc
    netem is not available (no sch_netem in the kernel)."""

    def __init__(self, target_port, delay_ms):
        import threading
        self.delay = delay_ms / 2000.0
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "redis://127.0.0.1:%d" % self.port
        self.closed = False
        self.black_hole = False  # True: bytes are swallowed, nothing answers (a black-holed port)
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        import threading
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import collections
        import threading
        queue = collections.deque()
        cv = threading.Condition()

        def send():
            while True:
                with cv:
                    while not queue:
                        cv.wait()
                    due, data = queue.popleft()
                if data is None:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if self.black_hole:
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=send, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with cv:
                queue.append((time.monotonic() + self.delay, data or None))
                cv.notify()
            if not data:
                return

    def close(self):
        self.closed = True
        self.sock.close()


class FakeOldRedis:
    """A RESP server on loopback that claims to be Redis 4.0 (INFO server
    says redis_version:4.0.14) and answers PING: what an old Redis looks like
    to a client before it runs any script."""

    def __init__(self):
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "redis://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        info = b"# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\n"
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            if b"INFO" in buf.upper():
                conn.sendall(b"$%d\r\n%s\r\n" % (len(info), info))
                buf = b""
            elif b"PING" in buf.upper():
                conn.sendall(b"+PONG\r\n")
                buf = b""

    def close(self):
        self.sock.close()
