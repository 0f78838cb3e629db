package tasks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/results"
)

// HandleBulkReset fans a job out: it creates the record, loads the user list (from the
// payload, or from Odin for all-users jobs), then walks the users in chunks. For each
// chunk it generates values for the users that have none, writes them to the record, and
// only then enqueues one reset:user task per pending user. A cursor in the record lets a
// retried fan-out resume after the last finished chunk.
func (h *Handlers) HandleBulkReset(ctx context.Context, t *asynq.Task) error {
	err := h.fanOut(ctx, t)
	if errors.Is(err, errJobCancelled) {
		zerolog.Ctx(ctx).Info().Msg("job cancelled during fan-out, stopping")
		return nil
	}
	return err
}

func (h *Handlers) fanOut(ctx context.Context, t *asynq.Task) error {
	log := zerolog.Ctx(ctx)

	var p BulkResetPayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return permanent(err)
	}
	p, _, err := p.Normalize()
	if err != nil {
		return permanent(err)
	}
	queue, _ := QueueFor(p.Priority)
	ctx = odin.BeforeSend(ctx, h.fanOutRecheck(p.JobID))

	job, created, err := h.Store.CreateJob(ctx, jobFromPayload(p))
	if err != nil {
		return fmt.Errorf("create record: %w", err)
	}
	if !created {
		if diff := jobDifference(job, p); diff != "" {
			return permanent(fmt.Errorf("job ID %s is already used by a %s job for %s/%s, but this task requests %s: choose another job ID", p.JobID, job.Type, job.ServiceProviderID, job.GroupID, diff))
		}
	}
	if job.State.Finished() {
		log.Info().Str("state", string(job.State)).Msg("job already finished, nothing to do")
		return nil
	}

	if !job.UsersLoaded && p.Resume {
		return permanent(fmt.Errorf("cannot resume job %s: its user list was never stored; submit the job again", p.JobID))
	}
	if !job.UsersLoaded {
		users := p.Users
		if p.AllUsers {
			users, err = h.groupUserIDs(ctx, p)
			if err != nil {
				return h.groupListingFailure(ctx, p, queue, err)
			}
			log.Info().Int("users", len(users)).Msg("listed the group's users")
		}
		if job, err = h.Store.LoadUsers(ctx, p.JobID, users); err != nil {
			return fmt.Errorf("load users: %w", err)
		}
		log.Info().Int("users", job.Total).Str("type", string(job.Type)).Msg("job started")
	}
	if job.State == results.JobCompleted {
		return h.enqueueComplete(ctx, p.JobID, queue)
	}

	// An all-users job took its users from the group's list: they are members.
	var members map[string]struct{}
	if !p.AllUsers && job.Cursor < job.Total {
		members, err = h.groupMembers(ctx, p)
		switch {
		case odin.IsPermanent(err) || odin.IsMalformed(err):
			members = h.lookUpEveryUser(ctx, p, err)
		case err != nil:
			return h.odinFailure(ctx, p.JobID, err)
		}
	}

	for job.Cursor < job.Total {
		if err := ctx.Err(); err != nil {
			return err
		}
		ids, err := h.Store.UserIDs(ctx, p.JobID, job.Cursor, h.fanOutChunkSize(p))
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("user list of job %s ends at %d of %d users: the record is damaged", p.JobID, job.Cursor, job.Total)
		}
		err = h.fanOutChunk(ctx, p, queue, ids, members)
		if errors.Is(err, errJobCancelled) {
			log.Info().Int("cursor", job.Cursor).Msg("job cancelled during fan-out, stopping")
			return nil
		}
		if err != nil {
			return err
		}
		if err := h.Store.SetCursor(ctx, p.JobID, job.Cursor+len(ids)); err != nil {
			return err
		}
		if job, err = h.Store.Job(ctx, p.JobID); err != nil {
			return err
		}
		if strings.HasPrefix(job.Reason, fanOutWaitPrefix) {
			// The chunk got its values, so Odin responds again.
			if _, err := h.Store.ClearReason(ctx, p.JobID, fanOutWaitPrefix); err != nil {
				return err
			}
		}
		if job.State == results.JobCancelled {
			log.Info().Int("cursor", job.Cursor).Msg("job cancelled during fan-out, stopping")
			return nil
		}
		if queue == QueueLow && job.Cursor < job.Total {
			// lowQueueGate checked only when the fan-out started. A SIP fan-out may take
			// minutes, so a default job submitted meanwhile waits no longer than a chunk.
			if wait := h.waitForDefaultJobs(ctx, p.JobID); wait != nil {
				log.Info().Int("cursor", job.Cursor).Msg("default-priority jobs have work; low-priority fan-out resumes later")
				return wait
			}
		}
	}
	log.Info().Int("users", job.Total).Msg("fan-out finished")
	return nil
}

