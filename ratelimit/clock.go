package ratelimit

import "time"

// Clock is the local time source of Wait. Wait uses it to measure how much of
// the maximum wait is left and to sleep until a reserved slot. The slots
// themselves are computed on the Redis server's clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time

	// NewTimer starts a timer that sends on fired once d has passed. Wait
	// calls stop when it no longer needs the timer.
	NewTimer(d time.Duration) (fired <-chan time.Time, stop func() bool)
}

// systemClock is the Clock of the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
