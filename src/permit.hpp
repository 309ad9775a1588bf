// The caller-owned handles' bit layouts: permits, tickets and resource
// handles, each packed and unpacked by one struct. These words live in the
// caller's memory, never in the segment, but a caller may pass anything:
// every unpacked field is checked by its user (acquire.cpp, tickets.cpp)
// before it indexes anything.
#pragma once

#include "ratequeue/ratequeue.h"

#include <atomic>
#include <cstdint>

namespace rq::detail {

// ---- rq_permit -------------------------------------------------------------------
//
//   opaque[0] = "RQPT" << 32 | tat_granules >> 32 << 4 | flags (4 bits)
//   opaque[1] = resource << 48 | process slot << 32 | tat_granules & 0xffffffff
//   opaque[2] = load
//   opaque[3] = hard epoch << 32 | process generation
// tat_granules = grant_tat >> kGranuleShift (60 bits; rounding down only
// makes a settle refund less). Resources and process slots are below 2^16
// (layout.hpp, kMax*Cap).
inline constexpr uint64_t kPermitMagic = 0x52515054ull << 32;  // "RQPT"
inline constexpr uint64_t kPermitMagicMask = ~uint64_t{0xffffffff};
inline constexpr uint64_t kPermitConc = 1;      // holds concurrency
inline constexpr uint64_t kPermitReleased = 2;
inline constexpr uint64_t kPermitSettled = 4;
inline constexpr uint64_t kPermitHasTat = 8;    // carries the TAT its grant wrote
inline constexpr int kGranuleShift = 10;

inline bool is_permit(uint64_t w0) { return (w0 & kPermitMagicMask) == kPermitMagic; }

struct PermitCode {
    uint64_t flags;
    uint32_t resource;
    uint32_t proc;
    uint64_t load;
    uint32_t proc_gen;
    uint32_t epoch;      // the resource's hard_epoch when granted
    int64_t grant_tat;   // with kPermitHasTat: the TAT written on the first load-cost rate limit

    void pack(rq_permit *out) const {
        uint64_t w0 = kPermitMagic | flags;
        uint64_t w1 = (uint64_t{resource} << 48) | (uint64_t{proc} << 32);
        if ((flags & kPermitHasTat) != 0 && grant_tat > 0) {
            const uint64_t g = static_cast<uint64_t>(grant_tat) >> kGranuleShift;
            w0 |= ((g >> 32) & 0x0fffffff) << 4;
            w1 |= g & 0xffffffff;
        }
        out->opaque[0] = w0;
        out->opaque[1] = w1;
        out->opaque[2] = load;
        out->opaque[3] = (uint64_t{epoch} << 32) | proc_gen;
    }
    // Fields as written; the caller checks is_permit() and every field.
    static PermitCode unpack(const rq_permit &p) {
        const uint64_t w0 = p.opaque[0], w1 = p.opaque[1];
        const uint64_t g = ((w0 >> 4) & 0x0fffffff) << 32 | (w1 & 0xffffffff);
        return {w0 & 15,
                static_cast<uint32_t>(w1 >> 48),
                static_cast<uint32_t>(w1 >> 32) & 0xffff,
                p.opaque[2],
                static_cast<uint32_t>(p.opaque[3]),
                static_cast<uint32_t>(p.opaque[3] >> 32),
                static_cast<int64_t>(g << kGranuleShift)};
    }
};

// ---- rq_ticket --------------------------------------------------------------------
//
//   opaque[0] = "RQTI" << 32 | resource
//   opaque[1] = ticket << 32 | process slot
//   opaque[2] = load
//   opaque[3] = process generation << 32 | TicketState
// The state half is the one word two threads touch at once (rq_wait in one,
// rq_cancel in another): it is only ever accessed through ticket_word()
// (std::atomic_ref), and changes only by CAS (tickets.cpp owns its states).
inline constexpr uint64_t kTicketMagic = 0x52515449ull << 32;  // "RQTI"

inline std::atomic_ref<uint64_t> ticket_word(rq_ticket &t) { return std::atomic_ref<uint64_t>(t.opaque[3]); }
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the futex reads the ticket state in the low half");

struct TicketCode {
    bool magic_ok;
    uint32_t resource;
    uint32_t ticket;
    uint32_t proc;
    uint64_t load;
    uint32_t proc_gen;

    void pack(rq_ticket *out, uint32_t state) const {
        out->opaque[0] = kTicketMagic | resource;
        out->opaque[1] = (uint64_t{ticket} << 32) | proc;
        out->opaque[2] = load;
        ticket_word(*out).store((uint64_t{proc_gen} << 32) | state, std::memory_order_relaxed);
    }
    // relaxed: the generation half never changes after pack.
    static TicketCode unpack(rq_ticket &t) {
        const uint64_t w0 = t.opaque[0];
        return {(w0 & kPermitMagicMask) == kTicketMagic,
                static_cast<uint32_t>(w0),
                static_cast<uint32_t>(t.opaque[1] >> 32),
                static_cast<uint32_t>(t.opaque[1]),
                t.opaque[2],
                static_cast<uint32_t>(ticket_word(t).load(std::memory_order_relaxed) >> 32)};
    }
};

// ---- rq_resource (a resolved handle) ------------------------------------------------
//
//   opaque[0] = resource index << 32 | the segment's tag (segment.cpp, segment_tag)
//   opaque[1] = the resource's name hash
// Checked on every use: the tag against this segment's, the index against
// the table, the hash against the one kept with the resource's checked limits.
struct HandleCode {
    uint32_t resource;
    uint32_t tag;
    uint64_t name_hash;

    void pack(rq_resource *out) const {
        out->opaque[0] = uint64_t{resource} << 32 | tag;
        out->opaque[1] = name_hash;
    }
    static HandleCode unpack(const rq_resource &h) {
        return {static_cast<uint32_t>(h.opaque[0] >> 32), static_cast<uint32_t>(h.opaque[0]), h.opaque[1]};
    }
};

}  // namespace rq::detail
