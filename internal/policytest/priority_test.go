package policytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestHighPriorityNotStarved submits a 20,000-user low-priority batch with enqueue to
// three worker processes of concurrency 20, and while it runs submits one-user jobs of
// each credential type with --priority high. Each of them must complete within 5
// seconds: the workers run high-priority tasks on slots of their own, and the rate limiter keeps the
// slots past its headroom free for them although 60 low-priority tasks wait for slots.
func TestHighPriorityNotStarved(t *testing.T) {
	const (
		lowUsers    = 20_000
		workers     = 3
		concurrency = 20
		maxLatency  = 5 * time.Second
	)
	tests := []struct {
		name string
		rate int
		// fullOnly runs the case only with ODINRESET_FULL set.
		fullOnly bool
	}{
		{name: "20 requests per second", rate: 20},
		{name: "default 5 requests per second", rate: 5, fullOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fullOnly && !fullSize() {
				t.Skip("runs with ODINRESET_FULL=1 only")
			}
			rounds := sized(1, 5)
			bins := requireBinaries(t)
			rd := startRedisServer(t, "noeviction")
			sim := startSim(t, bins, "--users", strconv.Itoa(lowUsers), "--latency", "20ms", "--jitter", "30ms")
			key, keyring := newResultsKey(t)
			for i := range workers {
				startWorker(t, bins, fmt.Sprintf("worker-%d", i+1), rd.URL, sim.URL, key, workerSettings{
					"ODIN_RATE_LIMIT":    strconv.Itoa(tt.rate),
					"WORKER_CONCURRENCY": strconv.Itoa(concurrency),
				})
			}
			store := results.NewStore(rd.Client, results.WithSealer(keyring))

			usersFile := filepath.Join(t.TempDir(), "users.txt")
			if err := os.WriteFile(usersFile, []byte(strings.Join(seededUsers(lowUsers), "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			enqueue(t, bins, rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "web",
				"--users-file", usersFile, "--priority", "low", "--job-id", "low-batch", "--requested-by", "policytest")
			// Five seconds of the batch: every worker slot now waits for the limiter.
			waitApplied(t, store, "low-batch", 5*tt.rate, time.Minute)

			var latencies []time.Duration
			for round := range rounds {
				for i, typ := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
					// Users at the end of the list, which the batch has not reached yet.
					user := odintest.SeededUserID(lowUsers - 3*round - i)
					jobID := fmt.Sprintf("urgent-%d-%s", round+1, typ)
					enqueue(t, bins, rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", string(typ),
						"--user", user, "--priority", "high", "--job-id", jobID, "--requested-by", "policytest")
					job := waitJob(t, store, jobID, 30*time.Second)
					latency := job.CompletedAt.Sub(job.CreatedAt)
					latencies = append(latencies, latency)

					if job.State != results.JobCompleted || job.Applied != 1 {
						t.Errorf("job %s is %s with %d applied, want completed with its user applied", jobID, job.State, job.Applied)
					}
					if latency > maxLatency {
						t.Errorf("high-priority %s job %s took %v from submission to completion, want at most %v",
							typ, jobID, latency.Round(10*time.Millisecond), maxLatency)
					}
				}
			}

			low, err := store.Job(t.Context(), "low-batch")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("one-user high-priority jobs (sip, voicemail, web) during a %d-user low-priority batch, %d workers x %d concurrency at %d req/s: %v; the batch had %d applied",
				lowUsers, workers, concurrency, tt.rate, roundAll(latencies), low.Applied)
			if low.State != results.JobRunning || low.Pending() == 0 {
				t.Errorf("low-priority batch is %s with %d pending users, want it still running: the measurement did not overlap it", low.State, low.Pending())
			}
			enqueue(t, bins, rd.URL, "cancel", "--requested-by", "policytest", "low-batch")
		})
	}
}

