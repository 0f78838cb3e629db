// Package tasks defines the asynq tasks of a bulk credential reset and their handlers.
// reset:bulk fans a job out into one reset:user task per user. reset:user sets one
// user's new value on Odin. reset:complete runs once, when the last user is settled.
// SIP jobs with a device step also run reset:devices and reset:device, which rebuild the
// users' phones before the job completes (see HandleDeviceStep).
//
// Payloads never carry a secret: asynqmon shows payloads and error strings to anyone who
// can open it. Secrets live only in the results record, written there before they are
// sent to Odin.
package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/results"
)

// Task type names.
const (
	TypeBulkReset = "reset:bulk"
	TypeUserReset = "reset:user"
	TypeComplete  = "reset:complete"
	TypeSweep     = "reset:sweep"
)

// Queue names, one per priority. The worker serves QueueHigh on an asynq server of its
// own, and QueueDefault before QueueLow, with strict priority, on a second one.
const (
	QueueHigh    = "reset-high"
	QueueDefault = "reset-default"
	QueueLow     = "reset-low"
)

// Priorities accepted by BulkResetPayload.Priority.
const (
	PriorityHigh    = "high"
	PriorityDefault = "default"
	PriorityLow     = "low"
)

// QueueFor returns the queue of a priority; "" means PriorityDefault.
func QueueFor(priority string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(priority)) {
	case "", PriorityDefault:
		return QueueDefault, nil
	case PriorityHigh:
		return QueueHigh, nil
	case PriorityLow:
		return QueueLow, nil
	}
	return "", fmt.Errorf("invalid priority %q: use high, default or low", priority)
}

// Queues returns every queue of the worker with its weight for asynq.Config.Queues.
// With StrictPriority the weights only order the queues.
func Queues() map[string]int {
	return map[string]int{QueueHigh: 6, QueueDefault: 3, QueueLow: 1}
}

// UrgentQueues returns the queues of the worker's urgent server: QueueHigh alone.
func UrgentQueues() map[string]int {
	return map[string]int{QueueHigh: 1}
}

// BatchQueues returns the queues of the worker's batch server, QueueDefault before
// QueueLow with StrictPriority.
func BatchQueues() map[string]int {
	return map[string]int{QueueDefault: 3, QueueLow: 1}
}

// Limits on what a payload may contain.
const (
	// MaxUsers bounds one job; split larger populations into several jobs.
	MaxUsers = 500_000
	// MaxUserIDLength is BroadWorks' limit on a user ID (161 characters).
	MaxUserIDLength = 161
	// MaxIDLength bounds service provider and group IDs.
	MaxIDLength = 80
)

