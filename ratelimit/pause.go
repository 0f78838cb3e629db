package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// defaultPauseReason replaces an empty reason, so that a DelayError always
// carries one.
const defaultPauseReason = "paused"

// Pause stops every Limiter sharing the key for d, for example until the
// Retry-After of a 429 response. It extends a pause that ends sooner and never
// shortens one: when the current pause ends later, Pause keeps it and its
// reason. The reason is stored in Redis and shown to operators in DelayError,
// so it must not contain a secret. Pause returns an error when d is shorter
// than a microsecond or Redis fails.
//
// Slots already reserved before the pause are not sent during it: their
// callers check the pause when they wake up.
func (l *Limiter) Pause(ctx context.Context, d time.Duration, reason string) error {
	if d < time.Microsecond {
		return fmt.Errorf("ratelimit: invalid pause length %v: it must be at least 1µs", d)
	}
	if reason == "" {
		reason = defaultPauseReason
	}

	keys := []string{l.pauseKey}
	args := []any{d.Microseconds(), reason, keyTTLMargin.Milliseconds()}
	if err := pauseScript.Run(ctx, l.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("ratelimit: pause Odin requests for %v in Redis: %w", d, err)
	}
	return nil
}

// Paused returns the time left of the current fleet pause and its reason, or
// 0 and "" when no pause is on.
func (l *Limiter) Paused(ctx context.Context) (remaining time.Duration, reason string, err error) {
	state, err := l.pausedAfter(ctx, 0)
	return state.remaining, state.reason, err
}

// pauseReading is the result of pausedScript: the pause and the Redis clock.
type pauseReading struct {
	remaining time.Duration // 0 when no pause is on
	reason    string        // "" when no pause is on
	nowMicros int64         // the Redis clock, microseconds since the Unix epoch
}

// pausedAfter reads a pause that ends later than endsAfter, in microseconds since
// the Unix epoch on the Redis server's clock, and that clock.
func (l *Limiter) pausedAfter(ctx context.Context, endsAfter int64) (pauseReading, error) {
	values, err := pausedScript.Run(ctx, l.rdb, []string{l.pauseKey}, endsAfter).Slice()
	if err != nil {
		return pauseReading{}, &RedisError{Op: "read the Odin request pause from Redis", Err: err}
	}

	if len(values) != 3 {
		return pauseReading{}, fmt.Errorf("ratelimit: read the Odin request pause from Redis: unexpected reply %v", values)
	}
	remainingMicros, ok1 := values[0].(int64)
	reason, ok2 := values[1].(string)
	nowMicros, ok3 := values[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return pauseReading{}, fmt.Errorf("ratelimit: read the Odin request pause from Redis: unexpected reply %v", values)
	}
	return pauseReading{
		remaining: time.Duration(remainingMicros) * time.Microsecond,
		reason:    reason,
		nowMicros: nowMicros,
	}, nil
}

// Resume ends the current fleet pause, for example once an Odin login works
// again. Callers already sleeping until a slot after the pause keep that slot,
// so the rate limit still holds right after Resume.
func (l *Limiter) Resume(ctx context.Context) error {
	if err := l.rdb.Del(ctx, l.pauseKey).Err(); err != nil {
		return fmt.Errorf("ratelimit: end the Odin request pause in Redis: %w", err)
	}
	return nil
}
