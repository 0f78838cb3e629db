package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/odinreset/odinreset/results"
)

// redisOutageLimit is how long --wait and --watch keep polling through Redis errors
// before they give up with exit 3.
const redisOutageLimit = 30 * time.Second

// waitForJob polls the job until it is finished and reports progress on standard error.
// It returns an error with exit code 4 when timeout (zero for none) passes or ctx ends
// first, saying that the job goes on. As soon as the job has written a value, it reads
// one through secrets, so a missing or wrong results key stops the wait at once (exit 2)
// instead of after the whole job.
func (a *app) waitForJob(ctx context.Context, c *redisConn, store, secrets *results.Store, jobID string, timeout time.Duration, startAt time.Time) (results.Job, error) {
	var deadline <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	ticker := time.NewTicker(a.pollInterval)
	defer ticker.Stop()

	progress := a.newProgress(startAt)
	var job results.Job
	var failingSince time.Time
	keyChecked := false
	for {
		current, err := store.Job(ctx, jobID)
		switch {
		case errors.Is(err, results.ErrNotFound):
			progress.stop()
			return job, infraError(fmt.Errorf("the record of job %s disappeared while waiting: it was deleted (enqueue results --delete) or it expired", jobID))
		case err != nil && ctx.Err() == nil:
			if failingSince.IsZero() {
				failingSince = a.now()
				fmt.Fprintf(a.stderr, "enqueue: reading job %s failed, retrying: %s\n", jobID, c.scrub(err.Error()))
			}
			if a.now().Sub(failingSince) > redisOutageLimit {
				progress.stop()
				return job, c.wrap(fmt.Errorf("stopped waiting for job %s after %s of Redis errors; the job continues: %w", jobID, formatDuration(redisOutageLimit), err))
			}
		case err == nil:
			failingSince = time.Time{}
			job = current
			progress.update(job, a.now())
			if !keyChecked {
				var err error
				if keyChecked, err = checkReadable(ctx, secrets, job); err != nil {
					progress.stop()
					return job, unreadableError(job, err)
				}
			}
			if job.State.Finished() {
				progress.stop()
				return job, nil
			}
		}

		select {
		case <-ctx.Done():
			progress.stop()
			return job, a.stoppedWaiting(jobID, job, "interrupted")
		case <-deadline:
			progress.stop()
			return job, a.stoppedWaiting(jobID, job, "timed out after "+formatDuration(timeout))
		case <-ticker.C:
		}
	}
}

// checkReadable opens the first user's value of a job whose fan-out has started. It
// returns true once a value was read, and a key error (results.ErrNoKey,
// *results.KeyMismatchError, results.ErrPlaintextRefused) when the value cannot be. Any
// other outcome, such as a first user without a value or a Redis error, is retried at
// the next poll.
func checkReadable(ctx context.Context, secrets *results.Store, job results.Job) (bool, error) {
	if job.Cursor == 0 {
		return false, nil
	}
	ids, err := secrets.UserIDs(ctx, job.ID, 0, 1)
	if err != nil || len(ids) == 0 {
		return false, nil
	}
	rec, err := secrets.User(ctx, job.ID, ids[0])
	var mismatch *results.KeyMismatchError
	switch {
	case errors.Is(err, results.ErrNoKey), errors.Is(err, results.ErrPlaintextRefused), errors.As(err, &mismatch):
		return false, err
	case err != nil:
		return false, nil
	}
	return rec.Secret != "", nil
}

// unreadableError reports a results key error found while waiting. It wraps err, so the
// exit code is 2.
func unreadableError(job results.Job, err error) error {
	next := "the job continues; collect"
	if job.State.Finished() {
		next = "collect"
	}
	return fmt.Errorf("job %s is %s, but its new values cannot be read with this configuration: %w; %s the values with \"enqueue results %s\" once the key is set",
		job.ID, job.State, explainReadError(err), next, job.ID)
}

func (a *app) stoppedWaiting(jobID string, job results.Job, cause string) error {
	state := "not read yet"
	if job.ID != "" {
		state = fmt.Sprintf("%s, %d applied, %d failed of %d", job.State, job.Applied, job.Failed, job.Total)
	}
	return &exitError{code: exitTimedOut, err: fmt.Errorf(
		"%s waiting for job %s (%s); the job continues on the workers: check it with \"enqueue status %s\" and collect the new values with \"enqueue results %s\"",
		cause, jobID, state, jobID, jobID)}
}

// progressReporter shows how a waited job advances.
type progressReporter interface {
	update(job results.Job, now time.Time)
	stop()
}

func (a *app) newProgress(startAt time.Time) progressReporter {
	if a.stderrIsTerminal {
		return &barProgress{w: a.stderr, startAt: startAt}
	}
	return &lineProgress{w: a.stderr, every: a.progressInterval, startAt: startAt}
}

// lineProgress prints a progress line at most every interval, and at once when the
// state or the waiting reason changes, for logs and pipes.
type lineProgress struct {
	w       io.Writer
	every   time.Duration
	startAt time.Time

	printedAt  time.Time
	lastState  results.JobState
	lastReason string
	printed    bool
}

func (p *lineProgress) update(job results.Job, now time.Time) {
	changed := !p.printed || job.State != p.lastState || job.Reason != p.lastReason
	if !changed && now.Sub(p.printedAt) < p.every {
		return
	}
	fmt.Fprintln(p.w, "enqueue: "+progressLine(job, now, p.startAt))
	p.printed, p.printedAt, p.lastState, p.lastReason = true, now, job.State, job.Reason
}

func (p *lineProgress) stop() {}

// barProgress draws a progress bar on a terminal: a spinner until the worker has loaded
// the user list, then a bar over the users with rate and time left.
type barProgress struct {
	w       io.Writer
	startAt time.Time
	bar     *progressbar.ProgressBar
	total   int
}

func (p *barProgress) update(job results.Job, now time.Time) {
	if p.bar == nil || (job.UsersLoaded && p.total != job.Total) {
		p.newBar(job)
	}
	description := fmt.Sprintf("%s %s", job.ID, job.State)
	if job.Failed > 0 {
		description += fmt.Sprintf(", %d failed", job.Failed)
	}
	if job.Reason != "" {
		description += ": " + job.Reason
	} else if job.State == results.JobQueued {
		description = progressLine(job, now, p.startAt)
	}
	p.bar.Describe(description)
	if job.UsersLoaded {
		_ = p.bar.Set(job.Applied + job.Failed)
	} else {
		_ = p.bar.Add(0)
	}
}

func (p *barProgress) newBar(job results.Job) {
	if p.bar != nil {
		_ = p.bar.Exit()
	}
	max := -1 // a spinner until the total is known
	if job.UsersLoaded && job.Total > 0 {
		max = job.Total
	}
	p.total = job.Total
	p.bar = progressbar.NewOptions(max,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("users"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		// Without this the spinner redraws from a goroutine of its own, which would
		// write to standard error at the same time as this one.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *barProgress) stop() {
	if p.bar == nil {
		return
	}
	if !p.bar.IsFinished() {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}
