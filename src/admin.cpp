// Operator repairs (rq_reset, rq_reap; used by rqctl), and the reclaim of a
// resource's dead holders that reset and a waiting head share. Not on any
// hot path.
#include "clock.hpp"
#include "core.hpp"

#include <cstring>

namespace rq::detail {

int Engine::reset(const char *name, uint32_t flags) {
    if ((flags & ~uint32_t{RQ_RESET_HARD}) != 0) return RQ_EINVAL;
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    const bool hard = (flags & RQ_RESET_HARD) != 0;
    if (name != nullptr) {
        uint32_t r;
        rc = find_named(name, r);
        return rc != RQ_OK ? rc : reset_one(r, hard);
    }
    for (uint32_t r = 0; r < view_.geo.max_resources; ++r) {
        // acquire: pairs with the definer's release store of kReady.
        if (view_.resource(r).state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) {
            continue;
        }
        rc = reset_one(r, hard);
        if (rc != RQ_OK) return rc;
    }
    return RQ_OK;
}

// Refills every rate limit, returns dead holders' concurrency, with `hard`
// forgets live holders' too, and wakes the head.
int Engine::reset_one(uint32_t r, bool hard) {
    Resource &res = view_.resource(r);
    Limits scratch;
    const Limits *lim;
    int rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    for (uint32_t i = 0; i < lim->count; ++i) {
        // A TAT at or before now is a full bucket. seq_cst: a head that read
        // the old TAT fails its CAS and recomputes; a head asleep for tokens
        // re-checks the TATs after publishing its sleep state (wake_head).
        // A global resource's bucket is Redis's: a host refills nothing.
        if (lim->limit[i].kind == RQ_LIMIT_RATE && !lim->global) res.tat[i].store(0, boost::memory_order_seq_cst);
    }
    rc = reap_dead_holders(r);
    if (rc != RQ_OK) return rc;
    if (hard) {
        rc = lock(res.lock, false, r);
        if (rc != RQ_OK) return rc;
        // Permits granted before this bump release as no-ops (acquire.cpp,
        // release); then nothing is held. Killed half way, the counters stay
        // at least what live holders still hold (a capacity loss, never an
        // over-admission) until the reset is run again.
        res.hard_epoch.store(res.hard_epoch.load(boost::memory_order_relaxed) + 1, boost::memory_order_relaxed);
        for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
            Holding &h = view_.holding(p, r);
            h.req.store(0, boost::memory_order_relaxed);
            h.load.store(0, boost::memory_order_relaxed);
        }
        res.in_use_req.store(0, boost::memory_order_relaxed);
        res.in_use_load.store(0, boost::memory_order_relaxed);
        unlock(res.lock);  // release: orders the stores above before the next locker
    }
    res.counters.resets.fetch_add(1, boost::memory_order_relaxed);
    wake_head(r, false);
    return RQ_OK;
}

int Engine::reap(rq_reap_report *out) {
    if (out == nullptr || out->size < sizeof(rq_reap_report)) return RQ_EINVAL;
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    rq_reap_report rep{};
    rep.size = sizeof rep;
    for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
        if (p == me_) continue;
        // acquire: pairs with the acq_rel CASes on the process word (process_table.cpp).
        ProcWord w = ProcWord::unpack(view_.process(p).word.load(boost::memory_order_acquire));
        if (w.state == ProcState::kFree || (w.state == ProcState::kLive && alive(p))) continue;
        // What it holds now (a reclaimer that died half way may have
        // returned part of it already).
        uint64_t req = 0, load = 0;
        for (uint32_t r = 0; r < view_.geo.max_resources; ++r) {
            const Holding &h = view_.holding(p, r);
            req += h.req.load(boost::memory_order_relaxed);
            load += h.load.load(boost::memory_order_relaxed);
        }
        const Result<Reclaim> rec = reclaim_if_dead(p);
        if (rec.kind == Reclaim::kFailed) return rec.rc;
        if (rec.kind == Reclaim::kReclaimed) {
            ++rep.processes;
            rep.permits += req;
            rep.load += load;
        }
    }
    *out = rep;
    return RQ_OK;
}

// Reclaims every dead process that holds concurrency on resource r.
int Engine::reap_dead_holders(uint32_t r) {
    for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
        if (p == me_) continue;
        // The process table first (64 bytes a slot; a holding row is a page
        // apart from the next): a free slot has no owner to reclaim.
        // acquire: pairs with the acq_rel CASes on the process word (process_table.cpp).
        if (ProcWord::unpack(view_.process(p).word.load(boost::memory_order_acquire)).state == ProcState::kFree) continue;
        Holding &h = view_.holding(p, r);
        // relaxed: a hint of whom to check; the reclaim reads it again under the lock.
        if (h.req.load(boost::memory_order_relaxed) == 0 && h.load.load(boost::memory_order_relaxed) == 0) continue;
        const Result<Reclaim> rec = reclaim_if_dead(p);
        if (rec.kind == Reclaim::kFailed) return rec.rc;
    }
    return RQ_OK;
}

}  // namespace rq::detail
