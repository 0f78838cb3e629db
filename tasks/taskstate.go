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

// States that readTaskStates reports besides asynq's own names. Only a task hash changed
// outside asynq, by hand or by an evicting Redis, gets into them.
const (
	// taskBroken is a task hash without its message: asynq's recoverer skips it, and its
	// TaskID blocks a new enqueue.
	taskBroken = "broken"
	// taskStranded is an active task without a lease entry, which asynq's recoverer
	// never finds.
	taskStranded = "stranded"
)

// readTaskStates reads the state of each of the given tasks of queue in one pipelined
// round trip, and returns the states in the order of taskIDs. A state is asynq's name for
// it ("pending", "archived", ...), taskBroken or taskStranded, and "" means the task does
// not exist. All keys of one queue share the hash tag {queue}, so a Redis Cluster client
// sends the pipeline to one node.
func readTaskStates(ctx context.Context, rdb redis.UniversalClient, queue string, taskIDs []string) ([]string, error) {
	if len(taskIDs) == 0 {
		return nil, nil
	}

	pipe := rdb.Pipeline()
	type lookup struct {
		state *redis.StringCmd
		msg   *redis.BoolCmd
		lease *redis.FloatCmd
	}
	lookups := make([]lookup, len(taskIDs))
	for i, id := range taskIDs {
		key := asynqTaskKey(queue, id)
		lookups[i] = lookup{
			state: pipe.HGet(ctx, key, "state"),
			msg:   pipe.HExists(ctx, key, "msg"),
			lease: pipe.ZScore(ctx, asynqQueueKey(queue, "lease"), id),
		}
	}
	// Exec returns the first failed command's error, and a missing task's redis.Nil
	// counts as one, so each command is checked below instead.
	_, _ = pipe.Exec(ctx)

	states := make([]string, len(taskIDs))
	for i, l := range lookups {
		state, err := l.state.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // the task is gone: states[i] stays ""
		case err != nil:
			return nil, fmt.Errorf("read state of task %q in queue %s: %w", taskIDs[i], queue, err)
		}
		hasMsg, err := l.msg.Result()
		if err != nil {
			return nil, fmt.Errorf("read task %q in queue %s: %w", taskIDs[i], queue, err)
		}
		_, leaseErr := l.lease.Result()
		if leaseErr != nil && !errors.Is(leaseErr, redis.Nil) {
			return nil, fmt.Errorf("read the lease of task %q in queue %s: %w", taskIDs[i], queue, leaseErr)
		}
		switch {
		case !hasMsg:
			states[i] = taskBroken
		case state == asynq.TaskStateActive.String() && errors.Is(leaseErr, redis.Nil):
			states[i] = taskStranded
		default:
			states[i] = state
		}
	}
	return states, nil
}

// asynqQueueKey returns the key of one of queue's sets in asynq v0.25.1, such as
// "pending", "active" or "lease" (internal/base.QueueKeyPrefix).
func asynqQueueKey(queue, set string) string {
	return "asynq:{" + queue + "}:" + set
}

