// LLM quota semantics: settle (exact refunds and debts, concurrency load),
// penalize (a pause every process obeys within 1 ms, extended never
// shortened, FIFO kept), observe (clamps, never raises), and the fail-fast
// prediction.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"
#include "peek.hpp"

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

using namespace rqtest;

namespace {
constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kHour = 3600 * kSec;

// How much load a try admits right now, one unit at a time (consumes it).
uint64_t drain(rq_client *c, const char *res) {
    uint64_t n = 0;
    rq_permit p;
    while (rq_acquire(c, res, 1, 0, &p) == RQ_OK) ++n;
    return n;
}
}  // namespace

TEST_CASE("settle refunds unused estimate and charges overuse as debt, exactly") {
    Segment seg;
    Client c(seg.name);
    // 3,600 tokens an hour: one token per second, so nothing refills during the test.
    rq_limit l[] = {rate(3600, kHour, 100, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "t", l, 1, 0) == RQ_OK);
    rq_permit p;
    REQUIRE(rq_acquire(c, "t", 60, 0, &p) == RQ_OK);  // 40 left
    REQUIRE(rq_settle(c, &p, 20) == RQ_OK);           // 40 back: 80 left
    CHECK(rq_settle(c, &p, 20) == RQ_EINVAL);         // twice
    CHECK(drain(c, "t") == 80);

    REQUIRE(rq_reset(c, "t", 0) == RQ_OK);            // full again: 100
    REQUIRE(rq_acquire(c, "t", 50, 0, &p) == RQ_OK);
    REQUIRE(rq_settle(c, &p, 90) == RQ_OK);           // 40 more: 10 left
    CHECK(drain(c, "t") == 10);

    REQUIRE(rq_reset(c, "t", 0) == RQ_OK);
    REQUIRE(rq_acquire(c, "t", 100, 0, &p) == RQ_OK);
    REQUIRE(rq_settle(c, &p, 150) == RQ_OK);          // 50 tokens of debt
    int64_t w = 0;
    REQUIRE(rq_predict_wait(c, "t", 1, &w) == RQ_OK);
    // 50 s to pay the debt, then 1 s for the token itself.
    CHECK(w > int64_t{50} * int64_t{kSec});
    CHECK(w <= int64_t{51} * int64_t{kSec});
    CHECK(drain(c, "t") == 0);

    // Settling a released permit, a zeroed one, or out of range: errors, no effect.
    REQUIRE(rq_reset(c, "t", 0) == RQ_OK);
    REQUIRE(rq_acquire(c, "t", 10, 0, &p) == RQ_OK);
    CHECK(rq_settle(c, &p, RQ_MAX_AMOUNT + 1) == RQ_EINVAL);
    REQUIRE(rq_release(c, &p) == RQ_OK);
    CHECK(rq_settle(c, &p, 1) == RQ_EINVAL);
    rq_permit zero{};
    CHECK(rq_settle(c, &zero, 1) == RQ_EINVAL);
    CHECK(rq_settle(c, nullptr, 1) == RQ_EINVAL);
    CHECK(drain(c, "t") == 90);
}

TEST_CASE("a settle after the bucket drained past the grant gives back nothing the rate did not allow") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(1000, kSec, 100, RQ_COST_LOAD)};  // 1 token per ms, 100 at once
    REQUIRE(rq_define(c, "d", l, 1, 0) == RQ_OK);
    rq_permit a, b, p;
    REQUIRE(rq_acquire(c, "d", 100, 0, &a) == RQ_OK);  // empties the bucket for 100 ms
    sleep_ms(150);                                    // drained: full again
    REQUIRE(rq_acquire(c, "d", 100, 0, &b) == RQ_OK);  // empty again
    REQUIRE(rq_settle(c, &a, 0) == RQ_OK);            // a's charge is long gone
    CHECK(rq_acquire(c, "d", 20, 0, &p) == RQ_EAGAIN);  // so nothing came back
    // b settles at once: all of its unused estimate comes back.
    REQUIRE(rq_settle(c, &b, 10) == RQ_OK);
    CHECK(rq_acquire(c, "d", 85, 0, &p) == RQ_OK);
}

