package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// noopResult is the asynq no-op baseline: tasks that do nothing, enqueued the way the
// fan-out enqueues users, and processed by as many servers and goroutines as the
// fleet has.
type noopResult struct {
	Tasks int `json:"tasks"`
	// Enqueue is the time to enqueue every task; Wall runs from the first enqueue to the
	// last task processed, with processing overlapping the enqueueing.
	Enqueue        time.Duration `json:"enqueueNs"`
	Wall           time.Duration `json:"wallNs"`
	TasksPerSecond float64       `json:"tasksPerSecond"`
	// CPU is the CPU time of "redis-server" and "bench" (which runs the no-op servers)
	// over Wall.
	CPU map[string]time.Duration `json:"cpuNs"`
}

const noopQueue = "bench-noop"

// noopEnqueueParallelism is how many enqueues the baseline keeps in flight: as many as
// the fan-out of reset:bulk does, so both enqueue at the same pace.
const noopEnqueueParallelism = 16

// runNoop measures asynq alone on the batch's Redis: n tasks with the options and payload
// size of a reset:user task, run by servers asynq servers of concurrency goroutines each,
// in this process. With workerQueues each of those servers is a pair, as in a worker: one
// for the urgent queue and one for the default and low queues with strict priority. The
// tasks then go to the default queue, as reset:user tasks do. Without workerQueues the
// servers use a single queue. In both cases they poll as often as the worker's do.
func runNoop(ctx context.Context, rs *redisServer, n, servers, concurrency int, workerQueues bool) (noopResult, error) {
	layout, queue := []map[string]int{{noopQueue: 1}}, noopQueue
	if workerQueues {
		layout, queue = []map[string]int{tasks.UrgentQueues(), tasks.BatchQueues()}, tasks.QueueDefault
	}

	var processed atomic.Int64
	allDone := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:noop", func(context.Context, *asynq.Task) error {
		if processed.Add(1) == int64(n) {
			close(allDone)
		}
		return nil
	})

	var started []*asynq.Server
	defer func() {
		var wg sync.WaitGroup
		for _, srv := range started {
			wg.Go(srv.Shutdown)
		}
		wg.Wait()
	}()
	for range servers {
		for _, queues := range layout {
			srv := asynq.NewServer(rs.asynqOpt(), asynq.Config{
				Concurrency:       concurrency,
				Queues:            queues,
				StrictPriority:    true,
				TaskCheckInterval: worker.TaskCheckInterval,
				Logger:            quietLogger{},
				LogLevel:          asynq.ErrorLevel,
			})
			if err := srv.Start(mux); err != nil {
				return noopResult{}, fmt.Errorf("start asynq no-op server: %w", err)
			}
			started = append(started, srv)
		}
	}

	client := asynq.NewClient(rs.asynqOpt())
	defer client.Close()
	components := map[string][]int{"redis-server": {rs.proc.pid()}, "bench": {os.Getpid()}}
	cpuBefore, err := readCPU(components)
	if err != nil {
		return noopResult{}, err
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(noopEnqueueParallelism)
	for i := range n {
		payload, err := json.Marshal(tasks.UserResetPayload{
			JobID: "bench-noop", UserID: fmt.Sprintf("user%04d@example.com", i+1), Type: results.Web,
			ServiceProviderID: "sp1", GroupID: "grp1",
		})
		if err != nil {
			return noopResult{}, err
		}
		task := asynq.NewTask("bench:noop", payload,
			asynq.TaskID(fmt.Sprintf("bench-noop/%d", i)), asynq.Queue(queue),
			asynq.MaxRetry(tasks.UserMaxRetry), asynq.Timeout(tasks.UserTimeout))
		g.Go(func() error {
			if _, err := client.EnqueueContext(gctx, task); err != nil {
				return fmt.Errorf("enqueue no-op task: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return noopResult{}, err
	}
	enqueued := time.Since(start)

	timeout := time.NewTimer(time.Duration(n)*time.Millisecond + time.Minute)
	defer timeout.Stop()
	select {
	case <-allDone:
	case <-ctx.Done():
		return noopResult{}, ctx.Err()
	case <-timeout.C:
		return noopResult{}, fmt.Errorf("asynq no-op baseline: %d of %d tasks processed before the timeout", processed.Load(), n)
	}
	wall := time.Since(start)
	cpuAfter, err := readCPU(components)
	if err != nil {
		return noopResult{}, err
	}
	res := noopResult{Tasks: n, Enqueue: enqueued, Wall: wall, TasksPerSecond: float64(n) / wall.Seconds(), CPU: map[string]time.Duration{}}
	for name, t := range cpuAfter {
		res.CPU[name] = t - cpuBefore[name]
	}
	return res, nil
}

// quietLogger drops asynq's log lines in the baseline, except fatal ones.
type quietLogger struct{}

func (quietLogger) Debug(...any)      {}
func (quietLogger) Info(...any)       {}
func (quietLogger) Warn(...any)       {}
func (quietLogger) Error(...any)      {}
func (quietLogger) Fatal(args ...any) { log.Fatal(args...) }

// sequentialResult is the sequential baseline: what the original Python library does,
// one user at a time.
type sequentialResult struct {
	Users int `json:"users"`
	// RateCap is the request cap in requests per second, 0 for none.
	RateCap float64       `json:"rateCap"`
	Wall    time.Duration `json:"wallNs"`
	PerUser time.Duration `json:"perUserNs"`
}

// runSequential resets users one at a time as the original Python library does: one
// generator call for one value, then the setter, which for SIP is the user-name lookup
// and the setter. When rateCap is above 0, requests are paced to rateCap per second.
func runSequential(ctx context.Context, sim *simServer, t results.CredentialType, users []string, rateCap float64) (sequentialResult, error) {
	opts := []odin.Option{odin.WithTimeout(30 * time.Second)}
	if rateCap > 0 {
		opts = append(opts, odin.WithLimiter(&pacer{interval: time.Duration(float64(time.Second) / rateCap)}))
	}
	client, err := odin.NewClient(sim.url, simUsername, simPassword, opts...)
	if err != nil {
		return sequentialResult{}, err
	}

	const serviceProvider, group = "sp1", "grp1"
	start := time.Now()
	for _, u := range users {
		if err := resetOne(ctx, client, t, serviceProvider, group, u); err != nil {
			return sequentialResult{}, fmt.Errorf("sequential baseline, user %s: %w", u, err)
		}
	}
	wall := time.Since(start)
	return sequentialResult{
		Users: len(users), RateCap: rateCap, Wall: wall,
		PerUser: wall / time.Duration(max(1, len(users))),
	}, nil
}

func resetOne(ctx context.Context, c *odin.Client, t results.CredentialType, sp, group, user string) error {
	switch t {
	case results.Web:
		values, err := c.GeneratePasswords(ctx, sp, group, 1)
		if err != nil {
			return err
		}
		return c.SetWebPassword(ctx, user, values[0])
	case results.Voicemail:
		values, err := c.GeneratePasscodes(ctx, sp, group, 1)
		if err != nil {
			return err
		}
		return c.SetPortalPasscode(ctx, user, values[0])
	case results.SIP:
		values, err := c.GenerateSIPPasswords(ctx, sp, group, 1)
		if err != nil {
			return err
		}
		userName, err := c.SIPUserName(ctx, user)
		if err != nil {
			return err
		}
		return c.SetSIPPassword(ctx, user, userName, values[0])
	}
	return fmt.Errorf("no sequential reset for credential type %q", t)
}

// pacer is an odin.Limiter that spaces requests interval apart in this process, the way
// the Python library throttled itself.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
}

func (p *pacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	slot := now
	if p.next.After(now) {
		slot = p.next
	}
	p.next = slot.Add(p.interval)
	p.mu.Unlock()

	if wait := slot.Sub(now); wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
	return nil
}
