"""The wheel: built offline from this tree by meson-python (python3 -m build
--wheel --no-isolation, Debian's python3-mesonpy and python3-build), installed
into a fresh venv, and used from there by several processes at once, with
no PYTHONPATH and no RATEQUEUE_LIBRARY: the library travels inside it."""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _why_not():
    for mod in ("mesonpy", "build"):
        if importlib.util.find_spec(mod) is None:
            return "python3-%s is not installed (scripts/install-deps installs it)" % (
                "mesonpy" if mod == "mesonpy" else "build")
    if shutil.which("patchelf") is None:
        return "patchelf is not installed (scripts/install-deps installs it)"
    return None


WORKER = r'''
import os, sys, time
import ratequeue as rq
assert "site-packages" in rq.__file__ and os.path.exists(os.path.join(os.path.dirname(rq.__file__), "libratequeue.so"))
c = rq.Client(sys.argv[1])
c.define("one", concurrency=1)
with open(sys.argv[2], "a") as log:
    for _ in range(20):
        with c.acquire("one", timeout=30):
            start = time.monotonic()
            time.sleep(0.002)
            log.write("%f %f\n" % (start, time.monotonic()))
            log.flush()
c.close()
# The seed's asyncio form on the default client, and the httpx transports.
import asyncio
import ratequeue.aio as rqa
import ratequeue.httpx
assert ratequeue.httpx.Transport and rq.httpx.AsyncTransport
rqa.define("openai", tpm=60_000)
async def main():
    async with rqa.acquire("openai", load=500):
        pass
asyncio.run(main())
'''


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_the_wheel_installs_into_a_fresh_venv_and_works_across_processes(tmp_path):
    out = tmp_path / "dist"
    build = subprocess.run(["/usr/bin/python3", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = list(out.glob("ratequeue-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    # --system-site-packages only for what the test itself needs (pytest); the
    # package comes from the wheel, which the venv puts first.
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-deps", str(wheels[0])],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("RATEQUEUE_LIBRARY", "PYTHONPATH")}
    segment = "rqwheel-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    env["RATEQUEUE_SEGMENT"] = segment  # the default client's segment: this test's own
    log = tmp_path / "holds.log"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    try:
        procs = [subprocess.Popen([str(venv / "bin" / "python"), str(script), segment, str(log)], env=env,
                                  cwd=str(tmp_path), stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        try:
            os.unlink("/dev/shm/" + segment)
        except FileNotFoundError:
            pass
    holds = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(holds) == 60
    assert all(a[1] <= b[0] for a, b in zip(holds, holds[1:])), "two processes held a concurrency-1 permit at once"
