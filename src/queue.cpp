// The ticketed FIFO wait queue of one resource: the queue-slot state
// machine. Every transition of a slot word (layout.hpp draws the states)
// and of the queue word happens in this file, and nowhere else.
//
// Tickets are uint32, taken in order. The queue word holds head and tail;
// ticket t owns ring slot t % queue_slots while head <= t < tail. Only the
// head takes from the limits (head.cpp), so a stacked acquire is taken at one
// instant; so does an acquirer that found the line empty (line_free.hpp).
//
// Dekker-style handshakes keep wake-ups exact (all seq_cst):
//   passer:  CAS queue word (head = t)      then load slot t
//   owner:   CAS slot t (sleep state)       then load queue word
// so either the passer sees the owner asleep and wakes it, or the owner sees
// that it is head and does not sleep; and likewise
//   leaver:  CAS its slot (kAbandoned/kDone) then load the slots behind
//   owner:   CAS slot t (sleep state)       then load the slots ahead
// so either one that leaves the line alive sees the waiters that watched it
// asleep and wakes them (retarget_behind), or they see it gone and watch the
// next one ahead. Nobody calls FUTEX_WAKE unless a slot word says its owner
// sleeps, and a pass wakes only the next owner: no thundering herd. Whom a
// sleeper watches, and the checks, are watch.cpp's; the transitions they
// cause are this file's (abandon_dead).
//
// Memory orders: every access to a queue or slot word is seq_cst, because
// the handshakes above are Dekker-style (a store, then a load of the other
// side's word). The slot's noted load and wait start (note_wait) are
// published by a release store of its tag; served_grant_tat reads them like
// a seqlock.
#include "clock.hpp"
#include "core.hpp"
#include "futex.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>

