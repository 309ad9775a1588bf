// The process-slot protocol: identity, liveness, reclaim, and fork. Every
// transition of a process word (layout.hpp, ProcWord) is in this file.
//
// Slot p belongs to whoever holds the OFD write lock on byte kProcLockBase + p
// of the segment file; the kernel drops it when the process dies, whatever
// the pid namespace or pid reuse. Anyone tests it with F_OFD_GETLK.
//
// Reclaiming a dead slot returns its concurrency holdings, breaks any lock it
// held (undoing its half-done operation from the journal), and abandons its
// tickets. It runs under a claim in the slot word (kReclaiming by r); every
// step is idempotent, so if the reclaimer dies too, whoever finds it dead
// takes the claim over and runs the steps again.
//
// Memory orders: every CAS on a process word is acq_rel and every load of it
// acquire; they pair with each other (a claimer sees what the previous owner
// or claimer published before its CAS). The owner's death itself is observed
// through the kernel (F_OFD_GETLK), which orders everything it wrote.
#include "core.hpp"
#include "refiller.hpp"
#include "shrink_guard.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <new>
#include <vector>

#include "clock.hpp"
#include "futex.hpp"

namespace rq::detail {

// ---- The sentinel: the kernel's notice of our death ----------------------------------
//
// A thread that does nothing but hold our slot's death word (layout.hpp) as
// a robust futex: its robust list (set_robust_list) names the word, so when
// the thread dies, which happens only when the whole process dies or execs,
// the kernel marks the word kDeathOwnerDied and wakes one waiter, whatever
// the pid namespaces. It lives from registration to close; at close it
// empties its list first, so leaving alive is no death.
struct Sentinel {
    pthread_t thread{};
    robust_list_head head{};
    robust_list entry{};
    Shared<uint32_t> *word = nullptr;
    std::atomic<uint32_t> stop{0};   // process-local futex words
    std::atomic<uint32_t> ready{0};  // 1: the word holds our tid (or notice failed)
};

namespace {

// Small: the thread only makes two system calls and sleeps.
constexpr size_t kSentinelStack = 64 * 1024;
// How long an opener waits for its sentinel to hold the death word (a thread
// starts in about 100 us here): a process killed right after rq_open is then
// noticed at once, not polled. Past it, rq_open goes on without waiting.
constexpr int64_t kSentinelStartNs = 1'000'000'000;

void *sentinel_main(void *arg) {
    auto *s = static_cast<Sentinel *>(arg);
    s->entry.next = &s->head.list;
    s->head.list.next = &s->entry;
    s->head.futex_offset = reinterpret_cast<char *>(s->word) - reinterpret_cast<char *>(&s->entry);
    s->head.list_op_pending = nullptr;
    if (syscall(SYS_set_robust_list, &s->head, sizeof s->head) == 0) {
        // release: pairs with the watchers' acquire load (watch.cpp); the
        // kernel matches this tid (as this thread sees it) at its death.
        s->word->store(static_cast<uint32_t>(gettid()) & kDeathTidMask, boost::memory_order_release);
    }
    // release: pairs with start_sentinel()'s acquire load.
    s->ready.store(1, std::memory_order_release);
    futex_wake(&s->ready, 1);
    // acquire: pairs with stop_sentinel()'s release store.
    while (s->stop.load(std::memory_order_acquire) == 0) futex_wait(&s->stop, 0, INT64_MAX);
    s->head.list.next = &s->head.list;  // an empty list: this exit is no death
    return nullptr;
}

}  // namespace

void Engine::start_sentinel() noexcept {
    std::unique_ptr<Sentinel> s(new (std::nothrow) Sentinel());
    if (s == nullptr) return;  // no notice: others poll our liveness lock
    s->word = &view_.process(me_).death_word;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return;
    pthread_attr_setstacksize(&attr, kSentinelStack);
    // No signal is ever delivered to it: the caller's threads keep them all.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, &attr, sentinel_main, s.get());
    // A program with much static TLS needs more than our small stack
    // (EINVAL): take the default.
    if (rc == EINVAL) rc = pthread_create(&s->thread, nullptr, sentinel_main, s.get());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    if (rc != 0) return;
    const int64_t until = now_ns() + kSentinelStartNs;
    // acquire: pairs with the sentinel's release store of ready.
    while (s->ready.load(std::memory_order_acquire) == 0 && now_ns() < until) futex_wait(&s->ready, 0, until);
    sentinel_ = std::move(s);
}

void Engine::stop_sentinel() noexcept {
    if (sentinel_ == nullptr) return;
    // First the word: from now on those who watch us poll until our slot is
    // free (a kill from here on is found by polling), and the change wakes
    // every one of them. The kernel leaves a word alone that does not name
    // the dying thread, so the sentinel may still hold it. (relaxed store:
    // the wake is what they wait for; they read the word with acquire.)
    Shared<uint32_t> &word = view_.process(me_).death_word;
    word.store(0, boost::memory_order_relaxed);
    futex_wake(&word, INT32_MAX);
    // release: pairs with the sentinel's acquire load.
    sentinel_->stop.store(1, std::memory_order_release);
    futex_wake(&sentinel_->stop, 1);
    pthread_join(sentinel_->thread, nullptr);
    sentinel_.reset();
}

namespace {

// Fork handling: a child must not keep its parent's OFD lock reference (the
// parent would look alive while the child lives) and must register itself.
std::mutex g_registry_mu;
std::vector<Engine *> *g_engines = nullptr;  // leaked: used from atfork handlers
std::once_flag g_atfork_once;

void atfork_prepare() { g_registry_mu.lock(); }
void atfork_parent() { g_registry_mu.unlock(); }
void atfork_child() {
    if (g_engines != nullptr) {
        for (Engine *e : *g_engines) e->close_fd_after_fork();
    }
    g_registry_mu.unlock();
}

void registry_add(Engine *e) {
    std::call_once(g_atfork_once, [] { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); });
    std::lock_guard<std::mutex> g(g_registry_mu);
    if (g_engines == nullptr) g_engines = new std::vector<Engine *>();
    g_engines->push_back(e);
}

void registry_remove(Engine *e) {
    std::lock_guard<std::mutex> g(g_registry_mu);
    if (g_engines != nullptr) std::erase(*g_engines, e);
}

}  // namespace

