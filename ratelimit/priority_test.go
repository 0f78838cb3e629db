package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLowPriorityLeavesHeadroom keeps 40 callers waiting at 20 requests per second, a
// backlog of 2 s, and then lets one more caller without the low-priority mark wait.
// When the 40 are marked low priority, that caller gets a slot within about the
// headroom of 500 ms, and the 40 still use the whole rate. When they are not marked, it
// waits behind all of them.
func TestLowPriorityLeavesHeadroom(t *testing.T) {
	const (
		rate     = 20
		callers  = 40
		headroom = 500 * time.Millisecond
		backlog  = callers * time.Second / rate
	)

	tests := []struct {
		name string
		// markBatch marks the 40 callers low priority.
		markBatch bool
		// minWait and maxWait bound the wait of the caller without the mark.
		minWait, maxWait time.Duration
	}{
		{name: "low-priority batch", markBatch: true, maxWait: headroom + 300*time.Millisecond},
		{name: "unmarked batch", markBatch: false, minWait: backlog - 500*time.Millisecond, maxWait: backlog + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTestRedis(t)
			r.skipOnMiniredis(t)
			l := r.newLimiter(t, testOdinURL, Limit{Rate: rate, Burst: 1}, WithHeadroom(headroom))

			batchCtx, stopBatch := context.WithCancel(t.Context())
			if tt.markBatch {
				batchCtx = LowPriority(batchCtx)
			}
			var sent atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for range callers {
				wg.Go(func() {
					for batchCtx.Err() == nil {
						err := l.Wait(batchCtx)
						switch {
						case err == nil:
							sent.Add(1)
						case batchCtx.Err() != nil:
						default:
							errs <- err
							return
						}
					}
				})
			}

			// Let the backlog build up, then measure one caller without the mark.
			<-time.After(time.Second)
			sentBefore := sent.Load()
			start := time.Now()
			if err := l.Wait(t.Context()); err != nil {
				t.Fatalf("Wait without the mark: %v", err)
			}
			waited := time.Since(start)
			<-time.After(time.Second)
			sentDuring := sent.Load() - sentBefore
			stopBatch()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Wait of the batch: %v", err)
			}

			t.Logf("caller without the mark waited %v; the batch sent %d requests in the %v after it arrived",
				waited.Round(time.Millisecond), sentDuring, (waited + time.Second).Round(100*time.Millisecond))
			if waited < tt.minWait || waited > tt.maxWait {
				t.Errorf("caller without the mark waited %v, want %v to %v", waited, tt.minWait, tt.maxWait)
			}
			// The batch keeps the limiter busy: together with the one caller it uses
			// all but a few slots of the time measured.
			if want := int64((waited+time.Second).Seconds()*rate) - 4; sentDuring < want {
				t.Errorf("the batch sent %d requests in %v, want at least %d", sentDuring, waited+time.Second, want)
			}
		})
	}
}

// TestLowPriorityMaxWait gives low-priority callers the errors of Wait when their turn
// lies beyond the maximum wait or the deadline of their context.
func TestLowPriorityMaxWait(t *testing.T) {
	r := newTestRedis(t)
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 1, Burst: 1}, WithMaxWait(1500*time.Millisecond), WithClock(&fakeClock{}))
	ctx := LowPriority(t.Context())

	if err := l.Wait(ctx); err != nil {
		t.Fatalf("first Wait: %v", err)
	}

	// The next turn, 1 s away, lies within the maximum wait but past the deadline.
	deadlineCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := l.Wait(deadlineCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a deadline before the turn returned %v, want context.DeadlineExceeded", err)
	}

	// That Wait took nothing, so this one gets the turn 1 s away, and the next one,
	// 2 s away, lies past the maximum wait.
	if err := l.Wait(ctx); err != nil {
		t.Fatalf("Wait for the turn 1 s away: %v", err)
	}
	var delayErr *DelayError
	if err := l.Wait(ctx); !errors.As(err, &delayErr) || delayErr.Reason != ReasonRateLimit {
		t.Errorf("Wait for the turn 2 s away returned %v, want a *DelayError for the rate limit", err)
	}
}

// countingHook counts the commands a client sends, pipelines included, and keeps the
// names of the last ones.
type countingHook struct {
	n     atomic.Int64
	mu    sync.Mutex
	names []string
}

func (h *countingHook) note(cmd redis.Cmder) {
	h.n.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names = append(h.names, cmd.Name())
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.note(cmd)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.note(cmd)
		}
		return next(ctx, cmds)
	}
}

// TestLowPriorityWaitOneRoundTrip checks that a low-priority caller of a
// limiter with room to spare takes its turn and its request slot in one Redis round
// trip. A throughput run without a rate limit pays that round trip for every request.
func TestLowPriorityWaitOneRoundTrip(t *testing.T) {
	r := newTestRedis(t)
	rdb := r.client(t)
	hook := &countingHook{}
	rdb.AddHook(hook)
	l, err := New(rdb, testOdinURL, Limit{Rate: 10000, Burst: 1}, WithKeyPrefix(r.keyPrefix))
	if err != nil {
		t.Fatal(err)
	}
	ctx := LowPriority(t.Context())
	if err := l.Wait(ctx); err != nil { // loads the script
		t.Fatal(err)
	}
	const calls = 20
	before := hook.n.Load()
	for range calls {
		time.Sleep(time.Millisecond) // past the 100 µs slot of the previous call
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := hook.n.Load() - before; got != calls {
		t.Errorf("%d low-priority waits sent %d Redis commands, want %d: one round trip each; commands: %v", calls, got, calls, hook.names)
	}
}

// TestShortSleepOneRoundTrip runs back-to-back waits at 500 requests per second, each
// sleeping about 2 ms, with and without the low-priority mark. Each wait must cost one
// Redis command, and the rate must still hold.
func TestShortSleepOneRoundTrip(t *testing.T) {
	for _, low := range []bool{false, true} {
		t.Run(fmt.Sprintf("low priority %v", low), func(t *testing.T) {
			r := newTestRedis(t)
			r.skipOnMiniredis(t) // miniredis's TIME does not advance with the wall clock
			rdb := r.client(t)
			hook := &countingHook{}
			rdb.AddHook(hook)
			l, err := New(rdb, testOdinURL, Limit{Rate: 500, Burst: 1}, WithKeyPrefix(r.keyPrefix))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if low {
				ctx = LowPriority(ctx)
			}
			if err := l.Wait(ctx); err != nil { // loads the script
				t.Fatal(err)
			}
			const calls = 20
			before := hook.n.Load()
			start := time.Now()
			for range calls {
				if err := l.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			if got := hook.n.Load() - before; got != calls {
				t.Errorf("%d waits of about 2 ms sent %d Redis commands, want %d: one round trip each; commands: %v", calls, got, calls, hook.names)
			}
			if minimum := (calls - 1) * 2 * time.Millisecond; elapsed < minimum {
				t.Errorf("%d waits at 500 per second took %v, want at least %v", calls, elapsed, minimum)
			}
		})
	}
}
