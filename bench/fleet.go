package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// fleet is the set of workers of one batch: cmd/worker processes, or, when profiling,
// in-process workers built the way cmd/worker builds them.
type fleet struct {
	procs []*proc
	// profile is the CPU profile file of in-process workers, "" for processes.
	profile string
	stop    func()
}

func (h *harness) startFleet(ctx context.Context, dir string, n int, cfg workerConfig, rs *redisServer) (*fleet, error) {
	if h.opts.profileDir == "" {
		procs, err := startWorkers(ctx, filepath.Join(h.binDir, "worker"), dir, n, cfg, rs)
		if err != nil {
			return nil, err
		}
		return &fleet{procs: procs, stop: func() { stopAll(procs) }}, nil
	}
	return startInProcessFleet(h.opts.profileDir, dir, n, cfg, rs)
}

// startInProcessFleet runs n workers inside the bench process and records a CPU profile
// of the process until the fleet stops. Each worker has its own Redis and Odin clients,
// as a separate process would. The Prometheus metrics of cmd/worker are left out.
func startInProcessFleet(profileDir, dir string, n int, cfg workerConfig, rs *redisServer) (*fleet, error) {
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		return nil, err
	}
	profile := filepath.Join(profileDir, filepath.Base(dir)+".cpu.pprof")
	f, err := os.Create(profile)
	if err != nil {
		return nil, err
	}
	key, err := results.ParseKey(cfg.resultsKey)
	if err != nil {
		f.Close()
		return nil, err
	}
	keyring := results.NewKeyring(key)

	var workers []*worker.Worker
	var clients []redis.UniversalClient
	stop := func() {
		for _, w := range workers {
			w.Shutdown()
		}
		for _, c := range clients {
			c.Close()
		}
	}
	for range n {
		// The connections of cmd/worker, as redisconn builds them.
		redisOpt, rdb, err := redisconn.Config{URL: "redis://" + rs.addr}.Open()
		if err != nil {
			stop()
			f.Close()
			return nil, err
		}
		clients = append(clients, rdb)
		limiter, err := ratelimit.New(rdb, cfg.odinURL, ratelimit.Limit{Rate: cfg.rateLimit, Burst: 1})
		if err != nil {
			stop()
			f.Close()
			return nil, err
		}
		client, err := odin.NewClient(cfg.odinURL, simUsername, simPassword, odin.WithLimiter(limiter), odin.WithTimeout(30*time.Second))
		if err != nil {
			stop()
			f.Close()
			return nil, err
		}
		w, err := worker.New(worker.Config{
			RedisConnOpt: redisOpt, Redis: rdb, Store: results.NewStore(rdb, results.WithSealer(keyring)),
			Odin: client, Limiter: limiter, Concurrency: cfg.concurrency, Logger: zerolog.Nop(),
			ShutdownTimeout: 40 * time.Second,
		})
		if err == nil {
			err = w.Start()
		}
		if err != nil {
			stop()
			f.Close()
			return nil, fmt.Errorf("in-process worker: %w", err)
		}
		workers = append(workers, w)
	}

	if err := pprof.StartCPUProfile(f); err != nil {
		stop()
		f.Close()
		return nil, err
	}
	return &fleet{profile: profile, stop: func() {
		pprof.StopCPUProfile()
		f.Close()
		stop()
	}}, nil
}
