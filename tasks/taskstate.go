package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// taskStateBatch is how many tasks the sweeper looks up in one pipelined round trip.
const taskStateBatch = 500

// asynqTaskKey returns the key of the hash in which asynq v0.25.1 stores a task
// (internal/base.TaskKey). The hash's "state" field contains the state's name, the string
// asynq.TaskState.String returns. This layout is internal to asynq, so an upgrade that
// changes it makes every task look gone. TestSweepJobBatched then fails.
func asynqTaskKey(queue, taskID string) string {
	return "asynq:{" + queue + "}:t:" + taskID
}

// readTaskStates reads the state of each of the given tasks of queue in one pipelined
// round trip, and returns the states in the order of taskIDs. A state is asynq's name for
// it ("pending", "archived", ...), and "" means the task does not exist. All keys of one
// queue share the hash tag {queue}, so a Redis Cluster client sends the pipeline to one
// node.
func readTaskStates(ctx context.Context, rdb redis.UniversalClient, queue string, taskIDs []string) ([]string, error) {
	if len(taskIDs) == 0 {
		return nil, nil
	}

	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(taskIDs))
	for i, id := range taskIDs {
		cmds[i] = pipe.HGet(ctx, asynqTaskKey(queue, id), "state")
	}
	// Exec returns the first failed command's error, and a missing task's redis.Nil
	// counts as one, so each command is checked below instead.
	_, _ = pipe.Exec(ctx)

	states := make([]string, len(taskIDs))
	for i, cmd := range cmds {
		state, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			// The task is gone: states[i] stays "".
		case err != nil:
			return nil, fmt.Errorf("read state of task %q in queue %s: %w", taskIDs[i], queue, err)
		default:
			states[i] = state
		}
	}
	return states, nil
}

// taskBatch collects items of a stalled job whose tasks the sweeper may have to repair,
// and passes to repair only those whose task is gone or archived. It reads the task states
// taskStateBatch at a time. Without a Redis client every item goes to repair, which then
// looks its task up alone.
type taskBatch[T any] struct {
	sweeper  *Sweeper
	queue    string
	taskID   func(T) string
	repair   func(T) (int, error)
	items    []T
	repaired int
}

// add queues item and repairs the queued items once taskStateBatch are queued.
func (b *taskBatch[T]) add(ctx context.Context, item T) error {
	b.items = append(b.items, item)
	if len(b.items) < taskStateBatch {
		return nil
	}
	return b.flush(ctx)
}

// flush repairs the queued items whose task is gone or archived.
func (b *taskBatch[T]) flush(ctx context.Context) error {
	items := b.items
	b.items = b.items[:0]
	if len(items) == 0 {
		return nil
	}

	var states []string
	if b.sweeper.Redis != nil {
		taskIDs := make([]string, len(items))
		for i, item := range items {
			taskIDs[i] = b.taskID(item)
		}
		var err error
		if states, err = readTaskStates(ctx, b.sweeper.Redis, b.queue, taskIDs); err != nil {
			return err
		}
	}
	for i, item := range items {
		if states != nil && states[i] != "" && states[i] != asynq.TaskStateArchived.String() {
			continue // the task is alive
		}
		n, err := b.repair(item)
		b.repaired += n
		if err != nil {
			return err
		}
	}
	return nil
}

// queueHasWork reports whether queue has tasks pending, running or waiting to retry, from
// asynq v0.25.1's keys of the queue (internal/base: PendingKey, LeaseKey, RetryKey). A
// running task counts by its lease, which expires 30 s after its worker stops extending
// it, so an entry left in the active list by a lost task does not count forever. All three
// keys share the hash tag {queue}, so one pipeline reaches one Redis Cluster node.
func queueHasWork(ctx context.Context, rdb redis.UniversalClient, queue string) (bool, error) {
	prefix := "asynq:{" + queue + "}:"
	pipe := rdb.Pipeline()
	pending := pipe.LLen(ctx, prefix+"pending")
	running := pipe.ZCount(ctx, prefix+"lease", strconv.FormatInt(time.Now().Unix(), 10), "+inf")
	retry := pipe.ZCard(ctx, prefix+"retry")
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("read the size of queue %s: %w", queue, err)
	}
	return pending.Val()+running.Val()+retry.Val() > 0, nil
}
