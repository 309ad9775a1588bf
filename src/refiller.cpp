// Many hosts: the refiller's state machine (refiller.hpp), one process per
// host at a time.
//
// Per global resource, each tick (kTickNs while anything is held or wanted;
// otherwise it sleeps until a head asks, need_refill, or kIdleTickNs):
//   look      the TATs it last saw against now: units spent per limit (the
//             host's demand, smoothed), and whether the resource is busy
//             (spent, a head waiting, or holders);
//   expire    a lease past its local expiry is void: its credit is taken
//             (not given back: Redis writes it off at its own expiry);
//   decide    call Redis when: a rate limit is under its low-water mark (a
//             third of its chunk) or a head waits for more than is left; a
//             head waits for a concurrency slot; slots lie idle; the lease
//             nears expiry (a third of the TTL left) while anything is held;
//             or the resource has been idle kIdleNs (give everything back);
//   report    what the host keeps of each rate lease, what it gives back,
//             and what it wants (its chunk: kChunkNs of its own demand, at
//             least kMinChunk units, at most the burst / hosts); for
//             concurrency, the slots it keeps (at least those in use:
//             lowered first, under the resource lock) and how many more;
//   apply     credit and slots granted (raised after Redis granted them,
//             lowered before Redis hears of it), the new expiry (measured
//             from the instant the call was sent), then wake the head;
//   fail      the link is down: keep spending what is held until the
//             expiry (fail closed), or, with kFailLocalShare, admit limit /
//             hosts from the local clock; retry at growing intervals.
// Killed at any step, a refiller loses at most what Redis granted in its
// last call (the safe side); the next refiller goes on from the segment.
#include "refiller.hpp"

#include "charge.hpp"
#include "clock.hpp"
#include "lease.hpp"
#include "lease_script.hpp"

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace rq::detail {

namespace {

constexpr int64_t kTickNs = 5'000'000;           // busy: look every 5 ms
constexpr int64_t kIdleTickNs = 1'000'000'000;   // idle: 1 s (renewals, a missed wake)
constexpr int64_t kIdleNs = 500'000'000;         // idle this long: give the lease back
constexpr int64_t kCallNs = 250'000'000;         // deadline of one Redis call
constexpr int64_t kRetryMinNs = 20'000'000;      // after a failed call, retry in 20 ms,
constexpr int64_t kRetryMaxNs = 1'000'000'000;   // doubling up to 1 s
constexpr int64_t kChunkNs = 500'000'000;        // a chunk is 500 ms of the host's demand,
constexpr uint64_t kMinChunk = 32;               // at least this, at most burst / hosts
constexpr int64_t kBatchNs = 50'000'000;
constexpr int64_t kRateTauNs = 500'000'000;      // demand is smoothed over 0.5 s
constexpr int64_t kContendCheckNs = 100'000'000; // a host holding slots calls at least this often
constexpr int64_t kSlotRetryNs = 10'000'000;     // slots refused: ask again after 10 ms         // no grant smaller than 50 ms of demand
constexpr int64_t kShareTickNs = 2'000'000'000;  // local share: expiry kept this far ahead

uint64_t used_of(const Resource &res, const Limit &l) {
    // relaxed: a hint, checked again under the lock where it matters.
    return l.cost == RQ_COST_LOAD ? res.in_use_load.load(boost::memory_order_relaxed)
                                  : res.in_use_req.load(boost::memory_order_relaxed);
}

}  // namespace

struct Remote::PerResource {
    uint64_t word = 0;  // config word these notes belong to
    int64_t last_tat[kMaxLimits] = {};
    double rate[kMaxLimits] = {};  // units per second spent here, smoothed
    int64_t last_look = 0;
    int64_t last_busy = 0;
    int64_t next_call = 0;  // not before (retry backoff, or Redis's wait hint)
    int64_t backoff = 0;
    bool shared = false;    // local share in force
    int64_t share_mark = 0;
    uint64_t share_ns[kMaxLimits] = {};  // local share: ns accrued towards the next unit
    uint32_t hosts = 1;
    uint64_t share[kMaxLimits] = {};  // concurrency: come down to this (others wait), or 0
    bool told_idle = false;  // Redis has heard that we hold nothing (once per idle spell)
    int64_t last_call = 0;
    int64_t last_asked = 0;  // Lease::active_ns as last seen
    uint64_t reported[kMaxLimits] = {};  // concurrency: the slots Redis last heard we keep
};

std::string lease_key(std::string_view name) { return "rq:{" + std::string(name) + "}"; }

std::string lease_definition(const Limits &lim) {
    std::string d = "rq1";
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        char buf[128];
        std::snprintf(buf, sizeof buf, "|%u,%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64, l.kind, l.cost, l.amount,
                      l.kind == RQ_LIMIT_RATE ? l.period_ns : 0, l.kind == RQ_LIMIT_RATE ? l.burst : 0);
        d += buf;
    }
    d += (lim.flags & kFailLocalShare) != 0 ? "|local-share" : "|closed";
    return d;
}

