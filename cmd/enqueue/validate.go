package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// maxScheduleAhead bounds --at and --in: a job scheduled further ahead is more likely a
// typo than a plan, and its record would have to outlive the wait.
const maxScheduleAhead = 30 * 24 * time.Hour

// scheduleMargin is how long the record must outlive a scheduled start, so workers that
// are busy when the job becomes due still find it.
const scheduleMargin = time.Hour

// validateSubmission checks every flag and the user list, and returns all problems at
// once as one *tasks.ValidationError, so nothing is enqueued for an invalid request.
func (a *app) validateSubmission(o *submitOptions, set map[string]bool) (submission, error) {
	var problems []string
	var sub submission
	now := a.now()

	if o.jobID == "" {
		o.jobID = newJobID(now)
	}
	if o.requestedBy == "" {
		o.requestedBy = osUserName(a.getenv)
	}
	if problem := checkRequestedBy(o.requestedBy); problem != "" {
		problems = append(problems, problem)
	}
	p := tasks.BulkResetPayload{
		JobID:             o.jobID,
		Type:              results.CredentialType(o.credType),
		ServiceProviderID: o.serviceProvider,
		GroupID:           o.group,
		AllUsers:          o.allUsers,
		Priority:          o.priority,
		CallbackURL:       o.callbackURL,
		RequestedBy:       o.requestedBy,
	}
	// check is what Normalize validates. Where the command line already reports a
	// problem in its own words (naming the flag), check gets a stand-in value so the
	// same problem is not listed twice.
	check := p

	if strings.TrimSpace(o.credType) == "" {
		problems = append(problems, "missing --type: use one of "+results.ValidTypes)
		check.Type = results.SIP
	}

	users, userProblems := a.collectUsers(o)
	problems = append(problems, userProblems...)
	p.Users, check.Users = users, users
	switch {
	case o.allUsers && (len(o.users) > 0 || o.usersFile != ""):
		problems = append(problems, "--all-users cannot be combined with --user or --users-file: give a user list or --all-users, not both")
		check.AllUsers = false
	case len(userProblems) > 0:
		check.AllUsers = true
	case !o.allUsers && len(o.users) == 0 && o.usersFile == "":
		problems = append(problems, "no users given: use --user ID (repeatable), --users-file FILE, or --all-users")
		check.AllUsers = true
	}

	ttl, ttlProblem := parseTTL(o.resultTTL)
	if ttlProblem != "" {
		problems = append(problems, ttlProblem)
	} else {
		p.ResultTTLSeconds = int64(ttl / time.Second)
		check.ResultTTLSeconds = p.ResultTTLSeconds
	}

	switch {
	case o.rebuildDevices && o.resetDevices:
		problems = append(problems, "--rebuild-devices and --reset-devices exclude each other: --reset-devices rebuilds too, so give only one")
	case o.rebuildDevices:
		p.Devices = results.DevicesRebuild
	case o.resetDevices:
		p.Devices = results.DevicesReset
	}
	check.Devices = p.Devices
	p.DryRun, check.DryRun = o.dryRun, o.dryRun

	startAt, schedule, schedProblems := parseSchedule(o.at, o.in, now)
	problems = append(problems, schedProblems...)
	if !startAt.IsZero() {
		sub.startAt = startAt
		sub.options = append(sub.options, schedule)
		// The record's TTL runs from its creation now, so it must outlive the wait.
		delay := startAt.Sub(now)
		if ttlProblem == "" && delay+scheduleMargin > ttl {
			need := (delay + scheduleMargin).Truncate(time.Hour) + time.Hour
			problems = append(problems, fmt.Sprintf(
				"the job starts in %s but its record is kept only %s (--result-ttl): raise --result-ttl to at least %s, or schedule it sooner",
				formatDuration(delay), formatDuration(ttl), formatDuration(need)))
		}
	}

	sub.timeout, problems = checkWaitOptions(o, set, problems)

	normalized, duplicates, err := check.Normalize()
	var verr *tasks.ValidationError
	if errors.As(err, &verr) {
		problems = append(problems, verr.Problems...)
	} else if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return submission{}, &tasks.ValidationError{Problems: problems}
	}

	// No stand-in was used when there is no problem, so normalized is p normalized.
	sub.payload = normalized
	sub.duplicates = duplicates
	return sub, nil
}

