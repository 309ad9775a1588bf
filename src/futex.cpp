// The futex system calls (see futex.hpp).
#include "futex.hpp"

#include "clock.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>

namespace rq::detail {

namespace {
// An absolute CLOCK_MONOTONIC deadline for the kernel: ts filled, or nullptr
// for INT64_MAX (never).
timespec *deadline_ts(int64_t deadline_ns, timespec &ts) {
    if (deadline_ns == INT64_MAX) return nullptr;
    if (deadline_ns < 0) deadline_ns = 0;
    ts.tv_sec = deadline_ns / 1'000'000'000;
    ts.tv_nsec = deadline_ns % 1'000'000'000;
    return &ts;
}
}  // namespace

FutexResult futex_wait(const void *word, uint32_t expected, int64_t deadline_ns) noexcept {
    timespec ts{};
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, deadline_ts(deadline_ns, ts), nullptr,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0) return FutexResult::kWoken;
    switch (errno) {
        case EAGAIN: return FutexResult::kValueChanged;
        case ETIMEDOUT: return FutexResult::kTimedOut;
        case EINTR: return FutexResult::kInterrupted;
        default: return FutexResult::kWoken;  // EFAULT/EINVAL cannot happen on a mapped word
    }
}

namespace {
// Set once futex_waitv failed with an error that will not go away (ENOSYS on
// kernels before 5.16, EPERM under a seccomp profile). relaxed: a hint only;
// a thread that has not seen it yet makes one more failing call.
std::atomic<bool> g_no_waitv{false};
}  // namespace

FutexResult futex_wait_any(const FutexWord *words, uint32_t n, int64_t deadline_ns) noexcept {
    if (g_no_waitv.load(std::memory_order_relaxed) || n == 0 || n > kMaxFutexWords) return FutexResult::kUnsupported;
    // Every word shared (no FUTEX_PRIVATE_FLAG), so plain FUTEX_WAKE, and the
    // kernel's robust-futex wake at a thread's death, match.
    futex_waitv w[kMaxFutexWords];
    for (uint32_t i = 0; i < n; ++i) {
        w[i] = futex_waitv{};
        w[i].val = words[i].expected;
        w[i].uaddr = reinterpret_cast<uintptr_t>(words[i].word);
        w[i].flags = FUTEX_32;
    }
    timespec ts{};
    const long rc = syscall(SYS_futex_waitv, w, n, 0, deadline_ts(deadline_ns, ts), CLOCK_MONOTONIC);
    if (rc >= 0) return FutexResult::kWoken;
    switch (errno) {
        case EAGAIN: return FutexResult::kValueChanged;
        case ETIMEDOUT: return FutexResult::kTimedOut;
        case EINTR: return FutexResult::kInterrupted;
        // ENOSYS (kernel before 5.16), EPERM (a seccomp profile that
        // denies it), anything else: never try again, or every sleep
        // would return at once and the waiter would spin.
        default: g_no_waitv.store(true, std::memory_order_relaxed); return FutexResult::kUnsupported;
    }
}

bool have_futex_wait_any() noexcept { return !g_no_waitv.load(std::memory_order_relaxed); }

void futex_wake(const void *word, int count) noexcept {
    syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
}

}  // namespace rq::detail
