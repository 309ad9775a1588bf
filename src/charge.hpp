// Taking a load from a resource's limits: what each limit charges, the plan
// of the TAT moves, and the one all-or-nothing charge that every path takes
// them with (the head in head.cpp, the line-free path in line_free.cpp);
// the concurrency check, the admission counters, and when a load could
// start at the earliest (the fail-fast prediction). Free functions over a
// Resource: no Engine state.
//
// A TAT word (layout.hpp, Resource::tat) changes only by CAS, acq_rel: each
// pairs with every other CAS on the same word (the head, the line-free path,
// settle and observe in llm.cpp, a redefine's carry_rate_debt) and with
// reset's seq_cst store. A lost CAS means someone else charged or refilled
// first: the loser recomputes or gives back, never overwrites.
#pragma once

#include "core.hpp"
#include "gcra.hpp"
#include "lease.hpp"

namespace rq::detail {

inline uint64_t cost_of(const Limit &l, uint64_t load) { return l.cost == RQ_COST_LOAD ? load : 1; }

inline RateParams params(const Limit &l) {
    return RateParams{l.amount, l.period_ns, l.burst, l.burst_ns, l.request_ns, l.unit_ns};
}

// What admitting `load` moves rate limit l's TAT by.
inline uint64_t increment_of(const Limit &l, uint64_t load) {
    return l.cost == RQ_COST_LOAD ? increment_ns(params(l), load) : l.request_ns;
}

// Per rate limit i: the TAT read, and the TAT the charge moves it to
// (entries of concurrency limits are left alone).
struct RatePlan {
    int64_t tat[kMaxLimits];
    int64_t new_tat[kMaxLimits];
};

// plan_rates for a global resource: against each limit's lease clock
// (lease.hpp); kAwaitLease when the lease is short or expired.
int64_t plan_lease(Resource &res, const Limits &lim, uint64_t load, int64_t now, RatePlan &plan);

// One look at every rate limit of lim for `load` at `now`, into plan.
// Returns 0 when every rate limit admits it now, else the earliest instant
// the refusing ones would (never 0: a refusal's instant lies after now), or
// kAwaitLease (a global resource short of lease).
[[gnu::always_inline]] inline int64_t plan_rates(Resource &res, const Limits &lim, uint64_t load, int64_t now,
                                                  RatePlan &plan) {
    if (lim.global) [[unlikely]] return plan_lease(res, lim, load, now, plan);
    int64_t ready_at = 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // acquire: pairs with the acq_rel CASes on the TAT and with reset's store.
        plan.tat[i] = res.tat[i].load(boost::memory_order_acquire);
        const GcraStep st = gcra_step(plan.tat[i], now, increment_of(l, load), params(l));
        if (st.admit) {
            plan.new_tat[i] = st.new_tat;
        } else if (st.ready_at > ready_at) {
            ready_at = st.ready_at;
        }
    }
    return ready_at;
}

// Undoes the charges of the rate limits before index `taken`: each TAT goes
// back from the value we wrote to the value we read, by one CAS. If anyone
// has charged (or moved) it since, our charge stays: those tokens are lost,
// which is the safe side; subtracting our increment from a TAT another
// charge started from the clock would credit tokens that were never there.
// Returns whether any came back (a head asleep for tokens should then look
// again: the caller wakes it).
bool give_back_rate(Resource &res, const Limits &lim, uint32_t taken, const RatePlan &plan);

struct Charge {
    bool taken;      // every rate limit moved
    bool gave_back;  // not taken, and tokens came back (wake a sleeping head)
};

// charge_all_or_nothing after a lost CAS on limit i (plan.tat[i] holds what
// that CAS found): with retries, recompute it at the same instant from the
// TAT found while the bucket still admits the load, up to `retries` times,
// then go on with the limits after it; otherwise, or when refused, give back.
[[gnu::noinline, gnu::cold]] Charge charge_contended(Resource &res, const Limits &lim, uint64_t load, int64_t now,
                                                     RatePlan &plan, uint32_t i, int retries);

// THE charge: moves every rate limit's TAT from plan.tat[i] to
// plan.new_tat[i], in limit order, one CAS each, all or nothing. A lost CAS
// goes to charge_contended (out of line). kRateOnly: every limit is a rate
// limit (the line-free path without concurrency), so the kind is not tested.
template <bool kRateOnly = false>
[[gnu::always_inline]] inline Charge charge_all_or_nothing(Resource &res, const Limits &lim, uint64_t load,
                                                            int64_t now, RatePlan &plan, int retries) {
    for (uint32_t i = 0; i < lim.count; ++i) {
        if (!kRateOnly && lim.limit[i].kind != RQ_LIMIT_RATE) continue;
        int64_t expected = plan.tat[i];
        // acq_rel: pairs with every other CAS on this TAT (see the top).
        if (!res.tat[i].compare_exchange_strong(expected, plan.new_tat[i], boost::memory_order_acq_rel))
            [[unlikely]] {
            plan.tat[i] = expected;
            return charge_contended(res, lim, load, now, plan, i, retries);
        }
    }
    return {true, false};
}

// The TAT a grant wrote on the resource's first load-cost rate limit (a
// permit carries it for rq_settle), or 0 when there is none.
inline int64_t grant_tat_of(const Limits &lim, const RatePlan &plan) {
    return lim.first_load_rate >= 0 ? plan.new_tat[lim.first_load_rate] : 0;  // < count (finish_limits)
}

// Whether every concurrency limit has room for `load`. Under the resource
// lock, or in a head's sleep check: seq_cst loads, the Dekker partner of the
// releaser's unlock exchange and wake_head (acquire.cpp, release_slow).
// A global resource admits only within its leased slots (lease.cpp).
bool conc_fits_lease(const Resource &res, const Limits &lim, uint64_t load);
inline bool conc_fits(const Resource &res, const Limits &lim, uint64_t load) {
    if (lim.global) [[unlikely]] return conc_fits_lease(res, lim, load);
    const uint64_t in_req = res.in_use_req.load(boost::memory_order_seq_cst);
    const uint64_t in_load = res.in_use_load.load(boost::memory_order_seq_cst);
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_CONCURRENCY) continue;
        const uint64_t used = l.cost == RQ_COST_LOAD ? in_load : in_req;
        if (used > l.amount || cost_of(l, load) > l.amount - used) return false;
    }
    return true;
}

// admitted and admitted_load: the head and the line-free path both write
// them, so these take a relaxed fetch_add (display counters).
inline void count_admission(Counters &c, uint64_t load) {
    c.admitted.fetch_add(1, boost::memory_order_relaxed);
    c.admitted_load.fetch_add(load, boost::memory_order_relaxed);
}

// The wait of an admission that waited (since > 0), into wait_ns_total and
// the histogram. Only the head writes these (serve, serve_behind), one at a
// time, so a plain relaxed read-add-store suffices.
void count_wait(Resource &res, int64_t since, int64_t now);

// The earliest instant an acquire of `load` joining the line now could
// start, as far as the rate limits and a pause tell: a strict lower bound
// (the fail-fast prediction). Only our own load counts: anyone queued ahead
// may still leave (time out, fail fast, cancel), and the head may already be
// charged; the concurrency limits and the queue can only make the real wait
// longer.
int64_t predict_start(Resource &res, const Limits &lim, uint64_t load, int64_t now);

}  // namespace rq::detail