namespace {

std::string host_hex(uint64_t id) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, id);
    return buf;
}

// The script's arguments for one call (see lease_script.hpp).
struct Call {
    std::vector<std::string> keys;
    std::vector<std::string> args;
};

Call make_call(std::string_view name, const Limits &lim, uint64_t host, uint32_t ttl_ms) {
    const std::string k = lease_key(name);
    Call c{{k, k + ":hosts", k + ":h"}, {lease_definition(lim), host_hex(host), std::to_string(ttl_ms),
                                         std::to_string(lim.count)}};
    return c;
}

}  // namespace

Remote::Remote(Engine &e, RedisUrl url, uint32_t ttl_ms)
    : e_(e), link_(url), define_link_(url), ttl_ms_(ttl_ms), state_(e.view().geo.max_resources) {}

Remote::~Remote() {
    if (!started_) return;
    stop_.store(1, std::memory_order_release);
    futex_wake(&stop_, INT32_MAX);
    pthread_join(thread_, nullptr);
}

void Remote::forget_after_fork() noexcept { started_ = false; }

int Remote::start() {
    sigset_t all, old;
    sigfillset(&all);
    // The thread takes no signal: the process's handlers run where they always did.
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const int err = pthread_create(&thread_, nullptr, &Remote::thread_main, this);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (err != 0) {
        errno = err;
        return RQ_ESYS;
    }
    started_ = true;
    return RQ_OK;
}

void *Remote::thread_main(void *self) {
    static_cast<Remote *>(self)->run();
    return nullptr;
}

std::string Remote::last_error() const {
    std::lock_guard<std::mutex> g(err_mu_);
    return last_error_;
}

void Remote::note_error(Resource *res, int rc, const std::string &what) {
    {
        std::lock_guard<std::mutex> g(err_mu_);
        last_error_ = what;
    }
    if (res == nullptr) return;
    Lease &l = res->lease;
    l.errors.fetch_add(1, boost::memory_order_relaxed);
    l.last_error.store(rc, boost::memory_order_relaxed);
    l.last_error_rt.store(realtime_ns(), boost::memory_order_relaxed);
    char buf[kLeaseErrorText] = {};
    std::snprintf(buf, sizeof buf, "%s", what.c_str());
    std::memcpy(l.last_error_text, buf, sizeof buf);  // display only (may tear)
}

int Remote::define(std::string_view name, const Limits &lim) {
    std::lock_guard<std::mutex> g(define_mu_);
    // TTL 0: the script checks or stores the definition and touches no
    // host's record (this host may hold a lease the refiller reported).
    Call c = make_call(name, lim, e_.view().header().host_id, 0);
    RedisResult res = define_link_.eval(kLeaseScript, lease_key(name), c.keys, c.args, now_ns() + 4 * kCallNs);
    if (res.rc != RQ_OK) note_error(nullptr, res.rc, res.error);
    return res.rc;
}

