// The segment is hostile input (guarantee 8): modes and ownership, zero-length,
// truncated, corrupt, foreign, older-layout and other-boot segments, corrupt
// interior state found on use, and race-free creation by many processes.
//
// A segment is the one file /dev/shm/NAME: liveness locks are OFD write locks
// on that file itself (byte kProcLockBase + p for process slot p), so no
// companion file is ever created, and files next to it are no concern of it.
//
// Every case must give its error code and never crash or hang. Cases that
// touch a damaged interior run rq_* calls in a forked child (bounded by
// alarm()), so a crash or a hang is reported as such instead of taking the
// suite down; every acquire there carries a timeout.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "core.hpp"
#include "gcra.hpp"
#include "helpers.hpp"
#include "inspect.hpp"
#include "layout.hpp"
#include "peek.hpp"

#include <dirent.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace rqtest;
namespace rd = rq::detail;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr int64_t kTimeout = 200'000'000;  // every acquire on a damaged segment is bounded
constexpr rq_open_options kSmall{sizeof(rq_open_options), 0, 8, 8, 8, 0, nullptr};
constexpr rq_open_options kSmallGroup{sizeof(rq_open_options), RQ_OPEN_GROUP, 8, 8, 8, 0, nullptr};

std::string path_of(const std::string &name) { return "/dev/shm/" + name; }

mode_t mode_of(const std::string &path) {
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

off_t size_of(const std::string &path) {
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_size;
}

// rq_open_ex, closing the client again; no doctest assertions (safe in children).
int open_rc(const std::string &seg, const rq_open_options *o = nullptr) {
    rq_client *c = nullptr;
    int rc = rq_open_ex(seg.c_str(), o, &c);
    if (rc == RQ_OK) rq_close(c);
    if (rc != RQ_OK && c != nullptr) return -98;  // an error must not hand out a client
    return rc;
}

// rq_open_ex, closing the client again when it opened.
int try_open(const std::string &seg, const rq_open_options *o = nullptr) {
    rq_client *c = nullptr;
    int rc = rq_open_ex(seg.c_str(), o, &c);
    if (rc == RQ_OK) {
        CHECK(c != nullptr);
        rq_close(c);
    } else {
        CHECK(c == nullptr);
    }
    return rc;
}

// A good segment with resource `res` defined (and nothing else), closed again.
void make_good(const std::string &seg, const rq_open_options *o = &kSmall, const char *res = "r",
               const rq_limit *limits = nullptr, size_t n = 0) {
    rq_limit dflt = rate(10, kSec);
    if (limits == nullptr) {
        limits = &dflt;
        n = 1;
    }
    rq_client *c = nullptr;
    REQUIRE(rq_open_ex(seg.c_str(), o, &c) == RQ_OK);
    REQUIRE(rq_define(c, res, limits, n, 0) == RQ_OK);
    rq_close(c);
}

void write_at(const std::string &seg, off_t off, const void *p, size_t n) {
    int fd = ::open(path_of(seg).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, p, n, off) == static_cast<ssize_t>(n));
    ::close(fd);
}

template <class T>
void poke(const std::string &seg, off_t off, T v) {
    write_at(seg, off, &v, sizeof v);
}

template <class T>
T peek(const std::string &seg, off_t off) {
    T v{};
    int fd = ::open(path_of(seg).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pread(fd, &v, sizeof v, off) == static_cast<ssize_t>(sizeof v));
    ::close(fd);
    return v;
}

// The names in /dev/shm that start with `prefix`.
std::set<std::string> shm_entries(const std::string &prefix) {
    std::set<std::string> out;
    DIR *d = ::opendir("/dev/shm");
    REQUIRE(d != nullptr);
    while (dirent *e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.compare(0, prefix.size(), prefix) == 0) out.insert(n);
    }
    ::closedir(d);
    return out;
}

// A writable mapping of a segment file (peek.hpp).
struct Mapped : Peek {
    explicit Mapped(const std::string &seg) : Peek(seg, kWritable) {}
};

// What a forked child's rq_* calls came to.
struct Outcome {
    int rc = 0;          // the RQ_* code the child returned (when it exited)
    int signal = 0;      // killed by this signal (SIGALRM: it hung)
    int64_t elapsed_ns = 0;
    bool exited() const { return signal == 0; }
};

// Runs fn in a forked child bounded by `limit_s` seconds; fn returns an RQ_*
// code (0..-13) or another small negative number for test-side failures.
Outcome isolated(const std::function<int()> &fn, unsigned limit_s = 5) {
    const int64_t t0 = now_ns();
    pid_t pid = spawn([&] { return std::min(-fn(), 120); }, limit_s);
    int st = reap(pid, static_cast<int>(limit_s) * 1000 + 2000);
    Outcome o;
    o.elapsed_ns = now_ns() - t0;
    if (st >= 0) {
        o.rc = -st;
    } else {
        o.signal = st == -1000 ? SIGKILL : -st;
    }
    return o;
}

// In a child: open the segment, acquire `res` with `timeout`, release, close.
Outcome acquire_in_child(const std::string &seg, const char *res, int64_t timeout = kTimeout,
                         uint64_t load = 1) {
    return isolated([&] {
        rq_client *c = nullptr;
        int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
        if (rc != RQ_OK) return rc;
        rq_permit p;
        rc = rq_acquire(c, res, load, timeout, &p);
        if (rc == RQ_OK) rq_release(c, &p);
        rq_close(c);
        return rc;
    });
}

// The library's boot id (segment.cpp, read_boot_id), checked against the
// file's text: 32 hex digits and dashes.
void read_boot_id(uint8_t out[16]) {
    rd::read_boot_id(out);
    FILE *f = std::fopen("/proc/sys/kernel/random/boot_id", "re");
    REQUIRE(f != nullptr);
    char buf[64] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    std::string want;
    for (size_t i = 0; i < n; ++i) {
        if (buf[i] != '-' && buf[i] != '\n') want += buf[i];
    }
    char got[33];
    for (int i = 0; i < 16; ++i) std::snprintf(got + 2 * i, 3, "%02x", out[i]);
    REQUIRE(want == got);
}

struct Umask {
    mode_t old;
    explicit Umask(mode_t m) : old(::umask(m)) {}
    ~Umask() { ::umask(old); }
};

}  // namespace

// ---- Creation modes -------------------------------------------------------------

TEST_CASE("new segments are created 0600, or 0660 with RQ_OPEN_GROUP, whatever the umask") {
    for (mode_t um : {mode_t{0}, mode_t{022}, mode_t{077}}) {
        Umask guard(um);
        CAPTURE(um);
        {
            Segment seg;
            REQUIRE(try_open(seg.name) == RQ_OK);
            CHECK(mode_of(path_of(seg.name)) == 0600);
            CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});  // one file, no companion
            CHECK(try_open(seg.name) == RQ_OK);                               // and it reopens
        }
        {
            Segment seg;
            REQUIRE(try_open(seg.name, &kSmallGroup) == RQ_OK);
            CHECK(mode_of(path_of(seg.name)) == 0660);
            CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
            CHECK(try_open(seg.name, &kSmallGroup) == RQ_OK);
            // A group-shared segment is looser than a private opener accepts.
            CHECK(try_open(seg.name, &kSmall) == RQ_EACCES);
        }
    }
}

// Runs in a child: become another user (uid 65534) in group `gid` (the
// creator's), then open `seg` group-shared, try-acquire "r" (a rate limit)
// and, when `conc` names a concurrency resource, take and give back a permit.
// Registering takes this process's liveness lock on the segment file, so an
// RQ_OK means the OFD lock works for a group member too.
int open_as_group_member(const std::string &seg, gid_t gid, const char *conc = nullptr) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(65534) != 0) return -100;
    if (::geteuid() != 65534 || ::getegid() != gid) return -101;
    rq_client *c = nullptr;
    int rc = rq_open_ex(seg.c_str(), &kSmallGroup, &c);
    if (rc != RQ_OK) return rc;
    rq_permit p;
    rc = rq_acquire(c, "r", 1, 0, &p);
    if (rc == RQ_OK && conc != nullptr) {
        rc = rq_acquire(c, conc, 1, kTimeout, &p);
        if (rc == RQ_OK) rc = rq_release(c, &p);
    }
    rq_close(c);
    return rc;
}

