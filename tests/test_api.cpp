// The C ABI contract in one process: define, acquire, release, try, timeout,
// E2BIG, stacked limits, and every bad input getting its code.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"
#include "ratequeue/ratequeue.hpp"

#include <cstring>
#include <thread>

using namespace rqtest;

namespace {
constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kHour = 3600 * kSec;
}  // namespace

TEST_CASE("version, strerror and errname cover every code") {
    CHECK(rq_version() == RQ_VERSION_NUMBER);
    CHECK(rq_layout_version() >= 1);
    for (int code = 0; code >= RQ_EINTERNAL; --code) {
        CHECK(std::strcmp(rq_strerror(code), "unknown ratequeue error code") != 0);
        CHECK(std::strncmp(rq_errname(code), "RQ_", 3) == 0);
    }
    CHECK(std::strcmp(rq_strerror(12345), "unknown ratequeue error code") == 0);
    CHECK(std::strcmp(rq_errname(RQ_ETIMEDOUT), "RQ_ETIMEDOUT") == 0);
    rq_close(nullptr);  // harmless
}

TEST_CASE("define is idempotent, conflicts are refused, replace swaps limits") {
    Segment seg;
    Client c(seg.name);
    rq_limit l1[] = {rate(100, 60 * kSec), conc(5)};
    REQUIRE(rq_define(c, "openai", l1, 2, 0) == RQ_OK);
    CHECK(rq_define(c, "openai", l1, 2, 0) == RQ_OK);
    rq_limit l2[] = {rate(200, 60 * kSec)};
    CHECK(rq_define(c, "openai", l2, 1, 0) == RQ_ECONFLICT);
    rq_limit got[RQ_MAX_LIMITS];
    size_t n = 0;
    REQUIRE(rq_describe(c, "openai", got, RQ_MAX_LIMITS, &n) == RQ_OK);
    REQUIRE(n == 2);
    CHECK(got[0].amount == 100);
    CHECK(got[0].burst == 100);  // 0 means amount
    CHECK(got[1].kind == RQ_LIMIT_CONCURRENCY);
    CHECK(rq_define(c, "openai", l2, 1, RQ_DEFINE_REPLACE) == RQ_OK);
    REQUIRE(rq_describe(c, "openai", got, RQ_MAX_LIMITS, &n) == RQ_OK);
    CHECK(n == 1);
    CHECK(got[0].amount == 200);
    CHECK(rq_describe(c, "openai", got, 0, &n) == RQ_EINVAL);
    CHECK(rq_describe(c, "nope", got, RQ_MAX_LIMITS, &n) == RQ_ENOENT);

    // A second client (another attachment) sees the same definitions.
    Client c2(seg.name);
    CHECK(rq_define(c2, "openai", l2, 1, 0) == RQ_OK);
}

