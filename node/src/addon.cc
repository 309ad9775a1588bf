// The Node-API addon: a thin shell over the C ABI (include/ratequeue/ratequeue.h).
// lib/index.ts builds the public API on it; nothing here throws for a library
// error: calls return 0 or a negative RQ_E* code (or a non-negative result),
// and lib/index.ts turns codes into typed errors. Only a wrong argument type
// (a bug in lib/index.ts) throws a TypeError.
//
// Waiting never blocks the event loop: a waiting acquire takes a ticket
// (rq_enqueue), and one thread per resource per client waits on its earliest
// ticket (rq_wait), as Python's ratequeue.aio does. Tickets are served in
// order, so later tickets keep their places without a thread. Results come
// back to the loop through one thread-safe function per client. It holds the
// loop only while an acquire of that client waits (as a pending fetch does):
// an idle client never keeps the process alive, and process.exit() with
// acquires pending exits at once (their tickets leave their lines).
// rq_cancel (a timeout, an AbortSignal, the client's close, the process's
// exit) takes a ticket out of the line at once, at the head or in the middle.
//
// Permits live in a slab owned by the client and are named by their index,
// so the hot path moves only small integers across the boundary.
#include <napi.h>

#include <ratequeue/ratequeue.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

// A lane's thread exits after this long with nothing to wait on.
constexpr auto kIdleExit = std::chrono::seconds(5);
constexpr int kEinval = RQ_EINVAL;

class Client;
struct Lane;

struct Waiter {
    rq_ticket ticket{};  // at one address from rq_enqueue until finished (the Waiter is heap-only)
    uint64_t load = 0;
    double id = 0;
    Lane *lane = nullptr;
    bool gave_up = false;  // under the lane's mutex
};

struct Delivery {
    double id;
    int rc;
    rq_permit permit;
};

void deliver_js(Napi::Env env, Napi::Function callback, Client *client, Delivery *d);
using Tsfn = Napi::TypedThreadSafeFunction<Client, Delivery, deliver_js>;

// One resource's line, as seen by one client: its tickets in ticket order and
// the thread that waits on the earliest.
struct Lane {
    rq_client *c = nullptr;
    std::string name;
    Tsfn tsfn;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Waiter>> pending;
    std::shared_ptr<Waiter> current;
    std::thread thread;
    bool running = false;
    bool closed = false;

    void run() {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
            while (pending.empty() && !closed) {
                if (cv.wait_for(lock, kIdleExit) == std::cv_status::timeout && pending.empty()) break;
            }
            if (pending.empty()) break;  // idle, or closed and drained
            std::shared_ptr<Waiter> w = pending.front();
            pending.pop_front();
            if (w->gave_up) continue;  // rq_cancel already took it out of the line
            current = w;
            lock.unlock();
            rq_permit permit{};
            const int rc = rq_wait(c, &w->ticket, -1, &permit);
            lock.lock();
            current.reset();
            auto *d = new Delivery{w->id, rc, permit};
            if (tsfn.NonBlockingCall(d) != napi_ok) {  // the environment is going away
                if (rc == RQ_OK) rq_release(c, &d->permit);
                delete d;
            }
        }
        running = false;
    }

    // Cancels every ticket and joins the thread. The lane takes no new ticket after.
    void close() {
        std::thread t;
        {
            std::lock_guard<std::mutex> lock(mu);
            closed = true;
            for (auto &w : pending) {
                w->gave_up = true;
                rq_cancel(c, &w->ticket);
            }
            pending.clear();
            if (current) {
                current->gave_up = true;
                rq_cancel(c, &current->ticket);  // wakes rq_wait: RQ_ECANCELED
            }
            t = std::move(thread);
            cv.notify_all();
        }
        if (t.joinable()) t.join();
    }
};