TEST_CASE("settle on a request-cost limit changes nothing; on a load-cost concurrency limit it adjusts what is held") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(10, kHour, 10), conc(100, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "m", l, 2, 0) == RQ_OK);
    rq_permit p, q;
    REQUIRE(rq_acquire(c, "m", 80, 0, &p) == RQ_OK);
    CHECK(rq_acquire(c, "m", 30, 0, &q) == RQ_EAGAIN);  // 80 + 30 > 100
    REQUIRE(rq_settle(c, &p, 50) == RQ_OK);              // now holds 50
    REQUIRE(rq_acquire(c, "m", 30, 0, &q) == RQ_OK);     // 50 + 30
    REQUIRE(rq_settle(c, &q, 60) == RQ_OK);              // 50 + 60 = 110: over, until a release
    rq_permit r;
    CHECK(rq_acquire(c, "m", 1, 0, &r) == RQ_EAGAIN);
    REQUIRE(rq_release(c, &p) == RQ_OK);                 // gives back 50: 60 held
    REQUIRE(rq_acquire(c, "m", 40, 0, &r) == RQ_OK);
    REQUIRE(rq_release(c, &r) == RQ_OK);
    REQUIRE(rq_settle(c, &r, 1) == RQ_EINVAL);           // after release
    REQUIRE(rq_release(c, &q) == RQ_OK);
    Peek peek(seg.name);
    CHECK(peek.in_use_load("m") == 0);
    CHECK(peek.in_use_req("m") == 0);
    // The request-cost rate limit counted 3 acquires whatever was settled.
    CHECK(drain(c, "m") == 7);
}

