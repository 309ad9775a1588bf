// ratequeue C++ API: a thin, header-only layer over the C ABI in ratequeue.h.
//
//   rq::Client client;                                   // $RATEQUEUE_SEGMENT or "ratequeue"
//   client.define("openai", {rq::rate(1000, std::chrono::minutes(1)),
//                            rq::rate(200'000, std::chrono::minutes(1), rq::Cost::kLoad),
//                            rq::concurrency(10)});
//   {
//       rq::Permit p = client.acquire("openai", prompt_tokens);   // waits in FIFO order
//       call_the_api();
//   }                                                    // concurrency given back here
//
// Errors throw rq::Error (code() is the RQ_E* value). try_acquire and
// acquire_for return std::nullopt instead of throwing when there is no
// capacity (RQ_EAGAIN) or the timeout passed (RQ_ETIMEDOUT).
// Thread safety: a Client may be shared by threads; a Permit may not.
#pragma once

#include "ratequeue/ratequeue.h"

#include <chrono>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rq {

class Error : public std::runtime_error {
public:
    explicit Error(int code) : std::runtime_error(rq_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }
    const char *name() const noexcept { return rq_errname(code_); }

private:
    int code_;
};

enum class Cost : uint32_t { kRequest = RQ_COST_REQUEST, kLoad = RQ_COST_LOAD };

// `amount` units per `period`, bucket `burst` (0: amount).
inline rq_limit rate(uint64_t amount, std::chrono::nanoseconds period, Cost cost = Cost::kRequest,
                     uint64_t burst = 0) {
    return rq_limit{RQ_LIMIT_RATE, static_cast<uint32_t>(cost), amount,
                    static_cast<uint64_t>(period.count()), burst};
}
// n requests or tokens per minute: the shorthands every API shares
// (ratequeue.h, rq_rpm / rq_tpm). burst: the bucket in time, 0 for the
// default (rpm: half a second's worth; tpm: the whole minute).
inline rq_limit rpm(uint64_t n, std::chrono::milliseconds burst = std::chrono::milliseconds{0}) {
    return rq_rpm(n, static_cast<uint32_t>(burst.count()));
}
inline rq_limit tpm(uint64_t n, std::chrono::milliseconds burst = std::chrono::milliseconds{0}) {
    return rq_tpm(n, static_cast<uint32_t>(burst.count()));
}
// At most `amount` held at once (1 per acquire, or the load).
inline rq_limit concurrency(uint64_t amount, Cost cost = Cost::kRequest) {
    return rq_limit{RQ_LIMIT_CONCURRENCY, static_cast<uint32_t>(cost), amount, 0, 0};
}

namespace detail {
inline void check(int rc) {
    if (rc != RQ_OK) throw Error(rc);
}
}  // namespace detail

// A held permit. Releasing (explicitly or on destruction) gives concurrency
// back; it is harmless twice. Movable, not copyable.
class Permit {
public:
    Permit() = default;
    Permit(rq_client *c, const rq_permit &p) : client_(c), permit_(p) {}
    Permit(Permit &&o) noexcept : client_(std::exchange(o.client_, nullptr)), permit_(o.permit_) {}
    Permit &operator=(Permit &&o) noexcept {
        if (this != &o) {
            release_noexcept();
            client_ = std::exchange(o.client_, nullptr);
            permit_ = o.permit_;
        }
        return *this;
    }
    Permit(const Permit &) = delete;
    Permit &operator=(const Permit &) = delete;
    ~Permit() { release_noexcept(); }

    // Throws rq::Error on failure (for example a permit used in another process).
    void release() {
        if (client_ == nullptr) return;
        rq_client *c = std::exchange(client_, nullptr);
        detail::check(rq_release(c, &permit_));
    }
    bool held() const noexcept { return client_ != nullptr; }
    const rq_permit &raw() const noexcept { return permit_; }

private:
    void release_noexcept() noexcept {
        if (client_ != nullptr) rq_release(std::exchange(client_, nullptr), &permit_);
    }
    rq_client *client_ = nullptr;
    rq_permit permit_{};
};

