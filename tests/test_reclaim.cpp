// Regression tests for the reclaim protocol: processes that die while they
// hold locks, while they reclaim others, and slots that are reused while a
// reclaimer still acts on what it saw before.
//
// Each case builds its state exactly, with crash points and process slots
// chosen on purpose (see spawn_landing_in), checks that state through Peek
// before it acts, and bounds every child with alarm() and reap().
//
// Covered elsewhere, so not repeated here: a waiter behind three or more
// queued threads of a process that dies (test_segment.cpp, "a waiter behind
// queued threads of a process that dies still gets the permit"), and a dead
// head against try-acquires and short timeouts (test_crash.cpp, "a dead head
// does not outlast callers that only try or wait briefly").
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "core.hpp"
#include "helpers.hpp"
#include "layout.hpp"
#include "peek.hpp"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

using namespace rqtest;
namespace rd = rq::detail;
using rd::CrashPoint;
using rd::ProcState;
using rd::ProcWord;

// ---- Access to three private Engine members ------------------------------------------
//
// Two cases replay a race by calling the engine's own steps with a stale
// observation; no public entry point takes one. Explicit instantiation skips
// access checks ([temp.spec.general]), so this hands out member pointers
// without touching the library's headers.
namespace {

template <class Tag, typename Tag::type M>
struct Expose {
    friend typename Tag::type member(Tag) { return M; }
};

struct ReclaimSlot {
    using type = int (rd::Engine::*)(uint32_t, uint64_t);
};
struct BreakDeadLock {
    using type = rd::Result<rd::LockBreak> (rd::Engine::*)(rd::Shared<uint32_t> &, uint32_t, bool, uint32_t);
};
struct LockWord {
    using type = int (rd::Engine::*)(rd::Shared<uint32_t> &, bool, uint32_t, int64_t);
};
ReclaimSlot::type member(ReclaimSlot);
BreakDeadLock::type member(BreakDeadLock);
LockWord::type member(LockWord);

template struct Expose<ReclaimSlot, &rd::Engine::reclaim_slot>;
template struct Expose<BreakDeadLock, &rd::Engine::break_dead_lock>;
template struct Expose<LockWord, &rd::Engine::lock>;

constexpr int64_t kSec = 1'000'000'000;

// Children are bounded by spawn()'s alarm; this process is bounded too, since
// two cases call the engine here: a case that hangs ends the run with a
// message instead of stalling it. Children keep SIGALRM's default action.
pid_t g_test_pid = 0;
extern "C" void on_watchdog(int) {
    if (getpid() != g_test_pid) {
        signal(SIGALRM, SIG_DFL);
        raise(SIGALRM);
        return;
    }
    static const char msg[] = "test_reclaim: watchdog: a test case hung\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
}
struct Watchdog {
    explicit Watchdog(unsigned s) {
        g_test_pid = getpid();
        signal(SIGALRM, on_watchdog);
        alarm(s);
    }
    ~Watchdog() {
        alarm(0);
        signal(SIGALRM, SIG_DFL);
    }
};

rd::Engine *engine_or_die(const Segment &seg, const rq_open_options &o) {
    rd::Engine *e = nullptr;
    if (rd::Engine::open(seg.c_str(), &o, &e) != RQ_OK) _exit(91);
    return e;
}

// Runs fn in a child that must SIGKILL itself at the crash point fn arms.
// Arm it after rq_open: registering runs reclaim steps, which have crash
// points of their own (kInReclaim fires there for every defined resource).
void crash_in_child(const std::function<void()> &fn) {
    pid_t kid = spawn([&] {
        fn();
        return 77;  // the crash point was never reached
    }, 10);
    REQUIRE_MESSAGE(reap(kid, 12000) == -SIGKILL, "the child did not die at its crash point");
}

ProcWord proc_word(const Peek &peek, uint32_t p) { return ProcWord::unpack(peek.view.process(p).word.load()); }

// The live slot registered by process `pid`, or UINT32_MAX.
uint32_t slot_of(const Peek &peek, pid_t pid) {
    for (uint32_t p = 0; p < peek.view.geo.max_processes; ++p) {
        if (peek.view.process(p).pid.load() == static_cast<uint32_t>(pid) &&
            proc_word(peek, p).state == ProcState::kLive) {
            return p;
        }
    }
    return UINT32_MAX;
}

uint32_t lock_owner(const Peek &peek, const std::string &res) {
    return peek.view.resource(peek.index(res)).lock.load() & rd::kLockOwnerMask;  // slot + 1; 0 when free
}

// Where register_process() puts a process with this pid when no slot is
// marked free: the first slot from pid % max_processes on whose liveness
// lock no live process holds.
uint32_t landing_slot(pid_t pid, uint32_t n, const std::vector<uint32_t> &live) {
    for (uint32_t k = 0; k < n; ++k) {
        uint32_t s = (static_cast<uint32_t>(pid) % n + k) % n;
        if (std::find(live.begin(), live.end(), s) == live.end()) return s;
    }
    return UINT32_MAX;
}

// Forks until a child would register into slot `target`, and runs fn there.
// Children that would land elsewhere exit at once (status 3). Requires that
// no slot is marked free (checked by the caller with Peek).
pid_t spawn_landing_in(uint32_t target, uint32_t n, const std::vector<uint32_t> &live,
                       const std::function<int()> &fn, unsigned limit_s) {
    for (int tries = 0; tries < 500; ++tries) {
        pid_t kid = spawn([&] { return landing_slot(getpid(), n, live) == target ? fn() : 3; }, limit_s);
        if (landing_slot(kid, n, live) == target) return kid;
        REQUIRE(reap(kid, 5000) == 3);
    }
    FAIL("no child pid landed in slot " << target);
    return -1;
}

// The two resources `a` and `b`, by index: reclaim steps visit resources in
// index order, and the cases below depend on which one comes first.
struct Ordered {
    std::string lo, hi;
};
Ordered ordered(const Peek &peek) {
    return peek.index("a") < peek.index("b") ? Ordered{"a", "b"} : Ordered{"b", "a"};
}

}  // namespace

