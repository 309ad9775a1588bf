// Acquire and release: the head serves itself from every limit at one instant.
#include "clock.hpp"
#include "core.hpp"
#include "futex.hpp"
#include "gcra.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstring>

namespace rq::detail {
namespace {

struct PermitFields {
    uint64_t flags;
    uint32_t resource;
    uint32_t proc;
    uint64_t load;
    uint32_t proc_gen;
    uint32_t epoch;      // the resource's hard_epoch when granted
    int64_t grant_tat;   // with kPermitHasTat: the TAT written on the first load-cost rate limit
};

// rq_permit:
//   opaque[0] = "RQPT" << 32 | tat_granules >> 32 << 4 | flags (4 bits)
//   opaque[1] = resource << 48 | process slot << 32 | tat_granules & 0xffffffff
//   opaque[2] = load;  opaque[3] = hard epoch << 32 | process generation
// tat_granules = grant_tat >> 10 (60 bits; rounding down only makes a settle
// refund less). Resources and process slots are below 2^16 (kMax*Cap).
constexpr int kGranuleShift = 10;
static_assert(kMaxResourcesCap <= (1u << 16) && kMaxProcessesCap <= (1u << 16));

void encode(const PermitFields &f, rq_permit *out) {
    uint64_t w0 = kPermitMagic | f.flags;
    uint64_t w1 = (uint64_t{f.resource} << 48) | (uint64_t{f.proc} << 32);
    if ((f.flags & kPermitHasTat) != 0 && f.grant_tat > 0) {
        const uint64_t g = static_cast<uint64_t>(f.grant_tat) >> kGranuleShift;
        w0 |= ((g >> 32) & 0x0fffffff) << 4;
        w1 |= g & 0xffffffff;
    }
    out->opaque[0] = w0;
    out->opaque[1] = w1;
    out->opaque[2] = f.load;
    out->opaque[3] = (uint64_t{f.epoch} << 32) | f.proc_gen;
}

uint64_t cost_of(const Limit &l, uint64_t load) { return l.cost == RQ_COST_LOAD ? load : 1; }

RateParams params(const Limit &l) {
    return RateParams{l.amount, l.period_ns, l.burst, l.burst_ns, l.request_ns, l.unit_ns};
}

// What admitting `load` moves rate limit l's TAT by.
uint64_t increment_of(const Limit &l, uint64_t load) {
    return l.cost == RQ_COST_LOAD ? increment_ns(params(l), load) : l.request_ns;
}

// One look at every rate limit of lim for `load` at `now`: each TAT into
// tat[i] and, where the limit admits the load now, the TAT it moves to into
// new_tat[i] (concurrency entries are left alone). Returns 0 when every rate
// limit admits it now, else the earliest instant the refusing ones would
// (never 0: a refusal's instant lies after now). The head (serve, and
// serve_behind for the tickets behind it) and try_fast_conc take their
// charges from here, then CAS each TAT from tat[i] to new_tat[i].
[[gnu::always_inline]] inline int64_t plan_rates(Resource &res, const Limits &lim, uint64_t load, int64_t now, int64_t *tat,
                                                  int64_t *new_tat) {
    int64_t ready_at = 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // acquire: pairs with the acq_rel CASes on the TAT and with reset's store.
        tat[i] = res.tat[i].load(boost::memory_order_acquire);
        const GcraStep st = gcra_step(tat[i], now, increment_of(l, load), params(l));
        if (st.admit) {
            new_tat[i] = st.new_tat;
        } else if (st.ready_at > ready_at) {
            ready_at = st.ready_at;
        }
    }
    return ready_at;
}

// Whether load can never fit the limits, even with all of them free.
bool never_fits_any(const Limits &lim, uint64_t load) { return load > lim.max_load; }

bool conc_fits(const Resource &res, const Limits &lim, uint64_t load) {
    uint64_t in_req = res.in_use_req.load(boost::memory_order_seq_cst);
    uint64_t in_load = res.in_use_load.load(boost::memory_order_seq_cst);
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_CONCURRENCY) continue;
        uint64_t used = l.cost == RQ_COST_LOAD ? in_load : in_req;
        if (used > l.amount || cost_of(l, load) > l.amount - used) return false;
    }
    return true;
}

void bump(Shared<uint64_t> &c, uint64_t by) {
    // Only the head writes these counters, so a plain read-add-store suffices.
    c.store(c.load(boost::memory_order_relaxed) + by, boost::memory_order_relaxed);
}

// admitted and admitted_load: the head and the line-free path (try_fast) both
// write them, so these take a relaxed fetch_add.
void count_admission(Counters &c, uint64_t load) {
    c.admitted.fetch_add(1, boost::memory_order_relaxed);
    c.admitted_load.fetch_add(load, boost::memory_order_relaxed);
}

// Undoes the charges of the first `taken` limits: each TAT goes back from
// the value we wrote to the value we read, by one CAS. If anyone has charged
// (or moved) it since, our charge stays: those tokens are lost, which is the
// safe side; subtracting our increment from a TAT another charge started from
// the clock would credit tokens that were never there. Returns whether any
// came back (a head asleep for tokens should then look again).
bool give_back_rate(Resource &res, const Limits &lim, uint32_t taken, const int64_t *tat, const int64_t *new_tat) {
    bool any = false;
    for (uint32_t i = 0; i < taken; ++i) {
        if (lim.limit[i].kind != RQ_LIMIT_RATE) continue;
        int64_t expected = new_tat[i];
        // acq_rel: pairs with every other CAS on this TAT.
        any |= res.tat[i].compare_exchange_strong(expected, tat[i], boost::memory_order_acq_rel);
    }
    return any;
}

}  // namespace

