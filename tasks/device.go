package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/results"
)

// A SIP job with a device step rebuilds each affected phone's configuration (and, in
// reset mode, makes the phone re-sync) so that phones register with the new passwords.
// It runs in three parts:
//
//  1. Right after a user's new SIP password is applied, the same reset:user task looks
//     up the user's device (GET /users?userId=) and records it. Users without a device
//     or with a device that is not group-level are recorded as skipped.
//  2. Which users share a device is known only once every applied user's device is
//     looked up, and a user still pending may turn out to share a device. So the device
//     steps start when every user of the job is applied or failed and every lookup is
//     recorded: the task that finds this enqueues one reset:devices task, which
//     enqueues one reset:device task per device found.
//  3. reset:device calls rebuild (and reset) once for the device and copies the outcome
//     to the record of each of its users. The job completes when the last device
//     finishes.
//
// Failed users are not looked up, so no phone is rebuilt on their behalf. A phone they
// share with an applied user is rebuilt once, for that user.

// Task types of the device step.
const (
	TypeDeviceFanOut = "reset:devices"
	TypeDeviceStep   = "reset:device"
)

// Options of the device step tasks.
const (
	// DeviceTimeout bounds one reset:device attempt: two Odin requests of at most 30 s
	// each, rate-limit waits, and copying the outcome to the device's users.
	DeviceTimeout = 2 * time.Minute
	// DeviceFanOutTimeout bounds one reset:devices attempt, which enqueues one task per
	// device; a retry skips the devices that have finished.
	DeviceFanOutTimeout = 30 * time.Minute
	// MaxDeviceNameLength bounds a device name in a payload.
	MaxDeviceNameLength = 161
	// deviceNotReadyDelay is how long a reset:device task that ran before the device
	// steps started waits before it checks again.
	deviceNotReadyDelay = 10 * time.Second
)

// DeviceFanOutPayload is the payload of reset:devices.
type DeviceFanOutPayload struct {
	JobID string `json:"jobId"`
}

// DeviceStepPayload is the payload of reset:device.
type DeviceStepPayload struct {
	JobID      string `json:"jobId"`
	DeviceName string `json:"deviceName"`
}

// DeviceFanOutTaskID is the TaskID of a job's reset:devices task. The '#' cannot occur in
// a job ID, so no user's TaskID ("<job>/<user>") can take it.
func DeviceFanOutTaskID(jobID string) string { return jobID + "#devices" }

// DeviceStepTaskID is the TaskID of the reset:device task of one device in a job.
func DeviceStepTaskID(jobID, deviceName string) string { return jobID + "#device/" + deviceName }

// NewDeviceFanOutTask returns the reset:devices task of a job, in the job's queue.
func NewDeviceFanOutTask(jobID, queue string) (*asynq.Task, error) {
	if err := results.ValidateJobID(jobID); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(DeviceFanOutPayload{JobID: jobID})
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeDeviceFanOut, err)
	}
	return asynq.NewTask(TypeDeviceFanOut, payload,
		asynq.TaskID(DeviceFanOutTaskID(jobID)), asynq.Queue(queue),
		asynq.MaxRetry(BulkMaxRetry), asynq.Timeout(DeviceFanOutTimeout)), nil
}

// NewDeviceStepTask returns the reset:device task of one device, in the job's queue.
func NewDeviceStepTask(p DeviceStepPayload, queue string) (*asynq.Task, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeDeviceStep, err)
	}
	return asynq.NewTask(TypeDeviceStep, payload,
		asynq.TaskID(DeviceStepTaskID(p.JobID, p.DeviceName)), asynq.Queue(queue),
		asynq.MaxRetry(UserMaxRetry+spareRetry), asynq.Timeout(DeviceTimeout)), nil
}

