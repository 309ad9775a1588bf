// The same job across the systems users would pick instead, timed in one run:
// take a permit under an RPM-style limit, then give it back.
//
//   ratequeue        rq_acquire + rq_release, a rate limit and a concurrency limit
//   sem_open         POSIX named semaphore: sem_wait + sem_post (concurrency only)
//   SysV SEM_UNDO    semop -1 / +1 with SEM_UNDO, the classic crash-safe permit
//   flock            flock(LOCK_EX) + flock(LOCK_UN) on a file, as Python's filelock
//   redis tcp/unix   a Lua GCRA script by EVALSHA over loopback TCP and a unix
//                    socket (hiredis), against a redis-server this program starts
//                    on a free port with no persistence and stops by pid
//
// Prints median and p99 per operation and the ratio to ratequeue's median,
// and whether each system kept a rate limit in a short check (a semaphore and
// flock cannot express a rate: they say so).
//
//   build/bench/rq-compare [--iterations N] [--json FILE]
// (not named plain "compare": in the build directory that name would shadow the
// C++20 header <compare> for the other programs here)
#include "ratequeue/ratequeue.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef RQ_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Result {
    explicit Result(std::string name) : system(std::move(name)) {}
    std::string system;
    bool ran = false;
    std::string why_not;  // when it did not run
    double median_ns = 0, p99_ns = 0;
    std::string kept;     // the rate-limit verdict
};

// Times `op` n times (after a warm-up); false from op stops with an error.
bool time_ops(int n, const std::function<bool()> &op, Result &r) {
    std::vector<int64_t> t(static_cast<size_t>(n));
    for (int i = 0; i < std::min(n, 1000); ++i) {
        if (!op()) return false;
    }
    for (int i = 0; i < n; ++i) {
        const int64_t a = now_ns();
        if (!op()) return false;
        t[static_cast<size_t>(i)] = now_ns() - a;
    }
    std::sort(t.begin(), t.end());
    r.median_ns = static_cast<double>(t[t.size() / 2]);
    r.p99_ns = static_cast<double>(t[std::min(t.size() - 1, t.size() * 99 / 100)]);
    r.ran = true;
    return true;
}

// A rate check: admit as fast as possible for `ms` under A per second with
// burst B; kept when admitted <= B + A * t.
std::string rate_verdict(uint64_t admitted, uint64_t burst, double per_second, double seconds) {
    const double allowed = static_cast<double>(burst) + per_second * seconds;
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s (%llu admitted, %.0f allowed)", admitted <= allowed ? "yes" : "NO",
                  static_cast<unsigned long long>(admitted), allowed);
    return buf;
}

// ---- ratequeue --------------------------------------------------------------------------

Result run_ratequeue(int n) {
    Result r("ratequeue");
    std::string seg = "rq-compare-" + std::to_string(getpid());
    rq_client *c = nullptr;
    if (rq_open(seg.c_str(), &c) != RQ_OK) {
        r.why_not = "rq_open failed";
        return r;
    }
    // RPM-style, never the bottleneck here: 6e9/min; plus a concurrency limit.
    rq_limit l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 6'000'000'000ull / 1000, 60'000'000'000ull / 1000, 0},
                    {RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST, 64, 0, 0}};
    rq_define(c, "compare", l, 2, 0);
    rq_permit p;
    time_ops(n, [&] { return rq_acquire(c, "compare", 1, -1, &p) == RQ_OK && rq_release(c, &p) == RQ_OK; }, r);
    // The check: 2,000/s with a burst of 10, tries for 0.3 s.
    rq_limit t[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 2000, 1'000'000'000ull, 10}};
    rq_define(c, "check", t, 1, 0);
    uint64_t admitted = 0;
    const int64_t start = now_ns(), end = start + 300'000'000;
    while (now_ns() < end) admitted += rq_acquire(c, "check", 1, 0, &p) == RQ_OK;
    r.kept = rate_verdict(admitted, 10, 2000, (now_ns() - start) / 1e9);
    rq_close(c);
    ::unlink(("/dev/shm/" + seg).c_str());
    return r;
}

// ---- semaphores and flock -------------------------------------------------------------------

Result run_posix_sem(int n) {
    Result r("POSIX sem_open");
    std::string name = "/rq-compare-sem-" + std::to_string(getpid());
    sem_t *s = sem_open(name.c_str(), O_CREAT | O_EXCL, 0600, 64);
    if (s == SEM_FAILED) {
        r.why_not = std::string("sem_open: ") + std::strerror(errno);
        return r;
    }
    time_ops(n, [&] { return sem_wait(s) == 0 && sem_post(s) == 0; }, r);
    r.kept = "cannot express a rate (a count of permits only)";
    sem_close(s);
    sem_unlink(name.c_str());
    return r;
}

