// The C++ core behind the C ABI: the Engine (one process's attachment to one
// segment), the resolved limits, the tuning constants, and the typed results
// of the protocol steps. Internal: not installed, not exported.
//
// Engine methods return RQ_OK (0) or a negative RQ_E* code, or a typed
// result (Result<Kind>, below) where a step can end in several ways; none
// returns a positive sentinel. They never throw: std::bad_alloc from the few
// allocations is caught by the C ABI shell (capi.cpp) or, on the acquire path
// (acquire_r is noexcept), where it happens (refresh_limits,
// register_after_fork).
//
// The acquire path, step by step, with the file that owns each step, is
// drawn in src/README.md.
#pragma once

#include "clock.hpp"
#include "crash_points.hpp"
#include "futex.hpp"
#include "layout.hpp"
#include "view.hpp"
#include "permit.hpp"
#include "watch.hpp"
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

// Where POSIX shared-memory objects live (segment.cpp, inspect.cpp).
inline constexpr const char *kShmDir = "/dev/shm/";

// ---- Tuning -----------------------------------------------------------------------

// Spins on a contended lock word before sleeping; a lock is held for a few
// dozen instructions (about 50 ns), so 100 pauses cover an uncontended holder.
inline constexpr int kLockSpins = 100;
// How many times the line-free path recomputes a lost CAS on one TAT at the
// same instant before it takes a ticket: each loss means another acquire was
// admitted, so a few cover the contention of a few processes; more would
// only delay joining the line.
inline constexpr int kFastRetries = 4;
// How many tickets behind it a head serves before passing on: bounds the
// work one acquire does for others (about 32 x 100 ns).
inline constexpr uint32_t kMaxServedBehind = 32;
// How many CASes on one shared word in a row a step may lose before it calls
// the word damaged. A slot or process word changes only when its owner, a
// passer or a reclaimer acts on it, a handful of times per step; a thousand
// losses in a row do not happen in a sound segment.
inline constexpr int kMaxCasTries = 1000;

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

// A resource's limits, checked, with values derived once per definition.
// Process-local (a per-process cache keyed by the config word, resource.cpp).
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
    bool global;             // flags & kScopeGlobal: admitted from the host's lease (lease.hpp)
    uint32_t flags;          // Config::flags as defined
    uint64_t word;       // the resource's config word these were read under
    uint64_t name_hash;  // the resource's, copied by read_limits (a handle is checked against it)
    Limit limit[kMaxLimits];
};

// resource.cpp: sets has_conc, max_load, fast_max_load, one_request and
// first_load_rate from the limits.
void finish_limits(Limits &lim);
// resource.cpp: validates user limits and fills derived fields. RQ_EINVAL when bad.
int normalize_limits(const rq_limit *in, size_t n, Limits &out);
bool same_limits(const Limits &a, const Limits &b);
// resource.cpp: a global resource's limits as its lease admits them (whole
// units of request_ns: lease.hpp); false when too deep for that.
bool lease_view(Limits &lim);

// ---- Typed results ----------------------------------------------------------------

// A step that can end in several ways returns its kind, and with kFailed the
// RQ_E* code (rc is RQ_OK otherwise).
template <class Kind>
struct Result {
    Kind kind;
    int rc = RQ_OK;
};

// How a wait for the head ended (queue.cpp, wait_turn).
enum class Turn {
    kHead,    // the ticket is head: serve it (head.cpp, serve)
    kServed,  // the head served it on its owner's behalf (serve_behind): its tokens are
              // taken, the owner builds its permit (served_permit)
    kFailed,  // timed out, cancelled, or damage: leave the line
};

// The line-free path's answer (line_free.cpp).
enum class Fast {
    kGranted,     // the permit is written
    kMiss,        // the path did not apply (someone in line, a pause, a lost CAS, a
                  // redefine): take a ticket
    kNoCapacity,  // nobody in line, but the limits refuse the load now (a try fails at once)
    kFailed,      // an error while taking or holding the resource lock (try_fast_conc sets rc)
};