func (p DeviceStepPayload) validate() error {
	var problems []string
	if err := results.ValidateJobID(p.JobID); err != nil {
		problems = append(problems, err.Error())
	}
	if problem := checkDeviceName(p.DeviceName); problem != "" {
		problems = append(problems, problem)
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func checkDeviceName(name string) string {
	switch {
	case name == "":
		return "empty device name"
	case !utf8.ValidString(name):
		return fmt.Sprintf("device name %q is not valid UTF-8", truncate(name))
	case utf8.RuneCountInString(name) > MaxDeviceNameLength:
		return fmt.Sprintf("device name %q is longer than %d characters", truncate(name), MaxDeviceNameLength)
	case strings.ContainsFunc(name, isControl):
		return fmt.Sprintf("device name %q contains a control character", truncate(name))
	}
	return ""
}

// continueDeviceStep handles a new delivery of the reset:user task of a settled SIP
// user: it resumes a device lookup that an earlier delivery left unfinished, and
// otherwise repeats the check for the job's next step, whose enqueue may have failed.
func (h *Handlers) continueDeviceStep(ctx context.Context, p UserResetPayload, rec results.UserRecord) error {
	if rec.State == results.UserApplied && rec.Device == "" {
		return h.lookUpDevice(ctx, p)
	}
	job, err := h.Store.Job(ctx, p.JobID)
	if err != nil {
		return err
	}
	if !job.HasDeviceStep() || job.State.Finished() {
		zerolog.Ctx(ctx).Debug().Msg("user already settled, duplicate delivery ignored")
		return nil
	}
	return h.checkDeviceFollowup(ctx, p.JobID)
}

// checkDeviceFollowup starts the device steps, or enqueues the job's completion, when
// the job is ready for it. The reset:user handler calls it after recording a failed
// SIP user, because that user may have been the last one the device steps waited for.
func (h *Handlers) checkDeviceFollowup(ctx context.Context, jobID string) error {
	followup, err := h.Store.DeviceFollowup(ctx, jobID)
	if err != nil {
		return err
	}
	return h.act(ctx, jobID, followup)
}

// act enqueues what a device bookkeeping call asked for, in the job's queue.
func (h *Handlers) act(ctx context.Context, jobID string, followup results.Followup) error {
	if followup == results.FollowupNone {
		return nil
	}
	job, err := h.Store.Job(ctx, jobID)
	if err != nil {
		return err
	}
	queue, err := QueueFor(job.Priority)
	if err != nil {
		queue = QueueDefault
	}
	if followup == results.FollowupStartDevices {
		zerolog.Ctx(ctx).Info().Msg("every user is settled; device steps start")
	}
	return enqueueFollowup(ctx, h.Client, jobID, queue, followup)
}

// enqueueFollowup enqueues the reset:devices task for FollowupStartDevices and the
// reset:complete task for FollowupComplete. A task already queued counts as enqueued.
func enqueueFollowup(ctx context.Context, client Enqueuer, jobID, queue string, followup results.Followup) error {
	var task *asynq.Task
	var err error
	switch followup {
	case results.FollowupStartDevices:
		task, err = NewDeviceFanOutTask(jobID, queue)
	case results.FollowupComplete:
		task, err = NewCompleteTask(jobID, queue)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s of job %s: %w", task.Type(), jobID, err)
	}
	return nil
}

// lookUpDevice finds the device of a user whose new SIP password was just applied and
// records it, in jobs with a device step. The password outcome is already stored, so no
// error here changes it: a failed lookup is recorded as the user's device outcome.
func (h *Handlers) lookUpDevice(ctx context.Context, p UserResetPayload) error {
	log := zerolog.Ctx(ctx)

	rec, job, err := h.Store.UserAndJob(ctx, p.JobID, p.UserID)
	if err != nil {
		return err
	}
	if !job.HasDeviceStep() || job.State.Finished() || rec.State != results.UserApplied || rec.Device != "" {
		return nil
	}

	_, lastAttempt := attempt(ctx)
	deviceName, outcome := "", ""
	detail, err := h.Odin.UserDetail(ctx, p.UserID)
	switch {
	case err == nil:
		deviceName, outcome = deviceLookupOutcome(detail)
	case odin.IsPermanent(err) && !odin.IsAuthFailure(err):
		log.Warn().Err(err).Msg("Odin rejected the device lookup; recorded for the user, whose password stays applied")
		outcome = "failed: device lookup: " + odinReason(err)
	case ctx.Err() != nil && !(lastAttempt && errors.Is(ctx.Err(), context.DeadlineExceeded)):
		return err
	default:
		if ctx.Err() == nil {
			if wait := h.waitFor(ctx, p.JobID, err); wait != nil {
				return wait
			}
		}
		if !lastAttempt {
			log.Warn().Err(err).Msg("device lookup failed; will retry, the password stays applied")
			return fmt.Errorf("look up the device of user %q: %w", p.UserID, err)
		}
		log.Error().Err(err).Msg("device lookup failed on the last attempt; recorded for the user, whose password stays applied")
		outcome = "failed: device lookup: retries exhausted: " + odinReason(err)
	}

	// The last attempt may have run out of time: record with a context of its own.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	followup, err := h.Store.RecordDeviceLookup(recordCtx, p.JobID, rec, deviceName, outcome)
	if errors.Is(err, results.ErrConflict) {
		return fmt.Errorf("record of user %q changed while its device was looked up; retrying", p.UserID)
	}
	if err != nil {
		return err
	}
	log.Debug().Str("device", deviceName).Str("device_outcome", outcome).Msg("device looked up")
	return h.act(recordCtx, p.JobID, followup)
}

// deviceLookupOutcome returns the device to step and results.DevicePending, or the
// reason the user's phone gets no step.
func deviceLookupOutcome(detail *odin.UserDetail) (deviceName, outcome string) {
	device := detail.Device
	switch {
	case device == nil:
		return "", "skipped: the user has no device"
	case !strings.EqualFold(device.Level, "Group"):
		level := device.Level
		if level == "" {
			level = "an unknown"
		}
		return device.Name, fmt.Sprintf("skipped: device %q is at %s level; Odin rebuilds and resets group-level devices only", device.Name, level)
	}
	if problem := checkDeviceName(device.Name); problem != "" {
		return "", "skipped: " + problem
	}
	return device.Name, results.DevicePending
}

// HandleDeviceFanOut enqueues one reset:device task per device of the job whose step has
// not finished. It runs once every user is settled and every device is known. Run again,
// it enqueues only the devices still unfinished, and their TaskIDs keep a queued device
// from being enqueued twice.
func (h *Handlers) HandleDeviceFanOut(ctx context.Context, t *asynq.Task) error {
	log := zerolog.Ctx(ctx)

	var p DeviceFanOutPayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return permanent(err)
	}
	if err := results.ValidateJobID(p.JobID); err != nil {
		return permanent(err)
	}
	job, err := h.Store.Job(ctx, p.JobID)
	if errors.Is(err, results.ErrNotFound) {
		return permanent(fmt.Errorf("no record of job %s (expired or deleted): no device step was run", p.JobID))
	}
	if err != nil {
		return err
	}
	switch {
	case job.State == results.JobCancelled:
		return asynq.RevokeTask
	case job.State.Finished():
		return nil
	case !job.HasDeviceStep():
		return permanent(fmt.Errorf("job %s has no device step", p.JobID))
	}
	progress, err := h.Store.DeviceProgress(ctx, p.JobID)
	if err != nil {
		return err
	}
	if job.Pending() > 0 || progress.Lookups > 0 {
		// The settling of the last user or lookup enqueues this task again.
		log.Info().Int("users_pending", job.Pending()).Int("lookups_pending", progress.Lookups).
			Msg("device steps not ready; waiting for the last users")
		return nil
	}

	queue, err := QueueFor(job.Priority)
	if err != nil {
		queue = QueueDefault
	}
	enqueued := 0
	err = h.Store.ForEachDevice(ctx, p.JobID, func(dev results.DeviceRecord) error {
		if dev.Done {
			return nil
		}
		task, err := NewDeviceStepTask(DeviceStepPayload{JobID: p.JobID, DeviceName: dev.Name}, queue)
		if err != nil {
			return err
		}
		_, err = h.Client.EnqueueContext(ctx, task)
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("enqueue the step of device %q: %w", dev.Name, err)
		}
		enqueued++
		return nil
	})
	if err != nil {
		return err
	}
	log.Info().Int("devices", enqueued).Msg("device steps enqueued")

	// With no device left, nothing else completes the job.
	followup, err := h.Store.DeviceFollowup(ctx, p.JobID)
	if err != nil {
		return err
	}
	if followup == results.FollowupComplete {
		return h.enqueueComplete(ctx, p.JobID, queue)
	}
	return nil
}

