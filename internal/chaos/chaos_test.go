package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// workerBinary is the worker command built once by TestMain; empty when redis-server is
// missing, because every test then skips.
var workerBinary string

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "odinreset-chaos-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if workerBinary, err = BuildWorker(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// fullSize reports whether ODINRESET_CHAOS_FULL=1 selects the 2,000-user runs.
func fullSize() bool { return os.Getenv("ODINRESET_CHAOS_FULL") == "1" }

// Settings of every worker process. ODIN_TIMEOUT is short so hung requests fail fast, and
// SHUTDOWN_TIMEOUT is just above it, as the worker requires.
const (
	odinTimeout       = 2 * time.Second
	shutdownTimeout   = 3 * time.Second
	workerConcurrency = 3
)

// harness is one chaos run: its own redis-server, Odin simulator, two worker processes,
// and a client that submits and inspects the job.
type harness struct {
	t         *testing.T
	redis     *Redis
	sim       *odintest.Server
	store     *results.Store
	client    *asynq.Client
	inspector *asynq.Inspector
	workers   []*Worker
	jobID     string
	users     []string
}

type harnessConfig struct {
	credential results.CredentialType
	users      int
	appendOnly bool
}

func newHarness(t *testing.T, cfg harnessConfig) *harness {
	t.Helper()
	if workerBinary == "" {
		t.Skip("needs redis-server on PATH (apt-get install redis-server)")
	}
	h := &harness{t: t, jobID: "chaos-" + string(cfg.credential)}
	h.redis = StartRedis(t, RedisOptions{AppendOnly: cfg.appendOnly})

	// Every 40th user rejects its first value (a fresh one is generated and written ahead)
	// and every 97th lacks the service, so the batch has failures with Odin's reason.
	simCfg := odintest.Config{
		Users:         cfg.users,
		Password:      rand.Text(),
		Latency:       40 * time.Millisecond,
		LatencyJitter: 60 * time.Millisecond,
		Faults: odintest.Faults{
			Error500: 0.03, Error502HTML: 0.03, Reset: 0.02, Hang: 0.02,
			HangDuration: 3 * odinTimeout, ApplyBeforeFault: 0.5,
		},
	}
	for i := 1; i <= cfg.users; i++ {
		id := odintest.SeededUserID(i)
		h.users = append(h.users, id)
		switch {
		case i%40 == 0:
			simCfg.RejectFirst = append(simCfg.RejectFirst, id)
		case i%97 == 0 && cfg.credential == results.SIP:
			simCfg.WithoutAuthentication = append(simCfg.WithoutAuthentication, id)
		case i%97 == 0 && cfg.credential == results.Voicemail:
			simCfg.WithoutVoiceMessaging = append(simCfg.WithoutVoiceMessaging, id)
		}
	}
	sim, err := odintest.NewServer(simCfg)
	if err != nil {
		t.Fatalf("start the Odin simulator: %v", err)
	}
	t.Cleanup(sim.Close)
	h.sim = sim

	rawKey := make([]byte, results.KeySize)
	_, _ = rand.Read(rawKey)
	encodedKey := base64.StdEncoding.EncodeToString(rawKey)
	key, err := results.ParseKey(encodedKey)
	if err != nil {
		t.Fatal(err)
	}
	h.store = results.NewStore(h.redis.Client, results.WithSealer(results.NewKeyring(key)))
	h.client = asynq.NewClient(h.redis.Opt)
	t.Cleanup(func() { h.client.Close() })
	h.inspector = asynq.NewInspector(h.redis.Opt)
	t.Cleanup(func() { h.inspector.Close() })

	user, password := sim.Login()
	env := []string{
		"REDIS_URL=" + h.redis.URL,
		"ODIN_BASE_URL=" + sim.URL,
		"ODIN_USERNAME=" + user,
		"ODIN_PASSWORD=" + password,
		"ODIN_RATE_LIMIT=500",
		"ODIN_RATE_BURST=10",
		fmt.Sprintf("WORKER_CONCURRENCY=%d", workerConcurrency),
		"ODIN_TIMEOUT=" + odinTimeout.String(),
		"SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		"ODIN_LOGIN_COOLDOWN=2s",
		"RESULTS_KEY=" + encodedKey,
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
	}
	logDir := t.TempDir()
	for i := range 2 {
		name := fmt.Sprintf("worker%d", i+1)
		w := NewWorker(workerBinary, name, env, filepath.Join(logDir, name+".log"))
		t.Cleanup(w.Stop)
		h.workers = append(h.workers, w)
		if err := h.startWorker(w); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range h.workers {
				t.Logf("end of %s's log:\n%s", w.Name, w.LogTail(30))
			}
		}
	})
	return h
}

