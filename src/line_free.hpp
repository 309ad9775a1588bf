// The line-free path, inline half: with nobody in line, an acquire that
// every limit admits right now needs no ticket. This header holds what the
// uncontended acquire inlines (included by acquire.cpp only): the look at the
// line and try_fast for rate limits only. The rest is line_free.cpp.
//
// FIFO holds: the path is taken only after seeing the line empty, so whoever
// joins the line after that came later (a head that joined meanwhile loses a
// CAS and recomputes). All or nothing: charge.hpp's charge, which gives back
// what the limits before a lost CAS took; the acquire then takes a ticket.
// Killed half way it loses tokens (the safe side) and holds no place in any
// line, so nothing can stall.
#pragma once

#include "charge.hpp"
#include "core.hpp"

namespace rq::detail {

// Whether the line of resource r is empty: no ticket between head and tail,
// and the slot for the ticket at the tail still holds the ticket one lap
// before it (tail - queue_slots), as every slot does until it is claimed
// (queue.cpp, enqueue). A claim comes before its tail bump: a slot that
// names the ticket at the tail is someone in line (the head, even); any
// other ticket there is damage, which the line path then reports
// (RQ_ECORRUPT).
[[gnu::always_inline]] inline bool Engine::nobody_in_line(Resource &res, uint32_t r) const {
    // seq_cst (both): ordered with the claim CAS and the tail bump of anyone
    // joining the line (queue.cpp, enqueue).
    const QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
    if (q.head != q.tail) return false;
    return SlotWord::unpack(view_.slot(r, q.tail).word.load(boost::memory_order_seq_cst)).ticket ==
           ((q.tail - view_.geo.queue_slots) & kTicketMask);
}

// Rate limits only: one CAS per TAT. Anything else (a queue, a pause, no
// capacity) goes through the line; concurrency limits are try_fast_conc's.
[[gnu::always_inline]] inline Fast Engine::try_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load,
                                                    int64_t now, rq_permit *out) {
    if (!nobody_in_line(res, r)) return Fast::kMiss;
    // seq_cst: pairs with penalize()'s CAS (llm.cpp), as in serve.
    if (res.paused_until.load(boost::memory_order_seq_cst) > now) return Fast::kMiss;
    // The common shape, one rate limit charging 1 per acquire, in registers;
    // any other is try_fast_any's.
    if (!lim.one_request) return try_fast_any(res, r, lim, load, now, out);
    const Limit &l0 = lim.limit[0];
    // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
    const int64_t tat0 = res.tat[0].load(boost::memory_order_acquire);
    const GcraStep st0 = gcra_step(tat0, now, l0.request_ns, params(l0));
    if (!st0.admit) return Fast::kNoCapacity;
    // The limits we computed with must still be the resource's: a redefine
    // publishes its word before it converts the TATs we just read.
    // acquire: pairs with write_limits()'s release store (resource.cpp).
    if (res.config_word.load(boost::memory_order_acquire) != lim.word) return Fast::kMiss;
    int64_t expected = tat0;
    // The one-limit case of charge_all_or_nothing (charge.hpp), whose
    // contended half it shares. acq_rel: pairs with every other CAS on this TAT.
    if (!res.tat[0].compare_exchange_strong(expected, st0.new_tat, boost::memory_order_acq_rel)) [[unlikely]] {
        return try_fast_contended(res, r, lim, load, now, expected, out);
    }
    count_admission(res.counters, load);
    PermitCode{0, r, me_, load, me_gen_, 0, 0}.pack(out);  // no load-cost limit: no TAT to carry
    return Fast::kGranted;
}

}  // namespace rq::detail
