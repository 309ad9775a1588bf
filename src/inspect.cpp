// The read-only inspector (see inspect.hpp). It reads the segment's words
// with the same memory orders as the engine's readers, and pairs with the
// same writers: each load says which.
#include "inspect.hpp"

#include "lease.hpp"
#include "shrink_guard.hpp"

#include "clock.hpp"
#include "gcra.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rq::detail {
namespace {

// read_resource: reads of a resource's holders and queue that may see them
// change before the snapshot is marked inconsistent (a busy line changes
// every few microseconds; the operator sees the last read either way).
constexpr int kMaxSnapshotReads = 8;

// Every byte outside printable ASCII (and the backslash) as \xNN.
std::string escaped_name(const std::string &raw) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (const char ch : raw) {
        const auto b = static_cast<unsigned char>(ch);
        if (b >= 0x21 && b <= 0x7e && b != '\\') {
            out += ch;
        } else {
            out += "\\x";
            out += kHex[b >> 4];
            out += kHex[b & 15];
        }
    }
    return out;
}

const char *waiter_state(SlotState s) {
    switch (s) {
        case SlotState::kHead: return "head";
        case SlotState::kHeadRateSleep: return "head: tokens";
        case SlotState::kHeadConcSleep: return "head: concurrency";
        default: return "queued";
    }
}

// Rate limit status at `now` from its TAT (any value: this is display only,
// and the arithmetic below cannot overflow whatever the TAT says).
void rate_status(const Limit &l, int64_t tat, int64_t now, LimitInfo &out) {
    const int64_t lag = tat > now ? tat - now : 0;  // ns of the bucket in use
    const auto depth = static_cast<int64_t>(l.burst_ns);
    if (lag == 0) {
        out.available = l.burst;
        return;
    }
    out.in_debt = lag > depth;
    const int64_t free_ns = depth - lag;  // may be negative: debt
    if (free_ns > 0) {
        out.available = static_cast<uint64_t>(static_cast<u128>(free_ns) * l.amount / l.period_ns);
        if (out.available > l.burst) out.available = l.burst;
    }
    if (out.available == 0) out.next_unit_ns = gcra_ready_at(tat, now, l.request_ns, l.burst_ns) - now;
}

// A global resource's lease, for display (relaxed loads: each value on its own).
void read_lease(const Resource &res, const Limits &lim, int64_t now, LeaseInfo &out) {
    const Lease &l = res.lease;
    out.global = true;
    out.local_share_mode = (lim.flags & kFailLocalShare) != 0;
    const uint32_t link = l.link.load(boost::memory_order_relaxed);
    out.link = link <= static_cast<uint32_t>(LinkState::kLocalShare) ? static_cast<LinkState>(link) : LinkState::kNone;
    out.hosts = l.hosts.load(boost::memory_order_relaxed);
    const int64_t exp = l.expires_ns.load(boost::memory_order_relaxed);
    out.expires_in_ns = exp > now ? exp - now : 0;
    out.round_trips = l.round_trips.load(boost::memory_order_relaxed);
    out.rtt_ns_total = l.rtt_ns_total.load(boost::memory_order_relaxed);
    out.rtt_ns_max = l.rtt_ns_max.load(boost::memory_order_relaxed);
    out.errors = l.errors.load(boost::memory_order_relaxed);
    out.lost = l.lost.load(boost::memory_order_relaxed);
    out.granted = l.granted.load(boost::memory_order_relaxed);
    out.last_error = l.last_error.load(boost::memory_order_relaxed);
    out.last_error_realtime_ns = l.last_error_rt.load(boost::memory_order_relaxed);
    // The text may tear or be damaged: printable ASCII up to the first NUL.
    for (char ch : std::string_view(l.last_error_text, strnlen(l.last_error_text, kLeaseErrorText))) {
        out.last_error_text += ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
}

}  // namespace

Inspector::~Inspector() {
    unguard_mapping(base_);
    if (base_ != nullptr) munmap(base_, size_);
    if (fd_ >= 0) ::close(fd_);
}