// What breaking a dead owner's lock did (lock.cpp, break_dead_lock).
enum class LockBreak {
    kOurs,       // the lock is ours now (its journal undone)
    kWaitAgain,  // it was, or will be, broken by a reclaim: wait on the word again
    kFailed,
};

// What reclaim_if_dead did (process_table.cpp).
enum class Reclaim {
    kNothing,    // alive, free, or a live reclaimer is on it
    kReclaimed,  // this call reclaimed the dead process's slot
    kFailed,
};

// ---- Cancellation of a waiting thread (tickets.cpp) ----------------------------------

// While a thread runs rq_wait, its ticket's state word (the caller's
// rq_ticket::opaque[3], see permit.hpp) is published here; wait_turn and
// serve return RQ_ECANCELED once it leaves `waiting`, and their sleeps
// (queue.cpp, sleep_on) also wake when it changes. rq_cancel changes it by
// CAS, then futex_wakes it. The kernel's 32-bit futex reads the state in the
// word's low half (little endian).
struct CancelWord {
    uint64_t *word = nullptr;
    uint32_t waiting = 0;
};
extern thread_local CancelWord tl_cancel;
bool cancel_requested() noexcept;

// ---- The engine -------------------------------------------------------------------
//
// One process's attachment to one segment. Thread-safe: any number of
// threads may call any public method at once (the C ABI's contract). The
// methods are grouped below by the file that defines them; each protocol's
// transitions live in one of those files.

struct Sentinel;  // process_table.cpp
class Remote;     // refiller.hpp
struct RatePlan;  // charge.hpp

// Many hosts: the Redis URL (the options', else $RATEQUEUE_REDIS_URL; empty:
// this host only) and the lease TTL, checked before a segment is opened
// (refiller.cpp). RQ_EINVAL for a malformed URL or TTL (the reason on stderr).
struct RemoteConfig {
    std::string url;
    uint32_t ttl_ms = 0;
};
int remote_config(const rq_open_options *opts, RemoteConfig &out);

class Engine {
public:
    // process_table.cpp: opens or creates segment `name`; registers this process.
    static int open(const char *name, const rq_open_options *opts, Engine **out);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    // resource.cpp
    int define(const char *name, const rq_limit *limits, size_t n, uint32_t flags);
    // refiller.cpp: the last Redis error this client saw ("" if none).
    std::string remote_error() const;
    int describe(const char *name, rq_limit *limits, size_t cap, size_t *n);
    // acquire.cpp. predicted (may be null): set when the acquire failed fast
    // (RQ_ETIMEDOUT because the predicted start lies past the deadline) to
    // the predicted wait.
    int acquire(const char *name, uint64_t load, int64_t timeout_ns, rq_permit *out, int64_t *predicted = nullptr);
    int release(rq_permit *p);  // inline, below; the rest in acquire.cpp
    int resolve_handle(const char *name, rq_resource *out);
    // noexcept (nothing on its path throws: refresh_limits and
    // register_after_fork report ENOMEM), so the C shell reaches it by a
    // plain jump.
    int acquire_r(const rq_resource *h, uint64_t load, int64_t timeout_ns, rq_permit *out) noexcept;
    // tickets.cpp
    int enqueue_ticket(const char *name, uint64_t load, rq_ticket *t);
    int wait_ticket(rq_ticket *t, int64_t timeout_ns, rq_permit *out);
    int cancel_ticket(rq_ticket *t);
    // llm.cpp
    int settle(rq_permit *p, uint64_t actual);
    int penalize(const char *name, int64_t pause_ns);
    int observe(const char *name, uint32_t index, uint64_t remaining, int64_t reset_ns);
    int predict_wait(const char *name, uint64_t load, int64_t *wait_ns);
    // admin.cpp. rq_reset: name NULL for every resource.
    int reset(const char *name, uint32_t flags);
    // rq_reap: reclaims every dead process now; counts what came back.
    int reap(rq_reap_report *out);

    // process_table.cpp: reclaims process slot p if its owner is dead.
    Result<Reclaim> reclaim_if_dead(uint32_t p);

