// Randomised multi-process stress: 16 processes acquire, try, time out,
// release and die (SIGKILL from outside at any instruction, or at a protocol
// step from inside) for about 8 seconds. Then a checker replays the log:
//   - never over the concurrency caps (intervals recorded inside the true
//     holding intervals, so overlaps can only be undercounted);
//   - never over the rate bound, in windows of 1 ms to 1 s;
//   - no stall longer than the reclaim bound;
//   - everything accounted for at the end.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"
#include "peek.hpp"

#include <algorithm>
#include <random>

using namespace rqtest;
using rq::detail::CrashPoint;

namespace {
constexpr uint64_t kSec = 1'000'000'000;
constexpr int kProcs = 16;
constexpr int64_t kRunNs = 8 * int64_t{kSec};
constexpr uint64_t kRate = 2000, kBurst = 50, kCapReq = 3, kCapLoad = 20;
constexpr int kMaxEvents = 200'000;

struct Event {
    int32_t child;      // index into Shared::kills
    int32_t load;
    int64_t before;     // just before rq_acquire
    int64_t admitted;   // just after it returned RQ_OK
    std::atomic<int64_t> released;  // just before rq_release (0: never)
};

struct Shared {
    std::atomic<int> events{0};
    std::atomic<int> violations{0};
    std::atomic<int> errors{0};
    std::atomic<int> last_error{0};
    std::atomic<int64_t> killed_at[4096];  // by child number; 0 while alive
    Event log[kMaxEvents];
};

int child_main(const Segment &seg, Shared *sh, int child, int64_t end, uint32_t seed) {
    std::mt19937 rng(seed);
    rq_client *c = nullptr;
    if (rq_open(seg.c_str(), &c) != RQ_OK) return 10;
    const CrashPoint points[] = {CrashPoint::kAfterEnqueue, CrashPoint::kHeadBeforeServe, CrashPoint::kAfterRateTaken,
                                 CrashPoint::kInConcJournal, CrashPoint::kBeforePass,   CrashPoint::kInPass,
                                 CrashPoint::kWhileHeadSleeping};
    while (now_ns() < end) {
        int64_t timeout;
        switch (rng() % 4) {
            case 0: timeout = 0; break;
            case 1: timeout = static_cast<int64_t>(rng() % 30'000'000); break;
            case 2: timeout = -1; break;
            default: timeout = static_cast<int64_t>(rng() % 300'000'000); break;
        }
        int load = 1 + static_cast<int>(rng() % 8);
        if (rng() % 200 == 0) rq::detail::set_crash_point(points[rng() % std::size(points)]);
        int idx = sh->events.fetch_add(1);
        if (idx >= kMaxEvents) break;
        Event &ev = sh->log[idx];
        ev.child = child;
        ev.load = load;
        ev.before = now_ns();
        rq_permit p;
        int rc = rq_acquire(c, "stress", static_cast<uint64_t>(load), timeout, &p);
        rq::detail::set_crash_point(CrashPoint::kNone);
        if (rc == RQ_EAGAIN || rc == RQ_ETIMEDOUT) continue;
        if (rc != RQ_OK) {
            sh->errors++;
            sh->last_error = rc;
            return 11;
        }
        ev.admitted = now_ns();
        usleep(rng() % 3000);
        if (rng() % 150 == 0) {
            ev.released.store(now_ns());  // count it released from here on
            raise(SIGKILL);               // die holding it
        }
        if (rng() % 150 == 0) rq::detail::set_crash_point(CrashPoint::kInReleaseJournal);
        ev.released.store(now_ns());
        if (int rrc = rq_release(c, &p); rrc != RQ_OK) {
            sh->errors++;
            sh->last_error = rrc - 1000;
            return 12;
        }
    }
    rq_close(c);
    return 0;
}

struct Interval {
    int64_t from, to;
    int load;
};

// Maximum over time of the number (and load) of overlapping intervals.
std::pair<int, int> max_overlap(std::vector<Interval> iv) {
    std::vector<std::pair<int64_t, int>> edges;  // (time, +load / -load); ends sort first
    for (auto &i : iv) {
        edges.push_back({i.from, i.load});
        edges.push_back({i.to, -i.load});
    }
    std::sort(edges.begin(), edges.end(), [](auto &a, auto &b) {
        return a.first != b.first ? a.first < b.first : a.second < b.second;
    });
    int n = 0, load = 0, max_n = 0, max_load = 0;
    for (auto &e : edges) {
        n += e.second > 0 ? 1 : -1;
        load += e.second;
        max_n = std::max(max_n, n);
        max_load = std::max(max_load, load);
    }
    return {max_n, max_load};
}

}  // namespace

