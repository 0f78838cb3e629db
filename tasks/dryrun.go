package tasks

import (
	"context"
	"errors"
	"strings"

	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/results"
)

// checkUser runs the read-only checks of a dry run for one user and records the outcome:
// applied when every check passed, failed with the reason otherwise. It changes nothing on
// Odin. The user must exist and have the service the credential needs (for SIP a readable
// authentication user name, for voicemail a readable portal passcode), and, for jobs with a
// device step, a group-level device.
func (h *Handlers) checkUser(ctx context.Context, p UserResetPayload, rec results.UserRecord) error {
	retried, _ := retryCount(ctx)
	attempts := retried + 1

	err := h.runChecks(ctx, p)
	if err == nil {
		return h.settleApplied(ctx, p, rec, attempts)
	}

	var check *checkError
	switch {
	case errors.As(err, &check):
		return h.failAttempts(ctx, p, rec, check.reason, 0, err)
	case odin.IsPermanent(err) && !odin.IsAuthFailure(err):
		return h.failAttempts(ctx, p, rec, odinReason(err), 0, err)
	}
	if wait := h.waitFor(ctx, p.JobID, err); wait != nil {
		return wait
	}
	if _, last := attempt(ctx); last {
		return h.failAttempts(ctx, p, rec, "check failed: "+odinReason(err), 0, err)
	}
	zerolog.Ctx(ctx).Warn().Err(err).Msg("dry-run check failed; will retry")
	return err
}

// checkError is a failed check, as opposed to a failed Odin call.
type checkError struct{ reason string }

func (e *checkError) Error() string { return e.reason }

func (h *Handlers) runChecks(ctx context.Context, p UserResetPayload) error {
	switch p.Type {
	case results.SIP:
		if _, err := h.Odin.SIPUserName(ctx, p.UserID); err != nil {
			return err
		}
	case results.Voicemail:
		if _, err := h.Odin.PortalPasscodeInfo(ctx, p.UserID); err != nil {
			return err
		}
	}

	job, err := h.Store.Job(ctx, p.JobID)
	if err != nil {
		return err
	}
	if p.Type != results.Web && job.Devices == results.DevicesNone {
		return nil
	}
	detail, err := h.Odin.UserDetail(ctx, p.UserID)
	if err != nil {
		return err
	}
	if job.Devices == results.DevicesNone {
		return nil
	}
	// The same decision as the device step of a real run, so a dry run passes exactly
	// the users whose phone a real run would rebuild.
	if _, outcome := deviceLookupOutcome(detail); outcome != results.DevicePending {
		return &checkError{reason: strings.TrimPrefix(outcome, "skipped: ") + "; a real run would reset the password and skip the phone"}
	}
	return nil
}
