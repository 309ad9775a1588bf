// Crash safety: SIGKILL a process holding permits, at the head, queued, and
// at every step of the acquire, release, define and reclaim protocols. The
// others must go on within the reclaim bound, which each case measures.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"
#include "peek.hpp"

#include <algorithm>

using namespace rqtest;
using rq::detail::CrashPoint;

namespace {
constexpr uint64_t kSec = 1'000'000'000;
// DESIGN's target: others go on within 100 ms of a death (measured here:
// 0.01 to 4 ms, since the kernel tells of a death; the queued-waiter case
// adds the two 5 ms holds of the waiters it lets through).
constexpr int64_t kReclaimLimitNs = 100'000'000;

// Runs fn in a child that SIGKILLs itself at crash point p.
void crash_at(CrashPoint p, const std::function<void()> &fn) {
    pid_t kid = spawn([&] {
        rq::detail::set_crash_point(p);
        fn();
        return 77;  // the crash point was never reached
    });
    REQUIRE_MESSAGE(reap(kid) == -SIGKILL, "child did not die at crash point " << static_cast<int>(p));
}

// Acquires and releases once, returning how long the acquire took.
int64_t recover(rq_client *c, const char *res, uint64_t load = 1) {
    int64_t t0 = now_ns();
    rq_permit p;
    int rc = rq_acquire(c, res, load, 5 * int64_t{kSec}, &p);
    int64_t took = now_ns() - t0;
    REQUIRE_MESSAGE(rc == RQ_OK, "recovery acquire failed: " << rq_errname(rc));
    REQUIRE(rq_release(c, &p) == RQ_OK);
    return took;
}

void report(const char *what, int64_t ns) {
    MESSAGE(std::string(what) << ": others proceeded after " << ns / 1e6 << " ms");
    CHECK(ns < kReclaimLimitNs);
}

void check_clean(const Peek &peek, const char *res) {
    CHECK(eventually([&] { return peek.queued(res) == 0; }, 2000));
    CHECK(peek.in_use_req(res) == 0);
    CHECK(peek.in_use_load(res) == 0);
    CHECK(peek.held_total(res) == 0);
}
}  // namespace

TEST_CASE("a SIGKILLed holder's permit comes back") {
    Defined d("hold", {conc(1)});
    auto *ready = shared_block<std::atomic<int>>();
    pid_t kid = spawn([&] {
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        if (rq_acquire(cc, "hold", 1, -1, &p) != RQ_OK) return 10;
        ready->store(1);
        pause();
        return 0;
    });
    REQUIRE(eventually([&] { return ready->load() == 1; }));
    kill(kid, SIGKILL);
    reap(kid);
    report("holder killed", recover(d.c, "hold"));
    check_clean(d.peek, "hold");
}

TEST_CASE("a SIGKILLed head waiter is skipped") {
    Defined d("head", {conc(1)});
    d.hold();
    auto *admitted_at = shared_block<std::atomic<int64_t>>();
    pid_t head = spawn([&] {
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        rq_acquire(cc, "head", 1, -1, &p);
        return 10;  // must never get here
    });
    REQUIRE(eventually([&] { return d.peek.queued("head") == 1; }));
    pid_t behind = d.spawn_patient(1, admitted_at);
    int64_t killed = now_ns();
    kill(head, SIGKILL);
    REQUIRE(rq_release(d.c, &d.held) == RQ_OK);
    CHECK(reap(behind) == 0);
    reap(head);
    report("head waiter killed", admitted_at->load() - killed);
    check_clean(d.peek, "head");
}

TEST_CASE("a SIGKILLed queued waiter is skipped, and order holds for the rest") {
    Defined d("mid", {conc(1)});
    d.hold();
    auto *log = shared_block<AdmissionLog>();
    pid_t kids[3];
    for (int i = 0; i < 3; ++i) kids[i] = spawn_in_line(d.seg.name, d.peek, "mid", i, 1, log, 5000);
    kill(kids[1], SIGKILL);
    CHECK(reap(kids[1]) == -SIGKILL);
    int64_t t0 = now_ns();
    REQUIRE(rq_release(d.c, &d.held) == RQ_OK);
    CHECK(reap(kids[0]) == 0);
    CHECK(reap(kids[2]) == 0);
    report("queued waiter killed", now_ns() - t0);
    REQUIRE(log->next.load() == 2);
    CHECK(log->order[0] == 0);
    CHECK(log->order[1] == 2);
    check_clean(d.peek, "mid");
}

