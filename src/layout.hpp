// The segment layout: the one file that owns every byte of shared memory.
//
// The segment is a fixed-size POD area with no pointers, only indices and
// offsets from its start. Everything read from it is hostile input: callers
// load a field once into a local, check it, then use the local.
//
//   offset                      size                         what
//   0                           4096                         Header
//   proc_table_off              max_processes * 64           Process[]
//   resource_table_off          max_resources * 2176         Resource[]
//   holdings_off                max_processes*max_resources*24  Holding[p][r]
//   rings_off                   max_resources*queue_slots*32 Slot[r][ticket % queue_slots]
//   total_size (page aligned)
//
// Header (4096 bytes, the first 128 shown; the rest is reserved, zero):
//   0   magic u64 "RQSEGMNT"      64  created_mono_ns i64
//   8   layout_major u32          72  boot_id [16]u8
//   12  layout_minor u32          88  proc_table_off u64
//   16  header_size u32           96  resource_table_off u64
//   20  flags u32                 104 holdings_off u64
//   24  total_size u64            112 rings_off u64
//   32  max_resources u32         120 define_lock u32 (futex word)
//   36  max_limits u32            124 define_journal_valid u32
//   40  queue_slots u32           128 define_journal_resource u32
//   44  max_processes u32         132 reserved
//   48  init_state u32            192 counters (segment-wide)
//   52  creator_pid u32           256 host_id u64 (many hosts: lease.hpp)
//   56  created_realtime_ns i64   264 refiller u32 (lock word), 268 refill_wake u32
//                                 272 refiller_pid u32, 276 reserved
//
// Atomics: fields that change after creation are boost::ipc_atomic (address
// free, lock free, usable across processes). Fields written once before the
// segment is linked into place are plain and never change afterwards.
#pragma once

#include <boost/atomic/fences.hpp>
#include <boost/atomic/ipc_atomic.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>