#ifdef RQ_TEST_HOOKS
namespace {
std::atomic<int> g_crash_point{0};  // process-local
std::atomic<int> g_stop_point{0};
}
void set_crash_point(CrashPoint p) { g_crash_point.store(static_cast<int>(p), std::memory_order_relaxed); }
void set_stop_point(CrashPoint p) { g_stop_point.store(static_cast<int>(p), std::memory_order_relaxed); }
// A process armed to die at a step of the line protocol takes the line; one
// armed for a step of the line-free path with concurrency takes that path.
bool line_free_allowed() {
    const int p = g_crash_point.load(std::memory_order_relaxed);
    return p == 0 || p >= static_cast<int>(CrashPoint::kFastAfterRateTaken);
}
void crash_point(CrashPoint p) {
    if (p == CrashPoint::kNone) return;
    if (g_crash_point.load(std::memory_order_relaxed) == static_cast<int>(p)) ::raise(SIGKILL);
    int armed = static_cast<int>(p);
    if (g_stop_point.load(std::memory_order_relaxed) == armed &&
        g_stop_point.compare_exchange_strong(armed, 0, std::memory_order_relaxed)) {
        ::raise(SIGSTOP);
    }
}
#else
void set_crash_point(CrashPoint) {}
void set_stop_point(CrashPoint) {}
#endif

// rq_enqueue's checks: a registered caller, a valid load, a defined resource
// and a load that can fit.
int Engine::resolve(const char *name, uint64_t load, uint32_t &r, Limits &scratch, const Limits *&lim) {
    if (name == nullptr) return RQ_EINVAL;
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    if (load == 0 || load > RQ_MAX_AMOUNT) return RQ_EINVAL;
    rc = find_named(name, r);
    if (rc != RQ_OK) return rc;
    rc = limits_of(r, scratch, lim);
    if (rc != RQ_OK) return rc;
    if (never_fits_any(*lim, load)) {
        view_.resource(r).counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        return RQ_E2BIG;
    }
    return RQ_OK;
}

// rq_resource: opaque[0] = resource index << 32 | the segment's tag
// (segment.cpp, segment_tag), opaque[1] = the resource's name hash. Checked
// on every use: the tag against this segment's, the index against the table,
// the hash against the one kept with the resource's checked limits.

int Engine::resolve_handle(const char *name, rq_resource *out) {
    if (out == nullptr || name == nullptr) return RQ_EINVAL;
    std::memset(out, 0, sizeof *out);
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    uint32_t r;
    rc = find_named(name, r);
    if (rc != RQ_OK) return rc;
    out->opaque[0] = uint64_t{r} << 32 | handle_tag_;
    out->opaque[1] = view_.resource(r).name_hash;
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
    const uint64_t w0 = h->opaque[0];
    const uint64_t r = w0 >> 32;
    if (static_cast<uint32_t>(w0) != handle_tag_ || r >= view_.geo.max_resources) return refuse(out, RQ_EINVAL);
    Resource &res = view_.resource(static_cast<uint32_t>(r));
    // The limits first: a resource this process has not seen defined is
    // refresh_limits' to check (RQ_ENOENT unless kReady, read with acquire);
    // they carry the resource's name hash, copied once it was published.
    Limits scratch;
    const Limits *lim;
    rc = limits_of(res, static_cast<uint32_t>(r), scratch, lim, &now);
    if (rc != RQ_OK) return refuse(out, rc == RQ_ENOENT ? RQ_EINVAL : rc);
    if (lim->name_hash != h->opaque[1]) return refuse(out, RQ_EINVAL);
    return acquire_at(res, static_cast<uint32_t>(r), lim, load, timeout_ns, out, nullptr, now);
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
    int fast = kFastMiss;
    // load - 1 < fast_max_load: 1 <= load <= fast_max_load (<= RQ_MAX_AMOUNT),
    // one compare; a load 0 or too big is acquire_line's to refuse.
    if (load - 1 < lim->fast_max_load && line_free_allowed()) {
        fast = try_fast(res, r, *lim, load, now, out);
        if (fast == RQ_OK) [[likely]] return RQ_OK;
    } else if (lim->has_conc && load - 1 < lim->max_load && line_free_allowed()) {
        fast = try_fast_conc(res, r, *lim, load, now, out);
        if (fast == RQ_OK) return RQ_OK;
        if (fast < 0) return refuse(out, fast);
    }
    return acquire_line(r, lim, load, timeout_ns, out, predicted, fast);
}

