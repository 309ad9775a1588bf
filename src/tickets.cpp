// The ticket API (rq_enqueue, rq_wait, rq_cancel): a place in the line that
// the caller holds while no thread waits on it, so an event loop can keep
// thousands of acquires queued with one waiter thread. Owns the state machine
// of the caller's ticket word (permit.hpp, rq_ticket::opaque[3]); the place
// in the line itself is queue.cpp's.
//
// The state changes only by CAS (std::atomic_ref, seq_cst):
//   kIdle --rq_wait--> kWaiting --served/timeout/error--> kDone
//   kWaiting --poll found no capacity--> kIdle
//   kIdle --rq_cancel--> kCancelled (the canceller leaves the line)
//   kWaiting --rq_cancel--> kCancelRequested --the waiter leaves--> kCancelled
// so exactly one thread acts on a ticket's place in the line at a time.
#include "clock.hpp"
#include "core.hpp"
#include "lease.hpp"
#include "futex.hpp"

#include <climits>
#include <cstring>

namespace rq::detail {
namespace {

enum class TicketState : uint32_t { kIdle = 0, kWaiting = 1, kCancelRequested = 2, kDone = 3, kCancelled = 4 };

TicketState tstate(rq_ticket *t) {
    // seq_cst: pairs with the CASes below (either thread's).
    return static_cast<TicketState>(static_cast<uint32_t>(ticket_word(*t).load(std::memory_order_seq_cst)));
}
bool cas_tstate(rq_ticket *t, TicketState from, TicketState to) {
    uint64_t w = ticket_word(*t).load(std::memory_order_seq_cst);
    if (static_cast<TicketState>(static_cast<uint32_t>(w)) != from) return false;
    // seq_cst: pairs with the other thread's CAS and with cancel_requested().
    return ticket_word(*t).compare_exchange_strong(w, (w & ~uint64_t{0xffffffff}) | static_cast<uint32_t>(to),
                                                   std::memory_order_seq_cst);
}

}  // namespace

thread_local CancelWord tl_cancel;

bool cancel_requested() noexcept {
    if (tl_cancel.word == nullptr) return false;
    // acquire: pairs with rq_cancel's CAS (cancel_ticket).
    return static_cast<uint32_t>(std::atomic_ref<uint64_t>(*tl_cancel.word).load(std::memory_order_acquire)) !=
           tl_cancel.waiting;
}

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
    TicketCode{true, r, ticket, me_, load, me_gen_}.pack(t, static_cast<uint32_t>(TicketState::kIdle));
    return RQ_OK;
}

// Checks that t is a ticket this process took.
int Engine::decode_ticket(rq_ticket *t, uint32_t &r, uint32_t &ticket, uint64_t &load) {
    const int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    const TicketCode tc = TicketCode::unpack(*t);
    if (!tc.magic_ok || tc.resource >= view_.geo.max_resources || tc.proc != me_ || tc.proc_gen != me_gen_ ||
        tc.load == 0 || tc.load > RQ_MAX_AMOUNT) {
        return RQ_EINVAL;  // forged, or another client's or process's
    }
    r = tc.resource;
    ticket = tc.ticket;
    load = tc.load;
    return RQ_OK;
}

