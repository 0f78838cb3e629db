package odin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const nginx502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.24.0</center>
<script>var secret = "not shown";</script>
</body>
</html>`

func TestFaultResponses(t *testing.T) {
	clock := newFakeClock()
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		wantStatus    int
		wantMessage   string
		wantRetry     time.Duration
		wantRateLimit bool
		wantTransient bool
		wantPermanent bool
		wantRule      bool
	}{
		{
			name:          "500 JSON",
			handler:       respondJSON(500, map[string]any{"error": "Internal error", "status": 500, "details": "OCI-P timeout"}),
			wantStatus:    500,
			wantMessage:   "Internal error: OCI-P timeout",
			wantTransient: true,
		},
		{
			name: "502 HTML",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte(nginx502))
			},
			wantStatus:    502,
			wantMessage:   "502 Bad Gateway 502 Bad Gateway nginx/1.24.0",
			wantTransient: true,
		},
		{
			name: "503 empty body with Retry-After",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "120")
				w.WriteHeader(http.StatusServiceUnavailable)
			},
			wantStatus:    503,
			wantRetry:     2 * time.Minute,
			wantTransient: true,
		},
		{
			name: "429 Retry-After seconds",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "7")
				writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Too many requests", "status": 429})
			},
			wantStatus:    429,
			wantMessage:   "Too many requests",
			wantRetry:     7 * time.Second,
			wantRateLimit: true,
			wantTransient: true,
		},
		{
			name: "429 Retry-After HTTP date",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", clock.Now().Add(90*time.Second).Format(http.TimeFormat))
				writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "Too many requests", "status": 429})
			},
			wantStatus:    429,
			wantMessage:   "Too many requests",
			wantRetry:     90 * time.Second,
			wantRateLimit: true,
			wantTransient: true,
		},
		{
			name:          "429 without Retry-After",
			handler:       respondJSON(http.StatusTooManyRequests, map[string]any{"error": "slow down"}),
			wantStatus:    429,
			wantMessage:   "slow down",
			wantRateLimit: true,
			wantTransient: true,
		},
		{
			name: "400 Retry-After ignored",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "30")
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "[Error 4410] Service is not assigned to this subscriber: Voice Messaging User"})
			},
			wantStatus:    400,
			wantMessage:   "[Error 4410] Service is not assigned to this subscriber: Voice Messaging User",
			wantPermanent: true,
		},
		{
			name:          "400 rule rejection",
			handler:       respondJSON(http.StatusBadRequest, map[string]any{"error": "[Error 4003] Password has been used before", "status": 400}),
			wantStatus:    400,
			wantMessage:   "[Error 4003] Password has been used before",
			wantPermanent: true,
			wantRule:      true,
		},
		{
			name: "plain text",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("  upstream\n\tconnect error  "))
			},
			wantStatus:    500,
			wantMessage:   "upstream connect error",
			wantTransient: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("PUT /users/portal-passcode", tt.handler)
			c := f.newClient(WithClock(clock.Now))

			err := c.SetPortalPasscode(context.Background(), "u1@example.com", "48213")

			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want an *APIError", err)
			}
			want := APIError{Method: "PUT", Path: "/users/portal-passcode", StatusCode: tt.wantStatus, Message: tt.wantMessage, RetryAfter: tt.wantRetry}
			if diff := cmp.Diff(want, *apiErr); diff != "" {
				t.Errorf("APIError mismatch (-want +got):\n%s", diff)
			}
			var rateErr *RateLimitError
			if got := errors.As(err, &rateErr); got != tt.wantRateLimit {
				t.Errorf("errors.As(*RateLimitError) = %v, want %v", got, tt.wantRateLimit)
			}
			retry, ok := RetryAfter(err)
			if retry != tt.wantRetry || ok != (tt.wantRetry > 0) {
				t.Errorf("RetryAfter = %v, %v, want %v, %v", retry, ok, tt.wantRetry, tt.wantRetry > 0)
			}
			if got := IsTransient(err); got != tt.wantTransient {
				t.Errorf("IsTransient = %v, want %v", got, tt.wantTransient)
			}
			if got := IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.wantPermanent)
			}
			if got := IsRuleRejection(err); got != tt.wantRule {
				t.Errorf("IsRuleRejection = %v, want %v", got, tt.wantRule)
			}
			if strings.Contains(err.Error(), "48213") {
				t.Errorf("error %q contains the passcode", err)
			}
		})
	}
}

func TestAPIErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "message",
			err:  &APIError{Method: "PUT", Path: "/users/passwords", StatusCode: 400, Message: "[Error 4410] Service is not assigned to this subscriber"},
			want: "Odin PUT /users/passwords: 400 Bad Request: [Error 4410] Service is not assigned to this subscriber",
		},
		{
			name: "no message",
			err:  &APIError{Method: "GET", Path: "/users", StatusCode: 502},
			want: "Odin GET /users: 502 Bad Gateway",
		},
		{
			name: "unknown status",
			err:  &APIError{Method: "GET", Path: "/users", StatusCode: 599, Message: "odd"},
			want: "Odin GET /users: 599: odd",
		},
		{
			name: "rate limit",
			err:  &RateLimitError{&APIError{Method: "GET", Path: "/passcode/generate", StatusCode: 429, Message: "Too many requests", RetryAfter: 3 * time.Second}},
			want: "Odin GET /passcode/generate: 429 Too Many Requests: Too many requests (retry after 3s)",
		},
		{
			name: "login",
			err:  &LoginError{StatusCode: 402, Message: "Password expired", Err: ErrPasswordChangeRequired},
			want: "Odin login failed: 402 Payment Required: Password expired: the Odin admin password must be changed before the API accepts it",
		},
		{
			name: "count",
			err:  &CountError{Endpoint: "GET /password/generate", Requested: 100, Got: 60},
			want: "Odin GET /password/generate: requested 100 values, got 60",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	long := strings.Repeat("x", 500)
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "empty", body: "", want: ""},
		{name: "blank", body: " \n ", want: ""},
		{name: "error only", body: `{"error": "User not found", "status": 404}`, want: "User not found"},
		{name: "error and string details", body: `{"error": "Bad request", "details": "limit must be <= 1000"}`, want: "Bad request: limit must be <= 1000"},
		{name: "details repeat error", body: `{"error": "[Error 4008] User not found: u1", "details": "User not found: u1"}`, want: "[Error 4008] User not found: u1"},
		{name: "details list", body: `{"error": "Invalid", "details": ["too short", {"message": "no digit"}]}`, want: "Invalid: too short; no digit"},
		{name: "details object", body: `{"error": "Invalid", "details": {"field": "userId", "code": 7}}`, want: `Invalid: {"field":"userId","code":7}`},
		{name: "details only", body: `{"status": 400, "details": "missing userId"}`, want: "missing userId"},
		{name: "message key", body: `{"message": "Gateway timeout"}`, want: "Gateway timeout"},
		{name: "nested error object", body: `{"error": {"message": "Token expired", "code": 401}}`, want: "Token expired"},
		{name: "unknown JSON shape", body: `{"status": 500}`, want: `{"status": 500}`},
		{name: "JSON string", body: `"Service unavailable"`, want: "Service unavailable"},
		{name: "HTML", body: nginx502, want: "502 Bad Gateway 502 Bad Gateway nginx/1.24.0"},
		{name: "long text", body: long, want: strings.Repeat("x", maxExcerptRunes-3) + "..."},
		{name: "long non-ASCII text", body: strings.Repeat("ü", 300), want: strings.Repeat("ü", maxExcerptRunes-3) + "..."},
		{name: "control characters", body: "line1\r\nline2\x00\x1b[31m", want: "line1 line2 [31m"},
		{name: "broken JSON", body: `{"error": "cut`, want: `{"error": "cut`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorMessage([]byte(tt.body), nil); got != tt.want {
				t.Errorf("errorMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 14, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "absent", value: "", want: 0},
		{name: "seconds", value: "5", want: 5 * time.Second},
		{name: "seconds with space", value: " 30 ", want: 30 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-3", want: 0},
		{name: "huge", value: "99999999999999", want: 365 * 24 * time.Hour},
		{name: "HTTP date", value: "Fri, 14 Mar 2025 02:01:30 GMT", want: 90 * time.Second},
		{name: "RFC 850 date", value: "Friday, 14-Mar-25 02:00:10 GMT", want: 10 * time.Second},
		{name: "past date", value: "Fri, 14 Mar 2025 01:59:00 GMT", want: 0},
		{name: "garbage", value: "soon", want: 0},
		{name: "fraction", value: "1.5", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.value, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		secrets []string
		want    string
	}{
		{name: "long secret anywhere", text: "password x8H]}3yQ!z9 rejected, x8H]}3yQ!z9", secrets: []string{"x8H]}3yQ!z9"}, want: "password [redacted] rejected, [redacted]"},
		{name: "long secret glued", text: "value=abcdefgh12", secrets: []string{"abcdefgh"}, want: "value=[redacted]12"},
		{name: "short passcode delimited", text: "passcode 4410 is invalid", secrets: []string{"4410"}, want: "passcode [redacted] is invalid"},
		{name: "short passcode inside a code", text: "[Error 4410] Service is not assigned", secrets: []string{"44"}, want: "[Error 4410] Service is not assigned"},
		{name: "short passcode at the ends", text: "1234: repeated 1234", secrets: []string{"1234"}, want: "[redacted]: repeated [redacted]"},
		{name: "quoted", text: `passcode "0042" rejected`, secrets: []string{"0042"}, want: `passcode "[redacted]" rejected`},
		{name: "empty secret", text: "nothing", secrets: []string{""}, want: "nothing"},
		{name: "absent", text: "nothing", secrets: []string{"12345678"}, want: "nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact(tt.text, tt.secrets); got != tt.want {
				t.Errorf("redact = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNoSecretInErrors drives every setter and two lookups against responses that echo the
// secret, and checks each error text.
func TestNoSecretInErrors(t *testing.T) {
	const (
		webPassword = "W3b-Pa55w0rd!{x}"
		sipPassword = "S1p_Pa55-word"
		passcode    = "007411"
		userID      = "secret-query-user@example.com"
	)
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error":   "Rejected request " + string(body),
			"details": map[string]any{"authorization": r.Header.Get("Authorization")},
		})
	}
	f := newFakeOdin(t)
	for _, endpoint := range []string{"PUT /users/authentication", "PUT /users/passwords", "PUT /users/portal-passcode", "GET /users"} {
		f.handle(endpoint, echo)
	}
	f.handle("GET /users/authentication", func(w http.ResponseWriter, _ *http.Request) { resetConnection(w) })
	c := f.newClient(WithTimeout(time.Second))
	ctx := context.Background()
	if err := c.Login(ctx); err != nil {
		t.Fatalf("Login: %v", err)
	}
	token := c.currentToken()

	errs := map[string]error{
		"SetSIPPassword":    c.SetSIPPassword(ctx, userID, "sipuser", sipPassword),
		"SetWebPassword":    c.SetWebPassword(ctx, userID, webPassword),
		"SetPortalPasscode": c.SetPortalPasscode(ctx, userID, passcode),
	}
	_, errs["UserDetail"] = c.UserDetail(ctx, userID)
	_, errs["SIPUserName"] = c.SIPUserName(ctx, userID)

	for name, err := range errs {
		if err == nil {
			t.Errorf("%s: nil error, want one", name)
			continue
		}
		text := err.Error()
		for _, secret := range []string{webPassword, sipPassword, passcode, testPassword, token} {
			if strings.Contains(text, secret) {
				t.Errorf("%s: error %q contains %q", name, text, secret)
			}
		}
	}
	// The transport error of the reset connection must not quote the URL and its query.
	if text := errs["SIPUserName"].Error(); strings.Contains(text, "userId=") || strings.Contains(text, "secret-query-user") {
		t.Errorf("SIPUserName: error %q contains the query string", text)
	}
}

func TestConnectionReset(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) { resetConnection(w) })
	c := f.newClient()

	_, err := c.GroupUsers(context.Background(), "sp1", "grp1")

	if err == nil {
		t.Fatal("GroupUsers = nil error, want a transport error")
	}
	if !IsTransient(err) {
		t.Errorf("IsTransient(%v) = false, want true", err)
	}
	if IsPermanent(err) || IsAuthFailure(err) {
		t.Errorf("reset classified as permanent or auth failure: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "Odin GET /users: ") {
		t.Errorf("error %q does not start with the method and path", err)
	}
	for _, fragment := range []string{"serviceProviderId", "http://", "/api/v2"} {
		if strings.Contains(err.Error(), fragment) {
			t.Errorf("error %q contains the URL (%s)", err, fragment)
		}
	}
}

func TestTruncatedBody(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`[{"userId": "u1@exa`))
		w.(http.Flusher).Flush()
		resetConnection(w)
	})
	c := f.newClient()

	_, err := c.GroupUsers(context.Background(), "sp1", "grp1")

	if !IsTransient(err) {
		t.Errorf("IsTransient(%v) = false, want true for a truncated body", err)
	}
}

