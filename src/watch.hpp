// The types and tuning of watching (watch.cpp): how long a sleeper that
// gets no notice of a death polls, and what it watches.
#pragma once

#include "futex.hpp"

#include <cstdint>

namespace rq::detail {

// A sleeper hears of a death from the kernel (layout.hpp, the death word),
// so it sleeps untimed. Only where that notice cannot be had (a process of
// an older library, one whose sentinel has not started, a kernel without
// futex_waitv) does it poll: it sleeps at most kWatchNs and then checks the
// liveness lock (an fcntl, a few microseconds). So reclaim comes within a
// few milliseconds of a death with notice, and within one or two kWatchNs
// (20 to 40 ms) without. So does a lock waiter, whose lock is held for a few
// dozen instructions unless its owner died.
inline constexpr int64_t kWatchNs = 20'000'000;
// The kernel marks the death word before it closes the dead process's files,
// so a waiter may find the liveness lock still held for a moment after the
// notice: it looks again this often (exit takes about a millisecond here).
inline constexpr int64_t kDyingNs = 1'000'000;
// A sleep that waits for a notice still ends after this long, and then looks
// at the front (and a waiting head at its holders): a safety bound, should a
// notice ever be missed by a path the protocol did not foresee, not the way
// any death is found (the tests pass with it set to an hour). One wake-up a
// second costs a sleeper about 5 us of CPU per second.
inline constexpr int64_t kBackstopNs = 1'000'000'000;
// A lock word that names one live owner (or this very process, outside a
// registration) for this long is damage, not a lock (lock.cpp): a lock is
// held for a few dozen instructions, and even a holder preempted on a busy
// machine lets go within milliseconds. The wait then fails with
// RQ_ECORRUPT instead of hanging a call that has no deadline.
inline constexpr int64_t kLockDamageNs = 2'000'000'000;
// How long a try-acquire, or the line-free path, waits for a resource lock:
// a holder needs well under a microsecond unless preempted; a try must
// still return at once, and the line-free path then takes the line.
inline constexpr int64_t kLockTryNs = 1'000'000;
// How many processes ahead of it a waiter whose timeout passed, or that
// polls, checks (watch.cpp, scan_front), so that a stuck front cannot
// outlast every impatient caller.
inline constexpr uint32_t kWatchDistance = 2;
// How many owners ahead of it a waiter watches at most (watch.cpp,
// ahead_of): more idle tickets of distinct processes in a row than this and
// it polls.
inline constexpr uint32_t kMaxAhead = 8;
inline constexpr uint32_t kNoOwner = UINT32_MAX;

// What a sleeper watches for a death: up to kMax death words to sleep on, and
// whether a watched process gives no notice (poll: sleep at most kWatchNs,
// then check) or has died (check now).
struct DeathWatch {
    static constexpr uint32_t kMax = 64;  // more holders than this: poll
    FutexWord word[kMax];
    uint32_t n = 0;
    bool poll = false;
    bool died = false;
};

// After a sleep on w's words, whatever woke it: passes on the news of any
// death among them to the other sleepers on that word (the kernel wakes only
// one, and that wake may have gone to a sleeper that had already been woken
// by another word and will not look at this one).
void relay_deaths(const DeathWatch &w) noexcept;

// Whom the waiter of a ticket watches (watch.cpp, ahead_of): the owners of
// the tickets ahead of it, nearest first, up to and including the first one
// whose owner is asleep watching further ahead (or the head).
struct Ahead {
    uint32_t n = 0;                  // 0: only our own tickets ahead
    uint32_t ticket[kMaxAhead];
    uint32_t owner[kMaxAhead];       // kNoOwner: a slot that does not name its ticket (damage)
    bool stuck = false;              // ticket[n - 1] is a head left abandoned or served
    bool more = false;               // stopped at kMaxAhead: poll
    bool same(const Ahead &o) const {
        if (n != o.n || stuck != o.stuck || more != o.more) return false;
        for (uint32_t i = 0; i < n; ++i) {
            if (ticket[i] != o.ticket[i] || owner[i] != o.owner[i]) return false;
        }
        return true;
    }
};

// The first owners at the front of a queue (watch.cpp, scan_front): whom a
// waiter whose timeout passed, or that polls, checks.
struct Front {
    uint32_t ticket[kWatchDistance + 1];
    uint32_t owner[kWatchDistance + 1];
    uint32_t n = 0;
    bool full() const { return n == kWatchDistance + 1; }
    bool has(uint32_t o) const {
        for (uint32_t i = 0; i < n; ++i) {
            if (owner[i] == o) return true;
        }
        return false;
    }
};

// A non-owning reference to a `bool()` callable (no allocation).
class SleepCheck {
public:
    template <class F>
    SleepCheck(const F &f)  // NOLINT: implicit by design
        : obj_(&f), call_([](const void *o) { return (*static_cast<const F *>(o))(); }) {}
    bool operator()() const { return call_(obj_); }

private:
    const void *obj_;
    bool (*call_)(const void *);
};

}  // namespace rq::detail
