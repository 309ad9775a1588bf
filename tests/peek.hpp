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

#include <atomic>
#include <string>

#include "helpers.hpp"

namespace rqtest {

struct Peek {
    void *base = MAP_FAILED;
    size_t size = 0;
    rq::detail::View view;

    explicit Peek(const std::string &segment) {
        int fd = ::open(("/dev/shm/" + segment).c_str(), O_RDONLY);
        REQUIRE(fd >= 0);
        struct stat st;
        REQUIRE(fstat(fd, &st) == 0);
        size = static_cast<size_t>(st.st_size);
        base = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
        ::close(fd);
        REQUIRE(base != MAP_FAILED);
        auto *h = static_cast<rq::detail::Header *>(base);
        view.attach(static_cast<std::byte *>(base), rq::detail::geometry(h->max_resources, h->queue_slots, h->max_processes));
    }
    ~Peek() {
        if (base != MAP_FAILED) munmap(base, size);
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
        int fd = ::open(("/dev/shm/" + segment).c_str(), O_RDWR);
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
            struct flock fl {};
            fl.l_type = F_WRLCK;
            fl.l_whence = SEEK_SET;
            fl.l_start = rq::detail::kProcLockBase + p;
            fl.l_len = 1;
            fcntl(fd, F_OFD_GETLK, &fl);
            out += "  proc " + std::to_string(p) + " state=" + std::to_string(static_cast<int>(w.state)) +
                   " gen=" + std::to_string(w.gen) + " by=" + std::to_string(w.by) +
                   " pid=" + std::to_string(view.process(p).pid.load()) +
                   " locked=" + std::to_string(fl.l_type != F_UNLCK) +
                   " held_req=" + std::to_string(view.holding(p, r).req.load()) + "\n";
        }
        ::close(fd);
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
