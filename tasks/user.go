package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// HandleUserReset sets one user's new value on Odin: the value the record holds, never a
// new one, because an earlier attempt may have set it already. It is idempotent: a user
// already applied or failed is left alone, and a cancelled job's users are not touched.
func (h *Handlers) HandleUserReset(ctx context.Context, t *asynq.Task) error {
	log := zerolog.Ctx(ctx)

	var p UserResetPayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return permanent(err)
	}
	if err := p.validate(); err != nil {
		return permanent(err)
	}
	p.Type, _ = results.ParseCredentialType(string(p.Type))

	// From here the record shows that the user's value may reach Odin (MaybeSent), so
	// the export of a cancelled job can tell such users from those never tried.
	rec, status, err := h.Store.BeginAttempt(ctx, p.JobID, p.UserID)
	switch {
	case errors.Is(err, results.ErrNotFound) && status.State == "":
		return permanent(fmt.Errorf("no record of job %s: it expired or was deleted, so nothing was sent to Odin; submit the user in a new job if it still needs a reset", p.JobID))
	case errors.Is(err, results.ErrNotFound) && !status.UsersLoaded:
		// A task made outside the fan-out, before the fan-out stored the job's users.
		// Ending it frees its TaskID for the user's own task.
		log.Warn().Msg("task ran before the fan-out stored the job's users; dropped, the fan-out enqueues the user's task")
		return nil
	case errors.Is(err, results.ErrNotFound):
		return permanent(fmt.Errorf("user %q is not a user of job %s: task dropped without calling Odin", p.UserID, p.JobID))
	}
	if wait := h.keyMismatch(ctx, p.JobID, err); wait != nil {
		return wait
	}
	if err != nil {
		return err
	}
	if problem := p.mismatch(status); problem != "" {
		// Only a task made outside the fan-out and the sweeper can get here. Setting the
		// record's value as another credential would list it as the user's new credential
		// of the job's type, which Odin does not hold. The task ends without an error, so
		// asynq frees its TaskID, which may be the one of the user's own task.
		log.Error().Str("credential_type", string(p.Type)).Str("job_credential_type", string(status.Type)).Str("problem", problem).
			Msg("task does not match its job; dropped without calling Odin, the job's own task resets the user")
		return nil
	}
	if rec.State != results.UserPending && rec.MaybeSent {
		// A settled user: nothing is sent for it. Drop the mark BeginAttempt left.
		if err := h.Store.EndAttempt(ctx, p.JobID, p.UserID); err != nil {
			log.Warn().Err(err).Msg("could not clear the attempt mark of a settled user")
		}
	}
	switch {
	case status.State == results.JobCancelled:
		log.Info().Msg("job cancelled, user not reset")
		return asynq.RevokeTask
	case rec.State != results.UserPending && p.Type == results.SIP:
		// The user's device step may be unfinished.
		return h.continueDeviceStep(ctx, p, rec)
	case rec.State != results.UserPending:
		log.Debug().Str("state", string(rec.State)).Msg("user already settled, duplicate delivery ignored")
		return nil
	case status.DryRun:
		return h.checkUser(ctx, p, rec)
	case rec.Secret == "" && status.Cursor < status.Total:
		// A task made outside the fan-out, before the fan-out reached the user: the
		// fan-out writes the value and enqueues the user's own task.
		log.Warn().Int("cursor", status.Cursor).Int("total", status.Total).Msg("task ran before the fan-out wrote the user's value; dropped, the fan-out enqueues the user's task")
		return nil
	case rec.Secret == "":
		return h.fail(ctx, p, rec, "no new value was written for this user before its task ran; submit the user again")
	}

	retried, lastAttempt := attempt(ctx)
	attempts := retried + 1

	rec, err = h.apply(odin.BeforeSend(ctx, h.recheckJob(p.JobID)), p, rec, retried)
	if errors.Is(err, errJobCancelled) {
		log.Info().Msg("job cancelled while the task waited for an Odin request slot; user not reset")
		if retried == 0 {
			// No attempt sent this user's value: the export must not show it as maybe set.
			if err := h.Store.EndAttempt(ctx, p.JobID, p.UserID); err != nil {
				log.Warn().Err(err).Msg("could not clear the attempt mark of a user never sent")
			}
		}
		return asynq.RevokeTask
	}
	if err == nil {
		if status.Reason != "" {
			// Odin works again: clear the waiting reason operators see in the status.
			_ = h.Store.SetReason(ctx, p.JobID, "")
		}
		return h.settleApplied(ctx, p, rec, attempts)
	}

	var possiblySet *possiblySetError
	switch {
	case errors.As(err, &possiblySet):
		log.Warn().Err(err).Int("attempts", attempts).Msg("Odin rejected the resend of a value an earlier attempt may have set; recorded as failed with the value kept")
		return h.failAttempts(ctx, p, rec, possiblySet.Error(), attempts, err)
	case odin.IsPermanent(err) && !odin.IsAuthFailure(err):
		log.Warn().Err(err).Msg("Odin rejected the user; recorded as failed")
		return h.failAttempts(ctx, p, rec, odinReason(err), attempts, err)
	case ctx.Err() != nil && lastAttempt && errors.Is(ctx.Err(), context.DeadlineExceeded):
		// The last attempt timed out: record the failure with a context of its own,
		// since the task's context has ended.
		recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		log.Error().Err(err).Int("attempts", attempts).Msg("last attempt timed out; recorded as failed")
		return h.failAttempts(recordCtx, p, rec, "retries exhausted: "+odinReason(err), attempts, err)
	case ctx.Err() != nil:
		// Shutdown or task timeout: asynq retries the task, which resends the same value.
		return err
	}
	if wait := h.waitFor(ctx, p.JobID, err); wait != nil {
		return wait
	}
	if lastAttempt {
		log.Error().Err(err).Int("attempts", attempts).Msg("retries exhausted; recorded as failed")
		return h.failAttempts(ctx, p, rec, "retries exhausted: "+odinReason(err), attempts, err)
	}
	var redisErr *ratelimit.RedisError
	if errors.As(err, &redisErr) {
		log.Warn().Err(err).Int("attempt", attempts).Msg("Redis failed in the rate limiter, so nothing was sent to Odin; will retry")
		return err
	}
	log.Warn().Err(err).Int("attempt", attempts).Msg("Odin call failed; will retry with the same value")
	return err
}

