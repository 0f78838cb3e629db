package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// queueSizes returns the pending, scheduled and retry counts of a queue.
func queueSizes(t *testing.T, rd *testredis.Redis, queue string) (pending, scheduled, retry int) {
	t.Helper()
	inspector := asynq.NewInspector(rd.Opt)
	defer inspector.Close()
	info, err := inspector.GetQueueInfo(queue)
	if err != nil {
		t.Fatalf("queue %s: %v", queue, err)
	}
	return info.Pending, info.Scheduled, info.Retry
}

func TestCancelRemovesQueuedTasks(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-running", false)

	// Users 4 and 5 are pending: one task waits in the queue, one is scheduled (as a
	// retry would be). User 1 is applied, so its leftover task must stay.
	client := asynq.NewClient(rd.Opt)
	defer client.Close()
	enqueue := func(userID string, opts ...asynq.Option) {
		t.Helper()
		task, err := tasks.NewUserResetTask(tasks.UserResetPayload{
			JobID: "job-running", UserID: userID, Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1",
		}, tasks.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, opts...); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(fixtureUsers[3])
	enqueue(fixtureUsers[4], asynq.ProcessIn(time.Hour))
	enqueue(fixtureUsers[0])

	got := runCLI(t, invocation{now: t0.Add(20 * time.Second)}, "cancel", "job-running", "--requested-by", "bob", "--redis-url", rd.URL)
	if got.code != exitOK {
		t.Fatalf("cancel: %s", got)
	}
	if want := "cancelled job job-running: 2 applied, 1 failed, 2 not reset of 5; removed 2 queued tasks\n"; got.stdout != want {
		t.Errorf("stdout = %q, want %q", got.stdout, want)
	}
	requireStderr(t, got, "a reset already in flight may still be applied")

	pending, scheduled, _ := queueSizes(t, rd, tasks.QueueDefault)
	if pending != 2 || scheduled != 0 {
		t.Errorf("queue holds %d pending and %d scheduled tasks, want the applied user's task and the job's completion", pending, scheduled)
	}
	inspector := asynq.NewInspector(rd.Opt)
	defer inspector.Close()
	if _, err := inspector.GetTaskInfo(tasks.QueueDefault, tasks.CompleteTaskID("job-running")); err != nil {
		t.Errorf("the completion task of the cancelled job: %v, want it queued for the callback", err)
	}
	store := results.NewStore(rd.Client)
	job, err := store.Job(context.Background(), "job-running")
	if err != nil {
		t.Fatal(err)
	}
	if job.State != results.JobCancelled {
		t.Errorf("state = %s, want cancelled", job.State)
	}
	audit, err := store.AuditFields(context.Background(), "job-running")
	if err != nil {
		t.Fatal(err)
	}
	if audit["cancelled_by"] != "bob" || audit["cancelled_at"] != "2026-12-04T23:01:20Z" {
		t.Errorf("audit = %v, want cancelled_by bob at t0+20s", audit)
	}

	again := runCLI(t, invocation{}, "cancel", "job-running", "--redis-url", rd.URL)
	if again.code != exitOK {
		t.Fatalf("second cancel: %s", again)
	}
	requireStderr(t, again, "job job-running was cancelled before")

	status := runCLI(t, invocation{}, "status", "job-running", "--redis-url", rd.URL)
	if status.code != exitFailed {
		t.Errorf("status of a cancelled job with pending users: exit %d, want 1", status.code)
	}
	if !strings.Contains(status.stdout, "cancelled   2026-12-04T23:01:20Z by bob") {
		t.Errorf("status does not show who cancelled:\n%s", status.stdout)
	}
	if !strings.Contains(status.stdout, "users       2 applied, 1 failed, 2 not reset of 5\n") {
		t.Errorf("status does not count the untouched users as not reset, the word cancel uses:\n%s", status.stdout)
	}
}

func TestCancelScheduledSubmission(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	submit := runCLI(t, invocation{}, "--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1",
		"--type", "web", "--user", "u@x", "--job-id", "later", "--in", "2h", "--priority", "low")
	if submit.code != exitOK {
		t.Fatalf("submit: %s", submit)
	}

	got := runCLI(t, invocation{}, "cancel", "later", "--redis-url", rd.URL)
	if got.code != exitOK {
		t.Fatalf("cancel: %s", got)
	}
	if !strings.Contains(got.stdout, "removed 1 queued task\n") {
		t.Errorf("stdout = %q, want the scheduled reset:bulk task removed", got.stdout)
	}
	if strings.Contains(got.stderr, "in flight") {
		t.Errorf("stderr = %q, want no warning about resets in flight: no user task existed", got.stderr)
	}
	if !strings.Contains(got.stdout, "before a worker stored its user list: no user was reset") {
		t.Errorf("stdout = %q, want it to say that no user was reset, not 0 of 0", got.stdout)
	}
	if _, scheduled, _ := queueSizes(t, rd, tasks.QueueLow); scheduled != 0 {
		t.Errorf("%d scheduled tasks left, want none", scheduled)
	}

	status := runCLI(t, invocation{}, "status", "later", "--redis-url", rd.URL)
	if !strings.Contains(status.stdout, "users       no user was reset: the job was cancelled before a worker stored its user list\n") {
		t.Errorf("status of a job cancelled before its user list was stored:\n%s", status.stdout)
	}
}

func TestCancelCompletedJob(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)

	got := runCLI(t, invocation{}, "cancel", "job-done", "--redis-url", rd.URL)
	if got.code != exitOK {
		t.Fatalf("cancel: %s", got)
	}
	if want := "job job-done had already completed: 3 applied, 2 failed of 5; nothing to cancel\n"; got.stdout != want {
		t.Errorf("stdout = %q, want %q", got.stdout, want)
	}
	job, err := results.NewStore(rd.Client).Job(context.Background(), "job-done")
	if err != nil || job.State != results.JobCompleted {
		t.Errorf("job = %s, %v; want still completed", job.State, err)
	}
}
