package clustertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// braceUser is a user ID with braces, which must not move any key to another slot.
const braceUser = "brace{x}user@example.com"

// TestClusterBatch runs a batch on a 3-master Redis Cluster with two worker processes,
// each with its own Redis connections and Odin client. Every user must end applied with
// the value the simulator holds, and the two processes together must stay within the
// fleet-wide rate limit.
func TestClusterBatch(t *testing.T) {
	bin := requireWorker(t)
	size := struct {
		users int
		rate  float64
	}{users: 2000, rate: 200}
	if fullSize() {
		size.users, size.rate = 20000, 400
	}

	cluster := StartCluster(t)
	f := startFleet(t, bin, cluster.Config(), fleetOptions{
		Sim: odintest.Config{
			Users:       size.users - 1,
			ExtraUsers:  []string{braceUser},
			RejectFirst: []string{"user0002@example.com", "user0003@example.com", braceUser},
		},
		Workers:     2,
		Concurrency: 10,
		RateLimit:   size.rate,
	})
	ctx := context.Background()
	if err := redisconn.Check(ctx, f.rdb); err != nil {
		t.Fatalf("redisconn.Check on the cluster: %v", err)
	}

	commandsBefore := commandsProcessed(t, cluster)
	start := time.Now()
	f.submit("cluster-batch", results.Web, f.sim.Users())
	job := f.waitJob("cluster-batch", batchTimeout(size.users, size.rate), nil)
	elapsed := time.Since(start)
	commands := commandsProcessed(t, cluster) - commandsBefore
	t.Logf("the masters processed %d commands, %.1f per user, including the test's own polling", commands, float64(commands)/float64(size.users))

	if job.State != results.JobCompleted {
		t.Errorf("job state = %s, want %s", job.State, results.JobCompleted)
	}
	if job.Applied != size.users || job.Failed != 0 {
		t.Errorf("job counts: %d applied, %d failed, want %d applied and 0 failed", job.Applied, job.Failed, size.users)
	}
	rc := f.checkRecord("cluster-batch", odintest.KindWeb)
	if rc.Applied != size.users {
		t.Errorf("%d users applied in the record, want %d; failures: %v", rc.Applied, size.users, rc.Failures)
	}
	if len(rc.Mismatches) > 0 {
		t.Errorf("%d users differ between the record and the simulator, first: %v", len(rc.Mismatches), rc.Mismatches[:min(10, len(rc.Mismatches))])
	}

	stats := f.sim.Stats()
	t.Logf("%d users in %v on %d masters: %d Odin requests, at most %d in one second (limit %g/s), %d answered 429",
		size.users, elapsed.Round(time.Millisecond), 3, stats.Total, stats.MaxPerSecond, size.rate, stats.TooManyRequests)
	// GCRA spaces request slots 1/rate apart on the Redis clock, so a one-second window
	// contains rate+1 slots. The 25% more allow for send and arrival times that lag their
	// slots unevenly on a loaded machine (up to 10% more seen on 2 cores). A limit that held
	// only per process would show about twice the rate.
	allowed := int(math.Ceil(size.rate*1.25)) + 1
	if stats.MaxPerSecond > allowed {
		t.Errorf("the simulator saw %d requests within one second, want at most %d for a fleet limit of %g/s", stats.MaxPerSecond, allowed, size.rate)
	}
	// Each process alone could go faster than the limit, so the limit must have bound.
	if float64(stats.MaxPerSecond) < 0.8*size.rate {
		t.Errorf("the busiest second had %d requests, want at least %g: the limit never bound, so the test proves nothing", stats.MaxPerSecond, 0.8*size.rate)
	}

	for _, w := range f.workers {
		applied := w.appliedBy()
		t.Logf("%s applied %d users", w.name, applied)
		if applied == 0 {
			t.Errorf("%s applied no user: the batch did not run on two processes", w.name)
		}
		for _, l := range w.logLines() {
			if strings.Contains(l.Error, "CROSSSLOT") || strings.Contains(l.Message, "CROSSSLOT") {
				t.Errorf("%s logged a CROSSSLOT error: %s %s", w.name, l.Message, l.Error)
				break
			}
		}
	}

	slots, err := keySlots(ctx, f.rdb.(*redis.ClusterClient), "odinreset:{cluster-batch}*")
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 1 {
		t.Errorf("the keys of job cluster-batch are in slots %v, want one slot", slots)
	}
	slots, err = keySlots(ctx, f.rdb.(*redis.ClusterClient), "asynq:{reset-default}*")
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 1 {
		t.Errorf("the asynq keys of queue reset-default are in slots %v, want one slot", slots)
	}
}

