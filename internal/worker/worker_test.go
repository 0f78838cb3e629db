package worker_test

import (
	"maps"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/tasks"
)

// TestWorkerServers checks the two asynq servers of a worker: the urgent server alone on
// reset-high, and the batch server on reset-default before reset-low. A server that also
// polled reset-high would probe it before nearly every batch task.
func TestWorkerServers(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Concurrency: 3})
	inspector := asynq.NewInspector(env.Redis.Opt)
	t.Cleanup(func() { _ = inspector.Close() })

	var ours []*asynq.ServerInfo
	deadline := time.Now().Add(10 * time.Second)
	for len(ours) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		servers, err := inspector.Servers()
		if err != nil {
			t.Fatalf("list servers: %v", err)
		}
		ours = ours[:0]
		for _, s := range servers {
			if s.PID == os.Getpid() {
				ours = append(ours, s)
			}
		}
	}
	if len(ours) != 2 {
		t.Fatalf("found %d asynq servers of this process, want 2", len(ours))
	}

	var urgent, batch *asynq.ServerInfo
	for _, s := range ours {
		if _, ok := s.Queues[tasks.QueueHigh]; ok {
			urgent = s
		} else {
			batch = s
		}
	}
	if urgent == nil || batch == nil {
		t.Fatalf("servers %+v and %+v: want one with reset-high and one without", ours[0], ours[1])
	}
	if !maps.Equal(urgent.Queues, tasks.UrgentQueues()) {
		t.Errorf("urgent server queues %v, want %v", urgent.Queues, tasks.UrgentQueues())
	}
	if !maps.Equal(batch.Queues, tasks.BatchQueues()) {
		t.Errorf("batch server queues %v, want %v", batch.Queues, tasks.BatchQueues())
	}
	if !batch.StrictPriority {
		t.Error("batch server without strict priority: reset-low would run beside reset-default")
	}
	for _, s := range ours {
		if s.Concurrency != 3 {
			t.Errorf("server on %v has concurrency %d, want 3", s.Queues, s.Concurrency)
		}
	}
}