// Review 2, "regdead". Y registers into dead X's slot. X died holding hi's
// lock (inside a release); Q died holding lo's lock and a permit on hi.
// Reclaiming X visits lo first, finds Q's lock, so reclaims Q first, and Q's
// reclaim needs hi's lock, whose word names X's slot: Y's own slot now. It
// must take that lock over as X's, not wait on itself forever. (Before the
// fix, rq_open never returned, and hi's lock stayed held.)
TEST_CASE("registering into a dead lock holder's slot finishes even when a nested reclaim needs its lock") {
    Watchdog dog(30);
    Segment seg;
    const rq_open_options o{sizeof(rq_open_options), 0, 8, 8, 3, 0, nullptr};
    Client c(seg.name, &o);
    rq_limit l[] = {conc(2)};
    REQUIRE(rq_define(c, "a", l, 1, 0) == RQ_OK);
    REQUIRE(rq_define(c, "b", l, 1, 0) == RQ_OK);
    Peek peek(seg.name);
    const auto [lo, hi] = ordered(peek);
    auto *flags = shared_block<std::atomic<int>>(3);  // Q ready, Q go, Y's rq_open result
    flags[2].store(1);

    // Q holds hi and lo; later it dies inside a release of lo, holding lo's lock.
    pid_t q_pid = spawn([&] {
        rq_client *cc = open_or_die(seg);
        rq_permit a, b;
        if (rq_acquire(cc, hi.c_str(), 1, 0, &b) != RQ_OK || rq_acquire(cc, lo.c_str(), 1, 0, &a) != RQ_OK) return 10;
        flags[0].store(1);
        while (flags[1].load() == 0) usleep(1000);
        rd::set_crash_point(CrashPoint::kInReleaseJournal);
        rq_release(cc, &a);
        return 77;
    }, 10);
    REQUIRE(eventually([&] { return flags[0].load() == 1; }));
    const uint32_t q = slot_of(peek, q_pid);
    // X holds lo and hi, and dies inside a release of hi, holding hi's lock.
    uint32_t x = UINT32_MAX;
    crash_in_child([&] {
        rq_client *cc = open_or_die(seg);
        rq_permit a, b;
        if (rq_acquire(cc, lo.c_str(), 1, 0, &a) != RQ_OK || rq_acquire(cc, hi.c_str(), 1, 0, &b) != RQ_OK) _exit(10);
        rd::set_crash_point(CrashPoint::kInReleaseJournal);
        rq_release(cc, &b);
    });
    flags[1].store(1);
    REQUIRE(reap(q_pid, 12000) == -SIGKILL);
    const uint32_t me = slot_of(peek, getpid());
    for (uint32_t p = 0; p < 3; ++p) {
        if (p != me && p != q) x = p;
    }
    INFO(peek.dump(hi, seg.name));
    INFO(peek.dump(lo, seg.name));
    REQUIRE(q < 3);
    REQUIRE(me < 3);
    REQUIRE(lock_owner(peek, lo) == q + 1);
    REQUIRE(lock_owner(peek, hi) == x + 1);
    REQUIRE(peek.view.holding(x, peek.index(lo)).req.load() == 1);
    REQUIRE(peek.view.holding(q, peek.index(hi)).req.load() == 1);
    for (uint32_t p = 0; p < 3; ++p) REQUIRE(proc_word(peek, p).state == ProcState::kLive);  // none marked free

    // Y registers into X's slot (not Q's) and must finish rq_open.
    pid_t y = spawn_landing_in(x, 3, {me}, [&] {
        rq_client *cc = nullptr;
        int rc = rq_open(seg.c_str(), &cc);
        flags[2].store(rc);
        if (rc == RQ_OK) rq_close(cc);
        return 0;
    }, 5);
    const int st = reap(y, 8000);
    INFO("Y's rq_open: " << (flags[2].load() == 1 ? std::string("never returned") : rq_errname(flags[2].load()))
                         << ", Y's exit status " << st << std::string(st == -SIGALRM ? " (hung)" : ""));
    CHECK(st == 0);
    CHECK(flags[2].load() == RQ_OK);
    // No lock is left held, every permit of X and Q is back, and both are gone.
    CHECK(lock_owner(peek, lo) == 0);
    CHECK(lock_owner(peek, hi) == 0);
    for (const std::string &r : {lo, hi}) {
        CAPTURE(r);
        CHECK(peek.in_use_req(r) == 0);
        CHECK(peek.held_total(r) == 0);
        CHECK(peek.queued(r) == 0);
    }
    CHECK(peek.live_processes() == 1);
    // Others acquire the whole capacity at once, without waiting.
    rq_permit p[4];
    CHECK(rq_acquire(c, lo.c_str(), 1, 0, &p[0]) == RQ_OK);
    CHECK(rq_acquire(c, lo.c_str(), 1, 0, &p[1]) == RQ_OK);
    CHECK(rq_acquire(c, hi.c_str(), 1, 0, &p[2]) == RQ_OK);
    CHECK(rq_acquire(c, hi.c_str(), 1, 0, &p[3]) == RQ_OK);
    for (auto &pm : p) CHECK(rq_release(c, &pm) == RQ_OK);
    munmap(flags, 3 * sizeof(std::atomic<int>));
}

