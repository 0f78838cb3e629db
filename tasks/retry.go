package tasks

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/odin"
)

// Backoff bounds for RetryDelay.
const (
	RetryBase = 5 * time.Second
	RetryCap  = 5 * time.Minute
)

// RetryDelay is the asynq.Config.RetryDelayFunc of the worker. A *WaitError gets its own
// delay. Other errors get exponential backoff from RetryBase, doubling per attempt and
// capped at RetryCap, or Odin's Retry-After when that is longer. Jitter of up to +25%
// keeps a batch that failed together from retrying together.
//
// A task whose worker died or lost Redis (asynq.ErrLeaseExpired) gets RetryBase whatever
// its attempt, because it already waited at least 30 s for its lease to expire and a
// crash is no sign of trouble at Odin. Backing off instead would delay each restart of a
// long fan-out more than the last, up to RetryCap.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var wait *WaitError
	if errors.As(err, &wait) {
		return jitter(wait.Delay)
	}
	if errors.Is(err, asynq.ErrLeaseExpired) {
		return jitter(RetryBase)
	}
	d := RetryCap
	if n < 16 {
		d = min(RetryCap, RetryBase<<n)
	}
	if after, ok := odin.RetryAfter(err); ok && after > d {
		d = after
	}
	return jitter(d)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// IsFailure is the asynq.Config.IsFailure of the worker: a *WaitError is not a failed
// attempt, so pauses and rate-limit waits do not spend the retry budget.
func IsFailure(err error) bool {
	var wait *WaitError
	return err != nil && !errors.As(err, &wait)
}

// RunLoginWaits moves the tasks that wait for the end of a fleet pause after a failed
// Odin login from asynq's retry sets back to their queues, so that they run now, and
// returns how many it moved. A worker that ends such a pause at its start, because its
// credentials may have been fixed, calls it: the tasks would otherwise wait until the
// planned end of the pause, up to MaxLoginCooldown. Tasks that wait for other reasons,
// such as a backoff after an Odin error, keep their time.
func RunLoginWaits(insp *asynq.Inspector) (int, error) {
	const pageSize = 1000
	moved := 0
	for queue := range Queues() {
		// Collect first: each moved task would shift the pages behind it.
		var ids []string
		for page := 1; ; page++ {
			infos, err := insp.ListRetryTasks(queue, asynq.PageSize(pageSize), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return moved, fmt.Errorf("list the retrying tasks of queue %s: %w", queue, err)
			}
			for _, info := range infos {
				if isLoginWait(info.LastErr) {
					ids = append(ids, info.ID)
				}
			}
			if len(infos) < pageSize {
				break
			}
		}
		for _, id := range ids {
			err := insp.RunTask(queue, id)
			switch {
			case err == nil:
				moved++
			case errors.Is(err, asynq.ErrTaskNotFound):
				// It ran, or another worker moved it, meanwhile.
			default:
				return moved, fmt.Errorf("run task %s of queue %s now: %w", id, queue, err)
			}
		}
	}
	return moved, nil
}

// isLoginWait reports whether a task's last error is a *WaitError for a fleet pause
// after a failed Odin login.
func isLoginWait(lastErr string) bool {
	return strings.HasPrefix(lastErr, "waiting ") && strings.Contains(lastErr, " before calling Odin: "+loginFailedPrefix)
}
