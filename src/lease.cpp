// Many hosts, the host's side of a lease (lease.hpp): admitting from it
// (plan_lease), asking for more (need_refill), the error at a deadline, and
// the refiller's moves on it: credit in and out, slots up and down, expiry.
#include "lease.hpp"

#include "charge.hpp"
#include "clock.hpp"
#include "futex.hpp"

namespace rq::detail {

int64_t plan_lease(Resource &res, const Limits &lim, uint64_t load, int64_t now, RatePlan &plan) {
    const bool live = lease_live(res, now);
    int64_t ready_at = 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
        plan.tat[i] = res.tat[i].load(boost::memory_order_acquire);
        if (!lease_tat_sane(plan.tat[i])) {  // damage: nothing fits (lease.hpp)
            ready_at = kAwaitLease;
            continue;
        }
        const GcraStep st = gcra_step(plan.tat[i], lease_clock(res, l, i, now), increment_of(l, load), params(l));
        if (st.admit && live) {
            plan.new_tat[i] = st.new_tat;
        } else {
            ready_at = kAwaitLease;
        }
    }
    if (ready_at == 0 && !live) ready_at = kAwaitLease;  // (concurrency limits only)
    return ready_at;
}

bool conc_fits_lease(const Resource &res, const Limits &lim, uint64_t load) {
    // seq_cst: as conc_fits (charge.hpp).
    const uint64_t in_req = res.in_use_req.load(boost::memory_order_seq_cst);
    const uint64_t in_load = res.in_use_load.load(boost::memory_order_seq_cst);
    const bool live = lease_live(res, now_ns());
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_CONCURRENCY) continue;
        const uint64_t used = l.cost == RQ_COST_LOAD ? in_load : in_req;
        const uint64_t cap = lease_slots(res, l, i, live);
        if (used > cap || cost_of(l, load) > cap - used) return false;
    }
    return true;
}

void need_refill(Resource &res, Header &h, uint64_t load, int64_t now) {
    res.lease.want.store(load, boost::memory_order_relaxed);
    res.lease.active_ns.store(now, boost::memory_order_relaxed);
    // The refiller stores 1 before it sleeps on the word (acq_rel: pairs
    // with its store and its re-check; refiller.cpp, Refiller::rest).
    if (h.refill_wake.exchange(0, boost::memory_order_acq_rel) != 0) futex_wake(&h.refill_wake, 1);
}

int lease_timeout(const Resource &res) {
    // seq_cst: read after the wait ended, beside the refiller's stores.
    const auto link = static_cast<LinkState>(res.lease.link.load(boost::memory_order_seq_cst));
    return link == LinkState::kUp || link == LinkState::kLocalShare ? RQ_ETIMEDOUT : RQ_EUNAVAIL;
}

// ---- The refiller's moves (one refiller per host at a time) ---------------

int64_t lease_credit(const Resource &res, const Limit &l, uint32_t i) {
    // acquire (both): pair with the acq_rel RMWs on each word.
    const int64_t h = res.lease.horizon[i].load(boost::memory_order_acquire);
    const int64_t tat = res.tat[i].load(boost::memory_order_acquire);
    const i128 unit = l.request_ns;  // >= 1 (read_limits checked it)
    const i128 d = static_cast<i128>(h) - tat;  // (any values: shared memory)
    // Whole units (floor toward minus infinity: a debt of part of a unit is a unit owed).
    const i128 units = d >= 0 ? d / unit : -((-d + unit - 1) / unit);
    return units > INT64_MAX ? INT64_MAX : units < -INT64_MAX ? -INT64_MAX : static_cast<int64_t>(units);
}

void add_credit(Resource &res, const Limit &l, uint32_t i, uint64_t units) {
    if (units == 0) return;
    // acq_rel: pairs with the admitting paths' acquire loads of the horizon
    // (lease_clock) and the other refiller RMWs.
    res.lease.horizon[i].fetch_add(static_cast<int64_t>(units * l.request_ns), boost::memory_order_acq_rel);
}

uint64_t take_credit(Resource &res, const Limit &l, uint32_t i) {
    // acquire: pairs with add_credit's RMW.
    const int64_t h = res.lease.horizon[i].load(boost::memory_order_acquire);
    // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
    int64_t tat = res.tat[i].load(boost::memory_order_acquire);
    while (tat < h) {
        // acq_rel: one more CAS on the TAT, like a charge of everything left
        // (charge.hpp): an acquire racing with it loses and looks again.
        if (res.tat[i].compare_exchange_weak(tat, h, boost::memory_order_acq_rel)) {
            // (tat < h: the difference, taken unsigned, is exact whatever they hold)
            return (static_cast<uint64_t>(h) - static_cast<uint64_t>(tat)) / l.request_ns;
        }
    }
    return 0;
}

}  // namespace rq::detail
