package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func (a *app) cmdStatus(ctx context.Context, args []string) error {
	fs := newFlagSet("status", statusUsage, statusExamples, a.stdout)
	redisURL := fs.String("redis-url", "", redisURLHelp)
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	watch := fs.Bool("watch", false, "redraw the status until the job finishes (with --json: one JSON object per line on each change)")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	jobID, err := oneJobID(positional, "status")
	if err != nil {
		return err
	}

	c, err := a.connect(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer c.close()
	store := a.metaStore(c)

	if *watch {
		return a.watchStatus(ctx, c, store, jobID, *asJSON)
	}
	job, audit, err := a.readJob(ctx, c, store, jobID)
	if err != nil {
		return err
	}
	if err := a.printJob(job, audit, readRetrying(ctx, c, job), *asJSON); err != nil {
		return err
	}
	return finishedOutcome(job)
}

// readRetrying returns the part of an unfinished job that waits in asynq's retry set. A
// failed read returns none: the rest of the status is still worth printing.
func readRetrying(ctx context.Context, c *redisConn, job results.Job) tasks.Retrying {
	if job.State.Finished() {
		return tasks.Retrying{}
	}
	queue, err := tasks.QueueFor(job.Priority)
	if err != nil {
		return tasks.Retrying{}
	}
	retrying, err := tasks.ReadRetrying(ctx, c.rdb, job.ID, queue)
	if err != nil {
		return tasks.Retrying{}
	}
	return retrying
}

// oneJobID returns the single positional argument of a command that takes a job ID.
func oneJobID(positional []string, command string) (string, error) {
	switch len(positional) {
	case 0:
		return "", usageErrorf("missing job ID: use enqueue %s JOB (enqueue list shows recent jobs)", command)
	case 1:
	default:
		return "", usageErrorf("too many arguments %q: enqueue %s takes one job ID", positional, command)
	}
	if err := results.ValidateJobID(positional[0]); err != nil {
		return "", usageErrorf("%v", err)
	}
	return positional[0], nil
}

// readJob returns the job and its audit fields, or a usage error when it does not exist.
func (a *app) readJob(ctx context.Context, c *redisConn, store *results.Store, jobID string) (results.Job, map[string]string, error) {
	job, err := store.Job(ctx, jobID)
	if errors.Is(err, results.ErrNotFound) {
		return job, nil, jobNotFound(c, jobID)
	}
	if err != nil {
		return job, nil, c.wrap(err)
	}
	audit, err := store.AuditFields(ctx, jobID)
	if err != nil {
		return job, nil, c.wrap(err)
	}
	return job, audit, nil
}

func jobNotFound(c *redisConn, jobID string) error {
	return usageErrorf("job %s not found in Redis at %s: check the ID with \"enqueue list\"; a record is removed when its result TTL passes or by \"enqueue results --delete\"",
		jobID, c.where)
}

func (a *app) printJob(job results.Job, audit map[string]string, retrying tasks.Retrying, asJSON bool) error {
	if !asJSON {
		printStatus(a.stdout, job, audit, retrying, a.now())
		return nil
	}
	b, err := json.MarshalIndent(newJobView(job, audit, a.now()).withRetrying(job, retrying, a.now()), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, string(b))
	return err
}

// finishedOutcome returns errSomeFailed for a finished job in which not every user was
// applied, so scripts can tell from the exit code.
func finishedOutcome(job results.Job) error {
	if job.State.Finished() && !allApplied(job) {
		return errSomeFailed
	}
	return nil
}

// watchStatus redraws the status until the job finishes or ctx ends. On a terminal it
// redraws in place at every poll. Elsewhere it prints the status again only when the
// state, the counters or the reason change.
func (a *app) watchStatus(ctx context.Context, c *redisConn, store *results.Store, jobID string, asJSON bool) error {
	ticker := time.NewTicker(a.pollInterval)
	defer ticker.Stop()

	var last results.Job
	var failingSince time.Time
	for first := true; ; first = false {
		job, audit, err := a.readJob(ctx, c, store, jobID)
		switch {
		case err != nil && (first || exitCode(err) == exitUsage):
			return err
		case err != nil && ctx.Err() == nil:
			if failingSince.IsZero() {
				failingSince = a.now()
			}
			if a.now().Sub(failingSince) > redisOutageLimit {
				return err
			}
		case err == nil:
			failingSince = time.Time{}
			retrying := func() tasks.Retrying { return readRetrying(ctx, c, job) }
			if err := a.drawWatch(job, audit, retrying, last, first, asJSON); err != nil {
				return err
			}
			last = job
			if job.State.Finished() {
				return finishedOutcome(job)
			}
		}

		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// drawWatch draws one update of status --watch. retrying scans asynq's retry set, so it
// runs only for an update that is drawn.
func (a *app) drawWatch(job results.Job, audit map[string]string, retrying func() tasks.Retrying, last results.Job, first, asJSON bool) error {
	if a.stdoutIsTerminal && !asJSON {
		fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
		printStatus(a.stdout, job, audit, retrying(), a.now())
		return nil
	}
	if !first && sameProgress(job, last) {
		return nil
	}
	if asJSON {
		b, err := json.Marshal(newJobView(job, audit, a.now()).withRetrying(job, retrying(), a.now()))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.stdout, string(b))
		return err
	}
	if !first {
		fmt.Fprintln(a.stdout)
	}
	printStatus(a.stdout, job, audit, retrying(), a.now())
	return nil
}

func sameProgress(a, b results.Job) bool {
	return a.State == b.State && a.Reason == b.Reason && a.Applied == b.Applied && a.Failed == b.Failed &&
		a.Total == b.Total && a.UsersLoaded == b.UsersLoaded && a.DeviceDone == b.DeviceDone
}