// The reference model: with every acquire settled right after it (as a
// worker does when the response arrives), the actual load admitted in any
// window stays within B + A t / P plus the overuse of the acquires still
// unsettled at once (one per thread), however long the run (without the
// debts, windows would exceed it by the summed overuse); refunds keep the
// quota used.
TEST_CASE("the rate bound holds with settled loads, and refunds keep the quota used") {
    // Actual usage as a percentage of the estimate: both ways, always over
    // (fails the bound if debts were not charged), always under (fails the
    // utilisation if refunds were not given).
    int lo = 50, hi = 150;
    SUBCASE("+-50%") {}
    SUBCASE("over by up to 50%") { lo = 100; }
    SUBCASE("under by up to 50%") { hi = 100; }
    Segment seg;
    Client c(seg.name);
    const uint64_t A = 200'000, P = kSec, B = 20'000;  // 200k tokens/s, burst 20k
    rq_limit l[] = {rate(A, P, B, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    struct Event {
        int64_t at;
        uint64_t actual;
        uint64_t est;
    };
    constexpr int kThreads = 2;
    std::vector<std::vector<Event>> log(kThreads);
    const int64_t t0 = now_ns(), end = t0 + int64_t{1200} * int64_t{kMs};
    std::vector<std::thread> threads;
    for (int k = 0; k < kThreads; ++k) {
        threads.emplace_back([&, k] {
            std::mt19937_64 rng(42 + k);
            while (now_ns() < end) {
                const uint64_t est = 100 + rng() % 400;
                const uint64_t actual = est * (lo + rng() % (hi - lo + 1)) / 100;
                rq_permit p;
                int rc = rq_acquire(c, "r", est, 200 * kMs, &p);
                if (rc == RQ_ETIMEDOUT) continue;
                REQUIRE(rc == RQ_OK);
                const int64_t at = now_ns();
                REQUIRE(rq_settle(c, &p, actual) == RQ_OK);
                log[k].push_back({at, actual, est});
            }
        });
    }
    for (auto &t : threads) t.join();
    std::vector<Event> all;
    for (auto &v : log) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end(), [](const Event &a, const Event &b) { return a.at < b.at; });
    REQUIRE(all.size() > 100);
    uint64_t max_over = 0, total = 0;
    for (const auto &e : all) max_over = std::max(max_over, e.actual > e.est ? e.actual - e.est : 0);
    // Every window [all[i].at, all[j].at]: admitted actual load against the bound.
    double worst = -1e18;
    for (size_t i = 0; i < all.size(); ++i) {
        uint64_t sum = 0;
        for (size_t j = i; j < all.size(); ++j) {
            sum += all[j].actual;
            const double t = static_cast<double>(all[j].at - all[i].at);
            // Timestamps are taken after the grant: allow the grant-to-stamp
            // delay of the first event (1 ms of quota) on top.
            const double bound = B + A * (t + 1e6) / P + kThreads * max_over;
            worst = std::max(worst, static_cast<double>(sum) - bound);
        }
    }
    for (const auto &e : all) total += e.actual;
    const double allowed = B + A * static_cast<double>(end - t0) / P;
    MESSAGE(all.size() << " acquires settled; worst window " << worst << " (<= 0 keeps the bound); actual load "
                       << total << " of " << allowed << " allowed (" << 100.0 * total / allowed << "%)");
    CHECK(worst <= 0);
    CHECK(total >= 0.9 * allowed);
}

TEST_CASE("a penalty stops admission in another process within 1 ms, and only extends") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(1'000'000, kSec, 1000)};
    REQUIRE(rq_define(c, "p", l, 1, 0) == RQ_OK);
    // The other process logs, for each admission, when its acquire call
    // started and when it returned.
    constexpr int kMax = 1 << 16;
    auto *started = shared_block<std::atomic<int64_t>>(kMax);
    auto *admitted = shared_block<std::atomic<int64_t>>(kMax);
    auto *n = shared_block<std::atomic<int>>();
    auto *stop = shared_block<std::atomic<int>>();
    pid_t child = spawn([&] {
        rq_client *cc;
        if (rq_open(seg.c_str(), &cc) != RQ_OK) return 1;
        while (stop->load() == 0) {
            rq_permit p;
            const int64_t t = now_ns();
            if (rq_acquire(cc, "p", 1, 2 * int64_t{kSec}, &p) == RQ_OK) {
                int i = n->fetch_add(1);
                if (i < kMax) {
                    started[i] = t;
                    admitted[i] = now_ns();
                }
            }
            usleep(50);  // about 10k admissions a second
        }
        rq_close(cc);
        return 0;
    });
    REQUIRE(eventually([&] { return n->load() > 100; }));
    const int64_t called = now_ns();
    REQUIRE(rq_penalize(c, "p", 300 * int64_t{kMs}) == RQ_OK);
    REQUIRE(rq_penalize(c, "p", 100 * int64_t{kMs}) == RQ_OK);  // never shortens
    sleep_ms(450);
    stop->store(1);
    CHECK(reap(child) == 0);
    // Stopped within 1 ms: no acquire that started 1 ms or more after the
    // call was admitted before the pause ended.
    int64_t latest_start_admitted = 0, first_after = INT64_MAX;
    int early = 0;
    for (int i = 0; i < std::min(n->load(), kMax); ++i) {
        const int64_t s0 = started[i].load(), a = admitted[i].load();
        if (a >= called && a < called + int64_t{300} * int64_t{kMs}) {
            latest_start_admitted = std::max(latest_start_admitted, s0);
            early += s0 >= called + int64_t{kMs};
        }
        if (a >= called + int64_t{300} * int64_t{kMs}) first_after = std::min(first_after, a);
    }
    MESSAGE("admitted during the pause: acquires that started at most "
            << (latest_start_admitted ? (latest_start_admitted - called) / 1000 : -1)
            << " us after the penalize call (-1: none); admission resumed "
            << (first_after - called) / 1'000'000 << " ms after it");
    CHECK(early == 0);
    CHECK(first_after >= called + int64_t{300} * int64_t{kMs});  // the 100 ms penalty did not shorten it
    CHECK(first_after < called + int64_t{400} * int64_t{kMs});   // and admission resumed
    CHECK(rq_penalize(c, "p", -1) == RQ_EINVAL);
    CHECK(rq_penalize(c, "nope", 1) == RQ_ENOENT);
}