// Review 2, "stale_by". Z died while reclaiming dead P, leaving P's slot
// claimed (kReclaiming by Z's slot). N then registers into Z's slot, which
// makes the claim look as if a live reclaimer held it: P would never be
// reclaimed and its permit would be lost for good. N must hand the claim back.
TEST_CASE("a claim left by a dead reclaimer whose slot is reused does not make its target unreclaimable") {
    Watchdog dog(30);
    Segment seg;
    const rq_open_options o{sizeof(rq_open_options), 0, 4, 8, 3, 0, nullptr};
    Client c(seg.name, &o);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "a", l, 1, 0) == RQ_OK);
    REQUIRE(rq_define(c, "b", l, 1, 0) == RQ_OK);
    Peek peek(seg.name);
    // P holds the only permit of hi. Z's reclaim of P visits lo first and dies
    // right after it, before it gets to hi.
    const auto [lo, hi] = ordered(peek);
    auto *flags = shared_block<std::atomic<int>>(2);
    pid_t p_pid = spawn([&] {
        rq_client *cc = open_or_die(seg);
        rq_permit pm;
        if (rq_acquire(cc, hi.c_str(), 1, 0, &pm) != RQ_OK) return 10;
        flags[0].store(1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return flags[0].load() == 1; }));
    const uint32_t p = slot_of(peek, p_pid);
    REQUIRE(p < 3);
    kill(p_pid, SIGKILL);
    REQUIRE(reap(p_pid, 5000) == -SIGKILL);
    auto *z_slot = shared_block<std::atomic<uint32_t>>();
    crash_in_child([&] {
        rq_client *cc = open_or_die(seg);
        z_slot->store(slot_of(peek, getpid()));
        rd::set_crash_point(CrashPoint::kInReclaim);  // armed after registering
        rq_permit pm;
        rq_acquire(cc, hi.c_str(), 1, 5 * kSec, &pm);  // blocked by dead P: reclaims it
    });
    const uint32_t z = z_slot->load();
    const uint32_t me = slot_of(peek, getpid());
    INFO(peek.dump(hi, seg.name));
    REQUIRE(z < 3);
    REQUIRE(me < 3);
    REQUIRE(proc_word(peek, p).state == ProcState::kReclaiming);
    REQUIRE(proc_word(peek, p).by == z);
    REQUIRE(peek.view.holding(p, peek.index(hi)).req.load() == 1);  // not reached yet
    REQUIRE(proc_word(peek, z).state == ProcState::kLive);           // none marked free

    // N registers into Z's slot (not P's) and stays alive.
    pid_t n = spawn_landing_in(z, 3, {me}, [&] {
        rq_client *cc = nullptr;
        if (rq_open(seg.c_str(), &cc) != RQ_OK) return 10;
        flags[1].store(1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return flags[1].load() == 1; }));
    REQUIRE(slot_of(peek, n) == z);
    // P's permit comes back to a caller that waits for it, within a bound.
    rq_permit pm;
    const int64_t t0 = now_ns();
    const int rc = rq_acquire(c, hi.c_str(), 1, 2 * kSec, &pm);
    CHECK_MESSAGE(rc == RQ_OK, "acquire on hi: " << std::string(rq_errname(rc)) << " after " << (now_ns() - t0) / 1e6 << " ms");
    CHECK(proc_word(peek, p).state == ProcState::kFree);
    CHECK(peek.view.holding(p, peek.index(hi)).req.load() == 0);
    if (rc == RQ_OK) CHECK(rq_release(c, &pm) == RQ_OK);
    CHECK(peek.in_use_req(hi) == 0);
    kill(n, SIGKILL);
    CHECK(reap(n, 5000) == -SIGKILL);
    munmap(flags, 2 * sizeof(std::atomic<int>));
    munmap(z_slot, sizeof(std::atomic<uint32_t>));
}

