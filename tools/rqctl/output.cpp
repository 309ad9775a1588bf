#include "output.hpp"

#include <cctype>

#include <cmath>

namespace rqctl {

std::string human_count(uint64_t v) {
    if (v < 10'000) return std::to_string(v);
    const char *units[] = {"k", "M", "G", "T", "P"};
    double x = static_cast<double>(v);
    int u = -1;
    while (x >= 1000 && u < 4) {
        x /= 1000;
        ++u;
    }
    if (std::fmod(x, 1.0) == 0) return fmt::format("{:.0f}{}", x, units[u]);
    return fmt::format(fmt::runtime(x < 10 ? "{:.2f}{}" : x < 100 ? "{:.1f}{}" : "{:.0f}{}"), x, units[u]);
}

std::string human_duration(int64_t ns) {
    if (ns < 0) return fmt::format("-{}", human_duration(ns == INT64_MIN ? INT64_MAX : -ns));
    if (ns < 1'000) return fmt::format("{}ns", ns);
    if (ns < 1'000'000) return fmt::format("{:.0f}us", ns / 1e3);
    if (ns < 1'000'000'000) return fmt::format(fmt::runtime(ns < 10'000'000 ? "{:.1f}ms" : "{:.0f}ms"), ns / 1e6);
    const int64_t s = ns / 1'000'000'000;
    if (s < 60) return fmt::format("{:.2f}s", ns / 1e9);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string human_period(uint64_t ns) {
    constexpr uint64_t kS = 1'000'000'000;
    if (ns == kS) return "s";
    if (ns == 60 * kS) return "min";
    if (ns == 3600 * kS) return "h";
    if (ns == 86400 * kS) return "day";
    if (ns % (3600 * kS) == 0) return fmt::format("{}h", ns / (3600 * kS));
    if (ns % (60 * kS) == 0) return fmt::format("{}min", ns / (60 * kS));
    if (ns % kS == 0) return fmt::format("{}s", ns / kS);
    if (ns % 1'000'000 == 0) return fmt::format("{}ms", ns / 1'000'000);
    if (ns % 1'000 == 0) return fmt::format("{}us", ns / 1'000);
    return fmt::format("{}ns", ns);
}

std::string grouped(uint64_t v) {
    std::string d = std::to_string(v), out;
    for (size_t i = 0; i < d.size(); ++i) {
        if (i != 0 && (d.size() - i) % 3 == 0) out += ',';
        out += d[i];
    }
    return out;
}

namespace {
std::string wrap(bool on, const char *code, std::string_view s) {
    return on ? fmt::format("\x1b[{}m{}\x1b[0m", code, s) : std::string(s);
}
}  // namespace

std::string Style::bold(std::string_view s) const { return wrap(on, "1", s); }
std::string Style::dim(std::string_view s) const { return wrap(on, "2", s); }
std::string Style::red(std::string_view s) const { return wrap(on, "31", s); }
std::string Style::green(std::string_view s) const { return wrap(on, "32", s); }
std::string Style::yellow(std::string_view s) const { return wrap(on, "33", s); }

size_t visible_width(std::string_view s) {
    size_t n = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\x1b') {
            while (i < s.size() && s[i] != 'm') ++i;
            continue;
        }
        if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) ++n;  // count UTF-8 lead bytes
    }
    return n;
}

std::string Table::keep(std::string_view list) {
    auto upper = [](std::string_view v) {
        std::string u(v);
        for (char &ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        return u;
    };
    std::vector<size_t> pick;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string_view::npos) comma = list.size();
        const std::string name = upper(list.substr(start, comma - start));
        size_t c = 0;
        while (c < header_.size() && upper(header_[c]) != name) ++c;
        if (c == header_.size()) return name.empty() ? std::string("(empty)") : name;
        pick.push_back(c);
        start = comma + 1;
    }
    auto project = [&](const std::vector<std::string> &row) {
        std::vector<std::string> out;
        for (size_t c : pick) out.push_back(c < row.size() ? row[c] : "");
        return out;
    };
    header_ = project(header_);
    for (auto &row : rows_) row = project(row);
    return "";
}

std::string Table::render_raw(bool headings) const {
    auto line = [&](const std::vector<std::string> &cells) {
        std::string out;
        for (size_t c = 0; c < header_.size(); ++c) {
            if (c) out += ' ';
            for (char ch : c < cells.size() ? cells[c] : std::string()) {
                if (ch == ' ') out += "\\x20";
                else if (ch == '\\') out += "\\x5c";
                else out += ch;
            }
        }
        return out + "\n";
    };
    std::string out = headings ? line(header_) : "";
    for (const auto &row : rows_) out += line(row);
    return out;
}

std::string Table::render(const Style &style, std::string_view indent, bool headings) const {
    std::vector<size_t> width(header_.size(), 0);
    for (size_t c = 0; c < header_.size(); ++c) width[c] = visible_width(header_[c]);
    for (const auto &row : rows_) {
        for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], visible_width(row[c]));
    }
    auto line = [&](const std::vector<std::string> &cells, bool head) {
        std::string out(indent);
        for (size_t c = 0; c < width.size(); ++c) {
            std::string cell = c < cells.size() ? cells[c] : "";
            const bool last = c + 1 == width.size();
            std::string padded = cell + (last ? "" : std::string(width[c] - visible_width(cell) + 2, ' '));
            out += head ? style.bold(padded) : padded;
        }
        while (!out.empty() && out.back() == ' ') out.pop_back();
        return out + "\n";
    };
    std::string out = headings ? line(header_, true) : "";
    for (const auto &row : rows_) out += line(row, false);
    return out;
}

