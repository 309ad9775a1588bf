// Many hosts: the Redis side of the lease protocol, one Lua script, run
// atomically by Redis for one resource at a time (refiller.cpp calls it).
//
// Keys (one hash tag, so one cluster slot): KEYS[1] "rq:{NAME}" the
// resource (field def, per limit i: k<i> tokens in the bucket, r<i> ns
// towards the next token, t<i> Redis TIME (us) of the last update, O<i>
// tokens leased to hosts and not reported spent, C<i> concurrency slots
// leased, L<i> tokens written off with dead hosts); KEYS[2]
// "rq:{NAME}:hosts" a sorted set of host id -> lease expiry (Redis TIME,
// us); KEYS[3] "rq:{NAME}:h" per host: "<host>:o<i>" its outstanding
// tokens, "<host>:c<i>" its slots.
//
// ARGV: def, host, ttl_ms (0: a define, which only checks or stores the
// definition), n, then per limit:
//   rate:        1, burst, unit_ns, keep, give, want, need
//                (keep: tokens the host keeps, give: tokens it hands back;
//                keep + give <= what it holds; want: tokens it asks for;
//                need: the fewest worth a grant, 1..want)
//   concurrency: 2, amount, keep, want    (keep: slots in use here)
//   (rate takes 7 values, concurrency 4: ARGV is read in order.)
//
// Why the global bound holds (design in the README, "Many hosts"): tokens
// exist in two places, the bucket (k) and host leases (at most O, since a
// host only reports what it still holds and spends only from what it was
// granted before its lease expires). Each call first refills the bucket at
// `unit_ns` per token but only up to burst - O, so bucket + leases <= burst
// at every instant; tokens are created only by that refill. So the load
// admitted anywhere in any window of length t is at most the tokens that
// existed at its start (<= burst) plus those created in it (<= t / unit),
// which is B + A*t/P. A host's record expires ttl after its last call; it
// stops spending before that (its own clock, from the instant it sent the
// call), so expired tokens are written off (L) without ever being spent.
//
// Returns: {hosts, then per limit: granted (rate: tokens, spendable after
// wait_ns; concurrency: the host's slots now), wait_ns (rate: with a grant,
// how long after receiving the reply its tokens may be spent; without one,
// when to ask again; concurrency: the share this host should come down to
// as its holders release, while other hosts wait, else 0),
// lost (L<i>)}. A different definition: error "RQCONFLICT <def>"; data that
// is not ours: error "RQFOREIGN ...".
#pragma once