// keyMismatchDelay is how long a task whose value this worker cannot decrypt waits, so
// that a worker with the right results key takes it meanwhile.
const keyMismatchDelay = time.Minute

// keyMismatch turns a record this worker cannot decrypt, because it was sealed with a
// results key this worker does not have, into a *WaitError and a job reason operators
// see in the status. The task does not lose an attempt, and a worker with the right key
// can take it: the fault is this worker's configuration, not the user's reset. It
// returns nil for other errors.
func (h *Handlers) keyMismatch(ctx context.Context, jobID string, err error) error {
	var mismatch *results.KeyMismatchError
	if !errors.As(err, &mismatch) && !errors.Is(err, results.ErrNoKey) && !errors.Is(err, results.ErrPlaintextRefused) {
		return nil
	}
	reason := "a worker cannot read this job's values: " + err.Error()
	zerolog.Ctx(ctx).Error().Err(err).Msg("cannot decrypt the user's value with this worker's results key; leaving the task to a worker with the right key")
	if serr := h.Store.SetReason(ctx, jobID, reason); serr != nil {
		zerolog.Ctx(ctx).Error().Err(serr).Msg("could not record the waiting reason")
	}
	return &WaitError{Delay: keyMismatchDelay, Reason: reason}
}

// recheckAfterWait is how long a wait for an Odin request slot may take before the
// request reads its job's state again. Below it, a cancel that arrived during the wait is
// rare enough not to cost every request a Redis round trip.
const recheckAfterWait = 200 * time.Millisecond

