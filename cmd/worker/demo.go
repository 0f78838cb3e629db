package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/secrets"
	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// runDemo runs one reset of a demo group end to end inside this process: an embedded
// Redis (miniredis), the Odin simulator on a loopback port, a worker, and a submitted
// job. It prints the result JSON on stdout and checks every value against the simulator.
func runDemo(ctx context.Context, cfg Config, _ secrets.Getenv, stdout, stderr io.Writer) error {
	credential, err := results.ParseCredentialType(cfg.DemoType)
	if err != nil {
		return &usageError{err}
	}
	if cfg.LogLevel == "info" {
		cfg.LogLevel = "warn" // keep the demo's stderr to the story; --log-level debug shows everything
	}
	log := newLogger(cfg, stderr)
	fmt.Fprintf(stderr, "DEMO: this is a demonstration against an embedded Redis and an Odin SIMULATOR on loopback; no real Odin or BroadWorks system is contacted.\n")

	mr, err := miniredis.Run()
	if err != nil {
		return fmt.Errorf("start embedded Redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	redisOpt := asynq.RedisClientOpt{Addr: mr.Addr()}

	sim, err := odintest.NewServer(odintest.Config{Users: cfg.DemoUsers, Latency: 5 * time.Millisecond, LatencyJitter: 10 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("start Odin simulator: %w", err)
	}
	defer sim.Close()
	simUser, simPassword := sim.Login()
	fmt.Fprintf(stderr, "DEMO: Odin simulator at %s with %d users in service provider %q, group %q\n", sim.URL, cfg.DemoUsers, sim.ServiceProviderID(), sim.GroupID())

	key, err := results.NewRandomKey()
	if err != nil {
		return err
	}
	store := results.NewStore(rdb, results.WithSealer(results.NewKeyring(key)))
	limiter, err := ratelimit.New(rdb, sim.URL, ratelimit.Limit{Rate: 200, Burst: 1})
	if err != nil {
		return err
	}
	client, err := odin.NewClient(sim.URL, simUser, simPassword, odin.WithLimiter(limiter), odin.WithTimeout(5*time.Second),
		odin.WithObserver(worker.LoginObserver(limiter, log, nil)))
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Config{
		RedisConnOpt: redisOpt, Redis: rdb, Store: store, Odin: client, Limiter: limiter,
		Concurrency: 10, Logger: log, ShutdownTimeout: 5 * time.Second, SweepInterval: -1,
	})
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Shutdown()

	jobID := "demo-" + time.Now().UTC().Format("20060102-150405")
	sub, err := tasks.Submit(ctx, w.Client(), store, tasks.BulkResetPayload{
		JobID: jobID, Type: credential, ServiceProviderID: sim.ServiceProviderID(), GroupID: sim.GroupID(),
		Users: sim.Users(), RequestedBy: "demo",
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "DEMO: submitted job %s: reset the %s credential of %d users\n", jobID, credential, len(sim.Users()))

	job, err := waitForJob(ctx, store, sub.Job.ID, time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "DEMO: job %s %s: %d applied, %d failed, in %s\n", job.ID, job.State, job.Applied, job.Failed,
		job.CompletedAt.Sub(job.CreatedAt).Round(time.Millisecond))

	if err := store.WriteJSON(ctx, job.ID, stdout); err != nil {
		return err
	}
	return verifyDemo(ctx, store, sim, job, stderr)
}

func waitForJob(ctx context.Context, store *results.Store, jobID string, timeout time.Duration) (results.Job, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		job, err := store.Job(ctx, jobID)
		if err != nil && !errors.Is(err, results.ErrNotFound) {
			return results.Job{}, err
		}
		if err == nil && job.State.Finished() {
			return job, nil
		}
		select {
		case <-ctx.Done():
			return results.Job{}, ctx.Err()
		case <-deadline.C:
			return results.Job{}, fmt.Errorf("demo job %s did not finish within %s: %d applied, %d failed of %d", jobID, timeout, job.Applied, job.Failed, job.Total)
		case <-tick.C:
		}
	}
}

// verifyDemo compares every user's value in the record with what the simulator holds.
func verifyDemo(ctx context.Context, store *results.Store, sim *odintest.Server, job results.Job, stderr io.Writer) error {
	kind := map[results.CredentialType]odintest.Kind{
		results.SIP: odintest.KindSIP, results.Voicemail: odintest.KindVoicemail, results.Web: odintest.KindWeb,
	}[job.Type]
	checked, mismatched := 0, 0
	err := store.ForEachUser(ctx, job.ID, func(rec results.UserRecord) error {
		value, _, _ := sim.Credential(rec.UserID, kind)
		checked++
		if rec.State != results.UserApplied || value != rec.Secret {
			mismatched++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if mismatched > 0 {
		return fmt.Errorf("demo check failed: %d of %d users do not hold the value in the result record", mismatched, checked)
	}
	fmt.Fprintf(stderr, "DEMO: verified: all %d values in the result equal the simulator's\n", checked)
	return nil
}
