package policytest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestRetryDelaySchedule checks the backoff of a reset:user task after a transient Odin
// error: 5 s doubling per attempt, capped at 5 minutes, plus up to 25% jitter, so that
// the retry budget covers more than an hour of outage.
func TestRetryDelaySchedule(t *testing.T) {
	transient := errors.New("Odin PUT /users/passwords: 502 Bad Gateway")
	tests := []struct {
		name    string
		retried int
		base    time.Duration
	}{
		{name: "first retry", retried: 0, base: 5 * time.Second},
		{name: "second retry", retried: 1, base: 10 * time.Second},
		{name: "fifth retry", retried: 4, base: 80 * time.Second},
		{name: "sixth retry", retried: 5, base: 160 * time.Second},
		{name: "first capped retry", retried: 6, base: 5 * time.Minute},
		{name: "last retry", retried: tasks.UserMaxRetry - 1, base: 5 * time.Minute},
		{name: "shift past 64 bits", retried: 70, base: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				got := tasks.RetryDelay(tt.retried, transient, nil)
				if got < tt.base || got > tt.base+tt.base/4 {
					t.Fatalf("RetryDelay(%d) = %v, want from %v to %v", tt.retried, got, tt.base, tt.base+tt.base/4)
				}
			}
		})
	}

	t.Run("budget covers an hour", func(t *testing.T) {
		var total time.Duration
		for n := range tasks.UserMaxRetry {
			total += minRetryDelay(n)
		}
		if total < time.Hour {
			t.Errorf("%d retries wait %v at least, want at least an hour", tasks.UserMaxRetry, total)
		}
	})
}

// minRetryDelay is RetryDelay without jitter for a transient error.
func minRetryDelay(retried int) time.Duration {
	if retried >= 16 {
		return tasks.RetryCap
	}
	return min(tasks.RetryCap, tasks.RetryBase<<retried)
}

// maxAttemptsThrough returns the most attempts a task can make when Odin fails every
// request for outage from its first attempt on: each retry comes after at least
// minRetryDelay, and one more attempt succeeds after the outage.
func maxAttemptsThrough(outage time.Duration) int {
	attempts := 1
	var elapsed time.Duration
	for n := 0; ; n++ {
		elapsed += minRetryDelay(n)
		if elapsed > outage {
			return attempts + 1
		}
		attempts++
	}
}