class Client : public Napi::ObjectWrap<Client> {
public:
    static Napi::Function Define(Napi::Env env) {
        return DefineClass(env, "NativeClient",
                           {InstanceMethod<&Client::Close>("close"),
                            InstanceMethod<&Client::DefineResource>("define"),
                            InstanceMethod<&Client::Describe>("describe"),
                            InstanceMethod<&Client::Resolve>("resolve"),
                            InstanceMethod<&Client::TryAcquire>("tryAcquire"),
                            InstanceMethod<&Client::Release>("release"),
                            InstanceMethod<&Client::Settle>("settle"),
                            InstanceMethod<&Client::Enqueue>("enqueue"),
                            InstanceMethod<&Client::Cancel>("cancel"),
                            InstanceMethod<&Client::Penalize>("penalize"),
                            InstanceMethod<&Client::Observe>("observe"),
                            InstanceMethod<&Client::PredictWait>("predictWait"),
                            InstanceMethod<&Client::RemoteError>("remoteError"),
                            InstanceMethod<&Client::Held>("held"),
                            InstanceMethod<&Client::Threads>("threads"),
                            InstanceMethod<&Client::Id>("id")});
    }

    // new NativeClient(segment | null, redisUrl | null, leaseTtlMs, group, onDelivery)
    explicit Client(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Client>(info) {
        Napi::Env env = info.Env();
        if (info.Length() < 5 || !info[4].IsFunction()) {
            Napi::TypeError::New(env, "NativeClient(segment, redisUrl, leaseTtlMs, group, onDelivery)")
                .ThrowAsJavaScriptException();
            return;
        }
        std::string segment, url;
        const bool has_segment = info[0].IsString(), has_url = info[1].IsString();
        if (has_segment) segment = info[0].As<Napi::String>().Utf8Value();
        if (has_url) url = info[1].As<Napi::String>().Utf8Value();
        rq_open_options o{};
        o.size = sizeof o;
        o.flags = info[3].ToBoolean().Value() ? RQ_OPEN_GROUP : 0u;
        o.lease_ttl_ms = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0u;
        o.redis_url = has_url ? url.c_str() : nullptr;
        const int rc = rq_open_ex(has_segment ? segment.c_str() : nullptr, &o, &c_);
        if (rc != RQ_OK) {
            c_ = nullptr;
            Napi::Error e = Napi::Error::New(env, rq_strerror(rc));
            e.Set("rqCode", Napi::Number::New(env, rc));
            e.ThrowAsJavaScriptException();
            return;
        }
        tsfn_ = Tsfn::New(env, info[4].As<Napi::Function>(), "ratequeue-wait", 0, 1, this);
        tsfn_.Unref(env);  // held again only while an acquire waits (waiting())
        open_clients().push_back(this);
        id_ = static_cast<double>(by_id().size());
        by_id().push_back(this);
    }

    ~Client() override {
        close();
        if (id_ >= 0) by_id()[static_cast<size_t>(id_)] = nullptr;  // (a held Permit keeps its Client alive)
    }

    // Every open client of this environment, closed when it is torn down (the
    // process exits): tickets leave their lines, lane threads are joined.
    static std::vector<Client *> &open_clients() {
        static std::vector<Client *> v;  // only touched on the JS thread
        return v;
    }

    // Clients by id, for the hot path's plain functions (acquireNow, releaseNow):
    // a plain function call is cheaper than an ObjectWrap method's unwrap.
    static std::vector<Client *> &by_id() {
        static std::vector<Client *> v;  // only touched on the JS thread; slots are never reused
        return v;
    }
    static Client *from_id(napi_env env, napi_value v) {
        double d = -1;
        napi_get_value_double(env, v, &d);
        auto &ids = by_id();
        if (!(d >= 0) || d >= static_cast<double>(ids.size())) return nullptr;
        return ids[static_cast<size_t>(d)];
    }
    double id() const { return id_; }

    // The hot path's work, shared by the methods and the plain functions.
    int32_t acquire_now(double h, double load) {
        if (c_ == nullptr || !(h >= 0) || h >= static_cast<double>(handles_.size()) || !(load >= 1) ||
            load > static_cast<double>(RQ_MAX_AMOUNT)) {
            return kEinval;
        }
        rq_permit p;
        const int rc = rq_acquire_r(c_, &handles_[static_cast<size_t>(h)], static_cast<uint64_t>(load), 0, &p);
        return rc == RQ_OK ? store(p) : rc;
    }
    int32_t release_now(double d) {
        if (!(d >= 0) || d >= static_cast<double>(permits_.size())) return kEinval;
        const auto slot = static_cast<int32_t>(d);
        if (!used_[slot]) return kEinval;
        used_[slot] = 0;
        free_.push_back(slot);
        return c_ == nullptr ? RQ_OK : rq_release(c_, &permits_[slot]);  // after rq_close: given back
    }

    void close() {
        if (c_ == nullptr) return;
        for (auto &kv : lanes_) kv.second->close();  // no rq_wait runs after this
        lanes_.clear();
        waiters_.clear();
        waiting_ = 0;
        tsfn_.Release();
        rq_close(c_);
        c_ = nullptr;
        auto &v = open_clients();
        for (auto it = v.begin(); it != v.end(); ++it) {
            if (*it == this) {
                v.erase(it);
                break;
            }
        }
    }

    bool is_open() const { return c_ != nullptr; }

    // A ticket's result reached the loop: it is finished.
    void finished(Napi::Env env, double id) {
        if (waiters_.erase(id) != 0) waiting(env, -1);
    }

    // The loop is held while any acquire waits, and only then.
    void waiting(Napi::Env env, int delta) {
        const size_t before = waiting_;
        waiting_ = static_cast<size_t>(static_cast<long>(waiting_) + delta);
        if (c_ == nullptr) return;
        if (before == 0 && waiting_ > 0) tsfn_.Ref(env);
        if (before > 0 && waiting_ == 0) tsfn_.Unref(env);
    }

    // A permit in a free slot of the slab (on the JS thread only).
    int32_t store(const rq_permit &p) {
        int32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else {
            slot = static_cast<int32_t>(permits_.size());
            permits_.emplace_back();
            used_.push_back(0);
        }
        permits_[slot] = p;
        used_[slot] = 1;
        return slot;
    }

private:
    rq_client *c_ = nullptr;
    double id_ = -1;
    Tsfn tsfn_;
    std::vector<rq_resource> handles_;
    std::vector<rq_permit> permits_;
    std::vector<uint8_t> used_;
    std::vector<int32_t> free_;
    std::map<std::string, std::unique_ptr<Lane>> lanes_;
    std::unordered_map<double, std::shared_ptr<Waiter>> waiters_;  // id -> waiter, until it is finished
    size_t waiting_ = 0;                                             // == waiters_.size()

    static Napi::Number num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

    bool closed_error(const Napi::CallbackInfo &info, Napi::Value *out) {
        if (c_ != nullptr) return false;
        *out = num(info.Env(), kEinval);
        return true;
    }

    static bool arg_string(const Napi::CallbackInfo &info, size_t i, std::string *s) {
        if (info.Length() <= i || !info[i].IsString()) {
            Napi::TypeError::New(info.Env(), "expected a string argument").ThrowAsJavaScriptException();
            return false;
        }
        *s = info[i].As<Napi::String>().Utf8Value();
        return true;
    }

    static bool arg_number(const Napi::CallbackInfo &info, size_t i, double *d) {
        if (info.Length() <= i || !info[i].IsNumber()) {
            Napi::TypeError::New(info.Env(), "expected a number argument").ThrowAsJavaScriptException();
            return false;
        }
        *d = info[i].As<Napi::Number>().DoubleValue();
        return true;
    }

    // A slot index naming a held permit, or -1.
    int32_t slot_of(const Napi::CallbackInfo &info) const {
        double d = -1;
        if (info.Length() < 1 || napi_get_value_double(info.Env(), info[0], &d) != napi_ok) return -1;
        if (!(d >= 0) || d >= static_cast<double>(permits_.size())) return -1;
        const auto slot = static_cast<int32_t>(d);
        return used_[slot] ? slot : -1;
    }

    Napi::Value Close(const Napi::CallbackInfo &info) {
        close();
        return info.Env().Undefined();
    }

    // define(name, [{kind, cost, amount, periodNs: bigint, burst}], flags) -> rc
    Napi::Value DefineResource(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        if (!arg_string(info, 0, &name)) return env.Undefined();
        if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsNumber()) {
            Napi::TypeError::New(env, "define(name, limits, flags)").ThrowAsJavaScriptException();
            return env.Undefined();
        }
        auto arr = info[1].As<Napi::Array>();
        std::vector<rq_limit> limits;
        for (uint32_t i = 0; i < arr.Length() && i < RQ_MAX_LIMITS + 1; ++i) {
            auto o = arr.Get(i).As<Napi::Object>();
            rq_limit l{};
            l.kind = o.Get("kind").As<Napi::Number>().Uint32Value();
            l.cost = o.Get("cost").As<Napi::Number>().Uint32Value();
            l.amount = static_cast<uint64_t>(o.Get("amount").As<Napi::Number>().DoubleValue());
            bool lossless = true;
            Napi::Value p = o.Get("periodNs");
            l.period_ns = p.IsBigInt() ? p.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
            l.burst = static_cast<uint64_t>(o.Get("burst").As<Napi::Number>().DoubleValue());
            if (!lossless) return num(env, kEinval);
            limits.push_back(l);
        }
        const uint32_t flags = info[2].As<Napi::Number>().Uint32Value();
        return num(env, rq_define(c_, name.c_str(), limits.data(), limits.size(), flags));
    }

