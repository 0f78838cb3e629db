package main

import (
	"context"
	"errors"
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

	old, audit, failed, notReset, err := a.usersToRetry(ctx, o.redisURL, oldID)
	if err != nil {
		return err
	}
	o.users = append(failed, notReset...)
	if len(o.users) == 0 {
		fmt.Fprintf(a.stderr, "enqueue: every user of job %s was applied: nothing to retry\n", oldID)
		if old.Devices != results.DevicesNone && old.DeviceDone < old.DeviceTotal {
			fmt.Fprintf(a.stderr, "enqueue: warning: the device step of job %s finished for %d of %d phones, and retry resets passwords only: rebuild the other phones on Odin, or submit their users again with --%s-devices\n",
				oldID, old.DeviceDone, old.DeviceTotal, old.Devices)
		}
		return nil
	}
	if o.jobID == "" {
		o.jobID = newJobID(a.now())
	}
	if o.jobID == oldID {
		return usageErrorf("--job-id %s is the job to retry: give the new job another ID, or leave --job-id out", oldID)
	}

	o.serviceProvider, o.group, o.credType = old.ServiceProviderID, old.GroupID, string(old.Type)
	o.dryRun = old.DryRun
	o.rebuildDevices = old.Devices == results.DevicesRebuild
	o.resetDevices = old.Devices == results.DevicesReset
	if o.priority == "" {
		o.priority = old.Priority
	}
	sub, err := a.validateSubmission(&o, setFlags(fs))
	if err != nil {
		return err
	}
	if err := a.claimRetry(ctx, o.redisURL, oldID, o.jobID, audit[retriedByField] == o.jobID); err != nil {
		return err
	}
	o.announce = fmt.Sprintf("enqueue: retrying %s of job %s: %d failed, %d not reset\n",
		plural(len(o.users), "user", "users"), oldID, len(failed), len(notReset))
	err = a.submitValidated(ctx, &o, sub)
	if err != nil {
		a.releaseRetry(ctx, o.redisURL, oldID, o.jobID)
	}
	return err
}

// retriedByField is the audit field of a job that names the job that retried it. A
// second retry of the same job would reset the same users again, and the first retry's
// results would then list values that Odin no longer holds.
const retriedByField = "retried_by"

// claimRetry records newID as the retry of job oldID, or rejects the retry when another
// job claimed it first. It also rejects a newID that another job uses, unless
// resubmitting is true (newID already retried oldID, and this submits it again).
func (a *app) claimRetry(ctx context.Context, redisURL, oldID, newID string, resubmitting bool) error {
	c, err := a.connect(ctx, redisURL)
	if err != nil {
		return err
	}
	defer c.close()
	store := a.metaStore(c)
	exists := func(jobID string) (bool, error) {
		_, err := store.Job(ctx, jobID)
		if errors.Is(err, results.ErrNotFound) {
			return false, nil
		}
		return err == nil, c.wrap(err)
	}

	if !resubmitting {
		if used, err := exists(newID); err != nil {
			return err
		} else if used {
			return usageErrorf("job ID %s is already used by another job: give the retry another --job-id, or leave --job-id out", newID)
		}
	}
	holder, err := store.ClaimAudit(ctx, oldID, retriedByField, newID)
	if err != nil {
		return c.wrap(err)
	}
	if holder == newID {
		return nil
	}
	live, err := exists(holder)
	if err != nil {
		return err
	}
	if live {
		return usageErrorf("job %s was retried before by job %s, whose results hold the newest values of these users: retry that job instead (enqueue retry %s), after it has finished", oldID, holder, holder)
	}
	// The claim's job is being submitted by another retry, or that retry stopped before
	// it submitted, or the job's record was deleted or expired. Only the operator knows
	// which, and submitting under the claimed ID is safe in every case.
	return usageErrorf("job %s was claimed for a retry by job %s, which has no record: if no other retry of %s is running, submit it with: enqueue retry %s --job-id %s", oldID, holder, oldID, oldID, holder)
}

// releaseRetry undoes claimRetry when the new job was not created.
func (a *app) releaseRetry(ctx context.Context, redisURL, oldID, newID string) {
	c, err := a.connect(ctx, redisURL)
	if err != nil {
		return
	}
	defer c.close()
	store := a.metaStore(c)
	if _, err := store.Job(ctx, newID); errors.Is(err, results.ErrNotFound) {
		_ = store.ReleaseAudit(ctx, oldID, retriedByField, newID)
	}
}

// usersToRetry reads a finished job and the IDs of its users that failed and, in a
// cancelled job, of those left pending, in submission order. It needs no results key.
func (a *app) usersToRetry(ctx context.Context, redisURL, jobID string) (job results.Job, audit map[string]string, failed, notReset []string, err error) {
	c, err := a.connect(ctx, redisURL)
	if err != nil {
		return job, nil, nil, nil, err
	}
	defer c.close()
	store := a.metaStore(c)

	job, audit, err = a.readJob(ctx, c, store, jobID)
	if err != nil {
		return job, nil, nil, nil, err
	}
	if err := checkRetryable(c, job); err != nil {
		return job, nil, nil, nil, err
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
		return job, nil, nil, nil, c.wrap(err)
	}
	return job, audit, failed, notReset, nil
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
	// Its completion (the callback) and device steps set no password.
	all, err := tasksInFlight(c.inspector, job)
	if err != nil {
		return c.wrap(fmt.Errorf("check for tasks of job %s still on the workers: %w", job.ID, err))
	}
	var busy []string
	for _, task := range all {
		if strings.HasPrefix(task, job.ID+"/") || strings.HasPrefix(task, job.ID+" (") {
			busy = append(busy, task)
		}
	}
	if len(busy) > 0 {
		return usageErrorf("job %s is %s, but %s still on the workers (%s): a reset in flight may set its value after the retry sets a new one; run this again once they are gone (\"enqueue status %s\" shows the final counts)",
			job.ID, job.State, plural(len(busy), "of its tasks is", "of its tasks are"), strings.Join(busy[:min(3, len(busy))], ", "), job.ID)
	}
	return nil
}
