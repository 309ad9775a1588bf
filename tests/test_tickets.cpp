// rq_enqueue / rq_wait / rq_cancel: places in line without a thread each,
// polling, cancellation of idle, head, middle and sleeping waiters, timeouts,
// FIFO across tickets of one process and of others, and a process dying with
// tickets it never waited on.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"

#include <cstring>
#include <thread>
#include <vector>

using namespace rqtest;

namespace {
constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kMs = 1'000'000;

struct Waited {
    std::atomic<int> rc{1};
    std::atomic<int64_t> done_at{0};
    rq_permit permit{};
};

// Resource "r" with concurrency 1, its one permit held by `c`, so whatever
// queues next waits.
struct OneHeld {
    Segment seg;
    Client c{seg.name};
    rq_permit held{};
    OneHeld() {
        rq_limit l[] = {conc(1)};
        REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
        REQUIRE(rq_acquire(c, "r", 1, 0, &held) == RQ_OK);
    }
};

// Runs rq_wait on another thread; join() before reading the result.
std::thread wait_in_thread(rq_client *c, rq_ticket *t, int64_t timeout_ns, Waited &w) {
    return std::thread([=, &w] {
        int rc = rq_wait(c, t, timeout_ns, &w.permit);
        w.done_at.store(now_ns());
        w.rc.store(rc);
    });
}
}  // namespace

TEST_CASE("a ticket on an empty line is served by a poll; finished tickets are refused") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(2, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    rq_ticket t;
    REQUIRE(rq_enqueue(c, "r", 1, &t) == RQ_OK);
    rq_permit p;
    CHECK(rq_wait(c, &t, 0, &p) == RQ_OK);
    CHECK(rq_wait(c, &t, 0, &p) == RQ_EINVAL);  // finished
    CHECK(rq_cancel(c, &t) == RQ_OK);           // harmless
    CHECK(rq_release(c, &p) == RQ_OK);

    // The same checks as rq_acquire before a place is taken.
    CHECK(rq_enqueue(c, "nope", 1, &t) == RQ_ENOENT);
    CHECK(rq_enqueue(c, "r", 0, &t) == RQ_EINVAL);
    CHECK(rq_enqueue(c, "r", 3, &t) == RQ_E2BIG);
    CHECK(rq_enqueue(c, "bad name", 1, &t) == RQ_EINVAL);
    CHECK(rq_enqueue(c, "r", 1, nullptr) == RQ_EINVAL);
    CHECK(rq_enqueue(nullptr, "r", 1, &t) == RQ_EINVAL);
    rq_ticket zero{};
    CHECK(rq_cancel(c, &zero) == RQ_OK);
    CHECK(rq_wait(c, &zero, 0, &p) == RQ_EINVAL);
    CHECK(rq_wait(c, nullptr, 0, &p) == RQ_EINVAL);
    rq_ticket forged;
    std::memset(&forged, 0x5a, sizeof forged);
    CHECK(rq_wait(c, &forged, 0, &p) == RQ_EINVAL);
    CHECK(rq_cancel(c, &forged) == RQ_EINVAL);
}

TEST_CASE_FIXTURE(OneHeld, "tickets of one process keep FIFO order; a poll keeps the place; try never barges") {
    Client other(seg.name);
    rq_ticket t[3];
    for (auto &x : t) REQUIRE(rq_enqueue(c, "r", 1, &x) == RQ_OK);
    rq_permit p[3];
    CHECK(rq_wait(c, &t[0], 0, &p[0]) == RQ_EAGAIN);  // head, but the permit is held
    CHECK(rq_wait(c, &t[1], 0, &p[1]) == RQ_EAGAIN);  // not head
    rq_permit q;
    CHECK(rq_acquire(other, "r", 1, 0, &q) == RQ_EAGAIN);  // queued ahead: no barging
    REQUIRE(rq_release(c, &held) == RQ_OK);
    CHECK(rq_wait(c, &t[0], kSec, &p[0]) == RQ_OK);
    CHECK(rq_wait(c, &t[1], 20 * kMs, &p[1]) == RQ_ETIMEDOUT);  // leaves the line
    CHECK(rq_wait(c, &t[1], 0, &p[1]) == RQ_EINVAL);
    REQUIRE(rq_release(c, &p[0]) == RQ_OK);
    CHECK(rq_wait(c, &t[2], kSec, &p[2]) == RQ_OK);
    CHECK(rq_acquire(other, "r", 1, 0, &q) == RQ_EAGAIN);
    REQUIRE(rq_release(c, &p[2]) == RQ_OK);
    CHECK(rq_acquire(other, "r", 1, 0, &q) == RQ_OK);
    CHECK(rq_release(other, &q) == RQ_OK);
}