int remote_config(const rq_open_options *opts, RemoteConfig &out) {
    rq_open_options o{};
    if (opts != nullptr) {
        if (opts->size < sizeof(uint32_t) * 2 || opts->size > 4096) return RQ_EINVAL;
        std::memcpy(&o, opts, std::min<size_t>(opts->size, sizeof o));
    }
    const char *url = o.redis_url != nullptr ? o.redis_url : std::getenv("RATEQUEUE_REDIS_URL");
    out.url = url != nullptr ? url : "";
    out.ttl_ms = o.lease_ttl_ms != 0 ? o.lease_ttl_ms : kDefaultLeaseTtlMs;
    if (out.url.empty()) return RQ_OK;
    if (out.ttl_ms < 100 || out.ttl_ms > 3'600'000) return RQ_EINVAL;
    RedisUrl u;
    std::string why;
    if (parse_redis_url(out.url, u, why) != 0) {
        std::fprintf(stderr, "ratequeue: %s\n", why.c_str());
        return RQ_EINVAL;
    }
    return RQ_OK;
}

int Engine::start_remote(RemoteConfig cfg) {
    if (cfg.url.empty()) return RQ_OK;
    RedisUrl u;
    std::string why;
    if (parse_redis_url(cfg.url, u, why) != 0) return RQ_EINVAL;  // (remote_config checked it)
    remote_ = std::make_unique<Remote>(*this, std::move(u), cfg.ttl_ms);
    const int rc = remote_->start();
    if (rc != RQ_OK) remote_.reset();
    return rc;
}

std::string Engine::remote_error() const { return remote_ != nullptr ? remote_->last_error() : std::string(); }

// ---- Election --------------------------------------------------------------------

bool Remote::elect() {
    Header &h = e_.view().header();
    const uint32_t mine = e_.process_slot() + 1;
    // acquire: pairs with the CASes that take the word and resign's release.
    uint32_t w = h.refiller.load(boost::memory_order_acquire);
    if (w == mine) return true;
    if (w != 0) {
        const uint32_t owner = w - 1;
        // A word naming no slot is damage: take it as a dead owner's.
        if (owner < e_.view().geo.max_processes && e_.alive(owner)) return false;
    }
    // acq_rel: the one transition that makes us the refiller.
    if (!h.refiller.compare_exchange_strong(w, mine, boost::memory_order_acq_rel)) return false;
    h.refiller_pid.store(static_cast<uint32_t>(getpid()), boost::memory_order_relaxed);
    crash_point(CrashPoint::kRefillElected);
    return true;
}

void Remote::wait_as_candidate() {
    Header &h = e_.view().header();
    // acquire: as in elect.
    const uint32_t w = h.refiller.load(boost::memory_order_acquire);
    if (w == 0) return;
    DeathWatch dw;
    if (w - 1 < e_.view().geo.max_processes) e_.watch_death(w - 1, dw);
    const int64_t now = now_ns();
    if (dw.died) {
        // Its liveness lock may outlive the notice a moment.
        futex_wait(&stop_, 0, now + kDyingNs);
        return;
    }
    if (have_futex_wait_any()) {
        FutexWord words[DeathWatch::kMax + 2];
        uint32_t n = 0;
        words[n++] = FutexWord{&h.refiller, w};
        words[n++] = FutexWord{&stop_, 0};
        for (uint32_t i = 0; i < dw.n; ++i) words[n++] = dw.word[i];
        futex_wait_any(words, n, now + (dw.poll ? kWatchNs : kBackstopNs));
        relay_deaths(dw);
    } else {
        futex_wait(&stop_, 0, now + kWatchNs);
    }
}

void Remote::resign() {
    Header &h = e_.view().header();
    uint32_t mine = e_.process_slot() + 1;
    // release: pairs with the candidates' acquire loads (elect).
    if (h.refiller.compare_exchange_strong(mine, 0, boost::memory_order_release)) futex_wake(&h.refiller, INT32_MAX);
}

void Remote::run() {
    while (stop_.load(std::memory_order_acquire) == 0) {
        if (!elect()) {
            wait_as_candidate();
            continue;
        }
        rest(tick());
    }
    resign();
}

