// The C ABI: a thin shell over rq::detail::Engine. No exception crosses it.
#include "core.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

struct rq_client {
    rq::detail::Engine *engine;
};

namespace {

template <class F>
int guarded(F &&f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        errno = ENOMEM;
        return RQ_ESYS;
    } catch (...) {
        return RQ_EINTERNAL;
    }
}

}  // namespace

extern "C" {

RQ_API int rq_version(void) { return RQ_VERSION_NUMBER; }
RQ_API int rq_layout_version(void) { return static_cast<int>(rq::detail::kLayoutMajor); }

RQ_API int rq_open_ex(const char *segment, const rq_open_options *options, rq_client **out) {
    if (out == nullptr) return RQ_EINVAL;
    *out = nullptr;
    return guarded([&]() -> int {
        rq::detail::Engine *e = nullptr;
        int rc = rq::detail::Engine::open(segment, options, &e);
        if (rc != RQ_OK) return rc;
        *out = new rq_client{e};
        return RQ_OK;
    });
}

RQ_API int rq_open(const char *segment, rq_client **out) { return rq_open_ex(segment, nullptr, out); }

RQ_API void rq_close(rq_client *c) {
    if (c == nullptr) return;
    guarded([&]() -> int {
        delete c->engine;
        return RQ_OK;
    });
    delete c;
}

RQ_API int rq_define(rq_client *c, const char *resource, const rq_limit *limits, size_t n, uint32_t flags) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->define(resource, limits, n, flags); });
}

RQ_API int rq_describe(rq_client *c, const char *resource, rq_limit *limits, size_t cap, size_t *n) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->describe(resource, limits, cap, n); });
}

RQ_API int rq_acquire(rq_client *c, const char *resource, uint64_t load, int64_t timeout_ns, rq_permit *out) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->acquire(resource, load, timeout_ns, out); });
}

RQ_API int rq_resolve(rq_client *c, const char *resource, rq_resource *out) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->resolve_handle(resource, out); });
}

RQ_API int rq_acquire_r(rq_client *c, const rq_resource *resource, uint64_t load, int64_t timeout_ns,
                        rq_permit *out) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->acquire_r(resource, load, timeout_ns, out); });
}

RQ_API int rq_acquire_ex(rq_client *c, const char *resource, uint64_t load, int64_t timeout_ns, rq_permit *out,
                         rq_wait_info *info) {
    if (c == nullptr || (info != nullptr && info->size < sizeof(rq_wait_info))) return RQ_EINVAL;
    int64_t *predicted = nullptr;
    if (info != nullptr) {
        info->predicted_wait_ns = -1;
        predicted = &info->predicted_wait_ns;
    }
    return guarded([&]() -> int { return c->engine->acquire(resource, load, timeout_ns, out, predicted); });
}

RQ_API int rq_predict_wait(rq_client *c, const char *resource, uint64_t load, int64_t *wait_ns) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->predict_wait(resource, load, wait_ns); });
}

RQ_API int rq_settle(rq_client *c, rq_permit *p, uint64_t actual) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->settle(p, actual); });
}

RQ_API int rq_penalize(rq_client *c, const char *resource, int64_t pause_ns) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->penalize(resource, pause_ns); });
}

RQ_API int rq_observe(rq_client *c, const char *resource, uint32_t limit_index, uint64_t remaining,
                      int64_t reset_ns) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->observe(resource, limit_index, remaining, reset_ns); });
}

RQ_API int rq_release(rq_client *c, rq_permit *p) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->release(p); });
}

RQ_API int rq_enqueue(rq_client *c, const char *resource, uint64_t load, rq_ticket *t) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->enqueue_ticket(resource, load, t); });
}

RQ_API int rq_wait(rq_client *c, rq_ticket *t, int64_t timeout_ns, rq_permit *out) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->wait_ticket(t, timeout_ns, out); });
}

RQ_API int rq_cancel(rq_client *c, rq_ticket *t) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->cancel_ticket(t); });
}

RQ_API int rq_reset(rq_client *c, const char *resource, uint32_t flags) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->reset(resource, flags); });
}

RQ_API int rq_reap(rq_client *c, rq_reap_report *out) {
    if (c == nullptr) return RQ_EINVAL;
    return guarded([&]() -> int { return c->engine->reap(out); });
}

RQ_API size_t rq_remote_error(rq_client *c, char *buf, size_t len) {
    if (buf == nullptr || len == 0) return 0;
    buf[0] = '\0';
    if (c == nullptr) return 0;
    size_t n = 0;
    guarded([&]() -> int {
        const std::string e = c->engine->remote_error();
        n = std::min(e.size(), len - 1);
        std::memcpy(buf, e.data(), n);
        buf[n] = '\0';
        return RQ_OK;
    });
    return n;
}

RQ_API const char *rq_strerror(int code) {
    switch (code) {
#define RQ_STRERROR_CASE_(name, value, text) \
    case RQ_##name: return text;
        RQ_ERROR_MAP(RQ_STRERROR_CASE_)
#undef RQ_STRERROR_CASE_
        default: return "unknown ratequeue error code";
    }
}

RQ_API const char *rq_errname(int code) {
    switch (code) {
#define RQ_ERRNAME_CASE_(name, value, text) \
    case RQ_##name: return "RQ_" #name;
        RQ_ERROR_MAP(RQ_ERRNAME_CASE_)
#undef RQ_ERRNAME_CASE_
        default: return "RQ_EUNKNOWN";
    }
}

}  // extern "C"
