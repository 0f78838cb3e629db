package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
)

// Pauser stops every worker of the fleet from calling Odin for a while; the fleet-wide
// rate limiter implements it (see ratelimit.Limiter for the methods).
type Pauser interface {
	Pause(ctx context.Context, d time.Duration, reason string) error
	PauseEscalating(ctx context.Context, first, longest time.Duration, reason string) (remaining time.Duration, pauses int, err error)
}

// Enqueuer is the part of *asynq.Client the handlers use. It must be safe for concurrent
// use, because the fan-out enqueues several tasks at once.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Observer receives events for metrics. Every method must be safe for concurrent use;
// none receives a secret.
type Observer interface {
	// UserSettled is called once per user outcome: state is applied or failed.
	UserSettled(credential results.CredentialType, state results.UserState)
	// JobFinished is called once when a job completes or is cancelled.
	JobFinished(job results.Job)
}

// Handlers runs the tasks of bulk resets. Build one per worker process and register it
// with Register. All fields but Observer and Pauser are required.
type Handlers struct {
	Store *results.Store
	Odin  *odin.Client
	// Client enqueues the per-user and completion tasks.
	Client Enqueuer
	// Inspector, when set, lets the fan-out look at a task that holds the TaskID of a
	// user's task: one made outside the fan-out is replaced. Nil takes every such task
	// for the user's own.
	Inspector *asynq.Inspector
	// Pauser pauses the fleet after a 429 or a failed Odin login; nil disables that.
	Pauser Pauser
	// Observer receives metrics events; nil disables them.
	Observer Observer
	// ChunkSize is how many users the fan-out handles per generator call. Default 200.
	ChunkSize int
	// LoginCooldown is how long the fleet stops calling Odin after a failed login.
	// Default 60 s.
	LoginCooldown time.Duration
	// HTTPClient posts completion callbacks. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// defaultWork caches whether the default queue has work, for lowQueueGate.
	defaultWork struct {
		sync.Mutex
		checkedAt time.Time
		busy      bool
	}
	// groupLists caches the group lists of recent fan-outs (see groupMembers).
	groupLists memberCache
}

func (h *Handlers) chunkSize() int {
	if h.ChunkSize > 0 {
		return h.ChunkSize
	}
	return 200
}

func (h *Handlers) loginCooldown() time.Duration {
	if h.LoginCooldown > 0 {
		return h.LoginCooldown
	}
	return time.Minute
}

func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Register adds the handlers, the logging middleware and PriorityMiddleware to mux.
// logger is the base of every task's logger; handlers read it with zerolog.Ctx.
func (h *Handlers) Register(mux *asynq.ServeMux, logger zerolog.Logger) {
	mux.Use(LoggingMiddleware(logger), PriorityMiddleware, h.lowQueueGate)
	mux.HandleFunc(TypeBulkReset, h.HandleBulkReset)
	mux.HandleFunc(TypeUserReset, h.HandleUserReset)
	mux.HandleFunc(TypeComplete, h.HandleComplete)
	mux.HandleFunc(TypeDeviceFanOut, h.HandleDeviceFanOut)
	mux.HandleFunc(TypeDeviceStep, h.HandleDeviceStep)
}

// PriorityMiddleware marks the context of every task outside QueueHigh as low priority
// for the fleet-wide rate limiter (ratelimit.LowPriority). The Odin requests of
// high-priority tasks then find a free slot within the limiter's headroom, even while a
// large batch keeps every worker slot waiting for the limiter.
func PriorityMiddleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if queue, _ := asynq.GetQueueName(ctx); queue != QueueHigh {
			ctx = ratelimit.LowPriority(ctx)
		}
		return next.ProcessTask(ctx, t)
	})
}

// lowQueueWait is how long a task of QueueLow waits while default-priority jobs have work,
// and lowQueueReason the reason of that wait.
const (
	lowQueueWait   = 5 * time.Second
	lowQueueReason = "waiting while default-priority jobs run"
)

