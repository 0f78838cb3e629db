package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func TestRetrySubmitsUsersNotApplied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cancel     bool
		args       []string
		queue      string
		wantUsers  []string
		wantStderr string
	}{
		{
			name:       "completed job",
			args:       []string{"--priority", "high"},
			queue:      tasks.QueueHigh,
			wantUsers:  []string{fixtureUsers[2], fixtureUsers[4]},
			wantStderr: "retrying 2 users of job old-job: 2 failed, 0 not reset",
		},
		{
			name:       "cancelled job",
			cancel:     true,
			queue:      tasks.QueueDefault, // the old job's priority
			wantUsers:  []string{fixtureUsers[2], fixtureUsers[3], fixtureUsers[4]},
			wantStderr: "retrying 3 users of job old-job: 1 failed, 2 not reset",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rd := testredis.New(t)
			seedJob(t, rd, results.Plaintext{}, "old-job", !tt.cancel)
			if tt.cancel {
				if _, err := results.NewStore(rd.Client).Cancel(context.Background(), "old-job"); err != nil {
					t.Fatal(err)
				}
			}

			args := append([]string{"retry", "old-job", "--job-id", "new-job", "--requested-by", "bob", "--redis-url", rd.URL}, tt.args...)
			got := runCLI(t, invocation{}, args...)
			if got.code != exitOK || got.stdout != "new-job\n" {
				t.Fatalf("retry: %s; want exit 0 and the new job's ID", got)
			}
			requireStderr(t, got, tt.wantStderr)

			_, p := bulkTask(t, rd, tt.queue, "new-job")
			want := tasks.BulkResetPayload{
				JobID: "new-job", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1",
				Users: tt.wantUsers, Priority: p.Priority, RequestedBy: "bob", ResultTTLSeconds: p.ResultTTLSeconds,
			}
			if !slices.Equal(p.Users, want.Users) || p.Type != want.Type || p.ServiceProviderID != want.ServiceProviderID ||
				p.GroupID != want.GroupID || p.RequestedBy != want.RequestedBy || p.CallbackURL != "" || p.DryRun || p.Devices != "" {
				t.Errorf("new job's payload = %+v, want %+v", p, want)
			}
		})
	}
}

