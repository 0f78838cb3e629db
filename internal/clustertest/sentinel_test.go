package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
)

// failover is the outcome of a SENTINEL FAILOVER started during a batch.
type failover struct {
	from, to string
	// appliedBefore is how many users were applied when the failover started.
	appliedBefore int
	took          time.Duration
	err           error
}

// TestSentinelFailoverMidBatch starts a batch on a Sentinel deployment, triggers
// SENTINEL FAILOVER when a quarter of the users are applied, and checks that the batch
// completes with every user applied and no difference between the record and the
// simulator.
//
// With min-replicas-to-write 1 the old master rejects writes once the replica it loses is
// promoted, so only writes acknowledged in the instant before the promotion and not yet
// replicated can be lost. Without it, the old master keeps taking writes from clients
// that have not switched yet until Sentinel demotes it about 10 s later, and then
// discards them. That case runs only in the full-size run, because many tasks lose their
// completion and wait 1 to 2 minutes for asynq's recoverer.
//
// Even with min-replicas-to-write 1 a user's last writes can be lost. Its task then waits
// for asynq's recoverer (lease 30 s, a scan every minute), or for the sweeper when the task
// itself was lost; the workers here run the sweeper with STALL_AFTER 20s. The deadline
// leaves room for both, so a slow failover on a loaded machine is not a failure.
func TestSentinelFailoverMidBatch(t *testing.T) {
	bin := requireWorker(t)
	tests := []struct {
		name     string
		opts     SentinelOptions
		fullOnly bool
	}{
		{name: "min-replicas-to-write 1", opts: SentinelOptions{MinReplicasToWrite: 1, AppendFsyncAlways: true}},
		{name: "no min-replicas-to-write", opts: SentinelOptions{}, fullOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fullOnly && !fullSize() {
				t.Skipf("runs only with %s=1: asynq's recoverer makes it take minutes", envFull)
			}
			runFailoverBatch(t, bin, tt.opts)
		})
	}
}

