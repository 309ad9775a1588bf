// rqctl: inspect, define, reset and monitor a live ratequeue segment.
//
//   rqctl [--segment NAME] [--redis URL] [--json [--pretty]] [--no-color] COMMAND [ARGS]
//
// Commands are dispatched from one table (kCommands). Reading commands (ls,
// show, watch, metrics, version) map the segment read-only through the
// inspector: they never register, lock or write, so they cannot block or
// slow the workers. define, reset and reap attach through the C ABI as any
// worker does; destroy unlinks the file.
//
// Exit status: 0 success, 1 error, 2 usage. Every error names the segment
// and says what to do.
#include "inspect.hpp"
#include "output.hpp"
#include "ratequeue/ratequeue.h"

#include <fmt/format.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rd = rq::detail;
using namespace rqctl;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr const char *kJsonSchema = "ratequeue.rqctl/1";

// A failure with its exit status: 1 error, 2 usage.
struct Fail {
    int status;
    std::string message;
};
[[noreturn]] void fail(std::string msg) { throw Fail{1, std::move(msg)}; }
[[noreturn]] void usage(std::string msg) { throw Fail{2, std::move(msg)}; }

struct Ctx {
    std::string segment;
    std::optional<std::string> redis;  // --redis URL (else $RATEQUEUE_REDIS_URL)
    bool json = false;
    bool pretty = false;
    Style style;
    bool tty = false;
};

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::vector<std::string>> options;  // --name -> values ("" for flags)
    bool has(const std::string &o) const { return options.count(o) != 0; }
    std::optional<std::string> one(const std::string &o) const {
        auto it = options.find(o);
        if (it == options.end()) return std::nullopt;
        return it->second.back();
    }
};

struct Command {
    const char *name;
    const char *synopsis;
    const char *help;
    std::vector<std::string> flags;          // options without a value
    std::vector<std::string> valued;         // options that take a value
    size_t min_args, max_args;
    void (*run)(Ctx &, const Args &);
};

// ---- Segment access and its errors ---------------------------------------------------

std::string user_name(uint32_t uid) {
    struct passwd pw {}, *res = nullptr;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res != nullptr) return res->pw_name;
    return "uid " + std::to_string(uid);
}

[[noreturn]] void segment_error(const rd::SegmentFile &f, int rc) {
    const std::string seg = fmt::format("segment '{}' ({})", f.name, f.path);
    switch (rc) {
        case RQ_ENOENT:
            fail(fmt::format("{} does not exist. Workers create it on first use; to create it now, define a "
                             "resource: rqctl --segment {} define NAME --rpm N",
                             seg, f.name));
        case RQ_EACCES:
            fail(fmt::format("cannot read {}: {}. It belongs to {} (uid {}, gid {}) with mode {:04o}; run rqctl "
                             "as that user, or have the workers create group-shared segments (mode 0660, "
                             "RQ_OPEN_GROUP) and run rqctl in that group",
                             seg, f.problem, user_name(f.uid), f.uid, f.gid, f.mode));
        case RQ_EINCOMPAT:
            fail(fmt::format("{} has layout version {}.{}; this rqctl reads layout {}.x. Use the rqctl built with "
                             "the workers' library, or once no worker uses it: rqctl --segment {} destroy",
                             seg, f.layout_major, f.layout_minor, rd::kLayoutMajor, f.name));
        case RQ_ECORRUPT:
            fail(fmt::format("{} is not a usable ratequeue segment: {}. If no worker uses it, remove it: "
                             "rqctl --segment {} destroy --force",
                             seg, f.problem, f.name));
        case RQ_EINVAL: fail(fmt::format("'{}' is not a valid segment name: {}", f.name, f.problem));
        default: fail(fmt::format("cannot read {}: {}", seg, f.problem.empty() ? rq_strerror(rc) : f.problem));
    }
}

[[noreturn]] void no_resource(const Ctx &ctx, const std::string &res) {
    fail(fmt::format("no resource '{}' in segment '{}'. 'rqctl --segment {} ls' lists the defined ones; define it "
                     "with: rqctl --segment {} define {} --rpm N",
                     res, ctx.segment, ctx.segment, ctx.segment, res));
}

// Opens the segment read-only, or fails with a message that says what to do.
void open_inspector(const Ctx &ctx, rd::Inspector &in) {
    int rc = in.open(ctx.segment);
    if (rc != RQ_OK) segment_error(in.file(), rc);
}

rd::SegmentInfo take_snapshot(const Ctx &ctx, const std::string *only, bool details) {
    rd::Inspector in;
    open_inspector(ctx, in);
    rd::SegmentInfo info;
    int rc = in.snapshot(info, only, details);
    if (rc == RQ_ENOENT && only != nullptr) no_resource(ctx, *only);
    if (rc != RQ_OK) fail(fmt::format("cannot read segment '{}': {}", ctx.segment, rq_strerror(rc)));
    return info;
}

// A client attached as a worker is (define, reset, reap).
struct Attached {
    rq_client *c = nullptr;
    explicit Attached(const Ctx &ctx, bool create) {
        // A group-shared segment (mode 0660) is attached as one, or rq_open
        // would refuse its group bits as looser than 0600.
        uint32_t flags = 0;
        if (!create) {
            // Refuse what a read-only open refuses, with its better message,
            // instead of creating a segment nobody asked for.
            rd::Inspector in;
            open_inspector(ctx, in);
            if ((in.file().mode & 0070) != 0) flags = RQ_OPEN_GROUP;
        } else {
            rd::Inspector in;
            if (in.open(ctx.segment) == RQ_OK && (in.file().mode & 0070) != 0) flags = RQ_OPEN_GROUP;
        }
        rq_open_options o{};
        o.size = sizeof o;
        o.flags = flags;
        if (ctx.redis) o.redis_url = ctx.redis->c_str();
        int rc = rq_open_ex(ctx.segment.c_str(), &o, &c);
        if (rc != RQ_OK) {
            rd::Inspector in;
            int irc = in.open(ctx.segment);
            if (irc != RQ_OK) segment_error(in.file(), irc);
            if (rc == RQ_EINVAL && (ctx.redis || std::getenv("RATEQUEUE_REDIS_URL"))) {
                fail(fmt::format("cannot attach to segment '{}': the Redis URL is malformed (see above): use "
                                 "redis://[[user]:password@]host[:port][/db] or unix:///path", ctx.segment));
            }
            fail(fmt::format("cannot attach to segment '{}': {} ({})", ctx.segment, rq_strerror(rc), rq_errname(rc)));
        }
    }
    ~Attached() { rq_close(c); }
    Attached(const Attached &) = delete;
    Attached &operator=(const Attached &) = delete;
};

// ---- Describing limits -----------------------------------------------------------------

std::string limit_text(const rd::Limit &l) {
    if (l.kind == RQ_LIMIT_CONCURRENCY) {
        return fmt::format("{} {}", human_count(l.amount), l.cost == RQ_COST_LOAD ? "load in flight" : "concurrent");
    }
    std::string s = fmt::format("{}{}/{}", human_count(l.amount), l.cost == RQ_COST_LOAD ? " tok" : "",
                                human_period(l.period_ns));
    if (l.burst != l.amount) s += fmt::format(" (burst {})", human_count(l.burst));
    return s;
}

std::string available_text(const rd::LimitInfo &li) {
    if (li.lim.kind == RQ_LIMIT_CONCURRENCY) return fmt::format("{} free", human_count(li.available));
    const char *unit = li.lim.cost == RQ_COST_LOAD ? " tok" : "";
    if (li.in_debt) return fmt::format("in debt, clears in {}", human_duration(li.next_unit_ns));
    if (li.available == 0) return fmt::format("0{}, next in {}", unit, human_duration(li.next_unit_ns));
    return fmt::format("{}{}", human_count(li.available), unit);
}

std::string join(const std::vector<std::string> &v, std::string_view sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
    return out;
}