namespace rq::detail {

template <class T>
using Shared = boost::atomics::ipc_atomic<T>;

static_assert(Shared<uint64_t>::is_always_lock_free);
static_assert(Shared<uint32_t>::is_always_lock_free);
static_assert(sizeof(Shared<uint64_t>) == 8 && sizeof(Shared<uint32_t>) == 4);
static_assert(std::endian::native == std::endian::little,
              "slot futex words are the low half of a 64-bit word");

inline constexpr uint64_t kMagic = 0x544e4d4745535152ull;  // "RQSEGMNT" little endian
// 2: wait histogram and hard-reset epoch per resource, held-since per
// holding, load and enqueue time per queue slot (for rqctl).
// 3: many hosts: Resource grows to 2176 bytes for its Lease (the host's
// share of a global resource), Config::flags (scope, fail mode), and the
// host's identity and refiller election in the header.
inline constexpr uint32_t kLayoutMajor = 3;
inline constexpr uint32_t kLayoutMinor = 0;
inline constexpr uint32_t kHeaderSize = 4096;
inline constexpr uint32_t kMaxLimits = 8;
inline constexpr uint32_t kMaxNameLen = 63;
inline constexpr uint32_t kCacheLine = 64;

inline constexpr uint32_t kDefaultResources = 256;
inline constexpr uint32_t kDefaultQueueSlots = 1024;
inline constexpr uint32_t kDefaultProcesses = 1024;
inline constexpr uint32_t kMaxResourcesCap = 65536;
inline constexpr uint32_t kMaxProcessesCap = 65536;
inline constexpr uint32_t kMaxQueueSlotsCap = 1u << 20;

// Header::init_state. A segment is built complete under a temporary name and
// linked into place (segment.cpp), so an opener never sees one half built:
// the only state written is kReady, and any other value is a segment that is
// not ours to use (RQ_ECORRUPT). 2 for compatibility with layout 1.
enum class InitState : uint32_t { kReady = 2 };

// ---- Header ------------------------------------------------------------------

struct Header {
    uint64_t magic;                   // creator; never changes
    uint32_t layout_major;            // creator
    uint32_t layout_minor;            // creator
    uint32_t header_size;             // creator: kHeaderSize
    uint32_t flags;                   // creator: RQ_OPEN_GROUP if group-shared
    uint64_t total_size;              // creator: bytes in the segment (page aligned)
    uint32_t max_resources;           // creator: capacities, fixed for life
    uint32_t max_limits;              // creator: kMaxLimits
    uint32_t queue_slots;             // creator: power of two
    uint32_t max_processes;           // creator
    Shared<uint32_t> init_state;      // creator writes kReady (release) before linking the
                                      // segment into place; openers read it (acquire).
    uint32_t creator_pid;             // creator
    int64_t created_realtime_ns;      // creator, CLOCK_REALTIME
    int64_t created_mono_ns;          // creator, CLOCK_MONOTONIC
    uint8_t boot_id[16];              // creator: /proc/sys/kernel/random/boot_id
    uint64_t proc_table_off;          // creator: offsets, checked against geometry()
    uint64_t resource_table_off;
    uint64_t holdings_off;
    uint64_t rings_off;
    // Structural lock for creating resources. Value 0 = free, else owner process
    // slot + 1 (bits 0..30) and kLockWaiters (bit 31). Taken by CAS (acquire),
    // given back by exchange (release); broken by CAS when the owner is dead.
    Shared<uint32_t> define_lock;
    // Undo journal under define_lock: while valid == 1, resource
    // define_journal_resource may be half built and is reset to free on break.
    Shared<uint32_t> define_journal_valid;
    Shared<uint32_t> define_journal_resource;
    uint8_t reserved0[192 - 132];
    Shared<uint64_t> reclaims;        // processes reclaimed (relaxed counter)
    uint8_t reserved1[256 - 200];
    // -- many hosts (lease.hpp, refiller.cpp) --
    uint64_t host_id;                 // creator: random, never 0; names this host in Redis
    // The refiller election: 0 = nobody, else owner process slot + 1. Taken
    // by CAS (acq_rel) from 0 or from a dead owner, given up by CAS back to
    // 0 (release); candidates read it (acquire) and sleep on it.
    Shared<uint32_t> refiller;
    // Bumped (release) by anyone who needs the refiller now (a head short of
    // lease, a permit released on a global resource); the refiller sleeps on
    // it (acquire load before the futex wait).
    Shared<uint32_t> refill_wake;
    Shared<uint32_t> refiller_pid;    // display only (relaxed)
    uint8_t reserved2[kHeaderSize - 276];
};
static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, layout_major) == 8);
static_assert(offsetof(Header, layout_minor) == 12);
static_assert(offsetof(Header, header_size) == 16);
static_assert(offsetof(Header, flags) == 20);
static_assert(offsetof(Header, total_size) == 24);
static_assert(offsetof(Header, max_resources) == 32);
static_assert(offsetof(Header, max_limits) == 36);
static_assert(offsetof(Header, queue_slots) == 40);
static_assert(offsetof(Header, max_processes) == 44);
static_assert(offsetof(Header, init_state) == 48);
static_assert(offsetof(Header, creator_pid) == 52);
static_assert(offsetof(Header, created_realtime_ns) == 56);
static_assert(offsetof(Header, created_mono_ns) == 64);
static_assert(offsetof(Header, boot_id) == 72);
static_assert(offsetof(Header, proc_table_off) == 88);
static_assert(offsetof(Header, resource_table_off) == 96);
static_assert(offsetof(Header, holdings_off) == 104);
static_assert(offsetof(Header, rings_off) == 112);
static_assert(offsetof(Header, define_lock) == 120);
static_assert(offsetof(Header, define_journal_valid) == 124);
static_assert(offsetof(Header, define_journal_resource) == 128);
static_assert(offsetof(Header, reclaims) == 192);
static_assert(offsetof(Header, host_id) == 256);
static_assert(offsetof(Header, refiller) == 264);
static_assert(offsetof(Header, refill_wake) == 268);
static_assert(offsetof(Header, refiller_pid) == 272);
static_assert(sizeof(Header) == kHeaderSize);

inline constexpr uint32_t kLockWaiters = 1u << 31;
inline constexpr uint32_t kLockOwnerMask = kLockWaiters - 1;

// ---- Process table -------------------------------------------------------------
//
// A process slot p is owned by whoever holds the OFD write lock on byte
// kProcLockBase + p of the segment file itself (core.hpp; there is no
// companion file); the kernel drops it when the process dies. `word` packs
// the slot's lifecycle; every change is one CAS (process_table.cpp).
//
//   state       meaning                                   next
//   kFree       no holdings, no tickets, no locks           kLive (new owner, gen+1)
//   kLive       owned by the process with this gen          kReclaiming (owner dead, or close)
//   kReclaiming reclaimer slot `by` is returning holdings   kFree; or kReclaiming by another
//               and abandoning tickets; idempotent steps    reclaimer if `by` died

