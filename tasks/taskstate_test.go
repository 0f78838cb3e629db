package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
)

// TestQueueHasWork checks which entries of a queue count as work for the low-queue gate.
// An ID left in the active list with an expired lease, as a lost task leaves it, must not.
func TestQueueHasWork(t *testing.T) {
	const prefix = "asynq:{" + QueueDefault + "}:"
	now := time.Now().Unix()
	tests := []struct {
		name  string
		setup func(rdb *redis.Client)
		want  bool
	}{
		{name: "empty", setup: func(*redis.Client) {}, want: false},
		{name: "pending", setup: func(rdb *redis.Client) { rdb.LPush(t.Context(), prefix+"pending", "t1") }, want: true},
		{name: "running", setup: func(rdb *redis.Client) {
			rdb.LPush(t.Context(), prefix+"active", "t1")
			rdb.ZAdd(t.Context(), prefix+"lease", redis.Z{Score: float64(now + 30), Member: "t1"})
		}, want: true},
		{name: "active with an expired lease", setup: func(rdb *redis.Client) {
			rdb.LPush(t.Context(), prefix+"active", "t1")
			rdb.ZAdd(t.Context(), prefix+"lease", redis.Z{Score: float64(now - 600), Member: "t1"})
		}, want: false},
		{name: "waiting to retry", setup: func(rdb *redis.Client) {
			rdb.ZAdd(t.Context(), prefix+"retry", redis.Z{Score: float64(now + 5), Member: "t1"})
		}, want: true},
		{name: "only completions waiting to retry", setup: func(rdb *redis.Client) {
			rdb.ZAdd(t.Context(), prefix+"retry", redis.Z{Score: float64(now + 60), Member: CompleteTaskID("job1")})
			rdb.ZAdd(t.Context(), prefix+"retry", redis.Z{Score: float64(now + 90), Member: CompleteTaskID("job2")})
		}, want: false},
		{name: "a user task among completions", setup: func(rdb *redis.Client) {
			rdb.ZAdd(t.Context(), prefix+"retry", redis.Z{Score: float64(now + 60), Member: CompleteTaskID("job1")})
			rdb.ZAdd(t.Context(), prefix+"retry", redis.Z{Score: float64(now + 90), Member: UserTaskID("job2", "u@x")})
		}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := testredis.New(t)
			tt.setup(rd.Client)
			got, err := queueHasWork(t.Context(), rd.Client, QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("queueHasWork = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReadRetrying puts tasks in asynq's retry set through a real asynq server whose
// handler fails, so the test also guards the retry set's key and scores.
func TestReadRetrying(t *testing.T) {
	rd := testredis.New(t)
	const retryIn = time.Hour
	srv := asynq.NewServer(rd.Opt, asynq.Config{
		Concurrency: 4, Queues: map[string]int{QueueDefault: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return retryIn },
		Logger:         quietLogger{}, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return errors.New("Odin is down") })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	client := asynq.NewClient(rd.Opt)
	t.Cleanup(func() { client.Close() })
	ids := []string{UserTaskID("job-a", "u1@example.com"), UserTaskID("job-a", "u2@example.com"),
		UserTaskID("job-ab", "u3@example.com"), DeviceStepTaskID("job-a", "lobby"), "job-a"}
	before := time.Now()
	for _, id := range ids {
		if _, err := client.Enqueue(asynq.NewTask("test:fail", nil), asynq.TaskID(id), asynq.Queue(QueueDefault), asynq.MaxRetry(5)); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := asynq.NewInspectorFromRedisClient(rd.Client).GetQueueInfo(QueueDefault)
		if err == nil && info.Retry == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks in the retry set: %+v, %v; want %d", info, err, len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}

	got, err := ReadRetrying(t.Context(), rd.Client, "job-a", QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if got.Users != 2 {
		t.Errorf("Users = %d, want 2: the user tasks of job-a only", got.Users)
	}
	earliest, latest := before.Add(retryIn).Truncate(time.Second), time.Now().Add(retryIn)
	if got.Next.Before(earliest) || got.Next.After(latest) {
		t.Errorf("Next = %v, want about an hour from now", got.Next)
	}
	if got.FanOut.Before(earliest) || got.FanOut.After(latest) {
		t.Errorf("FanOut = %v, want about an hour from now: the job's reset:bulk task waits too", got.FanOut)
	}

	none, err := ReadRetrying(t.Context(), rd.Client, "job-c", QueueDefault)
	if err != nil || none != (Retrying{}) {
		t.Errorf("job without retrying tasks: %+v, %v; want none", none, err)
	}
}

type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}