namespace rq::detail {
namespace {

// Every access to a queue or slot word (see "Memory orders" above): each
// pairs with the other side's access in the handshakes drawn at the top.
constexpr auto kSeqCst = boost::memory_order_seq_cst;

// Spinning before a sleep (wait_turn): only the ticket right behind the
// head, for at most kSpinNs. A head serves and passes in well under a
// microsecond, a futex sleep and wake costs tens of microseconds (DESIGN:
// 27 us median here): 20 us covers a handoff without a sleep.
constexpr uint32_t kSpinDistance = 1;
constexpr int64_t kSpinNs = 20'000;
// Pauses per spin round (about 64 x 40 ns here), and a sched_yield every
// kSpinYieldEvery rounds so that a head on an oversubscribed CPU gets to run.
constexpr int kSpinPauses = 64;
constexpr uint32_t kSpinYieldEvery = 8;
// enqueue: attempts at claiming the tail slot. Each lost attempt means
// another process claimed or bumped the tail meanwhile; a million in a row
// would take every other process looping too (damage, or a livelock).
constexpr int kMaxEnqueueTries = 1'000'000;
// enqueue: times the tail slot may name neither its ticket nor the ticket a
// lap before while the queue word stays put, before that is damage (a stale
// snapshot changes the queue word).
constexpr int kMaxStaleTail = 16;

uint64_t with_state(SlotWord w, SlotState s) {
    w.state = s;
    return w.pack();
}

// Every sleep of a waiter: on its slot word, on its ticket's cancel word
// while it runs rq_wait (tickets.cpp), and on the death words it watches
// (watch.cpp). Without futex_waitv the watcher polls (watch_death set
// w.poll, so `until` is bounded) and the cancel word is polled every
// kFallbackNs.
void sleep_on(const Shared<uint64_t> &word, uint32_t expected, const DeathWatch *w, int64_t until) {
    if (tl_cancel.word == nullptr && (w == nullptr || w->n == 0)) {
        futex_wait(&word, expected, until);
        return;
    }
    FutexWord words[DeathWatch::kMax + 2];
    uint32_t n = 0;
    words[n++] = FutexWord{&word, expected};
    if (tl_cancel.word != nullptr) words[n++] = FutexWord{tl_cancel.word, tl_cancel.waiting};
    for (uint32_t i = 0; w != nullptr && i < w->n; ++i) words[n++] = w->word[i];
    if (futex_wait_any(words, n, until) != FutexResult::kUnsupported) {
        if (w != nullptr) relay_deaths(*w);
        return;
    }
    const int64_t cap = now_ns() + kFallbackNs;
    futex_wait(&word, expected, until < cap ? until : cap);
}

}  // namespace

// Takes the next ticket. at_head: the queue was empty when we claimed it, so
// the head word already names our ticket (nothing can pass a ticket that has
// not been claimed, and nobody else can claim it).
int Engine::enqueue(uint32_t r, uint32_t &ticket, bool &at_head) {
    Resource &res = view_.resource(r);
    const uint32_t n = view_.geo.queue_slots;
    int odd = 0;
    for (int tries = 0; tries < kMaxEnqueueTries; ++tries) {
        uint64_t qraw = res.queue.load(kSeqCst);
        QueueWord q = QueueWord::unpack(qraw);
        uint32_t depth = q.tail - q.head;
        if (depth > n) return RQ_ECORRUPT;
        if (depth == n) return RQ_ENOSPC;
        const uint32_t t = q.tail;
        Slot &s = view_.slot(r, t);
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket == ticket_bits(t)) {
            // Claimed by someone whose tail bump is not in yet: help it along.
            res.queue.compare_exchange_strong(qraw, QueueWord{q.head, t + 1}.pack(), kSeqCst);
            continue;
        }
        if (sw.ticket != ticket_bits(t - n)) {
            // Either our snapshot is stale or the ring is damaged.
            if (res.queue.load(kSeqCst) == qraw && ++odd > kMaxStaleTail) return RQ_ECORRUPT;
            continue;
        }
        // The claim: the single transition that creates ticket t with its owner.
        if (!s.word.compare_exchange_strong(v, SlotWord{ticket_bits(t), SlotState::kWaiting, me_}.pack(), kSeqCst)) {
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

Result<Turn> Engine::wait_turn(uint32_t r, uint32_t t, int64_t deadline) {
    Resource &res = view_.resource(r);
    Slot &s = view_.slot(r, t);
    const uint32_t n = view_.geo.queue_slots;
    int64_t checked_at = 0;  // when we last looked at those ahead for ourselves
    int64_t dying = kDyingNs / 2;  // after a notice: the interval at which we look again
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
            if (hw.ticket == ticket_bits(t) && hw.state == SlotState::kDone) {
                pass_head(r, t);
                retarget_behind(r, t, me_);
                return {Turn::kServed};
            }
            return {Turn::kHead};
        }
        if (t - q.head > n) return passed_over(r, t, q.head);
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != ticket_bits(t) || sw.owner != me_) {
            // Served, passed, and the slot reused since we read the queue word?
            return passed_over(r, t, QueueWord::unpack(res.queue.load(kSeqCst)).head);
        }
        if (sw.state == SlotState::kDone) {
            // The head served us (serve_behind). We leave the line alive:
            // those behind that watched us look again (the head that served
            // us may die before its own retarget).
            retarget_behind(r, t, me_);
            return {Turn::kServed};
        }
        if (head_state(sw.state)) return {Turn::kHead};
        if (sw.state == SlotState::kSleeping || sw.state == SlotState::kWatching) {
            // A retarget changed our sleep state while we were awake: take it back.
            s.word.compare_exchange_strong(v, with_state(sw, SlotState::kWaiting), kSeqCst);
            continue;
        }
        if (sw.state != SlotState::kWaiting) return {Turn::kFailed, RQ_EINTERNAL};
        if (cancel_requested()) return {Turn::kFailed, RQ_ECANCELED};
        const int64_t now = now_ns();
        if (now >= deadline) {
            // Short timeouts never reach the watch interval: if the head did
            // not move during our whole wait, check the front once on the way
            // out, so that a dead head cannot outlast every impatient caller.
            if (q.head == first_head) check_front(r, q.head, t);
            return {Turn::kFailed, RQ_ETIMEDOUT};
        }
        // Next in line: spin a little before sleeping (kSpinNs); sleeping
        // at once would turn every handoff under contention into a context
        // switch.
        if (t - q.head <= kSpinDistance) {
            if (spin_until == 0) spin_until = now + kSpinNs;
            if (now < spin_until) {
                for (int i = 0; i < kSpinPauses; ++i) cpu_relax();
                if (++spins % kSpinYieldEvery == 0) sched_yield();
                continue;
            }
        }
        // Whose death we must hear of while we sleep: the processes right
        // ahead of us (watch.cpp).
        Ahead a;
        ahead_of(r, q.head, t, a);
        if (a.stuck) {
            // A head left abandoned or served: its passer died before
            // moving past it.
            const int rc = reclaim_ticket_owner(r, a.ticket[a.n - 1]);
            if (rc != RQ_OK) return {Turn::kFailed, rc};
            continue;
        }
        DeathWatch w;
        for (uint32_t i = 0; i < a.n; ++i) watch_death(a.owner[i], w);
        w.poll |= a.more;
        // How long we may sleep before we look for ourselves: not at all
        // after a notice (then at growing intervals while the liveness lock
        // outlives it), kWatchNs without notice, kBackstopNs with.
        dying = w.died ? std::min(dying * 2, kWatchNs) : kDyingNs / 2;
        const int64_t period = w.died ? dying : w.poll ? kWatchNs : kBackstopNs;
        if (checked_at == 0) checked_at = now;
        if (w.died || now - checked_at >= period) {
            checked_at = now;
            const int rc = check_ahead(r, q.head, t, a);
            if (rc != RQ_OK) return {Turn::kFailed, rc};
            Ahead after;
            ahead_of(r, QueueWord::unpack(res.queue.load(kSeqCst)).head, t, after);
            if (!after.same(a)) continue;  // someone was reclaimed, or left: look again
        }
        const bool timed = w.died || w.poll;
        const uint64_t sv = with_state(sw, timed ? SlotState::kWatching : SlotState::kSleeping);
        if (!s.word.compare_exchange_strong(v, sv, kSeqCst)) continue;
        // Dekker with pass_head and with abandon/retarget_behind: they change
        // the head word or a slot ahead of us, then read our slot; we
        // published our sleep state, now read theirs again.
        const QueueWord q2 = QueueWord::unpack(res.queue.load(kSeqCst));
        bool moved = q2.head == t;
        if (!moved) {
            Ahead a2;
            ahead_of(r, q2.head, t, a2);
            moved = !a2.same(a);
        }
        if (moved) {
            uint64_t e = sv;
            s.word.compare_exchange_strong(e, with_state(sw, SlotState::kWaiting), kSeqCst);
            continue;
        }
        sleep_on(s.word, static_cast<uint32_t>(sv), &w, std::min(deadline, checked_at + period));
        uint64_t e = sv;
        // Fails when we were granted or retargeted meanwhile; the loop reads why.
        s.word.compare_exchange_strong(e, with_state(sw, SlotState::kWaiting), kSeqCst);
    }
}

