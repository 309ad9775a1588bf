"""The README's main job, demo/llm_batch.py, in its short mode: zero 429s with
ratequeue, at least 90% of the token quota used, and a clean exit on Ctrl-C."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "llm_batch.py"


def test_short_demo_has_no_429s_with_ratequeue_and_uses_the_quota(tmp_path):
    out = tmp_path / "demo.json"
    run = subprocess.run([sys.executable, str(DEMO), "--short", "--overload", "0.05", "--json", str(out)],
                         capture_output=True,
                         text=True, timeout=120)
    print(run.stdout)
    assert run.returncode == 0, run.stderr
    res = json.loads(out.read_text())["results"]
    # Actual usage differs from the estimates by up to +-50% (the default
    # --spread): settling keeps the buckets true, so no 429 from a limit...
    assert res["ratequeue"]["rate_limit_429"] == 0
    assert res["ratequeue"]["worker_429"] == 0
    # ...and the simulated-overload 429s were all seen, penalized and retried.
    assert res["ratequeue"]["worker_overload_429"] == res["ratequeue"]["overload_429"]
    assert res["ratequeue"]["tpm_utilisation"] >= 0.90  # of actual tokens
    assert res["ratequeue"]["peak_in_flight"] <= 6
    assert res["uncoordinated"]["http_429"] > 0  # the problem the demo shows is real
    assert "with ratequeue" in run.stdout and "429 responses" in run.stdout
    # The one-line version (httpx transport, OpenAI-shaped requests): the same.
    t = res["transport"]
    assert t["rate_limit_429"] == 0 and t["worker_429"] == 0
    assert t["worker_overload_429"] == t["overload_429"]  # every overload retried by the transport
    assert max(t["tpm_utilisation"], t["rpm_utilisation"]) >= 0.6 and t["peak_in_flight"] <= 6
    assert "one-line httpx" in run.stdout


def test_demo_across_three_hosts_has_no_429s_through_redis(tmp_path):
    import shutil
    import pytest
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "hosts.json"
    run = subprocess.run([sys.executable, str(DEMO), "--hosts", "3", "--workers", "4", "--seconds", "5",
                          "--json", str(out)], capture_output=True, text=True, timeout=120)
    print(run.stdout)
    assert run.returncode == 0, run.stderr
    res = json.loads(out.read_text())["results"]
    assert res["shared"]["rate_limit_429"] == 0
    assert res["shared"]["peak_in_flight"] <= 6
    assert res["local"]["rate_limit_429"] > 0  # hosts that coordinate only locally: the problem is real


def test_ctrl_c_stops_everything_and_removes_the_segment():
    proc = subprocess.Popen([sys.executable, str(DEMO), "--short"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    time.sleep(3.0)  # inside the first phase, workers running
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert not os.path.exists("/dev/shm/rq-demo-%d" % proc.pid)
    deadline = time.monotonic() + 10
    while True:  # no process of the demo's group is left
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "demo processes outlived the demo"
        time.sleep(0.1)
