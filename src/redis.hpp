// Many hosts: the connection to Redis (hiredis), and nothing else.
//
// The network is hostile input too: every reply is checked for its type and
// shape before use, every call has a deadline (connect, send and receive),
// and a call that fails for any reason leaves the connection closed, to be
// opened again by the next call. Redis Cluster is followed through MOVED and
// ASK redirections; every key of one resource shares one hash tag, so one
// call touches one node.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;

namespace rq::detail {

struct RedisUrl {
    bool unix_socket = false;
    std::string host;   // TCP
    int port = 6379;
    std::string path;   // unix socket
    std::string user;   // ACL user (with a password)
    std::string password;
    int db = 0;
    std::string text;   // the URL without its password, for messages
};

// redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N].
// RQ_EINVAL with the reason in `why` when malformed.
int parse_redis_url(std::string_view url, RedisUrl &out, std::string &why);

// The outcome of one call.
struct RedisResult {
    int rc = 0;                  // RQ_OK, RQ_EUNAVAIL (no answer, or an answer we cannot use),
                                 // RQ_ECONFLICT (the script refused a different definition)
    std::vector<int64_t> ints;   // RQ_OK: the script's array of integers
    std::string error;           // otherwise: what went wrong, for people
    int64_t rtt_ns = 0;          // RQ_OK: the round trip
};

class RedisLink {
public:
    explicit RedisLink(RedisUrl url);
    ~RedisLink();
    RedisLink(const RedisLink &) = delete;
    RedisLink &operator=(const RedisLink &) = delete;

    // EVALSHA of `script` (loaded with SCRIPT LOAD on first use, and again
    // after a NOSCRIPT) with keys and args, on the node that owns the keys
    // (hash tag `tag`), finished by `deadline` (CLOCK_MONOTONIC ns). The
    // reply must be an array of integers.
    RedisResult eval(const std::string &script, const std::string &tag, const std::vector<std::string> &keys,
                     const std::vector<std::string> &args, int64_t deadline);

    const RedisUrl &url() const { return url_; }

private:
    // The connection to address `addr` ("" for the URL's own), opened (with
    // AUTH, SELECT and the version check) when needed.
    redisContext *connect(const std::string &addr, int64_t deadline, std::string &why);
    void drop(const std::string &addr);

    RedisUrl url_;
    std::map<std::string, redisContext *> nodes_;  // by address
    std::map<std::string, std::string> tag_node_;  // hash tag -> address (cluster)
    std::map<std::string, std::string> sha_;       // address -> SHA-1 of the loaded script
};

}  // namespace rq::detail
