// Typed views into a mapped segment (layout.hpp owns the bytes; this is how
// code reaches them). Indices are checked by the caller.
#pragma once

#include "layout.hpp"

#include <cstddef>
#include <cstdint>

namespace rq::detail {

struct View {
    std::byte *base = nullptr;
    Geometry geo{};
    // base + the table offsets, computed once by attach().
    Resource *resources = nullptr;
    Slot *rings = nullptr;

    // The only way to point a view at a mapping (geo validated by the caller).
    void attach(std::byte *b, const Geometry &g) {
        base = b;
        geo = g;
        resources = reinterpret_cast<Resource *>(b + g.resource_table_off);
        rings = reinterpret_cast<Slot *>(b + g.rings_off);
    }
    Header &header() const { return *reinterpret_cast<Header *>(base); }
    Process &process(uint32_t p) const {
        return reinterpret_cast<Process *>(base + geo.proc_table_off)[p];
    }
    Resource &resource(uint32_t r) const { return resources[r]; }
    Holding &holding(uint32_t p, uint32_t r) const {
        return reinterpret_cast<Holding *>(base + geo.holdings_off)[uint64_t{p} * geo.max_resources + r];
    }
    Slot &slot(uint32_t r, uint32_t ticket) const {
        return rings[uint64_t{r} * geo.queue_slots + (ticket & (geo.queue_slots - 1))];
    }
};

}  // namespace rq::detail
