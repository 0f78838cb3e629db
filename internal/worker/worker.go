// Package worker assembles one worker process: two asynq servers with the reset handlers
// and their retry policy (one for urgent jobs, one for the batch queues with strict
// priority), the asynq client the handlers enqueue with, and the sweeper. cmd/worker, the
// demo and the end-to-end tests all run this.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// Config is the settings of one worker process. Redis, RedisConnOpt, Store and Odin are
// required.
type Config struct {
	// RedisConnOpt connects asynq; Redis is a go-redis client of the same deployment.
	RedisConnOpt asynq.RedisConnOpt
	Redis        redis.UniversalClient
	Store        *results.Store
	Odin         *odin.Client
	// Limiter is the fleet-wide Odin limiter; the worker uses it to pause the fleet.
	// Nil disables fleet pauses (the Odin client may still have its own limiter).
	Limiter *ratelimit.Limiter
	// Pauser replaces Limiter as the pauser, for a wrapper that counts pauses.
	Pauser tasks.Pauser
	// Concurrency is how many tasks each of the two asynq servers runs at once: the
	// urgent server (reset-high) and the batch server (reset-default, reset-low).
	// Default 20.
	Concurrency int
	// ShutdownTimeout is how long a stopping worker lets running tasks finish before it
	// gives them back to the queue. It must exceed one Odin request timeout so an
	// in-flight PUT can finish and be recorded. Default 40 s.
	ShutdownTimeout time.Duration
	// ChunkSize is the fan-out's users per generator call. Default 200.
	ChunkSize int
	// LoginCooldown is how long the fleet stops calling Odin after a failed login.
	// Default 60 s.
	LoginCooldown time.Duration
	// SweepInterval is how often the sweeper looks for stalled jobs; 0 means one minute,
	// a negative value disables the sweeper.
	SweepInterval time.Duration
	// StallAfter is how long a running job may go without progress before the sweeper
	// inspects its pending users. Default 3 minutes.
	StallAfter time.Duration
	Observer   tasks.Observer
	Logger     zerolog.Logger
}

// TaskCheckInterval sets how long an asynq server of the worker waits after finding its
// queues empty: 50 to 150 ms, where asynq's default gives 0.5 to 1.5 s. An idle worker
// then starts an urgent job, or the first tasks of a fan-out, within 150 ms. Its polls
// cost Redis about 30 script calls per second.
const TaskCheckInterval = 100 * time.Millisecond

// Worker is one running worker process.
type Worker struct {
	cfg     Config
	servers []*asynq.Server // the urgent server, then the batch server
	client  *asynq.Client
	// inspector serves the handlers and the sweeper.
	inspector *asynq.Inspector
	handlers  *tasks.Handlers
	sweeper   *tasks.Sweeper
	cancel    context.CancelFunc
	done      chan struct{}
}

// New validates cfg and builds the worker; Start runs it.
func New(cfg Config) (*Worker, error) {
	if cfg.RedisConnOpt == nil || cfg.Redis == nil || cfg.Store == nil || cfg.Odin == nil {
		return nil, errors.New("worker: RedisConnOpt, Redis, Store and Odin are required")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 20
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 1000 {
		return nil, fmt.Errorf("invalid concurrency %d: use 1 to 1000", cfg.Concurrency)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 40 * time.Second
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}

	client := asynq.NewClient(cfg.RedisConnOpt)
	handlers := &tasks.Handlers{
		Store:         cfg.Store,
		Odin:          cfg.Odin,
		Client:        client,
		Observer:      cfg.Observer,
		ChunkSize:     cfg.ChunkSize,
		LoginCooldown: cfg.LoginCooldown,
	}
	switch {
	case cfg.Pauser != nil:
		handlers.Pauser = cfg.Pauser
	case cfg.Limiter != nil:
		handlers.Pauser = cfg.Limiter
	}

	// Urgent jobs get an asynq server of their own. A single server polling reset-high
	// first found it empty before almost every batch task: one more Redis round trip per
	// user, about 15% of the worker's CPU in the throughput benchmark. The urgent server
	// also keeps its own slots, so an urgent job starts while every batch slot waits for
	// the limiter, where its requests go first (see tasks.PriorityMiddleware).
	newServer := func(name string, queues map[string]int) *asynq.Server {
		return asynq.NewServer(cfg.RedisConnOpt, asynq.Config{
			Concurrency:     cfg.Concurrency,
			Queues:          queues,
			StrictPriority:  true,
			RetryDelayFunc:  tasks.RetryDelay,
			IsFailure:       tasks.IsFailure,
			ShutdownTimeout: cfg.ShutdownTimeout,
			ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
				handlers.HandleError(ctx, t, err)
			}),
			Logger:   asynqLogger{cfg.Logger.With().Str("component", "asynq").Str("server", name).Logger()},
			LogLevel: asynq.WarnLevel,
			// Scheduled and retrying tasks are moved to their queue within a second.
			DelayedTaskCheckInterval: time.Second,
			TaskCheckInterval:        TaskCheckInterval,
		})
	}
	servers := []*asynq.Server{
		newServer("urgent", tasks.UrgentQueues()),
		newServer("batch", tasks.BatchQueues()),
	}

	w := &Worker{cfg: cfg, servers: servers, client: client, handlers: handlers, inspector: asynq.NewInspector(cfg.RedisConnOpt)}
	handlers.Inspector = w.inspector
	if cfg.SweepInterval > 0 {
		w.sweeper = &tasks.Sweeper{
			Store:      cfg.Store,
			Client:     client,
			Redis:      cfg.Redis,
			Inspector:  w.inspector,
			StallAfter: cfg.StallAfter,
		}
		if cfg.Limiter != nil {
			w.sweeper.Paused = cfg.Limiter.Paused
		}
	}
	return w, nil
}