Result run_sysv_sem(int n) {
    Result r("SysV semop SEM_UNDO");
    int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (id < 0) {
        r.why_not = std::string("semget: ") + std::strerror(errno);
        return r;
    }
    union semun {
        int val;
    } arg{64};
    semctl(id, 0, SETVAL, arg);
    sembuf down{0, -1, SEM_UNDO}, up{0, 1, SEM_UNDO};
    time_ops(n, [&] { return semop(id, &down, 1) == 0 && semop(id, &up, 1) == 0; }, r);
    r.kept = "cannot express a rate (a count of permits only)";
    semctl(id, 0, IPC_RMID);
    return r;
}

Result run_flock(int n) {
    Result r("flock");
    char path[] = "/tmp/rq-compare-flock-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        r.why_not = std::string("mkstemp: ") + std::strerror(errno);
        return r;
    }
    time_ops(n, [&] { return flock(fd, LOCK_EX) == 0 && flock(fd, LOCK_UN) == 0; }, r);
    r.kept = "cannot express a rate (one holder at a time)";
    close(fd);
    ::unlink(path);
    return r;
}

// ---- Redis ---------------------------------------------------------------------------------

#ifdef RQ_HAVE_HIREDIS
// GCRA in Lua with Redis's clock, as redis-cell and the usual recipes do:
// KEYS[1] the TAT key; ARGV: emission interval us, burst tolerance us.
const char *kGcraLua =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local tat = tonumber(redis.call('GET', KEYS[1]) or now) "
    "if tat < now then tat = now end "
    "local new = tat + tonumber(ARGV[1]) "
    "if new - now > tonumber(ARGV[2]) then return 0 end "
    "redis.call('SET', KEYS[1], new, 'PX', math.ceil((new - now) / 1000) + 1) "
    "return 1";

struct RedisServer {
    pid_t pid = -1;
    int port = 0;
    std::string sock;
    std::string why_not;

    RedisServer() {
        if (system("command -v redis-server >/dev/null 2>&1") != 0) {
            why_not = "redis-server not installed (scripts/install-deps installs it)";
            return;
        }
        int s = socket(AF_INET, SOCK_STREAM, 0);  // a free loopback port
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
            getsockname(s, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
            why_not = "no free port";
            close(s);
            return;
        }
        port = ntohs(a.sin_port);
        close(s);
        sock = "/tmp/rq-compare-redis-" + std::to_string(getpid()) + ".sock";
        pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            std::string p = std::to_string(port);
            execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--unixsocket", sock.c_str(), "--unixsocketperm", "700", "--daemonize",
                   "no", static_cast<char *>(nullptr));
            _exit(127);
        }
    }
    ~RedisServer() {
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, nullptr, 0);
        }
        if (!sock.empty()) ::unlink(sock.c_str());
    }
};

