package odin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Credentials the fake Odin accepts.
const (
	testUsername = "admin@example.com"
	testPassword = "Adm1n-Secret-Pw!"
)

// recordedRequest is a request as the fake Odin received it.
type recordedRequest struct {
	Method   string
	Path     string // below /api/v2
	Query    url.Values
	RawQuery string
	Header   http.Header
	Body     []byte
}

// fakeOdin is a small Odin for unit tests: it handles login, refresh and bearer checks
// and passes other requests to handlers registered per "METHOD /path". Tests inject
// faults through those handlers or through loginHandler and refreshHandler.
type fakeOdin struct {
	t   *testing.T
	srv *httptest.Server

	// now is the clock for token expiry; lifetime 0 issues opaque (non-JWT) tokens.
	now      func() time.Time
	lifetime time.Duration

	mu             sync.Mutex
	handlers       map[string]http.HandlerFunc
	loginHandler   http.HandlerFunc
	refreshHandler http.HandlerFunc
	onUnauthorized func()               // called for each API request whose token is rejected
	tokens         map[string]time.Time // token -> expiry; zero for opaque tokens
	issued         int
	requests       []recordedRequest

	logins    atomic.Int64
	refreshes atomic.Int64
}

func newFakeOdin(t *testing.T) *fakeOdin {
	t.Helper()
	f := &fakeOdin{
		t:        t,
		now:      time.Now,
		handlers: map[string]http.HandlerFunc{},
		tokens:   map[string]time.Time{},
	}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

// baseURL is the API base, like a real Odin's ".../api/v2".
func (f *fakeOdin) baseURL() string { return f.srv.URL + "/api/v2" }

// newClient returns a client for this fake with the test credentials.
func (f *fakeOdin) newClient(opts ...Option) *Client {
	f.t.Helper()
	opts = append([]Option{WithHTTPClient(f.srv.Client())}, opts...)
	c, err := NewClient(f.baseURL(), testUsername, testPassword, opts...)
	if err != nil {
		f.t.Fatalf("NewClient: %v", err)
	}
	return c
}

func (f *fakeOdin) handle(endpoint string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[endpoint] = h
}

func (f *fakeOdin) setLoginHandler(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loginHandler = h
}

func (f *fakeOdin) setRefreshHandler(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshHandler = h
}

func (f *fakeOdin) setOnUnauthorized(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onUnauthorized = fn
}

// expireTokens invalidates every issued token, as when Odin restarts or a session ends.
func (f *fakeOdin) expireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]time.Time{}
}

// recorded returns the requests received for one "METHOD /path", or all when endpoint
// is "".
func (f *fakeOdin) recorded(endpoint string) []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recordedRequest
	for _, r := range f.requests {
		if endpoint == "" || r.Method+" "+r.Path == endpoint {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeOdin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path, ok := strings.CutPrefix(r.URL.Path, "/api/v2")
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not under /api/v2", "status": 404})
		return
	}
	endpoint := r.Method + " " + path

	f.mu.Lock()
	f.requests = append(f.requests, recordedRequest{
		Method: r.Method, Path: path, Query: r.URL.Query(), RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body,
	})
	handler := f.handlers[endpoint]
	loginHandler, refreshHandler, onUnauthorized := f.loginHandler, f.refreshHandler, f.onUnauthorized
	f.mu.Unlock()

	switch endpoint {
	case "POST /auth/token":
		f.logins.Add(1)
		if loginHandler != nil {
			loginHandler(w, r)
			return
		}
		var creds struct{ Username, Password string }
		if json.Unmarshal(body, &creds) != nil || creds.Username != testUsername || creds.Password != testPassword {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid credentials", "status": 401})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"token": f.issueToken(), "loginType": "System"})
		return
	case "PUT /auth/token":
		f.refreshes.Add(1)
		if refreshHandler != nil {
			refreshHandler(w, r)
			return
		}
		if !f.validToken(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Token expired", "status": 401})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"token": f.issueToken(), "loginType": "System"})
		return
	}

	if !f.validToken(r) {
		if onUnauthorized != nil {
			onUnauthorized()
		}
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid or expired token", "status": 401})
		return
	}
	if handler == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no handler for " + endpoint, "status": 404})
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	handler(w, r)
}

func (f *fakeOdin) issueToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued++
	if f.lifetime <= 0 {
		token := fmt.Sprintf("opaque-token-%d", f.issued)
		f.tokens[token] = time.Time{}
		return token
	}
	exp := f.now().Add(f.lifetime)
	token := makeJWT(map[string]any{"exp": exp.Unix(), "sub": testUsername, "n": f.issued})
	f.tokens[token] = exp
	return token
}

func (f *fakeOdin) validToken(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.tokens[token]
	return ok && (exp.IsZero() || f.now().Before(exp))
}

// makeJWT builds an unsigned-looking JWT with the given claims.
func makeJWT(claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	return header + "." + base64.RawURLEncoding.EncodeToString(payload) + ".c2lnbmF0dXJl"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// respondJSON returns a handler that always responds with status and v as JSON.
func respondJSON(status int, v any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, status, v) }
}

// resetConnection closes the client's connection abruptly (RST instead of FIN).
func resetConnection(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 14, 2, 0, 0, 0, time.UTC)}
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

// decodeBody decodes a recorded JSON body into a map of strings.
func decodeBody(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("request body is not a JSON object of strings: %v", err)
	}
	return m
}