TEST_CASE("RQ_OPEN_GROUP: another user in the group can share it (umask 0 and 022); outside the group cannot") {
    REQUIRE(geteuid() == 0);
    const gid_t gid = getegid();
    REQUIRE(gid != 65534);
    for (mode_t um : {mode_t{0}, mode_t{022}}) {
        CAPTURE(um);
        Umask guard(um);
        Segment seg;
        make_good(seg.name, &kSmallGroup);
        rq_limit one = conc(1);
        {
            rq_client *c = nullptr;
            REQUIRE(rq_open_ex(seg.c_str(), &kSmallGroup, &c) == RQ_OK);
            REQUIRE(rq_define(c, "c", &one, 1, 0) == RQ_OK);
            rq_close(c);
        }
        // The umask does not reach the one file there is.
        CHECK(mode_of(path_of(seg.name)) == 0660);
        CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
        Outcome o = isolated([&] { return open_as_group_member(seg.name, gid, "c"); });
        REQUIRE(o.exited());
        CHECK_MESSAGE(o.rc == RQ_OK, std::string(rq_errname(o.rc)));
        // Still the one file, still ours, and the creator still opens it.
        CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
        CHECK(try_open(seg.name, &kSmallGroup) == RQ_OK);
        // A group member's permit is visible to the creator: while it holds
        // the only permit, the creator waits, and gets it once it is given back.
        auto *go = shared_block<std::atomic<int>>(2);
        pid_t member = spawn(
            [&] {
                if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(65534) != 0) return 100;
                rq_client *c = nullptr;
                if (rq_open_ex(seg.c_str(), &kSmallGroup, &c) != RQ_OK) return 101;
                rq_permit p;
                if (rq_acquire(c, "c", 1, 0, &p) != RQ_OK) return 102;
                go[0].store(1);
                const int64_t until = now_ns() + 5 * int64_t{kSec};
                while (go[1].load() == 0 && now_ns() < until) sleep_ms(1);
                int rc = rq_release(c, &p);
                rq_close(c);
                return rc == RQ_OK ? 0 : 103;
            },
            10);
        REQUIRE(eventually([&] { return go[0].load() == 1; }));
        {
            Client c(seg.name, &kSmallGroup);
            rq_permit p;
            CHECK(rq_acquire(c, "c", 1, 0, &p) == RQ_EAGAIN);
            go[1].store(1);
            CHECK(rq_acquire(c, "c", 1, 5 * int64_t{kSec}, &p) == RQ_OK);
            CHECK(rq_release(c, &p) == RQ_OK);
        }
        CHECK(reap(member, 10000) == 0);
        munmap(go, 2 * sizeof(std::atomic<int>));
        // Another user in another group: the kernel refuses it before we look.
        o = isolated([&] {
            if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return -100;
            return open_rc(seg.name, &kSmallGroup);
        });
        REQUIRE(o.exited());
        CHECK(o.rc == RQ_EACCES);
    }
}

// Issue 16, defect 2: a user who is in the segment's group only through a
// supplementary group (usermod -aG), with another primary group, is a member.
TEST_CASE("RQ_OPEN_GROUP: a member through a supplementary group can share it") {
    REQUIRE(geteuid() == 0);
    const gid_t gid = getegid();
    REQUIRE(gid != 65534);
    Segment seg;
    make_good(seg.name, &kSmallGroup);
    Outcome o = isolated([&] {
        const gid_t extra[] = {gid};
        if (::setgroups(1, extra) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return -100;
        if (::getegid() == gid) return -101;  // the membership is the supplementary one only
        return open_rc(seg.name, &kSmallGroup);
    });
    REQUIRE(o.exited());
    CHECK_MESSAGE(o.rc == RQ_OK, std::string(rq_errname(o.rc)));
}

// Issue 16, defect 8: the temporary name a creator builds under must not be
// squattable. Files at the names 03300e8 would have used (NAME.init-PID-N,
// N counting from 0 in a fresh process) do not block creation.
TEST_CASE("squatting the temporary names of a creation does not block it") {
    Segment seg;
    Outcome o = isolated([&] {
        for (int n = 0; n < 16; ++n) {
            const std::string squat = path_of(seg.name) + ".init-" + std::to_string(getpid()) + "-" + std::to_string(n);
            const int fd = ::open(squat.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
            if (fd < 0) return -100;
            ::close(fd);
        }
        return open_rc(seg.name, &kSmall);
    });
    REQUIRE(o.exited());
    CHECK_MESSAGE(o.rc == RQ_OK, std::string(rq_errname(o.rc)));
    for (const std::string &n : shm_entries(seg.name + ".init-")) ::unlink(path_of(n).c_str());
}

// ---- Bad files at the segment name ------------------------------------------------

TEST_CASE("zero-length, tiny and header-only files are RQ_ECORRUPT and left alone") {
    for (size_t len : {size_t{0}, size_t{1}, size_t{100}, size_t{4095}, size_t{4096}, size_t{8192}}) {
        CAPTURE(len);
        Segment seg;
        int fd = ::open(path_of(seg.name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::fchmod(fd, 0600) == 0);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(len)) == 0);
        ::close(fd);
        CHECK(try_open(seg.name) == RQ_ECORRUPT);
        CHECK(try_open(seg.name, &kSmall) == RQ_ECORRUPT);
        // Not "repaired" behind the owner's back.
        CHECK(size_of(path_of(seg.name)) == static_cast<off_t>(len));
    }
}

TEST_CASE("a truncated or extended segment is RQ_ECORRUPT") {
    Segment seg;
    make_good(seg.name, nullptr);  // rq_open defaults: a segment of several MB
    const off_t full = size_of(path_of(seg.name));
    REQUIRE(full > 2 * 4096);
    REQUIRE(try_open(seg.name) == RQ_OK);
    for (off_t len : {full / 2, full - 4096, full - 1, off_t{4096}, full + 4096}) {
        CAPTURE(len);
        REQUIRE(::truncate(path_of(seg.name).c_str(), len) == 0);
        CHECK(try_open(seg.name) == RQ_ECORRUPT);
        CHECK(size_of(path_of(seg.name)) == len);
    }
}

TEST_CASE("a live segment shrunk under its users gives errors, not SIGBUS deaths") {
    // Issue 16, defect 4: `truncate -s 4096 /dev/shm/NAME` while processes
    // are attached (the owner or a group member can). Each call after it,
    // in a holder, a waiter's process and a reader (the inspector rqctl
    // uses), returns an error code; none dies.
    for (off_t len : {off_t{4096}, off_t{0}}) {
        CAPTURE(len);
        Segment seg;
        {
            Client c(seg.name);
            const rq_limit rc_limits[] = {rate(1000, kSec), conc(2)};
            REQUIRE(rq_define(c, "r", rc_limits, 2, 0) == RQ_OK);
            rq_permit held;
            REQUIRE(rq_acquire(c, "r", 1, -1, &held) == RQ_OK);
            // A second process attached too, calling on after the shrink.
            auto *step = shared_block<std::atomic<int>>();
            pid_t other = spawn([&] {
                rq_client *oc = open_or_die(seg);
                rq_permit p;
                if (rq_acquire(oc, "r", 1, kSec, &p) != RQ_OK) return 10;
                rq_release(oc, &p);
                step->store(1);
                while (step->load() != 2) usleep(1000);
                int errors = 0;
                for (int i = 0; i < 20; ++i) {
                    const int rc = rq_acquire(oc, "r", 1, 50'000'000, &p);
                    if (rc == RQ_OK) rq_release(oc, &p);
                    else ++errors;
                }
                rq_close(oc);
                return errors == 20 ? 0 : 11;  // every call an error, and alive to say so
            });
            REQUIRE(eventually([&] { return step->load() == 1; }));
            rq::detail::Inspector in;
            REQUIRE(in.open(seg.name) == RQ_OK);
            REQUIRE(::truncate(path_of(seg.name).c_str(), len) == 0);
            step->store(2);
            // This process: every kind of call answers, with an error (the
            // first, which meets the shrink, with what it read: zeros).
            rq_permit p;
            CHECK(rq_acquire(c, "r", 1, 0, &p) < 0);
            CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_ECORRUPT);
            CHECK(rq_acquire(c, "r", 1, 50'000'000, &p) == RQ_ECORRUPT);
            CHECK(rq_define(c, "other", rc_limits, 2, 0) == RQ_ECORRUPT);
            CHECK(rq_release(c, &held) != RQ_OK);
            rq::detail::SegmentInfo info;
            CHECK(in.snapshot(info, nullptr, true) == RQ_ECORRUPT);
            CHECK(info.file.problem.find("shrank") != std::string::npos);
            CHECK(reap(other) == 0);
        }  // rq_close on the shrunk segment: no crash either
    }
}