TEST_CASE_FIXTURE(OneHeld, "cancelling idle tickets at the head and in the middle leaves the line clean") {
    rq_ticket t[4];
    for (auto &x : t) REQUIRE(rq_enqueue(c, "r", 1, &x) == RQ_OK);
    CHECK(rq_cancel(c, &t[0]) == RQ_OK);  // the head
    CHECK(rq_cancel(c, &t[2]) == RQ_OK);  // the middle
    CHECK(rq_cancel(c, &t[2]) == RQ_OK);  // twice is harmless
    rq_permit p;
    CHECK(rq_wait(c, &t[0], 0, &p) == RQ_ECANCELED);
    REQUIRE(rq_release(c, &held) == RQ_OK);
    REQUIRE(rq_wait(c, &t[1], kSec, &p) == RQ_OK);
    REQUIRE(rq_release(c, &p) == RQ_OK);
    CHECK(rq_wait(c, &t[2], 0, &p) == RQ_ECANCELED);
    REQUIRE(rq_wait(c, &t[3], kSec, &p) == RQ_OK);
    REQUIRE(rq_release(c, &p) == RQ_OK);
    // Nothing left behind: a try succeeds.
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);
}

TEST_CASE("rq_cancel wakes a thread waiting at the head, in the middle, and sleeping for tokens") {
    Segment seg;
    Client c(seg.name);
    SUBCASE("head waiting for concurrency, then a middle waiter") {
        rq_limit l[] = {conc(1)};
        REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
        rq_permit held;
        REQUIRE(rq_acquire(c, "r", 1, 0, &held) == RQ_OK);
        rq_ticket t[3];
        for (auto &x : t) REQUIRE(rq_enqueue(c, "r", 1, &x) == RQ_OK);
        Waited w0;
        std::thread th0 = wait_in_thread(c, &t[0], -1, w0);
        sleep_ms(50);
        CHECK(w0.rc.load() == 1);  // still waiting
        int64_t at = now_ns();
        REQUIRE(rq_cancel(c, &t[0]) == RQ_OK);
        th0.join();
        CHECK(w0.rc.load() == RQ_ECANCELED);
        CHECK(w0.done_at.load() - at < int64_t{200 * kMs});
        MESSAGE("cancel to return (head): " << (w0.done_at.load() - at) / 1000 << " us");

        // t[1] is head now; a thread waits on t[2] in the middle of the line.
        Waited w2;
        std::thread th2 = wait_in_thread(c, &t[2], -1, w2);
        sleep_ms(50);
        at = now_ns();
        REQUIRE(rq_cancel(c, &t[2]) == RQ_OK);
        th2.join();
        CHECK(w2.rc.load() == RQ_ECANCELED);
        CHECK(w2.done_at.load() - at < int64_t{200 * kMs});
        MESSAGE("cancel to return (middle): " << (w2.done_at.load() - at) / 1000 << " us");

        REQUIRE(rq_release(c, &held) == RQ_OK);
        rq_permit p;
        CHECK(rq_wait(c, &t[1], kSec, &p) == RQ_OK);
        CHECK(rq_release(c, &p) == RQ_OK);
        CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
        CHECK(rq_release(c, &p) == RQ_OK);
    }
    SUBCASE("head sleeping until the next token, 10 s away") {
        rq_limit l[] = {rate(1, 10 * kSec, 1)};
        REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
        rq_permit p;
        REQUIRE(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
        rq_ticket t;
        REQUIRE(rq_enqueue(c, "r", 1, &t) == RQ_OK);
        Waited w;
        std::thread th = wait_in_thread(c, &t, -1, w);
        sleep_ms(50);
        int64_t at = now_ns();
        REQUIRE(rq_cancel(c, &t) == RQ_OK);
        th.join();
        CHECK(w.rc.load() == RQ_ECANCELED);
        CHECK(w.done_at.load() - at < int64_t{200 * kMs});
        // The line is empty again: the next acquirer waits only for the token.
        CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_EAGAIN);
    }
}

