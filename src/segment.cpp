// Opening, creating and validating the segment.
//
// Creation is race-free without any waiting: the creator builds the segment
// under a temporary name, marks it ready, and link()s it into place. link()
// fails with EEXIST when another process won, in which case the loser drops
// its copy and opens the winner's. So an opener sees no segment or a complete
// one, never a half-built one.
//
// Liveness locks live on the segment file itself (OFD locks on bytes past its
// end, see kProcLockBase), not on a companion file: they follow the segment's
// inode, so deleting or replacing some other file can never make live
// processes look dead, and there is one file per segment to manage.
#include "clock.hpp"
#include "core.hpp"
#include "shrink_guard.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace bip = boost::interprocess;

namespace rq::detail {
namespace {

// A 32-bit tag of this segment's creation (creator pid, clocks, boot id):
// resolved handles carry it, so a handle of another segment is refused even
// where that segment has a resource of the same name at the same index.
// Never 0, so a zeroed handle never matches.
uint32_t segment_tag(const Header &h) {
    uint64_t x = fnv1a(&h.creator_pid, sizeof h.creator_pid);
    x = fnv1a(&h.created_realtime_ns, sizeof h.created_realtime_ns, x);
    x = fnv1a(&h.created_mono_ns, sizeof h.created_mono_ns, x);
    x = fnv1a(h.boot_id, sizeof h.boot_id, x);
    return static_cast<uint32_t>(x ^ (x >> 32)) | 1u;
}

constexpr size_t kMaxSegmentName = 200;
// map_segment: rounds of open-or-create. Each round that does not end in a
// mapping lost a race (a creator linked its segment, a stale one was
// replaced) and the next sees the winner; 8 losses in a row means the name
// keeps changing under us.
constexpr int kMaxOpenAttempts = 8;
// create_new: temporary names tried when one is taken (random names: two
// taken in a row is already no accident).
constexpr int kMaxTempTries = 8;
// Lock byte of the segment file that serialises replacing a stale segment;
// process slot p uses byte kProcLockBase + p (core.hpp). Both lie past the end
// of the file, which OFD locks allow.
constexpr off_t kInitLockByte = kProcLockBase - 1;

}  // namespace

bool valid_segment_name(std::string_view n) {
    if (n.empty() || n.size() > kMaxSegmentName || n[0] == '.') return false;
    for (char ch : n) {
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '_' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

void read_boot_id(uint8_t out[16]) {
    std::memset(out, 0, 16);
    FILE *f = std::fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f) return;
    char buf[64] = {};
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    int k = 0;
    for (size_t i = 0; i < n && k < 32; ++i) {
        char ch = buf[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0) continue;
        out[k / 2] = static_cast<uint8_t>(out[k / 2] | (k % 2 == 0 ? v << 4 : v));
        ++k;
    }
}

// Ownership and mode rules: ours (or our group's when group-shared), and no
// permission bits beyond what we create with.
int check_owner_and_mode(const struct stat &st, bool group) {
    mode_t allowed = group ? 0660 : 0600;
    if ((st.st_mode & 0777 & ~allowed) != 0) return RQ_EACCES;
    if (st.st_uid == geteuid()) return RQ_OK;
    if (!group) return RQ_EACCES;
    // A group member: by the effective gid, or by a supplementary group
    // (usermod -aG), as the kernel itself grants the file's group bits.
    if (st.st_gid == getegid()) return RQ_OK;
    gid_t groups[256];
    const int n = getgroups(256, groups);
    for (int i = 0; i < n; ++i) {
        if (groups[i] == st.st_gid) return RQ_OK;
    }
    return RQ_EACCES;
}

namespace {

struct Mapping {
    std::unique_ptr<bip::mapped_region> region;
    int shm_fd = -1;  // our descriptor of it: the liveness OFD locks live on its open file description
};

}  // namespace

// Validates a mapped header against the file size. The header is hostile:
// every field is read once and checked before it is used.
int validate_header(const Header &h, uint64_t file_size, Geometry &geo) {
    if (h.magic != kMagic) return RQ_ECORRUPT;
    if (h.layout_major != kLayoutMajor) return RQ_EINCOMPAT;
    if (h.header_size != kHeaderSize || h.max_limits != kMaxLimits) return RQ_ECORRUPT;
    uint32_t res = h.max_resources, slots = h.queue_slots, procs = h.max_processes;
    if (!valid_capacities(res, slots, procs)) return RQ_ECORRUPT;
    Geometry g = geometry(res, slots, procs);
    if (h.total_size != g.total_size || file_size != g.total_size) return RQ_ECORRUPT;
    if (h.proc_table_off != g.proc_table_off || h.resource_table_off != g.resource_table_off ||
        h.holdings_off != g.holdings_off || h.rings_off != g.rings_off) {
        return RQ_ECORRUPT;
    }
    // init_state: pairs with the creator's release store before link().
    if (h.init_state.load(boost::memory_order_acquire) != static_cast<uint32_t>(InitState::kReady)) {
        return RQ_ECORRUPT;
    }
    geo = g;
    return RQ_OK;
}

namespace {

// An errno from opening a segment, as a code.
int open_error(int err) {
    errno = err;
    if (err == ENOENT) return RQ_ENOENT;
    if (err == EACCES || err == EPERM || err == ELOOP) return RQ_EACCES;  // ELOOP: a symlink (O_NOFOLLOW)
    if (err == EISDIR) return RQ_ECORRUPT;  // a directory squats the name: not a segment
    return RQ_ESYS;
}

// Opens the segment object, checks the very descriptor it opened (a regular
// file, ours, modes, size), and maps that same object: no second open by
// name, so the inode checked is the inode mapped. shm_open (Boost's
// shared_memory_object) adds O_NOFOLLOW and O_CLOEXEC.
int open_existing(const std::string &name, bool group, Mapping &m, Geometry &geo) {
    try {
        bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
        const int fd = shm.get_mapping_handle().handle;
        struct stat st;
        if (fstat(fd, &st) != 0) return RQ_ESYS;
        int rc = !S_ISREG(st.st_mode) ? RQ_ECORRUPT : check_owner_and_mode(st, group);
        if (rc == RQ_OK && static_cast<uint64_t>(st.st_size) < kHeaderSize) rc = RQ_ECORRUPT;
        if (rc != RQ_OK) return rc;
        m.region = std::make_unique<bip::mapped_region>(shm, bip::read_write, 0, static_cast<size_t>(st.st_size));
        rc = validate_header(*static_cast<const Header *>(m.region->get_address()), m.region->get_size(), geo);
        if (rc == RQ_OK) {
            // Our own descriptor of the same open file description (the OFD
            // locks are its), kept for the life of the mapping; the object's
            // own closes with it.
            m.shm_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (m.shm_fd < 0) rc = RQ_ESYS;
        }
        if (rc != RQ_OK) m.region.reset();
        return rc;
    } catch (const bip::interprocess_exception &e) {
        m.region.reset();
        const int err = e.get_native_error();
        // shm_open answers EINVAL (not EISDIR) for a directory at the name:
        // a squat, refused as a FIFO is (the name itself was validated).
        struct stat st;
        if (err == EINVAL && ::lstat((kShmDir + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return RQ_ECORRUPT;
        return open_error(err);
    }
}

// Random and never 0 (getrandom, else the clock and the pid).
uint64_t random_u64() {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
        v = static_cast<uint64_t>(now_ns()) ^ (uint64_t{static_cast<uint32_t>(getpid())} << 32);
    }
    return v != 0 ? v : 1;
}

void init_contents(std::byte *base, const Geometry &g, uint32_t flags) {
    Header &h = *reinterpret_cast<Header *>(base);
    h.magic = kMagic;
    h.layout_major = kLayoutMajor;
    h.layout_minor = kLayoutMinor;
    h.header_size = kHeaderSize;
    h.flags = flags;
    h.total_size = g.total_size;
    h.max_resources = g.max_resources;
    h.max_limits = kMaxLimits;
    h.queue_slots = g.queue_slots;
    h.max_processes = g.max_processes;
    h.creator_pid = static_cast<uint32_t>(getpid());
    h.created_realtime_ns = realtime_ns();
    h.created_mono_ns = now_ns();
    read_boot_id(h.boot_id);
    h.host_id = random_u64();
    h.proc_table_off = g.proc_table_off;
    h.resource_table_off = g.resource_table_off;
    h.holdings_off = g.holdings_off;
    h.rings_off = g.rings_off;
    // Every ring slot starts as if it held ticket (index - queue_slots), done,
    // so the claim of ticket t always expects the word of ticket t - slots.
    View v;
    v.attach(base, g);
    for (uint32_t r = 0; r < g.max_resources; ++r) {
        for (uint32_t i = 0; i < g.queue_slots; ++i) {
            SlotWord w{(i - g.queue_slots) & kTicketMask, SlotState::kDone, 0};
            v.slot(r, i).word.store(w.pack(), boost::memory_order_relaxed);
        }
    }
    // release: pairs with validate_header's acquire load in every opener.
    h.init_state.store(static_cast<uint32_t>(InitState::kReady), boost::memory_order_release);
}

// One try of create_new under one temporary name; taken: that name was
// there already (someone squats it), and nothing was done.
int create_once(const std::string &name, const rq_open_options &o, bool replace_stale, bool &taken) {
    // Random, so that nobody can squat it in advance (a squat would only
    // make us pick another).
    const uint64_t nonce = random_u64();
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".init-%d-%016llx", static_cast<int>(getpid()),
                  static_cast<unsigned long long>(nonce));
    std::string tmp = name + suffix;
    std::string tmp_path = kShmDir + tmp, path = kShmDir + name;
    bool group = (o.flags & RQ_OPEN_GROUP) != 0;
    mode_t mode = group ? 0660 : 0600;
    Geometry g = geometry(o.max_resources, o.queue_slots, o.max_processes);

    // Created (O_EXCL), sized and mapped through one object: the file we
    // build is the file we created.
    int rc = RQ_OK;
    bool created = false;
    try {
        bip::shared_memory_object shm(bip::create_only, tmp.c_str(), bip::read_write, bip::permissions(mode));
        created = true;
        const int fd = shm.get_mapping_handle().handle;
        if (fchmod(fd, mode) != 0) rc = RQ_ESYS;  // whatever the umask
        if (rc == RQ_OK) {
            const int e = posix_fallocate(fd, 0, static_cast<off_t>(g.total_size));
            if (e != 0) rc = e == ENOSPC ? RQ_ENOSPC : RQ_ESYS;
        }
        if (rc == RQ_OK) {
            bip::mapped_region region(shm, bip::read_write, 0, g.total_size);
            init_contents(static_cast<std::byte *>(region.get_address()), g, o.flags);
        }
    } catch (const bip::interprocess_exception &e) {
        const int err = e.get_native_error();
        rc = err == EACCES ? RQ_EACCES : RQ_ESYS;
        // Not created (a squatter at our temporary name, EMFILE, ...):
        // nothing of ours to remove, and errno says why.
        errno = err;
        taken = !created && err == EEXIST;
        if (!created) return rc;
    }
    if (rc == RQ_OK) {
        if (replace_stale) {
            if (::rename(tmp_path.c_str(), path.c_str()) != 0) rc = RQ_ESYS;
        } else if (::link(tmp_path.c_str(), path.c_str()) != 0) {
            rc = errno == EEXIST ? RQ_ENOENT : RQ_ESYS;
        }
    }
    ::unlink(tmp_path.c_str());
    return rc;
}

// Builds a complete segment under a temporary name and links it into place.
// RQ_OK: ours is in place. RQ_ENOENT: somebody else's appeared first (open it).
int create_new(const std::string &name, const rq_open_options &o, bool replace_stale) {
    for (int tries = 0; tries < kMaxTempTries; ++tries) {
        bool taken = false;
        const int rc = create_once(name, o, replace_stale, taken);
        // A squatter at the temporary name: another, unpredictable, name.
        if (!taken) return rc;
    }
    return RQ_ESYS;
}

int ofd_lock(int fd, off_t byte, short type, int cmd) {
    struct flock fl {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    return fcntl(fd, cmd, &fl);
}

// A segment written during another boot: its processes are all gone, so it is
// rebuilt in place. Serialised by a lock byte of the stale file itself, so
// two processes noticing at once do not each replace the other's fresh copy.
int replace_if_stale(const std::string &name, const rq_open_options &o, int stale_fd) {
    if (ofd_lock(stale_fd, kInitLockByte, F_WRLCK, F_OFD_SETLKW) != 0) return RQ_ESYS;
    struct stat mine, now;
    int rc = RQ_OK;
    bool still_there = fstat(stale_fd, &mine) == 0 && ::stat((kShmDir + name).c_str(), &now) == 0 &&
                       mine.st_ino == now.st_ino && mine.st_dev == now.st_dev;
    if (still_there) rc = create_new(name, o, true);
    ofd_lock(stale_fd, kInitLockByte, F_UNLCK, F_OFD_SETLK);
    return rc == RQ_ENOENT ? RQ_OK : rc;
}

}  // namespace

int Engine::map_segment(const char *segment, const rq_open_options *opts) {
    if (segment == nullptr) {
        const char *env = std::getenv("RATEQUEUE_SEGMENT");
        segment = env != nullptr && *env != '\0' ? env : "ratequeue";
    }
    if (!valid_segment_name(segment)) return RQ_EINVAL;
    rq_open_options o{};
    if (opts != nullptr) {
        if (opts->size < sizeof(uint32_t) * 2 || opts->size > 4096) return RQ_EINVAL;
        std::memcpy(&o, opts, std::min<size_t>(opts->size, sizeof o));
        if ((o.flags & ~RQ_OPEN_GROUP) != 0) return RQ_EINVAL;
    }
    o.size = sizeof o;
    if (o.max_resources == 0) o.max_resources = kDefaultResources;
    if (o.queue_slots == 0) o.queue_slots = kDefaultQueueSlots;
    if (o.max_processes == 0) o.max_processes = kDefaultProcesses;
    if (!valid_capacities(o.max_resources, o.queue_slots, o.max_processes)) return RQ_EINVAL;
    bool group = (o.flags & RQ_OPEN_GROUP) != 0;
    name_ = segment;

    int rc = RQ_OK;
    uint8_t boot[16];
    read_boot_id(boot);
    for (int attempt = 0; attempt < kMaxOpenAttempts; ++attempt) {
        Mapping m;
        Geometry g;
        rc = open_existing(name_, group, m, g);
        if (rc == RQ_ENOENT) {
            rc = create_new(name_, o, false);
            if (rc != RQ_OK && rc != RQ_ENOENT) return rc;
            continue;  // open whichever segment is in place now
        }
        if (rc != RQ_OK) return rc;
        const Header &h = *static_cast<const Header *>(m.region->get_address());
        if (std::memcmp(h.boot_id, boot, 16) != 0) {
            m.region.reset();
            rc = replace_if_stale(name_, o, m.shm_fd);
            ::close(m.shm_fd);
            if (rc != RQ_OK) return rc;
            continue;
        }
        // A shrink of the file from now on gives errors, not SIGBUS (shrink_guard.hpp).
        guard_mapping(m.region->get_address(), m.region->get_size(), m.shm_fd, PROT_READ | PROT_WRITE, &forked_,
                      kShrunk);
        view_.attach(static_cast<std::byte *>(m.region->get_address()), g);
        handle_tag_ = segment_tag(view_.header());
        fd_ = m.shm_fd;
        struct stat st;
        if (fstat(fd_, &st) != 0) return RQ_ESYS;
        ino_ = st.st_ino;
        dev_ = st.st_dev;
        region_ = m.region.release();
        return RQ_OK;
    }
    return RQ_EINTERNAL;
}

// A forked child's own open file description of the same segment file.
int Engine::reopen_segment_fd() {
    int fd = ::open((kShmDir + name_).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return RQ_ESYS;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_ino != ino_ || st.st_dev != dev_) {
        ::close(fd);
        return RQ_ESYS;  // the name now refers to another segment: ours was removed
    }
    fd_ = fd;
    return RQ_OK;
}

void Engine::unmap_segment() noexcept {
    if (region_ != nullptr) unguard_mapping(region_->get_address());
    delete region_;
    region_ = nullptr;
    view_ = View{};
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

int ofd_try_lock(int fd, uint32_t p) { return ofd_lock(fd, kProcLockBase + p, F_WRLCK, F_OFD_SETLK); }
void ofd_unlock(int fd, uint32_t p) { ofd_lock(fd, kProcLockBase + p, F_UNLCK, F_OFD_SETLK); }
bool ofd_locked_by_other(int fd, uint32_t p) {
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = kProcLockBase + p;
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume alive
    return fl.l_type != F_UNLCK;
}

}  // namespace rq::detail
