/* ratequeue: machine-wide API rate limits shared through POSIX shared memory.
 *
 * This header is the contract. Every function returns 0 (RQ_OK) or a negative
 * RQ_E* code; rq_strerror() explains each code. No function throws, aborts on
 * bad input, or keeps a pointer you passed after it returns.
 *
 * Thread safety: an rq_client may be used by any number of threads at once.
 * An rq_permit belongs to its caller; do not release the same permit from two
 * threads at the same time.
 *
 * Processes: each rq_open() registers the calling process in the segment's
 * process table. A child created by fork() that keeps using an inherited
 * rq_client is re-registered automatically on its first call, and is a holder
 * distinct from its parent. Permits acquired by the parent stay the parent's.
 */
#ifndef RATEQUEUE_RATEQUEUE_H
#define RATEQUEUE_RATEQUEUE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RQ_BUILDING_LIBRARY)
#define RQ_API __attribute__((visibility("default")))
#else
#define RQ_API
#endif

/* Compile-time version (ratequeue/version.h, generated from meson's
 * project()); compare with rq_version() to see what was loaded. */
#include "ratequeue/version.h"
#define RQ_VERSION_NUMBER (RQ_VERSION_MAJOR * 10000 + RQ_VERSION_MINOR * 100 + RQ_VERSION_PATCH)

/* One table generates the codes, rq_strerror() and rq_errname(). */
#define RQ_ERROR_MAP(X)                                                                    \
    X(OK, 0, "success")                                                                    \
    X(ETIMEDOUT, -1, "timed out before every limit allowed the acquire")                   \
    X(EAGAIN, -2, "no capacity right now (try-acquire), or waiters are queued ahead")      \
    X(ENOENT, -3, "no such resource: define it first")                                     \
    X(EINVAL, -4, "invalid argument")                                                      \
    X(ECONFLICT, -5, "resource already defined with different limits (use RQ_DEFINE_REPLACE)") \
    X(E2BIG, -6, "load exceeds what a limit can ever grant (burst or concurrency amount)") \
    X(ENOSPC, -7, "segment capacity exhausted (resources, processes or queue slots)")      \
    X(EINCOMPAT, -8, "segment has an incompatible layout version")                         \
    X(ECORRUPT, -9, "segment is corrupt, truncated or not a ratequeue segment")           \
    X(EACCES, -10, "segment is owned by another user or has looser permissions than expected") \
    X(ECANCELED, -11, "wait was cancelled")                                                \
    X(ESYS, -12, "system call failed (see errno)")                                         \
    X(EINTERNAL, -13, "internal error in ratequeue")                                      \
    X(EUNAVAIL, -14, "global quota unavailable: Redis cannot be reached (or refused us), and this host's lease is spent")

enum {
#define RQ_ERROR_ENUM_(name, value, text) RQ_##name = value,
    RQ_ERROR_MAP(RQ_ERROR_ENUM_)
#undef RQ_ERROR_ENUM_
};

/* ---- Limits ------------------------------------------------------------- */

enum { RQ_LIMIT_RATE = 1, RQ_LIMIT_CONCURRENCY = 2 };
enum { RQ_COST_REQUEST = 0, RQ_COST_LOAD = 1 };

/* Bounds on definitions; values outside them are RQ_EINVAL. */
#define RQ_MAX_LIMITS 8                       /* limits per resource */
#define RQ_MAX_NAME 63                        /* bytes in a resource name */
#define RQ_MAX_AMOUNT ((uint64_t)1 << 48)     /* amount, burst and load */
#define RQ_MIN_PERIOD_NS ((uint64_t)1000)     /* 1 us */
#define RQ_MAX_PERIOD_NS ((uint64_t)366 * 24 * 3600 * 1000000000ull) /* about a year */

