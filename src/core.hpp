// The C++ core behind the C ABI. Internal: not installed, not exported.
//
// Functions return 0 or a negative RQ_E* code and never throw: std::bad_alloc
// from the few allocations is caught by the C ABI shell, or, on the acquire
// path (acquire_r is noexcept), where it happens (refresh_limits,
// register_after_fork).
#pragma once

#include "clock.hpp"
#include "layout.hpp"
#include "ratequeue/ratequeue.h"

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace boost::interprocess {
class mapped_region;
}

namespace rq::detail {

// ---- Tuning ----------------------------------------------------------------------

// How long a watcher (see kWatchDistance), a waiting head, or a lock waiter
// sleeps before it checks whether the processes it waits on are alive. Dead
// processes are reclaimed within about one or two of these (measured: 11 to
// 24 ms, tests/test_crash.cpp); each check costs a wake-up plus an fcntl per
// process checked, a few microseconds, so a watcher spends about 0.3 ms of
// CPU per second.
inline constexpr int64_t kWatchNs = 20'000'000;
// Every other waiter sleeps at most this long, as a backstop for the case
// where the kWatchDistance + 1 processes at the front all die at once: a
// wake-up costs a few microseconds, so a waiter spends about 5 us of CPU per
// second, and that multiple-death case recovers within about a second.
inline constexpr int64_t kBackstopNs = 1'000'000'000;
// The first tickets of the first kWatchDistance + 1 processes in a queue are
// the watchers and sleep at most kWatchNs (see queue.cpp); the rest sleep
// until woken or kBackstopNs. Two, so that one process dying at any
// instruction, even while passing the head on, never leaves the live waiters
// without a watcher.
inline constexpr uint32_t kWatchDistance = 2;
// Spins on a contended lock word before sleeping; a lock is held for a few
// dozen instructions (about 50 ns), so 100 pauses cover an uncontended holder.
inline constexpr int kLockSpins = 100;

// ---- Resolved limits --------------------------------------------------------------

struct Limit {
    uint32_t kind;
    uint32_t cost;
    uint64_t amount;
    uint64_t period_ns;
    uint64_t burst;
    uint64_t burst_ns;
    uint64_t request_ns;
    uint64_t unit_ns;
};

// No default member initializers: a Limits is filled by normalize_limits or
// read_limits, and the scratch copy every acquire declares costs nothing.
struct Limits {
    uint32_t count;
    bool has_conc;
    // Derived by finish_limits(): the largest load any limit can ever admit
    // (a larger one is RQ_E2BIG), and the index of the first rate limit that
    // charges the load (whose TAT a permit carries for rq_settle), or -1.
    int32_t first_load_rate;
    uint64_t max_load;
    uint64_t fast_max_load;  // max_load for rate limits only, else 0: the loads try_fast may take
    bool one_request;        // a single rate limit that charges 1 per acquire (try_fast's own case)
    uint64_t word;       // the resource's config word these were read under
    uint64_t name_hash;  // the resource's, copied by read_limits (a handle is checked against it)
    Limit limit[kMaxLimits];
};

// Sets has_conc, max_load, fast_max_load, one_request and first_load_rate
// from the limits (resource.cpp).
void finish_limits(Limits &lim);

// Validates user limits and fills derived fields. RQ_EINVAL when bad.
int normalize_limits(const rq_limit *in, size_t n, Limits &out);
bool same_limits(const Limits &a, const Limits &b);

// wait_turn's result when the head served the ticket on its owner's behalf
// (serve_behind): its tokens are taken; the owner builds its permit.
inline constexpr int kServed = 1;
// try_fast's results when the line-free path does not apply (take a ticket):
// someone in line, a pause, or a CAS lost; or the buckets refuse it now.
inline constexpr int kFastMiss = 2;
inline constexpr int kFastNoCapacity = 3;
// How many times the line-free path retries a lost CAS on one TAT before it
// takes a ticket (each loss means another acquire was admitted).
inline constexpr int kFastRetries = 4;
// How many tickets behind it a head serves before passing on.
inline constexpr uint32_t kMaxServedBehind = 32;

// The watchers at the front of a queue (queue.cpp, scan_front).
inline constexpr uint32_t kNoOwner = UINT32_MAX;
struct Front {
    uint32_t ticket[kWatchDistance + 1];
    uint32_t owner[kWatchDistance + 1];
    uint32_t n = 0;
    bool full() const { return n == kWatchDistance + 1; }
    bool has(uint32_t o) const {
        for (uint32_t i = 0; i < n; ++i) {
            if (owner[i] == o) return true;
        }
        return false;
    }
};

// A non-owning reference to a `bool()` callable (no allocation).
class SleepCheck {
public:
    template <class F>
    SleepCheck(const F &f)  // NOLINT: implicit by design
        : obj_(&f), call_([](const void *o) { return (*static_cast<const F *>(o))(); }) {}
    bool operator()() const { return call_(obj_); }

private:
    const void *obj_;
    bool (*call_)(const void *);
};

// Permits (client.cpp encodes them): "RQPT" in the high half of opaque[0],
// flags in its low bits.
inline constexpr uint64_t kPermitMagic = 0x52515054ull << 32;
inline constexpr uint64_t kPermitConc = 1;      // holds concurrency
inline constexpr uint64_t kPermitReleased = 2;
inline constexpr uint64_t kPermitSettled = 4;
inline constexpr uint64_t kPermitHasTat = 8;    // carries the TAT its grant wrote (see client.cpp)
inline constexpr uint64_t kPermitFlags = 15;

// ---- Crash points (test builds only) ----------------------------------------------

enum class CrashPoint : int {
    kNone = 0,
    kAfterEnqueue,        // holds a ticket, has not waited yet
    kHeadBeforeServe,     // is head, has taken nothing
    kAfterRateTaken,      // TATs advanced, concurrency not yet taken
    kInConcJournal,       // journal valid, in_use updated, holding not yet
    kBeforePass,          // acquired, head not yet passed on
    kInPass,              // head word moved on, next not yet granted
    kInReleaseJournal,    // release half applied under the lock
    kInDefine,            // new resource half built under the define lock
    kInReclaim,           // reclaimer half way through a dead slot
    kWhileHeadSleeping,   // head about to sleep for tokens
    kInServeBehind,       // tokens taken for the ticket behind, not handed over yet
    // The line-free path with concurrency limits (try_fast_conc), which a
    // process armed with any other point does not take:
    kFastAfterRateTaken,  // lock held, TATs advanced, concurrency not yet taken
    kFastInConcJournal,   // lock held, journal valid, in_use updated, holding not yet
    kFastBeforeUnlock,    // lock held, everything taken
    kFastBeforeLock,      // saw the line empty, has not taken the lock yet (a stop point)
};
// Test builds (RQ_TEST_HOOKS) SIGKILL themselves at the chosen point, so tests
// can kill a process at each step of a protocol. Other builds compile it away.
void set_crash_point(CrashPoint p);
// Test builds stop themselves (SIGSTOP), once, at the chosen point, so a test
// can order other processes around that step and then SIGCONT them.
void set_stop_point(CrashPoint p);

// ---- Cancellation of a waiting thread (rq_wait) -----------------------------------

// While a thread runs rq_wait, its ticket's state word (process-local memory
// owned by the caller) is published here; wait_turn and serve return
// RQ_ECANCELED once it leaves `waiting`, and their sleeps (Engine::sleep_on)
// also wake when it changes. rq_cancel changes it, then futex_wakes it.
// (The word is rq_ticket::opaque[3]: the state in its low 32 bits, which
// the kernel's 32-bit futex reads on this little-endian target.)
struct CancelWord {
    uint64_t *word = nullptr;
    uint32_t waiting = 0;
};
extern thread_local CancelWord tl_cancel;
bool cancel_requested() noexcept;
#ifdef RQ_TEST_HOOKS
void crash_point(CrashPoint p);
bool line_free_allowed();
#else
inline void crash_point(CrashPoint) {}
inline bool line_free_allowed() { return true; }
#endif

// ---- The engine -------------------------------------------------------------------

class Engine {
public:
    // Opens or creates segment `name`; registers this process.
    static int open(const char *name, const rq_open_options *opts, Engine **out);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    int define(const char *name, const rq_limit *limits, size_t n, uint32_t flags);
    int describe(const char *name, rq_limit *limits, size_t cap, size_t *n);
    // predicted (may be null): set when the acquire failed fast (RQ_ETIMEDOUT
    // because the predicted start lies past the deadline) to the predicted wait.
    int acquire(const char *name, uint64_t load, int64_t timeout_ns, rq_permit *out, int64_t *predicted = nullptr);
    int release(rq_permit *p);  // inline, below
    int resolve_handle(const char *name, rq_resource *out);
    // noexcept (nothing on its path throws: refresh_limits and
    // register_after_fork report ENOMEM), so the C shell reaches it by a
    // plain jump.
    int acquire_r(const rq_resource *h, uint64_t load, int64_t timeout_ns, rq_permit *out) noexcept;
    int enqueue_ticket(const char *name, uint64_t load, rq_ticket *t);
    int wait_ticket(rq_ticket *t, int64_t timeout_ns, rq_permit *out);
    int cancel_ticket(rq_ticket *t);
    // llm.cpp
    int settle(rq_permit *p, uint64_t actual);
    int penalize(const char *name, int64_t pause_ns);
    int observe(const char *name, uint32_t index, uint64_t remaining, int64_t reset_ns);
    int predict_wait(const char *name, uint64_t load, int64_t *wait_ns);
    // rq_reset: name NULL for every resource.
    int reset(const char *name, uint32_t flags);
    // rq_reap: reclaims every dead process now; counts what came back.
    int reap(rq_reap_report *out);