TEST_CASE("a global resource's lease words hold anything: every call returns, no overflow, no over-grant") {
    // Many hosts: horizons, reserved tokens, expiry and TATs of a global
    // resource are shared memory too. A resource made global by writing its
    // config flags (no Redis needed), then each lease word at the extremes;
    // the sanitizer build of this suite turns any overflow into a failure.
    Segment seg;
    Client c(seg.name);
    const rq_limit l[] = {rate(1000, kSec, 100, RQ_COST_LOAD), conc(4)};
    REQUIRE(rq_define(c, "g", l, 2, 0) == RQ_OK);
    Peek peek(seg.name, Peek::kWritable);
    rq::detail::Resource &res = peek.resource("g");
    peek.active_config("g").flags.store(rq::detail::kScopeGlobal);
    const int64_t extremes[] = {INT64_MIN, INT64_MIN + 1, -(int64_t{1} << 62) - 1, -1, 0, 1,
                                int64_t{1} << 62, INT64_MAX - 1, INT64_MAX};
    rq::detail::Lease &ls = res.lease;
    for (int64_t tat : extremes) {
        for (int64_t h : extremes) {
            res.tat[0].store(tat);
            ls.horizon[0].store(h);
            ls.next_add[0].store(h);
            ls.next_at_ns.store(tat);
            ls.expires_ns.store(INT64_MAX);
            ls.slots[1].store(static_cast<uint64_t>(h));
            rq_permit p;
            for (uint64_t load : {uint64_t{1}, uint64_t{100}}) {
                const int rc = rq_acquire(c, "g", load, 0, &p);
                CHECK((rc == RQ_OK || rc == RQ_EAGAIN));
                if (rc == RQ_OK) rq_release(c, &p);
            }
            const int rc = rq_acquire(c, "g", 1, 1'000'000, &p);  // a timed one: waits for a refill, then times out
            CHECK((rc == RQ_OK || rc == RQ_ETIMEDOUT || rc == RQ_EUNAVAIL));
            if (rc == RQ_OK) rq_release(c, &p);
        }
    }
    // Sane words again: a lease of exactly 10 units admits exactly 10.
    res.tat[0].store(0);
    ls.next_add[0].store(0);
    // (This client read the limits only after the flags changed: its copy is the global one.)
    const uint64_t unit = kSec / 1000;  // request_ns of 1000 per second
    ls.horizon[0].store(static_cast<int64_t>(10 * unit));
    ls.slots[1].store(4);
    int got = 0;
    rq_permit p;
    while (got < 100 && rq_acquire(c, "g", 1, 0, &p) == RQ_OK) {
        rq_release(c, &p);
        ++got;
    }
    CHECK(got == 10);
}

TEST_CASE("corrupt header fields: RQ_ECORRUPT, and RQ_EINCOMPAT for another layout major") {
    using rd::Header;
    struct Mutation {
        const char *what;
        off_t off;
        uint64_t value;
        size_t width;  // 4 or 8 bytes
        int expect;
    };
    const rd::Geometry g = rd::geometry(8, 8, 8);
    const Mutation muts[] = {
        {"magic", offsetof(Header, magic), rd::kMagic ^ 1, 8, RQ_ECORRUPT},
        {"magic zero", offsetof(Header, magic), 0, 8, RQ_ECORRUPT},
        {"layout_major 2", offsetof(Header, layout_major), rd::kLayoutMajor + 1, 4, RQ_EINCOMPAT},
        {"layout_major 0", offsetof(Header, layout_major), 0, 4, RQ_EINCOMPAT},
        {"layout_major max", offsetof(Header, layout_major), UINT32_MAX, 4, RQ_EINCOMPAT},
        {"layout_minor (compatible)", offsetof(Header, layout_minor), rd::kLayoutMinor + 7, 4, RQ_OK},
        {"header_size", offsetof(Header, header_size), 4095, 4, RQ_ECORRUPT},
        {"max_limits", offsetof(Header, max_limits), 9, 4, RQ_ECORRUPT},
        {"max_resources 0", offsetof(Header, max_resources), 0, 4, RQ_ECORRUPT},
        {"max_resources 12 (size mismatch)", offsetof(Header, max_resources), 12, 4, RQ_ECORRUPT},
        {"max_resources 4 (size mismatch)", offsetof(Header, max_resources), 4, 4, RQ_ECORRUPT},
        {"max_resources huge", offsetof(Header, max_resources), UINT32_MAX, 4, RQ_ECORRUPT},
        {"queue_slots 0", offsetof(Header, queue_slots), 0, 4, RQ_ECORRUPT},
        {"queue_slots 3", offsetof(Header, queue_slots), 3, 4, RQ_ECORRUPT},
        {"queue_slots 1024 (size mismatch)", offsetof(Header, queue_slots), 1024, 4, RQ_ECORRUPT},
        {"queue_slots 2^31", offsetof(Header, queue_slots), uint64_t{1} << 31, 4, RQ_ECORRUPT},
        {"max_processes 0", offsetof(Header, max_processes), 0, 4, RQ_ECORRUPT},
        {"max_processes huge", offsetof(Header, max_processes), 100000, 4, RQ_ECORRUPT},
        {"total_size +4096", offsetof(Header, total_size), g.total_size + 4096, 8, RQ_ECORRUPT},
        {"total_size 0", offsetof(Header, total_size), 0, 8, RQ_ECORRUPT},
        {"proc_table_off", offsetof(Header, proc_table_off), g.proc_table_off + 64, 8, RQ_ECORRUPT},
        {"resource_table_off", offsetof(Header, resource_table_off), g.resource_table_off - 4096, 8, RQ_ECORRUPT},
        {"resource_table_off huge", offsetof(Header, resource_table_off), UINT64_MAX, 8, RQ_ECORRUPT},
        {"holdings_off", offsetof(Header, holdings_off), g.holdings_off + 8, 8, RQ_ECORRUPT},
        {"rings_off", offsetof(Header, rings_off), g.total_size, 8, RQ_ECORRUPT},
        {"init_state uninitialized", offsetof(Header, init_state), 0, 4, RQ_ECORRUPT},
        {"init_state initializing", offsetof(Header, init_state), 1, 4, RQ_ECORRUPT},
        {"init_state corrupt", offsetof(Header, init_state), 3, 4, RQ_ECORRUPT},
        {"init_state garbage", offsetof(Header, init_state), 0xabcdef, 4, RQ_ECORRUPT},
    };
    for (const Mutation &m : muts) {
        INFO("mutation: " << std::string(m.what));
        Segment seg;
        make_good(seg.name);
        REQUIRE(size_of(path_of(seg.name)) == static_cast<off_t>(g.total_size));
        if (m.width == 4) {
            poke(seg.name, m.off, static_cast<uint32_t>(m.value));
        } else {
            poke(seg.name, m.off, m.value);
        }
        CHECK(try_open(seg.name, &kSmall) == m.expect);
        CHECK(try_open(seg.name) == m.expect);  // other options do not matter for an existing segment
        // The damaged segment is reported, not replaced.
        if (m.width == 4) {
            CHECK(peek<uint32_t>(seg.name, m.off) == static_cast<uint32_t>(m.value));
        } else {
            CHECK(peek<uint64_t>(seg.name, m.off) == m.value);
        }
    }
}

TEST_CASE("random garbage of exactly the right size is refused") {
    const rd::Geometry g = rd::geometry(rd::kDefaultResources, rd::kDefaultQueueSlots, rd::kDefaultProcesses);
    std::mt19937_64 rng(12345);
    std::vector<uint64_t> buf(g.total_size / 8);
    for (int round = 0; round < 4; ++round) {
        CAPTURE(round);
        Segment seg;
        for (auto &w : buf) w = rng();
        if (round >= 2) {
            // Keep a plausible magic and major so the later checks are reached.
            buf[0] = rd::kMagic;
            buf[1] = (buf[1] & ~uint64_t{0xffffffff}) | rd::kLayoutMajor;
        }
        int fd = ::open(path_of(seg.name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::fchmod(fd, 0600) == 0);
        REQUIRE(::write(fd, buf.data(), g.total_size) == static_cast<ssize_t>(g.total_size));
        ::close(fd);
        Outcome o = isolated([&] {
            rq_client *c = nullptr;
            return rq_open(seg.c_str(), &c);  // never opens, so nothing to close
        });
        REQUIRE(o.exited());
        CHECK(o.rc == RQ_ECORRUPT);
    }
}

TEST_CASE("symlinks, FIFOs and directories at the segment name are refused; at NAME.lock they are ignored") {
    const std::string target = "/tmp/rqtest-target-" + std::to_string(getpid());
    {
        int fd = ::open(target.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, "precious", 8) == 8);
        ::close(fd);
    }
    {
        Segment seg;  // segment name is a symlink to someone's file
        REQUIRE(::symlink(target.c_str(), path_of(seg.name).c_str()) == 0);
        int rc = try_open(seg.name);
        CHECK(rc < 0);
        CHECK(rc == RQ_EACCES);
    }
    {
        // There is no companion file: a symlink at NAME.lock (to someone's
        // file) is neither followed nor touched.
        Segment seg;
        const std::string stray = path_of(seg.name) + ".lock";
        REQUIRE(::symlink(target.c_str(), stray.c_str()) == 0);
        CHECK(try_open(seg.name, &kSmall) == RQ_OK);
        Client c(seg.name, &kSmall);
        rq_limit l = rate(10, kSec);
        CHECK(rq_define(c, "r", &l, 1, 0) == RQ_OK);
        rq_permit p;
        CHECK(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);  // registered: our liveness lock is held
        struct stat st;
        REQUIRE(::lstat(stray.c_str(), &st) == 0);
        CHECK(S_ISLNK(st.st_mode));
        CHECK(mode_of(path_of(seg.name)) == 0600);
        CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name, seg.name + ".lock"});
        // No lock of ours ended up on the symlink's target (the liveness lock
        // is on the segment file, which another open file description sees).
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 0;  // the whole file, and past its end
        int fd = ::open(target.c_str(), O_RDWR | O_CLOEXEC);
        REQUIRE(fd >= 0);
        REQUIRE(::fcntl(fd, F_OFD_GETLK, &fl) == 0);
        CHECK(fl.l_type == F_UNLCK);
        ::close(fd);
        CHECK(locked_slots(seg.name, kSmall.max_processes).size() == 1);
    }
    CHECK(size_of(target) == 8);  // the target was neither truncated nor mapped as a segment
    ::unlink(target.c_str());
    {
        Segment seg;
        REQUIRE(::mkfifo(path_of(seg.name).c_str(), 0600) == 0);
        Outcome o = isolated([&] { return open_rc(seg.name); }, 3);  // must not block on the FIFO
        REQUIRE(o.exited());
        CHECK(o.rc == RQ_ECORRUPT);
    }
    {
        Segment seg;
        REQUIRE(::mkdir(path_of(seg.name).c_str(), 0700) == 0);
        int rc = try_open(seg.name);
        CHECK(rc == RQ_ECORRUPT);  // the same clear refusal as a FIFO (was RQ_ESYS: EISDIR)
        ::rmdir(path_of(seg.name).c_str());
    }
    {
        // A FIFO at NAME.lock is never opened (opening it would block).
        Segment seg;
        REQUIRE(::mkfifo((path_of(seg.name) + ".lock").c_str(), 0600) == 0);
        Outcome o = isolated([&] { return open_rc(seg.name); }, 3);
        REQUIRE(o.exited());
        CHECK(o.rc == RQ_OK);
        CHECK(try_open(seg.name) == RQ_OK);
    }
    {
        // Nor is a directory there in the way.
        Segment seg;
        REQUIRE(::mkdir((path_of(seg.name) + ".lock").c_str(), 0700) == 0);
        CHECK(try_open(seg.name) == RQ_OK);
        ::rmdir((path_of(seg.name) + ".lock").c_str());
    }
}