redisContext *connect_redis(const RedisServer &srv, bool unix_socket) {
    for (int tries = 0; tries < 100; ++tries) {  // up to 5 s for it to start
        redisContext *c = unix_socket ? redisConnectUnix(srv.sock.c_str()) : redisConnect("127.0.0.1", srv.port);
        if (c != nullptr && c->err == 0) return c;
        if (c != nullptr) redisFree(c);
        usleep(50'000);
    }
    return nullptr;
}

bool evalsha(redisContext *c, const std::string &sha, const char *key, const char *interval_us,
             const char *tolerance_us, long long &admitted) {
    auto *rep = static_cast<redisReply *>(
        redisCommand(c, "EVALSHA %s 1 %s %s %s", sha.c_str(), key, interval_us, tolerance_us));
    if (rep == nullptr || rep->type != REDIS_REPLY_INTEGER) {
        if (rep != nullptr) freeReplyObject(rep);
        return false;
    }
    admitted = rep->integer;
    freeReplyObject(rep);
    return true;
}

// ---- Many hosts ---------------------------------------------------------------------------

std::string redis_url(const RedisServer &srv) { return "redis://127.0.0.1:" + std::to_string(srv.port); }

rq_client *open_host(const std::string &seg, const std::string &url) {
    rq_open_options o{};
    o.size = sizeof o;
    o.redis_url = url.c_str();
    rq_client *c = nullptr;
    return rq_open_ex(seg.c_str(), &o, &c) == RQ_OK ? c : nullptr;
}

// Acquire + release of a rate limit that is never the bottleneck (1e9/s),
// on this host only (url empty) or global through Redis, once the host holds
// a lease: the local path against the lease path, in the same run.
Result run_rate(int n, const std::string &url) {
    Result r(url.empty() ? "ratequeue rate, host-only" : "ratequeue rate, global (lease)");
    std::string seg = "rq-compare-rate-" + std::to_string(getpid()) + (url.empty() ? "-local" : "-global");
    ::unlink(("/dev/shm/" + seg).c_str());
    rq_client *c = open_host(seg, url);
    if (c == nullptr) {
        r.why_not = "rq_open_ex failed";
        return r;
    }
    rq_limit l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, 1'000'000'000ull, 1'000'000'000ull, 1'000'000'000ull}};
    if (rq_define(c, "fast", l, 1, 0) != RQ_OK) {
        r.why_not = "rq_define failed (is Redis up?)";
    } else {
        rq_permit p;
        // Warm up for 0.5 s: the refiller learns the demand and the lease
        // grows to it (the bucket in Redis starts empty).
        const int64_t warm = now_ns() + 500'000'000;
        while (now_ns() < warm) {
            if (rq_acquire(c, "fast", 1, -1, &p) == RQ_OK) rq_release(c, &p);
        }
        time_ops(n, [&] { return rq_acquire(c, "fast", 1, -1, &p) == RQ_OK && rq_release(c, &p) == RQ_OK; }, r);
        r.kept = url.empty() ? "yes (this host)" : "yes (every host)";
    }
    rq_close(c);
    ::unlink(("/dev/shm/" + seg).c_str());
    return r;
}

long long evalsha_calls(const RedisServer &srv) {
    redisContext *c = connect_redis(srv, false);
    if (c == nullptr) return -1;
    auto *rep = static_cast<redisReply *>(redisCommand(c, "INFO commandstats"));
    long long calls = 0;
    if (rep != nullptr && rep->type == REDIS_REPLY_STRING) {
        const char *p = std::strstr(rep->str, "cmdstat_evalsha:calls=");
        if (p != nullptr) calls = std::atoll(p + 22);
    }
    if (rep != nullptr) freeReplyObject(rep);
    redisFree(c);
    return calls;
}

// kHosts hosts (a segment and a process each) share one global rate limit
// through the Redis: first each asks for a fifth of it (uncontended: Redis
// round trips per 1,000 acquires at steady state), then all ask for as much
// as they can (utilisation of the limit, and each host's share).
struct HostsReport {
    bool ran = false;
    std::string why_not;
    double trips_per_1000 = 0, utilisation = 0, worst_share = 0;
    std::vector<uint64_t> shares;
};
constexpr int kHosts = 3;
constexpr uint64_t kHostsRate = 30'000;  // per second, all hosts together

HostsReport run_hosts(const RedisServer &srv) {
    HostsReport rep;
    if (!srv.why_not.empty()) {
        rep.why_not = srv.why_not;
        return rep;
    }
    const std::string url = redis_url(srv);
    // phase 0: paced at kHostsRate / 5 each; phase 1: flat out. Each child
    // writes its admissions in the measured window to a pipe.
    for (int phase = 0; phase < 2; ++phase) {
        const long long calls0 = evalsha_calls(srv);
        int fds[kHosts][2];
        pid_t pids[kHosts];
        const int64_t t0 = now_ns() + 200'000'000;  // everyone starts together
        const int64_t a = t0 + 1'000'000'000, b = t0 + 3'000'000'000;
        for (int h = 0; h < kHosts; ++h) {
            if (pipe(fds[h]) != 0) return rep;
            pids[h] = fork();
            if (pids[h] == 0) {
                close(fds[h][0]);
                std::string seg = "rq-compare-host-" + std::to_string(getppid()) + "-" + std::to_string(h);
                ::unlink(("/dev/shm/" + seg).c_str());
                rq_client *c = open_host(seg, url);
                rq_limit l[] = {{RQ_LIMIT_RATE, RQ_COST_REQUEST, kHostsRate, 1'000'000'000ull, kHostsRate / 10}};
                uint64_t in_window = 0;
                if (c != nullptr && rq_define(c, phase == 0 ? "paced" : "flat", l, 1, 0) == RQ_OK) {
                    while (now_ns() < t0) usleep(1000);
                    rq_permit p;
                    const int64_t gap = static_cast<int64_t>(1'000'000'000ull * 5 / kHostsRate);
                    int64_t next = t0;
                    for (int64_t now = now_ns(); now < b; now = now_ns()) {
                        if (phase == 0) {
                            if (now < next) {
                                struct timespec ts{0, static_cast<long>(std::min<int64_t>(next - now, 1'000'000))};
                                nanosleep(&ts, nullptr);
                                continue;
                            }
                            next += gap;
                        }
                        if (rq_acquire(c, phase == 0 ? "paced" : "flat", 1, 1'000'000'000, &p) != RQ_OK) continue;
                        const int64_t at = now_ns();
                        if (at >= a && at < b) ++in_window;
                    }
                }
                if (c != nullptr) rq_close(c);
                ::unlink(("/dev/shm/" + seg).c_str());
                ssize_t w = write(fds[h][1], &in_window, sizeof in_window);
                _exit(w == sizeof in_window ? 0 : 1);
            }
            close(fds[h][1]);
        }
        std::vector<uint64_t> got(kHosts, 0);
        for (int h = 0; h < kHosts; ++h) {
            if (read(fds[h][0], &got[h], sizeof got[h]) != sizeof got[h]) got[h] = 0;
            close(fds[h][0]);
            waitpid(pids[h], nullptr, 0);
        }
        const long long calls = evalsha_calls(srv) - calls0;
        uint64_t total = 0;
        for (uint64_t g : got) total += g;
        if (total == 0) {
            rep.why_not = "the hosts admitted nothing";
            return rep;
        }
        const double window_s = (b - a) / 1e9;
        if (phase == 0) {
            // Calls over the whole run (warm-up included) over what was admitted in it.
            const double admitted_all = static_cast<double>(total) * 3.2 / window_s;  // (t0 - 0.2 s .. b)
            rep.trips_per_1000 = static_cast<double>(calls) * 1000.0 / admitted_all;
        } else {
            rep.utilisation = static_cast<double>(total) / (kHostsRate * window_s);
            rep.shares = got;
            const double mean = static_cast<double>(total) / kHosts;
            for (uint64_t g : got) rep.worst_share = std::max(rep.worst_share, std::abs(static_cast<double>(g) - mean) / mean);
        }
    }
    rep.ran = true;
    return rep;
}

Result run_redis(const RedisServer &srv, bool unix_socket, int n) {
    Result r(unix_socket ? "Redis Lua GCRA, unix socket" : "Redis Lua GCRA, loopback TCP");
    if (!srv.why_not.empty()) {
        r.why_not = srv.why_not;
        return r;
    }
    redisContext *c = connect_redis(srv, unix_socket);
    if (c == nullptr) {
        r.why_not = "could not connect to the redis-server it started";
        return r;
    }
    auto *rep = static_cast<redisReply *>(redisCommand(c, "SCRIPT LOAD %s", kGcraLua));
    std::string sha = rep != nullptr && rep->type == REDIS_REPLY_STRING ? rep->str : "";
    if (rep != nullptr) freeReplyObject(rep);
    long long admitted = 0;
    // Never the bottleneck: 1 us per unit, a 1 s burst tolerance.
    time_ops(n, [&] { return evalsha(c, sha, "compare", "1", "1000000", admitted); }, r);
    // The check: 2,000/s (500 us each) with a burst of 10 (tolerance 9 intervals).
    uint64_t total = 0;
    const int64_t start = now_ns(), end = start + 300'000'000;
    while (now_ns() < end) {
        if (!evalsha(c, sha, "check", "500", "4500", admitted)) break;
        total += admitted == 1;
    }
    r.kept = rate_verdict(total, 10, 2000, (now_ns() - start) / 1e9);
    redisFree(c);
    return r;
}
#endif

}  // namespace

int main(int argc, char **argv) {
    int n = 20000;
    const char *json = nullptr;
    bool with_hosts = true;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--iterations") && i + 1 < argc) {
            n = std::max(1, std::atoi(argv[++i]));
        } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!std::strcmp(argv[i], "--no-hosts")) {
            with_hosts = false;
        } else {
            std::fprintf(stderr, "usage: compare [--iterations N] [--json FILE] [--no-hosts]\n");
            return 2;
        }
    }
    std::vector<Result> rs;
    rs.push_back(run_ratequeue(n));
    rs.push_back(run_posix_sem(n));
    rs.push_back(run_sysv_sem(n));
    rs.push_back(run_flock(n));
    HostsReport hosts;
#ifdef RQ_HAVE_HIREDIS
    {
        RedisServer srv;
        const int rn = std::max(1, n / 10);  // each op is a round trip
        rs.push_back(run_redis(srv, false, rn));
        rs.push_back(run_redis(srv, true, rn));
        if (srv.why_not.empty() && connect_redis(srv, false) != nullptr) {
            rs.push_back(run_rate(n, ""));
            rs.push_back(run_rate(n, redis_url(srv)));
            if (with_hosts) hosts = run_hosts(srv);
        }
    }
#else
    rs.emplace_back("Redis Lua GCRA");
    rs.back().why_not = "built without hiredis (libhiredis-dev)";
#endif
    const double base = rs[0].ran ? rs[0].median_ns : 0;
    std::printf("acquire + release under an RPM-style limit, %d iterations (Redis: %d), one process\n\n", n,
                std::max(1, n / 10));
    std::printf("%-30s %12s %12s %14s  %s\n", "system", "median", "p99", "vs ratequeue", "keeps a rate limit?");
    for (const auto &r : rs) {
        if (!r.ran) {
            std::printf("%-30s %12s %12s %14s  %s\n", r.system.c_str(), "-", "-", "-", r.why_not.c_str());
            continue;
        }
        auto fmt = [](double ns) {
            char b[32];
            if (ns < 10'000) std::snprintf(b, sizeof b, "%.0f ns", ns);
            else std::snprintf(b, sizeof b, "%.1f us", ns / 1000);
            return std::string(b);
        };
        char ratio[32];
        std::snprintf(ratio, sizeof ratio, "%.1fx", base > 0 ? r.median_ns / base : 0.0);
        std::printf("%-30s %12s %12s %14s  %s\n", r.system.c_str(), fmt(r.median_ns).c_str(), fmt(r.p99_ns).c_str(),
                    ratio, r.kept.c_str());
    }
    // Many hosts: the lease path against the host-only path, Redis round
    // trips, and the shared limit's use across hosts.
    double lease_ratio = 0;
    for (size_t i = 0; i + 1 < rs.size(); ++i) {
        if (rs[i].system == "ratequeue rate, host-only" && rs[i].ran && rs[i + 1].ran) {
            lease_ratio = rs[i + 1].median_ns / rs[i].median_ns;
        }
    }
    if (lease_ratio > 0) {
        std::printf("\nmany hosts: global acquire+release with a lease held = %.2fx host-only (budget 1.5x)\n",
                    lease_ratio);
    }
    if (hosts.ran) {
        std::printf("many hosts: %d hosts, %llu/s shared: uncontended (a fifth each) %.1f Redis round trips per 1,000 "
                    "acquires per host (budget 20); flat out: utilisation %.1f%%, shares",
                    kHosts, static_cast<unsigned long long>(kHostsRate), hosts.trips_per_1000, 100 * hosts.utilisation);
        for (uint64_t g : hosts.shares) std::printf(" %llu", static_cast<unsigned long long>(g));
        std::printf(" (worst %.1f%% from the mean)\n", 100 * hosts.worst_share);
    } else if (with_hosts) {
        std::printf("many hosts: not run: %s\n", hosts.why_not.c_str());
    }
    if (json != nullptr) {
        FILE *f = std::fopen(json, "w");
        if (f == nullptr) return 1;
        std::fprintf(f, "{\"iterations\": %d, \"lease_ratio\": %.3f, \"hosts\": {\"ran\": %s, "
                        "\"trips_per_1000\": %.2f, \"utilisation\": %.4f, \"worst_share\": %.4f}, \"systems\": [",
                     n, lease_ratio, hosts.ran ? "true" : "false", hosts.trips_per_1000, hosts.utilisation,
                     hosts.worst_share);
        for (size_t i = 0; i < rs.size(); ++i) {
            const auto &r = rs[i];
            std::fprintf(f, "%s{\"system\": \"%s\", \"ran\": %s, \"median_ns\": %.0f, \"p99_ns\": %.0f, \"kept\": \"%s\"}",
                         i ? ", " : "", r.system.c_str(), r.ran ? "true" : "false", r.median_ns, r.p99_ns,
                         r.ran ? r.kept.c_str() : r.why_not.c_str());
        }
        std::fprintf(f, "]}\n");
        std::fclose(f);
    }
    // Every system that ran must have completed; a rate checker that ran must have kept its limit.
    for (const auto &r : rs) {
        if (r.ran && r.kept.rfind("NO", 0) == 0) return 1;
    }
    return rs[0].ran ? 0 : 1;
}
