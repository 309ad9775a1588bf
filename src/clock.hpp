// The clock: CLOCK_MONOTONIC nanoseconds as int64, shared by every process on
// the machine (it is system-wide, so values from different processes compare).
#pragma once

#include <cstdint>
#include <ctime>

namespace rq::detail {

// Thread-safe. Cost: one vDSO call, about 25 ns here; no system call.
inline int64_t now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline int64_t realtime_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Absolute deadline for a relative timeout; timeout < 0 means never (INT64_MAX).
inline int64_t deadline_after(int64_t now, int64_t timeout_ns) noexcept {
    if (timeout_ns < 0) return INT64_MAX;
    return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

}  // namespace rq::detail