// ---- Modes and ownership ------------------------------------------------------------

TEST_CASE("looser modes are refused: world- or group-accessible without RQ_OPEN_GROUP") {
    struct M {
        mode_t mode;
        int priv;   // rq_open_ex without RQ_OPEN_GROUP
        int group;  // with RQ_OPEN_GROUP
    };
    const M cases[] = {
        {0600, RQ_OK, RQ_OK},         {0666, RQ_EACCES, RQ_EACCES}, {0602, RQ_EACCES, RQ_EACCES},
        {0604, RQ_EACCES, RQ_EACCES}, {0660, RQ_EACCES, RQ_OK},     {0640, RQ_EACCES, RQ_OK},
        {0620, RQ_EACCES, RQ_OK},     {0700, RQ_EACCES, RQ_EACCES}, {0662, RQ_EACCES, RQ_EACCES},
    };
    for (const M &m : cases) {
        CAPTURE(m.mode);
        Segment seg;
        make_good(seg.name);
        REQUIRE(::chmod(path_of(seg.name).c_str(), m.mode) == 0);
        CHECK(try_open(seg.name, &kSmall) == m.priv);
        CHECK(try_open(seg.name, &kSmallGroup) == m.group);
        CHECK(mode_of(path_of(seg.name)) == m.mode);  // not "fixed" behind our back
    }
    // The segment is the only file: a loose stray NAME.lock next to it is no
    // concern of it, and is left as it is.
    for (mode_t lm : {mode_t{0666}, mode_t{0606}, mode_t{0660}}) {
        CAPTURE(lm);
        Segment seg;
        make_good(seg.name);
        CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});  // no lock file was made
        const std::string stray = path_of(seg.name) + ".lock";
        int fd = ::open(stray.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::fchmod(fd, lm) == 0);
        ::close(fd);
        CHECK(try_open(seg.name, &kSmall) == RQ_OK);
        CHECK(mode_of(stray) == lm);
        CHECK(size_of(stray) == 0);
    }
}

TEST_CASE("a segment owned by another user is refused; another user's NAME.lock is ignored") {
    REQUIRE(geteuid() == 0);  // the suite runs as root; chown needs it
    {
        Segment seg;
        make_good(seg.name);
        REQUIRE(::chown(path_of(seg.name).c_str(), 65534, 65534) == 0);
        CHECK(try_open(seg.name, &kSmall) == RQ_EACCES);
        CHECK(try_open(seg.name, &kSmallGroup) == RQ_EACCES);
    }
    {
        // Another user, but our group: only a group-shared opener accepts it.
        Segment seg;
        make_good(seg.name);
        REQUIRE(::chown(path_of(seg.name).c_str(), 65534, getegid()) == 0);
        CHECK(try_open(seg.name, &kSmall) == RQ_EACCES);
        REQUIRE(::chmod(path_of(seg.name).c_str(), 0660) == 0);
        CHECK(try_open(seg.name, &kSmall) == RQ_EACCES);
        CHECK(try_open(seg.name, &kSmallGroup) == RQ_OK);
    }
    {
        // Not there yet, and another user's file sits at NAME.lock (a
        // leftover, or planted): the segment is created as usual, and the
        // foreign file is neither used nor changed.
        Segment seg;
        const std::string stray = path_of(seg.name) + ".lock";
        int fd = ::open(stray.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::fchown(fd, 65534, 65534) == 0);
        ::close(fd);
        CHECK(try_open(seg.name, &kSmall) == RQ_OK);
        CHECK(mode_of(path_of(seg.name)) == 0600);
        struct stat st;
        REQUIRE(::stat(path_of(seg.name).c_str(), &st) == 0);
        CHECK(st.st_uid == geteuid());
        REQUIRE(::stat(stray.c_str(), &st) == 0);
        CHECK(st.st_uid == 65534);
        CHECK(st.st_size == 0);
        CHECK(try_open(seg.name, &kSmall) == RQ_OK);
    }
}

// ---- Another boot --------------------------------------------------------------------

TEST_CASE("a segment from another boot is re-initialised on open") {
    Segment seg;
    make_good(seg.name);
    REQUIRE(try_open(seg.name) == RQ_OK);
    uint8_t boot[16], stale[16];
    read_boot_id(boot);
    REQUIRE(peek<std::array<uint8_t, 16>>(seg.name, offsetof(rd::Header, boot_id)) ==
            std::to_array(boot));
    for (int i = 0; i < 16; ++i) stale[i] = static_cast<uint8_t>(boot[i] ^ 0x5a);
    write_at(seg.name, offsetof(rd::Header, boot_id), stale, 16);

    rq_client *c = nullptr;
    REQUIRE(rq_open_ex(seg.c_str(), &kSmall, &c) == RQ_OK);
    rq_permit p;
    CHECK(rq_acquire(c, "r", 1, kTimeout, &p) == RQ_ENOENT);  // the old resource is gone
    rq_limit l[RQ_MAX_LIMITS];
    size_t n = 0;
    CHECK(rq_describe(c, "r", l, RQ_MAX_LIMITS, &n) == RQ_ENOENT);
    rq_limit fresh = rate(5, kSec);
    CHECK(rq_define(c, "fresh", &fresh, 1, 0) == RQ_OK);
    CHECK(rq_acquire(c, "fresh", 1, 0, &p) == RQ_OK);
    rq_close(c);
    CHECK(peek<std::array<uint8_t, 16>>(seg.name, offsetof(rd::Header, boot_id)) == std::to_array(boot));
    CHECK(mode_of(path_of(seg.name)) == 0600);
    // Exactly the segment: no temporaries, no companion file.
    CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
    // And it is not re-initialised again: the new resource persists.
    REQUIRE(rq_open_ex(seg.c_str(), &kSmall, &c) == RQ_OK);
    CHECK(rq_describe(c, "fresh", l, RQ_MAX_LIMITS, &n) == RQ_OK);
    rq_close(c);
}

TEST_CASE("many processes opening a stale segment at once agree on one fresh segment") {
    Segment seg;
    make_good(seg.name);
    uint8_t boot[16];
    read_boot_id(boot);
    for (auto &b : boot) b = static_cast<uint8_t>(~b);
    write_at(seg.name, offsetof(rd::Header, boot_id), boot, 16);

    constexpr int kKids = 8;
    auto *line = shared_block<StartLine>();
    std::vector<pid_t> kids;
    for (int i = 0; i < kKids; ++i) {
        kids.push_back(spawn(
            [&, i] {
                line->arrive_and_wait(kKids, 5000);
                rq_client *c = nullptr;
                int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
                if (rc != RQ_OK) return 10 - rc;
                rq_limit l = rate(10, kSec);
                std::string mine = "kid-" + std::to_string(i);
                rc = rq_define(c, mine.c_str(), &l, 1, 0);
                rq_close(c);
                return rc == RQ_OK ? 0 : 30 - rc;
            },
            20));
    }
    for (pid_t k : kids) CHECK(reap(k, 20000) == 0);
    // Nobody's definition was lost to a late re-initialisation.
    rq_client *c = nullptr;
    REQUIRE(rq_open_ex(seg.c_str(), &kSmall, &c) == RQ_OK);
    rq_limit l[RQ_MAX_LIMITS];
    size_t n = 0;
    for (int i = 0; i < kKids; ++i) {
        std::string mine = "kid-" + std::to_string(i);
        CHECK_MESSAGE(rq_describe(c, mine.c_str(), l, RQ_MAX_LIMITS, &n) == RQ_OK, mine);
    }
    CHECK(rq_describe(c, "r", l, RQ_MAX_LIMITS, &n) == RQ_ENOENT);
    rq_close(c);
    CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
}

