package main

import (
	"context"
	"fmt"
)

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
	if err := a.writeResults(ctx, store, jobID, *format, *out); err != nil {
		return c.wrap(fmt.Errorf("read the results of job %s: %w", jobID, err))
	}

	if !job.State.Finished() {
		fmt.Fprintf(a.stderr, "enqueue: job %s is %s: %d users are not reset yet and their rows say so; run this again when it has finished\n",
			jobID, job.State, job.Pending())
	}
	if *del {
		if err := store.Delete(ctx, jobID); err != nil {
			return c.wrap(fmt.Errorf("the results were written, but deleting the record failed: %w", err))
		}
		fmt.Fprintf(a.stderr, "enqueue: deleted the record of job %s\n", jobID)
	}
	if *out != "" {
		fmt.Fprintf(a.stderr, "enqueue: wrote the results of job %s to %s\n", jobID, *out)
	}
	if !job.State.Finished() {
		// Results of a running job are partial: not every user is applied (exit 1).
		return errSomeFailed
	}
	return finishedOutcome(job)
}