TEST_CASE("bad definitions get RQ_EINVAL") {
    Segment seg;
    Client c(seg.name);
    rq_limit ok[] = {rate(10, kSec)};
    CHECK(rq_define(nullptr, "x", ok, 1, 0) == RQ_EINVAL);
    CHECK(rq_define(c, nullptr, ok, 1, 0) == RQ_EINVAL);
    CHECK(rq_define(c, "", ok, 1, 0) == RQ_EINVAL);
    CHECK(rq_define(c, "has space", ok, 1, 0) == RQ_EINVAL);
    CHECK(rq_define(c, "tab\there", ok, 1, 0) == RQ_EINVAL);
    std::string long_name(RQ_MAX_NAME + 1, 'a');
    CHECK(rq_define(c, long_name.c_str(), ok, 1, 0) == RQ_EINVAL);
    std::string max_name(RQ_MAX_NAME, 'a');
    CHECK(rq_define(c, max_name.c_str(), ok, 1, 0) == RQ_OK);
    CHECK(rq_define(c, "x", nullptr, 1, 0) == RQ_EINVAL);
    CHECK(rq_define(c, "x", ok, 0, 0) == RQ_EINVAL);
    rq_limit nine[9];
    for (auto &l : nine) l = rate(10, kSec);
    CHECK(rq_define(c, "x", nine, 9, 0) == RQ_EINVAL);
    CHECK(rq_define(c, "x", ok, 1, 0x80) == RQ_EINVAL);

    auto bad = [&](rq_limit l) { return rq_define(c, "x", &l, 1, 0); };
    CHECK(bad(rq_limit{3, 0, 10, kSec, 0}) == RQ_EINVAL);                          // kind
    CHECK(bad(rq_limit{RQ_LIMIT_RATE, 2, 10, kSec, 0}) == RQ_EINVAL);              // cost
    CHECK(bad(rate(0, kSec)) == RQ_EINVAL);                                        // zero amount
    CHECK(bad(rate(RQ_MAX_AMOUNT + 1, 1000 * kSec)) == RQ_EINVAL);                 // absurd amount
    CHECK(bad(rate(10, 0)) == RQ_EINVAL);                                          // zero period
    CHECK(bad(rate(1, RQ_MIN_PERIOD_NS - 1)) == RQ_EINVAL);                        // too short
    CHECK(bad(rate(10, RQ_MAX_PERIOD_NS + 1)) == RQ_EINVAL);                       // too long
    CHECK(bad(rate(10, kSec, RQ_MAX_AMOUNT + 1)) == RQ_EINVAL);                    // absurd burst
    CHECK(bad(rate(2000, 1000)) == RQ_EINVAL);                                     // > 1 unit per ns
    CHECK(bad(rate(11, 1000)) == RQ_EINVAL);                                       // inexact, < 100 ns per unit
    CHECK(bad(rate(10, 1000)) == RQ_OK);                                           // exact 100 ns per unit
    CHECK(bad(rate(1, RQ_MAX_PERIOD_NS, RQ_MAX_AMOUNT)) == RQ_EINVAL);            // bucket deeper than 2^62 ns
    CHECK(bad(conc(0)) == RQ_EINVAL);
    CHECK(bad(rq_limit{RQ_LIMIT_CONCURRENCY, 0, 5, kSec, 0}) == RQ_EINVAL);        // period on concurrency
    CHECK(bad(rq_limit{RQ_LIMIT_CONCURRENCY, 0, 5, 0, 3}) == RQ_EINVAL);           // burst on concurrency
}

TEST_CASE("bad acquires and releases get their codes") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(10, kSec), conc(2)};
    REQUIRE(rq_define(c, "r", l, 2, 0) == RQ_OK);
    rq_permit p;
    CHECK(rq_acquire(nullptr, "r", 1, -1, &p) == RQ_EINVAL);
    CHECK(rq_acquire(c, nullptr, 1, -1, &p) == RQ_EINVAL);
    CHECK(rq_acquire(c, "r", 1, -1, nullptr) == RQ_EINVAL);
    CHECK(rq_acquire(c, "missing", 1, -1, &p) == RQ_ENOENT);
    CHECK(rq_acquire(c, "bad name", 1, -1, &p) == RQ_EINVAL);
    CHECK(rq_acquire(c, "r", 0, -1, &p) == RQ_EINVAL);
    CHECK(rq_acquire(c, "r", RQ_MAX_AMOUNT + 1, -1, &p) == RQ_EINVAL);
    CHECK(rq_release(c, nullptr) == RQ_EINVAL);
    CHECK(rq_release(nullptr, &p) == RQ_EINVAL);
    rq_permit zero{};
    CHECK(rq_release(c, &zero) == RQ_OK);  // zeroed permit: nothing to do
    rq_permit forged{};
    forged.opaque[0] = 0xdeadbeef;
    CHECK(rq_release(c, &forged) == RQ_EINVAL);

    REQUIRE(rq_acquire(c, "r", 1, -1, &p) == RQ_OK);
    rq_permit tampered = p;
    tampered.opaque[1] ^= uint64_t{1} << 32;  // another process slot
    CHECK(rq_release(c, &tampered) == RQ_EINVAL);
    CHECK(rq_release(c, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);  // harmless twice
}

