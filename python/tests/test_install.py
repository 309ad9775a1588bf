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


@pytest.mark.skipif(not LIB or not shutil.which("cc") or not shutil.which("c++"),
                    reason="needs the meson build tree (scripts/test) and a C and C++ compiler")
def test_the_readmes_compile_lines_from_the_build_tree_work(tmp_path, segment):
    """The README's "from the build tree" lines, copied from it, build and run
    a C and a C++ program against the library just built."""
    root = pathlib.Path(__file__).resolve().parents[2]
    build = pathlib.Path(LIB).resolve().parents[1]
    readme = (root / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if ln.startswith(("cc  app.c", "c++ -std=c++17 app.cpp"))]
    assert len(lines) == 2, lines
    (tmp_path / "app.c").write_text(
        '#include <ratequeue/ratequeue.h>\n'
        'int main(int argc, char **argv) { rq_client *c; rq_limit l = rq_rpm(60, 0); rq_permit p;\n'
        '  if (argc < 2 || rq_open(argv[1], &c) || rq_define(c, "x", &l, 1, 0)) return 1;\n'
        '  int rc = rq_acquire(c, "x", 1, 0, &p); rq_close(c); return rc != 0; }\n')
    (tmp_path / "app.cpp").write_text(
        '#include <ratequeue/ratequeue.hpp>\n'
        'int main(int, char **argv) { rq::Client c(argv[1]); c.define("y", {rq::rpm(60), rq::tpm(90000)});\n'
        '  rq::Permit p = c.acquire("y", 1000); return 0; }\n')
    for line in lines:
        # The README's paths are relative to the repository's root and its build/.
        cmd = line.replace("$PWD/build", str(build)).replace("-Ibuild/", "-I%s/" % build)
        cmd = cmd.replace("-Lbuild/", "-L%s/" % build).replace("-Iinclude", "-I" + str(root / "include"))
        args = cmd.split()
        exe = str(tmp_path / ("app_c" if args[0] == "cc" else "app_cpp"))
        out = subprocess.run(args + ["-o", exe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (cmd, out.stderr)
        run = subprocess.run([exe, segment], capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, (cmd, run.stdout, run.stderr)
