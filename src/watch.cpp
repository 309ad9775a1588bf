// Watching the front of a line: which waiters check on whom, and the
// checks. A process dies with all its tickets, so watching is per process.
//
// The watchers are the first tickets of the first kWatchDistance + 1 distinct
// owners in the queue (the head's owner first): they sleep at most kWatchNs
// and, when the head has not moved for that long, check that the owners ahead
// of them are alive (the head checks those behind it), reclaiming any that is
// not. It takes kWatchDistance + 1 processes dying at once to leave no live
// watcher; for that case everyone else wakes every kBackstopNs and, if the
// head has not moved meanwhile, checks the front too. So 1,000 waiters cost
// about what three do, plus one wake-up a second each.
//
// This file decides who is dead and what to abandon; every slot transition
// it causes is queue.cpp's (abandon_dead, pass_head), and the watch duty in
// a waiter's loop is queue.cpp's wait_turn, which calls scan_front.
#include "core.hpp"

namespace rq::detail {
namespace {
// As every access to a queue or slot word: pairs with the handshakes drawn
// at the top of queue.cpp.
constexpr auto kSeqCst = boost::memory_order_seq_cst;
}  // namespace

// Collects, in queue order over [head, stop), the first ticket of each
// distinct owner, the head's first, until kWatchDistance + 1 owners are seen.
// Abandoned tickets after the head are skipped; slots that do not name their
// ticket (damage) count as one more owner, kNoOwner. Reads at most
// stop - head <= queue_slots slot words.
void Engine::scan_front(uint32_t r, uint32_t head, uint32_t stop, Front &f) {
    f.n = 0;
    // A damaged queue word may put stop far past head: never walk the ring twice.
    if (stop - head > view_.geo.queue_slots) stop = head + view_.geo.queue_slots;
    for (uint32_t x = head; x != stop && !f.full(); ++x) {
        SlotWord sw = SlotWord::unpack(view_.slot(r, x).word.load(kSeqCst));
        uint32_t owner = sw.ticket == ticket_bits(x) ? sw.owner : kNoOwner;
        if (x != head && owner != kNoOwner && (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone)) {
            continue;  // left the line, or already served
        }
        if (f.has(owner)) continue;
        f.ticket[f.n] = x;
        f.owner[f.n] = owner;
        ++f.n;
    }
}

// Reclaims the owner of ticket x if it is dead. An owner no live process can
// be (an index out of range, a free slot, a dead one whose reclaim left the
// ticket behind) gets its ticket abandoned directly.
int Engine::reclaim_ticket_owner(uint32_t r, uint32_t x) {
    Slot &s = view_.slot(r, x);
    uint64_t v = s.word.load(kSeqCst);
    SlotWord sw = SlotWord::unpack(v);
    // Read after the slot: if x is still head, the slot still belongs to x.
    const bool is_head = QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head == x;
    if (sw.ticket != ticket_bits(x)) {
        // Below the tail every ticket was claimed; a head whose slot names
        // another ticket can only come from a damaged segment.
        return is_head ? RQ_ECORRUPT : RQ_OK;
    }
    if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) {
        // An abandoned or served head nobody moved past: its passer died
        // between moving the head word and skipping it.
        return is_head ? pass_head(r, x) : RQ_OK;
    }
    if (sw.owner == me_) return RQ_OK;
    if (sw.owner < view_.geo.max_processes) {
        const Result<Reclaim> rec = reclaim_if_dead(sw.owner);
        if (rec.kind == Reclaim::kFailed) return rec.rc;
        if (alive(sw.owner)) return RQ_OK;
        v = s.word.load(kSeqCst);  // the reclaim usually abandoned it already
        sw = SlotWord::unpack(v);
        if (sw.ticket != ticket_bits(x) || sw.state == SlotState::kAbandoned) return RQ_OK;
    }
    return abandon_dead(r, x, v);
}

// For a waiting head: the watchers behind it, so that the ones watching it
// are alive.
int Engine::reclaim_dead_behind(uint32_t r, uint32_t head) {
    QueueWord q = QueueWord::unpack(view_.resource(r).queue.load(kSeqCst));
    if (head - q.head >= q.tail - q.head) return RQ_OK;
    Front f;
    scan_front(r, head, q.tail, f);
    for (uint32_t i = 1; i < f.n; ++i) {
        if (f.owner[i] == me_) continue;
        int rc = reclaim_ticket_owner(r, f.ticket[i]);
        if (rc != RQ_OK) return rc;
    }
    return RQ_OK;
}

}  // namespace rq::detail
