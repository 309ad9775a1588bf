// Rate limits: GCRA (generic cell rate algorithm) in exact integer nanoseconds.
//
// A limit of `amount` units per `period` with bucket `burst` keeps one word,
// the theoretical arrival time (TAT). Admitting cost c moves it to
// max(TAT, now) + inc(c), where inc(c) = ceil(c * period / amount); the admit
// is allowed when the new TAT is at most burst_ns = floor(burst * period /
// amount) ahead of now. Both roundings go against the caller, so in any
// interval of length t the admitted cost is at most burst + amount * t / period.
#pragma once

#include <cstdint>

namespace rq::detail {

__extension__ using u128 = unsigned __int128;  // GCC/Clang builtin; exact cost * period

inline constexpr uint64_t kMaxBurstNs = uint64_t{1} << 62;

struct RateParams {
    uint64_t amount;
    uint64_t period_ns;
    uint64_t burst;       // effective (never 0)
    uint64_t burst_ns;
    uint64_t request_ns;
    uint64_t unit_ns;     // 0 when period / amount is not exact
};

// Derives the ns constants; false when the limit is absurd (bucket deeper
// than kMaxBurstNs, or faster than one unit per ns).
inline bool derive_rate(uint64_t amount, uint64_t period_ns, uint64_t burst, RateParams &out) {
    if (amount == 0 || period_ns == 0 || burst == 0 || amount > period_ns) return false;
    u128 depth = static_cast<u128>(burst) * period_ns / amount;
    if (depth > kMaxBurstNs) return false;
    out = {amount, period_ns, burst, static_cast<uint64_t>(depth),
           (period_ns + amount - 1) / amount, period_ns % amount == 0 ? period_ns / amount : 0};
    return true;
}

// ceil(cost * period / amount). cost <= burst is checked first by callers, so
// the result is at most burst_ns + 1 <= 2^62 + 1.
inline uint64_t increment_ns(const RateParams &p, uint64_t cost) {
    if (cost == 1) return p.request_ns;
    if (p.unit_ns != 0) return cost * p.unit_ns;
    u128 num = static_cast<u128>(cost) * p.period_ns;
    return static_cast<uint64_t>((num + p.amount - 1) / p.amount);
}

// True when cost can never be admitted, even from a full bucket.
inline bool never_fits(const RateParams &p, uint64_t cost) {
    return cost > p.burst || increment_ns(p, cost) > p.burst_ns;
}

struct GcraStep {
    bool admit;
    int64_t new_tat;   // when admit
    int64_t ready_at;  // when !admit: earliest instant this cost fits
};

// One GCRA decision. tat comes from shared memory: any value is handled
// (a TAT absurdly far ahead just means "not yet").
inline GcraStep gcra_step(int64_t tat, int64_t now, uint64_t inc, uint64_t burst_ns) {
    int64_t base = tat > now ? tat : now;
    int64_t new_tat;
    if (__builtin_add_overflow(base, static_cast<int64_t>(inc), &new_tat)) {
        return {false, 0, INT64_MAX};
    }
    if (static_cast<uint64_t>(new_tat - now) <= burst_ns) return {true, new_tat, 0};
    return {false, 0, new_tat - static_cast<int64_t>(burst_ns)};
}

}  // namespace rq::detail