// Our ticket t, not abandoned by us, lies behind the head: only a ticket the
// head served on our behalf is passed over while its owner lives (a passer
// abandons only the tickets of dead owners), so kServed, even when the slot
// was claimed again since. Anything else is damage.
Result<Turn> Engine::passed_over(uint32_t r, uint32_t t, uint32_t head) {
    if (static_cast<int32_t>(head - t) <= 0) return {Turn::kFailed, RQ_ECORRUPT};
    const SlotWord sw = SlotWord::unpack(view_.slot(r, t).word.load(kSeqCst));
    if (sw.ticket != ticket_bits(t) || sw.state == SlotState::kDone) return {Turn::kServed};
    return {Turn::kFailed, RQ_ECORRUPT};
}

// Abandons ticket x for an owner that is dead (or that no live process can
// be): one CAS from `word`, as the caller read it when it found the owner
// dead; then the one behind looks again at whom it watches, and a head is
// passed on.
int Engine::abandon_dead(uint32_t r, uint32_t x, uint64_t word) {
    Slot &s = view_.slot(r, x);
    if (s.word.compare_exchange_strong(word, with_state(SlotWord::unpack(word), SlotState::kAbandoned), kSeqCst)) {
        retarget_behind(r, x, SlotWord::unpack(word).owner);
        if (QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head == x) return pass_head(r, x);
    }
    return RQ_OK;
}

