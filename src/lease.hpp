// Many hosts: admitting from the host's lease of a global resource.
//
// A global resource (Config::flags & kScopeGlobal) is shared by every host
// that uses the same Redis and name. Each host admits its acquires locally,
// from a lease its refiller (refiller.cpp) borrows from Redis; Redis sees
// only the refiller, a few times a second, never an acquire.
//
// Rate limit i: the lease is a horizon H (Lease::horizon[i]) that the local
// TAT may reach and no further. Credit left = H - tat ns, at request_ns per
// unit (lease_view in resource.cpp sets unit_ns = request_ns and burst_ns =
// burst * request_ns for a global limit, so every charge is a whole number
// of units and no split of u units of credit admits more than u). The GCRA
// step runs unchanged against a virtual clock v = H - burst_ns: it admits
// iff max(tat, v) + inc <= H. The TAT moves by the same CASes as a local
// one (charge.hpp), so all-or-nothing, give-back and settle work as they do
// on one host; only the clock is the lease's. Credit never exceeds the
// burst (the refiller tops up to at most burst_ns ahead of the TAT).
//
// Concurrency limit i: at most min(amount, Lease::slots[i]) held here.
//
// Expiry: nothing is admitted at or after Lease::expires_ns, a local
// CLOCK_MONOTONIC instant the refiller derives from a duration Redis gave
// and the instant it sent the request (so it falls before Redis's own
// expiry of our lease, whatever the host clocks say). Holders keep what they
// hold.
//
// Short of credit, the head sleeps (kHeadRateSleep) until the refiller moves
// the horizon, the slots or the expiry and wakes it (wake_head), or its
// deadline: it asks by storing its load in Lease::want and calling
// need_refill(). A head that times out while the link is down gets
// RQ_EUNAVAIL instead of RQ_ETIMEDOUT.
#pragma once

#include "core.hpp"
#include "gcra.hpp"

#include <algorithm>

namespace rq::detail {

// plan_rates' answer for a global resource short of lease: "when the
// refiller says", not a clock instant (serve() sleeps for a wake-up, never
// fails fast on it).
inline constexpr int64_t kAwaitLease = INT64_MAX;

// Lease clocks and lease TATs live within +-kLeaseRange. Horizons, reserved
// tokens and TATs come from shared memory and may hold anything: the clock
// is computed wide and clamped, and a TAT outside the range is damage that
// admits nothing (lease_tat_sane). Within it, the GCRA step's differences
// (a TAT plus an increment of at most 2^52, minus a clock: under 2^62 +
// 2^52) fit in an int64, as they do on the local path with a clock that is
// never negative. 2^61 ns is 73 years of the quota spent at its full rate.
inline constexpr int64_t kLeaseRange = int64_t{1} << 61;
inline bool lease_tat_sane(int64_t tat) { return tat >= -kLeaseRange && tat <= kLeaseRange; }
inline int64_t clamp_lease(i128 v) {
    return v < -kLeaseRange ? -kLeaseRange : v > kLeaseRange ? kLeaseRange : static_cast<int64_t>(v);
}

// The virtual clock of global rate limit l (index i): the instant against
// which the GCRA step admits exactly the credit up to the horizon.
// Reserved tokens (Lease::next_add) count once due. acquire (all): pairs
// with the refiller's release stores and acq_rel RMWs (refiller.cpp).
inline int64_t lease_clock(const Resource &res, const Limit &l, uint32_t i, int64_t now) {
    i128 h = res.lease.horizon[i].load(boost::memory_order_acquire);
    if (now >= res.lease.next_at_ns.load(boost::memory_order_acquire)) {
        h += res.lease.next_add[i].load(boost::memory_order_acquire);
    }
    return clamp_lease(h - static_cast<int64_t>(l.burst_ns));  // burst_ns <= 2^52 (lease_view)
}

// Whether the lease may admit at `now`. acquire: pairs with the refiller's
// release store of the expiry, made after the horizons and slots it covers.
inline bool lease_live(const Resource &res, int64_t now) {
    return now < res.lease.expires_ns.load(boost::memory_order_acquire);
}

// What concurrency limit l (index i) of a global resource admits here now.
// seq_cst: read beside conc_fits' counters (the same Dekker pairing).
inline uint64_t lease_slots(const Resource &res, const Limit &l, uint32_t i, bool live) {
    if (!live) return 0;
    return std::min(l.amount, res.lease.slots[i].load(boost::memory_order_seq_cst));
}

// Tells the refiller a head waits for `load` (lease.cpp).
void need_refill(Resource &res, Header &h, uint64_t load, int64_t now);

// RQ_EUNAVAIL when the host cannot reach Redis (or nobody here tries), else
// RQ_ETIMEDOUT: the code of a global acquire whose deadline passed.
int lease_timeout(const Resource &res);

// The refiller's moves (lease.cpp). lease_credit: whole units of credit
// left on global rate limit i (negative: owed, after a settle above the
// estimate). add_credit: units more. take_credit: takes all that is left
// (one CAS of the TAT up to the horizon, as a charge would) and returns it.
int64_t lease_credit(const Resource &res, const Limit &l, uint32_t i);
void add_credit(Resource &res, const Limit &l, uint32_t i, uint64_t units);
uint64_t take_credit(Resource &res, const Limit &l, uint32_t i);

// The lease as a sleeping head last saw it: the refiller changes one of
// these before it wakes the head. seq_cst loads: the head's sleep check,
// after it published its sleep state (queue.cpp, head_sleep).
struct LeaseSeen {
    int64_t horizon[kMaxLimits];
    uint64_t slots[kMaxLimits];
    int64_t next_add[kMaxLimits];
    int64_t expires_ns;
    bool operator==(const LeaseSeen &) const = default;
};
inline LeaseSeen see_lease(const Resource &res, const Limits &lim) {
    LeaseSeen s{};
    for (uint32_t i = 0; i < lim.count; ++i) {
        s.horizon[i] = res.lease.horizon[i].load(boost::memory_order_seq_cst);
        s.slots[i] = res.lease.slots[i].load(boost::memory_order_seq_cst);
        s.next_add[i] = res.lease.next_add[i].load(boost::memory_order_seq_cst);
    }
    s.expires_ns = res.lease.expires_ns.load(boost::memory_order_seq_cst);
    return s;
}

}  // namespace rq::detail
