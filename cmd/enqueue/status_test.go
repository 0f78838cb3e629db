package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func TestStatusGolden(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-running", false)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)
	// Ten seconds after the start, three users are settled: 0.3 users/s, two left.
	now := t0.Add(12 * time.Second)

	tests := []struct {
		name   string
		args   []string
		code   int
		golden string
	}{
		{name: "running json", args: []string{"status", "job-running", "--json"}, code: exitOK, golden: "status-running.json"},
		{name: "running text", args: []string{"status", "job-running"}, code: exitOK, golden: "status-running.txt"},
		{name: "completed json", args: []string{"status", "--json", "job-done"}, code: exitFailed, golden: "status-completed.json"},
		{name: "completed text", args: []string{"status", "job-done"}, code: exitFailed, golden: "status-completed.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, invocation{now: now}, append(tc.args, "--redis-url", rd.URL)...)
			if got.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", got.code, tc.code, got)
			}
			if got.stderr != "" {
				t.Errorf("stderr = %q, want nothing", got.stderr)
			}
			checkGolden(t, tc.golden, got.stdout)
			if strings.Contains(got.stdout, "Secret-") || strings.Contains(got.stdout, "T0KEN") {
				t.Errorf("status shows a secret or the callback token:\n%s", got.stdout)
			}
		})
	}
}

func TestStatusWatchPrintsChanges(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)

	got := runCLI(t, invocation{}, "status", "job-done", "--watch", "--redis-url", rd.URL)
	if got.code != exitFailed {
		t.Fatalf("exit code %d, want 1 for a job with failed users\n%s", got.code, got)
	}
	if n := strings.Count(got.stdout, "job         job-done"); n != 1 {
		t.Errorf("status printed %d times, want once for a finished job:\n%s", n, got.stdout)
	}

	terminal := runCLI(t, invocation{terminal: true}, "status", "job-done", "--watch", "--redis-url", rd.URL)
	if !strings.HasPrefix(terminal.stdout, "\x1b[H\x1b[2J") {
		t.Errorf("terminal watch does not clear the screen first: %q", terminal.stdout[:min(20, len(terminal.stdout))])
	}
}

func TestListGolden(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-running", false)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)
	now := t0.Add(12 * time.Second)

	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{name: "table", args: []string{"list"}, golden: "list.txt"},
		{name: "json", args: []string{"list", "--json", "--limit", "5"}, golden: "list.json"},
		{name: "quiet", args: []string{"list", "--quiet"}, golden: "list-quiet.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, invocation{now: now}, append(tc.args, "--redis-url", rd.URL)...)
			if got.code != exitOK {
				t.Fatalf("list: %s", got)
			}
			// Both jobs were created at t0. Redis orders equal scores by member, so
			// job-running comes before job-done.
			checkGolden(t, tc.golden, got.stdout)
		})
	}

	limited := runCLI(t, invocation{now: now}, "list", "--json", "--limit", "1", "--redis-url", rd.URL)
	var views []jobView
	if err := json.Unmarshal([]byte(limited.stdout), &views); err != nil || len(views) != 1 {
		t.Errorf("list --limit 1 = %v (%v), want one job", views, err)
	}

	empty := runCLI(t, invocation{}, "list", "--redis-url", testredis.New(t).URL)
	if empty.code != exitOK || empty.stdout != "" {
		t.Errorf("list of empty Redis: %s", empty)
	}
	requireStderr(t, empty, "no jobs in Redis at")
}

