// The shrink guard (shrink_guard.hpp): the table of guarded mappings and the
// SIGBUS handler.
#include "shrink_guard.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace rq::detail {

namespace {

// One guarded mapping. base != 0 marks the entry in use; it is stored last
// (release) by guard_mapping and cleared first by unguard_mapping, and the
// handler reads it first (acquire), so the handler never sees an entry half
// written. (An entry reused while a handler runs on another thread could
// mislead that handler for one fault; both sides are the same process's own
// mappings, registered and forgotten around map and unmap.)
struct Guarded {
    std::atomic<uintptr_t> base{0};
    std::atomic<size_t> size{0};
    std::atomic<int> fd{-1};
    std::atomic<int> prot{0};
    std::atomic<std::atomic<uint32_t> *> poison{nullptr};
    std::atomic<uint32_t> poison_value{0};
};
Guarded g_table[kMaxGuarded];
struct sigaction g_previous;
std::once_flag g_installed;
std::mutex g_table_mu;  // guard_mapping / unguard_mapping only (never the handler)

uintptr_t page_size() {
    static const uintptr_t p = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    return p;
}

void on_sigbus(int sig, siginfo_t *info, void *context) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
    const uintptr_t page = page_size();
    for (Guarded &g : g_table) {
        // acquire: pairs with guard_mapping's release store of base.
        const uintptr_t base = g.base.load(std::memory_order_acquire);
        const size_t size = g.size.load(std::memory_order_relaxed);
        if (base == 0 || at < base || at - base >= size) continue;
        // Past the end of the file as it is now? Otherwise it is no shrink
        // of ours (a hardware error, say): the previous handler's.
        uintptr_t from = (at - base) & ~(page - 1);
        const int fd = g.fd.load(std::memory_order_relaxed);
        struct stat st;
        if (fd >= 0) {
            if (fstat(fd, &st) != 0) break;
            const uintptr_t end = (static_cast<uintptr_t>(st.st_size) + page - 1) & ~(page - 1);
            if (from < end) break;
            from = end;
        }
        // Zero pages from there to the end of the mapping, private.
        const long p = syscall(SYS_mmap, base + from, size - from, g.prot.load(std::memory_order_relaxed),
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p == -1) break;
        std::atomic<uint32_t> *poison = g.poison.load(std::memory_order_relaxed);
        // release: the owner's acquire load of its word then sees the swap.
        if (poison != nullptr) poison->fetch_or(g.poison_value.load(std::memory_order_relaxed), std::memory_order_release);
        return;  // the access runs again, on the zero pages
    }
    // Not ours: what was there before us.
    if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
        g_previous.sa_sigaction(sig, info, context);
        return;
    }
    if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
        g_previous.sa_handler(sig);
        return;
    }
    // The default action: restored, and the access faults again, fatally.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, nullptr);
}

void install() {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

bool guard_mapping(void *base, size_t size, int fd, int prot, std::atomic<uint32_t> *poison, uint32_t poison_value) {
    std::call_once(g_installed, install);
    std::lock_guard<std::mutex> lock(g_table_mu);
    for (Guarded &g : g_table) {
        if (g.base.load(std::memory_order_relaxed) != 0) continue;
        g.size.store(size, std::memory_order_relaxed);
        g.fd.store(fd, std::memory_order_relaxed);
        g.prot.store(prot, std::memory_order_relaxed);
        g.poison.store(poison, std::memory_order_relaxed);
        g.poison_value.store(poison_value, std::memory_order_relaxed);
        // release: the fields above before the handler can match the entry.
        g.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
        return true;
    }
    return false;
}

void guard_forget_fd(void *base) {
    for (Guarded &g : g_table) {
        // relaxed: see the header (no lock: a fork child's handler calls it).
        if (g.base.load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(base)) {
            g.fd.store(-1, std::memory_order_relaxed);
        }
    }
}

void unguard_mapping(void *base) {
    if (base == nullptr) return;
    std::lock_guard<std::mutex> lock(g_table_mu);
    for (Guarded &g : g_table) {
        // relaxed: under the table's mutex; the handler only reads.
        if (g.base.load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(base)) {
            g.base.store(0, std::memory_order_release);
            return;
        }
    }
}

}  // namespace rq::detail
