// The ticketed FIFO wait queue of one resource.
//
// Tickets are uint32, taken in order. The queue word holds head and tail;
// ticket t owns ring slot t % queue_slots while head <= t < tail (see
// layout.hpp for the slot states). Only the head takes from the limits, so a
// stacked acquire is taken at one instant; so does an acquirer that found the
// line empty (the line-free paths in client.cpp, try_fast and try_fast_conc),
// which gives back what it took if a CAS fails and then joins the line.
//
// Two Dekker-style handshakes keep wake-ups exact (all seq_cst):
//   passer:  CAS queue word (head = t)      then load slot t
//   owner:   CAS slot t (sleep state)       then load queue word
// so either the passer sees the owner asleep and wakes it, or the owner sees
// that it is head and does not sleep. Nobody calls FUTEX_WAKE unless a slot
// word says its owner sleeps, and a pass wakes only the next owner (and, when
// needed, the one behind it so that it starts watching): no thundering herd.
//
// Liveness: a process dies with all its tickets, so watching is per process.
// The watchers are the first tickets of the first kWatchDistance + 1 distinct
// owners in the queue (the head's owner first): they sleep at most kWatchNs
// and, when the head has not moved for that long, check that the owners ahead
// of them are alive (the head checks those behind it), reclaiming any that is
// not. It takes kWatchDistance + 1 processes dying at once to leave no live
// watcher; for that case everyone else wakes every kBackstopNs and, if the
// head has not moved meanwhile, checks the front too. So 1,000 waiters cost
// about what three do, plus one wake-up a second each.
#include "clock.hpp"
#include "core.hpp"
#include "futex.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>

namespace rq::detail {
namespace {

constexpr auto kSeqCst = boost::memory_order_seq_cst;

// Spinning before a sleep (wait_turn): only the ticket right behind the
// head, for at most kSpinNs.
constexpr uint32_t kSpinDistance = 1;
constexpr int64_t kSpinNs = 20'000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

uint32_t tbits(uint32_t t) { return t & kTicketMask; }
bool queued_state(SlotState s) {
    return s == SlotState::kWaiting || s == SlotState::kSleeping || s == SlotState::kWatching;
}
bool head_state(SlotState s) {
    return s == SlotState::kHead || s == SlotState::kHeadRateSleep || s == SlotState::kHeadConcSleep;
}
uint64_t with_state(SlotWord w, SlotState s) {
    w.state = s;
    return w.pack();
}

}  // namespace

thread_local CancelWord tl_cancel;

bool cancel_requested() noexcept {
    if (tl_cancel.word == nullptr) return false;
    // acquire: pairs with rq_cancel's CAS (client.cpp, cancel_ticket).
    return static_cast<uint32_t>(std::atomic_ref<uint64_t>(*tl_cancel.word).load(std::memory_order_acquire)) !=
           tl_cancel.waiting;
}

// Every sleep of a waiter: on its slot word, and also on its ticket's cancel
// word while it runs rq_wait.
static void sleep_on(const Shared<uint64_t> &word, uint32_t expected, int64_t until) {
    if (tl_cancel.word == nullptr) {
        futex_wait(&word, expected, until);
    } else {
        futex_wait2(&word, expected, tl_cancel.word, tl_cancel.waiting, until);
    }
}

// Takes the next ticket. at_head: the queue was empty when we claimed it, so
// the head word already names our ticket (nothing can pass a ticket that has
// not been claimed, and nobody else can claim it).
int Engine::enqueue(uint32_t r, uint32_t &ticket, bool &at_head) {
    Resource &res = view_.resource(r);
    const uint32_t n = view_.geo.queue_slots;
    int odd = 0;
    for (int spins = 0; spins < 1'000'000; ++spins) {
        uint64_t qraw = res.queue.load(kSeqCst);
        QueueWord q = QueueWord::unpack(qraw);
        uint32_t depth = q.tail - q.head;
        if (depth > n) return RQ_ECORRUPT;
        if (depth == n) return RQ_ENOSPC;
        const uint32_t t = q.tail;
        Slot &s = view_.slot(r, t);
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket == tbits(t)) {
            // Claimed by someone whose tail bump is not in yet: help it along.
            res.queue.compare_exchange_strong(qraw, QueueWord{q.head, t + 1}.pack(), kSeqCst);
            continue;
        }
        if (sw.ticket != tbits(t - n)) {
            // Either our snapshot is stale or the ring is damaged.
            if (res.queue.load(kSeqCst) == qraw && ++odd > 16) return RQ_ECORRUPT;
            continue;
        }
        // The claim: the single transition that creates ticket t with its owner.
        if (!s.word.compare_exchange_strong(v, SlotWord{tbits(t), SlotState::kWaiting, me_}.pack(), kSeqCst)) {
            continue;
        }
        for (;;) {
            QueueWord cur = QueueWord::unpack(qraw);
            if (cur.tail != t) break;  // a helper bumped it
            if (res.queue.compare_exchange_weak(qraw, QueueWord{cur.head, t + 1}.pack(), kSeqCst)) break;
        }
        ticket = t;
        at_head = q.head == t;
        return RQ_OK;
    }
    return RQ_EINTERNAL;
}

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
        uint32_t owner = sw.ticket == tbits(x) ? sw.owner : kNoOwner;
        if (x != head && owner != kNoOwner && (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone)) {
            continue;  // left the line, or already served
        }
        if (f.has(owner)) continue;
        f.ticket[f.n] = x;
        f.owner[f.n] = owner;
        ++f.n;
    }
}