// fast: the line-free path's answer (try_fast or try_fast_conc;
// kFastNoCapacity: the limits refused it with nobody in line, which answers
// a try), or kFastMiss when it did not apply.
int Engine::acquire_line(uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns, rq_permit *out,
                         int64_t *predicted, int fast) {
    std::memset(out, 0, sizeof *out);
    if (load == 0 || load > RQ_MAX_AMOUNT) return RQ_EINVAL;
    Resource &res = view_.resource(r);
    if (never_fits_any(*lim, load)) {
        res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        return RQ_E2BIG;
    }
    const bool is_try = timeout_ns == 0;
    if (fast == kFastNoCapacity && is_try) return RQ_EAGAIN;
    int rc;
    // Waiting forever needs no clock read here; serve() reads it once.
    const int64_t deadline = is_try ? 0 : timeout_ns < 0 ? INT64_MAX : deadline_after(now_ns(), timeout_ns);
    if (is_try) {
        // Never barge: with anyone queued, a try fails without taking a ticket.
        QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
        if (q.head != q.tail) {
            // But a dead head would fail every try forever: check its owner
            // (one fcntl, only on this path).
            rc = reclaim_ticket_owner(r, q.head);
            if (rc != RQ_OK) return rc;
            q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
            if (q.head != q.tail) return RQ_EAGAIN;
        }
    } else if (deadline != INT64_MAX) {
        // Fail fast: if the buckets cannot hold us and everyone ahead before
        // the deadline, say so now instead of sleeping until it passes.
        QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
        if (q.head != q.tail || res.paused_until.load(boost::memory_order_seq_cst) != 0) {
            const int64_t now = now_ns();
            const int64_t start = predict_start(r, load, *lim, now);
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
    if (!at_head) {
        since = now_ns();
        note_wait(r, ticket, load, since);
    }
    rc = at_head ? RQ_OK : wait_turn(r, ticket, deadline);
    if (rc == kServed) {
        served_permit(r, ticket, load, *lim, out);
        return RQ_OK;
    }
    if (rc != RQ_OK) {
        if (abandon(r, ticket)) {
            served_permit(r, ticket, load, *lim, out);
            return RQ_OK;
        }
        if (rc == RQ_ETIMEDOUT) {
            if (is_try) return RQ_EAGAIN;
            res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
        }
        return rc;
    }
    // Whoever was behind us when we became head by ourselves (not through a
    // grant, whose passer promotes) may need promoting to watcher.
    if (!at_head) promote_behind(r, ticket);
    rc = serve(r, ticket, load, deadline, is_try, lim, out, since, predicted);
    crash_point(CrashPoint::kBeforePass);
    if (rc == RQ_ETIMEDOUT) res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
    if (rc == RQ_E2BIG) res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
    // Anyone queued behind us: serve them now rather than hand the line to a
    // sleeper one wake-up at a time (serve_behind).
    if (QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst)).tail - ticket > 1) serve_behind(r, ticket);
    // Once served, the permit stands: a damaged queue shows on the next call.
    pass_head(r, ticket);
    return rc;
}

// ---- Tickets: rq_enqueue, rq_wait, rq_cancel ----------------------------------------
//
// rq_ticket: opaque[0] = magic | resource, opaque[1] = ticket << 32 | process
// slot, opaque[2] = load, opaque[3] = process generation << 32 | state. The
// state changes only by CAS (std::atomic_ref, seq_cst):
//   kIdle --rq_wait--> kWaiting --served/timeout/error--> kDone
//   kWaiting --poll found no capacity--> kIdle
//   kIdle --rq_cancel--> kCancelled (the canceller leaves the line)
//   kWaiting --rq_cancel--> kCancelRequested --the waiter leaves--> kCancelled
// so exactly one thread acts on a ticket's place in the line at a time.
namespace {
constexpr uint64_t kTicketMagic = 0x52515449ull << 32;  // "RQTI"
enum : uint32_t { kIdle = 0, kWaiting = 1, kCancelRequested = 2, kDone = 3, kCancelled = 4 };

std::atomic_ref<uint64_t> state_ref(rq_ticket *t) { return std::atomic_ref<uint64_t>(t->opaque[3]); }
uint32_t tstate(rq_ticket *t) { return static_cast<uint32_t>(state_ref(t).load(std::memory_order_seq_cst)); }
bool cas_tstate(rq_ticket *t, uint32_t from, uint32_t to) {
    uint64_t w = state_ref(t).load(std::memory_order_seq_cst);
    if (static_cast<uint32_t>(w) != from) return false;
    // seq_cst: pairs with the other side's CAS and with cancel_requested().
    return state_ref(t).compare_exchange_strong(w, (w & ~uint64_t{0xffffffff}) | to, std::memory_order_seq_cst);
}
}  // namespace

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the futex reads the state in the low half");

int Engine::enqueue_ticket(const char *name, uint64_t load, rq_ticket *t) {
    if (t == nullptr) return RQ_EINVAL;
    std::memset(t, 0, sizeof *t);
    uint32_t r;
    Limits scratch;
    const Limits *lim;
    int rc = resolve(name, load, r, scratch, lim);
    if (rc != RQ_OK) return rc;
    uint32_t ticket;
    bool at_head;
    rc = enqueue(r, ticket, at_head);
    if (rc != RQ_OK) return rc;
    note_wait(r, ticket, load, now_ns());
    t->opaque[0] = kTicketMagic | r;
    t->opaque[1] = (uint64_t{ticket} << 32) | me_;
    t->opaque[2] = load;
    t->opaque[3] = (uint64_t{me_gen_} << 32) | kIdle;
    return RQ_OK;
}

// Checks that t is a ticket this process took.
int Engine::decode_ticket(const rq_ticket *t, uint32_t &r, uint32_t &ticket, uint64_t &load) {
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    const uint64_t w0 = t->opaque[0];
    if ((w0 & ~uint64_t{0xffffffff}) != kTicketMagic) return RQ_EINVAL;
    r = static_cast<uint32_t>(w0);
    ticket = static_cast<uint32_t>(t->opaque[1] >> 32);
    load = t->opaque[2];
    if (r >= view_.geo.max_resources || static_cast<uint32_t>(t->opaque[1]) != me_ ||
        (t->opaque[3] >> 32) != me_gen_ || load == 0 || load > RQ_MAX_AMOUNT) {
        return RQ_EINVAL;  // forged, or another client's or process's
    }
    return RQ_OK;
}