TEST_CASE("load that can never fit fails at once with RQ_E2BIG") {
    Segment seg;
    Client c(seg.name);
    rq_limit tpm[] = {rate(1000, 60 * kSec, 100, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "tpm", tpm, 1, 0) == RQ_OK);
    rq_permit p;
    int64_t t0 = now_ns();
    CHECK(rq_acquire(c, "tpm", 101, -1, &p) == RQ_E2BIG);  // above burst: wait forever otherwise
    CHECK(rq_acquire(c, "tpm", 100, -1, &p) == RQ_OK);     // exactly the burst fits
    rq_limit cc[] = {conc(8, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "inflight", cc, 1, 0) == RQ_OK);
    CHECK(rq_acquire(c, "inflight", 9, -1, &p) == RQ_E2BIG);
    CHECK(now_ns() - t0 < int64_t{5 * kSec});  // generous: these never sleep
    // A request-cost limit never rejects a large load.
    rq_limit rpm[] = {rate(1, 60 * kSec)};
    REQUIRE(rq_define(c, "rpm", rpm, 1, 0) == RQ_OK);
    CHECK(rq_acquire(c, "rpm", 1'000'000, 0, &p) == RQ_OK);
}

TEST_CASE("try never waits, and a deadline the buckets cannot meet fails at once with the predicted wait") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(2, kHour)};  // 2 now, then one every 30 minutes
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    rq_permit p;
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_EAGAIN);
    int64_t t0 = now_ns();
    CHECK(rq_acquire(c, "r", 1, 50'000'000, &p) == RQ_ETIMEDOUT);
    CHECK(now_ns() - t0 < 20'000'000);  // did not sleep until the deadline
    rq_wait_info info{sizeof info, 0, 0};
    CHECK(rq_acquire_ex(c, "r", 1, 5 * kSec, &p, &info) == RQ_ETIMEDOUT);
    CHECK(info.predicted_wait_ns > int64_t{29 * 60} * int64_t{kSec});
    CHECK(info.predicted_wait_ns <= int64_t{30 * 60} * int64_t{kSec});
    int64_t w = 0;
    CHECK(rq_predict_wait(c, "r", 1, &w) == RQ_OK);
    CHECK(w > int64_t{29 * 60} * int64_t{kSec});
    info.size = 4;
    CHECK(rq_acquire_ex(c, "r", 1, 5 * kSec, &p, &info) == RQ_EINVAL);
}

TEST_CASE("a timed-out waiter leaves the line clean") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "c", l, 1, 0) == RQ_OK);
    rq_permit a, b;
    REQUIRE(rq_acquire(c, "c", 1, -1, &a) == RQ_OK);
    CHECK(rq_acquire(c, "c", 1, 30'000'000, &b) == RQ_ETIMEDOUT);
    REQUIRE(rq_release(c, &a) == RQ_OK);
    // A stale ticket would make this try see a queue and fail.
    CHECK(rq_acquire(c, "c", 1, 0, &b) == RQ_OK);
    CHECK(rq_release(c, &b) == RQ_OK);
}

TEST_CASE("stacked limits are taken all-or-nothing") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(100, kHour, 100, RQ_COST_LOAD), conc(1)};
    REQUIRE(rq_define(c, "s", l, 2, 0) == RQ_OK);
    rq_permit a, b;
    REQUIRE(rq_acquire(c, "s", 60, 0, &a) == RQ_OK);
    // Concurrency is full: the rate must not be charged for the failed try.
    CHECK(rq_acquire(c, "s", 30, 0, &b) == RQ_EAGAIN);
    CHECK(rq_acquire(c, "s", 30, 20'000'000, &b) == RQ_ETIMEDOUT);
    REQUIRE(rq_release(c, &a) == RQ_OK);
    // 40 tokens left exactly: had the failed tries charged 30, this would fail.
    CHECK(rq_acquire(c, "s", 40, 0, &b) == RQ_OK);
    REQUIRE(rq_release(c, &b) == RQ_OK);
    // Now the rate is empty but concurrency is free: it must not be held.
    CHECK(rq_acquire(c, "s", 1, 0, &b) == RQ_EAGAIN);
    rq_limit big[] = {rate(1000, kSec, 1000, RQ_COST_LOAD), conc(1)};
    REQUIRE(rq_define(c, "s", big, 2, RQ_DEFINE_REPLACE) == RQ_OK);
    CHECK(rq_acquire(c, "s", 1, 0, &b) == RQ_OK);  // the one concurrency permit was free
    CHECK(rq_release(c, &b) == RQ_OK);
}