    // describe(name) -> [{kind, cost, amount, periodNs, burst}] or rc
    Napi::Value Describe(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        if (!arg_string(info, 0, &name)) return env.Undefined();
        rq_limit limits[RQ_MAX_LIMITS];
        size_t n = 0;
        const int rc = rq_describe(c_, name.c_str(), limits, RQ_MAX_LIMITS, &n);
        if (rc != RQ_OK) return num(env, rc);
        auto arr = Napi::Array::New(env, n);
        for (size_t i = 0; i < n; ++i) {
            auto o = Napi::Object::New(env);
            o.Set("kind", num(env, limits[i].kind));
            o.Set("cost", num(env, limits[i].cost));
            o.Set("amount", num(env, static_cast<double>(limits[i].amount)));
            o.Set("periodNs", Napi::BigInt::New(env, limits[i].period_ns));
            o.Set("burst", num(env, static_cast<double>(limits[i].burst)));
            arr.Set(static_cast<uint32_t>(i), o);
        }
        return arr;
    }

    // resolve(name) -> handle index (>= 0) or rc
    Napi::Value Resolve(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        if (!arg_string(info, 0, &name)) return env.Undefined();
        rq_resource h{};
        const int rc = rq_resolve(c_, name.c_str(), &h);
        if (rc != RQ_OK) return num(env, rc);
        handles_.push_back(h);
        return num(env, static_cast<double>(handles_.size() - 1));
    }

