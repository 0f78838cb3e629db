package tasks_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestBadPayloadsArchived enqueues every payload of tasks.BadPayloads by hand on a running
// worker. Each task must be archived at its first attempt, with an error that names the
// bad value and the fix, and the worker must then still reset the users of a good job.
func TestBadPayloadsArchived(t *testing.T) {
	t.Parallel()
	if len(tasks.BadPayloads) < 25 {
		t.Fatalf("the table has %d bad payloads, want at least 25", len(tasks.BadPayloads))
	}
	var logs logRecorder
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 5}, LogWriter: logs.add})
	inspector := asynq.NewInspector(env.Redis.Opt)
	t.Cleanup(func() { inspector.Close() })

	ids := make([]string, len(tasks.BadPayloads))
	for i, bad := range tasks.BadPayloads {
		ids[i] = fmt.Sprintf("bad-%02d", i)
		_, err := env.Client.Enqueue(asynq.NewTask(bad.Type, bad.Payload), asynq.TaskID(ids[i]), asynq.Queue(tasks.QueueDefault))
		if err != nil {
			t.Fatalf("enqueue %s: %v", bad.Name, err)
		}
	}

	for i, bad := range tasks.BadPayloads {
		t.Run(bad.Name, func(t *testing.T) {
			info := waitFinalState(t, inspector, tasks.QueueDefault, ids[i])
			if info.State != asynq.TaskStateArchived {
				t.Fatalf("task state %s after %d retries, want archived at once; last error: %.300s", info.State, info.Retried, info.LastErr)
			}
			if info.Retried != 0 {
				t.Errorf("task retried %d times before it was archived, want 0", info.Retried)
			}
			for _, want := range bad.Want {
				if !strings.Contains(info.LastErr, want) {
					t.Errorf("last error does not contain %q:\n%.600s", want, info.LastErr)
				}
			}
			if len(info.LastErr) > 4096 {
				t.Errorf("last error is %d bytes, want at most 4096: %.200s...", len(info.LastErr), info.LastErr)
			}
		})
	}

	// The worker still works: a good job completes.
	users := seededUsers(5)
	env.Submit(tasks.BulkResetPayload{JobID: "good-after-bad", Type: results.Web, Users: users})
	job := env.Wait("good-after-bad", 30*time.Second)
	if job.State != results.JobCompleted || job.Applied != len(users) {
		t.Errorf("good job after the bad payloads: %s, %d of %d applied; want completed with every user applied", job.State, job.Applied, len(users))
	}
	if m := env.Mismatches(job.ID); len(m) > 0 {
		t.Errorf("record differs from the simulator:\n%s", strings.Join(m, "\n"))
	}

	// No log line may carry a whole 10 MB identifier.
	for _, line := range logs.lines() {
		if len(line) > 16<<10 {
			t.Errorf("log line of %d bytes, want at most 16 KiB: %.300s...", len(line), line)
		}
	}
}

// waitFinalState polls the task until it is archived, waiting for a retry, or completed,
// and fails the test after 30 s.
func waitFinalState(t *testing.T, inspector *asynq.Inspector, queue, id string) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := inspector.GetTaskInfo(queue, id)
		switch {
		case err != nil && time.Now().After(deadline):
			t.Fatalf("task %s: %v", id, err)
		case err != nil:
		case info.State == asynq.TaskStateArchived, info.State == asynq.TaskStateRetry, info.State == asynq.TaskStateCompleted:
			return info
		case time.Now().After(deadline):
			t.Fatalf("task %s still %s after 30s", id, info.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRecorder keeps the worker's log lines.
type logRecorder struct {
	mu  sync.Mutex
	all [][]byte
}

func (r *logRecorder) add(line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, line)
}

func (r *logRecorder) lines() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.all...)
}