// Start runs the asynq servers and the sweeper ticker in the background.
func (w *Worker) Start() error {
	w.endLoginPause()
	mux := asynq.NewServeMux()
	w.handlers.Register(mux, w.cfg.Logger)
	if w.sweeper != nil {
		mux.HandleFunc(tasks.TypeSweep, w.sweeper.HandleSweep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handler := newWarmHandler(ctx, tasks.RejectUnknownTypes(mux, w.cfg.Logger), len(w.servers)*w.cfg.Concurrency)
	for i, server := range w.servers {
		if err := server.Start(handler); err != nil {
			for _, started := range w.servers[:i] {
				started.Shutdown()
			}
			cancel()
			return fmt.Errorf("start asynq server: %w", err)
		}
	}

	w.cancel = cancel
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		if w.sweeper != nil {
			w.sweeper.Tick(ctx, w.cfg.SweepInterval, w.cfg.Logger)
		}
	}()
	return nil
}

// endLoginPause ends the fleet's pause after failed Odin logins, if one is on, and runs
// the tasks that wait for its end, so that a worker restarted with fixed credentials
// resets users at once instead of after the pause. If this worker's credentials fail too, its first login pauses the fleet again
// until the end of the pause it ended, with one more failed attempt on the account.
func (w *Worker) endLoginPause() {
	if w.cfg.Limiter == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ended, err := w.cfg.Limiter.EndEscalatingPause(ctx)
	switch {
	case err != nil:
		w.cfg.Logger.Warn().Err(err).Msg("could not check for a pause after failed Odin logins; this worker waits for it like the others")
	case ended:
		insp := asynq.NewInspector(w.cfg.RedisConnOpt)
		defer insp.Close()
		moved, err := tasks.RunLoginWaits(insp)
		log := w.cfg.Logger.Info()
		if err != nil {
			log = w.cfg.Logger.Warn().Err(err)
		}
		log.Int("tasks_run_now", moved).Msg("ended the fleet's pause after failed Odin logins, and ran the tasks that waited for its end, so that this worker's credentials are tried now; if Odin rejects them too, the pause resumes until its planned end")
	}
}

// Shutdown stops taking tasks, waits up to ShutdownTimeout for running ones, and gives
// the rest back to their queues.
func (w *Worker) Shutdown() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
	// Both servers wait for their running tasks at the same time, so a shutdown still takes
	// at most ShutdownTimeout.
	var wg sync.WaitGroup
	for _, server := range w.servers {
		wg.Go(server.Shutdown)
	}
	wg.Wait()
	w.client.Close()
	w.inspector.Close()
}

// Client returns the asynq client of the worker, for submitting jobs in process.
func (w *Worker) Client() *asynq.Client { return w.client }

// asynqLogger sends asynq's own log lines to zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Fatal().Msg(fmt.Sprint(args...)) }

// LoginObserver returns an observer for odin.WithObserver that passes every exchange to
// next (nil for none). After each login Odin accepts, it starts the fleet's series of
// login pauses over, so the next failed login pauses the fleet for LoginCooldown again
// rather than for the doubled length the last outage reached.
func LoginObserver(limiter *ratelimit.Limiter, logger zerolog.Logger, next func(odin.Call)) func(odin.Call) {
	return func(c odin.Call) {
		if next != nil {
			next(c)
		}
		if limiter == nil || c.Endpoint != loginEndpoint || c.Status < 200 || c.Status > 299 {
			return
		}
		// The observer runs on the login's goroutine, which must not wait for Redis.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := limiter.ForgetEscalation(ctx); err != nil {
				logger.Warn().Err(err).Msg("could not reset the count of login pauses in a row after a login worked")
			}
		}()
	}
}

// loginEndpoint is the odin.Call endpoint of a login.
const loginEndpoint = "POST /auth/token"