// Review 1, "live_reclaim". Reclaimer R sees slot d dead (generation g) and is
// preempted; R2 reclaims d; X registers into d (generation g + 1) and takes
// the only permit. When R resumes with what it saw, it must leave X alone:
// reclaiming X would hand X's permit out a second time.
TEST_CASE("a reclaimer that saw a dead generation leaves the live process now in that slot alone") {
    Watchdog dog(30);
    Segment seg;
    const rq_open_options o{sizeof(rq_open_options), 0, 4, 8, 4, 0, nullptr};
    rd::Engine *r_eng = engine_or_die(seg, o);
    rq_limit l[] = {conc(1)};
    REQUIRE(r_eng->define("r", l, 1, 0) == RQ_OK);
    rd::Engine *r2 = engine_or_die(seg, o);
    Peek peek(seg.name);
    auto *sh = shared_block<std::atomic<int>>(3);  // D ready, X's acquire result, X's slot + 1
    pid_t d_pid = spawn([&]() -> int {
        engine_or_die(seg, o);
        sh[0].store(1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return sh[0].load() == 1; }));
    const uint32_t d = slot_of(peek, d_pid);
    REQUIRE(d < 4);
    rd::Engine *filler = engine_or_die(seg, o);  // d will be the only free slot
    kill(d_pid, SIGKILL);
    REQUIRE(reap(d_pid, 5000) == -SIGKILL);
    // R: what reclaim_if_dead() loads and checks before it claims the slot.
    const uint64_t stale = peek.view.process(d).word.load();
    REQUIRE(ProcWord::unpack(stale).state == ProcState::kLive);
    REQUIRE_FALSE(r_eng->alive(d));
    // Meanwhile R2 reclaims d, and X registers there and takes the permit.
    REQUIRE(r2->reclaim_if_dead(d).kind == rq::detail::Reclaim::kReclaimed);
    pid_t x_pid = spawn([&]() -> int {
        rd::Engine *x = engine_or_die(seg, o);
        rq_permit pm;
        int rc = x->acquire("r", 1, 0, &pm);
        sh[2].store(static_cast<int>(x->process_slot()) + 1);
        sh[1].store(rc == RQ_OK ? 1 : -1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return sh[1].load() != 0; }));
    REQUIRE(sh[1].load() == 1);
    REQUIRE(sh[2].load() == static_cast<int>(d) + 1);
    const uint64_t live = peek.view.process(d).word.load();
    REQUIRE(ProcWord::unpack(live).gen == ProcWord::unpack(stale).gen + 1);
    // R resumes with the generation it saw dead.
    const int rc = (r_eng->*member(ReclaimSlot{}))(d, stale);
    CHECK(rc == RQ_OK);
    CHECK(peek.view.process(d).word.load() == live);  // untouched
    CHECK(r_eng->alive(d));
    CHECK(peek.in_use_req("r") == 1);
    CHECK(peek.view.holding(d, peek.index("r")).req.load() == 1);
    rq_permit pm;
    CHECK(r2->acquire("r", 1, 0, &pm) == RQ_EAGAIN);  // X still holds the only permit
    // Once X dies, its permit comes back as usual.
    kill(x_pid, SIGKILL);
    REQUIRE(reap(x_pid, 5000) == -SIGKILL);
    CHECK(r2->acquire("r", 1, 2 * kSec, &pm) == RQ_OK);
    CHECK(r2->release(&pm) == RQ_OK);
    CHECK(peek.in_use_req("r") == 0);
    delete filler;
    delete r2;
    delete r_eng;
    munmap(sh, 3 * sizeof(std::atomic<int>));
}