func TestTimeout(t *testing.T) {
	f := newFakeOdin(t)
	arrived := make(chan struct{}, 1)
	f.handle("PUT /users/passwords", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // hang until the client gives up
	})

	t.Run("client timeout is transient", func(t *testing.T) {
		var calls []Call
		c := f.newClient(WithTimeout(100*time.Millisecond), WithObserver(func(call Call) { calls = append(calls, call) }))
		if err := c.Login(context.Background()); err != nil {
			t.Fatalf("Login: %v", err)
		}

		err := c.SetWebPassword(context.Background(), "u1@example.com", "Pw-123456789")
		<-arrived

		if !IsTransient(err) {
			t.Errorf("IsTransient(%v) = false, want true", err)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("error %v looks like the caller's context ended", err)
		}
		if !strings.Contains(err.Error(), "no response within 100ms") {
			t.Errorf("error %q does not name the timeout", err)
		}
		last := calls[len(calls)-1]
		if last.Endpoint != "PUT /users/passwords" || last.Status != 0 || last.Err == nil {
			t.Errorf("observer got %+v, want a failed PUT /users/passwords without status", last)
		}
	})

	t.Run("cancelled context is not transient", func(t *testing.T) {
		c := f.newClient(WithTimeout(time.Minute))
		ctx, cancel := context.WithCancel(context.Background())
		if err := c.Login(ctx); err != nil {
			t.Fatalf("Login: %v", err)
		}
		go func() {
			<-arrived
			cancel()
		}()

		err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789")

		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
		if IsTransient(err) || IsPermanent(err) || IsAuthFailure(err) {
			t.Errorf("cancellation %v classified as transient, permanent or auth failure", err)
		}
	})

	t.Run("caller deadline is not transient", func(t *testing.T) {
		c := f.newClient(WithTimeout(time.Minute))
		if err := c.Login(context.Background()); err != nil {
			t.Fatalf("Login: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()

		err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789")
		<-arrived

		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want context.DeadlineExceeded", err)
		}
		if IsTransient(err) {
			t.Errorf("IsTransient(%v) = true, want false for the caller's own deadline", err)
		}
	})

	t.Run("cancelled before sending", func(t *testing.T) {
		c := f.newClient()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		err := c.SetWebPassword(ctx, "u1@example.com", "Pw-123456789")

		if !errors.Is(err, context.Canceled) || IsTransient(err) {
			t.Errorf("error = %v (transient %v), want a non-transient context.Canceled", err, IsTransient(err))
		}
	})
}

