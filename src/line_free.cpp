// The line-free path, out-of-line half (line_free.hpp has the inline half
// and the argument why it keeps FIFO): other shapes of rate limits, a lost
// CAS, and resources with concurrency limits.
#include "line_free.hpp"

#include "clock.hpp"

namespace rq::detail {

// The last steps of try_fast_any and try_fast_lease, once every rate limit
// admits the load: the config word re-checked, the charge, the permit.
[[gnu::always_inline]] inline Fast Engine::charge_planned(Resource &res, uint32_t r, const Limits &lim, uint64_t load,
                                                          int64_t now, RatePlan &plan, rq_permit *out) {
    // acquire: pairs with write_limits()'s release store (see try_fast).
    if (res.config_word.load(boost::memory_order_acquire) != lim.word) return Fast::kMiss;
    const Charge c = charge_all_or_nothing<true>(res, lim, load, now, plan, kFastRetries);
    if (!c.taken) {
        if (c.gave_back) wake_head(r, false);
        return Fast::kMiss;
    }
    count_admission(res.counters, load);
    const int32_t f = lim.first_load_rate;
    PermitCode{f >= 0 ? kPermitHasTat : 0, r, me_, load, me_gen_, 0, grant_tat_of(lim, plan)}.pack(out);
    return Fast::kGranted;
}

// try_fast for any other shape of rate limits: the same steps, over each.
Fast Engine::try_fast_any(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out) {
    // (Its own loop, not plan_rates: every limit here is a rate limit, and a
    // refusal ends it; measured, plan_rates costs this path about 20 instructions.)
    RatePlan plan;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
        plan.tat[i] = res.tat[i].load(boost::memory_order_acquire);
        const GcraStep st = gcra_step(plan.tat[i], now, increment_of(l, load), params(l));
        if (!st.admit) return Fast::kNoCapacity;
        plan.new_tat[i] = st.new_tat;
    }
    return charge_planned(res, r, lim, load, now, plan, out);
}

// try_fast_any for a global resource: the same steps against each limit's
// lease clock, while the lease lives. Short of lease, the line path asks the
// refiller.
Fast Engine::try_fast_lease(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                            rq_permit *out) {
    if (!nobody_in_line(res, r)) return Fast::kMiss;
    // seq_cst: pairs with penalize()'s CAS (llm.cpp), as in serve.
    if (res.paused_until.load(boost::memory_order_seq_cst) > now) return Fast::kMiss;
    RatePlan plan;
    if (plan_lease(res, lim, load, now, plan) != 0) return Fast::kNoCapacity;
    return charge_planned(res, r, lim, load, now, plan, out);
}

// try_fast's single CAS lost (found_tat is what it found): the contended
// charge, retried at the same instant (charge.hpp).
Fast Engine::try_fast_contended(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                                int64_t found_tat, rq_permit *out) {
    RatePlan plan;
    plan.tat[0] = found_tat;
    const Charge c = charge_contended(res, lim, load, now, plan, 0, kFastRetries);
    if (!c.taken) {
        if (c.gave_back) wake_head(r, false);
        return Fast::kMiss;
    }
    count_admission(res.counters, load);
    PermitCode{0, r, me_, load, me_gen_, 0, 0}.pack(out);  // one request-cost limit: no TAT to carry
    return Fast::kGranted;
}

// The line-free path for a resource with concurrency limits: what the head
// does in serve(), without a ticket, when nobody is in line and everything
// fits now. Everything is decided under the resource lock, where the line is
// looked at again: a head that joined while we waited for the lock and found
// the concurrency full took nothing (no TAT moved), so only this second look
// keeps us from passing it. Then the pause, the concurrency check and the
// charge (a lost CAS gives back and takes a ticket), then the holding
// through the undo journal, as the head writes it. Killed anywhere, the
// lock's next taker undoes the journal and the TATs keep what they took (the
// safe side).
Fast Engine::try_fast_conc(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out,
                           int &rc) {
    if (!nobody_in_line(res, r)) return Fast::kMiss;  // (not worth the lock)
    crash_point(CrashPoint::kFastBeforeLock);
    if (!try_lock(res.lock)) {
        // Bounded: past it the line path waits, with the caller's deadline.
        rc = lock_slow(res.lock, false, r, now + kLockTryNs);
        if (rc == RQ_ETIMEDOUT) return Fast::kMiss;
        if (rc != RQ_OK) return Fast::kFailed;
        now = now_ns();  // we waited: the reading is stale
    }
    // seq_cst (both): the line as in nobody_in_line; the pause pairs with
    // penalize()'s CAS, as in serve. acquire: the config word pairs with
    // write_limits()'s release store (see try_fast).
    if (!nobody_in_line(res, r) || res.paused_until.load(boost::memory_order_seq_cst) > now ||
        res.config_word.load(boost::memory_order_acquire) != lim.word) {
        unlock(res.lock);
        return Fast::kMiss;
    }
    RatePlan plan{};  // (zeroed: GCC cannot tell that give_back_rate skips the concurrency entries)
    if (!conc_fits(res, lim, load) || plan_rates(res, lim, load, now, plan) != 0) {
        unlock(res.lock);
        return Fast::kNoCapacity;
    }
    const Charge c = charge_all_or_nothing(res, lim, load, now, plan, 0);
    if (!c.taken) {
        unlock(res.lock);
        if (c.gave_back) wake_head(r, false);
        return Fast::kMiss;
    }
    crash_point(CrashPoint::kFastAfterRateTaken);
    const uint32_t epoch = res.hard_epoch.load(boost::memory_order_relaxed);  // under the lock
    rc = conc_update(r, me_, 1, static_cast<int64_t>(load), CrashPoint::kFastInConcJournal, now);
    crash_point(CrashPoint::kFastBeforeUnlock);
    unlock(res.lock);
    if (rc != RQ_OK) return Fast::kFailed;
    count_admission(res.counters, load);
    const uint64_t flags = kPermitConc | (lim.first_load_rate >= 0 ? kPermitHasTat : 0);
    PermitCode{flags, r, me_, load, me_gen_, epoch, grant_tat_of(lim, plan)}.pack(out);
    return Fast::kGranted;
}

}  // namespace rq::detail