enum class ProcState : uint32_t { kFree = 0, kLive = 1, kReclaiming = 2 };

struct ProcWord {
    uint32_t gen;      // bumped on every kFree -> kLive
    ProcState state;   // 8 bits
    uint32_t by;       // reclaimer slot (kReclaiming only), 24 bits
    static constexpr ProcWord unpack(uint64_t w) {
        return {static_cast<uint32_t>(w >> 32), static_cast<ProcState>(w & 0xff),
                static_cast<uint32_t>((w >> 8) & 0xffffff)};
    }
    constexpr uint64_t pack() const {
        return (uint64_t{gen} << 32) | (uint64_t{by & 0xffffff} << 8) |
               static_cast<uint64_t>(state);
    }
};

struct Process {
    Shared<uint64_t> word;             // ProcWord: CAS (acq_rel) by the registrant and reclaimers;
                                       // read (acquire) by anyone checking a lock or holding
    Shared<uint32_t> pid;              // the owner, after kLive (relaxed); rqctl and test dumps
                                       // only: liveness never trusts a pid
    // The owner's death word (DeathWord below): a robust futex that the
    // kernel marks, and wakes a waiter on, when the owner dies.
    Shared<uint32_t> death_word;
    Shared<int64_t> started_realtime_ns;  // the owner, after kLive (relaxed); rqctl only
    uint8_t reserved1[64 - 24];
};
static_assert(offsetof(Process, word) == 0);
static_assert(offsetof(Process, pid) == 8);
static_assert(offsetof(Process, death_word) == 12);
static_assert(offsetof(Process, started_realtime_ns) == 16);
static_assert(sizeof(Process) == 64);

// Process::death_word. 0: no notice (the owner has no sentinel yet, or is of
// an older library): watchers poll its liveness lock. Otherwise the thread
// id of the owner's sentinel thread (process_table.cpp), which holds the
// word as a robust futex (set_robust_list) for the life of the attachment:
// when that thread dies, which happens only when the process dies or
// execs, the kernel sets kDeathOwnerDied (keeping kDeathWaiters) and wakes
// one waiter. Waiters (watch.cpp) set kDeathWaiters by CAS before they
// sleep on the word, and whoever sees kDeathOwnerDied wakes the rest. The
// bits are the kernel's (FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK).
// Only a hint that makes a waiter look: the liveness lock stays the truth.
// Written: by the registrant (0, before kLive), its sentinel (the tid),
// waiters (kDeathWaiters), the kernel (at death), and the owner when it
// closes (0, after its sentinel stopped holding it).
inline constexpr uint32_t kDeathWaiters = 0x80000000u;
inline constexpr uint32_t kDeathOwnerDied = 0x40000000u;
inline constexpr uint32_t kDeathTidMask = 0x3fffffffu;

// ---- Resources -----------------------------------------------------------------

enum class ResourceState : uint32_t { kFree = 0, kDefining = 1, kReady = 2 };

// One limit as defined, plus values derived from it at define time.
// Written by the definer into the inactive config buffer before it is
// published; read by anyone under the config seqlock (see ConfigWord).
struct LimitConfig {
    Shared<uint32_t> kind;          // RQ_LIMIT_RATE / RQ_LIMIT_CONCURRENCY
    Shared<uint32_t> cost;          // RQ_COST_REQUEST / RQ_COST_LOAD
    Shared<uint64_t> amount;
    Shared<uint64_t> period_ns;
    Shared<uint64_t> burst;         // effective burst (amount if defined as 0)
    // Derived by the definer (see gcra.hpp); any value is memory-safe, readers
    // range-check them.
    Shared<uint64_t> burst_ns;      // floor(burst * period / amount): bucket depth in ns
    Shared<uint64_t> request_ns;    // ceil(period / amount): cost of 1 unit in ns
    Shared<uint64_t> unit_ns;       // period / amount when exact, else 0
};
static_assert(sizeof(LimitConfig) == 56);

// Config::flags.
inline constexpr uint32_t kScopeGlobal = 1;     // shared with other hosts through Redis
inline constexpr uint32_t kFailLocalShare = 2;  // Redis lost: enforce limit / hosts here
inline constexpr uint32_t kConfigFlagsMask = kScopeGlobal | kFailLocalShare;