// ---- Corrupt interior state, found on use -----------------------------------------------

TEST_CASE("corrupt interior state read on use gives an error code, never a crash or a hang") {
    using rd::QueueWord;
    using rd::SlotState;
    using rd::SlotWord;
    struct Case {
        const char *what;
        bool conc;                                     // resource "r" also has a concurrency limit
        std::function<void(Mapped &, uint32_t r)> damage;
        int expect;                                    // exact code, or 1: any negative code
    };
    auto set_limit = [](auto field) {
        return [field](Mapped &m, uint32_t) {
            rd::LimitConfig &lc = m.active_config("r").limits[0];
            field(lc);
        };
    };
    const uint32_t n = kSmall.queue_slots;
    const Case cases[] = {
        {"queue: tail - head > queue_slots",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).queue.store(QueueWord{0, 100}.pack()); },
         RQ_ECORRUPT},
        {"queue: tail behind head",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).queue.store(QueueWord{5, 2}.pack()); },
         RQ_ECORRUPT},
        {"queue: head == tail but the ring names other tickets",
         true, [n](Mapped &m, uint32_t r) { m.view.resource(r).queue.store(QueueWord{n + 5, n + 5}.pack()); },
         RQ_ECORRUPT},
        {"slot at the tail holds garbage",
         true, [](Mapped &m, uint32_t r) { m.view.slot(r, 0).word.store(0xdeadbeefdeadbeefull); },
         RQ_ECORRUPT},
        {"every slot holds garbage",
         true,
         [n](Mapped &m, uint32_t r) {
             for (uint32_t i = 0; i < n; ++i) m.view.slot(r, i).word.store(0x0123456789abcdefull * (i + 1));
         },
         1},
        {"phantom waiters: tail moved past unclaimed slots (see the phantom cases below)",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).queue.store(QueueWord{0, 3}.pack()); },
         1},
        {"phantom head right ahead of the caller",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).queue.store(QueueWord{0, 1}.pack()); },
         RQ_ECORRUPT},
        // (Ring damage with an empty line: the cases above that expect
        // RQ_ECORRUPT define a concurrency limit too, so the acquire takes
        // the line; on a rate-only resource the line-free path never reads
        // the ring, so damage there cannot touch it.)
        // (Heads owned by free or dead process slots: see their own cases
        // below, which keep the acquirer off those slots.)
        {"head slot claimed by an owner beyond the process table (skipped: the queue heals)",
         false,
         [](Mapped &m, uint32_t r) {
             m.view.slot(r, 0).word.store(SlotWord{0, SlotState::kWaiting, 0xffffff}.pack());
             m.view.resource(r).queue.store(QueueWord{0, 1}.pack());
         },
         RQ_OK},
        {"resource state out of range",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).state.store(9); }, RQ_ECORRUPT},
        {"config word points at the empty buffer",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).config_word.fetch_xor(1); }, RQ_ECORRUPT},
        {"config count 0",
         false, [](Mapped &m, uint32_t) { m.active_config("r").count.store(0); }, RQ_ECORRUPT},
        {"config count 9",
         false, [](Mapped &m, uint32_t) { m.active_config("r").count.store(9); }, RQ_ECORRUPT},
        {"config count huge",
         false, [](Mapped &m, uint32_t) { m.active_config("r").count.store(UINT32_MAX); }, RQ_ECORRUPT},
        {"limit kind", false, set_limit([](rd::LimitConfig &l) { l.kind.store(9); }), RQ_ECORRUPT},
        {"limit cost", false, set_limit([](rd::LimitConfig &l) { l.cost.store(7); }), RQ_ECORRUPT},
        {"limit amount 0", false, set_limit([](rd::LimitConfig &l) { l.amount.store(0); }), RQ_ECORRUPT},
        {"limit amount huge", false, set_limit([](rd::LimitConfig &l) { l.amount.store(UINT64_MAX); }), RQ_ECORRUPT},
        {"limit period 0", false, set_limit([](rd::LimitConfig &l) { l.period_ns.store(0); }), RQ_ECORRUPT},
        {"limit period huge", false, set_limit([](rd::LimitConfig &l) { l.period_ns.store(UINT64_MAX); }), RQ_ECORRUPT},
        {"limit burst 0", false, set_limit([](rd::LimitConfig &l) { l.burst.store(0); }), RQ_ECORRUPT},
        {"limit burst_ns above 2^62",
         false, set_limit([](rd::LimitConfig &l) { l.burst_ns.store(rd::kMaxBurstNs + 1); }), RQ_ECORRUPT},
        {"limit request_ns 0", false, set_limit([](rd::LimitConfig &l) { l.request_ns.store(0); }), RQ_ECORRUPT},
        {"limit request_ns off by one",
         false, set_limit([](rd::LimitConfig &l) { l.request_ns.store(l.request_ns.load() - 1); }), RQ_ECORRUPT},
        {"limit unit_ns wrong", false, set_limit([](rd::LimitConfig &l) { l.unit_ns.store(7); }), RQ_ECORRUPT},
        {"limit burst_ns one above floor(burst * period / amount)",
         false, set_limit([](rd::LimitConfig &l) { l.burst_ns.store(l.burst_ns.load() + 1); }), RQ_ECORRUPT},
        {"limit burst_ns one below",
         false, set_limit([](rd::LimitConfig &l) { l.burst_ns.store(l.burst_ns.load() - 1); }), RQ_ECORRUPT},
        {"limit burst_ns 0", false, set_limit([](rd::LimitConfig &l) { l.burst_ns.store(0); }), RQ_ECORRUPT},
        {"limit burst raised without burst_ns",
         false, set_limit([](rd::LimitConfig &l) { l.burst.store(l.burst.load() + 1); }), RQ_ECORRUPT},
        {"limit burst doubled with burst_ns unchanged",
         false, set_limit([](rd::LimitConfig &l) { l.burst.store(l.burst.load() * 2); }), RQ_ECORRUPT},
        {"TAT at INT64_MAX (never ready)",
         false, [](Mapped &m, uint32_t r) { m.view.resource(r).tat[0].store(INT64_MAX); }, RQ_ETIMEDOUT},
        {"concurrency in use at UINT64_MAX",
         true, [](Mapped &m, uint32_t r) { m.view.resource(r).in_use_req.store(UINT64_MAX); }, 1},
        {"concurrency limit kind flipped to rate with zero period",
         true,
         [](Mapped &m, uint32_t) { m.active_config("r").limits[1].kind.store(RQ_LIMIT_RATE); },
         RQ_ECORRUPT},
        {"define journal names a resource beyond the table",
         false,
         [](Mapped &m, uint32_t) {
             m.header().define_journal_resource.store(UINT32_MAX);
             m.header().define_journal_valid.store(1);
         },
         RQ_OK},
    };
    for (const Case &k : cases) {
        INFO("case: " << std::string(k.what));
        Segment seg;
        rq_limit limits[] = {rate(10, kSec), conc(1)};
        make_good(seg.name, &kSmall, "r", limits, k.conc ? 2 : 1);
        {
            Mapped m(seg.name);
            k.damage(m, m.index("r"));
        }
        Outcome o = acquire_in_child(seg.name, "r");
        CHECK_MESSAGE(o.exited(), "child died by signal " << o.signal << std::string(o.signal == SIGALRM ? " (hung)" : ""));
        if (!o.exited()) continue;
        INFO("got " << std::string(rq_errname(o.rc)));
        if (k.expect == 1) {
            CHECK(o.rc < 0);
        } else {
            CHECK(o.rc == k.expect);
        }
        CHECK(o.rc >= RQ_EINTERNAL);                   // a real RQ_* code
        CHECK(o.elapsed_ns < kTimeout + 2 * int64_t{kSec});  // bounded by the timeout
        // A try-acquire answers at once, whatever the damage.
        Outcome t = acquire_in_child(seg.name, "r", 0);
        CHECK(t.exited());
        CHECK(t.rc >= RQ_EINTERNAL);
        CHECK(t.rc <= 0);
        // Defining another resource still works or fails cleanly.
        Outcome d = isolated([&] {
            rq_client *c = nullptr;
            int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
            if (rc != RQ_OK) return rc;
            rq_limit l = rate(1, kSec);
            rc = rq_define(c, "other", &l, 1, 0);
            rq_close(c);
            return rc;
        });
        CHECK(d.exited());
        CHECK(d.rc >= RQ_EINTERNAL);
        CHECK(d.rc <= 0);
    }
}