int Engine::wait_ticket(rq_ticket *t, int64_t timeout_ns, rq_permit *out) {
    if (t == nullptr || out == nullptr) return RQ_EINVAL;
    std::memset(out, 0, sizeof *out);
    uint32_t r, ticket;
    uint64_t load;
    int rc = decode_ticket(t, r, ticket, load);
    if (rc != RQ_OK) return rc;
    if (!cas_tstate(t, kIdle, kWaiting)) return tstate(t) == kCancelled ? RQ_ECANCELED : RQ_EINVAL;
    Resource &res = view_.resource(r);
    // Ends every path that does not keep the ticket. A cancel that arrived
    // meanwhile loses to a grant and wins otherwise.
    auto finish = [&](int result) {
        if (result == RQ_ETIMEDOUT) res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
        if (result == RQ_E2BIG) res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        if (!cas_tstate(t, kWaiting, result == RQ_ECANCELED ? kCancelled : kDone)) {
            if (result != RQ_OK) result = RQ_ECANCELED;
            cas_tstate(t, kCancelRequested, result == RQ_OK ? kDone : kCancelled);
        }
        return result;
    };
    // The slot must still name this ticket as ours and queued or head:
    // nothing but this process finishes a live process's ticket.
    SlotWord sw = SlotWord::unpack(view_.slot(r, ticket).word.load(boost::memory_order_seq_cst));
    const bool mine = sw.ticket == (ticket & kTicketMask) && sw.owner == me_;
    if ((!mine || sw.state == SlotState::kAbandoned) &&
        passed_over(r, ticket, QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst)).head) != kServed) {
        cas_tstate(t, kWaiting, kDone);
        return RQ_EINVAL;
    }
    const bool poll = timeout_ns == 0;
    const int64_t deadline = poll ? 0 : timeout_ns < 0 ? INT64_MAX : deadline_after(now_ns(), timeout_ns);
    struct Publish {  // this thread's cancel word, for the length of the wait
        explicit Publish(rq_ticket *tk) { tl_cancel = CancelWord{&tk->opaque[3], kWaiting}; }
        ~Publish() { tl_cancel = CancelWord{}; }
        Publish(const Publish &) = delete;
        Publish &operator=(const Publish &) = delete;
    } publish(t);
    // Leaves the line, unless the head served us meanwhile: then the permit.
    auto leave = [&](int result) -> int {
        if (!abandon(r, ticket)) return finish(result);
        Limits sl;
        const Limits *slp;
        if (limits_of(r, sl, slp) == RQ_OK) served_permit(r, ticket, load, *slp, out);
        return finish(RQ_OK);
    };
    // A poll that found no capacity keeps the ticket, unless a cancel came.
    auto keep = [&]() -> int {
        if (cas_tstate(t, kWaiting, kIdle)) return RQ_EAGAIN;
        return leave(RQ_ECANCELED);
    };
    rc = wait_turn(r, ticket, deadline);
    if (rc == kServed) {
        Limits sl;
        const Limits *slp;
        if (limits_of(r, sl, slp) == RQ_OK) served_permit(r, ticket, load, *slp, out);
        return finish(RQ_OK);
    }
    if (rc != RQ_OK) {
        if (poll && rc == RQ_ETIMEDOUT) return keep();
        return leave(rc);
    }
    promote_behind(r, ticket);
    Limits scratch;
    const Limits *lim;
    rc = limits_of(r, scratch, lim);
    if (rc == RQ_OK) {
        rc = never_fits_any(*lim, load) ? RQ_E2BIG
                                         : serve(r, ticket, load, deadline, poll, lim, out, noted_since(r, ticket), nullptr);
    }
    if (poll && rc == RQ_EAGAIN) return keep();
    if (QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst)).tail - ticket > 1) serve_behind(r, ticket);
    pass_head(r, ticket);
    return finish(rc);
}

int Engine::cancel_ticket(rq_ticket *t) {
    if (t == nullptr) return RQ_EINVAL;
    if (t->opaque[0] == 0 && t->opaque[1] == 0 && t->opaque[2] == 0 && t->opaque[3] == 0) return RQ_OK;
    uint32_t r, ticket;
    uint64_t load;
    int rc = decode_ticket(t, r, ticket, load);
    if (rc != RQ_OK) return rc;
    for (;;) {
        const uint32_t s = tstate(t);
        if (s == kIdle) {
            if (!cas_tstate(t, kIdle, kCancelled)) continue;
            abandon(r, ticket);  // the ticket is ours alone now
            return RQ_OK;
        }
        if (s == kWaiting) {
            if (!cas_tstate(t, kWaiting, kCancelRequested)) continue;
            // The waiter sleeps on this word too (futex_wait2), and it has
            // changed, so this wake cannot be lost.
            futex_wake(&t->opaque[3], INT32_MAX);
            return RQ_OK;
        }
        return RQ_OK;  // finished, or a cancel is already on its way
    }
}

