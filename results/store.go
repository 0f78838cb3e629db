package results

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store reads and writes job records. It is safe for concurrent use by many goroutines
// and many processes: every read-modify-write is a compare-and-set in a Lua script.
type Store struct {
	rdb    redis.UniversalClient
	sealer Sealer
	now    func() time.Time
	prefix string
}

// Option configures a Store.
type Option func(*Store)

// WithSealer sets how secrets are stored. The default is Plaintext, so callers that hold
// live credentials must pass a Keyring.
func WithSealer(s Sealer) Option { return func(st *Store) { st.sealer = s } }

// WithClock sets the time source for timestamps in the record.
func WithClock(now func() time.Time) Option { return func(st *Store) { st.now = now } }

// WithKeyPrefix replaces DefaultKeyPrefix.
func WithKeyPrefix(p string) Option { return func(st *Store) { st.prefix = p } }

// NewStore returns a Store over rdb, which may be a single server, a failover (Sentinel)
// or a cluster client.
func NewStore(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, sealer: Plaintext{}, now: time.Now, prefix: DefaultKeyPrefix}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Redis returns the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// CreateJob stores the metadata of a new job in state JobQueued, with counters at zero.
// When a job with that ID exists already, it returns the existing job and created=false
// and changes nothing, so submitting a job twice is harmless.
func (s *Store) CreateJob(ctx context.Context, job Job) (stored Job, created bool, err error) {
	if err := ValidateJobID(job.ID); err != nil {
		return Job{}, false, err
	}
	if job.TTL == 0 {
		job.TTL = DefaultTTL
	}
	if job.TTL < MinTTL || job.TTL > MaxTTL {
		return Job{}, false, fmt.Errorf("invalid result TTL %s: use a value from %s to %s", job.TTL, MinTTL, MaxTTL)
	}
	if job.CreatedAt.IsZero() {
		job.CreatedAt = s.now()
	}
	job.State = JobQueued
	// The record starts with no users loaded and every counter at zero, whatever the
	// caller filled in, so the returned job is reset to match what is stored.
	job.Total, job.Applied, job.Failed, job.Cursor = 0, 0, 0, 0
	job.DeviceTotal, job.DeviceDone = 0, 0
	job.UsersLoaded = false
	job.StartedAt, job.CompletedAt = time.Time{}, time.Time{}

	k := s.jobKeys(job.ID)
	args := append([]any{ttlSeconds(job.TTL)}, encodeJob(job)...)
	n, err := scriptCreateJob.Run(ctx, s.rdb, []string{k.meta}, args...).Int()
	if err != nil {
		return Job{}, false, fmt.Errorf("create job %s: %w", job.ID, err)
	}
	if n == 0 {
		existing, err := s.Job(ctx, job.ID)
		return existing, false, err
	}

	// The index is a separate key on another cluster slot, so it is written apart from
	// the job. A job missing from it is still complete, only absent from listings.
	idx := s.indexKey()
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, idx, redis.Z{Score: float64(job.CreatedAt.UnixMilli()), Member: job.ID})
	pipe.ZRemRangeByScore(ctx, idx, "-inf", strconv.FormatInt(s.now().Add(-MaxTTL).UnixMilli(), 10))
	pipe.Expire(ctx, idx, MaxTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return Job{}, false, fmt.Errorf("index job %s: %w", job.ID, err)
	}
	return job, true, nil
}