// lowQueueGate makes the tasks of QueueLow wait, without spending an attempt, while
// QueueDefault has work (waitForDefaultJobs). asynq's strict priority picks default tasks
// first, but only those already queued. A default job's fan-out
// enqueues its users a chunk at a time, and a default task postponed by the rate limiter
// waits in the retry set. Low tasks took the free slots meanwhile and shared the rate
// with the default job, so a low job could finish first. Completion tasks pass, because
// they do not call Odin. When Redis fails, the task runs as before.
func (h *Handlers) lowQueueGate(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if queue, _ := asynq.GetQueueName(ctx); queue != QueueLow || t.Type() == TypeComplete {
			return next.ProcessTask(ctx, t)
		}
		var ids struct {
			JobID string `json:"jobId"`
		}
		_ = json.Unmarshal(t.Payload(), &ids)
		if wait := h.waitForDefaultJobs(ctx, ids.JobID); wait != nil {
			return wait
		}
		return next.ProcessTask(ctx, t)
	})
}

// waitForDefaultJobs returns a *WaitError, and sets the reason of job jobID, while
// QueueDefault has work. It returns nil when the queue has none or Redis fails. It also
// returns nil for a finished or missing job, so that the handler ends the task and a
// cancelled low job does not keep tasks waiting.
func (h *Handlers) waitForDefaultJobs(ctx context.Context, jobID string) error {
	busy, err := h.defaultQueueBusy(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not read the default queue's size; running the low-priority task")
		return nil
	}
	if !busy {
		return nil
	}
	if jobID != "" {
		state, err := h.Store.JobState(ctx, jobID)
		if errors.Is(err, results.ErrNotFound) || state.Finished() {
			return nil
		}
		if err == nil {
			err = h.Store.SetReason(ctx, jobID, lowQueueReason)
		}
		if err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("could not record the waiting reason")
		}
	}
	return &WaitError{Delay: lowQueueWait, Reason: lowQueueReason}
}

// defaultQueueBusy reports whether QueueDefault has work (see queueHasWork). Each worker
// caches the result for a second.
func (h *Handlers) defaultQueueBusy(ctx context.Context) (bool, error) {
	w := &h.defaultWork
	w.Lock()
	defer w.Unlock()
	now := time.Now()
	if now.Sub(w.checkedAt) < time.Second {
		return w.busy, nil
	}
	busy, err := queueHasWork(ctx, h.Store.Redis(), QueueDefault)
	if err != nil {
		return false, err
	}
	w.checkedAt, w.busy = now, busy
	return busy, nil
}

// permanent marks err as not worth retrying: asynq archives the task with err's text.
func permanent(err error) error {
	return fmt.Errorf("%w (%w)", err, asynq.SkipRetry)
}

// WaitError makes asynq run the task again after Delay without counting a failed
// attempt, because the task did not reach Odin: the fleet is paused or rate-limited.
type WaitError struct {
	Delay  time.Duration
	Reason string
}

// Error describes what the task waits for; asynqmon shows it, and RunLoginWaits finds the
// tasks waiting for the end of a login pause by it.
func (e *WaitError) Error() string {
	return fmt.Sprintf("waiting %s before calling Odin: %s", e.Delay.Round(time.Second), e.Reason)
}

// odinReason turns an Odin error into the reason stored for a failed user: Odin's own
// message where there is one.
func odinReason(err error) string {
	var apiErr *odin.APIError
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		return "Odin: " + apiErr.Message
	}
	return err.Error()
}

func retryCount(ctx context.Context) (retried, maxRetry int) {
	retried, _ = asynq.GetRetryCount(ctx)
	maxRetry, _ = asynq.GetMaxRetry(ctx)
	return retried, maxRetry
}

// attempt returns how many attempts of the task failed before this one, and whether
// this is the handlers' last attempt: the one before asynq's spare attempt (see
// spareRetry). A failure on it is recorded; a wait on it runs it again.
func attempt(ctx context.Context) (retried int, last bool) {
	retried, maxRetry := retryCount(ctx)
	return retried, retried >= maxRetry-spareRetry
}