TEST_CASE_FIXTURE(OneHeld, "a second thread waiting on the same ticket is refused") {
    rq_ticket t;
    REQUIRE(rq_enqueue(c, "r", 1, &t) == RQ_OK);
    Waited w;
    std::thread th = wait_in_thread(c, &t, -1, w);
    sleep_ms(30);
    rq_permit p;
    CHECK(rq_wait(c, &t, 0, &p) == RQ_EINVAL);
    REQUIRE(rq_release(c, &held) == RQ_OK);
    th.join();
    CHECK(w.rc.load() == RQ_OK);
    CHECK(rq_release(c, &w.permit) == RQ_OK);
}

TEST_CASE_FIXTURE(OneHeld, "one thread serves 300 tickets in order, interleaved with another process") {
    auto *order = shared_block<std::atomic<int>>(1024);
    auto *n = shared_block<std::atomic<int>>();
    auto *ready = shared_block<std::atomic<int>>();
    std::vector<rq_ticket> t(300);
    for (size_t i = 0; i < 150; ++i) REQUIRE(rq_enqueue(c, "r", 1, &t[i]) == RQ_OK);
    // Another process queues 5 acquires behind the first 150 tickets.
    pid_t child = spawn([&] {
        rq_client *cc;
        if (rq_open(seg.c_str(), &cc) != RQ_OK) return 1;
        std::vector<std::thread> ths;
        for (int k = 0; k < 5; ++k) {
            ths.emplace_back([&, k] {
                sleep_ms(10 * k);  // in order
                ready->fetch_add(1);
                rq_permit p;
                if (rq_acquire(cc, "r", 1, 10 * kSec, &p) != RQ_OK) return;
                order[n->fetch_add(1)] = 1000 + k;
                rq_release(cc, &p);
            });
        }
        for (auto &th : ths) th.join();
        rq_close(cc);
        return 0;
    });
    REQUIRE(eventually([&] { return ready->load() == 5; }));
    sleep_ms(30);
    for (size_t i = 150; i < 300; ++i) REQUIRE(rq_enqueue(c, "r", 1, &t[i]) == RQ_OK);
    REQUIRE(rq_release(c, &held) == RQ_OK);
    for (size_t i = 0; i < t.size(); ++i) {
        rq_permit p;
        REQUIRE(rq_wait(c, &t[i], 10 * kSec, &p) == RQ_OK);
        order[n->fetch_add(1)] = static_cast<int>(i);
        REQUIRE(rq_release(c, &p) == RQ_OK);
    }
    CHECK(reap(child) == 0);
    REQUIRE(n->load() == 305);
    // Ours in order 0..149, the child's five, then ours 150..299.
    bool in_order = true;
    for (int i = 0; i < 150; ++i) in_order &= order[i] == i;
    for (int k = 0; k < 5; ++k) in_order &= order[150 + k] == 1000 + k;
    for (int i = 150; i < 300; ++i) in_order &= order[i + 5] == i;
    CHECK(in_order);
}