int Engine::open(const char *name, const rq_open_options *opts, Engine **out) {
    auto *e = new Engine();
    RemoteConfig remote;
    int rc = remote_config(opts, remote);  // a bad URL fails before anything is done
    if (rc == RQ_OK) rc = e->map_segment(name, opts);
    if (rc == RQ_OK) {
        e->limit_cache_ = std::make_unique<std::atomic<const CachedLimits *>[]>(e->view_.geo.max_resources);
        e->cache_versions_.assign(e->view_.geo.max_resources, 0);
        rc = e->register_process();
        if (rc == RQ_OK) e->start_sentinel();
        if (rc == RQ_OK) {
            rc = e->start_remote(std::move(remote));
            if (rc != RQ_OK) {
                delete e;  // registered: the whole destructor
                return rc;
            }
        }
    }
    if (rc != RQ_OK) {
        e->unmap_segment();
        delete e;
        return rc;
    }
    registry_add(e);
    *out = e;
    return RQ_OK;
}

Engine::~Engine() {
    registry_remove(this);
    // A forked child that never registered owns no slot (its parent's is the parent's).
    if ((forked_.load(std::memory_order_relaxed) & kForked) == 0) {
        remote_.reset();  // the refiller thread stops (and resigns) first
        stop_sentinel();
        unregister_process();
    }
    unmap_segment();
}

void Engine::close_fd_after_fork() noexcept {
    // Runs in the child between fork() and its return: only async-signal-safe
    // work. Closing our copy keeps the parent's lock with the parent's
    // descriptor, so the parent's death stays visible; the mapping stays.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    // The parent's sentinel thread is not ours: forget it (no free here).
    (void)sentinel_.release();
    if (remote_ != nullptr) remote_->forget_after_fork();
    (void)remote_.release();  // nor its refiller thread
    new (&register_mu_) std::mutex();
    new (&cache_mu_) std::mutex();  // another thread may have held it at the fork
    if (region_ != nullptr) guard_forget_fd(&view_.header());  // (the header is at the mapping's start)
    forked_.fetch_or(kForked, std::memory_order_relaxed);
}

int Engine::register_after_fork() noexcept {
    try {
        // acquire: pairs with the shrink guard's release fetch_or.
        if ((forked_.load(std::memory_order_acquire) & kShrunk) != 0) return RQ_ECORRUPT;  // shrunk under us
        std::lock_guard<std::mutex> guard(register_mu_);
        if (forked_.load(std::memory_order_relaxed) == 0) return RQ_OK;  // another thread did it
        // We are a forked child: our own open file description, our own slot.
        int rc = fd_ < 0 ? reopen_segment_fd() : RQ_OK;
        if (rc == RQ_OK) {
            me_ = UINT32_MAX;
            rc = register_process();
            if (rc == RQ_OK) start_sentinel();
        }
        // release: pairs with ensure_registered's acquire load (me_ and the
        // rest of the registration are visible to every thread that sees false).
        if (rc == RQ_OK) forked_.fetch_and(~kForked, std::memory_order_release);
        return rc;
    } catch (const std::bad_alloc &) {  // (the segment's path; acquire_r is noexcept)
        errno = ENOMEM;
        return RQ_ESYS;
    } catch (...) {
        return RQ_EINTERNAL;
    }
}

