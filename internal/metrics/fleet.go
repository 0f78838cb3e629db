package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// JobScanLimit is how many of the newest jobs in the results record the job gauges read
// at each scrape.
//
// NOTE: jobs older than the newest JobScanLimit are left out of the job gauges. Records
// expire after their TTL (72 hours by default), so only a fleet that submits more jobs
// than this within one TTL under-reports.
const JobScanLimit = 1000

// scrapeTimeout bounds the Redis reads of one scrape; Prometheus' own default scrape
// timeout is 10 s.
const scrapeTimeout = 5 * time.Second

var (
	jobsDesc = prometheus.NewDesc("odinreset_jobs",
		"Jobs in the results record by state (queued, running, completed, cancelled) and credential type, read at scrape time.",
		[]string{"state", "type"}, nil)
	jobsWaitingDesc = prometheus.NewDesc("odinreset_jobs_waiting",
		"Running jobs that record a reason they cannot go on, such as a failed Odin login.", nil, nil)
	jobUsersPendingDesc = prometheus.NewDesc("odinreset_job_users_pending",
		"Users not yet applied or failed, summed over queued and running jobs.", nil, nil)
	pauseRemainingDesc = prometheus.NewDesc("odinreset_fleet_pause_remaining_seconds",
		"Time left of the fleet-wide pause of Odin requests (after a 429 or a failed login); 0 when none is on.", nil, nil)
)

// fleetCollector reads fleet-wide state from Redis at scrape time: the jobs in the
// results record and the fleet pause. Every worker of a fleet reports the same values.
type fleetCollector struct {
	store   *results.Store
	limiter *ratelimit.Limiter
}

// WatchFleet adds the gauges that describe the whole fleet: jobs by state, users still
// pending, and the remaining fleet pause. Either argument may be nil to leave its gauges
// out. Call it at most once per Metrics: a second call returns the registry's
// duplicate-registration error.
func (m *Metrics) WatchFleet(store *results.Store, limiter *ratelimit.Limiter) error {
	if err := m.Registry.Register(&fleetCollector{store: store, limiter: limiter}); err != nil {
		return fmt.Errorf("register fleet gauges: %w", err)
	}
	return nil
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.store != nil {
		ch <- jobsDesc
		ch <- jobsWaitingDesc
		ch <- jobUsersPendingDesc
	}
	if c.limiter != nil {
		ch <- pauseRemainingDesc
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	// prometheus.Collector passes no context, so each scrape gets its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()

	if c.store != nil {
		c.collectJobs(ctx, ch)
	}
	if c.limiter != nil {
		remaining, _, err := c.limiter.Paused(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(pauseRemainingDesc, err)
		} else {
			ch <- prometheus.MustNewConstMetric(pauseRemainingDesc, prometheus.GaugeValue, remaining.Seconds())
		}
	}
}

func (c *fleetCollector) collectJobs(ctx context.Context, ch chan<- prometheus.Metric) {
	jobs, err := c.store.Jobs(ctx, JobScanLimit)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(jobsDesc, err)
		return
	}

	type key struct {
		state results.JobState
		kind  results.CredentialType
	}
	counts := map[key]int{}
	// Report every state of every type, so a state that drops to zero reads 0 instead of
	// disappearing from the series.
	for _, state := range []results.JobState{results.JobQueued, results.JobRunning, results.JobCompleted, results.JobCancelled} {
		for _, kind := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
			counts[key{state, kind}] = 0
		}
	}
	waiting, pendingUsers := 0, 0
	for _, job := range jobs {
		counts[key{job.State, job.Type}]++
		if job.State.Finished() {
			continue
		}
		if job.State == results.JobRunning && job.Reason != "" {
			waiting++
		}
		// Total is 0 until the fan-out has loaded the user list.
		pendingUsers += max(job.Total-job.Applied-job.Failed, 0)
	}

	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), string(k.state), string(k.kind))
	}
	ch <- prometheus.MustNewConstMetric(jobsWaitingDesc, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(jobUsersPendingDesc, prometheus.GaugeValue, float64(pendingUsers))
}