    // tryAcquire(handle, load) -> permit slot (>= 0) or rc (a wrong type reads as
    // NaN: RQ_EINVAL). lib/index.ts calls acquireNow, the same as a plain function.
    Napi::Value TryAcquire(const Napi::CallbackInfo &info) {
        double h = -1, load = 0;
        if (info.Length() >= 2) {
            napi_get_value_double(info.Env(), info[0], &h);
            napi_get_value_double(info.Env(), info[1], &load);
        }
        return Napi::Number::New(info.Env(), acquire_now(h, load));
    }

    // release(slot) -> rc; the slot is free afterwards whatever the result
    Napi::Value Release(const Napi::CallbackInfo &info) {
        double d = -1;
        if (info.Length() >= 1) napi_get_value_double(info.Env(), info[0], &d);
        return Napi::Number::New(info.Env(), release_now(d));
    }

    Napi::Value Id(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), id_); }

    // settle(slot, actual) -> rc
    Napi::Value Settle(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        const int32_t slot = slot_of(info);
        double actual;
        if (slot < 0 || !arg_number(info, 1, &actual)) return num(env, kEinval);
        if (!(actual >= 0) || actual > static_cast<double>(RQ_MAX_AMOUNT)) return num(env, kEinval);
        return num(env, rq_settle(c_, &permits_[slot], static_cast<uint64_t>(actual)));
    }

    // enqueue(name, load, id) -> rc; the result comes to onDelivery(id, rc, slot)
    Napi::Value Enqueue(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        double load, id;
        if (!arg_string(info, 0, &name) || !arg_number(info, 1, &load) || !arg_number(info, 2, &id)) {
            return env.Undefined();
        }
        if (!(load >= 1) || load > static_cast<double>(RQ_MAX_AMOUNT)) return num(env, kEinval);
        auto &lane = lanes_[name];
        if (!lane) {
            lane = std::make_unique<Lane>();
            lane->c = c_;
            lane->name = name;
            lane->tsfn = tsfn_;
        }
        auto w = std::make_shared<Waiter>();
        w->load = static_cast<uint64_t>(load);
        w->id = id;
        w->lane = lane.get();
        std::lock_guard<std::mutex> lock(lane->mu);  // the deque stays in ticket order
        const int rc = rq_enqueue(c_, name.c_str(), w->load, &w->ticket);
        if (rc != RQ_OK) return num(env, rc);
        lane->pending.push_back(w);
        waiters_[id] = w;
        waiting(env, +1);
        if (!lane->running) {
            if (lane->thread.joinable()) lane->thread.join();  // it has exited (running is false)
            lane->running = true;
            try {
                lane->thread = std::thread([l = lane.get()] { l->run(); });
            } catch (...) {
                lane->running = false;
                lane->pending.pop_back();
                waiters_.erase(id);
                waiting(env, -1);
                rq_cancel(c_, &w->ticket);  // never leave a place in line nobody serves
                return num(env, RQ_ESYS);
            }
        } else {
            lane->cv.notify_one();
        }
        return num(env, RQ_OK);
    }

    // cancel(id) -> rc: the ticket leaves the line (a grant that raced it is
    // delivered anyway, and lib/index.ts releases it)
    Napi::Value Cancel(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        double id;
        if (!arg_number(info, 0, &id)) return env.Undefined();
        auto it = waiters_.find(id);
        if (it == waiters_.end() || c_ == nullptr) return num(env, RQ_OK);
        std::shared_ptr<Waiter> w = it->second;
        waiters_.erase(it);
        waiting(env, -1);
        {
            std::lock_guard<std::mutex> lock(w->lane->mu);
            w->gave_up = true;  // the lane skips it if it has not started waiting on it
        }
        // The Waiter (and its ticket) outlives a concurrent rq_wait: the lane holds it as `current`.
        return num(env, rq_cancel(c_, &w->ticket));
    }

    Napi::Value Penalize(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        double ns;
        if (!arg_string(info, 0, &name) || !arg_number(info, 1, &ns)) return env.Undefined();
        if (!(ns >= 0) || ns > 9.2e18) return num(env, kEinval);
        return num(env, rq_penalize(c_, name.c_str(), static_cast<int64_t>(ns)));
    }

    // observe(name, limitIndex, remaining, resetNs) -> rc
    Napi::Value Observe(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        double index, remaining, reset_ns;
        if (!arg_string(info, 0, &name) || !arg_number(info, 1, &index) || !arg_number(info, 2, &remaining) ||
            !arg_number(info, 3, &reset_ns)) {
            return env.Undefined();
        }
        if (!(index >= 0 && index < RQ_MAX_LIMITS) || !(remaining >= 0) || !(reset_ns >= 0) || reset_ns > 9.2e18) {
            return num(env, kEinval);
        }
        const double rem = remaining > static_cast<double>(RQ_MAX_AMOUNT) ? static_cast<double>(RQ_MAX_AMOUNT)
                                                                           : remaining;
        return num(env, rq_observe(c_, name.c_str(), static_cast<uint32_t>(index), static_cast<uint64_t>(rem),
                                   static_cast<int64_t>(reset_ns)));
    }

    // predictWait(name, load) -> ns (>= 0) or rc
    Napi::Value PredictWait(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Napi::Value out;
        if (closed_error(info, &out)) return out;
        std::string name;
        double load;
        if (!arg_string(info, 0, &name) || !arg_number(info, 1, &load)) return env.Undefined();
        if (!(load >= 1) || load > static_cast<double>(RQ_MAX_AMOUNT)) return num(env, kEinval);
        int64_t ns = 0;
        const int rc = rq_predict_wait(c_, name.c_str(), static_cast<uint64_t>(load), &ns);
        return num(env, rc != RQ_OK ? rc : static_cast<double>(ns));
    }

    Napi::Value RemoteError(const Napi::CallbackInfo &info) {
        char buf[512] = "";
        if (c_ != nullptr) rq_remote_error(c_, buf, sizeof buf);
        return Napi::String::New(info.Env(), buf);
    }

    // held() -> permits in the slab (for tests: nothing left held)
    Napi::Value Held(const Napi::CallbackInfo &info) {
        return num(info.Env(), static_cast<double>(permits_.size() - free_.size()));
    }

    // threads() -> lane threads running (for tests: bounded)
    Napi::Value Threads(const Napi::CallbackInfo &info) {
        double n = 0;
        for (auto &kv : lanes_) {
            std::lock_guard<std::mutex> lock(kv.second->mu);
            n += kv.second->running ? 1 : 0;
        }
        return num(info.Env(), n);
    }
};