std::string iso_time(int64_t realtime_ns) {
    time_t t = static_cast<time_t>(realtime_ns / 1'000'000'000);
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// ---- JSON ------------------------------------------------------------------------------
//
// The schema (ratequeue.rqctl/1) is documented in the README: every document
// has "schema", "segment" {name, layout_major, layout_minor, ...}, and the
// command's own keys. Durations are seconds as numbers; counts are integers.

void json_segment(Json &j, const rd::SegmentInfo &s) {
    j.begin_object("segment")
        .str("name", s.file.name)
        .str("path", s.file.path)
        .num("layout_major", s.layout_major)
        .num("layout_minor", s.layout_minor)
        .num("size_bytes", s.total_size)
        .num("max_resources", s.max_resources)
        .num("queue_slots", s.queue_slots)
        .num("max_processes", s.max_processes)
        .num("creator_pid", s.creator_pid)
        .str("created", iso_time(s.created_realtime_ns))
        .boolean("group_shared", s.group_shared)
        .num("live_processes", s.live_processes)
        .num("dead_processes", s.dead_processes)
        .num("process_slots_freed", s.reclaims)
        .end_object();
}

void json_lease(Json &j, const rd::ResourceInfo &r);  // (many hosts, below)

void json_resource(Json &j, const rd::ResourceInfo &r, bool details) {
    j.begin_object().str("name", r.name).num("config_version", r.config_version);
    json_lease(j, r);
    if (r.error != RQ_OK) j.str("error", rq_errname(r.error));
    j.begin_array("limits");
    for (const auto &li : r.limits) {
        const rd::Limit &l = li.lim;
        j.begin_object()
            .str("kind", l.kind == RQ_LIMIT_RATE ? "rate" : "concurrency")
            .str("cost", l.cost == RQ_COST_LOAD ? "load" : "request")
            .num("amount", l.amount)
            .str("text", limit_text(l));
        if (l.kind == RQ_LIMIT_RATE) {
            j.real("period_seconds", static_cast<double>(l.period_ns) / 1e9)
                .num("burst", l.burst)
                .num("available", li.available)
                .boolean("in_debt", li.in_debt)
                .real("next_unit_seconds", static_cast<double>(li.next_unit_ns) / 1e9);
        } else {
            j.num("in_use", li.in_use).num("available", li.available);
        }
        j.end_object();
    }
    j.end_array();
    j.num("waiting", static_cast<uint64_t>(r.waiters.size()))
        .num("holders_live", r.live_holders)
        .num("holders_dead", r.dead_holders)
        .num("in_use_requests", r.in_use_req)
        .num("in_use_load", r.in_use_load)
        .real("paused_seconds", static_cast<double>(r.paused_ns) / 1e9)
        .boolean("consistent", r.consistent);
    j.begin_object("counters")
        .num("admitted", r.admitted)
        .num("admitted_load", r.admitted_load)
        .num("waited", r.waited)
        .real("wait_seconds_total", static_cast<double>(r.wait_ns_total) / 1e9)
        .num("timeouts", r.timeouts)
        .num("too_big", r.too_big)
        .num("reclaims", r.reclaims)
        .num("resets", r.resets)
        .num("penalties", r.penalties)
        .num("settles", r.settles)
        .num("settle_refunded", r.settle_refunded)
        .num("settle_charged", r.settle_charged)
        .num("observes", r.observes);
    j.begin_array("wait_histogram");
    for (uint32_t b = 0; b < rd::kWaitBuckets; ++b) {
        if (r.waits[b] == 0) continue;
        j.begin_object()
            .real("ge_seconds", b == 0 ? 0.0 : static_cast<double>(uint64_t{1} << b) / 1e6)
            .real("lt_seconds", static_cast<double>(uint64_t{1} << (b + 1)) / 1e6)
            .num("count", r.waits[b])
            .end_object();
    }
    j.end_array().end_object();
    if (details) {
        j.begin_array("queue");
        for (const auto &w : r.waiters) {
            j.begin_object().num("ticket", w.ticket).num("pid", w.pid).num("process_slot", w.slot).boolean("alive", w.alive)
                .str("state", w.state);
            w.load ? j.num("load", w.load) : j.null("load");
            w.waiting_ns >= 0 ? j.real("waiting_seconds", static_cast<double>(w.waiting_ns) / 1e9)
                              : j.null("waiting_seconds");
            j.end_object();
        }
        j.end_array();
        j.begin_array("holders");
        for (const auto &h : r.holders) {
            j.begin_object().num("pid", h.pid).num("process_slot", h.slot).boolean("alive", h.alive)
                .num("permits", h.req).num("load", h.load);
            h.held_ns >= 0 ? j.real("held_seconds", static_cast<double>(h.held_ns) / 1e9) : j.null("held_seconds");
            j.end_object();
        }
        j.end_array();
    }
    j.end_object();
}

Json json_doc(const Ctx &ctx, const char *command) {
    Json j(ctx.pretty);
    j.begin_object().str("schema", kJsonSchema).str("command", command);
    return j;
}

// ---- Many hosts ------------------------------------------------------------------------

const char *link_text(rd::LinkState l) {
    switch (l) {
        case rd::LinkState::kUp: return "up";
        case rd::LinkState::kDown: return "down";
        case rd::LinkState::kLocalShare: return "down, local share";
        default: return "not yet reached";
    }
}

// "host", or "global" with the link and the failure mode in force.
std::string scope_text(const Ctx &ctx, const rd::LeaseInfo &l) {
    if (!l.global) return "host";
    std::string t = fmt::format("global ({})", link_text(l.link));
    if (l.link == rd::LinkState::kUp) return ctx.style.green(t);
    return l.link == rd::LinkState::kLocalShare ? ctx.style.yellow(t) : ctx.style.red(t);
}

const char *mode_text(const rd::LeaseInfo &l) {
    return l.local_share_mode ? "local share (limit / hosts while Redis is lost)" : "fail closed (wait while Redis is lost)";
}

void print_lease(const Ctx &ctx, const rd::SegmentInfo &s, const rd::ResourceInfo &r) {
    const rd::LeaseInfo &l = r.lease;
    fmt::print("{}\n", ctx.style.bold("many hosts"));
    Table t({"", ""});
    t.add({"scope", scope_text(ctx, l)});
    t.add({"failure mode", mode_text(l)});
    t.add({"this host", fmt::format("{:016x}, refiller pid {}", s.host_id,
                                     s.refiller_pid ? std::to_string(s.refiller_pid) : std::string("none (no client with a Redis URL)"))});
    t.add({"hosts", l.hosts ? std::to_string(l.hosts) + " holding a lease at the last call" : std::string("-")});
    std::vector<std::string> parts;
    for (const auto &li : r.limits) {
        if (li.lim.kind == RQ_LIMIT_RATE) {
            parts.push_back(fmt::format("{} left{}", human_count(li.available),
                                        li.reserved ? fmt::format(" (+{} reserved)", human_count(li.reserved)) : ""));
        } else {
            parts.push_back(fmt::format("{} slots", human_count(li.leased_slots)));
        }
    }
    t.add({"lease", fmt::format("{}; {}", join(parts, ", "),
                                l.expires_in_ns > 0 ? "expires in " + human_duration(l.expires_in_ns) : std::string("expired"))});
    t.add({"round trips", l.round_trips ? fmt::format("{}, mean {}, max {}", grouped(l.round_trips),
                                                      human_duration(static_cast<int64_t>(l.rtt_ns_total / l.round_trips)),
                                                      human_duration(static_cast<int64_t>(l.rtt_ns_max)))
                                        : std::string("0")});
    t.add({"granted", fmt::format("{} units to this host; {} written off with dead hosts (all hosts)", grouped(l.granted),
                                  grouped(l.lost))});
    t.add({"last error", l.last_error == 0 ? std::string("none")
                                           : fmt::format("{} at {}: {} ({} errors)", rq_errname(l.last_error),
                                                         iso_time(l.last_error_realtime_ns), l.last_error_text,
                                                         grouped(l.errors))});
    std::string body = t.render(Style{}, "  ");
    fmt::print("{}", body.substr(body.find('\n') + 1));  // no header row
}

void json_lease(Json &j, const rd::ResourceInfo &r) {
    const rd::LeaseInfo &l = r.lease;
    j.str("scope", l.global ? "global" : "host");
    if (!l.global) return;
    j.begin_object("lease")
        .str("link", l.link == rd::LinkState::kUp ? "up" : l.link == rd::LinkState::kDown ? "down"
                     : l.link == rd::LinkState::kLocalShare ? "local_share" : "none")
        .str("failure_mode", l.local_share_mode ? "local_share" : "closed")
        .num("hosts", l.hosts)
        .real("expires_in_seconds", static_cast<double>(l.expires_in_ns) / 1e9)
        .num("round_trips", l.round_trips)
        .real("round_trip_seconds_total", static_cast<double>(l.rtt_ns_total) / 1e9)
        .real("round_trip_seconds_max", static_cast<double>(l.rtt_ns_max) / 1e9)
        .num("errors", l.errors)
        .num("granted", l.granted)
        .num("lost", l.lost);
    if (l.last_error != 0) {
        j.str("last_error", rq_errname(l.last_error)).str("last_error_text", l.last_error_text)
            .str("last_error_at", iso_time(l.last_error_realtime_ns));
    }
    j.begin_array("limits");
    for (const auto &li : r.limits) {
        j.begin_object();
        if (li.lim.kind == RQ_LIMIT_RATE) j.num("credit", li.available).num("reserved", li.reserved);
        else j.num("slots", li.leased_slots);
        j.end_object();
    }
    j.end_array().end_object();
}

// ---- ls, show ------------------------------------------------------------------------

void cmd_ls(Ctx &ctx, const Args &a) {
    if (a.has("--raw")) ctx.style.on = false;  // for scripts: no colour codes in cells
    rd::SegmentInfo s = take_snapshot(ctx, nullptr, false);
    if (ctx.json) {
        Json j = json_doc(ctx, "ls");
        json_segment(j, s);
        j.begin_array("resources");
        for (const auto &r : s.resources) json_resource(j, r, false);
        j.end_array().end_object();
        fmt::print("{}", j.text());
        return;
    }
    if (s.resources.empty()) {
        fmt::print("segment '{}': no resources defined (rqctl define NAME --rpm N defines one)\n", ctx.segment);
        return;
    }
    Table t({"RESOURCE", "SCOPE", "LIMITS", "AVAILABLE", "WAITING", "HOLDERS", "DEAD"});
    for (const auto &r : s.resources) {
        std::vector<std::string> lim, avail;
        for (const auto &li : r.limits) {
            lim.push_back(limit_text(li.lim));
            avail.push_back(available_text(li));
        }
        if (r.paused_ns > 0) avail.insert(avail.begin(), ctx.style.yellow("paused " + human_duration(r.paused_ns)));
        if (r.error != RQ_OK) avail = {ctx.style.red(fmt::format("damaged ({})", rq_errname(r.error)))};
        t.add({ctx.style.bold(r.name), scope_text(ctx, r.lease), join(lim, ", "), join(avail, ", "), std::to_string(r.waiters.size()),
               std::to_string(r.live_holders),
               r.dead_holders ? ctx.style.red(std::to_string(r.dead_holders)) : "0"});
    }
    if (auto cols = a.one("--output")) {
        const std::string bad = t.keep(*cols);
        if (!bad.empty()) usage(fmt::format("ls: unknown column '{}' (rqctl ls --help lists them)", bad));
    }
    const bool headings = !a.has("--noheadings");
    fmt::print("{}", a.has("--raw") ? t.render_raw(headings) : t.render(ctx.style, "", headings));
}

void print_counters(const Ctx &ctx, const rd::ResourceInfo &r) {
    fmt::print("{}\n", ctx.style.bold("counters"));
    Table t({"", ""});
    t.add({"admitted", fmt::format("{} (load {})", grouped(r.admitted), grouped(r.admitted_load))});
    std::string waited = grouped(r.waited);
    if (r.waited) {
        waited += fmt::format(", {} in all, mean {}", human_duration(static_cast<int64_t>(r.wait_ns_total)),
                              human_duration(static_cast<int64_t>(r.wait_ns_total / r.waited)));
    }
    t.add({"waited", waited});
    t.add({"timeouts", grouped(r.timeouts)});
    t.add({"too big (E2BIG)", grouped(r.too_big)});
    t.add({"reclaims", grouped(r.reclaims)});
    t.add({"resets", grouped(r.resets)});
    t.add({"penalties", grouped(r.penalties)});
    t.add({"settled", fmt::format("{} (load {} given back, {} charged on top)", grouped(r.settles),
                                  grouped(r.settle_refunded), grouped(r.settle_charged))});
    t.add({"observed", fmt::format("{} (buckets lowered to the provider's headers)", grouped(r.observes))});
    std::string body = t.render(Style{}, "  ");
    fmt::print("{}", body.substr(body.find('\n') + 1));  // no header row
    if (r.waited == 0) return;
    fmt::print("{}\n", ctx.style.bold("wait times (admissions that waited)"));
    uint64_t peak = 0;
    for (uint64_t c : r.waits) peak = std::max(peak, c);
    Table h({"WAIT", "COUNT", ""});
    for (uint32_t b = 0; b < rd::kWaitBuckets; ++b) {
        if (r.waits[b] == 0) continue;
        std::string range = b == 0 ? "< 2us"
                            : b + 1 == rd::kWaitBuckets
                                ? fmt::format(">= {}", human_duration(int64_t{1000} << b))
                                : fmt::format("{} - {}", human_duration(int64_t{1000} << b),
                                              human_duration(int64_t{1000} << (b + 1)));
        size_t bar = static_cast<size_t>((r.waits[b] * 40 + peak - 1) / peak);
        h.add({range, grouped(r.waits[b]), std::string(bar, '#')});
    }
    fmt::print("{}", h.render(ctx.style, "  "));
}

void cmd_show(Ctx &ctx, const Args &a) {
    const std::string &name = a.positional[0];
    rd::SegmentInfo s = take_snapshot(ctx, &name, true);
    const rd::ResourceInfo &r = s.resources.at(0);
    if (ctx.json) {
        Json j = json_doc(ctx, "show");
        json_segment(j, s);
        j.begin_array("resources");
        json_resource(j, r, true);
        j.end_array().end_object();
        fmt::print("{}", j.text());
        return;
    }
    fmt::print("{} {}\n", ctx.style.bold("resource"), ctx.style.bold(r.name));
    fmt::print("segment '{}', layout {}.{}, definition version {}\n", ctx.segment, s.layout_major, s.layout_minor,
               r.config_version);
    if (r.error != RQ_OK) fmt::print("{}\n", ctx.style.red(fmt::format("damaged: {}", rq_strerror(r.error))));
    if (!r.consistent) fmt::print("{}\n", ctx.style.yellow("(busy: the queue kept moving while read; best effort)"));
    if (r.paused_ns > 0) {
        fmt::print("{}\n", ctx.style.yellow(fmt::format("paused for {} more: a provider asked to back off (rq_penalize)",
                                                        human_duration(r.paused_ns))));
    }
    fmt::print("{}\n", ctx.style.bold("limits"));
    Table lt({"#", "KIND", "LIMIT", "COST", "NOW"});
    for (size_t i = 0; i < r.limits.size(); ++i) {
        const auto &li = r.limits[i];
        std::string now = available_text(li);
        if (li.lim.kind == RQ_LIMIT_CONCURRENCY) now = fmt::format("{} in use, {}", human_count(li.in_use), now);
        else now = "available " + now;
        lt.add({std::to_string(i), li.lim.kind == RQ_LIMIT_RATE ? "rate" : "concurrency", limit_text(li.lim),
                li.lim.cost == RQ_COST_LOAD ? "load" : "request", now});
    }
    fmt::print("{}", lt.render(ctx.style, "  "));
    fmt::print("{} {}\n", ctx.style.bold("queue:"), r.waiters.empty() ? "empty" : fmt::format("{} waiting", r.waiters.size()));
    if (!r.waiters.empty()) {
        Table qt({"TICKET", "PID", "STATE", "LOAD", "WAITING"});
        for (const auto &w : r.waiters) {
            qt.add({std::to_string(w.ticket), w.alive ? std::to_string(w.pid) : ctx.style.red(fmt::format("{} (dead)", w.pid)),
                    w.state, w.load ? grouped(w.load) : "-", w.waiting_ns >= 0 ? human_duration(w.waiting_ns) : "-"});
        }
        fmt::print("{}", qt.render(ctx.style, "  "));
    }
    fmt::print("{} {} live, {} dead\n", ctx.style.bold("holders:"), r.live_holders, r.dead_holders);
    if (!r.holders.empty()) {
        Table ht({"PID", "ALIVE", "PERMITS", "LOAD", "HELD FOR"});
        for (const auto &h : r.holders) {
            ht.add({std::to_string(h.pid), h.alive ? "yes" : ctx.style.red("no"), grouped(h.req), grouped(h.load),
                    h.held_ns >= 0 ? human_duration(h.held_ns) : "-"});
        }
        fmt::print("{}", ht.render(ctx.style, "  "));
        if (r.dead_holders) fmt::print("  dead holders are reclaimed by the next waiter; 'rqctl reap' does it now\n");
    }
    if (r.lease.global) print_lease(ctx, s, r);
    print_counters(ctx, r);
}

// ---- define ------------------------------------------------------------------------------

uint64_t parse_amount(std::string_view s, const char *what) {
    uint64_t mult = 1;
    if (!s.empty()) {
        switch (s.back()) {
            case 'k': case 'K': mult = 1'000; break;
            case 'm': case 'M': mult = 1'000'000; break;
            case 'g': case 'G': mult = 1'000'000'000; break;
            default: break;
        }
        if (mult != 1) s.remove_suffix(1);
    }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v == 0 || v > RQ_MAX_AMOUNT / mult) {
        usage(fmt::format("{}: '{}' is not a positive whole number (a k, M or G suffix is allowed; at most 2^48)",
                          what, s));
    }
    return v * mult;
}

uint64_t parse_period(std::string_view s) {
    size_t i = 0;
    while (i < s.size() && (s[i] >= '0' && s[i] <= '9')) ++i;
    uint64_t n = 1;
    if (i > 0 && (std::from_chars(s.data(), s.data() + i, n).ec != std::errc() || n == 0)) n = 0;
    std::string_view unit = s.substr(i);
    static const std::pair<std::string_view, uint64_t> units[] = {
        {"ns", 1},           {"us", 1000},           {"ms", 1'000'000},        {"s", kSec},
        {"sec", kSec},       {"second", kSec},       {"m", 60 * kSec},          {"min", 60 * kSec},
        {"minute", 60 * kSec}, {"h", 3600 * kSec},   {"hour", 3600 * kSec},     {"d", 86400 * kSec},
        {"day", 86400 * kSec}};
    for (const auto &[name, ns] : units) {
        if (unit == name && n != 0 && n <= RQ_MAX_PERIOD_NS / ns) return n * ns;
    }
    usage(fmt::format("'{}' is not a period: use a unit (ns, us, ms, s, min, h, day), optionally after a count, "
                      "as in 1000/min or 5/250ms",
                      s));
}

// AMOUNT/PERIOD[,burst=B][,cost=load|request]
rq_limit parse_rate(const std::string &spec) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t i = 0; i <= spec.size(); ++i) {
        if (i == spec.size() || spec[i] == ',') {
            parts.push_back(spec.substr(start, i - start));
            start = i + 1;
        }
    }
    size_t slash = parts[0].find('/');
    if (slash == std::string::npos) {
        usage(fmt::format("--rate '{}': expected AMOUNT/PERIOD[,burst=B][,cost=load|request], as in 1000/min or "
                          "200k/min,cost=load",
                          spec));
    }
    rq_limit l{RQ_LIMIT_RATE, RQ_COST_REQUEST, parse_amount(std::string_view(parts[0]).substr(0, slash), "--rate amount"),
               parse_period(std::string_view(parts[0]).substr(slash + 1)), 0};
    for (size_t i = 1; i < parts.size(); ++i) {
        const std::string &p = parts[i];
        if (p.rfind("burst=", 0) == 0) {
            l.burst = parse_amount(std::string_view(p).substr(6), "--rate burst");
        } else if (p == "cost=load") {
            l.cost = RQ_COST_LOAD;
        } else if (p == "cost=request") {
            l.cost = RQ_COST_REQUEST;
        } else {
            usage(fmt::format("--rate '{}': unknown part '{}' (burst=B, cost=load or cost=request)", spec, p));
        }
    }
    return l;
}

