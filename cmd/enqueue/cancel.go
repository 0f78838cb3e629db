package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// Bounds of the queued-task cleanup of a cancelled job. The workers revoke a cancelled
// job's tasks anyway, so the cleanup only saves them work and may stop early.
const (
	cleanupBudget      = time.Minute
	cleanupConcurrency = 8
	cleanupChunk       = 500
)

func (a *app) cmdCancel(ctx context.Context, args []string) error {
	fs := newFlagSet("cancel", cancelUsage, cancelExamples, a.stdout)
	redisURL := fs.String("redis-url", "", redisURLHelp)
	requestedBy := fs.String("requested-by", "", "who cancels the job, stored with it (default: the OS user name)")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	jobID, err := oneJobID(positional, "cancel")
	if err != nil {
		return err
	}
	if *requestedBy == "" {
		*requestedBy = osUserName(a.getenv)
	}
	if problem := checkRequestedBy(*requestedBy); problem != "" {
		return usageErrorf("%s", problem)
	}

	c, err := a.connect(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer c.close()
	store := a.metaStore(c)

	before, _, err := a.readJob(ctx, c, store, jobID)
	if err != nil {
		return err
	}
	job, err := store.Cancel(ctx, jobID)
	switch {
	case errors.Is(err, results.ErrJobFinished):
		fmt.Fprintf(a.stdout, "job %s had already completed: %d applied, %d failed of %d; nothing to cancel\n",
			jobID, before.Applied, before.Failed, before.Total)
		return nil
	case errors.Is(err, results.ErrNotFound):
		return jobNotFound(c, jobID)
	case err != nil:
		return c.wrap(err)
	}
	if before.State == results.JobCancelled {
		fmt.Fprintf(a.stderr, "enqueue: job %s was cancelled before\n", jobID)
	} else {
		_ = store.SetAudit(ctx, jobID, map[string]string{
			"cancelled_by": *requestedBy,
			"cancelled_at": a.now().UTC().Format(time.RFC3339),
		})
	}

	removed, cleanupErr := a.removeQueuedTasks(ctx, c.inspector, store, job)
	if before.State != results.JobCancelled {
		// The workers write the audit line and post the job's completion callback, with
		// state "cancelled", so a system waiting for it hears that the job ended.
		queue, qerr := tasks.QueueFor(job.Priority)
		if qerr != nil {
			queue = tasks.QueueDefault
		}
		if err := tasks.EnqueueCompletion(ctx, c.client, jobID, queue); err != nil {
			fmt.Fprintf(a.stderr, "enqueue: warning: the job is cancelled, but its completion (audit line and callback) could not be queued: %s\n", c.scrub(err.Error()))
		}
	}
	if cleanupErr != nil {
		fmt.Fprintf(a.stderr, "enqueue: warning: removing the job's queued tasks stopped after %d: %s; the workers skip the rest because the job is cancelled\n",
			removed, c.scrub(cleanupErr.Error()))
	}

	if job, err = store.Job(ctx, jobID); err != nil {
		return c.wrap(err)
	}
	tasksRemoved := plural(removed, "queued task", "queued tasks")
	if !job.UsersLoaded {
		// No user task exists before the user list is stored, so no reset is in flight.
		fmt.Fprintf(a.stdout, "cancelled job %s before a worker stored its user list: no user was reset; removed %s\n",
			jobID, tasksRemoved)
		return nil
	}
	fmt.Fprintf(a.stdout, "cancelled job %s: %d applied, %d failed, %d not reset of %d; removed %s\n",
		jobID, job.Applied, job.Failed, job.Pending(), job.Total, tasksRemoved)
	fmt.Fprintf(a.stderr, "enqueue: a reset already in flight may still be applied: \"enqueue status %s\" shows the final counts, and \"enqueue results %s\" the values that were set\n",
		jobID, jobID)
	return nil
}

// removeQueuedTasks deletes the job's reset:bulk task and the reset:user tasks of its
// pending users while they wait in the job's queue (pending, scheduled or retry). A task
// a worker has picked up is left alone, because its handler reads the cancelled state and
// returns asynq.RevokeTask, or finishes a reset that was already in flight. It reads user states
// only, never secrets, and stops after cleanupBudget.
func (a *app) removeQueuedTasks(ctx context.Context, inspector *asynq.Inspector, store *results.Store, job results.Job) (int, error) {
	queue, err := tasks.QueueFor(job.Priority)
	if err != nil {
		queue = tasks.QueueDefault
	}
	ctx, cancel := context.WithTimeout(ctx, cleanupBudget)
	defer cancel()

	var removed atomic.Int64
	group, groupCtx := errgroup.WithContext(ctx)
	group.SetLimit(cleanupConcurrency)
	remove := func(taskID string) {
		group.Go(func() error {
			if err := groupCtx.Err(); err != nil {
				return err
			}
			ok, err := deleteIfWaiting(inspector, queue, taskID)
			if ok {
				removed.Add(1)
			}
			return err
		})
	}

	remove(job.ID)
	for start := 0; start < job.Cursor && groupCtx.Err() == nil; start += cleanupChunk {
		ids, err := store.UserIDs(groupCtx, job.ID, start, min(cleanupChunk, job.Cursor-start))
		if err != nil {
			group.Wait()
			return int(removed.Load()), err
		}
		recs, err := store.Users(groupCtx, job.ID, ids)
		if err != nil {
			group.Wait()
			return int(removed.Load()), err
		}
		for _, rec := range recs {
			if rec.State == results.UserPending {
				remove(tasks.UserTaskID(job.ID, rec.UserID))
			}
		}
	}
	err = group.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the cleanup budget of %s ran out", formatDuration(cleanupBudget))
	}
	return int(removed.Load()), err
}

// deleteIfWaiting deletes a task that is pending, scheduled or waiting for a retry, and
// reports whether it did. A missing task, or one that became active meanwhile, is no
// error.
func deleteIfWaiting(inspector *asynq.Inspector, queue, taskID string) (bool, error) {
	info, err := inspector.GetTaskInfo(queue, taskID)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry:
	default:
		return false, nil
	}
	// DeleteTask fails when a worker took the task between the two calls. The handler
	// then revokes it, so that failure is not reported.
	return inspector.DeleteTask(queue, taskID) == nil, nil
}
