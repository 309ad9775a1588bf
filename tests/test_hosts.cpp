// Many hosts, crash safety of the refiller: the process that talks to Redis
// for a host is SIGKILLed at each step of its protocol (refiller.cpp's crash
// points) while another process of the host keeps acquiring. The survivor
// must take over and go on, the global rate bound must hold over everything
// both admitted, and Redis's books must stay within the limits.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "helpers.hpp"
#include "crash_points.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

using namespace rqtest;
using rq::detail::CrashPoint;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kRate = 400;   // per second, with a burst of 40
constexpr uint64_t kBurst = 40;
constexpr uint64_t kSlots = 2;

// A redis-server of the test's own on a free loopback port; stopped by PID.
struct RedisServer {
    pid_t pid = -1;
    int port = 0;
    std::string why_not;
    RedisServer() {
        if (system("command -v redis-server >/dev/null 2>&1") != 0) {
            why_not = "redis-server is not installed (scripts/install-deps installs it)";
            return;
        }
        int s = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        REQUIRE(bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
        REQUIRE(getsockname(s, reinterpret_cast<sockaddr *>(&a), &len) == 0);
        port = ntohs(a.sin_port);
        close(s);
        pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            const std::string p = std::to_string(port);
            execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", static_cast<char *>(nullptr));
            _exit(127);
        }
        REQUIRE(eventually([&] { return command("PING") == "PONG"; }, 10000));
    }
    ~RedisServer() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port); }
    // One command's string or integer reply as text ("" on any failure).
    std::string command(const std::string &cmd) const {
        redisContext *c = redisConnect("127.0.0.1", port);
        if (c == nullptr || c->err != 0) {
            if (c != nullptr) redisFree(c);
            return "";
        }
        auto *r = static_cast<redisReply *>(redisCommand(c, cmd.c_str()));
        std::string out;
        if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) out.assign(r->str, r->len);
        if (r != nullptr && r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
        if (r != nullptr) freeReplyObject(r);
        redisFree(c);
        return out;
    }
};

// Every admission of both processes, in shared memory (it outlives a kill).
struct Log {
    static constexpr int kMax = 20000;
    std::atomic<int> n{0};
    int64_t before[kMax];  // CLOCK_MONOTONIC before the acquire call
    int64_t after[kMax];   // and after it returned
    void add(int64_t b, int64_t a) {
        const int i = n.fetch_add(1);
        if (i < kMax) {
            before[i] = b;
            after[i] = a;
        }
    }
};

// The reference sliding window: for every run of admissions in order of
// their return, their count must fit B + A*t/P over the shortest window that
// surely holds them all (earliest call to latest return). The worst excess.
double worst_excess(const Log &log) {
    const int n = std::min(log.n.load(), Log::kMax);
    std::vector<std::pair<int64_t, int64_t>> ev;
    for (int i = 0; i < n; ++i) ev.emplace_back(log.after[i], log.before[i]);
    std::sort(ev.begin(), ev.end());
    double worst = -1e18;
    for (int i = 0; i < n; ++i) {
        int64_t lo = INT64_MAX;
        for (int j = i; j < n; ++j) {
            lo = std::min(lo, ev[j].second);
            const double allowed = kBurst + kRate * static_cast<double>(ev[j].first - lo) / kSec;
            worst = std::max(worst, (j - i + 1) - allowed);
        }
    }
    return worst;
}

rq_client *open_host(const std::string &seg, const std::string &url) {
    rq_open_options o{};
    o.size = sizeof o;
    o.redis_url = url.c_str();
    rq_client *c = nullptr;
    return rq_open_ex(seg.c_str(), &o, &c) == RQ_OK ? c : nullptr;
}