int Inspector::open(const std::string &name) {
    file_ = SegmentFile{};
    file_.name = name;
    file_.path = kShmDir + name;
    if (!valid_segment_name(name)) {
        file_.problem = "not a valid segment name (1-200 of A-Z a-z 0-9 . _ -, not starting with '.')";
        return RQ_EINVAL;
    }
    struct stat st {};
    if (::lstat(file_.path.c_str(), &st) == 0) {
        file_.exists = true;
        file_.uid = st.st_uid;
        file_.gid = st.st_gid;
        file_.mode = st.st_mode & 07777;
        file_.size = static_cast<uint64_t>(st.st_size);
    }
    // O_NONBLOCK: a FIFO squatting the name must not block us before the
    // S_ISREG check below (it has no effect on a regular file).
    fd_ = ::open(file_.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd_ < 0) {
        if (errno == ENOENT) return RQ_ENOENT;
        if (errno == EACCES || errno == EPERM || errno == ELOOP) {
            file_.problem = errno == ELOOP ? "it is a symbolic link" : "permission denied";
            return RQ_EACCES;
        }
        file_.problem = std::strerror(errno);
        return RQ_ESYS;
    }
    if (fstat(fd_, &st) != 0) return RQ_ESYS;
    file_.uid = st.st_uid;
    file_.gid = st.st_gid;
    file_.mode = st.st_mode & 07777;
    file_.size = static_cast<uint64_t>(st.st_size);
    if (!S_ISREG(st.st_mode)) {
        file_.problem = "not a regular file";
        return RQ_ECORRUPT;
    }
    // The same rules as rq_open: ours (or our group's, when group-shared) and
    // no permission bits beyond 0600 / 0660.
    if (check_owner_and_mode(st, (st.st_mode & 0070) != 0) != RQ_OK) {
        file_.problem = "owned by another user, or its mode is looser than 0600/0660";
        return RQ_EACCES;
    }
    if (file_.size < kHeaderSize) {
        file_.problem = file_.size == 0 ? "it is empty" : "it is shorter than a header (truncated)";
        return RQ_ECORRUPT;
    }
    size_ = static_cast<size_t>(file_.size);
    void *p = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
        file_.problem = std::strerror(errno);
        return RQ_ESYS;
    }
    base_ = p;
    guard_mapping(base_, size_, fd_, PROT_READ, &shrunk_, 1);  // a shrink now: errors, not SIGBUS
    const Header &h = *static_cast<const Header *>(base_);
    if (h.magic == kMagic) {
        file_.layout_major = h.layout_major;
        file_.layout_minor = h.layout_minor;
    }
    Geometry geo{};
    int rc = validate_header(h, file_.size, geo);
    if (rc != RQ_OK) {
        file_.problem = h.magic != kMagic ? "bad magic: not a ratequeue segment"
                        : rc == RQ_EINCOMPAT ? "another layout version"
                                             : "inconsistent header (sizes, offsets or init state)";
        return rc;
    }
    view_.attach(static_cast<std::byte *>(base_), geo);
    return RQ_OK;
}

bool Inspector::alive(uint32_t p) const { return ofd_locked_by_other(fd_, p); }

int Inspector::snapshot(SegmentInfo &out, const std::string *only, bool details) const {
    int rc = snapshot_mapped(out, only, details);
    // acquire: pairs with the shrink guard's release fetch_or.
    if (shrunk_.load(std::memory_order_acquire) != 0) {
        out.file.problem = "the segment file shrank while mapped (truncated under us)";
        rc = RQ_ECORRUPT;
    }
    return rc;
}

int Inspector::snapshot_mapped(SegmentInfo &out, const std::string *only, bool details) const {
    if (base_ == nullptr) return RQ_EINVAL;
    out = SegmentInfo{};
    out.file = file_;
    out.now_ns = now_ns();
    const Header &h = view_.header();
    out.layout_major = h.layout_major;
    out.layout_minor = h.layout_minor;
    out.total_size = view_.geo.total_size;
    out.max_resources = view_.geo.max_resources;
    out.queue_slots = view_.geo.queue_slots;
    out.max_processes = view_.geo.max_processes;
    out.creator_pid = h.creator_pid;
    out.created_realtime_ns = h.created_realtime_ns;
    out.group_shared = (h.flags & RQ_OPEN_GROUP) != 0;
    out.reclaims = h.reclaims.load(boost::memory_order_relaxed);
    out.host_id = h.host_id;
    // acquire: pairs with the election's CAS (refiller.cpp).
    if (h.refiller.load(boost::memory_order_acquire) != 0) out.refiller_pid = h.refiller_pid.load(boost::memory_order_relaxed);
    for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
        const Process &proc = view_.process(p);
        // acquire: pairs with the acq_rel CASes on the process word (process_table.cpp).
        ProcWord w = ProcWord::unpack(proc.word.load(boost::memory_order_acquire));
        if (w.state == ProcState::kFree) continue;
        ProcessInfo pi;
        pi.slot = p;
        pi.pid = proc.pid.load(boost::memory_order_relaxed);
        pi.gen = w.gen;
        pi.state = w.state;
        pi.alive = alive(p);
        pi.started_realtime_ns = proc.started_realtime_ns.load(boost::memory_order_relaxed);
        (pi.alive ? out.live_processes : out.dead_processes)++;
        out.processes.push_back(pi);
    }
    if (only != nullptr) {
        uint32_t r;
        int rc = lookup_in(view_, *only, r);
        if (rc != RQ_OK) return rc;
        out.resources.emplace_back();
        read_resource(r, details, out.now_ns, out.resources.back());
        return RQ_OK;
    }
    for (uint32_t r = 0; r < view_.geo.max_resources; ++r) {
        // acquire: pairs with the definer's release store of kReady.
        if (view_.resource(r).state.load(boost::memory_order_acquire) != static_cast<uint32_t>(ResourceState::kReady)) {
            continue;
        }
        out.resources.emplace_back();
        read_resource(r, details, out.now_ns, out.resources.back());
    }
    return RQ_OK;
}

