package tasks_test

import (
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestCancelStopsSIPGenerator cancels a SIP job while its fan-out requests values one per
// request from a slow Odin: the requests stop within about a second, not at the end of
// the chunk.
func TestCancelStopsSIPGenerator(t *testing.T) {
	t.Parallel()
	const generate = "GET /sip-password/generate"
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 400, Latency: 100 * time.Millisecond}, ChunkSize: 200})
	env.Submit(tasks.BulkResetPayload{JobID: "cancel-generator", Type: results.SIP, Users: seededUsers(400)})

	waitFor(t, "the first generator requests", func() bool { return env.Sim.Stats().Requests[generate] >= 10 })
	if _, err := env.Store.Cancel(t.Context(), "cancel-generator"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	stopped := env.Sim.Stats().Requests[generate]
	time.Sleep(time.Second)
	if more := env.Sim.Stats().Requests[generate] - stopped; more > 0 {
		t.Errorf("%d generator requests between 1.5 s and 2.5 s after the cancel, want none", more)
	}
	if stopped >= 200 {
		t.Errorf("%d generator requests in all, want the fan-out stopped before the end of its first chunk of 200", stopped)
	}
}

// TestSIPGeneratorInParallel: with one value per request from an Odin that takes 100 ms,
// a chunk of 80 users takes 8 s one request after the other. With requests in parallel,
// the fan-out enqueues every user in a fraction of that.
func TestSIPGeneratorInParallel(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 80, Latency: 100 * time.Millisecond}, ChunkSize: 80})
	start := time.Now()
	env.Submit(tasks.BulkResetPayload{JobID: "parallel-generator", Type: results.SIP, Users: seededUsers(80)})
	waitFor(t, "the fan-out to pass every user", func() bool {
		job, err := env.Store.Job(t.Context(), "parallel-generator")
		return err == nil && job.Cursor == 80
	})
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("fan-out of 80 SIP users took %v, want well under the 8 s of one request at a time", took.Round(time.Millisecond))
	}
	job := env.Wait("parallel-generator", 60*time.Second)
	if job.Applied != 80 {
		t.Errorf("%d of 80 users applied", job.Applied)
	}
	if m := env.Mismatches(job.ID); len(m) > 0 {
		t.Errorf("record differs from simulator: %v", m)
	}
}

// TestSIPFanOutEnqueuesEarly: at 20 requests per second, the 200 values of a full chunk
// from a generator that returns one value per request take 10 s. The fan-out's smaller
// SIP chunks let the first users be reset within a few seconds.
func TestSIPFanOutEnqueuesEarly(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 200}, RateLimit: 20})
	start := time.Now()
	env.Submit(tasks.BulkResetPayload{JobID: "early-sip", Type: results.SIP, Users: seededUsers(200)})
	waitFor(t, "the first user applied", func() bool {
		job, err := env.Store.Job(t.Context(), "early-sip")
		return err == nil && job.Applied > 0
	})
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("first user applied after %v, want within about 3 s", took.Round(time.Millisecond))
	}
	if _, err := env.Store.Cancel(t.Context(), "early-sip"); err != nil {
		t.Fatal(err)
	}
}