// fanOutChunk fails the chunk's users that are not in the job's group (unless members
// is nil), writes values ahead for the others that have none, then enqueues every user
// that is still pending. It returns errJobCancelled when it stopped for a cancel.
func (h *Handlers) fanOutChunk(ctx context.Context, p BulkResetPayload, queue string, ids []string, members map[string]struct{}) error {
	recs, err := h.Store.Users(ctx, p.JobID, ids)
	if err != nil {
		return err
	}
	if members != nil {
		if err := h.failOutsiders(ctx, p, queue, recs, members); err != nil {
			return err
		}
	}

	var needValue []string
	for _, rec := range recs {
		if !p.DryRun && rec.State == results.UserPending && rec.Secret == "" {
			needValue = append(needValue, rec.UserID)
		}
	}
	if len(needValue) > 0 {
		values, genErr := h.generate(ctx, p.JobID, p.Type, p.ServiceProviderID, p.GroupID, len(needValue))
		if errors.Is(genErr, errJobCancelled) {
			// The values were sent nowhere: they need no record.
			return genErr
		}
		if genErr != nil && odin.IsPermanent(genErr) && !odin.IsAuthFailure(genErr) && !finalRejection(ctx) {
			zerolog.Ctx(ctx).Warn().Err(genErr).Msg("Odin rejected the generator request; retrying before failing the remaining users")
			return h.odinFailure(ctx, p.JobID, genErr)
		}
		if genErr != nil && odin.IsPermanent(genErr) && !odin.IsAuthFailure(genErr) {
			// Odin will not generate values for this group (unknown group, no permission):
			// no user of the job can be reset, so record that for each of them.
			return h.failRemaining(ctx, p, queue, "cannot generate new values: "+odinReason(genErr))
		}
		// After a transient failure, values holds what Odin generated before it: keeping
		// them lets the retried fan-out enqueue those users and generate only the rest.
		if len(values) > 0 {
			secrets := make(map[string]string, len(values))
			for i, value := range values {
				secrets[needValue[i]] = value
			}
			if _, err := h.Store.WriteAhead(ctx, p.JobID, secrets); err != nil {
				return fmt.Errorf("write values ahead: %w", err)
			}
		}
		if genErr != nil {
			return h.odinFailure(ctx, p.JobID, genErr)
		}
	}

	// A cancel during the generator call above, which may take seconds on a slow Odin,
	// would otherwise enqueue a chunk of tasks that only revoke themselves.
	if state, err := h.Store.JobState(ctx, p.JobID); err == nil && state == results.JobCancelled {
		return errJobCancelled
	}

	users := make([]string, 0, len(recs))
	for _, rec := range recs {
		if rec.State == results.UserPending {
			users = append(users, rec.UserID)
		}
	}
	return h.enqueueUsers(ctx, p, queue, users)
}

