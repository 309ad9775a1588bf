// rq-scribbler: one process writes random bytes at random offsets of a live
// segment while worker processes acquire, wait on tickets, cancel, settle,
// release, predict, define and reap on it. Every call must return a code the
// library defines (0 or an RQ_E*), within its deadline plus a generous slack
// for calls that have one, and no worker may crash or hang. (Shared memory
// is hostile input: a damaged segment gives errors, never a crash.)
//
//   rq-scribbler [--seconds S] [--workers N] [--quiet]
// Exit status 0 when every call returned a known code in time and no worker
// crashed or hung.
#include "ratequeue/ratequeue.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// A call that has a deadline may overrun it by this much (scheduling on a
// busy 2-core machine, a sanitizer build); beyond it, it hung.
constexpr int64_t kSlackNs = 2'000'000'000;

struct Stats {
    std::atomic<uint64_t> calls, errors, bad_codes, late, writes;
    std::atomic<int64_t> worst_over_ns;
    std::atomic<uint64_t> by_code[16];  // -rc
    std::atomic<int32_t> stop;
};

Stats *g = nullptr;

void check(int rc, int64_t started, int64_t deadline_ns) {
    g->calls.fetch_add(1, std::memory_order_relaxed);
    if (rc != RQ_OK) g->errors.fetch_add(1, std::memory_order_relaxed);
    if (rc <= 0 && rc > -16) g->by_code[-rc].fetch_add(1, std::memory_order_relaxed);
    if (rc > 0 || rc < RQ_EUNAVAIL) {
        g->bad_codes.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "rq-scribbler: a call returned %d, not a code of the library\n", rc);
    }
    if (deadline_ns >= 0) {
        const int64_t over = now_ns() - started - deadline_ns;
        int64_t w = g->worst_over_ns.load(std::memory_order_relaxed);
        while (over > w && !g->worst_over_ns.compare_exchange_weak(w, over)) {
        }
        if (over > kSlackNs) g->late.fetch_add(1, std::memory_order_relaxed);
    }
}

[[noreturn]] void worker(const std::string &seg, uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    static const char *const names[] = {"conc1", "rateconc", "tokens", "nope"};
    rq_client *c = nullptr;
    int64_t t = now_ns();
    int rc = rq_open(seg.c_str(), &c);
    check(rc, t, -1);
    if (rc != RQ_OK) _exit(0);  // the header was damaged first: an error, as it should be
    rq_permit held[4] = {};
    bool holding[4] = {};
    while (!g->stop.load(std::memory_order_relaxed)) {
        const int r = static_cast<int>(pick(0, 3));
        const char *name = names[r];
        const uint64_t load = r == 2 ? pick(1, 300) : 1;
        const int64_t timeout = static_cast<int64_t>(pick(0, 5)) * 1'000'000;
        t = now_ns();
        switch (pick(0, 8)) {
        case 0:
        case 1: {
            if (holding[r]) {
                rc = rq_release(c, &held[r]);
                check(rc, t, -1);
                holding[r] = false;
                break;
            }
            rc = rq_acquire(c, name, load, timeout, &held[r]);
            check(rc, t, timeout);
            holding[r] = rc == RQ_OK;
            break;
        }
        case 2: {
            rq_ticket tk{};
            rc = rq_enqueue(c, name, load, &tk);
            check(rc, t, -1);
            if (rc != RQ_OK) break;
            rq_permit p{};
            t = now_ns();
            if (pick(0, 3) == 0) {
                check(rq_cancel(c, &tk), t, -1);
                t = now_ns();
                rc = rq_wait(c, &tk, timeout, &p);
            } else {
                rc = rq_wait(c, &tk, timeout, &p);
            }
            check(rc, t, timeout);
            if (rc == RQ_OK) {
                t = now_ns();
                check(rq_release(c, &p), t, -1);
            }
            break;
        }
        case 3:
            if (holding[r]) {
                check(rq_settle(c, &held[r], pick(0, 300)), t, -1);
            }
            break;
        case 4: {
            int64_t ns = 0;
            check(rq_predict_wait(c, name, load, &ns), t, -1);
            break;
        }
        case 5: {
            const rq_limit l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, pick(1, 1000), 1'000'000'000ull, pick(0, 50)},
                                  {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, pick(1, 4), 0, 0}};
            check(rq_define(c, name, l, 2, pick(0, 1) ? RQ_DEFINE_REPLACE : 0), t, -1);
            break;
        }
        case 6: {
            rq_reap_report rep{sizeof rep, 0, 0, 0};
            check(rq_reap(c, &rep), t, -1);
            break;
        }
        case 7: {
            rq_limit out[RQ_MAX_LIMITS];
            size_t n = 0;
            check(rq_describe(c, name, out, RQ_MAX_LIMITS, &n), t, -1);
            break;
        }
        default:
            check(rq_penalize(c, name, static_cast<int64_t>(pick(0, 1000)) * 1000), t, -1);
            break;
        }
    }
    for (int r = 0; r < 4; ++r) {
        if (holding[r]) rq_release(c, &held[r]);
    }
    rq_close(c);
    _exit(0);
}

