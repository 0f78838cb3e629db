// Package testenv starts a whole reset pipeline for tests: a Redis database (real or
// miniredis, from testredis), the Odin simulator on loopback, the fleet-wide limiter, the
// results store with an encryption key, and one or more in-process workers.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
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
	"github.com/odinreset/odinreset/tasks"
)

// Options shape an Env; the zero value gives 20 users, no faults, no rate limit.
type Options struct {
	Sim         odintest.Config
	Workers     int           // default 1
	Concurrency int           // per worker, default 10
	RateLimit   float64       // fleet-wide Odin requests/s; default 1000
	RateBurst   int           // default 1
	OdinTimeout time.Duration // default 2 s
	ChunkSize   int
	// LogWriter receives every worker log line (JSON) when set.
	LogWriter     func(line []byte)
	LoginCooldown time.Duration
	// MaxWait is the limiter's longest wait in a task; default ratelimit.DefaultMaxWait.
	MaxWait       time.Duration
	SweepInterval time.Duration
	StallAfter    time.Duration
}

// Env is a running pipeline.
type Env struct {
	T       testing.TB
	Redis   *testredis.Redis
	Sim     *odintest.Server
	Store   *results.Store
	Keyring *results.Keyring
	Client  *asynq.Client
	Limiter *ratelimit.Limiter
	Workers []*worker.Worker
	opts    Options
}

// Start builds and starts the pipeline; the test's cleanup stops it.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Sim.Users == 0 && len(opts.Sim.ExtraUsers) == 0 {
		opts.Sim.Users = 20
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 10
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 1000
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = 1
	}
	if opts.OdinTimeout == 0 {
		opts.OdinTimeout = 2 * time.Second
	}
	if opts.Sim.Faults.HangDuration == 0 {
		opts.Sim.Faults.HangDuration = 3 * opts.OdinTimeout
	}

	rd := testredis.New(t)
	sim, err := odintest.NewServer(opts.Sim)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(sim.Close)

	key, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	keyring := results.NewKeyring(key)
	env := &Env{
		T: t, Redis: rd, Sim: sim, Keyring: keyring, opts: opts,
		Store:  results.NewStore(rd.Client, results.WithSealer(keyring)),
		Client: asynq.NewClient(rd.Opt),
	}
	t.Cleanup(func() { env.Client.Close() })

	var limiterOpts []ratelimit.Option
	if opts.MaxWait > 0 {
		limiterOpts = append(limiterOpts, ratelimit.WithMaxWait(opts.MaxWait))
	}
	env.Limiter, err = ratelimit.New(rd.Client, sim.URL, ratelimit.Limit{Rate: opts.RateLimit, Burst: opts.RateBurst}, limiterOpts...)
	if err != nil {
		t.Fatalf("limiter: %v", err)
	}
	for i := 0; i < opts.Workers; i++ {
		env.AddWorker()
	}
	return env
}

// AddWorker starts one more in-process worker with its own Odin client, as another
// process would have.
func (e *Env) AddWorker() *worker.Worker {
	e.T.Helper()
	user, pass := e.Sim.Login()
	logger := zerolog.Nop()
	if e.opts.LogWriter != nil {
		logger = zerolog.New(lineWriter(e.opts.LogWriter)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	} else if os.Getenv("ODINRESET_TEST_LOG") != "" {
		logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	client, err := odin.NewClient(e.Sim.URL, user, pass, odin.WithLimiter(e.Limiter), odin.WithTimeout(e.opts.OdinTimeout),
		odin.WithObserver(worker.LoginObserver(e.Limiter, logger, nil)))
	if err != nil {
		e.T.Fatalf("odin client: %v", err)
	}
	w, err := worker.New(worker.Config{
		RedisConnOpt: e.Redis.Opt, Redis: e.Redis.Client, Store: e.Store, Odin: client, Limiter: e.Limiter,
		Concurrency: e.opts.Concurrency, ChunkSize: e.opts.ChunkSize, Logger: logger,
		ShutdownTimeout: 5 * time.Second, LoginCooldown: e.opts.LoginCooldown,
		SweepInterval: e.opts.SweepInterval, StallAfter: e.opts.StallAfter,
	})
	if err != nil {
		e.T.Fatalf("worker: %v", err)
	}
	if err := w.Start(); err != nil {
		e.T.Fatalf("start worker: %v", err)
	}
	e.Workers = append(e.Workers, w)
	e.T.Cleanup(w.Shutdown)
	return w
}

type lineWriter func([]byte)

func (f lineWriter) Write(p []byte) (int, error) {
	f(append([]byte(nil), p...))
	return len(p), nil
}

// Submit submits a job and fails the test on error.
func (e *Env) Submit(p tasks.BulkResetPayload, opts ...asynq.Option) tasks.Submission {
	e.T.Helper()
	if p.ServiceProviderID == "" {
		p.ServiceProviderID = e.Sim.ServiceProviderID()
	}
	if p.GroupID == "" {
		p.GroupID = e.Sim.GroupID()
	}
	sub, err := tasks.Submit(context.Background(), e.Client, e.Store, p, opts...)
	if err != nil {
		e.T.Fatalf("submit job %s: %v", p.JobID, err)
	}
	return sub
}

// Wait blocks until the job is finished and returns it, failing the test after timeout.
func (e *Env) Wait(jobID string, timeout time.Duration) results.Job {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	var job results.Job
	for time.Now().Before(deadline) {
		var err error
		job, err = e.Store.Job(context.Background(), jobID)
		if err == nil && job.State.Finished() {
			return job
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.T.Fatalf("job %s not finished after %s: state %s, %d applied, %d failed of %d", jobID, timeout, job.State, job.Applied, job.Failed, job.Total)
	return job
}

// Rows returns the exported JSON rows of a job.
func (e *Env) Rows(jobID string) []results.Row {
	e.T.Helper()
	var buf strings.Builder
	if err := e.Store.WriteJSON(context.Background(), jobID, &buf); err != nil {
		e.T.Fatalf("export job %s: %v", jobID, err)
	}
	var rows []results.Row
	if err := json.Unmarshal([]byte(buf.String()), &rows); err != nil {
		e.T.Fatalf("exported JSON of job %s does not parse: %v\n%s", jobID, err, buf.String())
	}
	return rows
}

// Mismatches compares every applied user's value in the record with the simulator's
// current value and returns one line per difference.
func (e *Env) Mismatches(jobID string) []string {
	e.T.Helper()
	ctx := context.Background()
	job, err := e.Store.Job(ctx, jobID)
	if err != nil {
		e.T.Fatalf("read job %s: %v", jobID, err)
	}
	kind := SimKind(job.Type)
	var out []string
	err = e.Store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		value, _, ok := e.Sim.Credential(rec.UserID, kind)
		switch {
		case rec.State == results.UserApplied && (!ok || value != rec.Secret):
			out = append(out, fmt.Sprintf("%s: record holds an applied value that differs from the simulator's (set on sim: %v)", rec.UserID, ok))
		case rec.State != results.UserApplied && ok && value != "" && value != rec.Secret:
			out = append(out, fmt.Sprintf("%s: %s in the record but the simulator holds a value the record does not", rec.UserID, rec.State))
		}
		return nil
	})
	if err != nil {
		e.T.Fatalf("read users of job %s: %v", jobID, err)
	}
	return out
}

// SimKind maps a credential type to the simulator's kind.
func SimKind(t results.CredentialType) odintest.Kind {
	switch t {
	case results.SIP:
		return odintest.KindSIP
	case results.Voicemail:
		return odintest.KindVoicemail
	}
	return odintest.KindWeb
}