bool Engine::abandon(uint32_t r, uint32_t t) {
    Slot &s = view_.slot(r, t);
    bool served = false;
    for (int tries = 0; tries < kMaxCasTries; ++tries) {
        uint64_t v = s.word.load(kSeqCst);
        SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != ticket_bits(t) || sw.owner != me_) {
            // Reused: the head passed us, so it served us (passed_over).
            return passed_over(r, t, QueueWord::unpack(view_.resource(r).queue.load(kSeqCst)).head).kind == Turn::kServed;
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
    // Those right behind us watched us: they look again (watch.cpp).
    retarget_behind(r, t, me_);
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
            if (tries > kMaxCasTries) return RQ_ECORRUPT;
            uint64_t v = s.word.load(kSeqCst);
            SlotWord sw = SlotWord::unpack(v);
            if (sw.ticket != ticket_bits(next)) {
                // Below the tail, so it was claimed; unless its owner saw
                // head == next, served, passed, and the slot was reused since.
                if (QueueWord::unpack(res.queue.load(kSeqCst)).head != next) return RQ_OK;
                return RQ_ECORRUPT;
            }
            if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) break;  // skip it
            if (head_state(sw.state)) return RQ_OK;
            if (!queued_state(sw.state)) return RQ_ECORRUPT;
            // A sleeper that died can never take its turn: skip it here, so a
            // run of dead tickets cannot reach the head.
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
            return RQ_OK;
        }
        t = next;  // skip the abandoned ticket
        ++skips;
        qraw = res.queue.load(kSeqCst);
    }
    return RQ_ECORRUPT;
}