// Job returns the job's metadata and counters, or ErrNotFound.
func (s *Store) Job(ctx context.Context, jobID string) (Job, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobKeys(jobID).meta).Result()
	if err != nil {
		return Job{}, fmt.Errorf("read job %s: %w", jobID, err)
	}
	if len(m) == 0 {
		return Job{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return decodeJob(jobID, m)
}

// LoadUsers stores the job's user list, marks every user pending, and moves the job to
// JobRunning, or to JobCompleted when the list is empty. A user listed twice is stored
// once, at its first position, so the total matches the users that can settle. It runs
// once per job: when the list is loaded already, or the job has finished, it returns the
// job unchanged, so a retried fan-out keeps the users, secrets and outcomes it finds.
// Overlapping calls are safe: each fills a list of its own and only the first to finish
// makes it the job's order list.
func (s *Store) LoadUsers(ctx context.Context, jobID string, users []string) (Job, error) {
	job, err := s.Job(ctx, jobID)
	if err != nil {
		return Job{}, err
	}
	if job.UsersLoaded || job.State.Finished() {
		return job, nil
	}
	users = uniqueUsers(users)

	k := s.jobKeys(jobID)
	loading := k.loading(rand.Text())
	const chunk = 1000
	// HSETNX keeps any user entry that an earlier run already wrote.
	for start := 0; start < len(users); start += chunk {
		part := users[start:min(start+chunk, len(users))]
		members := make([]any, len(part))
		for i, u := range part {
			members[i] = u
		}
		pipe := s.rdb.Pipeline()
		pipe.RPush(ctx, loading, members...)
		for _, u := range part {
			pipe.HSetNX(ctx, k.users, u, pendingValue)
		}
		pipe.Expire(ctx, loading, job.TTL)
		pipe.Expire(ctx, k.users, job.TTL)
		if _, err := pipe.Exec(ctx); err != nil {
			return Job{}, fmt.Errorf("load users of job %s: %w", jobID, err)
		}
	}

	keys := append(k.all(), loading)
	state, err := scriptStartJob.Run(ctx, s.rdb, keys, len(users), formatTime(s.now())).Text()
	if err != nil {
		return Job{}, fmt.Errorf("load users of job %s: %w", jobID, err)
	}
	switch state {
	case "":
		return Job{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	case "short":
		return Job{}, fmt.Errorf("load users of job %s: the list being loaded expired before it was complete", jobID)
	}
	return s.Job(ctx, jobID)
}

// uniqueUsers returns users without repeats, keeping the first position of each.
func uniqueUsers(users []string) []string {
	seen := make(map[string]struct{}, len(users))
	out := make([]string, 0, len(users))
	for _, u := range users {
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		out = append(out, u)
	}
	return out
}

// UserIDs returns the user IDs at positions [start, start+count) of the submission order.
func (s *Store) UserIDs(ctx context.Context, jobID string, start, count int) ([]string, error) {
	if count <= 0 {
		return nil, nil
	}
	ids, err := s.rdb.LRange(ctx, s.jobKeys(jobID).order, int64(start), int64(start+count-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("read users of job %s: %w", jobID, err)
	}
	return ids, nil
}

// JobStatus is the part of a job that a per-user task checks before it calls Odin.
type JobStatus struct {
	State  JobState
	Reason string
	DryRun bool
	// Type, ServiceProviderID and GroupID are the job's, which a task must match.
	Type              CredentialType
	ServiceProviderID string
	GroupID           string
	// Cursor is the number of users the fan-out has passed, of Total.
	Cursor, Total int
	// UsersLoaded is true once the fan-out stored the job's user list.
	UsersLoaded bool
}

// jobStatusFields are the fields of the job hash that make a JobStatus, in the order of
// newJobStatus's arguments.
var jobStatusFields = []string{"state", "reason", "dry_run", "type", "sp", "group", "cursor", "total", "users_loaded"}

// newJobStatus builds a JobStatus from the values of jobStatusFields.
func newJobStatus(vals ...any) JobStatus {
	str := func(v any) string { s, _ := v.(string); return s }
	num := func(v any) int { n, _ := strconv.Atoi(str(v)); return n }
	return JobStatus{
		State: JobState(str(vals[0])), Reason: str(vals[1]), DryRun: str(vals[2]) == "1",
		Type: CredentialType(str(vals[3])), ServiceProviderID: str(vals[4]), GroupID: str(vals[5]),
		Cursor: num(vals[6]), Total: num(vals[7]), UsersLoaded: str(vals[8]) == "1",
	}
}

// UserWithJobStatus returns one user's record and the job's state and reason in one round
// trip, or ErrNotFound when either is missing.
func (s *Store) UserWithJobStatus(ctx context.Context, jobID, userID string) (UserRecord, JobStatus, error) {
	k := s.jobKeys(jobID)
	pipe := s.rdb.Pipeline()
	metaCmd := pipe.HMGet(ctx, k.meta, jobStatusFields...)
	userCmd := pipe.HGet(ctx, k.users, userID)
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return UserRecord{}, JobStatus{}, fmt.Errorf("read user %q of job %s: %w", userID, jobID, err)
	}
	status := newJobStatus(metaCmd.Val()...)
	if status.State == "" {
		return UserRecord{}, JobStatus{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	raw, err := userCmd.Result()
	if errors.Is(err, redis.Nil) {
		return UserRecord{}, status, fmt.Errorf("user %q of job %s: %w", userID, jobID, ErrNotFound)
	}
	rec, err := s.decodeUser(jobID, userID, raw)
	return rec, status, err
}

// JobState returns a job's state alone, in one HGET, or ErrNotFound.
func (s *Store) JobState(ctx context.Context, jobID string) (JobState, error) {
	state, err := s.rdb.HGet(ctx, s.jobKeys(jobID).meta, "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read the state of job %s: %w", jobID, err)
	}
	return JobState(state), nil
}

// BeginAttempt reads a user's record and the job's status like UserWithJobStatus, for the
// task that will try to set the user's value. While the job runs for real, the same
// round trip records that the value may be sent to Odin (UserRecord.MaybeSent) until the
// user is settled. The export of a finished job shows a pending user's value only then.
func (s *Store) BeginAttempt(ctx context.Context, jobID, userID string) (UserRecord, JobStatus, error) {
	vals, err := scriptBeginAttempt.Run(ctx, s.rdb, s.jobKeys(jobID).all(), userID).Slice()
	if err != nil {
		return UserRecord{}, JobStatus{}, fmt.Errorf("read user %q of job %s: %w", userID, jobID, err)
	}
	if len(vals) != 10 {
		return UserRecord{}, JobStatus{}, fmt.Errorf("read user %q of job %s: unexpected reply %v", userID, jobID, vals)
	}
	status := newJobStatus(vals[0], vals[1], vals[2], vals[4], vals[5], vals[6], vals[7], vals[8], vals[9])
	if status.State == "" {
		return UserRecord{}, JobStatus{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	raw, ok := vals[3].(string)
	if !ok {
		return UserRecord{}, status, fmt.Errorf("user %q of job %s: %w", userID, jobID, ErrNotFound)
	}
	rec, err := s.decodeUser(jobID, userID, raw)
	rec.MaybeSent = status.State == JobRunning && !status.DryRun
	return rec, status, err
}

// EndAttempt removes a pending user from the sending hash after an attempt that sent
// nothing, such as one stopped because its job was cancelled while it waited.
func (s *Store) EndAttempt(ctx context.Context, jobID, userID string) error {
	if err := s.rdb.HDel(ctx, s.jobKeys(jobID).sending, userID).Err(); err != nil {
		return fmt.Errorf("update user %q of job %s: %w", userID, jobID, err)
	}
	return nil
}

// User returns one user's record, or ErrNotFound.
func (s *Store) User(ctx context.Context, jobID, userID string) (UserRecord, error) {
	recs, err := s.Users(ctx, jobID, []string{userID})
	if err != nil {
		return UserRecord{}, err
	}
	return recs[0], nil
}

// Users returns the records of the given users in the same order. It returns ErrNotFound
// when any of them has no record.
func (s *Store) Users(ctx context.Context, jobID string, userIDs []string) ([]UserRecord, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	k := s.jobKeys(jobID)
	pipe := s.rdb.Pipeline()
	usersCmd := pipe.HMGet(ctx, k.users, userIDs...)
	sendingCmd := pipe.HMGet(ctx, k.sending, userIDs...)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read users of job %s: %w", jobID, err)
	}
	vals, sending := usersCmd.Val(), sendingCmd.Val()
	recs := make([]UserRecord, len(userIDs))
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("user %q of job %s: %w", userIDs[i], jobID, ErrNotFound)
		}
		rec, err := s.decodeUser(jobID, userIDs[i], raw)
		if err != nil {
			return nil, err
		}
		rec.MaybeSent = i < len(sending) && sending[i] != nil
		recs[i] = rec
	}
	return recs, nil
}

// WriteAhead stores a secret for each given user that is pending and has none yet, and
// returns the users it wrote. A user that has a secret keeps it: after a crash the
// existing value may already be on Odin, so only that value may be sent again.
func (s *Store) WriteAhead(ctx context.Context, jobID string, secrets map[string]string) (written []string, err error) {
	ids := make([]string, 0, len(secrets))
	for u := range secrets {
		ids = append(ids, u)
	}
	recs, err := s.Users(ctx, jobID, ids)
	if err != nil {
		return nil, err
	}

	var args []any
	var candidates []string
	for _, rec := range recs {
		if rec.State != UserPending || rec.Secret != "" {
			continue
		}
		next := rec
		next.Secret = secrets[rec.UserID]
		raw, err := s.encodeUser(jobID, next)
		if err != nil {
			return nil, err
		}
		args = append(args, rec.UserID, rec.raw, raw)
		candidates = append(candidates, rec.UserID)
	}
	if len(candidates) == 0 {
		return nil, nil
	}

	res, err := scriptCompareAndSet.Run(ctx, s.rdb, s.jobKeys(jobID).all(), args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("write secrets ahead for job %s: %w", jobID, err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	for i, ok := range res {
		if ok == 1 {
			written = append(written, candidates[i])
		}
	}
	return written, nil
}

// ReplaceSecret swaps the pending secret of a user for a new one after Odin rejected the
// old one by a password rule, and marks the user regenerated. It returns ErrConflict when
// the record no longer holds old as the pending value.
func (s *Store) ReplaceSecret(ctx context.Context, jobID string, old UserRecord, secret string) (UserRecord, error) {
	if old.State != UserPending {
		return UserRecord{}, fmt.Errorf("replace secret of user %q in job %s: state is %s: %w", old.UserID, jobID, old.State, ErrConflict)
	}
	next := old
	next.Secret = secret
	next.Regenerated = true
	if err := s.compareAndSet(ctx, jobID, old, &next); err != nil {
		return UserRecord{}, err
	}
	return next, nil
}

// SetDevice records the outcome of the device step of an applied user.
func (s *Store) SetDevice(ctx context.Context, jobID string, rec UserRecord, deviceName, outcome string) (UserRecord, error) {
	next := rec
	next.DeviceName = deviceName
	next.Device = outcome
	if err := s.compareAndSet(ctx, jobID, rec, &next); err != nil {
		return UserRecord{}, err
	}
	return next, nil
}

func (s *Store) compareAndSet(ctx context.Context, jobID string, old UserRecord, next *UserRecord) error {
	raw, err := s.encodeUser(jobID, *next)
	if err != nil {
		return err
	}
	res, err := scriptCompareAndSet.Run(ctx, s.rdb, s.jobKeys(jobID).all(), old.UserID, old.raw, raw).Int64Slice()
	if err != nil {
		return fmt.Errorf("update user %q of job %s: %w", old.UserID, jobID, err)
	}
	if len(res) == 0 {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	if res[0] != 1 {
		return fmt.Errorf("update user %q of job %s: %w", old.UserID, jobID, ErrConflict)
	}
	next.raw = raw
	return nil
}

// MarkApplied records that Odin accepted the user's pending value after attempts
// attempts. It returns completed=true for the one call that settled the job's last user.
// In a job with a device step it returns false, because the user's device lookup is
// still to come (RecordDeviceLookup). It returns ErrConflict when the record changed
// since rec was read; the caller reads it again.
func (s *Store) MarkApplied(ctx context.Context, jobID string, rec UserRecord, attempts int) (completed bool, err error) {
	next := rec
	next.Attempts = attempts
	next.State = UserApplied
	next.AppliedAt = s.now()
	next.Reason = ""
	return s.settle(ctx, jobID, rec, next, "applied")
}

// MarkFailed records that the user cannot be reset, with the reason shown to operators.
// The secret stays in the record: it may have reached Odin in an earlier attempt.
func (s *Store) MarkFailed(ctx context.Context, jobID string, rec UserRecord, reason string, attempts int) (completed bool, err error) {
	next := rec
	next.Attempts = attempts
	next.State = UserFailed
	next.Reason = reason
	return s.settle(ctx, jobID, rec, next, "failed")
}

// FailUnsent records that a user whose value was never sent cannot be reset, as
// MarkFailed does, but only while the job runs: the fan-out gives such users up, and a
// cancelled job's record must stay as the cancel left it. On a job that is not running
// it changes nothing and returns ErrJobFinished.
func (s *Store) FailUnsent(ctx context.Context, jobID string, rec UserRecord, reason string) (completed bool, err error) {
	next := rec
	next.State = UserFailed
	next.Reason = reason
	return s.settle(ctx, jobID, rec, next, "failed", "1")
}

// settle runs scriptSettle. extra holds its optional ARGV[6].
func (s *Store) settle(ctx context.Context, jobID string, old, next UserRecord, counter string, extra ...any) (bool, error) {
	if old.State != UserPending {
		return false, fmt.Errorf("settle user %q of job %s: state is %s: %w", old.UserID, jobID, old.State, ErrConflict)
	}
	raw, err := s.encodeUser(jobID, next)
	if err != nil {
		return false, err
	}
	args := append([]any{old.UserID, old.raw, raw, counter, formatTime(s.now())}, extra...)
	res, err := scriptSettle.Run(ctx, s.rdb, s.jobKeys(jobID).all(), args...).Int64Slice()
	if err != nil {
		return false, fmt.Errorf("settle user %q of job %s: %w", old.UserID, jobID, err)
	}
	switch res[0] {
	case -1:
		return false, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	case -2:
		return false, fmt.Errorf("settle user %q of job %s: %w", old.UserID, jobID, ErrJobFinished)
	case 0:
		return false, fmt.Errorf("settle user %q of job %s: %w", old.UserID, jobID, ErrConflict)
	}
	return res[1] == 1, nil
}

// NoteProgress records the job's progress counter for the sweeper and returns when it
// last changed: now when progress differs from the stored value, the stored time otherwise.
func (s *Store) NoteProgress(ctx context.Context, jobID string, progress int) (changedAt time.Time, err error) {
	at, err := scriptNoteProgress.Run(ctx, s.rdb, []string{s.jobKeys(jobID).meta}, progress, formatTime(s.now())).Text()
	if err != nil {
		return time.Time{}, fmt.Errorf("note progress of job %s: %w", jobID, err)
	}
	return parseTime(at), nil
}

// SetCursor records that the fan-out has enqueued the first n users. It never moves the
// cursor back, so two overlapping runs of the fan-out cannot lose progress. It returns
// ErrNotFound when the job does not exist.
func (s *Store) SetCursor(ctx context.Context, jobID string, n int) error {
	cursor, err := scriptMax.Run(ctx, s.rdb, s.jobKeys(jobID).all(), "cursor", n).Int()
	if err != nil {
		return fmt.Errorf("store fan-out cursor of job %s: %w", jobID, err)
	}
	if cursor < 0 {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return nil
}

// SetReason records why a running job is waiting, or clears it with "". Finished jobs keep
// their reason. It returns ErrNotFound when the job does not exist.
func (s *Store) SetReason(ctx context.Context, jobID, reason string) error {
	state, err := scriptSetIfState.Run(ctx, s.rdb, s.jobKeys(jobID).all(), "queued,running", "reason", reason).Text()
	if err != nil {
		return fmt.Errorf("store reason of job %s: %w", jobID, err)
	}
	if state == "" {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return nil
}

// ClearReason empties the job's reason if it starts with prefix, in one step, so a reason
// another worker set meanwhile stays. It reports whether it cleared the reason.
func (s *Store) ClearReason(ctx context.Context, jobID, prefix string) (bool, error) {
	cleared, err := scriptClearReason.Run(ctx, s.rdb, []string{s.jobKeys(jobID).meta}, prefix).Int()
	if err != nil {
		return false, fmt.Errorf("clear reason of job %s: %w", jobID, err)
	}
	return cleared == 1, nil
}

// Cancel moves a queued or running job to JobCancelled. Users already applied stay applied;
// pending users are not reset any more. It returns ErrJobFinished when the job had
// completed, and the job unchanged when it was cancelled already.
func (s *Store) Cancel(ctx context.Context, jobID string) (Job, error) {
	return s.Abort(ctx, jobID, "cancelled by an operator")
}

// Abort cancels a queued or running job like Cancel, with reason as the job's reason:
// the worker aborts a job that cannot run, such as one whose group Odin cannot list.
func (s *Store) Abort(ctx context.Context, jobID, reason string) (Job, error) {
	state, err := scriptSetIfState.Run(ctx, s.rdb, s.jobKeys(jobID).all(), "queued,running",
		"state", string(JobCancelled), "completed_at", formatTime(s.now()), "reason", reason).Text()
	if err != nil {
		return Job{}, fmt.Errorf("cancel job %s: %w", jobID, err)
	}
	switch JobState(state) {
	case "":
		return Job{}, fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	case JobCompleted:
		return Job{}, fmt.Errorf("cancel job %s: %w", jobID, ErrJobFinished)
	}
	return s.Job(ctx, jobID)
}

// SetAudit stores free-form audit fields (who submitted, who cancelled) on the job.
func (s *Store) SetAudit(ctx context.Context, jobID string, fields map[string]string) error {
	if len(fields) == 0 {
		return nil
	}
	args := make([]any, 0, 1+2*len(fields))
	args = append(args, "queued,running,completed,cancelled")
	for f, v := range fields {
		args = append(args, "audit_"+f, v)
	}
	// The script writes only to an existing job hash: an HSET on a missing one would
	// create a hash without a TTL.
	state, err := scriptSetIfState.Run(ctx, s.rdb, s.jobKeys(jobID).all(), args...).Text()
	if err != nil {
		return fmt.Errorf("store audit of job %s: %w", jobID, err)
	}
	if state == "" {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return nil
}

// ClaimAudit sets the audit field to value unless the field holds another value, and
// returns the value the field holds afterwards: value when the claim succeeded. Of
// several callers claiming at once, one wins. It returns ErrNotFound for a missing job.
func (s *Store) ClaimAudit(ctx context.Context, jobID, field, value string) (holder string, err error) {
	holder, err = scriptClaimField.Run(ctx, s.rdb, []string{s.jobKeys(jobID).meta}, "audit_"+field, value).Text()
	if err != nil {
		return "", fmt.Errorf("store audit of job %s: %w", jobID, err)
	}
	if holder == "" {
		return "", fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return holder, nil
}

// ReleaseAudit removes the audit field if it still holds value, undoing a ClaimAudit.
func (s *Store) ReleaseAudit(ctx context.Context, jobID, field, value string) error {
	if err := scriptReleaseField.Run(ctx, s.rdb, []string{s.jobKeys(jobID).meta}, "audit_"+field, value).Err(); err != nil {
		return fmt.Errorf("store audit of job %s: %w", jobID, err)
	}
	return nil
}

// ForEachUser calls fn for every user in submission order, reading the record in chunks,
// and stops at the first error fn returns.
func (s *Store) ForEachUser(ctx context.Context, jobID string, fn func(UserRecord) error) error {
	const chunk = 500
	for start := 0; ; start += chunk {
		ids, err := s.UserIDs(ctx, jobID, start, chunk)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		recs, err := s.Users(ctx, jobID, ids)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(ids) < chunk {
			return nil
		}
	}
}

// Delete removes the job's record.
func (s *Store) Delete(ctx context.Context, jobID string) error {
	k := s.jobKeys(jobID)
	n, err := s.rdb.Del(ctx, k.meta, k.users, k.order, k.dev, k.sending).Result()
	if err != nil {
		return fmt.Errorf("delete job %s: %w", jobID, err)
	}
	s.rdb.ZRem(ctx, s.indexKey(), jobID)
	if n == 0 {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return nil
}

// Jobs returns up to limit jobs, newest first. Jobs whose record expired are dropped from
// the index as they are found.
func (s *Store) Jobs(ctx context.Context, limit int) ([]Job, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.indexKey(), 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs := make([]Job, 0, len(ids))
	for _, id := range ids {
		job, err := s.Job(ctx, id)
		if errors.Is(err, ErrNotFound) {
			s.rdb.ZRem(ctx, s.indexKey(), id)
			continue
		}
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, job)
	}
	return jobs, nil
}

// pendingValue is the stored form of a pending user without a secret.
const pendingValue = `{"s":"p"}`

// storedUser is the compact JSON of one user in the users hash. Short names keep a
// completed job under 300 bytes of Redis memory per user.
type storedUser struct {
	State       string `json:"s"`
	Secret      string `json:"v,omitempty"`
	Attempts    int    `json:"n,omitempty"`
	Regenerated bool   `json:"g,omitempty"`
	AppliedAt   int64  `json:"t,omitempty"`
	Reason      string `json:"r,omitempty"`
	Device      string `json:"d,omitempty"`
	DeviceName  string `json:"dn,omitempty"`
	Unconfirmed bool   `json:"u,omitempty"`
}

var stateCodes = map[UserState]string{UserPending: "p", UserApplied: "a", UserFailed: "f"}

func (s *Store) encodeUser(jobID string, rec UserRecord) (string, error) {
	su := storedUser{
		State:       stateCodes[rec.State],
		Attempts:    rec.Attempts,
		Regenerated: rec.Regenerated,
		Reason:      rec.Reason,
		Device:      rec.Device,
		DeviceName:  rec.DeviceName,
		Unconfirmed: rec.Unconfirmed,
	}
	if su.State == "" {
		return "", fmt.Errorf("user %q of job %s: unknown state %q", rec.UserID, jobID, rec.State)
	}
	if !rec.AppliedAt.IsZero() {
		su.AppliedAt = rec.AppliedAt.Unix()
	}
	if rec.Secret != "" {
		sealed, err := s.sealer.Seal(jobID, rec.UserID, rec.Secret)
		if err != nil {
			return "", err
		}
		su.Secret = sealed
	}
	b, err := json.Marshal(su)
	if err != nil {
		return "", fmt.Errorf("encode user %q of job %s: %w", rec.UserID, jobID, err)
	}
	return string(b), nil
}

func (s *Store) decodeUser(jobID, userID, raw string) (UserRecord, error) {
	var su storedUser
	if err := json.Unmarshal([]byte(raw), &su); err != nil {
		return UserRecord{}, fmt.Errorf("user %q of job %s: corrupt record: %w", userID, jobID, err)
	}
	rec := UserRecord{
		UserID:      userID,
		Attempts:    su.Attempts,
		Regenerated: su.Regenerated,
		Reason:      su.Reason,
		Device:      su.Device,
		DeviceName:  su.DeviceName,
		Unconfirmed: su.Unconfirmed,
		raw:         raw,
	}
	switch su.State {
	case "p":
		rec.State = UserPending
	case "a":
		rec.State = UserApplied
	case "f":
		rec.State = UserFailed
	default:
		return UserRecord{}, fmt.Errorf("user %q of job %s: corrupt record: unknown state %q", userID, jobID, su.State)
	}
	if su.AppliedAt != 0 {
		rec.AppliedAt = time.Unix(su.AppliedAt, 0).UTC()
	}
	if su.Secret != "" {
		secret, err := s.sealer.Open(jobID, userID, su.Secret)
		if err != nil {
			return UserRecord{}, fmt.Errorf("read secret of user %q in job %s: %w", userID, jobID, err)
		}
		rec.Secret = secret
	}
	return rec, nil
}

func encodeJob(j Job) []any {
	return []any{
		"type", string(j.Type),
		"sp", j.ServiceProviderID,
		"group", j.GroupID,
		"all_users", boolString(j.AllUsers),
		"total", j.Total,
		"applied", 0,
		"failed", 0,
		"cursor", 0,
		"state", string(j.State),
		"reason", j.Reason,
		"requested_by", j.RequestedBy,
		"priority", j.Priority,
		"callback_url", j.CallbackURL,
		"devices", string(j.Devices),
		"dry_run", boolString(j.DryRun),
		"device_total", 0,
		"device_done", 0,
		"ttl", ttlSeconds(j.TTL),
		"created_at", formatTime(j.CreatedAt),
		"users_loaded", "0",
		"users_digest", j.UsersDigest,
	}
}

func decodeJob(id string, m map[string]string) (Job, error) {
	j := Job{
		ID:                id,
		Type:              CredentialType(m["type"]),
		ServiceProviderID: m["sp"],
		GroupID:           m["group"],
		AllUsers:          m["all_users"] == "1",
		State:             JobState(m["state"]),
		Reason:            m["reason"],
		RequestedBy:       m["requested_by"],
		Priority:          m["priority"],
		CallbackURL:       m["callback_url"],
		Devices:           DeviceMode(m["devices"]),
		DryRun:            m["dry_run"] == "1",
		UsersLoaded:       m["users_loaded"] == "1",
		UsersDigest:       m["users_digest"],
	}
	ints := map[string]*int{
		"total": &j.Total, "applied": &j.Applied, "failed": &j.Failed, "cursor": &j.Cursor,
		"device_total": &j.DeviceTotal, "device_done": &j.DeviceDone,
	}
	for field, dst := range ints {
		if v := m[field]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return Job{}, fmt.Errorf("job %s: corrupt field %s=%q", id, field, v)
			}
			*dst = n
		}
	}
	if v := m["ttl"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Job{}, fmt.Errorf("job %s: corrupt field ttl=%q", id, v)
		}
		j.TTL = time.Duration(n) * time.Second
	}
	j.CreatedAt = parseTime(m["created_at"])
	j.StartedAt = parseTime(m["started_at"])
	j.CompletedAt = parseTime(m["completed_at"])
	j.SettledAt = parseTime(m["settled_at"])
	return j, nil
}

// AuditFields returns the audit fields SetAudit stored on the job.
func (s *Store) AuditFields(ctx context.Context, jobID string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobKeys(jobID).meta).Result()
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", jobID, err)
	}
	out := map[string]string{}
	for f, v := range m {
		if name, ok := strings.CutPrefix(f, "audit_"); ok {
			out[name] = v
		}
	}
	return out, nil
}

func ttlSeconds(d time.Duration) int64 {
	if d <= 0 {
		d = DefaultTTL
	}
	return int64(d / time.Second)
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
