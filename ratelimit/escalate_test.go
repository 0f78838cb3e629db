package ratelimit

import (
	"testing"
	"time"
)

// escalate calls PauseEscalating with a first pause of 100ms up to 350ms.
func escalate(t *testing.T, l *Limiter) (time.Duration, int) {
	t.Helper()

	remaining, pauses, err := l.PauseEscalating(t.Context(), 100*time.Millisecond, 350*time.Millisecond, "Odin login failed")
	if err != nil {
		t.Fatalf("PauseEscalating: %v", err)
	}
	return remaining, pauses
}

// checkPause fails unless the pause has between min and max left.
func checkPause(t *testing.T, got, min, max time.Duration) {
	t.Helper()

	if got < min || got > max {
		t.Errorf("pause with %v left, want %v to %v", got, min, max)
	}
}

func TestPauseEscalatingDoubles(t *testing.T) {
	r := newTestRedis(t)
	first := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	other := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})

	remaining, pauses := escalate(t, first)
	if pauses != 1 {
		t.Fatalf("first call: %d pauses in the series, want 1", pauses)
	}
	checkPause(t, remaining, 90*time.Millisecond, 100*time.Millisecond)
	if got := paused(t, other); got.Reason != "Odin login failed" {
		t.Errorf("the other limiter sees the pause %+v, want the reason %q", got, "Odin login failed")
	}

	// A second worker failing during the pause starts no new one.
	remaining, pauses = escalate(t, other)
	if pauses != 1 {
		t.Errorf("call during the pause: %d pauses in the series, want 1", pauses)
	}
	checkPause(t, remaining, time.Microsecond, 100*time.Millisecond)

	for _, want := range []struct {
		pauses   int
		min, max time.Duration
	}{
		{2, 190 * time.Millisecond, 200 * time.Millisecond},
		{3, 340 * time.Millisecond, 350 * time.Millisecond}, // 400ms, capped
		{4, 340 * time.Millisecond, 350 * time.Millisecond},
	} {
		time.Sleep(remaining + 5*time.Millisecond)
		remaining, pauses = escalate(t, first)
		if pauses != want.pauses {
			t.Fatalf("after the pause ended: %d pauses in the series, want %d", pauses, want.pauses)
		}
		checkPause(t, remaining, want.min, want.max)
	}
}

func TestEndEscalatingPause(t *testing.T) {
	t.Run("series goes on", func(t *testing.T) {
		r := newTestRedis(t)
		l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
		escalate(t, l)
		ended, err := l.EndEscalatingPause(t.Context())
		if err != nil || !ended {
			t.Fatalf("EndEscalatingPause = %v, %v; want true, nil", ended, err)
		}
		if got := paused(t, l); got.Remaining != 0 {
			t.Errorf("pause %+v after EndEscalatingPause, want none", got)
		}
		// A failure before the end of the series' last pause pauses until that end.
		remaining, pauses := escalate(t, l)
		if pauses != 1 {
			t.Errorf("%d pauses in the series, want 1", pauses)
		}
		checkPause(t, remaining, time.Microsecond, 100*time.Millisecond)
	})
	t.Run("longer pause of Pause stays", func(t *testing.T) {
		r := newTestRedis(t)
		l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
		escalate(t, l)
		if err := l.Pause(t.Context(), 2*time.Second, "Odin returned 429"); err != nil {
			t.Fatal(err)
		}
		ended, err := l.EndEscalatingPause(t.Context())
		if err != nil || ended {
			t.Fatalf("EndEscalatingPause = %v, %v; want false, nil", ended, err)
		}
		if got := paused(t, l); got.Reason != "Odin returned 429" || got.Remaining < time.Second {
			t.Errorf("pause %+v, want the 429 pause of about 2s", got)
		}
		remaining, _ := escalate(t, l)
		checkPause(t, remaining, time.Second, 2*time.Second)
		if got := paused(t, l); got.Reason != "Odin returned 429" {
			t.Errorf("pause %+v, want the longer 429 pause kept", got)
		}
	})
	t.Run("no pause", func(t *testing.T) {
		r := newTestRedis(t)
		l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
		if ended, err := l.EndEscalatingPause(t.Context()); err != nil || ended {
			t.Fatalf("EndEscalatingPause = %v, %v; want false, nil", ended, err)
		}
	})
}

func TestForgetEscalation(t *testing.T) {
	r := newTestRedis(t)
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	remaining, _ := escalate(t, l)
	time.Sleep(remaining + 5*time.Millisecond)
	remaining, pauses := escalate(t, l)
	if pauses != 2 {
		t.Fatalf("%d pauses in the series, want 2", pauses)
	}
	if err := l.ForgetEscalation(t.Context()); err != nil {
		t.Fatalf("ForgetEscalation: %v", err)
	}
	if got := paused(t, l); got.Remaining == 0 {
		t.Errorf("no pause after ForgetEscalation, want the pause on until its end")
	}
	time.Sleep(remaining + 5*time.Millisecond)
	remaining, pauses = escalate(t, l)
	if pauses != 1 {
		t.Errorf("%d pauses after the series was forgotten, want 1", pauses)
	}
	checkPause(t, remaining, 90*time.Millisecond, 100*time.Millisecond)
}

func TestPauseEscalatingRejectsInvalidLengths(t *testing.T) {
	r := newTestRedis(t)
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	for _, tt := range []struct{ first, longest time.Duration }{
		{0, time.Second},
		{time.Second, time.Millisecond},
	} {
		if _, _, err := l.PauseEscalating(t.Context(), tt.first, tt.longest, "x"); err == nil {
			t.Errorf("PauseEscalating(%v, %v) succeeded, want an error", tt.first, tt.longest)
		}
	}
	if got := paused(t, l); got.Remaining != 0 {
		t.Errorf("pause %+v after invalid calls, want none", got)
	}
}
