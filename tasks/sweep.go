package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/results"
)

// HandleError is the asynq.Config.ErrorHandler of the worker. When a reset:user task is
// about to be archived while its user is still pending, it records the user as failed so
// the job still completes. That happens when the handler could not record the failure
// itself on its last attempt, for example because Redis was briefly unreachable, and
// asynq's spare attempt failed too. asynq archives a task whose last attempt returns any
// error, a *WaitError included.
func (h *Handlers) HandleError(ctx context.Context, t *asynq.Task, err error) {
	if t.Type() != TypeUserReset || errors.Is(err, asynq.RevokeTask) {
		return
	}
	retried, maxRetry := retryCount(ctx)
	archiving := errors.Is(err, asynq.SkipRetry) || retried >= maxRetry
	if !archiving {
		return
	}

	var p UserResetPayload
	if decodeStrict(t.Payload(), &p) != nil || p.validate() != nil {
		return // a bad payload: nothing to record, the middleware logged it
	}
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rec, status, rerr := h.Store.UserWithJobStatus(recordCtx, p.JobID, p.UserID)
	if rerr != nil || rec.State != results.UserPending || status.State.Finished() || p.mismatch(status) != "" {
		// A task that does not match its job is not the user's own: that one still runs.
		return
	}
	_ = h.failAttempts(recordCtx, p, rec, "retries exhausted: "+odinReason(err), retried+1, err)
}

// Sweeper finds running jobs that stopped making progress and repairs them. A user whose
// task was lost is enqueued again, and one whose task asynq's crash recoverer archived
// without a handler run is recorded as failed. A fan-out whose task was lost is restarted.
// asynq's archive cannot be the list of failures: its error handler does not see
// crash-archived tasks and it keeps at most 9,999 tasks per queue.
type Sweeper struct {
	Store     *results.Store
	Client    Enqueuer
	Inspector *asynq.Inspector
	// Redis is a client of the Redis database that asynq uses, where a client of another
	// database would make every task look gone. With it the sweeper reads the task
	// states of 500 pending users in one pipelined round trip. When it is nil, the
	// sweeper calls Inspector.GetTaskInfo once per pending user, two round trips each.
	Redis redis.UniversalClient
	// StallAfter is how long a job may go without progress before it is inspected.
	// Default 3 minutes: longer than asynq's crash recovery of 1 to 2 minutes.
	StallAfter time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Paused reports a fleet pause (ratelimit.Limiter.Paused); nil means never paused.
	// While the fleet is paused no job makes progress, so the sweeper does not inspect
	// them: every job would look stalled, and each sweep would read every pending user's
	// task.
	Paused func(ctx context.Context) (remaining time.Duration, reason string, err error)
}

// SweepPayload is the payload of reset:sweep.
type SweepPayload struct {
	Tick int64 `json:"tick"`
}

// Tick enqueues one reset:sweep task per interval until ctx ends. Every worker runs a
// ticker; the TaskID names the tick, so the fleet enqueues one sweep per interval.
func (s *Sweeper) Tick(ctx context.Context, interval time.Duration, logger zerolog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			tick := now.Unix() / max(1, int64(interval/time.Second))
			task := asynq.NewTask(TypeSweep, fmt.Appendf(nil, `{"tick":%d}`, tick),
				asynq.TaskID(fmt.Sprintf("sweep:%d", tick)), asynq.Queue(QueueHigh),
				asynq.MaxRetry(0), asynq.Timeout(interval), asynq.Retention(2*interval))
			_, err := s.Client.EnqueueContext(ctx, task)
			if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && ctx.Err() == nil {
				logger.Warn().Err(err).Msg("could not enqueue the stalled-job sweep")
			}
		}
	}
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) stallAfter() time.Duration {
	if s.StallAfter > 0 {
		return s.StallAfter
	}
	return 3 * time.Minute
}

// HandleSweep inspects every running job that made no progress for StallAfter.
func (s *Sweeper) HandleSweep(ctx context.Context, _ *asynq.Task) error {
	log := zerolog.Ctx(ctx)
	if s.Paused != nil {
		remaining, reason, err := s.Paused(ctx)
		if err != nil {
			return err
		}
		if remaining > 0 {
			log.Debug().Dur("remaining_ms", remaining).Str("reason", reason).Msg("fleet paused; stalled-job sweep skipped")
			return nil
		}
	}
	jobs, err := s.Store.Jobs(ctx, 10_000)
	if err != nil {
		return err
	}
	for _, job := range jobs {
		if job.State != results.JobRunning && job.State != results.JobQueued {
			continue
		}
		changedAt, err := s.Store.NoteProgress(ctx, job.ID, job.Applied+job.Failed+job.Cursor+job.DeviceDone)
		if err != nil {
			return err
		}
		if s.now().Sub(changedAt) < s.stallAfter() {
			continue
		}
		repaired, err := s.SweepJob(ctx, job)
		if err != nil {
			log.Error().Err(err).Str("job_id", job.ID).Msg("sweep of a stalled job failed")
			continue
		}
		if repaired > 0 {
			log.Warn().Str("job_id", job.ID).Int("repaired", repaired).Msg("stalled job repaired")
		}
	}
	return nil
}