// commandsProcessed sums total_commands_processed of the masters.
func commandsProcessed(t *testing.T, c *Cluster) int64 {
	t.Helper()
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range c.Nodes {
		if !slices.Contains(masters, n.Addr) {
			continue
		}
		info, err := n.client.Info(ctx, "stats").Result()
		if err != nil {
			t.Fatalf("INFO stats on %s: %v", n.Addr, err)
		}
		v, err := strconv.ParseInt(infoField(info, "total_commands_processed"), 10, 64)
		if err != nil {
			t.Fatalf("total_commands_processed on %s: %v", n.Addr, err)
		}
		total += v
	}
	return total
}

// batchTimeout allows three times the time the rate limit needs for users, plus a minute.
func batchTimeout(users int, rate float64) time.Duration {
	return time.Minute + 3*time.Duration(float64(users)/rate*float64(time.Second))
}

// keySlots returns the hash slots of the keys that match pattern, found on every master,
// with the keys in each.
func keySlots(ctx context.Context, cc *redis.ClusterClient, pattern string) (map[int64][]string, error) {
	var (
		mu   sync.Mutex
		keys []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("scan the masters for %s: %w", pattern, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key matches %s on any master", pattern)
	}
	slots := map[int64][]string{}
	for _, k := range keys {
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER KEYSLOT %s: %w", k, err)
		}
		slots[slot] = append(slots[slot], k)
	}
	return slots, nil
}

// TestClusterSlotsOfKeys checks the hash slots of keys named the way the results store,
// the rate limiter and asynq name them: all keys of one job share a slot, the limiter's
// keys share a slot, and an asynq task key has its queue's slot, whatever braces the user
// ID in its TaskID holds, because Redis hashes only the first {...} of a key.
func TestClusterSlotsOfKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster: skipped in -short mode")
	}
	cluster := StartCluster(t)
	_, rdb, err := cluster.Config().Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	ctx := context.Background()

	type keyGroup struct {
		name string
		keys []string
	}
	groups := []keyGroup{
		{
			name: "results keys of one job",
			keys: []string{"odinreset:{job-1}:meta", "odinreset:{job-1}:users", "odinreset:{job-1}:order", "odinreset:{job-1}:devices", "odinreset:{job-1}:loading:abc"},
		},
		{
			name: "limiter keys",
			keys: []string{"odinreset:{rl:0123456789ab}:gcra", "odinreset:{rl:0123456789ab}:pause"},
		},
	}
	for _, queue := range slices.Sorted(maps.Keys(tasks.Queues())) {
		groups = append(groups, keyGroup{
			name: "asynq keys of queue " + queue,
			keys: []string{
				"asynq:{" + queue + "}:pending",
				"asynq:{" + queue + "}:active",
				"asynq:{" + queue + "}:lease",
				"asynq:{" + queue + "}:t:job-1",
				"asynq:{" + queue + "}:t:" + tasks.UserTaskID("job-1", braceUser),
				"asynq:{" + queue + "}:t:" + tasks.UserTaskID("job-1", "}{"),
				"asynq:{" + queue + "}:t:" + tasks.CompleteTaskID("job-1"),
			},
		})
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			var slots []int64
			for _, k := range g.keys {
				slot, err := cc.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatalf("CLUSTER KEYSLOT %s: %v", k, err)
				}
				slots = append(slots, slot)
			}
			want := make([]int64, len(slots))
			for i := range want {
				want[i] = slots[0]
			}
			if diff := cmp.Diff(want, slots); diff != "" {
				t.Errorf("slots of %v differ (-want +got):\n%s", g.keys, diff)
			}
		})
	}
}

