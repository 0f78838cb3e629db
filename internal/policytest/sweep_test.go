package policytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestSweeperRepairsStalledJob loses some reset:user tasks of a running job, as a crash
// or an evicted key would, and archives others, as asynq's crash recoverer does when a
// crashed task has spent its retries without the error handler seeing it. The sweeper of
// three worker replicas must enqueue the lost users again and record the archived ones
// as failed, so that the job completes, and it must run once per tick across the
// replicas.
func TestSweeperRepairsStalledJob(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	const (
		users    = 40
		jobID    = "stalled"
		workers  = 3
		interval = time.Second
	)
	ids := seededUsers(users)
	lost, archived := ids[:10], ids[10:15]
	front := newPasswordFront()
	front.setFailing(ids)
	logs := &logLines{}
	p := startPipeline(t, pipelineOptions{
		users: users, workers: workers, concurrency: 10, rate: 100, wrap: front.wrap,
		sweepInterval: interval, stallAfter: 2 * time.Second, logs: logs,
	})
	submit(t, p.client, p.store, tasks.BulkResetPayload{
		JobID: jobID, Type: results.Web, ServiceProviderID: p.sim.ServiceProviderID(), GroupID: p.sim.GroupID(), Users: ids,
	})

	// Every PUT fails until the repair below, so every task waits for its first retry.
	waitUntil(t, 15*time.Second, "every task to wait for a retry", func() bool {
		return len(retryingUsers(t, p.inspector)) == users
	})
	for _, user := range lost {
		if err := p.inspector.DeleteTask(tasks.QueueDefault, tasks.UserTaskID(jobID, user)); err != nil {
			t.Fatalf("delete the task of %s: %v", user, err)
		}
	}
	for _, user := range archived {
		if err := p.inspector.ArchiveTask(tasks.QueueDefault, tasks.UserTaskID(jobID, user)); err != nil {
			t.Fatalf("archive the task of %s: %v", user, err)
		}
	}
	front.setFailing(nil)

	job := waitJob(t, p.store, jobID, time.Minute)
	if job.State != results.JobCompleted || job.Applied != users-len(archived) || job.Failed != len(archived) {
		t.Fatalf("job is %s with %d applied and %d failed of %d, want completed with %d applied and %d failed",
			job.State, job.Applied, job.Failed, job.Total, users-len(archived), len(archived))
	}
	ctx := context.Background()
	for _, user := range archived {
		rec, err := p.store.User(ctx, jobID, user)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != results.UserFailed || !strings.HasPrefix(rec.Reason, "retries exhausted") {
			t.Errorf("user %s with an archived task is %s (%q), want failed with the reason retries exhausted", user, rec.State, rec.Reason)
		}
	}
	for _, user := range lost {
		rec, err := p.store.User(ctx, jobID, user)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != results.UserApplied {
			t.Errorf("user %s with a lost task is %s (%q), want applied", user, rec.State, rec.Reason)
		}
	}
	if m := mismatches(t, p.store, jobID, fromSimulator(p.sim)); len(m) > 0 {
		t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
	}

	runs := sweepRuns(logs)
	t.Logf("%d sweep ticks ran across %d workers", len(runs), workers)
	if len(runs) == 0 {
		t.Errorf("no sweep ran")
	}
	for taskID, n := range runs {
		if n > 1 {
			t.Errorf("sweep %s ran %d times, want once across the workers", taskID, n)
		}
	}
}

// sweepRuns counts the finished reset:sweep tasks in the logs by task ID.
func sweepRuns(logs *logLines) map[string]int {
	runs := make(map[string]int)
	for _, entry := range logs.entries() {
		if entry["task_type"] == tasks.TypeSweep && entry["message"] == "task done" {
			taskID, _ := entry["task_id"].(string)
			runs[taskID]++
		}
	}
	return runs
}

// TestSweeperRestartsLostFanOut loses the reset:bulk task of a job before it ran. The
// sweeper must restart the fan-out of a job that lists every user of its group from Odin,
// and cancel, with the reason, a job whose user list existed only in the lost task.
func TestSweeperRestartsLostFanOut(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	const users = 20

	tests := []struct {
		name      string
		allUsers  bool
		wantState results.JobState
	}{
		{name: "all users of the group", allUsers: true, wantState: results.JobCompleted},
		{name: "user list", allUsers: false, wantState: results.JobCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startPipeline(t, pipelineOptions{
				users: users, workers: 1, concurrency: 10, rate: 100,
				sweepInterval: time.Second, stallAfter: 2 * time.Second,
			})
			payload := tasks.BulkResetPayload{
				JobID: "lost-fan-out", Type: results.Voicemail,
				ServiceProviderID: p.sim.ServiceProviderID(), GroupID: p.sim.GroupID(),
			}
			if tt.allUsers {
				payload.AllUsers = true
			} else {
				payload.Users = seededUsers(users)
			}
			// A task scheduled for later stays in Redis until the test deletes it.
			if _, err := tasks.Submit(context.Background(), p.client, p.store, payload, asynq.ProcessIn(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := p.inspector.DeleteTask(tasks.QueueDefault, payload.JobID); err != nil {
				t.Fatalf("delete the fan-out task: %v", err)
			}

			job := waitJob(t, p.store, payload.JobID, 30*time.Second)
			if job.State != tt.wantState {
				t.Fatalf("job is %s with %d applied of %d, want %s", job.State, job.Applied, job.Total, tt.wantState)
			}
			if tt.wantState == results.JobCompleted && job.Applied != users {
				t.Errorf("job has %d applied of %d, want all %d", job.Applied, job.Total, users)
			}
			if tt.wantState == results.JobCancelled && !strings.Contains(job.Reason, "submit the job again") {
				t.Errorf("reason = %q, want the sweeper's reason telling the operator to submit the job again", job.Reason)
			}
		})
	}
}