// Review 1, "lock_aba". W waits on a lock held by D, sees D dead and is
// preempted before it breaks the lock; D's slot is reclaimed (which frees the
// lock), X registers into it and takes the lock: the word holds the same value
// as before. When W resumes, it must not take X's lock.
TEST_CASE("a lock breaker that saw the owner dead does not take the lock of a live process now in that slot") {
    Watchdog dog(30);
    Segment seg;
    const rq_open_options o{sizeof(rq_open_options), 0, 4, 8, 4, 0, nullptr};
    rd::Engine *w = engine_or_die(seg, o);
    rq_limit l[] = {conc(1)};
    REQUIRE(w->define("r", l, 1, 0) == RQ_OK);
    uint32_t r = 0;
    REQUIRE(w->lookup("r", r) == RQ_OK);
    rd::Shared<uint32_t> &word = w->view().resource(r).lock;
    Peek peek(seg.name);
    auto *sh = shared_block<std::atomic<int>>(2);  // D's slot + 1, X's slot + 1 (with the lock)
    pid_t d_pid = spawn([&] {
        rd::Engine *e = engine_or_die(seg, o);
        if ((e->*member(LockWord{}))(word, false, r, INT64_MAX) != RQ_OK) return 10;
        sh[0].store(static_cast<int>(e->process_slot()) + 1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return sh[0].load() != 0; }));
    const uint32_t d = static_cast<uint32_t>(sh[0].load() - 1);
    kill(d_pid, SIGKILL);
    REQUIRE(reap(d_pid, 5000) == -SIGKILL);
    REQUIRE((word.load() & rd::kLockOwnerMask) == d + 1);
    REQUIRE_FALSE(w->alive(d));  // W's observation, before it is preempted
    rd::Engine *r2 = engine_or_die(seg, o);
    rd::Engine *filler = engine_or_die(seg, o);  // d will be the only free slot
    REQUIRE(r2->reclaim_if_dead(d).kind == rq::detail::Reclaim::kReclaimed);
    REQUIRE(word.load() == 0);
    pid_t x_pid = spawn([&] {
        rd::Engine *e = engine_or_die(seg, o);
        if ((e->*member(LockWord{}))(word, false, r, INT64_MAX) != RQ_OK) return 10;
        sh[1].store(static_cast<int>(e->process_slot()) + 1);
        for (;;) pause();
    }, 10);
    REQUIRE(eventually([&] { return sh[1].load() != 0; }));
    REQUIRE(sh[1].load() == static_cast<int>(d) + 1);
    const uint32_t held = word.load();
    REQUIRE((held & rd::kLockOwnerMask) == d + 1);
    // W resumes: "the owner of this word, slot d, is dead".
    CHECK((w->*member(BreakDeadLock{}))(word, d, false, r).kind == rd::LockBreak::kWaitAgain);
    REQUIRE(word.load() == held);                                    // still X's
    CHECK(w->alive(d));
    // Once X dies holding it, the lock is broken as usual.
    kill(x_pid, SIGKILL);
    REQUIRE(reap(x_pid, 5000) == -SIGKILL);
    rq_permit pm;
    CHECK(w->acquire("r", 1, 2 * kSec, &pm) == RQ_OK);
    CHECK(w->release(&pm) == RQ_OK);
    CHECK(word.load() == 0);
    delete filler;
    delete r2;
    delete w;
    munmap(sh, 2 * sizeof(std::atomic<int>));
}

