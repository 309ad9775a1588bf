// Test builds only (RQ_TEST_HOOKS): the armed crash and stop points of this
// process. Process-local memory, never the segment.
#include "crash_points.hpp"

#include <atomic>
#include <csignal>

namespace rq::detail {

#ifdef RQ_TEST_HOOKS
namespace {
std::atomic<int> g_crash_point{0};
std::atomic<int> g_stop_point{0};
}  // namespace

// relaxed: a test arms a point in the process (or forked child) that then
// runs the step; nothing else is published through these words.
void set_crash_point(CrashPoint p) { g_crash_point.store(static_cast<int>(p), std::memory_order_relaxed); }
void set_stop_point(CrashPoint p) { g_stop_point.store(static_cast<int>(p), std::memory_order_relaxed); }

bool line_free_allowed() {
    const int p = g_crash_point.load(std::memory_order_relaxed);
    return p == 0 || p >= static_cast<int>(CrashPoint::kFastAfterRateTaken);
}

void crash_point(CrashPoint p) {
    if (p == CrashPoint::kNone) return;
    if (g_crash_point.load(std::memory_order_relaxed) == static_cast<int>(p)) ::raise(SIGKILL);
    int armed = static_cast<int>(p);
    // Stops once: the CAS disarms it.
    if (g_stop_point.load(std::memory_order_relaxed) == armed &&
        g_stop_point.compare_exchange_strong(armed, 0, std::memory_order_relaxed)) {
        ::raise(SIGSTOP);
    }
}
#else
void set_crash_point(CrashPoint) {}
void set_stop_point(CrashPoint) {}
#endif

}  // namespace rq::detail