void Remote::rest(int64_t ns) {
    Header &h = e_.view().header();
    const int64_t until = now_ns() + ns;
    // release: pairs with need_refill's exchange (lease.cpp): a head that
    // comes after this store wakes us.
    h.refill_wake.store(1, boost::memory_order_release);
    if (have_futex_wait_any()) {
        const FutexWord words[2] = {{&h.refill_wake, 1}, {&stop_, 0}};
        futex_wait_any(words, 2, until);
    } else {
        futex_wait(&h.refill_wake, 1, std::min(until, now_ns() + kFallbackNs));
    }
}

// ---- The refill -------------------------------------------------------------------

int64_t Remote::tick() {
    const View &v = e_.view();
    int64_t next = kIdleTickNs;
    for (uint32_t r = 0; r < v.geo.max_resources; ++r) {
        Resource &res = v.resource(r);
        // acquire: pairs with the definer's release store of kReady.
        if (res.state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) continue;
        Limits lim;
        if (e_.read_limits(r, lim) != RQ_OK || !lim.global) continue;
        PerResource &st = state_[r];
        if (st.word != lim.word) st = PerResource{lim.word};
        next = std::min(next, step(r, lim, st, now_ns()));
        if (stop_.load(std::memory_order_acquire) != 0) break;
    }
    return next;
}