    // Introspection for tests and tools.
    const View &view() const { return view_; }
    uint32_t process_slot() const { return me_; }
    bool alive(uint32_t p) const;  // process_table.cpp
    // resource.cpp
    int lookup(std::string_view name, uint32_t &r) const;
    // A caller's resource name to its index: RQ_EINVAL for a bad or overlong
    // name, RQ_ENOENT for one not defined (inline, below).
    int find_named(const char *name, uint32_t &r) const;
    int read_limits(uint32_t r, Limits &out, uint64_t *word = nullptr) const;
    // Validated limits of resource r (r < max_resources): the cached copy for
    // its current config word (inline, below), else refresh_limits.
    int limits_of(uint32_t r, Limits &scratch, const Limits *&out) {
        return limits_of(view_.resource(r), r, scratch, out);
    }
    // now (optional): as for ensure_registered, read again after a refresh.
    int limits_of(const Resource &res, uint32_t r, Limits &scratch, const Limits *&out, int64_t *now = nullptr);
    // process_table.cpp (the atfork child handler).
    void close_fd_after_fork() noexcept;

private:
    Engine() = default;

    // ---- segment.cpp: mapping
    int map_segment(const char *name, const rq_open_options *opts);
    void unmap_segment() noexcept;
    int reopen_segment_fd();

    // ---- process_table.cpp: process slots, liveness, reclaim, fork
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
    // This process's sentinel thread, which holds the death word of our
    // slot (layout.hpp) for the life of the attachment.
    void start_sentinel() noexcept;
    void stop_sentinel() noexcept;
    // refiller.cpp: with a Redis URL, this client becomes a refiller candidate.
    int start_remote(RemoteConfig cfg);

    // ---- lock.cpp: the lock word and the concurrency journal it guards
    // try_lock: the one CAS of an uncontended lock (inline, below); lock:
    // try_lock, else lock_slow, which waits (define_lock and r say which
    // journal a broken lock's breaker undoes). The wait ends with
    // RQ_ETIMEDOUT at the deadline, and with RQ_ECORRUPT when one owner,
    // alive (or this very process), has held it for kLockDamageNs: a lock is
    // held for a few dozen instructions, so that is a damaged lock word.
    bool try_lock(Shared<uint32_t> &word);
    int lock(Shared<uint32_t> &word, bool define_lock, uint32_t r, int64_t deadline = INT64_MAX);
    int lock_slow(Shared<uint32_t> &word, bool define_lock, uint32_t r, int64_t deadline = INT64_MAX);
    int take_over_lock(Shared<uint32_t> &word, uint32_t dead, bool define_lock, uint32_t r);
    Result<LockBreak> break_dead_lock(Shared<uint32_t> &word, uint32_t owner, bool define_lock, uint32_t r);
    void unlock(Shared<uint32_t> &word);  // inline, below
    static void wake_lock_waiter(Shared<uint32_t> &word);
    void return_holdings(uint32_t r, uint32_t p);
    int conc_update(uint32_t r, uint32_t p, int64_t d_req, int64_t d_load, CrashPoint cp, int64_t now = 0);
    void undo_resource(uint32_t r);
    void undo_define();

    // ---- acquire.cpp: entry points, the line orchestration, permits
    [[gnu::cold]] int refuse(rq_permit *out, int rc);  // zeroes *out, returns rc
    // now: the clock, read by the caller first thing.
    int acquire_at(Resource &res, uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns, rq_permit *out,
                   int64_t *predicted, int64_t now);
    [[gnu::noinline]] int acquire_line(uint32_t r, const Limits *lim, uint64_t load, int64_t timeout_ns,
                                       rq_permit *out, int64_t *predicted, Fast fast);
    int release_slow(rq_permit *p);
    // A permit's fields, checked against this process (not its released or
    // settled flags): RQ_EINVAL when forged or another client's or process's.
    int check_permit(const rq_permit *p, PermitCode &out);
    // A registered caller, a defined resource and a valid load that can fit
    // (rq_enqueue, rq_predict_wait).
    int resolve(const char *name, uint64_t load, uint32_t &r, Limits &scratch, const Limits *&lim);
    int resource_of(const char *name, uint32_t &r);

