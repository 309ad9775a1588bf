// Resources: names, the lock-free lookup table, their limits (the config
// seqlock: every write is write_limits, every read read_limits_in), and
// rq_define / rq_describe.
//
// The resource table is an open-addressing hash table keyed by name. Entries
// are only ever added (under the define lock), never removed, so linear
// probing stays valid and lookups need no lock: an entry's name is written
// before its state becomes kReady (release), and never changes afterwards.
#include "clock.hpp"
#include "core.hpp"
#include "gcra.hpp"
#include "refiller.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace rq::detail {

bool valid_resource_name(std::string_view name) {
    if (name.empty() || name.size() > kMaxNameLen) return false;
    for (char ch : name) {
        if (ch < 0x21 || ch > 0x7e) return false;
    }
    return true;
}

int normalize_limits(const rq_limit *in, size_t n, Limits &out) {
    if (in == nullptr || n < 1 || n > kMaxLimits) return RQ_EINVAL;
    out = Limits{};
    out.count = static_cast<uint32_t>(n);
    for (size_t i = 0; i < n; ++i) {
        const rq_limit &l = in[i];
        Limit &o = out.limit[i];
        if (l.cost != RQ_COST_REQUEST && l.cost != RQ_COST_LOAD) return RQ_EINVAL;
        if (l.amount < 1 || l.amount > RQ_MAX_AMOUNT) return RQ_EINVAL;
        o = Limit{l.kind, l.cost, l.amount, 0, 0, 0, 0, 0};
        if (l.kind == RQ_LIMIT_RATE) {
            if (l.period_ns < RQ_MIN_PERIOD_NS || l.period_ns > RQ_MAX_PERIOD_NS) return RQ_EINVAL;
            if (l.burst > RQ_MAX_AMOUNT) return RQ_EINVAL;
            RateParams p;
            if (!derive_rate(l.amount, l.period_ns, l.burst != 0 ? l.burst : l.amount, p)) return RQ_EINVAL;
            o.period_ns = p.period_ns;
            o.burst = p.burst;
            o.burst_ns = p.burst_ns;
            o.request_ns = p.request_ns;
            o.unit_ns = p.unit_ns;
        } else if (l.kind == RQ_LIMIT_CONCURRENCY) {
            if (l.period_ns != 0 || l.burst != 0) return RQ_EINVAL;
            out.has_conc = true;
        } else {
            return RQ_EINVAL;
        }
    }
    finish_limits(out);
    return RQ_OK;
}

void finish_limits(Limits &lim) {
    lim.has_conc = false;
    lim.first_load_rate = -1;
    lim.max_load = RQ_MAX_AMOUNT;
    for (uint32_t i = 0; i < lim.count; ++i) {
        const Limit &l = lim.limit[i];
        const bool rate = l.kind == RQ_LIMIT_RATE;
        lim.has_conc |= !rate;
        if (l.cost != RQ_COST_LOAD) continue;  // a cost of 1 always fits (burst, amount >= 1)
        lim.max_load = std::min(lim.max_load, rate ? l.burst : l.amount);
        if (rate && lim.first_load_rate < 0) lim.first_load_rate = static_cast<int32_t>(i);
    }
    lim.global = (lim.flags & kScopeGlobal) != 0;
    // A global resource is admitted from its lease: never by try_fast.
    lim.fast_max_load = lim.has_conc || lim.global ? 0 : lim.max_load;
    lim.one_request = !lim.global && lim.count == 1 && lim.limit[0].kind == RQ_LIMIT_RATE &&
                      lim.limit[0].cost == RQ_COST_REQUEST;
}

bool lease_view(Limits &lim) {
    if (!lim.global) return true;
    for (uint32_t i = 0; i < lim.count; ++i) {
        Limit &l = lim.limit[i];
        if (l.kind != RQ_LIMIT_RATE) continue;
        // Whole units of request_ns each: a lease of u units is u * request_ns
        // of horizon, and no split of it admits more than u (lease.hpp).
        // (Redis keeps the bucket in Lua numbers: exact below 2^53.)
        const u128 depth = static_cast<u128>(l.burst) * l.request_ns;
        if (depth > (uint64_t{1} << 52)) return false;
        l.unit_ns = l.request_ns;
        l.burst_ns = static_cast<uint64_t>(depth);
    }
    return true;
}

