package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// pauseState is what Paused returns, for cmp diffs.
type pauseState struct {
	Remaining time.Duration
	Reason    string
}

func paused(t *testing.T, l *Limiter) pauseState {
	t.Helper()

	remaining, reason, err := l.Paused(t.Context())
	if err != nil {
		t.Fatalf("Paused: %v", err)
	}
	return pauseState{Remaining: remaining, Reason: reason}
}

func TestPauseStopsOtherLimiter(t *testing.T) {
	const reason = "Odin returned 429"

	tests := []struct {
		name    string
		pause   time.Duration
		maxWait time.Duration
		// wantDelay is the Delay of the wanted DelayError, or 0 when Wait
		// should wait the pause out and succeed.
		wantDelay time.Duration
	}{
		{name: "pause longer than max wait", pause: 2 * time.Second, maxWait: time.Second, wantDelay: 2 * time.Second},
		{name: "pause shorter than max wait", pause: 300 * time.Millisecond, maxWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			pauser := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
			waiter := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1}, WithMaxWait(tt.maxWait))
			if err := pauser.Pause(t.Context(), tt.pause, reason); err != nil {
				t.Fatalf("Pause: %v", err)
			}

			start := time.Now()
			err := waiter.Wait(t.Context())
			elapsed := time.Since(start)

			if tt.wantDelay == 0 {
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
				// Wait started a few milliseconds into the pause.
				if minElapsed := tt.pause - 50*time.Millisecond; elapsed < minElapsed {
					t.Errorf("Wait returned after %v, want at least %v", elapsed, minElapsed)
				}
				return
			}
			var delayErr *DelayError
			if !errors.As(err, &delayErr) {
				t.Fatalf("Wait returned %v, want a *DelayError", err)
			}
			want := &DelayError{Delay: tt.wantDelay, Reason: reason}
			if diff := cmp.Diff(want, delayErr, approxDuration(200*time.Millisecond)); diff != "" {
				t.Errorf("DelayError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPauseNeverShortens(t *testing.T) {
	type pauseCall struct {
		length time.Duration
		reason string
	}
	tests := []struct {
		name   string
		pauses []pauseCall
		want   pauseState
	}{
		{
			name:   "no pause",
			pauses: nil,
			want:   pauseState{},
		},
		{
			name:   "longer then shorter",
			pauses: []pauseCall{{2 * time.Second, "first"}, {time.Second, "second"}},
			want:   pauseState{Remaining: 2 * time.Second, Reason: "first"},
		},
		{
			name:   "shorter then longer",
			pauses: []pauseCall{{time.Second, "first"}, {3 * time.Second, "second"}},
			want:   pauseState{Remaining: 3 * time.Second, Reason: "second"},
		},
		{
			name:   "empty reason",
			pauses: []pauseCall{{time.Second, ""}},
			want:   pauseState{Remaining: time.Second, Reason: defaultPauseReason},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
			observer := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})

			for _, p := range tt.pauses {
				if err := l.Pause(t.Context(), p.length, p.reason); err != nil {
					t.Fatalf("Pause(%v, %q): %v", p.length, p.reason, err)
				}
			}

			if diff := cmp.Diff(tt.want, paused(t, observer), approxDuration(200*time.Millisecond)); diff != "" {
				t.Errorf("Paused (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPauseRejectsInvalidLength(t *testing.T) {
	tests := []struct {
		name   string
		length time.Duration
	}{
		{name: "zero", length: 0},
		{name: "negative", length: -time.Second},
		{name: "below a microsecond", length: 500 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})

			if err := l.Pause(t.Context(), tt.length, "Odin returned 429"); err == nil {
				t.Errorf("Pause(%v) returned nil, want an error", tt.length)
			}
			if diff := cmp.Diff(pauseState{}, paused(t, l)); diff != "" {
				t.Errorf("Paused (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResumeClearsPause(t *testing.T) {
	r := newTestRedis(t)
	pauser := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	waiter := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1}, WithMaxWait(0))
	if err := pauser.Pause(t.Context(), time.Minute, "Odin login failed: 401 Unauthorized"); err != nil {
		t.Fatalf("Pause: %v", err)
	}

	if err := waiter.Resume(t.Context()); err != nil {
		t.Fatalf("Resume: %v", err)
	}

	if diff := cmp.Diff(pauseState{}, paused(t, pauser)); diff != "" {
		t.Errorf("Paused (-want +got):\n%s", diff)
	}
	if err := waiter.Wait(t.Context()); err != nil {
		t.Errorf("Wait after Resume: %v", err)
	}
}

// TestPauseDuringSleep pauses the fleet while a caller sleeps until its slot,
// 500 ms away. The caller must not send in its slot but queue behind the
// pause, or give up when the pause outlasts its maximum wait.
func TestPauseDuringSleep(t *testing.T) {
	const reason = "Odin returned 429"

	tests := []struct {
		name    string
		pause   time.Duration
		maxWait time.Duration
		// wantDelay is the Delay of the wanted DelayError, or 0 when Wait
		// should sleep again until the pause ends and succeed.
		wantDelay time.Duration
	}{
		{name: "pause past max wait", pause: 5 * time.Second, maxWait: time.Second, wantDelay: 5 * time.Second},
		{name: "pause within max wait", pause: time.Second, maxWait: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			pauser := r.newLimiter(t, testOdinURL, Limit{Rate: 2, Burst: 1})
			clock := &fakeClock{timers: make(chan fakeTimer)}
			waiter := r.newLimiter(t, testOdinURL, Limit{Rate: 2, Burst: 1},
				WithMaxWait(tt.maxWait), WithClock(clock))
			if _, err := pauser.reserve(t.Context(), time.Hour); err != nil {
				t.Fatalf("reserve the first slot: %v", err)
			}

			done := make(chan error, 1)
			go func() { done <- waiter.Wait(t.Context()) }()
			slotTimer := <-clock.timers
			if err := pauser.Pause(t.Context(), tt.pause, reason); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			slotTimer.fire <- time.Now()

			if tt.wantDelay == 0 {
				// Wait reserved a new slot at the end of the pause.
				pauseTimer := <-clock.timers
				if diff := cmp.Diff(tt.pause, pauseTimer.length, approxDuration(200*time.Millisecond)); diff != "" {
					t.Errorf("sleep until the slot behind the pause (-want +got):\n%s", diff)
				}
				pauseTimer.fire <- time.Now()
				if err := <-done; err != nil {
					t.Errorf("Wait: %v", err)
				}
				return
			}
			err := <-done
			var delayErr *DelayError
			if !errors.As(err, &delayErr) {
				t.Fatalf("Wait returned %v, want a *DelayError", err)
			}
			want := &DelayError{Delay: tt.wantDelay, Reason: reason}
			if diff := cmp.Diff(want, delayErr, approxDuration(200*time.Millisecond)); diff != "" {
				t.Errorf("DelayError (-want +got):\n%s", diff)
			}
		})
	}
}