TEST_CASE("a release wakes the blocked head") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "c", l, 1, 0) == RQ_OK);
    rq_permit a;
    REQUIRE(rq_acquire(c, "c", 1, -1, &a) == RQ_OK);
    std::atomic<int> got{1};
    std::thread t([&] {
        rq_permit b;
        got = rq_acquire(c, "c", 1, 10'000'000'000, &b);
        rq_release(c, &b);
    });
    sleep_ms(50);
    CHECK(got.load() == 1);  // still waiting
    REQUIRE(rq_release(c, &a) == RQ_OK);
    t.join();
    CHECK(got.load() == RQ_OK);
}

TEST_CASE("a full queue gives RQ_ENOSPC, not a crash") {
    Segment seg;
    rq_open_options o{sizeof o, 0, 8, 2, 8, 0, nullptr};
    Client c(seg.name, &o);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "c", l, 1, 0) == RQ_OK);
    rq_permit held;
    REQUIRE(rq_acquire(c, "c", 1, -1, &held) == RQ_OK);
    std::vector<std::thread> waiters;
    std::atomic<int> timeouts{0};
    for (int i = 0; i < 2; ++i) {
        waiters.emplace_back([&] {
            rq_permit p;
            if (rq_acquire(c, "c", 1, 300'000'000, &p) == RQ_ETIMEDOUT) ++timeouts;
        });
    }
    sleep_ms(100);
    rq_permit p;
    CHECK(rq_acquire(c, "c", 1, -1, &p) == RQ_ENOSPC);
    for (auto &t : waiters) t.join();
    CHECK(timeouts.load() == 2);
    REQUIRE(rq_release(c, &held) == RQ_OK);
    CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_OK);  // the line is clean again
}

TEST_CASE("process table capacity gives RQ_ENOSPC") {
    Segment seg;
    rq_open_options o{sizeof o, 0, 4, 4, 2, 0, nullptr};
    rq_client *a = nullptr, *b = nullptr, *x = nullptr;
    REQUIRE(rq_open_ex(seg.c_str(), &o, &a) == RQ_OK);
    REQUIRE(rq_open_ex(seg.c_str(), &o, &b) == RQ_OK);
    CHECK(rq_open_ex(seg.c_str(), &o, &x) == RQ_ENOSPC);
    CHECK(x == nullptr);
    rq_close(b);
    CHECK(rq_open_ex(seg.c_str(), &o, &x) == RQ_OK);
    rq_close(x);
    rq_close(a);
}

TEST_CASE("open options and names are validated") {
    rq_client *c = nullptr;
    CHECK(rq_open("bad/name", &c) == RQ_EINVAL);
    CHECK(rq_open("", &c) == RQ_EINVAL);
    CHECK(rq_open(".hidden", &c) == RQ_EINVAL);
    CHECK(rq_open_ex("x", nullptr, nullptr) == RQ_EINVAL);
    Segment seg;
    rq_open_options o{sizeof o, 0, 4, 3, 4, 0, nullptr};  // slots not a power of two
    CHECK(rq_open_ex(seg.c_str(), &o, &c) == RQ_EINVAL);
    o = rq_open_options{sizeof o, 0x40, 0, 0, 0, 0, nullptr};  // unknown flag
    CHECK(rq_open_ex(seg.c_str(), &o, &c) == RQ_EINVAL);
    o = rq_open_options{2, 0, 0, 0, 0, 0, nullptr};  // size too small
    CHECK(rq_open_ex(seg.c_str(), &o, &c) == RQ_EINVAL);
}

TEST_CASE("definitions outlive the clients") {
    Segment seg;
    {
        Client c(seg.name);
        rq_limit l[] = {rate(5, kSec)};
        REQUIRE(rq_define(c, "keep", l, 1, 0) == RQ_OK);
    }
    Client c(seg.name);
    rq_permit p;
    CHECK(rq_acquire(c, "keep", 1, 0, &p) == RQ_OK);
}

