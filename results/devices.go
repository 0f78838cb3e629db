package results

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Values of UserRecord.Device besides "skipped: ..." and "failed: ..." texts.
const (
	// DevicePending marks an applied user whose group-level phone waits for its step,
	// which runs once every user of the job is applied or failed.
	DevicePending = "pending"
	// DeviceRebuilt is the outcome of a rebuild step.
	DeviceRebuilt = "rebuilt"
	// DeviceReset is the outcome of a step that rebuilt the configuration and made the
	// phone re-sync.
	DeviceReset = "reset"
)

// HasDeviceStep reports whether the job rebuilds its users' phones: a SIP job with a
// device mode that is not a dry run.
func (j Job) HasDeviceStep() bool {
	return j.Type == SIP && j.Devices != DevicesNone && !j.DryRun
}

// Followup is the next action for the caller of a device bookkeeping method.
type Followup int

const (
	// FollowupNone: nothing, the job is not at a turning point.
	FollowupNone Followup = iota
	// FollowupStartDevices: every user is applied or failed and every applied user's
	// device is known, so the device steps can start. Acting on it more than once must
	// be harmless: other callers may see the same state.
	FollowupStartDevices
	// FollowupComplete: this call completed the job; enqueue its completion task.
	FollowupComplete
)

// A job with a device step completes only when every user is applied or failed, every
// applied user's device has been looked up, and every device found has finished its
// step. The job hash counts these in device_lookups (applied users whose device is not
// looked up yet), device_total (group-level devices found) and device_done (devices
// whose step finished).
//
// The devices hash holds two fields per device: "s:<name>" with the step's state
// (pending, rebuilt, outcome:<text> once Odin's calls finished, done:<text> once every
// user's record carries the outcome), and "u:<name>" with the user IDs, one per line.
// User IDs never contain a newline: tasks reject control characters in them.
const (
	deviceStatePending = "pending"
	deviceStateRebuilt = "rebuilt"
	deviceOutcomePart  = "outcome:"
	deviceDonePart     = "done:"
	deviceStateField   = "s:"
	deviceUsersField   = "u:"
)

// luaDeviceSteps defines the Lua functions that keep device steps in a job's
// completion rule. Scripts that include it take the job's keys in the order of
// keys.all, and call refresh_ttl themselves.
var luaDeviceSteps = `
local function owes_device_lookup()
  local m = redis.call('HMGET', KEYS[1], 'devices', 'type', 'dry_run')
  return m[1] and m[1] ~= '' and m[2] == 'sip' and m[3] ~= '1'
end

local function device_steps_finished()
  local m = redis.call('HMGET', KEYS[1], 'device_lookups', 'device_total', 'device_done')
  return (tonumber(m[1]) or 0) <= 0 and (tonumber(m[3]) or 0) >= (tonumber(m[2]) or 0)
end

-- device_followup completes the job when nothing is left to do, and returns 2 then.
-- It returns 1 when only device steps are left and may_start is true, 0 otherwise.
local function device_followup(now, may_start)
  local m = redis.call('HMGET', KEYS[1], 'state', 'users_loaded', 'applied', 'failed', 'total')
  if m[1] ~= 'running' or m[2] ~= '1' then
    return 0
  end
  if (tonumber(m[3]) or 0) + (tonumber(m[4]) or 0) < (tonumber(m[5]) or 0) then
    return 0
  end
  local d = redis.call('HMGET', KEYS[1], 'device_lookups', 'device_total', 'device_done')
  if (tonumber(d[1]) or 0) > 0 then
    return 0
  end
  if (tonumber(d[3]) or 0) >= (tonumber(d[2]) or 0) then
    redis.call('HSET', KEYS[1], 'state', 'completed', 'completed_at', now, 'reason', '')
    return 2
  end
  if may_start then
    return 1
  end
  return 0
end
`

// scriptDeviceLookup records the outcome of one applied user's device lookup if the
// user's record is still the expected one, and registers the device when it gets a
// step. It returns {set, followup}: set is 1 when it recorded the lookup, 0 when the
// record changed concurrently and -1 when the job hash does not exist.
//
// KEYS: keys.all. ARGV[1] user ID, ARGV[2] expected record, ARGV[3] new record, ARGV[4]
// device name (” when the device gets no step), ARGV[5] now (RFC 3339).
var scriptDeviceLookup = redis.NewScript(luaRefreshTTL + luaDeviceSteps + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if cur ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'device_lookups', -1)
if ARGV[4] ~= '' then
  if redis.call('HSETNX', KEYS[4], 's:' .. ARGV[4], 'pending') == 1 then
    redis.call('HINCRBY', KEYS[1], 'device_total', 1)
  end
  local users = redis.call('HGET', KEYS[4], 'u:' .. ARGV[4])
  if users then
    users = users .. '\n' .. ARGV[1]
  else
    users = ARGV[1]
  end
  redis.call('HSET', KEYS[4], 'u:' .. ARGV[4], users)
