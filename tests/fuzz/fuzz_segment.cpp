// libFuzzer target: a hostile segment. The input is written over a real
// segment image, then the image is used as a live segment would be: open,
// define, try and short-timeout acquires, settle, release, a ticket and its
// cancel, predict, describe, reap, and the read-only inspector rqctl uses.
// Built with clang under AddressSanitizer and UndefinedBehaviorSanitizer
// (scripts/fuzz), so any out-of-bounds access or undefined behaviour is a
// crash.
//
// Input: one byte choosing a template image (real segments made at start-up:
// resources only; with holders; with waiters in line; after a redefine),
// then patches, each [offset: 3 bytes][length: 1 byte][bytes], applied in
// order (offsets wrap around the image). The seed corpus (tests/fuzz/corpus)
// has each template untouched and with a few patches on its live words.
#include "inspect.hpp"
#include "ratequeue/ratequeue.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

std::vector<std::vector<uint8_t>> g_templates;
std::string g_name;  // the segment each input becomes

std::vector<uint8_t> read_file(const std::string &path) {
    std::vector<uint8_t> out;
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return out;
    struct stat st {};
    if (fstat(fd, &st) == 0) {
        out.resize(static_cast<size_t>(st.st_size));
        size_t got = 0;
        while (got < out.size()) {
            const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
            if (n <= 0) break;
            got += static_cast<size_t>(n);
        }
        out.resize(got);
    }
    ::close(fd);
    return out;
}

void must(int rc, const char *what) {
    if (rc != RQ_OK) {
        std::fprintf(stderr, "fuzz_segment: making the templates: %s: %s\n", what, rq_strerror(rc));
        std::abort();
    }
}

// Real segments: small capacities, so that the image is small and every
// structure is near the front.
void make_templates() {
    const std::string base = "rqfuzz-tmpl-" + std::to_string(getpid());
    rq_open_options o{};
    o.size = sizeof o;
    o.max_resources = 4;
    o.queue_slots = 8;
    o.max_processes = 8;
    rq_client *c = nullptr;
    must(rq_open_ex(base.c_str(), &o, &c), "open");
    const rq_limit a[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 100, 1'000'000'000ull, 10},
                          {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 2, 0, 0}};
    const rq_limit b[] = {{RQ_LIMIT_RATE, RQ_COST_LOAD, 10000, 60'000'000'000ull, 0},
                          {RQ_LIMIT_CONCURRENCY, RQ_COST_LOAD, 500, 0, 0}};
    const rq_limit one[] = {{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
    must(rq_define(c, "a", a, 2, 0), "define a");
    must(rq_define(c, "b", b, 2, 0), "define b");
    must(rq_define(c, "one", one, 1, 0), "define one");
    const std::string path = "/dev/shm/" + base;
    g_templates.push_back(read_file(path));  // 0: resources only
    rq_permit p1{}, p2{}, p3{};
    must(rq_acquire(c, "a", 1, 0, &p1), "acquire a");
    must(rq_acquire(c, "b", 300, 0, &p2), "acquire b");
    must(rq_acquire(c, "one", 1, 0, &p3), "acquire one");
    g_templates.push_back(read_file(path));  // 1: with holders
    rq_ticket t1{}, t2{};
    must(rq_enqueue(c, "one", 1, &t1), "enqueue");
    must(rq_enqueue(c, "b", 300, &t2), "enqueue b");
    g_templates.push_back(read_file(path));  // 2: with waiters in line
    rq_cancel(c, &t1);
    rq_cancel(c, &t2);
    rq_settle(c, &p2, 120);
    const rq_limit a2[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 50, 1'000'000'000ull, 5},
                           {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 3, 0, 0}};
    must(rq_define(c, "a", a2, 2, RQ_DEFINE_REPLACE), "redefine a");
    rq_penalize(c, "a", 1'000'000);
    g_templates.push_back(read_file(path));  // 3: settled, redefined, penalized
    rq_release(c, &p1);
    rq_release(c, &p2);
    rq_release(c, &p3);
    rq_close(c);
    ::unlink(path.c_str());
    for (auto &t : g_templates) {
        if (t.empty()) {
            std::fprintf(stderr, "fuzz_segment: a template image is empty\n");
            std::abort();
        }
    }
}

void exercise(rq_client *c) {
    static const char *const names[] = {"a", "b", "one", "z"};
    for (const char *n : names) {
        rq_permit p{};
        if (rq_acquire(c, n, 1, 0, &p) == RQ_OK) {
            rq_settle(c, &p, 0);
            rq_release(c, &p);
        }
        int64_t ns = 0;
        rq_predict_wait(c, n, 5, &ns);
        rq_limit out[RQ_MAX_LIMITS];
        size_t k = 0;
        rq_describe(c, n, out, RQ_MAX_LIMITS, &k);
    }
    rq_permit p{};
    if (rq_acquire(c, "b", 200, 1'000'000, &p) == RQ_OK) rq_release(c, &p);  // a short timeout: the line
    rq_ticket t{};
    if (rq_enqueue(c, "one", 1, &t) == RQ_OK) {
        rq_permit q{};
        if (rq_wait(c, &t, 0, &q) == RQ_OK) rq_release(c, &q);
        rq_cancel(c, &t);
    }
    const rq_limit z[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 10, 1'000'000'000ull, 2}};
    rq_define(c, "z", z, 1, 0);
    const rq_limit one[] = {{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}};
    rq_define(c, "one", one, 1, 0);
    rq_penalize(c, "a", 1000);
    rq_reap_report rep{sizeof rep, 0, 0, 0};
    rq_reap(c, &rep);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    make_templates();
    g_name = "rqfuzz-" + std::to_string(getpid());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    std::vector<uint8_t> img = g_templates[data[0] % g_templates.size()];
    for (size_t i = 1; i + 4 <= size;) {
        const size_t off = (static_cast<size_t>(data[i]) << 16 | static_cast<size_t>(data[i + 1]) << 8 | data[i + 2]) %
                           img.size();
        const size_t len = data[i + 3];
        i += 4;
        for (size_t k = 0; k < len && i < size; ++k, ++i) img[(off + k) % img.size()] = data[i];
    }
    const std::string path = "/dev/shm/" + g_name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 0;
    size_t put = 0;
    while (put < img.size()) {
        const ssize_t n = ::write(fd, img.data() + put, img.size() - put);
        if (n <= 0) break;
        put += static_cast<size_t>(n);
    }
    ::close(fd);
    {
        rq::detail::Inspector in;  // the read-only reader rqctl uses
        if (in.open(g_name) == RQ_OK) {
            rq::detail::SegmentInfo info;
            in.snapshot(info, nullptr, true);
            const std::string only = "one";
            in.snapshot(info, &only, true);
        }
    }
    rq_client *c = nullptr;
    if (rq_open(g_name.c_str(), &c) == RQ_OK) {
        exercise(c);
        rq_close(c);
    }
    ::unlink(path.c_str());
    return 0;
}