rq_limit parse_concurrency(const std::string &spec) {
    size_t comma = spec.find(',');
    rq_limit l{RQ_LIMIT_CONCURRENCY, RQ_COST_REQUEST,
               parse_amount(std::string_view(spec).substr(0, comma), "--concurrency"), 0, 0};
    if (comma != std::string::npos) {
        std::string rest = spec.substr(comma + 1);
        if (rest == "cost=load") l.cost = RQ_COST_LOAD;
        else if (rest != "cost=request") usage(fmt::format("--concurrency '{}': expected N[,cost=load]", spec));
    }
    return l;
}

std::string describe_limits(const rq_limit *l, size_t n) {
    std::vector<std::string> v;
    for (size_t i = 0; i < n; ++i) {
        rd::Limit x{l[i].kind, l[i].cost, l[i].amount, l[i].period_ns, l[i].burst ? l[i].burst : l[i].amount, 0, 0, 0};
        v.push_back(limit_text(x));
    }
    return join(v, ", ");
}

void cmd_define(Ctx &ctx, const Args &a) {
    const std::string &name = a.positional[0];
    std::vector<rq_limit> limits;
    // The shorthands, as every API defines them (ratequeue.h, rq_rpm / rq_tpm).
    uint32_t burst_ms = 0;
    if (auto v = a.one("--burst-seconds")) {
        char *end = nullptr;
        const double sec = std::strtod(v->c_str(), &end);
        if (end == v->c_str() || *end != '\0' || !(sec > 0 && sec <= 60)) {
            usage("--burst-seconds takes a number of seconds in (0, 60]");
        }
        burst_ms = std::max<uint32_t>(1, static_cast<uint32_t>(sec * 1000 + 0.5));
    }
    if (auto v = a.one("--rpm")) limits.push_back(rq_rpm(parse_amount(*v, "--rpm"), burst_ms));
    if (auto v = a.one("--tpm")) limits.push_back(rq_tpm(parse_amount(*v, "--tpm"), burst_ms));
    if (a.has("--rate")) {
        for (const auto &spec : a.options.at("--rate")) limits.push_back(parse_rate(spec));
    }
    if (a.has("--concurrency")) {
        for (const auto &spec : a.options.at("--concurrency")) limits.push_back(parse_concurrency(spec));
    }
    if (limits.empty()) usage("define needs at least one limit: --rpm, --tpm, --rate or --concurrency");
    if (limits.size() > RQ_MAX_LIMITS) usage(fmt::format("at most {} limits per resource", RQ_MAX_LIMITS));
    const bool replace = a.has("--replace");
    Attached at(ctx, true);
    rq_limit before[RQ_MAX_LIMITS];
    size_t nbefore = 0;
    const bool existed = rq_describe(at.c, name.c_str(), before, RQ_MAX_LIMITS, &nbefore) == RQ_OK;
    const uint32_t flags = (replace ? RQ_DEFINE_REPLACE : 0) | (a.has("--local") ? RQ_DEFINE_LOCAL : 0) |
                           (a.has("--local-share") ? RQ_DEFINE_LOCAL_SHARE : 0);
    int rc = rq_define(at.c, name.c_str(), limits.data(), limits.size(), flags);
    if (rc == RQ_EUNAVAIL) {
        char why[512];
        rq_remote_error(at.c, why, sizeof why);
        fail(fmt::format("cannot define '{}' through Redis: {}; check the URL and that Redis is up", name, why));
    }
    if (rc == RQ_ECONFLICT) {
        char why[512];
        if (rq_remote_error(at.c, why, sizeof why) != 0 && std::strstr(why, "defined differently") != nullptr) {
            fail(fmt::format("resource '{}' is {} (another host defined it first); define it the same way here, "
                             "or delete its keys in Redis to start over", name, why));
        }
    }
    if (rc == RQ_ECONFLICT) {
        fail(fmt::format("resource '{}' in segment '{}' is already defined as {}; add --replace to swap in {} "
                         "(rate debt and permits in use carry over)",
                         name, ctx.segment, describe_limits(before, nbefore), describe_limits(limits.data(), limits.size())));
    }
    if (rc == RQ_EINVAL) {
        fail(fmt::format("cannot define '{}': {} (names are 1-63 printable characters without spaces; rates at most "
                         "1 unit per ns, periods 1us to a year)",
                         name, rq_strerror(rc)));
    }
    if (rc != RQ_OK) fail(fmt::format("cannot define '{}' in segment '{}': {} ({})", name, ctx.segment, rq_strerror(rc), rq_errname(rc)));
    const char *what = !existed ? "defined" : replace ? "replaced" : "unchanged";
    if (ctx.json) {
        Json j = json_doc(ctx, "define");
        j.begin_object("segment").str("name", ctx.segment).num("layout_major", rd::kLayoutMajor).end_object();
        j.str("resource", name).str("result", what).str("limits", describe_limits(limits.data(), limits.size()));
        fmt::print("{}", j.end_object().text());
        return;
    }
    fmt::print("{} {}: {}\n", what, name, describe_limits(limits.data(), limits.size()));
}