// BulkResetPayload is the payload of reset:bulk: which credential to reset for which users.
type BulkResetPayload struct {
	JobID             string                 `json:"jobId"`
	Type              results.CredentialType `json:"type"`
	ServiceProviderID string                 `json:"serviceProviderId"`
	GroupID           string                 `json:"groupId"`
	// Users lists the user IDs; it must be empty when AllUsers is true.
	Users []string `json:"users,omitempty"`
	// AllUsers resets every user that Odin lists in the group when the job starts.
	AllUsers bool `json:"allUsers,omitempty"`
	// ResultTTLSeconds is how long the record is kept after the job's last change;
	// 0 means results.DefaultTTL.
	ResultTTLSeconds int64 `json:"resultTtlSeconds,omitempty"`
	// Priority is high, default (when empty) or low.
	Priority    string `json:"priority,omitempty"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// CallbackURL receives a POST with the job summary (never secrets) when it completes.
	CallbackURL string `json:"callbackUrl,omitempty"`
	// DryRun checks every user (exists, has the service the credential needs, and for
	// device steps a group-level device) without generating or setting anything.
	DryRun bool `json:"dryRun,omitempty"`
	// Resume restarts the fan-out of a job whose user list is already in the record. The
	// sweeper sets it when the original reset:bulk task was lost. Users must be empty.
	Resume bool `json:"resume,omitempty"`
	// Devices makes SIP jobs rebuild ("rebuild") or rebuild and re-sync ("reset") each
	// affected phone after its users' passwords are set.
	Devices results.DeviceMode `json:"devices,omitempty"`
}

// UserResetPayload is the payload of reset:user. It names the user; the new value is in
// the results record.
type UserResetPayload struct {
	JobID             string                 `json:"jobId"`
	UserID            string                 `json:"userId"`
	Type              results.CredentialType `json:"type"`
	ServiceProviderID string                 `json:"serviceProviderId"`
	GroupID           string                 `json:"groupId"`
}

// CompletePayload is the payload of reset:complete.
type CompletePayload struct {
	JobID string `json:"jobId"`
}

// ValidationError lists every problem found in a request, each naming the value and the fix.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return "invalid request:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Normalize validates p and returns it with the type canonical, IDs trimmed, and user IDs
// trimmed and without duplicates (first occurrence kept). duplicates lists the removed
// repeats so callers can warn about them. The error is a *ValidationError.
func (p BulkResetPayload) Normalize() (out BulkResetPayload, duplicates []string, err error) {
	var problems []string
	out = p

	if err := results.ValidateJobID(p.JobID); err != nil {
		problems = append(problems, err.Error())
	}
	t, err := results.ParseCredentialType(string(p.Type))
	if err != nil {
		problems = append(problems, err.Error())
	}
	out.Type = t
	out.ServiceProviderID = strings.TrimSpace(p.ServiceProviderID)
	out.GroupID = strings.TrimSpace(p.GroupID)
	problems = append(problems, checkID("service provider ID", out.ServiceProviderID, "--service-provider")...)
	problems = append(problems, checkID("group ID", out.GroupID, "--group")...)

	if p.ResultTTLSeconds != 0 {
		// Compared in seconds: converting a huge value to a time.Duration first would
		// overflow, and 2^55 s + 1 h would pass as one hour.
		minSeconds, maxSeconds := int64(results.MinTTL/time.Second), int64(results.MaxTTL/time.Second)
		if p.ResultTTLSeconds < minSeconds || p.ResultTTLSeconds > maxSeconds {
			problems = append(problems, fmt.Sprintf("invalid result TTL %ds: use a value from %s to %s", p.ResultTTLSeconds, results.MinTTL, results.MaxTTL))
		}
	}
	if _, err := QueueFor(p.Priority); err != nil {
		problems = append(problems, err.Error())
	}
	out.Priority = strings.ToLower(strings.TrimSpace(p.Priority))
	if out.Priority == "" {
		out.Priority = PriorityDefault
	}
	switch p.Devices {
	case results.DevicesNone:
	case results.DevicesRebuild, results.DevicesReset:
		if t != "" && t != results.SIP {
			problems = append(problems, fmt.Sprintf("device step %q applies to SIP jobs only, not %s: drop --rebuild-devices/--reset-devices", p.Devices, t))
		}
	default:
		problems = append(problems, fmt.Sprintf("invalid device step %q: use rebuild or reset, or leave it empty", p.Devices))
	}
	if p.CallbackURL != "" {
		if err := checkCallbackURL(p.CallbackURL); err != nil {
			problems = append(problems, err.Error())
		}
	}

	users, duplicates, userProblems := NormalizeUsers(p.Users)
	problems = append(problems, userProblems...)
	out.Users = users
	switch {
	case p.AllUsers && len(users) > 0:
		problems = append(problems, "both a user list and all users were requested: give users, or all users, not both")
	case p.Resume && len(users) > 0:
		problems = append(problems, "a resumed job takes its users from the record: give no users")
	case !p.AllUsers && !p.Resume && len(users) == 0 && len(userProblems) == 0:
		problems = append(problems, "no users to reset: give at least one user ID, or request all users of the group")
	case len(users) > MaxUsers:
		problems = append(problems, fmt.Sprintf("%d users in one job, the maximum is %d: split the list into several jobs", len(users), MaxUsers))
	}

	if len(problems) > 0 {
		return BulkResetPayload{}, duplicates, &ValidationError{Problems: problems}
	}
	return out, duplicates, nil
}

// NormalizeUsers trims user IDs, drops duplicates (returned in duplicates) and reports
// empty, overlong, non-UTF-8 or control-character IDs as problems.
func NormalizeUsers(in []string) (users, duplicates []string, problems []string) {
	seen := make(map[string]struct{}, len(in))
	for i, raw := range in {
		u := strings.TrimSpace(raw)
		if problem := checkUserID(u); problem != "" {
			problems = append(problems, fmt.Sprintf("user %d of %d: %s", i+1, len(in), problem))
			if len(problems) >= 20 {
				problems = append(problems, "more invalid user IDs not listed: fix the ones above first")
				return nil, nil, problems
			}
			continue
		}
		if _, dup := seen[u]; dup {
			duplicates = append(duplicates, u)
			continue
		}
		seen[u] = struct{}{}
		users = append(users, u)
	}
	return users, duplicates, problems
}

func checkUserID(u string) string {
	switch {
	case u == "":
		return "empty user ID: remove the blank entry"
	case !utf8.ValidString(u) || strings.ContainsRune(u, utf8.RuneError):
		return fmt.Sprintf("user ID %q is not valid UTF-8 or contains U+FFFD, the character that replaces invalid bytes: save the list as UTF-8", truncate(u))
	case utf8.RuneCountInString(u) > MaxUserIDLength:
		return fmt.Sprintf("user ID %q is %d characters, BroadWorks allows at most %d: check the list for joined lines", truncate(u), utf8.RuneCountInString(u), MaxUserIDLength)
	case strings.ContainsFunc(u, isControl):
		return fmt.Sprintf("user ID %q contains a control character: remove it", truncate(u))
	}
	return ""
}

func checkID(what, v, flag string) []string {
	switch {
	case v == "":
		return []string{fmt.Sprintf("missing %s: set %s", what, flag)}
	case !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError):
		return []string{fmt.Sprintf("%s %q is not valid UTF-8 or contains U+FFFD: check %s", what, truncate(v), flag)}
	case utf8.RuneCountInString(v) > MaxIDLength:
		return []string{fmt.Sprintf("%s %q is longer than %d characters: check %s", what, truncate(v), MaxIDLength, flag)}
	case strings.ContainsFunc(v, isControl):
		return []string{fmt.Sprintf("%s %q contains a control character: check %s", what, truncate(v), flag)}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// truncate shortens a value quoted in an error so a 10 MB line does not become a 10 MB
// message.
func truncate(s string) string { return clip(s, 64) }

// clip returns s cut to at most limit bytes at a character boundary, followed by its full
// length when it was cut.
func clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d bytes)", len(s))
}

// Task options shared by constructors.
const (
	// UserMaxRetry is the retry budget of reset:user. A worker crash costs one attempt, and
	// with RetryDelay's cap of five minutes 20 retries cover more than an hour of Odin
	// trouble.
	UserMaxRetry = 20
	// spareRetry is one attempt asynq grants beyond the budget the handlers count.
	// asynq archives a task whose last attempt returns any error, a *WaitError included,
	// which would leave its user pending. A wait spends no attempt, so with the spare the
	// handlers' last attempt can wait for a pause or a rate limit and run again.
	spareRetry = 1
	// BulkMaxRetry is the retry budget of reset:bulk; each retry resumes at the cursor.
	BulkMaxRetry = 25
	// UserTimeout bounds one reset:user attempt: up to five Odin requests (SIP user name,
	// set, one regenerate and set, and the device lookup of a device step) of at most
	// 30 s each, plus rate-limit waits. A lookup cut short is resumed on retry.
	UserTimeout = 4 * time.Minute
	// BulkTimeout bounds one fan-out attempt; a retry resumes where it stopped.
	BulkTimeout = 2 * time.Hour
)

// NewBulkResetTask validates p and returns the reset:bulk task whose TaskID is the job
// ID, so enqueueing the same job twice returns asynq.ErrTaskIDConflict instead of a second
// reset. Extra options are applied after the defaults.
func NewBulkResetTask(p BulkResetPayload, opts ...asynq.Option) (*asynq.Task, error) {
	p, _, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeBulkReset, err)
	}
	queue, _ := QueueFor(p.Priority)
	base := []asynq.Option{
		asynq.TaskID(p.JobID), asynq.Queue(queue), asynq.MaxRetry(BulkMaxRetry), asynq.Timeout(BulkTimeout),
	}
	return asynq.NewTask(TypeBulkReset, payload, append(base, opts...)...), nil
}

// NewResumeTask returns a reset:bulk task that resumes the fan-out of a job from the
// record, for a job whose original task was lost.
func NewResumeTask(job results.Job, queue string) (*asynq.Task, error) {
	p := BulkResetPayload{
		JobID: job.ID, Type: job.Type, ServiceProviderID: job.ServiceProviderID, GroupID: job.GroupID,
		AllUsers: job.AllUsers, Resume: !job.AllUsers, Priority: job.Priority, RequestedBy: job.RequestedBy,
		CallbackURL: job.CallbackURL, Devices: job.Devices, ResultTTLSeconds: int64(job.TTL / time.Second),
		DryRun: job.DryRun,
	}
	return NewBulkResetTask(p, asynq.Queue(queue))
}

// UserTaskID is the TaskID of a user's reset:user task in a job.
func UserTaskID(jobID, userID string) string { return jobID + "/" + userID }

// NewUserResetTask returns the reset:user task of one user, in the job's queue.
func NewUserResetTask(p UserResetPayload, queue string) (*asynq.Task, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeUserReset, err)
	}
	return asynq.NewTask(TypeUserReset, payload,
		asynq.TaskID(UserTaskID(p.JobID, p.UserID)), asynq.Queue(queue),
		asynq.MaxRetry(UserMaxRetry+spareRetry), asynq.Timeout(UserTimeout)), nil
}

func (p UserResetPayload) validate() error {
	var problems []string
	if err := results.ValidateJobID(p.JobID); err != nil {
		problems = append(problems, err.Error())
	}
	if problem := checkUserID(p.UserID); problem != "" {
		problems = append(problems, problem)
	}
	if _, err := results.ParseCredentialType(string(p.Type)); err != nil {
		problems = append(problems, err.Error())
	}
	problems = append(problems, checkID("service provider ID", p.ServiceProviderID, "serviceProviderId")...)
	problems = append(problems, checkID("group ID", p.GroupID, "groupId")...)
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// mismatch returns how the task differs from its job: another credential type, service
// provider or group. It returns "" when the task matches, or when the job record predates
// these fields.
func (p UserResetPayload) mismatch(job results.JobStatus) string {
	var diffs []string
	if job.Type != "" && p.Type != job.Type {
		diffs = append(diffs, fmt.Sprintf("it requests the %s credential, the job resets the %s credential", p.Type, job.Type))
	}
	if job.ServiceProviderID != "" && (p.ServiceProviderID != job.ServiceProviderID || p.GroupID != job.GroupID) {
		diffs = append(diffs, fmt.Sprintf("it names group %q of service provider %q, the job's group is %q of %q",
			p.GroupID, p.ServiceProviderID, job.GroupID, job.ServiceProviderID))
	}
	return strings.Join(diffs, ", and ")
}

// CompleteTaskID is the TaskID of a job's reset:complete task. The '#' cannot occur in a
// job ID, so a user named "complete" keeps its own TaskID "<job>/complete".
func CompleteTaskID(jobID string) string { return jobID + "#complete" }

// NewCompleteTask returns the reset:complete task of a job.
func NewCompleteTask(jobID, queue string) (*asynq.Task, error) {
	if err := results.ValidateJobID(jobID); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(CompletePayload{JobID: jobID})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeComplete, payload,
		asynq.TaskID(CompleteTaskID(jobID)), asynq.Queue(queue), asynq.MaxRetry(10),
		asynq.Timeout(2*time.Minute), asynq.Retention(24*time.Hour)), nil
}

// payloadFix ends the error of a payload that cannot be decoded.
const payloadFix = "submit jobs with the enqueue command or tasks.Submit, which build valid payloads"

// decodeStrict decodes a task payload, rejecting unknown fields and trailing data so a
// payload of the wrong shape is reported instead of half-read. It also rejects invalid
// UTF-8, which encoding/json would silently replace with U+FFFD, turning a mangled user ID
// into another user ID.
func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("invalid payload: empty payload; " + payloadFix)
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("invalid payload: not valid UTF-8 at byte offset %d: encode the payload as UTF-8 JSON", invalidUTF8Offset(data))
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "unexpected end of JSON input"
		}
		// An unknown field's name is quoted in msg, and it may be huge.
		return fmt.Errorf("invalid payload: %s; %s", clip(msg, 300), payloadFix)
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return fmt.Errorf("invalid payload: data after the JSON object at byte offset %d; %s", dec.InputOffset(), payloadFix)
	}
	return nil
}

func invalidUTF8Offset(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// RejectUnknownTypes returns a handler that passes each task to mux, except a task of a
// type that mux has no handler for. asynq's own "handler not found" error is retried
// like any other, so such a task would take the whole retry budget (days with the
// default backoff) to reach the archive. This handler archives it at once instead, and
// logs it to logger, because the middleware of mux does not see it.
func RejectUnknownTypes(mux *asynq.ServeMux, logger zerolog.Logger) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		h, pattern := mux.Handler(t)
		if pattern == "" {
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			logger.Error().Str("task_type", clip(t.Type(), maxLoggedIDBytes)).Str("task_id", clip(id, maxLoggedIDBytes)).Str("queue", queue).
				Msg("no handler for this task type in this worker; archived without running: delete the task, or run a worker version that handles it")
			return permanent(fmt.Errorf("no handler for task type %q in this worker: delete the task, or run a worker version that handles it", truncate(t.Type())))
		}
		return h.ProcessTask(ctx, t)
	})
}

func checkCallbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid callback URL %q: use an absolute http:// or https:// URL", truncate(raw))
	}
	if len(raw) > 2048 {
		return fmt.Errorf("callback URL is %d characters, the maximum is 2048", len(raw))
	}
	return nil
}
