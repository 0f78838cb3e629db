package odintest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odinreset/odinreset/odin/odintest"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 22, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startServer runs a simulator on loopback for the length of the test.
func startServer(t *testing.T, cfg odintest.Config) *odintest.Server {
	t.Helper()
	srv, err := odintest.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// response is a raw HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError is the JSON error body.
type apiError struct {
	Error   string          `json:"error"`
	Status  int             `json:"status"`
	Details json.RawMessage `json:"details"`
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

func (r response) apiError(t *testing.T) apiError {
	t.Helper()
	var e apiError
	r.decode(t, &e)
	return e
}

// call sends a request to the API at base+path. A non-nil body is sent as JSON; a
// string body is sent as it is.
func call(t *testing.T, method, base, path, token string, body any) response {
	t.Helper()
	resp, err := send(method, base+path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func send(method, target, token string, body any) (response, error) {
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		reader = bytes.NewReader(data)
	}

	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// login returns a token for the simulator's admin login.
func login(t *testing.T, srv *odintest.Server) string {
	t.Helper()
	username, password := srv.Login()
	resp := call(t, http.MethodPost, srv.URL, "/auth/token", "", map[string]string{"username": username, "password": password})
	if resp.status != http.StatusOK {
		t.Fatalf("login: status %d, body %s", resp.status, resp.body)
	}
	var session struct {
		Token string `json:"token"`
	}
	resp.decode(t, &session)
	return session.Token
}

func query(pairs ...string) string {
	values := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		values.Set(pairs[i], pairs[i+1])
	}
	return "?" + values.Encode()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-ticker.C
	}
}