TEST_CASE("C++ API: RAII permits, chrono timeouts, exceptions") {
    Segment seg;
    rq::Client client(seg.name);
    client.define("cpp", {rq::rate(2, std::chrono::hours(1)), rq::concurrency(1)});
    {
        rq::Permit p = client.acquire("cpp");
        CHECK(p.held());
        CHECK_FALSE(client.try_acquire("cpp").has_value());  // concurrency held
    }
    auto p2 = client.acquire_for("cpp", 1, std::chrono::milliseconds(10));
    REQUIRE(p2.has_value());
    p2->release();
    p2->release();  // harmless
    CHECK_FALSE(client.acquire_for("cpp", 1, std::chrono::milliseconds(10)).has_value());  // rate empty
    try {
        client.acquire("missing");
        FAIL("expected rq::Error");
    } catch (const rq::Error &e) {
        CHECK(e.code() == RQ_ENOENT);
        CHECK(std::string(e.name()) == "RQ_ENOENT");
    }
    CHECK_THROWS_AS(client.define("cpp", {rq::rate(3, std::chrono::hours(1))}), rq::Error);
    CHECK(client.describe("cpp").size() == 2);
}

TEST_CASE("rq_reset refills buckets and wakes a head waiting for tokens") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(1, kHour, 1)};
    REQUIRE(rq_define(c, "r", l, 1, 0) == RQ_OK);
    rq_permit p;
    REQUIRE(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_EAGAIN);
    std::atomic<int> rc{1};
    std::thread waiter([&] {
        rq_permit q;
        rc = rq_acquire(c, "r", 1, -1, &q);
    });
    sleep_ms(50);
    CHECK(rc.load() == 1);  // asleep until the next token, an hour away
    int64_t at = now_ns();
    REQUIRE(rq_reset(c, "r", 0) == RQ_OK);
    waiter.join();
    CHECK(rc.load() == RQ_OK);
    CHECK(now_ns() - at < int64_t{kSec});
    CHECK(rq_reset(c, nullptr, 0) == RQ_OK);  // every resource
    CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
    CHECK(rq_reset(c, "nope", 0) == RQ_ENOENT);
    CHECK(rq_reset(c, "bad name", 0) == RQ_EINVAL);
    CHECK(rq_reset(c, "r", 4) == RQ_EINVAL);
    CHECK(rq_reset(nullptr, "r", 0) == RQ_EINVAL);
}

TEST_CASE("a hard reset forgets live permits; their release is a no-op") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(1)};
    REQUIRE(rq_define(c, "c", l, 1, 0) == RQ_OK);
    rq_permit old, fresh, p;
    REQUIRE(rq_acquire(c, "c", 1, 0, &old) == RQ_OK);
    CHECK(rq_reset(c, "c", 0) == RQ_OK);  // soft: live holders keep theirs
    CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_EAGAIN);
    REQUIRE(rq_reset(c, "c", RQ_RESET_HARD) == RQ_OK);
    REQUIRE(rq_acquire(c, "c", 1, 0, &fresh) == RQ_OK);
    CHECK(rq_release(c, &old) == RQ_OK);              // forgotten: gives nothing back
    CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_EAGAIN);  // `fresh` still counts
    CHECK(rq_release(c, &fresh) == RQ_OK);
    CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);
}

TEST_CASE("rq_reap reclaims a dead holder at once and reports it") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {conc(2, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "c", l, 1, 0) == RQ_OK);
    rq_reap_report rep{};
    CHECK(rq_reap(c, &rep) == RQ_EINVAL);  // size not set
    rep.size = sizeof rep;
    REQUIRE(rq_reap(c, &rep) == RQ_OK);
    CHECK(rep.processes == 0);
    pid_t child = spawn([&] {
        rq_client *cc;
        rq_permit p;
        if (rq_open(seg.c_str(), &cc) != RQ_OK || rq_acquire(cc, "c", 2, 0, &p) != RQ_OK) return 1;
        _exit(0);  // dies holding load 2, without rq_close
    });
    REQUIRE(reap(child) == 0);
    rq_permit p;
    CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_EAGAIN);  // a try does not reclaim holders
    REQUIRE(rq_reap(c, &rep) == RQ_OK);
    CHECK(rep.processes == 1);
    CHECK(rep.permits == 1);
    CHECK(rep.load == 2);
    CHECK(rq_acquire(c, "c", 2, 0, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);
}

