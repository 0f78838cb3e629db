package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// batchResult is the measurement of one run of one case.
type batchResult struct {
	Label string `json:"label"`
	Users int    `json:"users"`

	// Wall is from starting the submission to the job's completion time in the record.
	Wall time.Duration `json:"wallNs"`
	// FanOut is from starting the submission until the fan-out cursor reached the total,
	// observed by polling every 10 ms.
	FanOut         time.Duration `json:"fanOutNs"`
	UsersPerSecond float64       `json:"usersPerSecond"`
	Applied        int           `json:"applied"`
	Failed         int           `json:"failed"`
	// Mismatches counts applied users whose value in the record differs from the
	// simulator's.
	Mismatches int `json:"mismatches"`

	// Calls counts Odin API requests by "METHOD /path", logins included.
	Calls        map[string]int `json:"calls"`
	CallsTotal   int            `json:"callsTotal"`
	CallsPerUser float64        `json:"callsPerUser"`
	MaxPerSecond int            `json:"maxPerSecond"`
	TooMany      int            `json:"tooManyRequests"`

	// PeakRSS is each worker's VmHWM in bytes, read after the job completed.
	PeakRSS []int64 `json:"peakRssBytes"`
	// RedisBefore and RedisAfter are used_memory before the submission and once the
	// job is complete and asynq's queues are empty.
	RedisBefore  int64   `json:"redisBeforeBytes"`
	RedisAfter   int64   `json:"redisAfterBytes"`
	RedisPerUser float64 `json:"redisBytesPerUser"`
	// AsynqKeys counts keys under asynq: left after completion, and TaskHashes those of
	// them that hold a task.
	AsynqKeys  int `json:"asynqKeys"`
	TaskHashes int `json:"asynqTaskHashes"`

	// Noop is the no-op baseline on one queue, NoopWorkerQueues the one on the worker's
	// queues, with a worker's pair of servers.
	Noop             *noopResult       `json:"noop,omitempty"`
	NoopWorkerQueues *noopResult       `json:"noopWorkerQueues,omitempty"`
	Sequential       *sequentialResult `json:"sequential,omitempty"`
	SequentialCapped *sequentialResult `json:"sequentialCapped,omitempty"`

	// CPU is the CPU time each component used from the submission to the job's
	// completion: "redis-server", "odin-sim", "workers" (all processes together) and
	// "bench" (this process, which runs in-process workers when profiling).
	CPU map[string]time.Duration `json:"cpuNs"`
	// Commands is Redis's INFO commandstats over the same span, the most expensive
	// first, and SlowLog the number of commands slower than 10 ms.
	Commands []commandStat `json:"redisCommands"`
	SlowLog  int64         `json:"redisSlowLog"`

	// Profile is the CPU profile file of in-process workers, empty for processes.
	Profile string `json:"profile,omitempty"`
}

// harness holds what every batch of one bench invocation shares.
type harness struct {
	opts   options
	binDir string
	// enqueueErr is the build error of cmd/enqueue, if any. Batches then submit
	// through tasks.Submit in this process.
	enqueueErr error
	workDir    string
	log        func(format string, args ...any)
}