struct Config {
    Shared<uint32_t> count;         // 1..kMaxLimits
    Shared<uint32_t> flags;         // kScopeGlobal, kFailLocalShare; other bits: damage
    LimitConfig limits[kMaxLimits];
};
static_assert(sizeof(Config) == 8 + 56 * kMaxLimits);

// config_word: bit 0 = active buffer, bits 1.. = version. The definer fills
// config[!active] then stores the new word (release; pairs with readers'
// acquire load). Readers load the word, read config[active], then reload the
// word (after an acquire fence) and retry if it changed.
struct ConfigWord {
    uint64_t version;
    uint32_t active;
    static constexpr ConfigWord unpack(uint64_t w) { return {w >> 1, static_cast<uint32_t>(w & 1)}; }
    constexpr uint64_t pack() const { return (version << 1) | (active & 1); }
};

// queue word: head in the high 32 bits, tail in the low 32 bits. Tickets are
// uint32 and compared modulo 2^32; tail - head <= queue_slots always.
struct QueueWord {
    uint32_t head;
    uint32_t tail;
    static constexpr QueueWord unpack(uint64_t w) {
        return {static_cast<uint32_t>(w >> 32), static_cast<uint32_t>(w)};
    }
    constexpr uint64_t pack() const { return (uint64_t{head} << 32) | tail; }
};

// Undo journal for the concurrency accounting of one resource, written only
// by the holder of Resource::lock. While valid == 1 the in-use counters and
// holdings row `proc` may be half updated; whoever breaks the lock of a dead
// owner restores the *_before values, which undoes the operation exactly.
struct ConcJournal {
    Shared<uint32_t> valid;
    Shared<uint32_t> proc;
    Shared<uint64_t> in_use_req_before;
    Shared<uint64_t> in_use_load_before;
    Shared<uint64_t> held_req_before;
    Shared<uint64_t> held_load_before;
};
static_assert(sizeof(ConcJournal) == 40);

// Per-resource counters, read by rqctl without any lock (each value on its
// own; relaxed). Nothing in the protocol reads them. wait_ns_total and the
// histogram are written only by the queue head (a relaxed load + store:
// there is one head at a time, serve or serve_behind); the others by anyone
// admitting or refusing (the head, the line-free path, reclaimers, reset)
// with relaxed fetch_add.
struct Counters {
    Shared<uint64_t> admitted;
    Shared<uint64_t> admitted_load;
    Shared<uint64_t> timeouts;
    Shared<uint64_t> too_big;
    Shared<uint64_t> reclaims;       // holdings of dead processes returned
    Shared<uint64_t> resets;         // rq_reset (rqctl reset) calls
    Shared<uint64_t> wait_ns_total;  // summed over admissions that waited
    Shared<uint64_t> penalties;      // rq_penalize calls
};
static_assert(sizeof(Counters) == 64);

// LLM accounting counters (relaxed fetch_add, any process).
struct UsageCounters {
    Shared<uint64_t> settles;          // rq_settle calls
    Shared<uint64_t> settle_refunded;  // load given back (actual below the estimate)
    Shared<uint64_t> settle_charged;   // load charged on top (actual above the estimate)
    Shared<uint64_t> observes;         // rq_observe calls that lowered a bucket
};
static_assert(sizeof(UsageCounters) == 32);

// Admissions that waited, by how long: bucket i (1..31) counts waits in
// [2^i, 2^(i+1)) microseconds, bucket 0 those under 2 us, bucket 31 also
// everything longer. Admissions that did not wait at all are not counted
// here (that would cost the fast path a store): they are admitted minus the
// sum of the buckets.
inline constexpr uint32_t kWaitBuckets = 32;
struct WaitHistogram {
    Shared<uint64_t> bucket[kWaitBuckets];
};
static_assert(sizeof(WaitHistogram) == 256);
constexpr uint32_t wait_bucket(uint64_t wait_ns) {
    uint64_t us = wait_ns / 1000;
    if (us < 2) return 0;
    uint32_t b = static_cast<uint32_t>(std::bit_width(us)) - 1;
    return b < kWaitBuckets ? b : kWaitBuckets - 1;
}
static_assert(wait_bucket(0) == 0 && wait_bucket(1999) == 0 && wait_bucket(2000) == 1 &&
              wait_bucket(4000) == 2 && wait_bucket(~0ull) == kWaitBuckets - 1);

