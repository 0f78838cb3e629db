package metrics

import (
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// The queue metrics carry the names, labels and help texts of asynq's own collector
// (module github.com/hibiken/asynq/x, package metrics), so asynqmon's metrics view and
// dashboards written for asynq read them unchanged. That module is not a dependency of
// this one, so the collector is written here.
var (
	queueTasksDesc = prometheus.NewDesc("asynq_tasks_enqueued_total",
		"Number of tasks enqueued; broken down by queue and state.", []string{"queue", "state"}, nil)
	queueSizeDesc = prometheus.NewDesc("asynq_queue_size",
		"Number of tasks in a queue", []string{"queue"}, nil)
	queueLatencyDesc = prometheus.NewDesc("asynq_queue_latency_seconds",
		"Number of seconds the oldest pending task is waiting in pending state to be processed.", []string{"queue"}, nil)
	queueMemoryDesc = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
		"Number of memory used by a given queue (approximated number by sampling).", []string{"queue"}, nil)
	queueProcessedDesc = prometheus.NewDesc("asynq_tasks_processed_total",
		"Number of tasks processed (both succeeded and failed); broken down by queue", []string{"queue"}, nil)
	queueFailedDesc = prometheus.NewDesc("asynq_tasks_failed_total",
		"Number of tasks failed; broken down by queue", []string{"queue"}, nil)
	queuePausedDesc = prometheus.NewDesc("asynq_queue_paused_total",
		"Number of queues paused", []string{"queue"}, nil)
)

// queueCollector reads asynq's queue statistics from Redis at scrape time. Every worker
// of a fleet reports the same fleet-wide values.
type queueCollector struct {
	inspector *asynq.Inspector
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		queueTasksDesc, queueSizeDesc, queueLatencyDesc, queueMemoryDesc,
		queueProcessedDesc, queueFailedDesc, queuePausedDesc,
	} {
		ch <- d
	}
}

// Collect reports every queue it can read. A Redis error turns into an invalid metric,
// which the HTTP handler reports while it still serves the other metrics (with
// promhttp.ContinueOnError).
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.inspector.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueSizeDesc, fmt.Errorf("list asynq queues: %w", err))
		return
	}
	for _, queue := range queues {
		info, err := c.inspector.GetQueueInfo(queue)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(queueSizeDesc, fmt.Errorf("read asynq queue %s: %w", queue, err))
			continue
		}
		collectQueue(ch, info)
	}
}

func collectQueue(ch chan<- prometheus.Metric, info *asynq.QueueInfo) {
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}

	q := info.Queue
	gauge(queueTasksDesc, float64(info.Active), q, "active")
	gauge(queueTasksDesc, float64(info.Pending), q, "pending")
	gauge(queueTasksDesc, float64(info.Scheduled), q, "scheduled")
	gauge(queueTasksDesc, float64(info.Retry), q, "retry")
	gauge(queueTasksDesc, float64(info.Archived), q, "archived")
	gauge(queueTasksDesc, float64(info.Completed), q, "completed")
	gauge(queueSizeDesc, float64(info.Size), q)
	gauge(queueLatencyDesc, info.Latency.Seconds(), q)
	gauge(queueMemoryDesc, float64(info.MemoryUsage), q)
	counter(queueProcessedDesc, float64(info.ProcessedTotal), q)
	counter(queueFailedDesc, float64(info.FailedTotal), q)
	paused := 0.0
	if info.Paused {
		paused = 1
	}
	gauge(queuePausedDesc, paused, q)
}
