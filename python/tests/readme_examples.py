"""Runs the README's examples in order (see test_readme.py): reads a JSON
list of steps on stdin, each {"kind": "python", "code": ...} (executed in one
namespace, as a reader pasting them one after another would) or
{"kind": "run", "argv": [...]} (a compiled C/C++ example or an rqctl line).
The official SDKs are pointed at the demo's mock provider through their
usual environment variables; segments named in the examples are prefixed
with $README_SEGMENT_PREFIX so that the test's files are its own. Prints
one line per step; exits 1 at the first failure."""
import ast
import asyncio
import inspect
import json
import os
import pathlib
import subprocess
import sys
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "demo")]

import mock_provider  # noqa: E402
import ratequeue as rq  # noqa: E402

PREFIX = os.environ["README_SEGMENT_PREFIX"]
_init = rq.Client.__init__


def _prefixed(self, segment=None, *args, **kwargs):
    _init(self, None if segment is None else PREFIX + segment, *args, **kwargs)


rq.Client.__init__ = _prefixed


def main():
    steps = json.load(sys.stdin)
    provider = mock_provider.Provider(rpm=60_000, tpm=10_000_000, concurrency=64, latency=(0.001, 0.005), seed=1)
    with mock_provider.Server(provider) as server:
        url = "http://127.0.0.1:%d" % server.port
        os.environ.update(OPENAI_BASE_URL=url + "/v1", OPENAI_API_KEY="sk-mock",
                          ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="sk-ant-mock")
        namespace = {"__name__": "__readme__"}
        for i, step in enumerate(steps, 1):
            try:
                if step["kind"] == "python":
                    code = compile(step["code"], "README example %d" % i, "exec",
                                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                    result = eval(code, namespace)
                    if inspect.iscoroutine(result):
                        asyncio.run(result)
                else:
                    out = subprocess.run(step["argv"], capture_output=True, text=True, timeout=60)
                    sys.stdout.write(out.stdout)
                    if out.returncode != 0:
                        raise RuntimeError("%s exited %d: %s" % (step["argv"][0], out.returncode, out.stderr))
            except BaseException:
                print("\nFAILED at step %d (%s):\n%s" % (i, step["kind"], step.get("code") or step.get("argv")))
                traceback.print_exc()
                return 1
            print("\n[step %d ok: %s]" % (i, step["kind"]))
        print("429s at the mock provider: %d" % sum(provider.snapshot()["rejected"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