bool same_limits(const Limits &a, const Limits &b) {
    if (a.count != b.count || a.flags != b.flags) return false;
    for (uint32_t i = 0; i < a.count; ++i) {
        const Limit &x = a.limit[i], &y = b.limit[i];
        if (x.kind != y.kind || x.cost != y.cost || x.amount != y.amount || x.period_ns != y.period_ns ||
            x.burst != y.burst) {
            return false;
        }
    }
    return true;
}

int Engine::lookup(std::string_view name, uint32_t &r) const { return lookup_in(view_, name, r); }

int lookup_in(const View &view_, std::string_view name, uint32_t &r) {
    const uint32_t cap = view_.geo.max_resources;
    const uint64_t h = name_hash(name);
    for (uint32_t i = 0, idx = home_index(h, cap); i < cap; ++i, idx = idx + 1 == cap ? 0 : idx + 1) {
        Resource &res = view_.resource(idx);
        // acquire: pairs with the definer's release store of kReady.
        uint32_t st = res.state.load(boost::memory_order_acquire);
        if (st == static_cast<uint32_t>(ResourceState::kFree)) return RQ_ENOENT;
        if (st > static_cast<uint32_t>(ResourceState::kReady)) return RQ_ECORRUPT;
        if (st == static_cast<uint32_t>(ResourceState::kReady) && res.name_hash == h &&
            res.name_len == name.size() && std::memcmp(res.name, name.data(), name.size()) == 0) {
            r = idx;
            return RQ_OK;
        }
    }
    return RQ_ENOENT;
}

namespace {

// read_limits_in: reads of the config seqlock that may see a definer at work
// before it calls the config damaged. A definer flips the buffers once per
// define, under the define lock; 64 changes during one read of a few hundred
// bytes do not happen in a sound segment.
constexpr int kMaxConfigReads = 64;
// carry_rate_debt: CASes on one TAT it may lose to acquires (each one is an
// admission) before it leaves the debt in ns of the old rate.
constexpr int kMaxDebtTries = 100;

// Checks one limit read from shared memory: kinds, ranges, and that the
// derived constants agree with the definition (cheap multiplications only).
bool sane(const Limit &l) {
    if (l.cost != RQ_COST_REQUEST && l.cost != RQ_COST_LOAD) return false;
    if (l.amount < 1 || l.amount > RQ_MAX_AMOUNT) return false;
    if (l.kind == RQ_LIMIT_CONCURRENCY) return true;
    if (l.kind != RQ_LIMIT_RATE) return false;
    if (l.period_ns < RQ_MIN_PERIOD_NS || l.period_ns > RQ_MAX_PERIOD_NS) return false;
    if (l.burst < 1 || l.burst > RQ_MAX_AMOUNT || l.burst_ns > kMaxBurstNs) return false;
    if (l.request_ns < 1 || l.request_ns > l.period_ns) return false;
    u128 lo = static_cast<u128>(l.request_ns - 1) * l.amount;
    u128 hi = static_cast<u128>(l.request_ns) * l.amount;
    if (lo >= l.period_ns || hi < l.period_ns) return false;
    if (l.unit_ns != 0 && static_cast<u128>(l.unit_ns) * l.amount != l.period_ns) return false;
    if (l.unit_ns == 0 && l.request_ns <= kMinInexactUnitNs) return false;  // derive_rate's rule
    // burst_ns == floor(burst * period / amount), checked by multiplication.
    u128 depth = static_cast<u128>(l.burst) * l.period_ns;
    if (static_cast<u128>(l.burst_ns) * l.amount > depth || static_cast<u128>(l.burst_ns + 1) * l.amount <= depth) {
        return false;
    }
    return true;
}

}  // namespace

int Engine::read_limits(uint32_t r, Limits &out, uint64_t *word) const {
    return read_limits_in(view_, r, out, word);
}

