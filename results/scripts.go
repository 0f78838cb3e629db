package results

import (
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// luaRefreshTTL is prepended to the scripts that change a job. They take the job's keys in
// the order of keys.all, the job hash first. Its refresh_ttl sets every one of those keys
// to expire the job's TTL from now, so the keys of a job expire together and a run that
// lasts longer than the TTL keeps its record.
var luaRefreshTTL = `
local function refresh_ttl()
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl') or '') or ` + strconv.FormatInt(int64(DefaultTTL/time.Second), 10) + `
  for i = 1, #KEYS do
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
`

// scriptCreateJob creates the job hash unless it exists and returns 1 when it created it.
//
// KEYS[1] meta. ARGV[1] TTL in seconds, ARGV[2..] field/value pairs.
var scriptCreateJob = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`)

// scriptCompareAndSet sets user fields whose current value equals the expected one, and
// returns a 0/1 list saying which were set. An empty expected value means "absent".
// It returns an empty list, and writes nothing, when the job hash does not exist.
//
// KEYS: keys.all. ARGV: triples of (user ID, expected value, new value).
var scriptCompareAndSet = redis.NewScript(luaRefreshTTL + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local out = {}
local changed = false
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[2], ARGV[i]) or ''
  if cur == ARGV[i + 1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    out[#out + 1] = 1
    changed = true
  else
    out[#out + 1] = 0
  end
end
if changed then
  refresh_ttl()
end
return out
`)

// scriptSettle moves one user from pending to a final state if its value is still the
// expected one, counts it, and completes the job when it was the last user. In a job
// with a device step, an applied user also owes a device lookup, and the job completes
// only once the device steps are over too (luaDeviceSteps).
// It returns {set, completed}: set is 1 when it settled the user, 0 when the value changed
// concurrently and -1 when the job hash does not exist; completed is 1 only for the one
// call that completed the job.
//
// With ARGV[6] "1" it settles only while the job runs, and returns {-2, 0} otherwise.
//
// KEYS: keys.all. ARGV[1] user ID, ARGV[2] expected value, ARGV[3] new value, ARGV[4]
// counter field ("applied" or "failed"), ARGV[5] now (RFC 3339), ARGV[6] "1" or absent.
var scriptSettle = redis.NewScript(luaRefreshTTL + luaDeviceSteps + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return {-2, 0}
end
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if cur ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
redis.call('HSET', KEYS[1], 'settled_at', ARGV[5])
if ARGV[4] == 'applied' and owes_device_lookup() then
  redis.call('HINCRBY', KEYS[1], 'device_lookups', 1)
end
local m = redis.call('HMGET', KEYS[1], 'applied', 'failed', 'total', 'state', 'users_loaded')
local done = (tonumber(m[1]) or 0) + (tonumber(m[2]) or 0)
local completed = 0
if m[4] == 'running' and m[5] == '1' and done >= (tonumber(m[3]) or 0) and device_steps_finished() then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[5], 'reason', '')
  completed = 1
end
refresh_ttl()
return {1, completed}
`)

// scriptBeginAttempt reads a user's record with the job's state, reason and dry-run flag.
// When the job is running for real and the user has a record, it also lists the user in
// the sending hash, because from now on the value may reach Odin. A sending hash it
// creates gets the TTL of the job hash. It returns {state or false, reason, dry_run,
// record or false, type, sp, group, cursor, total, users_loaded}.
//
// KEYS: keys.all. ARGV[1] user ID.
var scriptBeginAttempt = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'state', 'reason', 'dry_run', 'type', 'sp', 'group', 'cursor', 'total', 'users_loaded')
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if m[1] == 'running' and m[3] ~= '1' and raw then
  if redis.call('HSETNX', KEYS[5], ARGV[1], '1') == 1 and redis.call('HLEN', KEYS[5]) == 1 then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[5], ttl)
    end
  end
end
return {m[1] or false, m[2] or '', m[3] or '', raw, m[4] or '', m[5] or '', m[6] or '', m[7] or '', m[8] or '', m[9] or ''}
`)

// scriptClearReason empties the job's reason if it starts with ARGV[1], and returns 1
// when it did. It writes nothing to a job hash that does not exist.
//
// KEYS[1] meta. ARGV[1] prefix.
var scriptClearReason = redis.NewScript(`
local reason = redis.call('HGET', KEYS[1], 'reason')
if reason and string.sub(reason, 1, #ARGV[1]) == ARGV[1] then
  redis.call('HSET', KEYS[1], 'reason', '')
  return 1
end
return 0
`)

// scriptMax raises a numeric field of the job hash to a value and never lowers it. It
// returns the field's value afterwards, or -1 when the job hash does not exist.
//
// KEYS: keys.all. ARGV[1] field, ARGV[2] value.
var scriptMax = redis.NewScript(luaRefreshTTL + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  refresh_ttl()
  return tonumber(ARGV[2])
end
return cur
`)

// scriptSetIfState sets fields on the job hash only while its state is one of the given
// states, and returns the state it found (empty when the job does not exist).
//
// KEYS: keys.all. ARGV[1] comma-separated states, then field/value pairs.
var scriptSetIfState = redis.NewScript(luaRefreshTTL + `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return ''
end
if string.find(',' .. ARGV[1] .. ',', ',' .. state .. ',', 1, true) then
  for i = 2, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  refresh_ttl()
end
return state
`)

// scriptStartJob makes the list that one LoadUsers call filled the job's order list and
// moves the job from queued to running, or to completed when it has no users. It does
// nothing but drop that list when another call started the job first, so overlapping
// fan-outs store the user list exactly once. It returns the state it found (empty when the
// job does not exist), or 'short' when the list lacks users because it expired.
//
// KEYS: keys.all, then the filled list. ARGV[1] number of users, ARGV[2] now (RFC 3339).
var scriptStartJob = redis.NewScript(luaRefreshTTL + `
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state ~= 'queued' or redis.call('HGET', KEYS[1], 'users_loaded') == '1' then
  redis.call('DEL', KEYS[6])
  return state or ''
end
local total = tonumber(ARGV[1])
if redis.call('LLEN', KEYS[6]) ~= total then
  redis.call('DEL', KEYS[6])
  return 'short'
end
if total > 0 then
  redis.call('RENAME', KEYS[6], KEYS[3])
else
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[1], 'total', total, 'users_loaded', '1', 'state', 'running', 'started_at', ARGV[2])
if total == 0 then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', ARGV[2])
end
refresh_ttl()
return state
`)

// scriptNoteProgress stores a progress value and the time it last changed, and returns
// that time.
//
// KEYS[1] meta. ARGV[1] progress, ARGV[2] now (RFC 3339).
var scriptNoteProgress = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return ARGV[2]
end
if redis.call('HGET', KEYS[1], 'sweep_progress') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'sweep_progress', ARGV[1], 'sweep_changed_at', ARGV[2])
  return ARGV[2]
end
return redis.call('HGET', KEYS[1], 'sweep_changed_at')
`)

// scriptClaimField sets a field of an existing job hash unless it holds another value,
// and returns the value it holds afterwards, or an empty string when the job hash does
// not exist.
//
// KEYS[1] meta. ARGV[1] field, ARGV[2] value.
var scriptClaimField = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return ''
end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= '' then
  return cur
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
`)

// scriptReleaseField deletes a field of a job hash if it holds the given value.
//
// KEYS[1] meta. ARGV[1] field, ARGV[2] value.
var scriptReleaseField = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)
