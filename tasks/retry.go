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