namespace {
// A child takes the head of "r" with a ticket of `load`; we queue behind it
// (`mine`, of `my_load`); then the child serves, as head, armed to die at
// `cp`, and dies there. Returns once it is dead.
void head_dies_serving(const Segment &seg, rq_client *c, uint64_t load, CrashPoint cp, uint64_t my_load,
                       rq_ticket &mine) {
    auto *ready = shared_block<std::atomic<int>>();
    auto *go = shared_block<std::atomic<int>>();
    pid_t child = spawn([&] {
        rq_client *cc;
        if (rq_open(seg.c_str(), &cc) != RQ_OK) return 1;
        rq_ticket t;
        if (rq_enqueue(cc, "r", load, &t) != RQ_OK) return 2;
        ready->store(1);
        while (go->load() == 0) usleep(100);
        rd::set_crash_point(cp);
        rq_permit p;
        rq_wait(cc, &t, 0, &p);
        return 3;  // not reached: killed at cp
    });
    REQUIRE(eventually([&] { return ready->load() == 1; }));
    REQUIRE(rq_enqueue(c, "r", my_load, &mine) == RQ_OK);
    go->store(1);
    CHECK(reap(child) == -SIGKILL);
    munmap(ready, sizeof *ready);
    munmap(go, sizeof *go);
}
}  // namespace

TEST_CASE("a head killed while serving the ticket behind it: that ticket still gets served") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(1000, static_cast<uint64_t>(kSec), 1000)};
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    // The child serves itself, takes our tokens, and dies before handing
    // them over.
    rq_ticket mine;
    head_dies_serving(seg, c, 1, CrashPoint::kInServeBehind, 1, mine);
    const int64_t t0 = now_ns();
    rq_permit p;
    REQUIRE(rq_wait(c, &mine, 5 * kSec, &p) == RQ_OK);
    MESSAGE("served " << (now_ns() - t0) / 1'000'000 << " ms after the head died in serve_behind");
    CHECK(now_ns() - t0 < kSec);
}

TEST_CASE("a head killed after moving the head word onto a ticket it served: that ticket is not charged twice") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(100, static_cast<uint64_t>(kSec) * 3600, 100, RQ_COST_LOAD)};  // no refill in the test
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    // The child serves itself and our ticket behind it, moves the head word
    // onto ours (served) and dies there.
    rq_ticket mine;
    head_dies_serving(seg, c, 10, CrashPoint::kInPass, 20, mine);
    Peek peek(seg.name);
    CHECK(peek.queue("r").head == 1);  // the head word names our served ticket
    rq_permit p;
    REQUIRE(rq_wait(c, &mine, kSec, &p) == RQ_OK);
    // 10 + 20 taken once each: 70 left, exactly.
    rq_permit q;
    CHECK(rq_acquire(c, "r", 70, 0, &q) == RQ_OK);
    CHECK(rq_acquire(c, "r", 1, 0, &q) == RQ_EAGAIN);
}