// ---- reset, reap ------------------------------------------------------------------------

void cmd_reset(Ctx &ctx, const Args &a) {
    const bool all = a.has("--all"), hard = a.has("--hard");
    if (all == !a.positional.empty()) usage("reset takes a resource name or --all (not both)");
    const std::string *only = all ? nullptr : &a.positional[0];
    rd::SegmentInfo s = take_snapshot(ctx, only, true);
    uint32_t live = 0, dead = 0, waiting = 0;
    for (const auto &r : s.resources) {
        live += r.live_holders;
        dead += r.dead_holders;
        waiting += static_cast<uint32_t>(r.waiters.size());
    }
    if (hard && !a.has("--yes")) {
        usage(fmt::format("reset --hard forgets the permits of live holders ({} now): they keep running, but their "
                          "requests no longer count against the concurrency limit. Add --yes to do it",
                          live));
    }
    Attached at(ctx, false);
    int rc = rq_reset(at.c, only ? only->c_str() : nullptr, hard ? RQ_RESET_HARD : 0);
    if (rc == RQ_ENOENT && only) no_resource(ctx, *only);
    if (rc != RQ_OK) fail(fmt::format("reset failed on segment '{}': {} ({})", ctx.segment, rq_strerror(rc), rq_errname(rc)));
    if (ctx.json) {
        Json j = json_doc(ctx, "reset");
        json_segment(j, s);
        j.begin_array("resources");
        for (const auto &r : s.resources) j.str({}, r.name);
        j.end_array().boolean("hard", hard).num("dead_holders_dropped", dead).num("waiters_woken", waiting)
            .num("live_holders_forgotten", hard ? live : 0u);
        fmt::print("{}", j.end_object().text());
        return;
    }
    std::vector<std::string> names;
    for (const auto &r : s.resources) names.push_back(r.name);
    fmt::print("reset {}: buckets refilled, {} dead holder{} dropped, {} waiter{} in line{}\n",
               names.empty() ? "(no resources)" : join(names, ", "), dead, dead == 1 ? "" : "s", waiting,
               waiting == 1 ? "" : "s", hard ? fmt::format(", {} live holder{} forgotten", live, live == 1 ? "" : "s") : "");
}

