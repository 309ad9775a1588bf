"""The README's examples, extracted from README.md and run in order as a
new user would paste them, on one segment: every top-level ```python block
(in one namespace; the SDK examples against the demo's mock provider), the
complete C and C++ programs (built with the README's own compile lines) and
the rqctl lines of "A first acquire". They must all pass, without a
Conflict between examples that define the same resource. Also: every
metrics family rqctl writes is named in the README."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
README = (ROOT / "README.md").read_text()
LIB = os.environ.get("RATEQUEUE_LIBRARY", "")
PYTHON = os.environ.get("RATEQUEUE_SDK_PYTHON") or str(ROOT / "build" / "sdk-venv" / "bin" / "python")

# Top-level fenced blocks (a block indented inside a list is an excerpt, not an example).
BLOCK = re.compile(r"^```(python|c|cpp|sh|js)\n(.*?)^```$", re.S | re.M)
NODE_PACKAGE = ROOT / "node"
NODE_BUILT = (NODE_PACKAGE / "dist" / "index.js").exists() and (NODE_PACKAGE / "build" / "Release" /
                                                                "ratequeue.node").exists()


def blocks():
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README)]


def compile_lines():
    lines = [ln for ln in README.splitlines() if ln.startswith(("cc  app.c", "c++ -std=c++17 app.cpp"))]
    assert len(lines) == 2, lines
    return {"c": lines[0], "cpp": lines[1]}


def build_dir():
    return pathlib.Path(LIB).resolve().parents[1]


def build_program(kind, code, tmp_path, n):
    """A README C/C++ program built with the README's line for it."""
    build = build_dir()
    src = tmp_path / ("app%d.%s" % (n, kind))
    src.write_text(code)
    cmd = compile_lines()[kind].replace("$PWD/build", str(build)).replace("-Ibuild/", "-I%s/" % build)
    cmd = cmd.replace("-Lbuild/", "-L%s/" % build).replace("-Iinclude", "-I" + str(ROOT / "include"))
    cmd = cmd.replace("app.cpp" if kind == "cpp" else "app.c", str(src))
    exe = tmp_path / ("app%d" % n)
    out = subprocess.run(cmd.split() + ["-o", str(exe)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (cmd, out.stderr)
    return str(exe)


def node_dir(tmp_path):
    """A folder whose node_modules holds the package and the SDKs it is used with."""
    d = tmp_path / "node-app"
    if not d.exists():
        (d / "node_modules" / "@anthropic-ai").mkdir(parents=True)
        (d / "node_modules" / "ratequeue").symlink_to(NODE_PACKAGE)
        for dep in ("openai", "@anthropic-ai/sdk"):
            (d / "node_modules" / dep).symlink_to(NODE_PACKAGE / "node_modules" / dep)
    return d


def steps(tmp_path):
    out = []
    for n, (kind, code) in enumerate(blocks()):
        if kind == "js":
            if NODE_BUILT and shutil.which("node"):
                src = node_dir(tmp_path) / ("example%d.mjs" % n)
                src.write_text(code)
                out.append({"kind": "run", "argv": ["node", str(src)]})
        elif kind == "python":
            out.append({"kind": "python", "code": code})
        elif kind in ("c", "cpp") and "int main(" in code:
            out.append({"kind": "run", "argv": [build_program(kind, code, tmp_path, n)]})
        elif kind == "sh" and code.strip() and all(ln.startswith("build/tools/rqctl ")
                                                   for ln in code.strip().splitlines()):
            for ln in code.strip().splitlines():
                argv = ln.split("#")[0].split()
                argv[0] = str(build_dir() / "tools" / "rqctl")
                out.append({"kind": "run", "argv": argv})
    return out


@pytest.mark.skipif(not LIB or not shutil.which("cc") or not shutil.which("c++"),
                    reason="needs the meson build tree (scripts/test) and a C and C++ compiler")
@pytest.mark.skipif(not os.access(PYTHON, os.X_OK),
                    reason="no venv with the official SDKs at %s (the test command makes it; "
                           "the README's SDK examples need them)" % PYTHON)
def test_the_readmes_examples_run_in_order_without_conflicts(tmp_path):
    todo = steps(tmp_path)
    kinds = [s["kind"] for s in todo]
    assert kinds.count("python") >= 7 and kinds.count("run") >= 4, kinds  # the examples were found
    if not NODE_BUILT:
        import warnings
        warnings.warn("the README's Node examples were not run: node/ is not built (cd node && npm ci)")
    prefix = "rqreadme-%d-%s-" % (os.getpid(), uuid.uuid4().hex[:6])
    env = dict(os.environ, RATEQUEUE_SEGMENT=prefix + "default", README_SEGMENT_PREFIX=prefix,
               RATEQUEUE_LIBRARY=str(pathlib.Path(LIB).resolve()))
    env.pop("PYTHONPATH", None)
    try:
        run = subprocess.run([PYTHON, str(HERE / "readme_examples.py")], input=json.dumps(todo), env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        for f in pathlib.Path("/dev/shm").glob(prefix + "*"):
            f.unlink()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]
    assert run.stdout.count("ok: ") == len(todo)
    assert "calling the API" in run.stdout and "openai" in run.stdout  # the C program and rqctl ls ran
    assert "429s at the mock provider: 0" in run.stdout
    if NODE_BUILT:
        assert "an answer CancelledError" in run.stdout and "tokens out" in run.stdout  # the Node examples ran


def test_every_metrics_family_rqctl_writes_is_in_the_readme():
    source = "".join(p.read_text() for p in (ROOT / "tools" / "rqctl").glob("*.cpp"))
    families = set(re.findall(r"ratequeue_[a-z_]+", source))
    families = {f for f in families if not f.endswith(("_bucket", "_count", "_sum"))}
    assert len(families) > 20, families
    missing = sorted(f for f in families if f not in README)
    assert not missing, "metrics families missing from the README: %s" % missing
