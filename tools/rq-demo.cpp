// rq-demo: N worker processes share one RPM-style limit plus a concurrency
// limit through a ratequeue segment, then the parent checks that the limit held.
//
//   rq-demo [--workers N] [--seconds S] [--rpm R] [--segment NAME]
//
// Each worker loops acquire -> simulated API call (20..80 ms) -> release.
// Exit status: 0 when the limit was kept, 1 when it was not, 2 on bad usage
// or a ratequeue error, 130 when interrupted.
#include "ratequeue/ratequeue.hpp"

#include <fmt/core.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char *kResource = "demo-llm";
constexpr uint32_t kConcurrency = 4;
constexpr uint32_t kMaxWorkers = 256;

struct Options {
    uint32_t workers = 8;
    uint32_t seconds = 5;
    uint64_t rpm = 600;
    std::string segment = "rq-demo-" + std::to_string(getpid());
};

// Shared with the workers through a MAP_SHARED anonymous mapping. Relaxed
// orders throughout: the parent reads the totals only after waitpid, which
// orders every worker store before it; the live line may be slightly stale.
struct Board {
    std::atomic<uint32_t> in_flight;      // workers: +1 after acquire, -1 before release
    std::atomic<uint32_t> max_in_flight;  // workers: running maximum of in_flight
    std::atomic<uint64_t> admitted[kMaxWorkers];  // worker i only
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

std::atomic<bool> g_stop{false};  // set by SIGINT / SIGTERM in the parent
void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

bool parse(int argc, char **argv, Options &o) {
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (i + 1 >= argc) return false;
        const char *v = argv[++i];
        char *end = nullptr;
        unsigned long long n = std::strtoull(v, &end, 10);
        bool numeric = *v != '\0' && *end == '\0' && n > 0;
        if (a == "--workers" && numeric && n <= kMaxWorkers) o.workers = static_cast<uint32_t>(n);
        else if (a == "--seconds" && numeric && n <= 86400) o.seconds = static_cast<uint32_t>(n);
        else if (a == "--rpm" && numeric && n <= RQ_MAX_AMOUNT) o.rpm = n;
        else if (a == "--segment") o.segment = v;
        else return false;
    }
    return true;
}

void note_in_flight(Board &b) {
    uint32_t now = b.in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    uint32_t max = b.max_in_flight.load(std::memory_order_relaxed);
    while (now > max && !b.max_in_flight.compare_exchange_weak(max, now, std::memory_order_relaxed)) {
    }
}

[[noreturn]] void worker(const Options &o, Board &b, uint32_t index, Clock::time_point end, pid_t parent) {
    signal(SIGINT, SIG_DFL);             // Ctrl-C reaches the whole process group
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);    // never outlive the parent
    if (getppid() != parent) _exit(1);    // it died before prctl
    int status = 0;
    try {
        rq::Client client(o.segment);
        std::mt19937 rng(static_cast<uint32_t>(getpid()));
        std::uniform_int_distribution<int> call_ms(20, 80);
        for (auto left = end - Clock::now(); left > Clock::duration::zero(); left = end - Clock::now()) {
            std::optional<rq::Permit> permit = client.acquire_for(kResource, 1, left);
            if (!permit) break;
            b.admitted[index].fetch_add(1, std::memory_order_relaxed);
            note_in_flight(b);
            std::this_thread::sleep_for(std::chrono::milliseconds(call_ms(rng)));
            b.in_flight.fetch_sub(1, std::memory_order_relaxed);
            permit->release();
        }
    } catch (const std::exception &e) {
        fmt::print(stderr, "worker {}: {}\n", getpid(), e.what());
        status = 2;
    }
    _exit(status);  // not exit(): the parent's objects are not ours to destroy
}

uint64_t total_admitted(const Board &b, uint32_t workers) {
    uint64_t sum = 0;
    for (uint32_t i = 0; i < workers; ++i) sum += b.admitted[i].load(std::memory_order_relaxed);
    return sum;
}

// Live line once a second until the run ends or a signal asks us to stop.
void watch(const Board &b, const Options &o, Clock::time_point start, Clock::time_point end) {
    for (auto next = start + std::chrono::seconds(1); !g_stop.load(std::memory_order_relaxed);) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // short: Ctrl-C is seen promptly
        const auto now = Clock::now();
        if (now < next && now < end) continue;
        next += std::chrono::seconds(1);
        fmt::print("\r[{:5.1f}s/{}s] admitted {:6}  in flight {}  max concurrency {}",
                   std::chrono::duration<double>(now - start).count(), o.seconds, total_admitted(b, o.workers),
                   b.in_flight.load(std::memory_order_relaxed), b.max_in_flight.load(std::memory_order_relaxed));
        std::fflush(stdout);
        if (now >= end) break;
    }
    fmt::print("\n");
    std::fflush(stdout);
}