int read_limits_in(const View &view_, uint32_t r, Limits &out, uint64_t *word) {
    Resource &res = view_.resource(r);
    for (int attempt = 0; attempt < kMaxConfigReads; ++attempt) {
        // acquire: pairs with write_limits()'s release store of the word.
        uint64_t w1 = res.config_word.load(boost::memory_order_acquire);
        const Config &c = res.config[ConfigWord::unpack(w1).active];
        uint32_t n = c.count.load(boost::memory_order_relaxed);
        out.flags = c.flags.load(boost::memory_order_relaxed);
        bool shape = n >= 1 && n <= kMaxLimits && (out.flags & ~kConfigFlagsMask) == 0;
        out.count = shape ? n : 0;
        out.has_conc = false;
        for (uint32_t i = 0; i < out.count; ++i) {
            const LimitConfig &lc = c.limits[i];
            out.limit[i] = Limit{lc.kind.load(boost::memory_order_relaxed), lc.cost.load(boost::memory_order_relaxed),
                                 lc.amount.load(boost::memory_order_relaxed), lc.period_ns.load(boost::memory_order_relaxed),
                                 lc.burst.load(boost::memory_order_relaxed), lc.burst_ns.load(boost::memory_order_relaxed),
                                 lc.request_ns.load(boost::memory_order_relaxed), lc.unit_ns.load(boost::memory_order_relaxed)};
        }
        // Seqlock read side: the fence orders the field loads before the
        // re-check; it pairs with write_limits()'s release fence.
        boost::atomic_thread_fence(boost::memory_order_acquire);
        if (res.config_word.load(boost::memory_order_relaxed) != w1) continue;
        if (!shape) return RQ_ECORRUPT;
        for (uint32_t i = 0; i < out.count; ++i) {
            if (!sane(out.limit[i])) return RQ_ECORRUPT;
        }
        finish_limits(out);
        if (!lease_view(out)) return RQ_ECORRUPT;
        out.word = w1;
        out.name_hash = res.name_hash;  // immutable once kReady (our caller saw it with acquire)
        if (word != nullptr) *word = w1;
        return RQ_OK;
    }
    return RQ_ECORRUPT;
}

// Validated limits of resource r (limits_of, inline in core.hpp). Shared memory is read and checked once per
// definition, not on every acquire: checked copies live in a per-process
// cache keyed by the config word, and are immutable once published. A word
// that changes while the fields do not (damage) cannot hurt: we go on using
// the copy we checked. A resource whose word keeps changing (more than
// kMaxCachedVersions definitions seen by this process) is read into `scratch`
// each time instead, so a hostile writer cannot make the cache grow.
int Engine::refresh_limits(uint32_t r, Limits &scratch, const Limits *&out) noexcept {
    // Only a defined resource has limits (a handle may name any index).
    // acquire: pairs with the definer's release store of kReady.
    if (view_.resource(r).state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) {
        return RQ_ENOENT;
    }
    std::unique_ptr<CachedLimits> fresh(new (std::nothrow) CachedLimits());
    if (fresh == nullptr) {
        errno = ENOMEM;
        return RQ_ESYS;
    }
    int rc = read_limits(r, fresh->lim, &fresh->config_word);
    if (rc != RQ_OK) return rc;
    try {
        std::lock_guard<std::mutex> guard(cache_mu_);
        if (cache_versions_[r] >= kMaxCachedVersions) {
            scratch = fresh->lim;
            out = &scratch;
            return RQ_OK;
        }
        // Kept until the engine closes; stored before it is published, so a
        // failed allocation leaves nothing dangling.
        const CachedLimits *c = fresh.get();
        cache_store_.push_back(std::move(fresh));
        ++cache_versions_[r];
        out = &c->lim;
        // release: pairs with limits_of()'s acquire load (the copy is
        // complete before it is published).
        limit_cache_[r].store(c, std::memory_order_release);
        return RQ_OK;
    } catch (const std::bad_alloc &) {
        errno = ENOMEM;
        return RQ_ESYS;
    } catch (...) {  // std::mutex::lock's system_error (never seen on Linux)
        return RQ_EINTERNAL;
    }
}

// Under the define lock (single writer). Fills the inactive buffer and flips.
int Engine::write_limits(uint32_t r, const Limits &lim) {
    Resource &res = view_.resource(r);
    // relaxed: the only writer is us, under the define lock.
    ConfigWord cw = ConfigWord::unpack(res.config_word.load(boost::memory_order_relaxed));
    // Seqlock write side: bump the version before touching the inactive
    // buffer, so a reader still on it from two versions ago sees a change.
    // The release fence orders this store before the field stores below; it
    // pairs with the readers' acquire fence before their re-check.
    res.config_word.store(ConfigWord{cw.version + 1, cw.active}.pack(), boost::memory_order_relaxed);
    boost::atomic_thread_fence(boost::memory_order_release);
    Config &c = res.config[cw.active ^ 1];
    c.count.store(lim.count, boost::memory_order_relaxed);
    c.flags.store(lim.flags, boost::memory_order_relaxed);
    for (uint32_t i = 0; i < kMaxLimits; ++i) {
        Limit l = i < lim.count ? lim.limit[i] : Limit{};
        LimitConfig &lc = c.limits[i];
        lc.kind.store(l.kind, boost::memory_order_relaxed);
        lc.cost.store(l.cost, boost::memory_order_relaxed);
        lc.amount.store(l.amount, boost::memory_order_relaxed);
        lc.period_ns.store(l.period_ns, boost::memory_order_relaxed);
        lc.burst.store(l.burst, boost::memory_order_relaxed);
        lc.burst_ns.store(l.burst_ns, boost::memory_order_relaxed);
        lc.request_ns.store(l.request_ns, boost::memory_order_relaxed);
        lc.unit_ns.store(l.unit_ns, boost::memory_order_relaxed);
    }
    // release: pairs with read_limits()'s acquire load.
    res.config_word.store(ConfigWord{cw.version + 2, cw.active ^ 1}.pack(), boost::memory_order_release);
    return RQ_OK;
}