TEST_CASE("SIGKILL at each step of acquire") {
    // The line's steps (a process armed for one of them takes a ticket), then
    // the line-free path's: with nobody in line the child takes try_fast_conc,
    // holding the resource lock from its look at the line to its unlock.
    // crash_at fails if the child never reaches the point (another path).
    const CrashPoint points[] = {CrashPoint::kAfterEnqueue,      CrashPoint::kHeadBeforeServe,
                                 CrashPoint::kAfterRateTaken,    CrashPoint::kInConcJournal,
                                 CrashPoint::kBeforePass,        CrashPoint::kInPass,
                                 CrashPoint::kFastAfterRateTaken, CrashPoint::kFastInConcJournal,
                                 CrashPoint::kFastBeforeUnlock};
    for (CrashPoint cp : points) {
        CAPTURE(static_cast<int>(cp));
        Segment seg;
        Client c(seg.name);
        rq_limit l[] = {rate(1000, kSec), conc(1), conc(100, RQ_COST_LOAD)};
        REQUIRE(rq_define(c, "acq", l, 3, 0) == RQ_OK);
        Peek peek(seg.name);
        crash_at(cp, [&] {
            rq_client *cc = open_or_die(seg);
            rq_permit p;
            rq_acquire(cc, "acq", 7, -1, &p);
        });
        int64_t took = recover(c, "acq", 100);  // needs every unit of the load limit back
        report("killed inside acquire", took);
        check_clean(peek, "acq");
    }
}

// Stops a child at a test stop point and waits until it is stopped.
void wait_stopped(pid_t pid) {
    int st = 0;
    REQUIRE(waitpid(pid, &st, WUNTRACED) == pid);
    REQUIRE(WIFSTOPPED(st));
}

// The line-free path with concurrency looks at the line, then takes the
// resource lock. A head that joins in between, finds the concurrency full
// and sleeps, took nothing; once a release frees the permit, a try that
// resumes must not take it past that head (it looks at the line again under
// the lock). Ordered deterministically with SIGSTOP/SIGCONT.
TEST_CASE("a try held up before the lock does not pass a head that joined and slept meanwhile") {
    Defined d("fifo", {rate(1000, kSec), conc(1)});
    REQUIRE(rq_acquire(d.c, "fifo", 1, 0, &d.held) == RQ_OK);  // the only permit
    auto *x_rc = shared_block<std::atomic<int>>();
    x_rc->store(1);
    pid_t x = spawn([&] {  // the try: stops after its look at the (empty) line
        rq_client *cc = open_or_die(d.seg);
        rq::detail::set_stop_point(CrashPoint::kFastBeforeLock);
        rq_permit p;
        const int rc = rq_acquire(cc, "fifo", 1, 0, &p);
        x_rc->store(rc);
        if (rc == RQ_OK) rq_release(cc, &p);
        return 0;
    });
    // A failed REQUIRE below must not leave stopped children behind (their
    // alarm cannot end them while they are stopped).
    struct Reaper {
        pid_t pid[2] = {0, 0};
        ~Reaper() {
            for (pid_t p : pid) {
                if (p > 0 && ::kill(p, SIGKILL) == 0) waitpid(p, nullptr, 0);
            }
        }
    } reaper;
    reaper.pid[0] = x;
    wait_stopped(x);
    pid_t w = spawn([&] {  // the head: joins, finds the concurrency full, sleeps
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        const int rc = rq_acquire(cc, "fifo", 1, 10 * int64_t{kSec}, &p);
        if (rc == RQ_OK) rq_release(cc, &p);
        return rc == RQ_OK ? 0 : 1;
    });
    reaper.pid[1] = w;
    REQUIRE(eventually([&] {
        const rq::detail::QueueWord q = d.peek.queue("fifo");
        if (q.tail - q.head != 1) return false;
        const auto sw = rq::detail::SlotWord::unpack(d.peek.view.slot(d.peek.index("fifo"), q.head).word.load());
        return sw.state == rq::detail::SlotState::kHeadConcSleep;
    }));
    // Stop the head, so that it cannot take the permit before the try looks;
    // not while it holds the resource lock (it wakes every 20 ms to check on
    // the others), or our release below would wait for it.
    for (int tries = 0;; ++tries) {
        REQUIRE(tries < 100);
        ::kill(w, SIGSTOP);
        wait_stopped(w);
        if ((d.peek.view.resource(d.peek.index("fifo")).lock.load() & rq::detail::kLockOwnerMask) == 0) break;
        ::kill(w, SIGCONT);
        sleep_ms(1);
    }
    REQUIRE(rq_release(d.c, &d.held) == RQ_OK);  // the permit is free, the head still in line
    ::kill(x, SIGCONT);
    CHECK(reap(x, 10000) == 0);
    reaper.pid[0] = 0;
    CHECK(x_rc->load() == RQ_EAGAIN);  // not admitted past the head
    ::kill(w, SIGCONT);
    CHECK(reap(w, 10000) == 0);  // the head gets it
    reaper.pid[1] = 0;
    check_clean(d.peek, "fifo");
}