end
local followup = device_followup(ARGV[5], true)
refresh_ttl()
return {1, followup}
`)

// scriptDeviceState moves a device's step from one state to another, and when ARGV[4]
// is '1' counts the device as done. It returns {set, followup} like
// scriptDeviceLookup; followup is never 1, because the device steps have started.
//
// KEYS: keys.all. ARGV[1] device name, ARGV[2] expected state, ARGV[3] new state,
// ARGV[4] '1' to count the device as done, ARGV[5] now (RFC 3339).
var scriptDeviceState = redis.NewScript(luaRefreshTTL + luaDeviceSteps + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
local cur = redis.call('HGET', KEYS[4], 's:' .. ARGV[1]) or ''
if cur ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[4], 's:' .. ARGV[1], ARGV[3])
local followup = 0
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], 'device_done', 1)
  followup = device_followup(ARGV[5], false)
end
refresh_ttl()
return {1, followup}
`)

// scriptDeviceFollowup returns what a job needs next (see device_followup) and
// completes it when nothing is left, or -1 when the job hash does not exist.
//
// KEYS: keys.all. ARGV[1] now (RFC 3339).
var scriptDeviceFollowup = redis.NewScript(luaRefreshTTL + luaDeviceSteps + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local followup = device_followup(ARGV[1], true)
if followup == 2 then
  refresh_ttl()
end
return followup
`)

// DeviceProgress counts a job's device steps.
type DeviceProgress struct {
	// Lookups is the number of applied users whose device is not looked up yet.
	Lookups int
	// Total is the number of group-level devices found so far, Done the number of them
	// whose step finished (rebuilt, reset or failed).
	Total, Done int
}

// Pending returns the number of device lookups and device steps still to do.
func (p DeviceProgress) Pending() int {
	return p.Lookups + max(0, p.Total-p.Done)
}

// DeviceProgress returns the device counters of a job, or ErrNotFound.
func (s *Store) DeviceProgress(ctx context.Context, jobID string) (DeviceProgress, error) {
	vals, err := s.rdb.HMGet(ctx, s.jobKeys(jobID).meta, "state", "device_lookups", "device_total", "device_done").Result()
	if err != nil {
		return DeviceProgress{}, fmt.Errorf("read device progress of job %s: %w", jobID, err)
	}
	if vals[0] == nil {
		return DeviceProgress{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	var counts [3]int
	for i, v := range vals[1:] {
		text, _ := v.(string)
		if text == "" {
			continue
		}
		n, err := strconv.Atoi(text)
		if err != nil {
			return DeviceProgress{}, fmt.Errorf("job %s: corrupt device counter %q", jobID, text)
		}
		counts[i] = n
	}
	return DeviceProgress{Lookups: counts[0], Total: counts[1], Done: counts[2]}, nil
}

// UserAndJob returns one user's record and the job in one round trip, or ErrNotFound
// when either is missing.
func (s *Store) UserAndJob(ctx context.Context, jobID, userID string) (UserRecord, Job, error) {
	k := s.jobKeys(jobID)
	pipe := s.rdb.Pipeline()
	metaCmd := pipe.HGetAll(ctx, k.meta)
	userCmd := pipe.HGet(ctx, k.users, userID)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return UserRecord{}, Job{}, fmt.Errorf("read user %q of job %s: %w", userID, jobID, err)
	}
	if len(metaCmd.Val()) == 0 {
		return UserRecord{}, Job{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	job, err := decodeJob(jobID, metaCmd.Val())
	if err != nil {
		return UserRecord{}, Job{}, err
	}
	raw, err := userCmd.Result()
	if errors.Is(err, redis.Nil) {
		return UserRecord{}, job, fmt.Errorf("user %q of job %s: %w", userID, jobID, ErrNotFound)
	}
	rec, err := s.decodeUser(jobID, userID, raw)
	return rec, job, err
}

// RecordDeviceLookup stores what the lookup of an applied user's device found. outcome
// is DevicePending when the device gets a step, and then deviceName names it; it is a
// "skipped: ..." or "failed: ..." text otherwise. Each device is registered once per job
// however many users share it. rec must be the user's current record, applied and
// without a device outcome; ErrConflict means it changed, and the caller reads it again.
func (s *Store) RecordDeviceLookup(ctx context.Context, jobID string, rec UserRecord, deviceName, outcome string) (Followup, error) {
	switch {
	case rec.State != UserApplied || rec.Device != "":
		return FollowupNone, fmt.Errorf("record device of user %q in job %s: state %s, device %q: %w", rec.UserID, jobID, rec.State, rec.Device, ErrConflict)
	case outcome == "":
		return FollowupNone, fmt.Errorf("record device of user %q in job %s: the outcome is empty", rec.UserID, jobID)
	case outcome == DevicePending && deviceName == "":
		return FollowupNone, fmt.Errorf("record device of user %q in job %s: a pending device step needs the device name", rec.UserID, jobID)
	}
	next := rec
	next.DeviceName = deviceName
	next.Device = outcome
	raw, err := s.encodeUser(jobID, next)
	if err != nil {
		return FollowupNone, err
	}

	stepDevice := ""
	if outcome == DevicePending {
		stepDevice = deviceName
	}
	res, err := scriptDeviceLookup.Run(ctx, s.rdb, s.jobKeys(jobID).all(),
		rec.UserID, rec.raw, raw, stepDevice, formatTime(s.now())).Int64Slice()
	if err != nil {
		return FollowupNone, fmt.Errorf("record device of user %q in job %s: %w", rec.UserID, jobID, err)
	}
	switch res[0] {
	case -1:
		return FollowupNone, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	case 0:
		return FollowupNone, fmt.Errorf("record device of user %q in job %s: %w", rec.UserID, jobID, ErrConflict)
	}
	return Followup(res[1]), nil
}

// DeviceFollowup returns what the job needs next: FollowupStartDevices when only device
// steps are left, FollowupComplete when this call found nothing left and completed the
// job, FollowupNone otherwise (users or lookups still pending, or the job finished).
func (s *Store) DeviceFollowup(ctx context.Context, jobID string) (Followup, error) {
	n, err := scriptDeviceFollowup.Run(ctx, s.rdb, s.jobKeys(jobID).all(), formatTime(s.now())).Int()
	if err != nil {
		return FollowupNone, fmt.Errorf("check device steps of job %s: %w", jobID, err)
	}
	if n < 0 {
		return FollowupNone, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return Followup(n), nil
}

// DeviceRecord is one device's step in a job.
type DeviceRecord struct {
	Name string
	// Users are the job's applied users whose phone this is, in the order their
	// lookups were recorded.
	Users []string
	// Rebuilt is true once a reset step rebuilt the configuration and before the phone
	// was made to re-sync.
	Rebuilt bool
	// Outcome is DeviceRebuilt, DeviceReset or a "failed: ..." text once the step's
	// Odin calls are over, empty before.
	Outcome string
	// Done is true once every user's record carries the outcome and the device counts
	// in Job.DeviceDone.
	Done bool

	// state is the stored state this record was read from, for compare-and-set updates.
	state string
}

func decodeDevice(name, state, users string) (DeviceRecord, error) {
	d := DeviceRecord{Name: name, state: state}
	if users != "" {
		d.Users = strings.Split(users, "\n")
	}
	switch {
	case state == deviceStatePending:
	case state == deviceStateRebuilt:
		d.Rebuilt = true
	case strings.HasPrefix(state, deviceOutcomePart):
		d.Outcome = strings.TrimPrefix(state, deviceOutcomePart)
	case strings.HasPrefix(state, deviceDonePart):
		d.Outcome = strings.TrimPrefix(state, deviceDonePart)
		d.Done = true
	default:
		return DeviceRecord{}, fmt.Errorf("device %q: corrupt step state %q", name, state)
	}
	return d, nil
}

// Device returns one device's step, or ErrNotFound when no user's lookup found it.
func (s *Store) Device(ctx context.Context, jobID, name string) (DeviceRecord, error) {
	vals, err := s.rdb.HMGet(ctx, s.jobKeys(jobID).dev, deviceStateField+name, deviceUsersField+name).Result()
	if err != nil {
		return DeviceRecord{}, fmt.Errorf("read device %q of job %s: %w", name, jobID, err)
	}
	state, _ := vals[0].(string)
	if state == "" {
		return DeviceRecord{}, fmt.Errorf("device %q of job %s: %w", name, jobID, ErrNotFound)
	}
	users, _ := vals[1].(string)
	d, err := decodeDevice(name, state, users)
	if err != nil {
		return DeviceRecord{}, fmt.Errorf("job %s: %w", jobID, err)
	}
	return d, nil
}

// ForEachDevice calls fn once for every device of the job, in no particular order, and
// stops at the first error fn returns. Devices registered during the walk may be left
// out.
func (s *Store) ForEachDevice(ctx context.Context, jobID string, fn func(DeviceRecord) error) error {
	key := s.jobKeys(jobID).dev
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		fields, next, err := s.rdb.HScan(ctx, key, cursor, deviceStateField+"*", 500).Result()
		if err != nil {
			return fmt.Errorf("list devices of job %s: %w", jobID, err)
		}
		var names, states []string
		for i := 0; i+1 < len(fields); i += 2 {
			name := strings.TrimPrefix(fields[i], deviceStateField)
			if _, dup := seen[name]; dup {
				continue // HSCAN may return a field twice
			}
			seen[name] = struct{}{}
			names = append(names, name)
			states = append(states, fields[i+1])
		}
		if len(names) > 0 {
			userFields := make([]string, len(names))
			for i, name := range names {
				userFields[i] = deviceUsersField + name
			}
			users, err := s.rdb.HMGet(ctx, key, userFields...).Result()
			if err != nil {
				return fmt.Errorf("list devices of job %s: %w", jobID, err)
			}
			for i, name := range names {
				list, _ := users[i].(string)
				d, err := decodeDevice(name, states[i], list)
				if err != nil {
					return fmt.Errorf("job %s: %w", jobID, err)
				}
				if err := fn(d); err != nil {
					return err
				}
			}
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
}

// MarkDeviceRebuilt records that a reset step rebuilt the device's configuration, so a
// retry only makes the phone re-sync. It returns ErrConflict when the step's state
// changed since dev was read.
func (s *Store) MarkDeviceRebuilt(ctx context.Context, jobID string, dev DeviceRecord) (DeviceRecord, error) {
	if dev.Rebuilt || dev.Outcome != "" {
		return DeviceRecord{}, fmt.Errorf("mark device %q of job %s rebuilt: %w", dev.Name, jobID, ErrConflict)
	}
	next := dev
	next.Rebuilt = true
	next.state = deviceStateRebuilt
	_, err := s.moveDevice(ctx, jobID, dev, next.state, false)
	if err != nil {
		return DeviceRecord{}, err
	}
	return next, nil
}

// SetDeviceOutcome records the outcome of the device's Odin calls before it is copied
// to each user's record, so a retry does not call Odin again. It returns ErrConflict
// when the step's state changed since dev was read.
func (s *Store) SetDeviceOutcome(ctx context.Context, jobID string, dev DeviceRecord, outcome string) (DeviceRecord, error) {
	if dev.Outcome != "" {
		return DeviceRecord{}, fmt.Errorf("set outcome of device %q in job %s: %w", dev.Name, jobID, ErrConflict)
	}
	if outcome == "" {
		return DeviceRecord{}, fmt.Errorf("set outcome of device %q in job %s: the outcome is empty", dev.Name, jobID)
	}
	next := dev
	next.Outcome = outcome
	next.state = deviceOutcomePart + outcome
	if _, err := s.moveDevice(ctx, jobID, dev, next.state, false); err != nil {
		return DeviceRecord{}, err
	}
	return next, nil
}

// FinishDevice marks the device's step done and counts it in Job.DeviceDone, after its
// outcome has been copied to every user's record. It returns FollowupComplete for the one
// call that completed the job. A device finished already returns ErrConflict.
func (s *Store) FinishDevice(ctx context.Context, jobID string, dev DeviceRecord) (Followup, error) {
	if dev.Outcome == "" || dev.Done {
		return FollowupNone, fmt.Errorf("finish device %q of job %s: %w", dev.Name, jobID, ErrConflict)
	}
	return s.moveDevice(ctx, jobID, dev, deviceDonePart+dev.Outcome, true)
}

func (s *Store) moveDevice(ctx context.Context, jobID string, dev DeviceRecord, state string, count bool) (Followup, error) {
	if dev.state == "" {
		// A record that was not read from the store would create the device.
		return FollowupNone, fmt.Errorf("update device %q of job %s: the record was not read from the store: %w", dev.Name, jobID, ErrNotFound)
	}
	res, err := scriptDeviceState.Run(ctx, s.rdb, s.jobKeys(jobID).all(),
		dev.Name, dev.state, state, boolString(count), formatTime(s.now())).Int64Slice()
	if err != nil {
		return FollowupNone, fmt.Errorf("update device %q of job %s: %w", dev.Name, jobID, err)
	}
	switch res[0] {
	case -1:
		return FollowupNone, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	case 0:
		return FollowupNone, fmt.Errorf("update device %q of job %s: %w", dev.Name, jobID, ErrConflict)
	}
	return Followup(res[1]), nil
}