void Inspector::read_resource(uint32_t r, bool details, int64_t now, ResourceInfo &out) const {
    const Resource &res = view_.resource(r);
    out.index = r;
    // The definer wrote the name before kReady (acquire above): bounded copy.
    // A name no definer could have written (damage, or a hostile writer) is
    // shown escaped, so no output of rqctl carries control bytes to a
    // terminal.
    out.name.assign(res.name, strnlen(res.name, kMaxNameLen));
    if (!valid_resource_name(out.name)) out.name = escaped_name(out.name);
    Limits lim;
    uint64_t word = 0;
    const int limits_rc = read_limits_in(view_, r, lim, &word);
    out.error = limits_rc;
    out.config_version = ConfigWord::unpack(word).version;
    const Counters &c = res.counters;
    out.admitted = c.admitted.load(boost::memory_order_relaxed);
    out.admitted_load = c.admitted_load.load(boost::memory_order_relaxed);
    out.timeouts = c.timeouts.load(boost::memory_order_relaxed);
    out.too_big = c.too_big.load(boost::memory_order_relaxed);
    out.reclaims = c.reclaims.load(boost::memory_order_relaxed);
    out.resets = c.resets.load(boost::memory_order_relaxed);
    out.wait_ns_total = c.wait_ns_total.load(boost::memory_order_relaxed);
    out.penalties = c.penalties.load(boost::memory_order_relaxed);
    out.settles = res.usage.settles.load(boost::memory_order_relaxed);
    out.settle_refunded = res.usage.settle_refunded.load(boost::memory_order_relaxed);
    out.settle_charged = res.usage.settle_charged.load(boost::memory_order_relaxed);
    out.observes = res.usage.observes.load(boost::memory_order_relaxed);
    // seq_cst: as the engine reads it (pairs with penalize()'s CAS).
    const int64_t paused = res.paused_until.load(boost::memory_order_seq_cst);
    out.paused_ns = paused > now ? paused - now : 0;
    for (uint32_t b = 0; b < kWaitBuckets; ++b) {
        out.waits[b] = res.waits.bucket[b].load(boost::memory_order_relaxed);
        out.waited += out.waits[b];
    }

    // Holders, then the queue, each until it reads the same before and after.
    const uint32_t n = view_.geo.queue_slots;
    for (int attempt = 0;; ++attempt) {
        out.holders.clear();
        out.waiters.clear();
        out.live_holders = out.dead_holders = 0;
        // acquire: pairs with the lock holder's unlock (release exchange),
        // after which the counters and holdings it wrote are visible.
        const uint64_t req1 = res.in_use_req.load(boost::memory_order_acquire);
        const uint64_t load1 = res.in_use_load.load(boost::memory_order_acquire);
        // seq_cst: the queue word, as every reader of the line (queue.cpp).
        const uint64_t q1 = res.queue.load(boost::memory_order_seq_cst);
        for (uint32_t p = 0; p < view_.geo.max_processes; ++p) {
            const Holding &hd = view_.holding(p, r);
            uint64_t hreq = hd.req.load(boost::memory_order_relaxed);
            uint64_t hload = hd.load.load(boost::memory_order_relaxed);
            if (hreq == 0 && hload == 0) continue;
            HolderInfo hi;
            hi.slot = p;
            const Process &proc = view_.process(p);
            // acquire: as above.
            ProcWord w = ProcWord::unpack(proc.word.load(boost::memory_order_acquire));
            hi.pid = w.state == ProcState::kFree ? 0 : proc.pid.load(boost::memory_order_relaxed);
            hi.alive = w.state == ProcState::kLive && alive(p);
            hi.req = hreq;
            hi.load = hload;
            int64_t since = hd.since_ns.load(boost::memory_order_relaxed);
            hi.held_ns = since > 0 && since <= now ? now - since : -1;
            (hi.alive ? out.live_holders : out.dead_holders)++;
            if (details || !hi.alive) out.holders.push_back(hi);
        }
        QueueWord q = QueueWord::unpack(q1);
        uint32_t depth = q.tail - q.head;
        if (depth > n) {
            out.error = RQ_ECORRUPT;
            depth = 0;
        }
        for (uint32_t t = q.head; t != q.head + depth; ++t) {
            const Slot &s = view_.slot(r, t);
            // acquire: pairs with note_wait's release store of the tag (queue.cpp).
            const uint64_t tag1 = s.tag.load(boost::memory_order_acquire);
            const uint64_t ld = s.load.load(boost::memory_order_relaxed);
            const int64_t since = s.since_ns.load(boost::memory_order_relaxed);
            // acquire: the field loads above happen before these re-reads.
            boost::atomic_thread_fence(boost::memory_order_acquire);
            const SlotWord sw = SlotWord::unpack(s.word.load(boost::memory_order_seq_cst));
            const uint64_t tag2 = s.tag.load(boost::memory_order_relaxed);
            if (sw.ticket != (t & kTicketMask) || sw.state == SlotState::kAbandoned || sw.state == SlotState::kDone) {
                continue;  // left the line, or not claimed yet
            }
            WaiterInfo wi;
            wi.ticket = t;
            wi.slot = sw.owner;
            if (sw.owner < view_.geo.max_processes) {
                wi.pid = view_.process(sw.owner).pid.load(boost::memory_order_relaxed);
                wi.alive = alive(sw.owner);
            }
            wi.state = t == q.head ? waiter_state(sw.state) : "queued";
            if (tag1 == (kInfoValid | t) && tag2 == tag1) {
                wi.load = ld;
                wi.waiting_ns = since > 0 && since <= now ? now - since : -1;
            }
            out.waiters.push_back(wi);
        }
        // acquire: the reads above happen before the re-reads that validate them.
        boost::atomic_thread_fence(boost::memory_order_acquire);
        const bool same = res.queue.load(boost::memory_order_seq_cst) == q1 &&
                          res.in_use_req.load(boost::memory_order_relaxed) == req1 &&
                          res.in_use_load.load(boost::memory_order_relaxed) == load1;
        out.in_use_req = req1;
        out.in_use_load = load1;
        if (same) break;
        if (attempt == kMaxSnapshotReads) {
            out.consistent = false;
            break;
        }
    }
    if (limits_rc != RQ_OK) return;
    if (lim.global) read_lease(res, lim, now, out.lease);
    const bool live = lim.global && out.lease.expires_in_ns > 0;
    for (uint32_t i = 0; i < lim.count; ++i) {
        LimitInfo li;
        li.lim = lim.limit[i];
        if (li.lim.kind == RQ_LIMIT_RATE && lim.global) {
            const int64_t credit = live ? lease_credit(res, li.lim, i) : 0;
            li.available = credit > 0 ? static_cast<uint64_t>(credit) : 0;
            li.in_debt = credit < 0;
            // relaxed: display only.
            const int64_t next = res.lease.next_add[i].load(boost::memory_order_relaxed);
            li.reserved = next > 0 ? static_cast<uint64_t>(next) / li.lim.request_ns : 0;
        } else if (li.lim.kind == RQ_LIMIT_RATE) {
            // acquire: pairs with the acq_rel CASes on the TAT (charge.hpp).
            rate_status(li.lim, res.tat[i].load(boost::memory_order_acquire), now, li);
        } else {
            li.in_use = li.lim.cost == RQ_COST_LOAD ? out.in_use_load : out.in_use_req;
            // relaxed: display only.
            li.leased_slots = lim.global ? res.lease.slots[i].load(boost::memory_order_relaxed) : 0;
            const uint64_t cap = lim.global ? (live ? std::min(li.leased_slots, li.lim.amount) : 0) : li.lim.amount;
            li.available = li.in_use >= cap ? 0 : cap - li.in_use;
        }
        out.limits.push_back(li);
    }
}

int any_live_attachment(const std::string &name, bool &any) {
    any = false;
    if (!valid_segment_name(name)) return RQ_EINVAL;
    int fd = ::open((kShmDir + name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);  // (see open)
    if (fd < 0) return errno == ENOENT ? RQ_ENOENT : errno == EACCES ? RQ_EACCES : RQ_ESYS;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return RQ_ECORRUPT;  // a FIFO, a device, ...: not a segment
    }
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = kProcLockBase;
    fl.l_len = 0;  // to the end of every possible offset
    int rc = fcntl(fd, F_OFD_GETLK, &fl);
    ::close(fd);
    if (rc != 0) return RQ_ESYS;
    any = fl.l_type != F_UNLCK;
    return RQ_OK;
}

}  // namespace rq::detail