// TestNamesWithoutBraces checks that queue names and job IDs, which asynq and the results
// store put inside hash tags, can hold no brace.
func TestNamesWithoutBraces(t *testing.T) {
	for queue := range tasks.Queues() {
		if strings.ContainsAny(queue, "{}") {
			t.Errorf("queue name %q contains a brace", queue)
		}
	}
	for _, id := range []string{"job{1}", "job}", "{job"} {
		if err := results.ValidateJobID(id); err == nil {
			t.Errorf("ValidateJobID(%q) accepted a job ID with a brace", id)
		}
	}
}

// TestClusterStoreAndLimiter calls every multi-key operation of the results store and the
// rate limiter on the cluster, in the order a job uses them. Any CROSSSLOT error, or a
// script routed to the wrong node, fails its step.
func TestClusterStoreAndLimiter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster: skipped in -short mode")
	}
	cluster := StartCluster(t)
	_, rdb, err := cluster.Config().Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	store := results.NewStore(rdb)

	steps := storeSteps(store, "store-ops", []string{"a@example.com", braceUser, "c@example.com"})
	steps = append(steps, limiterSteps(t, rdb)...)
	for _, step := range steps {
		if !t.Run(step.name, func(t *testing.T) {
			if err := step.run(ctx); err != nil {
				t.Fatal(err)
			}
		}) {
			t.FailNow()
		}
	}
}

