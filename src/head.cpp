// The head's own work: only the head of a line takes from its limits, so a
// stacked acquire is taken at one instant (serve). Once served, the head
// also serves the tickets right behind it whose turn would come at once
// (serve_behind), then passes the head on (leave_head). The slot words it
// moves are queue.cpp's; the TATs it moves, charge.hpp's.
#include "charge.hpp"
#include "clock.hpp"
#include "core.hpp"
#include "lease.hpp"

#include <algorithm>

namespace rq::detail {

// As head: take from every limit at one instant, or wait until they allow it.
// since: when this acquire started waiting (0: it has not waited yet).
int Engine::serve(uint32_t r, uint32_t ticket, uint64_t load, int64_t deadline, bool is_try, const Limits *limp,
                  rq_permit *out, int64_t since, int64_t *predicted) {
    Resource &res = view_.resource(r);
    crash_point(CrashPoint::kHeadBeforeServe);
    Limits scratch;
    int64_t dying = kDyingNs / 2;  // after a holder's death notice: the interval at which we look again
    for (bool first = true;; first = false) {
        // acquire: pairs with write_limits()'s release store (resource.cpp).
        const uint64_t cfg_word = res.config_word.load(boost::memory_order_acquire);
        if (!first || cfg_word != limp->word) {
            int rc = limits_of(r, scratch, limp);
            if (rc != RQ_OK) return rc;
            if (load > limp->max_load) return RQ_E2BIG;
        }
        const Limits &lim = *limp;
        const int64_t now = now_ns();
        RatePlan plan{};  // (zeroed: GCC cannot tell that give_back_rate skips the concurrency entries)
        // A penalty pause blocks like a rate limit. seq_cst: pairs with
        // penalize()'s CAS (llm.cpp; same cache line as config_word: no extra miss).
        const int64_t paused = res.paused_until.load(boost::memory_order_seq_cst);
        // A global resource's lease, seen before the plan reads it: a
        // refill after this look makes the sleep check below fail.
        LeaseSeen seen;
        if (lim.global) seen = see_lease(res, lim);
        const int64_t ready_at = std::max(paused > now ? paused : 0, plan_rates(res, lim, load, now, plan));
        if (ready_at == kAwaitLease) {
            if (is_try) {
                need_refill(res, view_.header(), load, now);  // (see acquire_line)
                return RQ_EAGAIN;
            }
            if (now >= deadline) return RQ_ETIMEDOUT;
            if (cancel_requested()) return RQ_ECANCELED;
            if (since == 0) note_wait(r, ticket, load, since = now);
            need_refill(res, view_.header(), load, now);
            // seq_cst loads (see_lease): the Dekker partner of the
            // refiller's wake_head after it moved the lease.
            auto unchanged = [&] {
                return res.config_word.load(boost::memory_order_seq_cst) == cfg_word && seen == see_lease(res, lim);
            };
            const int rc = head_sleep(r, ticket, SlotState::kHeadRateSleep, std::min(deadline, now + kBackstopNs),
                                      unchanged);
            if (rc != RQ_OK) return rc;
            continue;
        }
        if (ready_at != 0) {
            if (is_try) return RQ_EAGAIN;
            if (ready_at > deadline) {
                // Fail fast: the buckets (or a pause) alone keep us past it.
                if (predicted != nullptr) *predicted = ready_at - now;
                return RQ_ETIMEDOUT;
            }
            if (cancel_requested()) return RQ_ECANCELED;
            crash_point(CrashPoint::kWhileHeadSleeping);
            if (since == 0) note_wait(r, ticket, load, since = now);
            // Re-checked after publishing the sleep state (seq_cst: the
            // Dekker partner of wake_head's callers): a redefine, reset,
            // settle or observe changes the config word or a TAT before it
            // wakes us.
            auto unchanged = [&] {
                if (res.config_word.load(boost::memory_order_seq_cst) != cfg_word) return false;
                if (res.paused_until.load(boost::memory_order_seq_cst) != paused) return false;
                for (uint32_t i = 0; i < lim.count; ++i) {
                    if (lim.limit[i].kind == RQ_LIMIT_RATE &&
                        res.tat[i].load(boost::memory_order_seq_cst) != plan.tat[i]) {
                        return false;
                    }
                }
                return true;
            };
            // Until the tokens are there: a head waiting for tokens watches
            // nobody (the one behind it watches it: watch.cpp).
            const int rc = head_sleep(r, ticket, SlotState::kHeadRateSleep, std::min(ready_at, deadline), unchanged);
            if (rc != RQ_OK) return rc;
            continue;
        }
        if (lim.has_conc) {
            // A try waits for the lock only as long as a holder needs it.
            int rc = lock(res.lock, false, r, is_try ? now + kLockTryNs : deadline);
            if (rc == RQ_ETIMEDOUT && is_try) return RQ_EAGAIN;
            if (rc != RQ_OK) return rc;
            // A penalty that came while we waited for the lock holds too.
            // seq_cst: pairs with penalize()'s CAS, as above.
            const int64_t pu = res.paused_until.load(boost::memory_order_seq_cst);
            if (pu != 0 && pu > now_ns()) {
                unlock(res.lock);
                continue;
            }
            if (!conc_fits(res, lim, load)) {
                unlock(res.lock);
                if (is_try) return RQ_EAGAIN;
                if (now >= deadline) return RQ_ETIMEDOUT;
                if (cancel_requested()) return RQ_ECANCELED;
                if (since == 0) note_wait(r, ticket, load, since = now);
                if (lim.global) need_refill(res, view_.header(), load, now);  // more slots, perhaps
                // Woken by a release, or by the kernel when a holder dies
                // (watch.cpp); a holder that gives no notice is polled.
                // After a notice the dead one's liveness lock may outlive it
                // a moment (look again at growing intervals from kDyingNs);
                // kBackstopNs is the safety bound.
                DeathWatch w;
                watch_holders(r, w);
                dying = w.died ? std::min(dying * 2, kWatchNs) : kDyingNs / 2;
                const int64_t bound = w.died ? dying : w.poll ? kWatchNs : kBackstopNs;
                if (w.died) {
                    rc = reap_dead_holders(r);
                    if (rc != RQ_OK) return rc;
                    if (conc_fits(res, lim, load)) continue;  // it gave its permits back
                }
                auto still_full = [&] { return !conc_fits(res, lim, load); };
                rc = head_sleep(r, ticket, SlotState::kHeadConcSleep, std::min(deadline, now + bound), still_full, &w);
                if (rc != RQ_OK) return rc;
                if (now_ns() >= now + bound) {
                    rc = reap_dead_holders(r);
                    if (rc != RQ_OK) return rc;
                }
                continue;
            }
        }
        const Charge c = charge_all_or_nothing(res, lim, load, now, plan, 0);
        crash_point(CrashPoint::kAfterRateTaken);
        if (!c.taken) {
            // Someone charged or refilled a TAT meanwhile (the line-free path
            // before it saw us, settle, observe, reset): start over.
            if (lim.has_conc) unlock(res.lock);
            continue;
        }
        uint64_t flags = lim.first_load_rate >= 0 ? kPermitHasTat : 0;
        uint32_t epoch = 0;
        if (lim.has_conc) {
            epoch = res.hard_epoch.load(boost::memory_order_relaxed);  // under the lock
            int rc = conc_update(r, me_, 1, static_cast<int64_t>(load), CrashPoint::kInConcJournal, now);
            unlock(res.lock);
            if (rc != RQ_OK) return rc;
            flags |= kPermitConc;
        }
        count_admission(res.counters, load);
        count_wait(res, since, now);
        PermitCode{flags, r, me_, load, me_gen_, epoch, grant_tat_of(lim, plan)}.pack(out);
        return RQ_OK;
    }
}

// The head, served, serves the tickets right behind it whose turn would come
// at once, in ticket order, taking from the limits for them as it did for
// itself; it stops at the first that cannot be admitted now (which then
// serves itself as head). Without this, under contention each acquire is a
// handoff to a sleeping process, one wake-up (tens of microseconds) at a
// time, and a line of processes crawls at the speed of the scheduler.
//
// Rate limits only: concurrency is held per process, so a waiter on a
// resource with a concurrency limit serves itself. A ticket is handed over
// (queue.cpp, hand_over) after its tokens are taken; a timeout or a
// reclaimer that gets there first wins and the tokens go back. Killed
// between the two, the head loses those tokens (the safe side) and the
// ticket serves itself later.
void Engine::serve_behind(uint32_t r, uint32_t head) {
    Resource &res = view_.resource(r);
    Limits scratch;
    const Limits *limp;
    if (limits_of(r, scratch, limp) != RQ_OK || limp->has_conc) return;
    const Limits &lim = *limp;
    uint32_t last_served = head;
    for (uint32_t k = 1; k <= kMaxServedBehind; ++k) {
        const uint32_t t = head + k;
        QueuedTicket qt;
        const Behind b = queued_ticket(r, head, t, qt);
        if (b == Behind::kSkip) continue;
        if (b == Behind::kStop || qt.load > lim.max_load) break;
        const int64_t now = now_ns();
        // seq_cst: pairs with penalize()'s CAS (llm.cpp), as in serve.
        if (res.paused_until.load(boost::memory_order_seq_cst) > now) break;
        RatePlan plan;
        if (plan_rates(res, lim, qt.load, now, plan) != 0) break;
        if (!charge_all_or_nothing<true>(res, lim, qt.load, now, plan, 0).taken) break;
        crash_point(CrashPoint::kInServeBehind);
        if (!hand_over(r, t, qt.word, grant_tat_of(lim, plan))) {
            give_back_rate(res, lim, lim.count, plan);
            break;
        }
        count_admission(res.counters, qt.load);
        count_wait(res, qt.since, now);
        last_served = t;
    }
    // Tickets served here leave the line: the first one behind them watched
    // the last of them (watch.cpp), and looks again at whom it watches.
    if (last_served != head) retarget_behind(r, last_served, kNoOwner);
}

// The permit of a ticket the head served (serve_behind): the tokens are
// taken; the grant TAT comes from the slot, if it still carries it.
void Engine::served_permit(uint32_t r, uint32_t ticket, uint64_t load, const Limits &lim, rq_permit *out) {
    const int64_t g = lim.first_load_rate >= 0 ? served_grant_tat(r, ticket) : 0;
    PermitCode{g > 0 ? kPermitHasTat : 0, r, me_, load, me_gen_, 0, g}.pack(out);
}

void Engine::leave_head(uint32_t r, uint32_t ticket) {
    // Anyone queued behind us: serve them now rather than hand the line to a
    // sleeper one wake-up at a time. seq_cst: the queue word, as every reader.
    if (QueueWord::unpack(view_.resource(r).queue.load(boost::memory_order_seq_cst)).tail - ticket > 1) {
        serve_behind(r, ticket);
    }
    pass_head(r, ticket);
}

}  // namespace rq::detail