// HandleDeviceStep rebuilds one device's configuration and, in reset mode, makes the
// phone re-sync, then records the outcome on each of the device's users. Each call's
// success is stored before the next call, so a retry does not repeat a finished call.
// Only a crash between an Odin call and its record makes the retry send that call again.
func (h *Handlers) HandleDeviceStep(ctx context.Context, t *asynq.Task) error {
	var p DeviceStepPayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return permanent(err)
	}
	if err := p.validate(); err != nil {
		return permanent(err)
	}
	logger := zerolog.Ctx(ctx).With().Str("device", p.DeviceName).Logger()
	ctx = logger.WithContext(ctx)

	job, err := h.Store.Job(ctx, p.JobID)
	if errors.Is(err, results.ErrNotFound) {
		return permanent(fmt.Errorf("no record of job %s (expired or deleted): device %q was not rebuilt", p.JobID, p.DeviceName))
	}
	if err != nil {
		return err
	}
	switch {
	case job.State == results.JobCancelled:
		logger.Info().Msg("job cancelled, device not rebuilt")
		return asynq.RevokeTask
	case job.State.Finished():
		return nil
	case !job.HasDeviceStep():
		return permanent(fmt.Errorf("job %s has no device step", p.JobID))
	}
	dev, err := h.Store.Device(ctx, p.JobID, p.DeviceName)
	if errors.Is(err, results.ErrNotFound) {
		return permanent(fmt.Errorf("device %q is not a device of job %s", p.DeviceName, p.JobID))
	}
	if err != nil {
		return err
	}
	if dev.Done {
		logger.Debug().Msg("device step already finished, duplicate delivery ignored")
		return nil
	}
	progress, err := h.Store.DeviceProgress(ctx, p.JobID)
	if err != nil {
		return err
	}
	if job.Pending() > 0 || progress.Lookups > 0 {
		return &WaitError{Delay: deviceNotReadyDelay, Reason: "device steps start once every user of the job is applied or failed"}
	}

	if dev.Outcome == "" {
		dev, err = h.callDevice(ctx, job, dev)
		if err != nil {
			return err
		}
	}
	return h.finishDevice(ctx, job.ID, dev)
}

