package tasks

import (
	"errors"
	"math/rand/v2"
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
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var wait *WaitError
	if errors.As(err, &wait) {
		return jitter(wait.Delay)
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