TEST_CASE("resolved resources acquire like names, and bad handles are refused") {
    Segment seg;
    Client c(seg.name);
    rq_limit l[] = {rate(2, kHour), conc(1, RQ_COST_LOAD)};
    REQUIRE(rq_define(c, "r", l, 2, 0) == RQ_OK);
    rq_resource h;
    REQUIRE(rq_resolve(c, "r", &h) == RQ_OK);
    CHECK(rq_resolve(c, "nope", &h) == RQ_ENOENT);
    CHECK(rq_resolve(c, "bad name", &h) == RQ_EINVAL);
    CHECK(rq_resolve(c, "r", nullptr) == RQ_EINVAL);
    REQUIRE(rq_resolve(c, "r", &h) == RQ_OK);
    rq_permit p, q;
    REQUIRE(rq_acquire_r(c, &h, 1, 0, &p) == RQ_OK);
    CHECK(rq_acquire_r(c, &h, 1, 0, &q) == RQ_EAGAIN);  // concurrency 1, held
    CHECK(rq_acquire(c, "r", 1, 0, &q) == RQ_EAGAIN);   // the same resource by name
    CHECK(rq_acquire_r(c, &h, 2, 0, &q) == RQ_E2BIG);   // above the concurrency amount
    CHECK(rq_acquire_r(c, &h, 0, 0, &q) == RQ_EINVAL);
    REQUIRE(rq_release(c, &p) == RQ_OK);
    rq_resource zero{}, forged = h, unused = h, other = h, magic = h;
    CHECK(rq_acquire_r(c, &zero, 1, 0, &q) == RQ_EINVAL);
    forged.opaque[0] |= uint64_t{0xffffff} << 32;  // a resource index beyond the table
    CHECK(rq_acquire_r(c, &forged, 1, 0, &q) == RQ_EINVAL);
    unused.opaque[0] ^= uint64_t{1} << 32;         // an index in the table, nothing defined there
    CHECK(rq_acquire_r(c, &unused, 1, 0, &q) == RQ_EINVAL);
    other.opaque[1] ^= 1;                          // not the name hash of the resource there
    CHECK(rq_acquire_r(c, &other, 1, 0, &q) == RQ_EINVAL);
    magic.opaque[0] ^= 1;                          // not a handle at all
    CHECK(rq_acquire_r(c, &magic, 1, 0, &q) == RQ_EINVAL);
    CHECK(rq_acquire_r(c, nullptr, 1, 0, &q) == RQ_EINVAL);
    CHECK(rq_acquire_r(nullptr, &h, 1, 0, &q) == RQ_EINVAL);
    // A handle of one segment means nothing in another, even one with a
    // resource of the same name (at the same index: same capacities).
    Segment seg2;
    Client c2(seg2.name);
    CHECK(rq_acquire_r(c2, &h, 1, 0, &q) == RQ_EINVAL);
    REQUIRE(rq_define(c2, "r", l, 2, 0) == RQ_OK);
    rq_resource h2;
    REQUIRE(rq_resolve(c2, "r", &h2) == RQ_OK);
    REQUIRE((h2.opaque[0] >> 32) == (h.opaque[0] >> 32));  // the same index
    REQUIRE(h2.opaque[1] == h.opaque[1]);              // the same name
    CHECK(rq_acquire_r(c2, &h, 1, 0, &q) == RQ_EINVAL);
    REQUIRE(rq_acquire_r(c2, &h2, 1, 0, &q) == RQ_OK);
    CHECK(rq_release(c2, &q) == RQ_OK);
}