// As head: take from every limit at one instant, or wait until they allow it.
// since: when this acquire started waiting (0: it has not waited yet).
int Engine::serve(uint32_t r, uint32_t ticket, uint64_t load, int64_t deadline, bool is_try,
                  const Limits *limp, rq_permit *out, int64_t since, int64_t *predicted) {
    Resource &res = view_.resource(r);
    crash_point(CrashPoint::kHeadBeforeServe);
    Limits scratch;
    for (bool first = true;; first = false) {
        uint64_t cfg_word = res.config_word.load(boost::memory_order_acquire);
        if (!first || cfg_word != limp->word) {
            int rc = limits_of(r, scratch, limp);
            if (rc != RQ_OK) return rc;
            if (never_fits_any(*limp, load)) return RQ_E2BIG;
        }
        const Limits &lim = *limp;
        const int64_t now = now_ns();
        int64_t tat[kMaxLimits], new_tat[kMaxLimits];
        // A penalty pause blocks like a rate limit. seq_cst: pairs with
        // penalize()'s CAS (same cache line as config_word: no extra miss).
        const int64_t paused = res.paused_until.load(boost::memory_order_seq_cst);
        const int64_t ready_at = std::max(paused > now ? paused : 0, plan_rates(res, lim, load, now, tat, new_tat));
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
            // Re-checked after publishing the sleep state: a redefine or reset
            // changes the config word or a TAT before it wakes us.
            auto unchanged = [&] {
                if (res.config_word.load(boost::memory_order_seq_cst) != cfg_word) return false;
                if (res.paused_until.load(boost::memory_order_seq_cst) != paused) return false;
                for (uint32_t i = 0; i < lim.count; ++i) {
                    if (lim.limit[i].kind == RQ_LIMIT_RATE &&
                        res.tat[i].load(boost::memory_order_seq_cst) != tat[i]) {
                        return false;
                    }
                }
                return true;
            };
            // Bounded by kWatchNs: a waiting head checks on those watching it.
            int rc = head_sleep(r, ticket, SlotState::kHeadRateSleep,
                                std::min({ready_at, deadline, now + kWatchNs}), unchanged);
            if (rc == RQ_OK && now_ns() >= now + kWatchNs) rc = reclaim_dead_behind(r, ticket);
            if (rc != RQ_OK) return rc;
            continue;
        }
        if (lim.has_conc) {
            int rc = lock(res.lock, false, r);
            if (rc != RQ_OK) return rc;
            // A penalty that came while we waited for the lock holds too.
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
                // Woken by a release; bounded so that we notice dead holders.
                auto still_full = [&] { return !conc_fits(res, lim, load); };
                rc = head_sleep(r, ticket, SlotState::kHeadConcSleep, std::min(deadline, now + kWatchNs),
                                still_full);
                if (rc != RQ_OK) return rc;
                if (now_ns() >= now + kWatchNs) {
                    rc = reap_dead_holders(r);
                    if (rc == RQ_OK) rc = reclaim_dead_behind(r, ticket);
                    if (rc != RQ_OK) return rc;
                }
                continue;
            }
        }
        bool raced = false;
        uint32_t taken = 0;
        uint64_t flags = 0;
        int64_t grant_tat = 0;
        for (; taken < lim.count; ++taken) {
            const Limit &l = lim.limit[taken];
            if (l.kind != RQ_LIMIT_RATE) continue;
            int64_t expected = tat[taken];
            // acq_rel: a reset, redefine, settle or observe may race with the head here.
            if (!res.tat[taken].compare_exchange_strong(expected, new_tat[taken], boost::memory_order_acq_rel)) {
                raced = true;
                break;
            }
            if (l.cost == RQ_COST_LOAD && (flags & kPermitHasTat) == 0) {
                grant_tat = new_tat[taken];  // for settle: the first load-cost rate limit's
                flags |= kPermitHasTat;
            }
        }
        crash_point(CrashPoint::kAfterRateTaken);
        if (raced) {
            // All or nothing: give back what the limits before it took, then
            // start over.
            give_back_rate(res, lim, taken, tat, new_tat);
            if (lim.has_conc) unlock(res.lock);
            continue;
        }
        uint32_t epoch = 0;
        if (lim.has_conc) {
            epoch = res.hard_epoch.load(boost::memory_order_relaxed);  // under the lock
            int rc = conc_update(r, me_, 1, static_cast<int64_t>(load), CrashPoint::kInConcJournal, now);
            unlock(res.lock);
            if (rc != RQ_OK) return rc;
            flags |= kPermitConc;
        }
        count_admission(res.counters, load);
        if (since != 0) {
            const uint64_t waited = now > since ? static_cast<uint64_t>(now - since) : 0;
            bump(res.counters.wait_ns_total, waited);
            bump(res.waits.bucket[wait_bucket(waited)], 1);
        }
        encode(PermitFields{flags, r, me_, load, me_gen_, epoch, grant_tat}, out);
        return RQ_OK;
    }
}

// Whether the line of resource r is empty: no ticket between head and tail,
// and the slot for the ticket at the tail still holds the ticket one lap
// before it (tail - queue_slots), as every slot does until it is claimed. A
// claim comes before its tail bump: a slot that names the ticket at the tail
// is someone in line (the head, even); any other ticket there is damage,
// which the line path then reports (RQ_ECORRUPT).
[[gnu::always_inline]] inline bool Engine::nobody_in_line(Resource &res, uint32_t r) const {
    // seq_cst: ordered with the claim CAS of anyone joining the line.
    const QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
    if (q.head != q.tail) return false;
    return SlotWord::unpack(view_.slot(r, q.tail).word.load(boost::memory_order_seq_cst)).ticket ==
           ((q.tail - view_.geo.queue_slots) & kTicketMask);
}

// The line-free path. When nobody is in line and every limit is a rate limit,
// an acquire that the buckets admit right now needs no ticket: it takes from
// each TAT with one CAS, as the head would, and leaves. FIFO holds: it saw the
// line empty, so whoever joins the line after that came later (a head that
// joined meanwhile loses a CAS and recomputes). All or nothing: a CAS that
// fails gives back what the limits before it took, and the acquire then takes
// a ticket. Killed half way it loses tokens (the safe side) and holds no place
// in any line, so nothing can stall. Anything else (a queue, a pause, no
// capacity) goes through the line; concurrency limits are try_fast_conc's.
[[gnu::always_inline]] inline int Engine::try_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load,
                                                   int64_t now, rq_permit *out) {
    if (!nobody_in_line(res, r)) return kFastMiss;
    // seq_cst: pairs with penalize()'s CAS, as in serve.
    if (res.paused_until.load(boost::memory_order_seq_cst) > now) return kFastMiss;
    // The common shape, one rate limit charging 1 per acquire, in registers;
    // any other is try_fast_any's.
    if (!lim.one_request) return try_fast_any(res, r, lim, load, now, out);
    const Limit &l0 = lim.limit[0];
    // acquire: pairs with the acq_rel CASes on the TAT.
    const int64_t tat0 = res.tat[0].load(boost::memory_order_acquire);
    const GcraStep st0 = gcra_step(tat0, now, l0.request_ns, params(l0));
    if (!st0.admit) return kFastNoCapacity;
    // The limits we computed with must still be the resource's: a redefine
    // publishes its word before it converts the TATs we just read.
    // acquire: pairs with write_limits()'s release store.
    if (res.config_word.load(boost::memory_order_acquire) != lim.word) return kFastMiss;
    int64_t expected = tat0;
    // acq_rel: pairs with every other CAS on this TAT.
    if (!res.tat[0].compare_exchange_strong(expected, st0.new_tat, boost::memory_order_acq_rel)) [[unlikely]] {
        FastCharge c;
        c.tat[0] = expected;
        return try_fast_contended(r, lim, load, now, 0, c, out);
    }
    count_admission(res.counters, load);
    encode(PermitFields{0, r, me_, load, me_gen_, 0, 0}, out);  // no load-cost limit: no TAT to carry
    return RQ_OK;
}

