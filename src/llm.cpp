// LLM quota semantics: settle actual usage, share a provider's back-off,
// follow the provider's rate-limit headers, and predict waits so that
// acquires can fail fast (rq_settle, rq_penalize, rq_observe,
// rq_predict_wait; the fail-fast itself is in acquire.cpp, the prediction
// in charge.cpp).
//
// Every change to a TAT here is one CAS on that word, in the same exact
// integer nanoseconds as the acquire path (gcra.hpp), so it composes with
// concurrent acquires: a head that read the old TAT fails its CAS and
// recomputes.
#include "charge.hpp"
#include "clock.hpp"
#include "core.hpp"
#include "gcra.hpp"
#include "lease.hpp"

#include <algorithm>
#include <cstring>

namespace rq::detail {
namespace {

int64_t saturating_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

}  // namespace

int Engine::predict_wait(const char *name, uint64_t load, int64_t *wait_ns) {
    if (wait_ns == nullptr) return RQ_EINVAL;
    *wait_ns = 0;
    uint32_t r;
    int rc = resource_of(name, r);
    if (rc != RQ_OK) return rc;
    if (load == 0 || load > RQ_MAX_AMOUNT) return RQ_EINVAL;
    Limits scratch;
    const Limits *lim;
    rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    if (load > lim->max_load) return RQ_E2BIG;
    const int64_t now = now_ns();
    *wait_ns = predict_start(view_.resource(r), *lim, load, now) - now;
    return RQ_OK;
}

int Engine::penalize(const char *name, int64_t pause_ns) {
    if (pause_ns < 0 || static_cast<uint64_t>(pause_ns) > RQ_MAX_PERIOD_NS) return RQ_EINVAL;
    uint32_t r;
    int rc = resource_of(name, r);
    if (rc != RQ_OK) return rc;
    Resource &res = view_.resource(r);
    const int64_t until = now_ns() + pause_ns;
    // seq_cst: the value to raise from; the CAS below is what pairs.
    int64_t cur = res.paused_until.load(boost::memory_order_seq_cst);
    // Only ever raised. seq_cst: pairs with the seq_cst loads of every
    // admitting path (serve, serve_behind, the line-free path): one that
    // starts after this returns reads it.
    while (cur < until && !res.paused_until.compare_exchange_weak(cur, until, boost::memory_order_seq_cst)) {
    }
    res.counters.penalties.fetch_add(1, boost::memory_order_relaxed);
    return RQ_OK;
}

int Engine::observe(const char *name, uint32_t index, uint64_t remaining, int64_t reset_ns) {
    if (reset_ns < 0 || static_cast<uint64_t>(reset_ns) > RQ_MAX_PERIOD_NS || remaining > RQ_MAX_AMOUNT) {
        return RQ_EINVAL;
    }
    uint32_t r;
    int rc = resource_of(name, r);
    if (rc != RQ_OK) return rc;
    Limits scratch;
    const Limits *lim;
    rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    if (index >= lim->count || lim->limit[index].kind != RQ_LIMIT_RATE) return RQ_EINVAL;
    // A global resource's headers describe the quota every host shares,
    // which the lease already bounds: nothing to lower here.
    if (lim->global) return RQ_OK;
    const Limit &l = lim->limit[index];
    Resource &res = view_.resource(r);
    const int64_t now = now_ns();
    // Hold at most `remaining` now (bucket lag >= burst_ns - floor(remaining
    // * period / amount)), and do not be full again before the provider's
    // reset (lag >= reset_ns): with both refilling steadily, the local bucket
    // then never holds more than the provider's.
    const u128 rem_ns = static_cast<u128>(remaining) * l.period_ns / l.amount;
    const int64_t lag_for_remaining =
        rem_ns >= l.burst_ns ? 0 : static_cast<int64_t>(l.burst_ns - static_cast<uint64_t>(rem_ns));
    const int64_t target = now + std::max(lag_for_remaining, reset_ns);
    bool lowered = false;
    // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
    int64_t tat = res.tat[index].load(boost::memory_order_acquire);
    // Never lowers the TAT: capacity never goes up. acq_rel: pairs with the
    // head's CAS, which then recomputes.
    while (tat < target) {
        if (res.tat[index].compare_exchange_weak(tat, target, boost::memory_order_acq_rel)) {
            lowered = true;
            break;
        }
    }
    if (lowered) res.usage.observes.fetch_add(1, boost::memory_order_relaxed);
    return RQ_OK;
}

int Engine::settle(rq_permit *p, uint64_t actual) {
    if (p == nullptr || actual > RQ_MAX_AMOUNT) return RQ_EINVAL;
    const uint64_t w0 = p->opaque[0];
    PermitCode pv;
    int rc = check_permit(p, pv);
    if (rc != RQ_OK) return rc;
    if ((w0 & (kPermitReleased | kPermitSettled)) != 0) return RQ_EINVAL;
    const uint32_t r = pv.resource;
    const uint64_t est = pv.load;
    Limits scratch;
    const Limits *lim;
    rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    Resource &res = view_.resource(r);
    bool refunded = false;
    for (uint32_t i = 0; i < lim->count; ++i) {
        const Limit &l = lim->limit[i];
        if (l.kind != RQ_LIMIT_RATE || l.cost != RQ_COST_LOAD || actual == est) continue;
        // The permit carries the TAT its grant wrote on the first load-cost rate limit only.
        const bool has_grant_tat = static_cast<int32_t>(i) == lim->first_load_rate && (pv.flags & kPermitHasTat) != 0;
        // What the acquire charged was inc(est); make it inc(actual).
        const int64_t d = increment_any_ns(l.amount, l.period_ns, actual) - increment_any_ns(l.amount, l.period_ns, est);
        // A refund gives back only what of the grant's charge is still ahead
        // of the clock: once the bucket has drained past it (and maybe filled
        // and been charged again), giving it back would be capacity the rate
        // never allowed. With G the TAT the grant wrote, the charges on top of
        // it are at most tat - G, so the bucket may hold no more than it does
        // with those alone from now: tat' >= now + (tat - G). Exact when
        // nothing drained; nothing at all without G (a second load-cost rate
        // limit: the permit carries G for the first only).
        if (d < 0 && !has_grant_tat) continue;
        // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
        int64_t tat = res.tat[i].load(boost::memory_order_acquire);
        if (lim->global) {
            // The lease's TAT counts whole units (lease.hpp), and no clock
            // drains it: a refund goes back to the lease, down to where the
            // grant started at most; a charge on top is owed to the next refill.
            // (Wide, then clamped: actual, est and the grant TAT are any values
            // within their checks, and a redefine may have changed the unit.)
            const i128 unit = l.request_ns;
            const int64_t dg = clamp_lease((static_cast<i128>(actual) - static_cast<i128>(est)) * unit);
            const int64_t lowest = clamp_lease(pv.grant_tat - static_cast<i128>(est) * unit);
            for (;;) {
                const int64_t moved = dg < 0 ? std::max(saturating_add(tat, dg), std::min(tat, lowest)) : saturating_add(tat, dg);
                if (moved == tat) break;
                // acq_rel: pairs with every other CAS on this TAT (charge.hpp).
                if (res.tat[i].compare_exchange_weak(tat, moved, boost::memory_order_acq_rel)) {
                    refunded |= dg < 0;
                    break;
                }
            }
            continue;
        }
        for (;;) {
            const int64_t now = now_ns();
            int64_t moved;
            if (d < 0) {
                const int64_t floor_after = saturating_add(now, tat - pv.grant_tat);
                moved = std::min(tat, std::max(saturating_add(tat, d), floor_after));
                if (moved == tat) break;  // nothing left to give back
            } else {
                // Charged now: from the clock when the bucket is full.
                moved = std::min(saturating_add(tat > now ? tat : now, d), saturating_add(now, kMaxBurstNs));
            }
            // acq_rel: pairs with every other CAS on this TAT (charge.hpp).
            if (res.tat[i].compare_exchange_weak(tat, moved, boost::memory_order_acq_rel)) {
                refunded |= d < 0;
                break;
            }
        }
    }
    if ((w0 & kPermitConc) != 0 && actual != est) {
        rc = lock(res.lock, false, r);
        if (rc != RQ_OK) return rc;
        // A hard reset since the grant forgot the permit: nothing is held.
        // (relaxed: under the lock.)
        if (pv.epoch == res.hard_epoch.load(boost::memory_order_relaxed)) {
            rc = conc_update(r, me_, 0, static_cast<int64_t>(actual) - static_cast<int64_t>(est), CrashPoint::kNone);
        }
        unlock(res.lock);
        if (rc != RQ_OK) return rc;
        refunded |= actual < est;
    }
    p->opaque[2] = actual;
    p->opaque[0] = w0 | kPermitSettled;
    res.usage.settles.fetch_add(1, boost::memory_order_relaxed);
    if (actual < est) res.usage.settle_refunded.fetch_add(est - actual, boost::memory_order_relaxed);
    if (actual > est) res.usage.settle_charged.fetch_add(actual - est, boost::memory_order_relaxed);
    // Capacity came back: a head asleep for it recomputes now.
    if (refunded) wake_head(r, false);
    return RQ_OK;
}

}  // namespace rq::detail