// callDevice makes the device step's Odin calls that have not succeeded yet and stores
// the outcome. It returns an error only when the step should be tried again.
func (h *Handlers) callDevice(ctx context.Context, job results.Job, dev results.DeviceRecord) (results.DeviceRecord, error) {
	if !dev.Rebuilt {
		err := h.Odin.RebuildDevice(ctx, job.ServiceProviderID, job.GroupID, dev.Name)
		if err != nil {
			return h.deviceCallFailed(ctx, job, dev, "rebuild", err)
		}
		if job.Devices == results.DevicesRebuild {
			return h.storeDeviceOutcome(ctx, job.ID, dev, results.DeviceRebuilt)
		}
		dev, err = h.Store.MarkDeviceRebuilt(ctx, job.ID, dev)
		if err != nil {
			return dev, fmt.Errorf("record the rebuild of device %q: %w", dev.Name, err)
		}
	}

	if err := h.Odin.ResetDevice(ctx, job.ServiceProviderID, job.GroupID, dev.Name); err != nil {
		return h.deviceCallFailed(ctx, job, dev, "reset", err)
	}
	return h.storeDeviceOutcome(ctx, job.ID, dev, results.DeviceReset)
}

// deviceCallFailed classifies a failed rebuild or reset like any Odin call: pauses and
// rate limits wait without spending an attempt, transient errors are retried, and a
// permanent error or the last attempt's error becomes the device's "failed: ..." outcome.
func (h *Handlers) deviceCallFailed(ctx context.Context, job results.Job, dev results.DeviceRecord, call string, err error) (results.DeviceRecord, error) {
	log := zerolog.Ctx(ctx)
	_, lastAttempt := attempt(ctx)

	var reason string
	switch {
	case odin.IsPermanent(err) && !odin.IsAuthFailure(err):
		reason = odinReason(err)
	case ctx.Err() != nil && !(lastAttempt && errors.Is(ctx.Err(), context.DeadlineExceeded)):
		return dev, err
	default:
		if ctx.Err() == nil {
			if wait := h.waitFor(ctx, job.ID, err); wait != nil {
				return dev, wait
			}
		}
		if !lastAttempt {
			log.Warn().Err(err).Str("call", call).Msg("device call failed; will retry")
			return dev, fmt.Errorf("%s device %q: %w", call, dev.Name, err)
		}
		reason = "retries exhausted: " + odinReason(err)
	}

	outcome := "failed: " + call + ": " + reason
	if dev.Rebuilt {
		outcome += " (the configuration was rebuilt)"
	}
	log.Warn().Err(err).Str("call", call).Msg("device step failed; recorded for its users")
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return h.storeDeviceOutcome(recordCtx, job.ID, dev, outcome)
}