bool Engine::alive(uint32_t p) const {
    if (p == me_) return true;
    return ofd_locked_by_other(fd_, p);
}

int Engine::register_process() {
    const uint32_t n = view_.geo.max_processes;
    const uint32_t start = static_cast<uint32_t>(getpid()) % n;
    // First pass: slots that look free; second pass: any slot (its owner may be dead).
    for (int pass = 0; pass < 2; ++pass) {
        for (uint32_t k = 0; k < n; ++k) {
            uint32_t p = (start + k) % n;
            Process &proc = view_.process(p);
            // acquire: pairs with the acq_rel CASes on the process word.
            ProcWord w = ProcWord::unpack(proc.word.load(boost::memory_order_acquire));
            if (pass == 0 && w.state != ProcState::kFree) continue;
            if (ofd_try_lock(fd_, p) != 0) continue;  // a live process owns it
            // The byte is ours: whoever had slot p is gone. Clean up after it:
            // what it left (even in a slot marked free, which only damage
            // leaves holding anything), and claims it held on other slots.
            // Until we are live, a lock word naming p is the old owner's.
            me_ = p;
            // relaxed: read by this process's own threads in lock_slow, and
            // none of them holds a lock while we register.
            registering_.store(true, std::memory_order_relaxed);
            // acquire: pairs with the acq_rel CASes on the process word.
            uint64_t raw = proc.word.load(boost::memory_order_acquire);
            int rc = ProcWord::unpack(raw).state == ProcState::kFree ? reclaim_steps(p) : reclaim_slot(p, raw);
            if (rc == RQ_OK) release_claims_of(p);
            registering_.store(false, std::memory_order_relaxed);
            if (rc == RQ_OK) {
                // No notice of our death until our sentinel holds the word:
                // clear what a former owner left (relaxed: published by the
                // kLive CAS below).
                proc.death_word.store(0, boost::memory_order_relaxed);
                for (int tries = 0; tries < kMaxCasTries; ++tries) {
                    // acquire: pairs with the acq_rel CASes on the process word.
                    uint64_t raw = proc.word.load(boost::memory_order_acquire);
                    ProcWord cur = ProcWord::unpack(raw);
                    if (cur.state != ProcState::kFree) break;
                    // acq_rel: pairs with reclaimers' acquire loads of the word.
                    if (proc.word.compare_exchange_strong(raw, ProcWord{cur.gen + 1, ProcState::kLive, 0}.pack(),
                                                          boost::memory_order_acq_rel)) {
                        me_gen_ = cur.gen + 1;
                        proc.pid.store(static_cast<uint32_t>(getpid()), boost::memory_order_relaxed);
                        proc.started_realtime_ns.store(realtime_ns(), boost::memory_order_relaxed);
                        return RQ_OK;
                    }
                }
            }
            me_ = UINT32_MAX;
            ofd_unlock(fd_, p);
            if (rc == RQ_ECORRUPT) return rc;
        }
    }
    return RQ_ENOSPC;
}

// Brings slot p to kFree, reclaiming what a dead owner left. `raw` is the
// word the caller saw when it established that owner's death (it holds p's
// lock byte, or it is closing its own slot); only that generation is touched:
// a newer one belongs to a live process that registered meanwhile.
int Engine::reclaim_slot(uint32_t p, uint64_t raw) {
    Process &proc = view_.process(p);
    const uint32_t gen = ProcWord::unpack(raw).gen;
    for (int tries = 0; tries < kMaxCasTries; ++tries) {
        ProcWord w = ProcWord::unpack(raw);
        if (w.gen != gen || w.state == ProcState::kFree) return RQ_OK;
        if (w.state != ProcState::kLive && w.state != ProcState::kReclaiming) return RQ_ECORRUPT;
        if (w.state == ProcState::kReclaiming && w.by != me_ && w.by < view_.geo.max_processes && alive(w.by)) {
            return RQ_EAGAIN;  // a live reclaimer is on it
        }
        const uint64_t claim = ProcWord{gen, ProcState::kReclaiming, me_}.pack();
        // acq_rel: pairs with other claimers and with the registrant's CAS.
        if (raw != claim && !proc.word.compare_exchange_strong(raw, claim, boost::memory_order_acq_rel)) continue;
        int rc = reclaim_steps(p);
        uint64_t expected = claim;
        if (rc != RQ_OK) {
            // Give the claim back so that a later finder tries again.
            // acq_rel: as the claim.
            proc.word.compare_exchange_strong(expected, ProcWord{gen, ProcState::kLive, 0}.pack(),
                                              boost::memory_order_acq_rel);
            return rc;
        }
        // acq_rel: the steps' stores before kFree, to the next registrant.
        proc.word.compare_exchange_strong(expected, ProcWord{gen, ProcState::kFree, 0}.pack(),
                                          boost::memory_order_acq_rel);
        // Anyone still asleep on its death word looks again (the kernel woke
        // only one of them at the death).
        futex_wake(&proc.death_word, INT32_MAX);
        view_.header().reclaims.fetch_add(1, boost::memory_order_relaxed);
        return RQ_OK;
    }
    return RQ_EINTERNAL;
}

