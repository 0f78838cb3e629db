// Package chaos runs the worker as real processes against a real redis-server, for the
// crash tests in this package and the secret-leak test in internal/leaktest. It builds the
// worker binary, starts, kills and restarts redis-server and worker processes, and
// compares a job's result record with the Odin simulator's state.
//
// The crash tests (chaos_test.go) run a batch while worker processes are killed with
// SIGKILL, while redis-server is killed and started again, and while a worker stops on
// SIGTERM. In CI they run a short form; ODINRESET_CHAOS_FULL=1 runs 2,000-user batches:
//
//	ODINRESET_CHAOS_FULL=1 go test -run TestChaos -v -timeout 60m ./internal/chaos
package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
)

// Outcome is a finished job's record compared with the simulator. Its lines name users
// and states, never values.
type Outcome struct {
	Job                      results.Job
	Applied, Failed, Pending int
	Unconfirmed, Regenerated int
	// SetMoreThanOnce counts applied users whose value reached the simulator in more
	// than one accepted request: a resend after a crash or a lost response.
	SetMoreThanOnce int
	// FailedWithoutReason lists failed users whose record gives no reason.
	FailedWithoutReason []string
	// Mismatches lists users whose record and the simulator disagree. Either the user
	// is applied with a value the simulator does not have, or the user is not applied
	// and the simulator has a value that is not in the record.
	Mismatches []string
	// Reasons counts the failure reasons.
	Reasons map[string]int
}

// Compare reads every user of the job and compares it with the simulator's current
// value of the job's credential.
func Compare(ctx context.Context, store *results.Store, sim *odintest.Simulator, jobID string) (Outcome, error) {
	job, err := store.Job(ctx, jobID)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Job: job, Reasons: map[string]int{}}
	kind := SimKind(job.Type)

	err = store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		value, count, known := sim.Credential(rec.UserID, kind)
		switch rec.State {
		case results.UserApplied:
			out.Applied++
			if count > 1 {
				out.SetMoreThanOnce++
			}
		case results.UserFailed:
			out.Failed++
			out.Reasons[rec.Reason]++
			if rec.Reason == "" {
				out.FailedWithoutReason = append(out.FailedWithoutReason, rec.UserID)
			}
		default:
			out.Pending++
		}
		if rec.Unconfirmed {
			out.Unconfirmed++
		}
		if rec.Regenerated {
			out.Regenerated++
		}

		switch {
		case rec.State == results.UserApplied && (!known || value != rec.Secret):
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("%s: applied in the record, but the simulator holds another value (set %d times)", rec.UserID, count))
		case rec.State != results.UserApplied && count > 0 && value != rec.Secret:
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("%s: %s in the record, and the simulator holds a value the record does not (set %d times)", rec.UserID, rec.State, count))
		}
		return nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return out, nil
}

// WaitJob polls the record until the job is finished, calling progress (when not nil)
// on each change of its counters. It returns the job, or an error at the deadline.
func WaitJob(ctx context.Context, store *results.Store, jobID string, timeout time.Duration, progress func(results.Job)) (results.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()

	var last results.Job
	for {
		job, err := store.Job(ctx, jobID)
		switch {
		case err == nil:
			if progress != nil && (job.Applied != last.Applied || job.Failed != last.Failed || job.State != last.State) {
				progress(job)
			}
			last = job
			if job.State.Finished() {
				return job, nil
			}
		case !errors.Is(err, results.ErrNotFound) && ctx.Err() == nil:
			// Redis may be restarting: keep polling until the deadline.
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("job %s not finished after %s: state %s, %d applied, %d failed of %d",
				jobID, timeout, last.State, last.Applied, last.Failed, last.Total)
		case <-ticker.C:
		}
	}
}

// SimKind maps a credential type to the simulator's kind.
func SimKind(t results.CredentialType) odintest.Kind {
	switch t {
	case results.SIP:
		return odintest.KindSIP
	case results.Voicemail:
		return odintest.KindVoicemail
	}
	return odintest.KindWeb
}