// Random bytes at random offsets: single bytes, words at their extremes, runs.
[[noreturn]] void scribbler(const std::string &seg, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const std::string path = "/dev/shm/" + seg;
    const int fd = open(path.c_str(), O_RDWR);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) _exit(4);
    auto *base = static_cast<unsigned char *>(mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (base == MAP_FAILED) _exit(4);
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    // Most of a segment is queue rings; aim a third of the writes at the
    // first 64 KiB (process and resource tables), where damage bites. The
    // first 4 KiB (the header: one bad word there makes every later call
    // RQ_ECORRUPT at once, which the hostile-segment tests cover) get one
    // write in 500, so that the deeper structures are exercised live.
    static const uint64_t extremes[] = {0, ~0ull, 1ull << 63, (1ull << 63) - 1, 1, 0xFFFFFFFFull, 1ull << 32};
    while (!g->stop.load(std::memory_order_relaxed)) {
        const bool header = std::uniform_int_distribution<int>(0, 499)(rng) == 0;
        const uint64_t lo = header ? 0 : 4096;
        const uint64_t hi = header ? 4096 : std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? std::min<uint64_t>(size, 65536) : size;
        const uint64_t off = std::uniform_int_distribution<uint64_t>(lo, hi - 8)(rng) & ~7ull;
        switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
        case 0:
            base[off + std::uniform_int_distribution<int>(0, 7)(rng)] = static_cast<unsigned char>(rng());
            break;
        case 1: {
            const uint64_t v = extremes[std::uniform_int_distribution<size_t>(0, std::size(extremes) - 1)(rng)];
            reinterpret_cast<std::atomic<uint64_t> *>(base + off)->store(v, std::memory_order_relaxed);
            break;
        }
        default:
            reinterpret_cast<std::atomic<uint64_t> *>(base + off)->store(rng(), std::memory_order_relaxed);
            break;
        }
        g->writes.fetch_add(1, std::memory_order_relaxed);
        const timespec ts{0, static_cast<long>(std::uniform_int_distribution<int>(50, 500)(rng)) * 1000};
        nanosleep(&ts, nullptr);
    }
    _exit(0);
}

}  // namespace

int main(int argc, char **argv) {
    double seconds = 10;
    int workers = 6;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (a == "--workers" && i + 1 < argc) workers = std::atoi(argv[++i]);
        else if (a == "--quiet") {
        } else {
            std::fprintf(stderr, "usage: rq-scribbler [--seconds S] [--workers N]\n");
            return 2;
        }
    }
    if (workers < 1 || workers > 64 || !(seconds > 0)) {
        std::fprintf(stderr, "rq-scribbler: --workers 1..64, --seconds > 0\n");
        return 2;
    }
    void *mem = mmap(nullptr, sizeof(Stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    g = new (mem) Stats();
    const std::string seg = "rqscribble-" + std::to_string(getpid());
    // A small segment, so that the scribbler's writes land on live structures often.
    rq_open_options o{};
    o.size = sizeof o;
    o.max_resources = 8;
    o.queue_slots = 64;
    o.max_processes = 64;
    rq_client *c = nullptr;
    if (rq_open_ex(seg.c_str(), &o, &c) != RQ_OK) return 1;
    const rq_limit conc1[] = {{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
    const rq_limit rateconc[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 1000, 1'000'000'000ull, 10},
                                 {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 3, 0, 0}};
    const rq_limit tokens[] = {{RQ_LIMIT_RATE, RQ_COST_LOAD, 50000, 1'000'000'000ull, 1000}};
    rq_define(c, "conc1", conc1, 1, 0);
    rq_define(c, "rateconc", rateconc, 2, 0);
    rq_define(c, "tokens", tokens, 1, 0);
    rq_close(c);
    std::mt19937_64 rng(static_cast<uint64_t>(now_ns()));
    pid_t pids[65];
    for (int w = 0; w < workers; ++w) {
        pids[w] = fork();
        if (pids[w] == 0) worker(seg, rng());
    }
    usleep(100'000);  // the workers are in their loops
    pids[workers] = fork();
    if (pids[workers] == 0) scribbler(seg, rng());
    usleep(static_cast<useconds_t>(seconds * 1e6));
    g->stop.store(1);
    // Every worker must come back: within its last call's deadline plus the slack.
    int crashed = 0, hung = 0;
    const int64_t give_up = now_ns() + 10'000'000'000LL;
    for (int w = 0; w <= workers; ++w) {
        int status = 0;
        pid_t r;
        while ((r = waitpid(pids[w], &status, WNOHANG)) == 0 && now_ns() < give_up) usleep(10'000);
        if (r == 0) {
            ++hung;
            std::fprintf(stderr, "rq-scribbler: %s %d hung; killed\n", w < workers ? "worker" : "scribbler", pids[w]);
            kill(pids[w], SIGKILL);
            waitpid(pids[w], &status, 0);
        } else if (WIFSIGNALED(status)) {
            ++crashed;
            std::fprintf(stderr, "rq-scribbler: worker %d died of signal %d\n", pids[w], WTERMSIG(status));
        }
    }
    const std::string path = "/dev/shm/" + seg;
    unlink(path.c_str());
    std::string codes;
    for (int i = 0; i < 16; ++i) {
        const uint64_t n = g->by_code[i].load();
        if (n) codes += std::string(codes.empty() ? "" : ", ") + rq_errname(-i) + " " + std::to_string(n);
    }
    std::printf("scribbler: %.1f s, %d workers: %llu writes into the live segment, %llu calls (%llu errors), "
                "%llu unknown codes, %llu calls past their deadline by more than %.0f s (worst %.1f ms over), "
                "%d crashed, %d hung\n  results: %s\n",
                seconds, workers, static_cast<unsigned long long>(g->writes.load()),
                static_cast<unsigned long long>(g->calls.load()), static_cast<unsigned long long>(g->errors.load()),
                static_cast<unsigned long long>(g->bad_codes.load()), static_cast<unsigned long long>(g->late.load()),
                kSlackNs / 1e9, std::max<int64_t>(0, g->worst_over_ns.load()) / 1e6, crashed, hung, codes.c_str());
    return g->bad_codes.load() == 0 && g->late.load() == 0 && crashed == 0 && hung == 0 ? 0 : 1;
}