func TestRetryRefuses(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "running-job", false)

	got := runCLI(t, invocation{}, "retry", "running-job", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry of a running job: %s; want exit 2", got)
	}
	requireStderr(t, got, "job running-job is running: retry takes the users of a finished job", "enqueue cancel running-job")

	// A cancelled job with a reset still on a worker.
	seedJob(t, rd, results.Plaintext{}, "busy-job", false)
	if _, err := results.NewStore(rd.Client).Cancel(context.Background(), "busy-job"); err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rd.Client)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeBulkReset, []byte(`{}`)),
		asynq.TaskID("busy-job"), asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}
	got = runCLI(t, invocation{}, "retry", "busy-job", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry of a job with a task on a worker: %s; want exit 2", got)
	}
	requireStderr(t, got, "job busy-job is cancelled, but 1 of its tasks is still on the workers (busy-job (pending))", "run this again once they are gone")

	// Cancelled before a worker stored the user list: no list to retry.
	if _, _, err := results.NewStore(rd.Client).CreateJob(context.Background(), results.Job{
		ID: "unstarted-job", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Priority: "default",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := results.NewStore(rd.Client).Cancel(context.Background(), "unstarted-job"); err != nil {
		t.Fatal(err)
	}
	got = runCLI(t, invocation{}, "retry", "unstarted-job", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry of a job cancelled before it started: %s; want exit 2", got)
	}
	requireStderr(t, got, "job unstarted-job ended before a worker stored its user list, so it has no users to retry")

	got = runCLI(t, invocation{}, "retry", "no-such-job", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry of a missing job: %s; want exit 2", got)
	}
	requireStderr(t, got, "job no-such-job not found")

	got = runCLI(t, invocation{}, "retry", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry without a job: %s; want exit 2", got)
	}
	requireStderr(t, got, "missing job ID: use enqueue retry JOB")

	inspector := asynq.NewInspectorFromRedisClient(rd.Client)
	if info, err := inspector.GetQueueInfo(tasks.QueueDefault); err != nil || info.Size != 1 {
		t.Errorf("default queue after refused retries: %+v, %v; want only the fan-out of busy-job", info, err)
	}
	if queues, err := inspector.Queues(); err != nil || len(queues) != 1 {
		t.Errorf("queues %v (%v) after refused retries, want only %s", queues, err, tasks.QueueDefault)
	}
}

func TestRetryWithNothingToRetry(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	ctx := context.Background()
	store := results.NewStore(rd.Client)
	if _, _, err := store.CreateJob(ctx, results.Job{ID: "all-applied", Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1", Priority: "default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LoadUsers(ctx, "all-applied", fixtureUsers[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := store.WriteAhead(ctx, "all-applied", map[string]string{fixtureUsers[0]: "s3cret-Value"}); err != nil {
		t.Fatal(err)
	}
	rec, err := store.User(ctx, "all-applied", fixtureUsers[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MarkApplied(ctx, "all-applied", rec, 1); err != nil {
		t.Fatal(err)
	}

	got := runCLI(t, invocation{}, "retry", "all-applied", "--redis-url", rd.URL)
	if got.code != exitOK || got.stdout != "" {
		t.Errorf("retry: %s; want exit 0 and nothing on standard output", got)
	}
	requireStderr(t, got, "every user of job all-applied was applied: nothing to retry")
}

func TestRetryOnce(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "old-job", true)

	// An invalid option stops the retry before it is recorded.
	bad := runCLI(t, invocation{}, "retry", "old-job", "--format", "xml", "--wait", "--redis-url", rd.URL)
	if bad.code != exitUsage || strings.Contains(bad.stderr, "retrying") {
		t.Errorf("retry with a bad option: %s; want exit 2 before any retrying line", bad)
	}

	first := runCLI(t, invocation{}, "retry", "old-job", "--job-id", "retry-1", "--redis-url", rd.URL)
	if first.code != exitOK {
		t.Fatalf("first retry: %s", first)
	}
	again := runCLI(t, invocation{}, "retry", "old-job", "--job-id", "retry-1", "--redis-url", rd.URL)
	if again.code != exitOK {
		t.Errorf("the same retry again: %s; want a no-op", again)
	}
	requireStderr(t, again, "nothing new was enqueued")

	second := runCLI(t, invocation{}, "retry", "old-job", "--redis-url", rd.URL)
	if second.code != exitUsage {
		t.Errorf("second retry: %s; want exit 2", second)
	}
	requireStderr(t, second, "job old-job was retried before by job retry-1", "enqueue retry retry-1")

	status := runCLI(t, invocation{}, "status", "old-job", "--redis-url", rd.URL)
	if !strings.Contains(status.stdout, "retried     by job retry-1") {
		t.Errorf("status of the old job:\n%s\nwant a line naming its retry", status.stdout)
	}
}

func TestRetryNewJobID(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "old-job", true)
	seedJob(t, rd, results.Plaintext{}, "other-job", true)

	for _, tc := range []struct{ id, want string }{
		{"old-job", "--job-id old-job is the job to retry"},
		{"other-job", "job ID other-job is already used by another job"},
	} {
		got := runCLI(t, invocation{}, "retry", "old-job", "--job-id", tc.id, "--redis-url", rd.URL)
		if got.code != exitUsage {
			t.Errorf("retry --job-id %s: %s; want exit 2", tc.id, got)
		}
		requireStderr(t, got, tc.want)
		if strings.Contains(got.stderr, "retrying") {
			t.Errorf("retry --job-id %s announced a retry it refused: %s", tc.id, got)
		}
	}

	// A claim whose job has no record: another retry is submitting it, or stopped
	// before it did. Only the claimed ID may go on.
	if _, err := results.NewStore(rd.Client).ClaimAudit(context.Background(), "old-job", "retried_by", "ghost-job"); err != nil {
		t.Fatal(err)
	}
	got := runCLI(t, invocation{}, "retry", "old-job", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Errorf("retry while another retry holds the claim: %s; want exit 2", got)
	}
	requireStderr(t, got, "claimed for a retry by job ghost-job, which has no record", "enqueue retry old-job --job-id ghost-job")
	got = runCLI(t, invocation{}, "retry", "old-job", "--job-id", "ghost-job", "--redis-url", rd.URL)
	if got.code != exitOK {
		t.Fatalf("retry under the claimed ID: %s", got)
	}
	requireStderr(t, got, "retrying 2 users of job old-job")
}
