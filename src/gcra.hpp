// Rate limits: GCRA (generic cell rate algorithm) in exact integer nanoseconds.
//
// A limit of `amount` units per `period` with bucket `burst` keeps one word,
// the theoretical arrival time (TAT). Admitting cost c moves it to
// max(TAT, now) + inc(c), where inc(c) = ceil(c * period / amount). The admit
// is allowed when the new TAT is at most burst_ns = floor(burst * period /
// amount) ahead of now, or when the bucket is full (TAT <= now) and c <= burst.
//
// Why that is exact. Take the admissions in any interval of length t. Split
// them at each one admitted through the full-bucket clause but not the other
// (so inc > burst_ns there): before such an admission at s_j the TAT had
// drained to s_j, so the increments of everything admitted between two of
// them sum to at most the time between them; after the last one, its own
// surplus inc - burst_ns > 0 absorbs the tolerance. So the increments of all
// admissions but the last full-bucket one sum to at most t, each inc is at
// least c * period / amount, and that one is at most burst: the admitted cost
// is at most burst + amount * t / period, with no rounding slack at all.
// Without the full-bucket clause a load equal to the burst could never be
// admitted when burst * period / amount is not a whole number of ns.
#pragma once

#include <cstdint>

namespace rq::detail {

__extension__ using u128 = unsigned __int128;  // GCC/Clang builtin; exact cost * period
__extension__ using i128 = __int128;           // (the lease arithmetic on values from shared memory)

inline constexpr uint64_t kMaxBurstNs = uint64_t{1} << 62;
// When period / amount is not a whole number of ns, each unit is charged up
// to 1 ns extra. At 100 ns or more per unit that loses under 1% of the quota
// (guarantee 2); faster inexact rates are refused at define time.
inline constexpr uint64_t kMinInexactUnitNs = 100;

struct RateParams {
    uint64_t amount;
    uint64_t period_ns;
    uint64_t burst;       // effective (never 0)
    uint64_t burst_ns;
    uint64_t request_ns;
    uint64_t unit_ns;     // 0 when period / amount is not exact
};

// Derives the ns constants; false when the limit is absurd (bucket deeper
// than kMaxBurstNs, faster than one unit per ns, or an inexact rate faster
// than one unit per kMinInexactUnitNs).
inline bool derive_rate(uint64_t amount, uint64_t period_ns, uint64_t burst, RateParams &out) {
    if (amount == 0 || period_ns == 0 || burst == 0 || amount > period_ns) return false;
    if (period_ns % amount != 0 && period_ns / amount < kMinInexactUnitNs) return false;
    u128 depth = static_cast<u128>(burst) * period_ns / amount;
    if (depth > kMaxBurstNs) return false;
    out = {amount, period_ns, burst, static_cast<uint64_t>(depth),
           (period_ns + amount - 1) / amount, period_ns % amount == 0 ? period_ns / amount : 0};
    return true;
}

// ceil(cost * period / amount). cost <= burst is checked first by callers
// (a larger cost can never be admitted: RQ_E2BIG), so the result is at most
// burst_ns + 1 <= 2^62 + 1.
inline uint64_t increment_ns(const RateParams &p, uint64_t cost) {
    if (cost == 1) return p.request_ns;
    if (p.unit_ns != 0) return cost * p.unit_ns;
    u128 num = static_cast<u128>(cost) * p.period_ns;
    return static_cast<uint64_t>((num + p.amount - 1) / p.amount);
}

// ceil(cost * period / amount) for any cost up to RQ_MAX_AMOUNT (a settle's
// actual usage may exceed the burst), clamped to kMaxBurstNs.
inline int64_t increment_any_ns(uint64_t amount, uint64_t period_ns, uint64_t cost) {
    const u128 ns = (static_cast<u128>(cost) * period_ns + amount - 1) / amount;
    return static_cast<int64_t>(ns < kMaxBurstNs ? ns : kMaxBurstNs);
}

// When does the bucket fit: the earliest instant at or after now at which a
// cost whose increment is inc is admitted, with nothing else charged
// meanwhile. The normal clause holds from tat + inc - burst_ns on, the
// full-bucket clause from tat on: whichever comes first. Any tat is handled
// (saturating), as it comes from shared memory.
inline int64_t gcra_ready_at(int64_t tat, int64_t now, uint64_t inc, uint64_t burst_ns) {
    if (tat <= now) return now;
    if (inc > burst_ns) return tat;
    int64_t ready;
    if (__builtin_add_overflow(tat, static_cast<int64_t>(inc - burst_ns), &ready)) return INT64_MAX;
    return ready > now ? ready : now;
}

struct GcraStep {
    bool admit;
    int64_t new_tat;   // when admit
    int64_t ready_at;  // when !admit: earliest instant this cost fits
};

// One GCRA decision for cost (<= burst, checked by callers) whose increment
// is inc. tat comes from shared memory: any value is handled (a TAT
// absurdly far ahead just means "not yet").
inline GcraStep gcra_step(int64_t tat, int64_t now, uint64_t inc, const RateParams &p) {
    int64_t base = tat > now ? tat : now;
    int64_t new_tat;
    if (__builtin_add_overflow(base, static_cast<int64_t>(inc), &new_tat)) return {false, 0, INT64_MAX};
    if (static_cast<uint64_t>(new_tat - now) <= p.burst_ns || tat <= now) return {true, new_tat, 0};
    // tat > now and tat + inc did not overflow: gcra_ready_at's arithmetic
    // cannot either.
    return {false, 0, gcra_ready_at(tat, now, inc, p.burst_ns)};
}

}  // namespace rq::detail
