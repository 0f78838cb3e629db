package odintest_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

func TestRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		httpDate bool
	}{
		{"Retry-After in seconds", false},
		{"Retry-After as HTTP date", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			srv := startServer(t, odintest.Config{Users: 1, RateLimit: 2, RetryAfterHTTPDate: tt.httpDate, Now: clock.Now})
			path := "/users/authentication" + query("userId", "user0001@example.com")

			token := login(t, srv) // the first of two requests this second
			clock.Advance(300 * time.Millisecond)
			if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusOK {
				t.Fatalf("second request: status = %d, want 200", resp.status)
			}

			clock.Advance(200 * time.Millisecond)
			resp := call(t, http.MethodGet, srv.URL, path, token, nil)
			if resp.status != http.StatusTooManyRequests {
				t.Fatalf("third request: status = %d, want 429", resp.status)
			}
			if e := resp.apiError(t); e.Status != http.StatusTooManyRequests || e.Error == "" {
				t.Errorf("429 body = %+v, want a JSON error with status 429", e)
			}

			// The first request leaves the window 500ms later, which rounds up to 1s.
			retryAfter := resp.header.Get("Retry-After")
			if tt.httpDate {
				at, err := http.ParseTime(retryAfter)
				if err != nil {
					t.Fatalf("Retry-After %q is not an HTTP date: %v", retryAfter, err)
				}
				if want := clock.Now().Add(500 * time.Millisecond); !at.Equal(want) {
					t.Errorf("Retry-After = %v, want %v", at, want)
				}
			} else if retryAfter != "1" {
				t.Errorf("Retry-After = %q, want %q", retryAfter, "1")
			}

			clock.Advance(500 * time.Millisecond)
			if resp := call(t, http.MethodGet, srv.URL, path, token, nil); resp.status != http.StatusOK {
				t.Errorf("after the wait: status = %d, want 200", resp.status)
			}
			if got := srv.Stats().TooManyRequests; got != 1 {
				t.Errorf("Stats().TooManyRequests = %d, want 1", got)
			}
		})
	}
}

func TestRateLimitRetryAfterRoundsUp(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{RateLimit: 0.25, Now: clock.Now}) // one request per 4s

	call(t, http.MethodGet, srv.URL, "/users", "", nil)
	clock.Advance(1500 * time.Millisecond)
	resp := call(t, http.MethodGet, srv.URL, "/users", "", nil)
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "3" {
		t.Errorf("status %d, Retry-After %q, want 429 and 3", resp.status, resp.header.Get("Retry-After"))
	}
}

func TestSetRateLimit(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{Now: clock.Now})
	statuses := func(n int) []int {
		var got []int
		for range n {
			got = append(got, call(t, http.MethodGet, srv.URL, "/users", "", nil).status)
		}
		return got
	}

	if diff := cmp.Diff([]int{401, 401, 401}, statuses(3)); diff != "" {
		t.Errorf("unlimited (-want +got):\n%s", diff)
	}
	srv.SetRateLimit(2)
	if diff := cmp.Diff([]int{401, 401, 429}, statuses(3)); diff != "" {
		t.Errorf("limited to 2 (-want +got):\n%s", diff)
	}
	srv.SetRateLimit(0)
	if diff := cmp.Diff([]int{401, 401, 401}, statuses(3)); diff != "" {
		t.Errorf("unlimited again (-want +got):\n%s", diff)
	}
}