// A resource looked up once (rq_resolve): acquires skip the name lookup.
// Valid while its Client is open. Obtain one from Client::resource.
class Resource {
public:
    // Waits as long as it takes. Throws rq::Error.
    Permit acquire(uint64_t load = 1) const {
        rq_permit p;
        detail::check(rq_acquire_r(c_, &h_, load, -1, &p));
        return Permit(c_, p);
    }
    // nullopt when it would have to wait (or anyone is queued).
    [[nodiscard]] std::optional<Permit> try_acquire(uint64_t load = 1) const {
        rq_permit p;
        int rc = rq_acquire_r(c_, &h_, load, 0, &p);
        if (rc == RQ_EAGAIN) return std::nullopt;
        detail::check(rc);
        return Permit(c_, p);
    }

private:
    friend class Client;
    Resource(rq_client *c, const rq_resource &h) : c_(c), h_(h) {}
    rq_client *c_;
    rq_resource h_;
};

class Client {
public:
    // Opens (creating if missing) segment `segment`; empty: $RATEQUEUE_SEGMENT
    // or "ratequeue". Throws rq::Error.
    explicit Client(const std::string &segment = {}, const rq_open_options *options = nullptr) {
        detail::check(rq_open_ex(segment.empty() ? nullptr : segment.c_str(), options, &c_));
    }
    ~Client() { rq_close(c_); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Idempotent; throws rq::Error (RQ_ECONFLICT when defined differently).
    void define(const std::string &resource, std::initializer_list<rq_limit> limits, bool replace = false) {
        std::vector<rq_limit> v(limits);
        define(resource, v, replace);
    }
    void define(const std::string &resource, const std::vector<rq_limit> &limits, bool replace = false) {
        detail::check(rq_define(c_, resource.c_str(), limits.data(), limits.size(),
                                replace ? RQ_DEFINE_REPLACE : 0));
    }
    std::vector<rq_limit> describe(const std::string &resource) {
        std::vector<rq_limit> v(RQ_MAX_LIMITS);
        size_t n = 0;
        detail::check(rq_describe(c_, resource.c_str(), v.data(), v.size(), &n));
        v.resize(n);
        return v;
    }

    // Waits as long as it takes. Throws rq::Error.
    Permit acquire(const std::string &resource, uint64_t load = 1) {
        rq_permit p;
        detail::check(rq_acquire(c_, resource.c_str(), load, -1, &p));
        return Permit(c_, p);
    }
    // nullopt when the timeout passes first.
    template <class Rep, class Period>
    std::optional<Permit> acquire_for(const std::string &resource, uint64_t load,
                                      std::chrono::duration<Rep, Period> timeout) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
        return attempt(resource, load, ns < 1 ? 1 : ns, RQ_ETIMEDOUT);
    }
    // nullopt when it would have to wait (or anyone is queued).
    [[nodiscard]] std::optional<Permit> try_acquire(const std::string &resource, uint64_t load = 1) {
        return attempt(resource, load, 0, RQ_EAGAIN);
    }

    // The resource looked up once, for hot loops. Throws rq::Error (RQ_ENOENT).
    Resource resource(const std::string &name) const {
        rq_resource h;
        detail::check(rq_resolve(c_, name.c_str(), &h));
        return Resource(c_, h);
    }

    rq_client *raw() const noexcept { return c_; }

private:
    std::optional<Permit> attempt(const std::string &resource, uint64_t load, int64_t timeout_ns, int soft) {
        rq_permit p;
        int rc = rq_acquire(c_, resource.c_str(), load, timeout_ns, &p);
        if (rc == soft) return std::nullopt;
        detail::check(rc);
        return Permit(c_, p);
    }
    rq_client *c_ = nullptr;
};

}  // namespace rq