    // ---- line_free.hpp, line_free.cpp: the line-free path
    bool nobody_in_line(Resource &res, uint32_t r) const;
    Fast try_fast(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out);
    [[gnu::noinline]] Fast try_fast_any(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                                        rq_permit *out);
    [[gnu::noinline, gnu::cold]] Fast try_fast_contended(Resource &res, uint32_t r, const Limits &lim, uint64_t load,
                                                         int64_t now, int64_t found_tat, rq_permit *out);
    Fast charge_planned(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, RatePlan &plan,
                        rq_permit *out);
    // kFailed: rc holds the error.
    // A global resource without concurrency limits: try_fast_any against
    // the lease clocks (lease.hpp). line_free.cpp.
    [[gnu::noinline]] Fast try_fast_lease(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now,
                                          rq_permit *out);
    Fast try_fast_conc(Resource &res, uint32_t r, const Limits &lim, uint64_t load, int64_t now, rq_permit *out,
                       int &rc);

    // ---- head.cpp: the head's own work
    int serve(uint32_t r, uint32_t ticket, uint64_t load, int64_t deadline, bool is_try, const Limits *lim,
              rq_permit *out, int64_t since, int64_t *predicted);
    void serve_behind(uint32_t r, uint32_t head);
    // The permit of a ticket the head served (serve_behind).
    void served_permit(uint32_t r, uint32_t ticket, uint64_t load, const Limits &lim, rq_permit *out);
    // What every way out of the head does: serve behind, then pass on.
    void leave_head(uint32_t r, uint32_t ticket);

    // ---- tickets.cpp: the ticket API
    int decode_ticket(rq_ticket *t, uint32_t &r, uint32_t &ticket, uint64_t &load);

    // ---- queue.cpp: the queue-slot state machine
    int enqueue(uint32_t r, uint32_t &ticket, bool &at_head);
    Result<Turn> wait_turn(uint32_t r, uint32_t ticket, int64_t deadline);
    Result<Turn> passed_over(uint32_t r, uint32_t t, uint32_t head);
    int pass_head(uint32_t r, uint32_t ticket);
    int abandon_dead(uint32_t r, uint32_t x, uint64_t word);
    // Leaves the line; true when the head had served the ticket meanwhile
    // (its tokens are taken: the caller returns the permit instead).
    bool abandon(uint32_t r, uint32_t ticket);
    int abandon_owned(uint32_t r, uint32_t p);
    // Ticket t of process `left` (kNoOwner: a batch ending at t) left the
    // line alive: wakes the sleepers that watched it, to look again.
    void retarget_behind(uint32_t r, uint32_t t, uint32_t left);
    int head_sleep(uint32_t r, uint32_t ticket, SlotState how, int64_t until, const SleepCheck &still,
                   const DeathWatch *watch = nullptr);
    void wake_head(uint32_t r, bool conc_only);
    // Hands ticket t over as served (kDone), with the TAT its grant wrote;
    // false when its owner or a reclaimer got there first.
    bool hand_over(uint32_t r, uint32_t t, uint64_t word, int64_t grant_tat);

    // ---- notes.cpp: a waiting ticket's notes in its slot
    // Ticket t behind head, as serve_behind may serve it: its noted load and
    // wait start, and the slot word they were read with.
    struct QueuedTicket {
        uint64_t word;
        uint64_t load;  // 1..RQ_MAX_AMOUNT
        int64_t since;
    };
    enum class Behind {
        kQueued,  // out is filled
        kSkip,    // left the line, or served already
        kStop,    // not (yet) a queued ticket with a noted load: it serves itself
    };
    Behind queued_ticket(uint32_t r, uint32_t head, uint32_t t, QueuedTicket &out);
    // The grant TAT a served ticket's slot carries, or 0 when lost.
    int64_t served_grant_tat(uint32_t r, uint32_t ticket) const;
    void note_wait(uint32_t r, uint32_t ticket, uint64_t load, int64_t since);
    int64_t noted_since(uint32_t r, uint32_t ticket) const;