typedef struct rq_limit {
    uint32_t kind;      /* RQ_LIMIT_RATE or RQ_LIMIT_CONCURRENCY */
    uint32_t cost;      /* RQ_COST_REQUEST: 1 per acquire; RQ_COST_LOAD: the acquire's load */
    uint64_t amount;    /* rate: units per period; concurrency: maximum held at once */
    uint64_t period_ns; /* rate only (0 for concurrency) */
    uint64_t burst;     /* rate only: bucket capacity in units; 0 means amount */
} rq_limit;

/* The per-minute shorthands, one meaning everywhere (Python rpm=/tpm=, rqctl
 * --rpm/--tpm, C++ rq::rpm/rq::tpm): n per minute, with a bucket of
 * burst_ms' worth, ceil(n * burst_ms / 60000) and at least 1; burst_ms 0
 * takes the default of each:
 *   rpm: requests, half a second's worth (RQ_RPM_BURST_MS): providers pace
 *        requests per second (a bucket of one second's worth at most), so a
 *        burst of a whole minute would be refused; and a request reaches the
 *        provider some time after it was admitted, so the other half second
 *        absorbs differences in that delay (up to 0.5 s) that would otherwise
 *        bunch requests into a 429 (from 120 rpm up: below, the bucket is 1);
 *   tpm: load units (tokens), the whole minute (RQ_TPM_BURST_MS): providers
 *        count tokens per minute, so any single request they would admit
 *        (up to n tokens) fits. */
#define RQ_RPM_BURST_MS 500u
#define RQ_TPM_BURST_MS 60000u
static inline rq_limit rq_per_minute_(uint32_t cost, uint64_t n, uint32_t burst_ms) {
    uint64_t b = (n * burst_ms + 59999u) / 60000u; /* n <= RQ_MAX_AMOUNT, burst_ms <= 60000: no overflow */
    rq_limit l;
    l.kind = RQ_LIMIT_RATE;
    l.cost = cost;
    l.amount = n;
    l.period_ns = 60000000000ull;
    l.burst = b < 1 ? 1 : b;
    return l;
}
static inline rq_limit rq_rpm(uint64_t n, uint32_t burst_ms) {
    return rq_per_minute_(RQ_COST_REQUEST, n, burst_ms ? burst_ms : RQ_RPM_BURST_MS);
}
static inline rq_limit rq_tpm(uint64_t n, uint32_t burst_ms) {
    return rq_per_minute_(RQ_COST_LOAD, n, burst_ms ? burst_ms : RQ_TPM_BURST_MS);
}

/* ---- Handles ------------------------------------------------------------ */

typedef struct rq_client rq_client; /* one process's attachment to one segment */
typedef struct rq_permit {
    uint64_t opaque[4];
} rq_permit; /* caller-owned; zero-initialised or filled by rq_acquire */

/* ---- Version ------------------------------------------------------------ */

/* Returns RQ_VERSION_NUMBER of the loaded library. Never fails. */
RQ_API int rq_version(void);
/* Returns the segment layout major version this library reads and writes. */
RQ_API int rq_layout_version(void);

/* ---- Opening a segment -------------------------------------------------- */

/* Options for rq_open_ex. Set size = sizeof(rq_open_options); zero fields take
 * the defaults shown. Fields added later go at the end. */
typedef struct rq_open_options {
    uint32_t size;
    uint32_t flags;          /* RQ_OPEN_GROUP: create 0660, accept group-owned segments */
    uint32_t max_resources;  /* default 256 (1..65536) */
    uint32_t queue_slots;    /* per resource; default 1024; power of two, 2..1048576 */
    uint32_t max_processes;  /* default 1024 (1..65536) */
    uint32_t lease_ttl_ms;   /* many hosts: how long Redis keeps this host's lease after
                                its last call (default 10000; 100..3600000) */
    const char *redis_url;   /* many hosts: redis://[[user]:password@]host[:port][/db] or
                                unix:///path[?db=N]; NULL: $RATEQUEUE_REDIS_URL; "" or
                                unset: this host only */
} rq_open_options;
#define RQ_OPEN_GROUP 1u

