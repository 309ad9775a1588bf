"""`meson install` installs the package and the library, and the installed
package finds the installed library by itself (no RATEQUEUE_LIBRARY)."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

LIB = os.environ.get("RATEQUEUE_LIBRARY")


@pytest.mark.skipif(not LIB or not shutil.which("meson"), reason="needs the meson build tree (scripts/test)")
def test_meson_installs_a_working_package(tmp_path, segment):
    build = pathlib.Path(LIB).resolve().parents[1]
    subprocess.run(["meson", "install", "-C", str(build), "--destdir", str(tmp_path), "--no-rebuild", "--quiet"],
                   check=True, capture_output=True, timeout=120)
    init = list(tmp_path.rglob("ratequeue/__init__.py"))
    libs = list(tmp_path.rglob("libratequeue.so.0"))
    assert len(init) == 1 and len(libs) == 1
    assert (init[0].parent / "aio.py").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("RATEQUEUE_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(init[0].parent.parent)
    env["LD_LIBRARY_PATH"] = str(libs[0].parent)  # stands in for ldconfig's /usr/local/lib
    code = ("import ratequeue as rq, ratequeue.aio, sys\n"
            "assert rq.__file__.startswith(sys.argv[1]), rq.__file__\n"
            "c = rq.Client(sys.argv[2]); c.define('x', concurrency=1)\n"
            "with c.acquire('x'): pass\n"
            "print('ok', rq.VERSION)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path), segment], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok ")