TEST_CASE("header capacities changed to values of the same page-aligned size never crash") {
    // 8 resources x 8 slots and x 16 (or x 2, x 4) slots round to the same segment
    // size, so open cannot tell (there is no header checksum). The geometry is
    // still derived from the header and checked against the file size, so the
    // damage stays inside the rings: an error code, or even a grant, but never
    // an out-of-bounds access.
    for (uint32_t slots : {2u, 4u, 16u}) {
        CAPTURE(slots);
        Segment seg;
        make_good(seg.name);
        REQUIRE(rd::geometry(8, slots, 8).total_size == rd::geometry(8, 8, 8).total_size);
        poke(seg.name, offsetof(rd::Header, queue_slots), slots);
        Outcome o = acquire_in_child(seg.name, "r");
        REQUIRE(o.exited());
        INFO("got " << std::string(rq_errname(o.rc)));
        CHECK(o.rc <= 0);
        CHECK(o.rc >= RQ_EINTERNAL);
    }
}

// read_limits()'s sane() checks burst_ns == floor(burst * period / amount):
// a damaged bucket depth is not used as is (with burst 1 and burst_ns
// scribbled to 2^62, a rate of 10/s would admit thousands at once).
TEST_CASE("a bucket depth that disagrees with burst is RQ_ECORRUPT, not over-admission") {
    for (uint64_t bad_ns : {rd::kMaxBurstNs, uint64_t{100'000'001}, uint64_t{99'999'999}, uint64_t{200'000'000}}) {
        CAPTURE(bad_ns);
        Segment seg;
        rq_limit l = rate(10, kSec, 1);  // burst_ns = 100,000,000
        make_good(seg.name, &kSmall, "r", &l, 1);
        {
            Mapped m(seg.name);
            REQUIRE(m.active_config("r").limits[0].burst_ns.load() == 100'000'000);
            m.active_config("r").limits[0].burst_ns.store(bad_ns);
        }
        Outcome o = isolated([&] {
            rq_client *c = nullptr;
            int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
            if (rc != RQ_OK) return rc;
            int admitted = 0;
            for (int i = 0; i < 1000; ++i) {
                rq_permit p;
                rc = rq_acquire(c, "r", 1, 0, &p);
                if (rc != RQ_OK) break;
                ++admitted;
            }
            rq_close(c);
            if (admitted > 1) return -50;  // over-admitted: burst is 1
            return rc;
        });
        REQUIRE(o.exited());
        INFO("child returned " << o.rc << " (-50: more than burst 1 admitted at once)");
        CHECK(o.rc == RQ_ECORRUPT);
        // rq_describe reads the same limits: refused too.
        Outcome d = isolated([&] {
            rq_client *c = nullptr;
            int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
            if (rc != RQ_OK) return rc;
            rq_limit got[RQ_MAX_LIMITS];
            size_t n = 0;
            rc = rq_describe(c, "r", got, RQ_MAX_LIMITS, &n);
            rq_close(c);
            return rc;
        });
        REQUIRE(d.exited());
        CHECK(d.rc == RQ_ECORRUPT);
    }
}

// Phantom tickets: a tail moved past slots that name no ticket. Below the tail
// every ticket was claimed, so a head whose slot names another ticket can only
// come from a damaged segment: the watcher reports RQ_ECORRUPT (after kWatchNs)
// instead of waiting for a head nobody will ever pass, bounded or not. A head
// ticket owned by a process slot no live process holds (free, or registered
// but dead) is abandoned and skipped: the queue heals.
namespace {

// In a child bounded by 2 s: open, acquire "r" with `timeout` (-1: unbounded),
// release, close. The code, how long it took, or the signal it died of.
Outcome acquire_r_in_child(const std::string &seg, int64_t timeout) {
    return isolated(
        [&] {
            rq_client *c = nullptr;
            int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
            if (rc != RQ_OK) return rc;
            rq_permit p;
            rc = rq_acquire(c, "r", 1, timeout, &p);
            if (rc == RQ_OK) rc = rq_release(c, &p);
            rq_close(c);
            return rc;
        },
        2);
}

// Tickets [0, tail) of "r" made phantoms (the ring untouched: their slots name
// older tickets), and the outcome of an acquire behind them.
Outcome behind_phantoms(uint32_t tail, int64_t timeout) {
    Segment seg;
    make_good(seg.name);
    {
        Mapped m(seg.name);
        m.view.resource(m.index("r")).queue.store(rd::QueueWord{0, tail}.pack());
    }
    return acquire_r_in_child(seg.name, timeout);
}

// Tickets [0, n) of "r" are claimed (kWaiting) by process slots no live
// process holds: (acquirer's slot + 3 + i) % 8, kFree, or kLive with nobody
// holding its liveness lock when `registered`. The acquirer registers first
// (so it never takes one of those slots), then the damage is done, then it
// acquires behind them with `timeout`.
struct OrphanRun {
    Outcome out;
    int acquirer = -1;
};
OrphanRun behind_orphans(const std::string &seg, uint32_t n, bool registered, int64_t timeout) {
    struct Shared {
        std::atomic<int> slot{-1}, go{0}, rc{1};
        std::atomic<int64_t> elapsed{0};
    };
    auto *sh = shared_block<Shared>();
    pid_t kid = spawn(
        [&] {
            rq_client *c = nullptr;
            if (rq_open_ex(seg.c_str(), &kSmall, &c) != RQ_OK) return 10;
            const std::vector<uint32_t> mine = locked_slots(seg, kSmall.max_processes);
            if (mine.size() != 1) return 11;
            sh->slot.store(static_cast<int>(mine[0]));
            const int64_t until = now_ns() + 2 * int64_t{kSec};
            while (sh->go.load() == 0 && now_ns() < until) sleep_ms(1);
            const int64_t t0 = now_ns();
            rq_permit p;
            int rc = rq_acquire(c, "r", 1, timeout, &p);
            sh->elapsed.store(now_ns() - t0);
            if (rc == RQ_OK) rc = rq_release(c, &p);
            sh->rc.store(rc);
            rq_close(c);
            return 0;
        },
        3);
    OrphanRun run;
    REQUIRE(eventually([&] { return sh->slot.load() >= 0; }, 3000));
    run.acquirer = sh->slot.load();
    {
        Mapped m(seg);
        const uint32_t r = m.index("r");
        for (uint32_t i = 0; i < n; ++i) {
            const uint32_t owner = (static_cast<uint32_t>(run.acquirer) + 3 + i) % kSmall.max_processes;
            REQUIRE(rd::ProcWord::unpack(m.view.process(owner).word.load()).state == rd::ProcState::kFree);
            if (registered) m.view.process(owner).word.store(rd::ProcWord{7, rd::ProcState::kLive, 0}.pack());
            m.view.slot(r, i).word.store(rd::SlotWord{i, rd::SlotState::kWaiting, owner}.pack());
        }
        m.view.resource(r).queue.store(rd::QueueWord{0, n}.pack());
    }
    const int64_t t0 = now_ns();
    sh->go.store(1);
    const int st = reap(kid, 6000);
    run.out.elapsed_ns = sh->rc.load() == 1 ? now_ns() - t0 : sh->elapsed.load();
    if (st >= 0) {
        run.out.rc = st == 0 ? sh->rc.load() : -100 - st;  // -110, -111: the child could not set up
    } else {
        run.out.signal = st == -1000 ? SIGKILL : -st;
    }
    munmap(sh, sizeof(Shared));
    return run;
}

}  // namespace

TEST_CASE("acquires right behind phantom tickets return RQ_ECORRUPT instead of hanging, bounded or not") {
    // The caller's ticket is within kWatchDistance of the phantom head, so it
    // watches the head and finds the damage.
    for (uint32_t tail : {1u, 2u}) {
        for (int64_t timeout : {kTimeout, int64_t{-1}, 5 * int64_t{kSec}}) {
            CAPTURE(tail);
            CAPTURE(timeout);
            Outcome o = behind_phantoms(tail, timeout);
            CHECK_MESSAGE(o.exited(),
                          "killed by signal " << o.signal << std::string(o.signal == SIGALRM ? " (hung)" : ""));
            if (!o.exited()) continue;
            INFO("got " << std::string(rq_errname(o.rc)) << " after " << o.elapsed_ns / 1000 << " us");
            CHECK(o.rc == RQ_ECORRUPT);
            CHECK(o.elapsed_ns < 2 * int64_t{kSec});  // found by the watcher, not by the timeout
        }
    }
    // The damage is reported, not "repaired": the next caller is told too.
    Segment seg;
    make_good(seg.name);
    {
        Mapped m(seg.name);
        m.view.resource(m.index("r")).queue.store(rd::QueueWord{0, 1}.pack());
    }
    for (int i = 0; i < 2; ++i) {
        Outcome o = acquire_r_in_child(seg.name, -1);
        CHECK(o.exited());
        CHECK(o.rc == RQ_ECORRUPT);
    }
    // A ring full of phantoms leaves no ticket to take: refused at once.
    Outcome full = behind_phantoms(kSmall.queue_slots, -1);
    CHECK(full.exited());
    CHECK(full.rc == RQ_ENOSPC);
    CHECK(full.elapsed_ns < 2 * int64_t{kSec});
}