TEST_CASE("SIGKILL while the head sleeps for tokens") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(5, kSec, 1)};  // one token every 200 ms
    REQUIRE(rq_define(c, "slow", l, 1, 0) == RQ_OK);
    Peek peek(seg.name);
    rq_permit p;
    REQUIRE(rq_acquire(c, "slow", 1, 0, &p) == RQ_OK);  // empty the bucket
    const int64_t token_at = now_ns() + 200'000'000;      // (at the latest)
    crash_at(CrashPoint::kWhileHeadSleeping, [&] {
        rq_client *cc = open_or_die(seg);
        rq_permit q;
        rq_acquire(cc, "slow", 1, -1, &q);
    });
    const int64_t t0 = now_ns();
    recover(c, "slow");
    // The token itself comes 200 ms after the bucket was emptied: what counts
    // is how long after it the others got it.
    report("head killed while sleeping for tokens (after the token came)", now_ns() - std::max(t0, token_at));
    CHECK(peek.queued("slow") == 0);
}

TEST_CASE("SIGKILL in the middle of a release is undone exactly") {
    Defined d("rel", {conc(2), conc(10, RQ_COST_LOAD)});
    rq_permit mine;
    REQUIRE(rq_acquire(d.c, "rel", 3, -1, &mine) == RQ_OK);
    crash_at(CrashPoint::kInReleaseJournal, [&] {
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        if (rq_acquire(cc, "rel", 5, -1, &p) != RQ_OK) _exit(10);
        rq_release(cc, &p);
    });
    // Our own 3 are still d.held: 7 more must fit once the dead child's 5 are back.
    report("killed inside release", recover(d.c, "rel", 7));
    CHECK(d.peek.in_use_load("rel") == 3);
    CHECK(d.peek.in_use_req("rel") == 1);
    REQUIRE(rq_release(d.c, &mine) == RQ_OK);
    check_clean(d.peek, "rel");
}

TEST_CASE("SIGKILL in the middle of a define") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(10, kSec)};
    crash_at(CrashPoint::kInDefine, [&] {
        rq_client *cc = open_or_die(seg);
        rq_define(cc, "half", l, 1, 0);
    });
    rq_permit p;
    CHECK(rq_acquire(c, "half", 1, 0, &p) == RQ_ENOENT);  // never became visible
    int64_t t0 = now_ns();
    REQUIRE(rq_define(c, "half", l, 1, 0) == RQ_OK);  // breaks the dead definer's lock
    report("definer killed", now_ns() - t0);
    CHECK(rq_acquire(c, "half", 1, 0, &p) == RQ_OK);
    REQUIRE(rq_define(c, "other", l, 1, 0) == RQ_OK);
}