    // ---- watch.cpp: whose death a sleeper must hear of, and the checks
    void scan_front(uint32_t r, uint32_t head, uint32_t stop, Front &f);
    int reclaim_ticket_owner(uint32_t r, uint32_t x);
    // Reclaims the dead among the owners scan_front finds in [head, stop).
    int check_front(uint32_t r, uint32_t head, uint32_t stop);
    // Reclaims the dead among the owners a waiter watches, and the front.
    int check_ahead(uint32_t r, uint32_t head, uint32_t t, const Ahead &a);
    // Whose death the waiter of ticket t must hear of (watch.hpp, Ahead).
    void ahead_of(uint32_t r, uint32_t head, uint32_t t, Ahead &out) const;
    // Adds process p's death word to w (or sets w.poll / w.died).
    void watch_death(uint32_t p, DeathWatch &w);
    // A head waiting for concurrency: the holders of resource r.
    void watch_holders(uint32_t r, DeathWatch &w);

    // ---- resource.cpp: limits
    [[gnu::cold]] int refresh_limits(uint32_t r, Limits &scratch, const Limits *&out) noexcept;
    int write_limits(uint32_t r, const Limits &lim);
    void carry_rate_debt(uint32_t r, const Limits &old_lim, const Limits &new_lim);

    // ---- admin.cpp: operator repairs
    int reset_one(uint32_t r, bool hard);
    int reap_dead_holders(uint32_t r);

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
    // Bit kForked: a forked child not registered yet; bit kShrunk: the
    // segment shrank under our mapping (shrink_guard.hpp): every call is
    // RQ_ECORRUPT from then on. Any bit set sends ensure_registered to
    // register_after_fork, so this one word is all the uncontended path tests.
    std::atomic<uint32_t> forked_{0};
    static constexpr uint32_t kForked = 1, kShrunk = 2;
    std::unique_ptr<Sentinel> sentinel_;  // null: none (not started, or failed: others poll us)
    // Many hosts (refiller.hpp): null unless opened with a Redis URL.
    std::unique_ptr<Remote> remote_;
    friend class Remote;
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
// The 16 bytes of /proc/sys/kernel/random/boot_id (zero when unreadable).
void read_boot_id(uint8_t out[16]);

// Names and hashing (resource.cpp).
bool valid_resource_name(std::string_view name);
// FNV-1a over n bytes, continuing from h: few instructions for short names.
inline constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;
inline uint64_t fnv1a(const void *bytes, size_t n, uint64_t h = kFnvBasis) {
    for (size_t i = 0; i < n; ++i) {
        h ^= static_cast<const uint8_t *>(bytes)[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
inline uint64_t name_hash(std::string_view name) { return fnv1a(name.data(), name.size()); }

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
        // One compare: a permit (is_permit) that holds no concurrency and is not released.
        if ((w0 & (kPermitMagicMask | kPermitConc | kPermitReleased)) == kPermitMagic) [[likely]] {
            p->opaque[0] = w0 | kPermitReleased;
            return RQ_OK;
        }
    }
    return release_slow(p);
}

[[gnu::always_inline]] inline bool Engine::try_lock(Shared<uint32_t> &word) {
    uint32_t expected = 0;
    // acquire: pairs with unlock()'s release exchange.
    return word.compare_exchange_strong(expected, me_ + 1, boost::memory_order_acquire, boost::memory_order_relaxed);
}

inline int Engine::lock(Shared<uint32_t> &word, bool define_lock, uint32_t r, int64_t deadline) {
    if (try_lock(word)) [[likely]] return RQ_OK;
    return lock_slow(word, define_lock, r, deadline);
}

[[gnu::always_inline]] inline void Engine::unlock(Shared<uint32_t> &word) {
    // release: pairs with the acquire CAS of the next owner (try_lock, lock_slow).
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
