package tasks

import (
	"testing"
	"time"

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