func TestHTTPClientTimeoutIsTransient(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	hc := f.srv.Client()
	hc.Timeout = 100 * time.Millisecond
	c := f.newClient(WithHTTPClient(hc))

	_, err := c.GroupUsers(context.Background(), "sp1", "grp1")

	if !IsTransient(err) {
		t.Errorf("IsTransient(%v) = false, want true for http.Client.Timeout", err)
	}
}

func TestUndecodableSuccessBody(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "HTML", body: "<html>maintenance</html>"},
		{name: "wrong type", body: `{"userId": "u1"}`},
		{name: "number in a string field", body: `[{"userId": {"x": 1}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /users", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tt.body)) })
			c := f.newClient()

			_, err := c.GroupUsers(context.Background(), "sp1", "grp1")

			if err == nil || !strings.HasPrefix(err.Error(), "Odin GET /users: unexpected response") {
				t.Fatalf("error = %v, want an unexpected-response error", err)
			}
			if IsTransient(err) || IsPermanent(err) {
				t.Errorf("decode error %v classified as transient or permanent", err)
			}
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	f := newFakeOdin(t)
	f.handle("GET /users", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example.com/api/v2/users", http.StatusMovedPermanently)
	})
	c, err := NewClient(f.baseURL(), testUsername, testPassword) // the default HTTP client
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}

	_, err = c.GroupUsers(context.Background(), "sp1", "grp1")

	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusMovedPermanently {
		t.Errorf("error = %v, want a 301 *APIError", err)
	}
}

// TestErrorMessageRedactsBeforeCutting puts the secret where the message is cut to
// length: no part of it may survive, whether Odin echoes it plainly or JSON-escaped.
func TestErrorMessageRedactsBeforeCutting(t *testing.T) {
	const secret = `8H]}3yQ"k<Lp&2zR`
	escaped, _ := json.Marshal(secret)
	// Each prefix puts the secret across the point where the text is cut to length.
	prefix := strings.Repeat("x", maxMessageRunes-25)
	tests := []struct {
		name string
		body string
	}{
		{name: "JSON message", body: `{"error":` + string(mustJSON(t, prefix+" newPassword="+secret)) + `}`},
		{name: "plain text", body: strings.Repeat("y", maxExcerptRunes-25) + " newPassword=" + secret},
		{name: "JSON-escaped in HTML", body: "<html><body>" + strings.Repeat("z", maxExcerptRunes-15) + " " + string(escaped[1:len(escaped)-1]) + "</body></html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorMessage([]byte(tt.body), withJSONForms([]string{secret}))
			for _, part := range []string{"8H]}3yQ", "3yQ", "k<Lp", "Lp&2zR"} {
				if strings.Contains(got, part) {
					t.Errorf("message %q holds %q, a part of the secret", got[max(0, len(got)-60):], part)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