func (h *Handlers) storeDeviceOutcome(ctx context.Context, jobID string, dev results.DeviceRecord, outcome string) (results.DeviceRecord, error) {
	next, err := h.Store.SetDeviceOutcome(ctx, jobID, dev, outcome)
	if err != nil {
		return dev, fmt.Errorf("record the outcome of device %q: %w", dev.Name, err)
	}
	return next, nil
}

// finishDevice copies the device's outcome to each of its users, counts the device as
// done, and enqueues the job's completion when it was the last device.
func (h *Handlers) finishDevice(ctx context.Context, jobID string, dev results.DeviceRecord) error {
	followup, err := finishDevice(ctx, h.Store, jobID, dev)
	if err != nil {
		return err
	}
	zerolog.Ctx(ctx).Debug().Str("device_outcome", dev.Outcome).Int("users", len(dev.Users)).Msg("device step finished")
	return h.act(ctx, jobID, followup)
}

func finishDevice(ctx context.Context, store *results.Store, jobID string, dev results.DeviceRecord) (results.Followup, error) {
	for _, userID := range dev.Users {
		if err := setUserDevice(ctx, store, jobID, userID, dev); err != nil {
			return results.FollowupNone, err
		}
	}
	followup, err := store.FinishDevice(ctx, jobID, dev)
	if errors.Is(err, results.ErrConflict) {
		// Another delivery of this task finished the device meanwhile.
		return results.FollowupNone, nil
	}
	return followup, err
}

// setUserDevice copies a device outcome to one user's record, reading the record again
// when it changed concurrently.
func setUserDevice(ctx context.Context, store *results.Store, jobID, userID string, dev results.DeviceRecord) error {
	const tries = 3
	for try := 1; ; try++ {
		rec, err := store.User(ctx, jobID, userID)
		if err != nil {
			return err
		}
		if rec.Device == dev.Outcome && rec.DeviceName == dev.Name {
			return nil
		}
		_, err = store.SetDevice(ctx, jobID, rec, dev.Name, dev.Outcome)
		if err == nil || !errors.Is(err, results.ErrConflict) || try == tries {
			return err
		}
	}
}

