// A live segment shrunk under us (`truncate -s 4096 /dev/shm/NAME` by its
// owner or a group member) must give errors, not SIGBUS deaths.
//
// Every mapping of a segment (an Engine's, the inspector's) is registered
// here with its descriptor and a poison word. A process-wide SIGBUS handler,
// installed once, looks up the faulting address: inside a registered mapping
// and past the file's current end (fstat), it maps zero pages over the rest
// of the mapping (private: nothing reaches the file), stores 1 in the
// mapping's poison word (fetch_or of its value), and returns, so the faulting access goes on reading
// zeros or writing into memory nobody shares. Whoever owns the poison word
// then answers RQ_ECORRUPT from its next call: the Engine folds it into its
// fork word, which every entry point already tests (no cost on the
// uncontended path). A fault anywhere else goes to the handler that was
// there before (or the default action). Everything the handler does is
// async-signal-safe: atomic loads and stores, fstat, mmap by syscall.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace rq::detail {

// Registers [base, base + size) mapped from fd (-1: unknown) with `prot`
// (PROT_READ, or PROT_READ | PROT_WRITE); the handler ORs `poison_value`
// into *poison when it catches a shrink there. False when the table is full
// (kMaxGuarded mappings at once): the mapping is then unguarded.
bool guard_mapping(void *base, size_t size, int fd, int prot, std::atomic<uint32_t> *poison, uint32_t poison_value);
// Forgets base's entry (before the mapping is unmapped).
void unguard_mapping(void *base);
// The descriptor of base's entry is closed (a fork child): any fault in the
// mapping then counts as a shrink. Lock-free, for the atfork child handler.
void guard_forget_fd(void *base);
inline constexpr uint32_t kMaxGuarded = 64;

}  // namespace rq::detail