// errJobCancelled stops an Odin request of a job cancelled while the request waited.
var errJobCancelled = errors.New("the job was cancelled")

// recheckJob returns the odin.BeforeSendFunc of a job's requests: after a long wait for
// a slot, it reads the job's state and stops the request if the job was cancelled
// meanwhile. Without it, every task already waiting in the limiter when an operator
// cancels (up to WORKER_CONCURRENCY per worker) would still reset its user.
func (h *Handlers) recheckJob(jobID string) odin.BeforeSendFunc {
	return func(ctx context.Context, waited time.Duration) error {
		if waited < recheckAfterWait {
			return nil
		}
		state, err := h.Store.JobState(ctx, jobID)
		if err != nil {
			// The record is checked again when the outcome is settled; a failed read
			// here must not hold up the reset.
			return nil
		}
		if state == results.JobCancelled {
			return errJobCancelled
		}
		return nil
	}
}

// apply sends the record's value to Odin. On a password-rule rejection of a value that
// was never regenerated, it generates one fresh value, writes it to the record first,
// and sends that. retried is the number of failed attempts before this one: after one,
// the value is never replaced (see possiblySetError).
func (h *Handlers) apply(ctx context.Context, p UserResetPayload, rec results.UserRecord, retried int) (results.UserRecord, error) {
	for {
		err := h.set(ctx, p, rec.Secret)
		if err == nil {
			return rec, nil
		}
		if !odin.IsRuleRejection(err) || rec.Regenerated {
			return rec, err
		}
		if retried > 0 {
			// NOTE: conservative. An earlier attempt that failed before its PUT (a SIP
			// user-name lookup, a crash) sent nothing, yet the user still fails here.
			return rec, &possiblySetError{err: err}
		}

		zerolog.Ctx(ctx).Info().Err(err).Msg("Odin rejected the value by a password rule; generating one fresh value")
		fresh, genErr := h.generate(ctx, "", p.Type, p.ServiceProviderID, p.GroupID, 1)
		if genErr != nil {
			return rec, genErr
		}
		next, replaceErr := h.Store.ReplaceSecret(ctx, p.JobID, rec, fresh[0])
		if replaceErr != nil {
			return rec, fmt.Errorf("store the regenerated value: %w", replaceErr)
		}
		rec = next
	}
}

// possiblySetError is a password-rule rejection of a value that an earlier attempt may
// have sent: that attempt ended without a definitive response (a timeout, a 5xx, a crash).
// If Odin set the value then, the resend is rejected by the history rules, which forbid
// reusing the current password. Replacing the value would then lose the one Odin holds,
// so the user is recorded as failed with the value kept and marked unconfirmed.
type possiblySetError struct{ err error }

func (e *possiblySetError) Error() string {
	return "Odin rejected a resend of the new value (" + odinReason(e.err) + "), which an earlier attempt whose answer was lost may have set"
}

func (e *possiblySetError) Unwrap() error { return e.err }

// set performs the Odin calls that set one credential.
func (h *Handlers) set(ctx context.Context, p UserResetPayload, secret string) error {
	switch p.Type {
	case results.SIP:
		userName, err := h.Odin.SIPUserName(ctx, p.UserID)
		if err != nil {
			return err
		}
		return h.Odin.SetSIPPassword(ctx, p.UserID, userName, secret)
	case results.Voicemail:
		return h.Odin.SetPortalPasscode(ctx, p.UserID, secret)
	case results.Web:
		return h.Odin.SetWebPassword(ctx, p.UserID, secret)
	}
	return fmt.Errorf("unknown credential type %q", p.Type)
}

