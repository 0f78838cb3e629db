package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// jobView is the JSON form of a job in "status --json" and "list --json". Field names
// and meanings are a stable interface for scripts. Times are RFC 3339 in UTC and absent
// when not reached yet.
type jobView struct {
	JobID             string `json:"jobId"`
	State             string `json:"state"`
	Reason            string `json:"reason,omitempty"`
	Type              string `json:"type"`
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	AllUsers          bool   `json:"allUsers"`
	// DryRun is true for a job that only checks its users and changes nothing on Odin;
	// its "applied" users passed the checks.
	DryRun bool `json:"dryRun"`
	// UsersLoaded is false, and Total 0, until the worker has stored the user list.
	UsersLoaded bool `json:"usersLoaded"`
	Total       int  `json:"total"`
	Applied     int  `json:"applied"`
	Failed      int  `json:"failed"`
	Pending     int  `json:"pending"`
	// Enqueued counts the users whose reset:user task the fan-out has enqueued.
	Enqueued    int    `json:"enqueued"`
	Devices     string `json:"devices,omitempty"`
	DeviceTotal int    `json:"deviceTotal,omitempty"`
	DeviceDone  int    `json:"deviceDone,omitempty"`
	Priority    string `json:"priority"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// CallbackURL shows only the scheme and host: the rest may carry a token.
	CallbackURL string `json:"callbackUrl,omitempty"`
	// UsersPerSecond is the settled users per second since the job started.
	UsersPerSecond float64 `json:"usersPerSecond"`
	// ETASeconds estimates the time left at that rate, and is absent when unknown.
	ETASeconds       *int64 `json:"etaSeconds,omitempty"`
	ResultTTLSeconds int64  `json:"resultTtlSeconds"`
	CreatedAt        string `json:"createdAt,omitempty"`
	StartedAt        string `json:"startedAt,omitempty"`
	CompletedAt      string `json:"completedAt,omitempty"`
	// SettledAt is when the last user was applied or failed.
	SettledAt string `json:"settledAt,omitempty"`
	// StalledSince is set, to SettledAt or the start, when a running job has pending users
	// but settled none for stallNotice.
	StalledSince string `json:"stalledSince,omitempty"`
	// Retrying counts the pending users whose task waits in asynq's retry set, after an
	// Odin error or to wait for the rate limiter. NextRetryAt is when the first of them
	// runs again, and FanOutRetryAt when the job's fan-out does. Only "status" fills them
	// in, and leaves them out when nothing waits.
	Retrying      int               `json:"retrying,omitempty"`
	NextRetryAt   string            `json:"nextRetryAt,omitempty"`
	FanOutRetryAt string            `json:"fanOutRetryAt,omitempty"`
	Audit         map[string]string `json:"audit,omitempty"`
}

// withRetrying returns v with the retry counts filled in, and its estimate of the time
// left moved to the next retry when every pending user waits for one.
func (v jobView) withRetrying(job results.Job, r tasks.Retrying, now time.Time) jobView {
	if r.Users > 0 {
		v.Retrying = r.Users
		v.NextRetryAt = formatTime(r.Next)
	}
	v.FanOutRetryAt = formatTime(r.FanOut)
	if v.ETASeconds != nil {
		seconds := int64(etaAfterRetries(job, time.Duration(*v.ETASeconds)*time.Second, r, now) / time.Second)
		v.ETASeconds = &seconds
	}
	return v
}

// etaAfterRetries returns the estimate of the time left, no earlier than the next retry
// when every pending user waits in the retry set: no user settles before then.
func etaAfterRetries(job results.Job, eta time.Duration, r tasks.Retrying, now time.Time) time.Duration {
	if r.Users == 0 || r.Users < job.Pending() {
		return eta
	}
	return max(eta, ceilSecond(r.Next.Sub(now)))
}

// ceilSecond rounds d up to a whole second, so a wait never reads shorter than it is.
func ceilSecond(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// formatClock returns the time of day in UTC, as the reasons of fleet pauses give it.
func formatClock(t time.Time) string {
	return t.UTC().Format("15:04:05") + " UTC"
}

// formatUntil returns how long until t, rounded up to the second, for people: "in 14s",
// or "due now" once t has come.
func formatUntil(t, now time.Time) string {
	wait := t.Sub(now)
	if wait <= 0 {
		return "due now"
	}
	return "in " + formatDuration(ceilSecond(wait))
}

// stallNotice is how long a running job with pending users may settle none before status
// reports that it makes no progress and drops the estimate of the time left.
const stallNotice = 2 * time.Minute

// progressOf is how far a job is: settled users, rate since the start and estimated
// time left.
type progressOf struct {
	settled   int
	perSecond float64
	eta       time.Duration
	etaKnown  bool
	// stalledSince is the last progress of a job that made none for stallNotice.
	stalledSince time.Time
}

func jobProgress(job results.Job, now time.Time) progressOf {
	p := progressOf{settled: job.Applied + job.Failed}
	if job.StartedAt.IsZero() {
		return p
	}
	end := now
	if job.State.Finished() && !job.CompletedAt.IsZero() {
		end = job.CompletedAt
	}
	elapsed := end.Sub(job.StartedAt)
	if elapsed <= 0 {
		return p
	}
	p.perSecond = float64(p.settled) / elapsed.Seconds()
	if job.State == results.JobRunning && job.UsersLoaded && job.Pending() > 0 {
		last := job.SettledAt
		if last.IsZero() || last.Before(job.StartedAt) {
			last = job.StartedAt
		}
		if now.Sub(last) >= stallNotice {
			// The rate since the start would promise an end that is not coming.
			p.stalledSince = last
			return p
		}
	}
	if job.State == results.JobRunning && job.UsersLoaded && p.perSecond > 0 {
		// Whole seconds, rounded up, so the estimate never reads 0s while users remain.
		p.eta = time.Duration(math.Ceil(float64(job.Pending())/p.perSecond)) * time.Second
		p.etaKnown = true
	}
	return p
}

func newJobView(job results.Job, audit map[string]string, now time.Time) jobView {
	prog := jobProgress(job, now)
	v := jobView{
		JobID: job.ID, State: string(job.State), Reason: job.Reason, Type: string(job.Type),
		ServiceProviderID: job.ServiceProviderID, GroupID: job.GroupID, AllUsers: job.AllUsers, DryRun: job.DryRun,
		UsersLoaded: job.UsersLoaded, Total: job.Total, Applied: job.Applied, Failed: job.Failed,
		Pending: job.Pending(), Enqueued: job.Cursor,
		Devices: string(job.Devices), DeviceTotal: job.DeviceTotal, DeviceDone: job.DeviceDone,
		Priority: job.Priority, RequestedBy: job.RequestedBy, CallbackURL: redactURL(job.CallbackURL),
		UsersPerSecond:   roundTo(prog.perSecond, 2),
		ResultTTLSeconds: int64(ttlOf(job) / time.Second),
		CreatedAt:        formatTime(job.CreatedAt),
		StartedAt:        formatTime(job.StartedAt),
		CompletedAt:      formatTime(job.CompletedAt),
		SettledAt:        formatTime(job.SettledAt),
		StalledSince:     formatTime(prog.stalledSince),
	}
	if prog.etaKnown {
		seconds := int64(prog.eta / time.Second)
		v.ETASeconds = &seconds
	}
	if len(audit) > 0 {
		v.Audit = audit
	}
	return v
}

func ttlOf(job results.Job) time.Duration {
	if job.TTL == 0 {
		return results.DefaultTTL
	}
	return job.TTL
}

func roundTo(f float64, decimals int) float64 {
	scale := 1.0
	for range decimals {
		scale *= 10
	}
	return float64(int64(f*scale+0.5)) / scale
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// printStatus writes the human form of a job's status.
func printStatus(w io.Writer, job results.Job, audit map[string]string, retrying tasks.Retrying, now time.Time) {
	prog := jobProgress(job, now)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}

	line("job", "%s", job.ID)
	line("state", "%s", job.State)
	if job.Reason != "" {
		line("reason", "%s", job.Reason)
	}
	if job.DryRun {
		line("type", "%s, dry run: nothing is changed on Odin; applied means the checks passed", job.Type)
	} else {
		line("type", "%s", job.Type)
	}
	line("group", "%s (service provider %s)", job.GroupID, job.ServiceProviderID)
	if note, ok := audit["group_check"]; ok {
		// The fan-out could not list the group, so some users were not checked.
		line("group check", "%s", note)
	}
	line("users", "%s", describeUsers(job))
	if job.Devices != results.DevicesNone {
		line("devices", "%s: %d of %d done", job.Devices, job.DeviceDone, job.DeviceTotal)
	}
	if !job.StartedAt.IsZero() {
		line("rate", "%.1f users/s since the start", prog.perSecond)
	}
	if prog.etaKnown {
		eta := etaAfterRetries(job, prog.eta, retrying, now)
		line("eta", "%s (about %s)", formatDuration(eta), now.Add(eta).UTC().Format(time.RFC3339))
	}
	if !prog.stalledSince.IsZero() {
		line("progress", "none for %s: no user settled since %s; see the reason above, if any, and \"When a job is stuck\" in docs/operations.md",
			formatDuration(now.Sub(prog.stalledSince).Round(time.Second)), prog.stalledSince.UTC().Format(time.RFC3339))
	}
	if retrying.Users > 0 {
		line("retrying", "%s to run again, the next at %s (%s)",
			plural(retrying.Users, "user waits", "users wait"), formatClock(retrying.Next), formatUntil(retrying.Next, now))
	}
	if !retrying.FanOut.IsZero() {
		line("fan-out", "waits to run again at %s (%s)", formatClock(retrying.FanOut), formatUntil(retrying.FanOut, now))
	}
	line("priority", "%s", job.Priority)
	if job.RequestedBy != "" {
		line("requested", "by %s", job.RequestedBy)
	}
	if by, ok := audit["submitted_by"]; ok {
		line("submitted", "%s by %s from %s", audit["submitted_at"], by, audit["submitted_from"])
	}
	if at, err := time.Parse(time.RFC3339, audit["scheduled_for"]); err == nil && job.StartedAt.IsZero() && !job.State.Finished() {
		line("scheduled", "to start at %s (%s)", at.UTC().Format(time.RFC3339), formatUntil(at, now))
	}
	if by, ok := audit["cancelled_by"]; ok {
		line("cancelled", "%s by %s", audit["cancelled_at"], by)
	}
	if by, ok := audit["retried_by"]; ok {
		line("retried", "by job %s, whose results hold the newest values of this job's failed and not reset users", by)
	}
	line("created", "%s", orDash(formatTime(job.CreatedAt)))
	line("started", "%s", orDash(formatTime(job.StartedAt)))
	line("completed", "%s", orDash(formatTime(job.CompletedAt)))
	line("result ttl", "%s after the job's last change", formatDuration(ttlOf(job)))
	if job.CallbackURL != "" {
		line("callback", "%s", redactURL(job.CallbackURL))
	}
}

// describeUsers returns the user counts of the status output. The users a queued or
// running job has not settled yet are "pending". A finished job leaves them alone, so
// there they are "not reset" ("not checked" in a dry run), as cancel and submit --wait
// call them.
func describeUsers(job results.Job) string {
	action := "reset"
	if job.DryRun {
		action = "checked"
	}
	if !job.UsersLoaded {
		switch {
		case job.State.Finished():
			return fmt.Sprintf("no user was %s: the job was %s before a worker stored its user list", action, job.State)
		case job.AllUsers:
			return "all users of the group; not listed yet"
		}
		return "not loaded yet"
	}
	unsettled := "pending"
	if job.State.Finished() {
		unsettled = "not " + action
	}
	return fmt.Sprintf("%d applied, %d failed, %d %s of %d", job.Applied, job.Failed, job.Pending(), unsettled, job.Total)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// progressLine is one line of --wait progress.
func progressLine(job results.Job, now time.Time, startAt time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s: %s", job.ID, job.State)
	switch {
	case job.State == results.JobQueued && !startAt.IsZero() && now.Before(startAt):
		fmt.Fprintf(&b, ", starts at %s", startAt.UTC().Format(time.RFC3339))
	case job.State == results.JobQueued:
		b.WriteString(", waiting for a worker to start it")
	case !job.UsersLoaded:
		b.WriteString(", loading users")
	default:
		prog := jobProgress(job, now)
		if job.DryRun {
			fmt.Fprintf(&b, ", %d of %d checked (%d ok, %d failed), %.1f users/s",
				prog.settled, job.Total, job.Applied, job.Failed, prog.perSecond)
		} else {
			fmt.Fprintf(&b, ", %d of %d done (%d applied, %d failed), %.1f users/s",
				prog.settled, job.Total, job.Applied, job.Failed, prog.perSecond)
		}
		phonesLeft := job.Devices != results.DevicesNone && prog.settled == job.Total
		if prog.etaKnown && !phonesLeft {
			fmt.Fprintf(&b, ", ETA %s", formatDuration(prog.eta))
		}
		if phonesLeft {
			// The passwords are done; the job completes when the phones are.
			fmt.Fprintf(&b, "; phones: %d of %d done (%s)", job.DeviceDone, job.DeviceTotal, job.Devices)
		}
	}
	if job.Reason != "" {
		fmt.Fprintf(&b, "; waiting: %s", job.Reason)
	}
	return b.String()
}
