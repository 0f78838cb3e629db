package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/odinreset/odinreset/results"
)

// cmdRetry submits a new job for the users of a finished job that were not applied.
func (a *app) cmdRetry(ctx context.Context, args []string) error {
	var o submitOptions
	fs := newFlagSet("retry", retryUsage, retryExamples, a.stdout)
	fs.StringVar(&o.redisURL, "redis-url", "", redisURLHelp)
	fs.StringVar(&o.jobID, "job-id", "", "`ID` of the new job; submitting the same ID again enqueues nothing new (default: generated)")
	fs.StringVar(&o.resultTTL, "result-ttl", "72h", "how long the new job's results are kept after its last change, from 1m to 90d (`duration`)")
	fs.StringVar(&o.priority, "priority", "", "queue priority of the new job: high, default or low (default: the old job's)")
	fs.StringVar(&o.at, "at", "", "start the new job at this RFC 3339 `time` (at most 30 days ahead)")
	fs.StringVar(&o.in, "in", "", "start the new job after this `duration` (at most 30 days)")
	fs.StringVar(&o.callbackURL, "callback-url", "", "http(s) `URL` that receives a POST with the new job's summary when it finishes (not taken from the old job)")
	fs.StringVar(&o.requestedBy, "requested-by", "", "who asks for the retry, stored with the new job (default: the OS user name)")
	fs.BoolVar(&o.wait, "wait", false, "wait until the new job finishes, showing progress on standard error, then print its results")
	fs.StringVar(&o.timeout, "timeout", "", "with --wait: stop waiting after this `duration` (exit 4); the job continues")
	fs.StringVar(&o.format, "format", "json", "with --wait: output format, json or csv")
	fs.StringVar(&o.out, "out", "", "with --wait: write the results to this `file` (mode 0600) instead of standard output")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	oldID, err := oneJobID(positional, "retry")
	if err != nil {
		return err
	}

	old, failed, notReset, err := a.usersToRetry(ctx, o.redisURL, oldID)
	if err != nil {
		return err
	}
	o.users = append(failed, notReset...)
	if len(o.users) == 0 {
		fmt.Fprintf(a.stderr, "enqueue: every user of job %s was applied: nothing to retry\n", oldID)
		return nil
	}

	o.serviceProvider, o.group, o.credType = old.ServiceProviderID, old.GroupID, string(old.Type)
	o.dryRun = old.DryRun
	o.rebuildDevices = old.Devices == results.DevicesRebuild
	o.resetDevices = old.Devices == results.DevicesReset
	if o.priority == "" {
		o.priority = old.Priority
	}
	fmt.Fprintf(a.stderr, "enqueue: retrying %s of job %s: %d failed, %d not reset\n",
		plural(len(o.users), "user", "users"), oldID, len(failed), len(notReset))
	return a.submit(ctx, &o, setFlags(fs))
}

// usersToRetry reads a finished job and the IDs of its users that failed and, in a
// cancelled job, of those left pending, in submission order. It needs no results key.
func (a *app) usersToRetry(ctx context.Context, redisURL, jobID string) (job results.Job, failed, notReset []string, err error) {
	c, err := a.connect(ctx, redisURL)
	if err != nil {
		return job, nil, nil, err
	}
	defer c.close()
	store := a.metaStore(c)

	job, _, err = a.readJob(ctx, c, store, jobID)
	if err != nil {
		return job, nil, nil, err
	}
	if err := checkRetryable(c, job); err != nil {
		return job, nil, nil, err
	}

	err = store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		switch rec.State {
		case results.UserFailed:
			failed = append(failed, rec.UserID)
		case results.UserPending:
			notReset = append(notReset, rec.UserID)
		}
		return nil
	})
	if err != nil {
		return job, nil, nil, c.wrap(err)
	}
	return job, failed, notReset, nil
}

// checkRetryable returns why the users of job cannot be submitted again yet, or nil.
func checkRetryable(c *redisConn, job results.Job) error {
	if !job.State.Finished() {
		return usageErrorf("job %s is %s: retry takes the users of a finished job; wait for it with: enqueue status %s --watch, or cancel it with: enqueue cancel %s",
			job.ID, job.State, job.ID, job.ID)
	}
	if !job.UsersLoaded {
		// The user list lived only in the job's task, which is gone.
		return usageErrorf("job %s ended before a worker stored its user list, so it has no users to retry: submit the list again with enqueue submit", job.ID)
	}

	// A reset still in flight could set its old value after the new job set a new one,
	// and Odin would then hold a value that no job's results show.
	busy, err := tasksInFlight(c.inspector, job)
	if err != nil {
		return c.wrap(fmt.Errorf("check for tasks of job %s still on the workers: %w", job.ID, err))
	}
	if len(busy) > 0 {
		return usageErrorf("job %s is %s, but %s still on the workers (%s): a reset in flight may set its value after the retry sets a new one; run this again once they are gone (\"enqueue status %s\" shows the final counts)",
			job.ID, job.State, plural(len(busy), "of its tasks is", "of its tasks are"), strings.Join(busy[:min(3, len(busy))], ", "), job.ID)
	}
	return nil
}
