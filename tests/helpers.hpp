// Shared test helpers: unique segments, bounded child processes, timing.
#pragma once

#include "ratequeue/ratequeue.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

namespace rqtest {

inline int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline void sleep_ms(int ms) { usleep(static_cast<useconds_t>(ms) * 1000); }

inline void unlink_segment(const std::string &name) { ::unlink(("/dev/shm/" + name).c_str()); }

// A segment name unique to this process and call; removed on destruction.
struct Segment {
    std::string name;
    Segment() {
        static int counter = 0;
        name = "rqtest-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
        unlink_segment(name);
    }
    ~Segment() { unlink_segment(name); }
    const char *c_str() const { return name.c_str(); }
};

// In a forked child: a client of the segment, or exit 90.
inline rq_client *open_or_die(const Segment &seg) {
    rq_client *c = nullptr;
    if (rq_open(seg.c_str(), &c) != RQ_OK) _exit(90);
    return c;
}

// An open client that closes itself.
struct Client {
    rq_client *c = nullptr;
    explicit Client(const std::string &seg, const rq_open_options *o = nullptr) {
        int rc = rq_open_ex(seg.c_str(), o, &c);
        REQUIRE_MESSAGE(rc == RQ_OK, "rq_open: " << rq_strerror(rc));
    }
    ~Client() { rq_close(c); }
    operator rq_client *() const { return c; }
};

inline rq_limit rate(uint64_t amount, uint64_t period_ns, uint64_t burst = 0, uint32_t cost = RQ_COST_REQUEST) {
    return rq_limit{RQ_LIMIT_RATE, cost, amount, period_ns, burst};
}
inline rq_limit conc(uint64_t amount, uint32_t cost = RQ_COST_REQUEST) {
    return rq_limit{RQ_LIMIT_CONCURRENCY, cost, amount, 0, 0};
}

// Shared anonymous memory visible to forked children (results, barriers).
template <class T>
T *shared_block(size_t n = 1) {
    void *p = mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    return new (p) T[n]();
}

// Forks a child that runs fn and exits with its return value. The child
// kills itself after `limit_s` seconds so no test can hang on a child.
inline pid_t spawn(const std::function<int()> &fn, unsigned limit_s = 30) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(limit_s);
        int rc = fn();
        _exit(rc);
    }
    return pid;
}

// Waits for a child with a bound; returns its exit status, or -signal when
// killed by a signal, or -1000 after killing it on timeout.
inline int reap(pid_t pid, int limit_ms = 30000) {
    int64_t until = now_ns() + int64_t{limit_ms} * 1'000'000;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return -WTERMSIG(status);
            return -999;
        }
        if (now_ns() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1000;
        }
        usleep(1000);
    }
}

// A starting line in shared memory (make it with shared_block): n forked
// children each call arrive_and_wait(n) and start together, or after the bound.
struct StartLine {
    std::atomic<int> arrived{0};
    void arrive_and_wait(int n, int limit_ms) {
        arrived.fetch_add(1);
        int64_t until = now_ns() + int64_t{limit_ms} * 1'000'000;
        while (arrived.load() < n && now_ns() < until) sched_yield();
    }
};

// Spins (with short sleeps) until pred() or the bound passes.
inline bool eventually(const std::function<bool()> &pred, int limit_ms = 5000) {
    int64_t until = now_ns() + int64_t{limit_ms} * 1'000'000;
    while (now_ns() < until) {
        if (pred()) return true;
        usleep(500);
    }
    return pred();
}

inline double cpu_seconds_self() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace rqtest