// The worker both processes run: acquire and release, until `until`. Both
// pause together for 300 ms of every second (counted back from `until`), so
// the bucket in Redis fills to its cap and then both burst at once (the
// moment an over-generous cap would show in the window check); each also
// pauses 100 ms every 40 admissions (the refiller lowers slots).
int work(const std::string &seg, const std::string &url, Log *log, int64_t until) {
    rq_client *c = open_host(seg, url);
    if (c == nullptr) return 20;
    const rq_limit l[] = {rate(kRate, kSec, kBurst), conc(kSlots)};
    if (rq_define(c, "g", l, 2, 0) != RQ_OK) return 21;
    for (int k = 1; now_ns() < until; ++k) {
        const int64_t phase = (until - now_ns()) % static_cast<int64_t>(kSec);
        if (phase > 600'000'000 && phase < 900'000'000) {
            usleep(static_cast<useconds_t>((phase - 600'000'000) / 1000));
            continue;
        }
        const int64_t b = now_ns();
        rq_permit p;
        const int rc = rq_acquire(c, "g", 1, static_cast<int64_t>(kSec), &p);
        if (rc == RQ_ETIMEDOUT || rc == RQ_EUNAVAIL) continue;
        if (rc != RQ_OK) return 22;
        log->add(b, now_ns());
        rq_release(c, &p);
        if (k % 40 == 0) sleep_ms(100);
    }
    rq_close(c);
    return 0;
}

uint32_t refiller_word(const std::string &seg) {
    int fd = ::open(("/dev/shm/" + seg).c_str(), O_RDONLY);
    if (fd < 0) return 0;
    uint32_t w = 0;
    if (pread(fd, &w, sizeof w, 264) != sizeof w) w = 0;  // Header::refiller (layout.hpp)
    close(fd);
    return w;
}

}  // namespace

TEST_CASE("the refiller SIGKILLed at each of its steps: the host goes on, the global bound holds") {
    RedisServer redis;
    if (!redis.why_not.empty()) {
        MESSAGE("skipped: " << redis.why_not);
        return;
    }
    const CrashPoint points[] = {CrashPoint::kRefillElected, CrashPoint::kRefillLowering,
                                 CrashPoint::kRefillBeforeCall, CrashPoint::kRefillAfterReply,
                                 CrashPoint::kRefillInApply, CrashPoint::kRefillInFold};
    for (CrashPoint cp : points) {
        CAPTURE(static_cast<int>(cp));
        REQUIRE(redis.command("FLUSHALL") == "OK");
        Segment seg;
        Log *log = shared_block<Log>();
        const int64_t until = now_ns() + 4 * static_cast<int64_t>(kSec);
        // The armed process comes first, so that it is the host's refiller.
        pid_t armed = spawn([&] {
            rq::detail::set_crash_point(cp);
            return work(seg.name, redis.url(), log, until);
        });
        REQUIRE(eventually([&] { return refiller_word(seg.name) != 0; }, 5000));
        pid_t other = spawn([&] { return work(seg.name, redis.url(), log, until); });
        const int armed_rc = reap(armed);
        const int64_t died = now_ns();
        CHECK_MESSAGE(armed_rc == -SIGKILL, "the refiller never reached the step");
        REQUIRE(reap(other) == 0);
        // The survivor took over and went on: admissions after the death,
        // the first within a second (a takeover, then a refill).
        int after = 0;
        int64_t first = INT64_MAX;
        for (int i = 0; i < std::min(log->n.load(), Log::kMax); ++i) {
            if (log->after[i] > died) {
                ++after;
                first = std::min(first, log->after[i]);
            }
        }
        CHECK(after > 100);
        CHECK(first - died < static_cast<int64_t>(kSec));
        // Exact over everything admitted, before and after the kill.
        const double worst = worst_excess(*log);
        MESSAGE("worst excess over B + A*t/P: " << worst << ", admissions " << log->n.load());
        CHECK(worst <= 0);
        // Redis's books within the limits.
        const std::string outstanding = redis.command("HGET rq:{g} O1");
        const std::string slots = redis.command("HGET rq:{g} C2");
        CHECK(std::atoll(outstanding.c_str()) <= static_cast<long long>(kBurst));
        CHECK(std::atoll(slots.c_str()) <= static_cast<long long>(kSlots));
        munmap(log, sizeof *log);
    }
}