// enqueueUsers enqueues one reset:user task per user, with enqueueParallelism enqueues
// (one Redis round trip each) in flight. The goroutines start once per chunk rather than
// once per task, because each new goroutine grows its stack on its first enqueue.
func (h *Handlers) enqueueUsers(ctx context.Context, p BulkResetPayload, queue string, users []string) error {
	userTasks := make([]*asynq.Task, len(users))
	for i, userID := range users {
		task, err := NewUserResetTask(UserResetPayload{
			JobID: p.JobID, UserID: userID, Type: p.Type,
			ServiceProviderID: p.ServiceProviderID, GroupID: p.GroupID,
		}, queue)
		if err != nil {
			return err
		}
		userTasks[i] = task
	}

	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range min(enqueueParallelism, len(userTasks)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(userTasks) {
					return nil
				}
				_, err := h.Client.EnqueueContext(gctx, userTasks[i])
				if errors.Is(err, asynq.ErrTaskIDConflict) {
					err = h.replaceForeignTask(gctx, queue, UserTaskID(p.JobID, users[i]), userTasks[i])
				}
				if err != nil {
					return fmt.Errorf("enqueue reset of user %q: %w", users[i], err)
				}
			}
		})
	}
	return g.Wait()
}

// sipSingleValueChunk is the fan-out's chunk of a SIP job while Odin's SIP generator
// returns one value per request. A chunk's users are enqueued only once all their values
// are written. At the default 5 requests per second, a chunk of 200 values would keep
// every user waiting for 40 s.
const sipSingleValueChunk = 25

// sipProbeChunk is a SIP chunk of a worker that has not yet seen whether Odin's SIP
// generator returns a batch: its generator request finds out, and a small chunk lets
// the first users start within seconds either way.
const sipProbeChunk = 10

// fanOutChunkSize returns the number of users of the fan-out's next chunk.
func (h *Handlers) fanOutChunkSize(p BulkResetPayload) int {
	size := h.chunkSize()
	if p.Type != results.SIP || p.DryRun {
		return size
	}
	switch batches, known := h.Odin.SIPGeneratorBatches(); {
	case !known:
		size = min(size, sipProbeChunk)
	case !batches:
		size = min(size, sipSingleValueChunk)
	}
	return size
}

// fanOutRecheckInterval is how often the fan-out's Odin requests read the job's state.
const fanOutRecheckInterval = time.Second

// fanOutRecheck returns the odin.BeforeSendFunc of a fan-out's Odin requests. Once per
// fanOutRecheckInterval at most, it reads the job's state and stops the request if the
// job was cancelled, because one-value-per-request generator calls would otherwise go on
// for the rest of the chunk.
func (h *Handlers) fanOutRecheck(jobID string) odin.BeforeSendFunc {
	var mu sync.Mutex
	var last time.Time
	return func(ctx context.Context, _ time.Duration) error {
		mu.Lock()
		due := time.Since(last) >= fanOutRecheckInterval
		if due {
			last = time.Now()
		}
		mu.Unlock()
		if !due {
			return nil
		}
		if state, err := h.Store.JobState(ctx, jobID); err == nil && state == results.JobCancelled {
			return errJobCancelled
		}
		return nil
	}
}

// replaceForeignTask handles a user's task whose TaskID is taken. A pending or retrying
// task with the same payload is the user's own, from an earlier fan-out attempt, and is
// kept. Any other taker (another payload, scheduled for later, or archived) is deleted
// and task is enqueued in its place, so the user does not wait minutes for the
// stalled-job sweeper. A running taker is kept: it ends by itself, and the sweeper
// enqueues the user's task if the taker was not the user's own.
func (h *Handlers) replaceForeignTask(ctx context.Context, queue, taskID string, task *asynq.Task) error {
	if h.Inspector == nil {
		return nil
	}
	info, err := h.Inspector.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		// It ended meanwhile: enqueue the user's task now.
	case err != nil:
		return fmt.Errorf("inspect task %s: %w", taskID, err)
	case info.State == asynq.TaskStateActive:
		return nil
	case (info.State == asynq.TaskStatePending || info.State == asynq.TaskStateRetry) && bytes.Equal(info.Payload, task.Payload()):
		// The user's own task: the fan-out and the sweeper never schedule one for later.
		return nil
	default:
		zerolog.Ctx(ctx).Warn().Str("user_task_id", taskID).Str("state", info.State.String()).Str("last_error", info.LastErr).
			Msg("the TaskID of a user's task was taken by another task; replacing it with the user's own")
		if err := h.Inspector.DeleteTask(queue, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("delete task %s: %w", taskID, err)
		}
	}
	_, err = h.Client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		// Another attempt of the fan-out enqueued it first.
		return nil
	}
	return err
}

