package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestCancelStopsJob cancels a running job while some of its reset:user tasks wait in the
// queue and others wait for a retry after an Odin error. After the cancel no task of the
// job may call Odin except those already past the limiter, every task must end without being
// archived, and the record must keep the users already applied.
func TestCancelStopsJob(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	bins := requireBinaries(t)
	const (
		users       = 300
		concurrency = 10
		// At 20 requests/s a request leaves the limiter every 50 ms: at the cancel, one
		// or two are on their way, and a third may pass before the cancel is seen.
		maxSentAfterCancel = 3
	)

	tests := []struct {
		name   string
		cancel func(t *testing.T, p *pipeline, jobID string)
	}{
		{
			// enqueue cancel marks the job cancelled and deletes its waiting tasks.
			name: "enqueue cancel",
			cancel: func(t *testing.T, p *pipeline, jobID string) {
				stdout, stderr, code := runEnqueue(t, bins, p.redisURL, "cancel", "--requested-by", "policytest", jobID)
				if code != 0 {
					t.Fatalf("enqueue cancel %s exited with %d:\n%s%s", jobID, code, stdout, stderr)
				}
				t.Logf("enqueue cancel: %s", strings.TrimSpace(stdout))
			},
		},
		{
			// When only the record is cancelled, for example because enqueue's cleanup
			// stopped early, the workers revoke the waiting tasks when they come up.
			name: "record cancelled only",
			cancel: func(t *testing.T, p *pipeline, jobID string) {
				if _, err := p.store.Cancel(context.Background(), jobID); err != nil {
					t.Fatalf("cancel job %s: %v", jobID, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ids := seededUsers(users)
			front := newPasswordFront()
			var failing []string
			for i := 0; i < users; i += 10 {
				failing = append(failing, ids[i])
			}
			front.setFailing(failing)
			p := startPipeline(t, pipelineOptions{users: users, workers: 1, concurrency: concurrency, rate: 20, wrap: front.wrap})
			jobID := "cancel-" + strings.ReplaceAll(tt.name, " ", "-")
			submit(t, p.client, p.store, tasks.BulkResetPayload{
				JobID: jobID, Type: results.Web, ServiceProviderID: p.sim.ServiceProviderID(), GroupID: p.sim.GroupID(),
				Users: ids,
			})
			waitApplied(t, p.store, jobID, 30, 30*time.Second)
			var retrying []string
			waitUntil(t, 15*time.Second, "tasks waiting for a retry", func() bool {
				retrying = retryingUsers(t, p.inspector)
				return len(retrying) >= 3
			})

			before := front.snapshot()
			tt.cancel(t, p, jobID)
			waitUntil(t, 20*time.Second, "every task of the job to end", func() bool {
				info, err := p.inspector.GetQueueInfo(tasks.QueueDefault)
				return err == nil && info.Pending+info.Active+info.Scheduled+info.Retry == 0
			})
			after := front.snapshot()

			ctx := context.Background()
			job, err := p.store.Job(ctx, jobID)
			if err != nil {
				t.Fatal(err)
			}
			info, err := p.inspector.GetQueueInfo(tasks.QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			sent := 0
			for user, n := range after {
				sent += n - before[user]
			}
			t.Logf("cancelled with %d applied, %d failed and %d pending of %d, %d tasks waiting for a retry; %d PUT requests after the cancel",
				job.Applied, job.Failed, job.Pending(), job.Total, len(retrying), sent)

			if job.State != results.JobCancelled {
				t.Errorf("job state = %s, want %s", job.State, results.JobCancelled)
			}
			// Tasks waiting for a request slot read the job's state again before they
			// send, so only requests already past the limiter at the cancel go out.
			if sent > maxSentAfterCancel {
				t.Errorf("%d PUT requests after the cancel, want at most %d (the requests already past the limiter); %d tasks run at once", sent, maxSentAfterCancel, concurrency)
			}
			for _, user := range retrying {
				if n := after[user] - before[user]; n > 0 {
					t.Errorf("user %s waited for a retry at the cancel, then was sent to Odin %d times", user, n)
				}
			}
			if info.Archived != 0 {
				t.Errorf("%d tasks archived, want 0: cancelled tasks end without an error", info.Archived)
			}
			if job.Applied < 30 || job.Pending() == 0 {
				t.Errorf("job has %d applied and %d pending users, want at least 30 applied and some never reset", job.Applied, job.Pending())
			}
			if m := mismatches(t, p.store, jobID, fromSimulator(p.sim)); len(m) > 0 {
				t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
			}
			// The export shows a pending user's value only if it may have been sent.
			var rows []results.Row
			var export bytes.Buffer
			if err := p.store.WriteJSON(ctx, jobID, &export); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(export.Bytes(), &rows); err != nil {
				t.Fatal(err)
			}
			withValue := 0
			for _, row := range rows {
				if row.NewPassword == "" || !strings.HasPrefix(row.Error, "not reset") {
					continue
				}
				withValue++
				if after[row.UserID] == 0 {
					t.Errorf("user %s was never sent to Odin, but the export shows its value: %q", row.UserID, row.Error)
				}
			}
			t.Logf("the export shows the value of %d users not reset, each sent at least once", withValue)
		})
	}
}

// retryingUsers returns the users whose reset:user task waits for a retry in the
// default queue.
func retryingUsers(t *testing.T, inspector *asynq.Inspector) []string {
	t.Helper()
	infos, err := inspector.ListRetryTasks(tasks.QueueDefault, asynq.PageSize(1000))
	if err != nil {
		return nil
	}
	var users []string
	for _, info := range infos {
		var p tasks.UserResetPayload
		if info.Type == tasks.TypeUserReset && json.Unmarshal(info.Payload, &p) == nil {
			users = append(users, p.UserID)
		}
	}
	return users
}

// passwordFront counts PUT /users/passwords requests per user and returns 500 for the
// failing users. Other requests pass to Odin unchanged.
type passwordFront struct {
	mu      sync.Mutex
	failing map[string]bool
	puts    map[string]int
}

func newPasswordFront() *passwordFront {
	return &passwordFront{failing: make(map[string]bool), puts: make(map[string]int)}
}

// setFailing replaces the users whose PUT requests get 500.
func (f *passwordFront) setFailing(users []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.failing)
	for _, u := range users {
		f.failing[u] = true
	}
}

func (f *passwordFront) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/api/v2/users/passwords" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read the body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			UserID string `json:"userId"`
		}
		_ = json.Unmarshal(body, &req)

		f.mu.Lock()
		f.puts[req.UserID]++
		fail := f.failing[req.UserID]
		f.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error": "Internal Server Error", "status": 500}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// snapshot returns a copy of the PUT counts per user.
func (f *passwordFront) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.puts)
}
