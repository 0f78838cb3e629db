package worker_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/internal/worker"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
)

// TestLoginObserverForgetsPauses: after a login Odin accepts, the next failed login
// pauses the fleet for the first length again.
func TestLoginObserverForgetsPauses(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	limiter, err := ratelimit.New(rd.Client, "http://127.0.0.1:1/api/v2", ratelimit.Limit{Rate: 10, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	pause := func() int {
		t.Helper()
		_, pauses, err := limiter.PauseEscalating(t.Context(), time.Millisecond, time.Second, "Odin login failed: test")
		if err != nil {
			t.Fatal(err)
		}
		return pauses
	}
	pause()
	time.Sleep(5 * time.Millisecond)
	if n := pause(); n != 2 {
		t.Fatalf("%d pauses in the series, want 2", n)
	}

	var passed []odin.Call
	observe := worker.LoginObserver(limiter, zerolog.Nop(), func(c odin.Call) { passed = append(passed, c) })
	observe(odin.Call{Endpoint: "POST /auth/token", Status: 401})
	observe(odin.Call{Endpoint: "PUT /users/passwords", Status: 200})
	if len(passed) != 2 {
		t.Errorf("%d calls passed on, want 2", len(passed))
	}
	time.Sleep(10 * time.Millisecond)
	if n := pause(); n != 3 {
		t.Fatalf("%d pauses in the series after a rejected login and another call, want 3", n)
	}

	observe(odin.Call{Endpoint: "POST /auth/token", Status: 200})
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(10 * time.Millisecond)
		n := pause()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pauses in the series 5 s after a login worked, want 1", n)
		}
	}
}