// A global resource's share on this host (lease.hpp has the protocol).
// Rate limit i's lease is its horizon: the local TAT (Resource::tat) may
// reach horizon[i] and no further, so the credit left is horizon - tat ns
// (at request_ns per unit). Concurrency limit i admits at most slots[i]
// held here. Nothing is admitted at or after expires_ns (CLOCK_MONOTONIC).
// Only the refiller writes the lease (horizon: fetch_add/CAS acq_rel, each
// pairs with the admitting paths' acquire loads; slots: stores under the
// resource lock when lowered, release when raised; expires_ns: release
// after the horizons and slots it covers). Any value is safe: a horizon or
// expiry far ahead admits no more than the TAT arithmetic allows, and
// rqctl only displays the rest.
enum class LinkState : uint32_t { kNone = 0, kUp = 1, kDown = 2, kLocalShare = 3 };
inline constexpr uint32_t kLeaseErrorText = 96;
struct Lease {
    Shared<int64_t> horizon[kMaxLimits];
    Shared<uint64_t> slots[kMaxLimits];
    Shared<int64_t> expires_ns;
    Shared<uint32_t> link;          // LinkState: the refiller (relaxed store, seq_cst read by
                                    // a head timing out to pick its error code)
    Shared<uint32_t> hosts;         // hosts Redis last counted (relaxed; display, local share)
    Shared<uint64_t> want;          // load a head waits for (relaxed hint to the refiller)
    Shared<int64_t> active_ns;      // when a head or a try last asked for more (relaxed)
    Shared<uint64_t> round_trips;   // counters, relaxed, refiller only
    Shared<uint64_t> rtt_ns_total;
    Shared<uint64_t> rtt_ns_max;
    Shared<uint64_t> errors;
    Shared<uint64_t> lost;          // units Redis wrote off for dead hosts (its count)
    Shared<uint64_t> granted;       // units granted to this host
    Shared<int64_t> last_error_rt;  // CLOCK_REALTIME ns of the last error (0: none)
    Shared<int32_t> last_error;     // its RQ_E* code
    uint32_t reserved;
    char last_error_text[kLeaseErrorText];  // display only; NUL padded, may tear
    // Tokens Redis reserved for this host from the future: rate limit i's
    // horizon counts next_add[i] more from next_at_ns (CLOCK_MONOTONIC) on
    // (lease_clock). The refiller sets next_add (release) after next_at,
    // and folds it in once due: exchange to 0 first, then the horizon's
    // fetch_add, so a reader in between sees less, never more.
    Shared<int64_t> next_add[kMaxLimits];
    Shared<int64_t> next_at_ns;
    uint8_t reserved2[448 - 392];
};
static_assert(offsetof(Lease, expires_ns) == 128);
static_assert(offsetof(Lease, last_error_text) == 224);
static_assert(offsetof(Lease, next_add) == 320);
static_assert(offsetof(Lease, next_at_ns) == 384);
static_assert(sizeof(Lease) == 448);