// The line-free path for a resource with concurrency limits: what the head
// does in serve(), without a ticket, when nobody is in line and everything
// fits now. Everything is decided under the resource lock, where the line is
// looked at again: a head that joined while we waited for the lock and found
// the concurrency full took nothing (no TAT moved), so only this second look
// keeps us from passing it. Then the pause, the concurrency check and one CAS
// per TAT (a lost one gives back and takes a ticket), then the holding
// through the undo journal, as the head writes it. Killed anywhere, the
// lock's next taker undoes the journal and the TATs keep what they took (the
// safe side).
int Engine::try_fast_conc(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out) {
    if (!nobody_in_line(res, r)) return kFastMiss;  // (not worth the lock)
    crash_point(CrashPoint::kFastBeforeLock);
    uint32_t expected_lock = 0;
    // acquire: pairs with unlock()'s release exchange (the inline lock()).
    if (!res.lock.compare_exchange_strong(expected_lock, me_ + 1, boost::memory_order_acquire,
                                          boost::memory_order_relaxed)) {
        const int rc = lock_slow(res.lock, false, r);
        if (rc != RQ_OK) return rc;
        now = now_ns();  // we waited: the reading is stale
    }
    // seq_cst (both): the line as in nobody_in_line; the pause pairs with
    // penalize()'s CAS, as in serve. acquire: the config word pairs with
    // write_limits()'s release store (see try_fast).
    if (!nobody_in_line(res, r) || res.paused_until.load(boost::memory_order_seq_cst) > now ||
        res.config_word.load(boost::memory_order_acquire) != lim.word) {
        unlock(res.lock);
        return kFastMiss;
    }
    if (!conc_fits(res, lim, load)) {
        unlock(res.lock);
        return kFastNoCapacity;
    }
    FastCharge c{};  // (zeroed: GCC cannot tell that give_back_rate skips the concurrency entries)
    if (plan_rates(res, lim, load, now, c.tat, c.new_tat) != 0) {
        unlock(res.lock);
        return kFastNoCapacity;
    }
    uint64_t flags = kPermitConc;
    int64_t grant_tat = 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        if (lim.limit[i].kind != RQ_LIMIT_RATE) continue;
        int64_t expected = c.tat[i];
        // acq_rel: pairs with every other CAS on this TAT (settle, observe,
        // reset: the head and the line-free paths hold this lock or see the
        // line busy).
        if (!res.tat[i].compare_exchange_strong(expected, c.new_tat[i], boost::memory_order_acq_rel)) {
            const bool gave = give_back_rate(res, lim, i, c.tat, c.new_tat);
            unlock(res.lock);
            if (gave) wake_head(r, false);
            return kFastMiss;
        }
    }
    if (lim.first_load_rate >= 0) {
        grant_tat = c.new_tat[lim.first_load_rate];  // < count (finish_limits)
        flags |= kPermitHasTat;
    }
    crash_point(CrashPoint::kFastAfterRateTaken);
    const uint32_t epoch = res.hard_epoch.load(boost::memory_order_relaxed);  // under the lock
    const int rc = conc_update(r, me_, 1, static_cast<int64_t>(load), CrashPoint::kFastInConcJournal, now);
    crash_point(CrashPoint::kFastBeforeUnlock);
    unlock(res.lock);
    if (rc != RQ_OK) return rc;
    count_admission(res.counters, load);
    encode(PermitFields{flags, r, me_, load, me_gen_, epoch, grant_tat}, out);
    return RQ_OK;
}

// try_fast for any other shape of rate limits: the same steps, over each.
int Engine::try_fast_any(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out) {
    // (Its own loop, not plan_rates: every limit here is a rate limit, and a
    // refusal ends it; measured, plan_rates costs this path about 20 instructions.)
    FastCharge c;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        // acquire: pairs with the acq_rel CASes on the TAT.
        c.tat[i] = res.tat[i].load(boost::memory_order_acquire);
        const GcraStep st = gcra_step(c.tat[i], now, increment_of(l, load), params(l));
        if (!st.admit) return kFastNoCapacity;
        c.new_tat[i] = st.new_tat;
    }
    // acquire: pairs with write_limits()'s release store (see try_fast).
    if (res.config_word.load(boost::memory_order_acquire) != lim.word) return kFastMiss;
    for (uint32_t i = 0; i < lim.count; ++i) {
        int64_t expected = c.tat[i];
        // acq_rel: pairs with every other CAS on this TAT.
        if (!res.tat[i].compare_exchange_strong(expected, c.new_tat[i], boost::memory_order_acq_rel)) {
            c.tat[i] = expected;
            return try_fast_contended(r, lim, load, now, i, c, out);
        }
    }
    grant_fast(res, r, lim, load, c, out);
    return RQ_OK;
}