int64_t Remote::step(uint32_t r, const Limits &lim, PerResource &st, int64_t now) {
    Resource &res = e_.view().resource(r);
    Lease &ls = res.lease;
    // -- look
    bool busy = false;
    const double dt = st.last_look > 0 ? static_cast<double>(now - st.last_look) / 1e9 : 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
        const int64_t tat = res.tat[i].load(boost::memory_order_acquire);
        const int64_t moved = st.last_look > 0 && tat > st.last_tat[i] ? tat - st.last_tat[i] : 0;
        st.last_tat[i] = tat;
        const double spent = static_cast<double>(moved) / static_cast<double>(l.request_ns);
        if (spent > 0) busy = true;
        // Smoothed over kRateTauNs, whatever the tick: units per second.
        if (dt > 0) st.rate[i] += (spent - st.rate[i] * dt) / (dt + kRateTauNs / 1e9);
    }
    st.last_look = now;
    // A head's want counts while anyone is in line (a head that left, served
    // or not, is followed by another who says what it wants, or by nobody).
    // seq_cst: the queue word, as every reader of the line (queue.cpp).
    const QueueWord q = QueueWord::unpack(res.queue.load(boost::memory_order_seq_cst));
    // A try that found the lease short leaves nobody in line but says so
    // once (need_refill stamps active_ns): that counts as a want too.
    const int64_t ask_stamp = ls.active_ns.load(boost::memory_order_relaxed);
    const bool fresh_ask = ask_stamp != st.last_asked;
    st.last_asked = ask_stamp;
    const uint64_t want_load = q.head != q.tail || fresh_ask ? ls.want.load(boost::memory_order_relaxed) : 0;
    if (q.head != q.tail || fresh_ask) busy = true;
    for (uint32_t i = 0; i < lim.count; ++i) {
        if (lim.limit[i].kind == RQ_LIMIT_CONCURRENCY && used_of(res, lim.limit[i]) > 0) busy = true;
    }
    if (busy || st.last_busy == 0) st.last_busy = now;
    const bool idle = now - st.last_busy >= kIdleNs;
    // acquire: pairs with our own release stores (another refiller's, before us).
    const int64_t expires = ls.expires_ns.load(boost::memory_order_acquire);
    const bool expired = now >= expires;

    // -- reserved tokens that are due are folded into the horizon (Lease::
    // next_add: the exchange first, so a reader in between sees less).
    // acquire: pairs with our own release store (or a dead refiller's).
    int64_t pending[kMaxLimits] = {};
    const int64_t next_at = ls.next_at_ns.load(boost::memory_order_acquire);
    for (uint32_t i = 0; i < lim.count; ++i) {
        if (lim.limit[i].kind != RQ_LIMIT_RATE) continue;
        if (now >= next_at) {
            // acq_rel (both): pair with the admitting paths' acquire loads (lease_clock).
            const int64_t v = ls.next_add[i].exchange(0, boost::memory_order_acq_rel);
            if (v != 0) crash_point(CrashPoint::kRefillInFold);
            if (v > 0) ls.horizon[i].fetch_add(v, boost::memory_order_acq_rel);
            if (v != 0) e_.wake_head(r, false);
        } else {
            pending[i] = std::max<int64_t>(0, ls.next_add[i].load(boost::memory_order_acquire)) /
                         static_cast<int64_t>(lim.limit[i].request_ns);
        }
    }
    // -- expire: a lease Redis no longer counts must not be spent.
    if (expired && !st.shared) {
        for (uint32_t i = 0; i < lim.count; ++i) {
            // acq_rel: as the fold above.
            if (ls.next_add[i].load(boost::memory_order_relaxed) != 0) ls.next_add[i].exchange(0, boost::memory_order_acq_rel);
            pending[i] = 0;
            if (lim.limit[i].kind == RQ_LIMIT_RATE && lease_credit(res, lim.limit[i], i) > 0) {
                take_credit(res, lim.limit[i], i);
                st.last_tat[i] = res.tat[i].load(boost::memory_order_acquire);  // (not spending)
            }
        }
    }

    // -- decide
    const uint32_t hosts = std::max<uint32_t>(1, st.hosts);
    bool need = false, holds = false, shrink = false, has_slots = false;
    uint64_t chunk[kMaxLimits] = {};
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind == RQ_LIMIT_RATE) {
            const int64_t credit = lease_credit(res, l, i);
            holds |= credit > 0;
            const uint64_t cost = want_load != 0 ? cost_of(l, want_load) : 1;
            uint64_t c = std::max<uint64_t>(static_cast<uint64_t>(st.rate[i] * kChunkNs / 1e9) + 1, kMinChunk);
            c = std::min(c, std::max<uint64_t>(1, l.burst / hosts));
            c = std::max(c, std::min(cost, l.burst));
            chunk[i] = c;
            holds |= pending[i] != 0;
            if (pending[i] == 0) {  // (reserved tokens on their way: nothing to ask)
                if (!idle && credit < static_cast<int64_t>((c + 2) / 3)) need = true;
                if (want_load != 0 && credit < static_cast<int64_t>(cost)) need = true;
            }
        } else {
            const uint64_t slots = ls.slots[i].load(boost::memory_order_relaxed);
            const uint64_t used = used_of(res, l);
            holds |= slots > 0;
            has_slots |= slots > 0;
            if (want_load != 0 && slots < used + cost_of(l, want_load)) need = true;
            if (slots > used && want_load == 0 && (idle || now - st.last_busy >= kTickNs * 4)) shrink = true;
            if (st.share[i] != 0) {
                // Others wait: our cap comes down to our share at once
                // (a local move, under the lock), and Redis hears of it
                // when what we hold has come down too.
                if (slots > st.share[i] && e_.lock(res.lock, false, r, now + kCallNs) == RQ_OK) {
                    ls.slots[i].store(std::min(ls.slots[i].load(boost::memory_order_relaxed), st.share[i]),
                                      boost::memory_order_seq_cst);
                    e_.unlock(res.lock);
                }
                if (std::max(used, std::min(slots, st.share[i])) < st.reported[i]) shrink = true;
            }
        }
    }
    // Renew a third of the TTL before expiry; slots also every
    // kContendCheckNs, to hear whether other hosts wait for them (Redis
    // cannot call us).
    bool renew = holds && !expired && expires - now < static_cast<int64_t>(ttl_ms_) * 1'000'000 / 3;
    if (has_slots && now - st.last_call >= kContendCheckNs) renew = true;
    // Idle: everything back, and Redis told so once even when nothing is
    // left to give (what we spent is then off its books at once, not at
    // the expiry; a refiller that took over does not know what was said).
    const bool give_back = idle && !st.shared && (holds || !st.told_idle);
    if (!idle) st.told_idle = false;
    if (!need && !renew && !give_back && !shrink) {
        if (st.shared) local_share(r, lim, st, now);
        return busy || holds ? kTickNs : kIdleTickNs;
    }
    if (now < st.next_call) {
        if (st.shared) local_share(r, lim, st, now);
        return std::min(st.next_call - now, kTickNs);
    }

    // -- report
    Call c = make_call({res.name, std::min<uint32_t>(res.name_len, kMaxNameLen)}, lim, e_.view().header().host_id,
                       ttl_ms_);
    uint64_t asked[kMaxLimits] = {};
    uint64_t kept[kMaxLimits] = {};
    const bool was_shared = st.shared;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind == RQ_LIMIT_RATE) {
            uint64_t keep = 0, give = 0, want = 0, least = 0;
            if (was_shared) {
                take_credit(res, l, i);  // local share's credit is not Redis's: drop it
            } else if (give_back) {
                // (reserved ones repay Redis's debt)
                const int64_t v = ls.next_add[i].exchange(0, boost::memory_order_acq_rel);
                give = take_credit(res, l, i) + static_cast<uint64_t>(std::max<int64_t>(0, v)) / l.request_ns;
            } else if (pending[i] != 0) {
                // Reserved tokens on their way: report them as held, ask no more.
                const int64_t credit = lease_credit(res, l, i);
                keep = (credit > 0 ? static_cast<uint64_t>(credit) : 0) + static_cast<uint64_t>(pending[i]);
            } else {
                const int64_t credit = lease_credit(res, l, i);
                keep = credit > 0 ? static_cast<uint64_t>(credit) : 0;
                const uint64_t owed = credit < 0 ? static_cast<uint64_t>(-credit) : 0;
                const uint64_t target = chunk[i] + owed;
                want = target > keep ? std::min(target - keep, l.burst - std::min(keep, l.burst)) : 0;
                // Half a chunk at least (fewer, larger calls; Redis reserves
                // it from the future when the bucket is short), and at least
                // a waiting head's cost and debt, and kBatchNs of demand.
                // A head waits: the host is short, and so, likely, are the
                // others; every such host asks the same (half its burst /
                // hosts), so that reservations, served in order, share the
                // quota equally whatever each host got before.
                const uint64_t cost = want_load != 0 ? cost_of(l, want_load) + owed : 0;
                const uint64_t batch = static_cast<uint64_t>(st.rate[i] * kBatchNs / 1e9);
                least = want_load != 0 ? std::max(cost > keep ? cost - keep : 1, l.burst / hosts / 2)
                                       : std::max({uint64_t{1}, want / 2, batch});
                least = std::clamp<uint64_t>(least, want != 0 ? 1 : 0, want);
            }
            asked[i] = want;
            c.args.insert(c.args.end(), {"1", std::to_string(l.burst), std::to_string(l.request_ns),
                                         std::to_string(keep), std::to_string(give), std::to_string(want),
                                         std::to_string(least)});
        } else {
            uint64_t keep = ls.slots[i].load(boost::memory_order_relaxed);
            if (shrink || give_back || was_shared || expired) {
                // Lowered here first, under the lock (no admission races it),
                // then reported: to what is in use, or while others wait and
                // ours do too, to our share.
                // Contended, the cap drops to our share at once (below what
                // is held, if need be: no new admission here until enough
                // holders have released), and Redis hears of what is held.
                const bool contended = st.share[i] != 0 && !give_back;
                if (e_.lock(res.lock, false, r, now_ns() + kCallNs) == RQ_OK) {
                    crash_point(CrashPoint::kRefillLowering);
                    const uint64_t held = used_of(res, l);
                    const uint64_t cap = contended ? std::min(keep, st.share[i]) : std::min(keep, held);
                    ls.slots[i].store(cap, boost::memory_order_seq_cst);
                    keep = std::max(cap, held);
                    e_.unlock(res.lock);
                }
            }
            keep = std::max(keep, used_of(res, l));
            const uint64_t cost = want_load != 0 ? cost_of(l, want_load) : 0;
            const uint64_t used = used_of(res, l);
            const uint64_t want = used + cost > keep ? used + cost - keep : 0;
            asked[i] = want;
            kept[i] = keep;
            c.args.insert(c.args.end(), {"2", std::to_string(l.amount), std::to_string(keep), std::to_string(want)});
        }
    }
    // (Credit taken above moved the TATs: not the host's spending.)
    for (uint32_t i = 0; i < lim.count; ++i) {
        // acquire: as in look.
        if (lim.limit[i].kind == RQ_LIMIT_RATE) st.last_tat[i] = res.tat[i].load(boost::memory_order_acquire);
    }
    crash_point(CrashPoint::kRefillBeforeCall);
    const int64_t sent = now_ns();
    st.last_call = sent;
    RedisResult rr = link_.eval(kLeaseScript, lease_key({res.name, std::min<uint32_t>(res.name_len, kMaxNameLen)}),
                                c.keys, c.args, sent + kCallNs);
    ls.round_trips.fetch_add(1, boost::memory_order_relaxed);
    // The reply's shape: hosts, then 3 per limit, each in range.
    if (rr.rc == RQ_OK) {
        bool ok = rr.ints.size() == 1 + 3 * size_t{lim.count} && rr.ints[0] >= 0 && rr.ints[0] <= 1'000'000;
        for (uint32_t i = 0; ok && i < lim.count; ++i) {
            const int64_t g = rr.ints[1 + 3 * i];
            const Limit &l = lim.limit[i];
            ok = g >= 0 && rr.ints[2 + 3 * i] >= 0 && rr.ints[3 + 3 * i] >= 0 &&
                 (l.kind == RQ_LIMIT_RATE ? static_cast<uint64_t>(g) <= asked[i] : static_cast<uint64_t>(g) <= l.amount);
        }
        if (!ok) {
            rr.rc = RQ_EUNAVAIL;
            rr.error = "Redis answered the lease script with values out of range";
        }
    }
    if (rr.rc != RQ_OK) {
        // -- fail
        note_error(&res, rr.rc, rr.error);
        st.backoff = std::clamp(st.backoff * 2, kRetryMinNs, kRetryMaxNs);
        st.next_call = now_ns() + st.backoff;
        if ((lim.flags & kFailLocalShare) != 0 && rr.rc == RQ_EUNAVAIL) {
            if (!st.shared) {
                st.shared = true;
                st.share_mark = now_ns();
            }
            ls.link.store(static_cast<uint32_t>(LinkState::kLocalShare), boost::memory_order_seq_cst);
            local_share(r, lim, st, now_ns());
        } else {
            ls.link.store(static_cast<uint32_t>(LinkState::kDown), boost::memory_order_seq_cst);
        }
        e_.wake_head(r, false);  // a head past its deadline learns the code
        return std::min(st.backoff, kTickNs);
    }
    // -- apply
    crash_point(CrashPoint::kRefillAfterReply);
    if (give_back) st.told_idle = true;
    st.backoff = 0;
    st.shared = false;
    st.hosts = static_cast<uint32_t>(std::max<int64_t>(1, rr.ints[0]));
    ls.hosts.store(st.hosts, boost::memory_order_relaxed);
    ls.rtt_ns_total.fetch_add(static_cast<uint64_t>(rr.rtt_ns), boost::memory_order_relaxed);
    if (static_cast<uint64_t>(rr.rtt_ns) > ls.rtt_ns_max.load(boost::memory_order_relaxed)) {
        ls.rtt_ns_max.store(static_cast<uint64_t>(rr.rtt_ns), boost::memory_order_relaxed);
    }
    const int64_t received = now_ns();
    int64_t next_at_new = 0;
    int64_t next_add_new[kMaxLimits] = {};
    int64_t hint = 0;
    uint64_t lost = 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        const uint64_t g = static_cast<uint64_t>(rr.ints[1 + 3 * i]);
        const int64_t wait = rr.ints[2 + 3 * i];
        if (l.kind == RQ_LIMIT_RATE) {
            ls.granted.fetch_add(g, boost::memory_order_relaxed);
            if (g > 0 && wait > 0) {
                // Reserved: spendable `wait` after we received the reply
                // (the instant Redis decided lies before it). Only one
                // reservation at a time (step asks none while one waits).
                next_at_new = std::max(next_at_new, received + wait);
                next_add_new[i] = static_cast<int64_t>(g * l.request_ns);
                hint = std::max(hint, wait);
            } else {
                add_credit(res, l, i, g);
                if (g == 0 && asked[i] > 0) hint = std::max(hint, wait);
            }
            lost += static_cast<uint64_t>(rr.ints[3 + 3 * i]);
        } else {
            crash_point(CrashPoint::kRefillInApply);
            // seq_cst: read by conc_fits beside the counters (charge.hpp).
            // Held beyond a share stays held; the cap is the share.
            st.share[i] = static_cast<uint64_t>(rr.ints[2 + 3 * i]);
            st.reported[i] = g;
            ls.slots[i].store(st.share[i] != 0 ? std::min(g, st.share[i]) : g, boost::memory_order_seq_cst);
        }
    }
    if (next_at_new != 0) {
        // Another limit's reservation still on its way keeps its instant if
        // later: moved, it would be spendable early; this one waits longer.
        for (uint32_t i = 0; i < lim.count; ++i) {
            if (ls.next_add[i].load(boost::memory_order_acquire) != 0) {
                next_at_new = std::max(next_at_new, ls.next_at_ns.load(boost::memory_order_acquire));
            }
        }
        // release (both): the instant before the amounts (lease.hpp, Lease::next_add).
        ls.next_at_ns.store(next_at_new, boost::memory_order_release);
        for (uint32_t i = 0; i < lim.count; ++i) {
            if (next_add_new[i] != 0) ls.next_add[i].store(next_add_new[i], boost::memory_order_release);
        }
    }
    ls.lost.store(lost, boost::memory_order_relaxed);
    // release: after the credit and slots it covers (lease.hpp, lease_live).
    ls.expires_ns.store(sent + static_cast<int64_t>(ttl_ms_) * 1'000'000 * 15 / 16, boost::memory_order_release);
    ls.link.store(static_cast<uint32_t>(LinkState::kUp), boost::memory_order_seq_cst);
    e_.wake_head(r, false);
    // Reserved tokens, or none granted: look again when they are due (sooner
    // makes no more of them). Slots asked for and not granted: ask again
    // after kSlotRetryNs (a release elsewhere is heard of no sooner).
    for (uint32_t i = 0; i < lim.count; ++i) {
        if (lim.limit[i].kind == RQ_LIMIT_CONCURRENCY && asked[i] > 0 &&
            static_cast<uint64_t>(rr.ints[1 + 3 * i]) < kept[i] + asked[i]) {
            hint = std::max(hint, kSlotRetryNs);
        }
    }
    st.next_call = hint > 0 ? now_ns() + std::min<int64_t>(hint, kIdleTickNs) : 0;
    return hint > 0 ? std::min<int64_t>(hint, kTickNs * 4) : kTickNs;
}

