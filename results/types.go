package results

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// CredentialType is the credential a job resets.
type CredentialType string

// The credential types. Their string values are what payloads, the record and the CLI use.
const (
	// SIP is the SIP authentication password that phones register with.
	SIP CredentialType = "sip"
	// Voicemail is the voice portal (voicemail) passcode.
	Voicemail CredentialType = "voicemail"
	// Web is the web portal login password.
	Web CredentialType = "web"
)

// ValidTypes lists the accepted spellings, for help text and error messages.
const ValidTypes = "sip, voicemail (or vm), web"

// InvalidTypeError reports a credential type that is not one of ValidTypes.
type InvalidTypeError struct {
	Value string
}

func (e *InvalidTypeError) Error() string {
	return fmt.Sprintf("invalid credential type %q: use one of %s", e.Value, ValidTypes)
}

// ParseCredentialType accepts sip, voicemail, vm and web in any case, with surrounding
// spaces ignored, and returns *InvalidTypeError for anything else.
func ParseCredentialType(s string) (CredentialType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "sip":
		return SIP, nil
	case "voicemail", "vm":
		return Voicemail, nil
	case "web":
		return Web, nil
	}
	return "", &InvalidTypeError{Value: s}
}

// SecretField is the JSON field that carries the new value in exported rows:
// newPasscode for voicemail, newPassword otherwise.
func (c CredentialType) SecretField() string {
	if c == Voicemail {
		return "newPasscode"
	}
	return "newPassword"
}

// JobState is the lifecycle state of a job.
type JobState string

// Job states. A job ends completed or cancelled.
const (
	// JobQueued: submitted, fan-out not started.
	JobQueued JobState = "queued"
	// JobRunning: the user list is loaded and users are being reset.
	JobRunning JobState = "running"
	// JobCompleted: every user is applied or failed.
	JobCompleted JobState = "completed"
	// JobCancelled: an operator cancelled the job; applied users stay applied.
	JobCancelled JobState = "cancelled"
)

// Finished reports whether the state is final.
func (s JobState) Finished() bool { return s == JobCompleted || s == JobCancelled }

// UserState is the outcome of one user.
type UserState string

// User states. Every user starts pending and ends applied or failed.
const (
	UserPending UserState = "pending"
	UserApplied UserState = "applied"
	UserFailed  UserState = "failed"
)

// DeviceMode selects the device follow-up of a SIP job.
type DeviceMode string

// Device modes.
const (
	// DevicesNone leaves phones alone.
	DevicesNone DeviceMode = ""
	// DevicesRebuild rebuilds each affected device's configuration files.
	DevicesRebuild DeviceMode = "rebuild"
	// DevicesReset rebuilds the configuration, then makes the phone re-sync.
	DevicesReset DeviceMode = "reset"
)

// DefaultTTL is how long a record lives after its last state change when the job sets no
// TTL: long enough to collect an overnight run's results after a weekend.
const DefaultTTL = 72 * time.Hour

// MinTTL and MaxTTL bound a job's TTL.
const (
	MinTTL = time.Minute
	MaxTTL = 90 * 24 * time.Hour
)

// Job is the metadata and counters of one job.
type Job struct {
	ID                string
	Type              CredentialType
	ServiceProviderID string
	GroupID           string
	// AllUsers is true when the job resets every user of the group.
	AllUsers bool
	// Total is the number of users; 0 until the fan-out has loaded the user list.
	Total   int
	Applied int
	Failed  int
	// Cursor is how many users, in submission order, the fan-out has enqueued.
	Cursor int
	State  JobState
	// Reason is the cause a running job is waiting for (for example a failed Odin login); empty
	// when nothing blocks it.
	Reason      string
	RequestedBy string
	Priority    string
	CallbackURL string
	Devices     DeviceMode
	// DryRun marks a job that only checks its users: applied means the check passed, and
	// nothing was changed on Odin.
	DryRun bool
	// DeviceTotal and DeviceDone count device follow-up steps of SIP jobs.
	DeviceTotal int
	DeviceDone  int
	// TTL is the lifetime of the record after its last change; DefaultTTL when zero.
	TTL         time.Duration
	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	// SettledAt is when the last user was settled (applied or failed), zero before the first.
	SettledAt time.Time
	// UsersLoaded is true once the user list is stored and Total is final.
	UsersLoaded bool
	// UsersDigest identifies the submitted user list, so that a resubmission of the job
	// ID with other users is rejected. It is empty for all-users jobs and older records.
	UsersDigest string
}

// Pending returns the number of users without an outcome yet.
func (j Job) Pending() int {
	if p := j.Total - j.Applied - j.Failed; p > 0 {
		return p
	}
	return 0
}

// UserRecord is the stored state of one user in a job.
type UserRecord struct {
	UserID string
	State  UserState
	// Secret is the value last sent, or about to be sent, to Odin; empty until the
	// fan-out has written it ahead.
	Secret string
	// Attempts counts the attempts to set the value on Odin.
	Attempts int
	// Regenerated is true once a rule rejection made the worker replace the value.
	Regenerated bool
	AppliedAt   time.Time
	// Reason is the cause of a failure, from Odin or the worker.
	Reason string
	// Device is the outcome of the device step of a SIP job ("rebuilt", "reset",
	// "skipped: ...", "failed: ..."), empty when there is none.
	Device string
	// DeviceName is the user's phone, recorded by the device step.
	DeviceName string
	// Unconfirmed is true for a failed user whose value may still have reached Odin: the
	// last attempts failed without a definitive response (timeouts, crashes), so the export
	// shows the value next to the error.
	Unconfirmed bool
	// MaybeSent is true for a pending user whose value an attempt may have sent to Odin:
	// an attempt began (Store.BeginAttempt) and the user is not settled yet. It is not
	// part of the stored record, and Users and BeginAttempt fill it.
	MaybeSent bool

	// raw is the stored form this record was read from, for compare-and-set updates.
	raw string
}

// ErrNotFound is returned when a job or user has no record: never created, deleted, or
// expired after its TTL.
var ErrNotFound = errors.New("not found in the results store")

// ErrConflict is returned when a record changed between a read and a conditional write.
var ErrConflict = errors.New("record changed concurrently")

// ErrJobFinished is returned when an operation needs a job that is still running.
var ErrJobFinished = errors.New("job already finished")