int Engine::wait_turn(uint32_t r, uint32_t t, int64_t deadline) {
    Resource &res = view_.resource(r);
    Slot &s = view_.slot(r, t);
    const uint32_t n = view_.geo.queue_slots;
    uint32_t watched_head = t;  // no head watched yet
    int64_t watched_since = 0;
    int64_t spin_until = 0;
    uint32_t spins = 0;
    const uint32_t first_head = QueueWord::unpack(res.queue.load(kSeqCst)).head;
    for (;;) {
        QueueWord q = QueueWord::unpack(res.queue.load(kSeqCst));
        if (q.head == t) {
            // A passer walks past served tickets one CAS at a time, so the
            // head word may name ours for a moment after the head served it:
            // then move on past it ourselves; never serve it a second time.
            const SlotWord hw = SlotWord::unpack(s.word.load(kSeqCst));
            if (hw.ticket == tbits(t) && hw.state == SlotState::kDone) {
                pass_head(r, t);
                return kServed;
            }
            return RQ_OK;
        }
        if (t - q.head > n) return passed_over(r, t, q.head);
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != tbits(t) || sw.owner != me_) {
            // Served, passed, and the slot reused since we read the queue word?
            return passed_over(r, t, QueueWord::unpack(res.queue.load(kSeqCst)).head);
        }
        if (sw.state == SlotState::kDone) return kServed;  // the head served us (serve_behind)
        if (head_state(sw.state)) return RQ_OK;
        if (sw.state == SlotState::kSleeping || sw.state == SlotState::kWatching) {
            // A promoter changed our sleep state while we were awake: take it back.
            s.word.compare_exchange_strong(v, with_state(sw, SlotState::kWaiting), kSeqCst);
            continue;
        }
        if (sw.state != SlotState::kWaiting) return RQ_EINTERNAL;
        if (cancel_requested()) return RQ_ECANCELED;
        int64_t now = now_ns();
        Front f;
        if (now >= deadline) {
            // Short timeouts never reach the watch interval: if the head did
            // not move during our whole wait, check the front once on the way
            // out, so that a dead head cannot outlast every impatient caller.
            if (q.head == first_head) {
                scan_front(r, q.head, t, f);
                for (uint32_t i = 0; i < f.n; ++i) {
                    if (f.owner[i] != me_) reclaim_ticket_owner(r, f.ticket[i]);
                }
            }
            return RQ_ETIMEDOUT;
        }
        // Next in line: spin a little before sleeping. A head serves and
        // passes in well under a microsecond, a futex sleep and wake costs
        // tens; sleeping at once would turn every handoff under contention
        // into a context switch. Yield while spinning, so that a head on an
        // oversubscribed CPU gets to run.
        if (t - q.head <= kSpinDistance) {
            if (spin_until == 0) spin_until = now + kSpinNs;
            if (now < spin_until) {
                for (int i = 0; i < 64; ++i) cpu_relax();
                if ((++spins & 7) == 0) sched_yield();
                continue;
            }
        }
        // Are we a watcher: our process's first ticket, behind at most
        // kWatchDistance other processes?
        scan_front(r, q.head, t, f);
        const bool timed = !f.full() && !f.has(me_);
        // Watch duty: when the head has not moved for kWatchNs (kBackstopNs
        // for the others), check that the owners at the front are alive.
        if (q.head != watched_head) {
            watched_head = q.head;
            watched_since = now;
        } else if (now - watched_since >= (timed ? kWatchNs : kBackstopNs)) {
            for (uint32_t i = 0; i < f.n; ++i) {
                if (f.owner[i] == me_) continue;
                int rc = reclaim_ticket_owner(r, f.ticket[i]);
                if (rc != RQ_OK) return rc;
            }
            watched_since = now;
            continue;
        }
        const uint64_t sv = with_state(sw, timed ? SlotState::kWatching : SlotState::kSleeping);
        if (!s.word.compare_exchange_strong(v, sv, kSeqCst)) continue;
        // Dekker with pass_head/abandon/promote_behind: they change the head
        // word or a slot ahead of us, then read our slot; we published our
        // sleep state, now read theirs again.
        QueueWord q2 = QueueWord::unpack(res.queue.load(kSeqCst));
        bool now_watcher = false;
        if (!timed && q2.head != t) {
            scan_front(r, q2.head, t, f);
            now_watcher = !f.full() && !f.has(me_);
        }
        if (q2.head == t || now_watcher) {
            uint64_t e = sv;
            s.word.compare_exchange_strong(e, with_state(sw, SlotState::kWaiting), kSeqCst);
            continue;
        }
        int64_t until = std::min(deadline, now + (timed ? kWatchNs : kBackstopNs));
        sleep_on(s.word, static_cast<uint32_t>(sv), until);
        uint64_t e = sv;
        // Fails when we were granted or promoted meanwhile; the loop reads why.
        s.word.compare_exchange_strong(e, with_state(sw, SlotState::kWaiting), kSeqCst);
    }
}

