"""bench/report.py RESULTS_DIR: the markdown report of bench/run-all, every
figure a ratio against a baseline from the same run, checked against the
budgets of docs/design.md ("Performance budgets")."""
import datetime
import json
import os
import platform
import re
import sys

d = sys.argv[1]


def read(name):
    with open(os.path.join(d, name)) as f:
        return f.read()


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def verdict(ok):
    return "meets" if ok else "**misses**"


out = []
out.append("# ratequeue benchmark report\n")
out.append("%s, %s, %d vCPUs, Linux %s. Produced by `bench/run-all`; every ratio is against a baseline "
           "measured in the same run.\n" % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                            cpu_model(), os.cpu_count(), platform.release()))

# 1. Google Benchmark
runs = json.loads(read("acquire.json"))["benchmarks"]
med = {}
for r in runs:
    if r.get("aggregate_name") == "median":
        med[r["run_name"]] = r
base = med.get("BM_BareGcra", {}).get("cpu_time")
out.append("## Uncontended acquire + release (C ABI)\n")
out.append("| benchmark | CPU time | ratio to bare GCRA | budget |")
out.append("|---|---|---|---|")
budgets = {"BM_AcquireReleaseRate": 2.5, "BM_AcquireReleaseRateConc": 3.5,
           "BM_AcquireReleaseRateHandle": 2.5, "BM_AcquireReleaseRateConcHandle": 3.5}
for name, label in (("BM_FetchAddShm", "shm fetch_add"), ("BM_BareGcra", "bare GCRA consume (clock + CAS)"),
                    ("BM_AcquireReleaseRate", "rate limit only, by name"),
                    ("BM_AcquireReleaseRateHandle", "rate limit only, by handle (C++ rq::Resource)"),
                    ("BM_AcquireReleaseRateConc", "rate + concurrency, by name"),
                    ("BM_AcquireReleaseRateConcHandle", "rate + concurrency, by handle (C++ rq::Resource)"),
                    ("BM_AcquireRelease4Limits", "4 stacked limits"), ("BM_TryAcquireEmpty", "try, no capacity")):
    if name not in med:
        continue
    t = med[name]["cpu_time"]
    ratio = t / base if base else 0
    b = budgets.get(name)
    out.append("| %s | %.1f ns | %.2fx | %s |" % (label, t, ratio,
                                                 "%s %.1fx" % (verdict(ratio <= b), b) if b else ""))
out.append("")
out.append("## Threads of one process on one resource\n")
out.append("| threads | ratequeue ops/s | bare GCRA ops/s | ratio |")
out.append("|---|---|---|---|")
for n in (2, 4, 8, 16, 32):
    a = med.get("BM_ContendRate/real_time/threads:%d" % n)
    g = med.get("BM_ContendBareGcra/real_time/threads:%d" % n)
    if a and g:
        out.append("| %d | %.0f | %.0f | %.2fx |" % (n, a["items_per_second"], g["items_per_second"],
                                                     a["items_per_second"] / g["items_per_second"]))
out.append("")

# 2. Comparison
out.append("## Against the alternatives\n")
out.append("```")
out.append(read("compare.txt").rstrip())
out.append("```")
cmp = json.loads(read("compare.json"))["systems"]
rq = next((s for s in cmp if s["system"] == "ratequeue"), None)
unix = next((s for s in cmp if "unix socket" in s["system"] and s["ran"]), None)
if rq and unix:
    ratio = unix["median_ns"] / rq["median_ns"]
    out.append("\nRedis Lua GCRA over a unix socket / ratequeue: %.0fx (budget: at least 300x, %s).\n"
               % (ratio, verdict(ratio >= 300)))
doc = json.loads(read("compare.json"))
if doc.get("lease_ratio"):
    out.append("Many hosts, global acquire+release with a lease held / host-only: %.2fx (budget 1.5x, %s)."
               % (doc["lease_ratio"], verdict(doc["lease_ratio"] <= 1.5)))
hosts = doc.get("hosts", {})
if hosts.get("ran"):
    out.append("Many hosts, 3 hosts on one Redis: %.1f round trips per 1,000 acquires per host, uncontended "
               "(budget 20, %s); flat out, %.1f%% of the limit used (goal 95%%, %s), shares within %.1f%% "
               "of the mean (goal 10%%, %s).\n"
               % (hosts["trips_per_1000"], verdict(hosts["trips_per_1000"] <= 20), 100 * hosts["utilisation"],
                  verdict(hosts["utilisation"] >= 0.95), 100 * hosts["worst_share"], verdict(hosts["worst_share"] <= 0.10)))

# 3. Wake latency and scaling
s = read("scaling.txt")
out.append("## Wake latency and scaling with processes\n")
out.append("```")
out.append(s.rstrip())
out.append("```")
m = re.search(r"ratio\s+([\d.]+)x\s+([\d.]+)x", s)
if m:
    p50, p99 = float(m.group(1)), float(m.group(2))
    out.append("\nWake latency against a raw futex wake: p50 %.2fx (budget 1.3x, %s), p99 %.2fx (budget 2x, %s)."
               % (p50, verdict(p50 <= 1.3), p99, verdict(p99 <= 2.0)))
rows = [l.split() for l in read("scaling.dat").splitlines() if l and not l.startswith("#")]
by_n = {int(r[0]): (float(r[1]), float(r[2])) for r in rows}
if 2 in by_n:
    two = by_n[2][0] / by_n[2][1]
    out.append("2 processes: %.0f%% of 2 processes doing bare GCRA consumes (budget: at least 50%%, %s)."
               % (100 * two, verdict(two >= 0.5)))
    big = max(by_n)
    keep = by_n[big][0] / by_n[2][0]
    out.append("%d processes: %.0f%% of the 2-process throughput (budget: at least 33%%, %s).\n"
               % (big, 100 * keep, verdict(keep >= 1 / 3)))
out.append("With concurrency 1 (all but one process waits, every acquire is a handoff):\n")
out.append("```")
out.append(read("scaling-conc.txt").rstrip())
out.append("```\n")
out.append("![scaling](scaling.svg)\n")

# 4. callgrind, Python
cg = read("callgrind.txt")
m = re.search(r"^rate-handle (\d+)", cg, re.M)
by_name = re.search(r"^rate (\d+)", cg, re.M)
out.append("## Instructions and Python\n")
out.append("```")
out.append(cg.rstrip())
out.append(read("python.txt").rstrip())
if os.path.exists(os.path.join(sys.argv[1], "node.txt")):
    out.append(read("node.txt").rstrip())
out.append("```")
if m:
    out.append("\nUncontended acquire + release, rate limit only, through a resolved handle (what the C++ "
               "rq::Resource calls): %s user-space instructions (budget: at most 150, %s)%s."
               % (m.group(1), verdict(int(m.group(1)) <= 150),
                  "; by name, with the name lookup: %s" % by_name.group(1) if by_name else ""))
print("\n".join(out))