TEST_CASE("waiters keep their FIFO order through a pause; a deadline inside it fails at once") {
    Segment seg;
    Client c(seg.name);
    // One every 20 ms: each waiter is admitted on its own, so the order in
    // which they return is the order of admission.
    rq_limit l[] = {rate(50, kSec, 1)};
    REQUIRE(rq_define(c, "f", l, 1, 0) == RQ_OK);
    REQUIRE(rq_penalize(c, "f", 200 * int64_t{kMs}) == RQ_OK);
    rq_permit p;
    CHECK(rq_acquire(c, "f", 1, 0, &p) == RQ_EAGAIN);
    rq_wait_info info{sizeof info, 0, 0};
    const int64_t t0 = now_ns();
    CHECK(rq_acquire_ex(c, "f", 1, 50 * kMs, &p, &info) == RQ_ETIMEDOUT);
    CHECK(now_ns() - t0 < int64_t{20} * int64_t{kMs});
    CHECK(info.predicted_wait_ns > int64_t{100} * int64_t{kMs});
    std::atomic<int> next{0};
    std::vector<int> order;
    std::mutex mu;
    std::vector<std::thread> ths;
    for (int k = 0; k < 3; ++k) {
        ths.emplace_back([&, k] {
            while (next.load() != k) std::this_thread::yield();
            rq_ticket t;
            REQUIRE(rq_enqueue(c, "f", 1, &t) == RQ_OK);
            next.store(k + 1);
            rq_permit q;
            REQUIRE(rq_wait(c, &t, 2 * int64_t{kSec}, &q) == RQ_OK);
            std::lock_guard<std::mutex> g(mu);
            order.push_back(k);
        });
        // rq_wait on the earliest first, so each one's thread waits in order.
        while (next.load() != k + 1) std::this_thread::yield();
        sleep_ms(5);
    }
    for (auto &t : ths) t.join();
    CHECK(now_ns() - t0 >= int64_t{190} * int64_t{kMs});
    CHECK(order == std::vector<int>{0, 1, 2});
}

TEST_CASE("observe lowers a bucket to what the provider reports and never raises it") {
    Segment seg;
    Client c(seg.name);
    // 100 an hour: one unit every 36 s, so nothing refills during the test.
    rq_limit l[] = {rate(100, kHour, 100), conc(5)};
    REQUIRE(rq_define(c, "o", l, 2, 0) == RQ_OK);
    REQUIRE(rq_observe(c, "o", 0, 10, 0) == RQ_OK);   // the provider has 10 left
    REQUIRE(rq_observe(c, "o", 0, 90, 0) == RQ_OK);   // never raised back
    int got = 0;
    for (int round = 0; round < 3; ++round) {         // concurrency 5: release between rounds
        rq_permit q[5];
        for (auto &x : q) got += rq_acquire(c, "o", 1, 0, &x) == RQ_OK;
        for (auto &x : q) rq_release(c, &x);
    }
    CHECK(got == 10);

    // Not full again before the provider's reset: with 100 left of 100 but a
    // reset 72 s away, the bucket lacks 72 s (2 units) of its burst.
    rq_limit lt[] = {rate(100, kHour, 100, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "ol", lt, 1, 0) == RQ_OK);
    REQUIRE(rq_observe(c, "ol", 0, 100, 72 * int64_t{kSec}) == RQ_OK);
    int64_t w = -1;
    REQUIRE(rq_predict_wait(c, "ol", 98, &w) == RQ_OK);
    CHECK(w == 0);
    REQUIRE(rq_predict_wait(c, "ol", 99, &w) == RQ_OK);
    CHECK(w > int64_t{35} * int64_t{kSec});
    CHECK(w <= int64_t{36} * int64_t{kSec});

    CHECK(rq_observe(c, "o", 1, 1, 0) == RQ_EINVAL);  // a concurrency limit
    CHECK(rq_observe(c, "o", 2, 1, 0) == RQ_EINVAL);  // no such limit
    CHECK(rq_observe(c, "o", 0, 1, -1) == RQ_EINVAL);
    CHECK(rq_observe(c, "nope", 0, 1, 0) == RQ_ENOENT);
}
