package ratelimit

import "github.com/redis/go-redis/v9"

// All scripts count time in microseconds since the Unix epoch, read from the
// Redis server's TIME. Lua numbers are doubles, which hold such values exactly
// (about 1.8e15 today, far below 2^53), and values are written back with
// "%.0f" because tostring would switch to exponent notation.
//
// The pause is a hash with the fields until_us and reason rather than a string
// with a TTL, because the TTLs of miniredis do not run down unless a test
// fast-forwards them. The remaining time comes from until_us, and the TTL only
// removes the key afterwards.

// reserveScript reserves the next request slot, or reports how far away it is.
//
//	KEYS[1]  TAT key: the time the next slot frees up
//	KEYS[2]  pause key
//	ARGV[1]  emission interval (1/rate), microseconds
//	ARGV[2]  burst
//	ARGV[3]  longest wait the caller accepts, microseconds (a later slot is not reserved)
//	ARGV[4]  extra key lifetime past the state it holds, milliseconds
//
// It returns {reserved (1 or 0), wait in microseconds, pause reason or "",
// slot time in microseconds since the Unix epoch}.
var reserveScript = redis.NewScript(`
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local ttl_margin = tonumber(ARGV[4])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- During a pause, schedule as if it were already the end of the pause.
local earliest = now
local reason = ""
local pause = redis.call("HMGET", KEYS[2], "until_us", "reason")
local pause_until = tonumber(pause[1])
if pause_until and pause_until > now then
  earliest = pause_until
  reason = pause[2] or ""
end

local tat = tonumber(redis.call("GET", KEYS[1]))
if not tat or tat < earliest then
  tat = earliest
end
local new_tat = tat + emission

-- The burst lets a slot start up to (burst-1) intervals before its TAT, but
-- never before now or before the end of the pause.
local slot = new_tat - burst * emission
if slot < earliest then
  slot = earliest
end
local wait = slot - now
if wait > max_wait then
  return {0, wait, reason, slot}
end

local ttl = math.ceil((new_tat - now) / 1000) + ttl_margin
redis.call("SET", KEYS[1], string.format("%.0f", new_tat), "PX", ttl)
return {1, wait, reason, slot}
`)

// pauseScript starts or extends the pause. It never shortens a pause: when
// the current pause ends later than the new one would, both its end and its
// reason stay.
//
//	KEYS[1]  pause key
//	ARGV[1]  pause length, microseconds
//	ARGV[2]  reason
//	ARGV[3]  extra key lifetime past the end of the pause, milliseconds
//
// It returns 1 when it set the pause and 0 when a longer one was already on.
var pauseScript = redis.NewScript(`
local length = tonumber(ARGV[1])
local ttl_margin = tonumber(ARGV[3])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local new_until = now + length

local old_until = tonumber(redis.call("HGET", KEYS[1], "until_us"))
if old_until and old_until >= new_until then
  return 0
end

redis.call("HSET", KEYS[1], "until_us", string.format("%.0f", new_until), "reason", ARGV[2])
redis.call("PEXPIRE", KEYS[1], math.ceil(length / 1000) + ttl_margin)
return 1
`)

// pausedScript reads the pause and the Redis clock.
//
//	KEYS[1]  pause key
//	ARGV[1]  time in microseconds since the Unix epoch: a pause that ends
//	         at or before it is not reported, and 0 reports every pause
//
// It returns {remaining microseconds, reason, now}, with remaining 0 and
// reason "" when no pause is on, and now in microseconds since the Unix epoch.
var pausedScript = redis.NewScript(`
local ends_after = tonumber(ARGV[1])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local pause = redis.call("HMGET", KEYS[1], "until_us", "reason")
local pause_until = tonumber(pause[1])
if pause_until and pause_until > now and pause_until > ends_after then
  return {pause_until - now, pause[2] or "", now}
end
return {0, "", now}
`)