// Ticket t (owned by process `left`, or a batch ending at t when left is
// kNoOwner) left the line alive. Wakes, to look again, every sleeper behind
// it whose watch (watch.cpp, ahead_of) reached t: one whose walk back met no
// ticket asleep of another process first. So the walk forward stops once it
// has passed asleep tickets of two processes, or more owners than a waiter
// watches (kMaxAhead: those behind poll). The woken state is kWatching, not
// kWaiting: if we die before the futex_wake, a later grant still sees a
// sleeper and wakes it.
void Engine::retarget_behind(uint32_t r, uint32_t t, uint32_t left) {
    const QueueWord q = QueueWord::unpack(view_.resource(r).queue.load(kSeqCst));
    // Bounded by the ring: a damaged queue word cannot make us walk it twice.
    const uint32_t n = std::min(q.tail - t, view_.geo.queue_slots);
    uint32_t asleep_owner = kNoOwner;  // the one process whose tickets seen so far are asleep
    uint32_t owners[kMaxAhead + 1];
    uint32_t n_owners = 0;
    for (uint32_t k = 1; k < n; ++k) {
        Slot &s = view_.slot(r, t + k);
        uint64_t v = s.word.load(kSeqCst);
        const SlotWord sw = SlotWord::unpack(v);
        if (sw.ticket != ticket_bits(t + k)) return;
        if (sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) continue;
        bool seen = false;
        for (uint32_t i = 0; i < n_owners; ++i) seen |= owners[i] == sw.owner;
        if (!seen) {
            if (n_owners == kMaxAhead + 1) return;
            owners[n_owners++] = sw.owner;
        }
        const bool reaches = asleep_owner == kNoOwner || asleep_owner == sw.owner;
        if (sw.owner != left && reaches && sw.state == SlotState::kSleeping &&
            s.word.compare_exchange_strong(v, with_state(sw, SlotState::kWatching), kSeqCst)) {
            futex_wake(&s.word, 1);
        }
        if (sw.state == SlotState::kSleeping || sw.state == SlotState::kWatching) {
            if (asleep_owner == kNoOwner) {
                asleep_owner = sw.owner;
            } else if (asleep_owner != sw.owner) {
                return;
            }
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
    if (sw.ticket != ticket_bits(q.head)) return;
    bool sleeping = sw.state == SlotState::kHeadConcSleep || (!conc_only && sw.state == SlotState::kHeadRateSleep);
    if (sleeping && s.word.compare_exchange_strong(v, with_state(sw, SlotState::kHead), kSeqCst)) {
        futex_wake(&s.word, 1);
    }
}

int Engine::head_sleep(uint32_t r, uint32_t t, SlotState how, int64_t until, const SleepCheck &still,
                       const DeathWatch *watch) {
    Slot &s = view_.slot(r, t);
    uint64_t v = s.word.load(kSeqCst);
    SlotWord sw = SlotWord::unpack(v);
    // (A head that found the line empty still has its claim state, kWaiting.)
    if (sw.ticket != ticket_bits(t) || sw.owner != me_ || sw.state == SlotState::kDone ||
        sw.state == SlotState::kAbandoned) {
        return RQ_EINTERNAL;
    }
    const uint64_t sv = with_state(sw, how);
    if (!s.word.compare_exchange_strong(v, sv, kSeqCst)) return RQ_OK;
    // Dekker with wake_head(): we published the sleep state; re-check the
    // condition that a waker changes before it looks at our slot.
    if (still() && !cancel_requested()) sleep_on(s.word, static_cast<uint32_t>(sv), watch, until);
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
        for (int tries = 0; tries < kMaxCasTries; ++tries) {
            uint64_t v = s.word.load(kSeqCst);
            SlotWord sw = SlotWord::unpack(v);
            if (sw.ticket != ticket_bits(t) || sw.owner != p) break;
            if (sw.state != SlotState::kAbandoned && sw.state != SlotState::kDone &&
                !s.word.compare_exchange_strong(v, with_state(sw, SlotState::kAbandoned), kSeqCst)) {
                continue;
            }
            retarget_behind(r, t, p);
            if (QueueWord::unpack(res.queue.load(kSeqCst)).head == t) {
                int rc = pass_head(r, t);
                if (rc != RQ_OK) return rc;
            }
            break;
        }
    }
    return RQ_OK;
}

// ---- Serving behind the head (head.cpp, serve_behind) ----

// One CAS from the queued state read as `word` to kDone, after the caller
// took the ticket's tokens. The slot's since_ns then carries the grant TAT
// for the owner's permit (served_grant_tat), published by that CAS.
bool Engine::hand_over(uint32_t r, uint32_t t, uint64_t word, int64_t grant_tat) {
    Slot &s = view_.slot(r, t);
    s.since_ns.store(grant_tat, boost::memory_order_relaxed);
    SlotWord sw = SlotWord::unpack(word);
    for (;;) {
        // seq_cst: Dekker with the owner's sleep-state CAS (as pass_head).
        if (s.word.compare_exchange_strong(word, SlotWord{sw.ticket, SlotState::kDone, sw.owner}.pack(), kSeqCst)) {
            if (sw.state != SlotState::kWaiting) futex_wake(&s.word, 1);
            return true;
        }
        sw = SlotWord::unpack(word);
        if (sw.ticket != ticket_bits(t) || !queued_state(sw.state)) return false;
    }
}

}  // namespace rq::detail