// startWorker starts w with the HTTP endpoints off, so no TCP port is opened.
func (h *harness) startWorker(w *Worker) error { return w.Start("--http-addr=") }

func (h *harness) submit(credential results.CredentialType) {
	h.t.Helper()
	_, err := tasks.Submit(context.Background(), h.client, h.store, tasks.BulkResetPayload{
		JobID: h.jobID, Type: credential, ServiceProviderID: h.sim.ServiceProviderID(), GroupID: h.sim.GroupID(),
		Users: h.users, RequestedBy: "chaos test",
	})
	if err != nil {
		h.t.Fatalf("submit job %s: %v", h.jobID, err)
	}
}

// waitSettled blocks until at least fraction of the users are applied or failed, or the
// job finished, and reports false when ctx ends first.
func (h *harness) waitSettled(ctx context.Context, fraction float64) bool {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	want := int(fraction * float64(len(h.users)))
	for {
		job, err := h.store.Job(ctx, h.jobID)
		if err == nil && (job.Applied+job.Failed >= want || job.State.Finished()) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ticker.C:
		}
	}
}

// finished reports whether the job is finished; a Redis error counts as not finished.
func (h *harness) finished(ctx context.Context) bool {
	job, err := h.store.Job(ctx, h.jobID)
	return err == nil && job.State.Finished()
}

