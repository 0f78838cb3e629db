package policytest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// fleetRate is the ODIN_RATE_LIMIT of the fleet tests, in requests per second.
const fleetRate = 50

// fleet is three cmd/worker processes with concurrency 20 each, limited together to
// fleetRate Odin requests per second, against one cmd/odin-sim process.
type fleet struct {
	sim     *simProcess
	redis   *redisServer
	workers []*process
	client  *asynq.Client
	store   *results.Store
}

func startFleet(t *testing.T, simUsers int) *fleet {
	t.Helper()
	bins := requireBinaries(t)
	rd := startRedisServer(t, "noeviction")
	// Odin responds in 20 to 50 ms, so many requests overlap and the limiter, not the
	// round trip, sets the pace.
	sim := startSim(t, bins, "--users", strconv.Itoa(simUsers), "--latency", "20ms", "--jitter", "30ms")
	key, keyring := newResultsKey(t)
	var workers []*process
	for i := range 3 {
		workers = append(workers, startWorker(t, bins, fmt.Sprintf("worker-%d", i+1), rd.URL, sim.URL, key, workerSettings{
			"ODIN_RATE_LIMIT":    strconv.Itoa(fleetRate),
			"WORKER_CONCURRENCY": "20",
		}))
	}

	opt, err := redis.ParseURL(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: opt.Addr, DB: opt.DB})
	t.Cleanup(func() { client.Close() })
	return &fleet{
		sim: sim, redis: rd, workers: workers, client: client,
		store: results.NewStore(rd.Client, results.WithSealer(keyring)),
	}
}

