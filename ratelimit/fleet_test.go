package ratelimit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestFleetStaysUnderRate runs 3 Limiters, each on its own Redis client as
// separate worker processes would have, with 20 goroutines each that call
// Wait in a loop and record when it returns. No one-second window may contain
// more requests than the rate allows plus a small allowance for the Redis
// round trip and timer latency of each caller.
func TestFleetStaysUnderRate(t *testing.T) {
	const (
		limiters          = 3
		callersPerLimiter = 20
	)

	tests := []struct {
		name     string
		limit    Limit
		duration time.Duration
		// maxPerSecond bounds the requests in any closed one-second window.
		maxPerSecond int
		// minTotal and maxTotal bound all requests of the run.
		minTotal, maxTotal int
		// realRedisOnly skips the case on miniredis, where replies come too
		// unevenly for an allowance of 2 slots of 20 ms. On miniredis,
		// TestFleetSlotsSpaced checks the same schedule without timing.
		realRedisOnly bool
	}{
		{
			// Slots are 20 ms apart, so a closed one-second window contains
			// at most 51 of them. The 2 more allow for send times that lag
			// their slots unevenly.
			name:          "50 per second",
			limit:         Limit{Rate: 50, Burst: 1},
			duration:      3 * time.Second,
			maxPerSecond:  53,
			minTotal:      75,  // half of 50 * 3: a loaded CI machine delivers late, and the upper bound is the invariant
			maxTotal:      151, // 50 * 3 + the slot at 0
			realRedisOnly: true,
		},
		{
			// Slots at 0 and 2 s, because the one at 4 s lies past the run.
			name:         "fractional 0.5 per second",
			limit:        Limit{Rate: 0.5, Burst: 1},
			duration:     2500 * time.Millisecond,
			maxPerSecond: 1,
			minTotal:     2,
			maxTotal:     2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTestRedis(t)
			if tt.realRedisOnly {
				r.skipOnMiniredis(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.duration)
			defer cancel()

			var (
				mu    sync.Mutex
				sends []time.Time
				wg    sync.WaitGroup
			)
			for range limiters {
				l := r.newLimiter(t, testOdinURL, tt.limit)
				for range callersPerLimiter {
					wg.Go(func() {
						for {
							err := l.Wait(ctx)
							if err == nil {
								now := time.Now()
								mu.Lock()
								sends = append(sends, now)
								mu.Unlock()
								continue
							}
							if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
								return
							}
							var delayErr *DelayError
							if !errors.As(err, &delayErr) {
								t.Errorf("Wait: %v", err)
								return
							}
							if !sleepContext(ctx, delayErr.Delay) {
								return
							}
						}
					})
				}
			}
			wg.Wait()

			slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
			perSecond := maxInWindow(sends, time.Second)
			t.Logf("%d requests in %v, at most %d in a one-second window", len(sends), tt.duration, perSecond)
			if perSecond > tt.maxPerSecond {
				t.Errorf("a one-second window contains %d requests, want at most %d", perSecond, tt.maxPerSecond)
			}
			if len(sends) < tt.minTotal || len(sends) > tt.maxTotal {
				t.Errorf("%d requests in %v, want %d to %d", len(sends), tt.duration, tt.minTotal, tt.maxTotal)
			}
		})
	}
}

// TestFleetSlotsSpaced lets 3 Limiters on separate clients reserve slots
// from 20 goroutines each at once, and checks on the Redis clock that no two
// slots are closer than the emission interval.
func TestFleetSlotsSpaced(t *testing.T) {
	const (
		limiters               = 3
		reservationsPerLimiter = 40
	)
	tests := []struct {
		name  string
		limit Limit
	}{
		{name: "50 per second", limit: Limit{Rate: 50, Burst: 1}},
		{name: "fractional 0.5 per second", limit: Limit{Rate: 0.5, Burst: 1}},
		{name: "fractional 2.5 per second", limit: Limit{Rate: 2.5, Burst: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)

			var (
				mu    sync.Mutex
				slots []int64
				wg    sync.WaitGroup
			)
			for range limiters {
				l := r.newLimiter(t, testOdinURL, tt.limit)
				for range 20 {
					wg.Go(func() {
						for range reservationsPerLimiter / 20 {
							res, err := l.reserve(t.Context(), 24*time.Hour)
							if err != nil {
								t.Errorf("reserve: %v", err)
								return
							}
							mu.Lock()
							slots = append(slots, res.slotMicros)
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()

			slices.Sort(slots)
			emission := tt.limit.emissionInterval().Microseconds()
			for i := 1; i < len(slots); i++ {
				if gap := slots[i] - slots[i-1]; gap < emission {
					t.Errorf("slots %d and %d are %d µs apart, want at least %d µs", i-1, i, gap, emission)
				}
			}
			if got, want := len(slots), limiters*reservationsPerLimiter; got != want {
				t.Errorf("%d slots reserved, want %d", got, want)
			}
		})
	}
}

// sleepContext waits for d, as a worker retries after a DelayError, and
// reports false when ctx ended first.
func sleepContext(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// maxInWindow returns the largest number of the sorted times that fit in one
// closed window of the given length.
func maxInWindow(sorted []time.Time, window time.Duration) int {
	largest := 0
	end := 0
	for start := range sorted {
		for end < len(sorted) && sorted[end].Sub(sorted[start]) <= window {
			end++
		}
		largest = max(largest, end-start)
	}
	return largest
}

func TestMaxInWindow(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(offsets ...time.Duration) []time.Time {
		times := make([]time.Time, len(offsets))
		for i, d := range offsets {
			times[i] = base.Add(d)
		}
		return times
	}

	tests := []struct {
		name  string
		times []time.Time
		want  int
	}{
		{name: "empty", times: nil, want: 0},
		{name: "one", times: at(0), want: 1},
		{name: "both ends included", times: at(0, time.Second), want: 2},
		{name: "just outside", times: at(0, time.Second+time.Nanosecond), want: 1},
		{name: "dense middle", times: at(0, 2*time.Second, 2100*time.Millisecond, 2900*time.Millisecond, 4*time.Second), want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maxInWindow(tt.times, time.Second); got != tt.want {
				t.Errorf("maxInWindow = %d, want %d", got, tt.want)
			}
		})
	}
}
