package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// tasksInFlight returns the IDs of the job's tasks that asynq still holds in a state
// other than completed or archived: its fan-out task in any such state, and its per-user
// and device tasks that a worker is running. A cancelled job's waiting per-user tasks are
// not listed: cancel removed them, and a worker revokes any it missed without calling Odin.
func tasksInFlight(inspector *asynq.Inspector, job results.Job) ([]string, error) {
	queue, err := tasks.QueueFor(job.Priority)
	if err != nil {
		queue = tasks.QueueDefault
	}
	var busy []string
	info, err := inspector.GetTaskInfo(queue, job.ID)
	switch {
	case errors.Is(err, asynq.ErrQueueNotFound):
		return nil, nil // nothing ever ran in the job's queue
	case errors.Is(err, asynq.ErrTaskNotFound):
		// The fan-out finished and was not kept; per-user tasks may still run.
	case err != nil:
		return nil, err
	case info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived:
		busy = append(busy, job.ID+" ("+info.State.String()+")")
	}
	for page := 1; ; page++ {
		active, err := inspector.ListActiveTasks(queue, asynq.Page(page), asynq.PageSize(500))
		if err != nil {
			return nil, err
		}
		for _, t := range active {
			if strings.HasPrefix(t.ID, job.ID+"/") || strings.HasPrefix(t.ID, job.ID+"#") {
				busy = append(busy, t.ID+" (active)")
			}
		}
		if len(active) < 500 {
			return busy, nil
		}
	}
}

// cmdResults prints a job's rows (the new values and the errors) and optionally deletes
// the record afterwards.
func (a *app) cmdResults(ctx context.Context, args []string) error {
	fs := newFlagSet("results", resultsUsage, resultsExamples, a.stdout)
	redisURL := fs.String("redis-url", "", redisURLHelp)
	format := fs.String("format", "json", "output format, json or csv")
	out := fs.String("out", "", "write the results to this `file` (mode 0600, replaced atomically) instead of standard output")
	del := fs.Bool("delete", false, "delete the job's record after the results were written; only for a finished job")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	jobID, err := oneJobID(positional, "results")
	if err != nil {
		return err
	}
	if problem := checkFormat(*format); problem != "" {
		return usageErrorf("%s", problem)
	}
	if *out != "" {
		if problem := checkOutPath(*out); problem != "" {
			return usageErrorf("%s", problem)
		}
	}
	sealer, err := a.resultsSealer()
	if err != nil {
		return err
	}

	c, err := a.connect(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer c.close()
	store := a.secretStore(c, sealer)

	job, _, err := a.readJob(ctx, c, store, jobID)
	if err != nil {
		return err
	}
	if *del && !job.State.Finished() {
		return usageErrorf("job %s is %s: --delete removes only a finished job's record, because the workers still write to it; wait for it, or cancel it first with: enqueue cancel %s",
			jobID, job.State, jobID)
	}
	if *del {
		busy, err := tasksInFlight(c.inspector, job)
		if err != nil {
			return c.wrap(fmt.Errorf("check for tasks of job %s still on the workers: %w", jobID, err))
		}
		if len(busy) > 0 {
			are := "are"
			if len(busy) == 1 {
				are = "is"
			}
			return usageErrorf("job %s is %s, but %d of its tasks %s still on the workers (%s): a reset in flight may still be applied, and a fan-out that runs again would start the job anew without its record; run this again once they are gone (\"enqueue status %s\" shows the final counts)",
				jobID, job.State, len(busy), are, strings.Join(busy[:min(3, len(busy))], ", "), jobID)
		}
	}
	if err := a.writeResults(ctx, store, jobID, *format, *out); err != nil {
		return c.wrap(fmt.Errorf("read the results of job %s: %w", jobID, err))
	}

	switch {
	case !job.State.Finished() && !job.UsersLoaded:
		fmt.Fprintf(a.stderr, "enqueue: job %s is %s: no worker has stored its user list yet, so there are no rows; run this again when it has finished\n",
			jobID, job.State)
	case !job.State.Finished():
		fmt.Fprintf(a.stderr, "enqueue: job %s is %s: %s not reset yet and their rows say so; run this again when it has finished\n",
			jobID, job.State, plural(job.Pending(), "user is", "users are"))
	}
	if !job.UsersLoaded && job.State.Finished() {
		fmt.Fprintf(a.stderr, "enqueue: job %s was %s before a worker stored its user list: no user was reset, so there are no rows\n",
			jobID, job.State)
	}
	if *out != "" {
		fmt.Fprintf(a.stderr, "enqueue: wrote the results of job %s to %s\n", jobID, *out)
	}
	if *del {
		if err := store.Delete(ctx, jobID); err != nil {
			return c.wrap(fmt.Errorf("the results were written, but deleting the record failed: %w", err))
		}
		fmt.Fprintf(a.stderr, "enqueue: deleted the record of job %s\n", jobID)
	}
	if !job.State.Finished() {
		// Results of a running job are partial: not every user is applied (exit 1).
		return errSomeFailed
	}
	return finishedOutcome(job)
}