    // Reclaims process slot p if its owner is dead. Returns 1 when this call
    // reclaimed it, 0 when there was nothing to do, or an error.
    int reclaim_if_dead(uint32_t p);

    // Introspection for tests and tools.
    const View &view() const { return view_; }
    uint32_t process_slot() const { return me_; }
    bool alive(uint32_t p) const;
    int lookup(std::string_view name, uint32_t &r) const;
    // A caller's resource name to its index: RQ_EINVAL for a bad or overlong
    // name, RQ_ENOENT for one not defined (core.hpp, below).
    int find_named(const char *name, uint32_t &r) const;
    int read_limits(uint32_t r, Limits &out, uint64_t *word = nullptr) const;
    // Validated limits of resource r (r < max_resources): the cached copy for
    // its current config word (inline, below), else refresh_limits.
    int limits_of(uint32_t r, Limits &scratch, const Limits *&out) {
        return limits_of(view_.resource(r), r, scratch, out);
    }
    // now (optional): as for ensure_registered, read again after a refresh.
    int limits_of(const Resource &res, uint32_t r, Limits &scratch, const Limits *&out, int64_t *now = nullptr);
    void close_fd_after_fork() noexcept;

private:
    Engine() = default;

    // segment.cpp
    int map_segment(const char *name, const rq_open_options *opts);
    void unmap_segment() noexcept;
    int reopen_segment_fd();
    // process_table.cpp
    int register_process();
    int reclaim_slot(uint32_t p, uint64_t raw_word);
    int reclaim_steps(uint32_t p);
    void release_claims_of(uint32_t p);
    void unregister_process();
    // RQ_OK at once unless we are a forked child not registered yet (inline,
    // below). now (optional): the caller's clock reading, read again when the
    // registration ran (it takes time: a stale reading would backdate a charge).
    int ensure_registered(int64_t *now = nullptr);
    [[gnu::cold]] int register_after_fork() noexcept;
    // lock.cpp
    // lock: one CAS inline (the uncontended case), else lock_slow.
    int lock(Shared<uint32_t> &word, bool define_lock, uint32_t r);
    int lock_slow(Shared<uint32_t> &word, bool define_lock, uint32_t r);
    int take_over_lock(Shared<uint32_t> &word, uint32_t dead, bool define_lock, uint32_t r);
    int break_dead_lock(Shared<uint32_t> &word, uint32_t owner, bool define_lock, uint32_t r);
    void unlock(Shared<uint32_t> &word);  // inline, below
    static void wake_lock_waiter(Shared<uint32_t> &word);
    void return_holdings(uint32_t r, uint32_t p);
    int conc_update(uint32_t r, uint32_t p, int64_t d_req, int64_t d_load, CrashPoint cp, int64_t now = 0);
    void undo_resource(uint32_t r);
    void undo_define();
    // client.cpp
    int resolve(const char *name, uint64_t load, uint32_t &r, Limits &scratch, const Limits *&lim);
    [[gnu::cold]] int refuse(rq_permit *out, int rc);  // zeroes *out, returns rc
    // now: the clock, read by the caller first thing.
    int acquire_at(Resource &res, uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns, rq_permit *out,
                   int64_t *predicted, int64_t now);
    [[gnu::noinline]] int acquire_line(uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns,
                                       rq_permit *out, int64_t *predicted, int fast);
    int decode_ticket(const rq_ticket *t, uint32_t &r, uint32_t &ticket, uint64_t &load);
    // queue.cpp
    int enqueue(uint32_t r, uint32_t &ticket, bool &at_head);
    int wait_turn(uint32_t r, uint32_t ticket, int64_t deadline);
    int passed_over(uint32_t r, uint32_t t, uint32_t head);
    void scan_front(uint32_t r, uint32_t head, uint32_t stop, Front &f);
    int pass_head(uint32_t r, uint32_t ticket);
    // Leaves the line; true when the head had served the ticket meanwhile
    // (its tokens are taken: the caller returns the permit instead).
    bool abandon(uint32_t r, uint32_t ticket);
    int abandon_owned(uint32_t r, uint32_t p);
    void promote_behind(uint32_t r, uint32_t head);
    int head_sleep(uint32_t r, uint32_t ticket, SlotState how, int64_t until, const SleepCheck &still);
    void wake_head(uint32_t r, bool conc_only);
    int reclaim_ticket_owner(uint32_t r, uint32_t x);
    int reclaim_dead_behind(uint32_t r, uint32_t head);
    // client.cpp
    int serve(uint32_t r, uint32_t ticket, uint64_t load, int64_t deadline, bool is_try, const Limits *lim,
              rq_permit *out, int64_t since, int64_t *predicted);
    struct PermitView {
        uint32_t resource;
        uint64_t load;
        uint32_t epoch;
        bool has_tat;
        int64_t grant_tat;  // a lower bound (1024 ns granules) of the TAT the grant wrote on the
                            // resource's first load-cost rate limit, when has_tat
    };
    // Checks a permit's fields against this process (not its released or
    // settled flags): RQ_EINVAL when forged or another client's or process's.
    int check_permit(const rq_permit *p, PermitView &out);
    // llm.cpp
    int resource_of(const char *name, uint32_t &r);
    int64_t predict_start(uint32_t r, uint64_t load, const Limits &lim, int64_t now);
    void note_wait(uint32_t r, uint32_t ticket, uint64_t load, int64_t since);
    void serve_behind(uint32_t r, uint32_t head);
    bool nobody_in_line(Resource &res, uint32_t r) const;
    int try_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out);
    // Returns RQ_OK, kFastMiss, kFastNoCapacity or an error (< 0).
    int try_fast_conc(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out);
    int release_slow(rq_permit *p);
    // The line-free path's charges: per limit, the TAT read and the TAT to
    // write (client.cpp, plan_rates).
    struct FastCharge {
        int64_t tat[kMaxLimits];
        int64_t new_tat[kMaxLimits];
    };
    [[gnu::noinline, gnu::cold]] int try_fast_contended(uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                                                        uint32_t i, FastCharge &c, rq_permit *out);
    [[gnu::noinline]] int try_fast_any(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                                       rq_permit *out);
    void grant_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load, const FastCharge &c, rq_permit *out);
    void served_permit(uint32_t r, uint32_t ticket, uint64_t load, const Limits &lim, rq_permit *out);
    int64_t noted_since(uint32_t r, uint32_t ticket) const;
    [[gnu::cold]] int refresh_limits(uint32_t r, Limits &scratch, const Limits *&out) noexcept;
    int reap_dead_holders(uint32_t r);
    // admin.cpp
    int reset_one(uint32_t r, bool hard);
    int write_limits(uint32_t r, const Limits &lim);
    void carry_rate_debt(uint32_t r, const Limits &old_lim, const Limits &new_lim);

    View view_{};
    boost::interprocess::mapped_region *region_ = nullptr;
    std::string name_;
    int fd_ = -1;                    // the segment file: liveness OFD locks live on it
    uint64_t ino_ = 0, dev_ = 0;     // its identity, to reopen the same one after fork
    uint32_t me_ = UINT32_MAX;      // process slot
    uint32_t me_gen_ = 0;
    uint32_t handle_tag_ = 0;        // segment_tag() of the mapped segment (rq_resource)
    // Set in a forked child (close_fd_after_fork, from the atfork handler)
    // until it has registered a process slot of its own.
    // (A 32-bit word, not a bool: one compare with memory on every call.)
    std::atomic<uint32_t> forked_{0};
    std::mutex register_mu_;         // guards re-registration after fork
    std::atomic<bool> registering_{false};  // in register_process: locks naming me_ are stale
    // Checked copies of each resource's limits (resource.cpp, limits_of).
    struct CachedLimits {
        uint64_t config_word = 0;
        Limits lim;
    };
    static constexpr uint32_t kMaxCachedVersions = 64;
    std::unique_ptr<std::atomic<const CachedLimits *>[]> limit_cache_;
    std::vector<uint32_t> cache_versions_;
    std::vector<std::unique_ptr<CachedLimits>> cache_store_;
    std::mutex cache_mu_;
};

