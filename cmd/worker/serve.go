package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/cmd/internal/redisdb"
	"github.com/odinreset/odinreset/internal/metrics"
	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/secrets"
	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// runWorker connects to Redis and Odin's limiter, starts the asynq server and the HTTP
// endpoints, and stops them when ctx ends.
func runWorker(ctx context.Context, cfg Config, getenv secrets.Getenv, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	setRedisLogger(log)

	sealer, err := secrets.Sealer(getenv, cfg.InsecurePlaintextResults)
	if err != nil {
		return &usageError{err}
	}
	if _, plain := sealer.(results.Plaintext); plain {
		log.Warn().Msg("RESULTS_KEY is not set and --insecure-plaintext-results is on: new passwords are stored UNENCRYPTED in Redis")
	}

	redisOpt, rdb, err := cfg.Redis.Open()
	if err != nil {
		return &usageError{err}
	}
	defer rdb.Close()
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = redisconn.Check(checkCtx, rdb)
	cancel()
	if redisdb.IsOutOfRange(err) {
		return redisdb.OutOfRangeError(ctx, cfg.Redis, redisdb.Setting(cfg.Redis, cfg.redisURLFromFlag))
	}
	if err != nil {
		return fmt.Errorf("Redis %s: %w", cfg.Redis.Describe(), err)
	}
	checkCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
	warnings, err := redisconn.PersistenceWarnings(checkCtx, rdb)
	cancel()
	for _, w := range warnings {
		log.Warn().Msg(w)
	}
	if err != nil {
		log.Warn().Err(err).Msg("could not check Redis persistence")
	}
	checkCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
	err = results.NewStore(rdb, results.WithSealer(sealer)).CheckSealing(checkCtx)
	cancel()
	var mismatch *results.SealingMismatchError
	if errors.As(err, &mismatch) {
		return &usageError{err}
	}
	if err != nil {
		return fmt.Errorf("Redis %s: %w", cfg.Redis.Describe(), err)
	}

	inspector := asynq.NewInspector(redisOpt)
	defer inspector.Close()
	m := metrics.New(inspector)
	return serve(ctx, cfg, log, redisOpt, rdb, sealer, m, inspector)
}

// serve runs a worker on an open Redis connection until ctx ends. The HTTP endpoint tests
// call it too.
func serve(ctx context.Context, cfg Config, log zerolog.Logger, redisOpt asynq.RedisConnOpt, rdb redis.UniversalClient,
	sealer results.Sealer, m *metrics.Metrics, inspector *asynq.Inspector) error {
	limiter, err := ratelimit.New(rdb, cfg.OdinBaseURL, ratelimit.Limit{Rate: cfg.RateLimit, Burst: cfg.RateBurst})
	if err != nil {
		return &usageError{fmt.Errorf("rate limit: %w", err)}
	}
	fleet := m.WrapLimiter(limiter)
	announce := func() {
		if previous, differs, err := limiter.Announce(ctx); err != nil {
			log.Warn().Err(err).Msg("could not compare the rate limit with the other workers'")
		} else if differs {
			log.Warn().Float64("rate_limit", cfg.RateLimit).Int("rate_burst", cfg.RateBurst).
				Float64("other_rate_limit", previous.Rate).Int("other_rate_burst", previous.Burst).
				Msg("another worker of this Odin announced a different ODIN_RATE_LIMIT or ODIN_RATE_BURST within the last 3 minutes: workers share one schedule, so the fleet keeps neither rate; give every worker the same values (while a change rolls out, this lasts until every worker runs the new ones)")
		}
	}
	announce()
	go func() {
		ticker := time.NewTicker(ratelimit.AnnounceInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				announce()
			}
		}
	}()
	client, err := odin.NewClient(cfg.OdinBaseURL, cfg.OdinUsername, cfg.odinPassword,
		odin.WithLimiter(fleet), odin.WithTimeout(cfg.OdinTimeout),
		odin.WithObserver(worker.LoginObserver(limiter, log, m.ObserveOdin)))
	if err != nil {
		return &usageError{fmt.Errorf("Odin client: %w", err)}
	}
	store := results.NewStore(rdb, results.WithSealer(sealer))
	if err := m.WatchFleet(store, limiter); err != nil {
		return err
	}

	w, err := worker.New(worker.Config{
		RedisConnOpt: redisOpt, Redis: rdb, Store: store, Odin: client, Limiter: limiter,
		Concurrency: cfg.Concurrency, ShutdownTimeout: cfg.ShutdownTimeout,
		LoginCooldown: cfg.LoginCooldown, Observer: m, Logger: log, Pauser: fleet,
		SweepInterval: cfg.SweepInterval, StallAfter: cfg.StallAfter,
	})
	if err != nil {
		return &usageError{err}
	}
	if err := w.Start(); err != nil {
		return err
	}
	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	if cfg.HTTPAddr == "" {
		log.Info().Msg("HTTP server off: no /healthz, /readyz, /metrics or dashboard")
	} else {
		httpSrv, err = startHTTP(cfg, log, rdb, redisOpt, m, httpErr)
		if err != nil {
			w.Shutdown()
			return err
		}
	}

	log.Info().
		Str("redis", cfg.Redis.Describe()).Str("odin", client.BaseURL()).
		Float64("rate_limit", cfg.RateLimit).Int("rate_burst", cfg.RateBurst).
		Int("concurrency", cfg.Concurrency).
		Dur("sweep_interval_ms", cfg.SweepInterval).Dur("stall_after_ms", cfg.StallAfter).
		Str("results_key", sealingName(sealer)).Msg("worker started")

	select {
	case <-ctx.Done():
		log.Info().Dur("shutdown_timeout_ms", cfg.ShutdownTimeout).Msg("stopping: finishing running tasks")
	case err = <-httpErr:
		log.Error().Err(err).Msg("HTTP server failed; stopping")
	}
	if httpSrv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(shutdownCtx)
		cancel()
	}
	w.Shutdown()
	log.Info().Msg("worker stopped")
	return err
}