// TestFleetRateLimit checks that three worker processes together stay under the
// configured Odin rate, and that they pause together and still finish the job when Odin
// returns 429 because its own limit is lower than the configured rate.
func TestFleetRateLimit(t *testing.T) {
	rateUsers := sized(600, 5000)
	stallUsers := sized(400, 3000)
	limitedUsers := sized(150, 1500)
	f := startFleet(t, max(rateUsers, stallUsers, limitedUsers))

	t.Run("fleet stays under the rate", func(t *testing.T) {
		start := time.Now()
		submit(t, f.client, f.store, tasks.BulkResetPayload{
			JobID: "fleet-rate", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: seededUsers(rateUsers),
		})
		job := waitJob(t, f.store, "fleet-rate", time.Duration(rateUsers/fleetRate)*time.Second+time.Minute)
		elapsed := time.Since(start)
		st := f.sim.stats(t)

		t.Logf("%d web users, 3 workers x 20 concurrency at %d req/s: %v, %d Odin requests (%.1f/s), max %d in any 1 s, %d responded 429, %d logins",
			rateUsers, fleetRate, elapsed.Round(100*time.Millisecond), st.Total, float64(st.Total)/elapsed.Seconds(),
			st.MaxPerSecond, st.TooManyRequests, st.Logins)
		checkAllApplied(t, job, rateUsers)
		if st.MaxPerSecond > fleetRate+3 {
			t.Errorf("Odin saw %d requests within one second, want at most %d", st.MaxPerSecond, fleetRate+3)
		}
		if st.TooManyRequests != 0 {
			t.Errorf("Odin responded to %d requests with 429, want 0", st.TooManyRequests)
		}
		if m := mismatches(t, f.store, job.ID, fromSnapshot(f.sim.credentials(t))); len(m) > 0 {
			t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
		}
	})

	t.Run("fleet stays under the rate through stalls", func(t *testing.T) {
		f.sim.resetStats(t)
		start := time.Now()
		submit(t, f.client, f.store, tasks.BulkResetPayload{
			JobID: "fleet-stalls", Type: results.Voicemail, ServiceProviderID: "sp1", GroupID: "grp1", Users: seededUsers(stallUsers),
		})

		// Stop each worker and the Redis server in turn for 500 ms, as an overloaded
		// machine deschedules processes, until the job completes.
		stalls := 0
		stallsDone := make(chan struct{})
		jobDone := make(chan struct{})
		go func() {
			defer close(stallsDone)
			victims := append([]*process{f.redis.proc}, f.workers...)
			for i := 0; ; i++ {
				select {
				case <-jobDone:
					return
				case <-time.After(300 * time.Millisecond):
				}
				victims[i%len(victims)].pause(t, 500*time.Millisecond)
				stalls++
			}
		}()
		job := waitJob(t, f.store, "fleet-stalls", time.Duration(stallUsers/fleetRate)*time.Second+time.Minute)
		close(jobDone)
		<-stallsDone
		elapsed := time.Since(start)
		st := f.sim.stats(t)

		t.Logf("%d voicemail users with %d stalls of 500 ms: %v, %d Odin requests (%.1f/s), max %d in any 1 s, %d responded 429",
			stallUsers, stalls, elapsed.Round(100*time.Millisecond), st.Total, float64(st.Total)/elapsed.Seconds(),
			st.MaxPerSecond, st.TooManyRequests)
		checkAllApplied(t, job, stallUsers)
		if st.MaxPerSecond > fleetRate+3 {
			t.Errorf("Odin saw %d requests within one second, want at most %d", st.MaxPerSecond, fleetRate+3)
		}
		if m := mismatches(t, f.store, job.ID, fromSnapshot(f.sim.credentials(t))); len(m) > 0 {
			t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
		}
	})

	t.Run("429 pauses the fleet", func(t *testing.T) {
		const simRate = 20
		f.sim.setRateLimit(t, simRate)
		f.sim.resetStats(t)

		start := time.Now()
		submit(t, f.client, f.store, tasks.BulkResetPayload{
			JobID: "fleet-429", Type: results.Voicemail, ServiceProviderID: "sp1", GroupID: "grp1", Users: seededUsers(limitedUsers),
		})
		job := waitJob(t, f.store, "fleet-429", time.Duration(2*limitedUsers/simRate)*time.Second+time.Minute)
		elapsed := time.Since(start)
		st := f.sim.stats(t)
		accepted := st.Total - st.TooManyRequests

		t.Logf("%d voicemail users, Odin limited to %d req/s, fleet configured for %d: %v, %d requests accepted (%.1f/s), %d responded 429",
			limitedUsers, simRate, fleetRate, elapsed.Round(100*time.Millisecond), accepted, float64(accepted)/elapsed.Seconds(), st.TooManyRequests)
		checkAllApplied(t, job, limitedUsers)
		if st.TooManyRequests == 0 {
			t.Errorf("Odin returned no 429, so the test did not exercise the pause: lower the simulator's rate")
		}
		// A fleet that ignored Retry-After would keep sending at the configured rate and
		// get more 429s than accepted requests. Paused together, the workers lose only
		// the few requests already in flight when the first 429 arrives.
		if 2*st.TooManyRequests > accepted {
			t.Errorf("Odin responded to %d requests with 429 and accepted %d; want fewer than half as many 429s", st.TooManyRequests, accepted)
		}
		if got := attemptCounts(t, f.store, job.ID); got[1] != limitedUsers {
			t.Errorf("attempts per user = %v, want every user applied at its first counted attempt, because waiting out a 429 spends no retry", got)
		}
		if m := mismatches(t, f.store, job.ID, fromSnapshot(f.sim.credentials(t))); len(m) > 0 {
			t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
		}
	})
}

// checkAllApplied fails the test unless the job completed with every one of its users
// applied.
func checkAllApplied(t *testing.T, job results.Job, users int) {
	t.Helper()
	if job.State != results.JobCompleted || job.Total != users || job.Applied != users || job.Failed != 0 {
		t.Fatalf("job %s is %s with %d applied and %d failed of %d, want completed with all %d applied",
			job.ID, job.State, job.Applied, job.Failed, job.Total, users)
	}
}

// attemptCounts returns how many users of the job the record shows with each number of
// attempts.
func attemptCounts(t *testing.T, store *results.Store, jobID string) map[int]int {
	t.Helper()
	counts := make(map[int]int)
	err := store.ForEachUser(context.Background(), jobID, func(rec results.UserRecord) error {
		counts[rec.Attempts]++
		return nil
	})
	if err != nil {
		t.Fatalf("read the users of job %s: %v", jobID, err)
	}
	return counts
}
