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

// PauseEscalating pauses every Limiter sharing the key, like Pause, for a length that
// doubles with each such pause in a row: first, then twice first, and so on up to
// longest. A call while the last pause of the series has not ended starts no new one,
// so that the workers that fail together when a pause ends count once. The series ends
// with ForgetEscalation, or by itself when no call comes within longest after its last
// pause. PauseEscalating never shortens a pause that Pause made longer. It returns the
// time left of the fleet's pause and the number of pauses in the series.
//
// A failed Odin login is its use: each pause brings the workers' next login attempts,
// which count towards the lockout of the account, so they come less and less often.
func (l *Limiter) PauseEscalating(ctx context.Context, first, longest time.Duration, reason string) (remaining time.Duration, pauses int, err error) {
	if first < time.Millisecond || longest < first {
		return 0, 0, fmt.Errorf("ratelimit: invalid escalating pause from %v up to %v: the first pause must be at least 1ms and the longest at least the first", first, longest)
	}
	if reason == "" {
		reason = defaultPauseReason
	}
	keys := []string{l.pauseKey, l.seriesKey}
	args := []any{first.Microseconds(), longest.Microseconds(), reason, keyTTLMargin.Milliseconds()}
	values, err := pauseEscalatingScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("ratelimit: pause Odin requests in Redis: %w", err)
	}
	if len(values) != 2 {
		return 0, 0, fmt.Errorf("ratelimit: pause Odin requests in Redis: unexpected reply %v", values)
	}
	return time.Duration(values[0]) * time.Microsecond, int(values[1]), nil
}

// EndEscalatingPause ends the fleet's pause if the last PauseEscalating set it and no
// Pause made it longer, and reports whether it did. The series goes on: a
// PauseEscalating before the end of its last pause pauses the fleet again until that
// end, without doubling. A worker calls it when it starts, because its Odin
// credentials may have been fixed.
func (l *Limiter) EndEscalatingPause(ctx context.Context) (ended bool, err error) {
	n, err := endEscalatingScript.Run(ctx, l.rdb, []string{l.pauseKey, l.seriesKey}).Int()
	if err != nil {
		return false, fmt.Errorf("ratelimit: end the Odin request pause in Redis: %w", err)
	}
	return n == 1, nil
}

// ForgetEscalation ends the series of PauseEscalating, so that the next one pauses for
// its first length; a pause that is on stays. Call it once an Odin login works again.
func (l *Limiter) ForgetEscalation(ctx context.Context) error {
	if err := l.rdb.Del(ctx, l.seriesKey).Err(); err != nil {
		return fmt.Errorf("ratelimit: forget the series of Odin request pauses in Redis: %w", err)
	}
	return nil
}