int Engine::wait_ticket(rq_ticket *t, int64_t timeout_ns, rq_permit *out) {
    if (t == nullptr || out == nullptr) return RQ_EINVAL;
    std::memset(out, 0, sizeof *out);
    uint32_t r, ticket;
    uint64_t load;
    int rc = decode_ticket(t, r, ticket, load);
    if (rc != RQ_OK) return rc;
    if (!cas_tstate(t, TicketState::kIdle, TicketState::kWaiting)) {
        return tstate(t) == TicketState::kCancelled ? RQ_ECANCELED : RQ_EINVAL;
    }
    Resource &res = view_.resource(r);
    // Ends every path that does not keep the ticket. A cancel that arrived
    // meanwhile loses to a grant and wins otherwise.
    auto finish = [&](int result) {
        if (result == RQ_ETIMEDOUT) {
            res.counters.timeouts.fetch_add(1, boost::memory_order_relaxed);
            // A global resource's deadline with Redis out of reach (lease.hpp).
            Limits gl;
            const Limits *glp;
            if (limits_of(r, gl, glp) == RQ_OK && glp->global) result = lease_timeout(res);
        }
        if (result == RQ_E2BIG) res.counters.too_big.fetch_add(1, boost::memory_order_relaxed);
        if (!cas_tstate(t, TicketState::kWaiting,
                        result == RQ_ECANCELED ? TicketState::kCancelled : TicketState::kDone)) {
            if (result != RQ_OK) result = RQ_ECANCELED;
            cas_tstate(t, TicketState::kCancelRequested, result == RQ_OK ? TicketState::kDone : TicketState::kCancelled);
        }
        return result;
    };
    // The slot must still name this ticket as ours and queued or head:
    // nothing but this process finishes a live process's ticket.
    // seq_cst: the slot and queue words, as every reader of the line (queue.cpp).
    const SlotWord sw = SlotWord::unpack(view_.slot(r, ticket).word.load(boost::memory_order_seq_cst));
    const bool mine = sw.ticket == (ticket & kTicketMask) && sw.owner == me_;
    if ((!mine || sw.state == SlotState::kAbandoned) &&
        passed_over(r, ticket, QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst)).head).kind !=
            Turn::kServed) {
        cas_tstate(t, TicketState::kWaiting, TicketState::kDone);
        return RQ_EINVAL;
    }
    const bool poll = timeout_ns == 0;
    const int64_t deadline = poll ? 0 : timeout_ns < 0 ? INT64_MAX : deadline_after(now_ns(), timeout_ns);
    struct Publish {  // this thread's cancel word, for the length of the wait
        explicit Publish(rq_ticket *tk) {
            tl_cancel = CancelWord{&tk->opaque[3], static_cast<uint32_t>(TicketState::kWaiting)};
        }
        ~Publish() { tl_cancel = CancelWord{}; }
        Publish(const Publish &) = delete;
        Publish &operator=(const Publish &) = delete;
    } publish(t);
    // The permit of a ticket the head served on our behalf.
    auto served = [&]() -> int {
        Limits sl;
        const Limits *slp;
        if (limits_of(r, sl, slp) == RQ_OK) served_permit(r, ticket, load, *slp, out);
        return finish(RQ_OK);
    };
    // Leaves the line, unless the head served us meanwhile: then the permit.
    auto leave = [&](int result) -> int { return abandon(r, ticket) ? served() : finish(result); };
    // A poll that found no capacity keeps the ticket, unless a cancel came.
    auto keep = [&]() -> int {
        if (cas_tstate(t, TicketState::kWaiting, TicketState::kIdle)) return RQ_EAGAIN;
        return leave(RQ_ECANCELED);
    };
    const Result<Turn> turn = wait_turn(r, ticket, deadline);
    if (turn.kind == Turn::kServed) return served();
    if (turn.kind == Turn::kFailed) {
        if (poll && turn.rc == RQ_ETIMEDOUT) return keep();
        return leave(turn.rc);
    }
    Limits scratch;
    const Limits *lim;
    rc = limits_of(r, scratch, lim);
    if (rc == RQ_OK) {
        rc = load > lim->max_load ? RQ_E2BIG
                                  : serve(r, ticket, load, deadline, poll, lim, out, noted_since(r, ticket), nullptr);
    }
    if (poll && rc == RQ_EAGAIN) return keep();
    leave_head(r, ticket);
    return finish(rc);
}

int Engine::cancel_ticket(rq_ticket *t) {
    if (t == nullptr) return RQ_EINVAL;
    // seq_cst: as tstate() (the zeroed ticket of a failed rq_enqueue).
    if (t->opaque[0] == 0 && t->opaque[1] == 0 && t->opaque[2] == 0 &&
        ticket_word(*t).load(std::memory_order_seq_cst) == 0) {
        return RQ_OK;
    }
    uint32_t r, ticket;
    uint64_t load;
    const int rc = decode_ticket(t, r, ticket, load);
    if (rc != RQ_OK) return rc;
    for (;;) {
        const TicketState s = tstate(t);
        if (s == TicketState::kIdle) {
            if (!cas_tstate(t, TicketState::kIdle, TicketState::kCancelled)) continue;
            abandon(r, ticket);  // the ticket is ours alone now
            return RQ_OK;
        }
        if (s == TicketState::kWaiting) {
            if (!cas_tstate(t, TicketState::kWaiting, TicketState::kCancelRequested)) continue;
            // The waiter sleeps on this word too (queue.cpp, sleep_on), and it has
            // changed, so this wake cannot be lost.
            futex_wake(&t->opaque[3], INT32_MAX);
            return RQ_OK;
        }
        return RQ_OK;  // finished, or a cancel is already on its way
    }
}

}  // namespace rq::detail