// Our ticket t, not abandoned by us, lies behind the head: only a ticket the
// head served on our behalf is passed over while its owner lives (a passer
// abandons only the tickets of dead owners), so kServed, even when the slot
// was claimed again since. Anything else is damage.
int Engine::passed_over(uint32_t r, uint32_t t, uint32_t head) {
    if (static_cast<int32_t>(head - t) <= 0) return RQ_ECORRUPT;
    const SlotWord sw = SlotWord::unpack(view_.slot(r, t).word.load(kSeqCst));
    if (sw.ticket != tbits(t) || sw.state == SlotState::kDone) return kServed;
    return RQ_ECORRUPT;
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
    if (sw.ticket != tbits(x)) {
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
        int rc = reclaim_if_dead(sw.owner);
        if (rc < 0) return rc;
        if (alive(sw.owner)) return RQ_OK;
        v = s.word.load(kSeqCst);  // the reclaim usually abandoned it already
        sw = SlotWord::unpack(v);
        if (sw.ticket != tbits(x) || sw.state == SlotState::kAbandoned) return RQ_OK;
    }
    if (s.word.compare_exchange_strong(v, with_state(sw, SlotState::kAbandoned), kSeqCst)) {
        promote_behind(r, x);
        if (QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head == x) return pass_head(r, x);
    }
    return RQ_OK;
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

bool Engine::abandon(uint32_t r, uint32_t t) {
    Slot &s = view_.slot(r, t);
    bool served = false;
    for (int tries = 0; tries < 1000; ++tries) {
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != tbits(t) || sw.owner != me_) {
            // Reused: the head passed us, so it served us (passed_over).
            return passed_over(r, t, QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head) == kServed;
        }
        if (sw.state == SlotState::kAbandoned) break;
        // Served by the head meanwhile: the tokens are taken, the permit is
        // ours (the caller returns it: a grant beats a timeout or a cancel).
        if (sw.state == SlotState::kDone) {
            served = true;
            break;
        }
        if (s.word.compare_exchange_strong(v, with_state(sw, SlotState::kAbandoned), kSeqCst)) break;
    }
    // Those behind us are now closer to the head: the first of them may have
    // to start watching.
    promote_behind(r, t);
    // If we are head (granted, or about to be), move the head past us; the
    // head CAS makes this safe to race with a passer that skips us too.
    if (QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head == t) pass_head(r, t);
    return served;
}