namespace rq::detail {

inline constexpr const char *kLeaseScript = R"LUA(
local def, host, ttl_us, n = ARGV[1], ARGV[2], tonumber(ARGV[3]) * 1000, tonumber(ARGV[4])
-- A field's integer value (0 when absent); anything else is not ours.
-- Only k<i> (a bucket in debt for reserved tokens) may be negative.
local function get(key, field, signed)
  local v = redis.call('HGET', key, field)
  if v == false or v == nil then return 0 end
  local x = tonumber(v)
  local lo = 0
  if signed then lo = -9007199254740991 end
  if x == nil or x ~= math.floor(x) or x < lo or x > 9007199254740991 then
    error({err = 'RQFOREIGN ' .. key .. ' ' .. field .. ' holds ' .. tostring(v)})
  end
  return x
end
local have = redis.call('HGET', KEYS[1], 'def')
if have and have ~= def then return redis.error_reply('RQCONFLICT ' .. have) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if not have then redis.call('HSET', KEYS[1], 'def', def) end
-- ttl 0: a define only checks (or stores) the definition; no host record changes.
if ttl_us == 0 then return {redis.call('ZCARD', KEYS[2])} end
-- Hosts whose lease expired: their tokens are written off, their slots freed.
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
for _, h in ipairs(dead) do
  for i = 1, n do
    local o = get(KEYS[3], h .. ':o' .. i)
    local c = get(KEYS[3], h .. ':c' .. i)
    if o > 0 then
      redis.call('HSET', KEYS[1], 'O' .. i, math.max(0, get(KEYS[1], 'O' .. i) - o))
      redis.call('HSET', KEYS[1], 'L' .. i, get(KEYS[1], 'L' .. i) + o)
    end
    if c > 0 then redis.call('HSET', KEYS[1], 'C' .. i, math.max(0, get(KEYS[1], 'C' .. i) - c)) end
    redis.call('HDEL', KEYS[3], h .. ':o' .. i, h .. ':c' .. i, h .. ':w' .. i)
  end
  redis.call('ZREM', KEYS[2], h)
end
local out = {0}
local holds = false
local a = 5
for i = 1, n do
  local kind = tonumber(ARGV[a])
  if kind == 1 then
    local burst, unit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local keep, give, want, need = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]),
                                   tonumber(ARGV[a + 6])
    a = a + 7
    local O = get(KEYS[1], 'O' .. i)
    local mine = get(KEYS[3], host .. ':o' .. i)
    local k, r, last = get(KEYS[1], 'k' .. i, true), get(KEYS[1], 'r' .. i), redis.call('HGET', KEYS[1], 't' .. i)
    if last then last = get(KEYS[1], 't' .. i) else last = now; k = 0; r = 0 end  -- new or lost: empty
    -- Refill up to burst - O (O as it stood since the last call).
    local cap = math.max(0, burst - O)
    if k >= cap then
      k = cap; r = 0
    else
      local el = math.max(0, now - last) * 1000
      local need = (cap - k) * unit - r
      if el >= need then
        k = cap; r = 0
      else
        local tot = r + el
        local add = math.floor(tot / unit)
        if add * unit > tot then add = add - 1 end
        k = k + add; r = tot - add * unit
      end
    end
    -- The host's report replaces its record: what it spent is gone, what it
    -- gives back returns to the bucket.
    O = math.max(0, O - mine) + keep
    k = k + give
    if k + O > burst then k = burst - O; r = 0 end  -- (a debt, if O > burst: never forgiven)
    -- Grant what there is, up to want, if that is at least need. Otherwise
    -- reserve need tokens from the future (the bucket goes into debt, at
    -- most a quarter of the TTL deep): the host may spend them only after
    -- `wait` ns from when it received this reply, when the refill has paid
    -- the debt back, so they exist before they are spent. Hosts that ask
    -- while it is in debt queue behind, in the order they asked.
    local g, wait = 0, 0
    if want > 0 then
      if k >= need then
        g = math.min(want, k)
        k = k - g
      elseif (need - k) * unit - r <= ttl_us * 250 then
        g = need
        k = k - g
        wait = math.max(0, -k * unit - r)
      else
        wait = math.max(0, (need - k) * unit - r - ttl_us * 250)
      end
    end
    O = O + g
    mine = keep + g
    redis.call('HSET', KEYS[1], 'k' .. i, k, 'r' .. i, r, 't' .. i, now, 'O' .. i, O)
    if mine > 0 then redis.call('HSET', KEYS[3], host .. ':o' .. i, mine); holds = true
    else redis.call('HDEL', KEYS[3], host .. ':o' .. i) end
    out[#out + 1] = g; out[#out + 1] = wait; out[#out + 1] = get(KEYS[1], 'L' .. i)
  else
    local amount, keep, want = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    a = a + 4
    local C = get(KEYS[1], 'C' .. i)
    local mine = get(KEYS[3], host .. ':c' .. i)
    local others = math.max(0, C - mine)
    -- While other hosts wait for slots, no host grows past its share
    -- (amount / hosts that hold or want, at least 1), and one above it is
    -- told to come down as its holders release.
    local waiting, sharing = 0, 1
    for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if h ~= host then
        local w = get(KEYS[3], h .. ':w' .. i)
        waiting = waiting + w
        if w > 0 or get(KEYS[3], h .. ':c' .. i) > 0 then sharing = sharing + 1 end
      end
    end
    local share = 0
    local more = math.max(0, math.min(want, amount - others - keep))
    if waiting > 0 then
      share = math.max(1, math.floor(amount / sharing))
      more = math.min(more, math.max(0, share - keep))
    end
    mine = keep + more
    redis.call('HSET', KEYS[1], 'C' .. i, others + mine)
    if mine > 0 then redis.call('HSET', KEYS[3], host .. ':c' .. i, mine); holds = true
    else redis.call('HDEL', KEYS[3], host .. ':c' .. i) end
    -- Our own unmet want, for the others' share.
    if want > more then redis.call('HSET', KEYS[3], host .. ':w' .. i, want - more); holds = true
    else redis.call('HDEL', KEYS[3], host .. ':w' .. i) end
    out[#out + 1] = mine; out[#out + 1] = share; out[#out + 1] = 0
  end
end
if holds then redis.call('ZADD', KEYS[2], now + ttl_us, host)
else redis.call('ZREM', KEYS[2], host) end
out[1] = redis.call('ZCARD', KEYS[2])
return out
)LUA";

}  // namespace rq::detail
