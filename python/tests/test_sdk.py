"""The official OpenAI and Anthropic SDKs (pinned in
python/requirements-sdk.txt, in a venv the test command makes) through
ratequeue.httpx against the mock provider: every call form settles exactly
what the provider counted, and worker processes get 0 429s with the
transport and many without. The SDK code runs in sdk_clients.py under the
venv's Python."""
import json
import os
import pathlib
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = os.environ.get("RATEQUEUE_SDK_PYTHON") or str(ROOT / "build" / "sdk-venv" / "bin" / "python")

pytestmark = pytest.mark.skipif(
    not os.access(PYTHON, os.X_OK),
    reason="no venv with the official SDKs at %s: the test command makes it with "
           "pip install -r python/requirements-sdk.txt, which needs PyPI" % PYTHON)


def run(*args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([PYTHON, str(HERE / "sdk_clients.py"), *args], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_call_form_settles_what_the_provider_counted(segment):
    report = run("calls", segment)
    *calls, rejected = report
    assert [c["call"] for c in calls] == [
        "openai chat", "openai chat stream", "anthropic messages", "anthropic messages stream",
        "anthropic messages stream=True", "async openai chat", "async openai chat stream",
        "async anthropic messages", "async anthropic messages stream"]
    for c in calls:
        assert c["charged"] == c["provider_counted"], c  # estimate acquired, usage settled
    assert rejected == {"rejected": 0}


def test_sdk_workers_get_no_429s_with_the_transport_and_many_without(segment):
    on = run("e2e", segment, "on")
    assert on["ok"] > 0 and on["sdk_errors"] == 0 and sum(on["provider_rejected"].values()) == 0, on
    assert on["peak"] <= 4
    off = run("e2e", segment, "off")
    assert off["sdk_errors"] > off["ok"] // 2 and sum(off["provider_rejected"].values()) > 0, off
    print("\nofficial SDKs, 4 processes x 4 s: with the transport %d calls, 0 refused; without %d calls, %d refused"
          % (on["ok"], off["ok"] + off["sdk_errors"], off["sdk_errors"]))