void cmd_reap(Ctx &ctx, const Args &) {
    rd::SegmentInfo s = take_snapshot(ctx, nullptr, true);
    struct Dead {
        rd::ProcessInfo p;
        std::vector<std::string> what;
    };
    std::vector<Dead> dead;
    for (const auto &p : s.processes) {
        if (p.alive) continue;
        Dead d{p, {}};
        for (const auto &r : s.resources) {
            for (const auto &h : r.holders) {
                if (h.slot == p.slot) d.what.push_back(fmt::format("{} permit{} (load {}) on {}", h.req, h.req == 1 ? "" : "s", h.load, r.name));
            }
            uint32_t tickets = 0;
            for (const auto &w : r.waiters) tickets += w.slot == p.slot;
            if (tickets) d.what.push_back(fmt::format("{} place{} in line on {}", tickets, tickets == 1 ? "" : "s", r.name));
        }
        dead.push_back(d);
    }
    Attached at(ctx, false);
    rq_reap_report rep{};
    rep.size = sizeof rep;
    int rc = rq_reap(at.c, &rep);
    if (rc != RQ_OK) fail(fmt::format("reap failed on segment '{}': {} ({})", ctx.segment, rq_strerror(rc), rq_errname(rc)));
    if (ctx.json) {
        Json j = json_doc(ctx, "reap");
        json_segment(j, s);
        j.num("processes_reclaimed", rep.processes).num("permits_returned", rep.permits).num("load_returned", rep.load);
        j.begin_array("dead_processes");
        for (const auto &d : dead) {
            j.begin_object().num("pid", d.p.pid).num("process_slot", d.p.slot).begin_array("held");
            for (const auto &w : d.what) j.str({}, w);
            j.end_array().end_object();
        }
        j.end_array();
        fmt::print("{}", j.end_object().text());
        return;
    }
    if (rep.processes == 0 && dead.empty()) {
        fmt::print("nothing to reap: every attached process is alive ({} of them)\n", s.live_processes);
        return;
    }
    for (const auto &d : dead) {
        fmt::print("pid {} (process slot {}): {}\n", d.p.pid, d.p.slot, d.what.empty() ? "held nothing" : join(d.what, "; "));
    }
    fmt::print("reclaimed {} dead process{}: {} permit{} (load {}) returned\n", rep.processes,
               rep.processes == 1 ? "" : "es", rep.permits, rep.permits == 1 ? "" : "s", rep.load);
}

