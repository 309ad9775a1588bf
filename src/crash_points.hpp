// Crash points: every step of every protocol that a test kills a process
// at, and the test-only hooks that arm them. Production builds compile them
// away (an empty inline function); test builds (-DRQ_TEST_HOOKS,
// crash_points.cpp) SIGKILL or SIGSTOP themselves at the armed step.
#pragma once

namespace rq::detail {

// Every step of every protocol that a test kills a process at. The names are
// the tests' contract (tests/test_crash.cpp enumerates them).
enum class CrashPoint : int {
    kNone = 0,
    kAfterEnqueue,        // holds a ticket, has not waited yet
    kHeadBeforeServe,     // is head, has taken nothing
    kAfterRateTaken,      // TATs advanced, concurrency not yet taken
    kInConcJournal,       // journal valid, in_use updated, holding not yet
    kBeforePass,          // acquired, head not yet passed on
    kInPass,              // head word moved on, next not yet granted
    kInReleaseJournal,    // release half applied under the lock
    kInDefine,            // new resource half built under the define lock
    kInReclaim,           // reclaimer half way through a dead slot
    kWhileHeadSleeping,   // head about to sleep for tokens
    kInServeBehind,       // tokens taken for the ticket behind, not handed over yet
    // The line-free path with concurrency limits (try_fast_conc), which a
    // process armed with any other point does not take:
    kFastAfterRateTaken,  // lock held, TATs advanced, concurrency not yet taken
    kFastInConcJournal,   // lock held, journal valid, in_use updated, holding not yet
    kFastBeforeUnlock,    // lock held, everything taken
    kFastBeforeLock,      // saw the line empty, has not taken the lock yet (a stop point)
    // Many hosts: the refiller's steps (refiller.cpp); a process armed with
    // one acquires as any other.
    kRefillElected,       // just won the refiller word, has done nothing yet
    kRefillLowering,      // resource lock held, leased slots being lowered
    kRefillBeforeCall,    // report made (credit taken back, slots lowered), not sent
    kRefillAfterReply,    // Redis granted, nothing applied here yet
    kRefillInApply,       // credit added, slots and expiry not yet written
    kRefillInFold,        // reserved tokens taken off next_add, horizon not yet raised
};
// Test builds (RQ_TEST_HOOKS) SIGKILL themselves at the chosen point, so tests
// can kill a process at each step of a protocol. Other builds compile it away.
void set_crash_point(CrashPoint p);
// Test builds stop themselves (SIGSTOP), once, at the chosen point, so a test
// can order other processes around that step and then SIGCONT them.
void set_stop_point(CrashPoint p);
#ifdef RQ_TEST_HOOKS
void crash_point(CrashPoint p);
// A process armed to die at a step of the line takes the line; one armed for
// a step of the line-free path with concurrency takes that path.
bool line_free_allowed();
#else
inline void crash_point(CrashPoint) {}
inline bool line_free_allowed() { return true; }
#endif

}  // namespace rq::detail