void deliver_js(Napi::Env env, Napi::Function callback, Client *client, Delivery *d) {
    std::unique_ptr<Delivery> own(d);
    if (env == nullptr || client == nullptr || !client->is_open()) return;  // closed: rq_close took it back
    client->finished(env, d->id);
    const double slot = d->rc == RQ_OK ? client->store(d->permit) : -1;
    napi_value argv[3] = {Napi::Number::New(env, d->id), Napi::Number::New(env, d->rc), Napi::Number::New(env, slot)};
    napi_value result;
    // The raw call: while the environment is torn down a call into JS may
    // fail, and that must not become a fatal error.
    if (napi_call_function(env, env.Undefined(), callback, 3, argv, &result) != napi_ok) {
        bool pending = false;
        if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
            napi_value ignored;
            napi_get_and_clear_last_exception(env, &ignored);
        }
    }
}

// acquireNow(clientId, handle, load) -> slot or rc; releaseNow(clientId, slot) -> rc.
// Raw napi: the hot path of tryAcquire and of acquire's first try.
napi_value AcquireNow(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 3;
    napi_value argv[3];
    napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr);
    int32_t out = kEinval;
    if (argc == 3) {
        Client *c = Client::from_id(env, argv[0]);
        double h = -1, load = 0;
        napi_get_value_double(env, argv[1], &h);
        napi_get_value_double(env, argv[2], &load);
        if (c != nullptr) out = c->acquire_now(h, load);
    }
    napi_value v;
    napi_create_int32(env, out, &v);
    return v;
}