// step is one operation of a sequence that later steps build on.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// storeSteps walks one job through every store operation: create, load, write ahead,
// replace, settle both ways, cursor, progress, reason, audit, export, list, cancel and
// delete.
func storeSteps(store *results.Store, jobID string, users []string) []step {
	user := func(ctx context.Context, id string) (results.UserRecord, error) { return store.User(ctx, jobID, id) }
	return []step{
		{"CreateJob", func(ctx context.Context) error {
			_, created, err := store.CreateJob(ctx, results.Job{ID: jobID, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1"})
			if err == nil && !created {
				err = fmt.Errorf("job %s existed already", jobID)
			}
			return err
		}},
		{"LoadUsers", func(ctx context.Context) error {
			job, err := store.LoadUsers(ctx, jobID, users)
			if err == nil && job.Total != len(users) {
				err = fmt.Errorf("total = %d, want %d", job.Total, len(users))
			}
			return err
		}},
		{"WriteAhead", func(ctx context.Context) error {
			secrets := map[string]string{}
			for i, u := range users {
				secrets[u] = fmt.Sprintf("secret-%d", i)
			}
			written, err := store.WriteAhead(ctx, jobID, secrets)
			if err == nil && len(written) != len(users) {
				err = fmt.Errorf("wrote %d values, want %d", len(written), len(users))
			}
			return err
		}},
		{"UserWithJobStatus", func(ctx context.Context) error {
			_, status, err := store.UserWithJobStatus(ctx, jobID, users[0])
			if err == nil && status.State != results.JobRunning {
				err = fmt.Errorf("job state = %s, want running", status.State)
			}
			return err
		}},
		{"ReplaceSecret", func(ctx context.Context) error {
			rec, err := user(ctx, users[1])
			if err != nil {
				return err
			}
			_, err = store.ReplaceSecret(ctx, jobID, rec, "fresh")
			return err
		}},
		{"MarkApplied", func(ctx context.Context) error {
			for _, u := range users[:2] {
				rec, err := user(ctx, u)
				if err != nil {
					return err
				}
				if _, err := store.MarkApplied(ctx, jobID, rec, 1); err != nil {
					return err
				}
			}
			return nil
		}},
		{"SetCursor", func(ctx context.Context) error { return store.SetCursor(ctx, jobID, len(users)) }},
		{"NoteProgress", func(ctx context.Context) error {
			_, err := store.NoteProgress(ctx, jobID, 2)
			return err
		}},
		{"SetReason", func(ctx context.Context) error { return store.SetReason(ctx, jobID, "waiting") }},
		{"SetAudit", func(ctx context.Context) error {
			return store.SetAudit(ctx, jobID, map[string]string{"submitted_by": "test"})
		}},
		{"MarkFailed completes the job", func(ctx context.Context) error {
			rec, err := user(ctx, users[2])
			if err != nil {
				return err
			}
			completed, err := store.MarkFailed(ctx, jobID, rec, "Odin: [Error 4410] Service is not assigned", 1)
			if err == nil && !completed {
				err = fmt.Errorf("the last user settled but the job did not complete")
			}
			return err
		}},
		{"WriteJSON", func(ctx context.Context) error {
			var b strings.Builder
			return store.WriteJSON(ctx, jobID, &b)
		}},
		{"WriteCSV", func(ctx context.Context) error {
			var b strings.Builder
			return store.WriteCSV(ctx, jobID, &b)
		}},
		{"Jobs", func(ctx context.Context) error {
			jobs, err := store.Jobs(ctx, 10)
			if err == nil && len(jobs) != 1 {
				err = fmt.Errorf("listed %d jobs, want 1", len(jobs))
			}
			return err
		}},
		{"keys of the job share one slot", func(ctx context.Context) error {
			cc, ok := store.Redis().(*redis.ClusterClient)
			if !ok {
				return fmt.Errorf("the store's client is a %T, want a cluster client", store.Redis())
			}
			slots, err := keySlots(ctx, cc, "odinreset:{"+jobID+"}*")
			if err == nil && len(slots) != 1 {
				err = fmt.Errorf("the keys of job %s are in slots %v, want one slot", jobID, slots)
			}
			return err
		}},
		{"Cancel of a completed job", func(ctx context.Context) error {
			_, err := store.Cancel(ctx, jobID)
			if !errors.Is(err, results.ErrJobFinished) {
				return fmt.Errorf("Cancel returned %v, want ErrJobFinished", err)
			}
			return nil
		}},
		{"Delete", func(ctx context.Context) error { return store.Delete(ctx, jobID) }},
	}
}

// limiterSteps runs the limiter's scripts: reserve a slot, pause, read the pause, resume.
func limiterSteps(t *testing.T, rdb redis.UniversalClient) []step {
	l, err := ratelimit.New(rdb, "http://127.0.0.1:9/api/v2", ratelimit.Limit{Rate: 100, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	return []step{
		{"limiter Wait", l.Wait},
		{"limiter Pause", func(ctx context.Context) error { return l.Pause(ctx, time.Minute, "Odin asked to slow down") }},
		{"limiter Paused", func(ctx context.Context) error {
			remaining, reason, err := l.Paused(ctx)
			if err == nil && (remaining <= 0 || reason != "Odin asked to slow down") {
				err = fmt.Errorf("Paused = %v, %q, want a pause with its reason", remaining, reason)
			}
			return err
		}},
		{"limiter Wait during a pause", func(ctx context.Context) error {
			var delay *ratelimit.DelayError
			if err := l.Wait(ctx); !errors.As(err, &delay) {
				return fmt.Errorf("Wait returned %v, want a *ratelimit.DelayError", err)
			}
			return nil
		}},
		{"limiter keys share one slot", func(ctx context.Context) error {
			slots, err := keySlots(ctx, rdb.(*redis.ClusterClient), "odinreset:{rl:*}*")
			if err == nil && len(slots) != 1 {
				err = fmt.Errorf("the limiter keys are in slots %v, want one slot", slots)
			}
			return err
		}},
		{"limiter Resume", l.Resume},
	}
}