// rejectionAttempts is the fan-out attempt from which a permanent error (a 4xx) of Odin's
// generator or group listing fails the job's remaining users or cancels the job. Earlier
// attempts are retried with backoff: a proxy or load balancer in front of Odin may return
// 403 or 404 for a few seconds, and failing every remaining user cannot be undone.
const rejectionAttempts = 3

// finalRejection reports whether a permanent rejection in this fan-out attempt is final,
// because rejectionAttempts-1 attempts before it failed.
func finalRejection(ctx context.Context) bool {
	retried, _ := retryCount(ctx)
	return retried >= rejectionAttempts-1
}

// enqueueParallelism is how many reset:user tasks the fan-out enqueues at once.
const enqueueParallelism = 16

// generate requests n new values of the credential type from Odin, in one call where Odin
// accepts a count. When Odin returns another number of values than requested, it requests
// the rest in batches of the size Odin returned. When Odin rejects the count with a 4xx,
// it halves the batch size. Values from a call with the wrong count are discarded: none of
// them has been sent anywhere.
//
// A transient failure (5xx, reset, timeout) halves the batch and is retried after a short
// backoff, up to maxGenerateFaults failures in a row. That matters where the SIP generator
// ignores the count: one batch is then as many requests as values, and a long batch would
// rarely get through an Odin that fails a few percent of requests. On an error, generate
// returns the values it already has with the error. With a jobID, the first failure sets
// the job's reason; the per-user regenerate passes "" and leaves the reason alone.
func (h *Handlers) generate(ctx context.Context, jobID string, t results.CredentialType, sp, group string, n int) ([]string, error) {
	values := make([]string, 0, n)
	batch := n
	faults := 0
	noted := false // whether this call set the job's fan-out wait reason
	for len(values) < n {
		want := min(batch, n-len(values))
		got, err := h.generateOnce(ctx, t, sp, group, want)
		if err != nil && len(got) > 0 {
			// Values from the requests that worked before this one failed (the SIP
			// generator without limit makes one request per value): keep them.
			values = append(values, got[:min(len(got), n-len(values))]...)
			faults = 0
		}
		var countErr *odin.CountError
		switch {
		case err == nil:
			values = append(values, got...)
			faults = 0
			if noted {
				// Odin responds again. A SIP generator without limit may take minutes
				// for the rest of the chunk, so the reason must not wait for its end.
				h.clearFanOutWait(ctx, jobID)
				noted = false
			}
		case errors.As(err, &countErr) && want > 1:
			// Odin caps the count below what was asked: ask for what it returned.
			batch = max(1, min(countErr.Got, want-1))
		case odin.IsPermanent(err) && !odin.IsAuthFailure(err) && want > 1:
			batch = want / 2
		case retryInPlace(err) && faults < maxGenerateFaults:
			faults++
			batch = max(1, want/2)
			delay := generateBackoff << (faults - 1)
			zerolog.Ctx(ctx).Warn().Err(err).Int("failures_in_a_row", faults).Dur("retry_in_ms", delay).
				Msg("Odin generator call failed; retrying with a smaller batch")
			if faults == 1 {
				h.noteFanOutWait(ctx, jobID, err)
				noted = jobID != ""
			}
			if err := sleep(ctx, delay); err != nil {
				return values, err
			}
		default:
			return values, err
		}
	}
	return values, nil
}

// Retries of a generator call that failed transiently: at most maxGenerateFaults in a
// row, the first after generateBackoff, doubling (0.25 s to 4 s, 7.75 s in all).
const (
	maxGenerateFaults = 5
	generateBackoff   = 250 * time.Millisecond
)