// Liveness locks (segment.cpp): process slot p owns the OFD write lock on byte
// kProcLockBase + p of the segment file.
inline constexpr int64_t kProcLockBase = int64_t{1} << 40;
int ofd_try_lock(int fd, uint32_t p);
void ofd_unlock(int fd, uint32_t p);
bool ofd_locked_by_other(int fd, uint32_t p);

// Read-side functions on any view, also a read-only one (resource.cpp): what
// Engine::lookup and Engine::read_limits do, for the inspector.
int lookup_in(const View &view, std::string_view name, uint32_t &r);
int read_limits_in(const View &view, uint32_t r, Limits &out, uint64_t *word = nullptr);

// Segment checks shared by Engine and the inspector (segment.cpp).
int validate_header(const Header &h, uint64_t file_size, Geometry &geo);
int check_owner_and_mode(const struct stat &st, bool group);
bool valid_segment_name(std::string_view n);

// Names and hashing (resource.cpp).
bool valid_resource_name(std::string_view name);
uint64_t name_hash(std::string_view name);

inline int Engine::ensure_registered(int64_t *now) {
    // acquire: pairs with register_after_fork()'s release store.
    if (forked_.load(std::memory_order_acquire) == 0) [[likely]] return RQ_OK;
    const int rc = register_after_fork();
    if (now != nullptr) *now = now_ns();
    return rc;
}

