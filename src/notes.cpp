// A waiting ticket's notes in its slot (layout.hpp, Slot): the load and wait
// start its owner notes for rqctl and for a head serving behind it, and the
// grant TAT a head that served it leaves there for the owner's permit. The
// slot word's transitions are queue.cpp's; these only read it, to know the
// notes belong to the ticket they name.
#include "core.hpp"

namespace rq::detail {
namespace {
constexpr auto kSeqCst = boost::memory_order_seq_cst;  // as every access to a slot word (queue.cpp)
}  // namespace

Engine::Behind Engine::queued_ticket(uint32_t r, uint32_t head, uint32_t t, QueuedTicket &out) {
    const QueueWord q = QueueWord::unpack(view_.resource(r).queue.load(kSeqCst));
    if (q.head != head || t - head >= q.tail - head) return Behind::kStop;
    Slot &s = view_.slot(r, t);
    out.word = s.word.load(kSeqCst);
    const SlotWord sw = SlotWord::unpack(out.word);
    if (sw.ticket != ticket_bits(t)) return Behind::kStop;
    if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) return Behind::kSkip;
    if (!queued_state(sw.state)) return Behind::kStop;
    // Its load as its owner noted it; not noted yet: it serves itself.
    // acquire: pairs with note_wait's release store of the tag.
    if (s.tag.load(boost::memory_order_acquire) != (kInfoValid | t)) return Behind::kStop;
    out.load = s.load.load(boost::memory_order_relaxed);
    out.since = s.since_ns.load(boost::memory_order_relaxed);
    if (out.load == 0 || out.load > RQ_MAX_AMOUNT) return Behind::kStop;
    return Behind::kQueued;
}

int64_t Engine::served_grant_tat(uint32_t r, uint32_t ticket) const {
    const Slot &s = view_.slot(r, ticket);
    // Read like a seqlock: the word, the grant TAT, the word again. If the
    // slot still names this ticket, served, g is what the head stored before
    // its CAS (hand_over); if another ticket has claimed it since (the head
    // passed us, so anyone may), the grant TAT is lost and settle refunds
    // nothing.
    const uint64_t w1 = s.word.load(kSeqCst);
    const int64_t g = s.since_ns.load(boost::memory_order_relaxed);
    // acquire: orders the load of g before the re-read of the word.
    boost::atomic_thread_fence(boost::memory_order_acquire);
    const uint64_t w2 = s.word.load(boost::memory_order_relaxed);
    const SlotWord sw = SlotWord::unpack(w2);
    const bool held = w1 == w2 && sw.ticket == ticket_bits(ticket) && sw.state == SlotState::kDone;
    return held && g > 0 ? g : 0;
}

void Engine::note_wait(uint32_t r, uint32_t ticket, uint64_t load, int64_t since) {
    Slot &s = view_.slot(r, ticket);
    s.load.store(load, boost::memory_order_relaxed);
    s.since_ns.store(since, boost::memory_order_relaxed);
    // release: pairs with the readers' acquire load of the tag (queued_ticket,
    // noted_since, inspect.cpp).
    s.tag.store(kInfoValid | ticket, boost::memory_order_release);
}

int64_t Engine::noted_since(uint32_t r, uint32_t ticket) const {
    const Slot &s = view_.slot(r, ticket);
    // acquire: pairs with note_wait's release store of the tag.
    if (s.tag.load(boost::memory_order_acquire) != (kInfoValid | ticket)) return 0;
    return s.since_ns.load(boost::memory_order_relaxed);
}

}  // namespace rq::detail