// try_fast after a lost CAS on limit i (c.tat[i] holds what that CAS found;
// the limits before i are charged). Another acquire moved the TAT: retry at
// the same instant while the bucket still admits us; refused then, the
// limits before i give back what they took and the acquire takes a ticket.
int Engine::try_fast_contended(uint32_t r, const Limits &lim, uint64_t load, int64_t now, uint32_t i,
                               FastCharge &c, rq_permit *out) {
    Resource &res = view_.resource(r);
    for (; i < lim.count; ++i) {
        bool ok = false;
        for (int tries = 0; tries < kFastRetries && !ok; ++tries) {
            const Limit &l = lim.limit[i];
            const GcraStep st = gcra_step(c.tat[i], now, increment_of(l, load), params(l));
            if (!st.admit) break;
            c.new_tat[i] = st.new_tat;
            int64_t expected = c.tat[i];
            // acq_rel: pairs with every other CAS on this TAT.
            ok = res.tat[i].compare_exchange_strong(expected, c.new_tat[i], boost::memory_order_acq_rel);
            c.tat[i] = expected;
        }
        if (!ok) {
            if (give_back_rate(res, lim, i, c.tat, c.new_tat)) wake_head(r, false);
            return kFastMiss;
        }
    }
    grant_fast(res, r, lim, load, c, out);
    return RQ_OK;
}

// Counts the admission and writes the permit of a line-free grant, with the
// TAT written on the first load-cost rate limit when there is one.
void Engine::grant_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load, const FastCharge &c,
                        rq_permit *out) {
    count_admission(res.counters, load);
    const int32_t f = lim.first_load_rate;  // < count (finish_limits)
    encode(PermitFields{f >= 0 ? kPermitHasTat : 0, r, me_, load, me_gen_, 0, f >= 0 ? c.new_tat[f] : 0}, out);
}

// The head, served, serves the tickets right behind it whose turn would come
// at once, in ticket order, taking from the limits for them as it did for
// itself; it stops at the first that cannot be admitted now (which then
// serves itself as head). Without this, under contention each acquire is a
// handoff to a sleeping process, one wake-up (tens of microseconds) at a
// time, and a line of processes crawls at the speed of the scheduler.
//
// Rate limits only: concurrency is held per process, so a waiter on a
// resource with a concurrency limit serves itself. A ticket is handed over by
// one CAS from its queued state to kDone, after its tokens are taken; a
// timeout or a reclaimer that gets there first wins and the tokens go back.
// Killed between the two, the head loses those tokens (the safe side) and the
// ticket serves itself later.
void Engine::serve_behind(uint32_t r, uint32_t head) {
    Resource &res = view_.resource(r);
    Limits scratch;
    const Limits *limp;
    if (limits_of(r, scratch, limp) != RQ_OK || limp->has_conc) return;
    const Limits &lim = *limp;
    for (uint32_t k = 1; k <= kMaxServedBehind; ++k) {
        const uint32_t t = head + k;
        const QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
        if (q.head != head || t - head >= q.tail - head) return;
        Slot &s = view_.slot(r, t);
        uint64_t v = s.word.load(boost::memory_order_seq_cst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != (t & kTicketMask)) return;
        if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) continue;
        auto queued = [](SlotState st) {
            return st == SlotState::kWaiting || st == SlotState::kSleeping || st == SlotState::kWatching;
        };
        if (!queued(sw.state)) return;
        // Its load as its owner noted it; not noted yet: it serves itself.
        // acquire: pairs with note_wait's release store of the tag.
        if (s.tag.load(boost::memory_order_acquire) != (kInfoValid | t)) return;
        const uint64_t load = s.load.load(boost::memory_order_relaxed);
        const int64_t since = s.since_ns.load(boost::memory_order_relaxed);
        if (load == 0 || load > RQ_MAX_AMOUNT || never_fits_any(lim, load)) return;
        const int64_t now = now_ns();
        if (res.paused_until.load(boost::memory_order_seq_cst) > now) return;
        int64_t tat[kMaxLimits], new_tat[kMaxLimits];
        if (plan_rates(res, lim, load, now, tat, new_tat) != 0) return;
        uint32_t taken = 0;
        for (; taken < lim.count; ++taken) {
            if (lim.limit[taken].kind != RQ_LIMIT_RATE) continue;
            int64_t expected = tat[taken];
            if (!res.tat[taken].compare_exchange_strong(expected, new_tat[taken], boost::memory_order_acq_rel)) break;
        }
        if (taken < lim.count) {
            give_back_rate(res, lim, taken, tat, new_tat);
            return;
        }
        int64_t grant_tat = 0;
        for (uint32_t i = 0; i < lim.count; ++i) {
            if (lim.limit[i].kind == RQ_LIMIT_RATE && lim.limit[i].cost == RQ_COST_LOAD) {
                grant_tat = new_tat[i];
                break;
            }
        }
        crash_point(CrashPoint::kInServeBehind);
        // For its permit (served_permit); published by the CAS below.
        s.since_ns.store(grant_tat, boost::memory_order_relaxed);
        bool handed = false;
        for (;;) {
            // seq_cst: Dekker with the owner's sleep-state CAS (as pass_head).
            if (s.word.compare_exchange_strong(v, SlotWord{sw.ticket, SlotState::kDone, sw.owner}.pack(),
                                               boost::memory_order_seq_cst)) {
                handed = true;
                break;
            }
            sw = SlotWord::unpack(v);
            if (sw.ticket != (t & kTicketMask) || !queued(sw.state)) break;
        }
        if (!handed) {
            give_back_rate(res, lim, lim.count, tat, new_tat);
            return;
        }
        count_admission(res.counters, load);
        if (since > 0) {
            const uint64_t waited = now > since ? static_cast<uint64_t>(now - since) : 0;
            bump(res.counters.wait_ns_total, waited);
            bump(res.waits.bucket[wait_bucket(waited)], 1);
        }
        if (sw.state != SlotState::kWaiting) futex_wake(&s.word, 1);
    }
}

