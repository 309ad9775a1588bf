"""PID namespaces and PID reuse (unshare --pid --fork --mount-proc): liveness
is the kernel's OFD lock on the segment, never a PID, so a holder in another
PID namespace is never reclaimed while it lives and comes back within the
reclaim bound when it dies, in both directions; and a new process that gets
a dead holder's PID (forced in a fresh namespace through ns_last_pid) never
keeps the dead one's permits alive."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

import ratequeue as rq

PYDIR = str(pathlib.Path(__file__).resolve().parents[1])


def _why_not():
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "unshare --pid --fork --mount-proc is not permitted here (needs root or user namespaces): %s" % (
            probe.stderr.strip())
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _in_new_pidns(code, *args):
    """Runs Python code as PID 1 of a fresh PID namespace; returns the
    unshare process (its child is the namespace's init)."""
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _child_of(pid):
    """The root-namespace PID of the (only) child of `pid`."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            kids = pathlib.Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("no child of %d" % pid)


HOLDER = r'''
import os, sys, time, ratequeue as rq
c = rq.Client(sys.argv[1])
p = c.acquire("one")
print("held as pid %d" % os.getpid(), flush=True)
time.sleep(3600)
'''


def test_a_holder_in_a_child_pid_namespace_is_kept_while_alive_and_reclaimed_when_killed(segment):
    with rq.Client(segment) as c:
        c.define("one", concurrency=1)
        holder = _in_new_pidns(HOLDER, segment)
        try:
            assert holder.stdout.readline().strip() == "held as pid 1"  # PID 1 in its namespace
            inner = _child_of(holder.pid)
            assert c.try_acquire("one") is None
            with pytest.raises(rq.Timeout):
                c.acquire("one", timeout=0.5)  # a live holder is never reclaimed, whatever its PID says here
            t0 = time.monotonic()
            os.kill(inner, signal.SIGKILL)
            with c.acquire("one", timeout=5):
                took = time.monotonic() - t0
        finally:
            holder.kill()
            holder.wait()
        assert took < 1.0, "reclaimed %.3f s after the kill" % took


WAITER = r'''
import json, sys, time, ratequeue as rq
c = rq.Client(sys.argv[1])
try:
    c.acquire("one", timeout=0.5)
    print(json.dumps({"first": "granted"}), flush=True)
except rq.Timeout:
    print(json.dumps({"first": "timeout"}), flush=True)
sys.stdin.readline()                     # the test kills the holder, then says go
t0 = time.monotonic()
with c.acquire("one", timeout=5):
    print(json.dumps({"second": time.monotonic() - t0}), flush=True)
'''


def test_a_waiter_in_a_child_pid_namespace_waits_for_a_live_holder_and_gets_a_dead_ones_permit(segment):
    with rq.Client(segment) as c:
        c.define("one", concurrency=1)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, segment], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().startswith("held as pid %d" % holder.pid)
        waiter = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", WAITER, segment],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=_env())
        assert json.loads(waiter.stdout.readline()) == {"first": "timeout"}  # the live holder keeps it
        holder.kill()
        holder.wait()
        waiter.stdin.write("go\n")
        waiter.stdin.flush()
        second = json.loads(waiter.stdout.readline())["second"]
        waiter.wait(timeout=10)
        assert second < 1.0
    finally:
        holder.kill()
        holder.wait()


REUSE = r'''
import json, os, signal, sys, time
import ratequeue as rq
seg = sys.argv[1]
r, w = os.pipe()
a = os.fork()
if a == 0:                                 # A: takes the permit, then dies holding it
    c = rq.Client(seg)
    p = c.acquire("one")
    os.write(w, b"x")
    time.sleep(3600)
os.read(r, 1)
os.kill(a, signal.SIGKILL)
os.waitpid(a, 0)
# The next process gets A's PID: the namespace's own counter, set just below it.
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(a - 1))
b = os.fork()
if b == 0:                                 # B: same PID as A, alive, attached to the segment
    c = rq.Client(seg)
    c.define("other", concurrency=1)
    os.write(w, b"y")
    time.sleep(3600)
os.read(r, 1)
c = rq.Client(seg)
t0 = time.monotonic()
try:
    with c.acquire("one", timeout=5):
        got = time.monotonic() - t0
except rq.Timeout:
    got = None
os.kill(b, signal.SIGKILL)
os.waitpid(b, 0)
print(json.dumps({"a": a, "b": b, "granted_after": got}), flush=True)
'''


def test_a_new_process_with_a_dead_holders_pid_does_not_keep_its_permit(segment):
    with rq.Client(segment) as c:
        c.define("one", concurrency=1)
    run = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", REUSE, segment],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["a"] == out["b"], "the PID was not reused: %r" % out  # the precondition of the test
    assert out["granted_after"] is not None and out["granted_after"] < 1.0, out