TEST_CASE("resolved rate-only resources: the line-free path checks the load and zeroes a refused permit") {
    Segment seg;
    Client c(seg.name);
    rq_limit tpm[] = {rate(1000, kHour, 0, RQ_COST_LOAD)};
    rq_limit rpm[] = {rate(1000, kHour)};
    REQUIRE(rq_define(c, "tpm", tpm, 1, 0) == RQ_OK);
    REQUIRE(rq_define(c, "rpm", rpm, 1, 0) == RQ_OK);
    rq_resource ht, hr;
    REQUIRE(rq_resolve(c, "tpm", &ht) == RQ_OK);
    REQUIRE(rq_resolve(c, "rpm", &hr) == RQ_OK);
    rq_permit p;
    auto zeroed = [&] { return p.opaque[0] == 0 && p.opaque[1] == 0 && p.opaque[2] == 0 && p.opaque[3] == 0; };
    for (const rq_resource *h : {&ht, &hr}) {
        std::memset(&p, 0xab, sizeof p);
        CHECK(rq_acquire_r(c, h, 0, -1, &p) == RQ_EINVAL);
        CHECK(zeroed());
        std::memset(&p, 0xab, sizeof p);
        CHECK(rq_acquire_r(c, h, RQ_MAX_AMOUNT + 1, -1, &p) == RQ_EINVAL);
        CHECK(zeroed());
    }
    std::memset(&p, 0xab, sizeof p);
    CHECK(rq_acquire_r(c, &ht, 1001, -1, &p) == RQ_E2BIG);  // above the bucket
    CHECK(zeroed());
    CHECK(rq_acquire_r(c, &hr, 1001, 0, &p) == RQ_OK);  // a request-cost limit charges 1 whatever the load
    CHECK(rq_release(c, &p) == RQ_OK);
    REQUIRE(rq_acquire_r(c, &ht, 1000, 0, &p) == RQ_OK);
    CHECK(rq_release(c, &p) == RQ_OK);
    std::memset(&p, 0xab, sizeof p);
    CHECK(rq_acquire_r(c, &ht, 1, 0, &p) == RQ_EAGAIN);  // the bucket is empty
    CHECK(zeroed());
    CHECK(rq_release(c, &p) == RQ_OK);  // a zeroed permit releases as a no-op
}

TEST_CASE("C++: a resolved Resource acquires and releases") {
    Segment seg;
    rq::Client client(seg.name);
    client.define("c", {rq_limit{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 1, 0, 0}});
    const rq::Resource r = client.resource("c");
    {
        rq::Permit p = r.acquire();
        CHECK(p.held());
        CHECK_FALSE(r.try_acquire().has_value());
    }
    CHECK(r.try_acquire().has_value());
    CHECK_THROWS_AS(client.resource("nope"), rq::Error);
}

TEST_CASE("the per-minute shorthands: half a second's worth for rpm, the whole minute for tpm, one formula") {
    // The formula every API shares (Python's rpm=/tpm=, rqctl --rpm/--tpm).
    const rq_limit r = rq_rpm(1000, 0), t = rq_tpm(90000, 0);
    CHECK((r.kind == RQ_LIMIT_RATE && r.cost == RQ_COST_REQUEST && r.amount == 1000 && r.burst == 9));  // ceil(1000 * 0.5 / 60)
    CHECK((t.kind == RQ_LIMIT_RATE && t.cost == RQ_COST_LOAD && t.amount == 90000 && t.burst == 90000));
    CHECK(r.period_ns == 60'000'000'000ull);
    CHECK(rq_rpm(7, 6000).burst == 1);        // ceil(7 * 6 / 60)
    CHECK(rq_tpm(1000, 6000).burst == 100);
    CHECK(rq_rpm(1, 0).burst == 1);           // at least 1
    CHECK(rq_tpm(RQ_MAX_AMOUNT, 60000).burst == RQ_MAX_AMOUNT);  // no overflow at the bounds
    Segment seg;
    rq::Client client(seg.name);
    client.define("llm", {rq::rpm(1000), rq::tpm(90000)});
    const rq_limit same[] = {rq_rpm(1000, 0), rq_tpm(90000, 0)};
    Client c(seg.name);
    CHECK(rq_define(c, "llm", same, 2, 0) == RQ_OK);  // the same definition from C: no conflict
    rq::Permit p = client.acquire("llm", 90000);      // a whole minute of tokens at once fits
}
