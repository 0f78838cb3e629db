package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// stalledJob is a running web-password job whose users' tasks the test places by hand,
// with the asynq client and inspector of its Redis database.
type stalledJob struct {
	rd        *testredis.Redis
	store     *results.Store
	client    *asynq.Client
	inspector *asynq.Inspector
	job       results.Job
}

const stalledJobID = "stalled"

// sweepUserID returns the user ID at index i of the stalled job's user list.
func sweepUserID(i int) string { return fmt.Sprintf("user%05d@example.com", i) }

// newStalledJob stores a job with the given number of users, of whom the fan-out
// enqueued the first cursor. It enqueues no task.
func newStalledJob(tb testing.TB, users, cursor int) *stalledJob {
	tb.Helper()
	ctx := context.Background()

	rd := testredis.New(tb)
	s := &stalledJob{
		rd:        rd,
		store:     results.NewStore(rd.Client),
		client:    asynq.NewClient(rd.Opt),
		inspector: asynq.NewInspector(rd.Opt),
	}
	tb.Cleanup(func() {
		s.client.Close()
		s.inspector.Close()
	})

	_, _, err := s.store.CreateJob(ctx, results.Job{
		ID: stalledJobID, Type: results.Web, ServiceProviderID: "sp-1", GroupID: "group-1",
		Priority: tasks.PriorityDefault,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([]string, users)
	for i := range ids {
		ids[i] = sweepUserID(i)
	}
	if _, err := s.store.LoadUsers(ctx, stalledJobID, ids); err != nil {
		tb.Fatal(err)
	}
	if err := s.store.SetCursor(ctx, stalledJobID, cursor); err != nil {
		tb.Fatal(err)
	}
	s.job, err = s.store.Job(ctx, stalledJobID)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// enqueue enqueues the reset:user task of user i, with opts applied after the defaults.
func (s *stalledJob) enqueue(tb testing.TB, i int, opts ...asynq.Option) {
	tb.Helper()
	task, err := tasks.NewUserResetTask(tasks.UserResetPayload{
		JobID: stalledJobID, UserID: sweepUserID(i), Type: s.job.Type,
		ServiceProviderID: s.job.ServiceProviderID, GroupID: s.job.GroupID,
	}, tasks.QueueDefault)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.client.Enqueue(task, opts...); err != nil {
		tb.Fatal(err)
	}
}

// taskState returns the state of user i's task, or "" when it does not exist.
func (s *stalledJob) taskState(t *testing.T, i int) string {
	t.Helper()
	info, err := s.inspector.GetTaskInfo(tasks.QueueDefault, tasks.UserTaskID(stalledJobID, sweepUserID(i)))
	if errors.Is(err, asynq.ErrTaskNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State.String()
}

// failTasks runs the tasks of the given users on an asynq server whose handler always
// fails with "Odin unreachable", with an hour between retries. It returns once every
// task reached its expected state: "archived" for a task enqueued with MaxRetry(0),
// "retry" otherwise. No other task may be queued yet, because the server would run it.
func (s *stalledJob) failTasks(t *testing.T, want map[int]string) {
	t.Helper()

	srv := asynq.NewServer(s.rd.Opt, asynq.Config{
		Concurrency:    2,
		Queues:         map[string]int{tasks.QueueDefault: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
		// The default check every second would make the test wait for it.
		TaskCheckInterval: 10 * time.Millisecond,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeUserReset, func(context.Context, *asynq.Task) error {
		return errors.New("Odin unreachable")
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	for i, state := range want {
		if state == asynq.TaskStateArchived.String() {
			s.enqueue(t, i, asynq.MaxRetry(0))
		} else {
			s.enqueue(t, i)
		}
	}
	for i, state := range want {
		waitFor(t, fmt.Sprintf("task of user %d in state %s", i, state), func() bool {
			return s.taskState(t, i) == state
		})
	}
}

// roundTripHook counts the calls a go-redis client sends: each command outside a
// pipeline, and each pipeline. It skips the handshake of each new connection (HELLO,
// SELECT and CLIENT SETINFO), which go-redis v9 sends through the hooks too.
type roundTripHook struct {
	commands  atomic.Int64
	pipelines atomic.Int64
}

func isHandshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "select", "client":
		return true
	}
	return false
}

func (h *roundTripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isHandshake(cmd) {
			h.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !isHandshake(cmds[0]) {
			h.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

// countingClient returns a new client of rd's database that counts its round trips.
func countingClient(tb testing.TB, rd *testredis.Redis) (*redis.Client, *roundTripHook) {
	tb.Helper()
	opt := *rd.Client.Options()
	client := redis.NewClient(&opt)
	tb.Cleanup(func() { client.Close() })
	hook := &roundTripHook{}
	client.AddHook(hook)
	return client, hook
}

// TestSweepJobBatched sweeps a stalled job of 1,203 users, of whom the fan-out enqueued
// 1,200, so their lookups span three batches of 500. It runs once with pipelined
// lookups and once with one GetTaskInfo per user, which must repair the same tasks.
func TestSweepJobBatched(t *testing.T) {
	const (
		users  = 1203
		cursor = 1200

		gone      = 0 // also 700 and 1199, in the second and third batch
		archived  = 1
		retrying  = 2
		scheduled = 3
		applied   = 4
	)
	goneUsers := []int{gone, 700, cursor - 1}

	tests := []struct {
		name    string
		batched bool
	}{
		{name: "pipelined lookups", batched: true},
		{name: "GetTaskInfo per user", batched: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := newStalledJob(t, users, cursor)

			s.failTasks(t, map[int]string{archived: "archived", retrying: "retry"})
			s.enqueue(t, scheduled, asynq.ProcessIn(time.Hour))
			rec, err := s.store.User(ctx, stalledJobID, sweepUserID(applied))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.store.MarkApplied(ctx, stalledJobID, rec, 1); err != nil {
				t.Fatal(err)
			}
			pendingTasks := 0
			for i := applied + 1; i < cursor; i++ {
				if i != 700 && i != cursor-1 {
					s.enqueue(t, i)
					pendingTasks++
				}
			}

			sweeper := &tasks.Sweeper{Store: s.store, Client: s.client, Inspector: s.inspector}
			var hook *roundTripHook
			if tt.batched {
				sweeper.Redis, hook = countingClient(t, s.rd)
			}
			repaired, err := sweeper.SweepJob(ctx, s.job)
			if err != nil {
				t.Fatalf("SweepJob: %v", err)
			}

			// Three gone tasks, one archived task and the lost fan-out task.
			if repaired != 5 {
				t.Errorf("SweepJob repaired %d, want 5", repaired)
			}
			want := map[int]string{
				gone: "pending", 700: "pending", cursor - 1: "pending",
				archived: "", retrying: "retry", scheduled: "scheduled", applied: "",
				5: "pending", 699: "pending", cursor: "", cursor + 1: "", cursor + 2: "",
			}
			got := map[int]string{}
			for i := range want {
				got[i] = s.taskState(t, i)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("task states by user index after the sweep (-want +got):\n%s", diff)
			}
			queueInfo, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			if wantPending := pendingTasks + len(goneUsers) + 1; queueInfo.Pending != wantPending {
				t.Errorf("queue has %d pending tasks, want %d: the earlier ones, the gone users' and the fan-out's", queueInfo.Pending, wantPending)
			}
			if _, err := s.inspector.GetTaskInfo(tasks.QueueDefault, stalledJobID); err != nil {
				t.Errorf("fan-out task of the job not enqueued again: %v", err)
			}

			failed, err := s.store.User(ctx, stalledJobID, sweepUserID(archived))
			if err != nil {
				t.Fatal(err)
			}
			if failed.State != results.UserFailed {
				t.Errorf("user with an archived task is %s, want %s", failed.State, results.UserFailed)
			}
			if want := "retries exhausted: Odin unreachable"; failed.Reason != want {
				t.Errorf("reason of the failed user = %q, want %q", failed.Reason, want)
			}
			if failed.Attempts != 1 {
				t.Errorf("attempts of the failed user = %d, want 1", failed.Attempts)
			}
			for _, i := range []int{gone, retrying, scheduled} {
				if rec, err := s.store.User(ctx, stalledJobID, sweepUserID(i)); err != nil || rec.State != results.UserPending {
					t.Errorf("user %d is %s (%v), want %s", i, rec.State, err, results.UserPending)
				}
			}

			if tt.batched {
				// 1,199 pending users within the cursor: batches of 500, 500 and 199.
				if n := hook.pipelines.Load(); n != 3 {
					t.Errorf("sweeper sent %d pipelines, want 3", n)
				}
				if n := hook.commands.Load(); n != 0 {
					t.Errorf("sweeper sent %d commands outside pipelines, want 0", n)
				}
			}
		})
	}
}

// BenchmarkSweepStalledJob sweeps a stalled job of 20,000 users whose tasks are all
// pending, so the sweep only looks them up and repairs nothing. With a real Redis
// (ODINRESET_TEST_REDIS_URL set) it also reports the commands the server processed per
// sweep. Run it with
//
//	ODINRESET_TEST_REDIS_URL=redis://127.0.0.1:6394/0 go test ./tasks/ -run '^$' -bench SweepStalledJob -benchtime 5x -count 3
//
// On a 2-vCPU Xeon VM with Redis 7.0.15 on loopback, a sweep with GetTaskInfo per user
// took 0.67 to 0.83 s for 80,121 commands (SISMEMBER, EVALSHA and the script's EXISTS and
// HMGET per user, so 40,000 round trips). The pipelined sweep took 0.05 to 0.07 s for
// 20,121 commands, of which the task lookups were 40 pipelines of 500 HGETs.
func BenchmarkSweepStalledJob(b *testing.B) {
	const users = 20_000
	s := newStalledJob(b, users, users)
	for i := range users {
		s.enqueue(b, i)
	}

	for _, bench := range []struct {
		name    string
		batched bool
	}{
		{name: "GetTaskInfo per user", batched: false},
		{name: "pipelined lookups", batched: true},
	} {
		b.Run(bench.name, func(b *testing.B) {
			sweeper := &tasks.Sweeper{Store: s.store, Client: s.client, Inspector: s.inspector}
			var hook *roundTripHook
			if bench.batched {
				sweeper.Redis, hook = countingClient(b, s.rd)
			}
			before := processedCommands(b, s.rd)

			b.ResetTimer()
			for range b.N {
				repaired, err := sweeper.SweepJob(b.Context(), s.job)
				if err != nil || repaired != 0 {
					b.Fatalf("SweepJob = %d, %v; want nothing to repair", repaired, err)
				}
			}
			b.StopTimer()

			if s.rd.Real {
				// The INFO call that reads the counter counts as one command.
				commands := processedCommands(b, s.rd) - before - 1
				b.ReportMetric(float64(commands)/float64(b.N), "commands/op")
			}
			if hook != nil {
				b.ReportMetric(float64(hook.pipelines.Load())/float64(b.N), "pipelines/op")
			}
		})
	}
}

// processedCommands returns the server's total_commands_processed, or 0 on miniredis,
// which has no INFO stats.
func processedCommands(tb testing.TB, rd *testredis.Redis) int64 {
	tb.Helper()
	if !rd.Real {
		return 0
	}
	info, err := rd.Client.Info(context.Background(), "stats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if value, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("INFO stats has no total_commands_processed")
	return 0
}

// TestSweepJobUnblocksTasks tampers with two users' tasks as an evicting Redis would: one
// hash loses its message, and one active task loses its lease entry. asynq recovers
// neither. The sweeper must enqueue the first anew and give the second an expired lease,
// so asynq's recoverer retries it.
func TestSweepJobUnblocksTasks(t *testing.T) {
	ctx := context.Background()
	s := newStalledJob(t, 3, 3)
	for i := range 3 {
		s.enqueue(t, i)
	}
	rdb := s.rd.Client
	prefix := "asynq:{" + tasks.QueueDefault + "}:"
	brokenID := tasks.UserTaskID(stalledJobID, sweepUserID(0))
	strandedID := tasks.UserTaskID(stalledJobID, sweepUserID(1))

	if err := rdb.HDel(ctx, prefix+"t:"+brokenID, "msg").Err(); err != nil {
		t.Fatal(err)
	}
	// An active task as asynq's dequeue leaves it, minus the lease entry.
	if err := rdb.LRem(ctx, prefix+"pending", 0, strandedID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, prefix+"active", strandedID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, prefix+"t:"+strandedID, "state", "active").Err(); err != nil {
		t.Fatal(err)
	}

	sweeper := &tasks.Sweeper{Store: s.store, Client: s.client, Inspector: s.inspector, Redis: rdb}
	repaired, err := sweeper.SweepJob(ctx, s.job)
	if err != nil {
		t.Fatalf("SweepJob: %v", err)
	}
	if repaired != 2 {
		t.Errorf("SweepJob repaired %d, want 2: the broken and the stranded task", repaired)
	}

	if got := s.taskState(t, 0); got != "pending" {
		t.Errorf("task with a lost message is %q after the sweep, want pending: enqueued anew", got)
	}
	if msg, err := rdb.HExists(ctx, prefix+"t:"+brokenID, "msg").Result(); err != nil || !msg {
		t.Errorf("task enqueued anew has no message (%v)", err)
	}
	score, err := rdb.ZScore(ctx, prefix+"lease", strandedID).Result()
	if err != nil {
		t.Fatalf("stranded task has no lease entry after the sweep: %v", err)
	}
	if score > float64(time.Now().Unix()) {
		t.Errorf("stranded task's lease ends at %v, want an expired lease for asynq's recoverer", score)
	}
	if got := s.taskState(t, 2); got != "pending" {
		t.Errorf("untouched task is %q after the sweep, want pending", got)
	}
}
