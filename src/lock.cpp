// The lock word protocol (a robust lock whose owner is a process slot) and
// the concurrency accounting it guards, with its undo journal. Every
// transition of a lock word is here or in core.hpp's inline try_lock/unlock.
//
// A lock word is 0 when free, else (owner process slot + 1) | kLockWaiters.
// It guards a few dozen instructions, so contenders spin briefly, then sleep
// on the word and on the owner's death word (watch.cpp): the kernel wakes
// them if the owner dies, and they test whether it is alive (an owner that
// gives no notice is polled every kWatchNs). A wait ends at the caller's
// deadline, and a word that names one live owner (or ourselves) through
// kLockDamageNs of timed-out sleeps is damage: RQ_ECORRUPT. A dead owner's
// lock is broken by one CAS (only one breaker wins), and the breaker undoes
// the owner's half-done operation from the journal before doing anything
// else.
//
// Memory orders: taking the lock is an acquire CAS, giving it back a release
// exchange; they pair with each other. Inside the lock, fields are relaxed.
// A breaker acts only after the owner's death was observed through the
// kernel (F_OFD_GETLK), so every store the owner made is visible to it.
#include "clock.hpp"
#include "core.hpp"
#include "futex.hpp"

#include <algorithm>

namespace rq::detail {

void Engine::wake_lock_waiter(Shared<uint32_t> &word) { futex_wake(&word, 1); }

int Engine::lock_slow(Shared<uint32_t> &word, bool define_lock, uint32_t r, int64_t deadline) {
    const uint32_t mine = me_ + 1;
    for (int i = 0; i < kLockSpins; ++i) {
        uint32_t expected = 0;
        // acquire: pairs with unlock()'s release exchange.
        if (word.compare_exchange_weak(expected, mine, boost::memory_order_acquire,
                                       boost::memory_order_relaxed)) {
            return RQ_OK;
        }
        cpu_relax();
    }
    int64_t checked_at = now_ns();  // when we last looked at the owner ourselves
    int64_t dying = kDyingNs;       // after a notice: the interval at which we look again
    uint32_t held = 0;              // the owner part of the word, and since when it held it
    int64_t held_since = checked_at;
    for (;;) {
        // relaxed: only a value to CAS from; the CAS that takes the lock acquires.
        uint32_t v = word.load(boost::memory_order_relaxed);
        if (v == 0) {
            held = 0;
            // Others may sleep on the word: keep the waiters bit so our unlock wakes one.
            // acquire: pairs with unlock()'s release exchange.
            if (word.compare_exchange_weak(v, mine | kLockWaiters, boost::memory_order_acquire,
                                           boost::memory_order_relaxed)) {
                return RQ_OK;
            }
            continue;
        }
        if ((v & kLockWaiters) == 0) {
            // relaxed: the waiters bit publishes nothing; unlock's exchange
            // reads it back, and futex_wait re-checks the word in the kernel.
            if (!word.compare_exchange_weak(v, v | kLockWaiters, boost::memory_order_relaxed)) continue;
            v |= kLockWaiters;
        }
        const uint32_t owner = (v & kLockOwnerMask) - 1;
        // The call's deadline, and the bound on one owner holding it.
        const int64_t now = now_ns();
        if ((v & kLockOwnerMask) != held) {
            held = v & kLockOwnerMask;
            held_since = now;
        }
        if (now >= deadline) return RQ_ETIMEDOUT;
        if (now - held_since >= kLockDamageNs) return RQ_ECORRUPT;
        const int64_t bound = std::min(deadline, held_since + kLockDamageNs);
        // Whose death we must hear of: the owner's (watch.cpp). With notice
        // the wait is bounded only by the backstop; without, we poll.
        DeathWatch w;
        if (owner != me_) watch_death(owner, w);
        if (!w.died) {
            dying = kDyingNs;
            FutexResult res;
            if (w.n == 1) {
                const FutexWord words[2] = {{&word, v}, w.word[0]};
                res = futex_wait_any(words, 2, std::min(bound, checked_at + kBackstopNs));
                relay_deaths(w);
            } else {
                res = futex_wait(&word, v, std::min(bound, checked_at + kWatchNs));
            }
            // Woken, the word changed, or the owner's death word did: look
            // again (an unlock wakes us: a new hold starts a new clock).
            if (res != FutexResult::kTimedOut) {
                held = 0;
                continue;
            }
        }
        // The owner died (notice), or it is time to look: check it.
        checked_at = now_ns();
        if (owner == me_) {
            // Our own slot: another thread of this process holds it. Except
            // while we register into the slot (no thread of ours holds a lock
            // then): the word is the dead former owner's.
            if (!registering_.load(std::memory_order_relaxed)) continue;
            return take_over_lock(word, owner, define_lock, r);
        }
        if (owner >= view_.geo.max_processes || !alive(owner)) {
            const Result<LockBreak> b = break_dead_lock(word, owner, define_lock, r);
            if (b.kind == LockBreak::kOurs) return RQ_OK;
            if (b.kind == LockBreak::kFailed) return b.rc;
            // kWaitAgain: a live reclaimer is on it.
        }
        // After a notice, the dead one's liveness lock can outlive it a
        // moment, or a reclaimer is on it: look again at growing intervals.
        if (w.died) {
            futex_wait(&word, v, std::min(bound, checked_at + dying));
            dying = std::min(dying * 2, kWatchNs);
        }
    }
}

// The owner of `word` is dead. A lock word names only a slot, and a new
// process may take that slot over and write the same value into the word, so
// a lock is broken only under the reclaim claim on the dead owner's slot,
// which keeps the slot from being reused meanwhile. kOurs: the lock is ours
// now; kWaitAgain: it was (or will be) broken by a reclaim, wait on the word
// again.
Result<LockBreak> Engine::break_dead_lock(Shared<uint32_t> &word, uint32_t owner, bool define_lock,
                                                      uint32_t r) {
    auto take = [&]() -> Result<LockBreak> {
        const int rc = take_over_lock(word, owner, define_lock, r);
        if (rc != RQ_OK) return {LockBreak::kFailed, rc};
        return {LockBreak::kOurs};
    };
    // A value no process can have written: no reuse to fear.
    if (owner >= view_.geo.max_processes) return take();
    Process &proc = view_.process(owner);
    // acquire: pairs with the acq_rel CASes on the process word (process_table.cpp).
    uint64_t raw = proc.word.load(boost::memory_order_acquire);
    ProcWord w = ProcWord::unpack(raw);
    if (w.state == ProcState::kReclaiming && w.by == me_) return take();
    if (w.state != ProcState::kFree) {
        const Result<Reclaim> rec = reclaim_if_dead(owner);  // its reclaim steps break the lock
        if (rec.kind == Reclaim::kFailed) return {LockBreak::kFailed, rec.rc};
        return {LockBreak::kWaitAgain};
    }
    // A free slot that still holds a lock: only damage leaves that behind.
    // Claim the slot so it cannot be registered while we break the lock.
    const uint64_t claim = ProcWord{w.gen, ProcState::kReclaiming, me_}.pack();
    // acq_rel: pairs with the registrant's CAS to kLive and with other
    // claimers, as in reclaim_slot().
    if (!proc.word.compare_exchange_strong(raw, claim, boost::memory_order_acq_rel)) return {LockBreak::kWaitAgain};
    const Result<LockBreak> b = take();
    uint64_t expected = claim;
    // acq_rel: as the claim above.
    proc.word.compare_exchange_strong(expected, raw, boost::memory_order_acq_rel);
    return b;
}

// Takes the lock from the dead owner `dead` (or, if it changed hands, waits
// for it as lock() does). Either way the caller then holds it.
int Engine::take_over_lock(Shared<uint32_t> &word, uint32_t dead, bool define_lock, uint32_t r) {
    for (;;) {
        // acquire: pairs with unlock()'s release exchange (when it changed hands).
        uint32_t v = word.load(boost::memory_order_acquire);
        if ((v & kLockOwnerMask) != dead + 1) return lock(word, define_lock, r);
        // acquire: like lock(); the dead owner's stores were published by its
        // death, which we observed through the kernel before breaking.
        if (word.compare_exchange_strong(v, (me_ + 1) | (v & kLockWaiters), boost::memory_order_acquire,
                                         boost::memory_order_relaxed)) {
            if (define_lock) {
                undo_define();
            } else {
                undo_resource(r);
            }
            return RQ_OK;
        }
    }
}

void Engine::undo_resource(uint32_t r) {
    Resource &res = view_.resource(r);
    ConcJournal &j = res.journal;
    // acquire: pairs with conc_update's release store of valid = 1.
    if (j.valid.load(boost::memory_order_acquire) != 1) return;
    uint32_t p = j.proc.load(boost::memory_order_relaxed);
    if (p < view_.geo.max_processes) {
        Holding &h = view_.holding(p, r);
        h.req.store(j.held_req_before.load(boost::memory_order_relaxed), boost::memory_order_relaxed);
        h.load.store(j.held_load_before.load(boost::memory_order_relaxed), boost::memory_order_relaxed);
    }
    res.in_use_req.store(j.in_use_req_before.load(boost::memory_order_relaxed), boost::memory_order_relaxed);
    res.in_use_load.store(j.in_use_load_before.load(boost::memory_order_relaxed), boost::memory_order_relaxed);
    // release: the restored values before the journal reads closed (to the
    // next lock taker, who also gets them through the lock).
    j.valid.store(0, boost::memory_order_release);
}

void Engine::undo_define() {
    Header &h = view_.header();
    // acquire: pairs with define()'s release store of valid = 1 (resource.cpp).
    if (h.define_journal_valid.load(boost::memory_order_acquire) != 1) return;
    uint32_t r = h.define_journal_resource.load(boost::memory_order_relaxed);
    if (r < view_.geo.max_resources) {
        Resource &res = view_.resource(r);
        // acquire: pairs with define()'s release store of kReady.
        if (res.state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) {
            // Half built: no one else saw it (lookups skip kDefining); free it
            // again. release: pairs with lookups' acquire loads of the state.
            res.state.store(static_cast<uint32_t>(ResourceState::kFree), boost::memory_order_release);
        }
    }
    // release: the journal closes after the repair (to the next lock taker).
    h.define_journal_valid.store(0, boost::memory_order_release);
}

// Under the resource lock: adds d_req/d_load (negative to give back) to the
// in-use counters and to holding row p, through the undo journal.
// RQ_EINVAL when row p holds less than it gives back.
int Engine::conc_update(uint32_t r, uint32_t p, int64_t d_req, int64_t d_load, CrashPoint cp, int64_t now) {
    Resource &res = view_.resource(r);
    Holding &h = view_.holding(p, r);
    uint64_t in_req = res.in_use_req.load(boost::memory_order_relaxed);
    uint64_t in_load = res.in_use_load.load(boost::memory_order_relaxed);
    uint64_t held_req = h.req.load(boost::memory_order_relaxed);
    uint64_t held_load = h.load.load(boost::memory_order_relaxed);
    if ((d_req < 0 && held_req < static_cast<uint64_t>(-d_req)) ||
        (d_load < 0 && held_load < static_cast<uint64_t>(-d_load))) {
        return RQ_EINVAL;
    }
    // The in-use sums are at least each row; if shared memory says otherwise
    // it was damaged, and saturating at 0 is the only safe repair.
    auto add = [](uint64_t v, int64_t d) {
        if (d >= 0) return v + static_cast<uint64_t>(d);
        return v < static_cast<uint64_t>(-d) ? 0 : v - static_cast<uint64_t>(-d);
    };
    ConcJournal &j = res.journal;
    j.proc.store(p, boost::memory_order_relaxed);
    j.in_use_req_before.store(in_req, boost::memory_order_relaxed);
    j.in_use_load_before.store(in_load, boost::memory_order_relaxed);
    j.held_req_before.store(held_req, boost::memory_order_relaxed);
    j.held_load_before.store(held_load, boost::memory_order_relaxed);
    // release: the before-values are visible to whoever sees valid == 1.
    j.valid.store(1, boost::memory_order_release);
    res.in_use_req.store(add(in_req, d_req), boost::memory_order_relaxed);
    res.in_use_load.store(add(in_load, d_load), boost::memory_order_relaxed);
    crash_point(cp);
    h.req.store(add(held_req, d_req), boost::memory_order_relaxed);
    h.load.store(add(held_load, d_load), boost::memory_order_relaxed);
    if (held_req == 0 && d_req > 0) h.since_ns.store(now, boost::memory_order_relaxed);  // display only
    // release: the update is complete before the journal reads closed.
    j.valid.store(0, boost::memory_order_release);
    return RQ_OK;
}

void Engine::return_holdings(uint32_t r, uint32_t p) {
    Holding &h = view_.holding(p, r);
    uint64_t req = h.req.load(boost::memory_order_relaxed);
    uint64_t load = h.load.load(boost::memory_order_relaxed);
    if (req == 0 && load == 0) return;
    // Clamp absurd values so the negation below cannot overflow.
    req = std::min<uint64_t>(req, INT64_MAX);
    load = std::min<uint64_t>(load, INT64_MAX);
    conc_update(r, p, -static_cast<int64_t>(req), -static_cast<int64_t>(load), CrashPoint::kNone);
    Counters &c = view_.resource(r).counters;
    c.reclaims.store(c.reclaims.load(boost::memory_order_relaxed) + 1, boost::memory_order_relaxed);
}

}  // namespace rq::detail
