// The out-of-line half of charge.hpp: giving a charge back, a contended
// charge, the wait counters and the fail-fast
// prediction.
#include "charge.hpp"

#include <algorithm>

namespace rq::detail {

bool give_back_rate(Resource &res, const Limits &lim, uint32_t taken, const RatePlan &plan) {
    bool any = false;
    for (uint32_t i = 0; i < taken; ++i) {
        if (lim.limit[i].kind != RQ_LIMIT_RATE) continue;
        int64_t expected = plan.new_tat[i];
        // acq_rel: pairs with every other CAS on this TAT (charge.hpp).
        any |= res.tat[i].compare_exchange_strong(expected, plan.tat[i], boost::memory_order_acq_rel);
    }
    return any;
}

Charge charge_contended(Resource &res, const Limits &lim, uint64_t load, int64_t now, RatePlan &plan, uint32_t i,
                        int retries) {
    for (; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // The first limit here lost its CAS (plan.tat[i] is what it found);
        // the ones after it have not been tried yet (recomputing them from
        // their planned TAT gives the planned charge).
        bool ok = false;
        const int64_t at = lim.global ? lease_clock(res, l, i, now) : now;  // (lease.hpp)
        if (lim.global && !lease_tat_sane(plan.tat[i])) return {false, give_back_rate(res, lim, i, plan)};
        for (int tries = 0; tries < retries && !ok; ++tries) {
            const GcraStep st = gcra_step(plan.tat[i], at, increment_of(l, load), params(l));
            if (!st.admit) break;
            plan.new_tat[i] = st.new_tat;
            int64_t expected = plan.tat[i];
            // acq_rel: pairs with every other CAS on this TAT (charge.hpp).
            ok = res.tat[i].compare_exchange_strong(expected, plan.new_tat[i], boost::memory_order_acq_rel);
            plan.tat[i] = expected;
        }
        if (!ok) return {false, give_back_rate(res, lim, i, plan)};
    }
    return {true, false};
}

void count_wait(Resource &res, int64_t since, int64_t now) {
    if (since <= 0) return;
    const uint64_t waited = now > since ? static_cast<uint64_t>(now - since) : 0;
    auto bump = [](Shared<uint64_t> &c, uint64_t by) {
        c.store(c.load(boost::memory_order_relaxed) + by, boost::memory_order_relaxed);
    };
    bump(res.counters.wait_ns_total, waited);
    bump(res.waits.bucket[wait_bucket(waited)], 1);
}

int64_t predict_start(Resource &res, const Limits &lim, uint64_t load, int64_t now) {
    // seq_cst: pairs with penalize()'s CAS (llm.cpp).
    const int64_t paused = res.paused_until.load(boost::memory_order_seq_cst);
    int64_t start = std::max(now, paused);
    // A lease comes when the refiller gets it: nothing to predict.
    if (lim.global) return start;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
        const int64_t tat = res.tat[i].load(boost::memory_order_acquire);
        const int64_t inc = increment_any_ns(l.amount, l.period_ns, cost_of(l, load));
        start = std::max(start, gcra_ready_at(tat, now, static_cast<uint64_t>(inc), l.burst_ns));
    }
    return start;
}

}  // namespace rq::detail