/* Opens (and creates if missing) the segment NAME: the POSIX shm object
 * "/NAME" (/dev/shm/NAME). There are no companion files: liveness locks are
 * OFD locks on the segment file itself.
 * segment NULL: $RATEQUEUE_SEGMENT, else "ratequeue". Names are 1..200 bytes
 * of [A-Za-z0-9._-].
 *
 * Creation is race-free: the segment is built under a temporary name and
 * linked into place only when ready, so concurrent openers see either no
 * segment or a complete one. New segments have mode 0600 (0660 with
 * RQ_OPEN_GROUP). Capacities are fixed at creation; options are ignored when
 * the segment already exists.
 *
 * Each open client runs one thread of its own (a "sentinel": it blocks all
 * signals, sleeps in the kernel, and uses no CPU) that lets the kernel tell
 * other processes at once when this one dies. A forked child that uses an
 * inherited client starts its own on first use. So a process with an open
 * client is multi-threaded when it forks (Python 3.12 and later warn about
 * that for os.fork; the sentinel holds no lock a child could need).
 *
 * Errors: RQ_EINVAL (bad name/options), RQ_EACCES (another user's segment, or
 * mode looser than expected, e.g. world-writable), RQ_ECORRUPT (truncated,
 * zero-length, bad magic, inconsistent header, or not a regular file at the
 * name), RQ_EINCOMPAT (other layout version), RQ_ENOSPC (process table
 * full), RQ_ESYS.
 * Cost: a few system calls and a thread start (about 100 us); not for hot
 * paths. */
RQ_API int rq_open(const char *segment, rq_client **out);
RQ_API int rq_open_ex(const char *segment, const rq_open_options *options, rq_client **out);

/* Detaches: returns every concurrency permit this client still holds, leaves
 * every queue it is in, and frees the process slot. NULL is a no-op. No other
 * call on the same client may run concurrently with or after rq_close. In a
 * forked child that never used the client, it only unmaps (the parent's slot
 * stays the parent's). */
RQ_API void rq_close(rq_client *c);

/* ---- Defining resources ------------------------------------------------- */

#define RQ_DEFINE_REPLACE 1u
/* Many hosts. A client opened with a Redis URL defines global resources: every
 * host on that Redis shares their limits. RQ_DEFINE_LOCAL keeps one on this
 * host only. RQ_DEFINE_LOCAL_SHARE (global only): while Redis cannot be
 * reached, admit limit / hosts here instead of failing closed. A client
 * without a URL defines host-only resources, and accepts a global one that
 * this host has already defined with the same limits. */
#define RQ_DEFINE_LOCAL 2u
#define RQ_DEFINE_LOCAL_SHARE 4u

/* Defines resource with 1..RQ_MAX_LIMITS limits, all enforced at once.
 * Idempotent: the same limits again return 0. Different limits return
 * RQ_ECONFLICT unless flags has RQ_DEFINE_REPLACE, which swaps the limits in
 * atomically; rate debt and concurrency in use carry over.
 * Names: 1..RQ_MAX_NAME printable ASCII bytes, no spaces.
 * Errors: RQ_EINVAL (name, kind, cost, amount 0 or > RQ_MAX_AMOUNT, period
 * outside [RQ_MIN_PERIOD_NS, RQ_MAX_PERIOD_NS], burst > RQ_MAX_AMOUNT, faster
 * than 1 unit per ns, or faster than 1 unit per 100 ns when period/amount is
 * not a whole number of ns, period set on a concurrency limit, a global rate
 * limit deeper than 2^52 ns), RQ_ECONFLICT (also: defined differently in Redis
 * by another host), RQ_EUNAVAIL (global, and Redis cannot be reached or
 * refused us: rq_remote_error says why), RQ_ENOSPC (resource table full),
 * RQ_ECORRUPT.
 * Cost: takes the segment's define lock; a global first definition also makes
 * one Redis round trip. Not for hot paths. */