func TestMaxPerSecond(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := startServer(t, odintest.Config{Now: clock.Now})
	steps := []struct {
		advance  time.Duration
		requests int
	}{
		{0, 3},                      // t=0: 3 in the window
		{500 * time.Millisecond, 2}, // t=0.5: 5
		{500 * time.Millisecond, 1}, // t=1.0: the first 3 left, 3
		{200 * time.Millisecond, 1}, // t=1.2: 4
		{900 * time.Millisecond, 1}, // t=2.1: 1
	}
	for _, step := range steps {
		clock.Advance(step.advance)
		for range step.requests {
			call(t, http.MethodGet, srv.URL, "/users", "", nil)
		}
	}

	st := srv.Stats()
	if st.MaxPerSecond != 5 || st.Total != 8 {
		t.Errorf("Stats() MaxPerSecond = %d, Total = %d, want 5 and 8", st.MaxPerSecond, st.Total)
	}

	srv.ResetStats()
	clock.Advance(100 * time.Millisecond)
	call(t, http.MethodGet, srv.URL, "/users", "", nil)
	if st := srv.Stats(); st.MaxPerSecond != 1 || st.Total != 1 {
		t.Errorf("after ResetStats: MaxPerSecond = %d, Total = %d, want 1 and 1", st.MaxPerSecond, st.Total)
	}
}

func TestStatsCounters(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	call(t, http.MethodGet, srv.URL, "/password/generate"+query("serviceProviderId", "sp1", "groupId", "grp1", "limit", "5"), token, nil)
	call(t, http.MethodGet, srv.URL, "/password/generate"+query("serviceProviderId", "sp1", "groupId", "grp9"), token, nil)
	call(t, http.MethodGet, srv.URL, "/passcode/generate"+query("serviceProviderId", "sp1", "groupId", "grp1"), token, nil)
	call(t, http.MethodGet, srv.URL, "/users"+query("userId", "ghost@example.com"), token, nil)
	call(t, http.MethodGet, srv.Root(), "/_sim/stats", "", nil) // not counted

	want := odintest.Stats{
		Requests: map[string]int{
			"POST /auth/token":       1,
			"GET /password/generate": 2,
			"GET /passcode/generate": 1,
			"GET /users":             1,
		},
		Statuses: map[string]map[int]int{
			"POST /auth/token":       {200: 1},
			"GET /password/generate": {200: 1, 404: 1},
			"GET /passcode/generate": {200: 1},
			"GET /users":             {404: 1},
		},
		Total:        5,
		MaxPerSecond: 5,
		Logins:       1,
		Generated:    map[odintest.Kind]int{odintest.KindWeb: 5, odintest.KindVoicemail: 1},
		Faults:       map[string]int{},
	}
	if diff := cmp.Diff(want, srv.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 40 * time.Millisecond
	srv := startServer(t, odintest.Config{Latency: latency, LatencyJitter: 10 * time.Millisecond})

	started := time.Now()
	call(t, http.MethodGet, srv.URL, "/users", "", nil)
	if elapsed := time.Since(started); elapsed < latency {
		t.Errorf("request took %v, want at least %v", elapsed, latency)
	}

	srv.SetLatency(0, 0)
	started = time.Now()
	call(t, http.MethodGet, srv.URL, "/users", "", nil)
	if elapsed := time.Since(started); elapsed >= time.Second {
		t.Errorf("request without latency took %v", elapsed)
	}
}

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	const (
		clients  = 20
		requests = 50
	)
	srv := startServer(t, odintest.Config{Users: clients})
	token := login(t, srv)
	users := srv.Users()

	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			userID := users[c]
			for i := range requests {
				passcode := strconv.Itoa(1000000 + i)
				resp, err := send(http.MethodPut, srv.URL+"/users/portal-passcode", token, map[string]string{"userId": userID, "newPasscode": passcode})
				if err == nil && resp.status != http.StatusOK {
					err = &statusError{resp.status}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	credentials := srv.Credentials()
	for _, userID := range users {
		got := credentials[userID][odintest.KindVoicemail]
		if got.SetCount != requests || got.Value != strconv.Itoa(1000000+requests-1) {
			t.Errorf("%s: %d sets ending in %q, want %d ending in %q", userID, got.SetCount, got.Value, requests, strconv.Itoa(1000000+requests-1))
		}
	}
	if got := srv.Stats().Total; got != clients*requests+1 {
		t.Errorf("Stats().Total = %d, want %d", got, clients*requests+1)
	}
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "unexpected status " + strconv.Itoa(e.status) }
