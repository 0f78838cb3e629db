package odintest_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

var webPasswordBody = map[string]string{"userId": "user0001@example.com", "newPassword": goodWebPassword}

func TestFaultKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		faults          odintest.Faults
		wantStatus      int
		wantContentType string
		wantBody        string
		wantStatsKey    string
	}{
		{"500", odintest.Faults{Error500: 1}, 500, "application/json", `"status":500`, "500"},
		{"502 HTML", odintest.Faults{Error502HTML: 1}, 502, "text/html", "<center><h1>502 Bad Gateway</h1></center>", "502"},
		{"hang then 504", odintest.Faults{Hang: 1, HangDuration: 20 * time.Millisecond}, 504, "text/html", "504 Gateway Time-out", "hang"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, odintest.Config{Users: 1})
			token := login(t, srv)
			srv.SetFaults(tt.faults)

			resp := call(t, http.MethodPut, srv.URL, "/users/passwords", token, webPasswordBody)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.status, tt.wantStatus)
			}
			if got := resp.header.Get("Content-Type"); got != tt.wantContentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantContentType)
			}
			if !strings.Contains(string(resp.body), tt.wantBody) {
				t.Errorf("body %q does not contain %q", resp.body, tt.wantBody)
			}
			if _, count, _ := srv.Credential("user0001@example.com", odintest.KindWeb); count != 0 {
				t.Errorf("the faulted PUT took effect %d times, want 0", count)
			}
			st := srv.Stats()
			if st.Faults[tt.wantStatsKey] != 1 || st.Statuses["PUT /users/passwords"][tt.wantStatus] != 1 {
				t.Errorf("Stats() Faults = %v, Statuses = %v, want one %s fault with status %d", st.Faults, st.Statuses, tt.wantStatsKey, tt.wantStatus)
			}
		})
	}
}

func TestFaultReset(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	srv.SetFaults(odintest.Faults{Reset: 1})

	_, err := send(http.MethodPut, srv.URL+"/users/passwords", token, webPasswordBody)
	if err == nil {
		t.Fatal("PUT through a reset connection succeeded, want an error")
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Logf("error is not ECONNRESET but %v", err) // the client may see EOF first on some kernels
	}
	st := srv.Stats()
	if st.Faults["reset"] != 1 || st.Statuses["PUT /users/passwords"][0] != 1 {
		t.Errorf("Stats() Faults = %v, Statuses = %v, want one reset with status 0", st.Faults, st.Statuses)
	}
}

func TestFaultHangEndsWithClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Users: 1})
	token := login(t, srv)
	srv.SetFaults(odintest.Faults{Hang: 1, HangDuration: time.Hour})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/users/passwords", strings.NewReader(`{"userId":"user0001@example.com","newPassword":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hanging request returned status %d, want a timeout", resp.StatusCode)
	}

	waitFor(t, "the hanging handler to return", func() bool {
		return srv.Stats().Statuses["PUT /users/passwords"][0] == 1
	})
}

func TestFaultsSkipAuthUnlessIncluded(t *testing.T) {
	t.Parallel()
	srv := startServer(t, odintest.Config{Faults: odintest.Faults{Error500: 1}})
	credentials := map[string]string{"username": "admin", "password": "odin-sim-password"}

	resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", credentials)
	if resp.status != http.StatusOK {
		t.Fatalf("login with faults on other calls: status = %d, want 200", resp.status)
	}
	var s session
	resp.decode(t, &s)
	if resp := call(t, http.MethodPut, srv.URL, "/auth/token", s.Token, nil); resp.status != http.StatusOK {
		t.Errorf("refresh with faults on other calls: status = %d, want 200", resp.status)
	}

	srv.SetFaults(odintest.Faults{Error500: 1, IncludeAuth: true})
	if resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", credentials); resp.status != http.StatusInternalServerError {
		t.Errorf("login with IncludeAuth: status = %d, want 500", resp.status)
	}
	if resp := call(t, http.MethodPut, srv.URL, "/auth/token", s.Token, nil); resp.status != http.StatusInternalServerError {
		t.Errorf("refresh with IncludeAuth: status = %d, want 500", resp.status)
	}
}

func TestFaultApplyBeforeFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		apply     float64
		wantCount int
	}{
		{"fault before handling", 0, 0},
		{"fault after handling", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, odintest.Config{Users: 1})
			token := login(t, srv)
			srv.SetFaults(odintest.Faults{Error502HTML: 1, ApplyBeforeFault: tt.apply})

			if resp := call(t, http.MethodPut, srv.URL, "/users/passwords", token, webPasswordBody); resp.status != http.StatusBadGateway {
				t.Fatalf("status = %d, want 502", resp.status)
			}
			if _, count, _ := srv.Credential("user0001@example.com", odintest.KindWeb); count != tt.wantCount {
				t.Errorf("SetCount = %d, want %d", count, tt.wantCount)
			}
		})
	}
}

func TestFaultSeedRepeats(t *testing.T) {
	t.Parallel()
	faults := odintest.Faults{Error500: 0.2, Error502HTML: 0.2, Seed: 42}
	run := func() []int {
		srv := startServer(t, odintest.Config{Faults: faults})
		var statuses []int
		for range 40 {
			statuses = append(statuses, call(t, http.MethodGet, srv.URL, "/users", "", nil).status)
		}
		return statuses
	}

	first, second := run(), run()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("same seed, different faults (-first +second):\n%s", diff)
	}
	seen := make(map[int]int)
	for _, status := range first {
		seen[status]++
	}
	if seen[500] == 0 || seen[502] == 0 || seen[401] == 0 {
		t.Errorf("statuses %v, want some 500, 502 and 401", seen)
	}
}

func TestFaultFractions(t *testing.T) {
	t.Parallel()
	const requests = 2000
	sim, err := odintest.New(odintest.Config{Faults: odintest.Faults{Error500: 0.3, Error502HTML: 0.1, Seed: 7}})
	if err != nil {
		t.Fatal(err)
	}
	for range requests {
		sim.ServeHTTP(discardWriter{}, mustRequest(t, http.MethodGet, "/api/v2/users"))
	}

	faults := sim.Stats().Faults
	// Binomial standard deviations are about 20 and 13, so these bounds are 5 of them wide.
	if faults["500"] < 500 || faults["500"] > 700 || faults["502"] < 135 || faults["502"] > 265 {
		t.Errorf("faults %v in %d requests, want about 600 of 500 and 200 of 502", faults, requests)
	}
}

func TestServerCloseEndsHangs(t *testing.T) {
	t.Parallel()
	srv, err := odintest.NewServer(odintest.Config{Faults: odintest.Faults{Hang: 1, HangDuration: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := send(http.MethodGet, srv.URL+"/users", "", nil)
		sent <- err
	}()
	waitFor(t, "the request to arrive", func() bool { return srv.Stats().Total == 1 })

	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s while a request was hanging")
	}
	if err := <-sent; err == nil {
		t.Error("the hanging request succeeded, want a connection error")
	}
}

// discardWriter is a ResponseWriter that drops everything.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

func mustRequest(t testing.TB, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://odin.test"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
