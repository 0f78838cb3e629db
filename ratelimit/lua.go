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

// reserveLua defines reserve(tat_key, pause_key, emission, burst, max_wait,
// ttl_margin, now), which reserves the next slot of the schedule kept in
// tat_key if it is at most max_wait away, and returns {reserved (1 or 0), wait
// in microseconds, pause reason or "", slot time in microseconds since the Unix
// epoch}.
const reserveLua = `
local function reserve(tat_key, pause_key, emission, burst, max_wait, ttl_margin, now)
  -- During a pause, schedule as if it were already the end of the pause.
  local earliest = now
  local reason = ""
  local pause = redis.call("HMGET", pause_key, "until_us", "reason")
  local pause_until = tonumber(pause[1])
  if pause_until and pause_until > now then
    earliest = pause_until
    reason = pause[2] or ""
  end

  local tat = tonumber(redis.call("GET", tat_key))
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
  redis.call("SET", tat_key, string.format("%.0f", new_tat), "PX", ttl)
  return {1, wait, reason, slot}
end

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
`

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
var reserveScript = redis.NewScript(reserveLua + `
return reserve(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now)
`)

// reserveLowScript takes a low-priority caller's turn and, when the turn is
// close enough that the caller would not sleep before reserving its request
// slot, reserves the slot too, in the same round trip. A limiter with room to
// spare thus costs a low-priority request one round trip, not two.
//
//	KEYS[1]  TAT key of the low-priority turns
//	KEYS[2]  TAT key of the request slots
//	KEYS[3]  pause key
//	ARGV[1]  emission interval (1/rate), microseconds
//	ARGV[2]  burst
//	ARGV[3]  longest wait for the turn, microseconds
//	ARGV[4]  extra key lifetime past the state it holds, milliseconds
//	ARGV[5]  how close the turn must be to reserve the slot now, microseconds
//	ARGV[6]  longest wait for the slot, microseconds
//
// It returns the turn's reservation as reserveScript does, then 1 and the
// slot's reservation, or 0 and three zeros when the slot was not tried.
var reserveLowScript = redis.NewScript(reserveLua + `
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl_margin = tonumber(ARGV[4])
local turn = reserve(KEYS[1], KEYS[3], emission, burst, tonumber(ARGV[3]), ttl_margin, now)
if turn[1] == 0 or turn[2] > tonumber(ARGV[5]) then
  return {turn[1], turn[2], turn[3], turn[4], 0, 0, 0, 0}
end
local slot = reserve(KEYS[2], KEYS[3], emission, burst, tonumber(ARGV[6]), ttl_margin, now)
return {turn[1], turn[2], turn[3], turn[4], 1, slot[1], slot[2], slot[4]}
`)

// announceScript stores a limiter's rate and burst and returns the ones stored before,
// or "" when there were none.
//
//	KEYS[1]  limit key
//	ARGV[1]  "rate/burst"
//	ARGV[2]  key lifetime, seconds
var announceScript = redis.NewScript(`
local old = redis.call("GET", KEYS[1])
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
return old or ""
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

// pauseEscalatingScript starts the next pause of a series whose length doubles, or
// keeps the current one. The series key holds the number of pauses in the series
// (count) and the end of its last one (until_us). While that end has not passed, a
// call starts no new pause: the workers that fail together count once. The series
// key expires one longest pause after the end of its last pause, so a failure after a
// quiet spell starts a new series.
//
//	KEYS[1]  pause key
//	KEYS[2]  series key
//	ARGV[1]  length of the first pause, microseconds
//	ARGV[2]  longest pause, microseconds
//	ARGV[3]  reason
//	ARGV[4]  extra key lifetime past the end of the pause, milliseconds
//
// It returns {time left of the fleet's pause in microseconds, pauses in the series}.
var pauseEscalatingScript = redis.NewScript(`
local base = tonumber(ARGV[1])
local longest = tonumber(ARGV[2])
local ttl_margin = tonumber(ARGV[4])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local series = redis.call("HMGET", KEYS[2], "count", "until_us")
local count = tonumber(series[1]) or 0
local series_until = tonumber(series[2])
if not series_until or series_until <= now then
  count = count + 1
  local length = base
  for i = 2, count do
    length = length * 2
    if length >= longest then
      break
    end
  end
  if length > longest then
    length = longest
  end
  series_until = now + length
  redis.call("HSET", KEYS[2], "count", count, "until_us", string.format("%.0f", series_until))
end
redis.call("PEXPIRE", KEYS[2], math.ceil((series_until - now + longest) / 1000) + ttl_margin)

local pause_until = tonumber(redis.call("HGET", KEYS[1], "until_us"))
if not pause_until or pause_until < series_until then
  pause_until = series_until
  redis.call("HSET", KEYS[1], "until_us", string.format("%.0f", series_until), "reason", ARGV[3])
  redis.call("PEXPIRE", KEYS[1], math.ceil((series_until - now) / 1000) + ttl_margin)
end
return {pause_until - now, count}
`)

// endEscalatingScript ends the fleet's pause when it is the last pause of the series.
//
//	KEYS[1]  pause key
//	KEYS[2]  series key
//
// It returns 1 when it ended the pause, 0 otherwise.
var endEscalatingScript = redis.NewScript(`
local series_until = tonumber(redis.call("HGET", KEYS[2], "until_us"))
local pause_until = tonumber(redis.call("HGET", KEYS[1], "until_us"))
if series_until and pause_until and pause_until == series_until then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`)
