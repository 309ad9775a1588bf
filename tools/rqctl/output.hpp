// rqctl output: human units, aligned tables (colour only on a terminal), and a
// small JSON writer. No ratequeue knowledge here.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rqctl {

// 1234 -> "1234", 200000 -> "200k", 1500000 -> "1.5M" (exact below 10,000).
std::string human_count(uint64_t v);
// Nanoseconds as "850ns", "12us", "3.4ms", "1.25s", "2m05s", "3h10m", "2d04h".
std::string human_duration(int64_t ns);
// A period as a rate denominator: "s", "min", "h", "day", else "10s", "250ms".
std::string human_period(uint64_t ns);
// 1234567 -> "1,234,567".
std::string grouped(uint64_t v);

// Colours: only when enabled (stdout is a terminal, NO_COLOR unset).
struct Style {
    bool on = false;
    std::string bold(std::string_view s) const;
    std::string dim(std::string_view s) const;
    std::string red(std::string_view s) const;
    std::string green(std::string_view s) const;
    std::string yellow(std::string_view s) const;
};

// Columns padded to the widest cell (measured without colour codes).
class Table {
public:
    explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    bool empty() const { return rows_.empty(); }
    // Each line starts with `indent`; the header in bold when styled.
    std::string render(const Style &style, std::string_view indent = "", bool headings = true) const;
    // lsipc --raw: cells separated by one space, no padding, no colour; a
    // space or backslash inside a cell written as \x20 or \x5c.
    std::string render_raw(bool headings = true) const;
    // Keeps the columns named in `list` (comma-separated header names, any
    // case), in that order. Returns the first name that is no column ("":
    // all known), and then changes nothing.
    std::string keep(std::string_view list);

private:
    std::vector<std::string> header_;
    std::vector<std::vector<std::string>> rows_;
};

// Builds JSON text: objects and arrays with keys and scalar values, compact
// or pretty (two-space indent). Strings are escaped per RFC 8259.
class Json {
public:
    explicit Json(bool pretty) : pretty_(pretty) {}
    Json &begin_object(std::string_view key = {});
    Json &end_object();
    Json &begin_array(std::string_view key = {});
    Json &end_array();
    Json &str(std::string_view key, std::string_view v);
    Json &num(std::string_view key, uint64_t v);
    Json &num(std::string_view key, int64_t v);
    Json &num(std::string_view key, int v) { return num(key, static_cast<int64_t>(v)); }
    Json &num(std::string_view key, uint32_t v) { return num(key, static_cast<uint64_t>(v)); }
    Json &real(std::string_view key, double v);
    Json &boolean(std::string_view key, bool v);
    Json &null(std::string_view key);
    std::string text() const { return out_ + "\n"; }

private:
    void key(std::string_view k);
    void newline();
    static std::string quote(std::string_view s);
    bool pretty_;
    std::string out_;
    std::vector<bool> first_;  // per open container: no element yet
};

// Prometheus text format: label values escaped (backslash, quote, newline).
std::string prom_escape(std::string_view v);

// Strips ANSI colour codes (to measure width).
size_t visible_width(std::string_view s);

}  // namespace rqctl