// sweepDevices repairs the device part of a stalled job whose users are all settled. It
// resumes lookups left unfinished by a lost or archived task, re-enqueues or fails
// device steps whose task is gone or archived, and enqueues a completion that nothing
// enqueued. It returns how many tasks it enqueued again or steps it recorded as failed.
func (s *Sweeper) sweepDevices(ctx context.Context, job results.Job, queue string) (int, error) {
	if !job.HasDeviceStep() || job.State != results.JobRunning || !job.UsersLoaded || job.Pending() > 0 {
		return 0, nil
	}
	progress, err := s.Store.DeviceProgress(ctx, job.ID)
	if err != nil {
		return 0, err
	}

	repaired := 0
	if progress.Lookups > 0 {
		lookups := &taskBatch[results.UserRecord]{
			sweeper: s, queue: queue,
			taskID: func(rec results.UserRecord) string { return UserTaskID(job.ID, rec.UserID) },
			repair: func(rec results.UserRecord) (int, error) { return s.repairLookup(ctx, job, queue, rec) },
		}
		err = s.Store.ForEachUser(ctx, job.ID, func(rec results.UserRecord) error {
			if rec.State != results.UserApplied || rec.Device != "" {
				return nil
			}
			return lookups.add(ctx, rec)
		})
		if err == nil {
			err = lookups.flush(ctx)
		}
		repaired = lookups.repaired
	} else {
		steps := &taskBatch[results.DeviceRecord]{
			sweeper: s, queue: queue,
			taskID: func(dev results.DeviceRecord) string { return DeviceStepTaskID(job.ID, dev.Name) },
			repair: func(dev results.DeviceRecord) (int, error) { return s.repairDeviceStep(ctx, job, queue, dev) },
		}
		err = s.Store.ForEachDevice(ctx, job.ID, func(dev results.DeviceRecord) error {
			if dev.Done {
				return nil
			}
			return steps.add(ctx, dev)
		})
		if err == nil {
			err = steps.flush(ctx)
		}
		repaired = steps.repaired
	}
	if err != nil {
		return repaired, err
	}

	// The walk above enqueued every unfinished step, so only a job with nothing left
	// needs more: its completion.
	followup, err := s.Store.DeviceFollowup(ctx, job.ID)
	if err != nil || followup != results.FollowupComplete {
		return repaired, err
	}
	return repaired + 1, enqueueFollowup(ctx, s.Client, job.ID, queue, followup)
}

// repairLookup handles an applied user whose device lookup is unfinished. When the
// user's reset:user task is gone, it enqueues the task again, which resumes the lookup.
// When asynq archived the task, it records the lookup as failed.
func (s *Sweeper) repairLookup(ctx context.Context, job results.Job, queue string, rec results.UserRecord) (int, error) {
	taskID := UserTaskID(job.ID, rec.UserID)
	info, err := s.Inspector.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		if err := s.enqueueUser(ctx, job, queue, rec.UserID); err != nil {
			return 0, err
		}
		return 1, nil
	case err != nil:
		return 0, err
	case info.State != asynq.TaskStateArchived:
		return 0, nil
	}

	outcome := "failed: device lookup: retries exhausted"
	if info.LastErr != "" {
		outcome += ": " + info.LastErr
	}
	followup, err := s.Store.RecordDeviceLookup(ctx, job.ID, rec, "", outcome)
	if err != nil && !errors.Is(err, results.ErrConflict) {
		return 0, err
	}
	_ = s.Inspector.DeleteTask(queue, taskID)
	return 1, enqueueFollowup(ctx, s.Client, job.ID, queue, followup)
}

// repairDeviceStep enqueues the reset:device task of an unfinished device when it is
// gone, and records the step as failed when asynq archived the task.
func (s *Sweeper) repairDeviceStep(ctx context.Context, job results.Job, queue string, dev results.DeviceRecord) (int, error) {
	taskID := DeviceStepTaskID(job.ID, dev.Name)
	info, err := s.Inspector.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		task, err := NewDeviceStepTask(DeviceStepPayload{JobID: job.ID, DeviceName: dev.Name}, queue)
		if err != nil {
			return 0, err
		}
		if _, err := s.Client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return 0, err
		}
		return 1, nil
	case err != nil:
		return 0, err
	case info.State != asynq.TaskStateArchived:
		return 0, nil
	}

	if dev.Outcome == "" {
		outcome := "failed: retries exhausted"
		if info.LastErr != "" {
			outcome += ": " + info.LastErr
		}
		if dev.Rebuilt {
			outcome += " (the configuration was rebuilt)"
		}
		dev, err = s.Store.SetDeviceOutcome(ctx, job.ID, dev, outcome)
		if err != nil {
			return 0, err
		}
	}
	followup, err := finishDevice(ctx, s.Store, job.ID, dev)
	if err != nil {
		return 0, err
	}
	_ = s.Inspector.DeleteTask(queue, taskID)
	return 1, enqueueFollowup(ctx, s.Client, job.ID, queue, followup)
}
