// fastpath_probe: N uncontended acquire+release pairs through the C ABI, for
// counting instructions under callgrind (bench/callgrind-fastpath).
//   fastpath_probe [rate|rate-conc|rate-handle|rate-conc-handle|rpm-tpm-handle] [N]
// (rate-handle, rate-conc-handle: those resources through rq_resolve +
// rq_acquire_r, as the C++ API calls them;
// rpm-tpm-handle: the same with two rate limits, per request and per load,
// the usual LLM pair)
#include "ratequeue/ratequeue.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char **argv) {
    const char *res = argc > 1 ? argv[1] : "rate";
    const int n = argc > 2 ? std::atoi(argv[2]) : 20000;
    const bool pair = std::strcmp(res, "rpm-tpm-handle") == 0;
    const bool conch = std::strcmp(res, "rate-conc-handle") == 0;
    const bool handle = std::strcmp(res, "rate-handle") == 0 || pair || conch;
    if (std::strcmp(res, "rate") != 0 && std::strcmp(res, "rate-conc") != 0 && !handle) {
        std::fprintf(stderr, "usage: fastpath_probe [rate|rate-conc|rate-handle|rate-conc-handle|rpm-tpm-handle] [N]\n");
        return 2;
    }
    if (handle) res = pair ? "rpm-tpm" : conch ? "rate-conc" : "rate";
    const std::string seg = "rqprobe-" + std::to_string(getpid());
    rq_client *c = nullptr;
    if (rq_open(seg.c_str(), &c) != RQ_OK) return 1;
    // Limits that never block: the uncontended path only.
    const rq_limit rate{RQ_LIMIT_RATE, RQ_COST_REQUEST, 1000000000, 1000000000, 1ull << 40};
    const rq_limit conc{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1000, 0, 0};
    const rq_limit tokens{RQ_LIMIT_RATE, RQ_COST_LOAD, 1000000000, 1000000000, 1ull << 40};
    const rq_limit one[] = {rate};
    const rq_limit two[] = {rate, conc};
    const rq_limit llm[] = {rate, tokens};
    int rc = rq_define(c, "rate", one, 1, 0);
    if (rc == RQ_OK) rc = rq_define(c, "rate-conc", two, 2, 0);
    if (rc == RQ_OK) rc = rq_define(c, "rpm-tpm", llm, 2, 0);
    rq_permit p;
    rq_resource h{};
    if (rc == RQ_OK && handle) rc = rq_resolve(c, res, &h);
    for (int i = 0; i < n && rc == RQ_OK; ++i) {
        rc = handle ? rq_acquire_r(c, &h, 1, -1, &p) : rq_acquire(c, res, 1, -1, &p);
        if (rc == RQ_OK) rc = rq_release(c, &p);
    }
    rq_close(c);
    ::unlink(("/dev/shm/" + seg).c_str());
    if (rc != RQ_OK) std::fprintf(stderr, "fastpath_probe: %s\n", rq_strerror(rc));
    return rc == RQ_OK ? 0 : 1;
}