struct alignas(kCacheLine) Resource {
    // -- identity (line 0..1) --
    Shared<uint32_t> state;         // ResourceState: kDefining and kReady written under
                                    // define_lock; kReady stored with release, read with acquire
    uint32_t name_len;              // definer, before kReady; immutable after
    uint64_t name_hash;             // definer, before kReady
    char name[kMaxNameLen + 1];     // definer, before kReady; NUL padded
    Shared<uint64_t> config_word;   // ConfigWord: the definer (write_limits, under define_lock,
                                    // release); every reader of the limits (acquire), and the
                                    // line-free path and the head re-check it before they charge
    // rq_penalize: nobody is admitted before this CLOCK_MONOTONIC instant.
    // Only ever raised (llm.cpp, CAS, seq_cst); read (seq_cst) by the head,
    // serve_behind, the line-free path and the fail-fast prediction.
    Shared<int64_t> paused_until;   // (seq_cst: also read by every admitting path)
    uint8_t reserved0[128 - 96];
    // -- limits --
    Config config[2];               // 2 x 456
    uint8_t reserved1[1088 - 128 - 2 * sizeof(Config)];
    // -- rate state --
    // GCRA theoretical arrival time, CLOCK_MONOTONIC ns, per rate limit.
    // Changed only by CAS (acq_rel; charge.hpp says who pairs with whom):
    // charged by the head and the line-free path, moved by settle and
    // observe (llm.cpp) and a redefine (carry_rate_debt); reset stores 0
    // (seq_cst). Read by all of them and by rqctl. Any value is safe: a TAT
    // far ahead only means "not yet" (gcra.hpp).
    Shared<int64_t> tat[kMaxLimits];
    // -- queue (own cache line) --
    Shared<uint64_t> queue;         // QueueWord; seq_cst CAS by enqueuers (tail) and passers
                                    // (head), queue.cpp only (Dekker with the slot words)
    uint8_t reserved3[56];
    // -- concurrency (own cache line) --
    Shared<uint32_t> lock;          // like Header::define_lock (lock.cpp), guards in_use_*,
                                    // hard_epoch, the journal and this resource's holdings
    Shared<uint32_t> hard_epoch;    // under lock: bumped by a hard reset; permits of an
                                    // older epoch were forgotten and release as no-ops
    Shared<uint64_t> in_use_req;    // sum over holders of requests held (under lock)
    Shared<uint64_t> in_use_load;   // sum over holders of load held (under lock)
    uint8_t reserved5[40];
    ConcJournal journal;            // under lock
    uint8_t reserved6[24];
    Counters counters;
    UsageCounters usage;
    uint8_t reserved7[32];
    WaitHistogram waits;            // the head only (see Counters); rqctl reads
    Lease lease;                    // global resources only (lease.hpp)
};
static_assert(offsetof(Resource, state) == 0);
static_assert(offsetof(Resource, name_len) == 4);
static_assert(offsetof(Resource, name_hash) == 8);
static_assert(offsetof(Resource, name) == 16);
static_assert(offsetof(Resource, config_word) == 80);
static_assert(offsetof(Resource, paused_until) == 88);
static_assert(offsetof(Resource, config) == 128);
static_assert(offsetof(Resource, tat) == 1088);
static_assert(offsetof(Resource, queue) == 1152);
static_assert(offsetof(Resource, lock) == 1216);
static_assert(offsetof(Resource, in_use_req) == 1224);
static_assert(offsetof(Resource, in_use_load) == 1232);
static_assert(offsetof(Resource, journal) == 1280);
static_assert(offsetof(Resource, hard_epoch) == 1220);
static_assert(offsetof(Resource, counters) == 1344);
static_assert(offsetof(Resource, usage) == 1408);
static_assert(offsetof(Resource, waits) == 1472);
static_assert(offsetof(Resource, lease) == 1728);
static_assert(sizeof(Resource) == 2176);

// Concurrency held by one process on one resource. Written only under the
// resource's lock (relaxed inside it, through the undo journal: lock.cpp);
// read by reclaimers under the same lock, and without it by reap and the
// head's dead-holder check (as a hint, checked again under the lock) and
// rqctl. Invariant: in_use_req / in_use_load are the sums of these columns.
struct Holding {
    Shared<uint64_t> req;
    Shared<uint64_t> load;
    Shared<int64_t> since_ns;       // CLOCK_MONOTONIC when req last rose from 0 (display only)
};
static_assert(sizeof(Holding) == 24);

// ---- Queue slots ----------------------------------------------------------------
//
// Slot for ticket t is ring[t % queue_slots]. Its 64-bit word:
//   bits 0..2   SlotState          \ the low 32 bits are the futex word the
//   bits 3..31  t mod 2^29         / owner sleeps on
//   bits 32..63 owner process slot
// A ticket exists only once its slot word names it: the claim CAS that writes
// (t, kWaiting, owner) is the single transition that creates ticket t, so the
// owner of every ticket in [head, tail) is always known.
//
//   state            who sets it                       wakes owner?
//   kDone            initial; or the head, which served  the head, if it slept
//                    this ticket on its owner's behalf
//                    (head.cpp serve_behind, queue.cpp
//                    hand_over): passers skip it, its
//                    owner takes its permit
//   kWaiting         owner (claim, or back from sleep) -
//   kSleeping        owner: futex wait, untimed, on     passer wakes for grant;
//                    this word and the death word of    the kernel at a death;
//                    the process ahead (watch.cpp)      retarget_behind sets
//                                                       kWatching and wakes it
//   kWatching        owner polling one ahead that gives passer wakes for grant
//                    no notice (bounded by kWatchNs), or
//                    retarget_behind (look again)
//   kHead            passer (grant), or owner that saw head == t
//   kHeadRateSleep   head waiting for tokens (timed)    reset/redefine/settle/
//                                                       observe wake it
//   kHeadConcSleep   head waiting for a release; also   release/reset wake it;
//                    on the holders' death words        the kernel at a death
//   kAbandoned       owner (timeout/cancel), a reclaimer, or a passer that
//                    found the owner dead; passers skip it