// unblockTaskScript fixes a broken or stranded task, checking its state again first.
// A broken task is removed from every list of its queue and its hash deleted, so the
// caller can enqueue it anew. A stranded task gets an expired lease, so asynq's
// recoverer retries it within a minute, as after a worker crash. It returns 1 when it
// changed something.
//
//	KEYS[1] task hash, KEYS[2] active list, KEYS[3] pending list, KEYS[4] lease set,
//	KEYS[5] scheduled set, KEYS[6] retry set. ARGV[1] task ID.
var unblockTaskScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'msg') == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('LREM', KEYS[3], 0, ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
  return 1
end
if redis.call('HGET', KEYS[1], 'state') == 'active' and not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  redis.call('ZADD', KEYS[4], 0, ARGV[1])
  return 1
end
return 0
`)

// unblockTask runs unblockTaskScript for one task of queue.
func unblockTask(ctx context.Context, rdb redis.UniversalClient, queue, taskID string) error {
	keys := []string{
		asynqTaskKey(queue, taskID),
		asynqQueueKey(queue, "active"), asynqQueueKey(queue, "pending"), asynqQueueKey(queue, "lease"),
		asynqQueueKey(queue, "scheduled"), asynqQueueKey(queue, "retry"),
	}
	if err := unblockTaskScript.Run(ctx, rdb, keys, taskID).Err(); err != nil {
		return fmt.Errorf("repair task %q of queue %s: %w", taskID, queue, err)
	}
	return nil
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

// flush repairs the queued items whose task is gone or archived. It first unblocks broken
// tasks, which then count as gone, and stranded ones, which asynq's recoverer then takes.
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
		if states != nil {
			switch states[i] {
			case taskBroken, taskStranded:
				if err := unblockTask(ctx, b.sweeper.Redis, b.queue, b.taskID(item)); err != nil {
					return err
				}
				if states[i] == taskStranded {
					b.repaired++ // asynq's recoverer takes it from here
					continue
				}
			case "", asynq.TaskStateArchived.String():
			default:
				continue // the task is alive
			}
		}
		n, err := b.repair(item)
		b.repaired += n
		if err != nil {
			return err
		}
	}
	return nil
}

// queueHasWorkScript reports 1 when a queue has a task pending, a task running under a
// live lease, or a task other than a job completion waiting to retry. A completion posts
// the job's callback and calls no Odin API, and a dead receiver keeps it retrying for
// about 25 minutes.
//
//	KEYS[1] pending list, KEYS[2] lease set, KEYS[3] retry set. ARGV[1] now, Unix seconds.
var queueHasWorkScript = redis.NewScript(`
if redis.call('LLEN', KEYS[1]) > 0 or redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf') > 0 then
  return 1
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(id, -9) ~= '#complete' then
    return 1
  end
end
return 0
`)

// queueHasWork reports whether queue has tasks pending, running or waiting to retry,
// leaving out job completions that wait to retry. It reads asynq v0.25.1's keys of the
// queue (internal/base: PendingKey, LeaseKey, RetryKey). A running task counts by its
// lease, which expires 30 s after its worker stops extending it, so an entry left in the
// active list by a lost task does not count forever. All three keys share the hash tag
// {queue}, so the script runs on one Redis Cluster node.
func queueHasWork(ctx context.Context, rdb redis.UniversalClient, queue string) (bool, error) {
	keys := []string{asynqQueueKey(queue, "pending"), asynqQueueKey(queue, "lease"), asynqQueueKey(queue, "retry")}
	busy, err := queueHasWorkScript.Run(ctx, rdb, keys, time.Now().Unix()).Int()
	if err != nil {
		return false, fmt.Errorf("read the size of queue %s: %w", queue, err)
	}
	return busy == 1, nil
}

// Retrying is the part of a job that waits in asynq's retry set: after an Odin error, or
// to wait for the rate limiter, a fleet pause or default-priority jobs.
type Retrying struct {
	// Users counts the job's reset:user tasks there.
	Users int
	// Next is the earliest time one of them runs again, zero when Users is 0.
	Next time.Time
	// FanOut is when the job's reset:bulk task runs again, zero when it does not wait
	// there.
	FanOut time.Time
}

// retryScanCount is the COUNT hint of each ZSCAN of ReadRetrying.
const retryScanCount = 1000

// ReadRetrying reads the job's tasks in the retry set of queue (asynq v0.25.1's
// internal/base.RetryKey, scored by the Unix second the task runs again). It scans the
// whole set, about 100 round trips for 100,000 waiting tasks of all jobs.
func ReadRetrying(ctx context.Context, rdb redis.UniversalClient, jobID, queue string) (Retrying, error) {
	var r Retrying
	key := asynqQueueKey(queue, "retry")
	wrap := func(err error) error { return fmt.Errorf("read the retry set of queue %s: %w", queue, err) }

	// The reset:bulk task's ID is the job ID.
	switch seconds, err := rdb.ZScore(ctx, key, jobID).Result(); {
	case err == nil:
		r.FanOut = time.Unix(int64(seconds), 0)
	case !errors.Is(err, redis.Nil):
		return Retrying{}, wrap(err)
	}

	// Job IDs contain no glob character (results.ValidateJobID), and a user task's ID
	// is the job ID, a slash and the user ID (UserTaskID).
	iter := rdb.ZScan(ctx, key, 0, UserTaskID(jobID, "*"), retryScanCount).Iterator()
	for iter.Next(ctx) {
		// ZSCAN returns members and scores in turn.
		if !iter.Next(ctx) {
			break
		}
		seconds, err := strconv.ParseFloat(iter.Val(), 64)
		if err != nil {
			return Retrying{}, wrap(fmt.Errorf("score %q is not a number", iter.Val()))
		}
		at := time.Unix(int64(seconds), 0)
		if r.Users == 0 || at.Before(r.Next) {
			r.Next = at
		}
		r.Users++
	}
	if err := iter.Err(); err != nil {
		return Retrying{}, wrap(err)
	}
	return r, nil
}