int Engine::pass_head(uint32_t r, uint32_t t) {
    Resource &res = view_.resource(r);
    const uint32_t n = view_.geo.queue_slots;
    uint64_t qraw = res.queue.load(kSeqCst);
    for (uint32_t skips = 0; skips <= n;) {
        QueueWord q = QueueWord::unpack(qraw);
        if (q.head != t) return RQ_OK;
        const uint32_t next = t + 1;
        // tail == t: ticket t was claimed but its tail bump is not in yet.
        const uint32_t tail = q.tail == t ? next : q.tail;
        if (!res.queue.compare_exchange_weak(qraw, QueueWord{next, tail}.pack(), kSeqCst)) continue;
        crash_point(CrashPoint::kInPass);
        if (tail == next) return RQ_OK;  // nobody queued: a later claimer sees head == its ticket
        Slot &s = view_.slot(r, next);
        for (int tries = 0;; ++tries) {
            if (tries > 1000) return RQ_ECORRUPT;
            uint64_t v = s.word.load(kSeqCst);
            SlotWord sw = SlotWord::unpack(v);
            if (sw.ticket != tbits(next)) {
                // Below the tail, so it was claimed; unless its owner saw
                // head == next, served, passed, and the slot was reused since.
                if (QueueWord::unpack(res.queue.load(kSeqCst)).head != next) return RQ_OK;
                return RQ_ECORRUPT;
            }
            if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) break;  // skip it
            if (head_state(sw.state)) return RQ_OK;
            if (!queued_state(sw.state)) return RQ_ECORRUPT;
            // A sleeper that died can never take its turn: skip it here, so a
            // run of dead tickets cannot reach the head behind dead watchers.
            // (Its holdings and other tickets are reclaimed by whoever finds
            // it next; the process slot when someone needs it.)
            SlotState grant = SlotState::kHead;
            if (sw.state != SlotState::kWaiting && sw.owner != me_ &&
                (sw.owner >= view_.geo.max_processes || !alive(sw.owner))) {
                grant = SlotState::kAbandoned;
            }
            if (!s.word.compare_exchange_strong(v, with_state(sw, grant), kSeqCst)) continue;
            if (grant == SlotState::kAbandoned) break;
            if (sw.state != SlotState::kWaiting) futex_wake(&s.word, 1);
            promote_behind(r, next);
            return RQ_OK;
        }
        t = next;  // skip the abandoned ticket
        ++skips;
        qraw = res.queue.load(kSeqCst);
    }
    return RQ_ECORRUPT;
}