// A holder that really dies is seen dead through its liveness lock: its
// permit comes back (moved here from test_segment.cpp).
TEST_CASE("a holder that dies is seen dead and its permit is reclaimed") {
    Defined d("c", {conc(1)});
    const auto before = locked_slots(d.seg.name, d.peek.view.geo.max_processes);
    REQUIRE(before.size() == 1);  // this process
    auto *state = shared_block<std::atomic<int>>();
    pid_t kid = spawn(
        [&] {
            rq_client *c = open_or_die(d.seg);
            rq_permit p;
            if (rq_acquire(c, "c", 1, 0, &p) != RQ_OK) return 2;
            state->store(1);
            for (;;) pause();  // killed holding it
        },
        10);
    REQUIRE(eventually([&] { return state->load() == 1; }));
    CHECK(locked_slots(d.seg.name, d.peek.view.geo.max_processes).size() == 2);
    rq_permit p;
    CHECK(rq_acquire(d.c, "c", 1, 100'000'000, &p) == RQ_ETIMEDOUT);  // alive: not taken
    ::kill(kid, SIGKILL);
    CHECK(reap(kid, 5000) == -SIGKILL);
    CHECK(locked_slots(d.seg.name, d.peek.view.geo.max_processes) == before);
    REQUIRE(rq_acquire(d.c, "c", 1, 2'000'000'000, &p) == RQ_OK);
    CHECK(rq_release(d.c, &p) == RQ_OK);
    munmap(state, sizeof(std::atomic<int>));
}


// The realistic form of a dead process ahead of watchers, with no damage at
// all (moved here from test_segment.cpp):
// the head and the next ones. A waiter of another process must still get the
// permit once the dead process is reclaimed: watching counts processes, not
// tickets, so the waiter is a watcher however many threads are ahead of it.
TEST_CASE("a waiter behind queued threads of a process that dies still gets the permit") {
    // Two queued threads: the waiter is within watch distance of the dead
    // head. Three: it is not.
    const std::pair<int, int64_t> runs[] = {{2, int64_t{kSec}}, {2, -1}, {3, int64_t{kSec}}, {3, -1}};
    for (const auto &[threads, timeout] : runs) {
        CAPTURE(threads);
        CAPTURE(timeout);
        Defined d("c", {conc(1)});
        auto &seg = d.seg;
        auto *queued = shared_block<std::atomic<int>>();
        // Process A: one thread holds the only permit, more queue behind it.
        pid_t a = spawn(
            [&] {
                rq_client *c = open_or_die(seg);
                rq_permit held;
                if (rq_acquire(c, "c", 1, 0, &held) != RQ_OK) return 2;
                std::vector<std::thread> ts;
                for (int i = 0; i < threads; ++i) {
                    ts.emplace_back([c] {
                        rq_permit p;
                        rq_acquire(c, "c", 1, -1, &p);
                    });
                }
                queued->store(1);
                for (;;) pause();  // killed while holding and queued
            },
            20);
        REQUIRE(eventually([&] { return queued->load() == 1; }));
        // (the holder took no ticket)
        REQUIRE(eventually([&] { return d.peek.queued("c") == static_cast<uint32_t>(threads); }));
        // Process B queues behind them, then A dies.
        auto *got = shared_block<std::atomic<int>>();
        got->store(1);
        pid_t b = spawn(
            [&] {
                rq_client *c = open_or_die(seg);
                rq_permit p;
                int rc = rq_acquire(c, "c", 1, timeout, &p);
                if (rc == RQ_OK) rc = rq_release(c, &p);
                rq_close(c);
                got->store(rc);
                return 0;
            },
            3);
        REQUIRE(eventually([&] { return d.peek.queued("c") == 1u + threads; }));
        sleep_ms(50);
        ::kill(a, SIGKILL);
        CHECK(reap(a, 5000) == -SIGKILL);
        const int st = reap(b, 5000);
        INFO("B's acquire: " << (got->load() == 1 ? std::string("never returned") : std::string(rq_errname(got->load())))
                             << ", B's exit status " << st << std::string(st == -SIGALRM ? " (hung)" : ""));
        CHECK(st == 0);
        CHECK(got->load() == RQ_OK);
        munmap(queued, sizeof(std::atomic<int>));
        munmap(got, sizeof(std::atomic<int>));
    }
}