func (h *Handlers) settleApplied(ctx context.Context, p UserResetPayload, rec results.UserRecord, attempts int) error {
	completed, err := h.Store.MarkApplied(ctx, p.JobID, rec, attempts)
	if errors.Is(err, results.ErrConflict) {
		// Another delivery of this task changed the record meanwhile. Retrying reads the
		// record again: it either finds the user settled or sends the value now stored.
		return fmt.Errorf("record of user %q changed while its value was being set; retrying to resend the stored value", p.UserID)
	}
	if err != nil {
		return err
	}
	zerolog.Ctx(ctx).Debug().Int("attempts", attempts).Msg("new value applied")
	if h.Observer != nil {
		h.Observer.UserSettled(p.Type, results.UserApplied)
	}
	if completed {
		return h.onCompleted(ctx, p.JobID)
	}
	if p.Type == results.SIP {
		return h.lookUpDevice(ctx, p)
	}
	return nil
}

// fail records the user as failed for a reason found before any Odin call.
func (h *Handlers) fail(ctx context.Context, p UserResetPayload, rec results.UserRecord, reason string) error {
	retried, _ := retryCount(ctx)
	return h.failAttempts(ctx, p, rec, reason, retried, errors.New(reason))
}

// failAttempts records the user as failed and returns cause marked as permanent, so asynq
// archives the task instead of retrying it.
func (h *Handlers) failAttempts(ctx context.Context, p UserResetPayload, rec results.UserRecord, reason string, attempts int, cause error) error {
	if rec.Secret != "" && (attempts > 1 || (attempts == 1 && !odin.IsPermanent(cause))) {
		// An attempt without a definitive response from Odin, this one or an earlier one,
		// may have set the value, so the export shows it next to the error.
		rec.Unconfirmed = true
	}
	completed, err := h.Store.MarkFailed(ctx, p.JobID, rec, reason, attempts)
	if errors.Is(err, results.ErrConflict) {
		return fmt.Errorf("record of user %q changed while recording its failure; retrying", p.UserID)
	}
	if err != nil {
		return err
	}
	if h.Observer != nil {
		h.Observer.UserSettled(p.Type, results.UserFailed)
	}
	if completed {
		if err := h.onCompleted(ctx, p.JobID); err != nil {
			return err
		}
	} else if p.Type == results.SIP {
		// The job's device steps may have waited for this user only.
		if err := h.checkDeviceFollowup(ctx, p.JobID); err != nil {
			return err
		}
	}
	return permanent(cause)
}

// onCompleted runs in the one task that settled a job's last user.
func (h *Handlers) onCompleted(ctx context.Context, jobID string) error {
	job, err := h.Store.Job(ctx, jobID)
	if err != nil {
		return err
	}
	queue, _ := QueueFor(job.Priority)
	return h.enqueueComplete(ctx, jobID, queue)
}

// failRemaining records every pending user of the job from the fan-out cursor on as
// failed with reason, because Odin permanently refuses to produce values for the group.
// A pending user that already has a value, written ahead before the generator began to
// refuse, gets its reset:user task instead: the value may be set like any other.
func (h *Handlers) failRemaining(ctx context.Context, p BulkResetPayload, queue, reason string) error {
	zerolog.Ctx(ctx).Error().Str("reason", reason).Msg("recording every remaining user as failed")
	job, err := h.Store.Job(ctx, p.JobID)
	if err != nil {
		return err
	}
	if strings.HasPrefix(job.Reason, fanOutWaitPrefix) {
		// The fan-out no longer waits, and the users' reasons explain why they failed.
		if err := h.Store.SetReason(ctx, p.JobID, ""); err != nil {
			return err
		}
	}
	completed := false
	for start := job.Cursor; start < job.Total; start += 500 {
		ids, err := h.Store.UserIDs(ctx, p.JobID, start, 500)
		if err != nil {
			return err
		}
		recs, err := h.Store.Users(ctx, p.JobID, ids)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.State != results.UserPending {
				continue
			}
			if rec.Secret != "" {
				if err := h.enqueueUser(ctx, p, queue, rec.UserID); err != nil {
					return err
				}
				continue
			}
			_, done, err := h.failUnsent(ctx, p, rec, reason)
			if err != nil {
				return err
			}
			completed = completed || done
		}
	}
	if err := h.Store.SetCursor(ctx, p.JobID, job.Total); err != nil {
		return err
	}
	return h.followFanOutFailures(ctx, p, queue, completed)
}