// Wakes untimed sleepers that are now watchers (see scan_front) so that they
// sleep bounded. The new state is kWatching, not kWaiting: if we die before
// the futex_wake, a later grant still sees a sleeper and wakes it.
void Engine::promote_behind(uint32_t r, uint32_t) {
    QueueWord q = QueueWord::unpack(view_.resource(r).queue.load(kSeqCst));
    if (q.tail - q.head < 2) return;
    Front f;
    scan_front(r, q.head, q.tail, f);
    for (uint32_t i = 1; i < f.n; ++i) {
        Slot &s = view_.slot(r, f.ticket[i]);
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != tbits(f.ticket[i]) || sw.state != SlotState::kSleeping) continue;
        if (s.word.compare_exchange_strong(v, with_state(sw, SlotState::kWatching), kSeqCst)) {
            futex_wake(&s.word, 1);
        }
    }
}

void Engine::wake_head(uint32_t r, bool conc_only) {
    Resource &res = view_.resource(r);
    QueueWord q = QueueWord::unpack(res.queue.load(kSeqCst));
    if (q.head == q.tail) return;
    Slot &s = view_.slot(r, q.head);
    uint64_t v = s.word.load(kSeqCst);
    SlotWord sw = SlotWord::unpack(v);
    if (sw.ticket != tbits(q.head)) return;
    bool sleeping = sw.state == SlotState::kHeadConcSleep || (!conc_only && sw.state == SlotState::kHeadRateSleep);
    if (sleeping && s.word.compare_exchange_strong(v, with_state(sw, SlotState::kHead), kSeqCst)) {
        futex_wake(&s.word, 1);
    }
}

int Engine::head_sleep(uint32_t r, uint32_t t, SlotState how, int64_t until, const SleepCheck &still) {
    Slot &s = view_.slot(r, t);
    uint64_t v = s.word.load(kSeqCst);
    SlotWord sw = SlotWord::unpack(v);
    // (A head that found the line empty still has its claim state, kWaiting.)
    if (sw.ticket != tbits(t) || sw.owner != me_ || sw.state == SlotState::kDone ||
        sw.state == SlotState::kAbandoned) {
        return RQ_EINTERNAL;
    }
    const uint64_t sv = with_state(sw, how);
    if (!s.word.compare_exchange_strong(v, sv, kSeqCst)) return RQ_OK;
    // Dekker with wake_head(): we published the sleep state; re-check the
    // condition that a waker changes before it looks at our slot.
    if (still() && !cancel_requested()) sleep_on(s.word, static_cast<uint32_t>(sv), until);
    uint64_t e = sv;
    s.word.compare_exchange_strong(e, with_state(sw, SlotState::kHead), kSeqCst);
    return RQ_OK;
}

int Engine::abandon_owned(uint32_t r, uint32_t p) {
    Resource &res = view_.resource(r);
    const uint32_t n = view_.geo.queue_slots;
    QueueWord q = QueueWord::unpack(res.queue.load(kSeqCst));
    uint32_t depth = q.tail - q.head;
    if (depth > n) return RQ_ECORRUPT;
    // [head, tail]: the slot at tail may hold a claim whose tail bump is not in.
    for (uint32_t i = 0; i <= depth && i < n; ++i) {
        const uint32_t t = q.head + i;
        Slot &s = view_.slot(r, t);
        for (int tries = 0; tries < 1000; ++tries) {
            uint64_t v = s.word.load(kSeqCst);
            SlotWord sw = SlotWord::unpack(v);
            if (sw.ticket != tbits(t) || sw.owner != p) break;
            if (sw.state != SlotState::kAbandoned && sw.state != SlotState::kDone &&
                !s.word.compare_exchange_strong(v, with_state(sw, SlotState::kAbandoned), kSeqCst)) {
                continue;
            }
            promote_behind(r, t);
            if (QueueWord::unpack(res.queue.load(kSeqCst)).head == t) {
                int rc = pass_head(r, t);
                if (rc != RQ_OK) return rc;
            }
            break;
        }
    }
    return RQ_OK;
}

}  // namespace rq::detail