func TestDescribeUsers(t *testing.T) {
	loaded := results.Job{UsersLoaded: true, Total: 5, Applied: 2, Failed: 1}
	with := func(job results.Job, state results.JobState, dryRun bool) results.Job {
		job.State, job.DryRun = state, dryRun
		return job
	}
	tests := []struct {
		name string
		job  results.Job
		want string
	}{
		{name: "running", job: with(loaded, results.JobRunning, false), want: "2 applied, 1 failed, 2 pending of 5"},
		{name: "running dry run", job: with(loaded, results.JobRunning, true), want: "2 applied, 1 failed, 2 pending of 5"},
		{name: "cancelled", job: with(loaded, results.JobCancelled, false), want: "2 applied, 1 failed, 2 not reset of 5"},
		{name: "cancelled dry run", job: with(loaded, results.JobCancelled, true), want: "2 applied, 1 failed, 2 not checked of 5"},
		{name: "completed", job: with(results.Job{UsersLoaded: true, Total: 5, Applied: 3, Failed: 2}, results.JobCompleted, false),
			want: "3 applied, 2 failed, 0 not reset of 5"},
		{name: "queued", job: results.Job{State: results.JobQueued}, want: "not loaded yet"},
		{name: "queued all users", job: results.Job{State: results.JobQueued, AllUsers: true}, want: "all users of the group; not listed yet"},
		{name: "cancelled before loading", job: results.Job{State: results.JobCancelled, AllUsers: true},
			want: "no user was reset: the job was cancelled before a worker stored its user list"},
		{name: "cancelled dry run before loading", job: results.Job{State: results.JobCancelled, DryRun: true},
			want: "no user was checked: the job was cancelled before a worker stored its user list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeUsers(tc.job); got != tc.want {
				t.Errorf("describeUsers = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestJobProgress(t *testing.T) {
	start := t0
	tests := []struct {
		name string
		job  results.Job
		now  time.Time
		want progressOf
	}{
		{name: "not started", job: results.Job{State: results.JobQueued}, now: start, want: progressOf{}},
		{
			name: "running",
			job:  results.Job{State: results.JobRunning, UsersLoaded: true, Total: 100, Applied: 15, Failed: 5, StartedAt: start},
			now:  start.Add(10 * time.Second),
			want: progressOf{settled: 20, perSecond: 2, eta: 40 * time.Second, etaKnown: true},
		},
		{
			name: "completed uses the end time",
			job:  results.Job{State: results.JobCompleted, UsersLoaded: true, Total: 10, Applied: 10, StartedAt: start, CompletedAt: start.Add(5 * time.Second)},
			now:  start.Add(time.Hour),
			want: progressOf{settled: 10, perSecond: 2},
		},
		{
			name: "recent progress keeps the estimate",
			job: results.Job{State: results.JobRunning, UsersLoaded: true, Total: 100, Applied: 20, StartedAt: start,
				SettledAt: start.Add(9 * time.Minute)},
			now:  start.Add(10 * time.Minute),
			want: progressOf{settled: 20, perSecond: 20.0 / 600, eta: 2400 * time.Second, etaKnown: true},
		},
		{
			name: "stalled drops the estimate",
			job: results.Job{State: results.JobRunning, UsersLoaded: true, Total: 100, Applied: 20, StartedAt: start,
				SettledAt: start.Add(time.Minute)},
			now:  start.Add(10 * time.Minute),
			want: progressOf{settled: 20, perSecond: 20.0 / 600, stalledSince: start.Add(time.Minute)},
		},
		{
			name: "nothing settled since the start",
			job:  results.Job{State: results.JobRunning, UsersLoaded: true, Total: 100, StartedAt: start},
			now:  start.Add(5 * time.Minute),
			want: progressOf{stalledSince: start},
		},
		{
			name: "device steps after the last user",
			job: results.Job{State: results.JobRunning, UsersLoaded: true, Total: 10, Applied: 10, StartedAt: start,
				SettledAt: start.Add(time.Minute), Devices: results.DevicesRebuild, DeviceTotal: 10, DeviceDone: 3},
			now:  start.Add(10 * time.Minute),
			want: progressOf{settled: 10, perSecond: 10.0 / 600, etaKnown: true},
		},
		{
			name: "clock behind the start",
			job:  results.Job{State: results.JobRunning, UsersLoaded: true, Total: 10, Applied: 1, StartedAt: start},
			now:  start.Add(-time.Second),
			want: progressOf{settled: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := jobProgress(tc.job, tc.now)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(progressOf{})); diff != "" {
				t.Errorf("jobProgress (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusStalledJob checks that status names a stall instead of estimating an end.
func TestStatusStalledJob(t *testing.T) {
	job := results.Job{ID: "job-stalled", State: results.JobRunning, Type: results.Web, UsersLoaded: true,
		Total: 100, Applied: 20, StartedAt: t0, SettledAt: t0.Add(time.Minute)}
	var out strings.Builder
	printStatus(&out, job, nil, tasks.Retrying{}, t0.Add(10*time.Minute))

	want := "progress    none for 9m: no user settled since " + t0.Add(time.Minute).UTC().Format(time.RFC3339)
	if !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "eta") {
		t.Errorf("status of a stalled job shows an estimate:\n%s", out.String())
	}
}

// TestStatusRetryingUsers checks the lines and the JSON fields of a job whose last users
// and fan-out wait in asynq's retry set, and that the estimate waits for the next retry.
func TestStatusRetryingUsers(t *testing.T) {
	job := results.Job{ID: "job-retry", State: results.JobRunning, Type: results.Web, UsersLoaded: true,
		Total: 100, Applied: 98, StartedAt: t0, SettledAt: t0.Add(time.Minute)}
	now := t0.Add(100 * time.Second)
	next := now.Add(89*time.Second + 300*time.Millisecond)
	retrying := tasks.Retrying{Users: 2, Next: next, FanOut: now.Add(-time.Second)}

	var out strings.Builder
	printStatus(&out, job, nil, retrying, now)
	for _, want := range []string{
		"retrying    2 users wait to run again, the next at " + next.UTC().Format("15:04:05") + " UTC (in 1m30s)",
		"fan-out     waits to run again at " + now.Add(-time.Second).UTC().Format("15:04:05") + " UTC (due now)",
		// 98 users in 100 s would give 3 s; the two left wait 1m30s for their retry.
		"eta         1m30s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	view := newJobView(job, nil, now).withRetrying(job, retrying, now)
	if view.Retrying != 2 || view.NextRetryAt != next.UTC().Format(time.RFC3339) || view.FanOutRetryAt == "" {
		t.Errorf("JSON view: retrying %d, next %q, fan-out %q; want 2, the next retry and the fan-out's", view.Retrying, view.NextRetryAt, view.FanOutRetryAt)
	}
	if view.ETASeconds == nil || *view.ETASeconds != 90 {
		t.Errorf("JSON view: etaSeconds %v, want 90", view.ETASeconds)
	}

	// One of the pending users does not wait for a retry, so the estimate from the rate is kept.
	job.Applied = 97
	out.Reset()
	printStatus(&out, job, nil, retrying, now)
	if !strings.Contains(out.String(), "eta         4s") {
		t.Errorf("status of a job with a user not waiting to retry lacks the estimate from its rate:\n%s", out.String())
	}

	out.Reset()
	printStatus(&out, job, nil, tasks.Retrying{}, now)
	if strings.Contains(out.String(), "retrying") || strings.Contains(out.String(), "fan-out") {
		t.Errorf("status without retries has a retry line:\n%s", out.String())
	}
}

func TestStatusShowsScheduledStart(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	submit := runCLI(t, invocation{now: now}, "--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1",
		"--type", "web", "--user", "u@x", "--job-id", "tonight", "--in", "3h")
	if submit.code != exitOK {
		t.Fatalf("submit: %s", submit)
	}

	got := runCLI(t, invocation{now: now.Add(time.Hour)}, "status", "tonight", "--redis-url", rd.URL)
	if got.code != exitOK {
		t.Fatalf("status: %s", got)
	}
	if want := "scheduled   to start at 2026-12-04T23:00:00Z (in 2h)\n"; !strings.Contains(got.stdout, want) {
		t.Errorf("status:\n%s\nwant the line %q", got.stdout, want)
	}
}