// SweepJob repairs one job now and returns how many tasks it enqueued again or users it
// recorded as failed.
func (s *Sweeper) SweepJob(ctx context.Context, job results.Job) (int, error) {
	queue, err := QueueFor(job.Priority)
	if err != nil {
		queue = QueueDefault
	}
	repaired := 0

	if !job.UsersLoaded || job.Cursor < job.Total {
		gone, err := s.taskGone(ctx, queue, job.ID)
		if err != nil {
			return repaired, err
		}
		if gone {
			if !job.UsersLoaded && !job.AllUsers {
				// The user list lived only in the lost task: nothing can resume it.
				if _, err := s.Store.Abort(ctx, job.ID, "cancelled by the sweeper: the fan-out task was lost before it stored the user list; submit the job again"); err != nil {
					return repaired, err
				}
				return repaired, EnqueueCompletion(ctx, s.Client, job.ID, queue)
			}
			task, err := NewResumeTask(job, queue)
			if err != nil {
				return repaired, err
			}
			if _, err := s.Client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				return repaired, err
			}
			repaired++
		}
		// Users past the cursor have no task yet: the fan-out enqueues them.
	}

	n, err := s.repairPendingUsers(ctx, job, queue)
	repaired += n
	if err != nil {
		return repaired, err
	}

	n, err = s.sweepDevices(ctx, job, queue)
	repaired += n
	return repaired, err
}

// repairPendingUsers runs repairUser's checks on each pending user among the first
// job.Cursor users, the ones the fan-out has enqueued. With a Redis client it looks the
// tasks up in batches of taskStateBatch (see taskBatch), and without one a user at a time.
func (s *Sweeper) repairPendingUsers(ctx context.Context, job results.Job, queue string) (int, error) {
	users := &taskBatch[results.UserRecord]{
		sweeper: s, queue: queue,
		taskID: func(rec results.UserRecord) string { return UserTaskID(job.ID, rec.UserID) },
		repair: func(rec results.UserRecord) (int, error) { return s.repairUser(ctx, job, queue, rec) },
	}
	limit := job.Cursor
	err := s.Store.ForEachUser(ctx, job.ID, func(rec results.UserRecord) error {
		if limit <= 0 {
			return errStopIteration
		}
		limit--
		if rec.State != results.UserPending {
			return nil
		}
		return users.add(ctx, rec)
	})
	if err != nil && !errors.Is(err, errStopIteration) {
		return users.repaired, err
	}
	err = users.flush(ctx)
	return users.repaired, err
}

var errStopIteration = errors.New("stop iteration")

// enqueueUser enqueues a user's reset:user task again. A TaskID conflict means the task
// is queued already, which is what the caller wants.
func (s *Sweeper) enqueueUser(ctx context.Context, job results.Job, queue, userID string) error {
	return enqueueUserTask(ctx, s.Client, UserResetPayload{
		JobID: job.ID, UserID: userID, Type: job.Type,
		ServiceProviderID: job.ServiceProviderID, GroupID: job.GroupID,
	}, queue)
}

// enqueueUserTask enqueues one user's reset:user task. A TaskID conflict means the task
// is queued already, which is what the caller wants.
func enqueueUserTask(ctx context.Context, client Enqueuer, p UserResetPayload, queue string) error {
	task, err := NewUserResetTask(p, queue)
	if err != nil {
		return err
	}
	if _, err := client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue reset of user %q: %w", p.UserID, err)
	}
	return nil
}

// repairUser enqueues a pending user's task again when it is gone, and records the user
// as failed when asynq archived its task (its retry budget is spent).
func (s *Sweeper) repairUser(ctx context.Context, job results.Job, queue string, rec results.UserRecord) (int, error) {
	taskID := UserTaskID(job.ID, rec.UserID)
	info, err := s.Inspector.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		if err := s.enqueueUser(ctx, job, queue, rec.UserID); err != nil {
			return 0, err
		}
		return 1, nil
	case err != nil:
		return 0, err
	case info.State == asynq.TaskStateArchived:
		reason := "retries exhausted"
		if info.LastErr != "" {
			reason += ": " + info.LastErr
		}
		next := rec
		next.Unconfirmed = rec.Secret != ""
		completed, err := s.Store.MarkFailed(ctx, job.ID, next, reason, info.Retried+1)
		if err != nil && !errors.Is(err, results.ErrConflict) {
			return 0, err
		}
		_ = s.Inspector.DeleteTask(queue, taskID)
		if completed {
			task, err := NewCompleteTask(job.ID, queue)
			if err == nil {
				_, _ = s.Client.EnqueueContext(ctx, task)
			}
		}
		return 1, nil
	}
	// NOTE: without a Redis client the sweeper cannot see a task left active without its
	// lease entry, or a task hash without its message, for example after Redis evicted
	// keys. asynq never recovers them, so their job stays running. The worker passes its
	// client, and its start-up check for maxmemory-policy noeviction prevents eviction.
	return 0, nil
}

func (s *Sweeper) taskGone(_ context.Context, queue, taskID string) (bool, error) {
	info, err := s.Inspector.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		return true, nil
	case err != nil:
		return false, err
	case info.State == asynq.TaskStateArchived:
		if err := s.Inspector.DeleteTask(queue, taskID); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}