Result<Reclaim> Engine::reclaim_if_dead(uint32_t p) {
    if (p >= view_.geo.max_processes) return {Reclaim::kFailed, RQ_EINVAL};
    if (p == me_) return {Reclaim::kNothing};
    Process &proc = view_.process(p);
    // acquire: pairs with the acq_rel CASes on the process word.
    uint64_t raw = proc.word.load(boost::memory_order_acquire);
    ProcWord w = ProcWord::unpack(raw);
    if (w.state == ProcState::kFree) return {Reclaim::kNothing};
    if (w.state == ProcState::kLive && alive(p)) return {Reclaim::kNothing};
    if (w.state == ProcState::kReclaiming &&
        (w.by == me_ || (w.by < view_.geo.max_processes && alive(w.by)))) {
        return {Reclaim::kNothing};
    }
    if (w.state != ProcState::kLive && w.state != ProcState::kReclaiming) return {Reclaim::kFailed, RQ_ECORRUPT};
    const int rc = reclaim_slot(p, raw);
    if (rc == RQ_OK) return {Reclaim::kReclaimed};
    if (rc == RQ_EAGAIN) return {Reclaim::kNothing};  // a live reclaimer is on it
    return {Reclaim::kFailed, rc};
}

void Engine::unregister_process() {
    if (me_ == UINT32_MAX || view_.base == nullptr) return;
    Process &proc = view_.process(me_);
    // acquire: pairs with the acq_rel CASes on the process word.
    reclaim_slot(me_, proc.word.load(boost::memory_order_acquire));
    ofd_unlock(fd_, me_);
    me_ = UINT32_MAX;
}

// The steps of reclaiming slot p: each is idempotent. A resource that fails
// (damage) does not stop the others; the first error is returned.
int Engine::reclaim_steps(uint32_t p) {
    const uint32_t mine = p + 1;
    int first_error = RQ_OK;
    for (uint32_t r = 0; r < view_.geo.max_resources; ++r) {
        Resource &res = view_.resource(r);
        // acquire: pairs with define()'s release store of kReady.
        if (res.state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) continue;
        Holding &h = view_.holding(p, r);
        // relaxed: p is dead (seen through the kernel); these only choose
        // whether to take the lock, under which the holding is read again.
        bool holds = h.req.load(boost::memory_order_relaxed) != 0 || h.load.load(boost::memory_order_relaxed) != 0;
        bool locked_by_p = (res.lock.load(boost::memory_order_relaxed) & kLockOwnerMask) == mine;
        int rc = RQ_OK;
        if (holds || locked_by_p) {
            rc = locked_by_p ? take_over_lock(res.lock, p, false, r) : lock(res.lock, false, r);
            if (rc == RQ_OK) {
                return_holdings(r, p);
                unlock(res.lock);
                wake_head(r, true);
            }
        }
        if (rc == RQ_OK) rc = abandon_owned(r, p);
        if (first_error == RQ_OK) first_error = rc;
        crash_point(CrashPoint::kInReclaim);
    }
    Header &hdr = view_.header();
    if ((hdr.define_lock.load(boost::memory_order_relaxed) & kLockOwnerMask) == mine) {
        int rc = take_over_lock(hdr.define_lock, p, true, 0);
        if (rc == RQ_OK) unlock(hdr.define_lock);
        if (first_error == RQ_OK) first_error = rc;
    }
    return first_error;
}

// Claims that a former owner of slot p held on other slots (it died while
// reclaiming them) would look alive once p is ours again: hand them back as
// live-but-dead slots, so that the next finder reclaims them from the start.
void Engine::release_claims_of(uint32_t p) {
    for (uint32_t q = 0; q < view_.geo.max_processes; ++q) {
        Process &proc = view_.process(q);
        // acquire: pairs with the acq_rel CASes on the process word.
        uint64_t raw = proc.word.load(boost::memory_order_acquire);
        ProcWord w = ProcWord::unpack(raw);
        if (q == p || w.state != ProcState::kReclaiming || w.by != p) continue;
        // acq_rel: pairs with the claim CAS of whoever reclaims q next.
        proc.word.compare_exchange_strong(raw, ProcWord{w.gen, ProcState::kLive, 0}.pack(),
                                          boost::memory_order_acq_rel);
    }
}

}  // namespace rq::detail
