// Package metrics defines the worker's Prometheus metrics: Odin requests by endpoint and
// status with their latency, resets by type and outcome, fleet-limiter waits and pauses,
// jobs by state, and asynq's queue metrics under asynq's own names. No label ever
// carries a user ID or a secret.
package metrics

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// Metrics holds the collectors of one worker process.
type Metrics struct {
	Registry *prometheus.Registry

	odinRequests *prometheus.CounterVec
	odinLatency  *prometheus.HistogramVec
	resets       *prometheus.CounterVec
	jobs         *prometheus.CounterVec
	limiterWaits *prometheus.HistogramVec
	limiterDelay *prometheus.CounterVec
	pauses       prometheus.Counter
}

// New registers every collector on a fresh registry. inspector, when not nil, adds
// asynq's queue metrics (asynq_queue_size, asynq_tasks_enqueued_total and the others of
// asynq's own collector), read from Redis at each scrape.
func New(inspector *asynq.Inspector) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		odinRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "odinreset_odin_requests_total",
			Help: "Odin API requests by endpoint and HTTP status (0 when no response arrived).",
		}, []string{"endpoint", "status"}),
		odinLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "odinreset_odin_request_duration_seconds",
			Help:    "Latency of Odin API requests by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"endpoint"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "odinreset_resets_total",
			Help: "Users settled by credential type and outcome (applied or failed).",
		}, []string{"type", "outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "odinreset_jobs_finished_total",
			Help: "Jobs finished by this worker, by final state and credential type.",
		}, []string{"state", "type"}),
		limiterWaits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "odinreset_rate_limit_wait_seconds",
			Help:    "Time spent waiting for the fleet-wide Odin rate limiter, by result (sent, delayed, error).",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
		}, []string{"result"}),
		limiterDelay: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "odinreset_rate_limit_delays_total",
			Help: "Odin requests postponed by the fleet limiter, by reason (rate limit or a fleet pause).",
		}, []string{"reason"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "odinreset_fleet_pauses_total",
			Help: "Fleet-wide pauses this worker started after Odin answered 429 or a login failed.",
		}),
	}
	m.Registry.MustRegister(m.odinRequests, m.odinLatency, m.resets, m.jobs, m.limiterWaits, m.limiterDelay, m.pauses,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if inspector != nil {
		m.Registry.MustRegister(&queueCollector{inspector: inspector})
	}

	// Create the series with known labels at 0, so rate() and alerts see them before the
	// first event instead of a missing series.
	for _, t := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
		for _, outcome := range []results.UserState{results.UserApplied, results.UserFailed} {
			m.resets.WithLabelValues(string(t), string(outcome))
		}
	}
	for _, reason := range []string{"rate_limit", "pause"} {
		m.limiterDelay.WithLabelValues(reason)
	}
	return m
}

// ObserveOdin is an odin.WithObserver callback.
func (m *Metrics) ObserveOdin(c odin.Call) {
	m.odinRequests.WithLabelValues(c.Endpoint, strconv.Itoa(c.Status)).Inc()
	m.odinLatency.WithLabelValues(c.Endpoint).Observe(c.Duration.Seconds())
}

// UserSettled implements tasks.Observer.
func (m *Metrics) UserSettled(t results.CredentialType, state results.UserState) {
	m.resets.WithLabelValues(string(t), string(state)).Inc()
}

// JobFinished implements tasks.Observer.
func (m *Metrics) JobFinished(job results.Job) {
	m.jobs.WithLabelValues(string(job.State), string(job.Type)).Inc()
}

// Limiter wraps the fleet limiter to measure waits and count pauses; it implements
// odin.Limiter and tasks.Pauser.
type Limiter struct {
	*ratelimit.Limiter
	m *Metrics
}

// WrapLimiter returns l with metrics.
func (m *Metrics) WrapLimiter(l *ratelimit.Limiter) *Limiter { return &Limiter{Limiter: l, m: m} }

// Wait implements odin.Limiter.
func (l *Limiter) Wait(ctx context.Context) error {
	start := time.Now()
	err := l.Limiter.Wait(ctx)
	result := "sent"
	var delay *ratelimit.DelayError
	switch {
	case errors.As(err, &delay):
		result = "delayed"
		reason := "pause"
		if delay.Reason == ratelimit.ReasonRateLimit {
			reason = "rate_limit"
		}
		l.m.limiterDelay.WithLabelValues(reason).Inc()
	case err != nil:
		result = "error"
	}
	l.m.limiterWaits.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return err
}

// Pause implements tasks.Pauser.
func (l *Limiter) Pause(ctx context.Context, d time.Duration, reason string) error {
	l.m.pauses.Inc()
	return l.Limiter.Pause(ctx, d, reason)
}

// PauseEscalating implements tasks.Pauser.
func (l *Limiter) PauseEscalating(ctx context.Context, first, longest time.Duration, reason string) (time.Duration, int, error) {
	l.m.pauses.Inc()
	return l.Limiter.PauseEscalating(ctx, first, longest, reason)
}