// The permit of a ticket the head served (serve_behind).
void Engine::served_permit(uint32_t r, uint32_t ticket, uint64_t load, const Limits &lim, rq_permit *out) {
    const Slot &s = view_.slot(r, ticket);
    // Read like a seqlock: the word, the grant TAT, the word again. If the
    // slot still names this ticket, served, g is what the head stored before
    // its CAS; if another ticket has claimed it since (the head passed us,
    // so anyone may), the grant TAT is lost and settle refunds nothing.
    const uint64_t w1 = s.word.load(boost::memory_order_seq_cst);
    const int64_t g = s.since_ns.load(boost::memory_order_relaxed);
    boost::atomic_thread_fence(boost::memory_order_acquire);
    const uint64_t w2 = s.word.load(boost::memory_order_relaxed);
    const SlotWord sw = SlotWord::unpack(w2);
    bool load_rate = false;
    for (uint32_t i = 0; i < lim.count; ++i) {
        load_rate |= lim.limit[i].kind == RQ_LIMIT_RATE && lim.limit[i].cost == RQ_COST_LOAD;
    }
    const bool has =
        load_rate && g > 0 && w1 == w2 && sw.ticket == (ticket & kTicketMask) && sw.state == SlotState::kDone;
    encode(PermitFields{has ? kPermitHasTat : 0, r, me_, load, me_gen_, 0, g}, out);
}

void Engine::note_wait(uint32_t r, uint32_t ticket, uint64_t load, int64_t since) {
    Slot &s = view_.slot(r, ticket);
    s.load.store(load, boost::memory_order_relaxed);
    s.since_ns.store(since, boost::memory_order_relaxed);
    // release: pairs with the reader's acquire load of tag (layout.hpp, Slot).
    s.tag.store(kInfoValid | ticket, boost::memory_order_release);
}

int64_t Engine::noted_since(uint32_t r, uint32_t ticket) const {
    const Slot &s = view_.slot(r, ticket);
    if (s.tag.load(boost::memory_order_acquire) != (kInfoValid | ticket)) return 0;
    return s.since_ns.load(boost::memory_order_relaxed);
}

int Engine::reap_dead_holders(uint32_t r) {
    for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
        if (p == me_) continue;
        Holding &h = view_.holding(p, r);
        if (h.req.load(boost::memory_order_relaxed) == 0 && h.load.load(boost::memory_order_relaxed) == 0) continue;
        int rc = reclaim_if_dead(p);
        if (rc < 0) return rc;
    }
    return RQ_OK;
}

int Engine::check_permit(const rq_permit *p, PermitView &out) {
    const uint64_t w0 = p->opaque[0];
    if ((w0 & ~uint64_t{0xffffffff}) != kPermitMagic) return RQ_EINVAL;
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    out.resource = static_cast<uint32_t>(p->opaque[1] >> 48);
    out.load = p->opaque[2];
    out.epoch = static_cast<uint32_t>(p->opaque[3] >> 32);
    out.has_tat = (w0 & kPermitHasTat) != 0;
    const uint64_t g = ((w0 >> 4) & 0x0fffffff) << 32 | (p->opaque[1] & 0xffffffff);
    out.grant_tat = static_cast<int64_t>(g << kGranuleShift);
    const uint32_t proc = static_cast<uint32_t>(p->opaque[1] >> 32) & 0xffff;
    // A settled permit may hold load 0 (the request used nothing).
    const bool load_ok = (w0 & kPermitSettled) != 0 ? out.load <= RQ_MAX_AMOUNT : out.load >= 1 && out.load <= RQ_MAX_AMOUNT;
    if (out.resource >= view_.geo.max_resources || proc != me_ || static_cast<uint32_t>(p->opaque[3]) != me_gen_ ||
        !load_ok) {
        return RQ_EINVAL;  // forged, or held by another client or process
    }
    return RQ_OK;
}

int Engine::release_slow(rq_permit *p) {
    if (p == nullptr) return RQ_EINVAL;
    const uint64_t w0 = p->opaque[0];
    if (w0 == 0 && p->opaque[1] == 0 && p->opaque[2] == 0 && p->opaque[3] == 0) return RQ_OK;
    if ((w0 & ~uint64_t{0xffffffff}) != kPermitMagic) return RQ_EINVAL;
    if ((w0 & kPermitReleased) != 0) return RQ_OK;
    if ((w0 & kPermitConc) == 0) {
        p->opaque[0] = w0 | kPermitReleased;
        return RQ_OK;
    }
    PermitView pv;
    int rc = check_permit(p, pv);
    if (rc != RQ_OK) return rc;
    const uint32_t r = pv.resource;
    Resource &res = view_.resource(r);
    rc = lock(res.lock, false, r);
    if (rc != RQ_OK) return rc;
    // A hard reset since the grant forgot this permit: nothing to give back.
    if (pv.epoch == res.hard_epoch.load(boost::memory_order_relaxed)) {
        rc = conc_update(r, me_, -1, -static_cast<int64_t>(pv.load), CrashPoint::kInReleaseJournal);
    }
    unlock(res.lock);
    if (rc != RQ_OK) return rc;
    p->opaque[0] = w0 | kPermitReleased;
    // Dekker with the head's kHeadConcSleep: unlock's exchange orders our
    // counter stores before wake_head's seq_cst loads.
    wake_head(r, true);
    return RQ_OK;
}

}  // namespace rq::detail
