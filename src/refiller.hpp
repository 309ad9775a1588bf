// Many hosts: the refiller, the one process per host that talks to Redis
// for every global resource of the segment (refiller.cpp has the state
// machine; lease.hpp the local lease it fills; lease_script.hpp the Redis
// side).
//
// Every client opened with a Redis URL runs one thread of its own, a
// candidate. The candidates elect the refiller through Header::refiller, a
// lock word owned by a process slot: 0, or the owner's slot + 1, taken by
// CAS from 0 or from an owner whose liveness lock is gone. Candidates sleep
// on the word and on the owner's death word (a robust futex the kernel
// marks at death: process_table.cpp), so a dead refiller is replaced within
// milliseconds; a refiller that closes gives the word back and wakes them.
// The lease lives in the segment, not in the refiller: its successor goes on
// with it.
#pragma once

#include "core.hpp"
#include "redis.hpp"

#include <atomic>
#include <mutex>
#include <pthread.h>
#include <string>
#include <vector>

namespace rq::detail {

// How long Redis keeps a host's lease after its last call, unless the
// client's options say otherwise (rq_open_options::lease_ttl_ms).
inline constexpr uint32_t kDefaultLeaseTtlMs = 10'000;

class Remote {
public:
    Remote(Engine &e, RedisUrl url, uint32_t ttl_ms);
    ~Remote();  // stops the thread (and gives the refiller word back if it holds it)
    Remote(const Remote &) = delete;
    Remote &operator=(const Remote &) = delete;

    int start();
    // The fork child's copy: forget the parent's thread (no join, no free).
    void forget_after_fork() noexcept;

    // Stores the definition in Redis, or checks it against the one stored
    // there: RQ_OK, RQ_ECONFLICT, or RQ_EUNAVAIL (unreachable, or refused:
    // last_error() says why). Any thread; one at a time.
    int define(std::string_view name, const Limits &lim);
    std::string last_error() const;

private:
    struct PerResource;
    static void *thread_main(void *self);
    void run();
    bool elect();
    void wait_as_candidate();
    void resign();
    int64_t tick();  // one pass over the global resources; returns how long to rest
    int64_t step(uint32_t r, const Limits &lim, PerResource &st, int64_t now);
    void local_share(uint32_t r, const Limits &lim, PerResource &st, int64_t now);
    void rest(int64_t ns);
    void note_error(Resource *res, int rc, const std::string &what);

    Engine &e_;
    RedisLink link_;         // the refiller thread's
    RedisLink define_link_;  // define()'s, under define_mu_
    std::mutex define_mu_;
    uint32_t ttl_ms_;
    pthread_t thread_{};
    bool started_ = false;
    std::atomic<uint32_t> stop_{0};  // process-local futex word
    std::vector<PerResource> state_;  // by resource index (refiller thread only)
    mutable std::mutex err_mu_;
    std::string last_error_;
};

// "rq:{NAME}", the definition string, and a host id in hex: the names the
// refiller and define() use in Redis (refiller.cpp).
std::string lease_key(std::string_view name);
std::string lease_definition(const Limits &lim);

}  // namespace rq::detail