inline int Engine::limits_of(const Resource &res, uint32_t r, Limits &scratch, const Limits *&out, int64_t *now) {
    // acquire: pairs with write_limits()'s release store (a fresh read below
    // sees the fields it published).
    const uint64_t w = res.config_word.load(boost::memory_order_acquire);
    // acquire: pairs with the release store in refresh_limits().
    const CachedLimits *c = limit_cache_[r].load(std::memory_order_acquire);
    if (c != nullptr && c->config_word == w) [[likely]] {
        out = &c->lim;
        return RQ_OK;
    }
    const int rc = refresh_limits(r, scratch, out);
    if (now != nullptr) *now = now_ns();
    return rc;
}

// A permit of rate limits only gives nothing back: releasing it only marks
// it released. Everything else (concurrency, a zeroed, forged or released
// permit) is release_slow's.
inline int Engine::release(rq_permit *p) {
    if (p != nullptr) [[likely]] {
        const uint64_t w0 = p->opaque[0];
        if ((w0 & ~uint64_t{0xffffffff}) == kPermitMagic && (w0 & (kPermitConc | kPermitReleased)) == 0) [[likely]] {
            p->opaque[0] = w0 | kPermitReleased;
            return RQ_OK;
        }
    }
    return release_slow(p);
}

inline int Engine::lock(Shared<uint32_t> &word, bool define_lock, uint32_t r) {
    uint32_t expected = 0;
    // acquire: pairs with unlock()'s release exchange.
    if (word.compare_exchange_strong(expected, me_ + 1, boost::memory_order_acquire, boost::memory_order_relaxed))
        [[likely]] {
        return RQ_OK;
    }
    return lock_slow(word, define_lock, r);
}

inline void Engine::unlock(Shared<uint32_t> &word) {
    // release: pairs with the acquire CAS of the next owner.
    const uint32_t old = word.exchange(0, boost::memory_order_release);
    if ((old & kLockWaiters) != 0) [[unlikely]] wake_lock_waiter(word);
}

inline int Engine::find_named(const char *name, uint32_t &r) const {
    if (name == nullptr) return RQ_EINVAL;
    std::string_view nm(name, strnlen(name, kMaxNameLen + 1));
    if (nm.size() > kMaxNameLen) return RQ_EINVAL;
    const int rc = lookup(nm, r);
    // Only defined names are found, and those were validated: check the
    // characters only to tell a bad name from a missing one.
    if (rc == RQ_ENOENT && !valid_resource_name(nm)) return RQ_EINVAL;
    return rc;
}
// Where the probe for a name starts in a table of cap entries: a multiply,
// not a division.
inline uint32_t home_index(uint64_t hash, uint32_t cap) {
    __extension__ using u128 = unsigned __int128;
    return static_cast<uint32_t>((static_cast<u128>(hash) * cap) >> 64);
}

}  // namespace rq::detail
