// How ratequeue behaves as processes pile onto one resource, and how fast a
// release wakes a blocked waiter, each next to its floor measured in the same
// run:
//
//   wake      a process blocked in rq_acquire (concurrency 1) is woken by a
//             release in another process: p50, p99, p99.9 of release-to-return,
//             against a raw FUTEX_WAKE of a process blocked in FUTEX_WAIT
//   scale N   N processes hammer acquire+release on one resource (a rate
//             limit that never binds, and a concurrency limit of 1 so that
//             all but one wait): aggregate throughput, p99 of one acquire,
//             CPU per second of the processes; against N processes doing bare
//             GCRA consumes (clock + CAS) on one shared word
//
//   build/bench/scaling [--seconds S] [--max N] [--wakes N] [--data FILE]
//
// --data writes "N rq_ops_per_s gcra_ops_per_s p99_us cpu_per_s" rows for
// bench/run-all's chart.
#include "ratequeue/ratequeue.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

namespace {

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

template <class T>
T *shared(size_t n = 1) {
    void *p = mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        std::perror("mmap");
        std::exit(1);
    }
    return new (p) T[n]();
}

double pct(std::vector<int64_t> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
}

// CPU time of this process so far (each worker measures its own interval).
double self_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---- wake latency -----------------------------------------------------------------------

struct WakeShared {
    std::atomic<uint32_t> word;     // the raw futex
    std::atomic<int> phase;         // handshake
    std::atomic<int64_t> released;  // when the releaser let go
    std::atomic<int> waiting;       // the waiter is (about to be) blocked
};

