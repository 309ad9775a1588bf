#include "futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

namespace rq::detail {

FutexResult futex_wait(const void *word, uint32_t expected, int64_t deadline_ns) noexcept {
    timespec ts{};
    timespec *tsp = nullptr;
    if (deadline_ns != INT64_MAX) {
        if (deadline_ns < 0) deadline_ns = 0;
        ts.tv_sec = deadline_ns / 1'000'000'000;
        ts.tv_nsec = deadline_ns % 1'000'000'000;
        tsp = &ts;
    }
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, tsp, nullptr,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0) return FutexResult::kWoken;
    switch (errno) {
        case EAGAIN: return FutexResult::kValueChanged;
        case ETIMEDOUT: return FutexResult::kTimedOut;
        case EINTR: return FutexResult::kInterrupted;
        default: return FutexResult::kWoken;  // EFAULT/EINVAL cannot happen on a mapped word
    }
}

void futex_wake(const void *word, int count) noexcept {
    syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
}

}  // namespace rq::detail
