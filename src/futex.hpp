// The futex wrapper: the one place that makes futex system calls, and the
// spin-wait pause that goes before some of them.
//
// Words live in shared memory, so these are the shared (non-private) futex
// operations. Deadlines are absolute CLOCK_MONOTONIC nanoseconds, which lets a
// waiter that is woken early go back to sleep without recomputing a timeout.
#pragma once

#include <cstdint>

namespace rq::detail {

enum class FutexResult {
    kWoken,         // woken by futex_wake (or spuriously): re-check the condition
    kValueChanged,  // *word != expected when the call started
    kTimedOut,      // the deadline passed
    kInterrupted,   // a signal arrived: re-check the condition
    kUnsupported,   // futex_wait_any only: no futex_waitv here
};

// Sleeps while *word == expected, until woken or until deadline_ns
// (INT64_MAX: no deadline). Thread-safe. Cost: one system call.
FutexResult futex_wait(const void *word, uint32_t expected, int64_t deadline_ns) noexcept;

// One word of a multi-word sleep.
struct FutexWord {
    const void *word;
    uint32_t expected;
};
inline constexpr uint32_t kMaxFutexWords = 128;  // the kernel's limit for futex_waitv

// Sleeps until any of the n words (n <= kMaxFutexWords) differs from its
// expected value, a futex_wake on any of them, or deadline_ns. One
// futex_waitv system call (Linux 5.16 and later). kUnsupported, at once,
// where the kernel has none (or a seccomp profile denies it): the caller
// then sleeps on one word in bounded steps. Thread-safe.
FutexResult futex_wait_any(const FutexWord *words, uint32_t n, int64_t deadline_ns) noexcept;
// Whether futex_wait_any works here (false once it has failed for good).
bool have_futex_wait_any() noexcept;

// Without futex_wait_any, a sleeper that must also notice a process-local
// word (rq_cancel's) sleeps on its own word at most this long at a time.
inline constexpr int64_t kFallbackNs = 5'000'000;

// One pause of a spin-wait loop (x86 PAUSE: lets the sibling hyperthread
// run and saves power; about 40 ns here). Thread-safe, no system call.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

// Wakes up to `count` sleepers on word. Thread-safe. Cost: one system call
// (about 240 ns with nobody waiting): callers only call it when a state word
// says somebody sleeps.
void futex_wake(const void *word, int count) noexcept;

}  // namespace rq::detail