void futex_wait_word(std::atomic<uint32_t> *w, uint32_t v) {
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), FUTEX_WAIT, v, nullptr, nullptr, 0);
}
void futex_wake_word(std::atomic<uint32_t> *w, int n = 1) {
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

// Pins the calling process to one CPU of those it may use (the last for the
// waiter, the first for the releaser), when there are two or more: the case
// measured is a sleeper woken on the other CPU (DESIGN section 5), for
// ratequeue and the raw futex alike, not wherever the scheduler places it.
// unpin() restores the mask.
cpu_set_t g_allowed;
bool g_pinned = false;

void pin(bool waiter) {
    cpu_set_t all;
    if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2) return;
    int first = -1, last = -1;
    for (int i = 0; i < CPU_SETSIZE; ++i) {
        if (!CPU_ISSET(i, &all)) continue;
        if (first < 0) first = i;
        last = i;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(waiter ? last : first, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0 && !waiter) {
        g_allowed = all;
        g_pinned = true;
    }
}

void unpin() {
    if (g_pinned) sched_setaffinity(0, sizeof g_allowed, &g_allowed);
    g_pinned = false;
}

// Samples of release-to-wake, ratequeue or raw futex.
std::vector<int64_t> wake_samples(bool raw, int n, const std::string &seg) {
    auto *sh = shared<WakeShared>();
    auto *lat = shared<int64_t>(static_cast<size_t>(n));
    rq_client *c = nullptr;
    if (!raw) {
        rq_open(seg.c_str(), &c);
        rq_limit l[] = {{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
        rq_define(c, "wake", l, 1, 0);  // concurrency 1
    }
    pid_t child = fork();
    if (child == 0) {  // the waiter
        pin(true);
        rq_client *wc = nullptr;
        if (!raw) rq_open(seg.c_str(), &wc);
        for (int i = 0; i < n; ++i) {
            while (sh->phase.load() != 2 * i + 1) {
            }  // the holder holds
            sh->waiting.store(1);
            if (raw) {
                while (sh->word.load() == 0) futex_wait_word(&sh->word, 0);
                sh->word.store(0);
            } else {
                rq_permit p;
                rq_acquire(wc, "wake", 1, -1, &p);
                lat[i] = now_ns() - sh->released.load();
                rq_release(wc, &p);
            }
            if (raw) lat[i] = now_ns() - sh->released.load();
            sh->phase.store(2 * i + 2);
        }
        if (wc) rq_close(wc);
        _exit(0);
    }
    pin(false);
    for (int i = 0; i < n; ++i) {
        rq_permit p;
        if (!raw) rq_acquire(c, "wake", 1, -1, &p);
        sh->waiting.store(0);
        sh->phase.store(2 * i + 1);
        while (sh->waiting.load() == 0) {
        }
        // Let it get to sleep (a waiter that is still spinning is not the case measured).
        timespec ts{0, 200'000};
        nanosleep(&ts, nullptr);
        sh->released.store(now_ns());
        if (raw) {
            sh->word.store(1);
            futex_wake_word(&sh->word);
        } else {
            rq_release(c, &p);
        }
        while (sh->phase.load() != 2 * i + 2) {
        }
    }
    waitpid(child, nullptr, 0);
    unpin();
    if (c) rq_close(c);
    return std::vector<int64_t>(lat, lat + n);
}

// ---- scaling ----------------------------------------------------------------------------

struct Row {
    int n;
    double rq_ops, gcra_ops, p99_us, cpu_per_s;
};

// Runs ratequeue and the bare GCRA floor in alternating rounds (so both see
// the same spells of noise from the rest of the machine), each round n
// forked processes for seconds / kRounds. Both loops read the clock the same
// number of times per operation: the acquire latency is sampled on one
// operation in kSampleEvery, with two extra clock reads.
Row scale(int n, double seconds, const std::string &seg) {
    constexpr int kRounds = 4;
    constexpr uint64_t kSampleEvery = 16;
    Row row{n, 0, 0, 0, 0};
    auto *ops = shared<std::atomic<uint64_t>>(2);
    auto *go = shared<std::atomic<uint32_t>>();
    auto *word = shared<std::atomic<int64_t>>();
    constexpr int kSamples = 4096;
    auto *samples = shared<int64_t>(static_cast<size_t>(n) * kSamples);
    auto *taken = shared<std::atomic<uint32_t>>(static_cast<size_t>(n));
    auto *cpu_us = shared<std::atomic<uint64_t>>();  // summed over the workers of a round
    double wall[2] = {0, 0}, cpu_rq = 0;
    uint64_t done[2] = {0, 0};
    for (int round = 0; round < kRounds; ++round) {
        for (int mode = 0; mode < 2; ++mode) {  // 0: ratequeue, 1: bare GCRA
            go->store(0);
            ops[mode].store(0);
            cpu_us->store(0);
            std::vector<pid_t> kids;
            for (int k = 0; k < n; ++k) {
                pid_t pid = fork();
                if (pid == 0) {
                    rq_client *c = nullptr;
                    if (mode == 0) rq_open(seg.c_str(), &c);
                    // Asleep until the start (spinning here would count CPU
                    // outside the measured interval).
                    while (go->load() == 0) futex_wait_word(go, 0);
                    const double cpu_start = self_cpu_seconds();
                    const int64_t end = now_ns() + static_cast<int64_t>(seconds / kRounds * 1e9);
                    uint64_t mine = 0;
                    int64_t *my = samples + static_cast<size_t>(k) * kSamples;
                    uint32_t kept = taken[k].load();
                    // Each round keeps its share of the samples.
                    const uint32_t quota = static_cast<uint32_t>(kSamples / kRounds * (round + 1));
                    while (now_ns() < end) {
                        if (mode == 0) {
                            rq_permit p;
                            if (mine % kSampleEvery == 0 && kept < quota) {
                                const int64_t t = now_ns();
                                if (rq_acquire(c, "scale", 1, 100'000'000, &p) != RQ_OK) continue;
                                my[kept++] = now_ns() - t;
                            } else if (rq_acquire(c, "scale", 1, 100'000'000, &p) != RQ_OK) {
                                continue;
                            }
                            rq_release(c, &p);
                        } else {
                            // clock + load + max + one CAS: 1 us per unit, 1 s bucket (never binds)
                            for (;;) {
                                const int64_t t = now_ns();
                                int64_t tat = word->load(std::memory_order_acquire);
                                const int64_t nt = std::max(tat, t) + 1;
                                if (word->compare_exchange_weak(tat, nt, std::memory_order_acq_rel)) break;
                            }
                        }
                        ++mine;
                    }
                    taken[k].store(kept);
                    ops[mode].fetch_add(mine);
                    cpu_us->fetch_add(static_cast<uint64_t>((self_cpu_seconds() - cpu_start) * 1e6));
                    if (c) rq_close(c);
                    _exit(0);
                }
                kids.push_back(pid);
            }
            // The clock first: once woken, the workers may keep the parent
            // off the CPU for a while.
            const int64_t t0 = now_ns();
            go->store(1);
            futex_wake_word(go, INT32_MAX);
            for (pid_t k : kids) waitpid(k, nullptr, 0);
            wall[mode] += static_cast<double>(now_ns() - t0) / 1e9;
            done[mode] += ops[mode].load();
            if (mode == 0) cpu_rq += static_cast<double>(cpu_us->load()) / 1e6;
        }
    }
    row.rq_ops = static_cast<double>(done[0]) / wall[0];
    row.gcra_ops = static_cast<double>(done[1]) / wall[1];
    row.cpu_per_s = cpu_rq / wall[0];
    std::vector<int64_t> all;
    for (int k = 0; k < n; ++k) {
        for (uint32_t i = 0; i < taken[k].load(); ++i) all.push_back(samples[static_cast<size_t>(k) * kSamples + i]);
    }
    row.p99_us = pct(all, 0.99) / 1e3;
    return row;
}

}  // namespace

int main(int argc, char **argv) {
    double seconds = 1.0;
    int max_n = 64, wakes = 2000;
    const char *data = nullptr;
    bool conc_mode = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--concurrency-1")) {
            conc_mode = true;
            continue;
        }
        if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (!std::strcmp(argv[i], "--max") && i + 1 < argc) max_n = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--wakes") && i + 1 < argc) wakes = std::max(10, std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else {
            std::fprintf(stderr, "usage: scaling [--seconds S] [--max N] [--wakes N] [--data FILE] [--concurrency-1]\n");
            return 2;
        }
    }
    const std::string seg = "rq-scaling-" + std::to_string(getpid());
    rq_client *c = nullptr;
    if (rq_open(seg.c_str(), &c) != RQ_OK) return 1;
    rq_limit l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 1'000'000'000, 1'000'000'000ull, 1'000'000'000},
                    {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
    rq_define(c, "scale", l, conc_mode ? 2 : 1, 0);

    std::printf("wake latency: release in one process to return from acquire in another, %d samples\n", wakes);
    // Alternating rounds, so that both see the same spells of noise from the
    // rest of the machine (on a 2-vCPU guest they dominate the tail).
    std::vector<int64_t> raw, rqw;
    constexpr int kRounds = 10;
    for (int k = 0; k < kRounds; ++k) {
        const int m = (wakes + kRounds - 1) / kRounds;
        for (int64_t v : wake_samples(true, m, seg)) raw.push_back(v);
        for (int64_t v : wake_samples(false, m, seg)) rqw.push_back(v);
    }
    std::printf("  %-22s %10s %10s %10s\n", "", "p50", "p99", "p99.9");
    std::printf("  %-22s %8.1fus %8.1fus %8.1fus\n", "raw FUTEX_WAKE", pct(raw, .5) / 1e3, pct(raw, .99) / 1e3,
                pct(raw, .999) / 1e3);
    std::printf("  %-22s %8.1fus %8.1fus %8.1fus\n", "ratequeue release", pct(rqw, .5) / 1e3, pct(rqw, .99) / 1e3,
                pct(rqw, .999) / 1e3);
    std::printf(conc_mode ? "  %-22s %9.2fx %9.2fx %9.2fx   (for the handoff rate below)\n\n"
                          : "  %-22s %9.2fx %9.2fx %9.2fx   (budget: p50 1.3x, p99 2x)\n\n",
                "ratio",
                pct(rqw, .5) / std::max(1.0, pct(raw, .5)), pct(rqw, .99) / std::max(1.0, pct(raw, .99)),
                pct(rqw, .999) / std::max(1.0, pct(raw, .999)));

    std::printf("scaling: N processes hammer acquire+release on one resource (%s), %.1f s each\n",
                conc_mode ? "concurrency 1: all but one wait" : "a rate limit that never binds", seconds);
    std::printf("  %5s %14s %14s %8s %12s %14s\n", "N", "rq ops/s", "bare GCRA/s", "ratio", "p99 acquire", "CPU (cores)");
    FILE *f = data ? std::fopen(data, "w") : nullptr;
    if (f) std::fprintf(f, "# N rq_ops_per_s gcra_ops_per_s p99_us cpu_cores\n");
    double two = 0;
    for (int n = 1; n <= max_n; n *= 2) {
        Row r = scale(n, seconds, seg);
        if (n == 2) two = r.rq_ops;
        std::printf("  %5d %14.0f %14.0f %7.2fx %10.1fus %14.2f\n", n, r.rq_ops, r.gcra_ops,
                    r.gcra_ops > 0 ? r.rq_ops / r.gcra_ops : 0, r.p99_us, r.cpu_per_s);
        if (f) std::fprintf(f, "%d %.0f %.0f %.1f %.3f\n", n, r.rq_ops, r.gcra_ops, r.p99_us, r.cpu_per_s);
        if (n == max_n && two > 0 && !conc_mode) {
            std::printf("  %d processes keep %.0f%% of the 2-process throughput (budget: at least 33%%)\n", n,
                        100.0 * r.rq_ops / two);
        }
        if (n == max_n && conc_mode) {
            // With one permit and a FIFO line, every admission once processes
            // queue is a handoff to a process that sleeps in the kernel: one
            // cross-process wake each. (Two processes rarely queue: the
            // line-free path serves them, so they are no baseline here.)
            const double wake_rate = 1e9 / std::max(1.0, pct(raw, .5));
            std::printf("  %d processes: %.0f handoffs/s, %.2fx the raw futex wake rate measured above "
                        "(1 / p50 = %.0f/s): bounded by wake-ups, not by the processes\n",
                        n, r.rq_ops, r.rq_ops / wake_rate, wake_rate);
        }
    }
    if (f) std::fclose(f);
    rq_close(c);
    ::unlink(("/dev/shm/" + seg).c_str());
    return 0;
}
