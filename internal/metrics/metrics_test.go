package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/odinreset/odinreset/internal/metrics"
	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

func TestFleetGauges(t *testing.T) {
	ctx := context.Background()
	rd := testredis.New(t)
	store := results.NewStore(rd.Client, results.WithSealer(results.Plaintext{}))
	limiter, err := ratelimit.New(rd.Client, "http://odin.test/api/v2", ratelimit.Limit{Rate: 5, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}

	// One queued job, one running job with three pending users that waits for a login,
	// and one cancelled job.
	for _, job := range []results.Job{
		{ID: "queued-1", Type: results.SIP, ServiceProviderID: "sp", GroupID: "g"},
		{ID: "running-1", Type: results.Web, ServiceProviderID: "sp", GroupID: "g"},
		{ID: "cancelled-1", Type: results.Voicemail, ServiceProviderID: "sp", GroupID: "g"},
	} {
		if _, _, err := store.CreateJob(ctx, job); err != nil {
			t.Fatalf("create job %s: %v", job.ID, err)
		}
	}
	if _, err := store.LoadUsers(ctx, "running-1", []string{"a@x", "b@x", "c@x"}); err != nil {
		t.Fatal(err)
	}
	if err := store.SetReason(ctx, "running-1", "Odin login failed: 401"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Cancel(ctx, "cancelled-1"); err != nil {
		t.Fatal(err)
	}
	if err := limiter.Pause(ctx, time.Hour, "test pause"); err != nil {
		t.Fatal(err)
	}

	m := metrics.New(nil)
	if err := m.WatchFleet(store, limiter); err != nil {
		t.Fatalf("WatchFleet: %v", err)
	}

	want := `
# HELP odinreset_jobs Jobs in the results record by state (queued, running, completed, cancelled) and credential type, read at scrape time.
# TYPE odinreset_jobs gauge
odinreset_jobs{state="cancelled",type="sip"} 0
odinreset_jobs{state="cancelled",type="voicemail"} 1
odinreset_jobs{state="cancelled",type="web"} 0
odinreset_jobs{state="completed",type="sip"} 0
odinreset_jobs{state="completed",type="voicemail"} 0
odinreset_jobs{state="completed",type="web"} 0
odinreset_jobs{state="queued",type="sip"} 1
odinreset_jobs{state="queued",type="voicemail"} 0
odinreset_jobs{state="queued",type="web"} 0
odinreset_jobs{state="running",type="sip"} 0
odinreset_jobs{state="running",type="voicemail"} 0
odinreset_jobs{state="running",type="web"} 1
# HELP odinreset_jobs_waiting Running jobs that record a reason they cannot go on, such as a failed Odin login.
# TYPE odinreset_jobs_waiting gauge
odinreset_jobs_waiting 1
# HELP odinreset_job_users_pending Users not yet applied or failed, summed over queued and running jobs.
# TYPE odinreset_job_users_pending gauge
odinreset_job_users_pending 3
`
	got := gatherText(t, m.Registry, "odinreset_jobs", "odinreset_jobs_waiting", "odinreset_job_users_pending")
	if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), got); diff != "" {
		t.Errorf("job gauges (-want +got):\n%s", diff)
	}

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	remaining := -1.0
	for _, f := range families {
		if f.GetName() == "odinreset_fleet_pause_remaining_seconds" {
			remaining = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if remaining < 3500 || remaining > 3600 {
		t.Errorf("odinreset_fleet_pause_remaining_seconds = %g, want about 3600 after a one-hour pause", remaining)
	}

	if err := m.WatchFleet(store, limiter); err == nil {
		t.Errorf("a second WatchFleet returned nil, want a duplicate-registration error")
	}
}

func TestQueueMetricsUseAsynqNames(t *testing.T) {
	rd := testredis.New(t)
	client := asynq.NewClient(rd.Opt)
	defer client.Close()
	for range 2 {
		if _, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("q1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("q1"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	inspector := asynq.NewInspector(rd.Opt)
	defer inspector.Close()
	m := metrics.New(inspector)

	want := `
# HELP asynq_queue_size Number of tasks in a queue
# TYPE asynq_queue_size gauge
asynq_queue_size{queue="q1"} 3
# HELP asynq_tasks_enqueued_total Number of tasks enqueued; broken down by queue and state.
# TYPE asynq_tasks_enqueued_total gauge
asynq_tasks_enqueued_total{queue="q1",state="active"} 0
asynq_tasks_enqueued_total{queue="q1",state="archived"} 0
asynq_tasks_enqueued_total{queue="q1",state="completed"} 0
asynq_tasks_enqueued_total{queue="q1",state="pending"} 2
asynq_tasks_enqueued_total{queue="q1",state="retry"} 0
asynq_tasks_enqueued_total{queue="q1",state="scheduled"} 1
# HELP asynq_queue_paused_total Number of queues paused
# TYPE asynq_queue_paused_total gauge
asynq_queue_paused_total{queue="q1"} 0
# HELP asynq_tasks_processed_total Number of tasks processed (both succeeded and failed); broken down by queue
# TYPE asynq_tasks_processed_total counter
asynq_tasks_processed_total{queue="q1"} 0
`
	got := gatherText(t, m.Registry, "asynq_queue_size", "asynq_tasks_enqueued_total", "asynq_queue_paused_total", "asynq_tasks_processed_total")
	if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), got); diff != "" {
		t.Errorf("queue metrics (-want +got):\n%s", diff)
	}
	for _, name := range []string{"asynq_queue_latency_seconds", "asynq_queue_memory_usage_approx_bytes", "asynq_tasks_failed_total"} {
		if got := gatherText(t, m.Registry, name); !strings.Contains(got, name+`{queue="q1"}`) {
			t.Errorf("%s has no series for queue q1:\n%s", name, got)
		}
	}
}

// gatherText returns the named metric families in the Prometheus text format, in the
// order of names.
func gatherText(t *testing.T, g prometheus.Gatherer, names ...string) string {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out strings.Builder
	for _, name := range names {
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			if _, err := expfmt.MetricFamilyToText(&out, f); err != nil {
				t.Fatalf("format %s: %v", name, err)
			}
		}
	}
	return out.String()
}