func runFailoverBatch(t *testing.T, bin string, opts SentinelOptions) {
	size := struct {
		users int
		rate  float64
	}{users: 2000, rate: 200}
	if fullSize() {
		size.users, size.rate = 20000, 400
	}

	deployment := StartSentinel(t, opts)
	f := startFleet(t, bin, deployment.Config(), fleetOptions{
		Sim: odintest.Config{
			Users:       size.users,
			RejectFirst: []string{"user0002@example.com", "user0500@example.com"},
		},
		Workers:     2,
		Concurrency: 10,
		RateLimit:   size.rate,
		StallAfter:  20 * time.Second,
	})
	ctx := context.Background()
	if err := redisconn.Check(ctx, f.rdb); err != nil {
		t.Fatalf("redisconn.Check through the Sentinels: %v", err)
	}

	start := time.Now()
	f.submit("sentinel-batch", results.Voicemail, nil)
	done := make(chan failover, 1)
	started := false
	job := f.waitJob("sentinel-batch", batchTimeout(size.users, size.rate)+failoverRecovery, func(job results.Job) {
		if started || job.Total == 0 || job.Applied < job.Total/4 {
			return
		}
		started = true
		go func() {
			fo := failover{appliedBefore: job.Applied}
			failoverCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			t0 := time.Now()
			fo.from, fo.to, fo.err = deployment.Failover(failoverCtx)
			fo.took = time.Since(t0)
			done <- fo
		}()
	})
	elapsed := time.Since(start)

	if !started {
		t.Fatalf("the job finished before a quarter of its users were seen applied: no failover happened")
	}
	fo := <-done
	if fo.err != nil {
		t.Fatalf("failover from %s: %v", fo.from, fo.err)
	}
	t.Logf("failover from %s to %s started at %d of %d users applied and took %v; the batch took %v",
		fo.from, fo.to, fo.appliedBefore, size.users, fo.took.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	if fo.appliedBefore >= size.users {
		t.Errorf("the failover started after every user was applied: it was not mid-batch")
	}

	if job.State != results.JobCompleted {
		t.Errorf("job state = %s, want %s", job.State, results.JobCompleted)
	}
	if job.Applied != size.users || job.Failed != 0 {
		t.Errorf("job counts: %d applied, %d failed, want %d applied and 0 failed", job.Applied, job.Failed, size.users)
	}
	rc := f.checkRecord("sentinel-batch", odintest.KindVoicemail)
	if rc.Applied != size.users {
		t.Errorf("%d users applied in the record, want %d; failures: %v", rc.Applied, size.users, rc.Failures)
	}
	if len(rc.Mismatches) > 0 {
		t.Errorf("%d users differ between the record and the simulator, first: %v", len(rc.Mismatches), rc.Mismatches[:min(10, len(rc.Mismatches))])
	}

	if lost, ok := discardedBytes(deployment, fo.from); ok {
		t.Logf("the old master %s discarded %d bytes of its replication stream written after the promotion (writes, and the PINGs and Sentinel hello messages Redis replicates)", fo.from, lost)
	}
	stats := f.sim.Stats()
	t.Logf("%d Odin requests, at most %d in one second (limit %g/s)", stats.Total, stats.MaxPerSecond, size.rate)
	for _, w := range f.workers {
		redisErrors := 0
		for _, l := range w.logLines() {
			if l.Level == "error" || strings.Contains(l.Error, "NOREPLICAS") || strings.Contains(l.Error, "READONLY") {
				redisErrors++
			}
		}
		t.Logf("%s applied %d users; %d error lines or Redis write refusals in its log", w.name, w.appliedBy(), redisErrors)
	}
}

// failoverRecovery is the time a failover may add to a batch. Sentinel's failover itself
// took about 16 s on a quiet 2-core machine and takes longer under load. Then comes
// asynq's recovery of a task whose completion was lost: lease 30 s, recoverer every minute,
// a retry delay.
const failoverRecovery = 3 * time.Minute

// discardedBytes reads from the log of the old master how far its replication stream ran
// past the point where the new master took over, as Redis logs when it refuses the old
// master a partial resynchronization. ok is false when the log has no such line.
func discardedBytes(d *Sentinel, oldMaster string) (lost int64, ok bool) {
	for _, n := range d.Data {
		if n.Addr == oldMaster {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
		if err != nil {
			continue
		}
		m := partialResyncRejected.FindSubmatch(b)
		if m == nil {
			continue
		}
		requested, _ := strconv.ParseInt(string(m[1]), 10, 64)
		available, _ := strconv.ParseInt(string(m[2]), 10, 64)
		return requested - available, true
	}
	return 0, false
}

// partialResyncRejected matches the line a new master logs when the old master requests to
// resume replication from an offset past the new master's history (Redis 7.0).
var partialResyncRejected = regexp.MustCompile(`Requested offset for second ID was (\d+), but I can reply up to (\d+)`)

// TestSentinelWritePause measures how long a SENTINEL FAILOVER keeps writes from
// succeeding, with min-replicas-to-write 1, for one and two replicas and with and without
// an immediate resynchronization. A client of redisconn's Sentinel options sends one SET
// every 10 ms with a 200 ms timeout; the pause is the span from the first to the last SET
// that failed. It only logs, and runs only in the full-size run.
func TestSentinelWritePause(t *testing.T) {
	if !fullSize() {
		t.Skipf("measures failovers for about a minute: runs only with %s=1", envFull)
	}
	requireBinaries(t)
	tests := []struct {
		name string
		opts SentinelOptions
	}{
		{name: "1 replica", opts: SentinelOptions{Replicas: 1, MinReplicasToWrite: 1}},
		{name: "1 replica, immediate resync", opts: SentinelOptions{Replicas: 1, MinReplicasToWrite: 1, ImmediateResync: true}},
		{name: "2 replicas", opts: SentinelOptions{Replicas: 2, MinReplicasToWrite: 1}},
		{name: "2 replicas, immediate resync", opts: SentinelOptions{Replicas: 2, MinReplicasToWrite: 1, ImmediateResync: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := StartSentinel(t, tt.opts)
			_, rdb, err := d.Config().Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()

			type failure struct{ first, last time.Time }
			stop := make(chan struct{})
			result := make(chan failure, 1)
			go func() {
				var f failure
				ticker := time.NewTicker(10 * time.Millisecond)
				defer ticker.Stop()
				for {
					select {
					case <-stop:
						result <- f
						return
					case <-ticker.C:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					err := rdb.Set(ctx, "write-pause-probe", "1", 0).Err()
					cancel()
					if err != nil {
						if f.first.IsZero() {
							f.first = time.Now()
						}
						f.last = time.Now()
					}
				}
			}()

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			from, to, err := d.Failover(ctx)
			took := time.Since(start)
			close(stop)
			f := <-result
			if err != nil {
				t.Fatalf("failover from %s: %v", from, err)
			}
			pause := time.Duration(0)
			if !f.first.IsZero() {
				pause = f.last.Sub(f.first)
			}
			t.Logf("failover from %s to %s took %v; writes failed for %v", from, to, took.Round(time.Millisecond), pause.Round(time.Millisecond))
		})
	}
}