// Phantom or orphaned tickets more than kWatchDistance (2) ahead of the caller
// must not stall it either. Phantoms count as one owner, so the caller is a
// watcher and reports the damage within the watch interval. Three orphans of
// three different dead owners are three processes dying at once: more than
// the watchers cover, so the one-second backstop of every waiter finds them.
TEST_CASE("acquires further behind phantom or orphaned tickets do not hang either") {
    for (uint32_t tail : {3u, 7u}) {
        for (int64_t timeout : {kTimeout, int64_t{-1}}) {
            CAPTURE(tail);
            CAPTURE(timeout);
            Outcome o = behind_phantoms(tail, timeout);
            CHECK_MESSAGE(o.exited(),
                          "killed by signal " << o.signal << std::string(o.signal == SIGALRM ? " (hung)" : ""));
            if (!o.exited()) continue;
            INFO("got " << std::string(rq_errname(o.rc)) << " after " << o.elapsed_ns / 1000 << " us");
            CHECK(o.rc == RQ_ECORRUPT);
        }
    }
    for (bool registered : {false, true}) {
        for (int64_t timeout : {int64_t{2'500'000'000}, int64_t{-1}}) {
            CAPTURE(registered);
            CAPTURE(timeout);
            Segment seg;
            make_good(seg.name);
            OrphanRun run = behind_orphans(seg.name, 3, registered, timeout);
            CHECK_MESSAGE(run.out.exited(), "killed by signal " << run.out.signal
                                                                << std::string(run.out.signal == SIGALRM ? " (hung)" : ""));
            if (!run.out.exited()) continue;
            INFO("got " << std::string(rq_errname(run.out.rc)) << " after " << run.out.elapsed_ns / 1000 << " us");
            CHECK(run.out.rc == RQ_OK);
        }
    }
}

TEST_CASE("head tickets owned by free or dead process slots are skipped, bounded or not") {
    using rd::ProcState;
    using rd::ProcWord;
    using rd::QueueWord;
    for (bool registered : {false, true}) {
        for (uint32_t n : {1u, 2u}) {  // orphans ahead: within watch distance
            for (int64_t timeout : {kTimeout, int64_t{-1}}) {
                INFO("owner slots " << (registered ? "registered but dead" : "free") << ", " << n
                                    << " orphaned tickets ahead, timeout " << timeout);
                Segment seg;
                make_good(seg.name);
                OrphanRun run = behind_orphans(seg.name, n, registered, timeout);
                CHECK_MESSAGE(run.out.exited(), "killed by signal " << run.out.signal
                                                                    << std::string(run.out.signal == SIGALRM ? " (hung)" : ""));
                if (!run.out.exited()) continue;
                INFO("got " << std::string(rq_errname(run.out.rc)) << " after " << run.out.elapsed_ns / 1000 << " us");
                CHECK(run.out.rc == RQ_OK);
                CHECK(run.out.elapsed_ns < 2 * int64_t{kSec});
                // The queue healed: empty again, every orphan's owner slot free
                // (dead ones reclaimed), and the next caller gets through at once.
                {
                    Mapped m(seg.name);
                    QueueWord q = QueueWord::unpack(m.view.resource(m.index("r")).queue.load());
                    CHECK(q.head == q.tail);
                    CHECK(q.tail == n + 1);
                    for (uint32_t i = 0; i < n; ++i) {
                        const uint32_t owner = (static_cast<uint32_t>(run.acquirer) + 3 + i) % kSmall.max_processes;
                        CHECK(ProcWord::unpack(m.view.process(owner).word.load()).state == ProcState::kFree);
                    }
                }
                Outcome next = acquire_r_in_child(seg.name, 0);
                CHECK(next.exited());
                CHECK(next.rc == RQ_OK);
            }
        }
    }
}

// Liveness is the OFD write lock on byte kProcLockBase + p of the segment
// file itself: it follows the segment's inode, so no file next to it (a stray
// NAME.lock from an older version, a tmp cleaner deleting or renaming things)
// can make a live holder look dead and its permits be reclaimed.
TEST_CASE("deleting, renaming or creating files next to the segment does not make live holders look dead") {
    Segment seg;
    rq_limit one = conc(1);
    make_good(seg.name, &kSmall, "c", &one, 1);
    REQUIRE(shm_entries(seg.name) == std::set<std::string>{seg.name});
    rq_client *holder = nullptr;
    REQUIRE(rq_open_ex(seg.c_str(), &kSmall, &holder) == RQ_OK);
    rq_permit held;
    REQUIRE(rq_acquire(holder, "c", 1, 0, &held) == RQ_OK);

    // The holder's process slot: the one liveness lock held on the segment file.
    const std::vector<uint32_t> locked = locked_slots(seg.name, kSmall.max_processes);
    REQUIRE(locked.size() == 1);
    const uint32_t p = locked[0];
    REQUIRE(p < kSmall.max_processes);
    {
        Mapped m(seg.name);
        CHECK(rd::ProcWord::unpack(m.view.process(p).word.load()).state == rd::ProcState::kLive);
        CHECK(m.view.holding(p, m.index("c")).req.load() == 1);  // the permit is booked to it
    }

    const std::string lock = path_of(seg.name) + ".lock", old = path_of(seg.name) + ".lock.old";
    auto touch = [](const std::string &path) {
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        ::close(fd);
    };
    // Each disturbance, then another process wants the only permit: the holder
    // is alive, so a bounded acquire must time out (not reclaim it).
    const std::vector<std::pair<const char *, std::function<void()>>> steps = {
        {"a stray NAME.lock created", [&] { touch(lock); }},
        {"NAME.lock renamed away", [&] { REQUIRE(::rename(lock.c_str(), old.c_str()) == 0); }},
        {"a fresh NAME.lock created", [&] { touch(lock); }},
        {"both deleted", [&] {
             REQUIRE(::unlink(lock.c_str()) == 0);
             REQUIRE(::unlink(old.c_str()) == 0);
         }},
        {"a FIFO at NAME.lock", [&] { REQUIRE(::mkfifo(lock.c_str(), 0600) == 0); }},
    };
    for (const auto &[what, disturb] : steps) {
        INFO("after: " << std::string(what));
        disturb();
        Outcome o = acquire_in_child(seg.name, "c");
        CHECK(o.exited());
        INFO("second holder of a concurrency-1 limit got " << std::string(rq_errname(o.rc)));
        CHECK(o.rc == RQ_ETIMEDOUT);
        // A third process, not a client, sees the holder alive through its own
        // open file description of the segment file.
        Outcome seen = isolated([&] {
            std::vector<uint32_t> now = locked_slots(seg.name, kSmall.max_processes);
            return now == std::vector<uint32_t>{p} ? 0 : -60;
        });
        CHECK(seen.exited());
        CHECK(seen.rc == 0);
    }
    ::unlink(lock.c_str());
    {
        Mapped m(seg.name);
        CHECK(rd::ProcWord::unpack(m.view.process(p).word.load()).state == rd::ProcState::kLive);
        CHECK(m.view.holding(p, m.index("c")).req.load() == 1);  // not reclaimed
    }
    CHECK(rq_release(holder, &held) == RQ_OK);
    Outcome after = acquire_in_child(seg.name, "c");
    CHECK(after.exited());
    CHECK(after.rc == RQ_OK);
    rq_close(holder);
    CHECK(locked_slots(seg.name, kSmall.max_processes).empty());  // closing dropped the lock
    CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});
}

TEST_CASE("a corrupt process table is RQ_ECORRUPT on open") {
    Segment seg;
    make_good(seg.name);
    {
        Mapped m(seg.name);
        for (uint32_t p = 0; p < m.view.geo.max_processes; ++p) m.view.process(p).word.store(0x77);
    }
    Outcome o = isolated([&] { return open_rc(seg.name, &kSmall); });
    REQUIRE(o.exited());
    CHECK(o.rc == RQ_ECORRUPT);
}