TEST_CASE("SIGKILL of a reclaimer half way: another takes the claim over") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "r1", l, 1, 0) == RQ_OK);
    REQUIRE(rq_define(c, "r2", l, 1, 0) == RQ_OK);
    Peek peek(seg.name);
    auto *ready = shared_block<std::atomic<int>>();
    pid_t holder = spawn([&] {
        rq_client *cc = open_or_die(seg);
        rq_permit a, b;
        if (rq_acquire(cc, "r1", 1, -1, &a) != RQ_OK || rq_acquire(cc, "r2", 1, -1, &b) != RQ_OK) return 10;
        ready->store(1);
        pause();
        return 0;
    });
    REQUIRE(eventually([&] { return ready->load() == 1; }));
    kill(holder, SIGKILL);
    reap(holder);
    // This child finds the dead holder while waiting, starts reclaiming it,
    // and dies after the first resource. (Armed after rq_open: registering
    // runs the reclaim steps on the slot it takes.)
    pid_t reclaimer = spawn([&] {
        rq_client *cc = open_or_die(seg);
        rq::detail::set_crash_point(CrashPoint::kInReclaim);
        rq_permit p;
        rq_acquire(cc, "r1", 1, -1, &p);
        rq_acquire(cc, "r2", 1, -1, &p);
        return 77;
    });
    REQUIRE(reap(reclaimer) == -SIGKILL);
    // It died holding the claim on the dead holder's slot.
    bool claimed = false;
    for (uint32_t p = 0; p < peek.view.geo.max_processes; ++p) {
        auto w = rq::detail::ProcWord::unpack(peek.view.process(p).word.load());
        claimed |= w.state == rq::detail::ProcState::kReclaiming;
    }
    CHECK(claimed);
    report("reclaimer killed (r1)", recover(c, "r1"));
    report("reclaimer killed (r2)", recover(c, "r2"));
    check_clean(peek, "r1");
    check_clean(peek, "r2");
}

TEST_CASE("a dead head does not outlast callers that only try or wait briefly") {
    Defined d("brief", {conc(1)});
    d.hold();
    pid_t head = spawn([&] {
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        rq_acquire(cc, "brief", 1, -1, &p);
        return 10;
    });
    REQUIRE(eventually([&] { return d.peek.queued("brief") == 1; }));
    kill(head, SIGKILL);
    reap(head);
    REQUIRE(rq_release(d.c, &d.held) == RQ_OK);
    // No caller ever waits as long as the watch interval: the try itself
    // checks the head it would otherwise give up behind.
    rq_permit p;
    int64_t t0 = now_ns();
    CHECK(rq_acquire(d.c, "brief", 1, 0, &p) == RQ_OK);
    report("dead head, try-acquire", now_ns() - t0);
    CHECK(rq_release(d.c, &p) == RQ_OK);
    // Same with 5 ms timeouts.
    REQUIRE(rq_acquire(d.c, "brief", 1, -1, &d.held) == RQ_OK);
    head = spawn([&] {
        rq_client *cc = open_or_die(d.seg);
        rq_permit q;
        rq_acquire(cc, "brief", 1, -1, &q);
        return 10;
    });
    REQUIRE(eventually([&] { return d.peek.queued("brief") == 1; }));
    kill(head, SIGKILL);
    reap(head);
    REQUIRE(rq_release(d.c, &d.held) == RQ_OK);
    int rc = RQ_ETIMEDOUT;
    for (int i = 0; i < 10 && rc == RQ_ETIMEDOUT; ++i) rc = rq_acquire(d.c, "brief", 1, 5'000'000, &p);
    CHECK(rc == RQ_OK);
    if (rc == RQ_OK) CHECK(rq_release(d.c, &p) == RQ_OK);
    check_clean(d.peek, "brief");
}

// Issue 13: the holder and the first three waiters die at once; a newcomer
// joins 50 ms later and is served within 100 ms of the deaths. Nobody alive
// was watching any of them: the newcomer hears of the last one's death at
// once (its death word already says so) and each reclaim reveals the next.
TEST_CASE("the holder and the first three waiters die at once: a newcomer is served within 100 ms") {
    Defined d("front", {conc(1)});
    pid_t kids[4];
    kids[0] = d.spawn_holder();
    for (uint32_t i = 1; i < 4; ++i) kids[i] = d.spawn_sleeper(i - 1);
    sleep_ms(20);  // every waiter asleep
    const int64_t killed = now_ns();
    for (pid_t k : kids) kill(k, SIGKILL);
    for (pid_t k : kids) CHECK(reap(k) == -SIGKILL);
    sleep_ms(50);
    rq_permit p;
    REQUIRE(rq_acquire(d.c, "front", 1, 5 * int64_t{kSec}, &p) == RQ_OK);
    const int64_t served = now_ns() - killed;
    MESSAGE("served " << served / 1e6 << " ms after the deaths (joined 50 ms after them)");
    CHECK(served < 100'000'000);
    REQUIRE(rq_release(d.c, &p) == RQ_OK);
    check_clean(d.peek, "front");
}

