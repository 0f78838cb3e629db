package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/ratelimit"
)

// LoggingMiddleware gives each task a logger with the fixed keys task_id, task_type,
// queue, attempt, job_id and user_id, stores it in the context for zerolog.Ctx, and logs
// the task's end with its duration and error. Payloads are never logged.
func LoggingMiddleware(base zerolog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			lc := base.With().Str("task_type", t.Type())
			if id, ok := asynq.GetTaskID(ctx); ok {
				lc = lc.Str("task_id", id)
			}
			if q, ok := asynq.GetQueueName(ctx); ok {
				lc = lc.Str("queue", q)
			}
			retried, _ := asynq.GetRetryCount(ctx)
			lc = lc.Int("attempt", retried+1)
			var ids struct {
				JobID  string `json:"jobId"`
				UserID string `json:"userId"`
			}
			if json.Unmarshal(t.Payload(), &ids) == nil {
				// A hand-made payload may carry megabytes in an ID, and every line of the
				// task repeats these fields. A valid user ID has at most 161 characters of
				// at most 4 bytes, so it is never cut.
				if ids.JobID != "" {
					lc = lc.Str("job_id", clip(ids.JobID, maxLoggedIDBytes))
				}
				if ids.UserID != "" {
					lc = lc.Str("user_id", clip(ids.UserID, maxLoggedIDBytes))
				}
			}
			logger := lc.Logger()
			ctx = logger.WithContext(ctx)

			start := time.Now()
			err := next.ProcessTask(ctx, t)
			logEnd(&logger, err, time.Since(start))
			return err
		})
	}
}

// maxLoggedIDBytes bounds the job_id and user_id fields of a task's log lines.
const maxLoggedIDBytes = 4 * MaxUserIDLength

func logEnd(logger *zerolog.Logger, err error, elapsed time.Duration) {
	var wait *WaitError
	switch {
	case err == nil:
		logger.Debug().Dur("elapsed_ms", elapsed).Msg("task done")
	case errors.Is(err, asynq.RevokeTask):
		logger.Info().Dur("elapsed_ms", elapsed).Msg("task revoked")
	case errors.As(err, &wait) && (wait.Reason == ratelimit.ReasonRateLimit || wait.Reason == lowQueueReason):
		// Routine at low rates and behind default-priority jobs: one line per task and wait.
		logger.Debug().Dur("elapsed_ms", elapsed).Dur("delay_ms", wait.Delay).Str("reason", wait.Reason).Msg("task postponed")
	case errors.As(err, &wait):
		logger.Info().Dur("elapsed_ms", elapsed).Dur("delay_ms", wait.Delay).Str("reason", wait.Reason).Msg("task postponed")
	case errors.Is(err, asynq.SkipRetry):
		logger.Warn().Err(err).Dur("elapsed_ms", elapsed).Msg("task failed permanently")
	default:
		logger.Warn().Err(err).Dur("elapsed_ms", elapsed).Msg("task failed; asynq will retry it")
	}
}

// redactURLError strips the URL (which may carry credentials or tokens in its query)
// from a *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Op + ": " + ue.Err.Error())
	}
	return err
}