// After a replace, a rate limit that stays a rate limit at the same index
// keeps its debt in units, not in nanoseconds of the old rate: 100 tokens
// owed under the old limit are 100 tokens owed under the new one (rounded
// against the caller). A full bucket stays full.
void Engine::carry_rate_debt(uint32_t r, const Limits &old_lim, const Limits &new_lim) {
    Resource &res = view_.resource(r);
    for (uint32_t i = 0; i < std::min(old_lim.count, new_lim.count); ++i) {
        const Limit &o = old_lim.limit[i], &n = new_lim.limit[i];
        if (o.kind != RQ_LIMIT_RATE || n.kind != RQ_LIMIT_RATE) continue;
        for (int tries = 0; tries < kMaxDebtTries; ++tries) {
            // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
            int64_t tat = res.tat[i].load(boost::memory_order_acquire);
            int64_t now = now_ns();
            if (tat <= now) break;
            u128 owed = (static_cast<u128>(tat - now) * o.amount + o.period_ns - 1) / o.period_ns;
            u128 ns = (std::min<u128>(owed, RQ_MAX_AMOUNT) * n.period_ns + n.amount - 1) / n.amount;
            int64_t moved = now + static_cast<int64_t>(std::min<u128>(ns, kMaxBurstNs));
            // acq_rel: pairs with every other CAS on this TAT (charge.hpp); an
            // acquire that loses to it re-reads the limits.
            if (res.tat[i].compare_exchange_strong(tat, moved, boost::memory_order_acq_rel)) break;
        }
    }
}