// sealingName names what the worker seals new values with, for its start-up line: the
// results key's ID (never the key), or "none" when it stores them unencrypted.
func sealingName(sealer results.Sealer) string {
	if kr, ok := sealer.(*results.Keyring); ok {
		return "key ID " + kr.CurrentID()
	}
	return "none"
}

// readyTimeout is how long /readyz waits for Redis's reply to a PING.
const readyTimeout = 2 * time.Second

// startHTTP serves /healthz, /readyz, /metrics and, with credentials, /monitoring.
func startHTTP(cfg Config, log zerolog.Logger, rdb redis.UniversalClient, redisOpt asynq.RedisConnOpt, m *metrics.Metrics, errc chan<- error) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		// go-redis bounds a command by its read and pool timeouts, not by the context's
		// deadline, so a Redis that accepts connections but never replies would keep the
		// probe waiting about 5 s. The PING runs on its own and the probe stops waiting.
		pong := make(chan error, 1)
		go func() { pong <- rdb.Ping(ctx).Err() }()
		var err error
		select {
		case err = <-pong:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			http.Error(w, "Redis unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// ContinueOnError keeps the Odin and reset metrics scrapeable while Redis, which the
	// queue and job gauges read, is unreachable.
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      scrapeErrorLog{log},
	}))

	var mon *asynqmon.HTTPHandler
	if cfg.MonitoringUser != "" {
		mon = asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: redisOpt, ReadOnly: !cfg.MonitoringWritable})
		mux.Handle("/monitoring/", basicAuth(cfg.MonitoringUser, cfg.monitoringPassword, mon))
		log.Info().Bool("writable", cfg.MonitoringWritable).Str("path", "/monitoring/").Msg("asynqmon dashboard on, behind basic authentication")
	} else {
		log.Info().Msg("asynqmon dashboard off: set MONITORING_USER and MONITORING_PASSWORD to turn it on")
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		if mon != nil {
			mon.Close()
		}
		return nil, fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	// Addr is the bound address, so a port of 0 in HTTP_ADDR reads back as the real one.
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if mon != nil {
		srv.RegisterOnShutdown(func() { mon.Close() })
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("HTTP endpoints listening: /healthz /readyz /metrics")
	return srv, nil
}

// basicAuth protects next with one user and password, compared in constant time.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPass := sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPass := sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="odinreset monitoring", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// scrapeErrorLog logs the errors promhttp meets while it gathers metrics, such as a Redis
// read that failed.
type scrapeErrorLog struct{ log zerolog.Logger }

func (l scrapeErrorLog) Println(v ...any) {
	l.log.Warn().Str("component", "metrics").Msg(strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
