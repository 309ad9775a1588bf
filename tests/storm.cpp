// rq-storm: a SIGKILL storm. Worker processes do random operations on
// several resources while a killer SIGKILLs one (sometimes several at once)
// every 0-5 ms and starts replacements; workers also kill themselves while
// holding, while in line, and inside the library (the crash points of the
// test build). An independent checker, with shared memory of its own (not
// the library's counters), then verifies over the merged log:
//   - the concurrency caps, counting only live holders;
//   - the rate bound B + A*t/P over every window of the admission log;
//   - FIFO among live waiters on the concurrency-1 resource;
//   - no lost permit: once every worker is dead, the full capacity of every
//     limit can be acquired again;
// and reports the reclaim latency after each kill of a holder.
//
// The log is conservative, so that a race in recording can never show a
// violation that did not happen: a hold is logged from just after the
// acquire returned to just before release was called (or the instant the
// killer sent SIGKILL), a subset of the true holding interval; an admission
// is placed somewhere in [call start, return], and a window is only counted
// against the bound for the span its admissions certainly covered.
//
//   rq-storm [--seconds S] [--workers N] [--quiet]
// Exit status 0 when there were no violations and no lost permit.
#include "crash_points.hpp"
#include "ratequeue/ratequeue.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace {

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

constexpr int kMaxWorkers = 64;
constexpr uint64_t kMaxEvents = 1u << 23;  // 8M events (56 bytes each), touched only as used

// The resources, each exercising another path.
enum Res : uint32_t { kConc1 = 0, kRateConc = 1, kTokens = 2, kRedef = 3, kResources = 4 };
const char *const kNames[kResources] = {"conc1", "rateconc", "tokens", "redef"};
constexpr uint64_t kRateConcAmount = 2000, kRateConcBurst = 20, kRateConcCap = 4;  // 2,000/s
constexpr uint64_t kTokensAmount = 200000, kTokensBurst = 5000;                       // 200,000/s of load
constexpr uint64_t kRedefCapA = 3, kRedefCapB = 5;

enum Kind : uint32_t { kHold = 1, kAdmit = 2 };

// One record of the merged log. Holds: [start, end] a subset of the true
// holding interval; `queued` is when a ticket's enqueue returned (FIFO
// checks; 0 when the acquire did not take a ticket first), `called` when the
// acquire was called. Admissions: the grant lies in [called, start].
struct Event {
    uint32_t kind;
    uint32_t res;
    uint32_t worker;
    uint32_t blocking;  // a blocking ticket wait nobody cancels (FIFO checks)
    uint64_t load;
    int64_t called;
    int64_t queued;
    int64_t start;
    int64_t end;
};

// A worker's slot: what the killer needs to close its open holds.
struct Slot {
    std::atomic<int32_t> pid;
    std::atomic<int64_t> hold_start[kResources];  // 0: not holding; else the logged start
    std::atomic<int64_t> hold_called[kResources];
    std::atomic<int64_t> hold_queued[kResources];
    std::atomic<uint32_t> hold_blocking[kResources];
    std::atomic<uint64_t> ops;
};

struct Shared {
    std::atomic<uint64_t> n_events;
    std::atomic<uint64_t> dropped;
    std::atomic<uint64_t> self_kills;  // while holding or in line, by raise(SIGKILL)
    std::atomic<uint64_t> armed;       // workers armed with a crash point
    std::atomic<int32_t> stop;
    Slot slots[kMaxWorkers];
    Event events[kMaxEvents];
};

Shared *g = nullptr;

