// Read-only view of a live segment for tests: queue words, in-use counters,
// holdings. Uses the layout header, as rqctl will.
#pragma once

#include "core.hpp"
#include "layout.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace rqtest {

// Process slots whose liveness lock (an OFD write lock on byte
// kProcLockBase + p of the segment file) someone holds, as any other process
// sees them with F_OFD_GETLK through its own open file description. No
// doctest assertions (safe in children); {UINT32_MAX} when a call fails.
inline std::vector<uint32_t> locked_slots(const std::string &seg, uint32_t max_processes) {
    int fd = ::open(("/dev/shm/" + seg).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return {UINT32_MAX};
    std::vector<uint32_t> out;
    for (uint32_t p = 0; p < max_processes; ++p) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = rq::detail::kProcLockBase + p;
        fl.l_len = 1;
        if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) {
            out = {UINT32_MAX};
            break;
        }
        if (fl.l_type != F_UNLCK) out.push_back(p);
    }
    ::close(fd);
    return out;
}


// The one way tests map a segment: read-only (Peek, as rqctl does) or
// writable (tests that damage a live segment on purpose).
struct Peek {
    enum Access { kReadOnly, kWritable };
    void *base = MAP_FAILED;
    size_t size = 0;
    rq::detail::View view;

    explicit Peek(const std::string &segment, Access access = kReadOnly) {
        const bool rw = access == kWritable;
        int fd = ::open(("/dev/shm/" + segment).c_str(), (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        REQUIRE(fd >= 0);
        struct stat st;
        REQUIRE(fstat(fd, &st) == 0);
        size = static_cast<size_t>(st.st_size);
        base = mmap(nullptr, size, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
        ::close(fd);
        REQUIRE(base != MAP_FAILED);
        auto *h = static_cast<rq::detail::Header *>(base);
        view.attach(static_cast<std::byte *>(base), rq::detail::geometry(h->max_resources, h->queue_slots, h->max_processes));
        REQUIRE(view.geo.total_size == size);
    }
    ~Peek() {
        if (base != MAP_FAILED) munmap(base, size);
    }
    Peek(const Peek &) = delete;
    Peek &operator=(const Peek &) = delete;

    rq::detail::Header &header() const { return view.header(); }
    rq::detail::Resource &resource(const std::string &name) const { return view.resource(index(name)); }
    // The limit config readers use now.
    rq::detail::Config &active_config(const std::string &name) const {
        rq::detail::Resource &res = resource(name);
        return res.config[rq::detail::ConfigWord::unpack(res.config_word.load()).active];
    }

    uint32_t index(const std::string &name) const {
        for (uint32_t r = 0; r < view.geo.max_resources; ++r) {
            auto &res = view.resource(r);
            if (res.state.load() == static_cast<uint32_t>(rq::detail::ResourceState::kReady) &&
                name == res.name) {
                return r;
            }
        }
        FAIL("no resource " << name);
        return 0;
    }
    rq::detail::QueueWord queue(const std::string &name) const {
        return rq::detail::QueueWord::unpack(view.resource(index(name)).queue.load());
    }
    uint32_t queued(const std::string &name) const {
        auto q = queue(name);
        return q.tail - q.head;
    }
    uint64_t in_use_req(const std::string &name) const { return view.resource(index(name)).in_use_req.load(); }
    uint64_t in_use_load(const std::string &name) const { return view.resource(index(name)).in_use_load.load(); }
    uint64_t held_total(const std::string &name) const {
        uint32_t r = index(name);
        uint64_t sum = 0;
        for (uint32_t p = 0; p < view.geo.max_processes; ++p) sum += view.holding(p, r).req.load();
        return sum;
    }
    // Prints the queue, slots, lock and process table (for failing tests).
    std::string dump(const std::string &name, const std::string &segment) const {
        using namespace rq::detail;
        std::string out;
        uint32_t r = index(name);
        auto &res = view.resource(r);
        auto q = QueueWord::unpack(res.queue.load());
        out += "queue head=" + std::to_string(q.head) + " tail=" + std::to_string(q.tail);
        out += " lock=" + std::to_string(res.lock.load()) + " in_use_req=" + std::to_string(res.in_use_req.load()) +
               " in_use_load=" + std::to_string(res.in_use_load.load()) + "\n";
        for (uint32_t t = q.head; t != q.tail + 1 && t - q.head < view.geo.queue_slots; ++t) {
            auto sw = SlotWord::unpack(view.slot(r, t).word.load());
            out += "  t=" + std::to_string(t) + " bits=" + std::to_string(sw.ticket) + " state=" +
                   std::to_string(static_cast<int>(sw.state)) + " owner=" + std::to_string(sw.owner) + "\n";
        }
        const std::vector<uint32_t> locked = locked_slots(segment, view.geo.max_processes);
        for (uint32_t p = 0; p < view.geo.max_processes; ++p) {
            auto w = ProcWord::unpack(view.process(p).word.load());
            if (w.state == ProcState::kFree && view.holding(p, r).req.load() == 0) continue;
            if (w.state == ProcState::kLive && view.holding(p, r).req.load() == 0 && std::getenv("RQ_DUMP_ALL") == nullptr) {
                bool in_queue = false;
                for (uint32_t t = q.head; t != q.tail + 1 && t - q.head < view.geo.queue_slots; ++t) {
                    in_queue |= SlotWord::unpack(view.slot(r, t).word.load()).owner == p;
                }
                if (!in_queue) continue;
            }
            out += "  proc " + std::to_string(p) + " state=" + std::to_string(static_cast<int>(w.state)) +
                   " gen=" + std::to_string(w.gen) + " by=" + std::to_string(w.by) +
                   " pid=" + std::to_string(view.process(p).pid.load()) +
                   " locked=" + std::to_string(std::find(locked.begin(), locked.end(), p) != locked.end()) +
                   " held_req=" + std::to_string(view.holding(p, r).req.load()) + "\n";
        }
        return out;
    }

    uint32_t live_processes() const {
        uint32_t n = 0;
        for (uint32_t p = 0; p < view.geo.max_processes; ++p) {
            auto w = rq::detail::ProcWord::unpack(view.process(p).word.load());
            n += w.state == rq::detail::ProcState::kLive;
        }
        return n;
    }
};

// The set-up most cases share: a fresh segment, a client on it, one
// resource defined with `limits`, and a read-only peek at the segment.
// hold() takes a permit of the resource and keeps it in `held`.
struct Defined {
    Segment seg;
    Client c;
    std::string res;
    int define_rc;
    Peek peek;
    rq_permit held{};
    Defined(std::string resource, std::initializer_list<rq_limit> limits)
        : c(seg.name),
          res(std::move(resource)),
          define_rc(rq_define(c, res.c_str(), limits.begin(), limits.size(), 0)),
          peek(seg.name) {
        REQUIRE_MESSAGE(define_rc == RQ_OK, "rq_define: " << rq_strerror(define_rc));
    }
    void hold(uint64_t load = 1) { REQUIRE(rq_acquire(c, res.c_str(), load, -1, &held) == RQ_OK); }
    // A child that takes one permit at once and holds it until killed;
    // returns once it holds it.
    pid_t spawn_holder() {
        auto *ready = shared_block<std::atomic<int>>();
        pid_t kid = spawn([&]() -> int {
            rq_client *cc = open_or_die(seg);
            rq_permit p;
            if (rq_acquire(cc, res.c_str(), 1, 0, &p) != RQ_OK) return 10;
            ready->store(1);
            for (;;) pause();
        });
        REQUIRE(eventually([&] { return ready->load() == 1; }));
        munmap(ready, sizeof *ready);
        return kid;
    }
    // A child that waits in line without a deadline until killed; returns
    // once its ticket is in line (behind `ahead` others).
    pid_t spawn_sleeper(uint32_t ahead) {
        pid_t kid = spawn([&] {
            rq_client *cc = open_or_die(seg);
            rq_permit p;
            rq_acquire(cc, res.c_str(), 1, -1, &p);
            return 10;  // never admitted: killed while waiting
        });
        REQUIRE(eventually([&] { return peek.queued(res) == ahead + 1; }));
        return kid;
    }
    // A child that waits in line up to 10 s, stores when it was admitted in
    // *admitted_at, releases and exits 0; returns once its ticket is in line.
    pid_t spawn_patient(uint32_t ahead, std::atomic<int64_t> *admitted_at) {
        pid_t kid = spawn([&] {
            rq_client *cc = open_or_die(seg);
            rq_permit p;
            if (rq_acquire(cc, res.c_str(), 1, 10'000'000'000, &p) != RQ_OK) return 11;
            admitted_at->store(now_ns());
            rq_release(cc, &p);
            rq_close(cc);
            return 0;
        });
        REQUIRE(eventually([&] { return peek.queued(res) == ahead + 1; }));
        return kid;
    }
};

// The order in which children were admitted (in shared memory).
struct AdmissionLog {
    std::atomic<int> next{0};
    int order[64];
};

// Forks a child that opens `segment`, acquires `load` of `res` (waiting at
// most 10 s), appends `index` to `log`, holds the permit for `hold_us`,
// releases and exits 0 (10: open failed, 11: acquire failed). Returns once
// the child's ticket is in the queue, so children line up in spawn order.
inline pid_t spawn_in_line(const std::string &segment, const Peek &peek, const std::string &res, int index,
                           uint64_t load, AdmissionLog *log, useconds_t hold_us) {
    const uint32_t before = peek.queued(res);
    pid_t kid = spawn([&] {
        rq_client *c = nullptr;
        if (rq_open(segment.c_str(), &c) != RQ_OK) return 10;
        rq_permit p;
        if (rq_acquire(c, res.c_str(), load, 10'000'000'000, &p) != RQ_OK) return 11;
        log->order[log->next++] = index;
        usleep(hold_us);
        rq_release(c, &p);
        rq_close(c);
        return 0;
    });
    REQUIRE_MESSAGE(eventually([&] { return peek.queued(res) > before; }), "child " << index << " never queued");
    return kid;
}

}  // namespace rqtest