// TestOdinOutageJobCompletes takes Odin away in the middle of a job, in several ways,
// and brings it back: the tasks back off and retry, and the job completes with every user
// applied once Odin responds again.
func TestOdinOutageJobCompletes(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	outage := sized(3*time.Second, 2*time.Minute)
	const users = 100

	tests := []struct {
		name       string
		startOdin  func(p *pipeline)
		finishOdin func(p *pipeline)
	}{
		{
			name:       "connection refused",
			startOdin:  func(p *pipeline) { p.front.down() },
			finishOdin: func(p *pipeline) { p.front.up() },
		},
		{
			name:       "500 for every request",
			startOdin:  func(p *pipeline) { p.sim.SetFaults(odintest.Faults{Error500: 1, IncludeAuth: true}) },
			finishOdin: func(p *pipeline) { p.sim.SetFaults(odintest.Faults{}) },
		},
		{
			name:       "502 HTML page from a proxy",
			startOdin:  func(p *pipeline) { p.sim.SetFaults(odintest.Faults{Error502HTML: 1, IncludeAuth: true}) },
			finishOdin: func(p *pipeline) { p.sim.SetFaults(odintest.Faults{}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startPipeline(t, pipelineOptions{users: users, workers: 2, concurrency: 10, rate: 50})
			jobID := "outage-" + strings.ReplaceAll(tt.name, " ", "-")
			submit(t, p.client, p.store, tasks.BulkResetPayload{
				JobID: jobID, Type: results.Web, ServiceProviderID: p.sim.ServiceProviderID(), GroupID: p.sim.GroupID(),
				Users: seededUsers(users),
			})
			waitApplied(t, p.store, jobID, 20, 30*time.Second)

			tt.startOdin(p)
			downAt := time.Now()
			waitUntil(t, outage+time.Second, "the outage to pass", func() bool { return time.Since(downAt) >= outage })
			tt.finishOdin(p)
			upAt := time.Now()

			// The last retry before Odin came back may be one full backoff step away.
			job := waitJob(t, p.store, jobID, 2*minRetryDelay(maxAttemptsThrough(outage))+30*time.Second)
			attempts := attemptCounts(t, p.store, jobID)
			t.Logf("Odin down for %v: job done %v after Odin came back; users by attempts: %v",
				outage, time.Since(upAt).Round(100*time.Millisecond), attempts)

			checkAllApplied(t, job, users)
			retried := 0
			for n, count := range attempts {
				if n > 1 {
					retried += count
				}
			}
			if retried == 0 {
				t.Errorf("no user needed a second attempt: the outage did not hit the job")
			}
			if limit := maxAttemptsThrough(outage); maxKey(attempts) > limit {
				t.Errorf("a user took %d attempts through an outage of %v, want at most %d with exponential backoff", maxKey(attempts), outage, limit)
			}
			if m := mismatches(t, p.store, jobID, fromSimulator(p.sim)); len(m) > 0 {
				t.Errorf("record differs from Odin:\n%s", strings.Join(m, "\n"))
			}
		})
	}
}

func maxKey(m map[int]int) int {
	highest := 0
	for k := range m {
		highest = max(highest, k)
	}
	return highest
}

// TestServiceUnavailablePausesFleet makes a proxy in front of Odin return 503 with
// Retry-After for a few seconds: the first 503 pauses the whole fleet until Retry-After,
// the tasks wait without spending retries, and the job completes.
func TestServiceUnavailablePausesFleet(t *testing.T) {
	requireRealRedis(t)
	t.Parallel()
	const (
		users      = 200
		rate       = 50
		retryAfter = 2 * time.Second
		window     = 3 * time.Second
	)
	unavailable := &unavailableFront{retryAfter: retryAfter}
	p := startPipeline(t, pipelineOptions{users: users, workers: 2, concurrency: 10, rate: rate, wrap: unavailable.wrap})
	jobID := "unavailable"
	submit(t, p.client, p.store, tasks.BulkResetPayload{
		JobID: jobID, Type: results.Web, ServiceProviderID: p.sim.ServiceProviderID(), GroupID: p.sim.GroupID(),
		Users: seededUsers(users),
	})
	waitApplied(t, p.store, jobID, 20, 30*time.Second)

	unavailable.start(window)
	ctx := context.Background()
	waitUntil(t, 5*time.Second, "the fleet to pause", func() bool {
		remaining, _, err := p.limiter.Paused(ctx)
		return err == nil && remaining > 0
	})
	// enqueue status shows the job's reason, which must name the fleet pause.
	waitUntil(t, 5*time.Second, "the job's reason to name the pause", func() bool {
		job, err := p.store.Job(ctx, jobID)
		return err == nil && strings.Contains(job.Reason, "Odin calls are paused until")
	})
	job := waitJob(t, p.store, jobID, time.Minute)
	if job.Reason != "" {
		t.Errorf("completed job's reason = %q, want it cleared once Odin answered again", job.Reason)
	}
	rejected := unavailable.count()
	t.Logf("proxy returned 503 with Retry-After %v for %v: %d requests got 503 (the configured rate allows %d in that time)",
		retryAfter, window, rejected, int(window.Seconds()*rate))

	checkAllApplied(t, job, users)
	// Without the pause the fleet would send at the configured rate through the whole
	// window. With it, each Retry-After lets through only the requests already in flight.
	if limit := int(window.Seconds() * rate / 3); rejected > limit {
		t.Errorf("%d requests got 503 during %v, want at most %d: the fleet did not pause", rejected, window, limit)
	}
	if rejected == 0 {
		t.Errorf("no request got 503: the test did not exercise the pause")
	}
	if got := attemptCounts(t, p.store, jobID); got[1] != users {
		t.Errorf("attempts per user = %v, want every user applied at its first counted attempt, because waiting out a 503 spends no retry", got)
	}
}

// unavailableFront responds to every API request with 503 Service Unavailable and a
// Retry-After header while a window is open, and passes requests to Odin otherwise.
type unavailableFront struct {
	retryAfter time.Duration

	mu       sync.Mutex
	until    time.Time
	rejected int
}

func (u *unavailableFront) start(window time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.until = time.Now().Add(window)
}

func (u *unavailableFront) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rejected
}

func (u *unavailableFront) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		open := time.Now().Before(u.until) && strings.HasPrefix(r.URL.Path, "/api/v2/")
		if open {
			u.rejected++
		}
		u.mu.Unlock()
		if !open {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(u.retryAfter.Seconds())))
		http.Error(w, "<html><body>503 Service Temporarily Unavailable</body></html>", http.StatusServiceUnavailable)
	})
}