// failUnsent records a user that the fan-out gives up on before any value of it was
// sent: failed with the reason, and counted in the metrics. recorded is false when the
// user's record changed meanwhile or the job no longer runs, and completed is true when
// the user was the job's last.
func (h *Handlers) failUnsent(ctx context.Context, p BulkResetPayload, rec results.UserRecord, reason string) (recorded, completed bool, err error) {
	completed, err = h.Store.FailUnsent(ctx, p.JobID, rec, reason)
	if errors.Is(err, results.ErrConflict) || errors.Is(err, results.ErrJobFinished) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if h.Observer != nil {
		h.Observer.UserSettled(p.Type, results.UserFailed)
	}
	return true, completed, nil
}

// followFanOutFailures enqueues the work that users failed by the fan-out may have
// unblocked: the job's completion when the last of them completed the job, otherwise, in
// a SIP job, the device steps, which may have waited for these users only.
func (h *Handlers) followFanOutFailures(ctx context.Context, p BulkResetPayload, queue string, completed bool) error {
	if completed {
		return h.enqueueComplete(ctx, p.JobID, queue)
	}
	if p.Type == results.SIP {
		return h.checkDeviceFollowup(ctx, p.JobID)
	}
	return nil
}

// enqueueUser enqueues the reset:user task of one user of the job.
func (h *Handlers) enqueueUser(ctx context.Context, p BulkResetPayload, queue, userID string) error {
	return enqueueUserTask(ctx, h.Client, UserResetPayload{
		JobID: p.JobID, UserID: userID, Type: p.Type,
		ServiceProviderID: p.ServiceProviderID, GroupID: p.GroupID,
	}, queue)
}

// waitFor turns errors that mean "not now" into a *WaitError, pausing the fleet where
// Odin asked for it: a 429, a 503 with Retry-After, or a failed Odin login. It returns nil
// for other errors.
func (h *Handlers) waitFor(ctx context.Context, jobID string, err error) error {
	log := zerolog.Ctx(ctx)

	var delay *ratelimit.DelayError
	if errors.As(err, &delay) {
		if delay.Reason != ratelimit.ReasonRateLimit {
			// A fleet pause that another task began, possibly for another job.
			h.notePause(ctx, jobID, delay.Delay, delay.Reason)
		}
		return &WaitError{Delay: delay.Delay, Reason: delay.Reason}
	}

	if odin.IsAuthFailure(err) {
		reason := loginFailedPrefix + odinReason(err)
		var login *odin.LoginError
		if errors.As(err, &login) && login.WrongURL() {
			reason += "; there is no login endpoint at ODIN_BASE_URL: check that it is Odin's API root, like https://odin.example.com/api/v2"
		}
		cooldown, pauses := h.loginCooldown(), 1
		if h.Pauser != nil {
			remaining, n, perr := h.Pauser.PauseEscalating(ctx, cooldown, max(cooldown, MaxLoginCooldown), reason)
			if perr != nil {
				log.Error().Err(perr).Msg("could not pause the fleet")
			} else {
				cooldown, pauses = remaining, n
			}
		}
		log.Error().Err(err).Dur("cooldown_ms", cooldown).Int("login_pauses_in_a_row", pauses).
			Msg("Odin login failed; pausing every worker's Odin calls")
		if serr := h.Store.SetReason(ctx, jobID, reason); serr != nil {
			log.Error().Err(serr).Msg("could not record the waiting reason")
		}
		return &WaitError{Delay: cooldown, Reason: reason}
	}

	if after, ok := odin.RetryAfter(err); ok && after > 0 {
		reason := "Odin asked to slow down: " + odinReason(err)
		if after > MaxFleetPause {
			// A proxy's error page may ask for hours or days. The fleet tries again after
			// MaxFleetPause instead, and if Odin still rejects requests, the next 429 or 503 pauses it again.
			log.Warn().Dur("retry_after_ms", after).Dur("pause_ms", MaxFleetPause).Msg("Odin's Retry-After is longer than the longest fleet pause; pausing for that instead")
			after = MaxFleetPause
		}
		log.Warn().Dur("retry_after_ms", after).Msg("Odin asked to retry later; pausing every worker's Odin calls")
		if h.Pauser != nil {
			if perr := h.Pauser.Pause(ctx, after, reason); perr != nil {
				log.Error().Err(perr).Msg("could not pause the fleet")
			}
		}
		h.notePause(ctx, jobID, after, reason)
		return &WaitError{Delay: after, Reason: reason}
	}
	return nil
}