TEST_CASE("fuzz: random damage anywhere after the header never crashes or hangs") {
    // RQ_FUZZ_SEED / RQ_FUZZ_ROUNDS widen the search outside the suite.
    const char *seed_env = std::getenv("RQ_FUZZ_SEED");
    const char *rounds_env = std::getenv("RQ_FUZZ_ROUNDS");
    std::mt19937_64 rng(seed_env != nullptr ? std::strtoull(seed_env, nullptr, 0) : 777);
    int crashed = 0, hung = 0, ok_runs = 0, bad_codes = 0;
    const int kRounds = rounds_env != nullptr ? std::atoi(rounds_env) : 24;
    for (int round = 0; round < kRounds; ++round) {
        CAPTURE(round);
        Segment seg;
        rq_limit limits[] = {rate(100, kSec, 5, RQ_COST_LOAD), conc(2)};
        make_good(seg.name, &kSmall, "r", limits, 2);
        {
            // Leave a holder and a waiter behind, as a live system would.
            rq_client *c = nullptr;
            REQUIRE(rq_open_ex(seg.c_str(), &kSmall, &c) == RQ_OK);
            rq_permit p;
            REQUIRE(rq_acquire(c, "r", 1, 0, &p) == RQ_OK);
            rq_close(c);
        }
        {
            Mapped m(seg.name);
            const uint64_t lo = rd::kHeaderSize, hi = m.size / 8;
            const int words = 1 + static_cast<int>(rng() % 64);
            const uint64_t res_lo = m.view.geo.resource_table_off / 8 + m.index("r") * (sizeof(rd::Resource) / 8);
            for (int i = 0; i < words; ++i) {
                uint64_t at;
                switch (rng() % 5) {
                    case 0: at = res_lo + rng() % (sizeof(rd::Resource) / 8); break;   // our resource
                    case 1: at = m.view.geo.rings_off / 8 + rng() % (m.view.geo.queue_slots * 8); break;
                    case 2:                                                            // process table
                        at = m.view.geo.proc_table_off / 8 + rng() % (m.view.geo.max_processes * 8);
                        break;
                    case 3: at = 120 / 8 + rng() % 10; break;  // header: define lock, journal, counters
                    default: at = lo / 8 + rng() % (hi - lo / 8); break;               // anywhere
                }
                uint64_t v;
                switch (rng() % 4) {
                    case 0: v = rng(); break;
                    case 1: v = rng() % 16; break;
                    case 2: v = UINT64_MAX - rng() % 4; break;
                    default: v = reinterpret_cast<uint64_t *>(m.base)[at] ^ (uint64_t{1} << (rng() % 64)); break;
                }
                reinterpret_cast<uint64_t *>(m.base)[at] = v;
            }
        }
        Outcome o = isolated(
            [&] {
                rq_client *c = nullptr;
                int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
                if (rc != RQ_OK) return rc < RQ_EINTERNAL ? -99 : 0;
                int worst = 0;
                auto note = [&](int code) {
                    if (code > 0 || code < RQ_EINTERNAL) worst = -99;
                };
                rq_permit p;
                for (int i = 0; i < 3; ++i) {
                    int a = rq_acquire(c, "r", 1 + static_cast<uint64_t>(i), 50'000'000, &p);
                    note(a);
                    if (a == RQ_OK) note(rq_release(c, &p));
                }
                note(rq_acquire(c, "r", 1, 0, &p));
                rq_limit l = rate(3, kSec);
                note(rq_define(c, "other", &l, 1, 0));
                note(rq_acquire(c, "other", 1, 50'000'000, &p));
                rq_limit got[RQ_MAX_LIMITS];
                size_t cnt = 0;
                note(rq_describe(c, "r", got, RQ_MAX_LIMITS, &cnt));
                rq_close(c);
                return worst;
            },
            5);
        if (!o.exited()) {
            if (o.signal == SIGALRM || o.signal == SIGKILL) ++hung;
            else ++crashed;
            MESSAGE("round " << round << ": child killed by signal " << o.signal);
        } else if (o.rc != 0) {
            ++bad_codes;
        } else {
            ++ok_runs;
        }
    }
    CHECK(crashed == 0);
    CHECK(hung == 0);
    CHECK(bad_codes == 0);
    MESSAGE(ok_runs << " of " << kRounds << " damaged segments handled with clean codes");
}

// ---- Race-free creation ---------------------------------------------------------------

TEST_CASE("16 processes creating the same segment at once all succeed on one segment") {
    Segment seg;
    constexpr int kKids = 16;
    auto *line = shared_block<StartLine>();
    std::vector<pid_t> kids;
    for (int i = 0; i < kKids; ++i) {
        kids.push_back(spawn(
            [&, i] {
                line->arrive_and_wait(kKids, 10000);
                rq_client *c = nullptr;
                int rc = rq_open(seg.c_str(), &c);
                if (rc != RQ_OK) return 10 - rc;
                rq_limit l[] = {rate(100, kSec), conc(4)};
                rc = rq_define(c, "shared", l, 2, 0);
                if (rc != RQ_OK) {
                    rq_close(c);
                    return 30 - rc;
                }
                std::string mine = "kid-" + std::to_string(i);
                rc = rq_define(c, mine.c_str(), l, 1, 0);
                rq_close(c);
                return rc == RQ_OK ? 0 : 50 - rc;
            },
            30));
    }
    for (pid_t k : kids) CHECK(reap(k, 30000) == 0);
    CHECK(shm_entries(seg.name) == std::set<std::string>{seg.name});  // no temporaries, no lock file
    CHECK(shm_entries(seg.name + ".init-").empty());
    CHECK(mode_of(path_of(seg.name)) == 0600);
    // They all used the same segment: every child's own resource is in it.
    rq_client *c = nullptr;
    REQUIRE(rq_open(seg.c_str(), &c) == RQ_OK);
    rq_limit got[RQ_MAX_LIMITS];
    size_t cnt = 0;
    CHECK(rq_describe(c, "shared", got, RQ_MAX_LIMITS, &cnt) == RQ_OK);
    CHECK(cnt == 2);
    for (int i = 0; i < kKids; ++i) {
        std::string mine = "kid-" + std::to_string(i);
        CHECK_MESSAGE(rq_describe(c, mine.c_str(), got, RQ_MAX_LIMITS, &cnt) == RQ_OK, mine);
    }
    rq_close(c);
}

// Issue 16, defect 5: a damaged lock word must not hang calls. One that names
// the caller's own process slot (outside a registration) or a live process
// that never lets go: a try-acquire returns at once, a timed acquire by its
// deadline, and calls without a deadline (define, release) fail with
// RQ_ECORRUPT after kLockDamageNs (2 s) instead of waiting forever.
TEST_CASE("a lock word that names the caller or a live process that never lets go bounds every call") {
    for (const bool self : {true, false}) {
        CAPTURE(self);
        Segment seg;
        rq_limit limits[] = {conc(2)};
        make_good(seg.name, &kSmall, "r", limits, 1);
        auto *stuck = shared_block<std::atomic<int>>();
        // The live process the word names, when not the caller itself.
        pid_t other = self ? 0 : spawn([&]() -> int {
            rq_client *c = nullptr;
            if (rq_open_ex(seg.c_str(), &kSmall, &c) != RQ_OK) return 10;
            stuck->store(1);
            for (;;) pause();
        });
        if (!self) REQUIRE(eventually([&] { return stuck->load() == 1; }));
        struct Times {
            int try_rc, timed_rc, define_rc;
            int64_t try_ns, timed_ns, define_ns;
        };
        auto *t = shared_block<Times>();
        Outcome o = isolated(
            [&] {
                rq_client *c = nullptr;
                int rc = rq_open_ex(seg.c_str(), &kSmall, &c);
                if (rc != RQ_OK) return rc;
                {
                    // Point the resource lock and the define lock at the victim.
                    Mapped m(seg.name);
                    uint32_t owner = UINT32_MAX;
                    const pid_t want = self ? getpid() : other;
                    for (uint32_t p = 0; p < m.view.geo.max_processes; ++p) {
                        if (m.view.process(p).pid.load() == static_cast<uint32_t>(want) &&
                            rd::ProcWord::unpack(m.view.process(p).word.load()).state == rd::ProcState::kLive) {
                            owner = p;
                        }
                    }
                    if (owner == UINT32_MAX) return -90;
                    m.view.resource(m.index("r")).lock.store(owner + 1);
                    m.header().define_lock.store(owner + 1);
                }
                rq_permit p;
                int64_t t0 = now_ns();
                t->try_rc = rq_acquire(c, "r", 1, 0, &p);
                t->try_ns = now_ns() - t0;
                t0 = now_ns();
                t->timed_rc = rq_acquire(c, "r", 1, 300'000'000, &p);
                t->timed_ns = now_ns() - t0;
                rq_limit l = rate(3, kSec);
                t0 = now_ns();
                t->define_rc = rq_define(c, "new", &l, 1, 0);
                t->define_ns = now_ns() - t0;
                return 0;  // (no rq_close: its reclaim would wait on the damaged word too)
            },
            10);
        if (other != 0) {
            kill(other, SIGKILL);
            reap(other);
        }
        CHECK_MESSAGE(o.exited(), "killed by signal " << o.signal << std::string(o.signal == SIGALRM ? " (hung)" : ""));
        CHECK(o.rc == 0);
        if (!o.exited() || o.rc != 0) continue;
        MESSAGE("try " << std::string(rq_errname(t->try_rc)) << " after " << t->try_ns / 1000 << " us, timed "
                       << std::string(rq_errname(t->timed_rc)) << " after " << t->timed_ns / 1000 << " us, define "
                       << std::string(rq_errname(t->define_rc)) << " after " << t->define_ns / 1000 << " us");
        CHECK((t->try_rc == RQ_EAGAIN || t->try_rc == RQ_ECORRUPT));
        CHECK(t->try_ns < 100'000'000);
        CHECK((t->timed_rc == RQ_ETIMEDOUT || t->timed_rc == RQ_ECORRUPT));
        CHECK(t->timed_ns < 1'000'000'000);
        CHECK(t->define_rc == RQ_ECORRUPT);
        CHECK(t->define_ns < 4'000'000'000);
    }
}