// runBatch starts a fresh Redis, simulator and fleet, measures one batch and the
// baselines that p selects, and stops everything again.
func (h *harness) runBatch(ctx context.Context, name string, p params) (res batchResult, err error) {
	dir := filepath.Join(h.workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	res.Label, res.Users = p.label, p.users

	rs, err := startRedis(ctx, dir, h.opts.redisPorts)
	if err != nil {
		return res, err
	}
	defer rs.stop()
	sim, err := startSim(ctx, filepath.Join(h.binDir, "odin-sim"), dir, simConfig{
		users:             max(p.users, p.sequentialUsers, p.sequentialCappedUsers),
		latency:           p.latency,
		rateLimit:         p.simRate,
		sipGeneratorLimit: p.sipGeneratorLimit,
	})
	if err != nil {
		return res, err
	}
	defer sim.stop()

	if p.noop {
		for _, workerQueues := range []bool{false, true} {
			h.log("%s: asynq no-op baseline, %d tasks, worker queues %v", name, p.users, workerQueues)
			noop, err := runNoop(ctx, rs, p.users, p.workers, p.concurrency, workerQueues)
			if err != nil {
				return res, err
			}
			if workerQueues {
				res.NoopWorkerQueues = &noop
			} else {
				res.Noop = &noop
			}
			if err := rs.client.FlushAll(ctx).Err(); err != nil {
				return res, fmt.Errorf("flush Redis after the no-op baseline: %w", err)
			}
		}
	}

	if err := h.measureBatch(ctx, name, dir, p, rs, sim, &res); err != nil {
		return res, err
	}

	users := userIDs(max(p.sequentialUsers, p.sequentialCappedUsers))
	if p.sequentialUsers > 0 {
		h.log("%s: sequential baseline, %d users, no cap", name, p.sequentialUsers)
		seq, err := runSequential(ctx, sim, p.credType, users[:p.sequentialUsers], 0)
		if err != nil {
			return res, err
		}
		res.Sequential = &seq
	}
	if p.sequentialCappedUsers > 0 {
		h.log("%s: sequential baseline, %d users, %d requests/s", name, p.sequentialCappedUsers, pythonRate)
		seq, err := runSequential(ctx, sim, p.credType, users[:p.sequentialCappedUsers], pythonRate)
		if err != nil {
			return res, err
		}
		res.SequentialCapped = &seq
	}
	return res, nil
}

// measureBatch runs the fleet on one job and fills the batch fields of res.
func (h *harness) measureBatch(ctx context.Context, name, dir string, p params, rs *redisServer, sim *simServer, res *batchResult) error {
	key := make([]byte, results.KeySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	keyText := base64.StdEncoding.EncodeToString(key)
	wcfg := workerConfig{
		redisURL: rs.url, odinURL: sim.url, resultsKey: keyText,
		rateLimit: p.rate, concurrency: p.concurrency, extraEnv: h.opts.workerEnv,
	}
	fleet, err := h.startFleet(ctx, dir, p.workers, wcfg, rs)
	if err != nil {
		return err
	}
	defer fleet.stop()

	users := userIDs(p.users)
	usersFile := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(usersFile, []byte(strings.Join(users, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if res.RedisBefore, err = rs.usedMemory(ctx); err != nil {
		return err
	}
	if err := sim.resetStats(ctx); err != nil {
		return err
	}
	if err := rs.resetStats(ctx); err != nil {
		return err
	}
	components := map[string][]int{
		"redis-server": {rs.proc.pid()},
		"odin-sim":     {sim.proc.pid()},
		"bench":        {os.Getpid()},
	}
	for _, w := range fleet.procs {
		components["workers"] = append(components["workers"], w.pid())
	}
	cpuBefore, err := readCPU(components)
	if err != nil {
		return err
	}

	jobID := "bench-" + strings.ReplaceAll(name, "/", "-")
	h.log("%s: %d %s users, %d workers x %d, %g req/s, latency %s", name, p.users, p.credType, p.workers, p.concurrency, p.rate, p.latency)
	start := time.Now()
	if err := h.submit(ctx, rs, jobID, p.credType, users, usersFile); err != nil {
		return err
	}
	job, fanOutAt, err := waitForJob(ctx, rs, jobID, start, batchTimeout(p), fleet.procs)
	if err != nil {
		return err
	}
	res.Wall = job.CompletedAt.Sub(start)
	res.FanOut = fanOutAt.Sub(start)
	res.UsersPerSecond = float64(p.users) / res.Wall.Seconds()
	res.Applied, res.Failed = job.Applied, job.Failed
	cpuAfter, err := readCPU(components)
	if err != nil {
		return err
	}
	res.CPU = make(map[string]time.Duration, len(cpuAfter))
	for component, t := range cpuAfter {
		res.CPU[component] = t - cpuBefore[component]
	}
	if res.Commands, err = rs.commandStats(ctx); err != nil {
		return err
	}
	if res.SlowLog, err = rs.slowLogLength(ctx); err != nil {
		return err
	}

	if err := collectAfterCompletion(ctx, p, rs, sim, fleet, jobID, keyText, res); err != nil {
		return err
	}
	res.Profile = fleet.profile
	return nil
}

// collectAfterCompletion waits until asynq has deleted the finished tasks, then reads
// the simulator's counters, the workers' peak RSS and Redis's memory, and verifies the
// record against the simulator.
func collectAfterCompletion(ctx context.Context, p params, rs *redisServer, sim *simServer, fleet *fleet, jobID, keyText string, res *batchResult) error {
	if err := waitForQueuesEmpty(ctx, rs, 30*time.Second); err != nil {
		return err
	}
	st, err := sim.stats(ctx)
	if err != nil {
		return err
	}
	res.Calls, res.CallsTotal = st.Requests, st.Total
	res.CallsPerUser = float64(st.Total) / float64(p.users)
	res.MaxPerSecond, res.TooMany = st.MaxPerSecond, st.TooManyRequests

	for _, w := range fleet.procs {
		rss, err := w.peakRSS()
		if err != nil {
			return err
		}
		res.PeakRSS = append(res.PeakRSS, rss)
	}
	if res.RedisAfter, err = rs.usedMemory(ctx); err != nil {
		return err
	}
	res.RedisPerUser = float64(res.RedisAfter-res.RedisBefore) / float64(p.users)
	if res.AsynqKeys, res.TaskHashes, err = countAsynqKeys(ctx, rs); err != nil {
		return err
	}

	keyring, err := results.ParseKey(keyText)
	if err != nil {
		return err
	}
	res.Mismatches, err = verifyRecord(ctx, rs, sim, jobID, p.credType, results.NewKeyring(keyring))
	return err
}

// readCPU returns the CPU time used so far by each component's processes together.
func readCPU(components map[string][]int) (map[string]time.Duration, error) {
	out := make(map[string]time.Duration, len(components))
	for name, pids := range components {
		for _, pid := range pids {
			t, err := cpuTime(pid)
			if err != nil {
				return nil, err
			}
			out[name] += t
		}
	}
	return out, nil
}

// batchTimeout bounds the wait for a job: three times the time the rate limit alone
// needs, plus a minute for startup and slow machines.
func batchTimeout(p params) time.Duration {
	perRate := time.Duration(float64(p.users) / p.rate * float64(time.Second))
	perLatency := time.Duration(p.users) * p.latency / time.Duration(max(1, p.workers*p.concurrency))
	return 3*max(perRate, perLatency) + time.Minute
}

// userIDs returns the first n user IDs the simulator seeds.
func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = odintest.SeededUserID(i + 1)
	}
	return ids
}

// submit submits the job with the cmd/enqueue binary, or through tasks.Submit when the
// binary could not be built or the options ask for the library.
func (h *harness) submit(ctx context.Context, rs *redisServer, jobID string, t results.CredentialType, users []string, usersFile string) error {
	const serviceProvider, group = "sp1", "grp1"
	if h.opts.submit == submitEnqueue && h.enqueueErr == nil {
		cmd := exec.CommandContext(ctx, filepath.Join(h.binDir, "enqueue"), "submit",
			"--redis-url", rs.url, "--service-provider", serviceProvider, "--group", group,
			"--type", string(t), "--users-file", usersFile, "--job-id", jobID, "--requested-by", "bench")
		cmd.Env = baseEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("enqueue submit: %v\n%s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}

	client := asynq.NewClient(rs.asynqOpt())
	defer client.Close()
	store := results.NewStore(rs.client)
	_, err := tasks.Submit(ctx, client, store, tasks.BulkResetPayload{
		JobID: jobID, Type: t, ServiceProviderID: serviceProvider, GroupID: group,
		Users: users, RequestedBy: "bench",
	})
	if err != nil {
		return fmt.Errorf("submit job %s: %w", jobID, err)
	}
	return nil
}

// waitForJob polls the job every 10 ms until it finishes and returns it with the time
// the fan-out cursor was first seen at the total. It fails when a worker exits, the job
// ends cancelled, or timeout passes.
func waitForJob(ctx context.Context, rs *redisServer, jobID string, start time.Time, timeout time.Duration, workers []*proc) (results.Job, time.Time, error) {
	store := results.NewStore(rs.client)
	deadline := start.Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()

	var fanOutAt time.Time
	var job results.Job
	for {
		select {
		case <-ctx.Done():
			return job, fanOutAt, ctx.Err()
		case <-tick.C:
		}
		for _, w := range workers {
			if w.exited() {
				return job, fanOutAt, w.exitError()
			}
		}

		var err error
		job, err = store.Job(ctx, jobID)
		if err != nil && !errors.Is(err, results.ErrNotFound) {
			return job, fanOutAt, err
		}
		now := time.Now()
		if fanOutAt.IsZero() && job.UsersLoaded && job.Cursor >= job.Total {
			fanOutAt = now
		}
		switch job.State {
		case results.JobCompleted:
			if fanOutAt.IsZero() {
				fanOutAt = now
			}
			return job, fanOutAt, nil
		case results.JobCancelled:
			return job, fanOutAt, fmt.Errorf("job %s was cancelled: %s", jobID, job.Reason)
		}
		if now.After(deadline) {
			return job, fanOutAt, fmt.Errorf("job %s not finished after %s: state %q, cursor %d, %d applied, %d failed of %d; reason %q",
				jobID, timeout, job.State, job.Cursor, job.Applied, job.Failed, job.Total, job.Reason)
		}
	}
}

// waitForQueuesEmpty waits until no task of the reset queues is pending, active,
// scheduled or waiting for a retry, so that memory is measured once asynq has deleted
// the finished tasks.
func waitForQueuesEmpty(ctx context.Context, rs *redisServer, timeout time.Duration) error {
	inspector := asynq.NewInspector(rs.asynqOpt())
	defer inspector.Close()

	deadline := time.Now().Add(timeout)
	for {
		busy := ""
		for _, q := range []string{tasks.QueueHigh, tasks.QueueDefault, tasks.QueueLow} {
			info, err := inspector.GetQueueInfo(q)
			if err != nil {
				continue // a queue that never had a task does not exist
			}
			if n := info.Pending + info.Active + info.Scheduled + info.Retry; n > 0 {
				busy = fmt.Sprintf("%s has %d pending, %d active, %d scheduled, %d retry", q, info.Pending, info.Active, info.Scheduled, info.Retry)
			}
		}
		if busy == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queues not empty %s after the job completed: %s", timeout, busy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// countAsynqKeys counts the keys under asynq: and, among them, the task hashes.
func countAsynqKeys(ctx context.Context, rs *redisServer) (keys, taskHashes int, err error) {
	iter := rs.client.Scan(ctx, 0, "asynq:*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
		if strings.Contains(iter.Val(), "}:t:") {
			taskHashes++
		}
	}
	return keys, taskHashes, iter.Err()
}

// verifyRecord compares every applied user's value in the record with the value the
// simulator holds, and returns how many differ or are missing on the simulator.
func verifyRecord(ctx context.Context, rs *redisServer, sim *simServer, jobID string, t results.CredentialType, keyring *results.Keyring) (int, error) {
	creds, err := sim.credentials(ctx)
	if err != nil {
		return 0, err
	}
	kind := odintest.Kind(t)
	store := results.NewStore(rs.client, results.WithSealer(keyring))
	mismatches := 0
	err = store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		if rec.State != results.UserApplied {
			return nil
		}
		if c, ok := creds[rec.UserID][kind]; !ok || c.Value != rec.Secret {
			mismatches++
		}
		return nil
	})
	return mismatches, err
}