// ---- watch ------------------------------------------------------------------------------

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void cmd_watch(Ctx &ctx, const Args &a) {
    const std::string *only = a.positional.empty() ? nullptr : &a.positional[0];
    double interval = 0.5;
    if (auto v = a.one("--interval")) {
        char *end = nullptr;
        interval = std::strtod(v->c_str(), &end);
        if (end == v->c_str() || *end != '\0' || !(interval >= 0.05 && interval <= 3600)) {
            usage(fmt::format("--interval '{}': expected seconds between 0.05 and 3600", *v));
        }
    }
    long count = -1;
    if (auto v = a.one("--count")) count = static_cast<long>(parse_amount(*v, "--count"));
    rd::Inspector in;
    open_inspector(ctx, in);
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // no SA_RESTART: the sleep returns at once
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    const bool screen = ctx.tty && !ctx.json;
    std::string last_frame;
    if (screen) fmt::print("\x1b[?1049h\x1b[?25l");  // alternate screen, hide the cursor
    std::map<std::string, rd::ResourceInfo> prev;
    int64_t prev_at = 0;
    for (long frame = 0; !g_stop && (count < 0 || frame < count); ++frame) {
        rd::SegmentInfo s;
        int rc = in.snapshot(s, only, true);
        if (rc == RQ_ENOENT && only) {
            if (screen) fmt::print("\x1b[?25h\x1b[?1049l");
            no_resource(ctx, *only);
        }
        const double dt = prev_at ? static_cast<double>(s.now_ns - prev_at) / 1e9 : 0;
        auto rate = [&](uint64_t now_v, uint64_t before) { return dt > 0 && now_v >= before ? (now_v - before) / dt : 0.0; };
        std::string out;
        if (ctx.json) {
            Json j = json_doc(ctx, "watch");
            j.str("segment", ctx.segment).real("interval_seconds", dt).begin_array("resources");
            for (const auto &r : s.resources) {
                auto it = prev.find(r.name);
                const rd::ResourceInfo *p = it == prev.end() ? nullptr : &it->second;
                j.begin_object().str("name", r.name)
                    .real("admitted_per_second", p ? rate(r.admitted, p->admitted) : 0)
                    .real("load_per_second", p ? rate(r.admitted_load, p->admitted_load) : 0)
                    .real("waited_per_second", p ? rate(r.waited, p->waited) : 0)
                    .num("waiting", static_cast<uint64_t>(r.waiters.size()))
                    .num("holders_live", r.live_holders).num("holders_dead", r.dead_holders).end_object();
            }
            out = j.end_array().end_object().text();
        } else {
            out = fmt::format("{}  segment '{}'  every {}s  {}  (Ctrl-C quits)\n\n", ctx.style.bold("rqctl watch"),
                              ctx.segment, interval, iso_time(static_cast<int64_t>(time(nullptr)) * 1'000'000'000));
            Table t({"RESOURCE", "ADMITTED/s", "LOAD/s", "WAITED/s", "MEAN WAIT", "WAITING", "HOLDERS", "AVAILABLE"});
            for (const auto &r : s.resources) {
                auto it = prev.find(r.name);
                const rd::ResourceInfo *p = it == prev.end() ? nullptr : &it->second;
                std::string mean = "-";
                if (p && r.waited > p->waited && r.wait_ns_total >= p->wait_ns_total) {
                    mean = human_duration(static_cast<int64_t>((r.wait_ns_total - p->wait_ns_total) / (r.waited - p->waited)));
                }
                std::vector<std::string> avail;
                if (r.paused_ns > 0) avail.push_back(ctx.style.yellow("paused " + human_duration(r.paused_ns)));
                for (const auto &li : r.limits) avail.push_back(available_text(li));
                t.add({ctx.style.bold(r.name), p ? fmt::format("{:.1f}", rate(r.admitted, p->admitted)) : "-",
                       p ? fmt::format("{:.1f}", rate(r.admitted_load, p->admitted_load)) : "-",
                       p ? fmt::format("{:.1f}", rate(r.waited, p->waited)) : "-", mean,
                       std::to_string(r.waiters.size()),
                       fmt::format("{}{}", r.live_holders, r.dead_holders ? fmt::format(" (+{} dead)", r.dead_holders) : ""),
                       join(avail, ", ")});
            }
            out += s.resources.empty() ? "no resources defined\n" : t.render(ctx.style);
            out += fmt::format("\n{} live processes attached", s.live_processes);
            if (s.dead_processes) out += fmt::format(", {} dead (rqctl reap reclaims them)", s.dead_processes);
            out += "\n";
        }
        fmt::print("{}{}", screen ? "\x1b[H\x1b[2J" : "", out);
        std::fflush(stdout);
        last_frame = out;
        prev.clear();
        for (auto &r : s.resources) prev.emplace(r.name, std::move(r));
        prev_at = s.now_ns;
        if (count >= 0 && frame + 1 >= count) break;
        timespec ts{static_cast<time_t>(interval), static_cast<long>((interval - static_cast<time_t>(interval)) * 1e9)};
        nanosleep(&ts, nullptr);  // EINTR on Ctrl-C
    }
    if (screen) {
        fmt::print("\x1b[?25h\x1b[?1049l");  // show the cursor, leave the alternate screen
        // A run that ended by itself (--count) leaves its last frame on the
        // terminal; Ctrl-C leaves the terminal as it was.
        if (!g_stop && count >= 0) fmt::print("{}", last_frame);
        std::fflush(stdout);
    }
}

// ---- metrics ----------------------------------------------------------------------------

void cmd_metrics(Ctx &ctx, const Args &) {
    rd::SegmentInfo s = take_snapshot(ctx, nullptr, true);
    std::string out;
    const std::string seg = prom_escape(ctx.segment);
    auto family = [&](const char *name, const char *type, const char *help) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    };
    auto sample = [&](const std::string &name, const std::string &labels, auto value) {
        out += fmt::format("{}{{segment=\"{}\"{}}} {}\n", name, seg, labels, value);
    };
    auto res_label = [](const rd::ResourceInfo &r) { return fmt::format(",resource=\"{}\"", prom_escape(r.name)); };

    family("ratequeue_processes", "gauge", "Processes attached to the segment, by liveness.");
    sample("ratequeue_processes", ",state=\"live\"", s.live_processes);
    sample("ratequeue_processes", ",state=\"dead\"", s.dead_processes);
    family("ratequeue_process_slots_freed_total", "counter", "Process slots freed, by a clean close or after the process died.");
    sample("ratequeue_process_slots_freed_total", "", s.reclaims);
    family("ratequeue_resources", "gauge", "Resources defined in the segment.");
    sample("ratequeue_resources", "", s.resources.size());

    struct Counter {
        const char *name, *help;
        uint64_t rd::ResourceInfo::*field;
    };
    const Counter counters[] = {
        {"ratequeue_admitted_total", "Acquires admitted.", &rd::ResourceInfo::admitted},
        {"ratequeue_admitted_load_total", "Load (tokens, for example) admitted.", &rd::ResourceInfo::admitted_load},
        {"ratequeue_timeouts_total", "Acquires that timed out waiting.", &rd::ResourceInfo::timeouts},
        {"ratequeue_too_big_total", "Acquires refused because the load could never fit (E2BIG).", &rd::ResourceInfo::too_big},
        {"ratequeue_reclaims_total", "Holdings of dead processes returned.", &rd::ResourceInfo::reclaims},
        {"ratequeue_resets_total", "Operator resets (rqctl reset).", &rd::ResourceInfo::resets},
        {"ratequeue_penalties_total", "Provider back-offs shared (rq_penalize).", &rd::ResourceInfo::penalties},
        {"ratequeue_settles_total", "Permits settled at their actual load (rq_settle).", &rd::ResourceInfo::settles},
        {"ratequeue_settle_refunded_total", "Load given back by settles below the estimate.",
         &rd::ResourceInfo::settle_refunded},
        {"ratequeue_settle_charged_total", "Load charged by settles above the estimate.",
         &rd::ResourceInfo::settle_charged},
        {"ratequeue_observes_total", "Buckets lowered to a provider's rate-limit headers (rq_observe).",
         &rd::ResourceInfo::observes},
    };
    for (const auto &c : counters) {
        family(c.name, "counter", c.help);
        for (const auto &r : s.resources) sample(c.name, res_label(r), r.*c.field);
    }
    family("ratequeue_paused_seconds", "gauge", "What is left of a penalty pause (0: not paused).");
    for (const auto &r : s.resources) sample("ratequeue_paused_seconds", res_label(r), static_cast<double>(r.paused_ns) / 1e9);
    family("ratequeue_waiting", "gauge", "Acquires waiting in line.");
    for (const auto &r : s.resources) sample("ratequeue_waiting", res_label(r), r.waiters.size());
    family("ratequeue_holders", "gauge", "Processes holding concurrency permits, by liveness.");
    for (const auto &r : s.resources) {
        sample("ratequeue_holders", res_label(r) + ",state=\"live\"", r.live_holders);
        sample("ratequeue_holders", res_label(r) + ",state=\"dead\"", r.dead_holders);
    }
    std::string lim_lines, avail_lines;
    for (const auto &r : s.resources) {
        for (size_t i = 0; i < r.limits.size(); ++i) {
            const auto &li = r.limits[i];
            std::string labels = fmt::format("{},limit=\"{}\",kind=\"{}\",cost=\"{}\"", res_label(r), i,
                                             li.lim.kind == RQ_LIMIT_RATE ? "rate" : "concurrency",
                                             li.lim.cost == RQ_COST_LOAD ? "load" : "request");
            if (li.lim.kind == RQ_LIMIT_RATE) {
                labels += fmt::format(",period_seconds=\"{}\"", static_cast<double>(li.lim.period_ns) / 1e9);
            }
            lim_lines += fmt::format("ratequeue_limit{{segment=\"{}\"{}}} {}\n", seg, labels, li.lim.amount);
            avail_lines += fmt::format("ratequeue_available{{segment=\"{}\"{}}} {}\n", seg, labels, li.available);
        }
    }
    family("ratequeue_limit", "gauge", "Each limit's amount (per period for rates, at once for concurrency).");
    out += lim_lines;
    family("ratequeue_available", "gauge", "Units each limit would admit now (bucket level, or free concurrency).");
    out += avail_lines;
    family("ratequeue_wait_seconds", "histogram",
           "Time acquires waited in line before admission (those admitted at once count in the first bucket).");
    for (const auto &r : s.resources) {
        const uint64_t immediate = r.admitted >= r.waited ? r.admitted - r.waited : 0;
        uint64_t cum = immediate;
        // The segment keeps log2 buckets; export every other bound (x4 steps,
        // 2us to about 9 minutes) to keep a scrape small.
        for (uint32_t b = 0; b + 1 < rd::kWaitBuckets; ++b) {
            cum += r.waits[b];
            if (b % 2 != 0) continue;
            sample("ratequeue_wait_seconds_bucket",
                   res_label(r) + fmt::format(",le=\"{}\"", static_cast<double>(uint64_t{1} << (b + 1)) / 1e6), cum);
        }
        cum += r.waits[rd::kWaitBuckets - 1];
        sample("ratequeue_wait_seconds_bucket", res_label(r) + ",le=\"+Inf\"", cum);
        sample("ratequeue_wait_seconds_sum", res_label(r), static_cast<double>(r.wait_ns_total) / 1e9);
        sample("ratequeue_wait_seconds_count", res_label(r), cum);
    }
    // Many hosts: global resources only.
    bool any_global = false;
    for (const auto &r : s.resources) any_global |= r.lease.global;
    if (any_global) {
        family("ratequeue_global", "gauge",
               "1 per global resource (shared through Redis), with its link and failure mode in force.");
        for (const auto &r : s.resources) {
            if (!r.lease.global) continue;
            const char *link = r.lease.link == rd::LinkState::kUp ? "up" : r.lease.link == rd::LinkState::kDown ? "down"
                               : r.lease.link == rd::LinkState::kLocalShare ? "local_share" : "none";
            sample("ratequeue_global", res_label(r) + fmt::format(",link=\"{}\",failure_mode=\"{}\"", link,
                                                                  r.lease.local_share_mode ? "local_share" : "closed"), 1);
        }
        family("ratequeue_lease_expires_seconds", "gauge", "Until this host's lease expires (0: expired).");
        for (const auto &r : s.resources) {
            if (r.lease.global) sample("ratequeue_lease_expires_seconds", res_label(r), static_cast<double>(r.lease.expires_in_ns) / 1e9);
        }
        family("ratequeue_lease_available", "gauge", "Per limit: credit left (rate) or slots leased (concurrency) here.");
        for (const auto &r : s.resources) {
            if (!r.lease.global) continue;
            for (size_t i = 0; i < r.limits.size(); ++i) {
                const auto &li = r.limits[i];
                sample("ratequeue_lease_available", res_label(r) + fmt::format(",limit=\"{}\"", i),
                       li.lim.kind == RQ_LIMIT_RATE ? li.available : li.leased_slots);
            }
        }
        const struct {
            const char *name, *help;
            uint64_t rd::LeaseInfo::*field;
        } lease_counters[] = {
            {"ratequeue_redis_round_trips_total", "Redis calls made for this resource by this host.", &rd::LeaseInfo::round_trips},
            {"ratequeue_redis_errors_total", "Redis calls that failed.", &rd::LeaseInfo::errors},
            {"ratequeue_lease_granted_total", "Units Redis granted this host.", &rd::LeaseInfo::granted},
            {"ratequeue_lease_lost", "Units Redis wrote off with dead hosts (all hosts).", &rd::LeaseInfo::lost},
        };
        for (const auto &c : lease_counters) {
            family(c.name, "counter", c.help);
            for (const auto &r : s.resources) {
                if (r.lease.global) sample(c.name, res_label(r), r.lease.*c.field);
            }
        }
        family("ratequeue_redis_round_trip_seconds_total", "counter", "Time spent in Redis calls.");
        for (const auto &r : s.resources) {
            if (r.lease.global) sample("ratequeue_redis_round_trip_seconds_total", res_label(r), static_cast<double>(r.lease.rtt_ns_total) / 1e9);
        }
    }
    if (ctx.json) {
        Json j = json_doc(ctx, "metrics");
        json_segment(j, s);
        fmt::print("{}", j.str("text", out).end_object().text());
        return;
    }
    fmt::print("{}", out);
}

// ---- destroy, version ------------------------------------------------------------------

void cmd_destroy(Ctx &ctx, const Args &a) {
    bool any = false;
    int rc = rd::any_live_attachment(ctx.segment, any);
    if (rc == RQ_ENOENT) fail(fmt::format("segment '{}' (/dev/shm/{}) does not exist: nothing to destroy", ctx.segment, ctx.segment));
    if (rc == RQ_EINVAL) fail(fmt::format("'{}' is not a valid segment name", ctx.segment));
    if (rc == RQ_ECORRUPT && !a.has("--force")) {
        fail(fmt::format("/dev/shm/{} is not a regular file, so not a ratequeue segment; add --force to remove it anyway",
                         ctx.segment));
    }
    if (rc != RQ_OK && !a.has("--force")) {
        fail(fmt::format("cannot check who uses segment '{}': {}; add --force to remove it anyway", ctx.segment, std::strerror(errno)));
    }
    if (any && !a.has("--force")) {
        std::string who;
        rd::Inspector in;
        rd::SegmentInfo s;
        if (in.open(ctx.segment) == RQ_OK && in.snapshot(s, nullptr, false) == RQ_OK) {
            std::vector<std::string> pids;
            for (const auto &p : s.processes) {
                if (p.alive) pids.push_back(std::to_string(p.pid));
            }
            if (!pids.empty()) who = " (pid " + join(pids, ", ") + ")";
        }
        fail(fmt::format("segment '{}' has live processes attached{}; stop them first, or add --force (they keep "
                         "their mapping of the old segment, and new processes get a fresh one)",
                         ctx.segment, who));
    }
    if (::unlink(("/dev/shm/" + ctx.segment).c_str()) != 0) {
        fail(fmt::format("cannot remove /dev/shm/{}: {}", ctx.segment, std::strerror(errno)));
    }
    if (ctx.json) {
        Json j = json_doc(ctx, "destroy");
        j.begin_object("segment").str("name", ctx.segment).end_object().boolean("destroyed", true).boolean("forced", any);
        fmt::print("{}", j.end_object().text());
        return;
    }
    fmt::print("destroyed segment '{}'{}\n", ctx.segment, any ? " (live processes were still attached)" : "");
}

std::string version_text(int v) { return fmt::format("{}.{}.{}", v / 10000, v / 100 % 100, v % 100); }

void cmd_version(Ctx &ctx, const Args &) {
    rd::Inspector in;
    int rc = in.open(ctx.segment);
    const rd::SegmentFile &f = in.file();
    if (ctx.json) {
        Json j = json_doc(ctx, "version");
        j.str("rqctl", version_text(RQ_VERSION_NUMBER)).str("library", version_text(rq_version()))
            .num("layout_major", rd::kLayoutMajor).num("layout_minor", rd::kLayoutMinor);
        j.begin_object("segment").str("name", ctx.segment).boolean("exists", f.exists);
        if (f.layout_major) j.num("layout_major", f.layout_major).num("layout_minor", f.layout_minor);
        j.boolean("readable", rc == RQ_OK).end_object();
        fmt::print("{}", j.end_object().text());
        return;
    }
    fmt::print("rqctl {} (library {}), reads segment layout {}.{}\n", version_text(RQ_VERSION_NUMBER),
               version_text(rq_version()), rd::kLayoutMajor, rd::kLayoutMinor);
    if (!f.exists) {
        fmt::print("segment '{}': does not exist\n", ctx.segment);
    } else if (f.layout_major) {
        fmt::print("segment '{}': layout {}.{}{}\n", ctx.segment, f.layout_major, f.layout_minor,
                   rc == RQ_OK ? "" : fmt::format(" ({})", f.problem));
    } else {
        fmt::print("segment '{}': unreadable ({})\n", ctx.segment, f.problem.empty() ? rq_strerror(rc) : f.problem);
    }
}

// ---- The command table and the argument parser -----------------------------------------

const Command kCommands[] = {
    {"ls", "ls [-o COLUMNS] [--raw] [--noheadings]",
     "One row per resource: its scope, limits, capacity available now, waiters, live and dead holders.\n"
     "  -o, --output COLUMNS  which columns, in which order, comma-separated (case does not matter):\n"
     "                        RESOURCE, SCOPE, LIMITS, AVAILABLE, WAITING, HOLDERS, DEAD\n"
     "  --raw                 one space between cells, no alignment; spaces in a cell as \\x20\n"
     "  --noheadings          no header line",
     {"--raw", "--noheadings"}, {"--output"}, 0, 0, cmd_ls},
    {"show", "show RESOURCE", "One resource in detail: limits and their state, the queue (ticket, pid, load, time\n"
     "waiting), the holders (pid, alive, permits, load, held for) and the counters with the wait histogram.",
     {}, {}, 1, 1, cmd_show},
    {"define", "define RESOURCE [--rpm N] [--tpm N] [--rate AMOUNT/PERIOD[,burst=B][,cost=load|request]]...\n"
     "                       [--concurrency N[,cost=load]]... [--replace]",
     "Defines RESOURCE with the given limits, all enforced at once; same meaning as rq_define.\n"
     "  --rpm N          N requests per minute; its bucket holds half a second's worth\n"
     "  --tpm N          N load units (tokens) per minute; its bucket holds the whole minute\n"
     "  --burst-seconds S  the bucket of --rpm and --tpm in seconds instead (0 < S <= 60)\n"
     "  --rate SPEC      AMOUNT/PERIOD, e.g. 1000/min, 5/250ms, 200k/min,cost=load,burst=5k\n"
     "  --concurrency N  at most N held at once; N,cost=load counts load in flight\n"
     "  --replace        swap in different limits (rate debt and permits in use carry over)\n"
     "  --local          with --redis: keep RESOURCE on this host only (not shared through Redis)\n"
     "  --local-share    global: while Redis cannot be reached, admit limit / hosts here\n"
     "                   instead of failing closed\n"
     "Amounts take k, M, G suffixes; periods ns, us, ms, s, min, h, day.",
     {"--replace", "--local", "--local-share"}, {"--rpm", "--tpm", "--rate", "--concurrency", "--burst-seconds"}, 1, 1, cmd_define},
    {"reset", "reset RESOURCE | --all [--hard --yes]",
     "Refills the rate buckets, drops holders that are dead and wakes the waiters; live holders keep\n"
     "their permits. --hard also forgets live holders' permits (their later release does nothing);\n"
     "it needs --yes.", {"--all", "--hard", "--yes"}, {}, 0, 1, cmd_reset},
    {"reap", "reap", "Reclaims now what dead processes hold (permits, places in line) and reports it.", {}, {}, 0, 0, cmd_reap},
    {"watch", "watch [RESOURCE] [--interval SECONDS] [--count N]",
     "A live view, refreshed every 0.5 s (--interval), with per-second admission, load and wait rates.\n"
     "Ctrl-C quits and restores the terminal. --count N stops after N frames.",
     {}, {"--interval", "--count"}, 0, 1, cmd_watch},
    {"metrics", "metrics", "Prometheus text exposition format (for node_exporter's textfile collector or a scrape).",
     {}, {}, 0, 0, cmd_metrics},
    {"destroy", "destroy [--force]", "Unlinks the segment. Refuses while live processes are attached, unless --force.",
     {"--force"}, {}, 0, 0, cmd_destroy},
    {"version", "version", "Prints rqctl's version and the layout version of the segment.", {}, {}, 0, 0, cmd_version},
};

const Command *find_command(std::string_view name) {
    for (const auto &c : kCommands) {
        if (name == c.name) return &c;
    }
    return nullptr;
}

void print_help() {
    fmt::print(
        "usage: rqctl [--segment NAME] [--redis URL] [--json [--pretty]] [--no-color] COMMAND [ARGS]\n\n"
        "Inspect, define, reset and monitor a live ratequeue segment.\n\n"
        "  --segment NAME  the segment (default: $RATEQUEUE_SEGMENT, else \"ratequeue\"): /dev/shm/NAME\n"
        "  --redis URL     many hosts: define global resources through this Redis (default:\n"
        "                  $RATEQUEUE_REDIS_URL); redis://[[user]:password@]host[:port][/db] or unix:///path\n"
        "  --json          machine-readable output (schema {}), compact; --pretty indents it\n"
        "  --no-color      no colour (colour is used only on a terminal, and never with NO_COLOR set)\n\n"
        "commands:\n",
        kJsonSchema);
    for (const auto &c : kCommands) {
        // The first sentence, whole (it may run over several lines of the help).
        std::string first(c.help);
        size_t end = first.find(". ");
        const size_t nl_end = first.find(".\n");
        end = std::min(end, nl_end);
        if (end != std::string::npos) first.resize(end + 1);
        first = first.substr(0, first.find("\n  "));  // (never the option list)
        for (char &ch : first) {
            if (ch == '\n') ch = ' ';
        }
        fmt::print("  {:<9} {}\n", c.name, first);
    }
    fmt::print("\n'rqctl COMMAND --help' describes one command. Exit status: 0 success, 1 error, 2 usage.\n");
}

void print_command_help(const Command &c) {
    fmt::print("usage: rqctl [--segment NAME] [--json [--pretty]] {}\n\n{}\n", c.synopsis, c.help);
}

Args parse_command_args(const Command &c, int argc, char **argv, int i) {
    Args a;
    for (; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            print_command_help(c);
            throw Fail{0, ""};
        }
        if (arg == "-o") arg = "--output";  // (lsipc's short form)
        if (arg.rfind("--", 0) == 0) {
            std::string value;
            size_t eq = arg.find('=');
            bool inline_value = eq != std::string::npos;
            if (inline_value) {
                value = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
            bool flag = std::find(c.flags.begin(), c.flags.end(), arg) != c.flags.end();
            bool valued = std::find(c.valued.begin(), c.valued.end(), arg) != c.valued.end();
            if (!flag && !valued) usage(fmt::format("{}: unknown option '{}' (rqctl {} --help lists them)", c.name, arg, c.name));
            if (flag && inline_value) usage(fmt::format("{}: option '{}' takes no value", c.name, arg));
            if (valued && !inline_value) {
                if (i + 1 >= argc) usage(fmt::format("{}: option '{}' needs a value", c.name, arg));
                value = argv[++i];
            }
            a.options[arg].push_back(value);
            continue;
        }
        a.positional.push_back(arg);
    }
    if (a.positional.size() < c.min_args || a.positional.size() > c.max_args) {
        usage(fmt::format("usage: rqctl {}", c.synopsis));
    }
    return a;
}

// Whether --json was asked for anywhere on the line (for main's error output).
bool g_json = false;

int run(int argc, char **argv) {
    Ctx ctx;
    const char *env = std::getenv("RATEQUEUE_SEGMENT");
    ctx.segment = env && *env ? env : "ratequeue";
    bool no_color = std::getenv("NO_COLOR") != nullptr;
    // The global options go anywhere, before or after the command (as
    // `rqctl ls --json`); everything else is the command and its arguments.
    std::vector<char *> rest{argv[0]};
    bool help = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&](const char *opt, const char *what) -> std::string {
            const std::string eq = std::string(opt) + "=";
            if (arg.rfind(eq, 0) == 0) return arg.substr(eq.size());
            if (i + 1 >= argc) usage(fmt::format("{} needs {}", opt, what));
            return argv[++i];
        };
        if (arg == "--json") {
            ctx.json = g_json = true;
        } else if (arg == "--pretty") {
            ctx.pretty = true;
        } else if (arg == "--no-color") {
            no_color = true;
        } else if (arg == "--segment" || arg.rfind("--segment=", 0) == 0) {
            ctx.segment = value("--segment", "a name");
        } else if (arg == "--redis" || arg.rfind("--redis=", 0) == 0) {
            ctx.redis = value("--redis", "a URL (redis://host:port or unix:///path)");
        } else if ((arg == "--help" || arg == "-h") && rest.size() == 1) {
            help = true;
        } else {
            rest.push_back(argv[i]);
        }
    }
    if (help) {
        print_help();
        return 0;
    }
    if (ctx.pretty && !ctx.json) usage("--pretty goes with --json");
    if (rest.size() < 2) usage("no command given (rqctl --help lists them)");
    if (rest[1][0] == '-') usage(fmt::format("unknown option '{}' (rqctl --help lists them)", rest[1]));
    const Command *c = find_command(rest[1]);
    if (c == nullptr) usage(fmt::format("unknown command '{}' (rqctl --help lists them)", rest[1]));
    Args a = parse_command_args(*c, static_cast<int>(rest.size()), rest.data(), 2);
    ctx.tty = isatty(STDOUT_FILENO) != 0;
    const char *term = std::getenv("TERM");
    ctx.style.on = ctx.tty && !no_color && !ctx.json && !(term && std::strcmp(term, "dumb") == 0);
    c->run(ctx, a);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(argc, argv);
    } catch (const Fail &f) {
        if (g_json && !f.message.empty()) {
            // Asked for JSON: the error is JSON too, on standard output.
            Json j(false);
            j.begin_object().str("schema", kJsonSchema).begin_object("error").str("message", f.message)
                .num("exit_status", f.status).end_object().end_object();
            fmt::print("{}", j.text());
            return f.status;
        }
        if (!f.message.empty()) {
            fmt::print(stderr, "rqctl: {}\n", f.message);
            if (f.status == 2 && f.message.rfind("usage:", 0) != 0 && f.message.find("--help") == std::string::npos) {
                fmt::print(stderr, "(rqctl --help lists commands and options)\n");
            }
        }
        return f.status;
    } catch (const std::exception &e) {
        fmt::print(stderr, "rqctl: internal error: {}\n", e.what());
        return 1;
    }
}