napi_value ReleaseNow(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 2;
    napi_value argv[2];
    napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr);
    int32_t out = kEinval;
    if (argc == 2) {
        Client *c = Client::from_id(env, argv[0]);
        double d = -1;
        napi_get_value_double(env, argv[1], &d);
        if (c != nullptr) out = c->release_now(d);
    }
    napi_value v;
    napi_create_int32(env, out, &v);
    return v;
}

// The benchmark's baseline: a bare Node-API call, written as the hot path is.
napi_value NoopRaw(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 2;
    napi_value argv[2];
    napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr);
    napi_value v;
    napi_create_int32(env, 0, &v);
    return v;
}

Napi::Value ErrName(const Napi::CallbackInfo &info) {
    const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    return Napi::String::New(info.Env(), rq_errname(code));
}

Napi::Value StrError(const Napi::CallbackInfo &info) {
    const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    return Napi::String::New(info.Env(), rq_strerror(code));
}

Napi::Value Version(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), rq_version()); }

// The benchmark's baseline: a bare Node-API call.
Napi::Value Noop(const Napi::CallbackInfo &info) {
    napi_value v;
    napi_create_int32(info.Env(), 0, &v);
    return Napi::Value(info.Env(), v);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("NativeClient", Client::Define(env));
    exports.Set("errname", Napi::Function::New(env, ErrName));
    exports.Set("strerror", Napi::Function::New(env, StrError));
    exports.Set("version", Napi::Function::New(env, Version));
    exports.Set("noop", Napi::Function::New(env, Noop));
    napi_value f;
    napi_create_function(env, "acquireNow", NAPI_AUTO_LENGTH, AcquireNow, nullptr, &f);
    exports.Set("acquireNow", Napi::Value(env, f));
    napi_create_function(env, "releaseNow", NAPI_AUTO_LENGTH, ReleaseNow, nullptr, &f);
    exports.Set("releaseNow", Napi::Value(env, f));
    napi_create_function(env, "noopRaw", NAPI_AUTO_LENGTH, NoopRaw, nullptr, &f);
    exports.Set("noopRaw", Napi::Value(env, f));
    exports.Set("compiledVersion", Napi::Number::New(env, RQ_VERSION_NUMBER));
    env.AddCleanupHook([] {
        // The process is exiting: every ticket leaves its line, lane threads are joined.
        auto clients = Client::open_clients();
        for (Client *c : clients) c->close();
    });
    return exports;
}

}  // namespace

NODE_API_MODULE(ratequeue, Init)