// odinFailure classifies an Odin error of the fan-out: a *WaitError for pauses, the
// error itself otherwise, so asynq retries the fan-out from its cursor. Either way the
// job's reason explains why it makes no progress. errJobCancelled comes back unchanged.
func (h *Handlers) odinFailure(ctx context.Context, jobID string, err error) error {
	if errors.Is(err, errJobCancelled) {
		return err
	}
	if wait := h.waitFor(ctx, jobID, err); wait != nil {
		return wait
	}
	h.noteFanOutWait(ctx, jobID, err)
	return err
}

// notePause sets the job's reason to the reason of a fleet pause of length d and its end,
// so that 'enqueue status' shows why the job makes no progress and when it goes on. The
// reason keeps its start, such as "Odin login failed", and the next user applied clears it.
func (h *Handlers) notePause(ctx context.Context, jobID string, d time.Duration, reason string) {
	if jobID == "" || ctx.Err() != nil {
		return
	}
	until := time.Now().Add(d).UTC().Format("15:04:05 MST")
	jobReason := fmt.Sprintf("%s; every worker's Odin calls are paused until %s", reason, until)
	if err := h.Store.SetReason(ctx, jobID, jobReason); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("could not record the waiting reason")
	}
}

// loginFailedPrefix starts the reason of a fleet pause after a failed Odin login.
const loginFailedPrefix = "Odin login failed: "

// MaxLoginCooldown is the longest pause of the fleet after failed Odin logins, unless
// ODIN_LOGIN_COOLDOWN is longer. Each failed login in a row doubles the pause from
// ODIN_LOGIN_COOLDOWN up to it. Each pause ends with new login attempts, and these count
// towards a lockout of the admin account. With the default of one minute, eight hours of
// wrong credentials cost about 35 attempts per worker instead of 480.
const MaxLoginCooldown = 15 * time.Minute

// MaxFleetPause is the longest pause of the fleet after a Retry-After from Odin. A
// longer Retry-After, such as a day from a proxy's maintenance page, would otherwise stop
// every worker for that long, with no request to find out that Odin is back.
const MaxFleetPause = 15 * time.Minute

// fanOutWaitPrefix starts the job reason that a failing Odin call of the fan-out sets.
const fanOutWaitPrefix = "fan-out waits: "

// noteFanOutWait sets the job's reason after an Odin call of the fan-out failed, so
// 'enqueue status' shows why no user is being reset while the call is retried.
func (h *Handlers) noteFanOutWait(ctx context.Context, jobID string, err error) {
	if jobID == "" || ctx.Err() != nil {
		return
	}
	reason := fanOutWaitPrefix + odinReason(err) + "; retrying"
	if serr := h.Store.SetReason(ctx, jobID, reason); serr != nil {
		zerolog.Ctx(ctx).Error().Err(serr).Msg("could not record the waiting reason")
	}
}

// clearFanOutWait removes the job's reason if noteFanOutWait set it, and leaves any other
// reason, such as a fleet pause noted meanwhile, alone.
func (h *Handlers) clearFanOutWait(ctx context.Context, jobID string) {
	if _, err := h.Store.ClearReason(ctx, jobID, fanOutWaitPrefix); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("could not clear the waiting reason")
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func ttlFromSeconds(s int64) time.Duration { return time.Duration(s) * time.Second }