// pause waits d, or less when ctx ends. It paces the disruptions; it synchronises nothing.
func pause(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// finish waits for the job, compares the record with the simulator and checks the
// invariants every run shares: the job completes, every user is applied or failed with a
// reason, and the record equals the simulator's state.
func (h *harness) finish(ctx context.Context) Outcome {
	h.t.Helper()
	deadline, _ := ctx.Deadline()
	job, err := WaitJob(context.WithoutCancel(ctx), h.store, h.jobID, time.Until(deadline), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := Compare(context.WithoutCancel(ctx), h.store, h.sim.Simulator, h.jobID)
	if err != nil {
		h.t.Fatalf("compare job %s with the simulator: %v", h.jobID, err)
	}

	if job.State != results.JobCompleted {
		h.t.Errorf("job state = %s, want completed", job.State)
	}
	if out.Applied+out.Failed != len(h.users) || out.Pending != 0 {
		h.t.Errorf("%d applied + %d failed of %d users, %d pending; want every user settled", out.Applied, out.Failed, len(h.users), out.Pending)
	}
	if job.Applied != out.Applied || job.Failed != out.Failed {
		h.t.Errorf("job counters %d applied, %d failed; the users' records say %d and %d", job.Applied, job.Failed, out.Applied, out.Failed)
	}
	if len(out.FailedWithoutReason) > 0 {
		h.t.Errorf("%d failed users have no reason: %s", len(out.FailedWithoutReason), strings.Join(first(out.FailedWithoutReason, 10), ", "))
	}
	if len(out.Mismatches) > 0 {
		h.t.Errorf("%d users differ between the record and the simulator:\n%s", len(out.Mismatches), strings.Join(first(out.Mismatches, 20), "\n"))
	}
	for _, w := range h.workers {
		if b, err := os.ReadFile(w.LogPath); err == nil && strings.Contains(string(b), "panic") {
			h.t.Errorf("%s logged a panic:\n%s", w.Name, w.LogTail(40))
		}
	}
	return out
}

// report logs the counts of a run for the test output.
func (h *harness) report(out Outcome, extra string) {
	stats := h.sim.Stats()
	faults := 0
	for _, n := range stats.Faults {
		faults += n
	}
	h.t.Logf("%s: %d users: %d applied, %d failed (%d unconfirmed), %d regenerated after a rule rejection, %d applied users set more than once; %d Odin requests, %d faults injected %v; %s; duration %s",
		h.jobID, len(h.users), out.Applied, out.Failed, out.Unconfirmed, out.Regenerated, out.SetMoreThanOnce,
		stats.Total, faults, stats.Faults, extra, out.Job.CompletedAt.Sub(out.Job.CreatedAt).Round(time.Second))
	for reason, n := range out.Reasons {
		h.t.Logf("  failed %d: %s", n, reason)
	}
}

func first(lines []string, n int) []string {
	return lines[:min(n, len(lines))]
}

// TestChaosKillWorkers kills one of two worker processes with SIGKILL every few seconds
// and starts it again, during a batch against an Odin that fails 10% of requests. A killed
// worker's tasks come back only after asynq's lease expiry and recoverer tick (1 to 2
// minutes), so the short form stops killing after a few rounds. It usually takes 2 to 3
// minutes. The deadline is longer because a few users may fault 4 or 5 times in a row and
// then wait 75 to 155 s in retry backoff.
func TestChaosKillWorkers(t *testing.T) {
	t.Parallel()
	users, kills, timeout := 300, 4, 6*time.Minute
	if fullSize() {
		users, kills, timeout = 2000, 30, 30*time.Minute
	}
	h := newHarness(t, harnessConfig{credential: results.Web, users: users})
	h.submit(results.Web)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := 0
	if h.waitSettled(ctx, 0.05) {
		for done < kills && !h.finished(ctx) {
			pause(ctx, 2*time.Second+time.Duration(done%3)*time.Second)
			w := h.workers[done%len(h.workers)]
			if err := w.Kill(); err != nil {
				t.Fatal(err)
			}
			done++
			if err := h.startWorker(w); err != nil {
				t.Fatal(err)
			}
		}
	}

	out := h.finish(ctx)
	h.report(out, fmt.Sprintf("%d SIGKILLs", done))
	if done == 0 {
		t.Error("no worker was killed before the job finished; the run proves nothing")
	}
}

// TestChaosRestartRedis kills redis-server (append-only, fsync on every write) with
// SIGKILL in the middle of a batch and starts it again on the same files. The batch is
// SIP, whose simulated generator ignores the count, so the fan-out makes one request per
// value and must get through the faults.
func TestChaosRestartRedis(t *testing.T) {
	t.Parallel()
	users, restarts, timeout := 300, 1, 6*time.Minute
	if fullSize() {
		users, restarts, timeout = 2000, 3, 30*time.Minute
	}
	h := newHarness(t, harnessConfig{credential: results.SIP, users: users, appendOnly: true})
	h.submit(results.SIP)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := 0
	for done < restarts {
		if !h.waitSettled(ctx, float64(done+1)/float64(restarts+2)) || h.finished(ctx) {
			break
		}
		if err := h.redis.Kill(); err != nil {
			t.Fatal(err)
		}
		pause(ctx, 2*time.Second)
		if err := h.redis.Start(); err != nil {
			t.Fatal(err)
		}
		done++
	}
	if !fullSize() {
		// The restarts are what this run tests. In the short CI form, end the Odin faults
		// after them: a user whose attempts failed five times in a row would otherwise sit
		// in asynq's backoff for minutes and make the run time out on a 2-core machine.
		h.sim.SetFaults(odintest.Faults{})
	}

	out := h.finish(ctx)
	h.report(out, fmt.Sprintf("%d redis-server restarts", done))
	if done == 0 {
		t.Error("redis-server was not restarted before the job finished; the run proves nothing")
	}
	for _, w := range h.workers {
		if w.Starts() != 1 {
			t.Errorf("%s was started %d times; want it to ride out the Redis restart", w.Name, w.Starts())
		}
	}
}

// TestChaosTerminateWorker stops one worker with SIGTERM in the middle of a batch and
// checks that the users it was working on are finished or run again, not lost. asynq
// puts a task still running at the end of SHUTDOWN_TIMEOUT back in its queue. A task it
// lost would come back only through lease recovery, with the last error "asynq: task
// lease expired", about a minute later at the earliest.
func TestChaosTerminateWorker(t *testing.T) {
	t.Parallel()
	users, timeout := 300, 6*time.Minute
	if fullSize() {
		users, timeout = 2000, 30*time.Minute
	}
	h := newHarness(t, harnessConfig{credential: results.Voicemail, users: users})
	h.submit(results.Voicemail)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !h.waitSettled(ctx, 0.25) {
		t.Fatal("the batch made no progress")
	}
	inFlight := h.activeUsers()
	if len(inFlight) == 0 {
		t.Fatal("no task was active when SIGTERM was sent; the run proves nothing")
	}
	victim := h.workers[0]
	sent := time.Now()
	code, took, err := victim.Terminate(shutdownTimeout + 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("worker exit code after SIGTERM = %d, want 0; its log:\n%s", code, victim.LogTail(20))
	}
	if took > shutdownTimeout+5*time.Second {
		t.Errorf("worker took %s to stop after SIGTERM, want about SHUTDOWN_TIMEOUT (%s)", took.Round(time.Millisecond), shutdownTimeout)
	}
	if err := h.startWorker(victim); err != nil {
		t.Fatal(err)
	}

	watch := h.watchUsers(ctx, inFlight)
	out := h.finish(ctx)
	h.report(out, fmt.Sprintf("SIGTERM with %d tasks active, exit code %d after %s, the last of them settled %s after SIGTERM",
		len(inFlight), code, took.Round(time.Millisecond), watch.settledAt.Sub(sent).Round(time.Millisecond)))
	if len(watch.pending) > 0 {
		t.Errorf("users active at SIGTERM never settled: %s", strings.Join(watch.pending, ", "))
	}
	if len(watch.leaseExpired) > 0 {
		t.Errorf("tasks active at SIGTERM came back through lease recovery, so the shutdown lost them: %s", strings.Join(watch.leaseExpired, ", "))
	}
}

// activeUsers returns the user IDs of the reset:user tasks active in any queue.
func (h *harness) activeUsers() []string {
	h.t.Helper()
	var users []string
	for queue := range tasks.Queues() {
		infos, err := h.inspector.ListActiveTasks(queue, asynq.PageSize(1000))
		if err != nil && !strings.Contains(err.Error(), "not found") {
			h.t.Fatalf("list active tasks of %s: %v", queue, err)
		}
		for _, info := range infos {
			var p tasks.UserResetPayload
			if info.Type == tasks.TypeUserReset && json.Unmarshal(info.Payload, &p) == nil {
				users = append(users, p.UserID)
			}
		}
	}
	return users
}

// userWatch is what watchUsers saw.
type userWatch struct {
	// settledAt is when the last user was applied or failed.
	settledAt time.Time
	// pending lists the users still pending when the watch ended.
	pending []string
	// leaseExpired lists the users whose task was seen with asynq's lease-expired error.
	leaseExpired []string
}

// watchUsers polls the users' records and their reset:user tasks until every user is
// applied or failed, or ctx ends. A retry keeps its last error for at least RetryBase
// (5 s), so polling every 100 ms catches every lease-expired error.
func (h *harness) watchUsers(ctx context.Context, users []string) userWatch {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	expired := map[string]bool{}
	for {
		for _, u := range users {
			for queue := range tasks.Queues() {
				info, err := h.inspector.GetTaskInfo(queue, tasks.UserTaskID(h.jobID, u))
				if err == nil && strings.Contains(info.LastErr, asynq.ErrLeaseExpired.Error()) {
					expired[u] = true
				}
			}
		}
		var w userWatch
		for u := range expired {
			w.leaseExpired = append(w.leaseExpired, u)
		}
		recs, err := h.store.Users(ctx, h.jobID, users)
		if err == nil {
			for _, rec := range recs {
				if rec.State == results.UserPending {
					w.pending = append(w.pending, rec.UserID)
				}
			}
		} else {
			w.pending = users
		}
		w.settledAt = time.Now()
		if len(w.pending) == 0 {
			return w
		}
		select {
		case <-ctx.Done():
			return w
		case <-ticker.C:
		}
	}
}

func TestRetryDelayAfterCrash(t *testing.T) {
	t.Parallel()
	for _, retried := range []int{0, 3, 10, 24} {
		t.Run(fmt.Sprint(retried), func(t *testing.T) {
			t.Parallel()
			got := tasks.RetryDelay(retried, asynq.ErrLeaseExpired, nil)
			if got < tasks.RetryBase || got > tasks.RetryBase+tasks.RetryBase/4 {
				t.Errorf("RetryDelay(%d, lease expired) = %s, want %s plus up to 25%%", retried, got, tasks.RetryBase)
			}
		})
	}
}