RQ_API int rq_define(rq_client *c, const char *resource, const rq_limit *limits, size_t n,
                     uint32_t flags);

/* Reads the current limits of resource into limits[0..cap); *n gets the count.
 * Errors: RQ_ENOENT, RQ_EINVAL (cap too small), RQ_ECORRUPT. */
RQ_API int rq_describe(rq_client *c, const char *resource, rq_limit *limits, size_t cap,
                       size_t *n);

/* ---- Acquire and release ------------------------------------------------ */

/* Takes `load` from every limit of resource at one instant (rate limits charge
 * 1 or load; concurrency limits hold 1 or load until rq_release), waiting in
 * FIFO ticket order behind earlier acquirers.
 *   timeout_ns < 0: wait as long as it takes.
 *   timeout_ns = 0: try once; RQ_EAGAIN if it would wait or anyone is queued
 *                   (try never barges past waiters).
 *   timeout_ns > 0: RQ_ETIMEDOUT after that long; the caller leaves the line
 *                   without a trace.
 * Waiting sleeps in the kernel (futex); it never polls. The uncontended path
 * makes no system call.
 * On success *out holds the permit: release it with rq_release (rate-only
 * resources need no release, but it is harmless).
 * Errors: RQ_ENOENT, RQ_EINVAL (load 0 or > RQ_MAX_AMOUNT, NULL out),
 * RQ_E2BIG (load above a limit's burst or concurrency amount: it could never
 * be granted), RQ_EAGAIN, RQ_ETIMEDOUT, RQ_ENOSPC (queue full), RQ_ECORRUPT. */
RQ_API int rq_acquire(rq_client *c, const char *resource, uint64_t load, int64_t timeout_ns,
                      rq_permit *out);

/* Gives back the concurrency held by the permit. Releasing an already
 * released, zeroed or rate-only permit returns 0 and does nothing.
 * Errors: RQ_EINVAL (permit of another client or process, or forged),
 * RQ_ECORRUPT. */
RQ_API int rq_release(rq_client *c, rq_permit *p);

/* ---- Resolved resources (the hot path without the name) ----------------- */

/* A resource looked up once, for acquires that skip the name lookup. It
 * stays valid while the resource exists in the segment this client has open
 * (resources are never removed); the acquire checks it every time. */
typedef struct rq_resource {
    uint64_t opaque[2];
} rq_resource;

/* Errors: RQ_ENOENT, RQ_EINVAL (bad name, NULL out), RQ_ECORRUPT. */
RQ_API int rq_resolve(rq_client *c, const char *resource, rq_resource *out);

/* rq_acquire on a resolved resource: the same behaviour and errors, plus
 * RQ_EINVAL for a handle that is zeroed, forged or of another segment. (When
 * several things are wrong at once, which one is reported may differ from
 * rq_acquire: a damaged segment's RQ_ECORRUPT may come before RQ_EINVAL.) */
RQ_API int rq_acquire_r(rq_client *c, const rq_resource *resource, uint64_t load, int64_t timeout_ns,
                        rq_permit *out);

/* ---- LLM quota semantics --------------------------------------------------- */

/* What an acquire predicted. Set size = sizeof(rq_wait_info) before the call. */
typedef struct rq_wait_info {
    uint32_t size;
    uint32_t reserved;
    int64_t predicted_wait_ns; /* RQ_ETIMEDOUT: how long the acquire would have had
                                  to wait at least (> 0) when it failed at once
                                  because its deadline came before that; else -1 */
} rq_wait_info;

/* rq_acquire, failing fast: when the rate limits (and a penalty pause) alone
 * show that the acquire cannot start before its deadline, it returns
 * RQ_ETIMEDOUT at once, without taking a place in line, and
 * info->predicted_wait_ns says how long it would have waited at least (a
 * strict lower bound from the buckets and any pause, for this load alone:
 * those queued ahead, which may still leave, and a concurrency limit can only
 * make the real wait longer). A caller can route the work elsewhere at once.
 * info may be NULL. Otherwise exactly rq_acquire. */