// retryInPlace reports whether a failed generator call may be repeated at once: a
// transient fault, but not a 429 or a Retry-After, which pause the fleet instead.
func retryInPlace(err error) bool {
	return !mustWait(err) && odin.IsTransient(err)
}

func (h *Handlers) generateOnce(ctx context.Context, t results.CredentialType, sp, group string, n int) ([]string, error) {
	switch t {
	case results.SIP:
		return h.Odin.GenerateSIPPasswords(ctx, sp, group, n)
	case results.Voicemail:
		return h.Odin.GeneratePasscodes(ctx, sp, group, n)
	case results.Web:
		return h.Odin.GeneratePasswords(ctx, sp, group, n)
	}
	return nil, fmt.Errorf("no generator for credential type %q", t)
}

func (h *Handlers) groupUserIDs(ctx context.Context, p BulkResetPayload) ([]string, error) {
	listed, err := h.Odin.GroupUsers(ctx, p.ServiceProviderID, p.GroupID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(listed))
	for _, u := range listed {
		ids = append(ids, u.UserID)
	}
	users, _, problems := NormalizeUsers(ids)
	if len(problems) > 0 {
		zerolog.Ctx(ctx).Warn().Strs("problems", problems).Msg("Odin listed user IDs that cannot be reset; skipping them")
	}
	return users, nil
}

func (h *Handlers) enqueueComplete(ctx context.Context, jobID, queue string) error {
	return EnqueueCompletion(ctx, h.Client, jobID, queue)
}

// EnqueueCompletion enqueues the reset:complete task of a job, which logs the job's end
// and posts its callback. Its TaskID allows one per job, so a conflict means it is queued
// or done already.
func EnqueueCompletion(ctx context.Context, client Enqueuer, jobID, queue string) error {
	task, err := NewCompleteTask(jobID, queue)
	if err != nil {
		return err
	}
	if _, err := client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue completion of job %s: %w", jobID, err)
	}
	return nil
}

func jobFromPayload(p BulkResetPayload) results.Job {
	return results.Job{
		ID:                p.JobID,
		Type:              p.Type,
		ServiceProviderID: p.ServiceProviderID,
		GroupID:           p.GroupID,
		AllUsers:          p.AllUsers,
		RequestedBy:       p.RequestedBy,
		Priority:          p.Priority,
		CallbackURL:       p.CallbackURL,
		Devices:           p.Devices,
		DryRun:            p.DryRun,
		TTL:               ttlFromSeconds(p.ResultTTLSeconds),
		UsersDigest:       usersDigest(p),
	}
}

// usersDigest identifies the user list of a payload whatever its order, or returns ""
// for a payload without one (all users, or a resumed fan-out).
func usersDigest(p BulkResetPayload) string {
	if p.AllUsers || p.Resume {
		return ""
	}
	users := slices.Clone(p.Users)
	slices.Sort(users)
	sum := sha256.Sum256([]byte(strings.Join(users, "\n")))
	return hex.EncodeToString(sum[:16])
}

// jobDifference describes the part of a payload that differs from the job with its ID,
// or returns "" for a payload of the same job.
func jobDifference(j results.Job, p BulkResetPayload) string {
	switch {
	case j.Type != p.Type || j.ServiceProviderID != p.ServiceProviderID || j.GroupID != p.GroupID:
		return fmt.Sprintf("a %s job for %s/%s", p.Type, p.ServiceProviderID, p.GroupID)
	case j.AllUsers != p.AllUsers:
		return fmt.Sprintf("all users %v where the job has %v", p.AllUsers, j.AllUsers)
	case j.DryRun != p.DryRun:
		return fmt.Sprintf("dry run %v where the job has %v", p.DryRun, j.DryRun)
	case j.Devices != p.Devices:
		return fmt.Sprintf("device step %q where the job has %q", p.Devices, j.Devices)
	case j.UsersDigest != "" && usersDigest(p) != "" && j.UsersDigest != usersDigest(p):
		return "another user list"
	}
	return ""
}
