// A read-only view of a live segment, for rqctl and tests.
//
// The inspector maps the segment PROT_READ from an O_RDONLY descriptor: it
// never registers, takes no lock and writes nothing, so it cannot block or
// slow the workers. Every value is read from hostile memory and checked as the
// engine checks it. Each resource is read as a consistent snapshot: limits
// through the config seqlock; the queue and the holders retried until the
// queue word and the in-use counters read the same before and after.
#pragma once

#include "core.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace rq::detail {

// What is known about the segment file, also when it cannot be read (for
// error messages that say what to do).
struct SegmentFile {
    std::string name;
    std::string path;           // /dev/shm/NAME
    bool exists = false;
    uint32_t uid = 0, gid = 0, mode = 0;
    uint64_t size = 0;
    uint32_t layout_major = 0;  // as found in the header, when readable
    uint32_t layout_minor = 0;
    std::string problem;        // why it is RQ_ECORRUPT / RQ_EINCOMPAT / RQ_EACCES
};

struct ProcessInfo {
    uint32_t slot = 0;
    uint32_t pid = 0;
    uint32_t gen = 0;
    ProcState state = ProcState::kFree;
    bool alive = false;
    int64_t started_realtime_ns = 0;
};

struct HolderInfo {
    uint32_t slot = 0;
    uint32_t pid = 0;       // 0 when the slot names no process (damage)
    bool alive = false;
    uint64_t req = 0, load = 0;
    int64_t held_ns = -1;   // since its count last rose from 0; -1 unknown
};

struct WaiterInfo {
    uint32_t ticket = 0;
    uint32_t slot = 0;
    uint32_t pid = 0;
    bool alive = false;
    const char *state = "";  // "head", "head: tokens", "head: concurrency", "queued"
    uint64_t load = 0;       // 0 unknown (not noted yet)
    int64_t waiting_ns = -1; // -1 unknown
};

struct LimitInfo {
    Limit lim{};
    // Global resources: rate: available is the lease's credit left here and
    // reserved what Redis set aside for us, on its way; concurrency:
    // available is what the leased slots leave.
    uint64_t reserved = 0;
    uint64_t leased_slots = 0;
    // rate: units that fit now (bucket level), and when they do not, the ns
    // until one unit fits; in_debt when the TAT lies beyond the bucket depth
    // (after a redefine to a smaller limit, for example).
    uint64_t available = 0;
    int64_t next_unit_ns = 0;
    bool in_debt = false;
    // concurrency: held now (requests or load, by cost).
    uint64_t in_use = 0;
};

// Many hosts: a global resource's lease on this host (lease.hpp).
struct LeaseInfo {
    bool global = false;
    bool local_share_mode = false;  // defined with RQ_DEFINE_LOCAL_SHARE
    LinkState link = LinkState::kNone;
    uint32_t hosts = 0;             // hosts Redis counted at the last call
    int64_t expires_in_ns = 0;      // <= 0: expired (or never granted)
    uint64_t round_trips = 0, rtt_ns_total = 0, rtt_ns_max = 0, errors = 0, lost = 0, granted = 0;
    int last_error = 0;
    int64_t last_error_realtime_ns = 0;
    std::string last_error_text;    // printable ASCII only
};

struct ResourceInfo {
    uint32_t index = 0;
    std::string name;
    uint64_t config_version = 0;
    std::vector<LimitInfo> limits;
    std::vector<WaiterInfo> waiters;
    std::vector<HolderInfo> holders;
    uint32_t live_holders = 0, dead_holders = 0;
    uint64_t in_use_req = 0, in_use_load = 0;
    uint64_t admitted = 0, admitted_load = 0, timeouts = 0, too_big = 0, reclaims = 0, resets = 0;
    uint64_t wait_ns_total = 0;
    uint64_t penalties = 0, settles = 0, settle_refunded = 0, settle_charged = 0, observes = 0;
    int64_t paused_ns = 0;              // what is left of a penalty pause (rq_penalize)
    uint64_t waits[kWaitBuckets] = {};  // admissions that waited, by log2 microseconds
    uint64_t waited = 0;                // sum of waits[]
    bool consistent = true;             // false: kept changing under us (busy); best effort
    int error = RQ_OK;                  // RQ_ECORRUPT when its limits or queue are damaged
    LeaseInfo lease;
};

struct SegmentInfo {
    SegmentFile file;
    uint32_t layout_major = 0, layout_minor = 0;
    uint64_t total_size = 0;
    uint32_t max_resources = 0, queue_slots = 0, max_processes = 0;
    uint32_t creator_pid = 0;
    int64_t created_realtime_ns = 0;
    bool group_shared = false;
    uint64_t reclaims = 0;
    uint64_t host_id = 0;                // many hosts: this host's name in Redis
    uint32_t refiller_pid = 0;           // 0: no refiller elected
    std::vector<ProcessInfo> processes;  // slots in use (live, dead, or being reclaimed)
    uint32_t live_processes = 0, dead_processes = 0;
    std::vector<ResourceInfo> resources;
    int64_t now_ns = 0;                  // CLOCK_MONOTONIC of the snapshot
};

class Inspector {
public:
    Inspector() = default;
    ~Inspector();
    Inspector(const Inspector &) = delete;
    Inspector &operator=(const Inspector &) = delete;

    // Opens segment `name` read-only. On failure returns RQ_ENOENT,
    // RQ_EACCES, RQ_ECORRUPT, RQ_EINCOMPAT, RQ_EINVAL or RQ_ESYS, and file()
    // says what was found.
    int open(const std::string &name);
    const SegmentFile &file() const { return file_; }

    // The segment, with every resource (or only `only`, when not null:
    // RQ_ENOENT if it is not defined). details: also the queue and holders.
    int snapshot(SegmentInfo &out, const std::string *only, bool details) const;

private:
    int snapshot_mapped(SegmentInfo &out, const std::string *only, bool details) const;
    void read_resource(uint32_t r, bool details, int64_t now, ResourceInfo &out) const;
    bool alive(uint32_t p) const;

    SegmentFile file_;
    int fd_ = -1;
    void *base_ = nullptr;
    std::atomic<uint32_t> shrunk_{0};  // the shrink guard's poison word (shrink_guard.hpp)
    size_t size_ = 0;
    View view_{};
};

// Whether any process holds a liveness lock on segment `name` (one fcntl
// over the whole lock range; needs no readable header, so it works on a
// corrupt segment too). RQ_ENOENT when there is no such segment.
int any_live_attachment(const std::string &name, bool &any);

}  // namespace rq::detail