// ---- Json --------------------------------------------------------------------

std::string Json::quote(std::string_view s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
        switch (ch) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (ch < 0x20 || ch >= 0x7f) {
                    out += fmt::format("\\u{:04x}", ch);
                } else {
                    out += static_cast<char>(ch);
                }
        }
    }
    return out + "\"";
}

void Json::newline() {
    if (!pretty_) return;
    out_ += '\n';
    out_.append(2 * first_.size(), ' ');
}

void Json::key(std::string_view k) {
    if (!first_.empty()) {
        if (!first_.back()) out_ += ',';
        first_.back() = false;
        newline();
    }
    if (!k.empty()) out_ += quote(k) + (pretty_ ? ": " : ":");
}

Json &Json::begin_object(std::string_view k) {
    key(k);
    out_ += '{';
    first_.push_back(true);
    return *this;
}
Json &Json::end_object() {
    bool empty = first_.back();
    first_.pop_back();
    if (!empty) newline();
    out_ += '}';
    return *this;
}
Json &Json::begin_array(std::string_view k) {
    key(k);
    out_ += '[';
    first_.push_back(true);
    return *this;
}
Json &Json::end_array() {
    bool empty = first_.back();
    first_.pop_back();
    if (!empty) newline();
    out_ += ']';
    return *this;
}
Json &Json::str(std::string_view k, std::string_view v) {
    key(k);
    out_ += quote(v);
    return *this;
}
Json &Json::num(std::string_view k, uint64_t v) {
    key(k);
    out_ += std::to_string(v);
    return *this;
}
Json &Json::num(std::string_view k, int64_t v) {
    key(k);
    out_ += std::to_string(v);
    return *this;
}
Json &Json::real(std::string_view k, double v) {
    key(k);
    out_ += std::isfinite(v) ? fmt::format("{}", v) : "null";
    return *this;
}
Json &Json::boolean(std::string_view k, bool v) {
    key(k);
    out_ += v ? "true" : "false";
    return *this;
}
Json &Json::null(std::string_view k) {
    key(k);
    out_ += "null";
    return *this;
}

std::string prom_escape(std::string_view v) {
    std::string out;
    for (char ch : v) {
        if (ch == '\\') out += "\\\\";
        else if (ch == '"') out += "\\\"";
        else if (ch == '\n') out += "\\n";
        else out += ch;
    }
    return out;
}

}  // namespace rqctl