int Engine::define(const char *name, const rq_limit *limits, size_t n, uint32_t flags) {
    int rc = ensure_registered();
    if (rc != RQ_OK) return rc;
    constexpr uint32_t kKnown = RQ_DEFINE_REPLACE | RQ_DEFINE_LOCAL | RQ_DEFINE_LOCAL_SHARE;
    if (name == nullptr || (flags & ~kKnown) != 0) return RQ_EINVAL;
    if ((flags & RQ_DEFINE_LOCAL) != 0 && (flags & RQ_DEFINE_LOCAL_SHARE) != 0) return RQ_EINVAL;
    std::string_view nm(name, strnlen(name, kMaxNameLen + 1));
    if (!valid_resource_name(nm) || name[nm.size()] != '\0') return RQ_EINVAL;
    Limits want;
    rc = normalize_limits(limits, n, want);
    if (rc != RQ_OK) return rc;

    // The scope: global with a Redis URL unless RQ_DEFINE_LOCAL; without
    // one, host-only, or the global definition this host has already.
    uint32_t r;
    Limits have;
    rc = lookup(nm, r);
    if (rc == RQ_OK) rc = read_limits(r, have);
    if (rc != RQ_OK && rc != RQ_ENOENT) return rc;
    const bool exists = rc == RQ_OK;
    if ((flags & RQ_DEFINE_LOCAL) == 0 && remote_ != nullptr) {
        want.flags = kScopeGlobal | ((flags & RQ_DEFINE_LOCAL_SHARE) != 0 ? kFailLocalShare : 0);
    } else if ((flags & RQ_DEFINE_LOCAL) == 0 && exists && have.global) {
        want.flags = have.flags;
        if ((flags & RQ_DEFINE_LOCAL_SHARE) != 0 && (have.flags & kFailLocalShare) == 0) return RQ_ECONFLICT;
    } else if ((flags & RQ_DEFINE_LOCAL_SHARE) != 0) {
        return RQ_EINVAL;  // a fail mode for a resource that has no Redis
    }
    finish_limits(want);
    if (want.global) {
        Limits view = want;
        if (!lease_view(view)) return RQ_EINVAL;  // too deep to lease in whole units
    }

    // Fast path: already defined with the same limits (no lock).
    if (exists && same_limits(have, want)) return RQ_OK;
    // A global definition is checked against (or stored in) Redis first,
    // outside the define lock (a round trip is long for a lock word).
    if (want.global && remote_ != nullptr) {
        if (exists && (flags & RQ_DEFINE_REPLACE) == 0) return RQ_ECONFLICT;
        rc = remote_->define(nm, want);
        if (rc != RQ_OK) return rc;
    }

    Header &h = view_.header();
    rc = lock(h.define_lock, true, 0);
    if (rc != RQ_OK) return rc;
    rc = lookup(nm, r);
    if (rc == RQ_OK) {
        rc = read_limits(r, have);
        if (rc == RQ_OK && !same_limits(have, want)) {
            if ((flags & RQ_DEFINE_REPLACE) == 0) {
                rc = RQ_ECONFLICT;
            } else {
                write_limits(r, want);
                if (have.global || want.global) {
                    // A lease is in units of the old limits: let it go
                    // (the refiller asks again; Redis writes the old off).
                    Resource &res = view_.resource(r);
                    for (uint32_t i = 0; i < kMaxLimits; ++i) {
                        // seq_cst: like reset's stores (admin.cpp).
                        res.tat[i].store(0, boost::memory_order_seq_cst);
                        res.lease.horizon[i].store(0, boost::memory_order_seq_cst);
                        res.lease.next_add[i].store(0, boost::memory_order_seq_cst);
                    }
                } else {
                    carry_rate_debt(r, have, want);
                }
                wake_head(r, false);
            }
        }
    } else if (rc == RQ_ENOENT) {
        rc = RQ_ENOSPC;
        const uint32_t cap = view_.geo.max_resources;
        const uint64_t hash = name_hash(nm);
        for (uint32_t i = 0, idx = home_index(hash, cap); i < cap; ++i, idx = idx + 1 == cap ? 0 : idx + 1) {
            Resource &res = view_.resource(idx);
            // acquire: pairs with the release stores of the state (below, and
            // a breaker's undo_define in lock.cpp).
            if (res.state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kFree)) continue;
            h.define_journal_resource.store(idx, boost::memory_order_relaxed);
            // release: pairs with undo_define's acquire load (lock.cpp).
            h.define_journal_valid.store(1, boost::memory_order_release);
            res.state.store(static_cast<uint32_t>(ResourceState::kDefining), boost::memory_order_relaxed);
            res.name_len = static_cast<uint32_t>(nm.size());
            res.name_hash = hash;
            std::memset(res.name, 0, sizeof res.name);
            std::memcpy(res.name, nm.data(), nm.size());
            for (auto &t : res.tat) t.store(0, boost::memory_order_relaxed);
            write_limits(idx, want);
            crash_point(CrashPoint::kInDefine);
            // release: publishes name and limits to lookup()'s acquire load.
            res.state.store(static_cast<uint32_t>(ResourceState::kReady), boost::memory_order_release);
            // release: pairs with undo_define's acquire load (lock.cpp).
            h.define_journal_valid.store(0, boost::memory_order_release);
            rc = RQ_OK;
            break;
        }
    }
    unlock(h.define_lock);
    return rc;
}

int Engine::describe(const char *name, rq_limit *limits, size_t cap, size_t *n) {
    if (name == nullptr || n == nullptr) return RQ_EINVAL;
    std::string_view nm(name, strnlen(name, kMaxNameLen + 1));
    if (!valid_resource_name(nm) || name[nm.size()] != '\0') return RQ_EINVAL;
    uint32_t r;
    int rc = lookup(nm, r);
    if (rc != RQ_OK) return rc;
    Limits have;
    rc = read_limits(r, have);
    if (rc != RQ_OK) return rc;
    *n = have.count;
    if (limits == nullptr || cap < have.count) return RQ_EINVAL;
    for (uint32_t i = 0; i < have.count; ++i) {
        const Limit &l = have.limit[i];
        limits[i] = rq_limit{l.kind, l.cost, l.amount, l.period_ns, l.kind == RQ_LIMIT_RATE ? l.burst : 0};
    }
    return RQ_OK;
}

}  // namespace rq::detail