enum class SlotState : uint32_t {
    kDone = 0,
    kWaiting = 1,
    kSleeping = 2,
    kWatching = 3,
    kHead = 4,
    kHeadRateSleep = 5,
    kHeadConcSleep = 6,
    kAbandoned = 7,
};
// A ticket in line that is not the head (it waits, asleep or awake).
constexpr bool queued_state(SlotState s) {
    return s == SlotState::kWaiting || s == SlotState::kSleeping || s == SlotState::kWatching;
}
constexpr bool head_state(SlotState s) {
    return s == SlotState::kHead || s == SlotState::kHeadRateSleep || s == SlotState::kHeadConcSleep;
}

inline constexpr uint32_t kTicketBits = 29;
inline constexpr uint32_t kTicketMask = (1u << kTicketBits) - 1;
// What a slot word keeps of ticket t.
constexpr uint32_t ticket_bits(uint32_t t) { return t & kTicketMask; }

struct SlotWord {
    uint32_t ticket;   // t mod 2^29
    SlotState state;
    uint32_t owner;
    static constexpr SlotWord unpack(uint64_t w) {
        return {static_cast<uint32_t>(w >> 3) & kTicketMask, static_cast<SlotState>(w & 7),
                static_cast<uint32_t>(w >> 32)};
    }
    constexpr uint64_t pack() const {
        return (uint64_t{owner} << 32) | (uint64_t{ticket & kTicketMask} << 3) |
               static_cast<uint64_t>(state);
    }
};

// Besides the word, a waiting ticket's owner notes its load and when it
// started waiting (notes.cpp, note_wait): it stores load and since_ns, then
// tag = t | kInfoValid (release). rqctl shows them, and the head serving
// tickets behind it (serve_behind) charges the noted load: a reader loads
// tag (acquire), the fields, then the word and tag again, and believes the
// fields only if both tags are t | kInfoValid and the word names t. Any
// noted value is range-checked before use (a load above RQ_MAX_AMOUNT or
// above what the limits admit is not served). Once the head has served the
// ticket (kDone, hand_over), since_ns carries the TAT the grant wrote, for
// its owner's permit (notes.cpp, served_grant_tat, reads it like a
// seqlock). Tickets served at once (the line-free path) write none of this.
inline constexpr uint64_t kInfoValid = uint64_t{1} << 32;
struct Slot {
    Shared<uint64_t> word;
    Shared<uint64_t> tag;
    Shared<uint64_t> load;
    Shared<int64_t> since_ns;
};
static_assert(sizeof(Slot) == 32);

// ---- Geometry -------------------------------------------------------------------

struct Geometry {
    uint32_t max_resources;
    uint32_t queue_slots;
    uint32_t max_processes;
    uint64_t proc_table_off;
    uint64_t resource_table_off;
    uint64_t holdings_off;
    uint64_t rings_off;
    uint64_t total_size;
};

constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Segment size as a function of capacities (all checked by the caller).
constexpr Geometry geometry(uint32_t resources, uint32_t slots, uint32_t processes) {
    Geometry g{resources, slots, processes, 0, 0, 0, 0, 0};
    g.proc_table_off = kHeaderSize;
    g.resource_table_off = align_up(g.proc_table_off + uint64_t{processes} * sizeof(Process), 4096);
    g.holdings_off =
        align_up(g.resource_table_off + uint64_t{resources} * sizeof(Resource), 4096);
    g.rings_off = align_up(g.holdings_off + uint64_t{processes} * resources * sizeof(Holding), 4096);
    g.total_size = align_up(g.rings_off + uint64_t{resources} * slots * sizeof(Slot), 4096);
    return g;
}

constexpr bool valid_capacities(uint32_t resources, uint32_t slots, uint32_t processes) {
    return resources >= 1 && resources <= kMaxResourcesCap && processes >= 1 &&
           processes <= kMaxProcessesCap && slots >= 2 && slots <= kMaxQueueSlotsCap &&
           std::has_single_bit(slots);
}

}  // namespace rq::detail