RQ_API int rq_acquire_ex(rq_client *c, const char *resource, uint64_t load, int64_t timeout_ns,
                         rq_permit *out, rq_wait_info *info);

/* The least time an acquire of load on resource would wait if it queued now
 * (0: it could be admitted at once as far as the rate limits and any pause
 * go). Takes nothing. Errors: RQ_ENOENT, RQ_EINVAL, RQ_E2BIG, RQ_ECORRUPT. */
RQ_API int rq_predict_wait(rq_client *c, const char *resource, uint64_t load, int64_t *wait_ns);

/* Settles a permit acquired with an estimated load at the actual usage
 * (0 <= actual <= RQ_MAX_AMOUNT). On every rate limit whose cost is the load,
 * usage above the estimate is charged now, as debt that later acquirers wait
 * out. Unused estimate goes back to the bucket (whoever waits for it is
 * woken) as far as the grant's charge is still ahead of the clock: a settle
 * after the bucket has drained past it gives back less, never capacity the
 * rate did not allow (on the first load-cost rate limit; other load-cost
 * rate limits keep the estimate). On a concurrency limit whose cost is the load, the permit then
 * holds `actual` (rq_release gives back what it holds). Request-cost limits
 * are not touched. Each adjustment is one atomic step, exact in the same
 * integer nanoseconds as the acquire; if the process dies half way, the
 * limits not yet adjusted keep the estimate (the safe side).
 * Errors: RQ_EINVAL (settled already, released, zeroed, forged, another
 * process's permit, actual out of range), RQ_ECORRUPT. */
RQ_API int rq_settle(rq_client *c, rq_permit *p, uint64_t actual);

/* Shares a provider's back-off (a 429 with retry-after): nobody on this
 * machine is admitted on resource before now + pause_ns. Waiters keep their
 * FIFO places and the head sleeps until the pause ends. A second penalty
 * extends the pause, never shortens it. 0 <= pause_ns <= RQ_MAX_PERIOD_NS.
 * Errors: RQ_ENOENT, RQ_EINVAL. */
RQ_API int rq_penalize(rq_client *c, const char *resource, int64_t pause_ns);

/* Follows what the provider reports for rate limit limit_index (0-based, in
 * definition order) of resource: `remaining` units left now, the window full
 * again in reset_ns. The local bucket is lowered so that at no instant before
 * the reset does it hold more than `remaining` (less what is used meanwhile);
 * it is never raised, so capacity never goes above the configured limit.
 * Errors: RQ_ENOENT, RQ_EINVAL (no such limit, not a rate limit, reset_ns < 0
 * or above RQ_MAX_PERIOD_NS, remaining > RQ_MAX_AMOUNT). */
RQ_API int rq_observe(rq_client *c, const char *resource, uint32_t limit_index, uint64_t remaining,
                      int64_t reset_ns);

/* ---- Waiting without a thread per waiter -------------------------------- */

/* A place in a resource's line, owned by the caller (an event loop, a thread
 * pool), so that many waiters of one process need not each block a thread.
 * Keep the rq_ticket at one address from rq_enqueue until the ticket is
 * finished (served, timed out or cancelled): rq_wait and rq_cancel share a
 * word inside it. A ticket belongs to the process that took it.
 *
 * The line is FIFO: a ticket becomes head only after every earlier one was
 * served or left, so a process only ever needs to wait on its earliest
 * ticket of each resource; later ones keep their places without a thread. A
 * ticket that reaches the head holds up the line behind it until someone
 * calls rq_wait on it or cancels it; waiting in ticket order does that by
 * itself. rq_close cancels every ticket the client still has. */
typedef struct rq_ticket {
    uint64_t opaque[4];
} rq_ticket;

/* Takes a place in the line of resource for `load`, without waiting. The same
 * checks as rq_acquire run first.
 * Errors: RQ_ENOENT, RQ_EINVAL, RQ_E2BIG, RQ_ENOSPC (queue full), RQ_ECORRUPT. */