int report(const Board &b, const Options &o, const std::vector<pid_t> &pids, double elapsed_s,
           uint64_t burst) {
    fmt::print("\n{:>10}  {:>8}\n", "worker pid", "admitted");
    for (size_t i = 0; i < pids.size(); ++i) {
        fmt::print("{:>10}  {:>8}\n", pids[i], b.admitted[i].load(std::memory_order_relaxed));
    }
    const uint64_t admitted = total_admitted(b, o.workers);
    const double allowed = static_cast<double>(burst) + static_cast<double>(o.rpm) * elapsed_s / 60.0;
    const uint32_t max_conc = b.max_in_flight.load(std::memory_order_relaxed);
    const bool kept = static_cast<double>(admitted) <= allowed && max_conc <= kConcurrency;
    fmt::print("{:>10}  {:>8}\n\nallowed by the limit over {:.2f}s: {:.1f} (burst {} + {}/min)\n"
               "utilisation: {:.1f}%\nmax concurrency observed: {} (limit {})\nlimit kept: {}\n",
               "total", admitted, elapsed_s, allowed, burst, o.rpm,
               100.0 * static_cast<double>(admitted) / allowed, max_conc, kConcurrency, kept ? "yes" : "NO");
    return kept ? 0 : 1;
}

void unlink_segment(const std::string &name) {
    ::unlink(("/dev/shm/" + name).c_str());
}

// Sends sig (0: none) to every worker and reaps them; returns how many failed.
size_t stop_workers(const std::vector<pid_t> &pids, int sig) {
    size_t failed = 0;
    if (sig != 0) {
        for (pid_t pid : pids) kill(pid, sig);
    }
    for (pid_t pid : pids) {
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    return failed;
}

// Defines the resource, runs the workers and reports; returns the exit status.
int run(const Options &o, Board &board) {
    const uint64_t burst = std::max<uint64_t>(1, o.rpm / 60);  // one second's worth
    rq::Client client(o.segment);
    client.define(kResource, {rq::rate(o.rpm, std::chrono::minutes(1), rq::Cost::kRequest, burst),
                              rq::concurrency(kConcurrency)},
                  true);
    fmt::print("segment {}: {} workers share {} requests/min (burst {}) and concurrency {} for {}s\n",
               o.segment, o.workers, o.rpm, burst, kConcurrency, o.seconds);
    std::fflush(stdout);  // before fork, so children inherit an empty buffer
    const pid_t parent = getpid();
    const auto start = Clock::now();
    const auto end = start + std::chrono::seconds(o.seconds);
    std::vector<pid_t> pids;
    for (pid_t pid = 0; pids.size() < o.workers && pid >= 0 && !g_stop.load(std::memory_order_relaxed);) {
        pid = fork();
        if (pid == 0) worker(o, board, static_cast<uint32_t>(pids.size()), end, parent);
        if (pid > 0) pids.push_back(pid);
    }
    const bool started = pids.size() == o.workers;
    if (started) watch(board, o, start, end);
    const bool interrupted = g_stop.load(std::memory_order_relaxed);
    const size_t failed = stop_workers(pids, interrupted || !started ? SIGTERM : 0);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (interrupted) {
        fmt::print(stderr, "interrupted: workers stopped\n");
        return 130;
    }
    if (!started || failed != 0) {
        fmt::print(stderr, "{} of {} workers failed or could not be forked\n",
                   failed + o.workers - pids.size(), o.workers);
        return 2;
    }
    return report(board, o, pids, elapsed, burst);
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    if (!parse(argc, argv, o)) {
        fmt::print(stderr, "usage: rq-demo [--workers 1..{}] [--seconds S] [--rpm R] [--segment NAME]\n",
                   kMaxWorkers);
        return 2;
    }
    void *mem = mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 2;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    // Remove only a segment we made: --segment may name one others use.
    const bool created = ::access(("/dev/shm/" + o.segment).c_str(), F_OK) != 0;
    int rc = 2;
    try {
        rc = run(o, *new (mem) Board{});
    } catch (const rq::Error &e) {
        fmt::print(stderr, "rq-demo: {} ({}); check --segment and /dev/shm\n", e.what(), e.name());
    }
    if (created) unlink_segment(o.segment);
    return rc;
}