// enqueue runs cmd/enqueue and fails the test unless it exits with 0.
func enqueue(t *testing.T, bins binaries, redisURL string, args ...string) string {
	t.Helper()
	stdout, stderr, code := runEnqueue(t, bins, redisURL, args...)
	if code != 0 {
		t.Fatalf("enqueue %s exited with %d:\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// TestDefaultFanOutAheadOfLowJob submits a default-priority SIP job, whose fan-out makes
// one generator call per user because Odin's SIP generator ignores limit, together with a
// low-priority web job. While the fan-out generates values, the default queue is empty
// and free slots take the low job's tasks. The fan-out's requests must still go ahead of
// them in the rate limiter, so the default job finishes while most of the low job waits.
func TestDefaultFanOutAheadOfLowJob(t *testing.T) {
	t.Parallel()
	const users = 60
	env := testenv.Start(t, testenv.Options{
		Sim:         odintest.Config{Users: 2 * users},
		Concurrency: 5, RateLimit: 20,
	})
	all := seededUsers(2 * users)
	env.Submit(tasks.BulkResetPayload{JobID: "fanout-default", Type: results.SIP, Users: all[:users]})
	env.Submit(tasks.BulkResetPayload{JobID: "fanout-low", Type: results.Web, Users: all[users:], Priority: tasks.PriorityLow})

	defaultJob := env.Wait("fanout-default", time.Minute)
	lowJob, err := env.Store.Job(context.Background(), "fanout-low")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("when the default job completed (%d applied), the low job had %d of %d applied", defaultJob.Applied, lowJob.Applied, users)
	if defaultJob.Applied != users {
		t.Errorf("default job applied %d of %d users", defaultJob.Applied, users)
	}
	if lowJob.Applied > users/2 {
		t.Errorf("low job had %d of %d users applied when the default job completed, want at most %d: the default fan-out waited behind the low job's requests", lowJob.Applied, users, users/2)
	}
	env.Wait("fanout-low", time.Minute)
}

// TestCancelledLowJobLeavesQueue cancels a low-priority job whose tasks wait behind a
// default-priority job. Its tasks must end at once instead of waiting for the default job.
func TestCancelledLowJobLeavesQueue(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 60}, Concurrency: 4, RateLimit: 5})
	ctx := context.Background()
	all := seededUsers(60)
	env.Submit(tasks.BulkResetPayload{JobID: "cancel-default", Type: results.Web, Users: all[:50]})
	env.Submit(tasks.BulkResetPayload{JobID: "cancel-low", Type: results.Web, Users: all[50:], Priority: tasks.PriorityLow})
	waitUntil(t, 10*time.Second, "the low job to wait behind the default one", func() bool {
		job, err := env.Store.Job(ctx, "cancel-low")
		return err == nil && job.Reason != ""
	})
	if _, err := env.Store.Cancel(ctx, "cancel-low"); err != nil {
		t.Fatal(err)
	}

	inspector := asynq.NewInspector(env.Redis.Opt)
	t.Cleanup(func() { _ = inspector.Close() })
	waitUntil(t, 15*time.Second, "the cancelled low job's tasks to leave reset-low", func() bool {
		info, err := inspector.GetQueueInfo(tasks.QueueLow)
		return err == nil && info.Size == 0
	})
	if job, err := env.Store.Job(ctx, "cancel-default"); err != nil || job.State != results.JobRunning {
		t.Errorf("default job is %v (%v), want still running: the test did not overlap it", job.State, err)
	}
}

// TestLowFanOutYieldsToDefaultJob starts a low-priority SIP job whose fan-out makes one
// generator call per user, then submits a default-priority job. The low fan-out must stop
// at its next chunk and leave the rate to the default job.
func TestLowFanOutYieldsToDefaultJob(t *testing.T) {
	t.Parallel()
	const lowUsers, defaultUsers, chunk = 100, 200, 10
	env := testenv.Start(t, testenv.Options{
		Sim:         odintest.Config{Users: lowUsers + defaultUsers},
		Concurrency: 4, RateLimit: 20, ChunkSize: chunk,
	})
	ctx := context.Background()
	all := seededUsers(lowUsers + defaultUsers)
	env.Submit(tasks.BulkResetPayload{JobID: "yield-low", Type: results.SIP, Users: all[:lowUsers], Priority: tasks.PriorityLow})
	waitUntil(t, 20*time.Second, "the low fan-out to finish a chunk", func() bool {
		job, err := env.Store.Job(ctx, "yield-low")
		return err == nil && job.Cursor >= chunk
	})

	env.Submit(tasks.BulkResetPayload{JobID: "yield-default", Type: results.Web, Users: all[lowUsers:]})
	defaultJob := env.Wait("yield-default", time.Minute)
	low, err := env.Store.Job(ctx, "yield-low")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("when the default job completed (%d applied), the low fan-out had enqueued %d of %d users", defaultJob.Applied, low.Cursor, lowUsers)
	if low.Cursor > 4*chunk {
		t.Errorf("low fan-out enqueued %d users by the time the default job completed, want at most %d: it kept generating values beside the default job", low.Cursor, 4*chunk)
	}
	env.Wait("yield-low", 2*time.Minute)

	// The group is listed once: both jobs are in it, and the low fan-out, which stopped
	// and resumed, uses the list read when it started.
	if lists := env.Sim.Stats().Requests["GET /users"]; lists != 1 {
		t.Errorf("Odin got %d group listings, want 1", lists)
	}
}