RQ_API int rq_enqueue(rq_client *c, const char *resource, uint64_t load, rq_ticket *t);

/* Waits until the ticket is head and every limit allows its load, then takes
 * them as rq_acquire does and fills *out; the ticket is then finished.
 *   timeout_ns < 0: as long as it takes.
 *   timeout_ns = 0: poll: RQ_EAGAIN if it cannot be served right now; the
 *                   ticket keeps its place (and, at the head, holds the line).
 *   timeout_ns > 0: RQ_ETIMEDOUT after that long; the ticket leaves the line.
 * RQ_ECANCELED when rq_cancel was called on it, before or during this wait;
 * the ticket has left the line. A cancel that races with the grant may lose:
 * then this returns 0 and the permit is yours to release.
 * One thread at a time may wait on a ticket (another gets RQ_EINVAL).
 * Errors: RQ_EINVAL (finished, forged, or another process's ticket),
 * RQ_E2BIG (a redefine made the load impossible), RQ_EAGAIN, RQ_ETIMEDOUT,
 * RQ_ECANCELED, RQ_ECORRUPT. */
RQ_API int rq_wait(rq_client *c, rq_ticket *t, int64_t timeout_ns, rq_permit *out);

/* Leaves the line, from any thread, without blocking: a ticket nobody waits
 * on leaves at once; a thread in rq_wait on it wakes and returns
 * RQ_ECANCELED. Harmless on a finished or zeroed ticket. (A head serves the
 * tickets right behind it on its owners' behalf: cancelling a ticket nobody
 * waited on after that leaves its tokens spent; a waiting rq_wait returns the
 * permit, a grant beats a cancel.) Keep the rq_ticket
 * until both this call and any rq_wait on it have returned (it wakes the
 * waiter through a word inside the ticket).
 * Errors: RQ_EINVAL (forged, or another process's ticket). */
RQ_API int rq_cancel(rq_client *c, rq_ticket *t);

/* ---- Operator repairs (what rqctl reset and rqctl reap call) ------------- */

#define RQ_RESET_HARD 1u

/* Refills every rate limit of resource (NULL: of every resource), returns the
 * concurrency held by dead processes, and wakes the head of the line so that
 * waiters proceed. Live holders keep their permits. With RQ_RESET_HARD, live
 * holders' concurrency is forgotten as well: the limit counts from zero, and
 * releasing a permit granted before the reset does nothing.
 * Errors: RQ_ENOENT, RQ_EINVAL, RQ_ECORRUPT. */
RQ_API int rq_reset(rq_client *c, const char *resource, uint32_t flags);

/* What rq_reap reclaimed. Set size = sizeof(rq_reap_report) before the call. */
typedef struct rq_reap_report {
    uint32_t size;
    uint32_t processes; /* dead processes whose slots were reclaimed */
    uint64_t permits;   /* concurrency permits they held, given back */
    uint64_t load;      /* the load those permits held */
} rq_reap_report;

/* Reclaims now every process slot whose owner is dead (instead of when a
 * waiter next notices): returns its permits and takes its tickets out of every
 * line. Errors: RQ_EINVAL (report NULL or size too small), RQ_ECORRUPT. */
RQ_API int rq_reap(rq_client *c, rq_reap_report *out);

/* ---- Errors ------------------------------------------------------------- */

/* Text for any code (unknown codes get a generic text). Never NULL. */
RQ_API const char *rq_strerror(int code);
/* Many hosts: copies the last Redis error this client saw (what failed and
 * what to do) into buf, NUL-terminated; "" when none. Returns its length. */
RQ_API size_t rq_remote_error(rq_client *c, char *buf, size_t len);

/* "RQ_ETIMEDOUT" etc. for any code. Never NULL. */
RQ_API const char *rq_errname(int code);

#ifdef __cplusplus
}
#endif

#endif /* RATEQUEUE_RATEQUEUE_H */
