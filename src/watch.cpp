// Watching: whose death a sleeper must hear of, and the checks that reclaim
// a dead process. A process dies with all its tickets, so watching is per
// process, and the kernel gives the notice (layout.hpp, the death word;
// process_table.cpp, the sentinel): nobody polls a process that can give it.
//
// Who watches whom, CLH-style: the waiter of ticket t watches the owners of
// the tickets ahead of it, nearest first, skipping its own, up to and
// including the first one whose owner is asleep watching further ahead (or
// the head); an awake or idle ticket (an rq_enqueue ticket no thread waits
// on) watches nobody, so the walk goes past it (ahead_of). When anyone in
// the chain dies, one right behind it hears, reclaims it (its tickets are
// abandoned, so the line moves past them), passes the news on to the other
// sleepers on that word (relay_deaths: the kernel wakes only one), and
// looks again. A head waiting for concurrency watches the holders
// (watch_holders): a holder's death gives its permits back. A head waiting
// for tokens watches nobody. When a ticket leaves the line alive (a
// timeout, a cancel, served by the head), those behind that watched it are
// woken to look again (queue.cpp, retarget_behind). So a line of 1,000
// sleepers costs no CPU, and a death is seen within milliseconds, also when
// the holder and the whole front of a line die at once: the first live
// waiter behind them hears of the last of them, and each reclaim reveals
// the next.
//
// Where notice cannot be had (a process without a sentinel, a kernel without
// futex_waitv), the watcher polls: it sleeps at most kWatchNs, then checks.
// A sleep with notice still ends after kBackstopNs and checks: a safety
// bound, not how deaths are found. Every slot transition this causes is
// queue.cpp's (abandon_dead, pass_head); the sleeps are queue.cpp's
// wait_turn and head_sleep, and lock.cpp's lock_slow.
#include "core.hpp"
#include "futex.hpp"

#include <algorithm>
#include <climits>

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


void Engine::ahead_of(uint32_t r, uint32_t head, uint32_t t, Ahead &out) const {
    out = Ahead{};
    // Bounded by the ring: a damaged queue word cannot make us walk it twice.
    const uint32_t n = std::min(t - head, view_.geo.queue_slots);
    for (uint32_t k = 1; k <= n; ++k) {
        const uint32_t x = t - k;
        const SlotWord sw = SlotWord::unpack(view_.slot(r, x).word.load(kSeqCst));
        uint32_t owner = sw.owner;
        bool asleep = sw.state == SlotState::kSleeping || sw.state == SlotState::kWatching ||
                      sw.state == SlotState::kHeadRateSleep || sw.state == SlotState::kHeadConcSleep;
        if (sw.ticket != ticket_bits(x)) {
            // Below the tail every ticket was claimed: another ticket here
            // is damage, watched by polling (reclaim_ticket_owner reports it
            // once it is head).
            owner = kNoOwner;
            asleep = false;
        } else {
            const bool gone = sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone;
            if (x == head && gone) {
                if (out.n == kMaxAhead) --out.n;
                out.ticket[out.n] = x;
                out.owner[out.n++] = owner;
                out.stuck = true;
                return;
            }
            if (gone || owner == me_) continue;
        }
        bool known = false;
        for (uint32_t i = 0; i < out.n; ++i) known |= out.owner[i] == owner && owner != kNoOwner;
        if (!known) {
            if (out.n == kMaxAhead) {
                out.more = true;
                return;
            }
            out.ticket[out.n] = x;
            out.owner[out.n++] = owner;
        }
        // An owner asleep watches those ahead of it, and the head is the
        // front: no need to look further. An awake or idle one (a ticket of
        // rq_enqueue that no thread waits on) watches nobody: look past it.
        if (asleep || x == head) return;
    }
}

void Engine::watch_death(uint32_t p, DeathWatch &w) {
    if (p >= view_.geo.max_processes || !have_futex_wait_any() || w.n == DeathWatch::kMax) {
        w.poll = true;
        return;
    }
    Shared<uint32_t> &word = view_.process(p).death_word;
    // acquire: pairs with the sentinel's release store of its tid
    // (process_table.cpp); the kernel's mark at death is a CAS.
    uint32_t v = word.load(boost::memory_order_acquire);
    for (;;) {
        if ((v & kDeathOwnerDied) != 0) {
            // The kernel woke one waiter; pass the news on to the others.
            futex_wake(&word, INT32_MAX);
            w.died = true;
            return;
        }
        if ((v & kDeathTidMask) == 0) {
            w.poll = true;  // no sentinel holds it: no notice
            return;
        }
        if ((v & kDeathWaiters) != 0) break;
        // seq_cst: the kernel wakes a waiter at the death only if it sees
        // this bit; we set it before we sleep on the value that has it.
        if (word.compare_exchange_weak(v, v | kDeathWaiters, boost::memory_order_seq_cst)) {
            v |= kDeathWaiters;
            break;
        }
    }
    w.word[w.n++] = FutexWord{&word, v};
}

void Engine::watch_holders(uint32_t r, DeathWatch &w) {
    for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
        if (p == me_) continue;
        // The process table first (64 bytes a slot): a holding row is a page
        // apart from the next, and only a registered process can still die.
        // acquire: pairs with the acq_rel CASes on the process word.
        if (ProcWord::unpack(view_.process(p).word.load(boost::memory_order_acquire)).state == ProcState::kFree) continue;
        const Holding &h = view_.holding(p, r);
        // relaxed: a hint of whom to watch; while we wait for concurrency
        // nobody else can take any, so holders only go.
        if (h.req.load(boost::memory_order_relaxed) == 0 && h.load.load(boost::memory_order_relaxed) == 0) continue;
        watch_death(p, w);
    }
}

int Engine::check_front(uint32_t r, uint32_t head, uint32_t stop) {
    Front f;
    scan_front(r, head, stop, f);
    for (uint32_t i = 0; i < f.n; ++i) {
        if (f.owner[i] == me_) continue;
        const int rc = reclaim_ticket_owner(r, f.ticket[i]);
        if (rc != RQ_OK) return rc;
    }
    return RQ_OK;
}

int Engine::check_ahead(uint32_t r, uint32_t head, uint32_t t, const Ahead &a) {
    for (uint32_t i = 0; i < a.n; ++i) {
        const int rc = reclaim_ticket_owner(r, a.ticket[i]);
        if (rc != RQ_OK) return rc;
    }
    return check_front(r, head, t);
}

void relay_deaths(const DeathWatch &w) noexcept {
    for (uint32_t i = 0; i < w.n; ++i) {
        const auto *word = static_cast<const Shared<uint32_t> *>(w.word[i].word);
        // acquire: pairs with the kernel's mark at the death (a CAS).
        if ((word->load(boost::memory_order_acquire) & kDeathOwnerDied) != 0) futex_wake(word, INT32_MAX);
    }
}

}  // namespace rq::detail
