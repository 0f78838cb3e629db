package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// pipelineOptions shape a pipeline.
type pipelineOptions struct {
	users       int
	workers     int
	concurrency int
	rate        float64
	// wrap, when set, wraps the simulator's handler, for a front that responds in
	// Odin's place.
	wrap func(next http.Handler) http.Handler
	// sweepInterval turns the stalled-job sweeper on; stallAfter is its StallAfter.
	sweepInterval time.Duration
	stallAfter    time.Duration
	// logs, when set, receives every log line of the workers, as JSON.
	logs *logLines
}

// pipeline is a fleet of in-process workers that reach the Odin simulator through a front
// server. Unlike testenv, a test can take the front down (connection refused) and bring
// it back on the same address with the simulator's state intact.
type pipeline struct {
	// redisURL names the pipeline's Redis database, for processes the test runs.
	redisURL  string
	inspector *asynq.Inspector
	sim       *odintest.Simulator
	front     *frontServer
	store     *results.Store
	client    *asynq.Client
	limiter   *ratelimit.Limiter
}

func startPipeline(t *testing.T, opts pipelineOptions) *pipeline {
	t.Helper()
	rd := testredis.New(t)
	sim, err := odintest.New(odintest.Config{Users: opts.users, Latency: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = sim
	if opts.wrap != nil {
		handler = opts.wrap(sim)
	}
	front := startFront(t, handler)

	key, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	store := results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(key)))
	client := asynq.NewClient(rd.Opt)
	t.Cleanup(func() { client.Close() })
	limiter, err := ratelimit.New(rd.Client, front.url, ratelimit.Limit{Rate: opts.rate, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}

	logger := zerolog.Nop()
	if opts.logs != nil {
		logger = zerolog.New(opts.logs).Level(zerolog.DebugLevel)
	}
	sweepInterval := opts.sweepInterval
	if sweepInterval == 0 {
		sweepInterval = -1
	}
	user, password := sim.Login()
	for range opts.workers {
		odinClient, err := odin.NewClient(front.url, user, password, odin.WithLimiter(limiter), odin.WithTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		w, err := worker.New(worker.Config{
			RedisConnOpt: rd.Opt, Redis: rd.Client, Store: store, Odin: odinClient, Limiter: limiter,
			Concurrency: opts.concurrency, ShutdownTimeout: 5 * time.Second,
			SweepInterval: sweepInterval, StallAfter: opts.stallAfter, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Shutdown)
	}
	inspector := asynq.NewInspector(rd.Opt)
	t.Cleanup(func() { inspector.Close() })
	return &pipeline{
		redisURL: rd.URL, inspector: inspector,
		sim: sim, front: front, store: store, client: client, limiter: limiter,
	}
}

// frontServer serves a handler on a fixed loopback address that can go down and come
// back.
type frontServer struct {
	t       *testing.T
	addr    string
	url     string
	handler http.Handler

	mu  sync.Mutex
	srv *http.Server
}

func startFront(t *testing.T, handler http.Handler) *frontServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &frontServer{t: t, addr: ln.Addr().String(), handler: handler}
	f.url = "http://" + f.addr + "/api/v2"
	f.serve(ln)
	t.Cleanup(f.down)
	return f
}

func (f *frontServer) serve(ln net.Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srv = &http.Server{Handler: f.handler, ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.t.Errorf("front server: %v", err)
		}
	}(f.srv)
}

// down closes the listener and every open connection, so new connections are refused.
func (f *frontServer) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
	}
}

// up listens on the same address again.
func (f *frontServer) up() {
	f.t.Helper()
	var ln net.Listener
	waitUntil(f.t, 5*time.Second, "the front address to be free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", f.addr)
		return err == nil
	})
	f.serve(ln)
}

// waitApplied waits until at least n users of the job are applied.
func waitApplied(t *testing.T, store *results.Store, jobID string, n int, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "users of "+jobID+" to be applied", func() bool {
		job, err := store.Job(context.Background(), jobID)
		return err == nil && job.Applied >= n
	})
}

// logLines collects log lines written by zerolog loggers; it is safe for concurrent use.
type logLines struct {
	mu    sync.Mutex
	lines [][]byte
}

// Write stores one line; zerolog writes each event in one call.
func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, bytes.Clone(p))
	return len(p), nil
}

// entries decodes the lines collected so far.
func (l *logLines) entries() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]map[string]any, 0, len(l.lines))
	for _, line := range l.lines {
		var entry map[string]any
		if json.Unmarshal(line, &entry) == nil {
			out = append(out, entry)
		}
	}
	return out
}