void Remote::local_share(uint32_t r, const Limits &lim, PerResource &st, int64_t now) {
    Resource &res = e_.view().resource(r);
    Lease &ls = res.lease;
    const uint32_t hosts = std::max<uint32_t>(1, st.hosts);
    const int64_t elapsed = std::max<int64_t>(0, now - st.share_mark);
    st.share_mark = now;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        if (l.kind == RQ_LIMIT_RATE) {
            // limit / hosts: one unit per request_ns * hosts of local time,
            // up to burst / hosts held.
            const uint64_t per = l.request_ns * hosts;
            st.share_ns[i] += static_cast<uint64_t>(elapsed);
            uint64_t units = st.share_ns[i] / per;
            st.share_ns[i] -= units * per;
            const int64_t credit = lease_credit(res, l, i);
            const int64_t cap = static_cast<int64_t>(std::max<uint64_t>(1, l.burst / hosts));
            if (credit + static_cast<int64_t>(units) > cap) units = credit >= cap ? 0 : static_cast<uint64_t>(cap - credit);
            add_credit(res, l, i, units);
        } else {
            ls.slots[i].store(std::max<uint64_t>(1, l.amount / hosts), boost::memory_order_seq_cst);
        }
    }
    ls.expires_ns.store(now + kShareTickNs, boost::memory_order_release);
    e_.wake_head(r, false);
}

}  // namespace rq::detail
