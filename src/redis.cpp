// The connection to Redis (redis.hpp): URL parsing, connecting with a
// deadline, AUTH, SELECT, the version check, EVALSHA with cluster
// redirections, and the checks on every reply.
#include "redis.hpp"

#include "clock.hpp"
#include "ratequeue/ratequeue.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <sys/time.h>

namespace rq::detail {

namespace {

// Redis 5 is the first whose scripts may call TIME and then write (script
// effects replication is on by default there).
constexpr int kMinRedisMajor = 5;
// Redirections followed by one call (a cluster resharding moves a slot once).
constexpr int kMaxRedirects = 3;

bool parse_int(std::string_view s, int &out, int lo, int hi) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
    out = v;
    return true;
}

timeval tv_until(int64_t deadline) {
    int64_t left = deadline - now_ns();
    if (left < 1000) left = 1000;  // 1 us: hiredis treats 0 as "no timeout"
    return timeval{static_cast<time_t>(left / 1000000000), static_cast<suseconds_t>(left % 1000000000 / 1000)};
}

struct ReplyPtr {
    redisReply *r = nullptr;
    ~ReplyPtr() {
        if (r != nullptr) freeReplyObject(r);
    }
};

redisReply *command(redisContext *c, const std::vector<std::string> &argv) {
    std::vector<const char *> a;
    std::vector<size_t> l;
    for (const auto &s : argv) {
        a.push_back(s.data());
        l.push_back(s.size());
    }
    return static_cast<redisReply *>(redisCommandArgv(c, static_cast<int>(a.size()), a.data(), l.data()));
}

std::string reply_error(const redisReply *r) {
    return r->str != nullptr ? std::string(r->str, std::min<size_t>(r->len, 200)) : std::string("error");
}

bool starts_with(const std::string &s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

int parse_redis_url(std::string_view url, RedisUrl &out, std::string &why) {
    out = RedisUrl{};
    auto bad = [&](const char *reason) {
        why = std::string("malformed Redis URL (") + reason + "): expected redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]";
        return RQ_EINVAL;
    };
    if (url.size() > 1024) return bad("too long");
    for (char ch : url) {
        if (ch <= 0x20 || ch >= 0x7f) return bad("a space or control character");
    }
    if (url.rfind("unix://", 0) == 0) {
        std::string_view rest = url.substr(7);
        size_t q = rest.find('?');
        std::string_view path = rest.substr(0, q);
        if (path.empty() || path[0] != '/') return bad("the socket path must be absolute");
        out.unix_socket = true;
        out.path = std::string(path);
        if (q != std::string_view::npos) {
            std::string_view query = rest.substr(q + 1);
            if (query.rfind("db=", 0) != 0 || !parse_int(query.substr(3), out.db, 0, 1 << 20)) return bad("query");
        }
        out.text = std::string(url);
        return 0;
    }
    if (url.rfind("redis://", 0) != 0) return bad("scheme");
    std::string_view rest = url.substr(8);
    size_t slash = rest.find('/');
    std::string_view auth_host = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        std::string_view db = rest.substr(slash + 1);
        if (!db.empty() && !parse_int(db, out.db, 0, 1 << 20)) return bad("database number");
    }
    size_t at = auth_host.rfind('@');
    std::string_view hostport = auth_host;
    std::string shown = "redis://";
    if (at != std::string_view::npos) {
        std::string_view cred = auth_host.substr(0, at);
        hostport = auth_host.substr(at + 1);
        size_t colon = cred.find(':');
        if (colon == std::string_view::npos) return bad("credentials need user:password or :password");
        out.user = std::string(cred.substr(0, colon));
        out.password = std::string(cred.substr(colon + 1));
        shown += out.user + ":***@";
    }
    if (hostport.empty()) return bad("no host");
    size_t colon = hostport.rfind(':');
    if (!hostport.empty() && hostport[0] == '[') {  // [v6]:port
        size_t close = hostport.find(']');
        if (close == std::string_view::npos) return bad("IPv6 address");
        out.host = std::string(hostport.substr(1, close - 1));
        std::string_view tail = hostport.substr(close + 1);
        if (!tail.empty() && (tail[0] != ':' || !parse_int(tail.substr(1), out.port, 1, 65535))) return bad("port");
    } else if (colon != std::string_view::npos) {
        out.host = std::string(hostport.substr(0, colon));
        if (!parse_int(hostport.substr(colon + 1), out.port, 1, 65535)) return bad("port");
    } else {
        out.host = std::string(hostport);
    }
    if (out.host.empty()) return bad("no host");
    shown += std::string(hostport);
    if (out.db != 0) {
        shown += '/';
        shown += std::to_string(out.db);
    }
    out.text = shown;
    return 0;
}

RedisLink::RedisLink(RedisUrl url) : url_(std::move(url)) {}

RedisLink::~RedisLink() {
    for (auto &n : nodes_) {
        if (n.second != nullptr) redisFree(n.second);
    }
}

void RedisLink::drop(const std::string &addr) {
    auto it = nodes_.find(addr);
    if (it == nodes_.end()) return;
    if (it->second != nullptr) redisFree(it->second);
    nodes_.erase(it);
    sha_.erase(addr);
}

redisContext *RedisLink::connect(const std::string &addr, int64_t deadline, std::string &why) {
    auto it = nodes_.find(addr);
    if (it != nodes_.end() && it->second != nullptr && it->second->err == 0) return it->second;
    drop(addr);
    const timeval tv = tv_until(deadline);
    redisContext *c;
    std::string where;
    if (addr.empty() && url_.unix_socket) {
        c = redisConnectUnixWithTimeout(url_.path.c_str(), tv);
        where = url_.text;
    } else {
        std::string host = url_.host;
        int port = url_.port;
        if (!addr.empty()) {
            size_t colon = addr.rfind(':');
            host = addr.substr(0, colon);
            if (colon == std::string::npos || !parse_int(std::string_view(addr).substr(colon + 1), port, 1, 65535)) {
                why = "Redis redirected us to a bad address: " + addr;
                return nullptr;
            }
        }
        c = redisConnectWithTimeout(host.c_str(), port, tv);
        where = host + ":" + std::to_string(port);
    }
    if (c == nullptr) {
        why = "cannot connect to Redis at " + where + ": out of memory";
        return nullptr;
    }
    if (c->err != 0) {
        why = "cannot connect to Redis at " + where + ": " + c->errstr;
        redisFree(c);
        return nullptr;
    }
    auto fail = [&](const std::string &what) -> redisContext * {
        why = "Redis at " + where + ": " + what;
        redisFree(c);
        return nullptr;
    };
    const timeval io = tv_until(deadline);
    if (redisSetTimeout(c, io) != REDIS_OK) return fail("cannot set the socket timeout");
    if (!url_.password.empty()) {
        std::vector<std::string> argv{"AUTH"};
        if (!url_.user.empty()) argv.push_back(url_.user);
        argv.push_back(url_.password);
        ReplyPtr r{command(c, argv)};
        if (r.r == nullptr) return fail(std::string("AUTH: ") + c->errstr);
        if (r.r->type == REDIS_REPLY_ERROR) return fail("authentication refused (" + reply_error(r.r) + "): check the password in the URL");
    }
    if (url_.db != 0 && addr.empty()) {
        ReplyPtr r{command(c, {"SELECT", std::to_string(url_.db)})};
        if (r.r == nullptr) return fail(std::string("SELECT: ") + c->errstr);
        if (r.r->type == REDIS_REPLY_ERROR) return fail("SELECT " + std::to_string(url_.db) + " refused: " + reply_error(r.r));
    }
    {
        ReplyPtr r{command(c, {"INFO", "server"})};
        if (r.r == nullptr) return fail(std::string("INFO: ") + c->errstr);
        if (r.r->type == REDIS_REPLY_ERROR) {
            const std::string e = reply_error(r.r);
            if (starts_with(e, "NOAUTH")) return fail("it needs a password: put it in the URL (redis://:PASSWORD@host:port)");
            return fail("INFO refused: " + e);
        }
        if (r.r->type != REDIS_REPLY_STRING && r.r->type != REDIS_REPLY_STATUS) return fail("INFO: unexpected reply type");
        std::string_view info(r.r->str, r.r->len);
        size_t p = info.find("redis_version:");
        int major = 0;
        if (p != std::string_view::npos) {
            std::string_view v = info.substr(p + 14);
            v = v.substr(0, std::min(v.find('.'), v.size()));
            if (!parse_int(v, major, 0, 1000)) major = 0;
        }
        if (major < kMinRedisMajor) {
            return fail("Redis " + std::to_string(major) + " is too old: ratequeue needs Redis " +
                        std::to_string(kMinRedisMajor) + " or later (scripts that read TIME)");
        }
    }
    nodes_[addr] = c;
    return c;
}

RedisResult RedisLink::eval(const std::string &script, const std::string &tag, const std::vector<std::string> &keys,
                            const std::vector<std::string> &args, int64_t deadline) {
    RedisResult out;
    out.rc = RQ_EUNAVAIL;
    auto known = tag_node_.find(tag);
    std::string addr = known != tag_node_.end() ? known->second : std::string();
    bool asking = false;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
        if (now_ns() >= deadline) {
            out.error = "Redis did not answer in time";
            return out;
        }
        redisContext *c = connect(addr, deadline, out.error);
        if (c == nullptr) return out;
        if (redisSetTimeout(c, tv_until(deadline)) != REDIS_OK) {
            drop(addr);
            out.error = "cannot set the socket timeout";
            return out;
        }
        std::string &sha = sha_[addr];
        if (sha.empty()) {
            ReplyPtr r{command(c, {"SCRIPT", "LOAD", script})};
            if (r.r == nullptr || r.r->type != REDIS_REPLY_STRING || r.r->len != 40) {
                out.error = r.r == nullptr ? std::string("SCRIPT LOAD: ") + c->errstr
                            : r.r->type == REDIS_REPLY_ERROR ? "SCRIPT LOAD refused: " + reply_error(r.r)
                                                             : "SCRIPT LOAD: unexpected reply";
                drop(addr);
                return out;
            }
            sha.assign(r.r->str, r.r->len);
        }
        if (asking) {
            ReplyPtr r{command(c, {"ASKING"})};
            if (r.r == nullptr) {
                out.error = std::string("ASKING: ") + c->errstr;
                drop(addr);
                return out;
            }
        }
        std::vector<std::string> argv{"EVALSHA", sha, std::to_string(keys.size())};
        argv.insert(argv.end(), keys.begin(), keys.end());
        argv.insert(argv.end(), args.begin(), args.end());
        const int64_t t0 = now_ns();
        ReplyPtr r{command(c, argv)};
        const int64_t t1 = now_ns();
        if (r.r == nullptr) {
            out.error = std::string("Redis: ") + (c->errstr[0] != '\0' ? c->errstr : "connection lost");
            if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) out.error = "Redis did not answer in time";
            drop(addr);
            return out;
        }
        if (r.r->type == REDIS_REPLY_ERROR) {
            const std::string e = reply_error(r.r);
            if (starts_with(e, "NOSCRIPT")) {
                sha.clear();
                continue;
            }
            if (starts_with(e, "MOVED ") || starts_with(e, "ASK ")) {
                // "MOVED <slot> <host>:<port>"
                size_t sp = e.rfind(' ');
                addr = e.substr(sp + 1);
                asking = starts_with(e, "ASK ");
                if (!asking) tag_node_[tag] = addr;
                continue;
            }
            if (starts_with(e, "RQCONFLICT")) {
                out.rc = RQ_ECONFLICT;
                out.error = "defined differently in Redis: " + e.substr(std::min<size_t>(e.size(), 11));
                return out;
            }
            if (starts_with(e, "NOAUTH")) {
                drop(addr);
                out.error = "Redis needs a password: put it in the URL (redis://:PASSWORD@host:port)";
                return out;
            }
            out.error = "Redis refused the lease script: " + e;
            if (e.find("WRONGTYPE") != std::string::npos || e.find("not an integer") != std::string::npos ||
                e.find("RQFOREIGN") != std::string::npos) {
                out.error = "keys under rq:{...} hold data that is not ratequeue's (" + e + "): delete them or use another database";
            }
            return out;
        }
        if (r.r->type != REDIS_REPLY_ARRAY || r.r->elements > 1024) {
            out.error = "Redis answered the lease script with an unexpected reply";
            return out;
        }
        out.ints.clear();
        for (size_t i = 0; i < r.r->elements; ++i) {
            const redisReply *e = r.r->element[i];
            if (e == nullptr || e->type != REDIS_REPLY_INTEGER) {
                out.ints.clear();
                out.error = "Redis answered the lease script with a non-integer";
                return out;
            }
            out.ints.push_back(e->integer);
        }
        out.rc = RQ_OK;
        out.rtt_ns = t1 - t0;
        return out;
    }
    out.error = "Redis redirected the call too many times (cluster resharding?)";
    return out;
}

}  // namespace rq::detail
