// The acquire and release entry points, and the line orchestration: resolve
// the resource and its limits, try the line-free path, else take a ticket,
// wait for the head, serve, and pass the head on. Also the permits' checks.
// The steps themselves are other files' (src/README.md draws the path).
#include "charge.hpp"
#include "clock.hpp"
#include "core.hpp"
#include "lease.hpp"
#include "line_free.hpp"

#include <climits>
#include <cstring>

namespace rq::detail {

int Engine::resource_of(const char *name, uint32_t &r) {
    if (name == nullptr) return RQ_EINVAL;
    const int rc = ensure_registered();
    return rc != RQ_OK ? rc : find_named(name, r);
}

int Engine::resolve(const char *name, uint64_t load, uint32_t &r, Limits &scratch, const Limits *&lim) {
    if (name == nullptr) return RQ_EINVAL;
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    if (load == 0 || load > RQ_MAX_AMOUNT) return RQ_EINVAL;
    rc = find_named(name, r);
    if (rc != RQ_OK) return rc;
    rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    if (load > lim->max_load) {
        view_.resource(r).counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        return RQ_E2BIG;
    }
    return RQ_OK;
}

int Engine::resolve_handle(const char *name, rq_resource *out) {
    if (out == nullptr || name == nullptr) return RQ_EINVAL;
    std::memset(out, 0, sizeof *out);
    uint32_t r;
    const int rc = resource_of(name, r);
    if (rc != RQ_OK) return rc;
    HandleCode{r, handle_tag_, view_.resource(r).name_hash}.pack(out);
    return RQ_OK;
}

int Engine::acquire_r(const rq_resource *h, uint64_t load, int64_t timeout_ns, rq_permit *out) noexcept {
    if (out == nullptr) return RQ_EINVAL;
    // The clock first: only the arguments are live across the call, and the
    // rest of the uncontended path calls nothing (measured: 10 instructions
    // of register spills fewer).
    int64_t now = now_ns();
    // (out is written only by a grant, or zeroed by acquire_line or refuse:
    // no memset on the uncontended path. The load is checked by acquire_at.)
    if (h == nullptr) return refuse(out, RQ_EINVAL);
    int rc = ensure_registered(&now);
    if (rc != RQ_OK) return refuse(out, rc);
    const HandleCode hc = HandleCode::unpack(*h);
    if (hc.tag != handle_tag_ || hc.resource >= view_.geo.max_resources) return refuse(out, RQ_EINVAL);
    Resource &res = view_.resource(hc.resource);
    // The limits first: a resource this process has not seen defined is
    // refresh_limits' to check (RQ_ENOENT unless kReady, read with acquire);
    // they carry the resource's name hash, copied once it was published.
    Limits scratch;
    const Limits *lim;
    rc = limits_of(res, hc.resource, scratch, lim, &now);
    if (rc != RQ_OK) return refuse(out, rc == RQ_ENOENT ? RQ_EINVAL : rc);
    if (lim->name_hash != hc.name_hash) return refuse(out, RQ_EINVAL);
    return acquire_at(res, hc.resource, lim, load, timeout_ns, out, nullptr, now);
}

int Engine::acquire(const char *name, uint64_t load, int64_t timeout_ns, rq_permit *out, int64_t *predicted) {
    if (out == nullptr) return RQ_EINVAL;
    int64_t now = now_ns();  // (first, as in acquire_r)
    if (name == nullptr || load == 0 || load > RQ_MAX_AMOUNT) return refuse(out, RQ_EINVAL);
    int rc = ensure_registered(&now);
    if (rc != RQ_OK) return refuse(out, rc);
    uint32_t r;
    rc = find_named(name, r);
    if (rc != RQ_OK) return refuse(out, rc);
    Limits scratch;
    const Limits *lim;
    Resource &res = view_.resource(r);
    rc = limits_of(res, r, scratch, lim, &now);
    if (rc != RQ_OK) return refuse(out, rc);
    return acquire_at(res, r, lim, load, timeout_ns, out, predicted, now);
}

int Engine::refuse(rq_permit *out, int rc) {
    std::memset(out, 0, sizeof *out);
    return rc;
}

// The acquire once the resource and its limits are known. The uncontended
// case (nobody in line, every limit admits now) is the line-free path:
// try_fast, inline here, for rate limits only, try_fast_conc with
// concurrency limits; everything else is acquire_line, out of line.
[[gnu::always_inline]] inline int Engine::acquire_at(Resource &res, uint32_t r, const Limits *lim, uint64_t load,
                                                     int64_t timeout_ns, rq_permit *out, int64_t *predicted,
                                                     int64_t now) {
    Fast fast = Fast::kMiss;
    // load - 1 < fast_max_load: 1 <= load <= fast_max_load (<= RQ_MAX_AMOUNT),
    // one compare; a load 0 or too big is acquire_line's to refuse.
    if (load - 1 < lim->fast_max_load && line_free_allowed()) {
        fast = try_fast(res, r, *lim, load, now, out);
        if (fast == Fast::kGranted) [[likely]] return RQ_OK;
    } else if (lim->has_conc && load - 1 < lim->max_load && line_free_allowed()) {
        int rc = RQ_OK;
        fast = try_fast_conc(res, r, *lim, load, now, out, rc);
        if (fast == Fast::kGranted) return RQ_OK;
        if (fast == Fast::kFailed) return refuse(out, rc);
    } else if (lim->global && load - 1 < lim->max_load && line_free_allowed()) {
        fast = try_fast_lease(res, r, *lim, load, now, out);
        if (fast == Fast::kGranted) return RQ_OK;
    }
    return acquire_line(r, lim, load, timeout_ns, out, predicted, fast);
}

// fast: the line-free path's answer (kNoCapacity: the limits refused it with
// nobody in line, which answers a try), or kMiss when it did not apply.
int Engine::acquire_line(uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns, rq_permit *out,
                         int64_t *predicted, Fast fast) {
    std::memset(out, 0, sizeof *out);
    if (load == 0 || load > RQ_MAX_AMOUNT) return RQ_EINVAL;
    Resource &res = view_.resource(r);
    if (load > lim->max_load) {
        res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        return RQ_E2BIG;
    }
    const bool is_try = timeout_ns == 0;
    if (fast == Fast::kNoCapacity && is_try) {
        // A try short of lease still tells the refiller (a host that only
        // tries would otherwise never get its lease back after an idle spell).
        if (lim->global) need_refill(res, view_.header(), load, now_ns());
        return RQ_EAGAIN;
    }
    int rc;
    // Waiting forever needs no clock read here; serve() reads it once.
    const int64_t deadline = is_try ? 0 : timeout_ns < 0 ? INT64_MAX : deadline_after(now_ns(), timeout_ns);
    // seq_cst: the queue word, as every reader of the line (queue.cpp).
    QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
    if (is_try) {
        // Never barge: with anyone queued, a try fails without taking a ticket.
        if (q.head != q.tail) {
            // But a dead head would fail every try forever: check its owner
            // (one fcntl, only on this path).
            rc = reclaim_ticket_owner(r, q.head);
            if (rc != RQ_OK) return rc;
            // seq_cst: as above.
            q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
            if (q.head != q.tail) return RQ_EAGAIN;
        }
    } else if (deadline != INT64_MAX) {
        // Fail fast: if the buckets cannot hold us and everyone ahead before
        // the deadline, say so now instead of sleeping until it passes.
        // seq_cst: the pause pairs with penalize()'s CAS (llm.cpp).
        if (q.head != q.tail || res.paused_until.load(boost::memory_order_seq_cst) != 0) {
            const int64_t now = now_ns();
            const int64_t start = predict_start(res, *lim, load, now);
            if (start > deadline) {
                if (predicted != nullptr) *predicted = start - now;
                res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
                return RQ_ETIMEDOUT;
            }
        }
    }
    uint32_t ticket;
    bool at_head;
    rc = enqueue(r, ticket, at_head);
    if (rc != RQ_OK) return rc;
    crash_point(CrashPoint::kAfterEnqueue);
    // The uncontended path: the queue was empty, so we are head already.
    int64_t since = 0;  // when we started waiting; 0 while we have not
    Result<Turn> turn{Turn::kHead};
    if (!at_head) {
        since = now_ns();
        note_wait(r, ticket, load, since);
        turn = wait_turn(r, ticket, deadline);
    }
    if (turn.kind == Turn::kServed) {
        served_permit(r, ticket, load, *lim, out);
        return RQ_OK;
    }
    if (turn.kind == Turn::kFailed) {
        if (abandon(r, ticket)) {
            served_permit(r, ticket, load, *lim, out);
            return RQ_OK;
        }
        if (turn.rc == RQ_ETIMEDOUT) {
            if (is_try) return RQ_EAGAIN;
            res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
            if (lim->global) return lease_timeout(res);
        }
        return turn.rc;
    }
    rc = serve(r, ticket, load, deadline, is_try, lim, out, since, predicted);
    crash_point(CrashPoint::kBeforePass);
    if (rc == RQ_ETIMEDOUT) res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
    if (rc == RQ_E2BIG) res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
    // Once served, the permit stands: a damaged queue shows on the next call.
    leave_head(r, ticket);
    if (rc == RQ_ETIMEDOUT && lim->global) rc = lease_timeout(res);
    return rc;
}

int Engine::check_permit(const rq_permit *p, PermitCode &out) {
    if (!is_permit(p->opaque[0])) return RQ_EINVAL;
    const int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    out = PermitCode::unpack(*p);
    // A settled permit may hold load 0 (the request used nothing).
    const bool load_ok = (out.flags & kPermitSettled) != 0 ? out.load <= RQ_MAX_AMOUNT
                                                             : out.load >= 1 && out.load <= RQ_MAX_AMOUNT;
    if (out.resource >= view_.geo.max_resources || out.proc != me_ || out.proc_gen != me_gen_ || !load_ok) {
        return RQ_EINVAL;  // forged, or held by another client or process
    }
    return RQ_OK;
}

int Engine::release_slow(rq_permit *p) {
    if (p == nullptr) return RQ_EINVAL;
    const uint64_t w0 = p->opaque[0];
    if (w0 == 0 && p->opaque[1] == 0 && p->opaque[2] == 0 && p->opaque[3] == 0) return RQ_OK;
    if (!is_permit(w0)) return RQ_EINVAL;
    if ((w0 & kPermitReleased) != 0) return RQ_OK;
    if ((w0 & kPermitConc) == 0) {
        p->opaque[0] = w0 | kPermitReleased;
        return RQ_OK;
    }
    PermitCode pc;
    int rc = check_permit(p, pc);
    if (rc != RQ_OK) return rc;
    const uint32_t r = pc.resource;
    Resource &res = view_.resource(r);
    rc = lock(res.lock, false, r);
    if (rc != RQ_OK) return rc;
    // A hard reset since the grant forgot this permit: nothing to give back.
    // (relaxed: under the lock, which orders hard_epoch as it does the counters.)
    if (pc.epoch == res.hard_epoch.load(boost::memory_order_relaxed)) {
        rc = conc_update(r, me_, -1, -static_cast<int64_t>(pc.load), CrashPoint::kInReleaseJournal);
    }
    unlock(res.lock);
    if (rc != RQ_OK) return rc;
    p->opaque[0] = w0 | kPermitReleased;
    // Dekker with the head's kHeadConcSleep: unlock's exchange orders our
    // counter stores before wake_head's seq_cst loads (charge.hpp, conc_fits).
    wake_head(r, true);
    return RQ_OK;
}

}  // namespace rq::detail
