package tasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
)

// Submission is the outcome of Submit.
type Submission struct {
	Job results.Job
	// Duplicates lists user IDs given more than once; each is reset once.
	Duplicates []string
	// AlreadySubmitted is true when a job with this ID existed: nothing new was enqueued
	// and no user will be reset twice.
	AlreadySubmitted bool
}

// ConflictError reports a job ID that is already used by a job with other parameters.
type ConflictError struct {
	JobID string
	Job   results.Job
	// Difference describes the part of the rejected submission that differs from Job.
	Difference string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("job ID %s is already used by a %s job for %s/%s (state %s), but this submission requests %s: choose another job ID",
		e.JobID, e.Job.Type, e.Job.ServiceProviderID, e.Job.GroupID, e.Job.State, e.Difference)
}

// Submit validates a job, creates its record and enqueues its reset:bulk task; opts are
// extra asynq options such as asynq.ProcessAt for a scheduled job. Submitting a job ID
// again with the same parameters is a no-op that returns AlreadySubmitted; with other
// parameters it returns *ConflictError. When enqueueing fails, the new record is removed
// again, so nothing is left half-submitted. Validation errors are *ValidationError.
func Submit(ctx context.Context, client Enqueuer, store *results.Store, p BulkResetPayload, opts ...asynq.Option) (Submission, error) {
	p, duplicates, err := p.Normalize()
	if err != nil {
		return Submission{}, err
	}
	task, err := NewBulkResetTask(p, opts...)
	if err != nil {
		return Submission{}, err
	}

	job, created, err := store.CreateJob(ctx, jobFromPayload(p))
	if err != nil {
		return Submission{}, err
	}
	if !created {
		if diff := jobDifference(job, p); diff != "" {
			return Submission{}, &ConflictError{JobID: p.JobID, Job: job, Difference: diff}
		}
		return Submission{Job: job, Duplicates: duplicates, AlreadySubmitted: true}, nil
	}

	if _, err := client.EnqueueContext(ctx, task); err != nil {
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			// A task with this ID is queued but its record was gone (deleted by hand):
			// the record just created serves it.
			return Submission{Job: job, Duplicates: duplicates, AlreadySubmitted: true}, nil
		}
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = store.Delete(cleanupCtx, p.JobID)
		return Submission{}, fmt.Errorf("enqueue job %s: %w", p.JobID, err)
	}

	host, _ := os.Hostname()
	_ = store.SetAudit(ctx, p.JobID, map[string]string{
		"submitted_by":   p.RequestedBy,
		"submitted_from": host,
		"submitted_at":   time.Now().UTC().Format(time.RFC3339),
	})
	return Submission{Job: job, Duplicates: duplicates}, nil
}