TEST_CASE_FIXTURE(OneHeld, "a forked child cannot use its parent's ticket") {
    rq_ticket t;
    REQUIRE(rq_enqueue(c, "r", 1, &t) == RQ_OK);
    pid_t child = spawn([&] {
        rq_permit p;
        if (rq_wait(c, &t, 0, &p) != RQ_EINVAL) return 1;
        if (rq_cancel(c, &t) != RQ_EINVAL) return 2;
        return 0;
    });
    CHECK(reap(child) == 0);
    REQUIRE(rq_release(c, &held) == RQ_OK);
    rq_permit p;
    CHECK(rq_wait(c, &t, kSec, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);
}

TEST_CASE("a process SIGKILLed with tickets nobody waits on does not stall the line") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    auto *queued = shared_block<std::atomic<int>>();
    pid_t child = spawn([&] {
        rq_client *cc;
        if (rq_open(seg.c_str(), &cc) != RQ_OK) return 1;
        rq_ticket t[3];
        for (auto &x : t) {
            if (rq_enqueue(cc, "r", 1, &x) != RQ_OK) return 2;
        }
        queued->store(1);
        pause();  // killed here, holding the head and two places behind it
        return 0;
    });
    REQUIRE(eventually([&] { return queued->load() == 1; }));
    rq_ticket mine;
    REQUIRE(rq_enqueue(c, "r", 1, &mine) == RQ_OK);
    kill(child, SIGKILL);
    CHECK(reap(child) == -SIGKILL);
    int64_t at = now_ns();
    rq_permit p;
    REQUIRE(rq_wait(c, &mine, 5 * kSec, &p) == RQ_OK);
    MESSAGE("served " << (now_ns() - at) / 1'000'000 << " ms after the SIGKILL");
    CHECK(now_ns() - at < int64_t{kSec});
    CHECK(rq_release(c, &p) == RQ_OK);
}

TEST_CASE("rq_close cancels the tickets a client still has") {
    Segment seg;
    Client keep(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(keep, "r", l, 1, 0) == RQ_OK);
    rq_client *c;
    REQUIRE(rq_open(seg.c_str(), &c) == RQ_OK);
    rq_ticket t[2];
    for (auto &x : t) REQUIRE(rq_enqueue(c, "r", 1, &x) == RQ_OK);
    rq_close(c);
    rq_permit p;
    CHECK(rq_acquire(keep, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_release(keep, &p) == RQ_OK);
}

TEST_CASE("the head serves the tickets behind it; they return their permits without being head") {
    Segment seg;
    rq_open_options o{sizeof o, 0, 8, 4, 8, 0, nullptr};  // 4 slots: reuse comes quickly
    rq_client *c;
    REQUIRE(rq_open_ex(seg.c_str(), &o, &c) == RQ_OK);
    rq_limit l[] = {rate(1000, kSec * 3600, 1000, RQ_COST_LOAD)};  // no refill during the test
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    rq_ticket t[4];
    for (int i = 0; i < 4; ++i) REQUIRE(rq_enqueue(c, "r", 10 * (i + 1), &t[i]) == RQ_OK);
    rq_permit p[4];
    REQUIRE(rq_wait(c, &t[0], 0, &p[0]) == RQ_OK);  // head: serves itself and the three behind
    CHECK(rq_cancel(c, &t[3]) == RQ_OK);            // served already: its tokens stay spent
    CHECK(rq_wait(c, &t[3], 0, &p[3]) == RQ_ECANCELED);
    REQUIRE(rq_wait(c, &t[1], 0, &p[1]) == RQ_OK);  // served, never head
    CHECK(rq_settle(c, &p[1], 0) == RQ_OK);         // its unused load comes back: 20
    // The slot of t[2] is claimed again before its owner looks.
    rq_ticket u[3];
    for (auto &x : u) REQUIRE(rq_enqueue(c, "r", 1, &x) == RQ_OK);
    CHECK(rq_wait(c, &t[2], 0, &p[2]) == RQ_OK);
    for (auto &x : u) {
        rq_permit q;
        CHECK(rq_wait(c, &x, 0, &q) == RQ_OK);
    }
    // 10 + 20 + 30 + 40 + 3 taken, 20 given back: 917 left, exactly.
    rq_permit q;
    CHECK(rq_acquire(c, "r", 917, 0, &q) == RQ_OK);
    CHECK(rq_acquire(c, "r", 1, 0, &q) == RQ_EAGAIN);
    rq_close(c);
}