// A waiter watches the process right ahead of it. When that one leaves the
// line alive (its timeout), the waiter must look again and watch the one
// ahead of it, or the death of the head would go unnoticed.
TEST_CASE("a waiter whose neighbour ahead timed out still hears of the head's death") {
    Defined d("chain", {conc(1)});
    const pid_t holder = d.spawn_holder();
    const pid_t head = d.spawn_sleeper(0);
    auto *gave_up = shared_block<std::atomic<int>>();
    pid_t impatient = spawn([&]() -> int {  // times out, and stays alive (its exit would wake the one behind)
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        gave_up->store(rq_acquire(cc, "chain", 1, 300'000'000, &p) == RQ_ETIMEDOUT ? 1 : 2);
        for (;;) pause();
    });
    REQUIRE(eventually([&] { return d.peek.queued("chain") == 2; }));
    auto *admitted_at = shared_block<std::atomic<int64_t>>();
    pid_t patient = d.spawn_patient(2, admitted_at);
    REQUIRE(eventually([&] { return gave_up->load() != 0; }));
    CHECK(gave_up->load() == 1);  // left the line alive
    sleep_ms(20);
    const int64_t killed = now_ns();
    kill(head, SIGKILL);
    kill(holder, SIGKILL);
    CHECK(reap(head) == -SIGKILL);
    CHECK(reap(holder) == -SIGKILL);
    CHECK(reap(patient) == 0);
    kill(impatient, SIGKILL);
    reap(impatient);
    report("head and holder killed behind a timed-out neighbour", admitted_at->load() - killed);
    CHECK(admitted_at->load() - killed < 100'000'000);
    check_clean(d.peek, "chain");
}

// The waiter behind an idle ticket (rq_enqueue, no thread waiting on it)
// watches past it. When the one it reached past that ticket leaves the line
// alive, it must still be told to look again, or the head's death goes
// unnoticed (the idle ticket's owner watches nobody).
TEST_CASE("a waiter behind an idle ticket still hears of the head's death when its neighbour ahead leaves") {
    Defined d("idle", {conc(1)});
    const pid_t holder = d.spawn_holder();
    const pid_t head = d.spawn_sleeper(0);  // H: the head, asleep for concurrency
    auto *gave_up = shared_block<std::atomic<int>>();
    pid_t neighbour = spawn([&]() -> int {  // A: times out, and stays alive
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        gave_up->store(rq_acquire(cc, "idle", 1, 400'000'000, &p) == RQ_ETIMEDOUT ? 1 : 2);
        for (;;) pause();
    });
    REQUIRE(eventually([&] { return d.peek.queued("idle") == 2; }));
    pid_t idler = spawn([&]() -> int {  // I: a ticket nobody waits on
        rq_client *cc = open_or_die(d.seg);
        rq_ticket t;
        if (rq_enqueue(cc, "idle", 1, &t) != RQ_OK) return 11;
        for (;;) pause();
    });
    REQUIRE(eventually([&] { return d.peek.queued("idle") == 3; }));
    pid_t behind = spawn([&] {  // Y: watches past I, to A
        rq_client *cc = open_or_die(d.seg);
        rq_permit p;
        rq_acquire(cc, "idle", 1, 10 * int64_t{kSec}, &p);
        return 0;
    });
    REQUIRE(eventually([&] { return d.peek.queued("idle") == 4; }));
    REQUIRE(eventually([&] { return gave_up->load() != 0; }));
    CHECK(gave_up->load() == 1);
    sleep_ms(20);
    const uint32_t dead_head = d.peek.queue("idle").head;
    const int64_t killed = now_ns();
    kill(head, SIGKILL);
    kill(holder, SIGKILL);
    CHECK(reap(head) == -SIGKILL);
    CHECK(reap(holder) == -SIGKILL);
    // Someone alive heard of it: the head moves past the dead one (to I's ticket).
    const bool moved = eventually([&] { return d.peek.queue("idle").head != dead_head; }, 3000);
    const int64_t took = now_ns() - killed;
    CHECK(moved);
    report("head killed behind a neighbour that left and an idle ticket", took);
    for (pid_t k : {neighbour, idler, behind}) kill(k, SIGKILL);
    for (pid_t k : {neighbour, idler, behind}) reap(k);
}