// collectUsers reads the users from --user and --users-file, in that order.
func (a *app) collectUsers(o *submitOptions) ([]string, []string) {
	users := append([]string(nil), o.users...)
	// --user gets the checks of a users file line, so an ID with an invisible character
	// or quotes is refused here rather than by Odin as an unknown user.
	var problems []string
	for _, u := range o.users {
		u = strings.TrimSpace(u)
		if strings.ContainsFunc(u, unicode.IsSpace) {
			problems = append(problems, fmt.Sprintf("--user %q contains a space or tab: give one user ID per --user", shorten(u)))
		} else if problem := hiddenCharacterProblem(u); problem != "" {
			problems = append(problems, "--user "+problem)
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if o.usersFile == "" {
		return users, nil
	}

	source := o.usersFile
	in := a.stdin
	if o.usersFile == "-" {
		source = "standard input"
	} else {
		f, err := os.Open(o.usersFile)
		if err != nil {
			return nil, []string{fmt.Sprintf("cannot read --users-file %s: %v: check the path", o.usersFile, unwrapPathError(err))}
		}
		defer f.Close()
		if info, err := f.Stat(); err == nil && info.IsDir() {
			return nil, []string{fmt.Sprintf("--users-file %s is a directory: give the path of a file with one user ID per line", o.usersFile)}
		}
		in = f
	}

	fromFile, err := parseUsers(in, source)
	if err != nil {
		return nil, []string{err.Error()}
	}
	if len(fromFile) == 0 {
		return nil, []string{fmt.Sprintf("%s contains no user IDs, only blank lines and comments: add user IDs, one per line", source)}
	}
	return append(users, fromFile...), nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseTTL returns the --result-ttl duration, or a problem naming the value and the range.
func parseTTL(v string) (time.Duration, string) {
	d, err := parseDuration(v)
	if err != nil {
		return 0, fmt.Sprintf("invalid --result-ttl %q: use a duration such as 90m, 72h or 7d", v)
	}
	if d < results.MinTTL || d > results.MaxTTL {
		return 0, fmt.Sprintf("invalid --result-ttl %q: use a value from %s to %s (90d)", v, formatDuration(results.MinTTL), formatDuration(results.MaxTTL))
	}
	return d, ""
}

// parseSchedule returns the start time from --at or --in and the asynq option that
// delays the job: asynq.ProcessAt for --at, asynq.ProcessIn for --in. The time is zero
// when neither flag is given.
func parseSchedule(at, in string, now time.Time) (time.Time, asynq.Option, []string) {
	switch {
	case at != "" && in != "":
		return time.Time{}, nil, []string{"--at and --in exclude each other: give a start time or a delay, not both"}
	case at != "":
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(at))
		if err != nil {
			return time.Time{}, nil, []string{fmt.Sprintf("invalid --at %q: use an RFC 3339 time such as 2026-12-04T23:00:00+01:00", at)}
		}
		if !t.After(now) {
			return time.Time{}, nil, []string{fmt.Sprintf("--at %s is in the past (now %s): give a future time, or drop --at to start now", at, now.UTC().Format(time.RFC3339))}
		}
		if t.Sub(now) > maxScheduleAhead {
			return time.Time{}, nil, []string{fmt.Sprintf("--at %s is more than 30 days ahead: schedule at most 30 days ahead", at)}
		}
		return t, asynq.ProcessAt(t), nil
	case in != "":
		d, err := parseDuration(in)
		if err != nil {
			return time.Time{}, nil, []string{fmt.Sprintf("invalid --in %q: use a duration such as 90m, 6h or 2d", in)}
		}
		if d <= 0 {
			return time.Time{}, nil, []string{fmt.Sprintf("invalid --in %q: use a positive duration such as 6h, or drop --in to start now", in)}
		}
		if d > maxScheduleAhead {
			return time.Time{}, nil, []string{fmt.Sprintf("invalid --in %q: schedule at most 30 days (720h) ahead", in)}
		}
		return now.Add(d), asynq.ProcessIn(d), nil
	}
	return time.Time{}, nil, nil
}

// checkWaitOptions validates --timeout, --format and --out, which only make sense with
// --wait, and returns the timeout (zero for none).
func checkWaitOptions(o *submitOptions, set map[string]bool, problems []string) (time.Duration, []string) {
	if !o.wait {
		for _, name := range []string{"timeout", "format", "out"} {
			if !set[name] {
				continue
			}
			if name == "timeout" {
				problems = append(problems, "--timeout applies only with --wait: add --wait, or follow the job later with: enqueue status JOB --watch")
			} else {
				problems = append(problems, fmt.Sprintf("--%s applies only with --wait: add --wait, or collect the results later with: enqueue results JOB --%s ...", name, name))
			}
		}
		return 0, problems
	}

	var timeout time.Duration
	if o.timeout != "" {
		d, err := parseDuration(o.timeout)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("invalid --timeout %q: use a duration such as 30m or 2h", o.timeout))
		case d <= 0:
			problems = append(problems, fmt.Sprintf("invalid --timeout %q: use a positive duration such as 30m, or drop --timeout to wait until the job finishes", o.timeout))
		default:
			timeout = d
		}
	}
	if problem := checkFormat(o.format); problem != "" {
		problems = append(problems, problem)
	}
	if o.out != "" {
		if problem := checkOutPath(o.out); problem != "" {
			problems = append(problems, problem)
		}
	}
	return timeout, problems
}

// newJobID returns reset-YYYYMMDD-HHMM-<8 hex digits>, in UTC.
func newJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24
	return "reset-" + now.UTC().Format("20060102-1504") + "-" + hex.EncodeToString(b[:])
}

// osUserName returns the login name of the user running the command.
func osUserName(getenv func(string) string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if name := getenv("USER"); name != "" {
		return name
	}
	return "unknown"
}

func checkRequestedBy(v string) string {
	switch {
	case !utf8.ValidString(v):
		return "--requested-by is not valid UTF-8: use a plain name"
	case utf8.RuneCountInString(v) > 128:
		return fmt.Sprintf("--requested-by %q is longer than 128 characters: use a shorter name", shorten(v))
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Sprintf("--requested-by %q contains a control character: use a plain name", shorten(v))
	}
	return ""
}