void log_event(const Event &e) {
    const uint64_t i = g->n_events.fetch_add(1, std::memory_order_relaxed);
    if (i >= kMaxEvents) {
        g->dropped.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    g->events[i] = e;
}

void define_all(rq_client *c, bool redef_b, uint32_t flags) {
    const rq_limit conc1[] = {{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
    const rq_limit rateconc[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, kRateConcAmount, 1'000'000'000ull, kRateConcBurst},
                                 {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, kRateConcCap, 0, 0}};
    const rq_limit tokens[] = {{RQ_LIMIT_RATE, RQ_COST_LOAD, kTokensAmount, 1'000'000'000ull, kTokensBurst}};
    const rq_limit redef_a[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 5000, 1'000'000'000ull, 50},
                                {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, kRedefCapA, 0, 0}};
    const rq_limit redef_b_l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 3000, 1'000'000'000ull, 30},
                                  {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, kRedefCapB, 0, 0}};
    rq_define(c, "conc1", conc1, 1, flags);
    rq_define(c, "rateconc", rateconc, 2, flags);
    rq_define(c, "tokens", tokens, 1, flags);
    rq_define(c, "redef", redef_b ? redef_b_l : redef_a, 2, flags | RQ_DEFINE_REPLACE);
}

[[noreturn]] void die_now() {
    raise(SIGKILL);
    _exit(99);
}

// One worker process: random operations until the storm stops or it dies.
[[noreturn]] void worker(const std::string &segment, int w, uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    Slot &slot = g->slots[w];
    // One worker in four dies inside the library, at a step chosen at random.
    if (chance(0.25)) {
        static const rq::detail::CrashPoint points[] = {
            rq::detail::CrashPoint::kAfterEnqueue,       rq::detail::CrashPoint::kHeadBeforeServe,
            rq::detail::CrashPoint::kAfterRateTaken,     rq::detail::CrashPoint::kInConcJournal,
            rq::detail::CrashPoint::kBeforePass,         rq::detail::CrashPoint::kInPass,
            rq::detail::CrashPoint::kInReleaseJournal,   rq::detail::CrashPoint::kInDefine,
            rq::detail::CrashPoint::kInReclaim,          rq::detail::CrashPoint::kWhileHeadSleeping,
            rq::detail::CrashPoint::kInServeBehind,      rq::detail::CrashPoint::kFastAfterRateTaken,
            rq::detail::CrashPoint::kFastInConcJournal,  rq::detail::CrashPoint::kFastBeforeUnlock};
        rq::detail::set_crash_point(points[pick(0, std::size(points) - 1)]);
        g->armed.fetch_add(1, std::memory_order_relaxed);
    }
    rq_client *c = nullptr;
    if (rq_open(segment.c_str(), &c) != RQ_OK) _exit(3);
    while (!g->stop.load(std::memory_order_relaxed)) {
        slot.ops.fetch_add(1, std::memory_order_relaxed);
        const auto res = static_cast<Res>(pick(0, kResources - 1));
        const char *name = kNames[res];
        const uint64_t load = res == kTokens ? pick(1, 500) : 1;
        if (w == 0 && chance(0.02)) {  // the redefiner
            define_all(c, chance(0.5), 0);
            continue;
        }
        if (res == kRateConc && chance(0.002)) {
            rq_penalize(c, name, static_cast<int64_t>(pick(100, 1000)) * 1000);  // 0.1-1 ms
            continue;
        }
        // How to acquire: blocking ticket (conc1: the FIFO check), blocking,
        // try, short timeout, or a ticket that is cancelled.
        const int how = static_cast<int>(pick(0, 9));
        rq_permit p{};
        int rc;
        int64_t queued = 0;
        uint32_t blocking = 0;
        const int64_t called = now_ns();
        if (how <= 3) {  // a ticket, waited on (blocking unless it is cancelled by a timeout)
            rq_ticket t{};
            rc = rq_enqueue(c, name, load, &t);
            if (rc != RQ_OK) continue;
            queued = now_ns();
            if (chance(0.01)) {
                g->self_kills.fetch_add(1, std::memory_order_relaxed);
                die_now();  // in line
            }
            if (how == 3) {
                rc = rq_wait(c, &t, static_cast<int64_t>(pick(1, 3)) * 1'000'000, &p);
            } else {
                blocking = res == kConc1 ? 1 : 0;
                rc = rq_wait(c, &t, -1, &p);
            }
        } else if (how <= 5) {
            rc = rq_acquire(c, name, load, -1, &p);
        } else if (how <= 7) {
            rc = rq_acquire(c, name, load, 0, &p);
        } else {
            rc = rq_acquire(c, name, load, static_cast<int64_t>(pick(1, 5)) * 1'000'000, &p);
        }
        if (rc != RQ_OK) continue;
        const int64_t start = now_ns();
        // The rate bound holds on settled loads: the tokens admission is logged
        // once its load is final (below).
        if (res != kTokens) log_event({kAdmit, res, static_cast<uint32_t>(w), blocking, load, called, queued, start, start});
        // The hold, as the killer would close it.
        slot.hold_called[res].store(called, std::memory_order_relaxed);
        slot.hold_queued[res].store(queued, std::memory_order_relaxed);
        slot.hold_blocking[res].store(blocking, std::memory_order_relaxed);
        slot.hold_start[res].store(start, std::memory_order_release);  // pairs with the killer's acquire load
        const uint64_t hold_us = pick(0, 200);
        if (hold_us) {
            const timespec ts{0, static_cast<long>(hold_us * 1000)};
            nanosleep(&ts, nullptr);
        }
        uint64_t settled = load;
        if (res == kTokens && chance(0.5) && rq_settle(c, &p, settled = pick(0, load)) != RQ_OK) settled = load;
        if (res == kTokens) log_event({kAdmit, res, static_cast<uint32_t>(w), 0, settled, called, queued, start, start});
        if (chance(0.01)) {
            g->self_kills.fetch_add(1, std::memory_order_relaxed);
            const int64_t end = now_ns();
            log_event({kHold, res, static_cast<uint32_t>(w), blocking, load, called, queued, start, end});
            slot.hold_start[res].store(0, std::memory_order_release);
            die_now();  // while holding
        }
        const int64_t end = now_ns();
        // The logged end comes before release is called; the slot is cleared
        // first so that the killer never closes this hold twice.
        slot.hold_start[res].store(0, std::memory_order_release);
        log_event({kHold, res, static_cast<uint32_t>(w), blocking, load, called, queued, start, end});
        rq_release(c, &p);
    }
    rq_close(c);
    _exit(0);
}

struct Options {
    double seconds = 15;
    int workers = 32;
    bool quiet = false;
};

std::string g_segment;

pid_t spawn(int w, uint64_t seed) {
    for (auto &h : g->slots[w].hold_start) h.store(0, std::memory_order_relaxed);
    const pid_t pid = fork();
    if (pid == 0) worker(g_segment, w, seed);
    g->slots[w].pid.store(pid, std::memory_order_relaxed);
    return pid;
}

// The killer closes the open holds of a worker it killed, at the kill instant.
void close_holds(int w, int64_t killed_at) {
    Slot &s = g->slots[w];
    for (uint32_t r = 0; r < kResources; ++r) {
        const int64_t start = s.hold_start[r].exchange(0, std::memory_order_acq_rel);
        if (start == 0 || start >= killed_at) continue;  // nothing held, or logged after the signal was sent
        log_event({kHold, r, static_cast<uint32_t>(w), s.hold_blocking[r].load(std::memory_order_relaxed), 1,
                   s.hold_called[r].load(std::memory_order_relaxed), s.hold_queued[r].load(std::memory_order_relaxed),
                   start, killed_at});
    }
}

struct Kill {
    int64_t at;
    uint32_t worker;
    bool held[kResources];
    bool group;  // one of three killed at once
};

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seconds" && i + 1 < argc) o.seconds = std::atof(argv[++i]);
        else if (a == "--workers" && i + 1 < argc) o.workers = std::atoi(argv[++i]);
        else if (a == "--quiet") o.quiet = true;
        else {
            std::fprintf(stderr, "usage: rq-storm [--seconds S] [--workers N (2..%d)] [--quiet]\n", kMaxWorkers);
            return 2;
        }
    }
    if (o.workers < 2 || o.workers > kMaxWorkers || !(o.seconds > 0)) {
        std::fprintf(stderr, "rq-storm: --workers must be 2..%d and --seconds > 0\n", kMaxWorkers);
        return 2;
    }
    g_segment = "rqstorm-" + std::to_string(getpid());
    void *mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        std::perror("rq-storm: mmap");
        return 1;
    }
    g = new (mem) Shared();
    {
        rq_client *c = nullptr;
        if (rq_open(g_segment.c_str(), &c) != RQ_OK) {
            std::fprintf(stderr, "rq-storm: cannot open segment %s\n", g_segment.c_str());
            return 1;
        }
        define_all(c, false, 0);
        rq_close(c);
    }
    std::mt19937_64 rng(static_cast<uint64_t>(now_ns()));
    for (int w = 0; w < o.workers; ++w) spawn(w, rng());
    const int64_t t0 = now_ns(), t_end = t0 + static_cast<int64_t>(o.seconds * 1e9);
    std::vector<Kill> kills;
    uint64_t killer_kills = 0, deaths = 0, multi = 0, open_failures = 0;
    int64_t next_report = t0 + 1'000'000'000;
    while (now_ns() < t_end) {
        // Reap whoever died on its own (a crash point, a self-kill) and replace it.
        int status;
        pid_t dead;
        while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int w = 0; w < o.workers; ++w) {
                if (g->slots[w].pid.load(std::memory_order_relaxed) != dead) continue;
                ++deaths;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 3) ++open_failures;
                // A worker that died by itself logged its hold (self-kill) or
                // died inside the library (the hold was never logged).
                for (auto &h : g->slots[w].hold_start) h.store(0, std::memory_order_relaxed);
                spawn(w, rng());
            }
        }
        const timespec ts{0, static_cast<long>(std::uniform_int_distribution<int64_t>(0, 5'000'000)(rng))};
        nanosleep(&ts, nullptr);
        // Kill one, or now and then the first few in a row at once.
        const int n = std::uniform_int_distribution<int>(0, 19)(rng) == 0 ? 3 : 1;
        if (n > 1) ++multi;
        const int first = std::uniform_int_distribution<int>(0, o.workers - 1)(rng);
        for (int k = 0; k < n; ++k) {
            const int w = (first + k) % o.workers;
            const pid_t pid = g->slots[w].pid.load(std::memory_order_relaxed);
            Kill kl{now_ns(), static_cast<uint32_t>(w), {}, n > 1};
            for (uint32_t r = 0; r < kResources; ++r) {
                kl.held[r] = g->slots[w].hold_start[r].load(std::memory_order_acquire) != 0;
            }
            if (kill(pid, SIGKILL) != 0) continue;
            waitpid(pid, &status, 0);
            ++killer_kills;
            ++deaths;
            close_holds(w, kl.at);
            kills.push_back(kl);
            spawn(w, rng());
        }
        if (!o.quiet && now_ns() >= next_report) {
            next_report += 1'000'000'000;
            std::fprintf(stderr, "\r  %.0f s: %llu deaths, %llu events ", (now_ns() - t0) / 1e9,
                         static_cast<unsigned long long>(deaths),
                         static_cast<unsigned long long>(g->n_events.load()));
        }
    }
    // Stop: everyone dies (as in a crash), then the checks.
    g->stop.store(1);
    for (int w = 0; w < o.workers; ++w) {
        const pid_t pid = g->slots[w].pid.load();
        const int64_t at = now_ns();
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close_holds(w, at);
    }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    const double elapsed = (now_ns() - t0) / 1e9;
    if (!o.quiet) std::fprintf(stderr, "\r");

    // ---- The checks, over the merged log ----
    const uint64_t n = std::min<uint64_t>(g->n_events.load(), kMaxEvents);
    std::vector<Event> holds[kResources], admits[kResources];
    uint64_t ops = 0;
    for (int w = 0; w < o.workers; ++w) ops += g->slots[w].ops.load();
    for (uint64_t i = 0; i < n; ++i) {
        const Event &e = g->events[i];
        if (e.res >= kResources) continue;
        (e.kind == kHold ? holds : admits)[e.res].push_back(e);
    }
    // 1. Caps: at no instant more logged holds than the cap (the redefined
    //    resource: the larger of its two caps).
    uint64_t cap_violations = 0;
    const uint64_t caps[kResources] = {1, kRateConcCap, 0, std::max(kRedefCapA, kRedefCapB)};
    for (uint32_t r = 0; r < kResources; ++r) {
        if (caps[r] == 0) continue;
        std::vector<std::pair<int64_t, int>> ev;
        for (const Event &e : holds[r]) {
            if (e.end <= e.start) continue;
            ev.push_back({e.start, +1});
            ev.push_back({e.end, -1});
        }
        std::sort(ev.begin(), ev.end());  // at equal instants the end (-1) comes first
        int64_t now = 0;
        for (auto &x : ev) {
            now += x.second;
            if (now > static_cast<int64_t>(caps[r])) ++cap_violations;
        }
    }
    // 2. Rate bound: for admissions i..j (by return time), their grants lie in
    //    [min called, start_j]; the load must fit B + A * span / P.
    uint64_t rate_violations = 0;
    struct Bound { uint32_t res; uint64_t amount, burst; };
    for (const Bound b : {Bound{kRateConc, kRateConcAmount, kRateConcBurst}, Bound{kTokens, kTokensAmount, kTokensBurst}}) {
        auto &a = admits[b.res];
        std::sort(a.begin(), a.end(), [](const Event &x, const Event &y) { return x.start < y.start; });
        for (size_t j = 0; j < a.size(); ++j) {
            uint64_t load = 0;
            int64_t lo = a[j].start;
            for (size_t i = j + 1; i-- > 0;) {
                load += a[i].load;
                lo = std::min(lo, a[i].called);
                // Windows up to 200 ms (8 to 20 times the bursts' 10 and 25 ms).
                if (a[j].start - a[i].start > 200'000'000 || j - i > 20000) break;
                const long double span = static_cast<long double>(a[j].start - lo);
                if (static_cast<long double>(load) > b.burst + b.amount * span / 1e9L + 1e-9L) {
                    ++rate_violations;
                    break;
                }
            }
        }
    }
    // 3. FIFO on conc1: a blocking ticket queued (enqueue returned) before
    //    another acquire was called is never overtaken: the later one's whole
    //    hold must not come before the earlier one's.
    uint64_t fifo_violations = 0;
    {
        // Logged conc1 holds are disjoint (the cap check), so an earlier start
        // means a whole hold before: A is overtaken when some hold that
        // started before A's was called after A's ticket was queued.
        std::vector<Event> h = holds[kConc1];
        std::sort(h.begin(), h.end(), [](const Event &x, const Event &y) { return x.start < y.start; });
        int64_t latest_call = 0;
        for (const Event &A : h) {
            if (A.blocking && A.queued != 0 && latest_call > A.queued) ++fifo_violations;
            if (A.end > A.start) latest_call = std::max(latest_call, A.called);
        }
    }
    // 4. Reclaim latency: after each kill of a conc1 holder, the next logged
    //    hold start on conc1 by another worker.
    std::vector<double> reclaim_ms, reclaim_single_ms, reclaim_group_ms;
    {
        std::vector<int64_t> starts;
        for (const Event &e : holds[kConc1]) starts.push_back(e.start);
        std::sort(starts.begin(), starts.end());
        for (const Kill &k : kills) {
            if (!k.held[kConc1]) continue;
            auto it = std::upper_bound(starts.begin(), starts.end(), k.at);
            if (it == starts.end()) continue;
            reclaim_ms.push_back((*it - k.at) / 1e6);
            (k.group ? reclaim_group_ms : reclaim_single_ms).push_back((*it - k.at) / 1e6);
        }
    }
    // 5. No lost permit: everyone is dead; the full capacity of every limit comes back.
    uint64_t lost = 0;
    {
        rq_client *c = nullptr;
        if (rq_open(g_segment.c_str(), &c) != RQ_OK) {
            std::fprintf(stderr, "rq-storm: cannot reopen the segment\n");
            return 1;
        }
        rq_reap_report rep{sizeof rep, 0, 0, 0};
        rq_reap(c, &rep);
        define_all(c, false, 0);  // the redefined one back to its first definition (replace)
        const struct { const char *name; uint64_t n; uint64_t load; } full[] = {
            {"conc1", 1, 1}, {"rateconc", kRateConcCap, 1}, {"tokens", 1, kTokensBurst}, {"redef", kRedefCapA, 1}};
        for (const auto &f : full) {
            std::vector<rq_permit> ps(f.n);
            for (uint64_t i = 0; i < f.n; ++i) {
                // Waits for the rate limits to refill and for any line to clear.
                if (rq_acquire(c, f.name, f.load, 3'000'000'000LL, &ps[i]) != RQ_OK) {
                    std::fprintf(stderr, "rq-storm: lost permit: %s could give only %llu of %llu\n", f.name,
                                 static_cast<unsigned long long>(i), static_cast<unsigned long long>(f.n));
                    ++lost;
                    break;
                }
            }
            for (auto &p : ps) rq_release(c, &p);
        }
        rq_close(c);
        const std::string path = "/dev/shm/" + g_segment;
        unlink(path.c_str());
    }
    const uint64_t violations = cap_violations + rate_violations + fifo_violations;
    std::printf("storm: %.1f s, %d workers: %llu deaths (%llu by the killer, %llu of them 3 at once; %llu self-kills "
                "while holding or in line; %llu workers armed with a crash point), %llu operations, %llu holds and "
                "%llu admissions logged%s\n",
                elapsed, o.workers, static_cast<unsigned long long>(deaths),
                static_cast<unsigned long long>(killer_kills), static_cast<unsigned long long>(multi * 3),
                static_cast<unsigned long long>(g->self_kills.load()), static_cast<unsigned long long>(g->armed.load()),
                static_cast<unsigned long long>(ops),
                static_cast<unsigned long long>(holds[0].size() + holds[1].size() + holds[2].size() + holds[3].size()),
                static_cast<unsigned long long>(admits[0].size() + admits[1].size() + admits[2].size() + admits[3].size()),
                g->dropped.load() ? " (log full: later events dropped)" : "");
    std::printf("violations: %llu (cap %llu, rate %llu, FIFO %llu); lost permits: %llu; failed opens: %llu\n",
                static_cast<unsigned long long>(violations), static_cast<unsigned long long>(cap_violations),
                static_cast<unsigned long long>(rate_violations), static_cast<unsigned long long>(fifo_violations),
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(open_failures));
    std::printf("reclaim after a holder of conc1 was killed (%zu kills): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                reclaim_ms.size(), pct(reclaim_ms, 0.5), pct(reclaim_ms, 0.99),
                reclaim_ms.empty() ? 0.0 : *std::max_element(reclaim_ms.begin(), reclaim_ms.end()));
    // A holder killed alone, and one killed with the two processes after it
    // (often the next in line: the front of the line dying at once).
    for (const auto &[what, v] : {std::pair<const char *, const std::vector<double> &>{"alone", reclaim_single_ms},
                                  {"with two others at once", reclaim_group_ms}}) {
        std::printf("  killed %s (%zu): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", what, v.size(), pct(v, 0.5),
                    pct(v, 0.99), v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()));
    }
    return violations == 0 && lost == 0 && open_failures == 0 ? 0 : 1;
}