TEST_CASE("16 processes with random SIGKILLs keep every invariant") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(kRate, kSec, kBurst), conc(kCapReq), conc(kCapLoad, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "stress", l, 3, 0) == RQ_OK);
    Peek peek(seg.name);
    Shared *sh = shared_block<Shared>();
    std::mt19937 rng(12345);

    const int64_t start = now_ns(), end = start + kRunNs;
    std::vector<std::pair<pid_t, int>> kids;  // (pid, child number)
    int next_child = 0;
    auto launch = [&] {
        int child = next_child++;
        uint32_t seed = static_cast<uint32_t>(rng());
        kids.push_back({spawn([&, child, seed] { return child_main(seg, sh, child, end, seed); }, 60), child});
    };
    for (int i = 0; i < kProcs; ++i) launch();
    int external_kills = 0, self_kills = 0, bad_exits = 0;
    while (now_ns() < end) {
        usleep(20'000 + rng() % 200'000);
        // SIGKILL one at a random instant, then replace it.
        size_t victim = rng() % kids.size();
        auto [pid, child] = kids[victim];
        sh->killed_at[child].store(now_ns());
        kill(pid, SIGKILL);
        reap(pid);
        ++external_kills;
        kids.erase(kids.begin() + static_cast<long>(victim));
        // Reap those that died by their own crash points meanwhile.
        for (size_t i = 0; i < kids.size();) {
            int status;
            if (waitpid(kids[i].first, &status, WNOHANG) == kids[i].first) {
                if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
                    sh->killed_at[kids[i].second].store(now_ns());
                    ++self_kills;
                } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    ++bad_exits;
                    MESSAGE("child " << kids[i].second << " exited with status " << status);
                }
                kids.erase(kids.begin() + static_cast<long>(i));
            } else {
                ++i;
            }
        }
        while (kids.size() < static_cast<size_t>(kProcs) && next_child < 4096) launch();
    }
    if (std::getenv("RQ_STRESS_DUMP") != nullptr) {
        sleep_ms(3000);
        MESSAGE(peek.dump("stress", seg.name));
    }
    for (auto [pid, child] : kids) {
        int rc = reap(pid, 40'000);
        if (rc == -SIGKILL) {
            sh->killed_at[child].store(now_ns());
            ++self_kills;
        } else if (rc != 0) {
            ++bad_exits;
            MESSAGE("child " << child << " exited with " << rc);
        }
    }
    MESSAGE("children: " << next_child << ", external SIGKILLs: " << external_kills
                         << ", self-inflicted (crash points and while holding): " << self_kills);
    CHECK(bad_exits == 0);
    CHECK_MESSAGE(sh->errors.load() == 0, "last error " << sh->last_error.load());

    // Replay the log.
    int n = std::min(sh->events.load(), kMaxEvents);
    std::vector<Interval> held;
    std::vector<std::pair<int64_t, int64_t>> admits;  // (before, admitted)
    for (int i = 0; i < n; ++i) {
        Event &ev = sh->log[i];
        if (ev.admitted == 0) continue;
        admits.push_back({ev.before, ev.admitted});
        int64_t to = ev.released.load();
        if (to == 0) {
            int64_t k = sh->killed_at[ev.child].load();
            if (k == 0) continue;  // cannot happen for a live child, which always releases
            to = std::max(k, ev.admitted);
        }
        held.push_back({ev.admitted, to, ev.load});
    }
    MESSAGE("acquire attempts: " << n << ", admitted: " << admits.size());
    REQUIRE(admits.size() > 1000);
    auto [max_req, max_load] = max_overlap(held);
    MESSAGE("max concurrent holders: " << max_req << " (cap " << kCapReq << "), max load held: " << max_load
                                       << " (cap " << kCapLoad << ")");
    CHECK(max_req <= static_cast<int>(kCapReq));
    CHECK(max_load <= static_cast<int>(kCapLoad));

    // Rate: admissions whose whole [before, admitted] span lies in a window
    // [t, t + w] were admitted inside it, so there can be at most
    // burst + rate * w of them.
    std::sort(admits.begin(), admits.end());
    int worst_excess = INT32_MIN;
    for (int64_t w : {int64_t{1'000'000}, int64_t{10'000'000}, int64_t{100'000'000}, int64_t{kSec}}) {
        for (size_t i = 0; i < admits.size(); ++i) {
            int64_t t = admits[i].first, tw = t + w;
            int count = 0;
            for (size_t k = i; k < admits.size() && admits[k].first <= tw; ++k) count += admits[k].second <= tw;
            int64_t allowed = static_cast<int64_t>(kBurst) + static_cast<int64_t>(kRate) * w / int64_t{kSec};
            worst_excess = std::max(worst_excess, static_cast<int>(count - allowed));
        }
    }
    MESSAGE("rate windows: worst count minus bound = " << worst_excess << " (must be <= 0)");
    CHECK(worst_excess <= 0);

    // Stalls: the longest time nobody was admitted while the run was on.
    std::vector<int64_t> at;
    for (auto &a : admits) at.push_back(a.second);
    std::sort(at.begin(), at.end());
    int64_t max_gap = 0;
    for (size_t i = 1; i < at.size(); ++i) {
        if (at[i] < end) max_gap = std::max(max_gap, at[i] - at[i - 1]);
    }
    MESSAGE("longest gap between admissions: " << max_gap / 1e6 << " ms");
    CHECK(max_gap < 1'000'000'000);

    // Accounting: once the dead are reclaimed, nothing is held and nobody waits.
    rq_permit p;
    int final_rc = rq_acquire(c, "stress", kCapLoad, 10 * int64_t{kSec}, &p);
    if (final_rc != RQ_OK) MESSAGE(peek.dump("stress", seg.name));
    REQUIRE(final_rc == RQ_OK);
    REQUIRE(rq_release(c, &p) == RQ_OK);
    CHECK(peek.queued("stress") == 0);
    CHECK(peek.in_use_req("stress") == 0);
    CHECK(peek.in_use_load("stress") == 0);
    CHECK(peek.held_total("stress") == 0);
}
